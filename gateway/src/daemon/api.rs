//! The admin API of a running gateway: status, metrics, and the calls the CLI makes.

use std::net::SocketAddr;

use causeway_trust::{CertInfo, ClusterName};
use causeway_tunnel::peers::PeerState;
use time::OffsetDateTime;

use causeway_registry::{Command, Node, NodeError};

use super::{Shared, exports, policy};
use crate::admin::{AdminApi, ApiError};
use crate::config::ExportConfig;
use crate::status::{
    CertificateStatus, DnsStatus, ExportStatus, ImportStatus, MemberStatus, PeerLink, PeerStatus,
    RegistryStatus, StatusReport,
};

/// Catalog revisions the local view may trail the member's applied revision by and
/// still count as caught up (a change in flight between two polls).
const CAUGHT_UP_SLACK: u64 = 1;

/// How long an export change waits for the registry before answering.
const COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The admin API over one gateway: status reads every part of it.
#[derive(Clone)]
pub struct GatewayApi {
    shared: Shared,
}

impl std::fmt::Debug for GatewayApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayApi")
            .field("cluster", &self.shared.local.cluster)
            .finish()
    }
}

impl GatewayApi {
    pub(crate) fn new(shared: Shared) -> Self {
        Self { shared }
    }

    /// Answers a change only once the registry committed it, so a success means the
    /// federation has it.
    async fn wait_committed(&self, generation: u64) -> Result<(), ApiError> {
        if exports::committed(&self.shared.exports, generation, COMMIT_WAIT).await {
            Ok(())
        } else {
            Err(ApiError::unavailable(format!(
                "accepted, but the registry has not committed it within {COMMIT_WAIT:?} (no quorum?); it will be published when the registry can"
            )))
        }
    }

    /// Changes this cluster's runtime exports in its catalog record, and answers once
    /// this gateway serves the change and its publication is committed. The saved
    /// runtime exports of a gateway older than the record go in first (see
    /// `exports::runtime::seed`), so that the change does not replace them.
    async fn change_runtime(&self, command: Command) -> Result<(), ApiError> {
        let node = self.shared.membership.node();
        let cluster = &self.shared.local.cluster;
        let mut commands = exports::seed_runtime(&self.shared.exports, &node, cluster);
        commands.push(command);
        let mut revision = causeway_registry::Revision(0);
        for command in &commands {
            revision = propose_within(&node, command).await?;
        }
        let mut applied = self.shared.imports.applied.subscribe();
        let here = tokio::time::timeout(COMMIT_WAIT, applied.wait_for(|r| *r >= revision.0));
        if !here.await.is_ok_and(|r| r.is_ok()) {
            return Err(ApiError::unavailable(format!(
                "committed at revision {}, but this gateway has not applied it within {COMMIT_WAIT:?}; it serves it once it catches up",
                revision.0
            )));
        }
        self.wait_committed(self.shared.exports.generation()).await
    }

    fn certificate(&self) -> CertificateStatus {
        let identity = &self.shared.local.identity;
        let leaf = identity.current();
        let now = OffsetDateTime::now_utc();
        let issuer_end = CertInfo::parse(identity.issuer().cert())
            .map(|i| i.not_after)
            .unwrap_or(now);
        CertificateStatus {
            spiffe_id: identity.id().to_string(),
            serial: leaf.info.serial.clone(),
            not_after: leaf.info.not_after.to_string(),
            expires_in_seconds: (leaf.info.not_after - now).whole_seconds(),
            issuer_expires_in_seconds: (issuer_end - now).whole_seconds(),
            bundle_fingerprints: identity.bundle().fingerprints(),
        }
    }

    fn registry(&self) -> (RegistryStatus, Vec<String>) {
        let mut problems = Vec::new();
        let cached = self.shared.membership.last_status();
        let imports = &self.shared.imports;
        let local_revision = imports.state.lock().expect("state lock").revision;
        let Some((status, at)) = cached else {
            problems.push("registry status not known yet".to_owned());
            return (RegistryStatus::default(), problems);
        };
        let directory = imports.directory.read().expect("directory lock");
        let cluster_of = |id: u64| {
            directory
                .member_name(id)
                .unwrap_or_else(|| format!("member {id}"))
        };
        let has_quorum = status.leader != 0;
        if !has_quorum {
            problems.push(format!(
                "registry has no quorum (no leader since {at}); serving the last applied catalog, revision {local_revision}"
            ));
        } else if local_revision + CAUGHT_UP_SLACK < status.revision.0 {
            problems.push(format!(
                "catalog catching up: revision {local_revision} of {}",
                status.revision.0
            ));
        }
        let report = RegistryStatus {
            member_id: status.id,
            leader_id: (status.leader != 0).then_some(status.leader),
            term: status.term,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            revision: status.revision.0,
            has_quorum,
            members: status
                .members
                .iter()
                .map(|m| MemberStatus {
                    id: m.id,
                    cluster: cluster_of(m.id),
                    address: m.address.clone(),
                    voter: m.voter,
                    matched: (m.matched != 0).then_some(m.matched),
                })
                .collect(),
        };
        (report, problems)
    }

    fn peers(&self) -> Vec<PeerStatus> {
        let stats = self.shared.tunnel.peer_stats();
        let directory = self
            .shared
            .imports
            .directory
            .read()
            .expect("directory lock");
        let node = self.shared.membership.node();
        let export_counts = node.read_local(|catalog| {
            let mut counts = std::collections::HashMap::<ClusterName, u64>::new();
            for e in catalog.exports() {
                *counts.entry(e.value.cluster.clone()).or_default() += 1;
            }
            counts
        });
        // One row per replica of each peer cluster's gateway.
        let rows = directory
            .clusters
            .values()
            .filter(|c| c.name != self.shared.local.cluster)
            .flat_map(|c| {
                let gateways = directory.gateways(&c.name);
                let unlisted = gateways.is_empty().then(|| (None, c.gateway_addrs.first()));
                let listed = gateways.into_iter().map(|(r, a)| (r, Some(a.to_string())));
                let unlisted = unlisted.map(|(r, a)| (r, a.cloned()));
                listed.chain(unlisted).map(move |(r, a)| (c, r, a))
            });
        rows.map(|(c, replica, address)| {
            let s = stats
                .iter()
                .find(|s| s.cluster == c.name && s.replica == replica);
            let rtt = s.and_then(|s| s.rtt).map(|d| d.as_secs_f64() * 1e3);
            PeerStatus {
                cluster: c.name.to_string(),
                replica: replica.map(|r| r.to_string()),
                gateway_address: address.unwrap_or_default(),
                alive: s.is_some_and(|s| s.state.in_rotation()),
                link: link_of(s.map(|s| s.state)),
                rtt_ms: rtt,
                rtt_p50_ms: s.and_then(|s| s.rtt_p50).map(|d| d.as_secs_f64() * 1e3),
                rtt_p99_ms: s.and_then(|s| s.rtt_p99).map(|d| d.as_secs_f64() * 1e3),
                streams_active: s.map_or(0, |s| s.streams_active),
                streams_total: s.map_or(0, |s| s.streams_total),
                bytes_sent: s.map_or(0, |s| s.bytes_sent),
                bytes_received: s.map_or(0, |s| s.bytes_received),
                last_error: s.and_then(|s| s.last_error.clone()),
                exports: export_counts.get(&c.name).copied().unwrap_or(0),
                bundle_fingerprints: c.trust_bundle.clone(),
            }
        })
        .collect()
    }

    fn imports(&self) -> Vec<ImportStatus> {
        let imports = &self.shared.imports;
        let state = imports.state.lock().expect("state lock");
        let mirror = imports.mirror.lock().expect("mirror lock");
        let zone = self.shared.local.config.dns.zone.trim_end_matches('.');
        mirror
            .table()
            .imports()
            .map(|i| {
                let ports: Vec<u16> = i.ports.iter().map(|p| p.port).collect();
                let listening = i.addresses.iter().all(|ip| {
                    ports
                        .iter()
                        .all(|p| state.bound.contains_key(&SocketAddr::new(*ip, *p)))
                });
                ImportStatus {
                    namespace: i.service.namespace().to_owned(),
                    name: i.service.name().to_owned(),
                    address: i
                        .addresses
                        .first()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    ports,
                    clusters: i.clusters.keys().map(ToString::to_string).collect(),
                    listening,
                    dns_name: format!("{}.{}.svc.{zone}", i.service.name(), i.service.namespace()),
                }
            })
            .collect()
    }
}

impl AdminApi for GatewayApi {
    fn status(&self) -> StatusReport {
        let (registry, mut not_ready) = self.registry();
        if let Some(e) = self.shared.membership.join_error() {
            not_ready.push(format!("registry not joined: {e}"));
        }
        if let Some(e) = self.shared.exports.publish_error() {
            not_ready.push(format!("exports not published: {e}"));
        }
        let imports = self.imports();
        // A copy: a borrow of the guard's field would keep the import state
        // locked through every lock taken below.
        let failed = self
            .shared
            .imports
            .state
            .lock()
            .expect("state lock")
            .failed
            .clone();
        for (bind, reason) in &failed {
            not_ready.push(format!("import listener {bind} not bound: {reason}"));
        }
        let local = &self.shared.local;
        let exports = self
            .shared
            .exports
            .with_sources()
            .into_iter()
            .map(|(e, source)| ExportStatus {
                ports: e.ports.iter().map(|p| p.port as u16).collect(),
                endpoints: e.endpoints.len(),
                namespace: e.namespace,
                name: e.name,
                source,
            })
            .collect();
        StatusReport {
            cluster: local.cluster.to_string(),
            trust_domain: local.identity.id().trust_domain.to_string(),
            ready: not_ready.is_empty(),
            not_ready,
            certificate: self.certificate(),
            registry,
            peers: self.peers(),
            imports,
            exports,
            dns: DnsStatus {
                listen: local.config.dns.listen.to_string(),
                zone: local.config.dns.zone.clone(),
            },
            access: self.shared.access.status(),
            traffic: self.shared.traffic.status(),
            ejections: self
                .shared
                .tunnel
                .traffic_ejections()
                .into_iter()
                .map(|e| crate::status::EjectionStatus {
                    service: e.service,
                    cluster: e.cluster.to_string(),
                    remaining_seconds: e.remaining.as_secs_f64(),
                    ejections: e.ejections,
                })
                .collect(),
        }
    }

    fn metrics_text(&self) -> String {
        self.shared.telemetry.encode()
    }

    async fn replicas(&self) -> Vec<crate::status::ReplicaState> {
        super::replicas::states(&self.shared.local, &self.shared.membership).await
    }

    async fn link(&self, peer: SocketAddr) -> Result<String, ApiError> {
        let shared = &self.shared;
        super::link(
            &shared.local,
            &shared.membership,
            &shared.imports,
            &shared.exports,
            peer,
        )
        .await
    }

    async fn unlink(&self, cluster: String) -> Result<String, ApiError> {
        let cluster: ClusterName = cluster
            .parse()
            .map_err(|e: causeway_trust::NameError| ApiError::bad_request(e.to_string()))?;
        if cluster == self.shared.local.cluster {
            return Err(ApiError::bad_request(
                "a gateway cannot unlink itself; run `causeway unlink` against another cluster's gateway",
            ));
        }
        let node = self.shared.membership.node();
        let ids = self
            .shared
            .imports
            .directory
            .read()
            .expect("directory lock")
            .member_ids(&cluster);
        let mut removed = Err(());
        for id in ids {
            if node.remove(id).await.is_ok() {
                removed = Ok(());
            }
        }
        let issuer = self.shared.imports.issuer_of(&cluster);
        node.propose(&policy::unlink_command(&cluster, issuer))
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        let seat = match removed {
            Ok(_) => "its registry seat and ",
            Err(_) => "",
        };
        Ok(format!("removed {seat}the exports of {cluster}"))
    }

    async fn unlink_replica(&self, cluster: String, replica: String) -> Result<String, ApiError> {
        let bad = |e: causeway_trust::NameError| ApiError::bad_request(e.to_string());
        let cluster: ClusterName = cluster.parse().map_err(bad)?;
        let replica: causeway_trust::ReplicaName = replica.parse().map_err(bad)?;
        let local = &self.shared.local;
        if cluster == local.cluster && local.config.replica.as_ref() == Some(&replica) {
            return Err(ApiError::bad_request(
                "a replica cannot take itself off the list; stop it (it leaves when it drains) or run this against a sibling",
            ));
        }
        let node = self.shared.membership.node();
        let command = causeway_registry::Command::RemoveReplica {
            cluster: cluster.clone(),
            replica: Some(replica.clone()),
        };
        node.propose(&command)
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let seat = node
            .remove(causeway_registry::member_id(&cluster, Some(&replica)))
            .await
            .is_ok();
        let seat = if seat { " and its registry seat" } else { "" };
        Ok(format!(
            "took replica {cluster}/{replica}{seat} off the federation; {cluster} and its exports stay"
        ))
    }

    async fn put_export(&self, export: ExportConfig) -> Result<String, ApiError> {
        let label = format!("{}/{}", export.namespace, export.name);
        let exports = &self.shared.exports;
        if exports.in_file(&export.namespace, &export.name) {
            return Err(ApiError::bad_request(format!(
                "{label} is exported by the config file, whose exports win; change it there"
            )));
        }
        let mut candidate = self.shared.local.config.clone();
        candidate.exports = exports::with_runtime(exports, &export);
        let problems = candidate.validate();
        if !problems.is_empty() {
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(ApiError::bad_request(text.join("; ")));
        }
        let record = exports::runtime_record(&self.shared.local.cluster, &export)
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        self.change_runtime(Command::PutRuntimeExport(record))
            .await?;
        Ok(format!("exporting {label}"))
    }

    async fn delete_export(&self, namespace: String, name: String) -> Result<String, ApiError> {
        let exports = &self.shared.exports;
        let cluster = &self.shared.local.cluster;
        let node = self.shared.membership.node();
        if exports::record_lists(&node, cluster, &namespace, &name) {
            let service = causeway_registry::ServiceKey::new(&namespace, &name)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            self.change_runtime(Command::DeleteRuntimeExport {
                cluster: cluster.clone(),
                service,
            })
            .await?;
            return Ok(format!("no longer exporting {namespace}/{name}"));
        }
        // Not in the cluster's record: a copy kept from before runtime exports were
        // the cluster's (its record never listed any), or nothing.
        let removed = exports::remove_runtime(exports, &namespace, &name)
            .map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
        let Some(generation) = removed else {
            let message = if exports.in_file(&namespace, &name) {
                format!("{namespace}/{name} is exported by the config file; remove it there")
            } else {
                format!("{namespace}/{name} is not exported by this cluster")
            };
            return Err(ApiError {
                status: 404,
                message,
            });
        };
        self.wait_committed(generation).await?;
        Ok(format!("no longer exporting {namespace}/{name}"))
    }
}

/// Proposes `command`, waiting at most [`COMMIT_WAIT`]; the error says whether
/// the registry refused it (nothing changed) or did not answer in time (it may
/// still take effect).
async fn propose_within(
    node: &Node,
    command: &Command,
) -> Result<causeway_registry::Revision, ApiError> {
    match tokio::time::timeout(COMMIT_WAIT, node.propose(command)).await {
        Ok(Ok(revision)) => Ok(revision),
        Ok(Err(NodeError::Rejected(e))) => Err(ApiError::bad_request(format!(
            "the registry refused it: {e}"
        ))),
        Ok(Err(e)) => Err(ApiError::unavailable(format!(
            "not committed: {e}; nothing changed unless the registry commits it later (`causeway status` shows the cluster's exports)"
        ))),
        Err(_) => Err(ApiError::unavailable(format!(
            "not committed within {COMMIT_WAIT:?} (no quorum?); it takes effect if the registry commits it later (`causeway status` shows the cluster's exports)"
        ))),
    }
}

/// The link a peer's tunnel state shows; no state means the tunnel never needed
/// the peer.
fn link_of(state: Option<PeerState>) -> PeerLink {
    match state {
        None | Some(PeerState::Unknown) => PeerLink::NotDialed,
        Some(PeerState::Up) => PeerLink::Up,
        Some(PeerState::Down) => PeerLink::Down,
        Some(PeerState::Draining) => PeerLink::Draining,
    }
}
