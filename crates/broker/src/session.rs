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
    last_packet_id: u16,
    /// How many identifiers after `last_packet_id` are known to be free.
    free_ids: FreeIds,
}

/// How many packet identifiers after the last one handed out are known to be free. It lets
/// [`SessionState::next_packet_id`] hand out an identifier without scanning the in-flight window
/// (with 65,535 messages in flight, a scan per message made filling the window quadratic); the
/// window is scanned once when the run is used up, or after
/// [`SessionState::set_last_packet_id`]. Valid as long as only identifiers from
/// `next_packet_id` enter the window (or the run is empty when others do, as in a session being
/// restored), which a debug assertion checks. A cache, not part of the session: it never makes
/// two sessions unequal. Two bytes, in what was padding: the session lives in every
/// connection's task.
#[derive(Debug, Clone, Copy, Default)]
struct FreeIds(u16);

impl PartialEq for FreeIds {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for FreeIds {}

/// The identifier after `id` on the cycle 1..=65535 (0, none yet, is followed by 1).
fn following_id(id: u16) -> u16 {
    if id == u16::MAX { 1 } else { id + 1 }
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
            free_ids: FreeIds::default(),
        }
    }

    /// The subscriptions as (full filter, options) pairs, as a store hands them back on start.
    pub fn subscription_list(&self) -> Vec<(String, Subscription)> {
        self.subscriptions
            .iter()
            .map(|(filter, sub)| (filter.clone(), *sub))
            .collect()
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
        if self.free_ids.0 == 0 {
            let (after, count) = self.scan_free_ids();
            self.last_packet_id = after;
            self.free_ids = FreeIds(count);
        }
        let id = following_id(self.last_packet_id);
        self.last_packet_id = id;
        self.free_ids.0 = self.free_ids.0.saturating_sub(1);
        debug_assert!(
            !self.outgoing.iter().any(|o| o.packet_id == id),
            "packet identifier {id} handed out while in flight"
        );
        id
    }

    /// The last packet identifier handed out (0: none yet).
    pub fn last_packet_id(&self) -> u16 {
        self.last_packet_id
    }

    /// Sets the last packet identifier handed out (a restored session's); the next one is
    /// searched for from there.
    pub fn set_last_packet_id(&mut self, id: u16) {
        self.last_packet_id = id;
        self.free_ids = FreeIds(0);
    }

    /// The first run of free identifiers after `last_packet_id`, from one pass over the window:
    /// the identifier before the run, and the run's length (0 when all 65,535 are in flight).
    /// Identifiers are placed by their distance from `last_packet_id` on the cycle 1..=65535
    /// (1 for the next one, 65,535 for `last_packet_id` itself).
    fn scan_free_ids(&self) -> (u16, u16) {
        const IDS: u32 = u16::MAX as u32;
        // Position of `last_packet_id` on the cycle, counted from identifier 1 at position 0
        // (none handed out yet, 0, sits where 65,535 does: identifier 1 comes next).
        let last = (u32::from(self.last_packet_id) + IDS - 1) % IDS;
        let id_at = |distance: u32| ((last + distance) % IDS) as u16 + 1;
        let mut used: Vec<u32> = self
            .outgoing
            .iter()
            .filter(|o| o.packet_id != 0)
            .map(|o| match (u32::from(o.packet_id) - 1 + IDS - last) % IDS {
                0 => IDS,
                d => d,
            })
            .collect();
        used.sort_unstable();
        used.dedup();
        // The first free distance, then how many follow it before the next one in flight.
        let mut first = 1;
        for &d in &used {
            match d.cmp(&first) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => first += 1,
                std::cmp::Ordering::Greater => break,
            }
        }
        if first > IDS {
            // All 65,535 in flight: the caller keeps the window below that (Receive Maximum).
            return (self.last_packet_id, 0);
        }
        let end = used.iter().copied().find(|&d| d > first).unwrap_or(IDS + 1);
        (
            id_at(first - 1),
            u16::try_from(end - first).unwrap_or(u16::MAX),
        )
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
        s.set_last_packet_id(u16::MAX);
        s.outgoing.push_back(Outgoing {
            packet_id: 1,
            delivery: d(QoS::AtLeastOnce, 1),
            state: OutgoingState::AwaitPubAck,
        });
        assert_eq!(s.next_packet_id(), 2);
    }

    fn in_flight(s: &mut SessionState, packet_id: u16) {
        s.outgoing.push_back(Outgoing {
            packet_id,
            delivery: d(QoS::AtLeastOnce, 1),
            state: OutgoingState::AwaitPubAck,
        });
    }

    #[test]
    fn packet_ids_wrap_around_the_ids_still_in_flight() {
        let mut s = SessionState::new("c".into(), 10);
        for id in [65_534, 65_535, 1, 2, 4] {
            in_flight(&mut s, id);
        }
        s.set_last_packet_id(65_533);
        assert_eq!(s.next_packet_id(), 3);
        assert_eq!(s.next_packet_id(), 5);
        assert_eq!(s.next_packet_id(), 6);
        // An identifier set from outside (a restored session) is where the next search starts.
        s.set_last_packet_id(100);
        assert_eq!(s.next_packet_id(), 101);
    }

    #[test]
    fn a_full_window_of_65534_leaves_the_one_free_identifier() {
        let mut s = SessionState::new("c".into(), 10);
        for id in (1..=u16::MAX).filter(|&id| id != 40_000) {
            in_flight(&mut s, id);
        }
        assert_eq!(s.next_packet_id(), 40_000);
    }

    /// The identifier the scan per call handed out: the first one after the last that is not
    /// in flight.
    fn reference_next(last: u16, outgoing: &VecDeque<Outgoing>) -> u16 {
        let mut id = last;
        loop {
            id = following_id(id);
            if !outgoing.iter().any(|o| o.packet_id == id) {
                return id;
            }
        }
    }

    proptest::proptest! {
        /// Handing out identifiers and acknowledging them in any order gives the identifiers
        /// the scan per call gave, and never one in flight.
        #[test]
        fn packet_ids_match_the_scan_per_call(
            start in proptest::prelude::any::<u16>(),
            ahead in proptest::collection::vec(1u16..300, 0..6),
            steps in proptest::collection::vec((proptest::prelude::any::<bool>(), 0usize..64), 1..400),
        ) {
            let mut s = SessionState::new("c".into(), 10);
            s.set_last_packet_id(start);
            // Restored messages just ahead of the last identifier: runs of free ones end there.
            for offset in ahead {
                let mut id = start;
                for _ in 0..offset {
                    id = following_id(id);
                }
                in_flight(&mut s, id);
            }
            for (send, ack) in steps {
                if send || s.outgoing.is_empty() {
                    let expected = reference_next(s.last_packet_id(), &s.outgoing);
                    let id = s.next_packet_id();
                    proptest::prop_assert_eq!(id, expected);
                    in_flight(&mut s, id);
                } else {
                    let i = ack % s.outgoing.len();
                    s.outgoing.remove(i);
                }
            }
        }
    }
}
