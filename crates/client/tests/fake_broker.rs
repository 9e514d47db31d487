#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The client against a scripted fake broker built on the codec: each test plays the server's
//! side of a conversation packet by packet, so that faults (a connection dropped mid-QoS-2
//! flow, a re-sent PUBLISH, a small Receive Maximum) are one line each. No third-party program
//! is needed.

use bytes::BytesMut;
use std::time::Duration;
use tern_client::{
    Client, ConnectOptions, Error, ProtocolVersion, QoS, ReasonCode, SubscribeProperties,
    SubscriptionOptions,
};
use tern_codec::{
    ConnAck, Packet, PubAck, PubComp, PubRec, PubRel, Publish, SubAck, UnsubAck, decode, encode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const V5: ProtocolVersion = ProtocolVersion::V5;

struct Server {
    listener: TcpListener,
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl Server {
    async fn new() -> Server {
        Server {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn options(&self) -> ConnectOptions {
        let port = self.listener.local_addr().unwrap().port();
        let mut o = ConnectOptions::new("127.0.0.1", port);
        o.reconnect.initial_delay = Duration::from_millis(10);
        o.reconnect.max_delay = Duration::from_millis(50);
        o
    }

    /// Accepts a connection and reads its CONNECT.
    async fn accept(&self, version: ProtocolVersion) -> (Conn, tern_codec::Connect) {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(5), self.listener.accept())
            .await
            .expect("the client connects")
            .unwrap();
        let mut conn = Conn {
            stream,
            buf: BytesMut::new(),
            version,
        };
        match conn.recv().await {
            Packet::Connect(c) => (conn, *c),
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }
}

impl Conn {
    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, self.version, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn connack(&mut self, session_present: bool, properties: tern_codec::ConnAckProperties) {
        self.send(Packet::ConnAck(ConnAck {
            session_present,
            reason_code: ReasonCode::SUCCESS,
            properties: properties.into(),
        }))
        .await;
    }

    async fn try_recv(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(p) = decode(&mut self.buf, self.version, 1 << 20).unwrap() {
                return Some(p);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) => return None,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("read: {e}"),
            }
        }
    }

    async fn recv(&mut self) -> Packet {
        self.try_recv(Duration::from_secs(5))
            .await
            .expect("a packet from the client")
    }

    async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

fn session(server: &Server) -> ConnectOptions {
    let mut o = server.options();
    o.client_id = "fake-session".into();
    o.session_expiry_interval = Some(3600);
    o
}

#[tokio::test]
async fn qos1_resent_with_dup_after_reconnect() {
    let server = Server::new().await;
    let connecting = tokio::spawn(Client::connect(session(&server)));
    let (mut c1, connect) = server.accept(V5).await;
    assert!(connect.clean_start);
    assert_eq!(connect.properties.session_expiry_interval, Some(3600));
    c1.connack(false, Default::default()).await;
    let (client, _) = connecting.await.unwrap().unwrap();

    let publishing = {
        let client = client.clone();
        tokio::spawn(async move { client.publish("a/b", QoS::AtLeastOnce, false, "m").await })
    };
    let first = c1.recv_publish().await;
    assert!(!first.dup);
    drop(c1); // the connection dies before PUBACK

    let (mut c2, connect) = server.accept(V5).await;
    assert!(!connect.clean_start, "a reconnection resumes the session");
    c2.connack(true, Default::default()).await;
    let again = c2.recv_publish().await;
    assert!(again.dup, "re-sent with DUP [MQTT-3.3.1-1]");
    assert_eq!(again.packet_id, first.packet_id);
    assert_eq!(again.payload, first.payload);
    c2.send(Packet::PubAck(PubAck::new(again.packet_id))).await;
    let outcome = publishing.await.unwrap().unwrap();
    assert_eq!(outcome.packet_id, first.packet_id);
}

#[tokio::test]
async fn qos2_pubrel_resent_after_reconnect_and_flow_completes() {
    let server = Server::new().await;
    let connecting = tokio::spawn(Client::connect(session(&server)));
    let (mut c1, _) = server.accept(V5).await;
    c1.connack(false, Default::default()).await;
    let (client, _) = connecting.await.unwrap().unwrap();
    let publishing = {
        let client = client.clone();
        tokio::spawn(async move { client.publish("q2", QoS::ExactlyOnce, false, "x").await })
    };
    let p = c1.recv_publish().await;
    c1.send(Packet::PubRec(PubRec::new(p.packet_id))).await;
    assert_eq!(c1.recv().await, Packet::PubRel(PubRel::new(p.packet_id)));
    drop(c1); // lost before PUBCOMP

    let (mut c2, _) = server.accept(V5).await;
    c2.connack(true, Default::default()).await;
    // Only the PUBREL is re-sent: the server already has the message [MQTT-4.4.0-1].
    assert_eq!(c2.recv().await, Packet::PubRel(PubRel::new(p.packet_id)));
    c2.send(Packet::PubComp(PubComp::new(p.packet_id))).await;
    publishing.await.unwrap().unwrap();
    assert!(c2.try_recv(Duration::from_millis(200)).await.is_none());
}

#[tokio::test]
async fn incoming_qos2_delivered_once_when_the_server_resends() {
    let server = Server::new().await;
    let connecting = tokio::spawn(Client::connect(server.options()));
    let (mut c, _) = server.accept(V5).await;
    c.connack(false, Default::default()).await;
    let (_client, mut messages) = connecting.await.unwrap().unwrap();
    let publish = Publish {
        topic: "once".into(),
        qos: QoS::ExactlyOnce,
        packet_id: 9,
        payload: "exactly".into(),
        ..Default::default()
    };
    c.send(Packet::Publish(publish.clone())).await;
    assert_eq!(c.recv().await, Packet::PubRec(PubRec::new(9)));
    let mut dup = publish;
    dup.dup = true;
    c.send(Packet::Publish(dup)).await;
    assert_eq!(c.recv().await, Packet::PubRec(PubRec::new(9)));
    c.send(Packet::PubRel(PubRel::new(9))).await;
    assert_eq!(c.recv().await, Packet::PubComp(PubComp::new(9)));
    let m = messages.recv().await.unwrap();
    assert_eq!(&m.payload[..], b"exactly");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        messages.try_recv().is_none(),
        "delivered once [MQTT-4.3.3-10]"
    );
}

#[tokio::test]
async fn server_receive_maximum_limits_messages_in_flight() {
    let server = Server::new().await;
    let connecting = tokio::spawn(Client::connect(server.options()));
    let (mut c, _) = server.accept(V5).await;
    c.connack(
        false,
        tern_codec::ConnAckProperties {
            receive_maximum: Some(2),
            ..Default::default()
        },
    )
    .await;
    let (client, _) = connecting.await.unwrap().unwrap();
    let mut tasks = Vec::new();
    for i in 0..5 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .publish("rm", QoS::AtLeastOnce, false, format!("{i}"))
                .await
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let a = c.recv_publish().await;
    let b = c.recv_publish().await;
    assert!(
        c.try_recv(Duration::from_millis(200)).await.is_none(),
        "no third PUBLISH while two are unacknowledged [MQTT-4.9.0-2]"
    );
    c.send(Packet::PubAck(PubAck::new(a.packet_id))).await;
    let third = c.recv_publish().await;
    assert!(c.try_recv(Duration::from_millis(100)).await.is_none());
    for id in [b.packet_id, third.packet_id] {
        c.send(Packet::PubAck(PubAck::new(id))).await;
    }
    for _ in 0..2 {
        let p = c.recv_publish().await;
        c.send(Packet::PubAck(PubAck::new(p.packet_id))).await;
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn packet_larger_than_server_maximum_fails_without_sending() {
    let server = Server::new().await;
    let connecting = tokio::spawn(Client::connect(server.options()));
    let (mut c, _) = server.accept(V5).await;
    c.connack(
        false,
        tern_codec::ConnAckProperties {
            maximum_packet_size: Some(64),
            maximum_qos: Some(1),
            ..Default::default()
        },
    )
    .await;
    let (client, _) = connecting.await.unwrap().unwrap();
    let err = client
        .publish("big", QoS::AtMostOnce, false, vec![0u8; 100])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PacketTooLarge { maximum: 64, .. }),
        "{err:?}"
    );
    // A QoS 1 message under the limit goes out (sized with its packet identifier).
    let sending = {
        let client = client.clone();
        tokio::spawn(async move { client.publish("ok", QoS::AtLeastOnce, false, "small").await })
    };
    let p = c.recv_publish().await;
    c.send(Packet::PubAck(PubAck::new(p.packet_id))).await;
    sending.await.unwrap().unwrap();
    let err = client
        .publish("q2", QoS::ExactlyOnce, false, "x")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::QosNotSupported { maximum: 1, .. }),
        "{err:?}"
    );
    assert!(c.try_recv(Duration::from_millis(100)).await.is_none());
}

#[tokio::test]
async fn server_keep_alive_overrides_and_pingreq_is_sent() {
    let server = Server::new().await;
    let connecting = tokio::spawn(Client::connect(server.options()));
    let (mut c, connect) = server.accept(V5).await;
    assert_eq!(connect.keep_alive, 60);
    c.connack(
        false,
        tern_codec::ConnAckProperties {
            server_keep_alive: Some(1),
            ..Default::default()
        },
    )
    .await;
    let (_client, _) = connecting.await.unwrap().unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(c.recv().await, Packet::PingReq);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    c.send(Packet::PingResp).await;
    assert_eq!(c.recv().await, Packet::PingReq);
}

#[tokio::test]
async fn unanswered_pingreq_drops_the_connection_and_reconnects() {
    let server = Server::new().await;
    let connecting = tokio::spawn(Client::connect(server.options()));
    let (mut c, _) = server.accept(V5).await;
    c.connack(
        false,
        tern_codec::ConnAckProperties {
            server_keep_alive: Some(1),
            ..Default::default()
        },
    )
    .await;
    let (_client, _) = connecting.await.unwrap().unwrap();
    assert_eq!(c.recv().await, Packet::PingReq);
    // No PINGRESP: the client gives up on this connection and comes back.
    let (mut c2, _) = server.accept(V5).await;
    c2.connack(false, Default::default()).await;
}

#[tokio::test]
async fn inbound_topic_alias_is_resolved() {
    let server = Server::new().await;
    let mut o = server.options();
    o.properties.topic_alias_maximum = Some(5);
    let connecting = tokio::spawn(Client::connect(o));
    let (mut c, connect) = server.accept(V5).await;
    assert_eq!(connect.properties.topic_alias_maximum, Some(5));
    c.connack(false, Default::default()).await;
    let (_client, mut messages) = connecting.await.unwrap().unwrap();
    let mut p = Publish {
        topic: "sensors/t1".into(),
        payload: "1".into(),
        ..Default::default()
    };
    p.properties.topic_alias = Some(3);
    c.send(Packet::Publish(p.clone())).await;
    p.topic = "".into();
    p.payload = "2".into();
    c.send(Packet::Publish(p)).await;
    for payload in ["1", "2"] {
        let m = messages.recv().await.unwrap();
        assert_eq!(m.topic, "sensors/t1");
        assert_eq!(&m.payload[..], payload.as_bytes());
    }
}

#[tokio::test]
async fn inbound_topic_alias_above_maximum_is_a_protocol_error() {
    let server = Server::new().await;
    let connecting = tokio::spawn(Client::connect(server.options()));
    let (mut c, _) = server.accept(V5).await;
    c.connack(false, Default::default()).await;
    let (_client, _) = connecting.await.unwrap().unwrap();
    let mut p = Publish {
        topic: "t".into(),
        ..Default::default()
    };
    p.properties.topic_alias = Some(1);
    c.send(Packet::Publish(p)).await;
    match c.recv().await {
        Packet::Disconnect(d) => assert_eq!(d.reason_code, ReasonCode::PROTOCOL_ERROR),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

#[tokio::test]
async fn outbound_topic_aliases_respect_the_server_maximum() {
    let server = Server::new().await;
    let mut o = server.options();
    o.use_topic_aliases = true;
    let connecting = tokio::spawn(Client::connect(o));
    let (mut c, _) = server.accept(V5).await;
    c.connack(
        false,
        tern_codec::ConnAckProperties {
            topic_alias_maximum: Some(1),
            ..Default::default()
        },
    )
    .await;
    let (client, _) = connecting.await.unwrap().unwrap();
    for topic in ["one", "one", "two"] {
        client
            .publish(topic, QoS::AtMostOnce, false, "x")
            .await
            .unwrap();
    }
    let a = c.recv_publish().await;
    assert_eq!(
        (a.topic.as_str(), a.properties.topic_alias),
        ("one", Some(1))
    );
    let b = c.recv_publish().await;
    assert_eq!((b.topic.as_str(), b.properties.topic_alias), ("", Some(1)));
    let d = c.recv_publish().await;
    assert_eq!((d.topic.as_str(), d.properties.topic_alias), ("two", None));
}

#[tokio::test]
async fn lost_session_resubscribes_and_resubmits_as_new() {
    let server = Server::new().await;
    let connecting = tokio::spawn(Client::connect(session(&server)));
    let (mut c1, _) = server.accept(V5).await;
    c1.connack(false, Default::default()).await;
    let (client, _) = connecting.await.unwrap().unwrap();
    let subscribing = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .subscribe_many(
                    vec![(
                        "s/#".into(),
                        SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            ..Default::default()
                        },
                    )],
                    SubscribeProperties::default(),
                )
                .await
        })
    };
    let Packet::Subscribe(sub) = c1.recv().await else {
        panic!("SUBSCRIBE expected")
    };
    c1.send(Packet::SubAck(SubAck {
        packet_id: sub.packet_id,
        reason_codes: vec![ReasonCode::GRANTED_QOS_1],
        ..Default::default()
    }))
    .await;
    assert_eq!(
        subscribing.await.unwrap().unwrap(),
        vec![ReasonCode::GRANTED_QOS_1]
    );
    let publishing = {
        let client = client.clone();
        tokio::spawn(async move { client.publish("p", QoS::AtLeastOnce, false, "m").await })
    };
    c1.recv_publish().await;
    drop(c1);

    let (mut c2, _) = server.accept(V5).await;
    c2.connack(false, Default::default()).await; // the server lost the session
    let Packet::Subscribe(again) = c2.recv().await else {
        panic!("the subscription is restored first")
    };
    assert_eq!(again.filters[0].0, "s/#");
    c2.send(Packet::SubAck(SubAck {
        packet_id: again.packet_id,
        reason_codes: vec![ReasonCode::GRANTED_QOS_1],
        ..Default::default()
    }))
    .await;
    let p = c2.recv_publish().await;
    assert!(!p.dup, "a new message for a new session");
    c2.send(Packet::PubAck(PubAck::new(p.packet_id))).await;
    publishing.await.unwrap().unwrap();
}

#[tokio::test]
async fn refused_connack_is_a_typed_error() {
    let server = Server::new().await;
    let connecting = tokio::spawn(Client::connect(server.options()));
    let (mut c, _) = server.accept(V5).await;
    c.send(Packet::ConnAck(ConnAck {
        reason_code: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        ..Default::default()
    }))
    .await;
    let err = connecting.await.unwrap().unwrap_err();
    assert!(
        matches!(err, Error::ConnectionRefused { reason_code, .. } if reason_code == ReasonCode::BAD_USER_NAME_OR_PASSWORD)
    );
    assert_eq!(
        err.to_string(),
        "connection refused: Bad User Name or Password (0x86)"
    );
}

#[tokio::test]
async fn no_connack_is_a_timeout() {
    let server = Server::new().await;
    let mut o = server.options();
    o.connect_timeout = Duration::from_millis(200);
    let connecting = tokio::spawn(Client::connect(o));
    let (_c, _) = server.accept(V5).await;
    let err = connecting.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn v311_unsubscribe_and_puback() {
    let server = Server::new().await;
    let mut o = server.options();
    o.protocol = ProtocolVersion::V311;
    let connecting = tokio::spawn(Client::connect(o));
    let (mut c, connect) = server.accept(ProtocolVersion::V311).await;
    assert_eq!(connect.protocol, ProtocolVersion::V311);
    c.connack(false, Default::default()).await;
    let (client, _) = connecting.await.unwrap().unwrap();
    let unsubscribing = {
        let client = client.clone();
        tokio::spawn(async move { client.unsubscribe(vec!["x/#".into()]).await })
    };
    let Packet::Unsubscribe(u) = c.recv().await else {
        panic!("UNSUBSCRIBE expected")
    };
    c.send(Packet::UnsubAck(UnsubAck {
        packet_id: u.packet_id,
        ..Default::default()
    }))
    .await;
    assert!(unsubscribing.await.unwrap().unwrap().is_empty());
    client.disconnect().await.unwrap();
    assert!(matches!(c.recv().await, Packet::Disconnect(_)));
}

/// A resumed session's messages often arrive in the same segment as CONNACK; they must be
/// delivered (and acknowledged) without waiting for more bytes.
#[tokio::test]
async fn messages_in_the_same_segment_as_connack_are_handled() {
    let server = Server::new().await;
    let connecting = tokio::spawn(Client::connect(session(&server)));
    let (mut c, _) = server.accept(V5).await;
    let mut bytes = BytesMut::new();
    encode(&Packet::ConnAck(ConnAck::default()), V5, &mut bytes).unwrap();
    let queued = Publish {
        topic: "queued".into(),
        qos: QoS::AtLeastOnce,
        packet_id: 4,
        payload: "while you were away".into(),
        ..Default::default()
    };
    encode(&Packet::Publish(queued), V5, &mut bytes).unwrap();
    c.stream.write_all(&bytes).await.unwrap();
    let (_client, mut messages) = connecting.await.unwrap().unwrap();
    let m = tokio::time::timeout(Duration::from_secs(2), messages.recv())
        .await
        .expect("delivered without further input")
        .unwrap();
    assert_eq!(m.topic, "queued");
    assert_eq!(c.recv().await, Packet::PubAck(PubAck::new(4)));
}
