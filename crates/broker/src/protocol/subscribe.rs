//! SUBSCRIBE and SUBACK (spec sections 3.8 and 3.9): topic filter and shared-subscription
//! checks, authorization, QoS downgrade to what the broker grants, subscription identifiers,
//! and which subscriptions are due their retained messages (v5 Retain Handling).

use super::{Action, Connection, NewSubscription};
use crate::auth::Access;
use crate::session::Subscription;
use crate::topic;
use tern_codec::{
    AckProperties, Packet, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions,
};

impl Connection {
    pub(super) fn handle_subscribe(&mut self, s: Subscribe) {
        let v5 = self.version.is_v5();
        let sub_id = s.properties.subscription_identifier;
        if sub_id == Some(0) {
            return self.fail(ReasonCode::PROTOCOL_ERROR);
        }
        let mut reason_codes = Vec::with_capacity(s.filters.len());
        let mut added = Vec::new();
        for (filter, opts) in s.filters {
            let failure = |code: ReasonCode| {
                if v5 {
                    code
                } else {
                    ReasonCode::V3_SUBACK_FAILURE
                }
            };
            let group = match topic::parse_filter(&filter) {
                Ok(parsed) => parsed.group.is_some(),
                Err(_) => {
                    reason_codes.push(failure(ReasonCode::TOPIC_FILTER_INVALID));
                    continue;
                }
            };
            // No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4].
            if group && opts.no_local {
                return self.fail(ReasonCode::PROTOCOL_ERROR);
            }
            if !self
                .authz
                .authorize(&self.identity, Access::Subscribe, &filter)
            {
                reason_codes.push(failure(ReasonCode::NOT_AUTHORIZED));
                continue;
            }
            // Grant at most the broker's maximum QoS [MQTT-3.2.2-9].
            let granted = opts.qos.min(self.cfg.max_qos);
            let subscription = Subscription {
                options: SubscriptionOptions {
                    qos: granted,
                    ..opts
                },
                id: sub_id,
            };
            let Some(session) = self.session.as_mut() else {
                return;
            };
            // A subscription to an existing filter replaces it [MQTT-3.8.4-3].
            let existed = session
                .subscriptions
                .insert(filter.to_string(), subscription)
                .is_some();
            // Retained messages are not sent for shared subscriptions [MQTT-3.8.4-?]; Retain
            // Handling 1 sends them only for a new subscription, 2 never [MQTT-3.3.1-9] [MQTT-3.3.1-10].
            let send_retained = !group
                && match opts.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            added.push(NewSubscription {
                filter,
                subscription,
                send_retained,
            });
            reason_codes.push(ReasonCode(granted as u8));
        }
        // SUBACK has one return code per filter, in order [MQTT-3.8.4-6], and goes before any
        // retained message [MQTT-3.8.4-?].
        self.transmit.push_back(Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            reason_codes,
            properties: AckProperties::default(),
        }));
        if !added.is_empty() {
            self.actions.push_back(Action::Subscribe(added));
        }
    }
}
