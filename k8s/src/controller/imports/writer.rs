//! The import mirror of one replica among several: the leader writes, the others
//! only read back the cluster IPs the leader's Services got (their clusterset DNS
//! answers with them too).

use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client, ResourceExt};

use super::api::{api_error, is_managed};
use super::{
    Error, ImportOutcome, ImportView, MirrorConfig, apply_import, cluster_ip, mirror_name,
    remove_import, resync,
};
use crate::leader::Leadership;

/// Mirrors imports when this replica leads; reads what the leader mirrored when it
/// does not.
#[derive(Clone)]
pub struct ImportWriter {
    client: Client,
    config: MirrorConfig,
    leadership: Leadership,
}

impl ImportWriter {
    /// A writer with `config`'s objects, writing while `leadership` says so.
    pub fn new(client: Client, config: MirrorConfig, leadership: Leadership) -> Self {
        Self {
            client,
            config,
            leadership,
        }
    }

    /// Whether (and when) this replica writes.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// Leading: creates or updates the import's objects ([`apply_import`]).
    /// Otherwise: reads the mirrored Service's cluster IP, and sends no write.
    pub async fn apply(&self, import: &ImportView) -> Result<ImportOutcome, Error> {
        if self.leadership.is_leader() {
            return apply_import(&self.client, import, &self.config).await;
        }
        let name = mirror_name(&import.name);
        let services: Api<Service> = Api::namespaced(self.client.clone(), &import.namespace);
        let service = services
            .get_opt(&name)
            .await
            .map_err(|e| api_error("reading", "Service", &import.namespace, &name, e))?;
        let observed = service
            .filter(is_managed)
            .and_then(|s| Some((s.name_any(), cluster_ip(&s)?)));
        Ok(match observed {
            Some((service, cluster_ip)) => ImportOutcome::Applied {
                service,
                cluster_ip,
            },
            None => ImportOutcome::AwaitingLeader,
        })
    }

    /// Leading: deletes the import's objects ([`remove_import`]). Otherwise
    /// nothing: the leader deletes them.
    pub async fn remove(&self, namespace: &str, name: &str) -> Result<(), Error> {
        if !self.leadership.is_leader() {
            return Ok(());
        }
        remove_import(&self.client, namespace, name).await
    }

    /// Leading: deletes mirrored objects no import in `desired` accounts for
    /// ([`resync`]). Otherwise nothing, and nothing is reported removed.
    pub async fn resync(&self, desired: &[ImportView]) -> Result<Vec<String>, Error> {
        if !self.leadership.is_leader() {
            return Ok(Vec::new());
        }
        resync(&self.client, desired).await
    }
}
