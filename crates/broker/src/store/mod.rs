//! Storage behind narrow traits: where offline sessions and retained messages live.
//!
//! The broker only talks to [`SessionStore`] and [`RetainedStore`]; the in-memory implementations
//! in [`memory`] are the defaults. An on-disk store (persistence) or a cluster backplane
//! implements the same traits; nothing above them assumes the data is in this process's memory.
//! A session is *in* the store only while its client is offline: the live connection owns it
//! otherwise, and hands it back when it ends. While a client with a persistent session is
//! connected, an on-disk store still writes what a crash must not lose: the QoS 1/2 deliveries
//! routed to it ([`SessionStore::persist_delivery`]) and the changes of its in-flight state
//! ([`SessionStore::record_flow`]).

pub mod fjall_store;
pub mod memory;

use crate::message::{Delivery, Message};
use crate::protocol::Will;
use crate::session::{OutgoingState, QueueLimits, QueueOutcome, SessionState, Subscription};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// A stored session's client id and its subscriptions (full filter, options).
pub type StoredSubscriptions = (Arc<str>, Vec<(String, Subscription)>);

/// Sessions of clients that are not connected.
pub trait SessionStore: Send + Sync {
    /// Takes a client's session out of the store (its client is connecting and resumes it).
    fn take(&self, client_id: &str) -> Option<SessionState>;
    /// Stores the session of a client that disconnected at `disconnected_at`; it expires after
    /// its Session Expiry Interval.
    fn put(&self, session: SessionState, disconnected_at: Instant);
    /// Deletes a session (Clean Start, or a new session replacing it).
    fn remove(&self, client_id: &str) -> Option<SessionState>;
    /// Queues a delivery for an offline session; [`QueueOutcome::NoSession`] if there is none.
    fn enqueue(&self, client_id: &str, delivery: Delivery, limits: &QueueLimits) -> QueueOutcome;
    /// Client ids of the sessions whose expiry interval has run out by `now`.
    fn expired(&self, now: Instant) -> Vec<Arc<str>>;
    /// Removes and returns the session of `client_id` if it has expired by `now` (the broker
    /// calls this with the client's registry entry locked, so a reconnect cannot race it).
    fn take_if_expired(&self, client_id: &str, now: Instant) -> Option<SessionState>;
    /// Subscriptions of every stored session, to rebuild a router on start.
    fn subscriptions(&self) -> Vec<StoredSubscriptions>;
    /// Number of stored (offline) sessions.
    fn len(&self) -> usize;
    /// True when no session is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A connected client's session changed (SUBSCRIBE, UNSUBSCRIBE): an on-disk store records
    /// it so that a crash does not lose it. The session stays with its connection.
    fn save(&self, _session: &SessionState) {}
    /// A QoS 1/2 delivery is about to go into the mailbox of a connected client whose session
    /// is persistent: an on-disk store writes it and sets [`Delivery::store_seq`], so that a
    /// crash before the client acknowledges it does not lose it (the publisher's PUBACK/PUBREC
    /// waits for [`SessionStore::durable`]). Called with the client's registry entry locked,
    /// so the client cannot go offline meanwhile. In-memory stores do nothing.
    fn persist_delivery(&self, _client_id: &str, _delivery: &mut Delivery) {}
    /// Records in-flight changes of a connected persistent session, in order (deliveries
    /// acknowledged, QoS 2 stages, incoming QoS 2 packet identifiers). The connection waits for
    /// [`SessionStore::durable`] before sending a packet that depends on a [`FlowChange::Sent`]
    /// or on an incoming change. In-memory stores do nothing.
    fn record_flow(&self, _client_id: &str, _changes: &[FlowChange]) {}
    /// Opens a unit of writes committed together: what is appended until the matching
    /// [`SessionStore::end_unit`] never reaches the disk without the rest (a QoS 2 message's
    /// routed copies and its incoming packet identifier). Units must be short and must not
    /// wait on [`SessionStore::durable`]. In-memory stores do nothing.
    fn begin_unit(&self) {}
    /// Closes the unit opened by [`SessionStore::begin_unit`].
    fn end_unit(&self) {}
    /// A will that waits for its Will Delay Interval and is due at the given time: an on-disk
    /// store keeps it, so that it still goes out after a restart. `None` forgets the client's
    /// will (published, or its client came back). In-memory stores do nothing.
    fn save_will(&self, _client_id: &str, _will: Option<(&Will, SystemTime)>) {}
    /// The wills that were waiting when the store was opened, with when each is due (once:
    /// later calls return nothing). The broker schedules them as it starts.
    fn take_pending_wills(&self) -> Vec<(Arc<str>, Will, SystemTime)> {
        Vec::new()
    }
    /// A ticket that resolves once every write made so far is as durable as the store promises
    /// (the broker waits on it before PUBACK/PUBREC). In-memory stores are always done.
    fn durable(&self) -> Durable {
        Durable::done()
    }
}

/// A change of a connected persistent session's in-flight state (see [`SessionStore::record_flow`]).
/// Only deliveries with a [`Delivery::store_seq`] have changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowChange {
    /// The delivery stored under `seq` is sent as QoS 2 PUBLISH `packet_id` (`AwaitPubRec`), or
    /// its PUBREC came and PUBREL is sent (`AwaitPubComp`). Written before the packet goes out,
    /// so that after a crash it is resent with the same packet identifier (or PUBREL is), and a
    /// client that already has it does not see it twice.
    Sent {
        /// The delivery's [`Delivery::store_seq`].
        seq: u64,
        /// Its packet identifier.
        packet_id: u16,
        /// Its stage.
        state: OutgoingState,
    },
    /// The delivery stored under `seq` is finished (PUBACK, PUBCOMP, refused by the client, or
    /// dropped by the connection): forget it. `qos2_sent` when a [`FlowChange::Sent`] was
    /// recorded for it.
    Done {
        /// The delivery's [`Delivery::store_seq`].
        seq: u64,
        /// A `Sent` record exists for it.
        qos2_sent: bool,
    },
    /// An incoming QoS 2 packet identifier is held (PUBREC sent: a resent PUBLISH with it is
    /// not routed again) or released (PUBREL received, PUBCOMP sent).
    Incoming {
        /// The packet identifier.
        packet_id: u16,
        /// True when held, false when released.
        held: bool,
    },
}

impl FlowChange {
    /// True when the packet this change goes with must not be sent before it is durable.
    pub fn gates_transmit(&self) -> bool {
        !matches!(self, FlowChange::Done { .. })
    }
}

/// Retained messages, one per topic name (spec section 3.3.1.3).
pub trait RetainedStore: Send + Sync {
    /// Stores `message` as the retained message of its topic, replacing any; an empty payload
    /// deletes it instead [MQTT-3.3.1-6] [MQTT-3.3.1-10].
    fn retain(&self, message: Arc<Message>);
    /// Retained messages whose topic matches `filter` (not a `$share` filter), expired ones left out.
    fn matching(&self, filter: &str, now: Instant) -> Vec<Arc<Message>>;
    /// Number of retained messages.
    fn len(&self) -> usize;
    /// True when nothing is retained.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// As [`SessionStore::durable`], for retained messages.
    fn durable(&self) -> Durable {
        Durable::done()
    }
}

/// A promise that a store's writes up to some point are durable (group commit: one fsync
/// resolves every ticket taken while it ran). [`Durable::done`] for stores with nothing to wait for.
#[derive(Debug, Clone, Default)]
pub struct Durable {
    waits: Vec<(tokio::sync::watch::Receiver<u64>, u64)>,
}

impl Durable {
    /// Nothing to wait for.
    pub fn done() -> Self {
        Durable { waits: Vec::new() }
    }

    /// Resolves when the committed sequence number seen on `committed` reaches `seq`.
    pub fn pending(committed: tokio::sync::watch::Receiver<u64>, seq: u64) -> Self {
        if *committed.borrow() >= seq {
            return Durable::done();
        }
        Durable {
            waits: vec![(committed, seq)],
        }
    }

    /// This ticket and `other`: resolves when both have.
    pub fn and(mut self, other: Durable) -> Self {
        self.waits.extend(other.waits);
        self
    }

    /// True when there is nothing left to wait for.
    pub fn is_done(&self) -> bool {
        self.waits.iter().all(|(rx, seq)| *rx.borrow() >= *seq)
    }

    /// Waits until the writes are durable; false if the store stopped first (it is closing
    /// or failed), in which case they may not be.
    pub async fn wait(self) -> bool {
        for (mut rx, seq) in self.waits {
            if rx.wait_for(|c| *c >= seq).await.is_err() {
                return false;
            }
        }
        true
    }
}
