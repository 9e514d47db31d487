//! Errors of decoding and encoding. A [`DecodeError`] says exactly what was wrong with the bytes
//! and maps to the v5 reason code the receiver must answer with ([`DecodeError::reason_code`]).
//! An [`EncodeError`] is raised for a packet that cannot be put on the wire as it stands.

use crate::reason::ReasonCode;
use crate::topic::TopicError;
use thiserror::Error;

/// Why bytes could not be decoded into a packet.
///
/// Statement ids of the specifications are given where a rule has one. Variants documented as
/// "Malformed" map to reason code 0x81, "Protocol Error" to 0x82.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet (fixed header included) is larger than the maximum packet size; detected from
    /// the fixed header before the body is buffered. 0x95.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Size of the whole packet as announced by its fixed header.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// CONNECT with an unknown protocol name or level. The server answers CONNACK 0x01 (3.1.1)
    /// or 0x84 (5.0) [MQTT-3.1.2-2]. 0x84.
    #[error("unsupported protocol version (protocol level {level})")]
    UnsupportedProtocolVersion {
        /// The protocol level byte received (0 if the name was wrong before a level was read).
        level: u8,
    },
    /// Packet type 0, or 15 (AUTH) outside MQTT 5.0. Malformed.
    #[error("reserved or unknown control packet type {packet_type}")]
    ReservedPacketType {
        /// The packet type nibble.
        packet_type: u8,
    },
    /// Fixed header flag bits that the specification reserves were not as required
    /// [MQTT-2.2.2-1] (3.1.1: [MQTT-2.2.2-2]). Malformed.
    #[error("invalid fixed header flags 0x{flags:X} for {packet}")]
    InvalidFixedHeaderFlags {
        /// The packet type.
        packet: &'static str,
        /// The low four bits of the first byte.
        flags: u8,
    },
    /// A Variable Byte Integer longer than 4 bytes, or not encoded in the minimum number of bytes
    /// [MQTT-1.5.5-1]. Malformed.
    #[error("malformed variable byte integer in {field}")]
    MalformedVariableByteInteger {
        /// Where it was read.
        field: &'static str,
    },
    /// The remaining length ended before a field was complete. Malformed.
    #[error("packet ends in the middle of {field}")]
    UnexpectedEnd {
        /// The field being read.
        field: &'static str,
    },
    /// Bytes left over after the last field the packet can hold. Malformed.
    #[error("{count} unexpected bytes at the end of {packet}")]
    TrailingBytes {
        /// The packet type.
        packet: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// A UTF-8 Encoded String that is not well-formed UTF-8, including encoded surrogates
    /// [MQTT-1.5.4-1] (3.1.1: [MQTT-1.5.3-1]). Malformed.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A UTF-8 Encoded String containing U+0000 [MQTT-1.5.4-2] (3.1.1: [MQTT-1.5.3-2]). Malformed.
    #[error("{field} contains the null character U+0000")]
    NullCharacter {
        /// The field.
        field: &'static str,
    },
    /// QoS value 3 [MQTT-3.3.1-4], [MQTT-3.1.2-12] (Will QoS), or in subscription options.
    /// Malformed.
    #[error("invalid QoS 3 in {field}")]
    InvalidQoS {
        /// The field.
        field: &'static str,
    },
    /// DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]. Malformed.
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupOnQoS0,
    /// Packet Identifier 0 where a non-zero one is required [MQTT-2.2.1-3] (3.1.1:
    /// [MQTT-2.3.1-1]). Protocol Error.
    #[error("packet identifier 0 in {packet}")]
    ZeroPacketId {
        /// The packet type.
        packet: &'static str,
    },
    /// The Topic Name of a PUBLISH or Will is not a valid topic name [MQTT-3.3.2-2]. 0x90.
    #[error("invalid topic name: {0}")]
    InvalidTopicName(TopicError),
    /// A Topic Filter of SUBSCRIBE/UNSUBSCRIBE is not valid [MQTT-4.7.1-2], [MQTT-4.7.1-3],
    /// [MQTT-4.7.3-1], or a `$share/` filter is not well formed (section 4.8.2). 0x8F.
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(TopicError),
    /// A v5 PUBLISH with an empty Topic Name and no Topic Alias (section 3.3.2.1). Protocol Error.
    #[error("PUBLISH with an empty topic name and no topic alias")]
    EmptyTopicWithoutAlias,
    /// A Topic Alias property of 0 [MQTT-3.3.2-8]. 0x94.
    #[error("topic alias 0")]
    TopicAliasZero,
    /// The reserved bit 0 of the CONNECT flags is set [MQTT-3.1.2-3]. Malformed.
    #[error("reserved bit of the CONNECT flags is set")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain set without the Will Flag [MQTT-3.1.2-11], [MQTT-3.1.2-13],
    /// [MQTT-3.1.2-15] (3.1.1 numbering). Malformed.
    #[error("Will QoS or Will Retain set without the Will Flag")]
    WillFlagsWithoutWill,
    /// Password Flag set without User Name Flag in 3.1/3.1.1 [MQTT-3.1.2-22]. Malformed.
    #[error("password flag set without user name flag")]
    PasswordWithoutUsername,
    /// Reserved bits 7-1 of the CONNACK flags set [MQTT-3.2.2-1]. Malformed.
    #[error("reserved bits of the CONNACK flags set (0x{flags:02X})")]
    ConnAckReservedFlags {
        /// The flags byte.
        flags: u8,
    },
    /// Session Present set in a CONNACK that refuses the connection [MQTT-3.2.2-4]
    /// (5.0: [MQTT-3.2.2-6]). Protocol Error.
    #[error("session present set with a refusing CONNACK")]
    SessionPresentWithError,
    /// A reason code (or 3.1.1 return code) not defined for this packet. Malformed.
    #[error("reason code 0x{code:02X} is not defined for {packet}")]
    InvalidReasonCode {
        /// The packet type.
        packet: &'static str,
        /// The code.
        code: u8,
    },
    /// Reserved bits of the subscription options set [MQTT-3.8.3-4] (3.1.1),
    /// [MQTT-3.8.3-5] (5.0). Malformed.
    #[error("reserved bits of the subscription options set (0x{options:02X})")]
    SubscriptionOptionsReserved {
        /// The options byte.
        options: u8,
    },
    /// Retain Handling value 3 (section 3.8.3.1). Protocol Error.
    #[error("retain handling 3 in subscription options")]
    InvalidRetainHandling,
    /// No Local set on a shared subscription [MQTT-3.8.3-4] (5.0). Protocol Error.
    #[error("no local set on a shared subscription")]
    NoLocalOnSharedSubscription,
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter [MQTT-3.8.3-3], [MQTT-3.10.3-2].
    /// Protocol Error.
    #[error("{packet} without a topic filter")]
    NoTopicFilters {
        /// The packet type.
        packet: &'static str,
    },
    /// A property identifier the specification does not define (section 2.2.2.2). Malformed.
    #[error("unknown property identifier 0x{id:02X}")]
    UnknownProperty {
        /// The identifier.
        id: u32,
    },
    /// A property that this packet may not carry (section 2.2.2.2). Malformed.
    #[error("property 0x{id:02X} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// The identifier.
        id: u8,
        /// The packet type.
        packet: &'static str,
    },
    /// A property other than User Property and Subscription Identifier appeared twice
    /// (section 2.2.2.2 and each property's definition). Protocol Error.
    #[error("property 0x{id:02X} appears more than once in {packet}")]
    DuplicateProperty {
        /// The identifier.
        id: u8,
        /// The packet type.
        packet: &'static str,
    },
    /// A property value outside its range: Receive Maximum 0, Maximum Packet Size 0, Maximum QoS
    /// above 1, a boolean property above 1, Subscription Identifier 0 (section 3.x.2.x).
    /// Protocol Error.
    #[error("invalid value {value} for property {property}")]
    InvalidPropertyValue {
        /// The property name.
        property: &'static str,
        /// The value received.
        value: u32,
    },
    /// Authentication Data without Authentication Method (sections 3.1.2.11.10, 3.2.2.3.18,
    /// 3.15.2.2.3). Protocol Error.
    #[error("authentication data without authentication method")]
    AuthDataWithoutMethod,
    /// Response Topic property containing wildcards or empty [MQTT-3.3.2-14]. Protocol Error.
    #[error("invalid response topic: {0}")]
    InvalidResponseTopic(TopicError),
}

impl DecodeError {
    /// The v5 reason code to send in CONNACK or DISCONNECT for this error (section 4.13).
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            UnsupportedProtocolVersion { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            InvalidTopicName(_) => ReasonCode::TOPIC_NAME_INVALID,
            InvalidTopicFilter(_) => ReasonCode::TOPIC_FILTER_INVALID,
            TopicAliasZero => ReasonCode::TOPIC_ALIAS_INVALID,
            ZeroPacketId { .. }
            | EmptyTopicWithoutAlias
            | SessionPresentWithError
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription
            | NoTopicFilters { .. }
            | DuplicateProperty { .. }
            | InvalidPropertyValue { .. }
            | AuthDataWithoutMethod
            | InvalidResponseTopic(_) => ReasonCode::PROTOCOL_ERROR,
            ReservedPacketType { .. }
            | InvalidFixedHeaderFlags { .. }
            | MalformedVariableByteInteger { .. }
            | UnexpectedEnd { .. }
            | TrailingBytes { .. }
            | InvalidUtf8 { .. }
            | NullCharacter { .. }
            | InvalidQoS { .. }
            | DupOnQoS0
            | ConnectReservedFlag
            | WillFlagsWithoutWill
            | PasswordWithoutUsername
            | ConnAckReservedFlags { .. }
            | InvalidReasonCode { .. }
            | SubscriptionOptionsReserved { .. }
            | UnknownProperty { .. }
            | PropertyNotAllowed { .. } => ReasonCode::MALFORMED_PACKET,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A UTF-8 string longer than 65,535 bytes [MQTT-1.5.4-1].
    #[error("{field} is {len} bytes long; a string holds at most 65535")]
    StringTooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// Binary data longer than 65,535 bytes.
    #[error("{field} is {len} bytes long; binary data holds at most 65535")]
    BinaryTooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The remaining length would exceed 268,435,455 bytes.
    #[error("remaining length {len} exceeds 268435455")]
    PacketTooLarge {
        /// The remaining length the packet would need.
        len: usize,
    },
    /// Packet Identifier 0 where a non-zero one is required [MQTT-2.2.1-3].
    #[error("packet identifier 0 in {packet}")]
    ZeroPacketId {
        /// The packet type.
        packet: &'static str,
    },
    /// A packet that does not exist in the protocol version (AUTH before 5.0).
    #[error("{packet} does not exist in MQTT {version}")]
    NotInVersion {
        /// The packet type.
        packet: &'static str,
        /// The version, as "3.1" or "3.1.1".
        version: &'static str,
    },
    /// SUBSCRIBE or UNSUBSCRIBE without a topic filter [MQTT-3.8.3-3], [MQTT-3.10.3-2].
    #[error("{packet} without a topic filter")]
    NoTopicFilters {
        /// The packet type.
        packet: &'static str,
    },
    /// Password without user name, which 3.1/3.1.1 cannot carry [MQTT-3.1.2-22].
    #[error("password without user name is not allowed in MQTT 3.1/3.1.1")]
    PasswordWithoutUsername,
    /// A property value the specification forbids (Subscription Identifier 0 or above
    /// 268,435,455, Topic Alias 0, Receive Maximum 0, Maximum Packet Size 0, Maximum QoS > 1).
    #[error("invalid value {value} for property {property}")]
    InvalidPropertyValue {
        /// The property name.
        property: &'static str,
        /// The value.
        value: u64,
    },
}
