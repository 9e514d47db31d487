//! Authentication and authorization behind two small traits, so the protocol code does not know
//! whether a password file, an ACL file, a certificate or something else decides.
//!
//! Implementations: [`AllowAll`] (anonymous, no ACL); the password file and ACL file in
//! Mosquitto's formats live in submodules of their own.
//!
//! Wiring per listener: [`ListenerAuthenticator`] puts the anonymous policy in front of an
//! optional [`PasswordFile`]; an [`AclFile`] (if any) gives each session a [`SessionAcl`].

pub mod acl_file;
pub mod password_file;

pub use acl_file::{AclCache, AclFile, AclFileError, SessionAcl};
pub use password_file::{LoginBackoff, PasswordFile, PasswordFileError, PasswordHash};

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

/// A listener's authentication: the anonymous policy in front of an optional password check.
///
/// A client without a user name is let in only when `allow_anonymous` is set; a client with one
/// is checked against the password file, or, with no password file, let in when anonymous access
/// is allowed (Mosquitto does the same: without a password file a user name proves nothing).
#[derive(Clone)]
pub struct ListenerAuthenticator {
    allow_anonymous: bool,
    passwords: Option<std::sync::Arc<dyn Authenticator>>,
}

impl std::fmt::Debug for ListenerAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerAuthenticator")
            .field("allow_anonymous", &self.allow_anonymous)
            .field("passwords", &self.passwords.is_some())
            .finish()
    }
}

impl ListenerAuthenticator {
    /// `allow_anonymous` as the listener's setting resolved it; `passwords` usually a
    /// [`PasswordFile`] (or anything else that checks user names and passwords).
    pub fn new(
        allow_anonymous: bool,
        passwords: Option<std::sync::Arc<dyn Authenticator>>,
    ) -> Self {
        Self {
            allow_anonymous,
            passwords,
        }
    }

    /// Whether clients without a user name are let in.
    pub fn allows_anonymous(&self) -> bool {
        self.allow_anonymous
    }
}

impl Authenticator for ListenerAuthenticator {
    fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> AuthDecision {
        match (username, &self.passwords) {
            (None, _) | (Some(_), None) => {
                if self.allow_anonymous {
                    AuthDecision::Allow
                } else {
                    tracing::info!(client_id, "login refused: anonymous access not allowed");
                    AuthDecision::NotAuthorized
                }
            }
            (Some(user), Some(passwords)) => {
                passwords.authenticate(client_id, Some(user), password)
            }
        }
    }
}

#[cfg(test)]
mod listener_tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn anonymous_policy_in_front_of_password_file() {
        let hash = PasswordHash::generate(b"pw").encode();
        let file = PasswordFile::parse("pw", &format!("u:{hash}")).unwrap();
        let strict = ListenerAuthenticator::new(false, Some(Arc::new(file.clone())));
        assert_eq!(
            strict.authenticate("c", None, None),
            AuthDecision::NotAuthorized
        );
        assert_eq!(
            strict.authenticate("c", Some("u"), Some(b"pw")),
            AuthDecision::Allow
        );
        assert_eq!(
            strict.authenticate("c", Some("u"), Some(b"no")),
            AuthDecision::BadCredentials
        );
        let open = ListenerAuthenticator::new(true, Some(Arc::new(file)));
        assert_eq!(open.authenticate("c", None, None), AuthDecision::Allow);
        assert_eq!(
            open.authenticate("c", Some("u"), Some(b"no")),
            AuthDecision::BadCredentials
        );
        let none = ListenerAuthenticator::new(false, None);
        assert_eq!(
            none.authenticate("c", Some("u"), Some(b"pw")),
            AuthDecision::NotAuthorized
        );
        assert!(!none.allows_anonymous());
        let loopback = ListenerAuthenticator::new(true, None);
        assert_eq!(
            loopback.authenticate("c", Some("u"), None),
            AuthDecision::Allow
        );
    }
}
