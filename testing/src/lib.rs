//! Test support that several Causeway crates' tests share. Dev-only: no shipped
//! crate depends on it.
//!
//! - [`TestFederation`]: a trust domain in memory that issues cluster identities;
//! - [`eventually`]: waits on a condition with a deadline, never a bare sleep;
//! - [`free_port`]: a loopback port free for UDP and TCP;
//! - [`raw_connection`]: a QUIC connection to a gateway's tunnel as a peer gateway
//!   (or an attacker holding a peer's identity) opens it, to speak raw bytes;
//! - [`require_tool`]: an external tool a test needs, skipped outside CI only;
//! - [`init_logs`]: the code under test logs into the test's output.

mod certs;
mod logs;
mod ports;
mod quic;
mod tools;
mod wait;

pub use certs::TestFederation;
pub use logs::init_logs;
pub use ports::free_port;
pub use quic::raw_connection;
pub use tools::require_tool;
pub use wait::eventually;
