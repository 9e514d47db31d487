//! Byte-exact vectors for every packet type in every version, written from the layouts of the
//! specifications (3.1 / 3.1.1 chapter 3, 5.0 chapter 3). Each is encoded and compared byte for
//! byte, and decoded and compared field for field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use tern_codec::*;

use ProtocolVersion::{V5, V31, V311};

#[track_caller]
fn vector(v: ProtocolVersion, packet: Packet, bytes: &[u8]) {
    let mut buf = BytesMut::new();
    encode(&packet, v, &mut buf).unwrap();
    assert_eq!(&buf[..], bytes, "encoding of {packet:?}");
    assert_eq!(encoded_len(&packet, v).unwrap(), bytes.len());
    let mut input = BytesMut::from(bytes);
    assert_eq!(decode(&mut input, v, usize::MAX).unwrap(), Some(packet));
    assert!(input.is_empty());
}

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

fn bs(s: &'static str) -> ByteStr {
    ByteStr::from_static(s)
}

#[test]
fn connect_v31() {
    let p = Packet::Connect(Box::new(Connect {
        protocol: V31,
        clean_start: true,
        keep_alive: 10,
        client_id: bs("c"),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }));
    vector(V31, p, b"\x10\x0f\x00\x06MQIsdp\x03\x02\x00\x0a\x00\x01c");
}

#[test]
fn connect_v311_with_will_and_credentials() {
    let p = Packet::Connect(Box::new(Connect {
        protocol: V311,
        clean_start: false,
        keep_alive: 60,
        client_id: bs("id"),
        will: Some(LastWill {
            topic: bs("w/t"),
            payload: b(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties::default(),
        }),
        username: Some(bs("u")),
        password: Some(b(b"pw")),
        properties: ConnectProperties::default(),
    }));
    // flags: user 0x80 | password 0x40 | will retain 0x20 | will QoS 1 0x08 | will 0x04 = 0xEC
    vector(
        V311,
        p,
        b"\x10\x20\x00\x04MQTT\x04\xec\x00\x3c\x00\x02id\x00\x03w/t\x00\x04gone\x00\x01u\x00\x02pw",
    );
}

#[test]
fn connect_v5_with_properties() {
    let p = Packet::Connect(Box::new(Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 30,
        client_id: bs("c"),
        will: Some(LastWill {
            topic: bs("w"),
            payload: b(b"x"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(5),
                ..Default::default()
            },
        }),
        username: None,
        password: Some(b(b"p")),
        properties: ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(20),
            user_properties: vec![(bs("k"), bs("v"))],
            ..Default::default()
        },
    }));
    vector(
        V5,
        p,
        b"\x10\x2c\x00\x04MQTT\x05\x46\x00\x1e\
          \x0f\x11\x00\x00\x0e\x10\x21\x00\x14\x26\x00\x01k\x00\x01v\
          \x00\x01c\
          \x05\x18\x00\x00\x00\x05\x00\x01w\x00\x01x\
          \x00\x01p",
    );
}

#[test]
fn connack_v311() {
    let p = Packet::ConnAck(ConnAck {
        session_present: true,
        reason_code: ReasonCode::V3_ACCEPTED,
        properties: ConnAckProperties::default().into(),
    });
    vector(V311, p, b"\x20\x02\x01\x00");
    let refused = Packet::ConnAck(ConnAck {
        reason_code: ReasonCode::V3_NOT_AUTHORIZED,
        ..Default::default()
    });
    vector(V31, refused, b"\x20\x02\x00\x05");
}

#[test]
fn connack_v5_code_is_mapped_for_v311() {
    let p = Packet::ConnAck(ConnAck {
        reason_code: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        ..Default::default()
    });
    let mut buf = BytesMut::new();
    encode(&p, V311, &mut buf).unwrap();
    assert_eq!(&buf[..], b"\x20\x02\x00\x01");
}

#[test]
fn connack_v5_with_properties() {
    let p = Packet::ConnAck(ConnAck {
        session_present: false,
        reason_code: ReasonCode::SUCCESS,
        properties: ConnAckProperties {
            maximum_qos: Some(1),
            assigned_client_identifier: Some(bs("auto-1")),
            topic_alias_maximum: Some(10),
            ..Default::default()
        }
        .into(),
    });
    vector(
        V5,
        p,
        b"\x20\x11\x00\x00\x0e\x24\x01\x12\x00\x06auto-1\x22\x00\x0a",
    );
}

#[test]
fn publish_v311_qos0_and_qos2() {
    vector(
        V311,
        Packet::Publish(Publish {
            topic: bs("a/b"),
            payload: b(b"hi"),
            ..Default::default()
        }),
        b"\x30\x07\x00\x03a/bhi",
    );
    vector(
        V311,
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: bs("t"),
            packet_id: 0x1234,
            payload: Bytes::new(),
            properties: PublishProperties::default().into(),
        }),
        b"\x3d\x05\x00\x01t\x12\x34",
    );
}

#[test]
fn publish_v5_with_properties() {
    vector(
        V5,
        Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: bs("t"),
            packet_id: 1,
            payload: b(b"p"),
            properties: PublishProperties {
                payload_format_indicator: Some(true),
                topic_alias: Some(2),
                subscription_identifiers: vec![1, 300],
                ..Default::default()
            }
            .into(),
            ..Default::default()
        }),
        b"\x32\x11\x00\x01t\x00\x01\x0a\x01\x01\x23\x00\x02\x0b\x01\x0b\xac\x02p",
    );
}

#[test]
fn acks_v311() {
    vector(V311, Packet::PubAck(PubAck::new(7)), b"\x40\x02\x00\x07");
    vector(V311, Packet::PubRec(PubRec::new(7)), b"\x50\x02\x00\x07");
    vector(V311, Packet::PubRel(PubRel::new(7)), b"\x62\x02\x00\x07");
    vector(V311, Packet::PubComp(PubComp::new(7)), b"\x70\x02\x00\x07");
}

#[test]
fn acks_v5_short_reason_only_and_with_properties() {
    // Success without properties: reason code left out (section 3.4.2.1).
    vector(V5, Packet::PubAck(PubAck::new(1)), b"\x40\x02\x00\x01");
    vector(
        V5,
        Packet::PubRec(PubRec {
            packet_id: 1,
            reason_code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
            properties: AckProperties::default(),
        }),
        b"\x50\x03\x00\x01\x10",
    );
    vector(
        V5,
        Packet::PubComp(PubComp {
            packet_id: 2,
            reason_code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            properties: AckProperties {
                reason_string: Some(bs("gone")),
                user_properties: vec![],
            },
        }),
        b"\x70\x0b\x00\x02\x92\x07\x1f\x00\x04gone",
    );
    // A reason code of 0 with an empty property length also decodes (section 3.4.2.2.1).
    let mut input = BytesMut::from(&b"\x62\x04\x00\x03\x00\x00"[..]);
    assert_eq!(
        decode(&mut input, V5, usize::MAX).unwrap(),
        Some(Packet::PubRel(PubRel::new(3)))
    );
}

#[test]
fn subscribe_v311_and_v5() {
    vector(
        V311,
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters: vec![
                (
                    bs("a/+"),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..Default::default()
                    },
                ),
                (bs("#"), SubscriptionOptions::default()),
            ],
            properties: SubscribeProperties::default(),
        }),
        b"\x82\x0c\x00\x0a\x00\x03a/+\x01\x00\x01#\x00",
    );
    vector(
        V5,
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters: vec![(
                bs("a"),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            )],
            properties: SubscribeProperties {
                subscription_identifier: Some(128),
                user_properties: vec![],
            },
        }),
        b"\x82\x0a\x00\x0a\x03\x0b\x80\x01\x00\x01a\x2e",
    );
}

#[test]
fn suback_v311_and_v5() {
    vector(
        V311,
        Packet::SubAck(SubAck {
            packet_id: 10,
            reason_codes: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::V3_SUBACK_FAILURE],
            properties: AckProperties::default(),
        }),
        b"\x90\x04\x00\x0a\x01\x80",
    );
    vector(
        V5,
        Packet::SubAck(SubAck {
            packet_id: 10,
            reason_codes: vec![ReasonCode::GRANTED_QOS_2, ReasonCode::NOT_AUTHORIZED],
            properties: AckProperties::default(),
        }),
        b"\x90\x05\x00\x0a\x00\x02\x87",
    );
}

#[test]
fn suback_v5_failure_codes_collapse_to_0x80_for_v311() {
    let p = Packet::SubAck(SubAck {
        packet_id: 1,
        reason_codes: vec![ReasonCode::NOT_AUTHORIZED],
        properties: AckProperties::default(),
    });
    let mut buf = BytesMut::new();
    encode(&p, V311, &mut buf).unwrap();
    assert_eq!(&buf[..], b"\x90\x03\x00\x01\x80");
}

#[test]
fn unsubscribe_and_unsuback() {
    let unsub = |props| {
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 3,
            filters: vec![bs("a/#"), bs("b")],
            properties: props,
        })
    };
    vector(
        V311,
        unsub(UnsubscribeProperties::default()),
        b"\xa2\x0a\x00\x03\x00\x03a/#\x00\x01b",
    );
    vector(
        V5,
        unsub(UnsubscribeProperties::default()),
        b"\xa2\x0b\x00\x03\x00\x00\x03a/#\x00\x01b",
    );
    vector(
        V311,
        Packet::UnsubAck(UnsubAck {
            packet_id: 3,
            ..Default::default()
        }),
        b"\xb0\x02\x00\x03",
    );
    vector(
        V5,
        Packet::UnsubAck(UnsubAck {
            packet_id: 3,
            reason_codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
            properties: AckProperties::default(),
        }),
        b"\xb0\x05\x00\x03\x00\x00\x11",
    );
}

#[test]
fn ping() {
    for v in [V31, V311, V5] {
        vector(v, Packet::PingReq, b"\xc0\x00");
        vector(v, Packet::PingResp, b"\xd0\x00");
    }
}

#[test]
fn disconnect() {
    vector(V311, Packet::Disconnect(Disconnect::default()), b"\xe0\x00");
    vector(V5, Packet::Disconnect(Disconnect::default()), b"\xe0\x00");
    // A reason code is followed by a property length, even 0 (section 3.14.2.2.1).
    vector(
        V5,
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
            properties: DisconnectProperties::default().into(),
        }),
        b"\xe0\x02\x04\x00",
    );
    vector(
        V5,
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::SESSION_TAKEN_OVER,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                ..Default::default()
            }
            .into(),
        }),
        b"\xe0\x07\x8e\x05\x11\x00\x00\x00\x00",
    );
    // Reason code without property length: remaining length 1 (section 3.14.2.2.1).
    let mut input = BytesMut::from(&b"\xe0\x01\x8b"[..]);
    assert_eq!(
        decode(&mut input, V5, usize::MAX).unwrap(),
        Some(Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::SERVER_SHUTTING_DOWN,
            properties: DisconnectProperties::default().into(),
        }))
    );
}

#[test]
fn auth_v5() {
    vector(V5, Packet::Auth(Auth::default()), b"\xf0\x00");
    vector(
        V5,
        Packet::Auth(Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: AuthProperties {
                authentication_method: Some(bs("SCRAM")),
                authentication_data: Some(b(b"\x01\x02")),
                ..Default::default()
            }
            .into(),
        }),
        b"\xf0\x0f\x18\x0d\x15\x00\x05SCRAM\x16\x00\x02\x01\x02",
    );
}

// --- Encode-side refusals --------------------------------------------------------------------

#[test]
fn encode_refuses_what_cannot_be_on_the_wire() {
    let mut buf = BytesMut::new();
    let zero_id = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: bs("t"),
        ..Default::default()
    });
    assert_eq!(
        encode(&zero_id, V311, &mut buf),
        Err(EncodeError::ZeroPacketId { packet: "PUBLISH" })
    );
    assert!(matches!(
        encode(&Packet::Auth(Auth::default()), V311, &mut buf),
        Err(EncodeError::NotInVersion { packet: "AUTH", .. })
    ));
    let long = Packet::Publish(Publish {
        topic: ByteStr::from("x".repeat(65_536)),
        ..Default::default()
    });
    assert!(matches!(
        encode(&long, V5, &mut buf),
        Err(EncodeError::StringTooLong { len: 65_536, .. })
    ));
    let huge = Packet::Publish(Publish {
        topic: bs("t"),
        payload: Bytes::from(vec![0u8; 268_435_456]),
        ..Default::default()
    });
    assert!(matches!(
        encoded_len(&huge, V311),
        Err(EncodeError::PacketTooLarge { .. })
    ));
    let empty_sub = Packet::Subscribe(Subscribe {
        packet_id: 1,
        ..Default::default()
    });
    assert_eq!(
        encode(&empty_sub, V5, &mut buf),
        Err(EncodeError::NoTopicFilters {
            packet: "SUBSCRIBE"
        })
    );
    let pw_only = Packet::Connect(Box::new(Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 0,
        client_id: bs("c"),
        will: None,
        username: None,
        password: Some(b(b"x")),
        properties: ConnectProperties::default(),
    }));
    assert_eq!(
        encode(&pw_only, V311, &mut buf),
        Err(EncodeError::PasswordWithoutUsername)
    );
    let alias0 = Packet::Publish(Publish {
        topic: bs("t"),
        properties: PublishProperties {
            topic_alias: Some(0),
            ..Default::default()
        }
        .into(),
        ..Default::default()
    });
    assert!(matches!(
        encode(&alias0, V5, &mut buf),
        Err(EncodeError::InvalidPropertyValue {
            property: "Topic Alias",
            ..
        })
    ));
    // v5-only fields are ignored for 3.1.1.
    assert!(encode(&alias0, V311, &mut buf).is_ok());
    assert!(!buf.is_empty());
}
