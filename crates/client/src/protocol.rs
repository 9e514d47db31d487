//! The client side of MQTT as a state machine without I/O, in the manner of `quinn-proto`:
//! requests ([`Protocol::publish`], [`Protocol::subscribe`]...), received packets
//! ([`Protocol::handle_packet`]) and the clock ([`Protocol::handle_timeout`]) go in; packets to
//! write ([`Protocol::poll_transmit`]) and [`Output`]s (completed requests, received messages)
//! come out. The tokio task in `event_loop` only moves bytes.
//!
//! What it keeps: packet identifiers, the outgoing in-flight window (bounded by the server's
//! Receive Maximum [MQTT-4.9.0-2]), the queue of requests waiting for the window or for a
//! connection, incoming QoS 2 identifiers awaiting PUBREL, topic aliases both ways, the
//! subscriptions to restore when the server lost the session, and keep-alive deadlines.

use crate::error::Error;
use crate::options::ConnectOptions;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use tern_codec::{
    ByteStr, ConnAck, Connect, Disconnect, Packet, ProtocolVersion, PubAck, PubComp, PubRec,
    PubRel, Publish, QoS, ReasonCode, SubAck, Subscribe, SubscribeProperties, SubscriptionOptions,
    UnsubAck, Unsubscribe, UnsubscribeProperties,
};

/// Identifies a request so that the driver can hand its result to whoever is waiting.
pub type Token = u64;

/// How a publish completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    /// The PUBACK / PUBREC reason code (v5); `Success` for QoS 0 and for 3.x.
    pub reason_code: ReasonCode,
    /// The packet identifier used (0 for QoS 0).
    pub packet_id: u16,
}

/// Something the state machine reports to its driver.
#[derive(Debug)]
pub enum Output {
    /// A publish request finished.
    Published(Token, Result<PublishOutcome, Error>),
    /// A subscribe request got its SUBACK: one reason code per filter.
    Subscribed(Token, Result<Vec<ReasonCode>, Error>),
    /// An unsubscribe request got its UNSUBACK: one reason code per filter (v5; 3.x: empty).
    Unsubscribed(Token, Result<Vec<ReasonCode>, Error>),
    /// An application message arrived (topic alias already resolved).
    Message(Publish),
}

/// The server's limits announced in CONNACK (v5), with the defaults the spec gives when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Receive Maximum: how many QoS 1/2 PUBLISH may be unacknowledged at once.
    pub receive_maximum: u16,
    /// Maximum Packet Size the server accepts.
    pub maximum_packet_size: Option<u32>,
    /// Topic Alias Maximum the server accepts.
    pub topic_alias_maximum: u16,
    /// Maximum QoS the server supports.
    pub maximum_qos: QoS,
    /// Retain Available.
    pub retain_available: bool,
    /// Keep alive in effect (the Server Keep Alive when sent).
    pub keep_alive: Duration,
}

#[derive(Debug)]
enum Request {
    Publish(Publish),
    Subscribe(Vec<(ByteStr, SubscriptionOptions)>, SubscribeProperties),
    Unsubscribe(Vec<ByteStr>, UnsubscribeProperties),
}

#[derive(Debug)]
struct Queued {
    token: Option<Token>,
    request: Request,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// PUBREC received, PUBREL sent, waiting for PUBCOMP.
    Released,
}

#[derive(Debug)]
struct InFlight {
    token: Option<Token>,
    publish: Publish,
    state: OutState,
    /// Reason code of PUBREC, reported when PUBCOMP completes the flow.
    rec_reason: ReasonCode,
}

#[derive(Debug)]
enum PendingAck {
    Subscribe(
        Option<Token>,
        Vec<(ByteStr, SubscriptionOptions)>,
        SubscribeProperties,
    ),
    Unsubscribe(Option<Token>),
}

/// The per-client MQTT state machine.
#[derive(Debug)]
pub struct Protocol {
    version: ProtocolVersion,
    connected: bool,
    next_packet_id: u16,
    /// Outgoing QoS 1/2 flows by packet identifier; `BTreeMap` by send order via `order`.
    inflight: HashMap<u16, InFlight>,
    /// Send order of in-flight identifiers, so that a resumed session re-sends in order
    /// [MQTT-4.4.0-1].
    order: BTreeMap<u64, u16>,
    seq: u64,
    queue: VecDeque<Queued>,
    queue_capacity: usize,
    acks: HashMap<u16, PendingAck>,
    /// Incoming QoS 2 packet identifiers whose PUBREC was sent and PUBREL not yet received.
    incoming_qos2: HashSet<u16>,
    inbound_aliases: HashMap<u16, ByteStr>,
    outbound_aliases: HashMap<ByteStr, u16>,
    use_topic_aliases: bool,
    /// Subscriptions granted, to restore when the server has no session for us.
    subscriptions: Vec<(ByteStr, SubscriptionOptions, SubscribeProperties)>,
    limits: ServerLimits,
    requested_keep_alive: Duration,
    transmit: VecDeque<Packet>,
    outputs: VecDeque<Output>,
    last_sent: Option<Instant>,
    last_received: Option<Instant>,
    ping_sent: Option<Instant>,
    connect: Connect,
    session_expected: bool,
}

impl Protocol {
    /// A state machine for the options' client, not yet connected.
    pub fn new(options: &ConnectOptions) -> Protocol {
        let mut properties = options.properties.clone();
        properties.session_expiry_interval = options.session_expiry_interval;
        let keep_alive = u16::try_from(options.keep_alive.as_secs()).unwrap_or(u16::MAX);
        let connect = Connect {
            protocol: options.protocol,
            clean_start: options.clean_start,
            keep_alive,
            client_id: ByteStr::from(options.client_id.as_str()),
            will: options.will.clone(),
            username: options.username.as_deref().map(ByteStr::from),
            password: options.password.clone(),
            properties,
        };
        // A session survives the connection when 3.x asks for no clean session, or v5 sets a
        // non-zero Session Expiry Interval.
        let session_expected = if options.protocol.is_v5() {
            options.session_expiry_interval.unwrap_or(0) > 0
        } else {
            !options.clean_start
        };
        Protocol {
            version: options.protocol,
            connected: false,
            next_packet_id: 1,
            inflight: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
            queue: VecDeque::new(),
            queue_capacity: options.offline_queue_capacity,
            acks: HashMap::new(),
            incoming_qos2: HashSet::new(),
            inbound_aliases: HashMap::new(),
            outbound_aliases: HashMap::new(),
            use_topic_aliases: options.use_topic_aliases,
            subscriptions: Vec::new(),
            limits: ServerLimits {
                receive_maximum: u16::MAX,
                maximum_packet_size: None,
                topic_alias_maximum: 0,
                maximum_qos: QoS::ExactlyOnce,
                retain_available: true,
                keep_alive: Duration::from_secs(u64::from(keep_alive)),
            },
            requested_keep_alive: Duration::from_secs(u64::from(keep_alive)),
            transmit: VecDeque::new(),
            outputs: VecDeque::new(),
            last_sent: None,
            last_received: None,
            ping_sent: None,
            connect,
            session_expected,
        }
    }

    /// The protocol version in use.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// True between a successful CONNACK and the loss of the connection.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The server's limits from the last CONNACK.
    pub fn limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// Number of outgoing QoS 1/2 flows not yet complete.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Number of requests waiting for a connection or for the in-flight window.
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// The CONNECT packet for the next connection. Reconnections ask to resume the session when
    /// one is expected to exist (clean start off).
    pub fn connect_packet(&mut self, reconnecting: bool) -> Packet {
        let mut connect = self.connect.clone();
        if reconnecting && self.session_expected {
            connect.clean_start = false;
        }
        Packet::Connect(Box::new(connect))
    }

    /// Handles the CONNACK of a new connection. On success, re-sends what the resumed session
    /// still owes [MQTT-4.4.0-1], or re-submits it if the server has no session.
    pub fn handle_connack(&mut self, connack: &ConnAck, now: Instant) -> Result<(), Error> {
        if connack.reason_code.0 != 0 {
            return Err(Error::ConnectionRefused {
                reason_code: connack.reason_code,
                version: self.version,
                reason_string: connack
                    .properties
                    .reason_string
                    .as_ref()
                    .map(|s| s.to_string()),
            });
        }
        let p = &connack.properties;
        self.limits = ServerLimits {
            receive_maximum: p.receive_maximum.filter(|m| *m > 0).unwrap_or(u16::MAX),
            maximum_packet_size: p.maximum_packet_size,
            topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
            maximum_qos: p
                .maximum_qos
                .and_then(QoS::from_u8)
                .unwrap_or(QoS::ExactlyOnce),
            retain_available: p.retain_available.unwrap_or(true),
            keep_alive: p
                .server_keep_alive
                .map(|k| Duration::from_secs(u64::from(k)))
                .unwrap_or(self.requested_keep_alive),
        };
        if let Some(id) = &p.assigned_client_identifier {
            self.connect.client_id = id.clone();
        }
        self.connected = true;
        self.last_sent = Some(now);
        self.last_received = Some(now);
        self.ping_sent = None;
        // Topic aliases live as long as a network connection [MQTT-3.3.2-7].
        self.inbound_aliases.clear();
        self.outbound_aliases.clear();

        if connack.session_present {
            // Re-send unacknowledged PUBLISH with DUP, and PUBREL for released ones, in the
            // original order [MQTT-4.4.0-1].
            let ids: Vec<u16> = self.order.values().copied().collect();
            for id in ids {
                if let Some(flight) = self.inflight.get(&id) {
                    let packet = match flight.state {
                        OutState::Published => {
                            let mut publish = flight.publish.clone();
                            publish.dup = true;
                            Packet::Publish(publish)
                        }
                        OutState::Released => Packet::PubRel(PubRel::new(id)),
                    };
                    self.transmit.push_back(packet);
                }
            }
        } else {
            // No session on the server: what was in flight is re-submitted as new messages; a
            // QoS 2 flow already released had reached the server and is complete.
            self.incoming_qos2.clear();
            let ids: Vec<u16> = self.order.values().copied().rev().collect();
            self.order.clear();
            for id in ids {
                if let Some(flight) = self.inflight.remove(&id) {
                    match flight.state {
                        OutState::Published => {
                            let mut publish = flight.publish;
                            publish.dup = false;
                            publish.packet_id = 0;
                            self.queue.push_front(Queued {
                                token: flight.token,
                                request: Request::Publish(publish),
                            });
                        }
                        OutState::Released => {
                            if let Some(token) = flight.token {
                                self.outputs.push_back(Output::Published(
                                    token,
                                    Ok(PublishOutcome {
                                        reason_code: flight.rec_reason,
                                        packet_id: id,
                                    }),
                                ));
                            }
                        }
                    }
                }
            }
            if !self.subscriptions.is_empty() {
                let subscriptions = std::mem::take(&mut self.subscriptions);
                for (filter, options, properties) in subscriptions.into_iter().rev() {
                    self.queue.push_front(Queued {
                        token: None,
                        request: Request::Subscribe(vec![(filter, options)], properties),
                    });
                }
            }
        }
        self.drain_queue();
        Ok(())
    }

    /// The connection is gone. Requests waiting for SUBACK/UNSUBACK fail; publish flows stay to
    /// be resumed on the next connection.
    pub fn handle_connection_lost(&mut self, reason: &str) {
        self.connected = false;
        self.transmit.clear();
        self.ping_sent = None;
        for (_, ack) in self.acks.drain() {
            match ack {
                PendingAck::Subscribe(Some(token), ..) => self.outputs.push_back(
                    Output::Subscribed(token, Err(Error::ConnectionLost(reason.to_owned()))),
                ),
                PendingAck::Unsubscribe(Some(token)) => self.outputs.push_back(
                    Output::Unsubscribed(token, Err(Error::ConnectionLost(reason.to_owned()))),
                ),
                // A re-subscription of our own: keep it for the next connection.
                PendingAck::Subscribe(None, filters, properties) => {
                    for (filter, options) in filters {
                        self.subscriptions
                            .push((filter, options, properties.clone()));
                    }
                }
                _ => {}
            }
        }
    }

    /// Fails every request still waiting: the client is closing for good.
    pub fn fail_all(&mut self, reason: &str) {
        self.handle_connection_lost(reason);
        let err = || Error::ConnectionLost(reason.to_owned());
        for (_, flight) in self.inflight.drain() {
            if let Some(token) = flight.token {
                self.outputs.push_back(Output::Published(token, Err(err())));
            }
        }
        self.order.clear();
        for queued in self.queue.drain(..) {
            if let Some(token) = queued.token {
                self.outputs.push_back(match queued.request {
                    Request::Publish(_) => Output::Published(token, Err(err())),
                    Request::Subscribe(..) => Output::Subscribed(token, Err(err())),
                    Request::Unsubscribe(..) => Output::Unsubscribed(token, Err(err())),
                });
            }
        }
    }

    /// Submits a PUBLISH. QoS 0 completes as soon as it is handed to the transport; QoS 1 on
    /// PUBACK; QoS 2 on PUBCOMP. Fails at once when the queue is full or the message breaks a
    /// server limit.
    pub fn publish(&mut self, token: Token, mut publish: Publish) -> Result<(), Error> {
        validate_topic_name(&publish.topic)?;
        if self.connected && publish.qos > self.limits.maximum_qos {
            return Err(Error::QosNotSupported {
                requested: publish.qos as u8,
                maximum: self.limits.maximum_qos as u8,
            });
        }
        publish.dup = false;
        // Size it as it will go out: QoS 1/2 carry a (non-zero) packet identifier.
        publish.packet_id = u16::from(publish.qos != QoS::AtMostOnce);
        self.check_size(&Packet::Publish(publish.clone()))?;
        publish.packet_id = 0;
        self.enqueue(Queued {
            token: Some(token),
            request: Request::Publish(publish),
        })
    }

    /// Submits a SUBSCRIBE.
    pub fn subscribe(
        &mut self,
        token: Token,
        filters: Vec<(ByteStr, SubscriptionOptions)>,
        properties: SubscribeProperties,
    ) -> Result<(), Error> {
        if filters.is_empty() {
            return Err(Error::InvalidOption(
                "SUBSCRIBE needs at least one topic filter [MQTT-3.8.3-3]".into(),
            ));
        }
        for (filter, _) in &filters {
            validate_topic_filter(filter)?;
        }
        self.enqueue(Queued {
            token: Some(token),
            request: Request::Subscribe(filters, properties),
        })
    }

    /// Submits an UNSUBSCRIBE.
    pub fn unsubscribe(
        &mut self,
        token: Token,
        filters: Vec<ByteStr>,
        properties: UnsubscribeProperties,
    ) -> Result<(), Error> {
        if filters.is_empty() {
            return Err(Error::InvalidOption(
                "UNSUBSCRIBE needs at least one topic filter [MQTT-3.10.3-2]".into(),
            ));
        }
        for filter in &filters {
            validate_topic_filter(filter)?;
        }
        self.subscriptions
            .retain(|(f, _, _)| !filters.iter().any(|u| u == f));
        self.enqueue(Queued {
            token: Some(token),
            request: Request::Unsubscribe(filters, properties),
        })
    }

    /// A DISCONNECT packet to send before closing.
    pub fn disconnect_packet(
        &self,
        reason_code: ReasonCode,
        session_expiry: Option<u32>,
    ) -> Packet {
        let mut disconnect = Disconnect {
            reason_code,
            ..Default::default()
        };
        disconnect.properties.session_expiry_interval = session_expiry;
        Packet::Disconnect(disconnect)
    }

    fn enqueue(&mut self, queued: Queued) -> Result<(), Error> {
        if self.queue.len() >= self.queue_capacity {
            return Err(Error::QueueFull {
                capacity: self.queue_capacity,
            });
        }
        self.queue.push_back(queued);
        self.drain_queue();
        Ok(())
    }

    fn check_size(&self, packet: &Packet) -> Result<(), Error> {
        if let Some(maximum) = self.limits.maximum_packet_size {
            let size = tern_codec::encoded_len(packet, self.version)
                .map_err(|e| Error::Protocol(e.to_string()))?;
            if size > maximum as usize {
                return Err(Error::PacketTooLarge { size, maximum });
            }
        }
        Ok(())
    }

    fn allocate_packet_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&id) && !self.acks.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    /// Moves queued requests onto the wire while connected and the window allows.
    fn drain_queue(&mut self) {
        while self.connected {
            let window_full = self.inflight.len() >= usize::from(self.limits.receive_maximum);
            let Some(front) = self.queue.front() else {
                break;
            };
            let needs_window =
                matches!(&front.request, Request::Publish(p) if p.qos != QoS::AtMostOnce);
            if needs_window && window_full {
                break;
            }
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            self.send_request(queued);
        }
    }

    fn send_request(&mut self, queued: Queued) {
        match queued.request {
            Request::Publish(mut publish) => {
                if publish.qos == QoS::AtMostOnce {
                    let wire = self.apply_outbound_alias(publish.clone());
                    self.transmit.push_back(Packet::Publish(wire));
                    if let Some(token) = queued.token {
                        self.outputs.push_back(Output::Published(
                            token,
                            Ok(PublishOutcome {
                                reason_code: ReasonCode::SUCCESS,
                                packet_id: 0,
                            }),
                        ));
                    }
                    return;
                }
                let Some(id) = self.allocate_packet_id() else {
                    // 65,535 flows in flight: put it back, it goes when one completes.
                    self.queue.push_front(Queued {
                        token: queued.token,
                        request: Request::Publish(publish),
                    });
                    return;
                };
                publish.packet_id = id;
                let wire = self.apply_outbound_alias(publish.clone());
                self.transmit.push_back(Packet::Publish(wire));
                self.seq += 1;
                self.order.insert(self.seq, id);
                self.inflight.insert(
                    id,
                    InFlight {
                        token: queued.token,
                        publish,
                        state: OutState::Published,
                        rec_reason: ReasonCode::SUCCESS,
                    },
                );
            }
            Request::Subscribe(filters, properties) => {
                let Some(id) = self.allocate_packet_id() else {
                    return;
                };
                self.transmit.push_back(Packet::Subscribe(Subscribe {
                    packet_id: id,
                    filters: filters.clone(),
                    properties: properties.clone(),
                }));
                self.acks
                    .insert(id, PendingAck::Subscribe(queued.token, filters, properties));
            }
            Request::Unsubscribe(filters, properties) => {
                let Some(id) = self.allocate_packet_id() else {
                    return;
                };
                self.transmit.push_back(Packet::Unsubscribe(Unsubscribe {
                    packet_id: id,
                    filters,
                    properties,
                }));
                self.acks.insert(id, PendingAck::Unsubscribe(queued.token));
            }
        }
    }

    /// Replaces the topic by an alias when aliases are enabled and the server allows them.
    fn apply_outbound_alias(&mut self, mut publish: Publish) -> Publish {
        if !self.use_topic_aliases || !self.version.is_v5() || self.limits.topic_alias_maximum == 0
        {
            return publish;
        }
        if let Some(alias) = self.outbound_aliases.get(&publish.topic) {
            publish.properties.topic_alias = Some(*alias);
            publish.topic = ByteStr::new();
        } else if self.outbound_aliases.len() < usize::from(self.limits.topic_alias_maximum) {
            let alias = u16::try_from(self.outbound_aliases.len() + 1).unwrap_or(u16::MAX);
            self.outbound_aliases.insert(publish.topic.clone(), alias);
            publish.properties.topic_alias = Some(alias);
        }
        publish
    }

    /// Handles one packet from the server. An error means the connection must be closed
    /// (after sending the DISCONNECT, if any, that [`Protocol::poll_transmit`] returns).
    pub fn handle_packet(&mut self, packet: Packet, now: Instant) -> Result<(), Error> {
        self.last_received = Some(now);
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish),
            Packet::PubAck(ack) => self.handle_puback(ack),
            Packet::PubRec(rec) => self.handle_pubrec(rec),
            Packet::PubRel(rel) => {
                // Complete the incoming QoS 2 flow; PUBCOMP even for an unknown identifier,
                // which is a PUBREL re-sent after we already completed it [MQTT-4.3.3-11].
                self.incoming_qos2.remove(&rel.packet_id);
                self.transmit
                    .push_back(Packet::PubComp(PubComp::new(rel.packet_id)));
                Ok(())
            }
            Packet::PubComp(comp) => self.handle_pubcomp(comp),
            Packet::SubAck(ack) => self.handle_suback(ack),
            Packet::UnsubAck(ack) => self.handle_unsuback(ack),
            Packet::PingResp => {
                self.ping_sent = None;
                Ok(())
            }
            Packet::Disconnect(d) => Err(Error::ServerDisconnect {
                reason_code: d.reason_code,
                reason_string: d.properties.reason_string.as_ref().map(|s| s.to_string()),
            }),
            other => self.protocol_error(format!("unexpected {} from the server", other.name())),
        }
    }

    fn protocol_error<T>(&mut self, message: String) -> Result<T, Error> {
        if self.version.is_v5() {
            self.transmit
                .push_back(self.disconnect_packet(ReasonCode::PROTOCOL_ERROR, None));
        }
        Err(Error::Protocol(message))
    }

    fn handle_publish(&mut self, mut publish: Publish) -> Result<(), Error> {
        if let Some(alias) = publish.properties.topic_alias {
            let max = self.connect.properties.topic_alias_maximum.unwrap_or(0);
            if alias == 0 || alias > max {
                return self.protocol_error(format!(
                    "topic alias {alias} outside 1..={max} [MQTT-3.3.2-9]"
                ));
            }
            if publish.topic.is_empty() {
                match self.inbound_aliases.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => {
                        return self
                            .protocol_error(format!("unknown topic alias {alias} [MQTT-3.3.2-8]"));
                    }
                }
            } else {
                self.inbound_aliases.insert(alias, publish.topic.clone());
            }
        } else if publish.topic.is_empty() {
            return self.protocol_error("PUBLISH without topic name or alias".into());
        }
        match publish.qos {
            QoS::AtMostOnce => self.outputs.push_back(Output::Message(publish)),
            QoS::AtLeastOnce => {
                self.transmit
                    .push_back(Packet::PubAck(PubAck::new(publish.packet_id)));
                self.outputs.push_back(Output::Message(publish));
            }
            QoS::ExactlyOnce => {
                let id = publish.packet_id;
                // Deliver once: a DUP re-send of a PUBLISH whose PUBREL has not arrived is only
                // acknowledged again [MQTT-4.3.3-10].
                if self.incoming_qos2.insert(id) {
                    self.outputs.push_back(Output::Message(publish));
                }
                self.transmit.push_back(Packet::PubRec(PubRec::new(id)));
            }
        }
        Ok(())
    }

    fn finish_flight(&mut self, id: u16) -> Option<InFlight> {
        let flight = self.inflight.remove(&id)?;
        self.order.retain(|_, v| *v != id);
        Some(flight)
    }

    fn handle_puback(&mut self, ack: PubAck) -> Result<(), Error> {
        match self.inflight.get(&ack.packet_id) {
            Some(f) if f.publish.qos == QoS::AtLeastOnce => {}
            // A PUBACK for a flow we do not know: ignore, as after a session was lost.
            _ => return Ok(()),
        }
        if let Some(flight) = self.finish_flight(ack.packet_id) {
            let result = if ack.reason_code.is_error() {
                Err(Error::Rejected {
                    reason_code: ack.reason_code,
                    reason_string: ack.properties.reason_string.map(|s| s.to_string()),
                })
            } else {
                Ok(PublishOutcome {
                    reason_code: ack.reason_code,
                    packet_id: ack.packet_id,
                })
            };
            if let Some(token) = flight.token {
                self.outputs.push_back(Output::Published(token, result));
            }
        }
        self.drain_queue();
        Ok(())
    }

    fn handle_pubrec(&mut self, rec: PubRec) -> Result<(), Error> {
        let id = rec.packet_id;
        let Some(flight) = self.inflight.get_mut(&id) else {
            // Unknown flow: answer so the server can finish it [MQTT-4.3.3-?]; v5 says
            // Packet Identifier not found.
            let mut rel = PubRel::new(id);
            if self.version.is_v5() {
                rel.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
            }
            self.transmit.push_back(Packet::PubRel(rel));
            return Ok(());
        };
        if flight.publish.qos != QoS::ExactlyOnce {
            return Ok(());
        }
        if rec.reason_code.is_error() {
            // The flow ends at a failed PUBREC [MQTT-4.3.3-4]... no PUBREL.
            if let Some(token) = self.finish_flight(id).and_then(|f| f.token) {
                self.outputs.push_back(Output::Published(
                    token,
                    Err(Error::Rejected {
                        reason_code: rec.reason_code,
                        reason_string: rec.properties.reason_string.map(|s| s.to_string()),
                    }),
                ));
            }
            self.drain_queue();
            return Ok(());
        }
        flight.state = OutState::Released;
        flight.rec_reason = rec.reason_code;
        self.transmit.push_back(Packet::PubRel(PubRel::new(id)));
        Ok(())
    }

    fn handle_pubcomp(&mut self, comp: PubComp) -> Result<(), Error> {
        match self.inflight.get(&comp.packet_id) {
            Some(f) if f.state == OutState::Released => {}
            _ => return Ok(()),
        }
        let finished = self.finish_flight(comp.packet_id);
        if let Some((flight, token)) = finished.and_then(|f| f.token.map(|t| (f, t))) {
            let result = if comp.reason_code.is_error() {
                Err(Error::Rejected {
                    reason_code: comp.reason_code,
                    reason_string: comp.properties.reason_string.map(|s| s.to_string()),
                })
            } else {
                Ok(PublishOutcome {
                    reason_code: flight.rec_reason,
                    packet_id: comp.packet_id,
                })
            };
            self.outputs.push_back(Output::Published(token, result));
        }
        self.drain_queue();
        Ok(())
    }

    fn handle_suback(&mut self, ack: SubAck) -> Result<(), Error> {
        let Some(PendingAck::Subscribe(token, filters, properties)) =
            self.acks.remove(&ack.packet_id)
        else {
            return self.protocol_error(format!(
                "SUBACK for unknown packet identifier {}",
                ack.packet_id
            ));
        };
        if ack.reason_codes.len() != filters.len() {
            return self.protocol_error(format!(
                "SUBACK has {} reason codes for {} filters [MQTT-3.9.3-1]",
                ack.reason_codes.len(),
                filters.len()
            ));
        }
        for ((filter, options), code) in filters.into_iter().zip(&ack.reason_codes) {
            if !code.is_error() {
                self.subscriptions.retain(|(f, _, _)| *f != filter);
                self.subscriptions
                    .push((filter, options, properties.clone()));
            }
        }
        if let Some(token) = token {
            self.outputs
                .push_back(Output::Subscribed(token, Ok(ack.reason_codes)));
        }
        self.drain_queue();
        Ok(())
    }

    fn handle_unsuback(&mut self, ack: UnsubAck) -> Result<(), Error> {
        let Some(PendingAck::Unsubscribe(token)) = self.acks.remove(&ack.packet_id) else {
            return self.protocol_error(format!(
                "UNSUBACK for unknown packet identifier {}",
                ack.packet_id
            ));
        };
        if let Some(token) = token {
            self.outputs
                .push_back(Output::Unsubscribed(token, Ok(ack.reason_codes)));
        }
        self.drain_queue();
        Ok(())
    }

    /// When [`Protocol::handle_timeout`] next needs to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.connected || self.limits.keep_alive.is_zero() {
            return None;
        }
        let keep_alive = self.limits.keep_alive;
        match self.ping_sent {
            // No PINGRESP within a reasonable time: the connection is dead [MQTT-3.1.2-24].
            Some(sent) => Some(sent + keep_alive),
            None => self.last_sent.map(|t| t + keep_alive),
        }
    }

    /// Advances the clock: sends PINGREQ when nothing was sent for a keep-alive interval
    /// [MQTT-3.1.2-23]; fails when a PINGREQ went unanswered for as long.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        let Some(deadline) = self.poll_timeout() else {
            return Ok(());
        };
        if now < deadline {
            return Ok(());
        }
        if self.ping_sent.is_some() {
            return Err(Error::Timeout("waiting for PINGRESP (keep alive)"));
        }
        self.transmit.push_back(Packet::PingReq);
        self.ping_sent = Some(now);
        Ok(())
    }

    /// The next packet to write, if any. Counts as activity for keep alive.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Packet> {
        let packet = self.transmit.pop_front()?;
        self.last_sent = Some(now);
        Some(packet)
    }

    /// The next output for the driver, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The client identifier (the one the server assigned, after CONNACK, when it did).
    pub fn client_id(&self) -> &str {
        self.connect.client_id.as_str()
    }

    /// True when the client has requests waiting for acknowledgement.
    pub fn has_pending(&self) -> bool {
        !self.inflight.is_empty() || !self.queue.is_empty() || !self.acks.is_empty()
    }

    /// The payload of PUBLISH requests waiting to be sent (test helper for queue limits).
    #[doc(hidden)]
    pub fn queued_payloads(&self) -> Vec<Bytes> {
        self.queue
            .iter()
            .filter_map(|q| match &q.request {
                Request::Publish(p) => Some(p.payload.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Checks a topic name for PUBLISH (section 4.7, via [`tern_codec::topic`]).
pub fn validate_topic_name(topic: &str) -> Result<(), Error> {
    tern_codec::topic::validate_topic_name(topic).map_err(|e| Error::InvalidTopic {
        topic: topic.to_owned(),
        reason: e,
    })
}

/// Checks a topic filter for SUBSCRIBE / UNSUBSCRIBE (section 4.7, via [`tern_codec::topic`]).
pub fn validate_topic_filter(filter: &str) -> Result<(), Error> {
    tern_codec::topic::validate_topic_filter(filter).map_err(|e| Error::InvalidTopic {
        topic: filter.to_owned(),
        reason: e,
    })
}

#[cfg(test)]
mod tests {
    //! Whole conversations with the state machine in memory: no socket, no clock but the one
    //! passed in.
    use super::*;

    fn protocol(capacity: usize) -> Protocol {
        let mut o = ConnectOptions::new("unused", 1);
        o.offline_queue_capacity = capacity;
        o.keep_alive = Duration::from_secs(10);
        Protocol::new(&o)
    }

    fn publish(topic: &str, qos: QoS, payload: &'static str) -> Publish {
        Publish {
            topic: topic.into(),
            qos,
            payload: Bytes::from_static(payload.as_bytes()),
            ..Default::default()
        }
    }

    fn transmitted(p: &mut Protocol, now: Instant) -> Vec<Packet> {
        std::iter::from_fn(|| p.poll_transmit(now)).collect()
    }

    fn connack(p: &mut Protocol, session_present: bool, now: Instant) {
        let c = ConnAck {
            session_present,
            ..Default::default()
        };
        p.handle_connack(&c, now).unwrap();
    }

    #[test]
    fn offline_queue_full_is_an_error_and_drains_in_order_on_connack() {
        let now = Instant::now();
        let mut p = protocol(2);
        p.publish(1, publish("a", QoS::AtLeastOnce, "1")).unwrap();
        p.publish(2, publish("a", QoS::AtMostOnce, "2")).unwrap();
        let err = p
            .publish(3, publish("a", QoS::AtLeastOnce, "3"))
            .unwrap_err();
        assert!(matches!(err, Error::QueueFull { capacity: 2 }));
        assert!(
            transmitted(&mut p, now).is_empty(),
            "nothing is sent while disconnected"
        );
        connack(&mut p, false, now);
        let sent = transmitted(&mut p, now);
        let payloads: Vec<&[u8]> = sent
            .iter()
            .map(|s| match s {
                Packet::Publish(p) => &p.payload[..],
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(payloads, [b"1", b"2"]);
        // QoS 0 is complete once handed over; QoS 1 waits for PUBACK.
        assert!(matches!(p.poll_output(), Some(Output::Published(2, Ok(_)))));
        assert!(p.poll_output().is_none());
        p.handle_packet(Packet::PubAck(PubAck::new(1)), now)
            .unwrap();
        assert!(matches!(p.poll_output(), Some(Output::Published(1, Ok(_)))));
    }

    #[test]
    fn resumed_session_resends_publish_with_dup_and_pubrel_in_order() {
        let now = Instant::now();
        let mut p = protocol(10);
        connack(&mut p, false, now);
        p.publish(1, publish("a", QoS::ExactlyOnce, "x")).unwrap();
        p.publish(2, publish("b", QoS::AtLeastOnce, "y")).unwrap();
        transmitted(&mut p, now);
        p.handle_packet(Packet::PubRec(PubRec::new(1)), now)
            .unwrap();
        assert_eq!(transmitted(&mut p, now), [Packet::PubRel(PubRel::new(1))]);
        p.handle_connection_lost("test");
        connack(&mut p, true, now);
        let sent = transmitted(&mut p, now);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], Packet::PubRel(PubRel::new(1)));
        match &sent[1] {
            Packet::Publish(p) => assert!(p.dup && p.packet_id == 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keep_alive_pings_then_times_out() {
        let t0 = Instant::now();
        let mut p = protocol(10);
        connack(&mut p, false, t0);
        assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        p.handle_timeout(t0 + Duration::from_secs(5)).unwrap();
        assert!(transmitted(&mut p, t0).is_empty());
        let t1 = t0 + Duration::from_secs(10);
        p.handle_timeout(t1).unwrap();
        assert_eq!(transmitted(&mut p, t1), [Packet::PingReq]);
        let err = p.handle_timeout(t1 + Duration::from_secs(10)).unwrap_err();
        assert!(matches!(err, Error::Timeout(_)));
    }

    #[test]
    fn pingresp_clears_the_deadline() {
        let t0 = Instant::now();
        let mut p = protocol(10);
        connack(&mut p, false, t0);
        let t1 = t0 + Duration::from_secs(10);
        p.handle_timeout(t1).unwrap();
        transmitted(&mut p, t1);
        p.handle_packet(Packet::PingResp, t1).unwrap();
        assert_eq!(p.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    }

    #[test]
    fn suback_with_wrong_number_of_codes_is_a_protocol_error() {
        let now = Instant::now();
        let mut p = protocol(10);
        p.version = ProtocolVersion::V5;
        connack(&mut p, false, now);
        let filters = vec![
            ("a".into(), SubscriptionOptions::default()),
            ("b".into(), SubscriptionOptions::default()),
        ];
        p.subscribe(1, filters, SubscribeProperties::default())
            .unwrap();
        let Some(Packet::Subscribe(s)) = p.poll_transmit(now) else {
            panic!("SUBSCRIBE expected")
        };
        let ack = SubAck {
            packet_id: s.packet_id,
            reason_codes: vec![ReasonCode::GRANTED_QOS_0],
            ..Default::default()
        };
        assert!(matches!(
            p.handle_packet(Packet::SubAck(ack), now),
            Err(Error::Protocol(_))
        ));
        // v5: the client says why before closing.
        assert!(matches!(p.poll_transmit(now), Some(Packet::Disconnect(_))));
    }

    #[test]
    fn failed_puback_rejects_the_publish_with_its_reason_code() {
        let now = Instant::now();
        let mut p = protocol(10);
        connack(&mut p, false, now);
        p.publish(7, publish("a", QoS::AtLeastOnce, "x")).unwrap();
        transmitted(&mut p, now);
        let mut ack = PubAck::new(1);
        ack.reason_code = ReasonCode::NOT_AUTHORIZED;
        p.handle_packet(Packet::PubAck(ack), now).unwrap();
        match p.poll_output() {
            Some(Output::Published(7, Err(Error::Rejected { reason_code, .. }))) => {
                assert_eq!(reason_code, ReasonCode::NOT_AUTHORIZED)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wildcard_topic_cannot_be_published() {
        let mut p = protocol(10);
        let err = p
            .publish(1, publish("a/+", QoS::AtMostOnce, "x"))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidTopic { .. }));
    }
}
