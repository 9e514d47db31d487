//! A damaged store never keeps the broker from starting: journal files truncated at random
//! offsets, bytes flipped in random files, a file deleted. Each time the store opens (cutting
//! the damaged tail, dropping undecodable records, or moving the whole store aside), the
//! recovery report says what was dropped, and a broker on it serves clients.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod persistence_common;

use common::{v4, v4_opts};
use persistence_common::{StoreDir, fresh_dir, start, storage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tern_broker::message::{Delivery, Message};
use tern_broker::session::{EXPIRY_NEVER, QueueLimits, SessionState, Subscription};
use tern_broker::store::fjall_store::{FjallStore, RecoveryReport};
use tern_broker::store::{RetainedStore, SessionStore};
use tern_codec::{QoS, SubscriptionOptions};

const SESSIONS: usize = 10;
const QUEUED: usize = 40;
const LIMITS: QueueLimits = QueueLimits {
    max_messages: 0,
    max_bytes: 0,
    queue_qos0: false,
};

fn temp_dir(name: &str) -> StoreDir {
    fresh_dir("corrupt", name)
}

/// Sessions with subscriptions and queued messages, and retained messages; with `flush`, part
/// of it is moved from the journal into table files.
async fn populate(dir: &Path, flush: bool) {
    let _ = std::fs::remove_dir_all(dir);
    let store = FjallStore::open(&storage(dir)).unwrap();
    let write = |store: &FjallStore, from: usize, to: usize| {
        for s in from..to {
            let mut session = SessionState::new(format!("c{s}").into(), EXPIRY_NEVER);
            session.subscriptions.insert(
                format!("t/{s}/#"),
                Subscription {
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..Default::default()
                    },
                    id: Some(s as u32 + 1),
                },
            );
            store.put(session, Instant::now());
            for i in 0..QUEUED {
                let m = Message::new(
                    format!("t/{s}/x"),
                    format!("{s}:{i}"),
                    QoS::AtLeastOnce,
                    false,
                );
                let d = Delivery {
                    message: Arc::new(m),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    subscription_ids: vec![s as u32 + 1],
                    store_seq: 0,
                };
                store.enqueue(&format!("c{s}"), d, &LIMITS);
            }
            let r = Message::new(
                format!("r/{s}"),
                format!("retained {s}"),
                QoS::AtMostOnce,
                true,
            );
            store.retain(Arc::new(r));
        }
    };
    write(&store, 0, SESSIONS / 2);
    assert!(SessionStore::durable(&*store).wait().await);
    store.close();
    drop(store);
    if flush {
        let db = fjall::Database::builder(dir).open().unwrap();
        for name in ["sessions", "queue", "retained"] {
            let ks = db
                .keyspace(name, fjall::KeyspaceCreateOptions::default)
                .unwrap();
            ks.rotate_memtable_and_wait().unwrap();
        }
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let store = FjallStore::open(&storage(dir)).unwrap();
    write(&store, SESSIONS / 2, SESSIONS);
    assert!(SessionStore::durable(&*store).wait().await);
    store.close();
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn journals(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
        .collect()
}

/// Opens the damaged store, checks that what it kept is consistent, and serves a client with it.
async fn recovers_and_serves(dir: &Path, what: &str) -> RecoveryReport {
    let store = FjallStore::open(&storage(dir)).unwrap_or_else(|e| panic!("{what}: {e}"));
    let report = store.recovery_report().clone();
    // Whatever survived is whole: each queue is a prefix-free, in-order run of its messages.
    for s in 0..SESSIONS {
        if let Some(session) = store.take(&format!("c{s}")) {
            let idx: Vec<usize> = session
                .queue
                .iter()
                .map(|d| {
                    let p = std::str::from_utf8(&d.message.payload).unwrap();
                    let (who, i) = p.split_once(':').unwrap();
                    assert_eq!(who, s.to_string(), "{what}");
                    i.parse().unwrap()
                })
                .collect();
            assert!(idx.windows(2).all(|w| w[0] < w[1]), "{what}: order {idx:?}");
            store.put(session, Instant::now());
        }
    }
    let (broker, addr) = start(&store).await;
    let mut c = v4(v4_opts(addr, "probe"));
    c.connack().await;
    c.client
        .subscribe("probe", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    c.suback().await;
    c.client
        .publish("probe", rumqttc::QoS::AtLeastOnce, false, "alive")
        .await
        .unwrap();
    assert_eq!(&c.publish().await.payload[..], b"alive", "{what}");
    c.client.disconnect().await.unwrap();
    broker.shutdown().await;
    store.close();
    eprintln!("{what}: {report:?}");
    report
}

#[tokio::test]
async fn journal_truncated_at_random_offsets_recovers_a_prefix() {
    let dir = temp_dir("truncate");
    let mut rng = StdRng::seed_from_u64(6);
    for round in 0..8 {
        populate(&dir, round % 2 == 1).await;
        let js = journals(&dir);
        assert!(!js.is_empty(), "journal files exist: {:?}", files(&dir));
        let j = &js[rng.random_range(0..js.len())];
        let len = std::fs::metadata(j).unwrap().len();
        let at = rng.random_range(0..len.max(1));
        let f = std::fs::OpenOptions::new().write(true).open(j).unwrap();
        f.set_len(at).unwrap();
        drop(f);
        let what = format!("round {round}: {} cut at {at} of {len}", j.display());
        recovers_and_serves(&dir, &what).await;
    }
}

#[tokio::test]
async fn flipped_bytes_in_any_file_never_stop_the_broker() {
    let dir = temp_dir("flip");
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..10 {
        populate(&dir, round % 2 == 1).await;
        let fs = files(&dir);
        let f = &fs[rng.random_range(0..fs.len())];
        let mut bytes = std::fs::read(f).unwrap();
        if bytes.is_empty() {
            continue;
        }
        let mut flipped = Vec::new();
        for _ in 0..4 {
            let i = rng.random_range(0..bytes.len());
            bytes[i] ^= 1 << rng.random_range(0..8);
            flipped.push(i);
        }
        std::fs::write(f, &bytes).unwrap();
        let what = format!("round {round}: {} bytes {flipped:?} flipped", f.display());
        recovers_and_serves(&dir, &what).await;
    }
}

#[tokio::test]
async fn a_deleted_file_never_stops_the_broker() {
    let dir = temp_dir("delete");
    populate(&dir, true).await;
    let count = files(&dir).len();
    for i in 0..count {
        populate(&dir, true).await;
        let fs = files(&dir);
        let Some(f) = fs.get(i) else { continue };
        std::fs::remove_file(f).unwrap();
        let what = format!("{} deleted", f.display());
        recovers_and_serves(&dir, &what).await;
    }
}

#[tokio::test]
async fn an_intact_store_reports_nothing_dropped() {
    let dir = temp_dir("intact");
    populate(&dir, true).await;
    let report = recovers_and_serves(&dir, "intact").await;
    assert_eq!(report.sessions, SESSIONS);
    assert_eq!(report.queued_messages, SESSIONS * QUEUED);
    assert_eq!(report.retained_messages, SESSIONS);
    assert_eq!(report.corrupt_records, 0);
    assert!(report.moved_aside.is_none());
}
