//! The application message as the broker carries it between a publisher and its subscribers.
//!
//! A [`Message`] is built once per PUBLISH and shared by `Arc` across every subscriber (payload
//! and topic are `Bytes`-backed, so fan-out never copies them). A [`Delivery`] is one subscriber's
//! view of it: the QoS granted to that subscriber, its RETAIN flag and its subscription ids.

use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_codec::{ByteStr, PublishProperties, QoS};

/// An application message inside the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name (never an alias; aliases are per connection).
    pub topic: ByteStr,
    /// Payload, shared by refcount.
    pub payload: Bytes,
    /// QoS the publisher used.
    pub qos: QoS,
    /// RETAIN flag as published.
    pub retain: bool,
    /// v5 properties passed through to subscribers: payload format, content type, response topic,
    /// correlation data, user properties. Topic alias, subscription identifiers and message expiry
    /// are cleared here: they are set per delivery.
    pub properties: PublishProperties,
    /// When the v5 Message Expiry Interval runs out; `None` for no expiry.
    pub expires_at: Option<Instant>,
    /// Client id of the publisher, for No Local; `None` for messages injected by the broker.
    pub publisher: Option<Arc<str>>,
    /// User name the publisher authenticated with (the rules engine's `username`); `None` for
    /// anonymous clients, wills and injected messages.
    pub username: Option<Arc<str>>,
    /// How many rule republishes led to this message, 0 for a client's: the rules engine's loop
    /// guard. Kept inside the broker, never sent on the wire.
    pub hops: u8,
}

impl Message {
    /// A message with no properties and no expiry, as a rules engine or a test would inject.
    pub fn new(
        topic: impl Into<ByteStr>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Self {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            properties: PublishProperties::default(),
            expires_at: None,
            publisher: None,
            username: None,
            hops: 0,
        }
    }

    /// True when the message expiry interval has passed.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// The Message Expiry Interval to forward: what is left of it, rounded up [MQTT-3.3.2-6].
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }

    /// Bytes this message costs in a queue (payload + topic), for the queued-bytes limit.
    pub fn queued_size(&self) -> usize {
        // The byte length: `str` access would check the topic's UTF-8 again, per delivery.
        self.payload.len() + self.topic.as_bytes().len()
    }

    /// Sets the expiry from a v5 Message Expiry Interval in seconds.
    pub fn with_expiry_interval(mut self, secs: Option<u32>, now: Instant) -> Self {
        self.expires_at = secs.map(|s| now + Duration::from_secs(u64::from(s)));
        self
    }
}

/// One subscriber's copy of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The shared message.
    pub message: Arc<Message>,
    /// QoS for this subscriber: the lower of the published QoS and the granted QoS [MQTT-3.8.4-8].
    pub qos: QoS,
    /// RETAIN flag to send (Retain As Published, or set for retained messages sent on subscribe).
    pub retain: bool,
    /// Subscription identifiers of every matching subscription of this client [MQTT-3.3.4-3].
    pub subscription_ids: Vec<u32>,
    /// Key under which an on-disk session store keeps this delivery for a persistent session
    /// (until the client acknowledges it); 0 when it is not stored.
    pub store_seq: u64,
}

impl Delivery {
    /// Bytes this delivery costs in a queue.
    pub fn queued_size(&self) -> usize {
        self.message.queued_size()
    }
}
