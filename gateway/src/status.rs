//! What a gateway reports about itself: the JSON of `/v1/status`, read by
//! `causeway status` and `causeway check`.

use serde::{Deserialize, Serialize};

/// One gateway's view of the federation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    /// This cluster.
    pub cluster: String,
    /// The federation's trust domain.
    pub trust_domain: String,
    /// Whether the gateway is ready (see `not_ready`).
    pub ready: bool,
    /// Why it is not ready, or serves stale data; empty when all is well.
    pub not_ready: Vec<String>,
    /// The leaf certificate presented now.
    pub certificate: CertificateStatus,
    /// The registry member hosted here.
    pub registry: RegistryStatus,
    /// Peer gateways and the links to them.
    pub peers: Vec<PeerStatus>,
    /// Services imported from other clusters.
    pub imports: Vec<ImportStatus>,
    /// Services this cluster exports.
    pub exports: Vec<ExportStatus>,
    /// The clusterset DNS server.
    pub dns: DnsStatus,
    /// Access policy: the federation default and what it hides here.
    #[serde(default)]
    pub access: AccessStatus,
    /// Exporting clusters that outlier detection has ejected now, per imported service.
    #[serde(default)]
    pub ejections: Vec<EjectionStatus>,
    /// Traffic policies: those in effect here, those this cluster declares, and
    /// conflicts between clusters' policies.
    #[serde(default)]
    pub traffic: TrafficStatus,
}

/// One replica of this gateway's cluster, as `/v1/replicas` reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReplicaState {
    /// `cluster/replica`, or the cluster for a single unnamed gateway.
    pub replica: String,
    /// Whether it is the gateway that answered.
    pub this: bool,
    /// Its registry member's address.
    pub registry_addr: String,
    /// The catalog revision its registry member has applied; none if it did not
    /// answer.
    pub revision: Option<u64>,
    /// Its import address pools, as its catalog record lists them.
    pub import_pools: Vec<String>,
    /// Why it could not be asked.
    pub error: Option<String>,
}

/// The gateway's current leaf.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CertificateStatus {
    /// SPIFFE ID presented.
    pub spiffe_id: String,
    /// Serial, hex.
    pub serial: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Seconds until the leaf expires.
    pub expires_in_seconds: i64,
    /// Seconds until the issuer (the cluster's intermediate CA) expires.
    pub issuer_expires_in_seconds: i64,
    /// SHA-256 fingerprints of the roots in the trust bundle.
    pub bundle_fingerprints: Vec<String>,
}

/// The registry member hosted by this gateway.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RegistryStatus {
    /// This member's id.
    pub member_id: u64,
    /// The leader's id, if one is known.
    pub leader_id: Option<u64>,
    /// Raft term.
    pub term: u64,
    /// Highest log index known committed.
    pub commit_index: u64,
    /// Highest log index applied to the catalog here.
    pub applied_index: u64,
    /// Catalog revision applied here.
    pub revision: u64,
    /// Whether a quorum of voters is reachable from here.
    pub has_quorum: bool,
    /// Registry members.
    pub members: Vec<MemberStatus>,
}

/// One registry member.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemberStatus {
    /// Member id.
    pub id: u64,
    /// The cluster hosting it.
    pub cluster: String,
    /// Its gRPC address.
    pub address: String,
    /// Voter (true) or learner.
    pub voter: bool,
    /// Highest log index known replicated to it (leader's view).
    pub matched: Option<u64>,
}

/// How this gateway's tunnel stands with a peer.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PeerLink {
    /// No connection has been needed: this gateway imports nothing from the peer,
    /// or no client has used what it imports. Connections open on first use.
    #[default]
    NotDialed,
    /// Probes pass.
    Up,
    /// Probes failed or the connection was lost: out of rotation.
    Down,
    /// The peer announced a drain (a deliberate stop).
    Draining,
}

impl PeerLink {
    /// The state as `causeway status` shows it.
    pub fn label(self) -> &'static str {
        match self {
            PeerLink::NotDialed => "not dialed",
            PeerLink::Up => "up",
            PeerLink::Down => "down",
            PeerLink::Draining => "draining",
        }
    }
}

/// One peer gateway.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// Peer cluster.
    pub cluster: String,
    /// Which replica of the cluster's gateway this row is; absent for an unnamed
    /// single gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Its tunnel address.
    pub gateway_address: String,
    /// Whether new streams may go to the peer: probes pass, or it has not been
    /// dialed yet.
    pub alive: bool,
    /// How the tunnel stands with the peer.
    #[serde(default)]
    pub link: PeerLink,
    /// Smoothed RTT, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Median probe RTT, milliseconds.
    pub rtt_p50_ms: Option<f64>,
    /// 99th-percentile probe RTT, milliseconds.
    pub rtt_p99_ms: Option<f64>,
    /// Streams open now.
    pub streams_active: u64,
    /// Streams opened since start.
    pub streams_total: u64,
    /// Bytes sent to the peer.
    pub bytes_sent: u64,
    /// Bytes received from the peer.
    pub bytes_received: u64,
    /// The last error on the link, if any.
    pub last_error: Option<String>,
    /// Services the peer exports.
    pub exports: u64,
    /// SHA-256 fingerprints of the roots the peer trusts, as it registered them.
    pub bundle_fingerprints: Vec<String>,
}

impl PeerStatus {
    /// The peer as people name it: `cluster`, or `cluster/replica`.
    pub fn label(&self) -> String {
        match &self.replica {
            Some(r) => format!("{}/{r}", self.cluster),
            None => self.cluster.clone(),
        }
    }
}

/// One imported service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImportStatus {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Local address clients connect to.
    pub address: String,
    /// Service ports.
    pub ports: Vec<u16>,
    /// Exporting clusters.
    pub clusters: Vec<String>,
    /// Whether a listener is bound for every port.
    pub listening: bool,
    /// The DNS name that resolves to `address`.
    pub dns_name: String,
}

/// One exported service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExportStatus {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Service ports.
    pub ports: Vec<u16>,
    /// Number of endpoints.
    pub endpoints: usize,
    /// Where the export comes from.
    #[serde(default)]
    pub source: ExportSource,
}

/// Where an export comes from.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExportSource {
    /// The config file's `[[export]]`; a reload changes it.
    #[default]
    File,
    /// `causeway export` (the admin API) through any replica: the cluster's,
    /// listed in its catalog record (and copied to the data folder) across
    /// restarts and reloads until `causeway unexport` through any replica.
    Cli,
    /// A Kubernetes `ServiceExport`.
    Kubernetes,
}

impl ExportSource {
    /// The source as `causeway status` shows it.
    pub fn label(self) -> &'static str {
        match self {
            ExportSource::File => "file",
            ExportSource::Cli => "cli",
            ExportSource::Kubernetes => "kubernetes",
        }
    }
}

/// The DNS server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DnsStatus {
    /// Listen address (UDP and TCP).
    pub listen: String,
    /// Zone served.
    pub zone: String,
}

/// Access policy as this gateway applies it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AccessStatus {
    /// The federation's default for traffic no policy matches: `allow` or `deny`.
    pub default: String,
    /// Where the default comes from: the catalog (`federation`) or, until a gateway
    /// records it there, this gateway's config.
    pub default_source: String,
    /// `new` (policy changes apply to new streams) or `all` (open streams too).
    pub enforce: String,
    /// Names of the policies in force (the catalog's and this gateway's own).
    pub policies: Vec<String>,
    /// Fingerprints of cluster issuers the federation no longer trusts.
    pub denied_issuers: Vec<String>,
    /// Exports of other clusters this cluster may not use, so not imported here.
    pub hidden_imports: Vec<HiddenImport>,
}

/// An export the access policy does not let this cluster use.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HiddenImport {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// The exporting cluster.
    pub cluster: String,
    /// Which policy (or the default) denies it, per port.
    pub reason: String,
}

/// One cluster ejected for one imported service by its traffic policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EjectionStatus {
    /// `namespace/name` of the imported service.
    pub service: String,
    /// The ejected cluster.
    pub cluster: String,
    /// Seconds until it returns to rotation.
    pub remaining_seconds: f64,
    /// Ejections in a row, this one included.
    pub ejections: u32,
}

/// Traffic policies as this gateway sees them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrafficStatus {
    /// The policy each imported service follows here (`apply_to` left empty).
    pub in_effect: Vec<TrafficPolicyStatus>,
    /// The policies this cluster declares and publishes to the catalog.
    pub declared: Vec<TrafficPolicyStatus>,
    /// Other clusters' policies that apply here but are not followed.
    pub conflicts: Vec<TrafficConflictStatus>,
}

/// One traffic policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrafficPolicyStatus {
    /// `namespace/name` of the imported service.
    pub service: String,
    /// Where it comes from: `file`, `kubernetes` or `catalog:<owning cluster>`.
    pub source: String,
    /// Its routing in short, e.g. `weighted west=90,east=10` or `pinned east`.
    pub routing: String,
    /// The clusters it applies to (`*` for all); empty for policies in effect.
    #[serde(default)]
    pub apply_to: Vec<String>,
}

/// A policy that applies to this cluster but lost to another.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrafficConflictStatus {
    /// `namespace/name` of the imported service.
    pub service: String,
    /// The cluster that declared the policy not followed.
    pub owner: String,
    /// The source of the policy followed instead (see [`TrafficPolicyStatus::source`]),
    /// or `none: <why>` when the policy may not apply (its owner does not export the
    /// service).
    pub followed: String,
}
