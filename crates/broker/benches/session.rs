//! A subscriber's side of delivery, per message: a session's queue (enqueue, dequeue) and the
//! connection state machine taking deliveries and turning them into PUBLISH packets, at QoS 0
//! and at QoS 1 with a full in-flight window of 100 and of 10,000 (each PUBACK lets the next
//! message out).
//! Figures go in `docs/benchmarks.md` under "Router and delivery".

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tern_broker::auth::AllowAll;
use tern_broker::protocol::{Accepted, Action, Connection, ProtocolConfig};
use tern_broker::session::{QueueLimits, SessionState};
use tern_broker::{Delivery, Message};
use tern_codec::{Connect, ConnectProperties, Packet, ProtocolVersion, PubAck, QoS};

/// One message of the broker comparison: 64-byte payload on a short topic.
fn delivery(qos: QoS) -> Delivery {
    let message = Arc::new(Message::new("bench/fanout", vec![7u8; 64], qos, false));
    Delivery {
        message,
        qos,
        retain: false,
        subscription_ids: Vec::new(),
        store_seq: 0,
    }
}

/// A connection past CONNACK, as the broker holds it for a connected subscriber, with an
/// in-flight window of `max_inflight`.
fn connected(now: Instant, max_inflight: u16) -> Connection {
    let config = ProtocolConfig {
        max_inflight,
        ..ProtocolConfig::default()
    };
    let mut c = Connection::new(Arc::new(config), Arc::new(AllowAll), now);
    let connect = Connect {
        protocol: ProtocolVersion::V311,
        clean_start: true,
        keep_alive: 60,
        client_id: "sub".into(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    };
    c.handle_packet(Packet::Connect(Box::new(connect)), now);
    let Some(Action::Connect(req)) = c.poll_action() else {
        panic!("no Connect action")
    };
    c.accept(
        Accepted {
            session: SessionState::new("sub".into(), req.session_expiry_interval),
            session_present: false,
            assigned_client_id: None,
        },
        now,
    );
    while c.poll_transmit().is_some() {}
    c
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("delivery");
    g.throughput(Throughput::Elements(1));

    // The queue of a session (offline, or what a connection hands back): one in, one out, with
    // 100 waiting.
    let limits = QueueLimits {
        max_messages: 1000,
        max_bytes: 0,
        queue_qos0: false,
    };
    let mut session = SessionState::new("s".into(), u32::MAX);
    for _ in 0..100 {
        session.enqueue(delivery(QoS::AtLeastOnce), &limits, true);
    }
    let d1 = delivery(QoS::AtLeastOnce);
    g.bench_function("session_enqueue_dequeue", |b| {
        b.iter(|| {
            session.enqueue(d1.clone(), &limits, true);
            black_box(session.dequeue())
        })
    });

    // QoS 0: a delivery becomes a PUBLISH, encoded into the write buffer.
    let mut conn = connected(now, 100);
    let d0 = delivery(QoS::AtMostOnce);
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    g.bench_function("deliver_encode_qos0", |b| {
        b.iter(|| {
            conn.deliver(d0.clone(), now);
            let p = conn.poll_transmit().unwrap();
            if wbuf.len() > 60 * 1024 {
                wbuf.clear();
            }
            tern_codec::encode(&p, ProtocolVersion::V311, &mut wbuf).unwrap();
        })
    });

    // QoS 1 with the in-flight window full: each delivery waits in the connection until the
    // oldest message's PUBACK opens the window, then goes out with a fresh packet id.
    for window in [100u16, 10_000] {
        let mut conn = connected(now, window);
        let mut in_flight = VecDeque::new();
        for _ in 0..=window {
            conn.deliver(d1.clone(), now);
            while let Some(p) = conn.poll_transmit() {
                if let Packet::Publish(p) = p {
                    in_flight.push_back(p.packet_id);
                }
            }
        }
        assert_eq!(
            in_flight.len(),
            usize::from(window),
            "the window is full, one waits"
        );
        g.bench_function(format!("deliver_encode_puback_qos1_window_{window}"), |b| {
            b.iter(|| {
                conn.deliver(d1.clone(), now);
                let oldest = in_flight.pop_front().unwrap();
                conn.handle_packet(Packet::PubAck(PubAck::new(oldest)), now);
                let Some(Packet::Publish(p)) = conn.poll_transmit() else {
                    panic!("the PUBACK let no message out")
                };
                in_flight.push_back(p.packet_id);
                if wbuf.len() > 60 * 1024 {
                    wbuf.clear();
                }
                tern_codec::encode(&Packet::Publish(p), ProtocolVersion::V311, &mut wbuf).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
