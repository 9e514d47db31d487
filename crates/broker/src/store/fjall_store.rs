//! The on-disk store: [`FjallStore`], a [`SessionStore`] and [`RetainedStore`] kept in a `fjall`
//! database (an LSM tree with a journal) under `[storage] data_dir`.
//!
//! Reads never touch the disk after start: every offline session, queued message and retained
//! message is mirrored in memory, and the disk is written through. Writes do not go to `fjall`
//! from the publish path either: they are appended, in order, to a pending batch, and one
//! committer thread writes each batch as one atomic `fjall` write batch, then (with
//! `durability = "sync"`) fsyncs the journal. A [`Durable`] ticket taken after a write resolves
//! when a commit covering it has finished, so one fsync covers every write that arrived while
//! the previous one ran (group commit) and no tokio worker ever blocks on the disk.
//!
//! On open the store is replayed: sessions whose expiry passed while the broker was down are
//! dropped, queued messages come back in order with their message expiry, undecodable records
//! are dropped and counted. A store that cannot be opened at all (corrupt files, unknown format
//! version) is renamed aside and an empty one is created: the broker always starts.
//!
//! A persistent session's deliveries are records keyed by client id and a sequence number
//! (`queue`), whether its client is offline (queued) or connected (routed to it and not yet
//! acknowledged); the sequence number travels with the delivery ([`Delivery::store_seq`]) and
//! an acknowledgement deletes the record. The `inflight` keyspace holds the QoS 2 stage and
//! packet identifier of the deliveries sent at QoS 2, and the incoming QoS 2 packet identifiers
//! awaiting PUBREL. Recovery puts a delivery with an in-flight record back in flight, the others
//! in the queue, in sequence order. See `docs/persistence.md`.

use super::memory::MemoryRetainedStore;
use super::{Durable, FlowChange, RetainedStore, SessionStore, StoredSubscriptions};
use crate::config::{Durability, StorageConfig};
use crate::message::{Delivery, Message};
use crate::protocol::Will;
use crate::session::{
    EXPIRY_NEVER, Outgoing, OutgoingState, QueueLimits, QueueOutcome, SessionState, Subscription,
};
use bytes::BytesMut;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tern_codec::{Packet, ProtocolVersion, Publish, QoS, RetainHandling, SubscriptionOptions};
use tokio::sync::watch;

/// Version of the on-disk layout, stored under [`FORMAT_KEY`] and checked on open.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_KEY: &[u8] = b"format_version";
const SHARDS: usize = 16;
/// Journal size at which fjall flushes memtables so that old journal files can go.
const JOURNAL_BYTES: u64 = 64 * 1024 * 1024;
/// Memtable size of each keyspace before it is flushed to a table file.
const MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;
/// With `durability = "none"`, how long the committer lets writes gather before a commit.
const BACKGROUND_INTERVAL: Duration = Duration::from_millis(20);

/// Why the store could not be opened (after trying to move a corrupt one aside).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created or the store moved aside.
    #[error("storage data_dir {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store engine refused to open or write (e.g. another broker holds the directory).
    #[error("storage data_dir {path}: {message}")]
    Engine {
        /// The directory.
        path: PathBuf,
        /// What the engine said.
        message: String,
    },
}

/// What recovery found on open, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Offline sessions restored.
    pub sessions: usize,
    /// Queued messages restored.
    pub queued_messages: usize,
    /// Retained messages restored.
    pub retained_messages: usize,
    /// Sessions dropped because their expiry interval ran out while the broker was down.
    pub expired_sessions: usize,
    /// Queued or retained messages dropped because their message expiry ran out.
    pub expired_messages: usize,
    /// Records that could not be decoded (or read) and were dropped.
    pub corrupt_records: usize,
    /// Queued messages whose session record was missing, dropped.
    pub orphan_messages: usize,
    /// Wills waiting for their Will Delay Interval, restored.
    pub pending_wills: usize,
    /// Where an unreadable store was moved, when it was.
    pub moved_aside: Option<PathBuf>,
    /// Time the replay took.
    pub elapsed: Duration,
}

/// Which keyspace a write goes to.
#[derive(Debug, Clone, Copy)]
enum Ks {
    Sessions,
    Queue,
    Retained,
    Inflight,
    Wills,
}

enum Op {
    Insert(Ks, Vec<u8>, Vec<u8>),
    Remove(Ks, Vec<u8>),
    /// Every key starting with these bytes (a client's records).
    RemovePrefix(Ks, Vec<u8>),
}

/// Writes waiting for the committer.
struct Pending {
    ops: Vec<Op>,
    /// Sequence number of the last write appended.
    written: u64,
    stop: bool,
    /// Open units ([`SessionStore::begin_unit`]): the committer takes nothing while any is open.
    units: usize,
}

struct Commit {
    pending: Mutex<Pending>,
    wake: Condvar,
    committed: watch::Sender<u64>,
    durability: Durability,
}

impl Commit {
    /// Appends writes (in order, as one unit) and returns their sequence number.
    fn append(&self, ops: impl IntoIterator<Item = Op>) -> u64 {
        let mut p = lock(&self.pending);
        let before = p.ops.len();
        p.ops.extend(ops);
        if p.ops.len() == before {
            return p.written;
        }
        p.written += 1;
        let seq = p.written;
        drop(p);
        self.wake.notify_one();
        seq
    }

    /// Opens a unit: the committer waits until it is closed before taking what is pending.
    fn open_unit(&self) {
        lock(&self.pending).units += 1;
    }

    /// Closes a unit; the committer resumes once none is open.
    fn close_unit(&self) {
        let mut p = lock(&self.pending);
        p.units = p.units.saturating_sub(1);
        let resume = p.units == 0 && !p.ops.is_empty();
        drop(p);
        if resume {
            self.wake.notify_one();
        }
    }

    fn ticket(&self) -> Durable {
        if self.durability == Durability::None {
            return Durable::done();
        }
        let p = lock(&self.pending);
        if p.stop {
            // Closed: nothing more is committed, so there is nothing to wait for.
            return Durable::done();
        }
        let written = p.written;
        drop(p);
        Durable::pending(self.committed.subscribe(), written)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The keyspaces of one open database.
#[derive(Clone)]
struct Spaces {
    db: Database,
    meta: Keyspace,
    sessions: Keyspace,
    queue: Keyspace,
    retained: Keyspace,
    inflight: Keyspace,
    wills: Keyspace,
}

impl Spaces {
    fn open(path: &Path) -> fjall::Result<Spaces> {
        // Small journals and memtables: recovery replays at most this much journal, and
        // deleted (delivered) messages leave it soon.
        let db = Database::builder(path)
            .max_journaling_size(JOURNAL_BYTES)
            .open()?;
        let opts = || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
        let ks = |name: &str| db.keyspace(name, opts);
        Ok(Spaces {
            meta: ks("meta")?,
            sessions: ks("sessions")?,
            queue: ks("queue")?,
            retained: ks("retained")?,
            inflight: ks("inflight")?,
            wills: ks("wills")?,
            db,
        })
    }

    fn keyspace(&self, ks: Ks) -> &Keyspace {
        match ks {
            Ks::Sessions => &self.sessions,
            Ks::Queue => &self.queue,
            Ks::Retained => &self.retained,
            Ks::Inflight => &self.inflight,
            Ks::Wills => &self.wills,
        }
    }

    /// Adds `ops` to `batch`, in order. A prefix removal reads the keyspace, which shows only
    /// what is committed: the batch so far is committed first (without a sync; the journal
    /// keeps the order, so a crash still recovers a prefix of the writes).
    fn apply(&self, batch: &mut fjall::OwnedWriteBatch, ops: Vec<Op>) -> fjall::Result<()> {
        for op in ops {
            match op {
                Op::Insert(ks, k, v) => batch.insert(self.keyspace(ks), k, v),
                Op::Remove(ks, k) => batch.remove(self.keyspace(ks), k),
                Op::RemovePrefix(ks, prefix) => {
                    std::mem::replace(batch, self.db.batch()).commit()?;
                    for item in self.keyspace(ks).prefix(&prefix) {
                        batch.remove(self.keyspace(ks), item.key()?);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The committer thread: writes each pending batch atomically, then persists it as the
/// durability mode says, then resolves the tickets it covers.
fn committer(spaces: Spaces, commit: Arc<Commit>) {
    loop {
        let (ops, target, stop) = {
            let mut p = lock(&commit.pending);
            while (p.ops.is_empty() || p.units > 0) && !p.stop {
                p = commit.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            (std::mem::take(&mut p.ops), p.written, p.stop)
        };
        if !ops.is_empty() {
            let ops = cancel_delivered(ops);
            let mut batch = spaces.db.batch();
            let mode = match commit.durability {
                Durability::Sync => Some(PersistMode::SyncData),
                Durability::Os => Some(PersistMode::Buffer),
                Durability::None => None,
            };
            let result = spaces
                .apply(&mut batch, ops)
                .and_then(|()| batch.commit())
                .and_then(|()| match mode {
                    Some(m) => spaces.db.persist(m),
                    None => Ok(()),
                });
            if let Err(e) = result {
                // Acknowledged messages would no longer be on disk: stop here, as databases do
                // on a failed fsync, and let recovery start from what the journal holds.
                tracing::error!(error = %e, "storage write failed; aborting so that nothing unstored is acknowledged");
                std::process::abort();
            }
        }
        commit.committed.send_replace(target);
        if stop {
            if let Err(e) = spaces.db.persist(PersistMode::SyncAll) {
                tracing::error!(error = %e, "storage: final sync failed");
            }
            return;
        }
        if commit.durability == Durability::None {
            std::thread::sleep(BACKGROUND_INTERVAL);
        }
    }
}

/// Drops the deliveries written and deleted within one batch: a connected subscriber
/// acknowledged them before they reached the disk, so neither write is needed (sequence numbers
/// are never reused, so the key did not exist before the batch). Under a steady load most
/// deliveries to a connected persistent session end this way.
fn cancel_delivered(ops: Vec<Op>) -> Vec<Op> {
    let mut inserted: HashMap<&[u8], usize, crate::router::FastState> = HashMap::default();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Insert(Ks::Queue, k, _) = op {
            inserted.insert(k, i);
        }
    }
    if inserted.is_empty() {
        return ops;
    }
    let mut skip = vec![false; ops.len()];
    for (i, op) in ops.iter().enumerate() {
        if let Op::Remove(Ks::Queue, k) = op
            && let Some(&at) = inserted.get(k.as_slice())
            && at < i
        {
            skip[at] = true;
            skip[i] = true;
        }
    }
    drop(inserted);
    if !skip.contains(&true) {
        return ops;
    }
    ops.into_iter()
        .zip(skip)
        .filter_map(|(op, skip)| (!skip).then_some(op))
        .collect()
}

/// An offline session in the mirror.
struct Offline {
    session: SessionState,
    expires_at: Option<Instant>,
}

/// One client id in the mirror: its session while the client is offline. The entry stays,
/// empty, while the client is connected with a persistent session: the store then still holds
/// records of it, which removing the session must delete.
#[derive(Default)]
struct Entry {
    offline: Option<Offline>,
}

/// Deliveries of a session that are on disk (queued and in flight), and their bytes.
fn stored_of(s: &SessionState) -> (u64, u64) {
    s.queue
        .iter()
        .chain(s.outgoing.iter().map(|o| &o.delivery))
        .filter(|d| d.store_seq != 0)
        .fold((0, 0), |(n, b), d| (n + 1, b + d.queued_size() as u64))
}

/// Sessions and retained messages in memory, written through to a `fjall` database.
pub struct FjallStore {
    shards: Vec<Mutex<HashMap<Arc<str>, Entry>>>,
    hasher: RandomState,
    retained: MemoryRetainedStore,
    retained_lock: Mutex<()>,
    commit: Arc<Commit>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    next_seq: AtomicU64,
    stored_messages: AtomicU64,
    stored_bytes: AtomicU64,
    max_messages: u64,
    max_bytes: u64,
    dropped_global: AtomicU64,
    report: RecoveryReport,
    path: PathBuf,
    /// Wills found waiting on open, until the broker takes them.
    wills: Mutex<Vec<(Arc<str>, Will, SystemTime)>>,
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore")
            .field("path", &self.path)
            .field("sessions", &SessionStore::len(self))
            .finish_non_exhaustive()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// A monotonic deadline as wall-clock milliseconds (0 stands for none).
fn deadline_to_ms(at: Option<Instant>, now: Instant, now_ms: u64) -> u64 {
    match at {
        None => 0,
        Some(t) => {
            let left = u64::try_from(t.saturating_duration_since(now).as_millis()).unwrap_or(0);
            now_ms.saturating_add(left).max(1)
        }
    }
}

/// Wall-clock milliseconds back to a monotonic deadline; `Err(())` when already past.
fn ms_to_deadline(ms: u64, now: Instant, now_ms: u64) -> Result<Option<Instant>, ()> {
    if ms == 0 {
        return Ok(None);
    }
    if ms <= now_ms {
        return Err(());
    }
    Ok(Some(now + Duration::from_millis(ms - now_ms)))
}

impl FjallStore {
    /// Opens (or creates) the store in `config.data_dir` and replays it. A store that cannot be
    /// read is moved aside (logged) and an empty one created; only an I/O error on the directory
    /// itself, or one held by another process, is an error.
    pub fn open(config: &StorageConfig) -> Result<Arc<FjallStore>, StoreError> {
        let started = Instant::now();
        let path = config.data_dir.clone();
        std::fs::create_dir_all(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        // fjall needs its (empty) lock file to reopen a store: a lost one is no damage.
        let lock_file = path.join("lock");
        if path.join("version").exists() && !lock_file.exists() {
            let _ = std::fs::File::create(&lock_file);
        }
        let mut moved_aside = None;
        let (spaces, mut store, mut report) = match Self::attempt(config, &path) {
            Ok(opened) => opened,
            Err(OpenFailure::Locked(message)) => return Err(StoreError::Engine { path, message }),
            Err(OpenFailure::Unreadable(why)) => {
                let aside = aside_path(&path);
                tracing::error!(data_dir = %path.display(), moved_to = %aside.display(), reason = %why,
                    "storage unreadable: moved aside, starting with an empty store");
                std::fs::rename(&path, &aside).map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?;
                std::fs::create_dir_all(&path).map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?;
                moved_aside = Some(aside);
                Self::attempt(config, &path).map_err(|e| StoreError::Engine {
                    path: path.clone(),
                    message: e.to_string(),
                })?
            }
        };
        let commit = store.commit.clone();
        report.moved_aside = moved_aside;
        report.elapsed = started.elapsed();
        tracing::info!(
            data_dir = %path.display(),
            sessions = report.sessions,
            queued_messages = report.queued_messages,
            retained_messages = report.retained_messages,
            expired_sessions = report.expired_sessions,
            expired_messages = report.expired_messages,
            corrupt_records = report.corrupt_records,
            orphan_messages = report.orphan_messages,
            pending_wills = report.pending_wills,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "storage recovered"
        );
        if report.corrupt_records > 0 || report.orphan_messages > 0 {
            tracing::warn!(
                corrupt_records = report.corrupt_records,
                orphan_messages = report.orphan_messages,
                "storage: unreadable or orphaned records were dropped"
            );
        }
        store.report = report;
        let thread = std::thread::Builder::new()
            .name("tern-storage".into())
            .spawn(move || committer(spaces, commit))
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        *lock(&store.thread) = Some(thread);
        Ok(Arc::new(store))
    }

    /// Opens and replays the store; a panic of the engine on a damaged store counts as unreadable.
    fn attempt(
        config: &StorageConfig,
        path: &Path,
    ) -> Result<(Spaces, FjallStore, RecoveryReport), OpenFailure> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let spaces = Self::open_checked(path)?;
            let mut store = Self::empty(config, path);
            let report = store.replay(&spaces);
            Ok((spaces, store, report))
        }))
        .unwrap_or_else(|_| {
            Err(OpenFailure::Unreadable(
                "the storage engine panicked while reading it".into(),
            ))
        })
    }

    fn empty(config: &StorageConfig, path: &Path) -> FjallStore {
        let (committed, _) = watch::channel(0);
        let commit = Arc::new(Commit {
            pending: Mutex::new(Pending {
                ops: Vec::new(),
                written: 0,
                stop: false,
                units: 0,
            }),
            wake: Condvar::new(),
            committed,
            durability: config.durability,
        });
        FjallStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            retained: MemoryRetainedStore::new(),
            retained_lock: Mutex::new(()),
            commit,
            thread: Mutex::new(None),
            next_seq: AtomicU64::new(1),
            stored_messages: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
            max_messages: config.max_stored_messages,
            max_bytes: config.max_stored_bytes,
            dropped_global: AtomicU64::new(0),
            report: RecoveryReport::default(),
            path: path.to_path_buf(),
            wills: Mutex::new(Vec::new()),
        }
    }

    fn open_checked(path: &Path) -> Result<Spaces, OpenFailure> {
        let spaces = Spaces::open(path).map_err(OpenFailure::from_engine)?;
        let version = spaces
            .meta
            .get(FORMAT_KEY)
            .map_err(|e| OpenFailure::Unreadable(format!("format version unreadable: {e}")))?;
        match version {
            Some(v) => {
                let found = <[u8; 4]>::try_from(&v[..]).map(u32::from_be_bytes).ok();
                if found != Some(FORMAT_VERSION) {
                    return Err(OpenFailure::Unreadable(format!(
                        "format version {found:?}, this broker reads {FORMAT_VERSION}"
                    )));
                }
            }
            None => {
                let empty = spaces.sessions.is_empty().unwrap_or(false)
                    && spaces.queue.is_empty().unwrap_or(false)
                    && spaces.retained.is_empty().unwrap_or(false);
                if !empty {
                    return Err(OpenFailure::Unreadable(
                        "no format version but data present".into(),
                    ));
                }
                let mut b = spaces.db.batch();
                b.insert(
                    &spaces.meta,
                    FORMAT_KEY,
                    FORMAT_VERSION.to_be_bytes().to_vec(),
                );
                b.commit()
                    .and_then(|()| spaces.db.persist(PersistMode::SyncAll))
                    .map_err(|e| OpenFailure::Unreadable(format!("cannot write: {e}")))?;
            }
        }
        Ok(spaces)
    }

    /// Loads everything into the mirror, deleting what is expired or unreadable.
    fn replay(&mut self, spaces: &Spaces) -> RecoveryReport {
        let mut r = RecoveryReport::default();
        let now = Instant::now();
        let wall = now_ms();
        let mut ops = Vec::new();
        let mut sessions: HashMap<Arc<str>, Offline> = HashMap::new();
        // Sessions whose record still holds in-flight state (written before the `inflight`
        // keyspace): moved to their own records below.
        let mut migrate: Vec<Arc<str>> = Vec::new();
        for item in spaces.sessions.iter() {
            let (k, v) = match item.into_inner() {
                Ok(kv) => kv,
                Err(e) => {
                    tracing::warn!(error = %e, "storage: sessions unreadable past this point");
                    r.corrupt_records += 1;
                    break;
                }
            };
            let Ok(client_id) = std::str::from_utf8(&k) else {
                r.corrupt_records += 1;
                ops.push(Op::Remove(Ks::Sessions, k.to_vec()));
                continue;
            };
            let client_id: Arc<str> = Arc::from(client_id);
            match decode_session(client_id.clone(), &v, now, wall) {
                Ok(Some(off)) => {
                    if !off.session.outgoing.is_empty() || !off.session.incoming_qos2.is_empty() {
                        migrate.push(client_id.clone());
                    }
                    sessions.insert(client_id, off);
                }
                Ok(None) => {
                    r.expired_sessions += 1;
                    ops.push(Op::Remove(Ks::Sessions, k.to_vec()));
                    // Its queued messages and in-flight records are deleted below as orphans.
                }
                Err(e) => {
                    tracing::warn!(client_id = %client_id, error = %e, "storage: session record dropped");
                    r.corrupt_records += 1;
                    ops.push(Op::Remove(Ks::Sessions, k.to_vec()));
                }
            }
        }
        // In-flight records: per client, the stage of deliveries sent at QoS 2 (by sequence
        // number) and the incoming QoS 2 identifiers held.
        let mut sent: HashMap<Arc<str>, HashMap<u64, (u16, OutgoingState)>> = HashMap::new();
        for item in spaces.inflight.iter() {
            let (k, v) = match item.into_inner() {
                Ok(kv) => kv,
                Err(e) => {
                    tracing::warn!(error = %e, "storage: in-flight records unreadable past this point");
                    r.corrupt_records += 1;
                    break;
                }
            };
            let Some((id, kind, n)) = parse_flow_key(&k) else {
                r.corrupt_records += 1;
                ops.push(Op::Remove(Ks::Inflight, k.to_vec()));
                continue;
            };
            let Some(client_id) = sessions.get_key_value(id).map(|(i, _)| i.clone()) else {
                // Its session is gone.
                ops.push(Op::Remove(Ks::Inflight, k.to_vec()));
                continue;
            };
            match (kind, decode_flow_value(kind, &v)) {
                (FLOW_OUT, Ok(Some(stage))) => {
                    sent.entry(client_id).or_default().insert(n, stage);
                }
                (FLOW_IN, Ok(_)) => {
                    if let (Some(off), Ok(pid)) = (sessions.get_mut(&client_id), u16::try_from(n)) {
                        off.session.incoming_qos2.insert(pid);
                    }
                }
                (_, Ok(_)) | (_, Err(_)) => {
                    tracing::warn!(client_id = %client_id, "storage: in-flight record dropped");
                    r.corrupt_records += 1;
                    ops.push(Op::Remove(Ks::Inflight, k.to_vec()));
                }
            }
        }
        let mut max_seq = 0;
        for item in spaces.queue.iter() {
            let (k, v) = match item.into_inner() {
                Ok(kv) => kv,
                Err(e) => {
                    tracing::warn!(error = %e, "storage: queue unreadable past this point");
                    r.corrupt_records += 1;
                    break;
                }
            };
            let Some((client_id, seq)) = parse_queue_key(&k) else {
                r.corrupt_records += 1;
                ops.push(Op::Remove(Ks::Queue, k.to_vec()));
                continue;
            };
            max_seq = max_seq.max(seq);
            let Some(off) = sessions.get_mut(client_id) else {
                r.orphan_messages += 1;
                ops.push(Op::Remove(Ks::Queue, k.to_vec()));
                continue;
            };
            let stage = sent.get_mut(client_id).and_then(|m| m.remove(&seq));
            match decode_delivery(&mut Reader::new(&v), now, wall) {
                Ok(Some(mut d)) => {
                    d.store_seq = seq;
                    match stage {
                        // Sent at QoS 2 before the crash: resent with its packet identifier,
                        // or its PUBREL is.
                        Some((packet_id, state)) => off.session.outgoing.push_back(Outgoing {
                            packet_id,
                            delivery: d,
                            state,
                        }),
                        None => {
                            off.session.queue_bytes += d.queued_size();
                            off.session.queue.push_back(d);
                        }
                    }
                    r.queued_messages += 1;
                }
                Ok(None) => {
                    r.expired_messages += 1;
                    ops.push(Op::Remove(Ks::Queue, k.to_vec()));
                    if stage.is_some() {
                        ops.push(Op::Remove(Ks::Inflight, flow_key(client_id, FLOW_OUT, seq)));
                    }
                }
                Err(e) => {
                    tracing::warn!(client_id, seq, error = %e, "storage: queued message dropped");
                    r.corrupt_records += 1;
                    ops.push(Op::Remove(Ks::Queue, k.to_vec()));
                    if stage.is_some() {
                        ops.push(Op::Remove(Ks::Inflight, flow_key(client_id, FLOW_OUT, seq)));
                    }
                }
            }
        }
        // Stages whose message is gone (delivered, or dropped above).
        for (id, left) in sent {
            for seq in left.into_keys() {
                ops.push(Op::Remove(Ks::Inflight, flow_key(&id, FLOW_OUT, seq)));
            }
        }
        for item in spaces.retained.iter() {
            let (k, v) = match item.into_inner() {
                Ok(kv) => kv,
                Err(e) => {
                    tracing::warn!(error = %e, "storage: retained messages unreadable past this point");
                    r.corrupt_records += 1;
                    break;
                }
            };
            match decode_message(&mut Reader::new(&v), now, wall) {
                Ok(Some(m)) if !m.payload.is_empty() => {
                    self.retained.retain(Arc::new(m));
                    r.retained_messages += 1;
                }
                Ok(_) => {
                    r.expired_messages += 1;
                    ops.push(Op::Remove(Ks::Retained, k.to_vec()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "storage: retained message dropped");
                    r.corrupt_records += 1;
                    ops.push(Op::Remove(Ks::Retained, k.to_vec()));
                }
            }
        }
        let mut wills = Vec::new();
        for item in spaces.wills.iter() {
            let (k, v) = match item.into_inner() {
                Ok(kv) => kv,
                Err(e) => {
                    tracing::warn!(error = %e, "storage: wills unreadable past this point");
                    r.corrupt_records += 1;
                    break;
                }
            };
            let client_id = std::str::from_utf8(&k).ok().map(Arc::<str>::from);
            match (client_id, decode_will(&v, now, wall)) {
                (Some(id), Ok((will, due))) => wills.push((id, will, due)),
                (_, _) => {
                    tracing::warn!("storage: pending will dropped");
                    r.corrupt_records += 1;
                    ops.push(Op::Remove(Ks::Wills, k.to_vec()));
                }
            }
        }
        r.pending_wills = wills.len();
        *lock(&self.wills) = wills;
        // Records of the first format kept the in-flight state inside the session record:
        // it gets records of its own (after the queue, in its order), and the session record
        // is rewritten without it.
        for id in migrate {
            let Some(off) = sessions.get_mut(&id) else {
                continue;
            };
            let (migrated, next) = migrate_inflight(&id, &mut off.session, max_seq + 1, now, wall);
            max_seq = next - 1;
            ops.extend(migrated);
            ops.push(Op::Insert(
                Ks::Sessions,
                id.as_bytes().to_vec(),
                encode_session(
                    &off.session,
                    false,
                    session_ms(off.expires_at, &off.session, now, wall),
                ),
            ));
        }
        r.sessions = sessions.len();
        let (mut count, mut bytes) = (0u64, 0u64);
        for (id, off) in sessions {
            let (n, b) = stored_of(&off.session);
            count += n;
            bytes += b;
            let i = self.shard_index(&id);
            if let Some(shard) = self.shards.get(i) {
                lock(shard).insert(id, Entry { offline: Some(off) });
            }
        }
        self.stored_messages.store(count, Ordering::Relaxed);
        self.stored_bytes.store(bytes, Ordering::Relaxed);
        self.next_seq.store(max_seq + 1, Ordering::Relaxed);
        if !ops.is_empty() {
            let mut batch = spaces.db.batch();
            if let Err(e) = spaces
                .apply(&mut batch, ops)
                .and_then(|()| batch.commit())
                .and_then(|()| spaces.db.persist(PersistMode::SyncData))
            {
                tracing::warn!(error = %e, "storage: could not delete dropped records");
            }
        }
        r
    }

    /// What recovery found when the store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Directory of the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Messages queued for offline sessions and the bytes they take, over all sessions.
    pub fn stored(&self) -> (u64, u64) {
        (
            self.stored_messages.load(Ordering::Relaxed),
            self.stored_bytes.load(Ordering::Relaxed),
        )
    }

    /// Messages dropped because the store's global limits were reached.
    pub fn dropped_global_limit(&self) -> u64 {
        self.dropped_global.load(Ordering::Relaxed)
    }

    /// Commits and syncs everything written so far and stops the committer. Call it once the
    /// broker has shut down (every session handed back); later writes are not persisted.
    pub fn close(&self) {
        lock(&self.commit.pending).stop = true;
        self.commit.wake.notify_one();
        let thread = lock(&self.thread).take();
        if thread.is_some_and(|t| t.join().is_err()) {
            tracing::error!("storage committer thread panicked");
        }
    }

    fn shard_index(&self, client_id: &str) -> usize {
        (self.hasher.hash_one(client_id) as usize) % SHARDS
    }

    fn with_shard<R>(
        &self,
        client_id: &str,
        f: impl FnOnce(&mut HashMap<Arc<str>, Entry>) -> R,
    ) -> Option<R> {
        let shard = self.shards.get(self.shard_index(client_id))?;
        let mut m = lock(shard);
        Some(f(&mut m))
    }

    /// Removes a client's entry and every record of it (session, deliveries, in-flight).
    fn remove_entry(&self, m: &mut HashMap<Arc<str>, Entry>, client_id: &str) -> Option<Offline> {
        let entry = m.remove(client_id)?;
        if let Some(off) = &entry.offline {
            let (n, b) = stored_of(&off.session);
            self.stored_messages.fetch_sub(n, Ordering::Relaxed);
            self.stored_bytes.fetch_sub(b, Ordering::Relaxed);
        }
        let prefix = client_prefix(client_id);
        self.commit.append([
            Op::Remove(Ks::Sessions, client_id.as_bytes().to_vec()),
            Op::RemovePrefix(Ks::Queue, prefix.clone()),
            Op::RemovePrefix(Ks::Inflight, prefix),
        ]);
        entry.offline
    }
}

impl Drop for FjallStore {
    fn drop(&mut self) {
        self.close();
    }
}

enum OpenFailure {
    Locked(String),
    Unreadable(String),
}

impl OpenFailure {
    fn from_engine(e: fjall::Error) -> OpenFailure {
        match e {
            fjall::Error::Locked => {
                OpenFailure::Locked("in use by another process (locked)".into())
            }
            e => OpenFailure::Unreadable(e.to_string()),
        }
    }
}

impl std::fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenFailure::Locked(m) | OpenFailure::Unreadable(m) => f.write_str(m),
        }
    }
}

fn aside_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "tern-data".into(), |n| n.to_string_lossy().into_owned());
    let mut aside = path.with_file_name(format!("{name}.corrupt-{}", now_ms()));
    let mut n = 1;
    while aside.exists() {
        aside = path.with_file_name(format!("{name}.corrupt-{}-{n}", now_ms()));
        n += 1;
    }
    aside
}

impl SessionStore for FjallStore {
    fn take(&self, client_id: &str) -> Option<SessionState> {
        self.with_shard(client_id, |m| {
            let entry = m.get_mut(client_id)?;
            let off = entry.offline.take()?;
            let (n, b) = stored_of(&off.session);
            self.stored_messages.fetch_sub(n, Ordering::Relaxed);
            self.stored_bytes.fetch_sub(b, Ordering::Relaxed);
            // Marked online: if the broker dies while the client is connected, recovery counts
            // the session's expiry from the restart. Its deliveries stay on disk until the
            // client acknowledges them.
            let record = encode_session(&off.session, true, now_ms());
            self.commit.append([Op::Insert(
                Ks::Sessions,
                client_id.as_bytes().to_vec(),
                record,
            )]);
            Some(off.session)
        })
        .flatten()
    }

    fn put(&self, mut session: SessionState, disconnected_at: Instant) {
        let expires_at = (session.expiry_interval != EXPIRY_NEVER)
            .then(|| disconnected_at + Duration::from_secs(u64::from(session.expiry_interval)));
        let id = session.client_id.clone();
        self.with_shard(&id, |m| {
            let entry = m.entry(id.clone()).or_default();
            let mut ops = Vec::new();
            let now = Instant::now();
            let wall = now_ms();
            // What was routed to it while connected is on disk already (QoS 1/2, with its
            // sequence number); the rest (QoS 0 left in its mailbox, deliveries of a store-less
            // path) is written now, after it.
            for o in session.outgoing.iter_mut() {
                if o.delivery.store_seq == 0 {
                    let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                    o.delivery.store_seq = seq;
                    ops.push(Op::Insert(
                        Ks::Queue,
                        queue_key(&id, seq),
                        encode_delivery(&o.delivery, now, wall),
                    ));
                    if o.delivery.qos == QoS::ExactlyOnce {
                        ops.push(Op::Insert(
                            Ks::Inflight,
                            flow_key(&id, FLOW_OUT, seq),
                            encode_flow_out(o.packet_id, o.state),
                        ));
                    }
                }
            }
            for d in session.queue.iter_mut() {
                if d.store_seq == 0 {
                    let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                    d.store_seq = seq;
                    ops.push(Op::Insert(
                        Ks::Queue,
                        queue_key(&id, seq),
                        encode_delivery(d, now, wall),
                    ));
                }
            }
            if let Some(old) = &entry.offline {
                // Replaced without having been taken: its messages are counted once.
                let (n, b) = stored_of(&old.session);
                self.stored_messages.fetch_sub(n, Ordering::Relaxed);
                self.stored_bytes.fetch_sub(b, Ordering::Relaxed);
            }
            let (n, b) = stored_of(&session);
            self.stored_messages.fetch_add(n, Ordering::Relaxed);
            self.stored_bytes.fetch_add(b, Ordering::Relaxed);
            let since = Instant::now().saturating_duration_since(disconnected_at);
            let at_ms = wall.saturating_sub(u64::try_from(since.as_millis()).unwrap_or(0));
            ops.push(Op::Insert(
                Ks::Sessions,
                id.as_bytes().to_vec(),
                encode_session(&session, false, at_ms),
            ));
            self.commit.append(ops);
            entry.offline = Some(Offline {
                session,
                expires_at,
            });
        });
    }

    fn remove(&self, client_id: &str) -> Option<SessionState> {
        self.with_shard(client_id, |m| self.remove_entry(m, client_id))
            .flatten()
            .map(|o| o.session)
    }

    fn enqueue(&self, client_id: &str, delivery: Delivery, limits: &QueueLimits) -> QueueOutcome {
        self.with_shard(client_id, |m| {
            let Some(off) = m.get_mut(client_id).and_then(|e| e.offline.as_mut()) else {
                return QueueOutcome::NoSession;
            };
            let size = delivery.queued_size();
            let counts = delivery.qos != QoS::AtMostOnce || limits.queue_qos0;
            let over = (self.max_messages != 0
                && self.stored_messages.load(Ordering::Relaxed) >= self.max_messages)
                || (self.max_bytes != 0
                    && self.stored_bytes.load(Ordering::Relaxed) + size as u64 > self.max_bytes);
            if counts && over {
                // The same policy as a full session queue: the newest message is dropped.
                off.session.dropped += 1;
                self.dropped_global.fetch_add(1, Ordering::Relaxed);
                return QueueOutcome::DroppedFull;
            }
            let outcome = off.session.enqueue(delivery, limits, true);
            let queued = match outcome {
                QueueOutcome::Queued => off.session.queue.back_mut(),
                _ => None,
            };
            if let Some(d) = queued {
                let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                d.store_seq = seq;
                let value = encode_delivery(d, Instant::now(), now_ms());
                self.commit
                    .append([Op::Insert(Ks::Queue, queue_key(client_id, seq), value)]);
                self.stored_messages.fetch_add(1, Ordering::Relaxed);
                self.stored_bytes.fetch_add(size as u64, Ordering::Relaxed);
            }
            outcome
        })
        .unwrap_or(QueueOutcome::NoSession)
    }

    fn expired(&self, now: Instant) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let m = lock(shard);
            out.extend(
                m.iter()
                    .filter(|(_, e)| {
                        e.offline
                            .as_ref()
                            .is_some_and(|o| o.expires_at.is_some_and(|t| t <= now))
                    })
                    .map(|(k, _)| k.clone()),
            );
        }
        out
    }

    fn take_if_expired(&self, client_id: &str, now: Instant) -> Option<SessionState> {
        self.with_shard(client_id, |m| {
            let expired = m.get(client_id).is_some_and(|e| {
                e.offline
                    .as_ref()
                    .is_some_and(|o| o.expires_at.is_some_and(|t| t <= now))
            });
            if expired {
                self.remove_entry(m, client_id).map(|o| o.session)
            } else {
                None
            }
        })
        .flatten()
    }

    fn subscriptions(&self) -> Vec<StoredSubscriptions> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let m = lock(shard);
            for (k, e) in m.iter() {
                if let Some(o) = &e.offline {
                    out.push((k.clone(), o.session.subscription_list()));
                }
            }
        }
        out
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).values().filter(|e| e.offline.is_some()).count())
            .sum()
    }

    fn save(&self, session: &SessionState) {
        if session.expiry_interval == 0 {
            // Ends with its connection: nothing to keep.
            return;
        }
        let id = session.client_id.clone();
        self.with_shard(&id, |m| {
            let entry = m.entry(id.clone()).or_default();
            if entry.offline.is_some() {
                return;
            }
            let record = encode_session(session, true, now_ms());
            self.commit
                .append([Op::Insert(Ks::Sessions, id.as_bytes().to_vec(), record)]);
        });
    }

    fn persist_delivery(&self, client_id: &str, delivery: &mut Delivery) {
        if delivery.qos == QoS::AtMostOnce {
            return;
        }
        // No lock of the mirror: the caller holds the client's registry entry, which orders
        // this before the client can acknowledge the delivery or hand its session back.
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        delivery.store_seq = seq;
        let value = encode_delivery(delivery, Instant::now(), now_ms());
        self.commit
            .append([Op::Insert(Ks::Queue, queue_key(client_id, seq), value)]);
    }

    fn save_will(&self, client_id: &str, will: Option<(&Will, SystemTime)>) {
        let key = client_id.as_bytes().to_vec();
        self.commit.append([match will {
            Some((w, due)) => Op::Insert(Ks::Wills, key, encode_will(w, due)),
            None => Op::Remove(Ks::Wills, key),
        }]);
    }

    fn take_pending_wills(&self) -> Vec<(Arc<str>, Will, SystemTime)> {
        std::mem::take(&mut *lock(&self.wills))
    }

    fn begin_unit(&self) {
        self.commit.open_unit();
    }

    fn end_unit(&self) {
        self.commit.close_unit();
    }

    fn record_flow(&self, client_id: &str, changes: &[FlowChange]) {
        let mut ops = Vec::with_capacity(changes.len());
        for c in changes {
            match *c {
                FlowChange::Sent {
                    seq,
                    packet_id,
                    state,
                } => ops.push(Op::Insert(
                    Ks::Inflight,
                    flow_key(client_id, FLOW_OUT, seq),
                    encode_flow_out(packet_id, state),
                )),
                FlowChange::Done { seq, qos2_sent } => {
                    ops.push(Op::Remove(Ks::Queue, queue_key(client_id, seq)));
                    if qos2_sent {
                        ops.push(Op::Remove(Ks::Inflight, flow_key(client_id, FLOW_OUT, seq)));
                    }
                }
                FlowChange::Incoming { packet_id, held } => {
                    let key = flow_key(client_id, FLOW_IN, u64::from(packet_id));
                    ops.push(if held {
                        Op::Insert(Ks::Inflight, key, vec![RECORD_VERSION])
                    } else {
                        Op::Remove(Ks::Inflight, key)
                    });
                }
            }
        }
        self.commit.append(ops);
    }

    fn durable(&self) -> Durable {
        self.commit.ticket()
    }
}

impl RetainedStore for FjallStore {
    fn retain(&self, message: Arc<Message>) {
        // One lock keeps the memory and the disk in the same order for one topic.
        let _order = lock(&self.retained_lock);
        let key = message.topic.as_bytes().to_vec();
        let op = if message.payload.is_empty() {
            Op::Remove(Ks::Retained, key)
        } else {
            Op::Insert(
                Ks::Retained,
                key,
                encode_message(&message, Instant::now(), now_ms()),
            )
        };
        self.retained.retain(message);
        self.commit.append([op]);
    }

    fn matching(&self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        self.retained.matching(filter, now)
    }

    fn len(&self) -> usize {
        RetainedStore::len(&self.retained)
    }

    fn durable(&self) -> Durable {
        self.commit.ticket()
    }
}

// ---- record encoding -------------------------------------------------------------------------
//
// Integers big-endian; strings and byte strings with a u32 length. A message is its metadata
// followed by the message as a v5 PUBLISH packet, encoded by tern-codec (which carries topic,
// payload, QoS, RETAIN and every property).

const RECORD_VERSION: u8 = 1;

/// The start of every `queue` and `inflight` key of a client: its id with a u16 length.
fn client_prefix(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut k = Vec::with_capacity(2 + id.len() + 9);
    let len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(id.get(..usize::from(len)).unwrap_or(id));
    k
}

fn queue_key(client_id: &str, seq: u64) -> Vec<u8> {
    let mut k = client_prefix(client_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `inflight` record of a delivery sent at QoS 2, keyed by its sequence number; value: packet
/// identifier and stage.
const FLOW_OUT: u8 = 0;
/// `inflight` record of an incoming QoS 2 packet identifier held until PUBREL; empty value.
const FLOW_IN: u8 = 1;

fn flow_key(client_id: &str, kind: u8, n: u64) -> Vec<u8> {
    let mut k = client_prefix(client_id);
    k.push(kind);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn parse_flow_key(k: &[u8]) -> Option<(&str, u8, u64)> {
    let len = usize::from(u16::from_be_bytes(k.get(..2)?.try_into().ok()?));
    let id = std::str::from_utf8(k.get(2..2 + len)?).ok()?;
    let kind = *k.get(2 + len)?;
    let n = u64::from_be_bytes(k.get(3 + len..)?.try_into().ok()?);
    Some((id, kind, n))
}

fn state_byte(s: OutgoingState) -> u8 {
    match s {
        OutgoingState::AwaitPubAck => 0,
        OutgoingState::AwaitPubRec => 1,
        OutgoingState::AwaitPubComp => 2,
    }
}

fn state_from_byte(b: u8) -> Result<OutgoingState, DecodeError> {
    match b {
        0 => Ok(OutgoingState::AwaitPubAck),
        1 => Ok(OutgoingState::AwaitPubRec),
        2 => Ok(OutgoingState::AwaitPubComp),
        _ => Err(DecodeError::Invalid("in-flight state")),
    }
}

fn encode_flow_out(packet_id: u16, state: OutgoingState) -> Vec<u8> {
    let mut v = vec![RECORD_VERSION];
    v.extend_from_slice(&packet_id.to_be_bytes());
    v.push(state_byte(state));
    v
}

/// The stage of an outgoing record; `None` for an incoming one (no value to read).
fn decode_flow_value(kind: u8, v: &[u8]) -> Result<Option<(u16, OutgoingState)>, DecodeError> {
    let mut r = Reader::new(v);
    match r.u8()? {
        RECORD_VERSION => {}
        v => return Err(DecodeError::Version(v)),
    }
    let out = match kind {
        FLOW_OUT => {
            let packet_id = r.u16()?;
            Some((packet_id, state_from_byte(r.u8()?)?))
        }
        FLOW_IN => None,
        _ => return Err(DecodeError::Invalid("in-flight record kind")),
    };
    if !r.buf.is_empty() {
        return Err(DecodeError::Invalid("trailing bytes"));
    }
    Ok(out)
}

/// A will waiting for its delay: when it is due (wall clock), its delay and message expiry
/// intervals, and the message.
fn encode_will(w: &Will, due: SystemTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + w.message.payload.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&unix_ms(due).to_be_bytes());
    out.extend_from_slice(&w.delay_interval.to_be_bytes());
    match w.message_expiry_interval {
        Some(e) => {
            out.push(1);
            out.extend_from_slice(&e.to_be_bytes());
        }
        None => out.push(0),
    }
    encode_message_into(&mut out, &w.message, Instant::now(), now_ms());
    out
}

fn decode_will(v: &[u8], now: Instant, wall: u64) -> Result<(Will, SystemTime), DecodeError> {
    let mut r = Reader::new(v);
    match r.u8()? {
        RECORD_VERSION => {}
        v => return Err(DecodeError::Version(v)),
    }
    let due = UNIX_EPOCH + Duration::from_millis(r.u64()?);
    let delay_interval = r.u32()?;
    let message_expiry_interval = match r.u8()? {
        0 => None,
        1 => Some(r.u32()?),
        _ => return Err(DecodeError::Invalid("will expiry flag")),
    };
    // A will message has no deadline of its own until it is published.
    let message = decode_message_body(&mut r, now, wall)?.ok_or(DecodeError::Invalid("will"))?;
    if !r.buf.is_empty() {
        return Err(DecodeError::Invalid("trailing bytes"));
    }
    Ok((
        Will {
            message,
            delay_interval,
            message_expiry_interval,
        },
        due,
    ))
}

/// Wall-clock time of disconnection to write for an offline session so that it expires at
/// `expires_at`.
fn session_ms(expires_at: Option<Instant>, s: &SessionState, now: Instant, wall: u64) -> u64 {
    match expires_at {
        Some(t) if s.expiry_interval != EXPIRY_NEVER => {
            deadline_to_ms(Some(t), now, wall).saturating_sub(u64::from(s.expiry_interval) * 1000)
        }
        _ => wall,
    }
}

/// Gives the in-flight state a session record of the first layout held (outgoing messages,
/// incoming QoS 2 identifiers) records of its own, with sequence numbers from `next`; returns
/// the writes and the next free sequence number.
fn migrate_inflight(
    client_id: &str,
    s: &mut SessionState,
    mut next: u64,
    now: Instant,
    wall: u64,
) -> (Vec<Op>, u64) {
    let mut ops = Vec::new();
    for o in s.outgoing.iter_mut().filter(|o| o.delivery.store_seq == 0) {
        o.delivery.store_seq = next;
        ops.push(Op::Insert(
            Ks::Queue,
            queue_key(client_id, next),
            encode_delivery(&o.delivery, now, wall),
        ));
        if o.delivery.qos == QoS::ExactlyOnce {
            ops.push(Op::Insert(
                Ks::Inflight,
                flow_key(client_id, FLOW_OUT, next),
                encode_flow_out(o.packet_id, o.state),
            ));
        }
        next += 1;
    }
    for id in &s.incoming_qos2 {
        ops.push(Op::Insert(
            Ks::Inflight,
            flow_key(client_id, FLOW_IN, u64::from(*id)),
            vec![RECORD_VERSION],
        ));
    }
    (ops, next)
}

fn parse_queue_key(k: &[u8]) -> Option<(&str, u64)> {
    let len = usize::from(u16::from_be_bytes(k.get(..2)?.try_into().ok()?));
    let id = std::str::from_utf8(k.get(2..2 + len)?).ok()?;
    let seq = u64::from_be_bytes(k.get(2 + len..)?.try_into().ok()?);
    Some((id, seq))
}

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
enum DecodeError {
    #[error("record truncated")]
    Truncated,
    #[error("unknown record version {0}")]
    Version(u8),
    #[error("invalid {0}")]
    Invalid(&'static str),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let head = self.buf.get(..n).ok_or(DecodeError::Truncated)?;
        self.buf = self.buf.get(n..).ok_or(DecodeError::Truncated)?;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array()?))
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::Invalid("UTF-8 string"))
    }
    /// A count of following items, each at least `min` bytes: refuses counts the record
    /// cannot hold, so a corrupt count never allocates.
    fn count(&mut self, min: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(b);
}

fn encode_message_into(out: &mut Vec<u8>, m: &Message, now: Instant, wall: u64) {
    out.extend_from_slice(&deadline_to_ms(m.expires_at, now, wall).to_be_bytes());
    match &m.publisher {
        Some(p) => {
            out.push(1);
            put_bytes(out, p.as_bytes());
        }
        None => out.push(0),
    }
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: m.topic.clone(),
        packet_id: u16::from(m.qos != QoS::AtMostOnce),
        properties: m.properties.clone().into(),
        payload: m.payload.clone(),
    });
    let mut buf = BytesMut::new();
    if let Err(e) = tern_codec::encode(&packet, ProtocolVersion::V5, &mut buf) {
        // Cannot happen for a message the broker accepted; stored empty, dropped on recovery.
        tracing::warn!(topic = %m.topic, error = %e, "storage: message not encodable");
        buf.clear();
    }
    put_bytes(out, &buf);
}

fn encode_message(m: &Message, now: Instant, wall: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + m.payload.len() + m.topic.len());
    out.push(RECORD_VERSION);
    encode_message_into(&mut out, m, now, wall);
    out
}

/// `Ok(None)` for a message whose expiry has passed.
fn decode_message_body(
    r: &mut Reader<'_>,
    now: Instant,
    wall: u64,
) -> Result<Option<Message>, DecodeError> {
    let expiry_ms = r.u64()?;
    let publisher = match r.u8()? {
        0 => None,
        1 => Some(Arc::<str>::from(r.str()?)),
        _ => return Err(DecodeError::Invalid("publisher flag")),
    };
    let packet = r.bytes()?;
    let mut buf = BytesMut::from(packet);
    let decoded = tern_codec::decode(&mut buf, ProtocolVersion::V5, usize::MAX)
        .map_err(|_| DecodeError::Invalid("PUBLISH packet"))?;
    let Some(Packet::Publish(p)) = decoded else {
        return Err(DecodeError::Invalid("PUBLISH packet"));
    };
    let Ok(expires_at) = ms_to_deadline(expiry_ms, now, wall) else {
        return Ok(None);
    };
    Ok(Some(Message {
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: p.properties.into_inner(),
        expires_at,
        publisher,
        username: None,
        hops: 0,
    }))
}

fn decode_message(
    r: &mut Reader<'_>,
    now: Instant,
    wall: u64,
) -> Result<Option<Message>, DecodeError> {
    match r.u8()? {
        RECORD_VERSION => decode_message_body(r, now, wall),
        v => Err(DecodeError::Version(v)),
    }
}

fn encode_delivery_into(out: &mut Vec<u8>, d: &Delivery, now: Instant, wall: u64) {
    out.push(d.qos as u8);
    out.push(u8::from(d.retain));
    out.extend_from_slice(
        &u32::try_from(d.subscription_ids.len())
            .unwrap_or(0)
            .to_be_bytes(),
    );
    for id in &d.subscription_ids {
        out.extend_from_slice(&id.to_be_bytes());
    }
    encode_message_into(out, &d.message, now, wall);
}

fn encode_delivery(d: &Delivery, now: Instant, wall: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + d.message.payload.len() + d.message.topic.len());
    out.push(RECORD_VERSION);
    encode_delivery_into(&mut out, d, now, wall);
    out
}

fn decode_delivery_body(
    r: &mut Reader<'_>,
    now: Instant,
    wall: u64,
) -> Result<Option<Delivery>, DecodeError> {
    let qos = QoS::from_u8(r.u8()?).ok_or(DecodeError::Invalid("QoS"))?;
    let retain = r.u8()? != 0;
    let n = r.count(4)?;
    let mut subscription_ids = Vec::with_capacity(n);
    for _ in 0..n {
        subscription_ids.push(r.u32()?);
    }
    Ok(decode_message_body(r, now, wall)?.map(|m| Delivery {
        message: Arc::new(m),
        qos,
        retain,
        subscription_ids,
        store_seq: 0,
    }))
}

fn decode_delivery(
    r: &mut Reader<'_>,
    now: Instant,
    wall: u64,
) -> Result<Option<Delivery>, DecodeError> {
    match r.u8()? {
        RECORD_VERSION => decode_delivery_body(r, now, wall),
        v => Err(DecodeError::Version(v)),
    }
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    (o.qos as u8)
        | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling as u8) << 4)
}

fn options_from_byte(b: u8) -> Result<SubscriptionOptions, DecodeError> {
    Ok(SubscriptionOptions {
        qos: QoS::from_u8(b & 0b11).ok_or(DecodeError::Invalid("subscription QoS"))?,
        no_local: b & 0b100 != 0,
        retain_as_published: b & 0b1000 != 0,
        retain_handling: match (b >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::Invalid("retain handling")),
        },
    })
}

/// A session record: everything but its deliveries and in-flight state, which have records of
/// their own (the two lists the layout has room for are written empty).
fn encode_session(s: &SessionState, online: bool, disconnected_at_ms: u64) -> Vec<u8> {
    encode_session_with(s, online, disconnected_at_ms, false)
}

/// [`encode_session`], with the in-flight lists filled when `inflight` (as the first writer
/// did; kept to test that such records are still read).
fn encode_session_with(
    s: &SessionState,
    online: bool,
    disconnected_at_ms: u64,
    inflight: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(RECORD_VERSION);
    out.push(u8::from(online));
    out.extend_from_slice(&s.expiry_interval.to_be_bytes());
    out.extend_from_slice(&disconnected_at_ms.to_be_bytes());
    out.extend_from_slice(&s.last_packet_id().to_be_bytes());
    out.extend_from_slice(&s.dropped.to_be_bytes());
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&len(s.subscriptions.len()));
    for (filter, sub) in &s.subscriptions {
        put_bytes(&mut out, filter.as_bytes());
        out.push(options_byte(&sub.options));
        match sub.id {
            Some(id) => {
                out.push(1);
                out.extend_from_slice(&id.to_be_bytes());
            }
            None => out.push(0),
        }
    }
    if !inflight {
        out.extend_from_slice(&len(0));
        out.extend_from_slice(&len(0));
        return out;
    }
    out.extend_from_slice(&len(s.incoming_qos2.len()));
    for id in &s.incoming_qos2 {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(&len(s.outgoing.len()));
    let (now, wall) = (Instant::now(), now_ms());
    for o in &s.outgoing {
        out.extend_from_slice(&o.packet_id.to_be_bytes());
        out.push(state_byte(o.state));
        encode_delivery_into(&mut out, &o.delivery, now, wall);
    }
    out
}

/// `Ok(None)` for a session whose expiry passed while the broker was down.
fn decode_session(
    client_id: Arc<str>,
    v: &[u8],
    now: Instant,
    wall: u64,
) -> Result<Option<Offline>, DecodeError> {
    let mut r = Reader::new(v);
    match r.u8()? {
        RECORD_VERSION => {}
        v => return Err(DecodeError::Version(v)),
    }
    let online = r.u8()? != 0;
    let expiry_interval = r.u32()?;
    let disconnected_ms = r.u64()?;
    let mut s = SessionState::new(client_id, expiry_interval);
    s.set_last_packet_id(r.u16()?);
    s.dropped = r.u64()?;
    let n = r.count(6)?;
    for _ in 0..n {
        let filter = r.str()?.to_string();
        let options = options_from_byte(r.u8()?)?;
        let id = match r.u8()? {
            0 => None,
            1 => Some(r.u32()?),
            _ => return Err(DecodeError::Invalid("subscription id flag")),
        };
        s.subscriptions.insert(filter, Subscription { options, id });
    }
    let n = r.count(2)?;
    for _ in 0..n {
        s.incoming_qos2.insert(r.u16()?);
    }
    let n = r.count(3)?;
    for _ in 0..n {
        let packet_id = r.u16()?;
        let state = state_from_byte(r.u8()?)?;
        // A message that expired while the broker was down is dropped from the flow; the
        // client's late acknowledgement of it is then ignored.
        if let Some(delivery) = decode_delivery_body(&mut r, now, wall)? {
            s.outgoing.push_back(Outgoing {
                packet_id,
                delivery,
                state,
            });
        }
    }
    if !r.buf.is_empty() {
        return Err(DecodeError::Invalid("trailing bytes"));
    }
    // A session whose client was connected when the broker stopped starts its expiry now.
    let expires_at = if expiry_interval == EXPIRY_NEVER {
        None
    } else {
        let from = if online { wall } else { disconnected_ms };
        let ms = from.saturating_add(u64::from(expiry_interval) * 1000);
        match ms_to_deadline(ms.max(1), now, wall) {
            Ok(t) => t,
            Err(()) => return Ok(None),
        }
    };
    Ok(Some(Offline {
        session: s,
        expires_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(topic: &str, payload: &str, qos: QoS) -> Delivery {
        let mut m = Message::new(topic, payload.to_string(), qos, false);
        m.publisher = Some("pub".into());
        m.properties.content_type = Some("text/plain".into());
        Delivery {
            message: Arc::new(m),
            qos,
            retain: false,
            subscription_ids: vec![7, 9],
            store_seq: 0,
        }
    }

    #[test]
    fn delivery_round_trips_with_properties_and_expiry() {
        let now = Instant::now();
        let wall = now_ms();
        let mut d = delivery("a/b", "hello", QoS::ExactlyOnce);
        Arc::make_mut(&mut d.message).expires_at = Some(now + Duration::from_secs(60));
        let bytes = encode_delivery(&d, now, wall);
        let back = decode_delivery(&mut Reader::new(&bytes), now, wall)
            .unwrap()
            .unwrap();
        assert_eq!(back.message.payload, d.message.payload);
        assert_eq!(back.message.topic, d.message.topic);
        assert_eq!(back.message.properties, d.message.properties);
        assert_eq!(back.message.publisher, d.message.publisher);
        assert_eq!(back.subscription_ids, vec![7, 9]);
        assert_eq!(back.message.remaining_expiry(now), Some(60));
        // Past its expiry on the wall clock: dropped.
        assert!(
            decode_delivery(&mut Reader::new(&bytes), now, wall + 61_000)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn session_record_round_trips() {
        let mut s = SessionState::new("c".into(), 3600);
        s.subscriptions.insert(
            "a/+".into(),
            Subscription {
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
                id: Some(42),
            },
        );
        s.incoming_qos2.insert(5);
        s.outgoing.push_back(Outgoing {
            packet_id: 3,
            delivery: delivery("a/x", "p", QoS::ExactlyOnce),
            state: OutgoingState::AwaitPubComp,
        });
        s.set_last_packet_id(3);
        let wall = now_ms();
        let rec = encode_session_with(&s, false, wall, true);
        let back = decode_session("c".into(), &rec, Instant::now(), wall)
            .unwrap()
            .unwrap();
        assert_eq!(back.session.subscriptions, s.subscriptions);
        assert_eq!(back.session.incoming_qos2, s.incoming_qos2);
        assert_eq!(back.session.outgoing.len(), 1);
        assert_eq!(back.session.last_packet_id(), 3);
        // Disconnected more than an hour ago: expired.
        assert!(
            decode_session("c".into(), &rec, Instant::now(), wall + 3_601_000)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn truncated_or_flipped_records_are_errors_not_panics() {
        let now = Instant::now();
        let wall = now_ms();
        let bytes = encode_delivery(&delivery("t", "payload", QoS::AtLeastOnce), now, wall);
        for cut in 0..bytes.len() {
            assert!(decode_delivery(&mut Reader::new(&bytes[..cut]), now, wall).is_err());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xA5;
            let _ = decode_delivery(&mut Reader::new(&b), now, wall);
        }
        let s = encode_session(&SessionState::new("c".into(), 10), false, wall);
        for cut in 0..s.len() {
            assert!(decode_session("c".into(), &s[..cut], now, wall).is_err());
        }
    }

    /// A QoS 2 message's routed copies and its incoming packet identifier are appended in
    /// two steps; inside a unit the committer takes neither until both are there.
    #[tokio::test]
    async fn writes_of_an_open_unit_are_committed_only_once_it_closes() {
        let dir = tern_testkit::temp_dir("store-unit");
        let config = StorageConfig {
            data_dir: dir.to_path_buf(),
            ..StorageConfig::default()
        };
        let store = FjallStore::open(&config).unwrap();
        SessionStore::begin_unit(&*store);
        store
            .commit
            .append([Op::Insert(Ks::Sessions, b"a".to_vec(), b"1".to_vec())]);
        let first = SessionStore::durable(&*store);
        // The committer is awake (there is a write) but must leave it while the unit is open.
        let waited = tokio::time::timeout(Duration::from_millis(300), first.clone().wait()).await;
        assert!(
            waited.is_err(),
            "a write of an open unit was committed alone"
        );
        store
            .commit
            .append([Op::Insert(Ks::Sessions, b"b".to_vec(), b"2".to_vec())]);
        let both = SessionStore::durable(&*store);
        assert!(!both.is_done());
        SessionStore::end_unit(&*store);
        let done = tokio::time::timeout(Duration::from_secs(30), both.wait()).await;
        assert_eq!(
            done,
            Ok(true),
            "closing the unit lets the committer take both writes"
        );
        assert!(first.is_done());
        store.close();
    }

    #[tokio::test]
    async fn old_session_records_with_inflight_state_are_migrated() {
        let dir = tern_testkit::temp_dir("store-migrate");
        let config = StorageConfig {
            data_dir: dir.to_path_buf(),
            ..StorageConfig::default()
        };
        // A session record as the first writer made it: in-flight state inside.
        let mut s = SessionState::new("c".into(), EXPIRY_NEVER);
        s.outgoing.push_back(Outgoing {
            packet_id: 3,
            delivery: delivery("t", "two", QoS::ExactlyOnce),
            state: OutgoingState::AwaitPubComp,
        });
        s.outgoing.push_back(Outgoing {
            packet_id: 4,
            delivery: delivery("t", "one", QoS::AtLeastOnce),
            state: OutgoingState::AwaitPubAck,
        });
        s.incoming_qos2.insert(5);
        let store = FjallStore::open(&config).unwrap();
        let record = encode_session_with(&s, false, now_ms(), true);
        store
            .commit
            .append([Op::Insert(Ks::Sessions, b"c".to_vec(), record)]);
        assert!(SessionStore::durable(&*store).wait().await);
        store.close();
        drop(store);
        // Opened: the state is there, and moved to records of its own.
        let store = FjallStore::open(&config).unwrap();
        let got = store.take("c").unwrap();
        assert_eq!(got.outgoing.len(), 2);
        assert!(got.outgoing.iter().all(|o| o.delivery.store_seq != 0));
        store.put(got, Instant::now());
        store.close();
        drop(store);
        // Opened again, from the new records only.
        let store = FjallStore::open(&config).unwrap();
        assert_eq!(store.recovery_report().corrupt_records, 0);
        let got = store.take("c").unwrap();
        let outgoing: Vec<_> = got
            .outgoing
            .iter()
            .map(|o| (o.packet_id, o.state))
            .collect();
        assert_eq!(outgoing, [(3, OutgoingState::AwaitPubComp)]);
        let queued: Vec<_> = got
            .queue
            .iter()
            .map(|d| d.message.payload.clone())
            .collect();
        assert_eq!(
            queued,
            [bytes::Bytes::from("one")],
            "QoS 1 in flight comes back queued"
        );
        assert_eq!(got.incoming_qos2.iter().copied().collect::<Vec<_>>(), [5]);
        store.close();
    }

    #[test]
    fn cancelled_pairs_leave_the_other_writes() {
        let ops = vec![
            Op::Insert(Ks::Queue, queue_key("c", 1), vec![1]),
            Op::Insert(Ks::Queue, queue_key("c", 2), vec![2]),
            Op::Remove(Ks::Queue, queue_key("c", 1)),
            Op::Remove(Ks::Queue, queue_key("c", 0)),
        ];
        let left = cancel_delivered(ops);
        let keys: Vec<_> = left
            .iter()
            .map(|op| match op {
                Op::Insert(_, k, _) => ("insert", parse_queue_key(k).unwrap().1),
                Op::Remove(_, k) => ("remove", parse_queue_key(k).unwrap().1),
                Op::RemovePrefix(..) => ("prefix", 0),
            })
            .collect();
        assert_eq!(keys, [("insert", 2), ("remove", 0)]);
    }

    #[test]
    fn queue_keys_sort_by_client_then_sequence() {
        let a = queue_key("c", 2);
        let b = queue_key("c", 10);
        assert!(a < b);
        assert_eq!(parse_queue_key(&b), Some(("c", 10)));
        assert_eq!(parse_queue_key(b"\x00"), None);
    }
}
