//! Encoding: [`Packet`] in, bytes out. The exact size is computed (and every length checked)
//! first, the buffer reserved once, then the packet written without further checks.
//!
//! For 3.1/3.1.1, fields that only exist in 5.0 (properties, most reason codes) are ignored.
//! A CONNECT is encoded by its own `protocol` field, whatever version is passed.

use crate::decode::MAX_VARIABLE_BYTE_INTEGER;
use crate::error::EncodeError;
use crate::packet::*;
use crate::properties::*;
use crate::reason::ReasonCode;
use crate::types::{ByteStr, ProtocolVersion, QoS, SubscriptionOptions};
use bytes::{BufMut, Bytes, BytesMut};

/// Size in bytes of the whole packet (fixed header included) as [`encode`] would write it, e.g. to
/// respect a peer's Maximum Packet Size.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let remaining = remaining_len(packet, version)?;
    Ok(1 + vbi_len(remaining as u32) + remaining)
}

/// Appends `packet` encoded for `version` to `buf`. Nothing is written on error.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    match packet {
        Packet::Publish(p) => encode_publish(p, version, buf),
        _ => encode_other(packet, version, buf),
    }
}

/// Every packet but PUBLISH: sizes, one reservation, the fixed header and the body.
fn encode_other(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let remaining = remaining_len(packet, version)?;
    buf.reserve(1 + vbi_len(remaining as u32) + remaining);
    buf.put_u8(first_byte(packet));
    put_vbi(buf, remaining as u32);
    write_body(packet, version, buf)
}

/// PUBLISH, the packet on the hot path, without the general dispatch: one test for the rules
/// that can refuse it, one reservation, then the fixed header and topic length as one word,
/// the topic, the packet identifier, the empty property block (v5) and the payload. A v5
/// PUBLISH with properties takes [`encode_publish_with_properties`], out of line.
#[inline(always)]
fn encode_publish(
    p: &Publish,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let v5 = version.is_v5();
    // An absent property block (the common case) is one pointer test.
    if v5 && p.properties.get().is_some_and(|props| !props.is_empty()) {
        return encode_publish_with_properties(p, buf);
    }
    let topic = p.topic.as_bytes();
    let with_id = p.qos != QoS::AtMostOnce;
    let remaining = 2 + topic.len() + 2 * usize::from(with_id) + usize::from(v5) + p.payload.len();
    // All three rules in one test, the error worked out off the hot path.
    if topic.len() > 65_535
        || (with_id && p.packet_id == 0)
        || remaining > MAX_VARIABLE_BYTE_INTEGER as usize
    {
        return Err(publish_error(p, topic.len(), remaining));
    }
    put_publish_head(p, remaining, buf);
    if v5 {
        buf.put_u8(0);
    }
    buf.put_slice(&p.payload);
    Ok(())
}

/// A v5 PUBLISH that carries properties.
#[inline(never)]
fn encode_publish_with_properties(p: &Publish, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let topic = p.topic.as_bytes();
    let with_id = p.qos != QoS::AtMostOnce;
    let props = publish_props_len(&p.properties)?;
    let remaining = 2 + topic.len() + 2 * usize::from(with_id) + block(props) + p.payload.len();
    if topic.len() > 65_535
        || (with_id && p.packet_id == 0)
        || remaining > MAX_VARIABLE_BYTE_INTEGER as usize
    {
        return Err(publish_error(p, topic.len(), remaining));
    }
    put_publish_head(p, remaining, buf);
    write_publish_props(buf, &p.properties)?;
    buf.put_slice(&p.payload);
    Ok(())
}

/// Reserves room for a PUBLISH of `remaining` bytes after its fixed header, and writes the fixed
/// header, the topic and the packet identifier.
#[inline(always)]
fn put_publish_head(p: &Publish, remaining: usize, buf: &mut BytesMut) {
    let topic = p.topic.as_bytes();
    // Room for the packet (a fixed header of at most 5 bytes), and for the whole word the
    // header is written as.
    buf.reserve(remaining + 5 + 8);
    // The fixed header (at most 5 bytes) and the topic length in one little-endian word, written
    // whole (one fixed-size store, no `memcpy` call) and then cut to its length.
    let (vbi, vbi_len) = vbi_word(remaining as u32);
    let first = 0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain);
    let head = u64::from(first)
        | (vbi << 8)
        | (u64::from((topic.len() as u16).swap_bytes()) << (8 * (1 + vbi_len)));
    let start = buf.len();
    buf.put_u64_le(head);
    buf.truncate(start + 1 + vbi_len + 2);
    buf.put_slice(topic);
    if p.qos != QoS::AtMostOnce {
        buf.put_u16(p.packet_id);
    }
}

/// Which rule a PUBLISH that [`encode_publish`] refused broke.
#[cold]
#[inline(never)]
fn publish_error(p: &Publish, topic_len: usize, remaining: usize) -> EncodeError {
    if topic_len > 65_535 {
        EncodeError::StringTooLong {
            field: "topic name",
            len: topic_len,
        }
    } else if p.qos != QoS::AtMostOnce && p.packet_id == 0 {
        EncodeError::ZeroPacketId { packet: "PUBLISH" }
    } else {
        EncodeError::PacketTooLarge { len: remaining }
    }
}

fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => {
            0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

// ---------------------------------------------------------------------------------------------
// Sizes, with every check that can fail.

/// The Variable Byte Integer encoding of `v` (at most [`MAX_VARIABLE_BYTE_INTEGER`]) as the
/// low bytes of a little-endian word, and its length, without a loop.
#[inline]
fn vbi_word(v: u32) -> (u64, usize) {
    let v = u64::from(v);
    let [b0, b1, b2, b3] = [
        v & 0x7F,
        (v >> 7) & 0x7F,
        (v >> 14) & 0x7F,
        (v >> 21) & 0x7F,
    ];
    match v {
        0..=127 => (b0, 1),
        128..=16_383 => (b0 | 0x80 | (b1 << 8), 2),
        16_384..=2_097_151 => (b0 | 0x80 | ((b1 | 0x80) << 8) | (b2 << 16), 3),
        _ => (
            b0 | 0x80 | ((b1 | 0x80) << 8) | ((b2 | 0x80) << 16) | (b3 << 24),
            4,
        ),
    }
}

fn vbi_len(v: u32) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// The bytes of a string to put on the wire.
trait Wire {
    fn wire(&self) -> &[u8];
}

impl Wire for ByteStr {
    #[inline]
    fn wire(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Wire for str {
    #[inline]
    fn wire(&self) -> &[u8] {
        self.as_bytes()
    }
}

fn str_len<S: Wire + ?Sized>(s: &S, field: &'static str) -> Result<usize, EncodeError> {
    let len = s.wire().len();
    if len > 65_535 {
        return Err(EncodeError::StringTooLong { field, len });
    }
    Ok(2 + len)
}

fn bin_len(b: &[u8], field: &'static str) -> Result<usize, EncodeError> {
    if b.len() > 65_535 {
        return Err(EncodeError::BinaryTooLong {
            field,
            len: b.len(),
        });
    }
    Ok(2 + b.len())
}

fn check_packet_id(id: u16, packet: &'static str) -> Result<(), EncodeError> {
    if id == 0 {
        return Err(EncodeError::ZeroPacketId { packet });
    }
    Ok(())
}

fn version_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V31 => "3.1",
        ProtocolVersion::V311 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}

/// Property size accumulator: each `add_*` adds identifier plus value.
#[derive(Default)]
struct PropLen(usize);

impl PropLen {
    fn byte<T>(&mut self, v: &Option<T>) {
        if v.is_some() {
            self.0 += 2;
        }
    }
    fn two(&mut self, v: Option<u16>) {
        if v.is_some() {
            self.0 += 3;
        }
    }
    fn four(&mut self, v: Option<u32>) {
        if v.is_some() {
            self.0 += 5;
        }
    }
    fn str(&mut self, v: &Option<ByteStr>, field: &'static str) -> Result<(), EncodeError> {
        if let Some(s) = v {
            self.0 += 1 + str_len(s, field)?;
        }
        Ok(())
    }
    fn bin(&mut self, v: &Option<Bytes>, field: &'static str) -> Result<(), EncodeError> {
        if let Some(b) = v {
            self.0 += 1 + bin_len(b, field)?;
        }
        Ok(())
    }
    fn users(&mut self, v: &[UserProperty]) -> Result<(), EncodeError> {
        for (k, val) in v {
            self.0 += 1 + str_len(k, "user property name")? + str_len(val, "user property value")?;
        }
        Ok(())
    }
    fn sub_id(&mut self, v: u32) -> Result<(), EncodeError> {
        if v == 0 || v > MAX_VARIABLE_BYTE_INTEGER {
            return Err(EncodeError::InvalidPropertyValue {
                property: "Subscription Identifier",
                value: v.into(),
            });
        }
        self.0 += 1 + vbi_len(v);
        Ok(())
    }
    /// The property block: its length as a Variable Byte Integer, then the properties.
    fn block(self) -> usize {
        vbi_len(self.0 as u32) + self.0
    }
}

fn nonzero(v: Option<u32>, property: &'static str) -> Result<(), EncodeError> {
    if v == Some(0) {
        return Err(EncodeError::InvalidPropertyValue { property, value: 0 });
    }
    Ok(())
}

fn connect_props_len(p: &ConnectProperties) -> Result<usize, EncodeError> {
    nonzero(p.receive_maximum.map(u32::from), "Receive Maximum")?;
    nonzero(p.maximum_packet_size, "Maximum Packet Size")?;
    let mut l = PropLen::default();
    l.four(p.session_expiry_interval);
    l.two(p.receive_maximum);
    l.four(p.maximum_packet_size);
    l.two(p.topic_alias_maximum);
    l.byte(&p.request_response_information);
    l.byte(&p.request_problem_information);
    l.users(&p.user_properties)?;
    l.str(&p.authentication_method, "Authentication Method")?;
    l.bin(&p.authentication_data, "Authentication Data")?;
    Ok(l.0)
}

fn will_props_len(p: &WillProperties) -> Result<usize, EncodeError> {
    let mut l = PropLen::default();
    l.four(p.will_delay_interval);
    l.byte(&p.payload_format_indicator);
    l.four(p.message_expiry_interval);
    l.str(&p.content_type, "Content Type")?;
    l.str(&p.response_topic, "Response Topic")?;
    l.bin(&p.correlation_data, "Correlation Data")?;
    l.users(&p.user_properties)?;
    Ok(l.0)
}

fn connack_props_len(p: &ConnAckProperties) -> Result<usize, EncodeError> {
    nonzero(p.receive_maximum.map(u32::from), "Receive Maximum")?;
    nonzero(p.maximum_packet_size, "Maximum Packet Size")?;
    if let Some(q) = p.maximum_qos.filter(|&q| q > 1) {
        return Err(EncodeError::InvalidPropertyValue {
            property: "Maximum QoS",
            value: q.into(),
        });
    }
    let mut l = PropLen::default();
    l.four(p.session_expiry_interval);
    l.two(p.receive_maximum);
    l.byte(&p.maximum_qos);
    l.byte(&p.retain_available);
    l.four(p.maximum_packet_size);
    l.str(&p.assigned_client_identifier, "Assigned Client Identifier")?;
    l.two(p.topic_alias_maximum);
    l.str(&p.reason_string, "Reason String")?;
    l.users(&p.user_properties)?;
    l.byte(&p.wildcard_subscription_available);
    l.byte(&p.subscription_identifiers_available);
    l.byte(&p.shared_subscription_available);
    l.two(p.server_keep_alive);
    l.str(&p.response_information, "Response Information")?;
    l.str(&p.server_reference, "Server Reference")?;
    l.str(&p.authentication_method, "Authentication Method")?;
    l.bin(&p.authentication_data, "Authentication Data")?;
    Ok(l.0)
}

fn publish_props_len(p: &PublishProperties) -> Result<usize, EncodeError> {
    if p.is_empty() {
        return Ok(0);
    }
    nonzero(p.topic_alias.map(u32::from), "Topic Alias")?;
    let mut l = PropLen::default();
    l.byte(&p.payload_format_indicator);
    l.four(p.message_expiry_interval);
    l.two(p.topic_alias);
    l.str(&p.response_topic, "Response Topic")?;
    l.bin(&p.correlation_data, "Correlation Data")?;
    l.users(&p.user_properties)?;
    for &id in &p.subscription_identifiers {
        l.sub_id(id)?;
    }
    l.str(&p.content_type, "Content Type")?;
    Ok(l.0)
}

fn ack_props_len(p: &AckProperties) -> Result<usize, EncodeError> {
    let mut l = PropLen::default();
    l.str(&p.reason_string, "Reason String")?;
    l.users(&p.user_properties)?;
    Ok(l.0)
}

fn subscribe_props_len(p: &SubscribeProperties) -> Result<usize, EncodeError> {
    let mut l = PropLen::default();
    if let Some(id) = p.subscription_identifier {
        l.sub_id(id)?;
    }
    l.users(&p.user_properties)?;
    Ok(l.0)
}

fn unsubscribe_props_len(p: &UnsubscribeProperties) -> Result<usize, EncodeError> {
    let mut l = PropLen::default();
    l.users(&p.user_properties)?;
    Ok(l.0)
}

fn disconnect_props_len(p: &DisconnectProperties) -> Result<usize, EncodeError> {
    let mut l = PropLen::default();
    l.four(p.session_expiry_interval);
    l.str(&p.reason_string, "Reason String")?;
    l.users(&p.user_properties)?;
    l.str(&p.server_reference, "Server Reference")?;
    Ok(l.0)
}

fn auth_props_len(p: &AuthProperties) -> Result<usize, EncodeError> {
    let mut l = PropLen::default();
    l.str(&p.authentication_method, "Authentication Method")?;
    l.bin(&p.authentication_data, "Authentication Data")?;
    l.str(&p.reason_string, "Reason String")?;
    l.users(&p.user_properties)?;
    Ok(l.0)
}

fn block(props_len: usize) -> usize {
    PropLen(props_len).block()
}

/// Whether a v5 acknowledgement can leave out its reason code and properties (section 3.4.2.1).
fn ack_is_short(reason: ReasonCode, props: &AckProperties) -> bool {
    reason == ReasonCode::SUCCESS && props.is_empty()
}

fn remaining_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let v5 = version.is_v5();
    let len = match packet {
        Packet::Connect(c) => connect_len(c)?,
        Packet::ConnAck(c) => {
            2 + if v5 {
                block(connack_props_len(&c.properties)?)
            } else {
                0
            }
        }
        Packet::Publish(p) => {
            let mut len = str_len(&p.topic, "topic name")? + p.payload.len();
            if p.qos != QoS::AtMostOnce {
                check_packet_id(p.packet_id, "PUBLISH")?;
                len += 2;
            }
            if v5 {
                len += block(publish_props_len(&p.properties)?);
            }
            len
        }
        Packet::PubAck(PubAck {
            packet_id,
            reason_code,
            properties,
        })
        | Packet::PubRec(PubRec {
            packet_id,
            reason_code,
            properties,
        })
        | Packet::PubRel(PubRel {
            packet_id,
            reason_code,
            properties,
        })
        | Packet::PubComp(PubComp {
            packet_id,
            reason_code,
            properties,
        }) => {
            check_packet_id(*packet_id, packet.name())?;
            if !v5 || ack_is_short(*reason_code, properties) {
                2
            } else if properties.is_empty() {
                3
            } else {
                3 + block(ack_props_len(properties)?)
            }
        }
        Packet::Subscribe(s) => {
            check_packet_id(s.packet_id, "SUBSCRIBE")?;
            if s.filters.is_empty() {
                return Err(EncodeError::NoTopicFilters {
                    packet: "SUBSCRIBE",
                });
            }
            let mut len = 2;
            if v5 {
                len += block(subscribe_props_len(&s.properties)?);
            }
            for (f, _) in &s.filters {
                len += str_len(f, "topic filter")? + 1;
            }
            len
        }
        Packet::SubAck(s) => {
            check_packet_id(s.packet_id, "SUBACK")?;
            let mut len = 2 + s.reason_codes.len();
            if v5 {
                len += block(ack_props_len(&s.properties)?);
            }
            len
        }
        Packet::Unsubscribe(u) => {
            check_packet_id(u.packet_id, "UNSUBSCRIBE")?;
            if u.filters.is_empty() {
                return Err(EncodeError::NoTopicFilters {
                    packet: "UNSUBSCRIBE",
                });
            }
            let mut len = 2;
            if v5 {
                len += block(unsubscribe_props_len(&u.properties)?);
            }
            for f in &u.filters {
                len += str_len(f, "topic filter")?;
            }
            len
        }
        Packet::UnsubAck(u) => {
            check_packet_id(u.packet_id, "UNSUBACK")?;
            if v5 {
                2 + block(ack_props_len(&u.properties)?) + u.reason_codes.len()
            } else {
                2
            }
        }
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => {
            // With a reason code, the property length is written even when 0: section
            // 3.14.2.2.1 allows leaving it out, but some decoders (rumqttc 0.25) then fail.
            if !v5 || (d.reason_code == ReasonCode::SUCCESS && d.properties.is_empty()) {
                0
            } else {
                1 + block(disconnect_props_len(&d.properties)?)
            }
        }
        Packet::Auth(a) => {
            if !v5 {
                return Err(EncodeError::NotInVersion {
                    packet: "AUTH",
                    version: version_name(version),
                });
            }
            let props = auth_props_len(&a.properties)?;
            if a.reason_code == ReasonCode::SUCCESS && props == 0 {
                0
            } else {
                1 + block(props)
            }
        }
    };
    if len > MAX_VARIABLE_BYTE_INTEGER as usize {
        return Err(EncodeError::PacketTooLarge { len });
    }
    Ok(len)
}

fn connect_len(c: &Connect) -> Result<usize, EncodeError> {
    let v5 = c.protocol.is_v5();
    // Protocol name, level, flags, keep alive.
    let mut len = 2 + c.protocol.protocol_name().len() + 1 + 1 + 2;
    if v5 {
        len += block(connect_props_len(&c.properties)?);
    }
    len += str_len(&c.client_id, "client identifier")?;
    if let Some(w) = &c.will {
        if v5 {
            len += block(will_props_len(&w.properties)?);
        }
        len += str_len(&w.topic, "will topic")? + bin_len(&w.payload, "will payload")?;
    }
    if let Some(u) = &c.username {
        len += str_len(u, "user name")?;
    } else if c.password.is_some() && !v5 {
        return Err(EncodeError::PasswordWithoutUsername);
    }
    if let Some(p) = &c.password {
        len += bin_len(p, "password")?;
    }
    Ok(len)
}

// ---------------------------------------------------------------------------------------------
// Writers. Every length was checked by `remaining_len`.

/// Writes `v` as a variable byte integer.
pub(crate) fn put_vbi(buf: &mut BytesMut, mut v: u32) {
    loop {
        let mut b = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            b |= 0x80;
        }
        buf.put_u8(b);
        if v == 0 {
            return;
        }
    }
}

fn put_bin(buf: &mut BytesMut, b: &[u8]) {
    buf.put_u16(b.len() as u16);
    buf.put_slice(b);
}

fn put_str<S: Wire + ?Sized>(buf: &mut BytesMut, s: &S) {
    put_bin(buf, s.wire());
}

/// Property writers: identifier then value, nothing when absent.
struct PropW<'a>(&'a mut BytesMut);

impl PropW<'_> {
    fn byte(&mut self, id: PropertyId, v: Option<u8>) {
        if let Some(v) = v {
            self.0.put_u8(id as u8);
            self.0.put_u8(v);
        }
    }
    fn bool(&mut self, id: PropertyId, v: Option<bool>) {
        self.byte(id, v.map(u8::from));
    }
    fn two(&mut self, id: PropertyId, v: Option<u16>) {
        if let Some(v) = v {
            self.0.put_u8(id as u8);
            self.0.put_u16(v);
        }
    }
    fn four(&mut self, id: PropertyId, v: Option<u32>) {
        if let Some(v) = v {
            self.0.put_u8(id as u8);
            self.0.put_u32(v);
        }
    }
    fn str(&mut self, id: PropertyId, v: &Option<ByteStr>) {
        if let Some(v) = v {
            self.0.put_u8(id as u8);
            put_str(self.0, v);
        }
    }
    fn bin(&mut self, id: PropertyId, v: &Option<Bytes>) {
        if let Some(v) = v {
            self.0.put_u8(id as u8);
            put_bin(self.0, v);
        }
    }
    fn users(&mut self, v: &[UserProperty]) {
        for (k, val) in v {
            self.0.put_u8(PropertyId::UserProperty as u8);
            put_str(self.0, k);
            put_str(self.0, val);
        }
    }
    fn vbi(&mut self, id: PropertyId, v: u32) {
        self.0.put_u8(id as u8);
        put_vbi(self.0, v);
    }
}

fn write_connect_props(buf: &mut BytesMut, p: &ConnectProperties) -> Result<(), EncodeError> {
    put_vbi(buf, connect_props_len(p)? as u32);
    use PropertyId as I;
    let mut w = PropW(buf);
    w.four(I::SessionExpiryInterval, p.session_expiry_interval);
    w.two(I::ReceiveMaximum, p.receive_maximum);
    w.four(I::MaximumPacketSize, p.maximum_packet_size);
    w.two(I::TopicAliasMaximum, p.topic_alias_maximum);
    w.bool(
        I::RequestResponseInformation,
        p.request_response_information,
    );
    w.bool(I::RequestProblemInformation, p.request_problem_information);
    w.users(&p.user_properties);
    w.str(I::AuthenticationMethod, &p.authentication_method);
    w.bin(I::AuthenticationData, &p.authentication_data);
    Ok(())
}

fn write_will_props(buf: &mut BytesMut, p: &WillProperties) -> Result<(), EncodeError> {
    put_vbi(buf, will_props_len(p)? as u32);
    use PropertyId as I;
    let mut w = PropW(buf);
    w.four(I::WillDelayInterval, p.will_delay_interval);
    w.bool(I::PayloadFormatIndicator, p.payload_format_indicator);
    w.four(I::MessageExpiryInterval, p.message_expiry_interval);
    w.str(I::ContentType, &p.content_type);
    w.str(I::ResponseTopic, &p.response_topic);
    w.bin(I::CorrelationData, &p.correlation_data);
    w.users(&p.user_properties);
    Ok(())
}

fn write_connack_props(buf: &mut BytesMut, p: &ConnAckProperties) -> Result<(), EncodeError> {
    put_vbi(buf, connack_props_len(p)? as u32);
    use PropertyId as I;
    let mut w = PropW(buf);
    w.four(I::SessionExpiryInterval, p.session_expiry_interval);
    w.two(I::ReceiveMaximum, p.receive_maximum);
    w.byte(I::MaximumQos, p.maximum_qos);
    w.bool(I::RetainAvailable, p.retain_available);
    w.four(I::MaximumPacketSize, p.maximum_packet_size);
    w.str(I::AssignedClientIdentifier, &p.assigned_client_identifier);
    w.two(I::TopicAliasMaximum, p.topic_alias_maximum);
    w.str(I::ReasonString, &p.reason_string);
    w.users(&p.user_properties);
    w.bool(
        I::WildcardSubscriptionAvailable,
        p.wildcard_subscription_available,
    );
    w.bool(
        I::SubscriptionIdentifierAvailable,
        p.subscription_identifiers_available,
    );
    w.bool(
        I::SharedSubscriptionAvailable,
        p.shared_subscription_available,
    );
    w.two(I::ServerKeepAlive, p.server_keep_alive);
    w.str(I::ResponseInformation, &p.response_information);
    w.str(I::ServerReference, &p.server_reference);
    w.str(I::AuthenticationMethod, &p.authentication_method);
    w.bin(I::AuthenticationData, &p.authentication_data);
    Ok(())
}

fn write_publish_props(buf: &mut BytesMut, p: &PublishProperties) -> Result<(), EncodeError> {
    if p.is_empty() {
        buf.put_u8(0);
        return Ok(());
    }
    put_vbi(buf, publish_props_len(p)? as u32);
    use PropertyId as I;
    let mut w = PropW(buf);
    w.bool(I::PayloadFormatIndicator, p.payload_format_indicator);
    w.four(I::MessageExpiryInterval, p.message_expiry_interval);
    w.two(I::TopicAlias, p.topic_alias);
    w.str(I::ResponseTopic, &p.response_topic);
    w.bin(I::CorrelationData, &p.correlation_data);
    w.users(&p.user_properties);
    for &id in &p.subscription_identifiers {
        w.vbi(I::SubscriptionIdentifier, id);
    }
    w.str(I::ContentType, &p.content_type);
    Ok(())
}

fn write_ack_props(buf: &mut BytesMut, p: &AckProperties) -> Result<(), EncodeError> {
    put_vbi(buf, ack_props_len(p)? as u32);
    let mut w = PropW(buf);
    w.str(PropertyId::ReasonString, &p.reason_string);
    w.users(&p.user_properties);
    Ok(())
}

fn write_body(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(c) => write_connect(c, buf)?,
        Packet::ConnAck(c) => {
            buf.put_u8(u8::from(c.session_present));
            if v5 {
                buf.put_u8(c.reason_code.0);
                write_connack_props(buf, &c.properties)?;
            } else {
                // v5 codes map onto the six 3.1.1 return codes.
                let code = if c.reason_code.is_error() {
                    c.reason_code.to_v3_connack()
                } else {
                    c.reason_code
                };
                buf.put_u8(code.0);
            }
        }
        Packet::Publish(p) => {
            put_str(buf, &p.topic);
            if p.qos != QoS::AtMostOnce {
                buf.put_u16(p.packet_id);
            }
            if v5 {
                write_publish_props(buf, &p.properties)?;
            }
            buf.put_slice(&p.payload);
        }
        Packet::PubAck(PubAck {
            packet_id,
            reason_code,
            properties,
        })
        | Packet::PubRec(PubRec {
            packet_id,
            reason_code,
            properties,
        })
        | Packet::PubRel(PubRel {
            packet_id,
            reason_code,
            properties,
        })
        | Packet::PubComp(PubComp {
            packet_id,
            reason_code,
            properties,
        }) => {
            buf.put_u16(*packet_id);
            if v5 && !ack_is_short(*reason_code, properties) {
                buf.put_u8(reason_code.0);
                if !properties.is_empty() {
                    write_ack_props(buf, properties)?;
                }
            }
        }
        Packet::Subscribe(s) => {
            buf.put_u16(s.packet_id);
            if v5 {
                put_vbi(buf, subscribe_props_len(&s.properties)? as u32);
                let mut w = PropW(buf);
                if let Some(id) = s.properties.subscription_identifier {
                    w.vbi(PropertyId::SubscriptionIdentifier, id);
                }
                w.users(&s.properties.user_properties);
            }
            for (f, o) in &s.filters {
                put_str(buf, f);
                buf.put_u8(options_byte(o, v5));
            }
        }
        Packet::SubAck(s) => {
            buf.put_u16(s.packet_id);
            if v5 {
                write_ack_props(buf, &s.properties)?;
                for c in &s.reason_codes {
                    buf.put_u8(c.0);
                }
            } else {
                for c in &s.reason_codes {
                    // 3.1.1 has one failure code [MQTT-3.9.3-2].
                    buf.put_u8(if c.is_error() { 0x80 } else { c.0 });
                }
            }
        }
        Packet::Unsubscribe(u) => {
            buf.put_u16(u.packet_id);
            if v5 {
                put_vbi(buf, unsubscribe_props_len(&u.properties)? as u32);
                PropW(buf).users(&u.properties.user_properties);
            }
            for f in &u.filters {
                put_str(buf, f);
            }
        }
        Packet::UnsubAck(u) => {
            buf.put_u16(u.packet_id);
            if v5 {
                write_ack_props(buf, &u.properties)?;
                for c in &u.reason_codes {
                    buf.put_u8(c.0);
                }
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            if v5 && !(d.reason_code == ReasonCode::SUCCESS && d.properties.is_empty()) {
                buf.put_u8(d.reason_code.0);
                let p = &d.properties;
                put_vbi(buf, disconnect_props_len(p)? as u32);
                use PropertyId as I;
                let mut w = PropW(buf);
                w.four(I::SessionExpiryInterval, p.session_expiry_interval);
                w.str(I::ReasonString, &p.reason_string);
                w.users(&p.user_properties);
                w.str(I::ServerReference, &p.server_reference);
            }
        }
        Packet::Auth(a) => {
            let p = &a.properties;
            let props = auth_props_len(p)?;
            if !(a.reason_code == ReasonCode::SUCCESS && props == 0) {
                buf.put_u8(a.reason_code.0);
                put_vbi(buf, props as u32);
                use PropertyId as I;
                let mut w = PropW(buf);
                w.str(I::AuthenticationMethod, &p.authentication_method);
                w.bin(I::AuthenticationData, &p.authentication_data);
                w.str(I::ReasonString, &p.reason_string);
                w.users(&p.user_properties);
            }
        }
    }
    Ok(())
}

fn options_byte(o: &SubscriptionOptions, v5: bool) -> u8 {
    let mut b = o.qos as u8;
    if v5 {
        b |= u8::from(o.no_local) << 2;
        b |= u8::from(o.retain_as_published) << 3;
        b |= (o.retain_handling as u8) << 4;
    }
    b
}

fn write_connect(c: &Connect, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let v5 = c.protocol.is_v5();
    put_str(buf, c.protocol.protocol_name());
    buf.put_u8(c.protocol.level());
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | ((w.qos as u8) << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    if v5 {
        write_connect_props(buf, &c.properties)?;
    }
    put_str(buf, &c.client_id);
    if let Some(w) = &c.will {
        if v5 {
            write_will_props(buf, &w.properties)?;
        }
        put_str(buf, &w.topic);
        put_bin(buf, &w.payload);
    }
    if let Some(u) = &c.username {
        put_str(buf, u);
    }
    if let Some(p) = &c.password {
        put_bin(buf, p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop-free Variable Byte Integer of the PUBLISH header writes the same bytes as the
    /// general encoder, at every length boundary [MQTT-1.5.5-1].
    #[test]
    fn vbi_word_matches_put_vbi_at_every_boundary() {
        for v in [
            0,
            1,
            127,
            128,
            129,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_VARIABLE_BYTE_INTEGER - 1,
            MAX_VARIABLE_BYTE_INTEGER,
        ] {
            let mut expected = BytesMut::new();
            put_vbi(&mut expected, v);
            let (word, len) = vbi_word(v);
            assert_eq!(len, vbi_len(v), "length of {v}");
            assert_eq!(&word.to_le_bytes()[..len], &expected[..], "bytes of {v}");
            assert_eq!(word >> (8 * len), 0, "nothing past the integer for {v}");
        }
    }
}
