//! The broker as a library: [`Broker`] (configure, then [`Broker::start`]), [`RunningBroker`]
//! (addresses, shutdown) and [`BrokerHandle`] (publish from outside, counters).
//!
//! This module holds the state shared by all connections and the publish path: the router, the
//! session and retained stores (behind traits), and the registry of connected clients with
//! their mailboxes. The registry is sharded by client id; each shard's lock is held only to put
//! a delivery in one mailbox or to move a session between a connection and the store, which
//! is what keeps a message from being lost while its client connects or disconnects. PUBLISH
//! takes the router's lock for reading only; no lock is global to the publish path.

use crate::auth::{Authenticator, Authorizer};
use crate::config::{Config, ListenerConfig};
use crate::message::{Delivery, Message};
use crate::protocol::{ProtocolConfig, Will};
use crate::router::{RouteEntry, Router, TrieRouter};
use crate::session::{QueueLimits, QueueOutcome, SessionState};
use crate::store::memory::{MemoryRetainedStore, MemorySessionStore};
use crate::store::{Durable, FlowChange, RetainedStore, SessionStore};
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Called for every message the broker routes (from clients, wills, or injected): the hook a
/// rules engine uses to see traffic. It runs on the publish path, so it must not block: hand the
/// message (an `Arc`, cheap to clone) to a task of your own, and publish any result from there
/// with [`BrokerHandle::publish`] (publishing from inside the hook would recurse).
pub trait PublishHook: Send + Sync {
    /// A message is about to be routed.
    fn on_publish(&self, message: &Arc<Message>);
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A listener could not bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A listener's TLS, password or ACL file could not be loaded.
    #[error("listener {addr}: {source}")]
    Listener {
        /// The listener's configured address.
        addr: SocketAddr,
        /// What is wrong.
        source: crate::transport::ListenerError,
    },
}

/// Counters of the whole broker, readable at any time.
#[derive(Debug, Default)]
pub struct Stats {
    /// Clients connected now.
    pub clients_connected: AtomicU64,
    /// Messages received from clients (and injected).
    pub messages_received: AtomicU64,
    /// Deliveries put in a mailbox or a session queue.
    pub messages_queued: AtomicU64,
    /// Deliveries dropped because a session's queue was full (count or bytes limit).
    pub dropped_queue_full: AtomicU64,
    /// QoS 0 deliveries not queued for offline sessions.
    pub dropped_qos0_offline: AtomicU64,
    /// Messages dropped at a connection: expired, too large for the client, or unauthorized.
    pub dropped_at_connection: AtomicU64,
    /// Deliveries dropped because the subscriber made no progress for
    /// `slow_consumer_timeout` (also counted in `dropped_queue_full`).
    pub dropped_slow_consumer: AtomicU64,
    /// Times a publishing connection stopped reading because a subscriber's queue was full.
    pub publishers_paused: AtomicU64,
}

/// A plain copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Clients connected now.
    pub clients_connected: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Deliveries queued.
    pub messages_queued: u64,
    /// Dropped: queue full.
    pub dropped_queue_full: u64,
    /// Dropped: QoS 0 for an offline session.
    pub dropped_qos0_offline: u64,
    /// Dropped at a connection.
    pub dropped_at_connection: u64,
    /// Dropped: the subscriber made no progress for `slow_consumer_timeout`.
    pub dropped_slow_consumer: u64,
    /// Publishers paused for a full subscriber queue.
    pub publishers_paused: u64,
}

impl Stats {
    fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            clients_connected: l(&self.clients_connected),
            messages_received: l(&self.messages_received),
            messages_queued: l(&self.messages_queued),
            dropped_queue_full: l(&self.dropped_queue_full),
            dropped_qos0_offline: l(&self.dropped_qos0_offline),
            dropped_at_connection: l(&self.dropped_at_connection),
            dropped_slow_consumer: l(&self.dropped_slow_consumer),
            publishers_paused: l(&self.publishers_paused),
        }
    }
}

/// Deliveries waiting for a connected client's task to pick them up.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    pub(crate) queue: VecDeque<Delivery>,
    pub(crate) bytes: usize,
    /// When a delivery last found the mailbox full with no pop since: the subscriber has made
    /// no progress from then on. Every pop clears it.
    stalled_since: Option<Instant>,
    /// A publisher waits for room ([`Online::room`]).
    waiting: bool,
}

impl Mailbox {
    /// Whether one more delivery of `size` queued bytes would go over the limits.
    fn is_full(&self, limits: &QueueLimits, size: usize) -> bool {
        (limits.max_messages != 0 && self.queue.len() >= limits.max_messages)
            || (limits.max_bytes != 0 && self.bytes + size > limits.max_bytes)
    }
}

/// The mailboxes a publishing connection pushed over their limit: it stops reading its socket
/// until they have room again (back-pressure), or until `slow_consumer_timeout`.
#[derive(Debug, Default)]
pub(crate) struct Pressure {
    /// The publishing connection (its own mailbox never pauses it).
    pub(crate) conn_id: u64,
    /// Mailboxes over their limit, each once.
    pub(crate) full: Vec<Arc<Online>>,
}

/// A connected client as the registry sees it.
#[derive(Debug)]
pub(crate) struct Online {
    pub(crate) conn_id: u64,
    pub(crate) mailbox: Mutex<Mailbox>,
    /// Wakes the connection's task for deliveries and for a takeover.
    pub(crate) wakeup: crate::wakeup::Wakeup,
    /// Wakes publishers paused on this mailbox once it has room.
    room: Notify,
    /// Cancelled once the connection has handed its session back.
    pub(crate) done: crate::latch::Latch,
    /// The session outlives the connection: QoS 1/2 deliveries are written to the session
    /// store before they go into the mailbox ([`SessionStore::persist_delivery`]).
    pub(crate) persistent: bool,
}

impl Online {
    pub(crate) fn new(conn_id: u64, persistent: bool) -> Self {
        Online {
            persistent,
            conn_id,
            mailbox: Mutex::new(Mailbox::default()),
            wakeup: crate::wakeup::Wakeup::default(),
            room: Notify::new(),
            done: crate::latch::Latch::new(),
        }
    }

    /// Takes up to `max` deliveries, oldest first, under one lock: `take` gets each and says
    /// whether it wants another. Returns how many were taken. `take` runs with the mailbox
    /// locked, so it must be short and must not touch the registry or another mailbox.
    /// `limits` are the broker's queue limits (not kept per client: every idle connection would
    /// carry a copy), which say whether a paused publisher may go on.
    pub(crate) fn pop_while(
        &self,
        limits: &QueueLimits,
        max: usize,
        mut take: impl FnMut(Delivery) -> bool,
    ) -> usize {
        let mut mb = lock(&self.mailbox);
        let mut n = 0;
        while n < max {
            let Some(d) = mb.queue.pop_front() else {
                break;
            };
            n += 1;
            mb.bytes = mb.bytes.saturating_sub(d.queued_size());
            if !take(d) {
                break;
            }
        }
        if n == 0 {
            return 0;
        }
        mb.stalled_since = None;
        let wake = mb.waiting && !mb.is_full(limits, 0);
        if wake {
            mb.waiting = false;
        }
        drop(mb);
        if wake {
            self.room.notify_waiters();
        }
        n
    }

    /// Resolves once the mailbox is under `limits` (the broker's queue limits), or its
    /// connection has ended.
    pub(crate) async fn room(&self, limits: QueueLimits) {
        loop {
            let notified = self.room.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a pop in between is not missed.
            notified.as_mut().enable();
            {
                let mut mb = lock(&self.mailbox);
                if !mb.is_full(&limits, 0) {
                    return;
                }
                mb.waiting = true;
            }
            tokio::select! {
                _ = notified => {}
                _ = self.done.cancelled() => return,
            }
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

const SHARDS: usize = 32;

/// Connected clients by id. The map hashes with the router's fast seeded hasher: SipHash here
/// cost more than the rest of a delivery's registry lookup.
type Registry = HashMap<Arc<str>, Arc<Online>, crate::router::FastState>;

type Shard = Mutex<Registry>;

/// State shared by every connection of one broker.
pub(crate) struct Shared {
    pub(crate) proto: Arc<ProtocolConfig>,
    pub(crate) sessions: Arc<dyn SessionStore>,
    pub(crate) retained: Arc<dyn RetainedStore>,
    pub(crate) router: Arc<dyn Router>,
    /// Replaces every listener's own authentication when set.
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    /// Replaces every listener's ACL file when set.
    pub(crate) authorizer: Option<Arc<dyn Authorizer>>,
    pub(crate) transports: Arc<crate::transport::Transports>,
    hooks: Vec<Arc<dyn PublishHook>>,
    online: Vec<Shard>,
    hasher: crate::router::FastState,
    pending_wills: Mutex<HashMap<Arc<str>, (u64, CancellationToken), crate::router::FastState>>,
    pub(crate) stats: Stats,
    /// How long a full mailbox of a connected client may pause its publishers without making
    /// progress before deliveries to it are dropped; zero: drop at once.
    pub(crate) slow_consumer_timeout: Duration,
    next_id: AtomicU64,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

impl Shared {
    pub(crate) fn shard(&self, client_id: &str) -> MutexGuard<'_, Registry> {
        let i = (self.hasher.hash_one(client_id) as usize) % SHARDS;
        // The modulo keeps `i` below SHARDS, the length of `online`.
        lock(&self.online[i])
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Routes a message to every matching subscription, storing it first if retained. The
    /// ticket resolves once what the stores wrote for it is durable (PUBACK/PUBREC waits on it).
    pub(crate) fn publish(&self, message: Arc<Message>) -> Durable {
        self.publish_from(message, None)
    }

    /// [`Shared::publish`] for a client connection: a delivery that finds a connected
    /// subscriber's mailbox full is queued over the limit and the mailbox added to `pressure`,
    /// so the publisher pauses instead of the message being dropped.
    pub(crate) fn publish_from(
        &self,
        message: Arc<Message>,
        mut pressure: Option<&mut Pressure>,
    ) -> Durable {
        self.stats.messages_received.fetch_add(1, Ordering::Relaxed);
        for h in &self.hooks {
            h.on_publish(&message);
        }
        // A retained message is stored (or deleted by an empty payload) [MQTT-3.3.1-5] [MQTT-3.3.1-6].
        if message.retain && self.proto.retain_available {
            self.retained.retain(message.clone());
        }
        let matches = self
            .router
            .route(&message.topic, message.publisher.as_deref());
        for t in matches.targets {
            let d = Delivery {
                message: message.clone(),
                // The lower of the published QoS and the granted QoS [MQTT-3.8.4-8].
                qos: message.qos.min(t.qos),
                // Forwarded with RETAIN 0 unless Retain As Published [MQTT-3.3.1-12] [MQTT-3.3.1-13].
                retain: message.retain && t.retain_as_published,
                subscription_ids: t.subscription_ids,
                store_seq: 0,
            };
            self.deliver(&t.client_id, d, pressure.as_deref_mut());
        }
        for group in matches.shared {
            // The first connected member, in round-robin order, with room in its queue gets the
            // message; failing that, the next in turn's session queues it (or counts the drop),
            // so a message for an offline member is never lost.
            let delivery = |entry: &RouteEntry| Delivery {
                message: message.clone(),
                qos: message.qos.min(entry.options.qos),
                retain: message.retain && entry.options.retain_as_published,
                subscription_ids: entry.subscription_id.into_iter().collect(),
                store_seq: 0,
            };
            let taken = group
                .members
                .iter()
                .any(|(client, entry)| self.offer_online(client, delivery(entry)));
            if !taken && let Some((client, entry)) = group.members.first() {
                self.deliver(client, delivery(entry), pressure.as_deref_mut());
            }
        }
        self.sessions.durable().and(self.retained.durable())
    }

    /// Puts a delivery in the client's mailbox if it is connected and its queue has room;
    /// false (nothing counted) otherwise.
    fn offer_online(&self, client_id: &str, mut d: Delivery) -> bool {
        let limits = self.proto.queue;
        let shard = self.shard(client_id);
        let Some(online) = shard.get(client_id) else {
            return false;
        };
        let mut mb = lock(&online.mailbox);
        if mb.is_full(&limits, d.queued_size()) {
            return false;
        }
        if online.persistent {
            self.sessions.persist_delivery(client_id, &mut d);
        }
        mb.bytes += d.queued_size();
        mb.queue.push_back(d);
        drop(mb);
        online.wakeup.mail();
        self.stats.messages_queued.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Puts a delivery in the client's mailbox if it is connected, else in its stored session.
    /// With `pressure`, a full mailbox of a connected client takes a
    /// delivery over its limit and pauses the publisher, unless it has made no progress
    /// for `slow_consumer_timeout` (then the drop policy applies).
    fn deliver(&self, client_id: &str, mut d: Delivery, pressure: Option<&mut Pressure>) {
        let limits = self.proto.queue;
        let shard = self.shard(client_id);
        let mut stalled = false;
        let outcome = match shard.get(client_id) {
            Some(online) => {
                // A persistent session's QoS 1/2 delivery is written before its client can
                // see it (and before the publisher's PUBACK, whose ticket is taken after this).
                if online.persistent {
                    self.sessions.persist_delivery(client_id, &mut d);
                }
                let mut mb = lock(&online.mailbox);
                let mut push = !mb.is_full(&limits, d.queued_size());
                if !push {
                    let now = Instant::now();
                    let since = *mb.stalled_since.get_or_insert(now);
                    stalled = now.saturating_duration_since(since) >= self.slow_consumer_timeout;
                    if let Some(p) = pressure
                        && p.conn_id != online.conn_id
                        && !stalled
                    {
                        push = true;
                        if !p.full.iter().any(|o| Arc::ptr_eq(o, online)) {
                            p.full.push(online.clone());
                        }
                    }
                }
                if push {
                    mb.bytes += d.queued_size();
                    mb.queue.push_back(d);
                    drop(mb);
                    online.wakeup.mail();
                    QueueOutcome::Queued
                } else {
                    drop(mb);
                    if d.store_seq != 0 {
                        let done = FlowChange::Done {
                            seq: d.store_seq,
                            qos2_sent: false,
                        };
                        self.sessions.record_flow(client_id, &[done]);
                    }
                    QueueOutcome::DroppedFull
                }
            }
            None => self.sessions.enqueue(client_id, d, &limits),
        };
        drop(shard);
        let counter = match outcome {
            QueueOutcome::Queued => &self.stats.messages_queued,
            QueueOutcome::DroppedFull => {
                if stalled {
                    self.stats
                        .dropped_slow_consumer
                        .fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(client_id, "queue full, message dropped");
                &self.stats.dropped_queue_full
            }
            QueueOutcome::DroppedQos0 => &self.stats.dropped_qos0_offline,
            QueueOutcome::NoSession => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a session's subscriptions from the router.
    pub(crate) fn unroute_session(&self, session: &SessionState) {
        for filter in session.subscriptions.keys() {
            self.router.unsubscribe(&session.client_id, filter);
        }
    }

    /// Cancels a will waiting for its delay: the client came back [MQTT-3.1.3-9].
    pub(crate) fn cancel_pending_will(&self, client_id: &str) {
        let mut wills = lock(&self.pending_wills);
        if let Some((_, t)) = wills.remove(client_id) {
            t.cancel();
            self.sessions.save_will(client_id, None);
        }
    }

    /// Publishes a will now, or after the earlier of its delay and the session's end. A will
    /// that waits is written to the session store, so that a restart does not lose it.
    pub(crate) fn schedule_will(
        self: &Arc<Self>,
        client_id: Arc<str>,
        will: Will,
        session_expiry: u32,
    ) {
        let delay = will.effective_delay(session_expiry);
        if delay == 0 {
            self.publish_will(&client_id, will);
            return;
        }
        let delay = Duration::from_secs(u64::from(delay));
        let due = std::time::SystemTime::now() + delay;
        self.arm_will(client_id, will, delay, Some(due));
    }

    /// Publishes `will` after `delay` unless its client comes back first; with `due`, records
    /// it in the session store first (a will restored from the store is there already).
    pub(crate) fn arm_will(
        self: &Arc<Self>,
        client_id: Arc<str>,
        will: Will,
        delay: Duration,
        due: Option<std::time::SystemTime>,
    ) {
        let token = CancellationToken::new();
        let id = self.next_id();
        {
            // Under the lock, so that the store sees a client's wills in the map's order.
            let mut wills = lock(&self.pending_wills);
            if let Some(due) = due {
                self.sessions.save_will(&client_id, Some((&will, due)));
            }
            if let Some((_, old)) = wills.insert(client_id.clone(), (id, token.clone())) {
                old.cancel();
            }
        }
        let shared = self.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {
                    let mut wills = lock(&shared.pending_wills);
                    let ours = wills.get(&client_id).is_some_and(|(i, _)| *i == id);
                    if ours {
                        wills.remove(&client_id);
                        // Published, then forgotten by the store: a crash in between publishes
                        // it again rather than never.
                        shared.publish_will(&client_id, will);
                        shared.sessions.save_will(&client_id, None);
                    }
                }
                _ = token.cancelled() => {}
                // Pending wills are not published on shutdown; the store keeps them for the
                // next start.
                _ = shared.shutdown.cancelled() => {}
            }
        });
    }

    fn publish_will(&self, client_id: &str, will: Will) {
        tracing::debug!(client_id, topic = %will.message.topic, "publishing will");
        let message = will
            .message
            .with_expiry_interval(will.message_expiry_interval, Instant::now());
        let _ = self.publish(Arc::new(message));
    }

    /// Removes sessions whose expiry interval has run out, with their subscriptions.
    pub(crate) fn expire_sessions(&self, now: Instant) {
        for id in self.sessions.expired(now) {
            let shard = self.shard(&id);
            if shard.contains_key(&id) {
                continue;
            }
            if let Some(s) = self.sessions.take_if_expired(&id, now) {
                self.unroute_session(&s);
                tracing::debug!(client_id = %id, "session expired");
            }
            drop(shard);
        }
    }
}

/// A broker, configured but not yet listening.
pub struct Broker {
    config: Config,
    sessions: Arc<dyn SessionStore>,
    retained: Arc<dyn RetainedStore>,
    router: Arc<dyn Router>,
    authenticator: Option<Arc<dyn Authenticator>>,
    authorizer: Option<Arc<dyn Authorizer>>,
    hooks: Vec<Arc<dyn PublishHook>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker with in-memory stores; each listener authenticates and authorizes as its
    /// configuration says (by default: anonymous on loopback, no ACL).
    pub fn new(config: Config) -> Self {
        Broker {
            config,
            sessions: Arc::new(MemorySessionStore::new()),
            retained: Arc::new(MemoryRetainedStore::new()),
            router: Arc::new(TrieRouter::new()),
            authenticator: None,
            authorizer: None,
            hooks: Vec::new(),
        }
    }

    /// Uses another session store (e.g. on disk).
    pub fn with_session_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.sessions = store;
        self
    }

    /// Uses another retained-message store.
    pub fn with_retained_store(mut self, store: Arc<dyn RetainedStore>) -> Self {
        self.retained = store;
        self
    }

    /// Uses another router.
    pub fn with_router(mut self, router: Arc<dyn Router>) -> Self {
        self.router = router;
        self
    }

    /// Checks credentials at CONNECT with `authenticator`, on every listener, instead of the
    /// listeners' anonymous policy and password files.
    pub fn with_authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = Some(authenticator);
        self
    }

    /// Checks topic access with `authorizer`, on every listener, instead of their ACL files.
    pub fn with_authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// Calls `hook` for every routed message.
    pub fn with_publish_hook(mut self, hook: Arc<dyn PublishHook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Binds every listener and starts serving. Sessions found in the store get their
    /// subscriptions back in the router.
    pub async fn start(self) -> Result<RunningBroker, BrokerError> {
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let shared = Arc::new(Shared {
            proto: Arc::new(self.config.protocol()),
            sessions: self.sessions,
            retained: self.retained,
            router: self.router,
            authenticator: self.authenticator,
            authorizer: self.authorizer,
            transports: Arc::new(crate::transport::Transports::new(&self.config)),
            hooks: self.hooks,
            online: (0..SHARDS)
                .map(|_| Mutex::new(Registry::default()))
                .collect(),
            hasher: crate::router::FastState::default(),
            pending_wills: Mutex::new(HashMap::default()),
            stats: Stats::default(),
            slow_consumer_timeout: Duration::from_secs(self.config.broker.slow_consumer_timeout),
            next_id: AtomicU64::new(1),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        });
        for (client_id, subs) in shared.sessions.subscriptions() {
            for (filter, sub) in subs {
                let entry = RouteEntry {
                    options: sub.options,
                    subscription_id: sub.id,
                };
                shared.router.subscribe(&client_id, &filter, entry);
            }
        }
        // Wills that were waiting for their delay when the broker stopped go out at their time,
        // or now if it passed meanwhile, unless their client comes back first.
        let now = std::time::SystemTime::now();
        for (client_id, will, due) in shared.sessions.take_pending_wills() {
            let delay = due.duration_since(now).unwrap_or(Duration::ZERO);
            shared.arm_will(client_id, will, delay, None);
        }
        let mut local_addrs = Vec::new();
        for l in self.config.effective_listeners() {
            let addr = crate::server::listen(&shared, &l, &self.config.auth).await?;
            local_addrs.push(addr);
        }
        let sweeper = shared.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => sweeper.expire_sessions(Instant::now()),
                    _ = sweeper.shutdown.cancelled() => break,
                }
            }
        });
        Ok(RunningBroker {
            shared,
            local_addrs,
            listeners: self.config.effective_listeners(),
        })
    }
}

/// A broker that is listening.
pub struct RunningBroker {
    shared: Arc<Shared>,
    local_addrs: Vec<SocketAddr>,
    listeners: Vec<ListenerConfig>,
}

impl std::fmt::Debug for RunningBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningBroker")
            .field("local_addrs", &self.local_addrs)
            .finish_non_exhaustive()
    }
}

impl RunningBroker {
    /// The addresses actually bound, in listener order (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The listener configurations, in the order of [`RunningBroker::local_addrs`].
    pub fn listeners(&self) -> &[ListenerConfig] {
        &self.listeners
    }

    /// The state every connection shares (for tests of the connection driver).
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A handle to publish into the broker and read its counters.
    pub fn handle(&self) -> BrokerHandle {
        BrokerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stops accepting, tells v5 clients 0x8B Server shutting down, lets every connection hand
    /// its session back to the store, and waits for all tasks to end.
    pub async fn shutdown(self) {
        self.shared.shutdown.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }

    /// Resolves once [`RunningBroker::shutdown`] has been requested from a handle.
    pub async fn wait_for_shutdown_request(&self) {
        self.shared.shutdown.cancelled().await;
    }
}

/// A cheap, cloneable handle on a running broker.
#[derive(Clone)]
pub struct BrokerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BrokerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerHandle").finish_non_exhaustive()
    }
}

impl BrokerHandle {
    /// Publishes a message as if a client had (a rules engine's republish, a bridge). The
    /// topic must be a valid topic name; the message goes through hooks, retained store and router.
    pub fn publish(&self, message: Message) -> Result<(), crate::topic::TopicError> {
        crate::topic::validate_topic_name(&message.topic)?;
        let _ = self.shared.publish(Arc::new(message));
        Ok(())
    }

    /// Serves one MQTT connection over an already accepted stream (TLS, WebSocket, a test
    /// pipe...) until it ends. Spawn it; it returns when the connection is over.
    pub async fn serve_connection<S>(&self, stream: S, peer: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let ctx = self.shared.transports.external.clone();
        // Pinned on the heap: the driver needs an `Unpin` stream (its own are).
        let stream = Box::pin(stream);
        crate::server::serve(self.shared.clone(), ctx, None, stream, peer, None).await;
    }

    /// Reloads every listener's TLS certificates, password file and ACL file (what SIGHUP
    /// does): new connections use them, established ones are not dropped. What fails to load
    /// is logged and keeps its previous version; returns the number of such failures.
    pub fn reload(&self) -> usize {
        self.shared.transports.reload()
    }

    /// Counters of limit hits, refused logins and failed handshakes.
    pub fn limit_stats(&self) -> crate::transport::LimitStats {
        self.shared.transports.stats()
    }

    /// Current counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Number of offline sessions in the store.
    pub fn stored_sessions(&self) -> usize {
        self.shared.sessions.len()
    }

    /// Number of retained messages.
    pub fn retained_messages(&self) -> usize {
        self.shared.retained.len()
    }

    /// Asks the broker to shut down (whoever owns the [`RunningBroker`] finishes it).
    pub fn request_shutdown(&self) {
        self.shared.shutdown.cancel();
    }
}
