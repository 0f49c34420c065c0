//! The key QUIC stateless resets are made with, kept across restarts.
//!
//! A gateway that crashes and restarts at the same address loses every
//! connection's state. A peer still sending on its old connection gets, from the
//! new process, a stateless reset (RFC 9000 §10.3), which the peer believes only
//! if its token is the one the old process issued: an HMAC of the connection ID
//! under this key. The new process also answers only connection IDs it recognises
//! as its own, signed with a key derived from this one. With the key kept in the
//! data folder, the restarted gateway's first answer ends the dead connection at
//! once: the peer redials instead of probing a connection nobody holds until its
//! probes time out.

use std::fmt;
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};

/// Bytes of key material.
const KEY_BYTES: usize = 32;

/// The stateless-reset key; its bytes are never printed.
#[derive(Clone)]
pub struct ResetKey([u8; KEY_BYTES]);

impl fmt::Debug for ResetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResetKey(..)")
    }
}

/// What [`ResetKey::load_or_create`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The file held a key.
    Loaded,
    /// There was no file: a new key was written.
    Created,
    /// The file did not hold a key (wrong length): a new key replaced it.
    Replaced,
}

impl ResetKey {
    /// A fresh random key, kept nowhere: resets then reach peers only from this
    /// process.
    pub fn random() -> Self {
        let mut key = [0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut key)
            .expect("the system random source works");
        Self(key)
    }

    /// The key in `path`, or a new one written there (mode 0600, replaced
    /// atomically) when the file is missing or does not hold a key. Fails only
    /// when the file or its folder cannot be read or written.
    pub fn load_or_create(path: &Path) -> io::Result<(Self, KeySource)> {
        let source = match std::fs::read(path) {
            Ok(bytes) => match <[u8; KEY_BYTES]>::try_from(bytes.as_slice()) {
                Ok(key) => return Ok((Self(key), KeySource::Loaded)),
                Err(_) => KeySource::Replaced,
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => KeySource::Created,
            Err(e) => return Err(e),
        };
        let key = Self::random();
        key.write(path)?;
        Ok((key, source))
    }

    fn write(&self, path: &Path) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&self.0)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// The endpoint's settings that must survive a restart for its resets to be
    /// believed: the HMAC key reset tokens are derived with, and the key its
    /// connection IDs are signed with (a packet whose ID the new process does not
    /// recognise as its own is dropped, not reset).
    pub(crate) fn endpoint_config(&self) -> quinn::EndpointConfig {
        let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0);
        let tag = ring::hmac::sign(&hmac, b"causeway connection ids");
        let mut cid_key = [0u8; 8];
        cid_key.copy_from_slice(&tag.as_ref()[..8]);
        let cid_key = u64::from_le_bytes(cid_key);
        let mut config = quinn::EndpointConfig::new(Arc::new(hmac));
        config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        config
    }
}

#[cfg(test)]
mod tests {
    use super::{KeySource, ResetKey};

    #[test]
    fn a_key_is_created_kept_and_replaced_when_damaged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data").join("tunnel-reset.key");
        let (first, source) = ResetKey::load_or_create(&path).expect("created");
        assert_eq!(source, KeySource::Created);
        let (again, source) = ResetKey::load_or_create(&path).expect("loaded");
        assert_eq!(source, KeySource::Loaded);
        assert_eq!(first.0, again.0);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, b"short").expect("damage");
        let (fresh, source) = ResetKey::load_or_create(&path).expect("replaced");
        assert_eq!(source, KeySource::Replaced);
        assert_ne!(fresh.0, first.0);
        assert_eq!(format!("{fresh:?}"), "ResetKey(..)");
    }
}
