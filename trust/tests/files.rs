//! Loading authorities from disk: every operator mistake gets an error that names the
//! file and the problem.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use causeway_trust::{
    ClusterIssuer, ISSUER_VALIDITY, ROOT_VALIDITY, Role, RootCa, TrustBundle, TrustError, ca_files,
    issuer_files,
};
use time::OffsetDateTime;

fn setup(dir: &Path) -> Result<RootCa> {
    let root = RootCa::generate("causeway.local".parse()?, ROOT_VALIDITY)?;
    root.write_new(&dir.join("ca"), false)?;
    let issuer = root.issue_cluster("west".parse()?, ISSUER_VALIDITY, root.bundle())?;
    issuer.write(&dir.join("west"), false)?;
    Ok(root)
}

#[test]
fn a_written_issuer_loads_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    setup(dir.path())?;
    let issuer = ClusterIssuer::load(&dir.path().join("west"))?;
    assert_eq!(issuer.cluster().as_str(), "west");
    assert_eq!(issuer.trust_domain().as_str(), "causeway.local");
    let leaf = issuer.mint(Role::Gateway, Duration::from_secs(3600))?;
    assert_eq!(
        leaf.info.spiffe_id.unwrap().to_string(),
        "spiffe://causeway.local/cluster/west/gateway"
    );
    Ok(())
}

#[cfg(unix)]
#[test]
fn keys_are_written_owner_only_and_files_are_not_overwritten() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let root = setup(dir.path())?;
    for key in [
        dir.path().join("ca").join(ca_files::ROOT_KEY),
        dir.path().join("west").join(issuer_files::ISSUER_KEY),
    ] {
        let mode = std::fs::metadata(&key)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    let err = root.write_new(&dir.path().join("ca"), false).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    root.write_new(&dir.path().join("ca"), true)?;
    Ok(())
}

#[test]
fn a_key_that_does_not_match_is_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = setup(dir.path())?;
    let other = root.issue_cluster("east".parse()?, ISSUER_VALIDITY, root.bundle())?;
    other.write(&dir.path().join("east"), false)?;
    std::fs::copy(
        dir.path().join("east").join(issuer_files::ISSUER_KEY),
        dir.path().join("west").join(issuer_files::ISSUER_KEY),
    )?;
    let err = ClusterIssuer::load(&dir.path().join("west")).unwrap_err();
    assert!(matches!(err, TrustError::KeyMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("issuer.key does not match"),
        "{err}"
    );
    Ok(())
}

#[test]
fn unreadable_pem_is_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    setup(dir.path())?;
    let cert = dir.path().join("west").join(issuer_files::ISSUER_CERT);
    std::fs::write(&cert, "not a certificate\n")?;
    let err = ClusterIssuer::load(&dir.path().join("west")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("issuer.pem") && text.contains("unreadable PEM"),
        "{text}"
    );
    Ok(())
}

#[test]
fn an_issuer_that_is_not_a_ca_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    setup(dir.path())?;
    let issuer = ClusterIssuer::load(&dir.path().join("west"))?;
    let leaf = issuer.mint(Role::Gateway, Duration::from_secs(3600))?;
    leaf.write(&dir.path().join("leaf"), false)?;
    let west = dir.path().join("west");
    std::fs::copy(
        dir.path().join("leaf/leaf.pem"),
        west.join(issuer_files::ISSUER_CERT),
    )?;
    std::fs::copy(
        dir.path().join("leaf/leaf.key"),
        west.join(issuer_files::ISSUER_KEY),
    )?;
    let err = ClusterIssuer::load(&west).unwrap_err();
    assert!(matches!(err, TrustError::NotACa { .. }), "{err}");
    assert!(err.to_string().contains("not a CA"), "{err}");
    Ok(())
}

#[test]
fn expired_and_not_yet_valid_issuers_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = setup(dir.path())?;
    let now = OffsetDateTime::now_utc();
    let hour = Duration::from_secs(3600);
    let expired =
        root.issue_cluster_between("west".parse()?, now - hour * 2, now - hour, root.bundle())?;
    expired.write(&dir.path().join("expired"), false)?;
    let err = ClusterIssuer::load(&dir.path().join("expired")).unwrap_err();
    assert!(matches!(err, TrustError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("expired at"), "{err}");

    let future =
        root.issue_cluster_between("west".parse()?, now + hour, now + hour * 2, root.bundle())?;
    future.write(&dir.path().join("future"), false)?;
    let err = ClusterIssuer::load(&dir.path().join("future")).unwrap_err();
    assert!(matches!(err, TrustError::NotYetValid { .. }), "{err}");
    Ok(())
}

#[test]
fn an_issuer_from_another_root_is_untrusted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    setup(dir.path())?;
    let foreign = RootCa::generate("causeway.local".parse()?, ROOT_VALIDITY)?;
    foreign.write_new(&dir.path().join("foreign"), false)?;
    std::fs::copy(
        dir.path().join("foreign").join(ca_files::BUNDLE),
        dir.path().join("west").join(issuer_files::BUNDLE),
    )?;
    let err = ClusterIssuer::load(&dir.path().join("west")).unwrap_err();
    assert!(matches!(err, TrustError::Untrusted { .. }), "{err}");
    Ok(())
}

#[test]
fn rotation_keeps_old_issuers_verifying_until_pruned() -> Result<()> {
    let dir = tempfile::tempdir()?;
    setup(dir.path())?;
    let ca = dir.path().join("ca");
    let rotation = RootCa::rotate(&ca, ROOT_VALIDITY)?;
    assert_ne!(rotation.old_fingerprint, rotation.new_fingerprint);
    let bundle = TrustBundle::load(&ca.join(ca_files::BUNDLE))?;
    assert_eq!(bundle.roots().len(), 2);
    assert!(ca.join("retired").read_dir()?.count() >= 2);

    // The old issuer verifies against the rotated bundle.
    let west = dir.path().join("west");
    std::fs::copy(ca.join(ca_files::BUNDLE), west.join(issuer_files::BUNDLE))?;
    ClusterIssuer::load(&west)?;
    // A new issuer from the new root verifies too.
    let new_root = RootCa::load(&ca)?;
    let fresh = new_root.issue_cluster("east".parse()?, ISSUER_VALIDITY, bundle)?;
    fresh.write(&dir.path().join("east"), false)?;
    ClusterIssuer::load(&dir.path().join("east"))?;

    // After pruning, only the new root remains: the old issuer no longer verifies.
    let pruned = RootCa::prune(&ca)?;
    assert_eq!(pruned.roots().len(), 1);
    std::fs::copy(ca.join(ca_files::BUNDLE), west.join(issuer_files::BUNDLE))?;
    let err = ClusterIssuer::load(&west).unwrap_err();
    assert!(matches!(err, TrustError::Untrusted { .. }), "{err}");
    Ok(())
}
