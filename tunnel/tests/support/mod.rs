//! Helpers the tunnel's tests share beyond `causeway-testing`: reading a tunnel
//! answer as a peer gateway does.

#![allow(dead_code, unreachable_pub)]

use anyhow::Result;
use causeway_tunnel::{Answer, codec};

/// Reads one framed answer to a stream header.
pub async fn read_answer(recv: &mut quinn::RecvStream) -> Result<Answer> {
    let mut prefix = [0u8; codec::PREFIX_LEN];
    recv.read_exact(&mut prefix).await?;
    let len = codec::parse_prefix(prefix)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok(Answer::decode_body(&body)?)
}
