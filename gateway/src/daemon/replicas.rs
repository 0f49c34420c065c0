//! The replicas of this gateway's cluster as this one sees them, for `causeway
//! check`: each one's catalog revision (its registry member's answer to the
//! registry's `Status` call; this replica's own, read locally) and the import pools
//! its catalog record lists. Replicas at one revision with the same pools answer
//! DNS with the same import addresses, since the addresses come from the catalog.

use std::time::Duration;

use causeway_registry::{RegistryClient, ReplicaRecord, TlsConfigs};
use futures::future::join_all;

use super::Local;
use super::members::{Membership, error_chain, tls};
use crate::status::ReplicaState;

/// How long one sibling's registry member may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Every replica of this cluster the catalog lists, this one first.
pub(crate) async fn states(local: &Local, membership: &Membership) -> Vec<ReplicaState> {
    let node = membership.node();
    let (revision, listed) = node.read_local(|catalog| {
        let listed = catalog
            .cluster(&local.cluster)
            .map(|c| c.value.replicas.clone())
            .unwrap_or_default();
        (catalog.revision().0, listed)
    });
    let me = local.config.replica.as_ref();
    let mine = ReplicaState {
        replica: label(local, me.map(ToString::to_string)),
        this: true,
        registry_addr: local.config.registry_advertise().to_string(),
        revision: Some(revision),
        import_pools: super::exports::import_pools(&local.config),
        error: None,
    };
    let tls = tls(&local.identity);
    let siblings = listed
        .into_iter()
        .filter(|r| r.name.as_ref() != me)
        .map(|r| ask(local, r, &tls));
    let mut all = vec![mine];
    all.extend(join_all(siblings).await);
    all
}

/// One sibling: its listed pools, and its revision or why it could not be read.
async fn ask(local: &Local, record: ReplicaRecord, tls: &TlsConfigs) -> ReplicaState {
    let answer = async {
        let client = RegistryClient::connect(&record.registry_addr, tls.client.clone())?;
        client.status().await
    };
    let (revision, error) = match tokio::time::timeout(ASK_TIMEOUT, answer).await {
        Ok(Ok(status)) => (Some(status.revision.0), None),
        Ok(Err(e)) => (None, Some(error_chain(&e))),
        Err(_) => (None, Some(format!("no answer within {ASK_TIMEOUT:?}"))),
    };
    ReplicaState {
        replica: label(local, record.name.map(|n| n.to_string())),
        this: false,
        registry_addr: record.registry_addr,
        revision,
        import_pools: record.import_pools,
        error,
    }
}

fn label(local: &Local, replica: Option<String>) -> String {
    match replica {
        Some(name) => format!("{}/{name}", local.cluster),
        None => local.cluster.to_string(),
    }
}
