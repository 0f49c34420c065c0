//! Kubernetes mode: the gateway's side of the controllers in `causeway-k8s`.
//!
//! When `[kubernetes]` is on (or, in `auto` mode, when the gateway runs in a pod or
//! the section names a kubeconfig), `causeway gateway run` also:
//! - publishes `ServiceExport`ed Services (their cluster IP is where streams from
//!   other clusters go; kube-proxy balances over the ready endpoints), kept apart
//!   from the config file's exports so a reload never drops them;
//! - acts on `ClusterLink`s (join through the peer's registry, report its health);
//! - enforces `AccessPolicy` objects like the config file's `[[access.policy]]`
//!   entries (and publishes them to the catalog the same way), the file winning on
//!   a name clash;
//! - applies `TrafficPolicy` objects like the file's `[[traffic_policy]]` entries
//!   (and publishes them for the clusters their `applyTo` names), the file winning
//!   for a service both name;
//! - mirrors every import into its namespace as a ClusterIP Service whose endpoints
//!   are the ready gateway pods on a listener port of its own, plus an MCS
//!   `ServiceImport`; the clusterset DNS then answers with that Service's cluster IP.
//!
//! With several gateway replicas in the cluster, the one holding the controllers'
//! Lease (`leader.rs`) alone writes: the mirrored objects, and the finalizers and
//! statuses of exports, links and policies. Every replica reads those objects, acts
//! on them (publishes, joins, enforces) and serves traffic.

mod access;
mod exports;
mod imports;
mod leader;
mod links;
mod traffic;

use std::sync::Arc;

use anyhow::{Context, Result};
use causeway_k8s::controller::imports::ImportWriter;
use causeway_k8s::controller::{
    ExportContext, GatewayBackend, LinkContext, MirrorConfig, PolicyContext,
    exports as export_controller, links as link_controller, policies as policy_controller,
};
use causeway_k8s::resources::{AccessPolicy, TrafficPolicy};
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::daemon::Shared;

/// A client for the configured kubeconfig, or the inferred one (in-cluster, then
/// `$KUBECONFIG`, then `~/.kube/config`). Nothing is sent until the controllers start.
async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no usable Kubernetes config (in-cluster service account, $KUBECONFIG or ~/.kube/config)")?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// Connects to the API server and starts the controllers and the import mirror,
/// each given the handles of the gateway it drives.
pub(crate) async fn start(shared: &Shared, tasks: &TaskTracker) -> Result<()> {
    let local = &shared.local;
    let section = &local.config.kubernetes;
    let pod_ip = section.pod_ip.context(
        "[kubernetes] pod_ip is not set: mirrored Services need this pod's address (set CAUSEWAY__KUBERNETES__POD_IP from status.podIP)",
    )?;
    let client = client(section.kubeconfig.as_deref()).await?;
    let mirror = MirrorConfig {
        backend: GatewayBackend::Addresses(vec![pod_ip]),
        create_namespaces: section.create_namespaces,
    };
    let leadership = leader::start(local, client.clone(), shared.telemetry.clone(), tasks);
    let exports = exports::PlatformExports::new(
        local.cluster.clone(),
        shared.exports.clone(),
        shared.membership.clone(),
    );
    let exports =
        Arc::new(ExportContext::new(client.clone(), exports).with_leadership(leadership.clone()));
    let links = links::FederationLinks::new(
        local.clone(),
        shared.membership.clone(),
        shared.imports.clone(),
        shared.exports.clone(),
        shared.tunnel.clone(),
    );
    let links =
        Arc::new(LinkContext::new(client.clone(), links).with_leadership(leadership.clone()));
    let access = access::PlatformAccess::new(
        local.cluster.clone(),
        shared.access.clone(),
        shared.tunnel.clone(),
    );
    let access = Arc::new(
        PolicyContext::<AccessPolicy, _>::new(client.clone(), access)
            .with_leadership(leadership.clone()),
    );
    let traffic = traffic::PlatformTraffic::new(shared.traffic.clone());
    let traffic = Arc::new(
        PolicyContext::<TrafficPolicy, _>::new(client.clone(), traffic)
            .with_leadership(leadership.clone()),
    );
    let cancel = local.cancel.clone();
    tasks.spawn(export_controller::run(
        exports,
        cancel.clone().cancelled_owned(),
    ));
    tasks.spawn(policy_controller::run(
        access,
        cancel.clone().cancelled_owned(),
    ));
    tasks.spawn(policy_controller::run(
        traffic,
        cancel.clone().cancelled_owned(),
    ));
    tasks.spawn(link_controller::run(
        links,
        cancel.clone().cancelled_owned(),
    ));
    let writer = ImportWriter::new(client, mirror, leadership);
    let pods = imports::GatewayPods {
        namespace: section.namespace.clone(),
        service: section.gateway_service.clone(),
        own: pod_ip,
    };
    tasks.spawn(imports::mirror_imports(
        shared.imports.clone(),
        writer,
        pods,
        cancel,
    ));
    info!(%pod_ip, "Kubernetes controllers started");
    Ok(())
}

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;
