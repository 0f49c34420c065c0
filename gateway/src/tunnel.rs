//! The east-west data plane: TCP carried as QUIC streams over mutual TLS.
pub mod codec;
