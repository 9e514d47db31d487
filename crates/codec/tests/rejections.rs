//! One test per well-formedness rule: the decoder refuses the packet with the right error and the
//! right v5 reason code. Test names carry the specification's statement id where there is one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use tern_codec::*;

use ProtocolVersion::{V5, V31, V311};

/// A packet: first byte, remaining length (minimal VBI), body.
fn frame(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![byte1];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn s(x: &str) -> Vec<u8> {
    let mut v = (x.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(x.as_bytes());
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn decode_bytes(bytes: &[u8], v: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    decode(&mut BytesMut::from(bytes), v, 1 << 20)
}

#[track_caller]
fn rejects(bytes: &[u8], v: ProtocolVersion, expected: DecodeError, code: ReasonCode) {
    let err = decode_bytes(bytes, v).expect_err("must be rejected");
    assert_eq!(err, expected);
    assert_eq!(err.reason_code(), code, "{err}");
}

#[track_caller]
fn accepts(bytes: &[u8], v: ProtocolVersion) -> Packet {
    decode_bytes(bytes, v).unwrap().expect("complete")
}

const MALFORMED: ReasonCode = ReasonCode::MALFORMED_PACKET;
const PROTOCOL: ReasonCode = ReasonCode::PROTOCOL_ERROR;

/// A v5 PUBLISH QoS 0 to "t" with the given property bytes.
fn publish_v5_with_props(props: &[u8]) -> Vec<u8> {
    let mut body = s("t");
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    frame(0x30, &body)
}

/// A v5 CONNECT with the given property bytes.
fn connect_v5_with_props(props: &[u8]) -> Vec<u8> {
    let mut body = cat(&[&s("MQTT"), &[5, 0x02, 0, 60]]);
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.extend_from_slice(&s("id"));
    frame(0x10, &body)
}

/// A v5 CONNACK (success) with the given property bytes.
fn connack_v5_with_props(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0, props.len() as u8];
    body.extend_from_slice(props);
    frame(0x20, &body)
}

// --- Fixed header ------------------------------------------------------------------------------

#[test]
fn reserved_packet_type_0_is_malformed() {
    rejects(
        &[0x00, 0x00],
        V311,
        DecodeError::ReservedPacketType { packet_type: 0 },
        MALFORMED,
    );
}

#[test]
fn auth_does_not_exist_before_v5() {
    for v in [V31, V311] {
        rejects(
            &[0xF0, 0x00],
            v,
            DecodeError::ReservedPacketType { packet_type: 15 },
            MALFORMED,
        );
    }
    assert_eq!(accepts(&[0xF0, 0x00], V5), Packet::Auth(Auth::default()));
}

#[test]
fn reserved_flag_bits_mqtt_2_2_2_1() {
    let cases: [(u8, &[u8], &str); 10] = [
        (0x11, &[], "CONNECT"),
        (0x21, &[0, 0], "CONNACK"),
        (0x42, &[0, 1], "PUBACK"),
        (0x58, &[0, 1], "PUBREC"),
        (0x60, &[0, 1], "PUBREL"),
        (0x71, &[0, 1], "PUBCOMP"),
        (0x80, &[0, 1], "SUBSCRIBE"),
        (0xA3, &[0, 1], "UNSUBSCRIBE"),
        (0xC1, &[], "PINGREQ"),
        (0xE2, &[], "DISCONNECT"),
    ];
    for (byte1, body, packet) in cases {
        for v in [V311, V5] {
            rejects(
                &frame(byte1, body),
                v,
                DecodeError::InvalidFixedHeaderFlags {
                    packet,
                    flags: byte1 & 0x0F,
                },
                MALFORMED,
            );
        }
    }
}

#[test]
fn mqtt_3_1_subscribe_with_qos1_and_dup_header_accepted() {
    // 3.1 sent SUBSCRIBE with QoS 1 in the header, and DUP on retries.
    let body = cat(&[&[0, 7], &s("a/b"), &[1]]);
    assert!(matches!(
        accepts(&frame(0x8A, &body), V31),
        Packet::Subscribe(_)
    ));
}

#[test]
fn variable_byte_integer_longer_than_4_bytes_mqtt_1_5_5_1() {
    rejects(
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        V311,
        DecodeError::MalformedVariableByteInteger {
            field: "remaining length",
        },
        MALFORMED,
    );
}

#[test]
fn variable_byte_integer_not_minimal_mqtt_1_5_5_1() {
    rejects(
        &[0xC0, 0x80, 0x00],
        V311,
        DecodeError::MalformedVariableByteInteger {
            field: "remaining length",
        },
        MALFORMED,
    );
}

#[test]
fn largest_remaining_length_is_accepted_from_the_header() {
    // 268,435,455 in four bytes: incomplete, not an error, when the limit allows it.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    assert_eq!(decode(&mut buf, V311, usize::MAX), Ok(None));
}

#[test]
fn packet_too_large_is_refused_from_the_fixed_header() {
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    let err = decode(&mut buf, V5, 1024).unwrap_err();
    assert_eq!(
        err,
        DecodeError::PacketTooLarge {
            size: 5 + 268_435_455,
            max: 1024
        }
    );
    assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
}

// --- Remaining length vs content ---------------------------------------------------------------

#[test]
fn trailing_bytes_are_malformed() {
    rejects(
        &frame(0x40, &[0, 1, 0]),
        V311,
        DecodeError::TrailingBytes {
            packet: "PUBACK",
            count: 1,
        },
        MALFORMED,
    );
    rejects(
        &frame(0xC0, &[0]),
        V311,
        DecodeError::TrailingBytes {
            packet: "PINGREQ",
            count: 1,
        },
        MALFORMED,
    );
    rejects(
        &frame(0xE0, &[0]),
        V311,
        DecodeError::TrailingBytes {
            packet: "DISCONNECT",
            count: 1,
        },
        MALFORMED,
    );
    rejects(
        &frame(0xB0, &[0, 1, 0]),
        V311,
        DecodeError::TrailingBytes {
            packet: "UNSUBACK",
            count: 1,
        },
        MALFORMED,
    );
}

#[test]
fn string_longer_than_remaining_length_is_malformed() {
    rejects(
        &frame(0x30, &[0, 9, b'a']),
        V311,
        DecodeError::UnexpectedEnd {
            field: "topic name",
        },
        MALFORMED,
    );
}

#[test]
fn property_length_beyond_packet_is_malformed() {
    rejects(
        &frame(0x30, &cat(&[&s("t"), &[9]])),
        V5,
        DecodeError::UnexpectedEnd {
            field: "properties",
        },
        MALFORMED,
    );
}

#[test]
fn missing_packet_identifier_is_malformed() {
    rejects(
        &frame(0x40, &[0]),
        V311,
        DecodeError::UnexpectedEnd {
            field: "packet identifier",
        },
        MALFORMED,
    );
}

// --- UTF-8 strings -----------------------------------------------------------------------------

#[test]
fn ill_formed_utf8_mqtt_1_5_4_1() {
    // Overlong encoding of '/'.
    rejects(
        &frame(0x30, &[0, 2, 0xC0, 0xAF]),
        V311,
        DecodeError::InvalidUtf8 {
            field: "topic name",
        },
        MALFORMED,
    );
}

#[test]
fn utf16_surrogate_code_point_mqtt_1_5_4_1() {
    // U+D800 encoded as UTF-8 (CESU-style) is not well-formed UTF-8.
    rejects(
        &frame(0x30, &[0, 3, 0xED, 0xA0, 0x80]),
        V5,
        DecodeError::InvalidUtf8 {
            field: "topic name",
        },
        MALFORMED,
    );
}

#[test]
fn null_character_mqtt_1_5_4_2() {
    rejects(
        &frame(0x30, &[0, 3, b'a', 0, b'b']),
        V311,
        DecodeError::NullCharacter {
            field: "topic name",
        },
        MALFORMED,
    );
    let connect = frame(0x10, &cat(&[&s("MQTT"), &[4, 2, 0, 60], &s("a\0")]));
    rejects(
        &connect,
        V311,
        DecodeError::NullCharacter {
            field: "client identifier",
        },
        MALFORMED,
    );
}

#[test]
fn modified_utf8_null_mqtt_1_5_4_2() {
    // 0xC0 0x80 (Java's "modified UTF-8" NUL) is ill-formed.
    rejects(
        &frame(0x30, &[0, 2, 0xC0, 0x80]),
        V311,
        DecodeError::InvalidUtf8 {
            field: "topic name",
        },
        MALFORMED,
    );
}

#[test]
fn bom_is_kept_not_stripped_mqtt_1_5_4_3() {
    let p = accepts(&frame(0x30, &cat(&[&s("\u{FEFF}a")])), V311);
    let Packet::Publish(p) = p else { panic!() };
    assert_eq!(p.topic, "\u{FEFF}a");
}

// --- Topics ------------------------------------------------------------------------------------

#[test]
fn wildcard_in_topic_name_mqtt_3_3_2_2() {
    for t in ["a/+", "#", "a/b#"] {
        rejects(
            &frame(0x30, &s(t)),
            V311,
            DecodeError::InvalidTopicName(TopicError::WildcardInTopicName),
            ReasonCode::TOPIC_NAME_INVALID,
        );
    }
}

#[test]
fn empty_topic_name_mqtt_4_7_3_1() {
    rejects(
        &frame(0x30, &s("")),
        V311,
        DecodeError::InvalidTopicName(TopicError::Empty),
        ReasonCode::TOPIC_NAME_INVALID,
    );
}

#[test]
fn v5_empty_topic_without_topic_alias_is_protocol_error() {
    rejects(
        &frame(0x30, &cat(&[&s(""), &[0]])),
        V5,
        DecodeError::EmptyTopicWithoutAlias,
        PROTOCOL,
    );
    // With a Topic Alias it is fine.
    let p = accepts(&frame(0x30, &cat(&[&s(""), &[3, 0x23, 0, 7]])), V5);
    let Packet::Publish(p) = p else { panic!() };
    assert_eq!(p.properties.topic_alias, Some(7));
}

#[test]
fn will_topic_with_wildcard_is_topic_name_invalid() {
    let body = cat(&[&s("MQTT"), &[4, 0x06, 0, 60], &s("id"), &s("w/#"), &s("x")]);
    rejects(
        &frame(0x10, &body),
        V311,
        DecodeError::InvalidTopicName(TopicError::WildcardInTopicName),
        ReasonCode::TOPIC_NAME_INVALID,
    );
}

#[test]
fn multi_level_wildcard_not_last_mqtt_4_7_1_2() {
    let body = cat(&[&[0, 1], &s("a/#/b"), &[0]]);
    rejects(
        &frame(0x82, &body),
        V311,
        DecodeError::InvalidTopicFilter(TopicError::MisplacedMultiLevelWildcard),
        ReasonCode::TOPIC_FILTER_INVALID,
    );
}

#[test]
fn single_level_wildcard_not_whole_level_mqtt_4_7_1_3() {
    let body = cat(&[&[0, 1], &s("a+")]);
    rejects(
        &frame(0xA2, &body),
        V311,
        DecodeError::InvalidTopicFilter(TopicError::MisplacedSingleLevelWildcard),
        ReasonCode::TOPIC_FILTER_INVALID,
    );
}

#[test]
fn empty_topic_filter_mqtt_4_7_3_1() {
    let body = cat(&[&[0, 1], &s(""), &[0]]);
    rejects(
        &frame(0x82, &body),
        V311,
        DecodeError::InvalidTopicFilter(TopicError::Empty),
        ReasonCode::TOPIC_FILTER_INVALID,
    );
}

#[test]
fn malformed_shared_subscription_section_4_8_2() {
    for f in ["$share/a", "$share//x", "$share/g/"] {
        let body = cat(&[&[0, 1, 0], &s(f), &[0]]);
        rejects(
            &frame(0x82, &body),
            V5,
            DecodeError::InvalidTopicFilter(TopicError::InvalidSharedSubscription),
            ReasonCode::TOPIC_FILTER_INVALID,
        );
    }
}

#[test]
fn no_local_on_shared_subscription_mqtt_3_8_3_4() {
    let body = cat(&[&[0, 1, 0], &s("$share/g/a"), &[0x04]]);
    rejects(
        &frame(0x82, &body),
        V5,
        DecodeError::NoLocalOnSharedSubscription,
        PROTOCOL,
    );
}

// --- QoS and packet identifiers ----------------------------------------------------------------

#[test]
fn publish_qos_3_mqtt_3_3_1_4() {
    rejects(
        &frame(0x36, &cat(&[&s("t"), &[0, 1]])),
        V311,
        DecodeError::InvalidQoS {
            field: "PUBLISH QoS",
        },
        MALFORMED,
    );
}

#[test]
fn dup_on_qos_0_mqtt_3_3_1_2() {
    rejects(
        &frame(0x38, &s("t")),
        V311,
        DecodeError::DupOnQoS0,
        MALFORMED,
    );
}

#[test]
fn will_qos_3_mqtt_3_1_2_12() {
    let body = cat(&[&s("MQTT"), &[4, 0x1C, 0, 60], &s("id"), &s("w"), &s("x")]);
    rejects(
        &frame(0x10, &body),
        V311,
        DecodeError::InvalidQoS { field: "Will QoS" },
        MALFORMED,
    );
}

#[test]
fn subscription_qos_3_is_malformed() {
    let body = cat(&[&[0, 1], &s("a"), &[3]]);
    rejects(
        &frame(0x82, &body),
        V311,
        DecodeError::InvalidQoS {
            field: "subscription options",
        },
        MALFORMED,
    );
}

#[test]
fn packet_identifier_zero_mqtt_2_2_1_3() {
    let cases: [(u8, Vec<u8>, &str); 8] = [
        (0x32, cat(&[&s("t"), &[0, 0]]), "PUBLISH"),
        (0x40, vec![0, 0], "PUBACK"),
        (0x50, vec![0, 0], "PUBREC"),
        (0x62, vec![0, 0], "PUBREL"),
        (0x70, vec![0, 0], "PUBCOMP"),
        (0x82, cat(&[&[0, 0], &s("a"), &[0]]), "SUBSCRIBE"),
        (0x90, vec![0, 0, 0], "SUBACK"),
        (0xA2, cat(&[&[0, 0], &s("a")]), "UNSUBSCRIBE"),
    ];
    for (byte1, body, packet) in cases {
        rejects(
            &frame(byte1, &body),
            V311,
            DecodeError::ZeroPacketId { packet },
            PROTOCOL,
        );
    }
}

// --- CONNECT -----------------------------------------------------------------------------------

#[test]
fn unsupported_protocol_level_mqtt_3_1_2_2() {
    for (name, level) in [("MQTT", 6), ("MQTT", 3), ("MQIsdp", 4), ("MQTT", 0x84)] {
        let body = cat(&[&s(name), &[level, 2, 0, 60], &s("id")]);
        rejects(
            &frame(0x10, &body),
            V311,
            DecodeError::UnsupportedProtocolVersion { level },
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        );
    }
}

#[test]
fn unknown_protocol_name_mqtt_3_1_2_1() {
    let body = cat(&[&s("HTTP"), &[4, 2, 0, 60], &s("id")]);
    rejects(
        &frame(0x10, &body),
        V5,
        DecodeError::UnsupportedProtocolVersion { level: 4 },
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    );
}

#[test]
fn connect_is_decoded_by_its_own_level_whatever_the_session_version() {
    let v31 = frame(0x10, &cat(&[&s("MQIsdp"), &[3, 2, 0, 60], &s("id")]));
    let v5 = frame(0x10, &cat(&[&s("MQTT"), &[5, 2, 0, 60, 0], &s("id")]));
    for session in [V31, V311, V5] {
        let Packet::Connect(c) = accepts(&v31, session) else {
            panic!()
        };
        assert_eq!(c.protocol, V31);
        let Packet::Connect(c) = accepts(&v5, session) else {
            panic!()
        };
        assert_eq!(c.protocol, V5);
    }
}

#[test]
fn connect_reserved_flag_mqtt_3_1_2_3() {
    let body = cat(&[&s("MQTT"), &[4, 0x03, 0, 60], &s("id")]);
    rejects(
        &frame(0x10, &body),
        V311,
        DecodeError::ConnectReservedFlag,
        MALFORMED,
    );
}

#[test]
fn will_qos_without_will_flag_mqtt_3_1_2_13() {
    let body = cat(&[&s("MQTT"), &[4, 0x0A, 0, 60], &s("id")]);
    rejects(
        &frame(0x10, &body),
        V311,
        DecodeError::WillFlagsWithoutWill,
        MALFORMED,
    );
}

#[test]
fn will_retain_without_will_flag_mqtt_3_1_2_15() {
    let body = cat(&[&s("MQTT"), &[4, 0x22, 0, 60], &s("id")]);
    rejects(
        &frame(0x10, &body),
        V311,
        DecodeError::WillFlagsWithoutWill,
        MALFORMED,
    );
}

#[test]
fn password_without_user_name_mqtt_3_1_2_22() {
    let body = cat(&[&s("MQTT"), &[4, 0x42, 0, 60], &s("id"), &s("pw")]);
    rejects(
        &frame(0x10, &body),
        V311,
        DecodeError::PasswordWithoutUsername,
        MALFORMED,
    );
    // 5.0 allows it (section 3.1.2.9).
    let body = cat(&[&s("MQTT"), &[5, 0x42, 0, 60, 0], &s("id"), &s("pw")]);
    let Packet::Connect(c) = accepts(&frame(0x10, &body), V5) else {
        panic!()
    };
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
    assert_eq!(c.username, None);
}

#[test]
fn mqtt_3_1_user_name_flag_without_field_is_absent() {
    let body = cat(&[&s("MQIsdp"), &[3, 0xC2, 0, 60], &s("id")]);
    let Packet::Connect(c) = accepts(&frame(0x10, &body), V31) else {
        panic!()
    };
    assert_eq!((c.username, c.password), (None, None));
    // Not in 3.1.1.
    let body = cat(&[&s("MQTT"), &[4, 0x82, 0, 60], &s("id")]);
    rejects(
        &frame(0x10, &body),
        V311,
        DecodeError::UnexpectedEnd { field: "user name" },
        MALFORMED,
    );
}

// --- CONNACK -----------------------------------------------------------------------------------

#[test]
fn connack_reserved_flags_mqtt_3_2_2_1() {
    rejects(
        &frame(0x20, &[0x02, 0]),
        V311,
        DecodeError::ConnAckReservedFlags { flags: 2 },
        MALFORMED,
    );
}

#[test]
fn session_present_with_refusal_mqtt_3_2_2_4() {
    rejects(
        &frame(0x20, &[1, 5]),
        V311,
        DecodeError::SessionPresentWithError,
        PROTOCOL,
    );
    rejects(
        &frame(0x20, &[1, 0x87, 0]),
        V5,
        DecodeError::SessionPresentWithError,
        PROTOCOL,
    );
}

#[test]
fn reason_codes_not_defined_for_the_packet_are_malformed() {
    let cases: [(u8, Vec<u8>, ProtocolVersion, &str, u8); 8] = [
        (0x20, vec![0, 6], V311, "CONNACK", 6),
        (0x20, vec![0, 0x01, 0], V5, "CONNACK", 0x01),
        (0x40, vec![0, 1, 0x05], V5, "PUBACK", 0x05),
        (0x62, vec![0, 1, 0x10], V5, "PUBREL", 0x10),
        (0x90, vec![0, 1, 0x03], V311, "SUBACK", 0x03),
        (0xB0, vec![0, 1, 0, 0x02], V5, "UNSUBACK", 0x02),
        (0xE0, vec![0x01], V5, "DISCONNECT", 0x01),
        (0xF0, vec![0x01], V5, "AUTH", 0x01),
    ];
    for (byte1, body, v, packet, code) in cases {
        rejects(
            &frame(byte1, &body),
            v,
            DecodeError::InvalidReasonCode { packet, code },
            MALFORMED,
        );
    }
}

// --- SUBSCRIBE / UNSUBSCRIBE -------------------------------------------------------------------

#[test]
fn subscribe_options_reserved_bits_v311_mqtt_3_8_3_4() {
    let body = cat(&[&[0, 1], &s("a"), &[0x04]]);
    rejects(
        &frame(0x82, &body),
        V311,
        DecodeError::SubscriptionOptionsReserved { options: 0x04 },
        MALFORMED,
    );
}

#[test]
fn subscribe_options_reserved_bits_v5_mqtt_3_8_3_5() {
    let body = cat(&[&[0, 1, 0], &s("a"), &[0x40]]);
    rejects(
        &frame(0x82, &body),
        V5,
        DecodeError::SubscriptionOptionsReserved { options: 0x40 },
        MALFORMED,
    );
}

#[test]
fn retain_handling_3_is_protocol_error() {
    let body = cat(&[&[0, 1, 0], &s("a"), &[0x30]]);
    rejects(
        &frame(0x82, &body),
        V5,
        DecodeError::InvalidRetainHandling,
        PROTOCOL,
    );
}

#[test]
fn subscribe_without_filters_mqtt_3_8_3_3() {
    rejects(
        &frame(0x82, &[0, 1]),
        V311,
        DecodeError::NoTopicFilters {
            packet: "SUBSCRIBE",
        },
        PROTOCOL,
    );
    rejects(
        &frame(0x82, &[0, 1, 0]),
        V5,
        DecodeError::NoTopicFilters {
            packet: "SUBSCRIBE",
        },
        PROTOCOL,
    );
}

#[test]
fn unsubscribe_without_filters_mqtt_3_10_3_2() {
    rejects(
        &frame(0xA2, &[0, 1]),
        V311,
        DecodeError::NoTopicFilters {
            packet: "UNSUBSCRIBE",
        },
        PROTOCOL,
    );
}

#[test]
fn subscribe_filter_without_options_byte_is_malformed() {
    rejects(
        &frame(0x82, &cat(&[&[0, 1], &s("a")])),
        V311,
        DecodeError::UnexpectedEnd {
            field: "subscription options",
        },
        MALFORMED,
    );
}

// --- Properties --------------------------------------------------------------------------------

#[test]
fn unknown_property_identifier_is_malformed() {
    rejects(
        &publish_v5_with_props(&[0x05, 0]),
        V5,
        DecodeError::UnknownProperty { id: 5 },
        MALFORMED,
    );
}

#[test]
fn property_not_allowed_in_packet_is_malformed() {
    // Topic Alias (0x23) in CONNECT; Session Expiry Interval (0x11) in PUBLISH.
    rejects(
        &connect_v5_with_props(&[0x23, 0, 1]),
        V5,
        DecodeError::PropertyNotAllowed {
            id: 0x23,
            packet: "CONNECT",
        },
        MALFORMED,
    );
    rejects(
        &publish_v5_with_props(&[0x11, 0, 0, 0, 1]),
        V5,
        DecodeError::PropertyNotAllowed {
            id: 0x11,
            packet: "PUBLISH",
        },
        MALFORMED,
    );
    // Will Delay Interval belongs to the Will Properties, not CONNECT's.
    rejects(
        &connect_v5_with_props(&[0x18, 0, 0, 0, 1]),
        V5,
        DecodeError::PropertyNotAllowed {
            id: 0x18,
            packet: "CONNECT",
        },
        MALFORMED,
    );
}

#[test]
fn duplicate_property_is_protocol_error() {
    rejects(
        &publish_v5_with_props(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]),
        V5,
        DecodeError::DuplicateProperty {
            id: 0x02,
            packet: "PUBLISH",
        },
        PROTOCOL,
    );
    rejects(
        &connect_v5_with_props(&[0x21, 0, 1, 0x21, 0, 2]),
        V5,
        DecodeError::DuplicateProperty {
            id: 0x21,
            packet: "CONNECT",
        },
        PROTOCOL,
    );
}

#[test]
fn user_property_and_subscription_identifier_may_repeat_in_publish() {
    let mut props = Vec::new();
    for _ in 0..2 {
        props.extend_from_slice(&cat(&[&[0x26], &s("k"), &s("v")]));
        props.extend_from_slice(&[0x0B, 0x05]);
    }
    let Packet::Publish(p) = accepts(&publish_v5_with_props(&props), V5) else {
        panic!()
    };
    assert_eq!(p.properties.user_properties.len(), 2);
    assert_eq!(p.properties.subscription_identifiers, vec![5, 5]);
}

#[test]
fn subscription_identifier_twice_in_subscribe_is_protocol_error() {
    let body = cat(&[&[0, 1, 4, 0x0B, 1, 0x0B, 2], &s("a"), &[0]]);
    rejects(
        &frame(0x82, &body),
        V5,
        DecodeError::DuplicateProperty {
            id: 0x0B,
            packet: "SUBSCRIBE",
        },
        PROTOCOL,
    );
}

#[test]
fn subscription_identifier_zero_is_protocol_error() {
    rejects(
        &publish_v5_with_props(&[0x0B, 0]),
        V5,
        DecodeError::InvalidPropertyValue {
            property: "Subscription Identifier",
            value: 0,
        },
        PROTOCOL,
    );
}

#[test]
fn subscription_identifier_of_five_bytes_is_malformed() {
    rejects(
        &publish_v5_with_props(&[0x0B, 0x80, 0x80, 0x80, 0x80, 0x01]),
        V5,
        DecodeError::MalformedVariableByteInteger {
            field: "subscription identifier",
        },
        MALFORMED,
    );
}

#[test]
fn receive_maximum_zero_is_protocol_error() {
    rejects(
        &connect_v5_with_props(&[0x21, 0, 0]),
        V5,
        DecodeError::InvalidPropertyValue {
            property: "Receive Maximum",
            value: 0,
        },
        PROTOCOL,
    );
}

#[test]
fn maximum_packet_size_zero_is_protocol_error() {
    rejects(
        &connack_v5_with_props(&[0x27, 0, 0, 0, 0]),
        V5,
        DecodeError::InvalidPropertyValue {
            property: "Maximum Packet Size",
            value: 0,
        },
        PROTOCOL,
    );
}

#[test]
fn maximum_qos_above_1_is_protocol_error() {
    rejects(
        &connack_v5_with_props(&[0x24, 2]),
        V5,
        DecodeError::InvalidPropertyValue {
            property: "Maximum QoS",
            value: 2,
        },
        PROTOCOL,
    );
}

#[test]
fn boolean_property_above_1_is_protocol_error() {
    rejects(
        &connect_v5_with_props(&[0x17, 2]),
        V5,
        DecodeError::InvalidPropertyValue {
            property: "Request Problem Information",
            value: 2,
        },
        PROTOCOL,
    );
    rejects(
        &connack_v5_with_props(&[0x25, 7]),
        V5,
        DecodeError::InvalidPropertyValue {
            property: "Retain Available",
            value: 7,
        },
        PROTOCOL,
    );
}

#[test]
fn topic_alias_zero_mqtt_3_3_2_8() {
    rejects(
        &publish_v5_with_props(&[0x23, 0, 0]),
        V5,
        DecodeError::TopicAliasZero,
        ReasonCode::TOPIC_ALIAS_INVALID,
    );
}

#[test]
fn authentication_data_without_method_is_protocol_error() {
    rejects(
        &connect_v5_with_props(&[0x16, 0, 1, 9]),
        V5,
        DecodeError::AuthDataWithoutMethod,
        PROTOCOL,
    );
}

#[test]
fn response_topic_with_wildcard_mqtt_3_3_2_14() {
    rejects(
        &publish_v5_with_props(&cat(&[&[0x08], &s("a/+")])),
        V5,
        DecodeError::InvalidResponseTopic(TopicError::WildcardInTopicName),
        PROTOCOL,
    );
}

#[test]
fn string_property_with_null_is_malformed() {
    rejects(
        &publish_v5_with_props(&cat(&[&[0x03], &s("a\0")])),
        V5,
        DecodeError::NullCharacter { field: "property" },
        MALFORMED,
    );
}

#[test]
fn property_value_cut_short_is_malformed() {
    // Property length says 3 but Message Expiry Interval needs 4 bytes.
    rejects(
        &publish_v5_with_props(&[0x02, 0, 0]),
        V5,
        DecodeError::UnexpectedEnd { field: "property" },
        MALFORMED,
    );
}
