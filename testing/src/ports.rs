//! Free loopback ports.

use anyhow::{Result, bail};

/// A loopback port free for both UDP and TCP right now (DNS and the tunnel use
/// UDP; the port is released again, so the caller binds it soon after). No port
/// is handed out twice in one process: the kernel may offer a released port
/// again at once, and two gateways of one test given the same port collide
/// (one fails to start with "Address already in use").
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && HANDED_OUT.lock().expect("ports lock").insert(port)
        {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP")
}
