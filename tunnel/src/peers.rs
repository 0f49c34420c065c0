//! Peer health and peer choice, sans-IO.
//!
//! [`PeerHealth`] is the probe state machine of one peer connection: the driver
//! tells it when a probe is due, when an answer arrived, when the connection came
//! and went; it keeps the RTT estimate and says whether the peer is in rotation.
//! [`rank`] orders the peers exporting a service for a new stream.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Where a peer stands in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Never probed: no connection has been needed yet. Tried after healthy peers.
    Unknown,
    /// Probes pass.
    Up,
    /// Probes failed or the connection was lost; out of rotation until a probe
    /// passes again.
    Down,
    /// The peer announced a drain; out of rotation until it reconnects.
    Draining,
}

impl PeerState {
    /// Whether new streams may go to a peer in this state.
    pub fn in_rotation(self) -> bool {
        matches!(self, PeerState::Up | PeerState::Unknown)
    }
}

/// Weight of a new sample in the RTT average (1/8, as TCP's SRTT, RFC 6298).
const RTT_GAIN: f64 = 0.125;

/// RTT samples kept per peer for percentiles: about four minutes at one probe a
/// second, enough for a stable p99 without unbounded memory.
const RTT_SAMPLES: usize = 256;

/// The probe state machine of one peer.
#[derive(Debug, Clone)]
pub struct PeerHealth {
    misses_allowed: u32,
    state: PeerState,
    rtt: Option<Duration>,
    /// The latest RTT samples, oldest first, for percentiles in status.
    samples: VecDeque<Duration>,
    /// Probes sent and not answered yet, oldest first.
    outstanding: VecDeque<(u64, Instant)>,
    next_seq: u64,
    missed: u32,
}

/// What changed after an input, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing a caller needs to act on.
    None,
    /// The peer entered rotation.
    Up,
    /// The peer left rotation.
    Down,
}

impl PeerHealth {
    /// A peer that leaves rotation after `misses_allowed` unanswered probes in a row.
    pub fn new(misses_allowed: u32) -> Self {
        Self {
            misses_allowed: misses_allowed.max(1),
            state: PeerState::Unknown,
            rtt: None,
            samples: VecDeque::with_capacity(RTT_SAMPLES),
            outstanding: VecDeque::new(),
            next_seq: 1,
            missed: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// The smoothed RTT, once a probe has been answered.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Unanswered probes in a row.
    pub fn missed(&self) -> u32 {
        self.missed
    }

    /// A new connection to the peer is up. A draining peer that reconnects has
    /// finished draining (or restarted), so it may come back once probes pass.
    pub fn on_connected(&mut self) {
        self.outstanding.clear();
        self.missed = 0;
        if self.state == PeerState::Draining {
            self.state = PeerState::Down;
        }
    }

    /// A probe is due at `now`: returns its sequence number and whether the peer
    /// just left rotation because the previous probes went unanswered.
    pub fn on_probe_due(&mut self, now: Instant) -> (u64, Transition) {
        let mut transition = Transition::None;
        if !self.outstanding.is_empty() {
            self.missed = self.missed.saturating_add(1);
            if self.missed >= self.misses_allowed && self.state.in_rotation() {
                self.state = PeerState::Down;
                transition = Transition::Down;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outstanding.push_back((seq, now));
        // Answers older than the miss window no longer matter.
        while self.outstanding.len() > self.misses_allowed as usize + 1 {
            self.outstanding.pop_front();
        }
        (seq, transition)
    }

    /// The `q`-quantile (0.0-1.0) of the latest RTT samples.
    pub fn rtt_quantile(&self, q: f64) -> Option<Duration> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<Duration> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        let rank = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        Some(sorted[rank])
    }

    /// A probe is due but the timer fired late: this process was starved of CPU,
    /// so the peer had no fair chance to answer in time. Returns the new probe's
    /// sequence number without counting the previous one as missed.
    pub fn on_probe_late(&mut self, now: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outstanding.push_back((seq, now));
        while self.outstanding.len() > self.misses_allowed as usize + 1 {
            self.outstanding.pop_front();
        }
        seq
    }

    /// The answer to probe `seq` arrived at `now`. Returns the RTT sample (if the
    /// probe was ours and still tracked) and whether the peer entered rotation.
    pub fn on_ack(&mut self, seq: u64, now: Instant) -> (Option<Duration>, Transition) {
        let Some(pos) = self.outstanding.iter().position(|&(s, _)| s == seq) else {
            return (None, Transition::None);
        };
        let sent = self.outstanding[pos].1;
        // Older probes are answered by this one: the peer is alive.
        self.outstanding.drain(..=pos);
        let sample = now.saturating_duration_since(sent);
        if self.samples.len() == RTT_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        self.rtt = Some(match self.rtt {
            None => sample,
            Some(avg) => avg.mul_f64(1.0 - RTT_GAIN) + sample.mul_f64(RTT_GAIN),
        });
        self.missed = 0;
        let transition = match self.state {
            PeerState::Up | PeerState::Draining => Transition::None,
            PeerState::Unknown | PeerState::Down => {
                self.state = PeerState::Up;
                Transition::Up
            }
        };
        (Some(sample), transition)
    }

    /// The connection was lost or closed.
    pub fn on_connection_lost(&mut self) -> Transition {
        self.outstanding.clear();
        self.missed = 0;
        match self.state {
            PeerState::Up | PeerState::Unknown => {
                self.state = PeerState::Down;
                Transition::Down
            }
            PeerState::Down | PeerState::Draining => Transition::None,
        }
    }

    /// The peer announced that it is draining.
    pub fn on_drain(&mut self) -> Transition {
        let was_in = self.state.in_rotation();
        self.state = PeerState::Draining;
        if was_in {
            Transition::Down
        } else {
            Transition::None
        }
    }
}

/// What [`rank`] needs to know about one exporting peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Where the peer stands.
    pub state: PeerState,
    /// Its smoothed RTT, if measured.
    pub rtt: Option<Duration>,
    /// Its configured weight; higher is preferred among equals.
    pub weight: u32,
    /// Whether a connection to it is open now.
    pub connected: bool,
}

/// RTTs within this much of the best (or [`RTT_TIE_FLOOR`], whichever is larger)
/// count as a tie: jitter of a few per cent should not flap the choice, and on a
/// LAN every peer is "equally near".
const RTT_TIE_FRACTION: f64 = 0.2;
/// See [`RTT_TIE_FRACTION`].
const RTT_TIE_FLOOR: Duration = Duration::from_millis(1);

/// Orders candidates for a new stream and returns their indices, best first.
///
/// Healthy peers come first: those whose RTT ties with the lowest (see
/// [`RTT_TIE_FRACTION`]) by weight, then the rest by RTT. Peers never probed
/// follow by weight (a connection to them is opened on demand). Peers out of
/// rotation are left out, except when no peer is in rotation: then peers that
/// are `Down` for unanswered probes but still connected are tried by weight (a
/// slow peer beats none; Envoy's "panic mode" does the same).
pub fn rank(candidates: &[Candidate]) -> Vec<usize> {
    let order = rank_in_rotation(candidates);
    if !order.is_empty() {
        return order;
    }
    let mut slow: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].state == PeerState::Down && candidates[i].connected)
        .collect();
    slow.sort_by_key(|&i| u32::MAX - candidates[i].weight);
    slow
}

fn rank_in_rotation(candidates: &[Candidate]) -> Vec<usize> {
    let best = candidates
        .iter()
        .filter(|c| c.state == PeerState::Up)
        .filter_map(|c| c.rtt)
        .min();
    let tie_limit = best.map(|b| b + b.mul_f64(RTT_TIE_FRACTION).max(RTT_TIE_FLOOR));
    // (tier, key): lower sorts first.
    let key = |c: &Candidate| -> (u8, u128, u32) {
        let rtt = c.rtt.map_or(u128::MAX, |r| r.as_nanos());
        match c.state {
            PeerState::Up => match (c.rtt, tie_limit) {
                (Some(r), Some(limit)) if r <= limit => (0, 0, u32::MAX - c.weight),
                _ => (1, rtt, u32::MAX - c.weight),
            },
            _ => (2, 0, u32::MAX - c.weight),
        }
    };
    let mut order: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].state.in_rotation())
        .collect();
    order.sort_by_key(|&i| {
        let (tier, a, b) = key(&candidates[i]);
        // Within a tie, the lower RTT breaks equal weights.
        let tiebreak = candidates[i].rtt.map_or(u128::MAX, |r| r.as_nanos());
        (tier, a, b, tiebreak)
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn a_peer_leaves_rotation_after_the_allowed_misses_and_returns_on_an_answer() {
        let t0 = Instant::now();
        let mut h = PeerHealth::new(3);
        assert_eq!(h.state(), PeerState::Unknown);
        let (s1, tr) = h.on_probe_due(t0);
        assert_eq!(tr, Transition::None);
        assert_eq!(h.on_ack(s1, t0 + ms(2)), (Some(ms(2)), Transition::Up));
        assert_eq!(h.state(), PeerState::Up);

        // Probe 2 is sent; 3, 4 find it unanswered (misses 1, 2); 5 is the third miss.
        let mut now = t0 + ms(1000);
        let mut last = 0;
        for expected in [Transition::None, Transition::None, Transition::None] {
            let (seq, tr) = h.on_probe_due(now);
            assert_eq!(tr, expected);
            last = seq;
            now += ms(1000);
        }
        assert_eq!(h.missed(), 2);
        let (_, tr) = h.on_probe_due(now);
        assert_eq!(tr, Transition::Down);
        assert_eq!(h.state(), PeerState::Down);
        assert!(!h.state().in_rotation());

        // A late answer to an earlier probe still proves the peer alive.
        let (_, tr) = h.on_ack(last, now + ms(5));
        assert_eq!(tr, Transition::Up);
        assert_eq!(h.missed(), 0);
    }

    #[test]
    fn late_timers_do_not_count_misses() {
        let t0 = Instant::now();
        let mut h = PeerHealth::new(2);
        let (s, _) = h.on_probe_due(t0);
        h.on_ack(s, t0);
        h.on_probe_due(t0);
        for _ in 0..5 {
            h.on_probe_late(t0);
        }
        assert_eq!(h.missed(), 0);
        assert_eq!(h.state(), PeerState::Up);
        // A late probe's answer counts like any other.
        let seq = h.on_probe_late(t0);
        assert_eq!(h.on_ack(seq, t0 + ms(3)).0, Some(ms(3)));
    }

    #[test]
    fn unknown_and_foreign_acks_change_nothing() {
        let t0 = Instant::now();
        let mut h = PeerHealth::new(3);
        assert_eq!(h.on_ack(42, t0), (None, Transition::None));
        let (seq, _) = h.on_probe_due(t0);
        h.on_ack(seq, t0 + ms(1));
        // A duplicate answer is ignored.
        assert_eq!(h.on_ack(seq, t0 + ms(9)), (None, Transition::None));
        assert_eq!(h.rtt(), Some(ms(1)));
    }

    #[test]
    fn rtt_is_smoothed() {
        let t0 = Instant::now();
        let mut h = PeerHealth::new(3);
        let (s, _) = h.on_probe_due(t0);
        h.on_ack(s, t0 + ms(8));
        let (s, _) = h.on_probe_due(t0 + ms(1000));
        h.on_ack(s, t0 + ms(1000) + ms(16));
        // 8 * 7/8 + 16 / 8 = 9 ms.
        assert_eq!(h.rtt(), Some(ms(9)));
    }

    #[test]
    fn losing_the_connection_takes_the_peer_out_and_a_drain_keeps_it_out() {
        let t0 = Instant::now();
        let mut h = PeerHealth::new(3);
        let (s, _) = h.on_probe_due(t0);
        h.on_ack(s, t0);
        assert_eq!(h.on_connection_lost(), Transition::Down);
        assert_eq!(h.on_connection_lost(), Transition::None);
        h.on_connected();
        let (s, _) = h.on_probe_due(t0);
        assert_eq!(h.on_ack(s, t0).1, Transition::Up);

        assert_eq!(h.on_drain(), Transition::Down);
        let (s, _) = h.on_probe_due(t0);
        // Probes on the draining connection do not bring it back.
        assert_eq!(h.on_ack(s, t0).1, Transition::None);
        assert_eq!(h.state(), PeerState::Draining);
        // A new connection does, once probed.
        h.on_connected();
        assert_eq!(h.state(), PeerState::Down);
        let (s, _) = h.on_probe_due(t0);
        assert_eq!(h.on_ack(s, t0).1, Transition::Up);
    }

    fn c(state: PeerState, rtt_ms: Option<u64>, weight: u32) -> Candidate {
        Candidate {
            state,
            rtt: rtt_ms.map(ms),
            weight,
            connected: state != PeerState::Down,
        }
    }

    #[test]
    fn lowest_rtt_first_then_weight_then_unprobed() {
        use PeerState::*;
        let peers = [
            c(Up, Some(40), 100),  // 0: far
            c(Up, Some(10), 1),    // 1: near, light
            c(Down, Some(1), 100), // 2: out
            c(Up, Some(11), 50),   // 3: ties with 1, heavier
            c(Unknown, None, 7),   // 4
            c(Draining, Some(1), 1000),
            c(Unknown, None, 9), // 6
            c(Up, Some(20), 1),  // 7: middle
        ];
        assert_eq!(rank(&peers), vec![3, 1, 7, 0, 6, 4]);
    }

    #[test]
    fn equal_weights_in_a_tie_prefer_the_lower_rtt() {
        use PeerState::*;
        let peers = [c(Up, Some(10), 5), c(Up, Some(9), 5)];
        assert_eq!(rank(&peers), vec![1, 0]);
    }

    #[test]
    fn no_healthy_peer_gives_an_empty_order() {
        use PeerState::*;
        assert!(rank(&[c(Down, Some(1), 1), c(Draining, None, 1)]).is_empty());
        assert!(rank(&[]).is_empty());
    }

    #[test]
    fn connected_peers_out_for_probes_are_tried_only_when_none_is_healthy() {
        use PeerState::*;
        let slow = |w| Candidate {
            connected: true,
            ..c(Down, Some(500), w)
        };
        let peers = [slow(1), c(Down, None, 9), slow(5), c(Draining, None, 9)];
        assert_eq!(rank(&peers), vec![2, 0]);
        let with_healthy = [slow(1), c(Up, Some(50), 1)];
        assert_eq!(rank(&with_healthy), vec![1]);
    }
}
