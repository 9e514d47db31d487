//! Session state (spec section 4.1): what the broker keeps for a client id between network
//! connections. While the client is connected its connection owns the session; while it is not,
//! a [`crate::store::SessionStore`] does.
//!
//! Holds subscriptions, the QoS 1/2 messages sent but not yet acknowledged, the QoS 2 packet
//! identifiers received but not yet released, and messages queued for delivery. Nothing here does
//! I/O or knows about other clients.

use crate::message::Delivery;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use tern_codec::SubscriptionOptions;

/// Session Expiry Interval meaning "never expires" (v5 0xFFFFFFFF; 3.1.1 clean session 0).
pub const EXPIRY_NEVER: u32 = u32::MAX;

/// One subscription of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// Options as granted (the QoS is the granted QoS).
    pub options: SubscriptionOptions,
    /// v5 Subscription Identifier.
    pub id: Option<u32>,
}

/// Where an outgoing QoS 1/2 message is in its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingState {
    /// PUBLISH QoS 1 sent, waiting for PUBACK.
    AwaitPubAck,
    /// PUBLISH QoS 2 sent, waiting for PUBREC.
    AwaitPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitPubComp,
}

/// A message sent to the client and not yet fully acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Packet identifier used for it.
    pub packet_id: u16,
    /// The delivery (kept to resend with DUP on session resumption).
    pub delivery: Delivery,
    /// Position in the flow.
    pub state: OutgoingState,
}

/// Limits on a session's queue of undelivered messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Maximum queued messages; 0 means no limit.
    pub max_messages: usize,
    /// Maximum queued payload+topic bytes; 0 means no limit.
    pub max_bytes: usize,
    /// Queue QoS 0 messages for offline sessions too (Mosquitto's `queue_qos0_messages`).
    pub queue_qos0: bool,
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOutcome {
    /// Queued.
    Queued,
    /// Dropped: the queue was at its message or byte limit (the newest message is the one dropped).
    DroppedFull,
    /// Dropped: QoS 0 for an offline session, not queued by configuration.
    DroppedQos0,
    /// No such session.
    NoSession,
}

/// Everything the broker remembers about one client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// Client identifier.
    pub client_id: Arc<str>,
    /// Session Expiry Interval in seconds after disconnection; [`EXPIRY_NEVER`] for never.
    pub expiry_interval: u32,
    /// Subscriptions keyed by the full topic filter as subscribed (including `$share/...`).
    pub subscriptions: HashMap<String, Subscription>,
    /// QoS 1/2 messages in flight to the client, in the order they were sent.
    pub outgoing: VecDeque<Outgoing>,
    /// QoS 2 packet identifiers received (PUBREC sent), waiting for PUBREL.
    pub incoming_qos2: BTreeSet<u16>,
    /// Messages waiting to be sent.
    pub queue: VecDeque<Delivery>,
    /// Sum of [`Delivery::queued_size`] over `queue`.
    pub queue_bytes: usize,
    /// Messages dropped by the queue limits over the session's life.
    pub dropped: u64,
    /// Last packet identifier handed out.
    pub last_packet_id: u16,
}

impl SessionState {
    /// A fresh, empty session.
    pub fn new(client_id: Arc<str>, expiry_interval: u32) -> Self {
        SessionState {
            client_id,
            expiry_interval,
            subscriptions: HashMap::new(),
            outgoing: VecDeque::new(),
            incoming_qos2: BTreeSet::new(),
            queue: VecDeque::new(),
            queue_bytes: 0,
            dropped: 0,
            last_packet_id: 0,
        }
    }

    /// Queues a delivery under `limits`; `offline` applies the QoS 0 policy. Drop policy: when
    /// the queue is full the new message is dropped and counted (the oldest messages, which the
    /// client is waiting for first, are kept).
    pub fn enqueue(&mut self, d: Delivery, limits: &QueueLimits, offline: bool) -> QueueOutcome {
        if offline && d.qos == tern_codec::QoS::AtMostOnce && !limits.queue_qos0 {
            return QueueOutcome::DroppedQos0;
        }
        let size = d.queued_size();
        let over_count = limits.max_messages != 0 && self.queue.len() >= limits.max_messages;
        let over_bytes = limits.max_bytes != 0 && self.queue_bytes + size > limits.max_bytes;
        if over_count || over_bytes {
            self.dropped += 1;
            return QueueOutcome::DroppedFull;
        }
        self.queue_bytes += size;
        self.queue.push_back(d);
        QueueOutcome::Queued
    }

    /// Takes the oldest queued delivery.
    pub fn dequeue(&mut self) -> Option<Delivery> {
        let d = self.queue.pop_front()?;
        self.queue_bytes = self.queue_bytes.saturating_sub(d.queued_size());
        Some(d)
    }

    /// Puts a delivery back at the head of the queue (it was taken but could not be sent).
    pub fn requeue_front(&mut self, d: Delivery) {
        self.queue_bytes += d.queued_size();
        self.queue.push_front(d);
    }

    /// The next free packet identifier, skipping those in flight [MQTT-2.2.1-3].
    pub fn next_packet_id(&mut self) -> u16 {
        loop {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            if self.last_packet_id == 0 {
                self.last_packet_id = 1;
            }
            let id = self.last_packet_id;
            if !self.outgoing.iter().any(|o| o.packet_id == id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use tern_codec::QoS;

    fn d(qos: QoS, n: usize) -> Delivery {
        Delivery {
            message: Arc::new(Message::new("t", vec![0u8; n], qos, false)),
            qos,
            retain: false,
            subscription_ids: vec![],
            store_seq: 0,
        }
    }

    #[test]
    fn queue_drops_newest_when_count_limit_reached() {
        let mut s = SessionState::new("c".into(), 10);
        let l = QueueLimits {
            max_messages: 2,
            max_bytes: 0,
            queue_qos0: false,
        };
        assert_eq!(
            s.enqueue(d(QoS::AtLeastOnce, 1), &l, true),
            QueueOutcome::Queued
        );
        assert_eq!(
            s.enqueue(d(QoS::AtLeastOnce, 1), &l, true),
            QueueOutcome::Queued
        );
        assert_eq!(
            s.enqueue(d(QoS::AtLeastOnce, 1), &l, true),
            QueueOutcome::DroppedFull
        );
        assert_eq!(s.dropped, 1);
        assert_eq!(s.queue.len(), 2);
    }

    #[test]
    fn queue_drops_when_byte_limit_reached() {
        let mut s = SessionState::new("c".into(), 10);
        let l = QueueLimits {
            max_messages: 0,
            max_bytes: 100,
            queue_qos0: false,
        };
        assert_eq!(
            s.enqueue(d(QoS::AtLeastOnce, 60), &l, true),
            QueueOutcome::Queued
        );
        assert_eq!(
            s.enqueue(d(QoS::AtLeastOnce, 60), &l, true),
            QueueOutcome::DroppedFull
        );
        assert_eq!(s.dequeue().map(|d| d.qos), Some(QoS::AtLeastOnce));
        assert_eq!(s.queue_bytes, 0);
    }

    #[test]
    fn qos0_not_queued_for_offline_session_by_default() {
        let mut s = SessionState::new("c".into(), 10);
        let l = QueueLimits {
            max_messages: 10,
            max_bytes: 0,
            queue_qos0: false,
        };
        assert_eq!(
            s.enqueue(d(QoS::AtMostOnce, 1), &l, true),
            QueueOutcome::DroppedQos0
        );
        assert_eq!(
            s.enqueue(d(QoS::AtMostOnce, 1), &l, false),
            QueueOutcome::Queued
        );
    }

    #[test]
    fn packet_ids_skip_zero_and_ids_in_flight_mqtt_2_2_1_3() {
        let mut s = SessionState::new("c".into(), 10);
        s.last_packet_id = u16::MAX;
        s.outgoing.push_back(Outgoing {
            packet_id: 1,
            delivery: d(QoS::AtLeastOnce, 1),
            state: OutgoingState::AwaitPubAck,
        });
        assert_eq!(s.next_packet_id(), 2);
    }
}
