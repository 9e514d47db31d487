//! `tern-client`: an async MQTT 3.1.1 and 5.0 client on tokio.
//!
//! ```no_run
//! use tern_client::{Client, ConnectOptions, QoS};
//!
//! # async fn demo() -> Result<(), tern_client::Error> {
//! let options = ConnectOptions::from_url("mqtt://localhost:1883")?;
//! let (client, mut messages) = Client::connect(options).await?;
//! client.subscribe("sensors/#", QoS::AtLeastOnce).await?;
//! let outcome = client.publish("sensors/t1", QoS::ExactlyOnce, false, "21.5").await?;
//! println!("delivered, reason code {}", outcome.reason_code);
//! if let Some(message) = messages.recv().await {
//!     println!("{} {:?}", message.topic, message.payload);
//! }
//! client.disconnect().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Layout, in the manner of quinn: [`protocol`] is the MQTT state machine with no I/O (packet
//! identifiers, in-flight window, QoS 2 flows, offline queue, keep alive, topic aliases);
//! `event_loop` is the tokio task that owns the socket and drives it, reconnecting with capped
//! exponential back-off; [`transport`] opens TCP, TLS (rustls, ring) or WebSocket streams;
//! [`Client`] and [`Messages`] are the handles the application holds.
//!
//! Guarantees: `publish` resolves when the message is delivered as its QoS promises (written
//! for QoS 0, PUBACK for 1, PUBCOMP for 2). After a reconnection, unacknowledged QoS 1/2
//! messages are re-sent with DUP when the server kept the session, and re-submitted when it did
//! not; subscriptions are restored when the session was lost. The server's Receive Maximum,
//! Maximum Packet Size, Topic Alias Maximum, Maximum QoS and Server Keep Alive are honoured.

#![forbid(unsafe_code)]

mod client;
pub mod error;
mod event_loop;
pub mod options;
pub mod protocol;
pub mod transport;

pub use client::{Client, Message, Messages, request_properties};
pub use error::{Error, Result};
pub use event_loop::ConnectionState;
pub use options::{
    BrokerUrl, ConnectOptions, Direction, PacketLog, ReconnectOptions, TlsOptions, Transport,
};
pub use protocol::PublishOutcome;
pub use tern_codec::{
    ByteStr, ConnAck, ConnectProperties, LastWill, ProtocolVersion, Publish, PublishProperties,
    QoS, ReasonCode, RetainHandling, SubscribeProperties, SubscriptionOptions, WillProperties,
};
