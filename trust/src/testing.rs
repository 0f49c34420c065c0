//! Deterministic-enough certificate setups for tests in every crate: a federation
//! built in memory, with no files and no clock tricks.

use std::sync::Arc;
use std::time::Duration;

use crate::authority::{ClusterIssuer, ISSUER_VALIDITY, LEAF_LIFETIME, ROOT_VALIDITY, RootCa};
use crate::identity::GatewayIdentity;
use crate::name::{Role, TrustDomain};

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

/// Whether an external tool a test needs (e.g. `openssl`, `dig`) is on the PATH.
///
/// Missing in CI (`CI` set), the test must fail: CI installs every tool its tests use.
/// Missing elsewhere, the test prints why it is skipped and the caller returns early.
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required in CI; .ci/run must install it"
        );
        eprintln!("skipped: {tool} is not installed (install it to run this test)");
    }
    found
}
