//! Decoding: bytes in, [`Packet`] out. The decoder never trusts a length: every read is checked
//! against what the remaining length announced, and what is left over is an error.
//!
//! Strings, binary data and payloads are `Bytes` slices of the packet's own bytes, split off the
//! input buffer once, so a decoded PUBLISH allocates nothing beyond the shared buffer.

use crate::error::DecodeError;
use crate::packet::*;
use crate::properties::*;
use crate::reason::ReasonCode;
use crate::topic::{self, TopicError};
use crate::types::{ByteStr, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
use bytes::{Buf, Bytes, BytesMut};

/// Largest value of a Variable Byte Integer, hence of a remaining length [MQTT-1.5.5-1].
pub const MAX_VARIABLE_BYTE_INTEGER: u32 = 268_435_455;

/// Decodes one packet from the front of `buf`.
///
/// Returns `Ok(None)` while `buf` holds less than a whole packet, leaving it untouched. On success
/// the packet's bytes are split off `buf`. A packet larger than `max_packet_size` (fixed header
/// included) is refused from its fixed header, before its body is buffered. A CONNECT is decoded
/// according to its own protocol level; `version` applies to every other packet.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    check_fixed_header_flags(byte1, version)?;
    let Some((remaining, header_len)) = read_remaining_length(buf)? else {
        return Ok(None);
    };
    let size = header_len + remaining;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    let mut body = buf.split_to(size).freeze();
    body.advance(header_len);
    if byte1 >> 4 == 3 {
        // PUBLISH is built where it is returned: moving a `Packet` through layers showed up
        // as a large share of decoding time. The packet was split off the read buffer (the
        // atomic reference-count increment) before the topic is read, not after: a locked
        // instruction waits for every store before it to drain, and splitting after building
        // the topic measured 11 % slower.
        if let Some((dup, qos, retain, topic, packet_id, head_len)) =
            common_publish_head(byte1, &body, version)
        {
            body.advance(head_len);
            return Ok(Some(Packet::Publish(Publish {
                dup,
                qos,
                retain,
                topic,
                packet_id,
                properties: Props::none(),
                payload: body,
            })));
        }
        return decode_publish(byte1, body, version);
    }
    decode_body(byte1, body, version).map(Some)
}

/// The variable header of the PUBLISH most traffic is made of: a topic of up to
/// [`INLINE_CAPACITY`](crate::types::INLINE_CAPACITY) bytes (copied inline) and no properties,
/// read from the packet's bytes as a plain slice. Returns DUP, QoS, RETAIN, topic, packet
/// identifier and the length of all that before the payload; `None` for any other PUBLISH,
/// valid or not: [`decode_publish`] then decodes it or names the rule it breaks. Every check of
/// [`decode_publish`] that applies to such a packet is made here too.
#[inline(always)]
fn common_publish_head(
    byte1: u8,
    body: &[u8],
    version: ProtocolVersion,
) -> Option<(bool, QoS, bool, ByteStr, u16, usize)> {
    let dup = byte1 & 0x08 != 0;
    let qos = QoS::from_u8((byte1 >> 1) & 0x03)?; // [MQTT-3.3.1-4]
    let retain = byte1 & 0x01 != 0;
    if dup && qos == QoS::AtMostOnce && version != ProtocolVersion::V31 {
        return None; // [MQTT-3.3.1-2]
    }
    let (&[hi, lo], rest) = body.split_first_chunk::<2>()?;
    let topic_len = usize::from(u16::from_be_bytes([hi, lo]));
    // [MQTT-3.3.2-1], [MQTT-3.3.2-2], [MQTT-1.5.4-1], [MQTT-1.5.4-2]; an empty topic (v5 with a
    // Topic Alias) takes the general path.
    let topic = ByteStr::inline_topic_name(rest, topic_len)?;
    let rest = rest.get(topic_len..)?;
    let (packet_id, rest) = if qos == QoS::AtMostOnce {
        (0, rest)
    } else {
        let (&id, rest) = rest.split_first_chunk::<2>()?;
        match u16::from_be_bytes(id) {
            0 => return None, // [MQTT-2.2.1-3]
            id => (id, rest),
        }
    };
    let payload_len = if version.is_v5() {
        // An empty property block only.
        match rest.split_first()? {
            (0, rest) => rest.len(),
            _ => return None,
        }
    } else {
        rest.len()
    };
    Some((dup, qos, retain, topic, packet_id, body.len() - payload_len))
}

/// Reads the remaining length after the first byte: `Ok(None)` if more bytes are needed, else the
/// value and the length of the whole fixed header.
fn read_remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value: usize = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            // [MQTT-1.5.5-1] minimum number of bytes: a final 0 after a continuation byte pads.
            if i > 0 && b == 0 {
                return Err(DecodeError::MalformedVariableByteInteger {
                    field: "remaining length",
                });
            }
            return Ok(Some((value, 2 + i)));
        }
    }
    Err(DecodeError::MalformedVariableByteInteger {
        field: "remaining length",
    })
}

/// The fixed header flags each packet type must carry [MQTT-2.2.2-1]; PUBLISH is checked when
/// its flags are interpreted. MQTT 3.1 set QoS 1 (and DUP on retries) on PUBREL, SUBSCRIBE and
/// UNSUBSCRIBE and left the other flags unspecified, so only the packet type is checked there.
fn check_fixed_header_flags(byte1: u8, version: ProtocolVersion) -> Result<(), DecodeError> {
    let packet_type = byte1 >> 4;
    let flags = byte1 & 0x0F;
    let (packet, expected) = match packet_type {
        1 => ("CONNECT", 0),
        2 => ("CONNACK", 0),
        3 => return Ok(()),
        4 => ("PUBACK", 0),
        5 => ("PUBREC", 0),
        6 => ("PUBREL", 2),
        7 => ("PUBCOMP", 0),
        8 => ("SUBSCRIBE", 2),
        9 => ("SUBACK", 0),
        10 => ("UNSUBSCRIBE", 2),
        11 => ("UNSUBACK", 0),
        12 => ("PINGREQ", 0),
        13 => ("PINGRESP", 0),
        14 => ("DISCONNECT", 0),
        15 if version.is_v5() => ("AUTH", 0),
        _ => return Err(DecodeError::ReservedPacketType { packet_type }),
    };
    // CONNECT precedes any version knowledge; it has flags 0 in every version.
    if flags != expected && (version != ProtocolVersion::V31 || packet_type == 1) {
        return Err(DecodeError::InvalidFixedHeaderFlags { packet, flags });
    }
    Ok(())
}

fn decode_body(byte1: u8, body: Bytes, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let v5 = version.is_v5();
    let mut r = body;
    let packet = match byte1 >> 4 {
        1 => Packet::Connect(Box::new(decode_connect(&mut r)?)),
        2 => Packet::ConnAck(decode_connack(&mut r, version)?),
        3 => {
            return decode_publish(byte1, r, version)?
                .ok_or(DecodeError::UnexpectedEnd { field: "PUBLISH" });
        }
        4 => {
            let (packet_id, reason_code, properties) =
                decode_ack(&mut r, v5, "PUBACK", PUBACK_CODES)?;
            Packet::PubAck(PubAck {
                packet_id,
                reason_code,
                properties,
            })
        }
        5 => {
            let (packet_id, reason_code, properties) =
                decode_ack(&mut r, v5, "PUBREC", PUBACK_CODES)?;
            Packet::PubRec(PubRec {
                packet_id,
                reason_code,
                properties,
            })
        }
        6 => {
            let (packet_id, reason_code, properties) =
                decode_ack(&mut r, v5, "PUBREL", PUBREL_CODES)?;
            Packet::PubRel(PubRel {
                packet_id,
                reason_code,
                properties,
            })
        }
        7 => {
            let (packet_id, reason_code, properties) =
                decode_ack(&mut r, v5, "PUBCOMP", PUBREL_CODES)?;
            Packet::PubComp(PubComp {
                packet_id,
                reason_code,
                properties,
            })
        }
        8 => Packet::Subscribe(decode_subscribe(&mut r, version)?),
        9 => Packet::SubAck(decode_suback(&mut r, v5)?),
        10 => Packet::Unsubscribe(decode_unsubscribe(&mut r, v5)?),
        11 => Packet::UnsubAck(decode_unsuback(&mut r, v5)?),
        12 => {
            finish(&r, "PINGREQ")?;
            Packet::PingReq
        }
        13 => {
            finish(&r, "PINGRESP")?;
            Packet::PingResp
        }
        14 => Packet::Disconnect(decode_disconnect(&mut r, v5)?),
        15 => Packet::Auth(decode_auth(&mut r)?),
        packet_type => return Err(DecodeError::ReservedPacketType { packet_type }),
    };
    Ok(packet)
}

// ---------------------------------------------------------------------------------------------
// Primitive readers (section 1.5). `r` is the rest of the packet.

fn finish(r: &Bytes, packet: &'static str) -> Result<(), DecodeError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes {
            packet,
            count: r.len(),
        })
    }
}

fn read_u8(r: &mut Bytes, field: &'static str) -> Result<u8, DecodeError> {
    if r.is_empty() {
        return Err(DecodeError::UnexpectedEnd { field });
    }
    Ok(r.get_u8())
}

#[inline]
fn read_u16(r: &mut Bytes, field: &'static str) -> Result<u16, DecodeError> {
    if r.len() < 2 {
        return Err(DecodeError::UnexpectedEnd { field });
    }
    Ok(r.get_u16())
}

fn read_u32(r: &mut Bytes, field: &'static str) -> Result<u32, DecodeError> {
    if r.len() < 4 {
        return Err(DecodeError::UnexpectedEnd { field });
    }
    Ok(r.get_u32())
}

#[inline]
fn read_packet_id(r: &mut Bytes, packet: &'static str) -> Result<u16, DecodeError> {
    let id = read_u16(r, "packet identifier")?;
    if id == 0 {
        // [MQTT-2.2.1-3] (3.1.1: [MQTT-2.3.1-1])
        return Err(DecodeError::ZeroPacketId { packet });
    }
    Ok(id)
}

/// A Variable Byte Integer inside the packet: at most 4 bytes, minimum length [MQTT-1.5.5-1].
fn read_vbi(r: &mut Bytes, field: &'static str) -> Result<u32, DecodeError> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let b = read_u8(r, field)?;
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(DecodeError::MalformedVariableByteInteger { field });
            }
            return Ok(value);
        }
    }
    Err(DecodeError::MalformedVariableByteInteger { field })
}

/// Two-byte length then that many bytes (Binary Data, section 1.5.6).
#[inline]
fn read_binary(r: &mut Bytes, field: &'static str) -> Result<Bytes, DecodeError> {
    let len = usize::from(read_u16(r, field)?);
    if r.len() < len {
        return Err(DecodeError::UnexpectedEnd { field });
    }
    Ok(r.split_to(len))
}

/// The two-byte length of a string and the bytes it announces, still in `r`.
#[inline]
fn peek_string<'a>(r: &'a Bytes, field: &'static str) -> Result<&'a [u8], DecodeError> {
    let [hi, lo, ..] = r[..] else {
        return Err(DecodeError::UnexpectedEnd { field });
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    r.get(2..2 + len)
        .ok_or(DecodeError::UnexpectedEnd { field })
}

/// Takes the string [`peek_string`] returned off the front of `r`, checking it is UTF-8.
#[inline(always)]
fn take_string(r: &mut Bytes, len: usize, field: &'static str) -> Result<ByteStr, DecodeError> {
    r.advance(2);
    ByteStr::split_from(r, len).ok_or(DecodeError::InvalidUtf8 { field })
}

/// A UTF-8 Encoded String (section 1.5.4): well-formed UTF-8, which excludes encoded surrogates
/// [MQTT-1.5.4-1], and no U+0000 [MQTT-1.5.4-2].
fn read_string(r: &mut Bytes, field: &'static str) -> Result<ByteStr, DecodeError> {
    let s = peek_string(r, field)?;
    if s.contains(&0) {
        return Err(DecodeError::NullCharacter { field });
    }
    take_string(r, s.len(), field)
}

/// A topic name (PUBLISH, Will): a UTF-8 string without wildcards. Emptiness is the caller's
/// business because a v5 PUBLISH may have an empty topic with a Topic Alias.
#[inline(always)]
fn read_topic_name(r: &mut Bytes, field: &'static str) -> Result<ByteStr, DecodeError> {
    let s = peek_string(r, field)?;
    if topic::has_special(s) {
        topic::check_name_bytes(s).map_err(|e| match e {
            TopicError::NullCharacter => DecodeError::NullCharacter { field },
            e => DecodeError::InvalidTopicName(e),
        })?;
    }
    take_string(r, s.len(), field)
}

fn read_topic_filter(r: &mut Bytes) -> Result<ByteStr, DecodeError> {
    let field = "topic filter";
    let s = peek_string(r, field)?;
    topic::check_filter_bytes(s).map_err(|e| match e {
        TopicError::NullCharacter => DecodeError::NullCharacter { field },
        e => DecodeError::InvalidTopicFilter(e),
    })?;
    take_string(r, s.len(), field)
}

#[inline]
fn read_qos(bits: u8, field: &'static str) -> Result<QoS, DecodeError> {
    QoS::from_u8(bits).ok_or(DecodeError::InvalidQoS { field })
}

fn check_reason(packet: &'static str, code: u8, allowed: &[u8]) -> Result<ReasonCode, DecodeError> {
    if allowed.contains(&code) {
        Ok(ReasonCode(code))
    } else {
        Err(DecodeError::InvalidReasonCode { packet, code })
    }
}

// Reason codes each v5 packet may carry (section 2.4 and each packet's reason code table).
pub(crate) const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
pub(crate) const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
pub(crate) const PUBREL_CODES: &[u8] = &[0x00, 0x92];
pub(crate) const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
pub(crate) const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
pub(crate) const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
pub(crate) const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];
/// 3.1.1 CONNACK return codes 0-5 (section 3.2.2.3).
pub(crate) const V3_CONNACK_CODES: &[u8] = &[0, 1, 2, 3, 4, 5];
/// 3.1.1 SUBACK return codes [MQTT-3.9.3-2].
pub(crate) const V3_SUBACK_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];

// ---------------------------------------------------------------------------------------------
// Properties (section 2.2.2).

/// A property value, typed by its identifier (table 2-4).
enum Value {
    Byte(u8),
    Two(u16),
    Four(u32),
    Var(u32),
    Str(ByteStr),
    Bin(Bytes),
    Pair(ByteStr, ByteStr),
}

/// Iterates over a property block, rejecting unknown identifiers (Malformed) and duplicates of
/// any property but User Property and Subscription Identifier (Protocol Error).
struct PropReader {
    r: Bytes,
    seen: u64,
    packet: &'static str,
}

impl PropReader {
    fn read(r: &mut Bytes, packet: &'static str) -> Result<PropReader, DecodeError> {
        let len = read_vbi(r, "property length")? as usize;
        if r.len() < len {
            return Err(DecodeError::UnexpectedEnd {
                field: "properties",
            });
        }
        Ok(PropReader {
            r: r.split_to(len),
            seen: 0,
            packet,
        })
    }

    fn next(&mut self) -> Result<Option<(PropertyId, Value)>, DecodeError> {
        if self.r.is_empty() {
            return Ok(None);
        }
        let raw = read_vbi(&mut self.r, "property identifier")?;
        let id = u8::try_from(raw)
            .ok()
            .and_then(PropertyId::from_u8)
            .ok_or(DecodeError::UnknownProperty { id: raw })?;
        let bit = 1u64 << (id as u8 & 63);
        if self.seen & bit != 0
            && !matches!(
                id,
                PropertyId::UserProperty | PropertyId::SubscriptionIdentifier
            )
        {
            return Err(DecodeError::DuplicateProperty {
                id: id as u8,
                packet: self.packet,
            });
        }
        self.seen |= bit;
        use PropertyId::*;
        let r = &mut self.r;
        let value = match id {
            PayloadFormatIndicator
            | RequestProblemInformation
            | RequestResponseInformation
            | MaximumQos
            | RetainAvailable
            | WildcardSubscriptionAvailable
            | SubscriptionIdentifierAvailable
            | SharedSubscriptionAvailable => Value::Byte(read_u8(r, "property")?),
            ServerKeepAlive | ReceiveMaximum | TopicAliasMaximum | TopicAlias => {
                Value::Two(read_u16(r, "property")?)
            }
            MessageExpiryInterval
            | SessionExpiryInterval
            | WillDelayInterval
            | MaximumPacketSize => Value::Four(read_u32(r, "property")?),
            SubscriptionIdentifier => Value::Var(read_vbi(r, "subscription identifier")?),
            CorrelationData | AuthenticationData => Value::Bin(read_binary(r, "property")?),
            ContentType
            | ResponseTopic
            | AssignedClientIdentifier
            | AuthenticationMethod
            | ResponseInformation
            | ServerReference
            | ReasonString => Value::Str(read_string(r, "property")?),
            UserProperty => Value::Pair(
                read_string(r, "user property name")?,
                read_string(r, "user property value")?,
            ),
        };
        Ok(Some((id, value)))
    }

    fn not_allowed(&self, id: PropertyId) -> DecodeError {
        DecodeError::PropertyNotAllowed {
            id: id as u8,
            packet: self.packet,
        }
    }
}

fn bool_prop(v: u8, property: &'static str) -> Result<bool, DecodeError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue {
            property,
            value: v.into(),
        }),
    }
}

fn nonzero16(v: u16, property: &'static str) -> Result<u16, DecodeError> {
    if v == 0 {
        return Err(DecodeError::InvalidPropertyValue { property, value: 0 });
    }
    Ok(v)
}

fn nonzero32(v: u32, property: &'static str) -> Result<u32, DecodeError> {
    if v == 0 {
        return Err(DecodeError::InvalidPropertyValue { property, value: 0 });
    }
    Ok(v)
}

fn response_topic(s: ByteStr) -> Result<ByteStr, DecodeError> {
    // [MQTT-3.3.2-14] no wildcards; a topic name is never empty [MQTT-4.7.3-1].
    topic::validate_topic_name(&s).map_err(DecodeError::InvalidResponseTopic)?;
    Ok(s)
}

fn decode_connect_properties(r: &mut Bytes) -> Result<ConnectProperties, DecodeError> {
    let mut it = PropReader::read(r, "CONNECT")?;
    let mut p = ConnectProperties::default();
    while let Some((id, v)) = it.next()? {
        use PropertyId as I;
        match (id, v) {
            (I::SessionExpiryInterval, Value::Four(x)) => p.session_expiry_interval = Some(x),
            (I::ReceiveMaximum, Value::Two(x)) => {
                p.receive_maximum = Some(nonzero16(x, "Receive Maximum")?)
            }
            (I::MaximumPacketSize, Value::Four(x)) => {
                p.maximum_packet_size = Some(nonzero32(x, "Maximum Packet Size")?)
            }
            (I::TopicAliasMaximum, Value::Two(x)) => p.topic_alias_maximum = Some(x),
            (I::RequestResponseInformation, Value::Byte(x)) => {
                p.request_response_information = Some(bool_prop(x, "Request Response Information")?)
            }
            (I::RequestProblemInformation, Value::Byte(x)) => {
                p.request_problem_information = Some(bool_prop(x, "Request Problem Information")?)
            }
            (I::UserProperty, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (I::AuthenticationMethod, Value::Str(s)) => p.authentication_method = Some(s),
            (I::AuthenticationData, Value::Bin(b)) => p.authentication_data = Some(b),
            (id, _) => return Err(it.not_allowed(id)),
        }
    }
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    Ok(p)
}

fn decode_will_properties(r: &mut Bytes) -> Result<WillProperties, DecodeError> {
    let mut it = PropReader::read(r, "CONNECT (Will Properties)")?;
    let mut p = WillProperties::default();
    while let Some((id, v)) = it.next()? {
        use PropertyId as I;
        match (id, v) {
            (I::WillDelayInterval, Value::Four(x)) => p.will_delay_interval = Some(x),
            (I::PayloadFormatIndicator, Value::Byte(x)) => {
                p.payload_format_indicator = Some(bool_prop(x, "Payload Format Indicator")?)
            }
            (I::MessageExpiryInterval, Value::Four(x)) => p.message_expiry_interval = Some(x),
            (I::ContentType, Value::Str(s)) => p.content_type = Some(s),
            (I::ResponseTopic, Value::Str(s)) => p.response_topic = Some(response_topic(s)?),
            (I::CorrelationData, Value::Bin(b)) => p.correlation_data = Some(b),
            (I::UserProperty, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (id, _) => return Err(it.not_allowed(id)),
        }
    }
    Ok(p)
}

fn decode_connack_properties(r: &mut Bytes) -> Result<ConnAckProperties, DecodeError> {
    let mut it = PropReader::read(r, "CONNACK")?;
    let mut p = ConnAckProperties::default();
    while let Some((id, v)) = it.next()? {
        use PropertyId as I;
        match (id, v) {
            (I::SessionExpiryInterval, Value::Four(x)) => p.session_expiry_interval = Some(x),
            (I::ReceiveMaximum, Value::Two(x)) => {
                p.receive_maximum = Some(nonzero16(x, "Receive Maximum")?)
            }
            (I::MaximumQos, Value::Byte(x)) => {
                if x > 1 {
                    return Err(DecodeError::InvalidPropertyValue {
                        property: "Maximum QoS",
                        value: x.into(),
                    });
                }
                p.maximum_qos = Some(x)
            }
            (I::RetainAvailable, Value::Byte(x)) => {
                p.retain_available = Some(bool_prop(x, "Retain Available")?)
            }
            (I::MaximumPacketSize, Value::Four(x)) => {
                p.maximum_packet_size = Some(nonzero32(x, "Maximum Packet Size")?)
            }
            (I::AssignedClientIdentifier, Value::Str(s)) => p.assigned_client_identifier = Some(s),
            (I::TopicAliasMaximum, Value::Two(x)) => p.topic_alias_maximum = Some(x),
            (I::ReasonString, Value::Str(s)) => p.reason_string = Some(s),
            (I::UserProperty, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (I::WildcardSubscriptionAvailable, Value::Byte(x)) => {
                p.wildcard_subscription_available =
                    Some(bool_prop(x, "Wildcard Subscription Available")?)
            }
            (I::SubscriptionIdentifierAvailable, Value::Byte(x)) => {
                p.subscription_identifiers_available =
                    Some(bool_prop(x, "Subscription Identifiers Available")?)
            }
            (I::SharedSubscriptionAvailable, Value::Byte(x)) => {
                p.shared_subscription_available =
                    Some(bool_prop(x, "Shared Subscription Available")?)
            }
            (I::ServerKeepAlive, Value::Two(x)) => p.server_keep_alive = Some(x),
            (I::ResponseInformation, Value::Str(s)) => p.response_information = Some(s),
            (I::ServerReference, Value::Str(s)) => p.server_reference = Some(s),
            (I::AuthenticationMethod, Value::Str(s)) => p.authentication_method = Some(s),
            (I::AuthenticationData, Value::Bin(b)) => p.authentication_data = Some(b),
            (id, _) => return Err(it.not_allowed(id)),
        }
    }
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    Ok(p)
}

fn decode_publish_properties(r: &mut Bytes) -> Result<PublishProperties, DecodeError> {
    let mut it = PropReader::read(r, "PUBLISH")?;
    let mut p = PublishProperties::default();
    while let Some((id, v)) = it.next()? {
        p.wire_order.push(id);
        use PropertyId as I;
        match (id, v) {
            (I::PayloadFormatIndicator, Value::Byte(x)) => {
                p.payload_format_indicator = Some(bool_prop(x, "Payload Format Indicator")?)
            }
            (I::MessageExpiryInterval, Value::Four(x)) => p.message_expiry_interval = Some(x),
            (I::TopicAlias, Value::Two(x)) => {
                if x == 0 {
                    // [MQTT-3.3.2-8]
                    return Err(DecodeError::TopicAliasZero);
                }
                p.topic_alias = Some(x)
            }
            (I::ResponseTopic, Value::Str(s)) => p.response_topic = Some(response_topic(s)?),
            (I::CorrelationData, Value::Bin(b)) => p.correlation_data = Some(b),
            (I::UserProperty, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (I::SubscriptionIdentifier, Value::Var(x)) => p
                .subscription_identifiers
                .push(nonzero32(x, "Subscription Identifier")?),
            (I::ContentType, Value::Str(s)) => p.content_type = Some(s),
            (id, _) => return Err(it.not_allowed(id)),
        }
    }
    Ok(p)
}

fn decode_ack_properties(
    r: &mut Bytes,
    packet: &'static str,
) -> Result<AckProperties, DecodeError> {
    let mut it = PropReader::read(r, packet)?;
    let mut p = AckProperties::default();
    while let Some((id, v)) = it.next()? {
        match (id, v) {
            (PropertyId::ReasonString, Value::Str(s)) => p.reason_string = Some(s),
            (PropertyId::UserProperty, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (id, _) => return Err(it.not_allowed(id)),
        }
    }
    Ok(p)
}

fn decode_subscribe_properties(r: &mut Bytes) -> Result<SubscribeProperties, DecodeError> {
    let mut it = PropReader::read(r, "SUBSCRIBE")?;
    let mut p = SubscribeProperties::default();
    while let Some((id, v)) = it.next()? {
        match (id, v) {
            (PropertyId::SubscriptionIdentifier, Value::Var(x)) => {
                if p.subscription_identifier.is_some() {
                    // Only PUBLISH may repeat it (section 3.8.2.1.2).
                    return Err(DecodeError::DuplicateProperty {
                        id: id as u8,
                        packet: "SUBSCRIBE",
                    });
                }
                p.subscription_identifier = Some(nonzero32(x, "Subscription Identifier")?)
            }
            (PropertyId::UserProperty, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (id, _) => return Err(it.not_allowed(id)),
        }
    }
    Ok(p)
}

fn decode_unsubscribe_properties(r: &mut Bytes) -> Result<UnsubscribeProperties, DecodeError> {
    let mut it = PropReader::read(r, "UNSUBSCRIBE")?;
    let mut p = UnsubscribeProperties::default();
    while let Some((id, v)) = it.next()? {
        match (id, v) {
            (PropertyId::UserProperty, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (id, _) => return Err(it.not_allowed(id)),
        }
    }
    Ok(p)
}

fn decode_disconnect_properties(r: &mut Bytes) -> Result<DisconnectProperties, DecodeError> {
    let mut it = PropReader::read(r, "DISCONNECT")?;
    let mut p = DisconnectProperties::default();
    while let Some((id, v)) = it.next()? {
        use PropertyId as I;
        match (id, v) {
            (I::SessionExpiryInterval, Value::Four(x)) => p.session_expiry_interval = Some(x),
            (I::ReasonString, Value::Str(s)) => p.reason_string = Some(s),
            (I::UserProperty, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (I::ServerReference, Value::Str(s)) => p.server_reference = Some(s),
            (id, _) => return Err(it.not_allowed(id)),
        }
    }
    Ok(p)
}

fn decode_auth_properties(r: &mut Bytes) -> Result<AuthProperties, DecodeError> {
    let mut it = PropReader::read(r, "AUTH")?;
    let mut p = AuthProperties::default();
    while let Some((id, v)) = it.next()? {
        use PropertyId as I;
        match (id, v) {
            (I::AuthenticationMethod, Value::Str(s)) => p.authentication_method = Some(s),
            (I::AuthenticationData, Value::Bin(b)) => p.authentication_data = Some(b),
            (I::ReasonString, Value::Str(s)) => p.reason_string = Some(s),
            (I::UserProperty, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (id, _) => return Err(it.not_allowed(id)),
        }
    }
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// Packets.

/// CONNECT (section 3.1), by its own protocol name and level.
fn decode_connect(r: &mut Bytes) -> Result<Connect, DecodeError> {
    let name = read_binary(r, "protocol name")?;
    let level = read_u8(r, "protocol level")?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQIsdp", 3) => ProtocolVersion::V31,
        // [MQTT-3.1.2-1], [MQTT-3.1.2-2]: the server answers 0x01 / 0x84.
        _ => return Err(DecodeError::UnsupportedProtocolVersion { level }),
    };
    let flags = read_u8(r, "connect flags")?;
    if flags & 0x01 != 0 {
        // [MQTT-3.1.2-3]
        return Err(DecodeError::ConnectReservedFlag);
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = read_qos((flags >> 3) & 0x03, "Will QoS")?; // [MQTT-3.1.2-14]
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
        // [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]
        return Err(DecodeError::WillFlagsWithoutWill);
    }
    if !protocol.is_v5() && password_flag && !username_flag {
        // [MQTT-3.1.2-22]; 5.0 allows a password without a user name.
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = read_u16(r, "keep alive")?;
    let properties = if protocol.is_v5() {
        decode_connect_properties(r)?
    } else {
        ConnectProperties::default()
    };
    let client_id = read_string(r, "client identifier")?; // [MQTT-3.1.3-4]
    let will = if will_flag {
        let properties = if protocol.is_v5() {
            decode_will_properties(r)?
        } else {
            WillProperties::default()
        };
        let topic = read_topic_name(r, "will topic")?;
        if topic.as_bytes().is_empty() {
            return Err(DecodeError::InvalidTopicName(TopicError::Empty));
        }
        let payload = read_binary(r, "will payload")?;
        Some(LastWill {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    // MQTT 3.1 clients were allowed to set the flags and leave the fields out; like Mosquitto,
    // take a missing field as absent there.
    let lenient = protocol == ProtocolVersion::V31;
    let username = if username_flag && !(lenient && r.is_empty()) {
        Some(read_string(r, "user name")?)
    } else {
        None
    };
    let password = if password_flag && !(lenient && r.is_empty()) {
        Some(read_binary(r, "password")?)
    } else {
        None
    };
    finish(r, "CONNECT")?;
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

/// CONNACK (section 3.2).
fn decode_connack(r: &mut Bytes, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let flags = read_u8(r, "connect acknowledge flags")?;
    let code = read_u8(r, "connect reason code")?;
    // 3.1 left the first byte unused.
    if version != ProtocolVersion::V31 && flags & 0xFE != 0 {
        // [MQTT-3.2.2-1]
        return Err(DecodeError::ConnAckReservedFlags { flags });
    }
    let session_present = flags & 0x01 != 0;
    let (reason_code, properties) = if version.is_v5() {
        let rc = check_reason("CONNACK", code, CONNACK_CODES)?;
        (rc, decode_connack_properties(r)?.into())
    } else {
        let rc = check_reason("CONNACK", code, V3_CONNACK_CODES)?;
        (rc, Props::none())
    };
    if session_present && code != 0 {
        // [MQTT-3.2.2-4] (5.0: [MQTT-3.2.2-6])
        return Err(DecodeError::SessionPresentWithError);
    }
    finish(r, "CONNACK")?;
    Ok(ConnAck {
        session_present,
        reason_code,
        properties,
    })
}

/// PUBLISH (section 3.3). `r` is the whole body; the payload is what follows the variable header.
#[inline(always)]
fn decode_publish(
    byte1: u8,
    mut r: Bytes,
    version: ProtocolVersion,
) -> Result<Option<Packet>, DecodeError> {
    let dup = byte1 & 0x08 != 0;
    let qos = read_qos((byte1 >> 1) & 0x03, "PUBLISH QoS")?; // [MQTT-3.3.1-4]
    let retain = byte1 & 0x01 != 0;
    if dup && qos == QoS::AtMostOnce && version != ProtocolVersion::V31 {
        // [MQTT-3.3.1-2]
        return Err(DecodeError::DupOnQoS0);
    }
    let topic = read_topic_name(&mut r, "topic name")?; // [MQTT-3.3.2-1], [MQTT-3.3.2-2]
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        read_packet_id(&mut r, "PUBLISH")?
    };
    let properties = if !version.is_v5() {
        Props::none()
    } else if r.first() == Some(&0) {
        // No properties: the common case, without the property parser.
        r.advance(1);
        Props::none()
    } else {
        decode_publish_properties(&mut r)?.into()
    };
    if topic.as_bytes().is_empty() {
        if !version.is_v5() {
            // [MQTT-4.7.3-1]
            return Err(DecodeError::InvalidTopicName(TopicError::Empty));
        }
        if properties.topic_alias.is_none() {
            return Err(DecodeError::EmptyTopicWithoutAlias);
        }
    }
    Ok(Some(Packet::Publish(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        properties,
        payload: r,
    })))
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP (sections 3.4-3.7): in v5 the reason code and properties may
/// be omitted, meaning Success and none (section 3.4.2.1).
fn decode_ack(
    r: &mut Bytes,
    v5: bool,
    packet: &'static str,
    codes: &[u8],
) -> Result<(u16, ReasonCode, AckProperties), DecodeError> {
    let packet_id = read_packet_id(r, packet)?;
    let mut reason = ReasonCode::SUCCESS;
    let mut props = AckProperties::default();
    if v5 && !r.is_empty() {
        reason = check_reason(packet, read_u8(r, "reason code")?, codes)?;
        if !r.is_empty() {
            props = decode_ack_properties(r, packet)?;
        }
    }
    finish(r, packet)?;
    Ok((packet_id, reason, props))
}

/// SUBSCRIBE (section 3.8).
fn decode_subscribe(r: &mut Bytes, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    let packet_id = read_packet_id(r, "SUBSCRIBE")?;
    let properties = if version.is_v5() {
        decode_subscribe_properties(r)?
    } else {
        SubscribeProperties::default()
    };
    // Most SUBSCRIBEs carry one filter: allocate for one instead of growing to four.
    let mut filters = Vec::with_capacity(1);
    while !r.is_empty() {
        let filter = read_topic_filter(r)?;
        let options = read_u8(r, "subscription options")?;
        let opts = if version.is_v5() {
            if options & 0xC0 != 0 {
                // [MQTT-3.8.3-5]
                return Err(DecodeError::SubscriptionOptionsReserved { options });
            }
            let retain_handling = match (options >> 4) & 0x03 {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendIfNew,
                2 => RetainHandling::DoNotSend,
                _ => return Err(DecodeError::InvalidRetainHandling),
            };
            let no_local = options & 0x04 != 0;
            if filter.as_bytes().starts_with(b"$share/") {
                if topic::parse_shared(&filter).is_none() {
                    return Err(DecodeError::InvalidTopicFilter(
                        TopicError::InvalidSharedSubscription,
                    ));
                }
                if no_local {
                    // [MQTT-3.8.3-4]
                    return Err(DecodeError::NoLocalOnSharedSubscription);
                }
            }
            SubscriptionOptions {
                qos: read_qos(options & 0x03, "subscription options")?,
                no_local,
                retain_as_published: options & 0x08 != 0,
                retain_handling,
            }
        } else {
            // [MQTT-3-8.3-4] (3.1.1); 3.1 left the upper bits "not used".
            if version == ProtocolVersion::V311 && options & 0xFC != 0 {
                return Err(DecodeError::SubscriptionOptionsReserved { options });
            }
            SubscriptionOptions {
                qos: read_qos(options & 0x03, "subscription options")?,
                ..SubscriptionOptions::default()
            }
        };
        filters.push((filter, opts));
    }
    if filters.is_empty() {
        // [MQTT-3.8.3-3] (5.0: [MQTT-3.8.3-2])
        return Err(DecodeError::NoTopicFilters {
            packet: "SUBSCRIBE",
        });
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

/// SUBACK (section 3.9).
fn decode_suback(r: &mut Bytes, v5: bool) -> Result<SubAck, DecodeError> {
    let packet_id = read_packet_id(r, "SUBACK")?;
    let (properties, codes) = if v5 {
        (decode_ack_properties(r, "SUBACK")?, SUBACK_CODES)
    } else {
        (AckProperties::default(), V3_SUBACK_CODES)
    };
    let mut reason_codes = Vec::with_capacity(r.len());
    while !r.is_empty() {
        reason_codes.push(check_reason("SUBACK", r.get_u8(), codes)?);
    }
    Ok(SubAck {
        packet_id,
        reason_codes,
        properties,
    })
}

/// UNSUBSCRIBE (section 3.10).
fn decode_unsubscribe(r: &mut Bytes, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = read_packet_id(r, "UNSUBSCRIBE")?;
    let properties = if v5 {
        decode_unsubscribe_properties(r)?
    } else {
        UnsubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(read_topic_filter(r)?);
    }
    if filters.is_empty() {
        // [MQTT-3.10.3-2]
        return Err(DecodeError::NoTopicFilters {
            packet: "UNSUBSCRIBE",
        });
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

/// UNSUBACK (section 3.11): 3.x carries only the packet identifier.
fn decode_unsuback(r: &mut Bytes, v5: bool) -> Result<UnsubAck, DecodeError> {
    let packet_id = read_packet_id(r, "UNSUBACK")?;
    if !v5 {
        finish(r, "UNSUBACK")?;
        return Ok(UnsubAck {
            packet_id,
            ..UnsubAck::default()
        });
    }
    let properties = decode_ack_properties(r, "UNSUBACK")?;
    let mut reason_codes = Vec::with_capacity(r.len());
    while !r.is_empty() {
        reason_codes.push(check_reason("UNSUBACK", r.get_u8(), UNSUBACK_CODES)?);
    }
    Ok(UnsubAck {
        packet_id,
        reason_codes,
        properties,
    })
}

/// DISCONNECT (section 3.14): empty in 3.x; in v5 an absent reason code means 0x00.
fn decode_disconnect(r: &mut Bytes, v5: bool) -> Result<Disconnect, DecodeError> {
    let mut d = Disconnect::default();
    if v5 && !r.is_empty() {
        d.reason_code = check_reason("DISCONNECT", read_u8(r, "reason code")?, DISCONNECT_CODES)?;
        if !r.is_empty() {
            d.properties = decode_disconnect_properties(r)?.into();
        }
    }
    finish(r, "DISCONNECT")?;
    Ok(d)
}

/// AUTH (section 3.15), v5 only: an empty body means Success without properties.
fn decode_auth(r: &mut Bytes) -> Result<Auth, DecodeError> {
    let mut a = Auth::default();
    if !r.is_empty() {
        a.reason_code = check_reason("AUTH", read_u8(r, "reason code")?, AUTH_CODES)?;
        if !r.is_empty() {
            a.properties = decode_auth_properties(r)?.into();
        }
    }
    finish(r, "AUTH")?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Topic bytes near every edge of the fast path: wildcards, NUL, multi-byte and broken
    /// UTF-8, lengths around the inline capacity and the 8-byte words.
    fn topic_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            6 => b'a'..=b'z',
            1 => Just(b'/'),
            1 => Just(b'+'),
            1 => Just(b'#'),
            1 => Just(0u8),
            1 => Just(0xC3u8),
            1 => Just(0xA9u8),
            1 => Just(0xE2u8),
            1 => Just(0xFFu8),
        ];
        proptest::collection::vec(byte, 0..=56)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// The fast path of `decode` answers exactly as the general PUBLISH decoder, on any
        /// first byte, topic, length field, packet identifier, property block and payload.
        #[test]
        fn common_publish_fast_path_agrees_with_decode_publish(
            flags in 0u8..16,
            topic in topic_bytes(),
            len_delta in prop_oneof![8 => Just(0i32), 1 => -3i32..=3],
            packet_id in prop_oneof![Just(0u16), Just(1u16), any::<u16>()],
            props in prop_oneof![
                Just(vec![0u8]),
                Just(vec![]),
                Just(vec![2, 0x23, 0]),
                Just(vec![3, 0x23, 0, 7]),
            ],
            payload in proptest::collection::vec(any::<u8>(), 0..80),
            version in prop_oneof![
                Just(ProtocolVersion::V31),
                Just(ProtocolVersion::V311),
                Just(ProtocolVersion::V5),
            ],
        ) {
            let byte1 = 0x30 | flags;
            let mut body = Vec::new();
            let len = (topic.len() as i32 + len_delta).max(0) as u16;
            body.extend_from_slice(&len.to_be_bytes());
            body.extend_from_slice(&topic);
            if (flags >> 1) & 3 != 0 {
                body.extend_from_slice(&packet_id.to_be_bytes());
            }
            if version.is_v5() {
                body.extend_from_slice(&props);
            }
            body.extend_from_slice(&payload);
            let mut buf = BytesMut::from(&[byte1][..]);
            crate::encode::put_vbi(&mut buf, body.len() as u32);
            buf.extend_from_slice(&body);

            let fast = decode(&mut buf, version, usize::MAX);
            let general = decode_publish(byte1, Bytes::from(body), version);
            prop_assert_eq!(&fast, &general);
            if fast.is_ok() {
                prop_assert!(buf.is_empty(), "the whole packet is consumed");
            }
        }
    }
}
