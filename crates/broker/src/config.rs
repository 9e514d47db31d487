//! `tern.toml`: the broker's configuration file, parsed with serde and `toml`.
//!
//! Every table is a struct with `deny_unknown_fields`, so a typo is an error naming the key and
//! the line. Adding a section (`[auth]`, `[storage]`, `[[rules]]`...) is adding a field to
//! [`Config`] with `#[serde(default)]`; listener keys go in [`ListenerConfig`]. Every key and its
//! default are documented in `docs/configuration.md`.

use crate::protocol::ProtocolConfig;
use crate::session::QueueLimits;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tern_codec::QoS;

/// The address a broker with no configured listener listens on: loopback only, like Mosquitto 2.
pub const DEFAULT_BIND: &str = "127.0.0.1:1883";

/// A configuration that could not be loaded: names the file, the line and column, and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Bad TOML, an unknown key or a bad value.
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        /// The file name (or "<string>").
        origin: String,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and what would be valid.
        message: String,
    },
    /// A value that is fine alone but not with the others.
    #[error("{origin}: {message}")]
    Inconsistent {
        /// The file name.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[broker]`: protocol limits.
    #[serde(default)]
    pub broker: BrokerConfig,
    /// `[[listener]]`: where to accept connections; none means [`DEFAULT_BIND`].
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// `[storage]`: persistence of sessions, queued and retained messages.
    #[serde(default)]
    pub storage: StorageConfig,
    /// `[auth]`: password and ACL files every listener uses unless it sets its own.
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[[rules]]`: the rules engine's rules (docs/rules.md), checked by
    /// [`crate::rules::RulesRuntime::start`].
    #[serde(default)]
    pub rules: Vec<tern_rules::RuleConfig>,
}

/// `[auth]`: defaults for every listener; each listener may override each key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Password file in `mosquitto_passwd` format.
    pub password_file: Option<PathBuf>,
    /// ACL file in Mosquitto's `acl_file` format; once given, what it does not grant is denied.
    pub acl_file: Option<PathBuf>,
    /// Let clients without a user name in; unset: only on loopback listeners.
    pub allow_anonymous: Option<bool>,
}

/// When a write is durable enough to acknowledge (see `docs/persistence.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync (group commit) before PUBACK/PUBREC: survives a power loss.
    #[default]
    Sync,
    /// Written to the OS before acknowledging: survives a broker crash, not a power loss.
    Os,
    /// Written in the background: memory speed, the last moments are lost on a crash.
    None,
}

/// `[storage]`: where and how sessions, queued messages and retained messages are kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Keep state on disk; false (or `tern broker --memory`) for a purely in-memory broker.
    pub persistence: bool,
    /// Directory of the on-disk store.
    pub data_dir: PathBuf,
    /// `"sync"`, `"os"` or `"none"`.
    pub durability: Durability,
    /// Messages queued for offline sessions, over all sessions; 0 for no limit.
    pub max_stored_messages: u64,
    /// Bytes (payload + topic) queued for offline sessions, over all sessions; 0 for no limit.
    pub max_stored_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            persistence: true,
            data_dir: PathBuf::from("./tern-data"),
            durability: Durability::Sync,
            max_stored_messages: 10_000_000,
            max_stored_bytes: 1 << 30,
        }
    }
}

/// `[broker]`: limits and capabilities of the protocol, per client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Cap on a client's keep alive, seconds; v5 clients asking more get Server Keep Alive.
    #[serde(deserialize_with = "nonzero_u16")]
    pub max_keepalive: u16,
    /// Largest packet accepted, bytes; advertised to v5 clients in CONNACK.
    #[serde(deserialize_with = "packet_size")]
    pub max_packet_size: u32,
    /// QoS 1/2 messages in flight per client, each way (the v5 Receive Maximum advertised).
    #[serde(deserialize_with = "nonzero_u16")]
    pub max_inflight_messages: u16,
    /// Messages queued per offline or slow session; 0 for no limit.
    pub max_queued_messages: usize,
    /// Bytes (payload + topic) queued per session; 0 for no limit.
    pub max_queued_bytes: usize,
    /// Queue QoS 0 messages for offline persistent sessions too.
    pub queue_qos0_messages: bool,
    /// Seconds a connected subscriber whose queue is full may pause its publishers
    /// without taking a message; after that its deliveries are dropped. 0: drop at once.
    pub slow_consumer_timeout: u64,
    /// Topic aliases a v5 client may use towards the broker (0 disables them).
    pub max_topic_alias: u16,
    /// Highest QoS granted to subscriptions and accepted from publishers (0, 1 or 2).
    #[serde(deserialize_with = "qos")]
    pub max_qos: u8,
    /// Accept retained messages.
    pub retain_available: bool,
    /// Seconds a new connection has to send CONNECT.
    #[serde(deserialize_with = "nonzero_u64")]
    pub connect_timeout: u64,
    /// Open connections over all listeners; 0 for no limit.
    pub max_connections: usize,
    /// Longest topic name or filter accepted, in bytes (1–65535).
    #[serde(deserialize_with = "nonzero_u16")]
    pub max_topic_length: u16,
    /// Most levels in a topic name or filter; 0 for no limit.
    pub max_topic_levels: usize,
    /// PUBLISH packets per second and client before the broker stops reading from it; 0 for no limit.
    pub max_publish_rate: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_keepalive: 65535,
            max_packet_size: 1_048_576,
            max_inflight_messages: 100,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_qos0_messages: false,
            slow_consumer_timeout: 5,
            max_topic_alias: 10,
            max_qos: 2,
            retain_available: true,
            connect_timeout: 10,
            max_connections: 0,
            max_topic_length: 65535,
            max_topic_levels: 200,
            max_publish_rate: 0,
        }
    }
}

/// Transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// MQTT over TCP.
    #[default]
    Mqtt,
    /// MQTT over WebSocket (binary frames, subprotocol `mqtt`).
    Ws,
}

/// `tls = { ... }` of a listener: serve it over TLS 1.2 or 1.3.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM file with the CA certificates client certificates are checked against.
    pub client_ca: Option<PathBuf>,
    /// Refuse clients without a valid certificate (needs `client_ca`).
    #[serde(default)]
    pub require_client_cert: bool,
    /// Use the client certificate's CN (or first SAN) as the user name; no password is checked.
    #[serde(default)]
    pub use_identity_as_username: bool,
}

/// `[[listener]]`: one address to accept connections on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `ADDR:PORT` to bind; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Transport.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// WebSocket path (`ws` only); `/mqtt` when unset.
    pub path: Option<String>,
    /// TLS on this listener.
    pub tls: Option<TlsConfig>,
    /// Open connections on this listener; 0 for no limit.
    #[serde(default)]
    pub max_connections: usize,
    /// Overrides `[auth] allow_anonymous`; unset: allowed only on a loopback address.
    pub allow_anonymous: Option<bool>,
    /// Overrides `[auth] password_file`; `""` for none.
    pub password_file: Option<PathBuf>,
    /// Overrides `[auth] acl_file`; `""` for none.
    pub acl_file: Option<PathBuf>,
}

impl ListenerConfig {
    /// A TCP MQTT listener on `bind`.
    pub fn mqtt(bind: SocketAddr) -> Self {
        ListenerConfig {
            bind,
            protocol: ListenerProtocol::Mqtt,
            path: None,
            tls: None,
            max_connections: 0,
            allow_anonymous: None,
            password_file: None,
            acl_file: None,
        }
    }

    /// A WebSocket listener on `bind`, path `/mqtt`.
    pub fn ws(bind: SocketAddr) -> Self {
        ListenerConfig {
            protocol: ListenerProtocol::Ws,
            ..Self::mqtt(bind)
        }
    }

    /// The WebSocket path: `path`, or `/mqtt`.
    pub fn ws_path(&self) -> &str {
        self.path.as_deref().unwrap_or("/mqtt")
    }

    /// Whether clients without a user name may connect: the listener's setting, else
    /// `[auth]`'s, else only when bound to a loopback address.
    pub fn allows_anonymous(&self, auth: &AuthConfig) -> bool {
        self.allow_anonymous
            .or(auth.allow_anonymous)
            .unwrap_or_else(|| self.bind.ip().is_loopback())
    }

    /// The password file in effect: the listener's (`""` for none), else `[auth]`'s.
    pub fn password_file<'a>(&'a self, auth: &'a AuthConfig) -> Option<&'a Path> {
        effective_file(self.password_file.as_deref(), auth.password_file.as_deref())
    }

    /// The ACL file in effect: the listener's (`""` for none), else `[auth]`'s.
    pub fn acl_file<'a>(&'a self, auth: &'a AuthConfig) -> Option<&'a Path> {
        effective_file(self.acl_file.as_deref(), auth.acl_file.as_deref())
    }
}

fn effective_file<'a>(own: Option<&'a Path>, default: Option<&'a Path>) -> Option<&'a Path> {
    own.or(default).filter(|p| !p.as_os_str().is_empty())
}

fn nonzero_u16<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = u16::deserialize(d)?;
    if v == 0 {
        return Err(serde::de::Error::custom("must be between 1 and 65535"));
    }
    Ok(v)
}

fn nonzero_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(v)
}

fn packet_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if !(64..=268_435_460).contains(&v) {
        return Err(serde::de::Error::custom(
            "must be between 64 and 268435460 bytes",
        ));
    }
    Ok(v)
}

fn qos<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let v = u8::deserialize(d)?;
    if v > 2 {
        return Err(serde::de::Error::custom("must be 0, 1 or 2"));
    }
    Ok(v)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

impl Config {
    /// Parses `text`; `origin` names it in errors (usually the file path).
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            let mut message = e.message().trim().to_string();
            // Value errors do not name their key: take it from the offending line.
            let key = text
                .lines()
                .nth(line.saturating_sub(1))
                .and_then(|l| l.split_once('='))
                .map(|(k, _)| k.trim());
            if let Some(key) = key
                && !message.contains(key)
            {
                message = format!("`{key}`: {message}");
            }
            ConfigError::Invalid {
                origin: origin.to_string(),
                line,
                column,
                message,
            }
        })?;
        config.check(origin)?;
        Ok(config)
    }

    /// Reads and parses a file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        for (i, a) in self.listeners.iter().enumerate() {
            let dup = self.listeners[..i]
                .iter()
                .any(|b| a.bind == b.bind && a.bind.port() != 0);
            if dup {
                return Err(ConfigError::Inconsistent {
                    origin: origin.to_string(),
                    message: format!("two [[listener]] entries bind {}", a.bind),
                });
            }
            let bad = |message: String| ConfigError::Inconsistent {
                origin: origin.to_string(),
                message: format!("[[listener]] {}: {message}", a.bind),
            };
            if let Some(path) = &a.path {
                if a.protocol != ListenerProtocol::Ws {
                    return Err(bad("`path` is for `protocol = \"ws\"` only".into()));
                }
                if !path.starts_with('/') {
                    return Err(bad(format!("`path` must start with `/`, found `{path}`")));
                }
            }
            if let Some(tls) = &a.tls {
                if tls.client_ca.is_none() && tls.require_client_cert {
                    return Err(bad("`require_client_cert` needs `client_ca`".into()));
                }
                if tls.client_ca.is_none() && tls.use_identity_as_username {
                    return Err(bad("`use_identity_as_username` needs `client_ca`".into()));
                }
            }
        }
        Ok(())
    }

    /// The listeners to open: the configured ones, or [`DEFAULT_BIND`].
    pub fn effective_listeners(&self) -> Vec<ListenerConfig> {
        if self.listeners.is_empty() {
            let bind = DEFAULT_BIND
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 1883)));
            vec![ListenerConfig::mqtt(bind)]
        } else {
            self.listeners.clone()
        }
    }

    /// The limits the protocol state machine enforces.
    pub fn protocol(&self) -> ProtocolConfig {
        let b = &self.broker;
        ProtocolConfig {
            max_keepalive: b.max_keepalive,
            max_packet_size: b.max_packet_size,
            max_inflight: b.max_inflight_messages,
            topic_alias_maximum: b.max_topic_alias,
            connect_timeout: Duration::from_secs(b.connect_timeout),
            queue: QueueLimits {
                max_messages: b.max_queued_messages,
                max_bytes: b.max_queued_bytes,
                queue_qos0: b.queue_qos0_messages,
            },
            max_qos: QoS::from_u8(b.max_qos).unwrap_or(QoS::ExactlyOnce),
            retain_available: b.retain_available,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_example_parses() {
        let c = Config::from_toml(
            r#"
[broker]
max_keepalive = 65535        # cap on client keep alive
max_packet_size = 1048576    # bytes; advertised in CONNACK
max_inflight_messages = 100  # per client
max_queued_messages = 1000   # per offline or slow session
[[listener]]
bind = "127.0.0.1:1883"
protocol = "mqtt"
"#,
            "tern.toml",
        )
        .unwrap();
        assert_eq!(c.broker, BrokerConfig::default());
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].bind.port(), 1883);
    }

    #[test]
    fn empty_file_gives_defaults_and_loopback_listener() {
        let c = Config::from_toml("", "x").unwrap();
        assert_eq!(c.effective_listeners()[0].bind.to_string(), DEFAULT_BIND);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = Config::from_toml("[broker]\nmax_keepalive = 10\nmax_qeued = 3\n", "tern.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tern.toml:3:"), "{e}");
        assert!(e.contains("max_qeued"), "{e}");
    }

    #[test]
    fn bad_value_names_line_and_valid_range() {
        let e = Config::from_toml("[broker]\n\nmax_inflight_messages = 0\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:3:"), "{e}");
        assert!(
            e.contains("`max_inflight_messages`: must be between 1 and 65535"),
            "{e}"
        );
        let e = Config::from_toml("[[listener]]\nbind = \"nowhere\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:2:"), "{e}");
        let e = Config::from_toml(
            "[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"smtp\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("t.toml:3:") && e.contains("mqtt"), "{e}");
    }

    #[test]
    fn duplicate_listener_refused() {
        let t = "[[listener]]\nbind = \"127.0.0.1:1\"\n[[listener]]\nbind = \"127.0.0.1:1\"\n";
        assert!(Config::from_toml(t, "t").is_err());
    }
}
