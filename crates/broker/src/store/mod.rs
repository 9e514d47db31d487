//! Storage behind narrow traits: where offline sessions and retained messages live.
//!
//! The broker only talks to [`SessionStore`] and [`RetainedStore`]; the in-memory implementations
//! in [`memory`] are the defaults. An on-disk store (persistence) or a cluster backplane
//! implements the same traits; nothing above them assumes the data is in this process's memory.
//! A session is *in* the store only while its client is offline: the live connection owns it
//! otherwise, and hands it back when it ends.

pub mod fjall_store;
pub mod memory;

use crate::message::{Delivery, Message};
use crate::session::{QueueLimits, QueueOutcome, SessionState, Subscription};
use std::sync::Arc;
use std::time::Instant;

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
    /// A ticket that resolves once every write made so far is as durable as the store promises
    /// (the broker waits on it before PUBACK/PUBREC). In-memory stores are always done.
    fn durable(&self) -> Durable {
        Durable::done()
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
