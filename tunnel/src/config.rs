//! Tunnel settings: one struct, parsed from TOML, checked by [`TunnelConfig::validate`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use causeway_policy::{Problem, Problems};
use serde::{Deserialize, Serialize};

/// Settings of the QUIC tunnel. Durations are in milliseconds, sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelConfig {
    /// UDP address the QUIC endpoint binds, for peers' connections and our own.
    pub listen: SocketAddr,
    /// Most streams a peer may have open on one connection at once; further
    /// openers wait for a slot (QUIC flow control), they are not refused.
    pub max_concurrent_streams: u32,
    /// Most data streams this gateway serves at once over all connections; beyond
    /// it new streams are answered `Overloaded`.
    pub max_inbound_streams: usize,
    /// Most of those one peer cluster may hold, so that one peer cannot take the
    /// whole pool; beyond it its new streams are answered `Overloaded`. At or above
    /// `max_inbound_streams` it limits nothing.
    pub max_inbound_streams_per_peer: usize,
    /// Most connections one peer cluster (by its verified identity) may hold to
    /// this gateway at once; a new one beyond it replaces the peer's oldest (dead
    /// connections of a restarted peer linger until their idle timeout). A peer
    /// keeps one, plus a second while it redials.
    pub max_connections_per_peer: u32,
    /// A connection with no traffic for this long is closed. Keep-alives and
    /// probes keep healthy connections open.
    pub idle_timeout_ms: u64,
    /// How often QUIC sends a keep-alive on an otherwise quiet connection; must be
    /// shorter than `idle_timeout_ms`.
    pub keep_alive_interval_ms: u64,
    /// Longest a QUIC handshake (and the wait for a connection when a stream
    /// needs one) may take.
    pub handshake_timeout_ms: u64,
    /// Longest to wait for a peer's answer to a stream header before trying the
    /// next peer.
    pub answer_timeout_ms: u64,
    /// An open with no answer after this long (or 4 RTTs of the slowest exporter,
    /// if longer) is raced by an open to the next exporter, within a budget of
    /// 10 % extra opens; 0 turns hedging off. Applies to imports without a
    /// traffic policy (with one, its retries apply).
    pub hedge_delay_ms: u64,
    /// Longest to wait for a TCP connection to one local endpoint before trying
    /// the next.
    pub endpoint_connect_timeout_ms: u64,
    /// Interval between probes on each peer's control stream.
    pub probe_interval_ms: u64,
    /// Consecutive unanswered probes after which a peer leaves rotation.
    pub probe_misses: u32,
    /// First delay before reconnecting to a peer after a failed attempt.
    pub reconnect_backoff_min_ms: u64,
    /// Longest delay between reconnection attempts (the delay doubles up to it).
    pub reconnect_backoff_max_ms: u64,
    /// How long a drain waits for in-flight streams before closing them.
    pub drain_timeout_ms: u64,
    /// Bytes a peer may send on one stream ahead of what we have forwarded.
    pub stream_receive_window: u64,
    /// Bytes a peer may send on one connection ahead of what we have forwarded.
    pub connection_receive_window: u64,
    /// Bytes we keep in flight (sent, not yet acknowledged) on one connection.
    pub send_window: u64,
    /// Largest splice buffer (one per direction per stream). Buffers start at
    /// 16 KiB and double while reads fill them, so only bulk streams reach it.
    pub buffer_size: usize,
    /// Requested UDP socket send and receive buffer size; the kernel may cap it.
    pub udp_buffer_size: usize,
    /// QUIC congestion controller.
    pub congestion: Congestion,
}

/// QUIC congestion controllers quinn offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Congestion {
    /// CUBIC (RFC 9438), quinn's default.
    #[default]
    Cubic,
    /// BBR (v1, experimental in quinn): paces to the measured bottleneck and
    /// does not halve on sporadic loss (UDP receive-buffer drops on a busy host).
    Bbr,
    /// NewReno (RFC 9002).
    NewReno,
}

impl std::str::FromStr for Congestion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cubic" => Ok(Congestion::Cubic),
            "bbr" => Ok(Congestion::Bbr),
            "newreno" => Ok(Congestion::NewReno),
            other => Err(format!(
                "unknown congestion controller {other:?} (cubic, bbr, newreno)"
            )),
        }
    }
}

impl Default for TunnelConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 15443)),
            max_concurrent_streams: 4096,
            max_inbound_streams: 65_536,
            // Half the pool: two busy peers can share it, no one peer can fill it.
            max_inbound_streams_per_peer: 32_768,
            max_connections_per_peer: 8,
            idle_timeout_ms: 30_000,
            keep_alive_interval_ms: 5_000,
            handshake_timeout_ms: 5_000,
            answer_timeout_ms: 5_000,
            hedge_delay_ms: 100,
            endpoint_connect_timeout_ms: 1_000,
            probe_interval_ms: 1_000,
            probe_misses: 3,
            reconnect_backoff_min_ms: 100,
            reconnect_backoff_max_ms: 1_000,
            drain_timeout_ms: 30_000,
            // 10 Gbit/s × 10 ms: a fast stream across a metro link fills it.
            stream_receive_window: 16 << 20,
            // Several such streams at once.
            connection_receive_window: 64 << 20,
            // quinn keeps up to this much unacknowledged data per connection,
            // which is most of a busy gateway's memory: 64 MiB measured 110-180
            // MiB peak RSS in the loopback benchmark, 16 MiB 70, 8 MiB 34, with
            // no throughput difference there. 16 MiB still fills 10 Gbit/s at a
            // 13 ms RTT.
            send_window: 16 << 20,
            // Measured on loopback: 64 KiB → 256 KiB → 1 MiB moved one stream
            // from 1.5 to 1.9 to 2.3 Gbit/s; 512 KiB keeps a bulk stream at ≤ 1 MiB.
            buffer_size: 512 << 10,
            udp_buffer_size: 8 << 20,
            congestion: Congestion::default(),
        }
    }
}

/// The problems [`TunnelConfig::validate`] found, each with its key path
/// (`tunnel.<key>`), in the same form as every other component's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tunnel configuration: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    /// One entry per problem.
    pub problems: Vec<Problem>,
}

/// Highest `max_connections_per_peer`: a gateway needs one or two; more than this
/// only helps a misbehaving peer hold descriptors and memory.
const MAX_CONNECTIONS_PER_PEER: u32 = 1024;

/// QUIC varints carry at most 2^62 - 1.
const MAX_VARINT: u64 = (1 << 62) - 1;

impl TunnelConfig {
    /// Checks every field and returns all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::under("tunnel");
        let mut check = |ok: bool, key: &str, what: &str| {
            if !ok {
                problems.push(key, what);
            }
        };
        self.check_limits(&mut check);
        self.check_timers(&mut check);
        self.check_windows(&mut check);
        let problems = problems.into_vec();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Stream and connection counts.
    fn check_limits(&self, check: &mut impl FnMut(bool, &str, &str)) {
        check(
            self.max_concurrent_streams > 0,
            "max_concurrent_streams",
            "must be at least 1",
        );
        check(
            self.max_inbound_streams > 0,
            "max_inbound_streams",
            "must be at least 1",
        );
        check(
            self.max_inbound_streams_per_peer > 0,
            "max_inbound_streams_per_peer",
            "must be at least 1",
        );
        check(
            (1..=MAX_CONNECTIONS_PER_PEER).contains(&self.max_connections_per_peer),
            "max_connections_per_peer",
            "must be between 1 and 1024",
        );
    }

    /// Timeouts, intervals and backoff, and how they relate.
    fn check_timers(&self, check: &mut impl FnMut(bool, &str, &str)) {
        for (key, v) in [
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("keep_alive_interval_ms", self.keep_alive_interval_ms),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("answer_timeout_ms", self.answer_timeout_ms),
            (
                "endpoint_connect_timeout_ms",
                self.endpoint_connect_timeout_ms,
            ),
            ("probe_interval_ms", self.probe_interval_ms),
            ("reconnect_backoff_min_ms", self.reconnect_backoff_min_ms),
            ("reconnect_backoff_max_ms", self.reconnect_backoff_max_ms),
        ] {
            check(v > 0, key, "must be greater than 0");
        }
        check(
            self.keep_alive_interval_ms < self.idle_timeout_ms,
            "keep_alive_interval_ms",
            "must be shorter than idle_timeout_ms",
        );
        // QUIC idle timeouts are varint milliseconds.
        check(
            self.idle_timeout_ms <= MAX_VARINT,
            "idle_timeout_ms",
            "is too large",
        );
        check(
            self.probe_interval_ms < self.idle_timeout_ms,
            "probe_interval_ms",
            "must be shorter than idle_timeout_ms",
        );
        check(self.probe_misses > 0, "probe_misses", "must be at least 1");
        check(
            self.reconnect_backoff_min_ms <= self.reconnect_backoff_max_ms,
            "reconnect_backoff_min_ms",
            "must not exceed reconnect_backoff_max_ms",
        );
    }

    /// Flow-control windows and the splice buffer.
    fn check_windows(&self, check: &mut impl FnMut(bool, &str, &str)) {
        for (key, v) in [
            ("stream_receive_window", self.stream_receive_window),
            ("connection_receive_window", self.connection_receive_window),
        ] {
            check(
                (16 << 10..=MAX_VARINT).contains(&v),
                key,
                "must be between 16 KiB and 2^62 - 1 bytes",
            );
        }
        check(
            self.stream_receive_window <= self.connection_receive_window,
            "stream_receive_window",
            "must not exceed connection_receive_window",
        );
        check(
            self.send_window >= 16 << 10,
            "send_window",
            "must be at least 16 KiB",
        );
        check(
            (4 << 10..=16 << 20).contains(&self.buffer_size),
            "buffer_size",
            "must be between 4 KiB and 16 MiB",
        );
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
    pub(crate) fn answer_timeout(&self) -> Duration {
        Duration::from_millis(self.answer_timeout_ms)
    }
    pub(crate) fn hedge_delay(&self) -> Duration {
        Duration::from_millis(self.hedge_delay_ms)
    }
    pub(crate) fn endpoint_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.endpoint_connect_timeout_ms)
    }
    pub(crate) fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.probe_interval_ms)
    }
    pub(crate) fn backoff_min(&self) -> Duration {
        Duration::from_millis(self.reconnect_backoff_min_ms)
    }
    pub(crate) fn backoff_max(&self) -> Duration {
        Duration::from_millis(self.reconnect_backoff_max_ms)
    }
    pub(crate) fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    /// The QUIC transport parameters both directions of every connection use.
    pub(crate) fn transport(&self) -> Arc<quinn::TransportConfig> {
        let varint = |v: u64| quinn::VarInt::from_u64(v).unwrap_or(quinn::VarInt::MAX);
        let mut t = quinn::TransportConfig::default();
        t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(self.max_concurrent_streams))
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
            .max_idle_timeout(quinn::IdleTimeout::try_from(self.idle_timeout()).ok())
            .keep_alive_interval(Some(Duration::from_millis(self.keep_alive_interval_ms)))
            .stream_receive_window(varint(self.stream_receive_window))
            .receive_window(varint(self.connection_receive_window))
            .send_window(self.send_window);
        match self.congestion {
            Congestion::Cubic => {}
            Congestion::Bbr => {
                t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
            }
            Congestion::NewReno => {
                t.congestion_controller_factory(Arc::new(
                    quinn::congestion::NewRenoConfig::default(),
                ));
            }
        }
        Arc::new(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        TunnelConfig::default().validate().unwrap();
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let c = TunnelConfig {
            max_concurrent_streams: 0,
            max_connections_per_peer: 0,
            max_inbound_streams_per_peer: 0,
            keep_alive_interval_ms: 40_000,
            probe_misses: 0,
            stream_receive_window: 1,
            buffer_size: 1,
            ..TunnelConfig::default()
        };
        let err = c.validate().unwrap_err();
        for key in [
            "tunnel.max_concurrent_streams",
            "tunnel.max_connections_per_peer",
            "tunnel.max_inbound_streams_per_peer",
            "tunnel.keep_alive_interval_ms",
            "tunnel.probe_misses",
            "tunnel.stream_receive_window",
            "tunnel.buffer_size",
        ] {
            assert!(
                err.problems.iter().any(|p| p.path == key),
                "{key} missing from {err}"
            );
        }
    }

    #[test]
    fn parses_from_toml_and_refuses_unknown_keys() {
        let c: TunnelConfig =
            toml::from_str("listen = \"127.0.0.1:9443\"\nprobe_interval_ms = 250\n").unwrap();
        assert_eq!(c.listen, "127.0.0.1:9443".parse().unwrap());
        assert_eq!(c.probe_interval_ms, 250);
        assert_eq!(c.probe_misses, 3);
        assert!(toml::from_str::<TunnelConfig>("probe_interval = 250\n").is_err());
    }
}
