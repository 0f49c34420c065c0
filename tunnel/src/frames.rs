//! Reading and writing codec frames on QUIC streams: the thin I/O layer around
//! [`super::codec`].

use super::codec::{FrameError, PREFIX_LEN, parse_prefix};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadFrameError {
    /// The bytes were not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream failed (reset, connection lost).
    #[error("stream failed: {0}")]
    Stream(String),
}

/// Reads one frame and leaves its body in `body`.
pub(crate) async fn read_frame(
    recv: &mut quinn::RecvStream,
    body: &mut Vec<u8>,
) -> Result<(), ReadFrameError> {
    let mut prefix = [0u8; PREFIX_LEN];
    read_exact(recv, &mut prefix, 0, PREFIX_LEN).await?;
    let len = parse_prefix(prefix)?;
    body.clear();
    body.resize(len, 0);
    read_exact(recv, body, PREFIX_LEN, PREFIX_LEN + len).await?;
    Ok(())
}

/// `read_exact` that reports an early end as a truncated frame of `need` bytes,
/// `offset` of which were read before `buf`.
async fn read_exact(
    recv: &mut quinn::RecvStream,
    buf: &mut [u8],
    offset: usize,
    need: usize,
) -> Result<(), ReadFrameError> {
    match recv.read_exact(buf).await {
        Ok(()) => Ok(()),
        Err(quinn::ReadExactError::FinishedEarly(have)) => Err(FrameError::Truncated {
            have: offset + have,
            need,
        }
        .into()),
        Err(quinn::ReadExactError::ReadError(e)) => Err(ReadFrameError::Stream(e.to_string())),
    }
}
