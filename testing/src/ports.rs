//! Free loopback ports.

use anyhow::{Result, bail};

/// A loopback port free for both UDP and TCP right now (DNS and the tunnel use
/// UDP; the port is released again, so the caller binds it soon after).
pub fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP")
}
