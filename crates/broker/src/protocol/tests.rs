//! Whole conversations with the state machine, in memory: one test per rule, named after the
//! behaviour and the specification statement it pins.

use super::*;
use crate::auth::{Access, AllowAll, ClientIdentity};
use crate::session::{EXPIRY_NEVER, OutgoingState};
use tern_codec::*;

fn cfg() -> Arc<ProtocolConfig> {
    Arc::new(ProtocolConfig::default())
}

fn new_conn() -> (Connection, Instant) {
    let now = Instant::now();
    (Connection::new(cfg(), Arc::new(AllowAll), now), now)
}

fn connect_packet(v: ProtocolVersion, id: &str, clean: bool) -> Connect {
    Connect {
        protocol: v,
        clean_start: clean,
        keep_alive: 60,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

fn drain(c: &mut Connection) -> Vec<Packet> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

fn actions(c: &mut Connection) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

/// Connects and accepts with a fresh session; returns the connection with its outputs drained.
fn connected_with(connect: Connect) -> (Connection, Instant) {
    let (mut c, now) = new_conn();
    let id: Arc<str> = Arc::from(connect.client_id.as_str());
    c.handle_packet(Packet::Connect(Box::new(connect)), now);
    let req = match actions(&mut c).pop() {
        Some(Action::Connect(r)) => r,
        other => panic!("expected Connect action, got {other:?}"),
    };
    c.accept(
        Accepted {
            session: SessionState::new(id, req.session_expiry_interval),
            session_present: false,
            assigned_client_id: None,
        },
        now,
    );
    drain(&mut c);
    (c, now)
}

fn connected(v: ProtocolVersion) -> (Connection, Instant) {
    connected_with(connect_packet(v, "c1", true))
}

fn publish(topic: &str, qos: QoS, id: u16) -> Publish {
    Publish {
        qos,
        topic: topic.into(),
        packet_id: id,
        payload: Bytes::from_static(b"hello"),
        ..Default::default()
    }
}

fn delivery(topic: &str, qos: QoS) -> Delivery {
    Delivery {
        message: Arc::new(Message::new(topic, "m", qos, false)),
        qos,
        retain: false,
        subscription_ids: vec![],
        store_seq: 0,
    }
}

fn closed_reason(acts: &[Action]) -> Option<ReasonCode> {
    acts.iter().find_map(|a| match a {
        Action::Closed { reason, .. } => Some(*reason),
        _ => None,
    })
}

#[test]
fn first_packet_not_connect_closes_connection_mqtt_3_1_0_1() {
    let (mut c, now) = new_conn();
    c.handle_packet(Packet::PingReq, now);
    assert!(c.is_closed());
    assert!(drain(&mut c).is_empty());
}

#[test]
fn second_connect_is_protocol_error_mqtt_3_1_0_2() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.handle_packet(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "c1", true))),
        now,
    );
    assert!(c.is_closed());
    assert!(
        matches!(&drain(&mut c)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PROTOCOL_ERROR)
    );
}

#[test]
fn connect_timeout_closes_silent_socket() {
    let (mut c, now) = new_conn();
    let t = c.poll_timeout().unwrap();
    assert_eq!(t, now + ProtocolConfig::default().connect_timeout);
    c.handle_timeout(t);
    assert!(c.is_closed());
}

#[test]
fn empty_client_id_without_clean_session_rejected_v311_mqtt_3_1_3_8() {
    let (mut c, now) = new_conn();
    c.handle_packet(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V311, "", false))),
        now,
    );
    let out = drain(&mut c);
    assert!(
        matches!(&out[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::V3_IDENTIFIER_REJECTED && !a.session_present)
    );
    assert!(c.is_closed());
}

#[test]
fn empty_client_id_v5_is_assigned_one_mqtt_3_2_2_16() {
    let (mut c, now) = new_conn();
    c.handle_packet(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "", true))),
        now,
    );
    assert!(matches!(&actions(&mut c)[..], [Action::Connect(r)] if r.client_id.is_empty()));
    c.accept(
        Accepted {
            session: SessionState::new("x".into(), 0),
            session_present: false,
            assigned_client_id: Some("auto-1".into()),
        },
        now,
    );
    let out = drain(&mut c);
    let Packet::ConnAck(a) = &out[0] else {
        panic!()
    };
    assert_eq!(
        a.properties.assigned_client_identifier.as_deref(),
        Some("auto-1")
    );
    assert_eq!(c.identity().client_id, "auto-1");
}

#[test]
fn connack_advertises_limits_and_capabilities_v5() {
    let (mut c, now) = new_conn();
    c.handle_packet(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "c", true))),
        now,
    );
    actions(&mut c);
    c.accept(
        Accepted {
            session: SessionState::new("c".into(), 0),
            session_present: true,
            assigned_client_id: None,
        },
        now,
    );
    let out = drain(&mut c);
    let Packet::ConnAck(a) = &out[0] else {
        panic!()
    };
    assert!(a.session_present);
    assert_eq!(a.properties.receive_maximum, Some(100));
    assert_eq!(a.properties.maximum_packet_size, Some(1_048_576));
    assert_eq!(a.properties.topic_alias_maximum, Some(10));
    assert_eq!(a.properties.shared_subscription_available, Some(true));
}

#[test]
fn reject_translates_reason_code_for_v311_mqtt_3_2_2_5() {
    let (mut c, now) = new_conn();
    c.handle_packet(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V311, "c", true))),
        now,
    );
    c.reject(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    assert!(
        matches!(&drain(&mut c)[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::V3_BAD_USER_NAME_OR_PASSWORD)
    );
    assert!(c.is_closed());
}

#[test]
fn enhanced_auth_method_refused_with_0x8c() {
    let (mut c, now) = new_conn();
    let mut p = connect_packet(ProtocolVersion::V5, "c", true);
    p.properties.authentication_method = Some("SCRAM".into());
    c.handle_packet(Packet::Connect(Box::new(p)), now);
    assert!(
        matches!(&drain(&mut c)[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::BAD_AUTHENTICATION_METHOD)
    );
}

#[test]
fn keep_alive_above_max_gets_server_keep_alive_v5_mqtt_3_2_2_21() {
    let cfg = ProtocolConfig {
        max_keepalive: 30,
        ..Default::default()
    };
    let now = Instant::now();
    let mut c = Connection::new(Arc::new(cfg), Arc::new(AllowAll), now);
    c.handle_packet(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "c", true))),
        now,
    );
    actions(&mut c);
    c.accept(
        Accepted {
            session: SessionState::new("c".into(), 0),
            session_present: false,
            assigned_client_id: None,
        },
        now,
    );
    let Packet::ConnAck(a) = &drain(&mut c)[0] else {
        panic!()
    };
    assert_eq!(a.properties.server_keep_alive, Some(30));
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(45)));
}

#[test]
fn keep_alive_above_max_refused_v311() {
    let cfg = ProtocolConfig {
        max_keepalive: 30,
        ..Default::default()
    };
    let now = Instant::now();
    let mut c = Connection::new(Arc::new(cfg), Arc::new(AllowAll), now);
    c.handle_packet(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V311, "c", true))),
        now,
    );
    assert!(
        matches!(&drain(&mut c)[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::V3_IDENTIFIER_REJECTED)
    );
}

#[test]
fn keep_alive_timeout_after_one_and_a_half_intervals_mqtt_3_1_2_24() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(90)));
    c.handle_packet(Packet::PingReq, now + Duration::from_secs(50));
    assert!(matches!(&drain(&mut c)[..], [Packet::PingResp]));
    c.handle_timeout(now + Duration::from_secs(139));
    assert!(!c.is_closed());
    c.handle_timeout(now + Duration::from_secs(140));
    assert!(c.is_closed());
    assert!(
        matches!(&drain(&mut c)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
}

#[test]
fn will_published_on_keep_alive_timeout_mqtt_3_1_2_8() {
    let mut p = connect_packet(ProtocolVersion::V311, "c", true);
    p.will = Some(LastWill {
        topic: "will".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    let (mut c, now) = connected_with(p);
    c.handle_timeout(now + Duration::from_secs(91));
    let acts = actions(&mut c);
    assert!(
        matches!(&acts[..], [Action::Closed { will: Some(w), .. }] if w.message.topic == "will")
    );
}

#[test]
fn will_discarded_on_normal_disconnect_mqtt_3_14_4_3() {
    let mut p = connect_packet(ProtocolVersion::V5, "c", true);
    p.will = Some(LastWill {
        topic: "will".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    let (mut c, now) = connected_with(p.clone());
    c.handle_packet(Packet::Disconnect(Disconnect::default()), now);
    assert!(matches!(
        &actions(&mut c)[..],
        [Action::Closed { will: None, .. }]
    ));

    // v5 reason 0x04 asks for the will.
    let (mut c, now) = connected_with(p.clone());
    c.handle_packet(
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
            ..Default::default()
        }),
        now,
    );
    assert!(matches!(
        &actions(&mut c)[..],
        [Action::Closed { will: Some(_), .. }]
    ));

    // A lost connection publishes it.
    let (mut c, _) = connected_with(p);
    c.handle_connection_lost();
    assert!(matches!(
        &actions(&mut c)[..],
        [Action::Closed { will: Some(_), .. }]
    ));
}

#[test]
fn will_delay_and_expiry_carried_to_broker_mqtt_3_1_3_9() {
    let mut p = connect_packet(ProtocolVersion::V5, "c", true);
    p.will = Some(LastWill {
        topic: "will".into(),
        payload: Bytes::from_static(b"x"),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: WillProperties {
            will_delay_interval: Some(5),
            message_expiry_interval: Some(60),
            content_type: Some("text/plain".into()),
            ..Default::default()
        },
    });
    let (mut c, _) = connected_with(p);
    c.handle_connection_lost();
    let acts = actions(&mut c);
    let Some(Action::Closed { will: Some(w), .. }) = acts.first() else {
        panic!()
    };
    assert_eq!(w.delay_interval, 5);
    assert_eq!(w.message_expiry_interval, Some(60));
    assert!(w.message.retain);
    assert_eq!(
        w.message.properties.content_type.as_deref(),
        Some("text/plain")
    );
}

#[test]
fn session_expiry_cannot_go_from_zero_on_disconnect_mqtt_3_14_2_2() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.handle_packet(
        Packet::Disconnect(Disconnect {
            properties: DisconnectProperties {
                session_expiry_interval: Some(100),
                ..Default::default()
            }
            .into(),
            ..Default::default()
        }),
        now,
    );
    assert_eq!(
        closed_reason(&actions(&mut c)),
        Some(ReasonCode::PROTOCOL_ERROR)
    );
}

#[test]
fn session_expiry_changed_on_disconnect() {
    let mut p = connect_packet(ProtocolVersion::V5, "c", false);
    p.properties.session_expiry_interval = Some(100);
    let (mut c, now) = connected_with(p);
    c.handle_packet(
        Packet::Disconnect(Disconnect {
            properties: DisconnectProperties {
                session_expiry_interval: Some(5),
                ..Default::default()
            }
            .into(),
            ..Default::default()
        }),
        now,
    );
    assert_eq!(c.take_session().unwrap().expiry_interval, 5);
}

#[test]
fn clean_session_0_v311_session_never_expires() {
    let (mut c, now) = new_conn();
    c.handle_packet(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V311, "c", false))),
        now,
    );
    assert!(
        matches!(&actions(&mut c)[..], [Action::Connect(r)] if r.session_expiry_interval == EXPIRY_NEVER)
    );
}

#[test]
fn qos0_publish_is_routed_without_ack() {
    let (mut c, now) = connected(ProtocolVersion::V311);
    c.handle_packet(Packet::Publish(publish("a/b", QoS::AtMostOnce, 0)), now);
    assert!(drain(&mut c).is_empty());
    assert!(matches!(&actions(&mut c)[..], [Action::Publish(m)] if m.topic == "a/b"));
}

#[test]
fn qos1_publish_acked_with_puback_mqtt_4_3_2_2() {
    let (mut c, now) = connected(ProtocolVersion::V311);
    c.handle_packet(Packet::Publish(publish("a", QoS::AtLeastOnce, 7)), now);
    assert!(matches!(&drain(&mut c)[..], [Packet::PubAck(a)] if a.packet_id == 7));
    assert_eq!(actions(&mut c).len(), 1);
}

#[test]
fn qos2_publish_routed_once_until_pubrel_mqtt_4_3_3_9() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.handle_packet(Packet::Publish(publish("a", QoS::ExactlyOnce, 9)), now);
    let mut dup = publish("a", QoS::ExactlyOnce, 9);
    dup.dup = true;
    c.handle_packet(Packet::Publish(dup), now);
    assert_eq!(actions(&mut c).len(), 1, "routed exactly once");
    assert!(
        matches!(&drain(&mut c)[..], [Packet::PubRec(a), Packet::PubRec(b)] if a.packet_id == 9 && b.packet_id == 9)
    );
    c.handle_packet(Packet::PubRel(PubRel::new(9)), now);
    assert!(
        matches!(&drain(&mut c)[..], [Packet::PubComp(p)] if p.reason_code == ReasonCode::SUCCESS)
    );
    // After PUBREL, the id is free again: a new message with it is a new message.
    c.handle_packet(Packet::Publish(publish("a", QoS::ExactlyOnce, 9)), now);
    assert_eq!(actions(&mut c).len(), 1);
}

#[test]
fn pubrel_for_unknown_id_gets_0x92_v5() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.handle_packet(Packet::PubRel(PubRel::new(3)), now);
    assert!(
        matches!(&drain(&mut c)[..], [Packet::PubComp(p)] if p.reason_code == ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
    );
    let (mut c, now) = connected(ProtocolVersion::V311);
    c.handle_packet(Packet::PubRel(PubRel::new(3)), now);
    assert!(matches!(&drain(&mut c)[..], [Packet::PubComp(p)] if p.packet_id == 3));
}

#[test]
fn qos1_reusing_id_held_by_qos2_flow_gets_0x91_v5() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.handle_packet(Packet::Publish(publish("a", QoS::ExactlyOnce, 4)), now);
    drain(&mut c);
    actions(&mut c);
    c.handle_packet(Packet::Publish(publish("a", QoS::AtLeastOnce, 4)), now);
    assert!(
        matches!(&drain(&mut c)[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::PACKET_IDENTIFIER_IN_USE)
    );
    assert!(actions(&mut c).is_empty());
}

#[test]
fn qos2_state_survives_reconnect_mqtt_4_3_3_9() {
    let mut p = connect_packet(ProtocolVersion::V5, "c", false);
    p.properties.session_expiry_interval = Some(60);
    let (mut c, now) = connected_with(p.clone());
    c.handle_packet(Packet::Publish(publish("a", QoS::ExactlyOnce, 5)), now);
    assert_eq!(actions(&mut c).len(), 1);
    c.handle_connection_lost();
    let session = c.take_session().unwrap();
    assert!(session.incoming_qos2.contains(&5));

    let (mut c2, now) = new_conn();
    c2.handle_packet(Packet::Connect(Box::new(p)), now);
    actions(&mut c2);
    c2.accept(
        Accepted {
            session,
            session_present: true,
            assigned_client_id: None,
        },
        now,
    );
    drain(&mut c2);
    let mut dup = publish("a", QoS::ExactlyOnce, 5);
    dup.dup = true;
    c2.handle_packet(Packet::Publish(dup), now);
    assert!(actions(&mut c2).is_empty(), "not routed a second time");
    c2.handle_packet(Packet::PubRel(PubRel::new(5)), now);
    assert!(
        matches!(&drain(&mut c2)[..], [Packet::PubRec(_), Packet::PubComp(p)] if p.reason_code == ReasonCode::SUCCESS)
    );
}

#[test]
fn receive_maximum_exceeded_gets_disconnect_0x93_mqtt_3_3_4_9() {
    let cfg = ProtocolConfig {
        max_inflight: 2,
        ..Default::default()
    };
    let now = Instant::now();
    let mut c = Connection::new(Arc::new(cfg), Arc::new(AllowAll), now);
    c.handle_packet(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "c", true))),
        now,
    );
    actions(&mut c);
    c.accept(
        Accepted {
            session: SessionState::new("c".into(), 0),
            session_present: false,
            assigned_client_id: None,
        },
        now,
    );
    drain(&mut c);
    for id in 1..=3 {
        c.handle_packet(Packet::Publish(publish("a", QoS::ExactlyOnce, id)), now);
    }
    let out = drain(&mut c);
    assert!(
        matches!(out.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
    );
    assert!(c.is_closed());
}

#[test]
fn wildcard_in_publish_topic_closes_connection_mqtt_3_3_2_2() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.handle_packet(Packet::Publish(publish("a/+", QoS::AtMostOnce, 0)), now);
    assert!(c.is_closed());
    assert!(
        matches!(&drain(&mut c)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::TOPIC_NAME_INVALID)
    );
    let (mut c, now) = connected(ProtocolVersion::V311);
    c.handle_packet(Packet::Publish(publish("#", QoS::AtMostOnce, 0)), now);
    assert!(c.is_closed());
    assert!(drain(&mut c).is_empty(), "3.1.1 has no server DISCONNECT");
}

#[test]
fn inbound_topic_alias_sets_and_resolves_mqtt_3_3_2_12() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    let mut p = publish("long/topic", QoS::AtMostOnce, 0);
    p.properties.topic_alias = Some(1);
    c.handle_packet(Packet::Publish(p), now);
    let mut p = publish("", QoS::AtMostOnce, 0);
    p.properties.topic_alias = Some(1);
    c.handle_packet(Packet::Publish(p), now);
    let acts = actions(&mut c);
    assert_eq!(acts.len(), 2);
    assert!(
        matches!(&acts[1], Action::Publish(m) if m.topic == "long/topic" && m.properties.topic_alias.is_none())
    );
}

#[test]
fn inbound_topic_alias_above_maximum_is_error_0x94_mqtt_3_3_2_9() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    let mut p = publish("t", QoS::AtMostOnce, 0);
    p.properties.topic_alias = Some(11);
    c.handle_packet(Packet::Publish(p), now);
    assert!(
        matches!(&drain(&mut c)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::TOPIC_ALIAS_INVALID)
    );
}

#[test]
fn unknown_inbound_alias_with_empty_topic_is_protocol_error() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    let mut p = publish("", QoS::AtMostOnce, 0);
    p.properties.topic_alias = Some(2);
    c.handle_packet(Packet::Publish(p), now);
    assert_eq!(
        closed_reason(&actions(&mut c)),
        Some(ReasonCode::PROTOCOL_ERROR)
    );
}

#[test]
fn message_expiry_carried_and_subscription_ids_stripped_on_inbound() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    let mut p = publish("t", QoS::AtMostOnce, 0);
    p.properties.message_expiry_interval = Some(10);
    p.properties.user_properties.push(("k".into(), "v".into()));
    c.handle_packet(Packet::Publish(p), now);
    let acts = actions(&mut c);
    let Action::Publish(m) = &acts[0] else {
        panic!()
    };
    assert_eq!(m.expires_at, Some(now + Duration::from_secs(10)));
    assert_eq!(m.properties.user_properties.len(), 1);
    assert_eq!(&*m.publisher.clone().unwrap(), "c1");
}

#[test]
fn payload_format_invalid_refused_with_0x99_v5() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    let mut p = publish("t", QoS::AtLeastOnce, 1);
    p.properties.payload_format_indicator = Some(true);
    p.payload = Bytes::from_static(&[0xff, 0xfe]);
    c.handle_packet(Packet::Publish(p), now);
    assert!(
        matches!(&drain(&mut c)[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::PAYLOAD_FORMAT_INVALID)
    );
    assert!(actions(&mut c).is_empty());
}

struct DenyWrite;
impl crate::auth::Authorizer for DenyWrite {
    fn authorize(&self, _: &ClientIdentity, access: Access, _: &str) -> bool {
        access != Access::Write && access != Access::Subscribe
    }
}

#[test]
fn unauthorized_publish_gets_0x87_v5_and_silent_drop_v311() {
    for v in [ProtocolVersion::V5, ProtocolVersion::V311] {
        let now = Instant::now();
        let mut c = Connection::new(cfg(), Arc::new(DenyWrite), now);
        c.handle_packet(Packet::Connect(Box::new(connect_packet(v, "c", true))), now);
        actions(&mut c);
        c.accept(
            Accepted {
                session: SessionState::new("c".into(), 0),
                session_present: false,
                assigned_client_id: None,
            },
            now,
        );
        drain(&mut c);
        c.handle_packet(Packet::Publish(publish("t", QoS::AtLeastOnce, 1)), now);
        let expect = if v.is_v5() {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode::SUCCESS
        };
        assert!(matches!(&drain(&mut c)[..], [Packet::PubAck(a)] if a.reason_code == expect));
        assert!(actions(&mut c).is_empty());
        c.handle_packet(
            Packet::Subscribe(Subscribe {
                packet_id: 2,
                filters: vec![("t".into(), SubscriptionOptions::default())],
                properties: Default::default(),
            }),
            now,
        );
        let expect = if v.is_v5() {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode::V3_SUBACK_FAILURE
        };
        assert!(matches!(&drain(&mut c)[..], [Packet::SubAck(a)] if a.reason_codes == [expect]));
    }
}

fn subscribe(filters: &[(&str, QoS)], id: Option<u32>) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: filters
            .iter()
            .map(|(f, q)| {
                (
                    (*f).into(),
                    SubscriptionOptions {
                        qos: *q,
                        ..Default::default()
                    },
                )
            })
            .collect(),
        properties: SubscribeProperties {
            subscription_identifier: id,
            user_properties: vec![],
        },
    })
}

#[test]
fn suback_has_one_code_per_filter_in_order_mqtt_3_8_4_6() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.handle_packet(
        subscribe(
            &[
                ("a/+", QoS::ExactlyOnce),
                ("b/#/c", QoS::AtMostOnce),
                ("c", QoS::AtLeastOnce),
            ],
            Some(7),
        ),
        now,
    );
    assert!(
        matches!(&drain(&mut c)[..], [Packet::SubAck(a)] if a.reason_codes == [ReasonCode::GRANTED_QOS_2, ReasonCode::TOPIC_FILTER_INVALID, ReasonCode::GRANTED_QOS_1])
    );
    let acts = actions(&mut c);
    let [Action::Subscribe(subs)] = &acts[..] else {
        panic!()
    };
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0].subscription.id, Some(7));
    assert!(subs[0].send_retained);
}

#[test]
fn granted_qos_downgraded_to_server_maximum_mqtt_3_2_2_9() {
    let cfg = ProtocolConfig {
        max_qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    let now = Instant::now();
    let mut c = Connection::new(Arc::new(cfg), Arc::new(AllowAll), now);
    c.handle_packet(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V311, "c", true))),
        now,
    );
    actions(&mut c);
    c.accept(
        Accepted {
            session: SessionState::new("c".into(), 0),
            session_present: false,
            assigned_client_id: None,
        },
        now,
    );
    drain(&mut c);
    c.handle_packet(subscribe(&[("a", QoS::ExactlyOnce)], None), now);
    assert!(
        matches!(&drain(&mut c)[..], [Packet::SubAck(a)] if a.reason_codes == [ReasonCode::GRANTED_QOS_1])
    );
}

#[test]
fn retain_handling_1_sends_retained_only_for_new_subscription() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    let pkt = |rh| {
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![(
                "a".into(),
                SubscriptionOptions {
                    retain_handling: rh,
                    ..Default::default()
                },
            )],
            properties: Default::default(),
        })
    };
    c.handle_packet(pkt(RetainHandling::SendIfNew), now);
    c.handle_packet(pkt(RetainHandling::SendIfNew), now);
    c.handle_packet(pkt(RetainHandling::DoNotSend), now);
    let flags: Vec<bool> = actions(&mut c)
        .into_iter()
        .map(|a| match a {
            Action::Subscribe(s) => s[0].send_retained,
            _ => panic!(),
        })
        .collect();
    assert_eq!(flags, [true, false, false]);
}

#[test]
fn shared_subscription_gets_no_retained_and_no_local_is_protocol_error_mqtt_3_8_3_4() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.handle_packet(subscribe(&[("$share/g/a", QoS::AtLeastOnce)], None), now);
    let acts = actions(&mut c);
    assert!(matches!(&acts[..], [Action::Subscribe(s)] if !s[0].send_retained));
    c.handle_packet(
        Packet::Subscribe(Subscribe {
            packet_id: 2,
            filters: vec![(
                "$share/g/a".into(),
                SubscriptionOptions {
                    no_local: true,
                    ..Default::default()
                },
            )],
            properties: Default::default(),
        }),
        now,
    );
    assert_eq!(
        closed_reason(&actions(&mut c)),
        Some(ReasonCode::PROTOCOL_ERROR)
    );
}

#[test]
fn unsubscribe_reports_per_filter_reason_codes_v5() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.handle_packet(subscribe(&[("a", QoS::AtMostOnce)], None), now);
    drain(&mut c);
    actions(&mut c);
    c.handle_packet(
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 3,
            filters: vec!["a".into(), "b".into(), "a/#/b".into()],
            properties: Default::default(),
        }),
        now,
    );
    assert!(
        matches!(&drain(&mut c)[..], [Packet::UnsubAck(u)] if u.reason_codes == [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED, ReasonCode::TOPIC_FILTER_INVALID])
    );
    assert!(matches!(&actions(&mut c)[..], [Action::Unsubscribe(f)] if f.len() == 1));
}

#[test]
fn unsuback_v311_has_no_payload_mqtt_3_10_4_5() {
    let (mut c, now) = connected(ProtocolVersion::V311);
    c.handle_packet(
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 3,
            filters: vec!["nothing".into()],
            properties: Default::default(),
        }),
        now,
    );
    assert!(
        matches!(&drain(&mut c)[..], [Packet::UnsubAck(u)] if u.reason_codes.is_empty() && u.packet_id == 3)
    );
}

#[test]
fn outbound_window_honours_client_receive_maximum_mqtt_3_3_4_7() {
    let mut p = connect_packet(ProtocolVersion::V5, "c", true);
    p.properties.receive_maximum = Some(2);
    let (mut c, now) = connected_with(p);
    for _ in 0..4 {
        c.deliver(delivery("t", QoS::AtLeastOnce), now);
    }
    let out = drain(&mut c);
    assert_eq!(out.len(), 2, "only two in flight");
    assert!(!c.wants_delivery());
    let ids: Vec<u16> = out
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p.packet_id,
            _ => panic!(),
        })
        .collect();
    c.handle_packet(Packet::PubAck(PubAck::new(ids[0])), now);
    assert_eq!(drain(&mut c).len(), 1, "an ack opens the window by one");
}

#[test]
fn qos2_outbound_flow_pubrec_pubrel_pubcomp_mqtt_4_3_3() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.deliver(delivery("t", QoS::ExactlyOnce), now);
    let Packet::Publish(p) = &drain(&mut c)[0] else {
        panic!()
    };
    let id = p.packet_id;
    assert_ne!(id, 0);
    c.handle_packet(Packet::PubRec(PubRec::new(id)), now);
    assert!(matches!(&drain(&mut c)[..], [Packet::PubRel(r)] if r.packet_id == id));
    assert_eq!(
        c.session().unwrap().outgoing[0].state,
        OutgoingState::AwaitPubComp
    );
    c.handle_packet(Packet::PubComp(PubComp::new(id)), now);
    assert!(c.session().unwrap().outgoing.is_empty());
}

#[test]
fn unacked_messages_resent_with_dup_on_resumption_mqtt_4_4_0_1() {
    let mut p = connect_packet(ProtocolVersion::V311, "c", false);
    p.keep_alive = 0;
    let (mut c, now) = connected_with(p.clone());
    c.deliver(delivery("q1", QoS::AtLeastOnce), now);
    c.deliver(delivery("q2", QoS::ExactlyOnce), now);
    c.deliver(delivery("q2b", QoS::ExactlyOnce), now);
    let out = drain(&mut c);
    let Packet::Publish(second) = &out[1] else {
        panic!()
    };
    c.handle_packet(Packet::PubRec(PubRec::new(second.packet_id)), now);
    drain(&mut c);
    c.handle_connection_lost();
    let session = c.take_session().unwrap();

    let (mut c2, now) = new_conn();
    c2.handle_packet(Packet::Connect(Box::new(p)), now);
    actions(&mut c2);
    c2.accept(
        Accepted {
            session,
            session_present: true,
            assigned_client_id: None,
        },
        now,
    );
    let out = drain(&mut c2);
    assert!(matches!(&out[0], Packet::ConnAck(a) if a.session_present));
    assert!(matches!(&out[1], Packet::Publish(p) if p.dup && p.topic == "q1"));
    assert!(
        matches!(&out[2], Packet::PubRel(_)),
        "PUBREL resent for the message past PUBREC"
    );
    assert!(matches!(&out[3], Packet::Publish(p) if p.dup && p.topic == "q2b"));
}

#[test]
fn outbound_topic_alias_assigned_then_reused_mqtt_3_3_2_11() {
    let mut p = connect_packet(ProtocolVersion::V5, "c", true);
    p.properties.topic_alias_maximum = Some(1);
    let (mut c, now) = connected_with(p);
    c.deliver(delivery("x/y", QoS::AtMostOnce), now);
    c.deliver(delivery("x/y", QoS::AtMostOnce), now);
    c.deliver(delivery("other", QoS::AtMostOnce), now);
    let out = drain(&mut c);
    let pubs: Vec<&Publish> = out
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p,
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        (pubs[0].topic.as_str(), pubs[0].properties.topic_alias),
        ("x/y", Some(1))
    );
    assert_eq!(
        (pubs[1].topic.as_str(), pubs[1].properties.topic_alias),
        ("", Some(1))
    );
    assert_eq!(
        (pubs[2].topic.as_str(), pubs[2].properties.topic_alias),
        ("other", None)
    );
}

#[test]
fn no_outbound_alias_when_client_allows_none() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.deliver(delivery("x", QoS::AtMostOnce), now);
    c.deliver(delivery("x", QoS::AtMostOnce), now);
    for p in drain(&mut c) {
        let Packet::Publish(p) = p else { panic!() };
        assert_eq!(p.properties.topic_alias, None);
        assert_eq!(p.topic, "x");
    }
}

#[test]
fn expired_message_not_delivered_and_expiry_decremented_mqtt_3_3_2_6() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    let m = Message::new("t", "x", QoS::AtMostOnce, false).with_expiry_interval(Some(10), now);
    let d = Delivery {
        message: Arc::new(m),
        qos: QoS::AtMostOnce,
        retain: false,
        subscription_ids: vec![3],
        store_seq: 0,
    };
    c.deliver(d.clone(), now + Duration::from_secs(4));
    let Packet::Publish(p) = &drain(&mut c)[0] else {
        panic!()
    };
    assert_eq!(p.properties.message_expiry_interval, Some(6));
    assert_eq!(p.properties.subscription_identifiers, [3]);
    c.deliver(d, now + Duration::from_secs(11));
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.stats().dropped_expired, 1);
}

#[test]
fn message_larger_than_client_maximum_packet_size_dropped_mqtt_3_1_2_25() {
    let mut p = connect_packet(ProtocolVersion::V5, "c", true);
    p.properties.maximum_packet_size = Some(64);
    let (mut c, now) = connected_with(p);
    let big = Delivery {
        message: Arc::new(Message::new("t", vec![0u8; 100], QoS::AtLeastOnce, false)),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: vec![],
        store_seq: 0,
    };
    c.deliver(big, now);
    c.deliver(delivery("t", QoS::AtLeastOnce), now);
    let out = drain(&mut c);
    assert_eq!(out.len(), 1);
    assert_eq!(c.stats().dropped_too_large, 1);
    assert_eq!(
        c.session().unwrap().outgoing.len(),
        1,
        "the dropped one holds no packet id"
    );
}

#[test]
fn v311_publish_carries_no_v5_properties() {
    let (mut c, now) = connected(ProtocolVersion::V311);
    let mut m = Message::new("t", "x", QoS::AtMostOnce, false);
    m.properties.content_type = Some("a".into());
    c.deliver(
        Delivery {
            message: Arc::new(m),
            qos: QoS::AtMostOnce,
            retain: false,
            subscription_ids: vec![1],
            store_seq: 0,
        },
        now,
    );
    let Packet::Publish(p) = &drain(&mut c)[0] else {
        panic!()
    };
    assert!(p.properties.is_empty());
}

#[test]
fn auth_packet_is_protocol_error_when_no_enhanced_auth() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.handle_packet(Packet::Auth(Auth::default()), now);
    assert_eq!(
        closed_reason(&actions(&mut c)),
        Some(ReasonCode::PROTOCOL_ERROR)
    );
}

#[test]
fn server_shutdown_sends_0x8b_and_keeps_will_unpublished() {
    let mut p = connect_packet(ProtocolVersion::V5, "c", true);
    p.will = Some(LastWill {
        topic: "w".into(),
        payload: Bytes::new(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let (mut c, _) = connected_with(p);
    c.close(ReasonCode::SERVER_SHUTTING_DOWN);
    assert!(
        matches!(&drain(&mut c)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SERVER_SHUTTING_DOWN)
    );
    assert!(matches!(
        &actions(&mut c)[..],
        [Action::Closed { will: None, .. }]
    ));
}

#[test]
fn takeover_sends_0x8e_to_old_connection_v5() {
    let (mut c, _) = connected(ProtocolVersion::V5);
    c.close(ReasonCode::SESSION_TAKEN_OVER);
    assert!(
        matches!(&drain(&mut c)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SESSION_TAKEN_OVER
            && d.properties.reason_string.as_deref() == Some("Session taken over"))
    );
}

#[test]
fn packets_sent_before_connack_are_handled_after_accept() {
    let (mut c, now) = new_conn();
    c.handle_packet(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V311, "c", true))),
        now,
    );
    c.handle_packet(subscribe(&[("a", QoS::AtMostOnce)], None), now);
    actions(&mut c);
    c.accept(
        Accepted {
            session: SessionState::new("c".into(), 0),
            session_present: false,
            assigned_client_id: None,
        },
        now,
    );
    let out = drain(&mut c);
    assert!(matches!(&out[..], [Packet::ConnAck(_), Packet::SubAck(_)]));
}

#[test]
fn pending_deliveries_go_back_to_session_queue_in_order() {
    let mut p = connect_packet(ProtocolVersion::V5, "c", false);
    p.properties.receive_maximum = Some(1);
    p.properties.session_expiry_interval = Some(10);
    let (mut c, now) = connected_with(p);
    c.deliver(delivery("1", QoS::AtLeastOnce), now);
    c.deliver(delivery("2", QoS::AtLeastOnce), now);
    c.deliver(delivery("3", QoS::AtLeastOnce), now);
    c.handle_connection_lost();
    let s = c.take_session().unwrap();
    assert_eq!(s.outgoing.len(), 1);
    let topics: Vec<&str> = s.queue.iter().map(|d| d.message.topic.as_str()).collect();
    assert_eq!(topics, ["2", "3"]);
}

#[test]
fn will_goes_out_at_earlier_of_delay_and_session_end_mqtt_3_1_3_9() {
    let w = Will {
        message: Message::new("w", "x", QoS::AtMostOnce, false),
        delay_interval: 30,
        message_expiry_interval: None,
    };
    assert_eq!(
        w.effective_delay(0),
        0,
        "session ends at once: will at once"
    );
    assert_eq!(w.effective_delay(10), 10, "session ends first");
    assert_eq!(w.effective_delay(60), 30, "delay ends first");
    assert_eq!(w.effective_delay(EXPIRY_NEVER), 30);
}

#[test]
fn will_to_a_topic_the_client_may_not_write_is_dropped() {
    let now = Instant::now();
    let mut c = Connection::new(cfg(), Arc::new(DenyWrite), now);
    let mut p = connect_packet(ProtocolVersion::V311, "c", true);
    p.will = Some(LastWill {
        topic: "w".into(),
        payload: Bytes::from_static(b"x"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    c.handle_packet(Packet::Connect(Box::new(p)), now);
    actions(&mut c);
    c.accept(
        Accepted {
            session: SessionState::new("c".into(), 0),
            session_present: false,
            assigned_client_id: None,
        },
        now,
    );
    c.handle_connection_lost();
    assert!(matches!(
        &actions(&mut c)[..],
        [Action::Closed { will: None, .. }]
    ));
}

#[test]
fn request_response_information_answered_with_response_information() {
    let mut p = connect_packet(ProtocolVersion::V5, "rr", true);
    p.properties.request_response_information = Some(true);
    let (mut c, now) = new_conn();
    c.handle_packet(Packet::Connect(Box::new(p)), now);
    actions(&mut c);
    c.accept(
        Accepted {
            session: SessionState::new("rr".into(), 0),
            session_present: false,
            assigned_client_id: None,
        },
        now,
    );
    let Packet::ConnAck(a) = &drain(&mut c)[0] else {
        panic!()
    };
    assert_eq!(
        a.properties.response_information.as_deref(),
        Some("response/rr")
    );
}

#[test]
fn no_reason_string_on_acks_when_problem_information_refused_mqtt_3_1_2_29() {
    let now = Instant::now();
    let mut c = Connection::new(cfg(), Arc::new(DenyWrite), now);
    let mut p = connect_packet(ProtocolVersion::V5, "c", true);
    p.properties.request_problem_information = Some(false);
    c.handle_packet(Packet::Connect(Box::new(p)), now);
    actions(&mut c);
    c.accept(
        Accepted {
            session: SessionState::new("c".into(), 0),
            session_present: false,
            assigned_client_id: None,
        },
        now,
    );
    drain(&mut c);
    c.handle_packet(Packet::Publish(publish("t", QoS::AtLeastOnce, 1)), now);
    assert!(
        matches!(&drain(&mut c)[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::NOT_AUTHORIZED && a.properties.reason_string.is_none())
    );
}

#[test]
fn refused_qos2_publish_gets_error_pubrec_and_holds_no_id_v5() {
    let now = Instant::now();
    let mut c = Connection::new(cfg(), Arc::new(DenyWrite), now);
    c.handle_packet(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "c", true))),
        now,
    );
    actions(&mut c);
    c.accept(
        Accepted {
            session: SessionState::new("c".into(), 0),
            session_present: false,
            assigned_client_id: None,
        },
        now,
    );
    drain(&mut c);
    c.handle_packet(Packet::Publish(publish("t", QoS::ExactlyOnce, 8)), now);
    assert!(
        matches!(&drain(&mut c)[..], [Packet::PubRec(r)] if r.reason_code == ReasonCode::NOT_AUTHORIZED)
    );
    assert!(c.session().unwrap().incoming_qos2.is_empty());
}

#[test]
fn error_pubrec_from_client_ends_outbound_qos2_flow_v5() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.deliver(delivery("t", QoS::ExactlyOnce), now);
    let Packet::Publish(p) = &drain(&mut c)[0] else {
        panic!()
    };
    c.handle_packet(
        Packet::PubRec(PubRec {
            packet_id: p.packet_id,
            reason_code: ReasonCode::QUOTA_EXCEEDED,
            properties: Default::default(),
        }),
        now,
    );
    assert!(drain(&mut c).is_empty(), "no PUBREL after an error PUBREC");
    assert!(c.session().unwrap().outgoing.is_empty());
}

#[test]
fn duplicate_pubrec_gets_pubrel_again() {
    let (mut c, now) = connected(ProtocolVersion::V311);
    c.deliver(delivery("t", QoS::ExactlyOnce), now);
    let Packet::Publish(p) = &drain(&mut c)[0] else {
        panic!()
    };
    let id = p.packet_id;
    c.handle_packet(Packet::PubRec(PubRec::new(id)), now);
    c.handle_packet(Packet::PubRec(PubRec::new(id)), now);
    assert!(matches!(
        &drain(&mut c)[..],
        [Packet::PubRel(_), Packet::PubRel(_)]
    ));
}

#[test]
fn subscription_identifier_zero_is_protocol_error() {
    let (mut c, now) = connected(ProtocolVersion::V5);
    c.handle_packet(subscribe(&[("a", QoS::AtMostOnce)], Some(0)), now);
    assert_eq!(
        closed_reason(&actions(&mut c)),
        Some(ReasonCode::PROTOCOL_ERROR)
    );
}

#[test]
fn unsupported_protocol_version_before_connect_gets_v3_connack_0x01_mqtt_3_1_2_2() {
    let (mut c, _) = new_conn();
    c.handle_decode_error(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
    assert!(
        matches!(&drain(&mut c)[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::V3_UNACCEPTABLE_PROTOCOL_VERSION)
    );
    assert!(c.is_closed());
}

mod hostile {
    //! Arbitrary bytes after a valid CONNECT, through the real decoder into the state machine:
    //! whatever arrives, nothing panics and the connection either carries on or closes.
    use super::*;
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn feed(version: ProtocolVersion, tail: &[u8]) {
        let (mut c, now) = new_conn();
        let mut buf = BytesMut::new();
        encode(
            &Packet::Connect(Box::new(connect_packet(version, "fuzz", false))),
            version,
            &mut buf,
        )
        .unwrap();
        buf.extend_from_slice(tail);
        let mut accepted = false;
        loop {
            match decode(&mut buf, c.version(), 1 << 20) {
                Ok(Some(p)) => c.handle_packet(p, now),
                Ok(None) => break,
                Err(e) => {
                    c.handle_decode_error(e.reason_code());
                    break;
                }
            }
            while let Some(a) = c.poll_action() {
                if let Action::Connect(r) = a
                    && !accepted
                {
                    accepted = true;
                    c.accept(
                        Accepted {
                            session: SessionState::new("fuzz".into(), r.session_expiry_interval),
                            session_present: false,
                            assigned_client_id: None,
                        },
                        now,
                    );
                }
            }
            if c.is_closed() {
                break;
            }
        }
        c.deliver(delivery("x", QoS::ExactlyOnce), now);
        c.handle_timeout(now + Duration::from_secs(3600));
        c.handle_connection_lost();
        while c.poll_transmit().is_some() {}
        let _ = c.take_session();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn arbitrary_bytes_after_connect_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            feed(ProtocolVersion::V5, &tail);
            feed(ProtocolVersion::V311, &tail);
        }

        #[test]
        fn plausible_packets_after_connect_never_panic(
            kinds in proptest::collection::vec((0u8..16, any::<u8>(), any::<u16>()), 0..40)
        ) {
            // Fixed headers of every type with small bodies: more of them get past the decoder.
            let mut tail = Vec::new();
            for (kind, flags, id) in kinds {
                let [hi, lo] = id.to_be_bytes();
                tail.extend_from_slice(&[(kind << 4) | (flags & 0x0f), 4, hi, lo, 0, 1]);
            }
            feed(ProtocolVersion::V5, &tail);
            feed(ProtocolVersion::V311, &tail);
        }
    }
}
