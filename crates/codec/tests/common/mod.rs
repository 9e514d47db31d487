//! Proptest strategies generating valid packets of every type for every protocol version.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use tern_codec::*;

pub const MAX: usize = 1 << 24;
pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V31,
    ProtocolVersion::V311,
    ProtocolVersion::V5,
];

pub fn enc(p: &Packet, v: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(p, v, &mut buf).unwrap();
    buf
}

pub fn dec(bytes: &[u8], v: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    decode(&mut buf, v, MAX)
}

pub fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V31),
        Just(ProtocolVersion::V311),
        Just(ProtocolVersion::V5)
    ]
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

/// Any string a UTF-8 Encoded String may hold: no U+0000 (surrogates cannot be in a `str`).
pub fn string() -> impl Strategy<Value = ByteStr> {
    "[^\u{0}]{0,12}".prop_map(ByteStr::from)
}

pub fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

pub fn level() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_é€😀 $-]{0,6}"
}

pub fn topic_name() -> impl Strategy<Value = ByteStr> {
    (level(), vec(level(), 0..4)).prop_filter_map("topic names are not empty", |(first, rest)| {
        let mut t = first;
        for l in rest {
            t.push('/');
            t.push_str(&l);
        }
        (!t.is_empty()).then(|| ByteStr::from(t))
    })
}

pub fn topic_filter() -> impl Strategy<Value = ByteStr> {
    (
        vec(prop_oneof![3 => level(), 1 => Just("+".to_string())], 1..5),
        any::<bool>(),
    )
        .prop_filter_map("topic filters are not empty", |(levels, hash)| {
            let mut f = levels.join("/");
            if hash {
                if f.is_empty() {
                    f.push('#');
                } else {
                    f.push_str("/#");
                }
            }
            (!f.is_empty() && !f.starts_with("$share/")).then(|| ByteStr::from(f))
        })
}

pub fn users() -> impl Strategy<Value = Vec<UserProperty>> {
    vec((string(), string()), 0..3)
}

fn nz16() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn nz32() -> impl Strategy<Value = u32> {
    1..=u32::MAX
}

fn sub_id() -> impl Strategy<Value = u32> {
    1..=MAX_VARIABLE_BYTE_INTEGER
}

pub fn connect_props() -> impl Strategy<Value = ConnectProperties> {
    (
        (
            option::of(any::<u32>()),
            option::of(nz16()),
            option::of(nz32()),
            option::of(any::<u16>()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
        ),
        users(),
        option::of((string(), option::of(bin()))),
    )
        .prop_map(|((sei, rm, mps, tam, rri, rpi), user_properties, auth)| {
            let (authentication_method, authentication_data) = match auth {
                Some((m, d)) => (Some(m), d),
                None => (None, None),
            };
            ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties,
                authentication_method,
                authentication_data,
            }
        })
}

pub fn will_props() -> impl Strategy<Value = WillProperties> {
    (
        option::of(any::<u32>()),
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(string()),
        option::of(topic_name()),
        option::of(bin()),
        users(),
    )
        .prop_map(|(wdi, pfi, mei, ct, rt, cd, up)| WillProperties {
            will_delay_interval: wdi,
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
        })
}

pub fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v.is_v5();
    (
        any::<bool>(),
        any::<u16>(),
        string(),
        option::of((topic_name(), bin(), qos(), any::<bool>(), will_props())),
        option::of(string()),
        option::of(bin()),
        connect_props(),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, props)| {
                // 3.x: a password needs a user name [MQTT-3.1.2-22].
                let password = if v5 || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    will: will.map(|(topic, payload, qos, retain, p)| LastWill {
                        topic,
                        payload,
                        qos,
                        retain,
                        properties: if v5 { p } else { WillProperties::default() },
                    }),
                    username,
                    password,
                    properties: if v5 {
                        props
                    } else {
                        ConnectProperties::default()
                    },
                }))
            },
        )
}

pub fn connack_props() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            option::of(any::<u32>()),
            option::of(nz16()),
            option::of(0u8..=1),
            option::of(any::<bool>()),
            option::of(nz32()),
            option::of(string()),
            option::of(any::<u16>()),
            option::of(string()),
        ),
        (
            users(),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<u16>()),
            option::of(string()),
            option::of(string()),
            option::of((string(), option::of(bin()))),
        ),
    )
        .prop_map(
            |((sei, rm, mq, ra, mps, aci, tam, rs), (up, wsa, sia, ssa, ska, ri, sr, auth))| {
                let (authentication_method, authentication_data) = match auth {
                    Some((m, d)) => (Some(m), d),
                    None => (None, None),
                };
                ConnAckProperties {
                    session_expiry_interval: sei,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user_properties: up,
                    wildcard_subscription_available: wsa,
                    subscription_identifiers_available: sia,
                    shared_subscription_available: ssa,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method,
                    authentication_data,
                }
            },
        )
}

pub const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
pub const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
pub const PUBREL_CODES: &[u8] = &[0x00, 0x92];
pub const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
pub const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
pub const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
pub const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

pub fn code(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(codes).prop_map(ReasonCode)
}

pub fn connack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes: &'static [u8] = if v.is_v5() {
        CONNACK_CODES
    } else {
        &[0, 1, 2, 3, 4, 5]
    };
    (any::<bool>(), code(codes), connack_props()).prop_map(move |(sp, reason_code, props)| {
        Packet::ConnAck(ConnAck {
            // [MQTT-3.2.2-4]; 3.1 has no session present flag.
            session_present: sp && reason_code.0 == 0 && v != ProtocolVersion::V31,
            reason_code,
            properties: if v.is_v5() {
                props.into()
            } else {
                ConnAckProperties::default().into()
            },
        })
    })
}

pub fn publish_props() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(nz16()),
        option::of(topic_name()),
        option::of(bin()),
        users(),
        vec(sub_id(), 0..3),
        option::of(string()),
    )
        .prop_map(|(pfi, mei, ta, rt, cd, up, si, ct)| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
            subscription_identifiers: si,
            content_type: ct,
            ..Default::default()
        })
}

pub fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        nz16(),
        prop_oneof![3 => publish_props(), 1 => Just(PublishProperties::default())],
        vec(any::<u8>(), 0..100),
    )
        .prop_map(
            move |(dup, qos, retain, topic, empty_topic, pid, props, payload)| {
                let v5 = v.is_v5();
                let properties = if v5 {
                    props
                } else {
                    PublishProperties::default()
                };
                // v5: an empty topic name goes with a Topic Alias.
                let topic = if v5 && empty_topic && properties.topic_alias.is_some() {
                    ByteStr::new()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && qos != QoS::AtMostOnce, // [MQTT-3.3.1-2]
                    qos,
                    retain,
                    topic,
                    packet_id: if qos == QoS::AtMostOnce { 0 } else { pid },
                    properties: properties.into(),
                    payload: Bytes::from(payload),
                })
            },
        )
}

pub fn ack_props(v: ProtocolVersion) -> impl Strategy<Value = AckProperties> {
    (option::of(string()), users()).prop_map(move |(reason_string, user_properties)| {
        if v.is_v5() {
            AckProperties {
                reason_string,
                user_properties,
            }
        } else {
            AckProperties::default()
        }
    })
}

fn ack_code(v: ProtocolVersion, codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    code(codes).prop_map(move |c| if v.is_v5() { c } else { ReasonCode::SUCCESS })
}

pub fn acks(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    prop_oneof![
        (nz16(), ack_code(v, PUBACK_CODES), ack_props(v)).prop_map(
            |(packet_id, reason_code, properties)| {
                Packet::PubAck(PubAck {
                    packet_id,
                    reason_code,
                    properties,
                })
            }
        ),
        (nz16(), ack_code(v, PUBACK_CODES), ack_props(v)).prop_map(
            |(packet_id, reason_code, properties)| {
                Packet::PubRec(PubRec {
                    packet_id,
                    reason_code,
                    properties,
                })
            }
        ),
        (nz16(), ack_code(v, PUBREL_CODES), ack_props(v)).prop_map(
            |(packet_id, reason_code, properties)| {
                Packet::PubRel(PubRel {
                    packet_id,
                    reason_code,
                    properties,
                })
            }
        ),
        (nz16(), ack_code(v, PUBREL_CODES), ack_props(v)).prop_map(
            |(packet_id, reason_code, properties)| {
                Packet::PubComp(PubComp {
                    packet_id,
                    reason_code,
                    properties,
                })
            }
        ),
    ]
}

pub fn sub_options(v: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(move |(qos, nl, rap, rh)| {
        if v.is_v5() {
            SubscriptionOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling: match rh {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendIfNew,
                    _ => RetainHandling::DoNotSend,
                },
            }
        } else {
            SubscriptionOptions {
                qos,
                ..Default::default()
            }
        }
    })
}

pub fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        nz16(),
        vec((topic_filter(), sub_options(v)), 1..4),
        option::of(sub_id()),
        users(),
    )
        .prop_map(move |(packet_id, filters, sid, up)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties: if v.is_v5() {
                    SubscribeProperties {
                        subscription_identifier: sid,
                        user_properties: up,
                    }
                } else {
                    SubscribeProperties::default()
                },
            })
        })
}

pub fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes: &'static [u8] = if v.is_v5() {
        SUBACK_CODES
    } else {
        &[0, 1, 2, 0x80]
    };
    (nz16(), vec(code(codes), 1..4), ack_props(v)).prop_map(
        |(packet_id, reason_codes, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                reason_codes,
                properties,
            })
        },
    )
}

pub fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (nz16(), vec(topic_filter(), 1..4), users()).prop_map(move |(packet_id, filters, up)| {
        Packet::Unsubscribe(Unsubscribe {
            packet_id,
            filters,
            properties: UnsubscribeProperties {
                user_properties: if v.is_v5() { up } else { Vec::new() },
            },
        })
    })
}

pub fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (nz16(), vec(code(UNSUBACK_CODES), 1..4), ack_props(v)).prop_map(
        move |(packet_id, reason_codes, properties)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reason_codes: if v.is_v5() { reason_codes } else { Vec::new() },
                properties,
            })
        },
    )
}

pub fn disconnect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        code(DISCONNECT_CODES),
        option::of(any::<u32>()),
        option::of(string()),
        users(),
        option::of(string()),
    )
        .prop_map(move |(reason_code, sei, rs, up, sr)| {
            if !v.is_v5() {
                return Packet::Disconnect(Disconnect::default());
            }
            Packet::Disconnect(Disconnect {
                reason_code,
                properties: DisconnectProperties {
                    session_expiry_interval: sei,
                    reason_string: rs,
                    user_properties: up,
                    server_reference: sr,
                }
                .into(),
            })
        })
}

pub fn auth() -> impl Strategy<Value = Packet> {
    (
        code(AUTH_CODES),
        option::of((string(), option::of(bin()))),
        option::of(string()),
        users(),
    )
        .prop_map(|(reason_code, auth, rs, up)| {
            let (authentication_method, authentication_data) = match auth {
                Some((m, d)) => (Some(m), d),
                None => (None, None),
            };
            Packet::Auth(Auth {
                reason_code,
                properties: AuthProperties {
                    authentication_method,
                    authentication_data,
                    reason_string: rs,
                    user_properties: up,
                }
                .into(),
            })
        })
}

/// Any valid packet for `v`.
pub fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(v),
        connack(v),
        publish(v),
        acks(v),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(v),
    ];
    if v.is_v5() {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

/// A version and a valid packet for it.
pub fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| packet(v).prop_map(move |p| (v, p)))
}
