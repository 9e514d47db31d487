//! Authentication and authorization behind two small traits, so the protocol code does not know
//! whether a password file, an ACL file, a certificate or something else decides.
//!
//! Implementations: [`AllowAll`] (anonymous, no ACL); the password file and ACL file in
//! Mosquitto's formats live in submodules of their own.

/// Who a connecting or connected client is, as the checks see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientIdentity {
    /// The MQTT client identifier (assigned one if the client sent an empty one).
    pub client_id: String,
    /// The user name: from CONNECT, or from the TLS certificate with `use_identity_as_username`.
    pub username: Option<String>,
}

/// What the client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Receive messages published to a topic (checked on delivery).
    Read,
    /// Publish to a topic.
    Write,
    /// Subscribe with a topic filter (checked at SUBSCRIBE time).
    Subscribe,
}

/// The outcome of checking a client's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDecision {
    /// Let the client in.
    Allow,
    /// Credentials given but wrong: v5 CONNACK 0x86, 3.1.1 0x04.
    BadCredentials,
    /// Not allowed (e.g. anonymous where anonymous is refused): v5 CONNACK 0x87, 3.1.1 0x05.
    NotAuthorized,
}

/// Checks credentials at CONNECT time.
pub trait Authenticator: Send + Sync {
    /// Decides whether a client with these credentials may connect.
    fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> AuthDecision;
}

/// Checks topic access: on subscribe, on publish, and again on delivery.
pub trait Authorizer: Send + Sync {
    /// True when `who` may perform `access` on `topic` (a topic name, or a filter for Subscribe).
    fn authorize(&self, who: &ClientIdentity, access: Access, topic: &str) -> bool;
}

/// Lets everybody in and allows every topic: the default for a loopback listener.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, _: &str, _: Option<&str>, _: Option<&[u8]>) -> AuthDecision {
        AuthDecision::Allow
    }
}

impl Authorizer for AllowAll {
    fn authorize(&self, _: &ClientIdentity, _: Access, _: &str) -> bool {
        true
    }
}
