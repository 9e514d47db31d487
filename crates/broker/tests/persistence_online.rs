//! Persistence of a *connected* persistent session (issue 6): what is routed to it, its
//! in-flight QoS 1/2 state both ways, as they change, so that a crash while its client is
//! connected loses nothing the broker acknowledged and repeats no completed QoS 2 flow.
//!
//! A crash is simulated by copying the store's directory while the broker runs (after the
//! writes are durable), as `persistence.rs` does, then opening the copy.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod persistence_common;

use common::{Raw, connect_packet};
use persistence_common::{StoreDir, copy_dir, fresh_dir, start, storage};
use std::time::Duration;
use tern_broker::session::OutgoingState;
use tern_broker::store::SessionStore;
use tern_broker::store::fjall_store::FjallStore;
use tern_codec::{ByteStr, Packet, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, QoS};

/// A raw MQTT 3.1.1 client with a persistent session (clean session 0).
async fn persistent(addr: std::net::SocketAddr, id: &str) -> (Raw, bool) {
    let mut c = Raw::connect(addr).await;
    c.version = ProtocolVersion::V311;
    let mut p = connect_packet(ProtocolVersion::V311, id, 60);
    if let Packet::Connect(c) = &mut p {
        c.clean_start = false;
    }
    c.send(&p).await;
    match c.recv().await {
        Some(Packet::ConnAck(a)) if a.reason_code.0 == 0 => {
            let present = a.session_present;
            (c, present)
        }
        other => panic!("no CONNACK: {other:?}"),
    }
}

fn publish(topic: &str, payload: &str, qos: QoS, packet_id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from(topic.to_string()),
        packet_id,
        properties: Default::default(),
        payload: payload.as_bytes().to_vec().into(),
    })
}

/// The next packet within `d`, `None` when nothing comes.
async fn within(c: &mut Raw, d: Duration) -> Option<Packet> {
    tokio::time::timeout(d, c.recv()).await.ok().flatten()
}

fn payload(p: &Publish) -> String {
    String::from_utf8(p.payload.to_vec()).unwrap()
}

#[tokio::test]
async fn connected_session_in_flight_state_survives_a_crash() {
    let dir = temp_dir("inflight");
    let store = FjallStore::open(&storage(&dir)).unwrap();
    let (broker, addr) = start(&store).await;

    let (mut sub, _) = persistent(addr, "live").await;
    sub.subscribe("t/#", QoS::ExactlyOnce).await;

    // A persistent publisher: QoS 1 a0..a2, QoS 2 b0..b2 (completed), and two QoS 2 flows of
    // its own left at PUBREC (id 70) and completed (id 71).
    let (mut publ, _) = persistent(addr, "pub").await;
    for (i, (qos, name)) in [
        (QoS::AtLeastOnce, "a0"),
        (QoS::AtLeastOnce, "a1"),
        (QoS::AtLeastOnce, "a2"),
        (QoS::ExactlyOnce, "b0"),
        (QoS::ExactlyOnce, "b1"),
        (QoS::ExactlyOnce, "b2"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = i as u16 + 1;
        publ.send(&publish("t/x", name, qos, id)).await;
        match publ.recv().await {
            Some(Packet::PubAck(_)) => {}
            Some(Packet::PubRec(_)) => {
                publ.send(&Packet::PubRel(PubRel::new(id))).await;
                assert!(matches!(publ.recv().await, Some(Packet::PubComp(_))));
            }
            other => panic!("publisher: {other:?}"),
        }
    }
    publ.send(&publish("u/x", "own-70", QoS::ExactlyOnce, 70))
        .await;
    assert!(matches!(publ.recv().await, Some(Packet::PubRec(_))));
    publ.send(&publish("u/x", "own-71", QoS::ExactlyOnce, 71))
        .await;
    assert!(matches!(publ.recv().await, Some(Packet::PubRec(_))));
    publ.send(&Packet::PubRel(PubRel::new(71))).await;
    assert!(matches!(publ.recv().await, Some(Packet::PubComp(_))));

    // The subscriber acknowledges a0 only, completes b0, takes b1 to PUBREL, leaves b2 at
    // PUBLISH.
    let mut ids = std::collections::HashMap::new();
    for _ in 0..6 {
        match sub.recv().await {
            Some(Packet::Publish(p)) => {
                ids.insert(payload(&p), p.packet_id);
            }
            other => panic!("subscriber: {other:?}"),
        }
    }
    sub.send(&Packet::PubAck(PubAck::new(ids["a0"]))).await;
    sub.send(&Packet::PubRec(PubRec::new(ids["b0"]))).await;
    sub.send(&Packet::PubRec(PubRec::new(ids["b1"]))).await;
    for _ in 0..2 {
        match sub.recv().await {
            Some(Packet::PubRel(r)) => {
                if r.packet_id == ids["b0"] {
                    sub.send(&Packet::PubComp(PubComp::new(r.packet_id))).await;
                }
            }
            other => panic!("subscriber: {other:?}"),
        }
    }
    // Let the last acknowledgements reach the store.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(SessionStore::durable(&*store).wait().await);

    // Crash: the store as it is on disk.
    let copy = temp_dir("inflight-copy");
    copy_dir(&dir, &copy);
    broker.shutdown().await;
    store.close();
    drop(store);

    let store = FjallStore::open(&storage(&copy)).unwrap();
    let r = store.recovery_report().clone();
    assert_eq!(r.corrupt_records, 0, "{r:?}");
    let s = store.take("live").expect("session kept");
    let outgoing: Vec<(String, u16, OutgoingState)> = s
        .outgoing
        .iter()
        .map(|o| {
            let p = String::from_utf8(o.delivery.message.payload.to_vec()).unwrap();
            (p, o.packet_id, o.state)
        })
        .collect();
    assert_eq!(
        outgoing,
        [
            ("b1".to_string(), ids["b1"], OutgoingState::AwaitPubComp),
            ("b2".to_string(), ids["b2"], OutgoingState::AwaitPubRec),
        ],
        "QoS 2 deliveries resume where they were; the completed one is gone"
    );
    let queued: Vec<String> = s
        .queue
        .iter()
        .map(|d| String::from_utf8(d.message.payload.to_vec()).unwrap())
        .collect();
    assert_eq!(
        queued,
        ["a1", "a2"],
        "QoS 1 deliveries not acknowledged come again, the acknowledged one does not"
    );
    assert!(s.subscriptions.contains_key("t/#"));
    store.put(s, std::time::Instant::now());
    let p = store.take("pub").expect("publisher's session kept");
    assert_eq!(
        p.incoming_qos2.iter().copied().collect::<Vec<_>>(),
        [70],
        "the incoming QoS 2 identifier awaiting PUBREL, not the released one"
    );
    store.put(p, std::time::Instant::now());

    // The broker on the recovered store: the subscriber gets PUBREL for b1, b2 again with
    // its packet identifier and DUP, then a1 and a2.
    let (broker, addr) = start(&store).await;
    let (mut sub, present) = persistent(addr, "live").await;
    assert!(present);
    let mut got = Vec::new();
    while let Some(p) = within(&mut sub, Duration::from_millis(500)).await {
        match p {
            Packet::PubRel(r) => got.push(format!("PUBREL {}", r.packet_id)),
            Packet::Publish(p) if p.qos == QoS::ExactlyOnce => {
                got.push(format!("{} {} dup={}", payload(&p), p.packet_id, p.dup))
            }
            Packet::Publish(p) => got.push(payload(&p)),
            other => panic!("subscriber: {other:?}"),
        }
    }
    assert_eq!(
        got,
        [
            format!("PUBREL {}", ids["b1"]),
            format!("b2 {} dup=true", ids["b2"]),
            "a1".to_string(),
            "a2".to_string(),
        ]
    );
    // The publisher's id 70 still awaits PUBREL: a resend is not routed again.
    let (mut publ, present) = persistent(addr, "pub").await;
    assert!(present);
    let mut again = match publish("u/x", "own-70", QoS::ExactlyOnce, 70) {
        Packet::Publish(p) => p,
        _ => unreachable!(),
    };
    again.dup = true;
    publ.send(&Packet::Publish(again)).await;
    assert!(matches!(publ.recv().await, Some(Packet::PubRec(_))));
    broker.shutdown().await;
    store.close();
}

#[tokio::test]
async fn clean_session_subscriber_writes_nothing() {
    let dir = temp_dir("clean");
    let store = FjallStore::open(&storage(&dir)).unwrap();
    let (broker, addr) = start(&store).await;
    let mut sub = Raw::connect(addr).await;
    sub.version = ProtocolVersion::V311;
    sub.send(&connect_packet(ProtocolVersion::V311, "clean", 60))
        .await;
    assert!(matches!(sub.recv().await, Some(Packet::ConnAck(_))));
    sub.subscribe("t/#", QoS::AtLeastOnce).await;
    let (mut publ, _) = persistent(addr, "pub2").await;
    publ.send(&publish("t/x", "m", QoS::AtLeastOnce, 1)).await;
    assert!(matches!(publ.recv().await, Some(Packet::PubAck(_))));
    assert!(matches!(sub.recv().await, Some(Packet::Publish(_))));
    // Crash now: the clean session's delivery was never written.
    assert!(SessionStore::durable(&*store).wait().await);
    let copy = temp_dir("clean-copy");
    copy_dir(&dir, &copy);
    broker.shutdown().await;
    store.close();
    drop(store);
    let store = FjallStore::open(&storage(&copy)).unwrap();
    let r = store.recovery_report().clone();
    assert_eq!(r.queued_messages, 0, "{r:?}");
    assert_eq!(r.orphan_messages, 0, "{r:?}");
    assert!(store.take("clean").is_none());
    store.close();
}

/// A v5 client with a persistent session (expiry 60 s) and a will delayed by `delay` seconds;
/// its connection is then dropped without DISCONNECT, so the will waits.
async fn dies_with_will(addr: std::net::SocketAddr, id: &str, delay: u32) {
    let mut c = Raw::connect(addr).await;
    let props = tern_codec::ConnectProperties {
        session_expiry_interval: Some(60),
        ..Default::default()
    };
    let will_props = tern_codec::WillProperties {
        will_delay_interval: Some(delay),
        ..Default::default()
    };
    c.send(&Packet::Connect(
        tern_codec::Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 60,
            client_id: ByteStr::from(id.to_string()),
            will: Some(tern_codec::LastWill {
                topic: ByteStr::from(format!("will/{id}")),
                payload: format!("{id} is gone").into_bytes().into(),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: will_props,
            }),
            username: None,
            password: None,
            properties: props,
        }
        .into(),
    ))
    .await;
    assert!(matches!(c.recv().await, Some(Packet::ConnAck(_))));
    drop(c);
}

async fn comes_back(addr: std::net::SocketAddr, id: &str) {
    let mut c = Raw::connect(addr).await;
    let props = tern_codec::ConnectProperties {
        session_expiry_interval: Some(60),
        ..Default::default()
    };
    c.send(&Packet::Connect(
        tern_codec::Connect {
            protocol: ProtocolVersion::V5,
            clean_start: false,
            keep_alive: 60,
            client_id: ByteStr::from(id.to_string()),
            will: None,
            username: None,
            password: None,
            properties: props,
        }
        .into(),
    ))
    .await;
    assert!(matches!(c.recv().await, Some(Packet::ConnAck(_))));
}

#[tokio::test]
async fn delayed_wills_survive_a_restart() {
    let dir = temp_dir("wills");
    let store = FjallStore::open(&storage(&dir)).unwrap();
    let (broker, addr) = start(&store).await;
    // A persistent subscriber to the wills, offline during the test.
    let (mut sub, _) = persistent(addr, "watcher").await;
    sub.subscribe("will/#", QoS::AtLeastOnce).await;
    drop(sub);
    // Due 1 s after: passes while the broker is down. Due 4 s after: after the restart.
    // Due 3 s after, but its client comes back after the restart: never published.
    dies_with_will(addr, "early", 1).await;
    dies_with_will(addr, "late", 4).await;
    dies_with_will(addr, "back", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(SessionStore::durable(&*store).wait().await);
    let copy = temp_dir("wills-copy");
    copy_dir(&dir, &copy);
    broker.shutdown().await;
    store.close();
    drop(store);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let store = FjallStore::open(&storage(&copy)).unwrap();
    let r = store.recovery_report().clone();
    assert_eq!(r.pending_wills, 3, "{r:?}");
    let (broker, addr) = start(&store).await;
    comes_back(addr, "back").await;
    let got = |c: Option<Packet>| match c {
        Some(Packet::Publish(p)) => payload(&p),
        other => panic!("watcher: {other:?}"),
    };
    // Soon after the start: only the will whose time passed while the broker was down.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut sub, present) = persistent(addr, "watcher").await;
    assert!(present);
    assert_eq!(got(sub.recv().await), "early is gone");
    assert!(within(&mut sub, Duration::from_millis(300)).await.is_none());
    // "late" at its time (4 s after its disconnection); "back" never.
    let mut later = Vec::new();
    while let Some(p) = within(&mut sub, Duration::from_millis(3500)).await {
        if let Packet::Publish(p) = &p {
            sub.send(&Packet::PubAck(PubAck::new(p.packet_id))).await;
        }
        later.push(got(Some(p)));
    }
    assert_eq!(later, ["late is gone"]);
    broker.shutdown().await;
    store.close();
    drop(store);
    // Published wills are forgotten: nothing waits any more.
    let store = FjallStore::open(&storage(&copy)).unwrap();
    assert_eq!(store.recovery_report().pending_wills, 0);
    store.close();
}

fn temp_dir(name: &str) -> StoreDir {
    fresh_dir("online", name)
}
