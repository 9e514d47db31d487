//! Transports and the per-listener policy in front of the connection driver.
//!
//! A listener accepts TCP, optionally runs a TLS handshake ([`tls`]), optionally a WebSocket
//! handshake ([`ws`]), and hands the resulting byte stream to the driver in `server.rs` with
//! its [`ListenerCtx`]: who may log in there (anonymous policy, password file, client
//! certificates), which ACL applies, and its connection limit. [`Transports`] holds what all
//! listeners share: the global connection limit, the per-address login back-off, topic and rate
//! limits, and the counters of every limit hit. Not here: MQTT itself (the protocol state machine).

pub(crate) mod conn_io;
pub mod tls;
pub mod ws;

use crate::auth::{Access, Authorizer, ClientIdentity};
use crate::auth::{
    AclFile, AclFileError, ListenerAuthenticator, LoginBackoff, PasswordFile, PasswordFileError,
};
use crate::broker::lock;
use crate::config::{AuthConfig, Config, ListenerConfig, ListenerProtocol};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A listener that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// TLS files missing or invalid.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The password file could not be loaded.
    #[error(transparent)]
    PasswordFile(#[from] PasswordFileError),
    /// The ACL file could not be loaded.
    #[error(transparent)]
    AclFile(#[from] AclFileError),
}

/// Counters of limit hits and refused connections, over all listeners.
#[derive(Debug, Default)]
pub(crate) struct LimitCounters {
    pub(crate) refused_max_connections: AtomicU64,
    pub(crate) connect_timeouts: AtomicU64,
    pub(crate) topic_limit: AtomicU64,
    pub(crate) publish_rate_limited: AtomicU64,
    pub(crate) login_failures: AtomicU64,
    pub(crate) tls_handshake_failures: AtomicU64,
    pub(crate) ws_handshake_failures: AtomicU64,
}

/// A copy of the limit counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitStats {
    /// Connections closed at once because a global or listener `max_connections` was reached.
    pub refused_max_connections: u64,
    /// Connections closed because no CONNECT came within `connect_timeout`.
    pub connect_timeouts: u64,
    /// Clients disconnected for a topic longer or deeper than `max_topic_length`/`max_topic_levels`.
    pub topic_limit: u64,
    /// Clients that went over `max_publish_rate` (counted once per client).
    pub publish_rate_limited: u64,
    /// Refused logins (bad password, anonymous refused, no certificate identity).
    pub login_failures: u64,
    /// Failed TLS handshakes (wrong CA, expired or missing client certificate, not TLS...).
    pub tls_handshake_failures: u64,
    /// Refused WebSocket handshakes (wrong path, no `mqtt` subprotocol, not WebSocket).
    pub ws_handshake_failures: u64,
}

impl LimitCounters {
    fn snapshot(&self) -> LimitStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LimitStats {
            refused_max_connections: l(&self.refused_max_connections),
            connect_timeouts: l(&self.connect_timeouts),
            topic_limit: l(&self.topic_limit),
            publish_rate_limited: l(&self.publish_rate_limited),
            login_failures: l(&self.login_failures),
            tls_handshake_failures: l(&self.tls_handshake_failures),
            ws_handshake_failures: l(&self.ws_handshake_failures),
        }
    }
}

/// A connection count with a limit (0 for none) that logs the first refusal of a burst only.
#[derive(Debug, Default)]
pub(crate) struct ConnLimit {
    max: usize,
    open: AtomicUsize,
    /// Set when a refusal was logged; cleared once a connection is admitted again.
    logged: AtomicBool,
}

impl ConnLimit {
    fn new(max: usize) -> Self {
        ConnLimit {
            max,
            ..Default::default()
        }
    }

    /// Takes a slot; false (and nothing taken) when the limit is reached.
    fn try_acquire(&self) -> bool {
        let prev = self.open.fetch_add(1, Ordering::AcqRel);
        if self.max != 0 && prev >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        self.logged.store(false, Ordering::Relaxed);
        true
    }

    fn release(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// True the first time after a connection was last admitted: log this refusal.
    fn should_log(&self) -> bool {
        !self.logged.swap(true, Ordering::Relaxed)
    }
}

/// What the listener checks at CONNECT: reloadable as a whole on SIGHUP.
pub(crate) struct AuthTables {
    pub(crate) authenticator: ListenerAuthenticator,
    pub(crate) acl: Option<Arc<AclFile>>,
}

impl AuthTables {
    fn load(l: &ListenerConfig, auth: &AuthConfig) -> Result<Self, ListenerError> {
        let passwords = match l.password_file(auth) {
            Some(p) => {
                Some(Arc::new(PasswordFile::load(p)?) as Arc<dyn crate::auth::Authenticator>)
            }
            None => None,
        };
        let acl = match l.acl_file(auth) {
            Some(p) => Some(Arc::new(AclFile::load(p)?)),
            None => None,
        };
        Ok(AuthTables {
            authenticator: ListenerAuthenticator::new(l.allows_anonymous(auth), passwords),
            acl,
        })
    }
}

/// One listener as the connections accepted on it see it.
pub(crate) struct ListenerCtx {
    pub(crate) config: ListenerConfig,
    auth_config: AuthConfig,
    pub(crate) tls: Option<Arc<tls::TlsAcceptor>>,
    pub(crate) auth: ArcSwap<AuthTables>,
    limit: ConnLimit,
}

impl ListenerCtx {
    /// Loads the listener's TLS and auth files.
    pub(crate) fn new(l: &ListenerConfig, auth: &AuthConfig) -> Result<Self, ListenerError> {
        let tls = match &l.tls {
            Some(t) => Some(Arc::new(tls::TlsAcceptor::new(t.clone())?)),
            None => None,
        };
        let tables = AuthTables::load(l, auth)?;
        Ok(ListenerCtx {
            config: l.clone(),
            auth_config: auth.clone(),
            tls,
            auth: ArcSwap::from_pointee(tables),
            limit: ConnLimit::new(l.max_connections),
        })
    }

    /// For connections handed to the broker from outside (`BrokerHandle::serve_connection`):
    /// anonymous clients allowed, no files.
    pub(crate) fn external() -> Self {
        let l = ListenerConfig::mqtt(SocketAddr::from(([127, 0, 0, 1], 0)));
        ListenerCtx {
            auth: ArcSwap::from_pointee(AuthTables {
                authenticator: ListenerAuthenticator::new(true, None),
                acl: None,
            }),
            auth_config: AuthConfig::default(),
            tls: None,
            limit: ConnLimit::new(0),
            config: l,
        }
    }

    /// The scheme for logs: `mqtt`, `mqtts`, `ws` or `wss`.
    pub(crate) fn scheme(&self) -> &'static str {
        match (self.config.protocol, self.tls.is_some()) {
            (ListenerProtocol::Mqtt, false) => "mqtt",
            (ListenerProtocol::Mqtt, true) => "mqtts",
            (ListenerProtocol::Ws, false) => "ws",
            (ListenerProtocol::Ws, true) => "wss",
        }
    }

    /// Whether `use_identity_as_username` is on.
    pub(crate) fn identity_as_username(&self) -> bool {
        self.config
            .tls
            .as_ref()
            .is_some_and(|t| t.use_identity_as_username)
    }

    /// Re-reads certificates, password and ACL files; what fails to load keeps its old value.
    fn reload(&self) -> usize {
        let mut errors = 0;
        let bind = self.config.bind;
        if let Some(t) = &self.tls {
            match t.reload() {
                Ok(()) => tracing::info!(listener = %bind, "TLS certificates reloaded"),
                Err(e) => {
                    errors += 1;
                    tracing::error!(listener = %bind, error = %e, "TLS reload failed, keeping the previous certificates");
                }
            }
        }
        match AuthTables::load(&self.config, &self.auth_config) {
            Ok(t) => self.auth.store(Arc::new(t)),
            Err(e) => {
                errors += 1;
                tracing::error!(listener = %bind, error = %e, "auth reload failed, keeping the previous password and ACL files");
            }
        }
        errors
    }

    /// Warns when a listener reachable from other hosts lets anonymous clients in.
    pub(crate) fn warn_if_exposed(&self, bound: SocketAddr) {
        let anonymous = self.auth.load().authenticator.allows_anonymous();
        if anonymous && !bound.ip().is_loopback() {
            tracing::warn!(listener = %bound, scheme = self.scheme(), "listener on a non-loopback address allows anonymous clients (allow_anonymous = true): anybody who can reach it can connect");
        }
    }
}

/// Per-connection limits read from `[broker]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopicLimits {
    pub(crate) max_length: usize,
    pub(crate) max_levels: usize,
    pub(crate) max_publish_rate: u32,
}

/// State shared by all listeners.
pub(crate) struct Transports {
    limit: ConnLimit,
    pub(crate) backoff: Mutex<LoginBackoff>,
    pub(crate) counters: LimitCounters,
    pub(crate) topic_limits: TopicLimits,
    pub(crate) handshake_timeout: Duration,
    listeners: Mutex<Vec<Arc<ListenerCtx>>>,
    pub(crate) external: Arc<ListenerCtx>,
}

impl Transports {
    pub(crate) fn new(config: &Config) -> Self {
        let b = &config.broker;
        Transports {
            limit: ConnLimit::new(b.max_connections),
            backoff: Mutex::new(LoginBackoff::default()),
            counters: LimitCounters::default(),
            topic_limits: TopicLimits {
                max_length: usize::from(b.max_topic_length),
                max_levels: b.max_topic_levels,
                max_publish_rate: b.max_publish_rate,
            },
            handshake_timeout: Duration::from_secs(b.connect_timeout),
            listeners: Mutex::new(Vec::new()),
            external: Arc::new(ListenerCtx::external()),
        }
    }

    pub(crate) fn add_listener(&self, ctx: Arc<ListenerCtx>) {
        lock(&self.listeners).push(ctx);
    }

    /// Admits one more connection on `listener`, or logs (once per burst) and counts a refusal.
    pub(crate) fn admit(
        self: &Arc<Self>,
        listener: &Arc<ListenerCtx>,
        peer: SocketAddr,
    ) -> Option<ConnGuard> {
        if !self.limit.try_acquire() {
            self.counters
                .refused_max_connections
                .fetch_add(1, Ordering::Relaxed);
            if self.limit.should_log() {
                tracing::warn!(%peer, max_connections = self.limit.max, "global max_connections reached, refusing connections");
            }
            return None;
        }
        if !listener.limit.try_acquire() {
            self.limit.release();
            self.counters
                .refused_max_connections
                .fetch_add(1, Ordering::Relaxed);
            if listener.limit.should_log() {
                tracing::warn!(%peer, listener = %listener.config.bind, max_connections = listener.limit.max, "listener max_connections reached, refusing connections");
            }
            return None;
        }
        Some(ConnGuard {
            transports: self.clone(),
            listener: listener.clone(),
        })
    }

    /// Reloads every listener's certificates and auth files; returns how many failed.
    pub(crate) fn reload(&self) -> usize {
        let listeners = lock(&self.listeners).clone();
        listeners.iter().map(|l| l.reload()).sum()
    }

    pub(crate) fn stats(&self) -> LimitStats {
        self.counters.snapshot()
    }
}

/// Holds a connection slot (global and listener) until dropped.
pub(crate) struct ConnGuard {
    transports: Arc<Transports>,
    listener: Arc<ListenerCtx>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.listener.limit.release();
        self.transports.limit.release();
    }
}

/// An authorizer asked about one fixed identity, whatever the caller passes: the final client
/// id and the user name the listener established (a certificate's, with
/// `use_identity_as_username`), rather than what the client claimed in CONNECT.
pub(crate) struct FixedIdentity {
    inner: Arc<dyn Authorizer>,
    who: ClientIdentity,
}

impl FixedIdentity {
    pub(crate) fn new(inner: Arc<dyn Authorizer>, who: ClientIdentity) -> Self {
        FixedIdentity { inner, who }
    }
}

impl Authorizer for FixedIdentity {
    fn authorize(&self, _who: &ClientIdentity, access: Access, topic: &str) -> bool {
        self.inner.authorize(&self.who, access, topic)
    }
}

/// Checks a topic name or filter against `max_topic_length` and `max_topic_levels`.
pub(crate) fn topic_within_limits(topic: &str, limits: &TopicLimits) -> bool {
    if topic.len() > limits.max_length {
        return false;
    }
    // Counting separators byte by byte: `split` costs several times more on every PUBLISH.
    limits.max_levels == 0 || topic.bytes().filter(|&b| b == b'/').count() < limits.max_levels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_limits_count_bytes_and_levels() {
        let l = TopicLimits {
            max_length: 5,
            max_levels: 2,
            max_publish_rate: 0,
        };
        assert!(topic_within_limits("a/b", &l));
        assert!(!topic_within_limits("a/b/c", &l), "three levels");
        assert!(!topic_within_limits("abcdef", &l), "six bytes");
        assert!(!topic_within_limits("é/éé", &l), "bytes, not characters");
        let unlimited = TopicLimits {
            max_length: 65535,
            max_levels: 0,
            max_publish_rate: 0,
        };
        assert!(topic_within_limits(&"a/".repeat(1000), &unlimited));
    }

    #[test]
    fn connection_limit_refuses_then_frees_and_logs_once_per_burst() {
        let l = ConnLimit::new(1);
        assert!(l.try_acquire());
        assert!(!l.try_acquire());
        assert!(l.should_log());
        assert!(!l.try_acquire());
        assert!(!l.should_log(), "same burst");
        l.release();
        assert!(l.try_acquire(), "a slot freed up");
        assert!(!l.try_acquire());
        assert!(l.should_log(), "a new burst after an admission");
        let none = ConnLimit::new(0);
        assert!((0..1000).all(|_| none.try_acquire()));
    }
}
