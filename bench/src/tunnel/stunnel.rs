//! The stunnel4 path: a throw-away CA and leaves, a server and a client stunnel
//! speaking mutual TLS 1.3 between them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};
use causeway_testing::free_port;

use super::{Path_, TunnelBenchArgs, wait_for_echo};

/// A CA and two leaves (server, client) as PEM files in `dir`.
fn write_certs(dir: &Path) -> Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "causeway bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    for (name, usage) in [
        ("server", ExtendedKeyUsagePurpose::ServerAuth),
        ("client", ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("bench {name}"));
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca)?;
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem())?;
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem())?;
    }
    Ok(())
}

/// Starts the two stunnels in front of `sink` and `echo`, and waits until they relay.
pub(super) fn start_stunnel(
    args: &TunnelBenchArgs,
    dir: &Path,
    sink: SocketAddr,
    echo: SocketAddr,
) -> Result<Path_> {
    write_certs(dir)?;
    let d = dir.display();
    let common = |role: &str| {
        format!(
            "foreground = yes\npid =\ndebug = 3\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n\
             sslVersionMin = TLSv1.3\nCAfile = {d}/ca.pem\nverifyChain = yes\n\
             cert = {d}/{role}.pem\nkey = {d}/{role}.key\n"
        )
    };
    let (tls_sink, tls_echo) = (free_port()?, free_port()?);
    let (in_sink, in_echo) = (free_port()?, free_port()?);
    let server = format!(
        "{}[sink]\naccept = 127.0.0.1:{tls_sink}\nconnect = {sink}\n[echo]\naccept = 127.0.0.1:{tls_echo}\nconnect = {echo}\n",
        common("server")
    );
    let client = format!(
        "{}client = yes\n[sink]\naccept = 127.0.0.1:{in_sink}\nconnect = 127.0.0.1:{tls_sink}\n[echo]\naccept = 127.0.0.1:{in_echo}\nconnect = 127.0.0.1:{tls_echo}\n",
        common("client")
    );
    std::fs::write(dir.join("server.conf"), server)?;
    std::fs::write(dir.join("client.conf"), client)?;
    let spawn = |conf: &str| -> Result<Child> {
        Command::new(&args.stunnel)
            .arg(dir.join(conf))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "start {} (Debian package stunnel4; or pass --skip-stunnel)",
                    args.stunnel
                )
            })
    };
    let path = Path_ {
        name: "stunnel",
        sink: SocketAddr::from(([127, 0, 0, 1], in_sink)),
        echo: SocketAddr::from(([127, 0, 0, 1], in_echo)),
        processes: vec![spawn("server.conf")?, spawn("client.conf")?],
    };
    wait_for_echo(path.echo)?;
    Ok(path)
}
