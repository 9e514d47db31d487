//! `tern-codec`: every MQTT 3.1, 3.1.1 and 5.0 control packet and property, decoded from
//! [`bytes::BytesMut`] and encoded into it, with all the well-formedness rules of the specifications.
//!
//! This crate does no I/O and knows nothing of tokio: bytes go in, packets come out, and the other
//! way round. Protocol *behaviour* (what a broker does with a packet) lives in `tern-broker`.
//!
//! - [`decode`] is incremental (`Ok(None)` until a whole packet is buffered) and zero-copy:
//!   topics, strings, binary properties and payloads are slices of the received bytes.
//! - [`encode`] computes the exact size first ([`encoded_len`]), reserves once, then writes.
//! - [`topic`] validates topic names and filters and matches them.
//!
//! Notes for users:
//! - After a [`DecodeError`] the buffer may have been partly consumed: close the connection,
//!   sending [`DecodeError::reason_code`] in CONNACK or DISCONNECT (v5) first.
//! - A CONNECT is decoded by its own protocol level; read the session's version from
//!   [`Connect::protocol`] and pass it for every later packet.
//! - Encoding for 3.1/3.1.1 maps v5 CONNACK error codes to the 3.1.1 return codes
//!   ([`ReasonCode::to_v3_connack`]) and SUBACK failure codes to 0x80.
//! - [`ByteStr`] is checked once, when built: reading it as `str` costs nothing. Strings of up to
//!   [`INLINE_CAPACITY`](types::INLINE_CAPACITY) bytes are held inline, longer ones share the
//!   received buffer.
//! - v5 properties are held in [`Props`], one pointer allocated only when a property is set, so
//!   that a [`Packet`] stays small to move; CONNECT, large and rare, is boxed in [`Packet`].

#![forbid(unsafe_code)]

mod decode;
mod encode;
pub mod error;
pub mod packet;
pub mod properties;
pub mod reason;
pub mod topic;
pub mod types;

pub use decode::{MAX_VARIABLE_BYTE_INTEGER, decode};
pub use encode::{encode, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use properties::*;
pub use reason::ReasonCode;
pub use topic::TopicError;
pub use types::{ByteStr, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
