//! UNSUBSCRIBE and UNSUBACK (spec sections 3.10 and 3.11): removes subscriptions from the
//! session and answers, in v5, one reason code per filter (0x00, 0x11 No subscription existed,
//! 0x8F Topic Filter invalid).

use super::{Action, Connection};
use crate::topic;
use tern_codec::{AckProperties, Packet, ReasonCode, UnsubAck, Unsubscribe};

impl Connection {
    pub(super) fn handle_unsubscribe(&mut self, u: Unsubscribe) {
        let v5 = self.version.is_v5();
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let mut reason_codes = Vec::with_capacity(u.filters.len());
        let mut removed = Vec::new();
        for filter in u.filters {
            if topic::parse_filter(&filter).is_err() {
                reason_codes.push(ReasonCode::TOPIC_FILTER_INVALID);
            } else if session.subscriptions.remove(filter.as_str()).is_some() {
                reason_codes.push(ReasonCode::SUCCESS);
                removed.push(filter);
            } else {
                reason_codes.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
            }
        }
        // Even when nothing was removed, UNSUBACK is sent [MQTT-3.10.4-5].
        self.transmit.push_back(Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            reason_codes: if v5 { reason_codes } else { Vec::new() },
            properties: AckProperties::default(),
        }));
        if !removed.is_empty() {
            self.actions.push_back(Action::Unsubscribe(removed));
        }
    }
}
