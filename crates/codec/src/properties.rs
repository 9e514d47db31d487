//! MQTT 5.0 properties (spec section 2.2.2), one struct per packet kind, so that only the
//! properties a packet may carry can be represented [MQTT-2.2.2-2]. The decoder rejects a
//! property that is not allowed in the packet, and a duplicate of any property but User Property
//! and Subscription Identifier, as a Protocol Error.

use crate::types::ByteStr;
use bytes::Bytes;

/// A User Property name/value pair; may appear any number of times and order is kept.
pub type UserProperty = (ByteStr, ByteStr);

/// Property identifiers (spec table 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum PropertyId {
    PayloadFormatIndicator = 0x01,
    MessageExpiryInterval = 0x02,
    ContentType = 0x03,
    ResponseTopic = 0x08,
    CorrelationData = 0x09,
    SubscriptionIdentifier = 0x0B,
    SessionExpiryInterval = 0x11,
    AssignedClientIdentifier = 0x12,
    ServerKeepAlive = 0x13,
    AuthenticationMethod = 0x15,
    AuthenticationData = 0x16,
    RequestProblemInformation = 0x17,
    WillDelayInterval = 0x18,
    RequestResponseInformation = 0x19,
    ResponseInformation = 0x1A,
    ServerReference = 0x1C,
    ReasonString = 0x1F,
    ReceiveMaximum = 0x21,
    TopicAliasMaximum = 0x22,
    TopicAlias = 0x23,
    MaximumQos = 0x24,
    RetainAvailable = 0x25,
    UserProperty = 0x26,
    MaximumPacketSize = 0x27,
    WildcardSubscriptionAvailable = 0x28,
    SubscriptionIdentifierAvailable = 0x29,
    SharedSubscriptionAvailable = 0x2A,
}

impl PropertyId {
    /// The property for an identifier byte, or `None` if the spec defines no such property.
    pub fn from_u8(v: u8) -> Option<PropertyId> {
        use PropertyId::*;
        Some(match v {
            0x01 => PayloadFormatIndicator,
            0x02 => MessageExpiryInterval,
            0x03 => ContentType,
            0x08 => ResponseTopic,
            0x09 => CorrelationData,
            0x0B => SubscriptionIdentifier,
            0x11 => SessionExpiryInterval,
            0x12 => AssignedClientIdentifier,
            0x13 => ServerKeepAlive,
            0x15 => AuthenticationMethod,
            0x16 => AuthenticationData,
            0x17 => RequestProblemInformation,
            0x18 => WillDelayInterval,
            0x19 => RequestResponseInformation,
            0x1A => ResponseInformation,
            0x1C => ServerReference,
            0x1F => ReasonString,
            0x21 => ReceiveMaximum,
            0x22 => TopicAliasMaximum,
            0x23 => TopicAlias,
            0x24 => MaximumQos,
            0x25 => RetainAvailable,
            0x26 => UserProperty,
            0x27 => MaximumPacketSize,
            0x28 => WildcardSubscriptionAvailable,
            0x29 => SubscriptionIdentifierAvailable,
            0x2A => SharedSubscriptionAvailable,
            _ => return None,
        })
    }
}

/// Properties of CONNECT (section 3.1.2.11).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    /// Session Expiry Interval in seconds; absent means 0.
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum; 0 is a Protocol Error; absent means 65,535.
    pub receive_maximum: Option<u16>,
    /// Maximum Packet Size the client accepts; 0 is a Protocol Error.
    pub maximum_packet_size: Option<u32>,
    /// Topic Alias Maximum the client accepts from the server.
    pub topic_alias_maximum: Option<u16>,
    /// Request Response Information (0 or 1).
    pub request_response_information: Option<bool>,
    /// Request Problem Information (0 or 1).
    pub request_problem_information: Option<bool>,
    /// User Properties.
    pub user_properties: Vec<UserProperty>,
    /// Authentication Method for enhanced authentication.
    pub authentication_method: Option<ByteStr>,
    /// Authentication Data; only valid with an Authentication Method.
    pub authentication_data: Option<Bytes>,
}

/// Properties of the Will Message in CONNECT's payload (section 3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    /// Will Delay Interval in seconds.
    pub will_delay_interval: Option<u32>,
    /// Payload Format Indicator: false = unspecified bytes, true = UTF-8.
    pub payload_format_indicator: Option<bool>,
    /// Message Expiry Interval in seconds.
    pub message_expiry_interval: Option<u32>,
    /// Content Type.
    pub content_type: Option<ByteStr>,
    /// Response Topic (a topic name, no wildcards).
    pub response_topic: Option<ByteStr>,
    /// Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// User Properties.
    pub user_properties: Vec<UserProperty>,
}

/// Properties of CONNACK (section 3.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAckProperties {
    /// Session Expiry Interval the server will use, when different from the client's.
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum of the server.
    pub receive_maximum: Option<u16>,
    /// Maximum QoS the server supports (0 or 1; absent means 2).
    pub maximum_qos: Option<u8>,
    /// Retain Available.
    pub retain_available: Option<bool>,
    /// Maximum Packet Size the server accepts.
    pub maximum_packet_size: Option<u32>,
    /// Assigned Client Identifier, when the client sent an empty one.
    pub assigned_client_identifier: Option<ByteStr>,
    /// Topic Alias Maximum the server accepts.
    pub topic_alias_maximum: Option<u16>,
    /// Reason String.
    pub reason_string: Option<ByteStr>,
    /// User Properties.
    pub user_properties: Vec<UserProperty>,
    /// Wildcard Subscription Available.
    pub wildcard_subscription_available: Option<bool>,
    /// Subscription Identifiers Available.
    pub subscription_identifiers_available: Option<bool>,
    /// Shared Subscription Available.
    pub shared_subscription_available: Option<bool>,
    /// Server Keep Alive, overriding the client's keep alive.
    pub server_keep_alive: Option<u16>,
    /// Response Information.
    pub response_information: Option<ByteStr>,
    /// Server Reference.
    pub server_reference: Option<ByteStr>,
    /// Authentication Method.
    pub authentication_method: Option<ByteStr>,
    /// Authentication Data.
    pub authentication_data: Option<Bytes>,
}

/// Properties of PUBLISH (section 3.3.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishProperties {
    /// Payload Format Indicator: false = unspecified bytes, true = UTF-8.
    pub payload_format_indicator: Option<bool>,
    /// Message Expiry Interval in seconds.
    pub message_expiry_interval: Option<u32>,
    /// Topic Alias; 0 is a Protocol Error.
    pub topic_alias: Option<u16>,
    /// Response Topic (a topic name, no wildcards).
    pub response_topic: Option<ByteStr>,
    /// Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// User Properties.
    pub user_properties: Vec<UserProperty>,
    /// Subscription Identifiers (server to client only; may repeat).
    pub subscription_identifiers: Vec<u32>,
    /// Content Type.
    pub content_type: Option<ByteStr>,
}

impl PublishProperties {
    /// True when no property is set (the common case on the hot path).
    pub fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.message_expiry_interval.is_none()
            && self.topic_alias.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
            && self.subscription_identifiers.is_empty()
            && self.content_type.is_none()
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK: only a reason string and
/// user properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AckProperties {
    /// Reason String.
    pub reason_string: Option<ByteStr>,
    /// User Properties.
    pub user_properties: Vec<UserProperty>,
}

impl AckProperties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

/// Properties of SUBSCRIBE (section 3.8.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeProperties {
    /// Subscription Identifier, 1 to 268,435,455; at most one in SUBSCRIBE.
    pub subscription_identifier: Option<u32>,
    /// User Properties.
    pub user_properties: Vec<UserProperty>,
}

/// Properties of UNSUBSCRIBE (section 3.10.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubscribeProperties {
    /// User Properties.
    pub user_properties: Vec<UserProperty>,
}

/// Properties of DISCONNECT (section 3.14.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisconnectProperties {
    /// Session Expiry Interval (client to server only).
    pub session_expiry_interval: Option<u32>,
    /// Reason String.
    pub reason_string: Option<ByteStr>,
    /// User Properties.
    pub user_properties: Vec<UserProperty>,
    /// Server Reference.
    pub server_reference: Option<ByteStr>,
}

impl DisconnectProperties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.session_expiry_interval.is_none()
            && self.reason_string.is_none()
            && self.user_properties.is_empty()
            && self.server_reference.is_none()
    }
}

/// Properties of AUTH (section 3.15.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthProperties {
    /// Authentication Method.
    pub authentication_method: Option<ByteStr>,
    /// Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// Reason String.
    pub reason_string: Option<ByteStr>,
    /// User Properties.
    pub user_properties: Vec<UserProperty>,
}
