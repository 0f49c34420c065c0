//! Who a peer is, once its handshake passed: its cluster from a gateway
//! certificate, or why it is refused.

use causeway_trust::ClusterName;
use rustls_pki_types::CertificateDer;

pub(super) fn peer_cluster(
    conn: &quinn::Connection,
) -> Result<(ClusterName, Vec<CertificateDer<'static>>), Refusal> {
    let no_identity = |message: String| Refusal {
        label: "no_identity",
        message,
    };
    let certs = conn
        .peer_identity()
        .ok_or_else(|| no_identity("no certificate was presented".into()))?
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| no_identity("unexpected identity type".into()))?;
    let id = causeway_trust::peer_identity(&certs).map_err(|e| no_identity(e.to_string()))?;
    if id.role != causeway_trust::Role::Gateway {
        return Err(Refusal {
            label: "wrong_role",
            message: format!(
                "certificate {id} has the {} role; only gateway certificates may open tunnels",
                id.role.as_str()
            ),
        });
    }
    Ok((id.cluster, *certs))
}

/// Why a peer whose handshake passed is refused: a metric label and the text the
/// peer and the log get.
pub(super) struct Refusal {
    pub(super) label: &'static str,
    pub(super) message: String,
}

/// Most bytes of a reason sent in a connection close: it must fit one packet.
const MAX_CLOSE_REASON: usize = 256;

/// `message` cut to [`MAX_CLOSE_REASON`] bytes on a character boundary.
pub(super) fn close_reason(message: &str) -> &[u8] {
    let mut end = message.len().min(MAX_CLOSE_REASON);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message.as_bytes()[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let message = "é".repeat(200);
        let cut = super::close_reason(&message);
        assert_eq!(cut.len(), super::MAX_CLOSE_REASON);
        assert!(std::str::from_utf8(cut).is_ok());
        assert_eq!(super::close_reason("short"), b"short");
    }
}
