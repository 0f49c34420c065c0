//! The import mirror of one replica among several: the leader writes, the others
//! only read back what the leader's Services got (their cluster IPs, which their
//! clusterset DNS answers with too, and their listener ports, which they listen on).

use std::net::IpAddr;

use kube::Client;

use super::{
    Error, GatewayBackend, ImportOutcome, ImportView, MirrorConfig, Mirrored, apply_import,
    observe, ready_pods, remove_import, resync,
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

    /// The gateway pods the mirrored EndpointSlices list, with the address backend.
    pub fn gateway_pods(&self) -> &[IpAddr] {
        match &self.config.backend {
            GatewayBackend::Addresses(pods) => pods,
            GatewayBackend::Selector(_) => &[],
        }
    }

    /// Lists `pods` in the EndpointSlices written from now on (with the address
    /// backend; a selector finds the pods itself).
    pub fn set_gateway_pods(&mut self, pods: Vec<IpAddr>) {
        if let GatewayBackend::Addresses(current) = &mut self.config.backend {
            *current = pods;
        }
    }

    /// The ready pods behind the Service `namespace/service` ([`ready_pods`]).
    pub async fn ready_pods(&self, namespace: &str, service: &str) -> Result<Vec<IpAddr>, Error> {
        ready_pods(&self.client, namespace, service).await
    }

    /// The import's mirrored Service as the API server has it ([`observe`]).
    pub async fn observe(&self, import: &ImportView) -> Result<Option<Mirrored>, Error> {
        observe(&self.client, &import.namespace, &import.name).await
    }

    /// Leading: creates or updates the import's objects ([`apply_import`]).
    /// Otherwise: reads the mirrored Service's cluster IP, and sends no write.
    pub async fn apply(&self, import: &ImportView) -> Result<ImportOutcome, Error> {
        if self.leadership.is_leader() {
            return apply_import(&self.client, import, &self.config).await;
        }
        Ok(self.observe(import).await?.into())
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
