//! The per-connection driver: a TCP socket (TCP_NODELAY), a read buffer decoded incrementally with
//! `tern_codec::decode`, and a write buffer into which packets are encoded and then written in as
//! few system calls as possible. Deliberately minimal (no session state, no reconnection, no
//! TLS yet): the load generator has to stay cheaper than the broker it measures.
//!
//! Reads and writes use readiness (`readable`/`try_read`, `writable`/`try_write`) from a single
//! task, so a connection never blocks on a write while the peer waits for it to read.
//!
//! TLS and WebSocket (`mqtts://`, `wss://`, `ws://`) are opened by `tern-client`'s transport and
//! bridged to the driver through a local socket pair by a small pump task ([`tunnel`]), so the
//! driver itself only ever sees a plain socket; that costs one more copy per byte, which TLS
//! dwarfs anyway.
//!
//! Also here: [`InFlight`], the packet identifiers of unacknowledged QoS 1/2 publications, and
//! [`Template`], a PUBLISH encoded once by the codec and then copied with its packet identifier
//! and payload stamp patched in, so that publishing costs a copy rather than an encode.

use super::payload::{self, Stamp};
use anyhow::{Context, anyhow, bail};
use bytes::{Bytes, BytesMut};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tern_client::transport::Connection as Transport;
use tern_codec::{
    ByteStr, Connect, ConnectProperties, Disconnect, Packet, ProtocolVersion, Publish, QoS,
    Subscribe, SubscriptionOptions,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

/// Largest packet accepted from the broker.
pub const MAX_PACKET: usize = 4 * 1024 * 1024;
/// How long to wait for CONNACK or SUBACK.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to connect and how.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Broker address.
    pub addr: SocketAddr,
    /// Protocol version spoken.
    pub version: ProtocolVersion,
    /// Keep Alive sent in CONNECT, seconds.
    pub keep_alive: u16,
    /// For TLS and WebSocket: how `tern-client` opens the transport; `None` for plain TCP.
    pub tunnel: Option<Arc<tern_client::ConnectOptions>>,
}

/// The socket a connection reads and writes: TCP to the broker, or the local end of a
/// [`tunnel`] for TLS and WebSocket.
#[derive(Debug)]
pub enum Socket {
    /// Plain TCP to the broker.
    Tcp(TcpStream),
    /// Local end of a socket pair whose other end a pump task relays to the broker.
    Tunnel(UnixStream),
}

impl Socket {
    /// Waits until the socket may be readable.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.readable().await,
            Socket::Tunnel(s) => s.readable().await,
        }
    }

    /// Waits until the socket may be writable.
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.writable().await,
            Socket::Tunnel(s) => s.writable().await,
        }
    }

    /// Reads what is there without waiting.
    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.try_read_buf(buf),
            Socket::Tunnel(s) => s.try_read_buf(buf),
        }
    }

    /// Writes what the socket takes without waiting.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.try_write(buf),
            Socket::Tunnel(s) => s.try_write(buf),
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.write_all(buf).await,
            Socket::Tunnel(s) => s.write_all(buf).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.shutdown().await,
            Socket::Tunnel(s) => s.shutdown().await,
        }
    }
}

/// Opens a TLS or WebSocket transport with `tern-client` and returns the local end of a socket
/// pair relayed to it by a pump task, which ends when either side closes.
pub async fn tunnel(options: &tern_client::ConnectOptions) -> anyhow::Result<UnixStream> {
    let transport = Transport::open(options)
        .await
        .with_context(|| format!("opening {}:{}", options.host, options.port))?;
    let (ours, theirs) = UnixStream::pair()?;
    tokio::spawn(pump(transport, theirs));
    Ok(ours)
}

enum PumpEvent {
    FromBroker(tern_client::Result<usize>),
    FromDriver(io::Result<()>),
}

/// Relays bytes between the transport and the local socket. Each direction's write completes
/// before the next event; the driver never blocks on its end, so this cannot deadlock.
async fn pump(mut transport: Transport, mut local: UnixStream) {
    let mut from_broker = BytesMut::with_capacity(64 * 1024);
    let mut to_broker = BytesMut::with_capacity(64 * 1024);
    loop {
        let event = tokio::select! {
            r = transport.read(&mut from_broker) => PumpEvent::FromBroker(r),
            r = local.readable() => PumpEvent::FromDriver(r),
        };
        match event {
            PumpEvent::FromBroker(Ok(n)) if n > 0 => {
                if local.write_all(&from_broker).await.is_err() {
                    break;
                }
                from_broker.clear();
            }
            PumpEvent::FromBroker(_) => break,
            PumpEvent::FromDriver(Err(_)) => break,
            PumpEvent::FromDriver(Ok(())) => {
                to_broker.reserve(64 * 1024);
                match local.try_read_buf(&mut to_broker) {
                    Ok(0) => break,
                    Ok(_) => {
                        if transport.write(&to_broker).await.is_err() {
                            break;
                        }
                        to_broker.clear();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
        }
    }
    transport.close().await;
}

/// One MQTT connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: Socket,
    /// Bytes read and not yet decoded.
    pub rbuf: BytesMut,
    /// Bytes encoded and not yet written.
    pub wbuf: BytesMut,
    /// Protocol version of the connection.
    pub version: ProtocolVersion,
    /// The broker's Receive Maximum (v5 CONNACK); 65,535 when it sent none.
    pub receive_maximum: u16,
}

impl Conn {
    /// Connects, sends CONNECT (clean start) and waits for a successful CONNACK. With
    /// `persistent`, the session outlives the connection: MQTT 3.x clean session 0, MQTT 5
    /// clean start with a Session Expiry Interval of one hour.
    pub async fn open(ep: &Endpoint, client_id: &str, persistent: bool) -> anyhow::Result<Conn> {
        let stream = match &ep.tunnel {
            None => {
                let tcp = TcpStream::connect(ep.addr)
                    .await
                    .with_context(|| format!("connecting to {}", ep.addr))?;
                tcp.set_nodelay(true)?;
                Socket::Tcp(tcp)
            }
            Some(options) => Socket::Tunnel(tunnel(options).await?),
        };
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(256),
            wbuf: BytesMut::with_capacity(256),
            version: ep.version,
            receive_maximum: u16::MAX,
        };
        let v5 = ep.version == ProtocolVersion::V5;
        let mut properties = ConnectProperties::default();
        if persistent && v5 {
            properties.session_expiry_interval = Some(3600);
        }
        let connect = Connect {
            protocol: ep.version,
            clean_start: !persistent || v5,
            keep_alive: ep.keep_alive,
            client_id: ByteStr::from(client_id),
            will: None,
            username: None,
            password: None,
            properties,
        };
        conn.encode(&Packet::Connect(Box::new(connect)))?;
        conn.flush().await?;
        let packet = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.recv())
            .await
            .map_err(|_| anyhow!("no CONNACK within {HANDSHAKE_TIMEOUT:?}"))??;
        match packet {
            Packet::ConnAck(ack) if !ack.reason_code.is_error() && ack.reason_code.0 == 0 => {
                if let Some(max) = ack.properties.receive_maximum {
                    conn.receive_maximum = max;
                }
                Ok(conn)
            }
            Packet::ConnAck(ack) => bail!(
                "connection refused: CONNACK {} (0x{:02X})",
                ack.reason_code.name(),
                ack.reason_code.0
            ),
            other => bail!("expected CONNACK, got {}", other.name()),
        }
    }

    /// Subscribes to one filter and waits for a SUBACK granting it.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> anyhow::Result<()> {
        let sub = Subscribe {
            packet_id: 1,
            filters: vec![(
                ByteStr::from(filter),
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            )],
            ..Default::default()
        };
        self.encode(&Packet::Subscribe(sub))?;
        self.flush().await?;
        let packet = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.recv())
            .await
            .map_err(|_| anyhow!("no SUBACK within {HANDSHAKE_TIMEOUT:?}"))??;
        match packet {
            Packet::SubAck(ack) => match ack.reason_codes.first() {
                Some(code) if code.0 <= 2 => Ok(()),
                Some(code) => bail!(
                    "subscription to {filter:?} refused: {} (0x{:02X})",
                    code.name(),
                    code.0
                ),
                None => bail!("SUBACK without a reason code"),
            },
            other => bail!("expected SUBACK, got {}", other.name()),
        }
    }

    /// Encodes `packet` at the end of the write buffer.
    pub fn encode(&mut self, packet: &Packet) -> anyhow::Result<()> {
        tern_codec::encode(packet, self.version, &mut self.wbuf)
            .with_context(|| format!("encoding {}", packet.name()))
    }

    /// Decodes the next whole packet from the read buffer, if there is one.
    pub fn decode(&mut self) -> anyhow::Result<Option<Packet>> {
        tern_codec::decode(&mut self.rbuf, self.version, MAX_PACKET)
            .context("malformed packet from the broker")
    }

    /// Writes the whole write buffer, waiting as needed.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        Ok(())
    }

    /// Writes what the socket takes now without waiting; true when the buffer is empty.
    pub fn try_flush(&mut self) -> io::Result<bool> {
        while !self.wbuf.is_empty() {
            match self.stream.try_write(&self.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let _ = self.wbuf.split_to(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        Ok(true)
    }

    /// Reads what the socket has now (one read of at most `chunk` bytes) without waiting; false
    /// when nothing was there. An orderly close by the broker is an error.
    pub fn try_fill(&mut self, chunk: usize) -> anyhow::Result<bool> {
        self.rbuf.reserve(chunk);
        match self.stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => bail!("the broker closed the connection"),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e).context("reading from the broker"),
        }
    }

    /// Waits for and decodes one packet.
    pub async fn recv(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(p) = self.decode()? {
                return Ok(p);
            }
            self.stream.readable().await?;
            self.try_fill(4096)?;
        }
    }

    /// Sends DISCONNECT (best effort, bounded) and closes the connection.
    pub async fn disconnect(mut self) {
        if self
            .encode(&Packet::Disconnect(Disconnect::default()))
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }
}

/// Packet identifiers of QoS 1/2 publications awaiting their acknowledgement, bounded by the
/// in-flight window.
#[derive(Debug)]
pub struct InFlight {
    /// Per packet identifier: 0 free, 1 awaiting PUBACK or PUBREC, 2 awaiting PUBCOMP.
    state: Vec<u8>,
    count: usize,
    window: usize,
    next: u16,
}

/// State of a packet identifier awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
pub const AWAIT_ACK: u8 = 1;
/// State of a packet identifier awaiting PUBCOMP (QoS 2, after PUBREL).
pub const AWAIT_COMP: u8 = 2;

impl InFlight {
    /// An empty window of `window` identifiers (clamped to 1..=65,535).
    pub fn new(window: usize) -> Self {
        InFlight {
            state: vec![0; 65_536],
            count: 0,
            window: window.clamp(1, 65_535),
            next: 0,
        }
    }

    /// True while another publication may be sent.
    pub fn has_room(&self) -> bool {
        self.count < self.window
    }

    /// Publications awaiting acknowledgement.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing awaits acknowledgement.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Takes a free packet identifier, or `None` when the window is full.
    pub fn alloc(&mut self) -> Option<u16> {
        if !self.has_room() {
            return None;
        }
        for _ in 0..65_535 {
            self.next = self.next.wrapping_add(1);
            if self.next == 0 {
                self.next = 1;
            }
            let Some(slot) = self.state.get_mut(usize::from(self.next)) else {
                continue;
            };
            if *slot == 0 {
                *slot = AWAIT_ACK;
                self.count += 1;
                return Some(self.next);
            }
        }
        None
    }

    /// Moves `id` from state `from` to `to` (0 frees it); false if it was not in `from` (an
    /// acknowledgement for nothing we sent).
    pub fn advance(&mut self, id: u16, from: u8, to: u8) -> bool {
        match self.state.get_mut(usize::from(id)) {
            Some(s) if *s == from && id != 0 => {
                *s = to;
                if to == 0 {
                    self.count -= 1;
                }
                true
            }
            _ => false,
        }
    }
}

/// A PUBLISH encoded once, copied for each message with the packet identifier and stamp patched.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Bytes,
    packet_id_at: Option<usize>,
    payload_at: usize,
}

impl Template {
    /// Encodes the template and checks, by decoding a patched copy, that the patching is right.
    pub fn new(
        topic: &str,
        qos: QoS,
        payload_size: usize,
        version: ProtocolVersion,
    ) -> anyhow::Result<Template> {
        if payload_size < payload::HEADER_LEN {
            bail!(
                "payload size {payload_size} is too small: at least {} bytes carry the sequence \
                 number and send time",
                payload::HEADER_LEN
            );
        }
        let publish = Publish {
            qos,
            topic: ByteStr::from(topic),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
            payload: Bytes::from(vec![0u8; payload_size]),
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        tern_codec::encode(&Packet::Publish(publish), version, &mut buf)
            .context("encoding the PUBLISH template")?;
        // The payload ends the packet; in v5 an empty property length (one byte) precedes it and
        // the packet identifier precedes that [MQTT-3.3.2].
        let payload_at = buf
            .len()
            .checked_sub(payload_size)
            .ok_or_else(|| anyhow!("PUBLISH template shorter than its payload"))?;
        let props = usize::from(version.is_v5());
        let packet_id_at = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(
                payload_at
                    .checked_sub(props + 2)
                    .ok_or_else(|| anyhow!("PUBLISH template too short"))?,
            )
        };
        let template = Template {
            bytes: buf.freeze(),
            packet_id_at,
            payload_at,
        };
        template.self_check(topic, qos, version)?;
        Ok(template)
    }

    fn self_check(&self, topic: &str, qos: QoS, version: ProtocolVersion) -> anyhow::Result<()> {
        let stamp = Stamp {
            publisher: 0xA1B2_C3D4,
            seq: 0x0102_0304_0506_0708,
            sent_ns: 42,
        };
        let mut buf = BytesMut::new();
        self.append(&mut buf, 0xBEEF, stamp);
        match tern_codec::decode(&mut buf, version, MAX_PACKET) {
            Ok(Some(Packet::Publish(p)))
                if p.topic == topic
                    && p.qos == qos
                    && (qos == QoS::AtMostOnce || p.packet_id == 0xBEEF)
                    && payload::read(&p.payload) == Some(stamp)
                    && buf.is_empty() =>
            {
                Ok(())
            }
            other => bail!("PUBLISH template does not round-trip: {other:?}"),
        }
    }

    /// Appends one PUBLISH with `packet_id` (ignored at QoS 0) and `stamp` to `out`.
    pub fn append(&self, out: &mut BytesMut, packet_id: u16, stamp: Stamp) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        if let Some(slot) = self
            .packet_id_at
            .and_then(|at| out.get_mut(start + at..start + at + 2))
        {
            slot.copy_from_slice(&packet_id.to_be_bytes());
        }
        if let Some(slot) = out.get_mut(start + self.payload_at..) {
            payload::write(slot, stamp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_window_bounds_outstanding_publications() {
        let mut w = InFlight::new(3);
        let a = w.alloc().unwrap();
        let b = w.alloc().unwrap();
        let c = w.alloc().unwrap();
        assert_eq!((a, b, c), (1, 2, 3));
        assert_eq!(w.alloc(), None);
        assert!(w.advance(b, AWAIT_ACK, 0));
        assert!(!w.advance(b, AWAIT_ACK, 0), "a second PUBACK frees nothing");
        assert_eq!(w.alloc(), Some(4));
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn inflight_qos2_identifier_is_held_until_pubcomp() {
        let mut w = InFlight::new(1);
        let id = w.alloc().unwrap();
        assert!(w.advance(id, AWAIT_ACK, AWAIT_COMP));
        assert_eq!(w.alloc(), None);
        assert!(!w.advance(id, AWAIT_ACK, 0));
        assert!(w.advance(id, AWAIT_COMP, 0));
        assert!(w.is_empty());
    }

    #[test]
    fn inflight_identifiers_wrap_and_skip_zero_and_busy_ones() {
        let mut w = InFlight::new(2);
        w.next = 65_534;
        assert_eq!(w.alloc(), Some(65_535));
        assert_eq!(w.alloc(), Some(1));
        assert!(w.advance(65_535, AWAIT_ACK, 0));
        w.next = 0;
        assert_eq!(w.alloc(), Some(2), "1 is still in flight");
    }

    #[test]
    fn template_patches_packet_id_and_stamp_for_every_version_and_qos() {
        for version in [
            ProtocolVersion::V31,
            ProtocolVersion::V311,
            ProtocolVersion::V5,
        ] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for size in [payload::HEADER_LEN, 64, 300] {
                    let t = Template::new("bench/7", qos, size, version).unwrap();
                    let mut buf = BytesMut::new();
                    for seq in 0..3u64 {
                        let stamp = Stamp {
                            publisher: 7,
                            seq,
                            sent_ns: 1000 + seq,
                        };
                        t.append(&mut buf, 10 + seq as u16, stamp);
                    }
                    for seq in 0..3u64 {
                        let Some(Packet::Publish(p)) =
                            tern_codec::decode(&mut buf, version, MAX_PACKET).unwrap()
                        else {
                            panic!("not a PUBLISH");
                        };
                        assert_eq!(p.payload.len(), size);
                        let s = payload::read(&p.payload).unwrap();
                        assert_eq!((s.publisher, s.seq, s.sent_ns), (7, seq, 1000 + seq));
                        if qos != QoS::AtMostOnce {
                            assert_eq!(p.packet_id, 10 + seq as u16);
                        }
                    }
                    assert!(buf.is_empty());
                }
            }
        }
    }

    #[test]
    fn template_refuses_payloads_too_small_for_the_stamp() {
        assert!(Template::new("t", QoS::AtMostOnce, 5, ProtocolVersion::V311).is_err());
    }
}
