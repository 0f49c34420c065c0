//! The names of the objects `causeway install` creates, shared by the manifests that
//! create them and the resource validation that refers to them (a `ClusterLink` may
//! name only the join token Secret, in the gateway's namespace). Re-exported from
//! `manifests`.

/// The namespace the gateway runs in.
pub const NAMESPACE: &str = "causeway-system";
/// Name of the gateway's Deployment, ServiceAccount, RBAC objects and tunnel Service.
pub const GATEWAY: &str = "causeway-gateway";
/// Name of the ConfigMap holding `gateway.toml`.
pub const CONFIG_MAP: &str = "causeway-gateway-config";
/// Name of the Secret holding the cluster issuer (`issuer.pem`, `issuer.key`,
/// `bundle.pem`).
pub const TRUST_SECRET: &str = "causeway-trust";
/// Name of the Secret a join token may be stored in (`causeway token create` output,
/// key `token`); the only other Secret the gateway may read.
pub const JOIN_TOKEN_SECRET: &str = "causeway-join-token";
/// Name of the clusterset DNS Service (`clusterset.local`).
pub const DNS_SERVICE: &str = "causeway-dns";
/// Name of the admin (metrics, health, status) Service.
pub const ADMIN_SERVICE: &str = "causeway-admin";
/// Name of the Lease the gateway replicas elect the controllers' single writer with
/// (in the gateway's namespace).
pub const CONTROLLER_LEASE: &str = "causeway-gateway-controllers";
