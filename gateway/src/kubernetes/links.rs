//! `ClusterLink`s → registry membership, and the link's health for its status.

use std::net::SocketAddr;
use std::sync::Arc;

use causeway_k8s::controller::{LinkDriver, LinkReport, Verdict};
use causeway_trust::ClusterName;

use crate::daemon::exports::Exports;
use crate::daemon::members::Membership;
use crate::daemon::sync::Imports;
use crate::daemon::{self, Local};
use causeway_tunnel::{PeerState, Tunnel};

/// Why a link operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The peer's name is not a cluster name.
    #[error("peer {0:?} is not a cluster name: {1}")]
    BadPeer(String, causeway_trust::NameError),
    /// No registry address resolved or none accepted the join.
    #[error("joining through {addresses}: {reason}")]
    Join {
        /// The addresses tried.
        addresses: String,
        /// The last failure.
        reason: String,
    },
}

/// The gateway's membership and tunnel, as the `ClusterLink` controller's driver.
///
/// A join re-seats the member ([`daemon::link`]: this gateway, its membership, and
/// the imports and exports that start over); a probe reads the imports (which
/// clusters the catalog knows, what is imported from them), the tunnel (the peer's
/// health) and this gateway's trust bundle.
pub(crate) struct FederationLinks {
    local: Arc<Local>,
    membership: Arc<Membership>,
    imports: Arc<Imports>,
    exports: Arc<Exports>,
    tunnel: Arc<Tunnel>,
}

impl FederationLinks {
    /// The driver that links this gateway and reports on its peers.
    pub(crate) fn new(
        local: Arc<Local>,
        membership: Arc<Membership>,
        imports: Arc<Imports>,
        exports: Arc<Exports>,
        tunnel: Arc<Tunnel>,
    ) -> Self {
        Self {
            local,
            membership,
            imports,
            exports,
            tunnel,
        }
    }

    fn knows(&self, cluster: &ClusterName) -> bool {
        self.imports
            .directory
            .read()
            .expect("directory lock")
            .clusters
            .contains_key(cluster)
    }

    fn peer(peer: &str) -> Result<ClusterName, LinkError> {
        peer.parse()
            .map_err(|e| LinkError::BadPeer(peer.to_owned(), e))
    }
}

impl LinkDriver for FederationLinks {
    type Error = LinkError;

    async fn join(&self, peer: &str, registry: &[String]) -> Result<(), LinkError> {
        let peer = Self::peer(peer)?;
        // Already in one federation with the peer: nothing to do.
        if self.knows(&peer) {
            return Ok(());
        }
        let mut reason = "no address resolved".to_owned();
        for address in registry {
            let resolved: Vec<SocketAddr> = match tokio::net::lookup_host(address.as_str()).await {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    reason = format!("resolving {address}: {e}");
                    continue;
                }
            };
            for addr in resolved {
                let (local, membership) = (&self.local, &self.membership);
                match daemon::link(local, membership, &self.imports, &self.exports, addr).await {
                    Ok(_) => return Ok(()),
                    Err(e) => reason = format!("{addr}: {}", e.message),
                }
            }
        }
        Err(LinkError::Join {
            addresses: registry.join(", "),
            reason,
        })
    }

    async fn probe(&self, peer: &str) -> Result<LinkReport, LinkError> {
        let peer = Self::peer(peer)?;
        let joined = if self.knows(&peer) {
            Verdict::Passed
        } else {
            Verdict::failed(
                "NotJoined",
                format!("{peer} is not in this gateway's catalog; the join has not completed"),
            )
        };
        let ours = self.local.identity.bundle().fingerprints();
        let theirs = self
            .imports
            .directory
            .read()
            .expect("directory lock")
            .clusters
            .get(&peer)
            .map(|r| r.trust_bundle.clone());
        let stats = self
            .tunnel
            .peer_stats()
            .into_iter()
            .find(|s| s.cluster == peer);
        let trust_verified = match (&theirs, &stats) {
            (Some(theirs), _) if !theirs.is_empty() && !theirs.iter().any(|f| ours.contains(f)) => {
                Verdict::failed(
                    "BundleMismatch",
                    format!("{peer} trusts none of this cluster's roots ({ours:?} vs {theirs:?})"),
                )
            }
            (_, Some(s)) if s.state == PeerState::Up => Verdict::Passed,
            (_, Some(s)) => match &s.last_error {
                Some(e) if e.contains("certificate") || e.contains("Rejected") => {
                    Verdict::failed("CertificateRejected", e.clone())
                }
                _ => Verdict::failed(
                    "NotVerified",
                    "no handshake with the peer has completed yet".to_owned(),
                ),
            },
            (_, None) => Verdict::failed(
                "NotVerified",
                "no handshake yet: the tunnel dials a peer once a service it exports is imported"
                    .to_owned(),
            ),
        };
        let reachable = match &stats {
            Some(s) if s.state == PeerState::Up => Verdict::Passed,
            Some(s) => Verdict::failed(
                "ProbesFailing",
                s.last_error
                    .clone()
                    .unwrap_or_else(|| format!("{peer} is {:?}", s.state)),
            ),
            None => Verdict::failed(
                "NotDialled",
                format!("no service of {peer} is imported, so its tunnel is not dialled"),
            ),
        };
        let imported_services = self
            .imports
            .mirror
            .lock()
            .expect("mirror lock")
            .table()
            .imports()
            .filter(|i| i.clusters.contains_key(&peer))
            .count();
        Ok(LinkReport {
            joined,
            reachable,
            trust_verified,
            rtt_millis: stats.and_then(|s| s.rtt).map(|r| r.as_secs_f64() * 1e3),
            imported_services: u32::try_from(imported_services).unwrap_or(u32::MAX),
        })
    }

    /// Deleting a `ClusterLink` forgets the link; it does not remove the peer from
    /// the federation. Removing a cluster (and denying its issuer) is a decision for
    /// `causeway unlink CLUSTER`, not a side effect of deleting one cluster's link
    /// object (which a routine cleanup of manifests can do).
    async fn unlink(&self, peer: &str) -> Result<(), LinkError> {
        let peer = Self::peer(peer)?;
        tracing::info!(
            %peer,
            "ClusterLink deleted; the federation keeps {peer} (run `causeway unlink {peer}` to remove it)"
        );
        Ok(())
    }
}
