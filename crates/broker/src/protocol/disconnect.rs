//! DISCONNECT from the client (spec section 3.14): a normal disconnection discards the will
//! [MQTT-3.14.4-3] unless v5 reason 0x04 asks for it; v5 may change the Session Expiry Interval,
//! but not from zero to non-zero [MQTT-3.14.2-2]. Server-sent DISCONNECTs are in `mod.rs`.

use super::Connection;
use tern_codec::{Disconnect, ReasonCode};

impl Connection {
    pub(super) fn handle_disconnect(&mut self, d: Disconnect) {
        if let Some(expiry) = d.properties.session_expiry_interval {
            if self.connect_expiry_zero && expiry != 0 {
                return self.fail(ReasonCode::PROTOCOL_ERROR);
            }
            if let Some(s) = self.session.as_mut() {
                s.expiry_interval = expiry;
            }
        }
        let will = if d.reason_code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE {
            self.will.take()
        } else {
            None
        };
        self.will = None;
        self.finish(will, d.reason_code);
    }
}
