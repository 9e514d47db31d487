//! The fifteen MQTT control packets as plain data. One struct per packet; [`Packet`] is the sum.
//! Fields are named after the specification. What is on the wire for 3.1/3.1.1 is a subset of
//! 5.0: v5-only fields (properties, most reason codes) are ignored when encoding for 3.x and left
//! at their defaults when decoding 3.x.

use crate::properties::*;
use crate::reason::ReasonCode;
use crate::types::{ByteStr, ProtocolVersion, QoS, SubscriptionOptions};
use bytes::Bytes;

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (1), client to server; boxed, being large and once per connection.
    Connect(Box<Connect>),
    /// CONNACK (2), server to client.
    ConnAck(ConnAck),
    /// PUBLISH (3), both directions.
    Publish(Publish),
    /// PUBACK (4), QoS 1 acknowledgement.
    PubAck(PubAck),
    /// PUBREC (5), QoS 2 step 1.
    PubRec(PubRec),
    /// PUBREL (6), QoS 2 step 2.
    PubRel(PubRel),
    /// PUBCOMP (7), QoS 2 step 3.
    PubComp(PubComp),
    /// SUBSCRIBE (8), client to server.
    Subscribe(Subscribe),
    /// SUBACK (9), server to client.
    SubAck(SubAck),
    /// UNSUBSCRIBE (10), client to server.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (11), server to client.
    UnsubAck(UnsubAck),
    /// PINGREQ (12), client to server.
    PingReq,
    /// PINGRESP (13), server to client.
    PingResp,
    /// DISCONNECT (14), client to server, and server to client in v5.
    Disconnect(Disconnect),
    /// AUTH (15), v5 only.
    Auth(Auth),
}

impl Packet {
    /// The packet's name as the specification writes it, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// CONNECT (section 3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol version from the protocol name and level.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client Identifier; may be empty.
    pub client_id: ByteStr,
    /// Will Message, when the Will Flag is set.
    pub will: Option<LastWill>,
    /// User Name, when its flag is set.
    pub username: Option<ByteStr>,
    /// Password, when its flag is set.
    pub password: Option<Bytes>,
    /// v5 properties.
    pub properties: ConnectProperties,
}

/// The Will Message carried in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Will Topic (a topic name).
    pub topic: ByteStr,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// v5 Will Properties.
    pub properties: WillProperties,
}

/// CONNACK (section 3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// Session Present flag.
    pub session_present: bool,
    /// v5 Connect Reason Code, or the 3.1.1 Connect Return Code.
    pub reason_code: ReasonCode,
    /// v5 properties.
    pub properties: Props<ConnAckProperties>,
}

/// PUBLISH (section 3.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    /// DUP flag: this may be a re-delivery.
    pub dup: bool,
    /// QoS level.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic Name; may be empty in v5 when a Topic Alias is present.
    pub topic: ByteStr,
    /// Packet Identifier; 0 when `qos` is 0 (not on the wire), non-zero otherwise.
    pub packet_id: u16,
    /// v5 properties.
    pub properties: Props<PublishProperties>,
    /// Application Message, shared without copying.
    pub payload: Bytes,
}

macro_rules! ack_packet {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            /// Packet Identifier of the flow this acknowledges.
            pub packet_id: u16,
            /// v5 reason code; 0x00 Success when absent on the wire.
            pub reason_code: ReasonCode,
            /// v5 properties.
            pub properties: AckProperties,
        }

        impl $name {
            /// A successful acknowledgement for `packet_id`.
            pub fn new(packet_id: u16) -> Self {
                $name { packet_id, ..Default::default() }
            }
        }
    };
}

ack_packet!(
    /// PUBACK (section 3.4).
    PubAck
);
ack_packet!(
    /// PUBREC (section 3.5).
    PubRec
);
ack_packet!(
    /// PUBREL (section 3.6).
    PubRel
);
ack_packet!(
    /// PUBCOMP (section 3.7).
    PubComp
);

/// SUBSCRIBE (section 3.8).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscribe {
    /// Packet Identifier (non-zero).
    pub packet_id: u16,
    /// Topic filters with their options; at least one [MQTT-3.8.3-3].
    pub filters: Vec<(ByteStr, SubscriptionOptions)>,
    /// v5 properties.
    pub properties: SubscribeProperties,
}

/// SUBACK (section 3.9).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubAck {
    /// Packet Identifier of the SUBSCRIBE.
    pub packet_id: u16,
    /// One reason code (3.1.1: return code) per topic filter, in order.
    pub reason_codes: Vec<ReasonCode>,
    /// v5 properties.
    pub properties: AckProperties,
}

/// UNSUBSCRIBE (section 3.10).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unsubscribe {
    /// Packet Identifier (non-zero).
    pub packet_id: u16,
    /// Topic filters; at least one [MQTT-3.10.3-2].
    pub filters: Vec<ByteStr>,
    /// v5 properties.
    pub properties: UnsubscribeProperties,
}

/// UNSUBACK (section 3.11).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubAck {
    /// Packet Identifier of the UNSUBSCRIBE.
    pub packet_id: u16,
    /// v5: one reason code per topic filter; empty for 3.x, which has no payload.
    pub reason_codes: Vec<ReasonCode>,
    /// v5 properties.
    pub properties: AckProperties,
}

/// DISCONNECT (section 3.14).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// v5 Disconnect Reason Code; 0x00 Normal disconnection when absent.
    pub reason_code: ReasonCode,
    /// v5 properties.
    pub properties: Props<DisconnectProperties>,
}

/// AUTH (section 3.15), v5 only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Authenticate Reason Code: 0x00, 0x18 or 0x19.
    pub reason_code: ReasonCode,
    /// Properties.
    pub properties: Props<AuthProperties>,
}
