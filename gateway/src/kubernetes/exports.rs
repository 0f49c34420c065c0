//! `ServiceExport`s → this cluster's exports in the catalog.

use std::sync::Arc;
use std::time::Duration;

use causeway_k8s::controller::{ExportSink, ExportSpec, PortConflict, PublishOutcome};
use causeway_k8s::resources::Protocol as KubeProtocol;
use causeway_registry::{Command, Limits, Protocol, ServiceKey};
use causeway_trust::ClusterName;

use crate::config::{ExportConfig, PortConfig};
use crate::daemon::exports::{self, Exports, PlatformExport};
use crate::daemon::members::Membership;

/// How long a publication waits for the registry to commit it before the controller
/// reports it as not ready (it stays queued and is published once the registry can).
const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// Why a `ServiceExport` could not be published.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    /// The Service has no cluster IP to forward to.
    #[error("{0} is headless (no cluster IP); Causeway exports ClusterIP Services only")]
    Headless(ServiceKey),
    /// The Service has no TCP port (the tunnel carries TCP).
    #[error("{0} has no TCP port; the tunnel carries TCP only")]
    NoTcpPort(ServiceKey),
    /// The names or labels do not fit the catalog.
    #[error("{0}")]
    Invalid(String),
}

/// The gateway's export set, as the `ServiceExport` controller's sink.
pub(crate) struct PlatformExports {
    /// This cluster, the exporter of everything published here.
    cluster: ClusterName,
    exports: Arc<Exports>,
    /// The registry member, whose catalog shows other clusters' exports of a
    /// service (for port conflicts).
    membership: Arc<Membership>,
}

impl PlatformExports {
    /// The sink that publishes `cluster`'s platform exports into `exports`.
    pub(crate) fn new(
        cluster: ClusterName,
        exports: Arc<Exports>,
        membership: Arc<Membership>,
    ) -> Self {
        Self {
            cluster,
            exports,
            membership,
        }
    }

    /// The export `spec` asks for, checked against the catalog's rules first: one
    /// bad Service must not stop the rest of this cluster's exports.
    fn export_of(&self, spec: &ExportSpec) -> Result<(ServiceKey, PlatformExport), PublishError> {
        let service = ServiceKey::new(&spec.namespace, &spec.name)
            .map_err(|e| PublishError::Invalid(e.to_string()))?;
        let ip = spec
            .cluster_ip
            .ok_or_else(|| PublishError::Headless(service.clone()))?;
        let ports: Vec<PortConfig> = spec
            .ports
            .iter()
            .filter(|p| p.protocol == KubeProtocol::Tcp)
            .map(|p| PortConfig {
                name: p.name.clone(),
                port: u64::from(p.port),
                target_port: None,
                protocol: "tcp".into(),
            })
            .collect();
        if ports.is_empty() {
            return Err(PublishError::NoTcpPort(service));
        }
        let export = ExportConfig {
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
            ports,
            endpoints: vec![ip],
            weight: 100,
            labels: spec.labels.clone(),
        };
        let mut catalog = exports::to_catalog(&self.cluster, &export)
            .map_err(|e| PublishError::Invalid(format!("{e:#}")))?;
        catalog.endpoints = spec.ready_endpoints;
        Command::PutExport(catalog)
            .validate(&Limits::default())
            .map_err(|e| PublishError::Invalid(e.to_string()))?;
        Ok((
            service,
            PlatformExport {
                export,
                ready_endpoints: spec.ready_endpoints,
            },
        ))
    }

    /// Other clusters' older exports of `service` that define a port differently.
    fn conflicts(&self, service: &ServiceKey, ports: &[PortConfig]) -> Vec<PortConflict> {
        let ours = &self.cluster;
        self.membership.node().read_local(|catalog| {
            let mine = catalog
                .exports()
                .find(|e| &e.value.cluster == ours && &e.value.service == service)
                .map(|e| e.mod_revision);
            catalog
                .exports()
                .filter(|e| &e.value.service == service && &e.value.cluster != ours)
                .filter(|e| mine.is_none_or(|m| e.mod_revision < m))
                .flat_map(|e| {
                    e.value
                        .ports
                        .iter()
                        .filter(|p| {
                            p.protocol != Protocol::Tcp
                                && ports.iter().any(|q| q.port == u64::from(p.port))
                        })
                        .map(|p| PortConflict {
                            port: p.port,
                            winner: e.value.cluster.to_string(),
                            protocol: KubeProtocol::Tcp,
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        })
    }
}

impl ExportSink for PlatformExports {
    type Error = PublishError;

    async fn publish(&self, spec: ExportSpec) -> Result<PublishOutcome, PublishError> {
        let (service, export) = self.export_of(&spec)?;
        let ports = export.export.ports.clone();
        let unchanged = self.exports.platform_export(&service).as_ref() == Some(&export);
        let committed = if unchanged {
            true
        } else {
            let generation =
                exports::set_platform_export(&self.exports, service.clone(), Some(export));
            exports::committed(&self.exports, generation, COMMIT_WAIT).await
        };
        Ok(PublishOutcome {
            committed,
            conflicts: self.conflicts(&service, &ports),
        })
    }

    async fn withdraw(&self, namespace: &str, name: &str) -> Result<(), PublishError> {
        let service =
            ServiceKey::new(namespace, name).map_err(|e| PublishError::Invalid(e.to_string()))?;
        let present = self.exports.platform_export(&service).is_some();
        if present {
            let generation = exports::set_platform_export(&self.exports, service, None);
            exports::committed(&self.exports, generation, COMMIT_WAIT).await;
        }
        Ok(())
    }
}
