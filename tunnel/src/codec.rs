//! The stream header codec, sans-IO.
//!
//! Every stream opens with one frame from the opener (a [`Request`]) and one frame
//! from the acceptor (an [`Answer`]); control streams then carry [`ControlMessage`]
//! frames. A frame is a version byte, a big-endian `u16` body length and a protobuf
//! body (`proto/tunnel.proto`), at most [`MAX_FRAME_LEN`] bytes in all. Nothing here
//! reads or writes a socket: callers hand in bytes and get values or a
//! [`FrameError`] that maps onto the [`Status`] to answer with.

use std::fmt;

use prost::Message;

use causeway_trust::validate_label;

/// Generated protobuf types of `proto/tunnel.proto`.
#[allow(missing_docs, unreachable_pub, clippy::doc_markdown)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/causeway.tunnel.v1.rs"));
}

pub use proto::Status;

/// The only frame version this gateway speaks.
pub const FRAME_VERSION: u8 = 1;

/// Bytes before a frame's body: the version byte and the `u16` length.
pub const PREFIX_LEN: usize = 3;

/// Largest frame, prefix included. A header names one service and carries an
/// optional trace context; 4 KiB is ample for that and bounds what an acceptor
/// buffers before it knows who the stream is for.
pub const MAX_FRAME_LEN: usize = 4096;

/// Largest frame body.
pub const MAX_BODY_LEN: usize = MAX_FRAME_LEN - PREFIX_LEN;

/// Longest namespace or service name: one DNS label (RFC 1123).
const MAX_NAME_LEN: usize = 63;

/// Longest `traceparent` or `tracestate` value we carry; W3C caps `tracestate` at
/// 512 bytes in practice.
const MAX_TRACE_FIELD_LEN: usize = 512;

/// Why a frame could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame's version byte is not [`FRAME_VERSION`].
    #[error("frame version {0} is not supported (this gateway speaks {FRAME_VERSION})")]
    UnsupportedVersion(u8),
    /// The frame is longer than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    Oversized {
        /// The frame's length, prefix included.
        len: usize,
    },
    /// The stream ended before the whole frame arrived.
    #[error("stream ended after {have} of {need} frame bytes")]
    Truncated {
        /// Bytes received.
        have: usize,
        /// Bytes the frame needs.
        need: usize,
    },
    /// The body is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl FrameError {
    /// The status an acceptor answers a bad header with.
    pub fn status(&self) -> Status {
        match self {
            FrameError::UnsupportedVersion(_) => Status::UnsupportedVersion,
            _ => Status::Malformed,
        }
    }
}

// === frames ===

/// Checks a frame prefix and returns the length of the body that follows.
pub fn parse_prefix(prefix: [u8; PREFIX_LEN]) -> Result<usize, FrameError> {
    if prefix[0] != FRAME_VERSION {
        return Err(FrameError::UnsupportedVersion(prefix[0]));
    }
    let len = usize::from(u16::from_be_bytes([prefix[1], prefix[2]]));
    if len > MAX_BODY_LEN {
        return Err(FrameError::Oversized {
            len: len + PREFIX_LEN,
        });
    }
    Ok(len)
}

/// Appends one frame holding `msg` to `out`.
pub fn encode_frame<M: Message>(msg: &M, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let len = msg.encoded_len();
    if len > MAX_BODY_LEN {
        return Err(FrameError::Oversized {
            len: len + PREFIX_LEN,
        });
    }
    out.reserve(PREFIX_LEN + len);
    out.push(FRAME_VERSION);
    out.extend_from_slice(
        &u16::try_from(len)
            .expect("bounded by MAX_BODY_LEN")
            .to_be_bytes(),
    );
    msg.encode(out)
        .expect("the vector grows to fit, so encoding cannot run out of space");
    Ok(())
}

/// Decodes one frame from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (read more and call
/// again), or the message and the number of bytes it used.
pub fn decode_frame<M: Message + Default>(buf: &[u8]) -> Result<Option<(M, usize)>, FrameError> {
    let Some(prefix) = buf.first_chunk::<PREFIX_LEN>() else {
        // Reject a wrong version as soon as its byte is in.
        if let Some(&v) = buf.first()
            && v != FRAME_VERSION
        {
            return Err(FrameError::UnsupportedVersion(v));
        }
        return Ok(None);
    };
    let len = parse_prefix(*prefix)?;
    let Some(body) = buf.get(PREFIX_LEN..PREFIX_LEN + len) else {
        return Ok(None);
    };
    let msg = M::decode(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(Some((msg, PREFIX_LEN + len)))
}

// === requests ===

/// A service port a stream is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceTarget {
    /// The service's namespace.
    pub namespace: String,
    /// The service's name.
    pub service: String,
    /// The service port.
    pub port: u16,
}

impl ServiceTarget {
    /// A target; the names are checked when the target is decoded, not here.
    pub fn new(namespace: impl Into<String>, service: impl Into<String>, port: u16) -> Self {
        Self {
            namespace: namespace.into(),
            service: service.into(),
            port,
        }
    }

    /// Checks that the names are DNS labels and the port is not zero.
    pub fn validate(&self) -> Result<(), FrameError> {
        for (kind, value) in [("namespace", &self.namespace), ("service", &self.service)] {
            if value.len() > MAX_NAME_LEN {
                return Err(FrameError::Malformed(format!(
                    "{kind} is {} bytes long",
                    value.len()
                )));
            }
            validate_label(kind, value).map_err(|e| FrameError::Malformed(e.to_string()))?;
        }
        if self.port == 0 {
            return Err(FrameError::Malformed("port 0".into()));
        }
        Ok(())
    }
}

impl fmt::Display for ServiceTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

/// W3C trace context carried with a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceContext {
    /// The `traceparent` value.
    pub traceparent: String,
    /// The `tracestate` value (may be empty).
    pub tracestate: String,
}

/// What the opener of a stream asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Connect to a service port and carry raw bytes.
    Data {
        /// The service port.
        target: ServiceTarget,
        /// Trace context of the client connection, if any.
        trace: Option<TraceContext>,
    },
    /// This is the connection's control stream.
    Control,
}

impl Request {
    /// Appends the request frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        encode_frame(&self.to_proto(), out)
    }

    /// Decodes and validates a request frame from the front of `buf`; see
    /// [`decode_frame`] for the `Ok(None)` case.
    pub fn decode(buf: &[u8]) -> Result<Option<(Request, usize)>, FrameError> {
        let Some((header, used)) = decode_frame::<proto::StreamHeader>(buf)? else {
            return Ok(None);
        };
        Ok(Some((Self::from_proto(header)?, used)))
    }

    /// Decodes and validates a request from a frame body (after [`parse_prefix`]).
    pub fn decode_body(body: &[u8]) -> Result<Request, FrameError> {
        let header =
            proto::StreamHeader::decode(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
        Self::from_proto(header)
    }

    fn to_proto(&self) -> proto::StreamHeader {
        match self {
            Request::Data { target, trace } => proto::StreamHeader {
                kind: proto::StreamKind::Data as i32,
                namespace: target.namespace.clone(),
                service: target.service.clone(),
                port: u32::from(target.port),
                trace: trace.as_ref().map(|t| proto::TraceContext {
                    traceparent: t.traceparent.clone(),
                    tracestate: t.tracestate.clone(),
                }),
            },
            Request::Control => proto::StreamHeader {
                kind: proto::StreamKind::Control as i32,
                ..Default::default()
            },
        }
    }

    fn from_proto(h: proto::StreamHeader) -> Result<Request, FrameError> {
        match proto::StreamKind::try_from(h.kind) {
            Ok(proto::StreamKind::Control) => Ok(Request::Control),
            Ok(proto::StreamKind::Data) => {
                let port = u16::try_from(h.port)
                    .map_err(|_| FrameError::Malformed(format!("port {} out of range", h.port)))?;
                let target = ServiceTarget {
                    namespace: h.namespace,
                    service: h.service,
                    port,
                };
                target.validate()?;
                let trace = match h.trace {
                    Some(t) => {
                        if t.traceparent.len() > MAX_TRACE_FIELD_LEN
                            || t.tracestate.len() > MAX_TRACE_FIELD_LEN
                        {
                            return Err(FrameError::Malformed("trace context too long".into()));
                        }
                        Some(TraceContext {
                            traceparent: t.traceparent,
                            tracestate: t.tracestate,
                        })
                    }
                    None => None,
                };
                Ok(Request::Data { target, trace })
            }
            Err(_) => Err(FrameError::Malformed(format!(
                "unknown stream kind {}",
                h.kind
            ))),
        }
    }
}

// === answers ===

/// The acceptor's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The outcome.
    pub status: Status,
    /// Detail for logs; empty when accepted.
    pub message: String,
}

impl Answer {
    /// Longest message sent, so an answer always fits in a frame.
    pub const MAX_MESSAGE_LEN: usize = 1024;

    /// An answer; `message` is cut to [`Self::MAX_MESSAGE_LEN`] bytes.
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > Self::MAX_MESSAGE_LEN {
            let mut end = Self::MAX_MESSAGE_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self { status, message }
    }

    /// The `Accepted` answer.
    pub fn accepted() -> Self {
        Self::new(Status::Accepted, String::new())
    }

    /// Appends the answer frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        encode_frame(
            &proto::StreamAnswer {
                status: self.status as i32,
                message: self.message.clone(),
            },
            out,
        )
    }

    /// Decodes an answer from a frame body (after [`parse_prefix`]).
    pub fn decode_body(body: &[u8]) -> Result<Answer, FrameError> {
        let a =
            proto::StreamAnswer::decode(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
        Self::from_proto(a)
    }

    /// Decodes an answer frame from the front of `buf`; see [`decode_frame`].
    pub fn decode(buf: &[u8]) -> Result<Option<(Answer, usize)>, FrameError> {
        let Some((a, used)) = decode_frame::<proto::StreamAnswer>(buf)? else {
            return Ok(None);
        };
        Ok(Some((Self::from_proto(a)?, used)))
    }

    fn from_proto(a: proto::StreamAnswer) -> Result<Answer, FrameError> {
        match Status::try_from(a.status) {
            Ok(Status::Unspecified) | Err(_) => Err(FrameError::Malformed(format!(
                "unknown status {}",
                a.status
            ))),
            Ok(status) => Ok(Answer::new(status, a.message)),
        }
    }
}

impl Status {
    /// A short lowercase name, used as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Status::Unspecified => "unspecified",
            Status::Accepted => "accepted",
            Status::Denied => "denied",
            Status::NoSuchService => "no_such_service",
            Status::NoEndpoints => "no_endpoints",
            Status::Overloaded => "overloaded",
            Status::UnsupportedVersion => "unsupported_version",
            Status::Malformed => "malformed",
        }
    }
}

// === control messages ===

/// A message on a connection's control stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlMessage {
    /// A probe with its sequence number.
    Probe(u64),
    /// The answer to the probe with this sequence number.
    ProbeAck(u64),
    /// The sender is draining and serves existing streams for this many
    /// milliseconds more.
    Drain {
        /// Milliseconds until the sender closes.
        deadline_ms: u64,
    },
}

impl ControlMessage {
    /// Appends the frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use proto::control::Message as M;
        let message = match *self {
            ControlMessage::Probe(seq) => M::Probe(proto::Probe { seq }),
            ControlMessage::ProbeAck(seq) => M::ProbeAck(proto::ProbeAck { seq }),
            ControlMessage::Drain { deadline_ms } => M::Drain(proto::Drain { deadline_ms }),
        };
        encode_frame(
            &proto::Control {
                message: Some(message),
            },
            out,
        )
        .expect("control messages are a few bytes long");
    }

    /// Decodes a control message from a frame body (after [`parse_prefix`]).
    pub fn decode_body(body: &[u8]) -> Result<ControlMessage, FrameError> {
        let c = proto::Control::decode(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
        Self::from_proto(c)
    }

    /// Decodes a control frame from the front of `buf`; see [`decode_frame`].
    pub fn decode(buf: &[u8]) -> Result<Option<(ControlMessage, usize)>, FrameError> {
        let Some((c, used)) = decode_frame::<proto::Control>(buf)? else {
            return Ok(None);
        };
        Ok(Some((Self::from_proto(c)?, used)))
    }

    fn from_proto(c: proto::Control) -> Result<ControlMessage, FrameError> {
        use proto::control::Message as M;
        match c.message {
            Some(M::Probe(p)) => Ok(ControlMessage::Probe(p.seq)),
            Some(M::ProbeAck(p)) => Ok(ControlMessage::ProbeAck(p.seq)),
            Some(M::Drain(d)) => Ok(ControlMessage::Drain {
                deadline_ms: d.deadline_ms,
            }),
            None => Err(FrameError::Malformed("empty control message".into())),
        }
    }
}

#[cfg(test)]
mod tests;
