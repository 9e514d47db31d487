//! Bad input and the protocol's corners, byte by byte: a raw client built on tern-codec sends
//! what well-behaved clients never would, and checks the broker answers as the spec says and
//! keeps serving everyone else.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use std::time::Duration;
use tern_codec::*;

fn connect_v5(id: &str, clean: bool, expiry: Option<u32>) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: clean,
        keep_alive: 30,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties {
            session_expiry_interval: expiry,
            ..Default::default()
        },
    }))
}

async fn raw_connected(addr: std::net::SocketAddr, connect: Packet) -> (Raw, ConnAck) {
    let mut r = Raw::connect(addr).await;
    if let Packet::Connect(c) = &connect {
        r.version = c.protocol;
    }
    r.send(&connect).await;
    match r.recv().await {
        Some(Packet::ConnAck(a)) => (r, a),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn publish(topic: &str, qos: QoS, id: u16, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        qos,
        topic: topic.into(),
        packet_id: id,
        payload: Bytes::from_static(payload),
        ..Default::default()
    })
}

fn disconnect_reason(packets: &[Packet]) -> Option<ReasonCode> {
    packets.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason_code),
        _ => None,
    })
}

#[tokio::test]
async fn unsupported_protocol_level_gets_connack_0x01_mqtt_3_1_2_2() {
    let (broker, addr) = start().await;
    let mut r = Raw::connect(addr).await;
    r.version = ProtocolVersion::V311;
    r.send_bytes(&[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 6, 2, 0, 60, 0, 1, b'x',
    ])
    .await;
    let got = r.until_closed().await;
    assert!(
        matches!(&got[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::V3_UNACCEPTABLE_PROTOCOL_VERSION),
        "{got:?}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn first_packet_not_connect_closes_without_answer_mqtt_3_1_0_1() {
    let (broker, addr) = start().await;
    let mut r = Raw::connect(addr).await;
    r.send(&Packet::PingReq).await;
    assert!(r.until_closed().await.is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn garbage_closes_one_connection_others_unaffected() {
    let (broker, addr) = start().await;
    let (mut good, _) = raw_connected(addr, connect_v5("good", true, None)).await;
    good.send(&subscribe_packet("g", QoS::AtMostOnce)).await;
    assert!(matches!(good.recv().await, Some(Packet::SubAck(_))));

    let mut bad = Raw::connect(addr).await;
    bad.send_bytes(&[0xff; 64]).await;
    bad.until_closed().await;
    let (mut bad2, _) = raw_connected(addr, connect_v5("bad2", true, None)).await;
    // A remaining length of 268,435,455: refused from the fixed header.
    bad2.send_bytes(&[0x30, 0xff, 0xff, 0xff, 0x7f]).await;
    let got = bad2.until_closed().await;
    assert_eq!(disconnect_reason(&got), Some(ReasonCode::PACKET_TOO_LARGE));

    let (mut p, _) = raw_connected(addr, connect_v5("p", true, None)).await;
    p.send(&publish("g", QoS::AtMostOnce, 0, b"still here"))
        .await;
    assert!(
        matches!(good.recv().await, Some(Packet::Publish(m)) if &m.payload[..] == b"still here")
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn connect_timeout_closes_silent_socket() {
    let mut cfg = config();
    cfg.broker.connect_timeout = 1;
    let (broker, addr) = start_with(cfg).await;
    let mut r = Raw::connect(addr).await;
    let t = std::time::Instant::now();
    assert!(r.until_closed().await.is_empty());
    assert!(t.elapsed() >= Duration::from_millis(900));
    broker.shutdown().await;
}

#[tokio::test]
async fn keep_alive_timeout_disconnects_with_0x8d_and_sends_will_mqtt_3_1_2_24() {
    let (broker, addr) = start().await;
    let (mut watcher, _) = raw_connected(addr, connect_v5("w", true, None)).await;
    watcher
        .send(&subscribe_packet("will", QoS::AtMostOnce))
        .await;
    watcher.recv().await;

    let mut r = Raw::connect(addr).await;
    r.send(&Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 1,
        client_id: "sleepy".into(),
        will: Some(LastWill {
            topic: "will".into(),
            payload: Bytes::from_static(b"timed out"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        }),
        username: None,
        password: None,
        properties: Default::default(),
    })))
    .await;
    let t = std::time::Instant::now();
    let got = r.until_closed().await;
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        disconnect_reason(&got),
        Some(ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
    assert!(
        matches!(watcher.recv().await, Some(Packet::Publish(p)) if &p.payload[..] == b"timed out")
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn second_connect_is_protocol_error_mqtt_3_1_0_2() {
    let (broker, addr) = start().await;
    let (mut r, _) = raw_connected(addr, connect_v5("twice", true, None)).await;
    r.send(&connect_v5("twice", true, None)).await;
    let got = r.until_closed().await;
    assert_eq!(disconnect_reason(&got), Some(ReasonCode::PROTOCOL_ERROR));
    broker.shutdown().await;
}

#[tokio::test]
async fn packet_over_maximum_packet_size_gets_0x95() {
    let mut cfg = config();
    cfg.broker.max_packet_size = 128;
    let (broker, addr) = start_with(cfg).await;
    let (mut r, ack) = raw_connected(addr, connect_v5("big", true, None)).await;
    assert_eq!(ack.properties.maximum_packet_size, Some(128));
    r.send(&Packet::Publish(Publish {
        topic: "t".into(),
        payload: Bytes::from(vec![0u8; 200]),
        ..Default::default()
    }))
    .await;
    assert_eq!(
        disconnect_reason(&r.until_closed().await),
        Some(ReasonCode::PACKET_TOO_LARGE)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn wildcard_in_publish_topic_disconnects_mqtt_3_3_2_2() {
    let (broker, addr) = start().await;
    let (mut r, _) = raw_connected(addr, connect_v5("wild", true, None)).await;
    // Hand-made PUBLISH QoS 0 to "a/#" (the encoder would refuse to write it).
    r.send_bytes(&[0x30, 6, 0, 3, b'a', b'/', b'#', 0]).await;
    let reason = disconnect_reason(&r.until_closed().await);
    assert_eq!(reason, Some(ReasonCode::TOPIC_NAME_INVALID));
    broker.shutdown().await;
}

#[tokio::test]
async fn receive_maximum_exceeded_gets_0x93_mqtt_3_3_4_9() {
    let mut cfg = config();
    cfg.broker.max_inflight_messages = 2;
    let (broker, addr) = start_with(cfg).await;
    let (mut r, ack) = raw_connected(addr, connect_v5("flood", true, None)).await;
    assert_eq!(ack.properties.receive_maximum, Some(2));
    for id in 1..=3 {
        r.send(&publish("q2", QoS::ExactlyOnce, id, b"x")).await;
    }
    let got = r.until_closed().await;
    assert_eq!(
        disconnect_reason(&got),
        Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn pubrel_for_unknown_packet_id_gets_pubcomp_0x92() {
    let (broker, addr) = start().await;
    let (mut r, _) = raw_connected(addr, connect_v5("rel", true, None)).await;
    r.send(&Packet::PubRel(PubRel::new(77))).await;
    assert!(
        matches!(r.recv().await, Some(Packet::PubComp(c)) if c.packet_id == 77 && c.reason_code == ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn broker_assigns_outbound_topic_aliases_up_to_client_maximum() {
    let (broker, addr) = start().await;
    let mut c = connect_v5("alias", true, None);
    if let Packet::Connect(c) = &mut c {
        c.properties.topic_alias_maximum = Some(4);
    }
    let (mut r, _) = raw_connected(addr, c).await;
    r.send(&subscribe_packet("long/topic/name", QoS::AtMostOnce))
        .await;
    r.recv().await;
    let (mut p, _) = raw_connected(addr, connect_v5("p", true, None)).await;
    p.send(&publish("long/topic/name", QoS::AtMostOnce, 0, b"1"))
        .await;
    p.send(&publish("long/topic/name", QoS::AtMostOnce, 0, b"2"))
        .await;
    let Some(Packet::Publish(first)) = r.recv().await else {
        panic!()
    };
    let Some(Packet::Publish(second)) = r.recv().await else {
        panic!()
    };
    assert_eq!(first.topic, "long/topic/name");
    assert_eq!(first.properties.topic_alias, Some(1));
    assert_eq!(second.topic, "");
    assert_eq!(second.properties.topic_alias, Some(1));
    broker.shutdown().await;
}

#[tokio::test]
async fn qos2_exactly_once_across_publisher_reconnect_mqtt_4_3_3() {
    let (broker, addr) = start().await;
    let (mut sub, _) = raw_connected(addr, connect_v5("sub", true, None)).await;
    sub.send(&subscribe_packet("once", QoS::ExactlyOnce)).await;
    sub.recv().await;

    let (mut p, _) = raw_connected(addr, connect_v5("pub2", false, Some(60))).await;
    p.send(&publish("once", QoS::ExactlyOnce, 9, b"one")).await;
    assert!(matches!(p.recv().await, Some(Packet::PubRec(r)) if r.packet_id == 9));
    drop(p); // vanishes before PUBREL

    let (mut p, ack) = raw_connected(addr, connect_v5("pub2", false, Some(60))).await;
    assert!(ack.session_present);
    let mut dup = Publish {
        qos: QoS::ExactlyOnce,
        topic: "once".into(),
        packet_id: 9,
        payload: Bytes::from_static(b"one"),
        ..Default::default()
    };
    dup.dup = true;
    p.send(&Packet::Publish(dup)).await;
    assert!(matches!(p.recv().await, Some(Packet::PubRec(_))));
    p.send(&Packet::PubRel(PubRel::new(9))).await;
    assert!(
        matches!(p.recv().await, Some(Packet::PubComp(c)) if c.reason_code == ReasonCode::SUCCESS)
    );

    // The subscriber got it once: acknowledge and check nothing else arrives.
    let Some(Packet::Publish(m)) = sub.recv().await else {
        panic!()
    };
    sub.send(&Packet::PubRec(PubRec::new(m.packet_id))).await;
    assert!(matches!(sub.recv().await, Some(Packet::PubRel(_))));
    sub.send(&Packet::PubComp(PubComp::new(m.packet_id))).await;
    sub.send(&Packet::PingReq).await;
    assert!(matches!(sub.recv().await, Some(Packet::PingResp)));
    broker.shutdown().await;
}

#[tokio::test]
async fn unacked_qos1_redelivered_with_dup_on_resumption_mqtt_4_4_0_1() {
    let (broker, addr) = start().await;
    let (mut s, _) = raw_connected(addr, connect_v5("forgetful", false, Some(60))).await;
    s.send(&subscribe_packet("r", QoS::AtLeastOnce)).await;
    s.recv().await;
    let (mut p, _) = raw_connected(addr, connect_v5("p", true, None)).await;
    p.send(&publish("r", QoS::AtLeastOnce, 1, b"again")).await;
    let Some(Packet::Publish(first)) = s.recv().await else {
        panic!()
    };
    assert!(!first.dup);
    drop(s); // never acknowledged
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut s, ack) = raw_connected(addr, connect_v5("forgetful", false, Some(60))).await;
    assert!(ack.session_present);
    let Some(Packet::Publish(again)) = s.recv().await else {
        panic!()
    };
    assert!(again.dup);
    assert_eq!(again.packet_id, first.packet_id);
    assert_eq!(&again.payload[..], b"again");
    broker.shutdown().await;
}

#[tokio::test]
async fn disconnect_with_will_message_0x04_publishes_will() {
    let (broker, addr) = start().await;
    let (mut w, _) = raw_connected(addr, connect_v5("w", true, None)).await;
    w.send(&subscribe_packet("lw", QoS::AtMostOnce)).await;
    w.recv().await;
    let mut c = connect_v5("leaver", true, None);
    if let Packet::Connect(c) = &mut c {
        c.will = Some(LastWill {
            topic: "lw".into(),
            payload: Bytes::from_static(b"asked"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
    }
    let (mut r, _) = raw_connected(addr, c).await;
    r.send(&Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
        ..Default::default()
    }))
    .await;
    assert!(matches!(w.recv().await, Some(Packet::Publish(p)) if &p.payload[..] == b"asked"));
    broker.shutdown().await;
}

#[tokio::test]
async fn dollar_topics_not_matched_by_leading_wildcard_mqtt_4_7_2_1() {
    let (broker, addr) = start().await;
    let (mut all, _) = raw_connected(addr, connect_v5("all", true, None)).await;
    all.send(&subscribe_packet("#", QoS::AtMostOnce)).await;
    all.recv().await;
    let (mut p, _) = raw_connected(addr, connect_v5("p", true, None)).await;
    p.send(&publish("$internal/x", QoS::AtMostOnce, 0, b"hidden"))
        .await;
    p.send(&publish("visible", QoS::AtMostOnce, 0, b"shown"))
        .await;
    assert!(matches!(all.recv().await, Some(Packet::Publish(m)) if m.topic == "visible"));
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_mqisdp_client_connects_and_publishes() {
    let (broker, addr) = start().await;
    let (mut r, ack) =
        raw_connected(addr, connect_packet(ProtocolVersion::V31, "old-client", 30)).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    r.send(&subscribe_packet("legacy", QoS::AtLeastOnce)).await;
    assert!(
        matches!(r.recv().await, Some(Packet::SubAck(s)) if s.reason_codes == [ReasonCode::GRANTED_QOS_1])
    );
    r.send(&publish("legacy", QoS::AtLeastOnce, 3, b"hi")).await;
    let mut got = [r.recv().await, r.recv().await];
    got.sort_by_key(|p| p.as_ref().map(|p| p.name()));
    assert!(matches!(&got[0], Some(Packet::PubAck(a)) if a.packet_id == 3));
    assert!(matches!(&got[1], Some(Packet::Publish(p)) if &p.payload[..] == b"hi"));
    broker.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_empty_client_id_rejected_0x02() {
    let (broker, addr) = start().await;
    let mut r = Raw::connect(addr).await;
    r.version = ProtocolVersion::V31;
    r.send(&connect_packet(ProtocolVersion::V31, "", 30)).await;
    let got = r.until_closed().await;
    assert!(
        matches!(&got[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::V3_IDENTIFIER_REJECTED),
        "{got:?}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_topic_is_malformed_0x81_mqtt_1_5_4_1() {
    let (broker, addr) = start().await;
    let (mut r, _) = raw_connected(addr, connect_v5("utf", true, None)).await;
    r.send_bytes(&[0x30, 6, 0, 3, b'a', 0xff, 0xfe, 0]).await;
    assert_eq!(
        disconnect_reason(&r.until_closed().await),
        Some(ReasonCode::MALFORMED_PACKET)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn shared_group_skips_member_whose_queue_is_full() {
    let mut cfg = config();
    cfg.broker.max_queued_messages = 1;
    let (broker, addr) = start_with(cfg).await;
    let mut slow = connect_v5("slow", true, None);
    if let Packet::Connect(c) = &mut slow {
        c.properties.receive_maximum = Some(1);
    }
    let (mut a, _) = raw_connected(addr, slow).await;
    let (mut b, _) = raw_connected(addr, connect_v5("fast", true, None)).await;
    for r in [&mut a, &mut b] {
        r.send(&subscribe_packet("$share/g/job", QoS::AtLeastOnce))
            .await;
        assert!(matches!(r.recv().await, Some(Packet::SubAck(_))));
    }
    let (mut p, _) = raw_connected(addr, connect_v5("p", true, None)).await;
    for id in 1..=6u16 {
        p.send(&publish("job", QoS::AtLeastOnce, id, b"j")).await;
        assert!(matches!(p.recv().await, Some(Packet::PubAck(_))));
    }
    // `slow` never acknowledges: one message in flight, one queued; the other four go to `fast`.
    let mut fast = 0;
    while fast < 4 {
        let Some(Packet::Publish(m)) = b.recv().await else {
            panic!("fast member got {fast} messages")
        };
        b.send(&Packet::PubAck(PubAck::new(m.packet_id))).await;
        fast += 1;
    }
    assert_eq!(broker.handle().stats().dropped_queue_full, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn client_that_never_reads_is_bounded_and_others_unaffected() {
    // The publisher is paused on the full mailbox until the sink counts as stalled, then the
    // sink's deliveries are dropped.
    let mut cfg = config();
    cfg.broker.slow_consumer_timeout = 1;
    let (broker, addr) = start_with(cfg).await;
    let (mut sink, _) = raw_connected(addr, connect_v5("sink", true, None)).await;
    sink.send(&subscribe_packet("flood", QoS::AtMostOnce)).await;
    assert!(matches!(sink.recv().await, Some(Packet::SubAck(_))));
    // From here `sink` never reads again.
    let (mut p, _) = raw_connected(addr, connect_v5("p", true, None)).await;
    let payload = bytes::Bytes::from(vec![7u8; 4096]);
    for i in 0..5000u16 {
        p.send(&Packet::Publish(Publish {
            topic: "flood".into(),
            payload: payload.clone(),
            ..Default::default()
        }))
        .await;
        if i % 500 == 0 {
            p.send(&Packet::PingReq).await;
            assert!(matches!(p.recv().await, Some(Packet::PingResp)));
        }
    }
    let (mut other, _) = raw_connected(addr, connect_v5("other", true, None)).await;
    other.send(&Packet::PingReq).await;
    assert!(matches!(other.recv().await, Some(Packet::PingResp)));
    let stats = broker.handle().stats();
    assert!(stats.dropped_queue_full > 0, "{stats:?}");
    drop(sink);
    broker.shutdown().await;
}

/// Sends `n` QoS 1 messages on `topic` (payload: the sequence number), at most `window` unacknowledged.
async fn publish_qos1_windowed(mut p: Raw, topic: &'static str, n: u16, window: u16) -> Raw {
    let mut next = 1u16;
    while next <= n {
        let end = (next + window).min(n + 1);
        for id in next..end {
            p.send(&Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                topic: topic.into(),
                packet_id: id,
                payload: Bytes::from(id.to_be_bytes().to_vec()),
                ..Default::default()
            }))
            .await;
        }
        for _ in next..end {
            assert!(matches!(p.recv().await, Some(Packet::PubAck(_))));
        }
        next = end;
    }
    p
}

#[tokio::test]
async fn qos1_fan_in_to_slow_subscriber_pauses_publishers_and_loses_nothing() {
    let mut cfg = config();
    cfg.broker.max_queued_messages = 10;
    let (broker, addr) = start_with(cfg).await;
    let mut sub = connect_v5("slow", true, None);
    if let Packet::Connect(c) = &mut sub {
        c.properties.receive_maximum = Some(1);
    }
    let (mut s, _) = raw_connected(addr, sub).await;
    s.send(&subscribe_packet("in/#", QoS::AtLeastOnce)).await;
    assert!(matches!(s.recv().await, Some(Packet::SubAck(_))));
    let mut pubs = Vec::new();
    for (id, topic) in [("p1", "in/1"), ("p2", "in/2")] {
        let (p, _) = raw_connected(addr, connect_v5(id, true, None)).await;
        pubs.push(tokio::spawn(publish_qos1_windowed(p, topic, 300, 50)));
    }
    // One message at a time, slowly: far slower than the publishers.
    let mut last = std::collections::HashMap::new();
    for _ in 0..600 {
        let Some(Packet::Publish(m)) = s.recv().await else {
            panic!("subscriber got {last:?}")
        };
        let seq = u16::from_be_bytes([m.payload[0], m.payload[1]]);
        let prev = last.insert(m.topic.to_string(), seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "in order, none lost, on {}", m.topic);
        s.send(&Packet::PubAck(PubAck::new(m.packet_id))).await;
        if seq % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for p in pubs {
        p.await.unwrap();
    }
    let stats = broker.handle().stats();
    assert_eq!(stats.dropped_queue_full, 0, "{stats:?}");
    assert!(stats.publishers_paused > 0, "{stats:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn qos0_fan_in_to_slow_subscriber_pauses_publishers_and_loses_nothing() {
    let mut cfg = config();
    cfg.broker.max_queued_messages = 10;
    let (broker, addr) = start_with(cfg).await;
    let (mut s, _) = raw_connected(addr, connect_v5("slow", true, None)).await;
    s.send(&subscribe_packet("in/#", QoS::AtMostOnce)).await;
    assert!(matches!(s.recv().await, Some(Packet::SubAck(_))));
    let mut pubs = Vec::new();
    for (id, topic) in [("p1", "in/1"), ("p2", "in/2")] {
        let (mut p, _) = raw_connected(addr, connect_v5(id, true, None)).await;
        pubs.push(tokio::spawn(async move {
            for seq in 1..=300u16 {
                p.send(&Packet::Publish(Publish {
                    topic: topic.into(),
                    payload: Bytes::from(seq.to_be_bytes().to_vec()),
                    ..Default::default()
                }))
                .await;
            }
            p
        }));
    }
    // Far slower than the publishers, with a mailbox of 10: without back-pressure most of the
    // 600 messages would be dropped.
    let mut last = std::collections::HashMap::new();
    for n in 0..600 {
        let Some(Packet::Publish(m)) = s.recv().await else {
            panic!("subscriber got {last:?}")
        };
        let seq = u16::from_be_bytes([m.payload[0], m.payload[1]]);
        let prev = last.insert(m.topic.to_string(), seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "in order, none lost, on {}", m.topic);
        if n % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for p in pubs {
        p.await.unwrap();
    }
    let stats = broker.handle().stats();
    assert_eq!(stats.dropped_queue_full, 0, "{stats:?}");
    assert!(stats.publishers_paused > 0, "{stats:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn qos1_to_subscriber_that_never_acks_drops_after_slow_consumer_timeout() {
    let mut cfg = config();
    cfg.broker.max_queued_messages = 5;
    cfg.broker.slow_consumer_timeout = 1;
    let (broker, addr) = start_with(cfg).await;
    let mut sub = connect_v5("dead", true, None);
    if let Packet::Connect(c) = &mut sub {
        c.properties.receive_maximum = Some(1);
    }
    let (mut s, _) = raw_connected(addr, sub).await;
    s.send(&subscribe_packet("in", QoS::AtLeastOnce)).await;
    assert!(matches!(s.recv().await, Some(Packet::SubAck(_))));
    // `dead` never acknowledges: the publisher is paused, then goes on once the timeout is over.
    let (p, _) = raw_connected(addr, connect_v5("p", true, None)).await;
    let started = std::time::Instant::now();
    let _p = publish_qos1_windowed(p, "in", 60, 10).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    let stats = broker.handle().stats();
    assert!(stats.publishers_paused > 0, "{stats:?}");
    assert!(stats.dropped_slow_consumer > 0, "{stats:?}");
    assert_eq!(
        stats.dropped_slow_consumer, stats.dropped_queue_full,
        "{stats:?}"
    );
    drop(s);
    broker.shutdown().await;
}
