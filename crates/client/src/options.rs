//! Connection options: where to connect (host, port, transport, TLS), what to put in CONNECT
//! (client identifier, clean start, keep alive, credentials, will, v5 properties), and how the
//! client behaves when the connection drops (reconnect back-off, offline queue).
//!
//! Not here: the connection itself ([`crate::Client`]) or protocol rules ([`crate::protocol`]).

use crate::error::{Error, Result};
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tern_codec::{ConnectProperties, LastWill, Packet, ProtocolVersion};

/// The byte stream MQTT runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Plain TCP (`mqtt://`, `tcp://`), default port 1883.
    #[default]
    Tcp,
    /// TLS over TCP (`mqtts://`, `ssl://`), default port 8883.
    Tls,
    /// WebSocket (`ws://`), default port 80, subprotocol `mqtt`.
    Ws,
    /// WebSocket over TLS (`wss://`), default port 443.
    Wss,
}

impl Transport {
    /// The transport's usual port.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tcp => 1883,
            Transport::Tls => 8883,
            Transport::Ws => 80,
            Transport::Wss => 443,
        }
    }

    /// True when the transport runs over TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }
}

/// TLS settings; used by [`Transport::Tls`] and [`Transport::Wss`].
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of trusted CA certificates; when neither this nor `ca_path` is set, the
    /// operating system's roots are used.
    pub ca_file: Option<PathBuf>,
    /// Directory of PEM CA certificate files.
    pub ca_path: Option<PathBuf>,
    /// PEM client certificate chain, for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub client_key: Option<PathBuf>,
    /// Name to verify the server certificate against; the host by default.
    pub server_name: Option<String>,
    /// Accept any server certificate. For tests only: this removes all protection TLS gives.
    pub insecure: bool,
    /// ALPN protocols to offer.
    pub alpn: Vec<Vec<u8>>,
}

/// Reconnection policy: capped exponential back-off with jitter.
#[derive(Debug, Clone)]
pub struct ReconnectOptions {
    /// Reconnect automatically after a connection that was established is lost.
    pub enabled: bool,
    /// Delay before the first retry.
    pub initial_delay: Duration,
    /// Upper bound of the delay.
    pub max_delay: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectOptions {
    fn default() -> Self {
        ReconnectOptions {
            enabled: true,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl ReconnectOptions {
    /// The delay before retry number `attempt` (0-based): `initial * 2^attempt`, capped at
    /// `max_delay`, then scaled by a random factor in [0.5, 1.0] so that many clients losing the
    /// same broker do not come back in lockstep.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(20));
        let base = self
            .initial_delay
            .saturating_mul(factor)
            .min(self.max_delay);
        base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// Everything needed to connect; build with [`ConnectOptions::new`] or
/// [`ConnectOptions::from_url`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Byte stream to use.
    pub transport: Transport,
    /// Host name or IP address of the server.
    pub host: String,
    /// Port of the server.
    pub port: u16,
    /// HTTP path of the WebSocket endpoint (`/mqtt` by default).
    pub ws_path: String,
    /// TLS settings, for `mqtts://` and `wss://`.
    pub tls: TlsOptions,
    /// MQTT protocol version.
    pub protocol: ProtocolVersion,
    /// Client Identifier; empty asks the server to assign one (v5, or 3.1.1 with clean start).
    pub client_id: String,
    /// Clean Start (v5) / Clean Session (3.x) on the first connection.
    pub clean_start: bool,
    /// v5 Session Expiry Interval in seconds (`None`: 0, the session ends with the connection).
    pub session_expiry_interval: Option<u32>,
    /// Keep Alive; zero disables keep-alive pings. The server may override it (v5).
    pub keep_alive: Duration,
    /// User Name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// Will Message with its v5 properties.
    pub will: Option<LastWill>,
    /// Further v5 CONNECT properties (Receive Maximum, Maximum Packet Size, Topic Alias Maximum,
    /// user properties...). The Session Expiry Interval is taken from `session_expiry_interval`.
    pub properties: ConnectProperties,
    /// Reconnection policy.
    pub reconnect: ReconnectOptions,
    /// How many publish, subscribe and unsubscribe requests may wait while disconnected, or
    /// while the server's Receive Maximum window is full, before requests fail with
    /// [`Error::QueueFull`].
    pub offline_queue_capacity: usize,
    /// Deadline for opening the connection and receiving CONNACK.
    pub connect_timeout: Duration,
    /// Use v5 topic aliases for outgoing PUBLISH, up to the server's Topic Alias Maximum.
    pub use_topic_aliases: bool,
    /// Told about every packet sent and received (for debugging, like `mosquitto_sub -d`).
    pub packet_log: Option<PacketLog>,
}

/// Which way a logged packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Written to the server.
    Sent,
    /// Read from the server.
    Received,
}

/// A callback for every packet the client sends or receives; see [`ConnectOptions::packet_log`].
#[derive(Clone)]
pub struct PacketLog(Arc<LogFn>);

/// The callback type of [`PacketLog`].
pub type LogFn = dyn Fn(Direction, &Packet) + Send + Sync;

impl PacketLog {
    /// Wraps a callback.
    pub fn new(f: impl Fn(Direction, &Packet) + Send + Sync + 'static) -> PacketLog {
        PacketLog(Arc::new(f))
    }

    pub(crate) fn log(&self, direction: Direction, packet: &Packet) {
        (self.0)(direction, packet)
    }
}

impl std::fmt::Debug for PacketLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PacketLog(..)")
    }
}

impl ConnectOptions {
    /// Options for a plain TCP connection to `host:port`, MQTT 5.0, a random client identifier,
    /// clean start, 60 s keep alive.
    pub fn new(host: impl Into<String>, port: u16) -> ConnectOptions {
        ConnectOptions {
            transport: Transport::Tcp,
            host: host.into(),
            port,
            ws_path: "/mqtt".to_owned(),
            tls: TlsOptions::default(),
            protocol: ProtocolVersion::V5,
            client_id: random_client_id("tern-"),
            clean_start: true,
            session_expiry_interval: None,
            keep_alive: Duration::from_secs(60),
            username: None,
            password: None,
            will: None,
            properties: ConnectProperties::default(),
            reconnect: ReconnectOptions::default(),
            offline_queue_capacity: 1000,
            connect_timeout: Duration::from_secs(30),
            use_topic_aliases: false,
            packet_log: None,
        }
    }

    /// Options from a URL `scheme://[user[:password]@]host[:port][/path]`, where scheme is
    /// `mqtt`, `tcp`, `mqtts`, `ssl`, `ws` or `wss`. The path is the WebSocket path.
    pub fn from_url(url: &str) -> Result<ConnectOptions> {
        let parsed = BrokerUrl::parse(url)?;
        let mut options = ConnectOptions::new(parsed.host, parsed.port);
        options.transport = parsed.transport;
        options.username = parsed.username;
        options.password = parsed.password.map(Bytes::from);
        if matches!(parsed.transport, Transport::Ws | Transport::Wss) && !parsed.path.is_empty() {
            options.ws_path = parsed.path;
        }
        Ok(options)
    }
}

/// A broker URL taken apart. The path is kept as written (without the leading `/` for MQTT
/// URLs, where tools like `mosquitto_sub -L` read it as a topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Transport from the scheme.
    pub transport: Transport,
    /// User name before `@`.
    pub username: Option<String>,
    /// Password after `user:`.
    pub password: Option<String>,
    /// Host (IPv6 literals without brackets).
    pub host: String,
    /// Port, or the scheme's default.
    pub port: u16,
    /// Everything from the first `/` after the authority, including it; empty when absent.
    pub path: String,
}

impl BrokerUrl {
    /// Parses `scheme://[user[:password]@]host[:port][/path]`.
    pub fn parse(url: &str) -> Result<BrokerUrl> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://host, e.g. mqtt://localhost:1883"))?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => Transport::Tcp,
            "mqtts" | "ssl" | "tls" => Transport::Tls,
            "ws" => Transport::Ws,
            "wss" => Transport::Wss,
            _ => return Err(bad("unsupported scheme; use mqtt, mqtts, ws or wss")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
                None => (Some(info.to_owned()), None),
            },
        };
        let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
            let (host, after) = stripped
                .split_once(']')
                .ok_or_else(|| bad("unterminated [ in IPv6 host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after ]")),
            };
            (host, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port = match port {
            None => transport.default_port(),
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("port must be a number from 1 to 65535"))?,
        };
        Ok(BrokerUrl {
            transport,
            username,
            password,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

/// A client identifier made of `prefix` and random lowercase letters and digits (23 characters
/// at most, the length every server must accept [MQTT-3.1.3-5]).
pub fn random_client_id(prefix: &str) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let n = 23usize.saturating_sub(prefix.len()).min(16);
    let mut id = prefix.to_owned();
    for _ in 0..n {
        let i = rng.random_range(0..CHARS.len());
        id.push(char::from(CHARS.get(i).copied().unwrap_or(b'x')));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_credentials_and_port() {
        let u = BrokerUrl::parse("mqtt://alice:s3cret@broker.example:1884").unwrap();
        assert_eq!(u.transport, Transport::Tcp);
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("s3cret"));
        assert_eq!(u.host, "broker.example");
        assert_eq!(u.port, 1884);
    }

    #[test]
    fn url_default_ports_and_paths() {
        assert_eq!(BrokerUrl::parse("mqtts://h").unwrap().port, 8883);
        let ws = BrokerUrl::parse("ws://h/mqtt").unwrap();
        assert_eq!((ws.port, ws.path.as_str()), (80, "/mqtt"));
        assert_eq!(BrokerUrl::parse("wss://h:9001").unwrap().port, 9001);
        let v6 = BrokerUrl::parse("mqtt://[::1]:1885").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1885));
    }

    #[test]
    fn url_errors_are_clear() {
        for bad in [
            "localhost",
            "http://h",
            "mqtt://",
            "mqtt://h:99999",
            "mqtt://h:x",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let r = ReconnectOptions::default();
        assert_eq!(r.delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(r.delay(3, 1.0), Duration::from_millis(800));
        assert_eq!(r.delay(30, 1.0), Duration::from_secs(30));
        assert_eq!(r.delay(30, 0.0), Duration::from_secs(15));
    }
}
