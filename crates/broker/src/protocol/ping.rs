//! PINGREQ and PINGRESP (spec sections 3.12 and 3.13). The keep-alive timer itself is restarted
//! by every packet, in [`Connection::handle_packet`].

use super::Connection;
use tern_codec::Packet;

impl Connection {
    /// PINGREQ is answered with PINGRESP [MQTT-3.12.4-1].
    pub(super) fn handle_pingreq(&mut self) {
        self.transmit.push_back(Packet::PingResp);
    }
}
