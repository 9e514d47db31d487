//! `tern-codec`: every MQTT 3.1, 3.1.1 and 5.0 control packet and property, decoded from
//! [`bytes::BytesMut`] and encoded into it, with all the well-formedness rules of the specifications.
//!
//! This crate does no I/O and knows nothing of tokio: bytes go in, packets come out, and the other
//! way round. Protocol *behaviour* (what a broker does with a packet) lives in `tern-broker`.

#![forbid(unsafe_code)]

pub mod packet;
pub mod properties;
pub mod reason;
pub mod types;

pub use packet::*;
pub use properties::*;
pub use reason::ReasonCode;
pub use types::{ByteStr, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
