//! Persistence: a broker restarted on the same `data_dir` finds its sessions (with their
//! subscriptions and queued messages) and retained messages again; expired ones are gone; global
//! limits drop and count like the per-session ones; the store format is versioned.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod persistence_common;

use common::{T, v4, v4_opts};
use persistence_common::{StoreDir, copy_dir, fresh_dir, start, storage};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_broker::config::{Durability, StorageConfig};
use tern_broker::message::{Delivery, Message};
use tern_broker::session::{EXPIRY_NEVER, QueueLimits, QueueOutcome, SessionState};
use tern_broker::store::fjall_store::FjallStore;
use tern_broker::store::{FlowChange, RetainedStore, SessionStore};
use tern_codec::QoS;

fn delivery(topic: &str, payload: &str, qos: QoS) -> Delivery {
    Delivery {
        message: Arc::new(Message::new(topic, payload.to_string(), qos, false)),
        qos,
        retain: false,
        subscription_ids: vec![],
        store_seq: 0,
    }
}

const LIMITS: QueueLimits = QueueLimits {
    max_messages: 0,
    max_bytes: 0,
    queue_qos0: false,
};

#[tokio::test]
async fn retained_sessions_and_queued_messages_survive_restart() {
    let dir = temp_dir("restart");
    let store = FjallStore::open(&storage(&dir)).unwrap();
    let (broker, addr) = start(&store).await;

    // A persistent session subscribes, then goes away.
    let mut o = v4_opts(addr, "sub");
    o.set_clean_session(false);
    let mut sub = v4(o);
    sub.connack().await;
    sub.client
        .subscribe("t/#", rumqttc::QoS::ExactlyOnce)
        .await
        .unwrap();
    sub.suback().await;
    sub.client.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Messages for it are queued; a retained message is stored.
    let mut p = v4(v4_opts(addr, "pub"));
    p.connack().await;
    p.client
        .publish("r/1", rumqttc::QoS::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    p.acked().await;
    for i in 0..5 {
        let qos = if i % 2 == 0 {
            rumqttc::QoS::AtLeastOnce
        } else {
            rumqttc::QoS::ExactlyOnce
        };
        p.client
            .publish("t/x", qos, false, format!("m{i}"))
            .await
            .unwrap();
        p.acked().await;
    }
    p.client.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    broker.shutdown().await;
    store.close();
    drop(store);

    let store = FjallStore::open(&storage(&dir)).unwrap();
    let r = store.recovery_report().clone();
    assert_eq!(r.sessions, 1, "{r:?}");
    assert_eq!(r.queued_messages, 5, "{r:?}");
    assert_eq!(r.retained_messages, 1, "{r:?}");
    assert_eq!(r.corrupt_records, 0, "{r:?}");
    let (broker, addr) = start(&store).await;

    // The subscription came back: a new message is queued for the offline session too.
    let mut p = v4(v4_opts(addr, "pub"));
    p.connack().await;
    p.client
        .publish("t/y", rumqttc::QoS::AtLeastOnce, false, "m5")
        .await
        .unwrap();
    p.acked().await;

    let mut o = v4_opts(addr, "sub");
    o.set_clean_session(false);
    let mut sub = v4(o);
    assert!(sub.connack().await.session_present);
    for i in 0..6 {
        let m = sub.publish().await;
        assert_eq!(m.payload, format!("m{i}").as_bytes(), "in order");
    }
    sub.no_publish(Duration::from_millis(200)).await;

    let mut other = v4(v4_opts(addr, "other"));
    other.connack().await;
    other
        .client
        .subscribe("r/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let m = other.publish().await;
    assert_eq!(&m.payload[..], b"kept");
    assert!(m.retain);
    broker.shutdown().await;
    store.close();
}

#[tokio::test]
async fn expired_sessions_and_messages_are_gone_after_restart() {
    let dir = temp_dir("expiry");
    let store = FjallStore::open(&storage(&dir)).unwrap();
    let now = Instant::now();
    // Expires 1 s after a disconnect 0.5 s ago.
    store.put(
        SessionState::new("short".into(), 1),
        now - Duration::from_millis(500),
    );
    store.put(SessionState::new("long".into(), EXPIRY_NEVER), now);
    let mut m = Message::new("t", "soon gone", QoS::AtLeastOnce, false);
    m.expires_at = Some(now + Duration::from_millis(600));
    let d = Delivery {
        message: Arc::new(m),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: vec![],
        store_seq: 0,
    };
    assert_eq!(store.enqueue("long", d, &LIMITS), QueueOutcome::Queued);
    assert_eq!(
        store.enqueue("long", delivery("t", "stays", QoS::AtLeastOnce), &LIMITS),
        QueueOutcome::Queued
    );
    let mut r = Message::new("r", "retained, expiring", QoS::AtMostOnce, true);
    r.expires_at = Some(now + Duration::from_millis(600));
    store.retain(Arc::new(r));
    assert!(SessionStore::durable(&*store).wait().await);
    store.close();
    drop(store);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let store = FjallStore::open(&storage(&dir)).unwrap();
    let rep = store.recovery_report().clone();
    assert_eq!(rep.sessions, 1, "{rep:?}");
    assert_eq!(rep.expired_sessions, 1, "{rep:?}");
    assert_eq!(rep.expired_messages, 2, "{rep:?}");
    assert_eq!(rep.queued_messages, 1, "{rep:?}");
    let s = store.take("long").unwrap();
    assert_eq!(s.queue.len(), 1);
    assert_eq!(&s.queue[0].message.payload[..], b"stays");
    assert!(store.take("short").is_none());
    assert_eq!(RetainedStore::len(&*store), 0);
    store.close();
}

#[tokio::test]
async fn session_of_a_client_connected_at_a_crash_keeps_its_queue_and_expiry_restarts() {
    let dir = temp_dir("online");
    let store = FjallStore::open(&storage(&dir)).unwrap();
    let now = Instant::now();
    store.put(SessionState::new("c".into(), 2), now);
    store.enqueue("c", delivery("t", "q", QoS::AtLeastOnce), &LIMITS);
    // The client connects (the session leaves the store) and the broker dies.
    assert!(store.take("c").is_some());
    assert!(SessionStore::durable(&*store).wait().await);
    store.close();
    drop(store);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let store = FjallStore::open(&storage(&dir)).unwrap();
    // Two seconds passed since the disconnect time stored before: still there, as the client
    // was connected until the end.
    let s = store.take("c").expect("session kept");
    assert_eq!(s.queue.len(), 1);
    store.close();
}

#[tokio::test]
async fn clean_start_forgets_the_stored_session_for_good() {
    let dir = temp_dir("clean");
    let store = FjallStore::open(&storage(&dir)).unwrap();
    let (broker, addr) = start(&store).await;
    let mut o = v4_opts(addr, "c");
    o.set_clean_session(false);
    let mut c = v4(o);
    c.connack().await;
    c.client
        .subscribe("a", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    c.suback().await;
    c.client.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(SessionStore::len(&*store), 1);
    // Clean session 1: the old session is discarded, and this one ends with the connection.
    let mut c = v4(v4_opts(addr, "c"));
    assert!(!c.connack().await.session_present);
    c.client.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    broker.shutdown().await;
    store.close();
    drop(store);
    let store = FjallStore::open(&storage(&dir)).unwrap();
    assert_eq!(store.recovery_report().sessions, 0);
    store.close();
}

#[tokio::test]
async fn global_limit_drops_newest_and_counts() {
    let dir = temp_dir("limit");
    let cfg = StorageConfig {
        max_stored_messages: 3,
        ..storage(&dir)
    };
    let store = FjallStore::open(&cfg).unwrap();
    store.put(SessionState::new("a".into(), EXPIRY_NEVER), Instant::now());
    store.put(SessionState::new("b".into(), EXPIRY_NEVER), Instant::now());
    for c in ["a", "b", "a"] {
        assert_eq!(
            store.enqueue(c, delivery("t", "x", QoS::AtLeastOnce), &LIMITS),
            QueueOutcome::Queued
        );
    }
    assert_eq!(
        store.enqueue("b", delivery("t", "y", QoS::AtLeastOnce), &LIMITS),
        QueueOutcome::DroppedFull
    );
    assert_eq!(store.dropped_global_limit(), 1);
    assert_eq!(store.stored().0, 3);
    // Delivering frees room.
    let mut a = store.take("a").unwrap();
    a.queue.clear();
    a.queue_bytes = 0;
    store.put(a, Instant::now());
    assert_eq!(store.stored().0, 1);
    assert_eq!(
        store.enqueue("b", delivery("t", "z", QoS::AtLeastOnce), &LIMITS),
        QueueOutcome::Queued
    );
    store.close();
}

#[tokio::test]
async fn durability_modes_all_recover_what_was_committed() {
    for durability in [Durability::Sync, Durability::Os, Durability::None] {
        let dir = temp_dir(&format!("mode-{durability:?}"));
        let cfg = StorageConfig {
            durability,
            ..storage(&dir)
        };
        let store = FjallStore::open(&cfg).unwrap();
        store.put(SessionState::new("a".into(), EXPIRY_NEVER), Instant::now());
        for i in 0..100 {
            store.enqueue(
                "a",
                delivery("t", &i.to_string(), QoS::AtLeastOnce),
                &LIMITS,
            );
        }
        assert!(SessionStore::durable(&*store).wait().await);
        store.close();
        drop(store);
        let store = FjallStore::open(&cfg).unwrap();
        let s = store.take("a").unwrap();
        let got: Vec<String> = s
            .queue
            .iter()
            .map(|d| String::from_utf8(d.message.payload.to_vec()).unwrap())
            .collect();
        let want: Vec<String> = (0..100).map(|i: i32| i.to_string()).collect();
        assert_eq!(got, want, "{durability:?}");
        store.close();
    }
}

#[tokio::test]
async fn sync_ticket_waits_for_the_group_commit() {
    let dir = temp_dir("ticket");
    let store = FjallStore::open(&storage(&dir)).unwrap();
    store.put(SessionState::new("a".into(), EXPIRY_NEVER), Instant::now());
    let mut tickets = Vec::new();
    for i in 0..1000 {
        store.enqueue(
            "a",
            delivery("t", &i.to_string(), QoS::AtLeastOnce),
            &LIMITS,
        );
        tickets.push(SessionStore::durable(&*store));
    }
    for t in tickets {
        assert!(tokio::time::timeout(T, t.wait()).await.unwrap());
    }
    store.close();
}

#[tokio::test]
async fn unknown_format_version_is_moved_aside_and_broker_starts_empty() {
    let dir = temp_dir("format");
    {
        // A store written by a (future) format version 99.
        let db = fjall::Database::builder(&dir).open().unwrap();
        let meta = db
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        meta.insert("format_version", 99u32.to_be_bytes().to_vec())
            .unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let store = FjallStore::open(&storage(&dir)).unwrap();
    let aside = store
        .recovery_report()
        .moved_aside
        .clone()
        .expect("moved aside");
    assert!(aside.exists());
    assert_eq!(SessionStore::len(&*store), 0);
    store.close();
}

#[tokio::test]
async fn subscription_of_a_connected_client_survives_a_crash() {
    let dir = temp_dir("connected");
    let store = FjallStore::open(&storage(&dir)).unwrap();
    let (broker, addr) = start(&store).await;
    let mut o = v4_opts(addr, "live");
    o.set_clean_session(false);
    let mut c = v4(o);
    c.connack().await;
    c.client
        .subscribe("live/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    // SUBACK is sent once the subscription is durable.
    c.suback().await;
    // The broker "crashes": the store's files are copied as they are, the session never handed back.
    let copy = temp_dir("connected-copy");
    copy_dir(&dir, &copy);
    c.kill();
    broker.shutdown().await;
    store.close();
    drop(store);

    let store = FjallStore::open(&storage(&copy)).unwrap();
    assert_eq!(
        store.recovery_report().sessions,
        1,
        "{:?}",
        store.recovery_report()
    );
    let subs = store.subscriptions();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].1[0].0, "live/#");
    store.close();
}

#[test]
fn storage_section_parses_and_bad_values_name_the_key() {
    let c = tern_broker::Config::from_toml(
        "[storage]\npersistence = false\ndata_dir = \"/var/lib/tern\"\ndurability = \"os\"\n",
        "tern.toml",
    )
    .unwrap();
    assert!(!c.storage.persistence);
    assert_eq!(c.storage.durability, Durability::Os);
    assert_eq!(c.storage.data_dir, PathBuf::from("/var/lib/tern"));
    let d = tern_broker::Config::from_toml("", "tern.toml").unwrap();
    assert!(d.storage.persistence);
    assert_eq!(d.storage.durability, Durability::Sync);
    assert_eq!(d.storage.data_dir, PathBuf::from("./tern-data"));
    let e = tern_broker::Config::from_toml("[storage]\ndurability = \"fast\"\n", "tern.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("tern.toml:2:") && e.contains("durability"),
        "{e}"
    );
    assert!(e.contains("sync") && e.contains("none"), "{e}");
}

#[tokio::test]
async fn queue_handed_back_after_a_connection_keeps_its_order_across_restart() {
    let dir = temp_dir("handback");
    let store = FjallStore::open(&storage(&dir)).unwrap();
    store.put(SessionState::new("c".into(), EXPIRY_NEVER), Instant::now());
    for i in 0..5 {
        store.enqueue(
            "c",
            delivery("t", &format!("m{i}"), QoS::AtLeastOnce),
            &LIMITS,
        );
    }
    for round in 0..3 {
        // The client connects, takes two messages and acknowledges them (its connection tells
        // the store), two more arrive for it, it leaves.
        let mut s = store.take("c").unwrap();
        for _ in 0..2 {
            let d = s.dequeue().unwrap();
            assert_ne!(d.store_seq, 0);
            let done = FlowChange::Done {
                seq: d.store_seq,
                qos2_sent: false,
            };
            store.record_flow("c", &[done]);
        }
        for j in 0..2 {
            let d = delivery("t", &format!("r{round}-{j}"), QoS::AtLeastOnce);
            s.queue_bytes += d.queued_size();
            s.queue.push_back(d);
        }
        store.put(s, Instant::now());
    }
    let want: Vec<String> = {
        let s = store.take("c").unwrap();
        let v = s
            .queue
            .iter()
            .map(|d| String::from_utf8(d.message.payload.to_vec()).unwrap())
            .collect();
        store.put(s, Instant::now());
        v
    };
    assert_eq!(want, ["r0-1", "r1-0", "r1-1", "r2-0", "r2-1"]);
    assert_eq!(store.stored().0, 5);
    assert!(SessionStore::durable(&*store).wait().await);
    store.close();
    drop(store);
    let store = FjallStore::open(&storage(&dir)).unwrap();
    assert_eq!(store.recovery_report().queued_messages, 5);
    let s = store.take("c").unwrap();
    let got: Vec<String> = s
        .queue
        .iter()
        .map(|d| String::from_utf8(d.message.payload.to_vec()).unwrap())
        .collect();
    assert_eq!(got, want);
    store.close();
}

fn temp_dir(name: &str) -> StoreDir {
    fresh_dir("persist", name)
}
