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
//! It does not persist what only a live connection holds (its mailbox, and its in-flight state
//! until it disconnects) nor pending will messages; see `docs/persistence.md`.

use super::memory::MemoryRetainedStore;
use super::{Durable, RetainedStore, SessionStore, StoredSubscriptions};
use crate::config::{Durability, StorageConfig};
use crate::message::{Delivery, Message};
use crate::session::{
    EXPIRY_NEVER, Outgoing, OutgoingState, QueueLimits, QueueOutcome, SessionState, Subscription,
};
use bytes::BytesMut;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::collections::{HashMap, VecDeque};
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
}

enum Op {
    Insert(Ks, Vec<u8>, Vec<u8>),
    Remove(Ks, Vec<u8>),
}

/// Writes waiting for the committer.
struct Pending {
    ops: Vec<Op>,
    /// Sequence number of the last write appended.
    written: u64,
    stop: bool,
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
            db,
        })
    }

    fn keyspace(&self, ks: Ks) -> &Keyspace {
        match ks {
            Ks::Sessions => &self.sessions,
            Ks::Queue => &self.queue,
            Ks::Retained => &self.retained,
        }
    }
}

/// The committer thread: writes each pending batch atomically, then persists it as the
/// durability mode says, then resolves the tickets it covers.
fn committer(spaces: Spaces, commit: Arc<Commit>) {
    loop {
        let (ops, target, stop) = {
            let mut p = lock(&commit.pending);
            while p.ops.is_empty() && !p.stop {
                p = commit.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            (std::mem::take(&mut p.ops), p.written, p.stop)
        };
        if !ops.is_empty() {
            let mut batch = spaces.db.batch();
            for op in ops {
                match op {
                    Op::Insert(ks, k, v) => batch.insert(spaces.keyspace(ks), k, v),
                    Op::Remove(ks, k) => batch.remove(spaces.keyspace(ks), k),
                }
            }
            let mode = match commit.durability {
                Durability::Sync => Some(PersistMode::SyncData),
                Durability::Os => Some(PersistMode::Buffer),
                Durability::None => None,
            };
            let result = batch.commit().and_then(|()| match mode {
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

/// An offline session in the mirror.
struct Offline {
    session: SessionState,
    expires_at: Option<Instant>,
}

/// A queued message as written on disk: its key, its size, and the delivery itself (sharing the
/// message), to recognise it when the session comes back from its connection.
struct OnDisk {
    seq: u64,
    size: usize,
    delivery: Delivery,
}

/// One client id in the mirror: its session while offline, and the keys of its queued messages
/// on disk (kept while the client is online too, so they can be replaced when it leaves).
#[derive(Default)]
struct Entry {
    offline: Option<Offline>,
    disk_queue: VecDeque<OnDisk>,
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
        let mut sessions: HashMap<Arc<str>, Entry> = HashMap::new();
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
                    sessions.insert(
                        client_id,
                        Entry {
                            offline: Some(off),
                            disk_queue: VecDeque::new(),
                        },
                    );
                }
                Ok(None) => {
                    r.expired_sessions += 1;
                    ops.push(Op::Remove(Ks::Sessions, k.to_vec()));
                    // Tombstone: its queued messages are deleted below as orphans.
                }
                Err(e) => {
                    tracing::warn!(client_id = %client_id, error = %e, "storage: session record dropped");
                    r.corrupt_records += 1;
                    ops.push(Op::Remove(Ks::Sessions, k.to_vec()));
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
            let Some(entry) = sessions.get_mut(client_id) else {
                r.orphan_messages += 1;
                ops.push(Op::Remove(Ks::Queue, k.to_vec()));
                continue;
            };
            let Some(off) = entry.offline.as_mut() else {
                continue;
            };
            match decode_delivery(&mut Reader::new(&v), now, wall) {
                Ok(Some(d)) => {
                    let size = d.queued_size();
                    off.session.queue_bytes += size;
                    entry.disk_queue.push_back(OnDisk {
                        seq,
                        size,
                        delivery: d.clone(),
                    });
                    off.session.queue.push_back(d);
                    r.queued_messages += 1;
                }
                Ok(None) => {
                    r.expired_messages += 1;
                    ops.push(Op::Remove(Ks::Queue, k.to_vec()));
                }
                Err(e) => {
                    tracing::warn!(client_id, seq, error = %e, "storage: queued message dropped");
                    r.corrupt_records += 1;
                    ops.push(Op::Remove(Ks::Queue, k.to_vec()));
                }
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
        r.sessions = sessions.len();
        let (mut count, mut bytes) = (0u64, 0u64);
        for (id, entry) in sessions {
            count += entry.disk_queue.len() as u64;
            bytes += entry.disk_queue.iter().map(|d| d.size as u64).sum::<u64>();
            let i = self.shard_index(&id);
            if let Some(shard) = self.shards.get(i) {
                lock(shard).insert(id, entry);
            }
        }
        self.stored_messages.store(count, Ordering::Relaxed);
        self.stored_bytes.store(bytes, Ordering::Relaxed);
        self.next_seq.store(max_seq + 1, Ordering::Relaxed);
        if !ops.is_empty() {
            let mut batch = spaces.db.batch();
            for op in ops {
                match op {
                    Op::Insert(ks, k, v) => batch.insert(spaces.keyspace(ks), k, v),
                    Op::Remove(ks, k) => batch.remove(spaces.keyspace(ks), k),
                }
            }
            if let Err(e) = batch
                .commit()
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

    fn forget_disk_queue(&self, client_id: &str, entry: &mut Entry, ops: &mut Vec<Op>) {
        for OnDisk { seq, size, .. } in entry.disk_queue.drain(..) {
            ops.push(Op::Remove(Ks::Queue, queue_key(client_id, seq)));
            self.stored_messages.fetch_sub(1, Ordering::Relaxed);
            self.stored_bytes.fetch_sub(size as u64, Ordering::Relaxed);
        }
    }

    fn remove_entry(&self, m: &mut HashMap<Arc<str>, Entry>, client_id: &str) -> Option<Offline> {
        let mut entry = m.remove(client_id)?;
        let mut ops = vec![Op::Remove(Ks::Sessions, client_id.as_bytes().to_vec())];
        self.forget_disk_queue(client_id, &mut entry, &mut ops);
        self.commit.append(ops);
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

fn same_delivery(a: &Delivery, b: &Delivery) -> bool {
    Arc::ptr_eq(&a.message, &b.message)
        && a.qos == b.qos
        && a.retain == b.retain
        && a.subscription_ids == b.subscription_ids
}

/// Takes out of `disk` the run of entries that `queue` starts with, in order; what is left in
/// `disk` is to be deleted.
fn keep_run(disk: &mut VecDeque<OnDisk>, queue: &VecDeque<Delivery>) -> VecDeque<OnDisk> {
    let Some(first) = queue.front() else {
        return VecDeque::new();
    };
    let Some(start) = disk.iter().position(|o| same_delivery(&o.delivery, first)) else {
        return VecDeque::new();
    };
    let run = disk
        .iter()
        .skip(start)
        .zip(queue.iter())
        .take_while(|(o, d)| same_delivery(&o.delivery, d))
        .count();
    let mut kept: VecDeque<OnDisk> = disk.drain(start..start + run).collect();
    kept.shrink_to_fit();
    kept
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
            // Marked online: if the broker dies while the client is connected, recovery counts
            // the session's expiry from the restart. Its queued messages stay on disk until
            // the client hands the session back.
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

    fn put(&self, session: SessionState, disconnected_at: Instant) {
        let expires_at = (session.expiry_interval != EXPIRY_NEVER)
            .then(|| disconnected_at + Duration::from_secs(u64::from(session.expiry_interval)));
        let id = session.client_id.clone();
        self.with_shard(&id, |m| {
            let entry = m.entry(id.clone()).or_default();
            let mut ops = Vec::new();
            // The messages still queued from before the connection are a run of those on disk
            // (the delivered ones were taken from its front): they stay where they are, only
            // the others are deleted and the new ones written, after them.
            let kept = keep_run(&mut entry.disk_queue, &session.queue);
            self.forget_disk_queue(&id, entry, &mut ops);
            entry.disk_queue = kept;
            let now = Instant::now();
            let wall = now_ms();
            for d in session.queue.iter().skip(entry.disk_queue.len()) {
                let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                let size = d.queued_size();
                ops.push(Op::Insert(
                    Ks::Queue,
                    queue_key(&id, seq),
                    encode_delivery(d, now, wall),
                ));
                entry.disk_queue.push_back(OnDisk {
                    seq,
                    size,
                    delivery: d.clone(),
                });
                self.stored_messages.fetch_add(1, Ordering::Relaxed);
                self.stored_bytes.fetch_add(size as u64, Ordering::Relaxed);
            }
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
            let Some(entry) = m.get_mut(client_id) else {
                return QueueOutcome::NoSession;
            };
            let Some(off) = entry.offline.as_mut() else {
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
                QueueOutcome::Queued => off.session.queue.back(),
                _ => None,
            };
            if let Some(d) = queued {
                let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                let value = encode_delivery(d, Instant::now(), now_ms());
                self.commit
                    .append([Op::Insert(Ks::Queue, queue_key(client_id, seq), value)]);
                entry.disk_queue.push_back(OnDisk {
                    seq,
                    size,
                    delivery: d.clone(),
                });
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
                    let subs = o
                        .session
                        .subscriptions
                        .iter()
                        .map(|(f, s)| (f.clone(), *s))
                        .collect();
                    out.push((k.clone(), subs));
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

fn queue_key(client_id: &str, seq: u64) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut k = Vec::with_capacity(2 + id.len() + 8);
    let len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(id.get(..usize::from(len)).unwrap_or(id));
    k.extend_from_slice(&seq.to_be_bytes());
    k
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

/// A session record: everything but the queue, which has one record per message.
fn encode_session(s: &SessionState, online: bool, disconnected_at_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(RECORD_VERSION);
    out.push(u8::from(online));
    out.extend_from_slice(&s.expiry_interval.to_be_bytes());
    out.extend_from_slice(&disconnected_at_ms.to_be_bytes());
    out.extend_from_slice(&s.last_packet_id.to_be_bytes());
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
    out.extend_from_slice(&len(s.incoming_qos2.len()));
    for id in &s.incoming_qos2 {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(&len(s.outgoing.len()));
    let (now, wall) = (Instant::now(), now_ms());
    for o in &s.outgoing {
        out.extend_from_slice(&o.packet_id.to_be_bytes());
        out.push(match o.state {
            OutgoingState::AwaitPubAck => 0,
            OutgoingState::AwaitPubRec => 1,
            OutgoingState::AwaitPubComp => 2,
        });
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
    s.last_packet_id = r.u16()?;
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
        let state = match r.u8()? {
            0 => OutgoingState::AwaitPubAck,
            1 => OutgoingState::AwaitPubRec,
            2 => OutgoingState::AwaitPubComp,
            _ => return Err(DecodeError::Invalid("in-flight state")),
        };
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
        s.last_packet_id = 3;
        let wall = now_ms();
        let rec = encode_session(&s, false, wall);
        let back = decode_session("c".into(), &rec, Instant::now(), wall)
            .unwrap()
            .unwrap();
        assert_eq!(back.session.subscriptions, s.subscriptions);
        assert_eq!(back.session.incoming_qos2, s.incoming_qos2);
        assert_eq!(back.session.outgoing.len(), 1);
        assert_eq!(back.session.last_packet_id, 3);
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

    #[test]
    fn queue_keys_sort_by_client_then_sequence() {
        let a = queue_key("c", 2);
        let b = queue_key("c", 10);
        assert!(a < b);
        assert_eq!(parse_queue_key(&b), Some(("c", 10)));
        assert_eq!(parse_queue_key(b"\x00"), None);
    }
}
