//! PUBLISH and its acknowledgements, both directions (spec sections 3.3 to 3.7 and 4.3).
//!
//! Inbound: topic aliases, topic and QoS checks, authorization, QoS 1 PUBACK, QoS 2
//! PUBREC/PUBREL/PUBCOMP with the packet identifier kept until PUBREL so a resent PUBLISH is not
//! routed twice, and the v5 Receive Maximum we advertised. Outbound: the in-flight window (the
//! client's Receive Maximum), packet identifiers, topic aliases we assign, message expiry, and
//! the client's Maximum Packet Size.

use super::{Action, Connection, Phase};
use crate::auth::Access;
use crate::message::{Delivery, Message};
use crate::session::{Outgoing, OutgoingState};
use crate::store::FlowChange;
use crate::topic;
use std::sync::Arc;
use std::time::Instant;
use tern_codec::{
    AckProperties, ByteStr, Packet, PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode,
};

impl Connection {
    pub(super) fn handle_publish(&mut self, mut p: Publish, now: Instant) {
        let v5 = self.version.is_v5();
        // Topic aliases [MQTT-3.3.2-8] [MQTT-3.3.2-9] [MQTT-3.3.2-10].
        if let Some(alias) = p.properties.topic_alias {
            if !v5 || alias == 0 || alias > self.cfg.topic_alias_maximum {
                return self.fail(ReasonCode::TOPIC_ALIAS_INVALID);
            }
            if p.topic.is_empty() {
                match self.aliases.as_ref().and_then(|a| a.inbound.get(&alias)) {
                    Some(t) => p.topic = t.clone(),
                    None => return self.fail(ReasonCode::PROTOCOL_ERROR),
                }
            } else {
                self.aliases
                    .get_or_insert_default()
                    .inbound
                    .insert(alias, p.topic.clone());
            }
        }
        // No wildcards in a topic name [MQTT-3.3.2-2].
        if topic::validate_topic_name(&p.topic).is_err() {
            return self.fail(ReasonCode::TOPIC_NAME_INVALID);
        }
        if p.qos > self.cfg.max_qos {
            return self.fail(ReasonCode::QOS_NOT_SUPPORTED);
        }
        if p.retain && !self.cfg.retain_available {
            return self.fail(ReasonCode::RETAIN_NOT_SUPPORTED);
        }
        let bad_format = v5
            && p.properties.payload_format_indicator == Some(true)
            && std::str::from_utf8(&p.payload).is_err();
        let reason = if bad_format {
            ReasonCode::PAYLOAD_FORMAT_INVALID
        } else if !self
            .authz
            .authorize(&self.identity, Access::Write, &p.topic)
        {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode::SUCCESS
        };
        // 3.x has no way to say no: an unauthorized message is acknowledged and dropped.
        let ack_reason = if v5 { reason } else { ReasonCode::SUCCESS };
        let id = p.packet_id;
        let Some(session) = self.session.as_mut() else {
            return;
        };
        match p.qos {
            QoS::AtMostOnce => {
                if reason == ReasonCode::SUCCESS {
                    self.route(p, now);
                }
            }
            QoS::AtLeastOnce => {
                // v5: an identifier still held by a QoS 2 flow is in use.
                if v5 && session.incoming_qos2.contains(&id) {
                    let ack = self.ack(
                        id,
                        ReasonCode::PACKET_IDENTIFIER_IN_USE,
                        "packet identifier in use",
                    );
                    self.transmit.push_back(Packet::PubAck(ack));
                    return;
                }
                if reason == ReasonCode::SUCCESS {
                    self.route(p, now);
                }
                let ack = self.ack(id, ack_reason, "not authorized");
                self.transmit.push_back(Packet::PubAck(ack));
            }
            QoS::ExactlyOnce => {
                // A PUBLISH resent for an identifier awaiting PUBREL is not routed again [MQTT-4.3.3-9].
                if session.incoming_qos2.contains(&id) {
                    self.transmit.push_back(Packet::PubRec(PubRec::new(id)));
                    return;
                }
                if v5 && reason != ReasonCode::SUCCESS {
                    // An error PUBREC ends the flow: nothing to remember [MQTT-4.3.3-?].
                    let rec = self.ack(id, reason, "refused");
                    self.transmit.push_back(Packet::PubRec(PubRec {
                        packet_id: rec.packet_id,
                        reason_code: rec.reason_code,
                        properties: rec.properties,
                    }));
                    return;
                }
                // Receive Maximum we advertised [MQTT-3.3.4-9].
                if session.incoming_qos2.len() >= usize::from(self.cfg.max_inflight) {
                    return self.fail(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
                }
                session.incoming_qos2.insert(id);
                // Recorded after the message is routed (the driver writes the routed copies
                // first), so that a crash in between can repeat the message but never lose it.
                Connection::note_flow(
                    &mut self.flow,
                    self.track_flow,
                    FlowChange::Incoming {
                        packet_id: id,
                        held: true,
                    },
                );
                if reason == ReasonCode::SUCCESS {
                    self.route(p, now);
                }
                self.transmit.push_back(Packet::PubRec(PubRec::new(id)));
            }
        }
    }

    fn ack(&self, packet_id: u16, reason_code: ReasonCode, why: &'static str) -> PubAck {
        let reason_string = if reason_code.is_error() {
            self.reason_string(why)
        } else {
            None
        };
        PubAck {
            packet_id,
            reason_code,
            properties: AckProperties {
                reason_string,
                user_properties: Vec::new(),
            },
        }
    }

    fn route(&mut self, p: Publish, now: Instant) {
        let mut properties = p.properties.into_inner();
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        let expiry = properties.message_expiry_interval.take();
        let message = Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties,
            expires_at: None,
            publisher: self.session.as_ref().map(|s| s.client_id.clone()),
            // Set by the connection driver, which knows the authenticated user name.
            username: None,
            hops: 0,
        }
        .with_expiry_interval(expiry, now);
        self.actions.push_back(Action::Publish(Arc::new(message)));
    }

    pub(super) fn handle_pubrel(&mut self, r: PubRel) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let known = session.incoming_qos2.remove(&r.packet_id);
        if known {
            // PUBCOMP waits until this is durable: a crash must not leave the identifier held,
            // or the client's next message with it would be taken for a resend and dropped.
            Connection::note_flow(
                &mut self.flow,
                self.track_flow,
                FlowChange::Incoming {
                    packet_id: r.packet_id,
                    held: false,
                },
            );
        }
        let reason_code = if known || !self.version.is_v5() {
            ReasonCode::SUCCESS
        } else {
            // PUBREL for an identifier we do not hold: 0x92 [MQTT-4.3.3-?].
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        self.transmit.push_back(Packet::PubComp(PubComp {
            packet_id: r.packet_id,
            reason_code,
            properties: AckProperties::default(),
        }));
    }

    pub(super) fn handle_puback(&mut self, a: PubAck, now: Instant) {
        if self.remove_outgoing(a.packet_id, OutgoingState::AwaitPubAck) {
            self.pump(now);
        } else {
            tracing::debug!(client_id = %self.identity.client_id, packet_id = a.packet_id, "PUBACK for unknown packet identifier");
        }
    }

    pub(super) fn handle_pubrec(&mut self, r: PubRec, now: Instant) {
        let v5 = self.version.is_v5();
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let found = session
            .outgoing
            .iter_mut()
            .find(|o| o.packet_id == r.packet_id && o.state != OutgoingState::AwaitPubAck);
        match found {
            Some(o) if r.reason_code.is_error() && o.state == OutgoingState::AwaitPubRec => {
                // The receiver refused the message: the flow ends here [MQTT-4.3.3-?].
                self.remove_outgoing(r.packet_id, OutgoingState::AwaitPubRec);
                self.pump(now);
            }
            Some(o) => {
                if o.state != OutgoingState::AwaitPubComp && o.delivery.store_seq != 0 {
                    // PUBREL goes out once this is durable: after a crash the flow resumes
                    // with PUBREL, not with a PUBLISH the client would take for a new message.
                    Connection::note_flow(
                        &mut self.flow,
                        self.track_flow,
                        FlowChange::Sent {
                            seq: o.delivery.store_seq,
                            packet_id: r.packet_id,
                            state: OutgoingState::AwaitPubComp,
                        },
                    );
                }
                o.state = OutgoingState::AwaitPubComp;
                self.transmit
                    .push_back(Packet::PubRel(PubRel::new(r.packet_id)));
            }
            None => {
                let mut rel = PubRel::new(r.packet_id);
                if v5 {
                    rel.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                self.transmit.push_back(Packet::PubRel(rel));
            }
        }
    }

    pub(super) fn handle_pubcomp(&mut self, c: PubComp, now: Instant) {
        if self.remove_outgoing(c.packet_id, OutgoingState::AwaitPubComp) {
            self.pump(now);
        }
    }

    /// Ends the flow of an outgoing message; a stored one is forgotten by the store too.
    fn remove_outgoing(&mut self, packet_id: u16, state: OutgoingState) -> bool {
        let Some(session) = self.session.as_mut() else {
            return false;
        };
        let Some(i) = session
            .outgoing
            .iter()
            .position(|o| o.packet_id == packet_id && o.state == state)
        else {
            return false;
        };
        let Some(o) = session.outgoing.remove(i) else {
            return false;
        };
        if o.delivery.store_seq != 0 {
            Connection::note_flow(
                &mut self.flow,
                self.track_flow,
                FlowChange::Done {
                    seq: o.delivery.store_seq,
                    qos2_sent: o.delivery.qos == QoS::ExactlyOnce,
                },
            );
        }
        true
    }

    /// A stored delivery the connection drops without sending it: the store forgets it.
    fn forget_unsent(&mut self, d: &Delivery) {
        if d.store_seq != 0 {
            Connection::note_flow(
                &mut self.flow,
                self.track_flow,
                FlowChange::Done {
                    seq: d.store_seq,
                    qos2_sent: false,
                },
            );
        }
    }

    /// Hands the connection a message for its client. It is sent at once if the in-flight
    /// window allows, else held in order until acknowledgements open the window.
    pub fn deliver(&mut self, delivery: Delivery, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        self.pending.push_back(delivery);
        if self.phase == Phase::Connected {
            self.pump(now);
        }
    }

    /// Moves held deliveries onto the wire while the window allows, in order.
    pub(super) fn pump(&mut self, now: Instant) {
        while let Some(head) = self.pending.front() {
            // Expired messages are not sent [MQTT-3.3.2-5].
            if head.message.is_expired(now) {
                if let Some(d) = self.pending.pop_front() {
                    self.forget_unsent(&d);
                }
                self.stats.dropped_expired += 1;
                continue;
            }
            // Read access is checked again on delivery, so a queued or retained message never
            // reaches a client that may not read it.
            if !self
                .authz
                .authorize(&self.identity, Access::Read, &head.message.topic)
            {
                if let Some(d) = self.pending.pop_front() {
                    self.forget_unsent(&d);
                }
                self.stats.dropped_unauthorized += 1;
                continue;
            }
            if head.qos != QoS::AtMostOnce && !self.window_open() {
                break;
            }
            let Some(d) = self.pending.pop_front() else {
                break;
            };
            let mut p = self.publish_packet(&d, now);
            if d.qos != QoS::AtMostOnce {
                p.packet_id = 1; // placeholder: the size does not depend on its value
            }
            let mut packet = Packet::Publish(p);
            // Never send a packet larger than the client accepts; drop it as if delivered
            // [MQTT-3.1.2-24] [MQTT-3.1.2-25].
            if let Some(max) = self.client_maximum_packet_size {
                let fits = tern_codec::encoded_len(&packet, self.version)
                    .is_ok_and(|len| len <= max as usize);
                if !fits {
                    self.forget_unsent(&d);
                    self.stats.dropped_too_large += 1;
                    tracing::debug!(client_id = %self.identity.client_id, topic = %d.message.topic, "message larger than the client's maximum packet size dropped");
                    continue;
                }
            }
            let Packet::Publish(p) = &mut packet else {
                continue;
            };
            if d.qos != QoS::AtMostOnce {
                let Some(session) = self.session.as_mut() else {
                    break;
                };
                let id = session.next_packet_id();
                p.packet_id = id;
                let state = if d.qos == QoS::AtLeastOnce {
                    OutgoingState::AwaitPubAck
                } else {
                    OutgoingState::AwaitPubRec
                };
                if state == OutgoingState::AwaitPubRec && d.store_seq != 0 {
                    // The PUBLISH goes out once its packet identifier is durable: after a crash
                    // it is resent with the same one, which a client that has it recognises.
                    Connection::note_flow(
                        &mut self.flow,
                        self.track_flow,
                        FlowChange::Sent {
                            seq: d.store_seq,
                            packet_id: id,
                            state,
                        },
                    );
                }
                session.outgoing.push_back(Outgoing {
                    packet_id: id,
                    delivery: d,
                    state,
                });
            }
            self.apply_outbound_alias(p);
            self.transmit.push_back(packet);
        }
    }

    /// The PUBLISH for a delivery (no packet identifier, no alias yet).
    pub(super) fn publish_packet(&self, d: &Delivery, now: Instant) -> Publish {
        let m = &d.message;
        let properties = if self.version.is_v5() {
            let mut props = m.properties.clone();
            props
                .subscription_identifiers
                .clone_from(&d.subscription_ids);
            // Forward what is left of the expiry interval [MQTT-3.3.2-6].
            props.message_expiry_interval = m.remaining_expiry(now);
            props.into()
        } else {
            // Not built and compared with the empty block per delivery: v3 has no properties.
            tern_codec::Props::none()
        };
        Publish {
            dup: false,
            qos: d.qos,
            retain: d.retain,
            topic: m.topic.clone(),
            packet_id: 0,
            properties,
            payload: m.payload.clone(),
        }
    }

    /// Replaces a topic we have sent before by its alias, or assigns a new alias while the
    /// client's Topic Alias Maximum allows [MQTT-3.3.2-11]. Aliases last one connection.
    fn apply_outbound_alias(&mut self, p: &mut Publish) {
        let max = self.client_topic_alias_maximum;
        if max == 0 || !self.version.is_v5() {
            return;
        }
        let outbound = &mut self.aliases.get_or_insert_default().outbound;
        if let Some(&alias) = outbound.get(&p.topic) {
            p.properties.topic_alias = Some(alias);
            p.topic = ByteStr::new();
        } else if outbound.len() < usize::from(max) {
            let alias = u16::try_from(outbound.len() + 1).unwrap_or(max);
            outbound.insert(p.topic.clone(), alias);
            p.properties.topic_alias = Some(alias);
        }
    }
}
