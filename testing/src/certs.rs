//! Deterministic-enough certificate setups for tests in every crate: a federation
//! built in memory, with no files and no clock tricks.

use std::sync::Arc;
use std::time::Duration;

use causeway_trust::{
    ClusterIssuer, GatewayIdentity, ISSUER_VALIDITY, LEAF_LIFETIME, ROOT_VALIDITY, Role, RootCa,
    TrustDomain,
};

/// A trust domain with one root, ready to issue cluster identities.
#[derive(Debug)]
pub struct TestFederation {
    root: RootCa,
}

impl Default for TestFederation {
    fn default() -> Self {
        Self::new()
    }
}

impl TestFederation {
    /// A federation in the default trust domain `causeway.local`.
    pub fn new() -> Self {
        Self::with_domain(TrustDomain::DEFAULT)
    }

    /// A federation in `domain`.
    pub fn with_domain(domain: &str) -> Self {
        let domain: TrustDomain = domain.parse().expect("test trust domains are valid");
        Self {
            root: RootCa::generate(domain, ROOT_VALIDITY).expect("root generation works"),
        }
    }

    /// The root.
    pub fn root(&self) -> &RootCa {
        &self.root
    }

    /// A fresh issuer for `cluster`.
    pub fn issuer(&self, cluster: &str) -> ClusterIssuer {
        self.root
            .issue_cluster(
                cluster.parse().expect("test cluster names are valid"),
                ISSUER_VALIDITY,
                self.root.bundle(),
            )
            .expect("issuing works")
    }

    /// A gateway identity for `cluster` with the default leaf lifetime.
    pub fn identity(&self, cluster: &str) -> Arc<GatewayIdentity> {
        self.identity_with_lifetime(cluster, LEAF_LIFETIME)
    }

    /// A gateway identity for `cluster` whose leaves live `lifetime`.
    pub fn identity_with_lifetime(
        &self,
        cluster: &str,
        lifetime: Duration,
    ) -> Arc<GatewayIdentity> {
        GatewayIdentity::new(self.issuer(cluster), Role::Gateway, lifetime).expect("minting works")
    }
}
