//! The client's error type: one enum, each variant saying exactly what went wrong and, where the
//! server said why, carrying its reason code.

use tern_codec::{ProtocolVersion, ReasonCode};

/// Everything that can go wrong while connecting, publishing, subscribing or waiting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered CONNECT with a failure CONNACK.
    #[error("connection refused: {}", refusal_text(*.version, *.reason_code))]
    ConnectionRefused {
        /// The CONNACK reason code (v5) or return code (3.1/3.1.1), as sent.
        reason_code: ReasonCode,
        /// The protocol version the code belongs to.
        version: ProtocolVersion,
        /// The v5 Reason String, when the server sent one.
        reason_string: Option<String>,
    },
    /// The TCP connection could not be opened.
    #[error("cannot connect to {address}: {source}")]
    Unreachable {
        /// `host:port` that was tried.
        address: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Something took longer than its deadline.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The server broke the MQTT protocol (malformed packet, unexpected packet, bad identifier).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// TLS configuration or handshake failure.
    #[error("TLS error: {0}")]
    Tls(String),
    /// WebSocket handshake or framing failure.
    #[error("WebSocket error: {0}")]
    WebSocket(String),
    /// A broker URL that cannot be parsed.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it, and what would be valid.
        reason: String,
    },
    /// A topic name or filter that breaks the rules of section 4.7.
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The topic as given.
        topic: String,
        /// Which rule it breaks.
        reason: tern_codec::TopicError,
    },
    /// An option that cannot be used as given.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The client is disconnected and its offline queue already holds `capacity` requests.
    #[error("offline queue is full ({capacity} messages waiting); the message was not queued")]
    QueueFull {
        /// The configured capacity of the queue.
        capacity: usize,
    },
    /// The packet is larger than the server's Maximum Packet Size (v5) [MQTT-3.1.2-24].
    #[error("packet of {size} bytes exceeds the server's Maximum Packet Size of {maximum} bytes")]
    PacketTooLarge {
        /// The encoded size of the packet.
        size: usize,
        /// The server's limit.
        maximum: u32,
    },
    /// The server supports a lower QoS than the one requested (v5 Maximum QoS).
    #[error("the server supports QoS {maximum} at most; QoS {requested} was requested")]
    QosNotSupported {
        /// The requested QoS.
        requested: u8,
        /// The server's Maximum QoS.
        maximum: u8,
    },
    /// The server answered with a failure reason code (PUBACK, PUBREC, SUBACK, UNSUBACK).
    #[error("rejected by the server: {reason_code}{}", .reason_string.as_deref().map(|s| format!(": {s}")).unwrap_or_default())]
    Rejected {
        /// The reason code.
        reason_code: ReasonCode,
        /// The v5 Reason String, when sent.
        reason_string: Option<String>,
    },
    /// The server closed the connection with a DISCONNECT (v5) carrying this reason code.
    #[error("disconnected by the server: {reason_code}{}", .reason_string.as_deref().map(|s| format!(": {s}")).unwrap_or_default())]
    ServerDisconnect {
        /// The DISCONNECT reason code.
        reason_code: ReasonCode,
        /// The v5 Reason String, when sent.
        reason_string: Option<String>,
    },
    /// The connection was lost before the request completed, and will not be retried.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The client was closed with [`crate::Client::disconnect`] or its event loop ended.
    #[error("the client is closed")]
    Closed,
    /// An I/O error on an established connection.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The text of a refused CONNACK: v5 codes have names, 3.x return codes have their own meanings.
fn refusal_text(version: ProtocolVersion, code: ReasonCode) -> String {
    if version.is_v5() {
        return code.to_string();
    }
    let text = match code.0 {
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorised",
        _ => "unknown return code",
    };
    format!("{text} (return code {})", code.0)
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
