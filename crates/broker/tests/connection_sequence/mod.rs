//! Drives one whole client connection through the protocol state machine from arbitrary bytes,
//! as the connection task does (decode what arrived, feed it, answer the broker's requests,
//! encode what comes out), but in memory and with a virtual clock.
//!
//! Shared by the cargo-fuzz target `connection` (`fuzz/fuzz_targets/connection.rs`) and by the
//! replay of its corpus (`tests/fuzz_corpus.rs`), so whatever the fuzzer found stays a test.
//!
//! Input layout: byte 0 chooses the set-up (protocol version, a well-formed CONNECT first or
//! not, accept or reject, a resumed session with messages in flight, an ACL, small limits);
//! byte 1 shapes that CONNECT; the rest is a list of operations, one byte each plus data:
//! feed the next bytes to the decoder (in chunks, so packets arrive truncated and split),
//! deliver a message, let time pass, lose or close the connection, answer the CONNECT.
//!
//! It panics (a finding) when the state machine panics, when a packet it wants to send cannot
//! be encoded, when a PUBLISH is larger than the client's Maximum Packet Size, or when a closed
//! connection still asks for something.

#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_broker::auth::{AclFile, AllowAll, Authorizer};
use tern_broker::message::{Delivery, Message};
use tern_broker::protocol::{Accepted, Action, Connection, Phase, ProtocolConfig};
use tern_broker::session::{Outgoing, OutgoingState, QueueLimits, SessionState};
use tern_codec::{
    ByteStr, Connect, ConnectProperties, LastWill, Packet, ProtocolVersion, QoS, ReasonCode,
    WillProperties,
};

/// The ACL used when the set-up byte asks for one: some topics readable, some writable.
const ACL: &str = "\
topic read r/#
topic write w/#
topic readwrite a/#
topic deny a/secret
pattern readwrite c/%c/#
user u
topic readwrite u/#
";

const TOPICS: [&str; 4] = ["a/b", "r/x", "w/y", "a/secret"];

/// Runs one connection sequence described by `data`.
pub fn run(data: &[u8]) {
    let (setup, rest) = match data {
        [a, b, rest @ ..] => ((*a, *b), rest),
        _ => return,
    };
    let mut h = Harness::new(setup.0, setup.1);
    h.ops(rest);
    // The socket closes at the end of the input: whatever state it is in.
    h.conn.handle_connection_lost();
    h.step();
    assert!(h.conn.is_closed());
    assert!(h.conn.poll_timeout().is_none());
    let _ = h.conn.take_session();
}

struct Harness {
    conn: Connection,
    now: Instant,
    rbuf: BytesMut,
    max_packet: usize,
    reject: bool,
    resume: bool,
    assign_id: bool,
    pending_connect: bool,
    closed_seen: bool,
}

impl Harness {
    fn new(setup: u8, shape: u8) -> Self {
        let version = match setup & 3 {
            0 => ProtocolVersion::V31,
            1 => ProtocolVersion::V311,
            _ => ProtocolVersion::V5,
        };
        let small = setup & 0x40 != 0;
        let cfg = if small {
            ProtocolConfig {
                max_keepalive: 10,
                max_packet_size: 128,
                max_inflight: 2,
                topic_alias_maximum: 2,
                connect_timeout: Duration::from_secs(1),
                queue: QueueLimits {
                    max_messages: 4,
                    max_bytes: 256,
                    queue_qos0: true,
                },
                max_qos: QoS::AtLeastOnce,
                retain_available: false,
            }
        } else {
            ProtocolConfig::default()
        };
        let authz: Arc<dyn Authorizer> = if setup & 0x20 != 0 {
            match AclFile::parse("fuzz.acl", ACL) {
                Ok(acl) => Arc::new(acl),
                Err(e) => panic!("fuzz ACL does not parse: {e}"),
            }
        } else {
            Arc::new(AllowAll)
        };
        let now = Instant::now();
        let max_packet = cfg.max_packet_size as usize;
        let conn = Connection::new(Arc::new(cfg), authz, now);
        let mut h = Harness {
            conn,
            now,
            rbuf: BytesMut::new(),
            max_packet,
            reject: setup & 0x08 != 0,
            resume: setup & 0x10 != 0,
            assign_id: setup & 0x80 != 0,
            pending_connect: false,
            closed_seen: false,
        };
        if setup & 0x04 != 0 {
            let connect = connect_packet(version, shape);
            if tern_codec::encode(&Packet::Connect(Box::new(connect)), version, &mut h.rbuf)
                .is_err()
            {
                panic!("a well-formed CONNECT encodes");
            }
            h.decode();
            h.step();
        }
        h
    }

    fn ops(&mut self, mut rest: &[u8]) {
        while let [op, tail @ ..] = rest {
            rest = tail;
            let arg = op >> 3;
            match op & 7 {
                k @ 0..=3 => {
                    let n = (usize::from(arg) + 1) << (2 * k);
                    let (chunk, tail) = rest.split_at(n.min(rest.len()));
                    rest = tail;
                    self.rbuf.extend_from_slice(chunk);
                    self.decode();
                }
                4 => self.deliver(arg),
                5 => {
                    // Up to 31 half-seconds; then the deadline, if any, is honoured exactly.
                    self.now += Duration::from_millis(500 * u64::from(arg));
                    self.conn.handle_timeout(self.now);
                    if arg == 31
                        && let Some(t) = self.conn.poll_timeout()
                    {
                        self.now = self.now.max(t);
                        self.conn.handle_timeout(self.now);
                    }
                }
                6 => match arg {
                    0..=15 => self.conn.handle_connection_lost(),
                    16..=23 => self.conn.close(ReasonCode::SESSION_TAKEN_OVER),
                    _ => self.conn.close(ReasonCode::SERVER_SHUTTING_DOWN),
                },
                _ => self.answer_connect(),
            }
            self.step();
        }
    }

    /// Decodes what is buffered, as the connection task does.
    fn decode(&mut self) {
        loop {
            if self.conn.is_closed() {
                return;
            }
            match tern_codec::decode(&mut self.rbuf, self.conn.version(), self.max_packet) {
                Ok(Some(p)) => {
                    self.conn.handle_packet(p, self.now);
                    self.step();
                }
                Ok(None) => return,
                Err(e) => {
                    self.conn.handle_decode_error(e.reason_code());
                    return;
                }
            }
        }
    }

    fn deliver(&mut self, arg: u8) {
        let topic = TOPICS[usize::from(arg & 3)];
        let qos = match (arg >> 2) & 3 {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let mut m = Message::new(topic, vec![b'x'; usize::from(arg) * 8], qos, false);
        if arg & 0x10 != 0 {
            m = m.with_expiry_interval(Some(1), self.now);
        }
        self.conn.deliver(
            Delivery {
                message: Arc::new(m),
                qos,
                retain: arg & 0x10 != 0,
                subscription_ids: if arg & 1 != 0 { vec![7] } else { vec![] },
                store_seq: 0,
            },
            self.now,
        );
    }

    fn answer_connect(&mut self) {
        if !self.pending_connect {
            return;
        }
        self.pending_connect = false;
        if self.reject {
            self.conn.reject(ReasonCode::NOT_AUTHORIZED);
            return;
        }
        let client_id: Arc<str> = Arc::from(self.conn.identity().client_id.as_str());
        let mut session = SessionState::new(client_id, 0);
        if self.resume {
            // A session left with messages in flight both ways and a queue.
            for (i, state) in [
                OutgoingState::AwaitPubAck,
                OutgoingState::AwaitPubRec,
                OutgoingState::AwaitPubComp,
            ]
            .into_iter()
            .enumerate()
            {
                let id = session.next_packet_id();
                let qos = if i == 0 {
                    QoS::AtLeastOnce
                } else {
                    QoS::ExactlyOnce
                };
                // The first is larger than a client's Maximum Packet Size of 64.
                let mut d = delivery(TOPICS[i % TOPICS.len()], qos);
                if i == 0 {
                    d.message = Arc::new(Message::new(TOPICS[0], vec![b'x'; 100], qos, false));
                }
                session.outgoing.push_back(Outgoing {
                    packet_id: id,
                    delivery: d,
                    state,
                });
            }
            session.incoming_qos2.insert(1);
            session.incoming_qos2.insert(65535);
        }
        self.conn.accept(
            Accepted {
                session,
                session_present: self.resume,
                assigned_client_id: self.assign_id.then(|| ByteStr::from("assigned-1")),
            },
            self.now,
        );
    }

    /// Carries out the broker's requests and checks every packet to send.
    fn step(&mut self) {
        while let Some(a) = self.conn.poll_action() {
            assert!(!self.closed_seen, "an action after Closed: {a:?}");
            match a {
                Action::Connect(_) => {
                    assert_eq!(self.conn.phase(), Phase::AwaitAccept);
                    self.pending_connect = true;
                }
                Action::Publish(m) => {
                    // Loop the message back, as if the client were subscribed to it.
                    if self
                        .conn
                        .session()
                        .is_some_and(|s| !s.subscriptions.is_empty())
                    {
                        let qos = m.qos;
                        self.conn.deliver(
                            Delivery {
                                message: m,
                                qos,
                                retain: false,
                                subscription_ids: vec![],
                                store_seq: 0,
                            },
                            self.now,
                        );
                    }
                }
                Action::Subscribe(subs) => {
                    for s in subs.iter().filter(|s| s.send_retained) {
                        let mut d = delivery("a/b", s.subscription.options.qos);
                        d.retain = true;
                        d.subscription_ids.extend(s.subscription.id);
                        self.conn.deliver(d, self.now);
                    }
                }
                Action::Unsubscribe(_) => {}
                Action::Closed { .. } => {
                    assert!(self.conn.is_closed());
                    self.closed_seen = true;
                }
            }
        }
        let version = self.conn.version();
        let max = self.conn.client_maximum_packet_size();
        while let Some(p) = self.conn.poll_transmit() {
            let mut out = BytesMut::new();
            if let Err(e) = tern_codec::encode(&p, version, &mut out) {
                panic!("the broker cannot encode its own {}: {e} ({p:?})", p.name());
            }
            if let (Packet::Publish(_), Some(max)) = (&p, max) {
                assert!(
                    out.len() <= max as usize,
                    "PUBLISH of {} bytes over the client's Maximum Packet Size {max}",
                    out.len()
                );
            }
            if let Packet::Publish(pb) = &p {
                assert_eq!(pb.qos == QoS::AtMostOnce, pb.packet_id == 0);
            }
        }
    }
}

fn delivery(topic: &str, qos: QoS) -> Delivery {
    Delivery {
        message: Arc::new(Message::new(topic, "m", qos, false)),
        qos,
        retain: false,
        subscription_ids: vec![],
        store_seq: 0,
    }
}

/// A well-formed CONNECT whose options come from `shape`.
fn connect_packet(version: ProtocolVersion, shape: u8) -> Connect {
    let v5 = version == ProtocolVersion::V5;
    let mut properties = ConnectProperties::default();
    if v5 {
        if shape & 0x02 != 0 {
            properties.receive_maximum = Some(1);
            properties.maximum_packet_size = Some(64);
        }
        if shape & 0x04 != 0 {
            properties.topic_alias_maximum = Some(2);
            properties.request_problem_information = Some(false);
            properties.request_response_information = Some(true);
        }
        if shape & 0x08 != 0 {
            properties.session_expiry_interval = Some(60);
        }
    }
    let will = (shape & 0x01 != 0).then(|| LastWill {
        topic: ByteStr::from(if shape & 0x10 != 0 {
            "w/will"
        } else {
            "r/will"
        }),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: shape & 0x20 != 0,
        properties: WillProperties::default(),
    });
    Connect {
        protocol: version,
        clean_start: shape & 0x40 != 0 || version == ProtocolVersion::V31,
        keep_alive: if shape & 0x80 != 0 { 2 } else { 0 },
        client_id: ByteStr::from(if shape & 0x40 != 0 && v5 { "" } else { "fuzz" }),
        will,
        username: (shape & 0x10 != 0).then(|| ByteStr::from("u")),
        password: None,
        properties,
    }
}
