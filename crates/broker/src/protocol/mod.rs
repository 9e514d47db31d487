//! The per-connection MQTT protocol state machine, with no I/O (in the manner of `quinn-proto`).
//!
//! Packets and timer ticks go in ([`Connection::handle_packet`], [`Connection::handle_timeout`],
//! [`Connection::deliver`]); packets to send ([`Connection::poll_transmit`]) and requests for the
//! broker ([`Connection::poll_action`]) come out. It owns the client's session while connected:
//! packet identifiers, the in-flight windows both ways (v5 Receive Maximum), topic aliases both
//! ways, keep-alive and CONNECT deadlines. It never touches a socket, a lock or another client,
//! so every rule of the specification can be tested as a conversation in memory.
//!
//! Behaviour is split by packet type: [`connect`], [`publish`] (PUBLISH and its acks, both
//! directions), [`subscribe`], [`unsubscribe`], [`ping`], [`disconnect`].

pub mod connect;
pub mod disconnect;
pub mod ping;
pub mod publish;
pub mod subscribe;
pub mod unsubscribe;

#[cfg(test)]
mod tests;

use crate::auth::{Authorizer, ClientIdentity};
use crate::message::{Delivery, Message};
use crate::session::{QueueLimits, SessionState, Subscription};
use crate::store::FlowChange;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_codec::{ByteStr, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};

/// The broker-wide limits and capabilities a connection enforces and advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolConfig {
    /// Cap on the client's keep alive, in seconds (v5: Server Keep Alive when exceeded).
    pub max_keepalive: u16,
    /// Largest packet accepted, advertised as v5 Maximum Packet Size.
    pub max_packet_size: u32,
    /// Receive Maximum advertised (inbound QoS 1/2 window) and cap on the outbound window.
    pub max_inflight: u16,
    /// Topic Alias Maximum advertised (inbound aliases accepted).
    pub topic_alias_maximum: u16,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// Limits of the session's message queue.
    pub queue: QueueLimits,
    /// Maximum QoS granted to subscriptions and accepted in PUBLISH.
    pub max_qos: QoS,
    /// Retained messages supported.
    pub retain_available: bool,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            max_keepalive: 65535,
            max_packet_size: 1_048_576,
            max_inflight: 100,
            topic_alias_maximum: 10,
            connect_timeout: Duration::from_secs(10),
            queue: QueueLimits {
                max_messages: 1000,
                max_bytes: 0,
                queue_qos0: false,
            },
            max_qos: QoS::ExactlyOnce,
            retain_available: true,
        }
    }
}

/// A will message with its v5 Will Delay Interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// The message to publish.
    pub message: Message,
    /// Seconds to wait after the connection ends before publishing [MQTT-3.1.3-9].
    pub delay_interval: u32,
    /// v5 Message Expiry Interval of the will, counted from when it is published.
    pub message_expiry_interval: Option<u32>,
}

impl Will {
    /// Seconds to wait before publishing: the earlier of the Will Delay Interval and the end of
    /// the session (expiry 0: at once) [MQTT-3.1.3-9].
    pub fn effective_delay(&self, session_expiry_interval: u32) -> u32 {
        self.delay_interval.min(session_expiry_interval)
    }
}

/// What CONNECT asked for, handed to the broker to authenticate and find the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Protocol version of the client.
    pub version: ProtocolVersion,
    /// Client identifier; empty when the broker must assign one.
    pub client_id: ByteStr,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_start: bool,
    /// User name.
    pub username: Option<ByteStr>,
    /// Password.
    pub password: Option<Bytes>,
    /// Session Expiry Interval in effect (3.1.1: 0 or never).
    pub session_expiry_interval: u32,
}

/// The broker's answer to a [`ConnectRequest`] that it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The session: resumed, or new.
    pub session: SessionState,
    /// True when an existing session was resumed [MQTT-3.2.2-2].
    pub session_present: bool,
    /// The client id the broker assigned, when the client sent an empty one.
    pub assigned_client_id: Option<ByteStr>,
}

/// A subscription the broker must add to its router (and maybe send retained messages for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    /// Full topic filter as subscribed (may be `$share/...`).
    pub filter: ByteStr,
    /// Options and id as granted.
    pub subscription: Subscription,
    /// Retained messages are due now (Retain Handling, and not a shared subscription).
    pub send_retained: bool,
}

/// Requests from the state machine to the broker around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// CONNECT received and well-formed: authenticate, find the session, then call
    /// [`Connection::accept`] or [`Connection::reject`].
    Connect(ConnectRequest),
    /// Route this message to subscribers (and store it if retained).
    Publish(Arc<Message>),
    /// Add these subscriptions to the router; send retained messages where due.
    Subscribe(Vec<NewSubscription>),
    /// Remove these filters of this client from the router.
    Unsubscribe(Vec<ByteStr>),
    /// The connection is over: send what is queued, then close the socket. `will` is the will
    /// to publish (abnormal end), honouring its delay.
    Closed {
        /// The will to publish, if the connection ended abnormally [MQTT-3.1.2-8]; boxed, so
        /// that every other action stays small.
        will: Option<Box<Will>>,
        /// Why the connection ended, for logs.
        reason: ReasonCode,
    },
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for CONNECT.
    AwaitConnect,
    /// CONNECT received; the broker is deciding.
    AwaitAccept,
    /// CONNACK 0x00 sent.
    Connected,
    /// Finished; only flushing remains.
    Closed,
}

/// Counters a connection keeps for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Messages not sent because they were larger than the client's Maximum Packet Size.
    pub dropped_too_large: u64,
    /// Messages dropped because their expiry interval ran out before sending.
    pub dropped_expired: u64,
    /// Messages not sent because the authorizer denies the client read access to the topic.
    pub dropped_unauthorized: u64,
}

/// Packets received between CONNECT and the broker's answer are held, up to this many.
const MAX_EARLY_PACKETS: usize = 64;

/// The topic aliases of a v5 connection, both ways [MQTT-3.3.2-8]; they last one connection.
#[derive(Debug, Default)]
struct TopicAliases {
    /// Aliases the client set, to the topic each stands for.
    inbound: HashMap<u16, ByteStr>,
    /// Topics sent to the client, to the alias the broker gave each.
    outbound: HashMap<ByteStr, u16>,
}

/// One client connection's protocol state.
pub struct Connection {
    cfg: Arc<ProtocolConfig>,
    authz: Arc<dyn Authorizer>,
    phase: Phase,
    version: ProtocolVersion,
    identity: ClientIdentity,
    session: Option<SessionState>,
    /// Boxed: most clients set no will, and inline it would add hundreds of bytes to every
    /// connection.
    will: Option<Box<Will>>,
    /// Keep alive in effect, in seconds (0: none).
    keep_alive: u16,
    deadline: Option<Instant>,
    connect_expiry_zero: bool,
    client_receive_maximum: u16,
    client_maximum_packet_size: Option<u32>,
    client_topic_alias_maximum: u16,
    problem_information: bool,
    request_response_information: bool,
    /// Boxed, and only once an alias is used: most clients never use one, and the two maps
    /// inline would add 96 bytes to every connection.
    aliases: Option<Box<TopicAliases>>,
    pending: VecDeque<Delivery>,
    /// Packets received between CONNECT and the broker's answer; boxed, and only while there
    /// are any.
    #[allow(
        clippy::box_collection,
        reason = "8 bytes instead of 32 in every connection, for a queue that is nearly always empty"
    )]
    early: Option<Box<VecDeque<Packet>>>,
    transmit: VecDeque<Packet>,
    actions: VecDeque<Action>,
    stats: ConnStats,
    /// The session outlives the connection (expiry > 0): its in-flight changes are recorded.
    track_flow: bool,
    /// In-flight changes not yet taken by [`Connection::take_flow`].
    flow: Vec<FlowChange>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("phase", &self.phase)
            .field("client_id", &self.identity.client_id)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection that has just been accepted on a socket at `now`.
    pub fn new(cfg: Arc<ProtocolConfig>, authz: Arc<dyn Authorizer>, now: Instant) -> Self {
        let deadline = Some(now + cfg.connect_timeout);
        Connection {
            cfg,
            authz,
            phase: Phase::AwaitConnect,
            version: ProtocolVersion::V311,
            identity: ClientIdentity::default(),
            session: None,
            will: None,
            keep_alive: 0,
            deadline,
            connect_expiry_zero: true,
            client_receive_maximum: u16::MAX,
            client_maximum_packet_size: None,
            client_topic_alias_maximum: 0,
            problem_information: true,
            request_response_information: false,
            aliases: None,
            pending: VecDeque::new(),
            early: None,
            transmit: VecDeque::new(),
            actions: VecDeque::new(),
            stats: ConnStats::default(),
            track_flow: false,
            flow: Vec::new(),
        }
    }

    /// Replaces the authorizer, e.g. with a per-session ACL once the client is known.
    pub fn set_authorizer(&mut self, authz: Arc<dyn Authorizer>) {
        self.authz = authz;
    }

    /// Where the connection is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True once the connection is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The protocol version (3.1.1 until CONNECT says otherwise).
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Who the client is (client id and user name), once CONNECT has been handled.
    pub fn identity(&self) -> &ClientIdentity {
        &self.identity
    }

    /// The session while connected.
    pub fn session(&self) -> Option<&SessionState> {
        self.session.as_ref()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> ConnStats {
        self.stats
    }

    /// The largest packet the client accepts (v5 Maximum Packet Size), if it set one.
    pub fn client_maximum_packet_size(&self) -> Option<u32> {
        self.client_maximum_packet_size
    }

    /// Next packet to send, in order.
    pub fn poll_transmit(&mut self) -> Option<Packet> {
        self.transmit.pop_front()
    }

    /// Number of packets waiting in [`Connection::poll_transmit`].
    pub fn transmit_len(&self) -> usize {
        self.transmit.len()
    }

    /// Next request for the broker.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// In-flight changes of a persistent session since the last call, in order, for
    /// [`crate::store::SessionStore::record_flow`]: only deliveries that carry a
    /// [`Delivery::store_seq`] have any, and a session that ends with its connection none.
    /// The packets queued so far must not go out before the store has made the changes that
    /// [`FlowChange::gates_transmit`] durable.
    pub fn take_flow(&mut self) -> Vec<FlowChange> {
        std::mem::take(&mut self.flow)
    }

    /// Lets go of the capacity of every empty queue (a `Packet` is hundreds of bytes, so one
    /// CONNACK left a kilobyte or two allocated per idle connection). For the driver to call
    /// when it is about to wait with nothing to do.
    pub fn release_idle(&mut self) {
        fn release<T>(q: &mut VecDeque<T>) {
            if q.is_empty() && q.capacity() != 0 {
                *q = VecDeque::new();
            }
        }
        release(&mut self.transmit);
        release(&mut self.actions);
        if self.early.as_ref().is_some_and(|e| e.is_empty()) {
            self.early = None;
        }
        release(&mut self.pending);
    }

    /// When [`Connection::handle_timeout`] must next be called (CONNECT or keep-alive deadline).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        self.deadline
    }

    /// Deadline check: a socket that never sent CONNECT, or a client silent for 1.5 times its
    /// keep alive, is disconnected [MQTT-3.1.2-24] (v5: DISCONNECT 0x8D, and the will goes out).
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        match self.phase {
            Phase::AwaitConnect | Phase::AwaitAccept => {
                self.close_silently(ReasonCode::MAXIMUM_CONNECT_TIME)
            }
            Phase::Connected => self.fail(ReasonCode::KEEP_ALIVE_TIMEOUT),
            Phase::Closed => {}
        }
    }

    /// True when the broker may hand over another queued delivery: connected, nothing waiting
    /// inside, and room in the client's in-flight window (v5 Receive Maximum) [MQTT-3.3.4-7].
    pub fn wants_delivery(&self) -> bool {
        self.phase == Phase::Connected && self.pending.is_empty() && self.window_open()
    }

    fn window_open(&self) -> bool {
        let window = usize::from(self.client_receive_maximum.min(self.cfg.max_inflight)).max(1);
        self.session
            .as_ref()
            .is_some_and(|s| s.outgoing.len() < window)
    }

    /// Ends the connection from the broker's side: session takeover (0x8E), server shutting down
    /// (0x8B), administrative action. v5 clients are told why [MQTT-3.14.0-1]; the will is
    /// published except on shutdown.
    pub fn close(&mut self, reason: ReasonCode) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.phase == Phase::Connected {
            self.send_disconnect(reason);
        }
        let will = if reason == ReasonCode::SERVER_SHUTTING_DOWN {
            None
        } else {
            self.will.take()
        };
        self.finish(will, reason);
    }

    /// The peer closed the socket, or reading it failed: an abnormal end, the will goes out
    /// [MQTT-3.1.2-8].
    pub fn handle_connection_lost(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        let will = self.will.take();
        self.finish(will, ReasonCode::UNSPECIFIED_ERROR);
    }

    /// The decoder refused the bytes: v5 clients get DISCONNECT with the decoder's reason code
    /// (0x81 Malformed Packet, 0x82 Protocol Error, 0x95 Packet too large...), then the
    /// connection is closed and the will published [MQTT-4.13.1-1].
    pub fn handle_decode_error(&mut self, reason: ReasonCode) {
        // An unknown protocol level gets CONNACK 0x01 in the 3.1.1 format [MQTT-3.1.2-2].
        if self.phase == Phase::AwaitConnect && reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION {
            self.version = ProtocolVersion::V311;
            self.transmit
                .push_back(Packet::ConnAck(tern_codec::ConnAck {
                    session_present: false,
                    reason_code: ReasonCode::V3_UNACCEPTABLE_PROTOCOL_VERSION,
                    properties: Default::default(),
                }));
        }
        match self.phase {
            Phase::Connected => self.fail(reason),
            _ => self.close_silently(reason),
        }
    }

    /// Gives the session back when the connection is over, to be stored or discarded.
    pub fn take_session(&mut self) -> Option<SessionState> {
        let mut session = self.session.take()?;
        // Messages accepted but never sent go back to the head of the queue, in order.
        while let Some(d) = self.pending.pop_back() {
            session.requeue_front(d);
        }
        Some(session)
    }

    /// Dispatches one decoded packet.
    pub fn handle_packet(&mut self, packet: Packet, now: Instant) {
        match self.phase {
            Phase::Closed => {}
            Phase::AwaitConnect => match packet {
                Packet::Connect(c) => self.handle_connect(*c),
                // The first packet must be CONNECT [MQTT-3.1.0-1].
                _ => self.close_silently(ReasonCode::PROTOCOL_ERROR),
            },
            Phase::AwaitAccept => {
                let early = self.early.get_or_insert_default();
                if matches!(packet, Packet::Connect(_)) || early.len() >= MAX_EARLY_PACKETS {
                    self.close_silently(ReasonCode::PROTOCOL_ERROR);
                } else {
                    early.push_back(packet);
                }
            }
            Phase::Connected => {
                self.touch(now);
                self.dispatch(packet, now);
            }
        }
    }

    fn dispatch(&mut self, packet: Packet, now: Instant) {
        match packet {
            // A second CONNECT is a Protocol Error [MQTT-3.1.0-2].
            Packet::Connect(_) => self.fail(ReasonCode::PROTOCOL_ERROR),
            Packet::Publish(p) => self.handle_publish(p, now),
            Packet::PubAck(p) => self.handle_puback(p, now),
            Packet::PubRec(p) => self.handle_pubrec(p, now),
            Packet::PubRel(p) => self.handle_pubrel(p),
            Packet::PubComp(p) => self.handle_pubcomp(p, now),
            Packet::Subscribe(s) => self.handle_subscribe(s),
            Packet::Unsubscribe(u) => self.handle_unsubscribe(u),
            Packet::PingReq => self.handle_pingreq(),
            Packet::Disconnect(d) => self.handle_disconnect(d),
            // Enhanced authentication is not offered, so AUTH is unexpected [MQTT-4.12.0-1].
            Packet::Auth(_) => self.fail(ReasonCode::PROTOCOL_ERROR),
            // Server-to-client packets from a client.
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                self.fail(ReasonCode::PROTOCOL_ERROR)
            }
        }
    }

    /// Any packet from the client restarts the keep-alive timer [MQTT-3.1.2-23]; so does the
    /// end of a pause in which the broker did not read (back-pressure).
    pub(crate) fn touch(&mut self, now: Instant) {
        self.deadline = (self.keep_alive != 0).then(|| {
            let k = Duration::from_secs(u64::from(self.keep_alive));
            now + k + k / 2
        });
    }

    /// A protocol violation by a connected client: v5 DISCONNECT with `reason`, close, will.
    pub(crate) fn fail(&mut self, reason: ReasonCode) {
        if self.phase == Phase::Closed {
            return;
        }
        self.send_disconnect(reason);
        let will = self.will.take();
        self.finish(will, reason);
    }

    /// Records an in-flight change of a persistent session (see [`Connection::take_flow`]).
    pub(crate) fn note_flow(flow: &mut Vec<FlowChange>, track: bool, change: FlowChange) {
        if track {
            flow.push(change);
        }
    }

    /// Closes without sending anything (before CONNACK, or 3.x).
    fn close_silently(&mut self, reason: ReasonCode) {
        if self.phase == Phase::Closed {
            return;
        }
        let will = if self.phase == Phase::Connected {
            self.will.take()
        } else {
            None
        };
        self.finish(will, reason);
    }

    fn send_disconnect(&mut self, reason: ReasonCode) {
        // Only v5 has a server-sent DISCONNECT [MQTT-3.14.0-1]; 3.x connections just close.
        if self.version.is_v5() && self.phase == Phase::Connected {
            // DISCONNECT may always carry a Reason String [MQTT-3.14.2-3 allows it for the
            // server]; it tells the user why in words.
            self.transmit.push_back(Packet::Disconnect(Disconnect {
                reason_code: reason,
                properties: tern_codec::DisconnectProperties {
                    reason_string: Some(ByteStr::from_static(reason.name())),
                    ..Default::default()
                }
                .into(),
            }));
        }
    }

    fn finish(&mut self, will: Option<Box<Will>>, reason: ReasonCode) {
        // The will is published with the client's own rights: a topic it may not write to is
        // dropped, as a PUBLISH would be.
        let will = will.filter(|w| {
            self.authz
                .authorize(&self.identity, crate::auth::Access::Write, &w.message.topic)
        });
        self.phase = Phase::Closed;
        self.deadline = None;
        self.early = None;
        self.actions.push_back(Action::Closed { will, reason });
    }

    /// Reason strings and user properties on acks only when the client did not refuse them
    /// (v5 Request Problem Information) [MQTT-3.1.2-29].
    fn reason_string(&self, s: &'static str) -> Option<ByteStr> {
        (self.version.is_v5() && self.problem_information).then(|| ByteStr::from_static(s))
    }
}
