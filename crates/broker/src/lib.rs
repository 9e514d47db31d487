//! `tern-broker`: the Tern MQTT broker as a library.
//!
//! Protocol logic (per-connection state machine, sessions, topic router, retained store, auth) is
//! plain code with no I/O; a thin tokio layer owns listeners and transports.

#![forbid(unsafe_code)]

pub mod auth;
pub mod message;
pub mod protocol;
pub mod router;
pub mod session;
pub mod store;
pub mod topic;
