//! In-memory [`SessionStore`] and [`RetainedStore`]: the defaults, and what tests use.
//!
//! Sessions are sharded by client id over several mutexes so that queueing for one offline
//! client never waits on another; retained messages sit under one read-mostly `RwLock`.

use super::{RetainedStore, SessionStore, StoredSubscriptions};
use crate::message::{Delivery, Message};
use crate::router::FastState;
use crate::session::{EXPIRY_NEVER, QueueLimits, QueueOutcome, SessionState};
use crate::topic;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

struct Stored {
    session: SessionState,
    expires_at: Option<Instant>,
}

/// Offline sessions in this process's memory.
pub struct MemorySessionStore {
    shards: Vec<Mutex<HashMap<Arc<str>, Stored, FastState>>>,
    hasher: FastState,
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        MemorySessionStore {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            hasher: FastState::default(),
        }
    }
}

impl std::fmt::Debug for MemorySessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySessionStore")
            .field("len", &self.len())
            .finish()
    }
}

impl MemorySessionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, client_id: &str) -> MutexGuard<'_, HashMap<Arc<str>, Stored, FastState>> {
        let i = (self.hasher.hash_one(client_id) as usize) % SHARDS;
        // `i < SHARDS == shards.len()`: the modulo keeps the index in range.
        let shard = &self.shards[i];
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SessionStore for MemorySessionStore {
    fn take(&self, client_id: &str) -> Option<SessionState> {
        self.shard(client_id).remove(client_id).map(|s| s.session)
    }

    fn put(&self, session: SessionState, disconnected_at: Instant) {
        let expires_at = (session.expiry_interval != EXPIRY_NEVER)
            .then(|| disconnected_at + Duration::from_secs(u64::from(session.expiry_interval)));
        let id = session.client_id.clone();
        self.shard(&id).insert(
            id,
            Stored {
                session,
                expires_at,
            },
        );
    }

    fn remove(&self, client_id: &str) -> Option<SessionState> {
        self.take(client_id)
    }

    fn enqueue(&self, client_id: &str, delivery: Delivery, limits: &QueueLimits) -> QueueOutcome {
        match self.shard(client_id).get_mut(client_id) {
            Some(s) => s.session.enqueue(delivery, limits, true),
            None => QueueOutcome::NoSession,
        }
    }

    fn expired(&self, now: Instant) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let m = shard.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(
                m.iter()
                    .filter(|(_, s)| s.expires_at.is_some_and(|t| t <= now))
                    .map(|(k, _)| k.clone()),
            );
        }
        out
    }

    fn take_if_expired(&self, client_id: &str, now: Instant) -> Option<SessionState> {
        let mut m = self.shard(client_id);
        let expired = m
            .get(client_id)
            .is_some_and(|s| s.expires_at.is_some_and(|t| t <= now));
        if expired {
            m.remove(client_id).map(|s| s.session)
        } else {
            None
        }
    }

    fn subscriptions(&self) -> Vec<StoredSubscriptions> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let m = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (k, s) in m.iter() {
                out.push((k.clone(), s.session.subscription_list()));
            }
        }
        out
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// Retained messages in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryRetainedStore {
    messages: RwLock<HashMap<Box<str>, Arc<Message>, FastState>>,
}

impl MemoryRetainedStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RetainedStore for MemoryRetainedStore {
    fn retain(&self, message: Arc<Message>) {
        let mut m = self.messages.write().unwrap_or_else(|e| e.into_inner());
        if message.payload.is_empty() {
            m.remove(message.topic.as_str());
        } else {
            m.insert(message.topic.as_str().into(), message);
        }
    }

    fn matching(&self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        let m = self.messages.read().unwrap_or_else(|e| e.into_inner());
        if !filter.contains(['+', '#']) {
            return m
                .get(filter)
                .filter(|msg| !msg.is_expired(now))
                .cloned()
                .into_iter()
                .collect();
        }
        // A linear scan: subscribing is rare next to publishing; an index can come with need.
        m.iter()
            .filter(|(t, msg)| topic::matches(filter, t) && !msg.is_expired(now))
            .map(|(_, msg)| msg.clone())
            .collect()
    }

    fn len(&self) -> usize {
        self.messages
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_codec::QoS;

    #[test]
    fn retained_message_replaced_and_deleted_by_empty_payload_mqtt_3_3_1_10() {
        let s = MemoryRetainedStore::new();
        let now = Instant::now();
        s.retain(Arc::new(Message::new("a/b", "1", QoS::AtMostOnce, true)));
        s.retain(Arc::new(Message::new("a/b", "2", QoS::AtMostOnce, true)));
        let m = s.matching("a/+", now);
        assert_eq!(m.len(), 1);
        assert_eq!(&m[0].payload[..], b"2");
        s.retain(Arc::new(Message::new("a/b", "", QoS::AtMostOnce, true)));
        assert!(s.matching("a/b", now).is_empty());
        assert!(s.is_empty());
    }

    #[test]
    fn expired_retained_message_not_returned_mqtt_3_3_2_5() {
        let s = MemoryRetainedStore::new();
        let now = Instant::now();
        let m = Message::new("t", "x", QoS::AtMostOnce, true).with_expiry_interval(Some(1), now);
        s.retain(Arc::new(m));
        assert_eq!(s.matching("t", now).len(), 1);
        assert!(s.matching("#", now + Duration::from_secs(2)).is_empty());
    }

    #[test]
    fn session_expires_after_its_interval() {
        let s = MemorySessionStore::new();
        let now = Instant::now();
        s.put(SessionState::new("a".into(), 5), now);
        s.put(SessionState::new("b".into(), EXPIRY_NEVER), now);
        assert!(s.expired(now + Duration::from_secs(4)).is_empty());
        let gone = s.expired(now + Duration::from_secs(5));
        assert_eq!(gone, [Arc::<str>::from("a")]);
        assert!(
            s.take_if_expired("a", now + Duration::from_secs(5))
                .is_some()
        );
        assert!(
            s.take_if_expired("b", now + Duration::from_secs(5))
                .is_none()
        );
        assert_eq!(s.len(), 1);
    }
}
