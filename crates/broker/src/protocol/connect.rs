//! CONNECT and CONNACK (spec sections 3.1 and 3.2): client identifier rules, keep alive, session
//! expiry, the will, and the CONNACK properties that advertise what the broker supports.
//!
//! Authentication and finding the session are the broker's business: this module turns a
//! CONNECT into an [`Action::Connect`] and the broker's verdict into CONNACK.

use super::{Accepted, Action, ConnectRequest, Connection, Phase, Will};
use crate::message::Message;
use crate::session::EXPIRY_NEVER;
use crate::store::FlowChange;
use crate::topic;
use std::sync::Arc;
use std::time::Instant;
use tern_codec::{ConnAck, ConnAckProperties, Connect, Packet, ProtocolVersion, QoS, ReasonCode};

impl Connection {
    pub(super) fn handle_connect(&mut self, c: Connect) {
        self.version = c.protocol;
        let v5 = c.protocol.is_v5();

        // Enhanced authentication is not supported: 0x8C Bad authentication method.
        if v5 && c.properties.authentication_method.is_some() {
            return self.reject(ReasonCode::BAD_AUTHENTICATION_METHOD);
        }
        // 3.1.1: an empty client id needs Clean Session 1 [MQTT-3.1.3-8]; 3.1 has no empty ids.
        if c.client_id.is_empty() && (c.protocol == ProtocolVersion::V31 || (!v5 && !c.clean_start))
        {
            return self.reject(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        // 3.x cannot be told a Server Keep Alive: refuse a longer keep alive, as Mosquitto does.
        if !v5 && c.keep_alive > self.cfg.max_keepalive {
            return self.reject(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        if let Some(w) = &c.will
            && topic::validate_topic_name(&w.topic).is_err()
        {
            return self.reject(ReasonCode::TOPIC_NAME_INVALID);
        }
        if c.properties.receive_maximum == Some(0) || c.properties.maximum_packet_size == Some(0) {
            return self.reject(ReasonCode::PROTOCOL_ERROR);
        }

        let session_expiry_interval = if v5 {
            c.properties.session_expiry_interval.unwrap_or(0)
        } else if c.clean_start {
            0
        } else {
            EXPIRY_NEVER
        };
        self.connect_expiry_zero = session_expiry_interval == 0;
        self.client_receive_maximum = c.properties.receive_maximum.unwrap_or(u16::MAX);
        self.client_maximum_packet_size = c.properties.maximum_packet_size;
        self.client_topic_alias_maximum = c.properties.topic_alias_maximum.unwrap_or(0);
        self.problem_information = c.properties.request_problem_information.unwrap_or(true);
        self.request_response_information =
            c.properties.request_response_information.unwrap_or(false);

        // Keep alive, capped by the server (v5 tells the client with Server Keep Alive).
        let mut keep_alive = c.keep_alive;
        if v5
            && (keep_alive > self.cfg.max_keepalive
                || (keep_alive == 0 && self.cfg.max_keepalive < u16::MAX))
        {
            keep_alive = self.cfg.max_keepalive;
        }
        self.keep_alive = keep_alive;

        self.will = c.will.map(|w| {
            let message = Message {
                topic: w.topic,
                payload: w.payload,
                qos: w.qos,
                retain: w.retain,
                properties: tern_codec::PublishProperties {
                    payload_format_indicator: w.properties.payload_format_indicator,
                    response_topic: w.properties.response_topic,
                    correlation_data: w.properties.correlation_data,
                    user_properties: w.properties.user_properties,
                    content_type: w.properties.content_type,
                    ..Default::default()
                },
                expires_at: None,
                publisher: None,
                username: None,
                hops: 0,
            };
            Box::new(Will {
                message,
                delay_interval: w.properties.will_delay_interval.unwrap_or(0),
                // Message expiry counts from publication, so it is applied when the will goes out.
                message_expiry_interval: w.properties.message_expiry_interval,
            })
        });

        self.identity.client_id = c.client_id.to_string();
        self.identity.username = c.username.as_ref().map(|u| u.to_string());
        self.phase = Phase::AwaitAccept;
        self.actions.push_back(Action::Connect(ConnectRequest {
            version: c.protocol,
            client_id: c.client_id,
            clean_start: c.clean_start,
            username: c.username,
            password: c.password,
            session_expiry_interval,
        }));
    }

    /// The will's Message Expiry Interval is kept on the CONNECT; the broker reads it here.
    pub fn will(&self) -> Option<&Will> {
        self.will.as_deref()
    }

    /// Refuses the connection with `reason` (a v5 CONNACK reason code; translated for 3.x
    /// [MQTT-3.2.2-5]) and closes it [MQTT-3.2.2-7].
    pub fn reject(&mut self, reason: ReasonCode) {
        if self.phase == Phase::Closed {
            return;
        }
        let reason_code = if self.version.is_v5() {
            reason
        } else {
            reason.to_v3_connack()
        };
        let properties = ConnAckProperties {
            reason_string: (self.version.is_v5() && self.problem_information)
                .then(|| tern_codec::ByteStr::from_static(reason.name())),
            ..Default::default()
        };
        self.transmit.push_back(Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code,
            properties: properties.into(),
        }));
        self.will = None;
        self.finish(None, reason);
    }

    /// Accepts the connection: CONNACK 0x00 with the properties the broker supports, then
    /// resends what was in flight with DUP set [MQTT-4.4.0-1] and handles any packets that
    /// arrived before the answer.
    pub fn accept(&mut self, accepted: Accepted, now: Instant) {
        if self.phase != Phase::AwaitAccept {
            return;
        }
        let Accepted {
            mut session,
            session_present,
            assigned_client_id,
        } = accepted;
        if let Some(id) = &assigned_client_id {
            self.identity.client_id = id.to_string();
            session.client_id = Arc::from(id.as_str());
        }
        // Only a session that outlives the connection has in-flight state worth storing.
        self.track_flow = session.expiry_interval != 0;
        let v5 = self.version.is_v5();
        let mut props = ConnAckProperties::default();
        if v5 {
            props.receive_maximum = Some(self.cfg.max_inflight);
            props.maximum_packet_size = Some(self.cfg.max_packet_size);
            props.topic_alias_maximum = Some(self.cfg.topic_alias_maximum);
            props.assigned_client_identifier = assigned_client_id;
            props.retain_available = (!self.cfg.retain_available).then_some(false);
            props.maximum_qos =
                (self.cfg.max_qos != QoS::ExactlyOnce).then_some(self.cfg.max_qos as u8);
            props.wildcard_subscription_available = Some(true);
            props.subscription_identifiers_available = Some(true);
            props.shared_subscription_available = Some(true);
            if self.keep_alive != 0 {
                props.server_keep_alive = Some(self.keep_alive);
            }
            if self.request_response_information {
                props.response_information =
                    Some(format!("response/{}", self.identity.client_id).into());
            }
        }
        self.transmit.push_back(Packet::ConnAck(ConnAck {
            session_present,
            reason_code: ReasonCode::SUCCESS,
            properties: props.into(),
        }));
        self.phase = Phase::Connected;
        self.touch(now);

        // Resend unacknowledged messages, in their original order, with DUP [MQTT-4.4.0-1].
        // One larger than the Maximum Packet Size the client now sets is dropped as if it had
        // been delivered [MQTT-3.1.2-25] (found by the fuzzer).
        let mut resend = Vec::new();
        let mut too_large = 0;
        let mut forgotten = Vec::new();
        let max = self.client_maximum_packet_size;
        session.outgoing.retain(|o| {
            let packet = match o.state {
                crate::session::OutgoingState::AwaitPubComp => {
                    Packet::PubRel(tern_codec::PubRel::new(o.packet_id))
                }
                _ => {
                    let mut p = self.publish_packet(&o.delivery, now);
                    p.packet_id = o.packet_id;
                    p.dup = true;
                    Packet::Publish(p)
                }
            };
            let fits = !matches!(packet, Packet::Publish(_))
                || max.is_none_or(|max| {
                    tern_codec::encoded_len(&packet, self.version)
                        .is_ok_and(|len| len <= max as usize)
                });
            if fits {
                resend.push(packet);
            } else {
                too_large += 1;
                if o.delivery.store_seq != 0 {
                    forgotten.push(FlowChange::Done {
                        seq: o.delivery.store_seq,
                        qos2_sent: o.delivery.qos == QoS::ExactlyOnce,
                    });
                }
            }
            fits
        });
        for change in forgotten {
            Connection::note_flow(&mut self.flow, self.track_flow, change);
        }
        self.stats.dropped_too_large += too_large;
        self.transmit.extend(resend);
        self.session = Some(session);
        self.pump(now);

        let mut early = self.early.take().unwrap_or_default();
        while let Some(p) = early.pop_front() {
            if self.phase != Phase::Connected {
                break;
            }
            self.dispatch(p, now);
        }
    }
}
