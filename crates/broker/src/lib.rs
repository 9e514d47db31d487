//! `tern-broker`: the Tern MQTT broker as a library.
//!
//! Protocol logic (per-connection state machine, sessions, topic router, retained store, auth) is
//! plain code with no I/O; a thin tokio layer owns listeners and transports.

#![forbid(unsafe_code)]

pub mod auth;
pub mod broker;
pub mod config;
mod latch;
pub mod message;
pub mod protocol;
pub mod router;
pub mod rules;
mod server;
pub mod session;
pub mod store;
pub mod topic;
pub mod transport;
mod wakeup;

pub use broker::{Broker, BrokerError, BrokerHandle, PublishHook, RunningBroker, StatsSnapshot};
pub use config::{Config, ConfigError};
pub use message::{Delivery, Message};
