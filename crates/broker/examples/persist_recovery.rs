//! Measures the on-disk store: how long recovery takes for N queued messages, how fast messages
//! are queued with each durability mode, and the size of the store over a publish/deliver soak.
//!
//! ```sh
//! cargo run --release -p tern-broker --example persist_recovery -- recovery 1000000
//! cargo run --release -p tern-broker --example persist_recovery -- enqueue 200000
//! cargo run --release -p tern-broker --example persist_recovery -- soak 120
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_broker::config::{Durability, StorageConfig};
use tern_broker::message::{Delivery, Message};
use tern_broker::session::{EXPIRY_NEVER, QueueLimits, SessionState};
use tern_broker::store::fjall_store::FjallStore;
use tern_broker::store::{FlowChange, SessionStore};
use tern_codec::QoS;

const LIMITS: QueueLimits = QueueLimits {
    max_messages: 0,
    max_bytes: 0,
    queue_qos0: false,
};

fn config(dir: &Path, durability: Durability) -> StorageConfig {
    StorageConfig {
        data_dir: dir.to_path_buf(),
        durability,
        max_stored_messages: 0,
        max_stored_bytes: 0,
        ..StorageConfig::default()
    }
}

fn delivery(i: u64) -> Delivery {
    let m = Message::new(
        format!("bench/{}", i % 16),
        vec![(i % 251) as u8; 64],
        QoS::AtLeastOnce,
        false,
    );
    Delivery {
        message: Arc::new(m),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: vec![],
        store_seq: 0,
    }
}

fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tern-persist-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// N messages queued for 100 offline sessions, then a cold open.
fn recovery(n: u64) {
    let dir = tmp("recovery");
    let store = FjallStore::open(&config(&dir, Durability::Os)).unwrap();
    for s in 0..100 {
        store.put(
            SessionState::new(format!("client-{s}").into(), EXPIRY_NEVER),
            Instant::now(),
        );
    }
    let t = Instant::now();
    for i in 0..n {
        store.enqueue(&format!("client-{}", i % 100), delivery(i), &LIMITS);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(SessionStore::durable(&*store).wait());
    let fill = t.elapsed();
    store.close();
    drop(store);
    let size = du(&dir);
    let t = Instant::now();
    let store = FjallStore::open(&config(&dir, Durability::Sync)).unwrap();
    let open = t.elapsed();
    let r = store.recovery_report().clone();
    println!(
        "recovery: {n} queued messages (64-byte payloads, 100 sessions), store {:.1} MiB; \
         filled in {:.2} s; recovered {} messages in {:.2} s (report: {:.2} s)",
        size as f64 / 1048576.0,
        fill.as_secs_f64(),
        r.queued_messages,
        open.as_secs_f64(),
        r.elapsed.as_secs_f64()
    );
    store.close();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Queue rate from 4 threads with each durability mode, waiting on a ticket per message.
fn enqueue(n: u64) {
    for durability in [Durability::Sync, Durability::Os, Durability::None] {
        let dir = tmp("enqueue");
        let store = FjallStore::open(&config(&dir, durability)).unwrap();
        store.put(SessionState::new("c".into(), EXPIRY_NEVER), Instant::now());
        let t = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|k| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    let mut lat = Vec::new();
                    for i in 0..n / 4 {
                        let t0 = Instant::now();
                        store.enqueue("c", delivery(i * 4 + k), &LIMITS);
                        rt.block_on(SessionStore::durable(&*store).wait());
                        lat.push(t0.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut lat: Vec<Duration> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let secs = t.elapsed().as_secs_f64();
        lat.sort();
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        println!(
            "enqueue {durability:?}: {n} messages from 4 threads, one wait each: {:.0} msg/s, \
             latency p50 {:?} p99 {:?}",
            n as f64 / secs,
            p(0.5),
            p(0.99)
        );
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Steady publish/deliver: 1,000 messages stay queued, one is delivered per one queued.
fn soak(secs: u64) {
    let dir = tmp("soak");
    let store = FjallStore::open(&config(&dir, Durability::Sync)).unwrap();
    store.put(SessionState::new("c".into(), EXPIRY_NEVER), Instant::now());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let start = Instant::now();
    let mut i = 0u64;
    let mut next_report = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(secs) {
        for _ in 0..1000 {
            store.enqueue("c", delivery(i), &LIMITS);
            i += 1;
        }
        rt.block_on(SessionStore::durable(&*store).wait());
        // Deliver down to 1,000 queued: the client takes its session, acknowledges, leaves.
        let mut s = store.take("c").unwrap();
        let mut done = Vec::new();
        while s.queue.len() > 1_000 {
            if let Some(d) = s.dequeue() {
                done.push(FlowChange::Done {
                    seq: d.store_seq,
                    qos2_sent: false,
                });
            }
        }
        store.record_flow("c", &done);
        store.put(s, Instant::now());
        if start.elapsed() >= next_report {
            println!(
                "soak t={:>4} s: {} messages queued in total, 1000 live, store {:.1} MiB",
                start.elapsed().as_secs(),
                i,
                du(&dir) as f64 / 1048576.0
            );
            next_report += Duration::from_secs((secs / 10).max(1));
        }
    }
    println!(
        "soak end t={} s: {} messages, store {:.1} MiB",
        start.elapsed().as_secs(),
        i,
        du(&dir) as f64 / 1048576.0
    );
    store.close();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    match args.get(1).map(String::as_str) {
        Some("recovery") => recovery(arg(2, 1_000_000)),
        Some("enqueue") => enqueue(arg(2, 200_000)),
        Some("soak") => soak(arg(2, 60)),
        _ => eprintln!("usage: persist_recovery recovery [N] | enqueue [N] | soak [SECONDS]"),
    }
}
