//! MQTT 5.0 properties (spec section 2.2.2), one struct per packet kind, so that only the
//! properties a packet may carry can be represented [MQTT-2.2.2-2]. The decoder rejects a
//! property that is not allowed in the packet, and a duplicate of any property but User Property
//! and Subscription Identifier, as a Protocol Error.

use crate::types::ByteStr;
use bytes::Bytes;
use std::fmt;

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
    /// The order the properties had on the wire, kept by the decoder for tools that must show
    /// them as received (`tern sub -F %j`); empty for properties built by hand, and ignored by
    /// the encoder and by comparisons.
    pub wire_order: WireOrder,
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

/// The identifiers of a decoded property block in wire order (see
/// [`PublishProperties::wire_order`]): up to [`WireOrder::INLINE`] of them inline (no
/// allocation, nothing shared), more in a `Vec`. It is not part of the properties' value: any
/// two compare equal.
#[derive(Clone, Default)]
pub struct WireOrder(OrderRepr);

#[derive(Clone)]
enum OrderRepr {
    Inline {
        len: u8,
        ids: [u8; WireOrder::INLINE],
    },
    Heap(Vec<u8>),
}

impl Default for OrderRepr {
    fn default() -> Self {
        OrderRepr::Inline {
            len: 0,
            ids: [0; WireOrder::INLINE],
        }
    }
}

impl WireOrder {
    /// How many identifiers are kept without an allocation.
    pub const INLINE: usize = 22;

    /// No recorded order.
    pub const fn new() -> Self {
        WireOrder(OrderRepr::Inline {
            len: 0,
            ids: [0; WireOrder::INLINE],
        })
    }

    /// Appends the next identifier read from the wire.
    pub(crate) fn push(&mut self, id: PropertyId) {
        match &mut self.0 {
            OrderRepr::Inline { len, ids } => {
                if let Some(slot) = ids.get_mut(usize::from(*len)) {
                    *slot = id as u8;
                    *len += 1;
                } else {
                    let mut all = ids.to_vec();
                    all.push(id as u8);
                    self.0 = OrderRepr::Heap(all);
                }
            }
            OrderRepr::Heap(all) => all.push(id as u8),
        }
    }

    fn raw(&self) -> &[u8] {
        match &self.0 {
            OrderRepr::Inline { len, ids } => ids.get(..usize::from(*len)).unwrap_or_default(),
            OrderRepr::Heap(all) => all,
        }
    }

    /// True when no order was recorded (properties built by hand, or none on the wire).
    pub fn is_empty(&self) -> bool {
        self.raw().is_empty()
    }

    /// The property identifiers in the order they were on the wire, repeats included.
    pub fn ids(&self) -> impl Iterator<Item = PropertyId> + '_ {
        self.raw().iter().filter_map(|&id| PropertyId::from_u8(id))
    }
}

impl PartialEq for WireOrder {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for WireOrder {}

impl fmt::Debug for WireOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ids()).finish()
    }
}

/// A packet's v5 property block behind one pointer, allocated only when a property is set.
///
/// Most packets carry no property, and a property struct is up to a few hundred bytes: held
/// inline, it made every [`Packet`](crate::Packet) as large as the largest, and every move of one
/// a copy of that size. `Props<T>` is one word. It reads as a `T` (an absent block reads as the
/// empty `T`), and the first write through `DerefMut` allocates the block; on hot paths, change
/// fields through [`Props::get_mut`], which never allocates.
pub struct Props<T: PropertyBlock>(Option<Box<T>>);

/// A property struct that [`Props`] can hold: one with a shared, empty value to read when absent.
pub trait PropertyBlock: Default + PartialEq + 'static {
    /// The value with no property set.
    fn empty() -> &'static Self;
}

impl<T: PropertyBlock> Props<T> {
    /// No properties (no allocation).
    pub const fn none() -> Self {
        Props(None)
    }

    /// The properties, or `None` when none was ever set.
    pub fn get(&self) -> Option<&T> {
        self.0.as_deref()
    }

    /// The properties for changing in place, or `None` (and no allocation) when none is set.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.0.as_deref_mut()
    }

    /// The properties by value (the empty `T` when none is set).
    pub fn into_inner(self) -> T {
        self.0.map(|b| *b).unwrap_or_default()
    }
}

impl<T: PropertyBlock> std::ops::Deref for Props<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        match &self.0 {
            Some(b) => b,
            None => T::empty(),
        }
    }
}

impl<T: PropertyBlock> std::ops::DerefMut for Props<T> {
    /// Allocates the block on the first write.
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }
}

/// An empty block stays unallocated, so converting a property-less value costs nothing.
impl<T: PropertyBlock> From<T> for Props<T> {
    fn from(t: T) -> Self {
        if t == *T::empty() {
            Props(None)
        } else {
            Props(Some(Box::new(t)))
        }
    }
}

impl<T: PropertyBlock> Default for Props<T> {
    fn default() -> Self {
        Props(None)
    }
}

impl<T: PropertyBlock + Clone> Clone for Props<T> {
    fn clone(&self) -> Self {
        Props(self.0.clone())
    }
}

/// Equal when the properties read the same: an absent block equals an empty one.
impl<T: PropertyBlock> PartialEq for Props<T> {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            _ => **self == **other,
        }
    }
}

impl<T: PropertyBlock + Eq> Eq for Props<T> {}

impl<T: PropertyBlock + fmt::Debug> fmt::Debug for Props<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PropertyBlock for PublishProperties {
    fn empty() -> &'static Self {
        static EMPTY: PublishProperties = PublishProperties {
            payload_format_indicator: None,
            message_expiry_interval: None,
            topic_alias: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
            subscription_identifiers: Vec::new(),
            content_type: None,
            wire_order: WireOrder::new(),
        };
        &EMPTY
    }
}

impl PropertyBlock for ConnAckProperties {
    fn empty() -> &'static Self {
        static EMPTY: ConnAckProperties = ConnAckProperties {
            session_expiry_interval: None,
            receive_maximum: None,
            maximum_qos: None,
            retain_available: None,
            maximum_packet_size: None,
            assigned_client_identifier: None,
            topic_alias_maximum: None,
            reason_string: None,
            user_properties: Vec::new(),
            wildcard_subscription_available: None,
            subscription_identifiers_available: None,
            shared_subscription_available: None,
            server_keep_alive: None,
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        };
        &EMPTY
    }
}

impl PropertyBlock for DisconnectProperties {
    fn empty() -> &'static Self {
        static EMPTY: DisconnectProperties = DisconnectProperties {
            session_expiry_interval: None,
            reason_string: None,
            user_properties: Vec::new(),
            server_reference: None,
        };
        &EMPTY
    }
}

impl PropertyBlock for AuthProperties {
    fn empty() -> &'static Self {
        static EMPTY: AuthProperties = AuthProperties {
            authentication_method: None,
            authentication_data: None,
            reason_string: None,
            user_properties: Vec::new(),
        };
        &EMPTY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_properties_read_as_empty_and_equal_empty_ones() {
        let none: Props<PublishProperties> = Props::none();
        assert!(none.get().is_none());
        assert_eq!(none.message_expiry_interval, None);
        assert_eq!(none, Props::from(PublishProperties::default()));
        assert!(
            Props::from(PublishProperties::default()).get().is_none(),
            "not allocated"
        );
    }

    #[test]
    fn first_write_allocates_and_get_mut_does_not() {
        let mut p: Props<PublishProperties> = Props::none();
        assert!(p.get_mut().is_none());
        assert!(p.get().is_none());
        p.message_expiry_interval = Some(5);
        assert_eq!(p.get().and_then(|p| p.message_expiry_interval), Some(5));
        assert_ne!(p, Props::none());
        assert_eq!(p.clone().into_inner().message_expiry_interval, Some(5));
    }

    #[test]
    fn wire_order_keeps_every_id_in_order_and_is_not_part_of_the_value() {
        use PropertyId::*;
        let mut order = WireOrder::new();
        assert!(order.is_empty());
        let many: Vec<PropertyId> = [UserProperty, MessageExpiryInterval, ContentType]
            .into_iter()
            .cycle()
            .take(WireOrder::INLINE + 5)
            .collect();
        for (n, id) in many.iter().enumerate() {
            order.push(*id);
            assert_eq!(order.ids().collect::<Vec<_>>(), many[..=n], "after {n}");
        }
        assert_eq!(order, WireOrder::new());
    }

    #[test]
    fn every_packet_is_small_to_move() {
        // CONNECT is boxed and properties are one pointer: a PUBLISH is what sets the size.
        assert!(std::mem::size_of::<crate::Packet>() <= 128);
        assert_eq!(std::mem::size_of::<Props<ConnAckProperties>>(), 8);
    }
}
