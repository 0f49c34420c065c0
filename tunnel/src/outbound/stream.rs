//! One stream to one peer: opening it, and what a refusal or a failure leaves in
//! metrics, logs and the peer's status.

use std::time::Duration;

use tracing::warn;

use super::ImportState;
use crate::Shared;
use crate::codec::{Answer, Status};
use crate::frames::read_frame;
use crate::metrics::Direction;
use crate::peer_connection::PeerConnection;

/// Why a stream to one peer did not open.
#[derive(Debug)]
pub(super) enum OpenError {
    /// The peer answered with a refusal.
    Refused(Answer),
    /// No connection, no answer in time, or a broken stream.
    Failed { label: &'static str, error: String },
}

/// Counts, logs and records a refusal; returns the error text.
pub(super) fn note_refusal(
    shared: &Shared,
    state: &ImportState,
    peer: &PeerConnection,
    answer: &Answer,
) -> String {
    let peer_name = peer.cluster.as_str();
    let status = answer.status;
    shared.metrics.failed(
        peer_name,
        &state.service_label,
        Direction::Outbound,
        status.label(),
    );
    let error = format!(
        "{peer_name} answered {}: {}",
        status.label(),
        answer.message
    );
    peer.set_last_error(error.clone());
    warn!(peer.cluster = peer_name, status = status.label(), message = %answer.message, "stream refused");
    error
}

/// Counts, logs and records a failed open; returns the error text.
pub(super) fn note_open_failure(
    shared: &Shared,
    state: &ImportState,
    peer: &PeerConnection,
    label: &str,
    error: &str,
) -> String {
    let peer_name = peer.cluster.as_str();
    shared
        .metrics
        .failed(peer_name, &state.service_label, Direction::Outbound, label);
    let error = format!("{peer_name}: {error}");
    peer.set_last_error(error.clone());
    warn!(peer.cluster = peer_name, %error, "stream to peer failed");
    error
}

/// A stream whose peer answered `Accepted`, or why there is none.
pub(super) type Opened = Result<(quinn::SendStream, quinn::RecvStream), OpenError>;

/// Opens a stream to `peer` for `header` and waits for its answer. An open whose
/// connection died under it (the peer restarted and reset it, or it was lost) is
/// made once more on the next connection: nothing of the client's reached the
/// peer's service before an answer, so the client need not see the restart.
/// `may_leave`: give up at once if the peer leaves rotation while we wait (only
/// worth it when another candidate can take the client).
pub(super) async fn open_stream(
    peer: &PeerConnection,
    header: &[u8],
    (handshake_timeout, answer_timeout): (Duration, Duration),
    may_leave: bool,
) -> Opened {
    let connect = |stale| async move {
        peer.connection_other_than(stale, handshake_timeout)
            .await
            .map_err(|e| OpenError::Failed {
                label: "unreachable",
                error: e.to_string(),
            })
    };
    let conn = connect(None).await?;
    match exchange(peer, &conn, header, answer_timeout, may_leave).await {
        Err(OpenError::Failed { .. }) if conn.close_reason().is_some() => {
            let fresh = connect(Some(&conn)).await?;
            exchange(peer, &fresh, header, answer_timeout, may_leave).await
        }
        opened => opened,
    }
}

/// Sends `header` on a new stream of `conn` and reads the answer, giving up when
/// the answer timeout passes or, if `may_leave`, the peer leaves rotation meanwhile.
async fn exchange(
    peer: &PeerConnection,
    conn: &quinn::Connection,
    header: &[u8],
    answer_timeout: Duration,
    may_leave: bool,
) -> Opened {
    // A connection the peer closed carries its reason; a stream error on it
    // says only "connection lost".
    let failed = |error: String| OpenError::Failed {
        label: "stream_error",
        error: conn.close_reason().map_or(error, |r| r.to_string()),
    };
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| failed(e.to_string()))?;
        send.write_all(header)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut body = Vec::with_capacity(64);
        read_frame(&mut recv, &mut body)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let answer = Answer::decode_body(&body).map_err(|e| failed(e.to_string()))?;
        if answer.status == Status::Accepted {
            Ok((send, recv))
        } else {
            Err(OpenError::Refused(answer))
        }
    };
    // A peer that leaves rotation while we wait (probes stopped answering) will not
    // answer either: give up on it at once so the next peer gets the client,
    // instead of waiting out the whole answer timeout.
    let was_in_rotation = may_leave && peer.state().in_rotation();
    let left_rotation = async {
        if !was_in_rotation {
            return std::future::pending::<()>().await;
        }
        loop {
            tokio::time::sleep(ROTATION_POLL).await;
            if !peer.state().in_rotation() {
                return;
            }
        }
    };
    tokio::select! {
        r = tokio::time::timeout(answer_timeout, exchange) => match r {
            Ok(r) => r,
            Err(_) => Err(OpenError::Failed {
                label: "timeout",
                error: format!("no answer within {answer_timeout:?}"),
            }),
        },
        () = left_rotation => Err(OpenError::Failed {
            label: "peer_down",
            error: "the peer left rotation while the stream was opening".into(),
        }),
    }
}

/// How often a stream waiting for its answer checks that its peer is still in
/// rotation.
const ROTATION_POLL: Duration = Duration::from_millis(50);
