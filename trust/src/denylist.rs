//! Cluster issuers a federation no longer trusts: unlinking a cluster puts its issuer's
//! fingerprint here, and every verifier sharing the list refuses chains through it
//! from the next handshake on.
//!
//! The list itself is replicated by the registry; this module only holds the current
//! copy and tells connection owners when it changed, so they can close connections
//! that were established before the issuer was denied.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::authority::ClusterIssuer;

// === IssuerFingerprint ===

/// The SHA-256 of a cluster issuer certificate's DER, written as 64 lowercase hex
/// digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IssuerFingerprint([u8; 32]);

impl IssuerFingerprint {
    /// The fingerprint of an issuer certificate.
    pub fn of(cert: &CertificateDer<'_>) -> Self {
        Self(Sha256::digest(cert.as_ref()).into())
    }

    /// The fingerprint of `issuer`'s certificate.
    pub fn of_issuer(issuer: &ClusterIssuer) -> Self {
        Self::of(issuer.cert())
    }

    /// The fingerprint of the issuer in a presented chain (leaf first, then the
    /// cluster issuer), as a verified handshake leaves it (quinn's `peer_identity`,
    /// tokio-rustls' `peer_certificates`). `None` when the chain has no issuer.
    pub fn of_peer_chain(chain: &[CertificateDer<'_>]) -> Option<Self> {
        chain.get(1).map(Self::of)
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for IssuerFingerprint {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for IssuerFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for IssuerFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuerFingerprint({self})")
    }
}

/// Why text is not an issuer fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a SHA-256 fingerprint (64 lowercase hex digits)")]
pub struct BadFingerprint {
    /// The text, cut to 80 bytes.
    pub value: String,
}

impl FromStr for IssuerFingerprint {
    type Err = BadFingerprint;
    fn from_str(s: &str) -> Result<Self, BadFingerprint> {
        let bad = || BadFingerprint {
            value: s.chars().take(80).collect(),
        };
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| bad())?;
        Ok(Self(bytes))
    }
}

// === IssuerDenylist ===

/// A shared, swappable set of denied issuer fingerprints.
///
/// Clones share one set: the registry replaces it when a `DenyIssuer` commits, and
/// every [`SpiffeVerifier`](crate::SpiffeVerifier) built with it refuses chains through
/// a listed issuer with [`PeerRejected::DeniedIssuer`](crate::PeerRejected::DeniedIssuer).
/// [`IssuerDenylist::changes`] lets connection owners re-check open connections.
#[derive(Clone)]
pub struct IssuerDenylist {
    set: Arc<ArcSwap<HashSet<IssuerFingerprint>>>,
    version: Arc<watch::Sender<u64>>,
}

impl Default for IssuerDenylist {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for IssuerDenylist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerDenylist")
            .field("denied", &self.set.load().len())
            .finish()
    }
}

impl IssuerDenylist {
    /// An empty list.
    pub fn new() -> Self {
        Self {
            set: Arc::new(ArcSwap::from_pointee(HashSet::new())),
            version: Arc::new(watch::channel(0).0),
        }
    }

    /// Replaces the whole list (the registry's current denylist) and, if it changed,
    /// notifies [`IssuerDenylist::changes`] subscribers.
    pub fn replace(&self, fingerprints: impl IntoIterator<Item = IssuerFingerprint>) {
        let new: HashSet<IssuerFingerprint> = fingerprints.into_iter().collect();
        if **self.set.load() == new {
            return;
        }
        self.set.store(Arc::new(new));
        self.version.send_modify(|v| *v += 1);
    }

    /// Adds one fingerprint.
    pub fn insert(&self, fingerprint: IssuerFingerprint) {
        let current = self.set.load();
        if current.contains(&fingerprint) {
            return;
        }
        let mut new = HashSet::clone(&current);
        new.insert(fingerprint);
        self.replace(new);
    }

    /// Whether `fingerprint` is denied.
    pub fn contains(&self, fingerprint: &IssuerFingerprint) -> bool {
        self.set.load().contains(fingerprint)
    }

    /// The first denied certificate among a presented chain's intermediates (every
    /// certificate after the leaf), if any. Checking all of them, not only the one a
    /// verified path used, means padding a chain with extra certificates changes
    /// nothing.
    pub fn denied_in_chain(&self, chain: &[CertificateDer<'_>]) -> Option<IssuerFingerprint> {
        let set = self.set.load();
        if set.is_empty() {
            return None;
        }
        chain
            .iter()
            .skip(1)
            .map(IssuerFingerprint::of)
            .find(|fp| set.contains(fp))
    }

    /// How many issuers are denied.
    pub fn len(&self) -> usize {
        self.set.load().len()
    }

    /// Whether no issuer is denied.
    pub fn is_empty(&self) -> bool {
        self.set.load().is_empty()
    }

    /// A receiver whose value changes every time the list does.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_text_round_trips_and_rejects_bad_text() {
        let fp = IssuerFingerprint::from([0xab; 32]);
        assert_eq!(fp.to_string(), "ab".repeat(32));
        assert_eq!(fp.to_string().parse::<IssuerFingerprint>().unwrap(), fp);
        for bad in [
            "",
            "AB".repeat(32).as_str(),
            &"a".repeat(63),
            &"g".repeat(64),
        ] {
            assert!(bad.parse::<IssuerFingerprint>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn replace_notifies_only_on_change() {
        let list = IssuerDenylist::new();
        let mut changes = list.changes();
        let fp = IssuerFingerprint::from([1; 32]);
        list.replace([fp]);
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        assert!(list.contains(&fp));
        list.replace([fp]);
        assert!(!changes.has_changed().unwrap());
        list.clone().replace([]);
        assert!(changes.has_changed().unwrap());
        assert!(list.is_empty());
    }
}
