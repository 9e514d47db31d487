//! Mosquitto's password file: one `username:hash` per line, as written by `mosquitto_passwd` and
//! `tern passwd`, so an existing Mosquitto file works unchanged.
//!
//! Hashes: `$7$<iterations>$<base64 salt>$<base64 hash>` (PBKDF2-HMAC-SHA512, 64-byte output; the
//! default written, with 101 iterations and a 12-byte random salt like `mosquitto_passwd` 2.0) and
//! the legacy `$6$<base64 salt>$<base64 hash>` (one SHA-512 of the password then the salt), read
//! only. Blank lines and lines starting with `#` are skipped.
//!
//! Unlike Mosquitto, which logs and drops a line it cannot decode, loading fails on the first bad
//! line with an error that names the file and the line: a half-loaded password file is a security
//! problem that should stop the broker, not a warning.
//!
//! Not here: per-address back-off ([`LoginBackoff`] is the pure bookkeeping for it; the broker
//! applies the delay) and the anonymous policy ([`super::ListenerAuthenticator`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::{GeneralPurpose, general_purpose};
use rand::RngCore as _;
use sha2::{Digest as _, Sha512};
use subtle::ConstantTimeEq as _;

use super::{AuthDecision, Authenticator};

/// Iterations written for new `$7$` hashes: what `mosquitto_passwd` 2.0 writes.
pub const DEFAULT_ITERATIONS: u32 = 101;
/// Salt length written for new hashes: what `mosquitto_passwd` 2.0 writes.
pub const SALT_LEN: usize = 12;
/// Length of a SHA-512 (and PBKDF2-HMAC-SHA512 as Mosquitto uses it) hash.
pub const HASH_LEN: usize = 64;

/// Standard alphabet, padding written; reading accepts it with or without padding.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    general_purpose::PAD_INDIFFERENT,
);

/// What is wrong with one `$6$`/`$7$` hash string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The hash does not start with `$6$` or `$7$` (a plain-text password, or another scheme).
    #[error(
        "not a Mosquitto hash: expected `$7$<iterations>$<salt>$<hash>` or `$6$<salt>$<hash>` (a plain-text password? run `tern passwd -U FILE`)"
    )]
    UnknownScheme,
    /// Fewer or more `$`-separated fields than the scheme has.
    #[error("wrong number of `$`-separated fields for `${scheme}$`: expected {expected}")]
    FieldCount {
        /// `6` or `7`.
        scheme: u8,
        /// How many fields after the scheme were expected.
        expected: usize,
    },
    /// The `$7$` iteration count is not a whole number from 1 to 4294967295.
    #[error("iteration count `{0}` is not a whole number from 1 to 4294967295")]
    Iterations(String),
    /// The salt is not valid base64 (standard alphabet) or is empty.
    #[error("salt is not non-empty standard base64")]
    Salt,
    /// The hash is not valid base64 or does not decode to 64 bytes.
    #[error("hash is not standard base64 of 64 bytes")]
    Hash,
}

/// A stored password hash in one of Mosquitto's formats.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$7$`: PBKDF2-HMAC-SHA512 with an iteration count.
    Pbkdf2Sha512 {
        /// PBKDF2 iterations (Mosquitto 2.0 writes 101).
        iterations: u32,
        /// The salt bytes (decoded).
        salt: Vec<u8>,
        /// The derived key.
        hash: [u8; HASH_LEN],
    },
    /// `$6$`: SHA-512 over the password followed by the salt (legacy, read only by default).
    Sha512 {
        /// The salt bytes (decoded).
        salt: Vec<u8>,
        /// The digest.
        hash: [u8; HASH_LEN],
    },
}

impl fmt::Debug for PasswordHash {
    // The encoded form is what the file holds anyway, but keep hashes out of casual logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pbkdf2Sha512 { iterations, .. } => f
                .debug_struct("Pbkdf2Sha512")
                .field("iterations", iterations)
                .finish_non_exhaustive(),
            Self::Sha512 { .. } => f.debug_struct("Sha512").finish_non_exhaustive(),
        }
    }
}

impl PasswordHash {
    /// A new `$7$` hash with [`DEFAULT_ITERATIONS`] and a random [`SALT_LEN`]-byte salt.
    pub fn generate(password: &[u8]) -> Self {
        let mut salt = vec![0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        Self::pbkdf2_sha512(password, salt, DEFAULT_ITERATIONS)
    }

    /// A new legacy `$6$` hash with a random [`SALT_LEN`]-byte salt (`mosquitto_passwd -H sha512`).
    pub fn generate_sha512(password: &[u8]) -> Self {
        let mut salt = vec![0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        Self::sha512(password, salt)
    }

    /// A `$7$` hash with the given salt and iterations (known-answer tests, `-U` with settings).
    pub fn pbkdf2_sha512(password: &[u8], salt: Vec<u8>, iterations: u32) -> Self {
        let mut hash = [0u8; HASH_LEN];
        pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, iterations.max(1), &mut hash);
        Self::Pbkdf2Sha512 {
            iterations: iterations.max(1),
            salt,
            hash,
        }
    }

    /// A legacy `$6$` hash with the given salt (what `mosquitto_passwd -H sha512` writes).
    pub fn sha512(password: &[u8], salt: Vec<u8>) -> Self {
        let hash = sha512_digest(password, &salt);
        Self::Sha512 { salt, hash }
    }

    /// Parses `$7$...` or `$6$...` (surrounding blanks are the caller's to trim).
    pub fn parse(text: &str) -> Result<Self, HashError> {
        let mut fields = text.split('$');
        // A hash starts with `$`, so the first field is empty.
        if fields.next() != Some("") {
            return Err(HashError::UnknownScheme);
        }
        let scheme = fields.next().ok_or(HashError::UnknownScheme)?;
        let rest: Vec<&str> = fields.collect();
        match scheme {
            "7" => {
                let [iterations, salt, hash] = rest.as_slice() else {
                    return Err(HashError::FieldCount {
                        scheme: 7,
                        expected: 3,
                    });
                };
                let iterations = iterations
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| HashError::Iterations((*iterations).to_owned()))?;
                Ok(Self::Pbkdf2Sha512 {
                    iterations,
                    salt: decode_salt(salt)?,
                    hash: decode_hash(hash)?,
                })
            }
            "6" => {
                let [salt, hash] = rest.as_slice() else {
                    return Err(HashError::FieldCount {
                        scheme: 6,
                        expected: 2,
                    });
                };
                Ok(Self::Sha512 {
                    salt: decode_salt(salt)?,
                    hash: decode_hash(hash)?,
                })
            }
            _ => Err(HashError::UnknownScheme),
        }
    }

    /// The text form as it goes into the file after `username:`.
    pub fn encode(&self) -> String {
        match self {
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => format!("$7${iterations}${}${}", B64.encode(salt), B64.encode(hash)),
            Self::Sha512 { salt, hash } => {
                format!("$6${}${}", B64.encode(salt), B64.encode(hash))
            }
        }
    }

    /// True when `password` hashes to this; the final comparison is constant-time.
    pub fn verify(&self, password: &[u8]) -> bool {
        let (expected, computed) = match self {
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut out = [0u8; HASH_LEN];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                (hash, out)
            }
            Self::Sha512 { salt, hash } => (hash, sha512_digest(password, salt)),
        };
        bool::from(expected.ct_eq(&computed))
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

fn sha512_digest(password: &[u8], salt: &[u8]) -> [u8; HASH_LEN] {
    let mut digest = Sha512::new();
    digest.update(password);
    digest.update(salt);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&digest.finalize());
    out
}

fn decode_salt(text: &str) -> Result<Vec<u8>, HashError> {
    match B64.decode(text) {
        Ok(salt) if !salt.is_empty() => Ok(salt),
        _ => Err(HashError::Salt),
    }
}

fn decode_hash(text: &str) -> Result<[u8; HASH_LEN], HashError> {
    let bytes = B64.decode(text).map_err(|_| HashError::Hash)?;
    bytes.try_into().map_err(|_| HashError::Hash)
}

/// Why a password file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    /// The file could not be read.
    #[error("password file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is malformed; `line` counts from 1.
    #[error("password file {}, line {line}: {kind}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        kind: LineError,
    },
}

/// What is wrong with one line of a password file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// No `:` between user name and hash.
    #[error("expected `username:hash`, found no `:`")]
    MissingColon,
    /// The user name before the `:` is empty.
    #[error("empty user name before `:`")]
    EmptyUsername,
    /// Nothing after the `:`.
    #[error("user `{0}` has no password hash after `:`")]
    MissingHash(String),
    /// The user appeared on an earlier line.
    #[error("user `{username}` already defined on line {first_line}")]
    DuplicateUser {
        /// The repeated name.
        username: String,
        /// Where it was first defined.
        first_line: usize,
    },
    /// The hash after the `:` is not a Mosquitto hash.
    #[error("user `{username}`: {error}")]
    BadHash {
        /// Whose hash.
        username: String,
        /// What is wrong with it.
        error: HashError,
    },
}

/// One non-blank, non-comment line: user name and the raw text after the first `:`, both trimmed.
pub(crate) fn split_line(raw: &str) -> Result<(&str, &str), LineError> {
    let (user, rest) = raw.split_once(':').ok_or(LineError::MissingColon)?;
    let user = user.trim();
    if user.is_empty() {
        return Err(LineError::EmptyUsername);
    }
    Ok((user, rest.trim()))
}

/// True for the lines a password file skips: blank, or a comment starting with `#`.
pub fn is_skipped_line(raw: &str) -> bool {
    let t = raw.trim();
    t.is_empty() || t.starts_with('#')
}

/// A loaded password file: user name to hash. Cheap to look up; immutable once loaded (swap a new
/// one in on reload).
#[derive(Debug, Clone)]
pub struct PasswordFile {
    path: PathBuf,
    users: HashMap<String, PasswordHash>,
    /// Verified against when the user is unknown, so a miss costs as much as a wrong password.
    decoy: PasswordHash,
}

impl PasswordFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PasswordFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses file contents; `path` is only used in error messages.
    pub fn parse(path: impl AsRef<Path>, text: &str) -> Result<Self, PasswordFileError> {
        let path = path.as_ref();
        let mut users = HashMap::new();
        let mut first_lines: HashMap<String, usize> = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            if is_skipped_line(raw) {
                continue;
            }
            let err = |kind| PasswordFileError::Line {
                path: path.to_owned(),
                line,
                kind,
            };
            let (user, hash) = split_line(raw).map_err(err)?;
            if hash.is_empty() {
                return Err(err(LineError::MissingHash(user.to_owned())));
            }
            let hash = PasswordHash::parse(hash).map_err(|error| {
                err(LineError::BadHash {
                    username: user.to_owned(),
                    error,
                })
            })?;
            match first_lines.entry(user.to_owned()) {
                Entry::Occupied(first) => {
                    return Err(err(LineError::DuplicateUser {
                        username: user.to_owned(),
                        first_line: *first.get(),
                    }));
                }
                Entry::Vacant(slot) => {
                    slot.insert(line);
                }
            }
            users.insert(user.to_owned(), hash);
        }
        tracing::debug!(path = %path.display(), users = users.len(), "password file loaded");
        Ok(Self {
            path: path.to_owned(),
            users,
            decoy: PasswordHash::generate(b"tern-decoy"),
        })
    }

    /// The file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many users the file defines.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when the file defines no user (then nobody can log in with a password).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// True when `username` has an entry.
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// Checks a user name and password: true only when the user exists and the password matches.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        match self.users.get(username) {
            Some(hash) => hash.verify(password),
            None => {
                // Same work as a real check, so response time does not reveal which users exist.
                let _ = self.decoy.verify(password);
                false
            }
        }
    }
}

impl Authenticator for PasswordFile {
    /// No user name: [`AuthDecision::NotAuthorized`] (anonymous is the listener's policy, see
    /// [`super::ListenerAuthenticator`]). Unknown user, missing or wrong password:
    /// [`AuthDecision::BadCredentials`].
    fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> AuthDecision {
        let Some(username) = username else {
            return AuthDecision::NotAuthorized;
        };
        let ok = self.verify(username, password.unwrap_or_default());
        if ok && password.is_some() {
            AuthDecision::Allow
        } else {
            tracing::info!(
                client_id,
                username,
                "login refused: bad user name or password"
            );
            AuthDecision::BadCredentials
        }
    }
}

/// Per-address back-off for failed logins: pure bookkeeping, no clock or timer of its own.
///
/// Each failure from an address doubles the delay the broker should impose before answering the
/// next CONNECT from it (from `base` up to `max`); a success clears it, and an address that has not
/// failed for `forget_after` is forgotten. IPv6 addresses are grouped by /64, since one host
/// usually owns a whole /64. Memory is bounded by `capacity` addresses: when full, the entry
/// whose last failure is oldest is dropped.
#[derive(Debug, Clone)]
pub struct LoginBackoff {
    base: Duration,
    max: Duration,
    forget_after: Duration,
    capacity: usize,
    entries: HashMap<IpAddr, BackoffEntry>,
}

#[derive(Debug, Clone, Copy)]
struct BackoffEntry {
    failures: u32,
    last_failure: Instant,
}

impl Default for LoginBackoff {
    /// 100 ms after the first failure, doubling up to 10 s; forgotten after 10 min; 100,000 addresses.
    fn default() -> Self {
        Self::new(
            Duration::from_millis(100),
            Duration::from_secs(10),
            Duration::from_secs(600),
            100_000,
        )
    }
}

impl LoginBackoff {
    /// A back-off starting at `base`, capped at `max`, forgetting an address after `forget_after`
    /// without failures, remembering at most `capacity` addresses (at least 1).
    pub fn new(base: Duration, max: Duration, forget_after: Duration, capacity: usize) -> Self {
        Self {
            base,
            max,
            forget_after,
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    fn key(addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(_) => addr,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(bits.into())
                }
            },
        }
    }

    /// How long the broker should wait before answering a CONNECT from `addr` (zero when none).
    pub fn delay(&self, addr: IpAddr, now: Instant) -> Duration {
        let Some(entry) = self.entries.get(&Self::key(addr)) else {
            return Duration::ZERO;
        };
        if now.saturating_duration_since(entry.last_failure) >= self.forget_after {
            return Duration::ZERO;
        }
        let shift = entry.failures.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << shift).min(self.max)
    }

    /// Records a failed login from `addr`; returns the delay that now applies to it.
    pub fn record_failure(&mut self, addr: IpAddr, now: Instant) -> Duration {
        let key = Self::key(addr);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.prune(now);
            if self.entries.len() >= self.capacity {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_failure)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    self.entries.remove(&oldest);
                }
            }
        }
        let forget_after = self.forget_after;
        let entry = self.entries.entry(key).or_insert(BackoffEntry {
            failures: 0,
            last_failure: now,
        });
        if now.saturating_duration_since(entry.last_failure) >= forget_after {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        self.delay(addr, now)
    }

    /// Records a successful login from `addr`: its back-off is cleared.
    pub fn record_success(&mut self, addr: IpAddr) {
        self.entries.remove(&Self::key(addr));
    }

    /// Forgets addresses whose last failure is older than `forget_after` (call now and then).
    pub fn prune(&mut self, now: Instant) {
        let forget_after = self.forget_after;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_failure) < forget_after);
    }

    /// How many addresses are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by mosquitto_passwd 2.0.11 (`mosquitto_passwd -c -b f u p`): password "p".
    const MOSQ_7: &str = "$7$101$1lD2EZH8PTyhVe21$gIZdq1PWZXphedWw8ekSjbvsYLhfrSfJkP8nW34Jco8nShb/KpVhqkvGVtCgV1AyLL3v0FWQ8vauMzOPogEgIA==";
    // Written by `mosquitto_passwd -H sha512 -b f s6 p`: password "p".
    const MOSQ_6: &str = "$6$jAGnUknhIS0ZJKR5$tHQWeFlBXxkHbVAcMD1rfXxR/xFMmHM+HK37YBlJbRUfZEQYoYxV/p1fgCSy1Fqg0ahoT9oKPkQmPPK+0EVMOA==";

    fn line_err(text: &str) -> (usize, LineError) {
        match PasswordFile::parse("pw", text) {
            Err(PasswordFileError::Line { line, kind, .. }) => (line, kind),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn known_answer_pbkdf2_sha512_from_mosquitto_passwd() {
        let hash = PasswordHash::parse(MOSQ_7).unwrap();
        assert!(hash.verify(b"p"));
        assert!(!hash.verify(b"q"));
        assert!(!hash.verify(b""));
        assert_eq!(hash.encode(), MOSQ_7);
    }

    #[test]
    fn known_answer_sha512_from_mosquitto_passwd() {
        let hash = PasswordHash::parse(MOSQ_6).unwrap();
        assert!(hash.verify(b"p"));
        assert!(!hash.verify(b"P"));
        assert_eq!(hash.encode(), MOSQ_6);
    }

    #[test]
    fn known_answer_pbkdf2_rfc_style_vector() {
        // PBKDF2-HMAC-SHA512("password", "salt", 1), first bytes per RFC 6070-style vectors.
        let h = PasswordHash::pbkdf2_sha512(b"password", b"salt".to_vec(), 1);
        let PasswordHash::Pbkdf2Sha512 { hash, .. } = &h else {
            panic!("wrong scheme")
        };
        assert_eq!(
            &hash[..8],
            &[0x86, 0x7f, 0x70, 0xcf, 0x1a, 0xde, 0x02, 0xcf]
        );
    }

    #[test]
    fn generated_hash_has_mosquitto_defaults_and_round_trips() {
        let h = PasswordHash::generate(b"secret");
        let PasswordHash::Pbkdf2Sha512 {
            iterations, salt, ..
        } = &h
        else {
            panic!("wrong scheme")
        };
        assert_eq!(*iterations, DEFAULT_ITERATIONS);
        assert_eq!(salt.len(), SALT_LEN);
        let text = h.encode();
        assert!(text.starts_with("$7$101$"));
        let back = PasswordHash::parse(&text).unwrap();
        assert_eq!(back, h);
        assert!(back.verify(b"secret"));
        let legacy = PasswordHash::sha512(b"secret", vec![1; 12]);
        assert!(
            PasswordHash::parse(&legacy.encode())
                .unwrap()
                .verify(b"secret")
        );
    }

    #[test]
    fn hash_errors_name_what_is_wrong() {
        assert_eq!(PasswordHash::parse("secret"), Err(HashError::UnknownScheme));
        assert_eq!(PasswordHash::parse("$5$a$b"), Err(HashError::UnknownScheme));
        assert_eq!(PasswordHash::parse("$"), Err(HashError::UnknownScheme));
        assert_eq!(
            PasswordHash::parse("$7$101$abc"),
            Err(HashError::FieldCount {
                scheme: 7,
                expected: 3
            })
        );
        assert_eq!(
            PasswordHash::parse("$6$a$b$c"),
            Err(HashError::FieldCount {
                scheme: 6,
                expected: 2
            })
        );
        assert_eq!(
            PasswordHash::parse("$7$0$AAAA$AAAA"),
            Err(HashError::Iterations("0".into()))
        );
        assert_eq!(
            PasswordHash::parse("$7$x$AAAA$AAAA"),
            Err(HashError::Iterations("x".into()))
        );
        assert_eq!(PasswordHash::parse("$7$1$!!$AAAA"), Err(HashError::Salt));
        assert_eq!(PasswordHash::parse("$7$1$$AAAA"), Err(HashError::Salt));
        assert_eq!(PasswordHash::parse("$7$1$AAAA$AAAA"), Err(HashError::Hash));
        assert_eq!(PasswordHash::parse("$6$AAAA$%%"), Err(HashError::Hash));
    }

    #[test]
    fn file_accepts_every_line_form() {
        let text = format!(
            "# comment\n\n   \n  # indented comment\nu:{MOSQ_7}\r\n  s6 : {MOSQ_6}  \nlast:{MOSQ_7}"
        );
        let file = PasswordFile::parse("pw", &text).unwrap();
        assert_eq!(file.len(), 3);
        assert!(file.verify("u", b"p"));
        assert!(file.verify("s6", b"p"));
        assert!(file.verify("last", b"p"));
        assert!(!file.verify("u", b"x"));
        assert!(!file.verify("nobody", b"p"));
        assert_eq!(file.path(), Path::new("pw"));
    }

    #[test]
    fn file_errors_name_file_and_line() {
        assert_eq!(line_err("\n# c\nalice"), (3, LineError::MissingColon));
        assert_eq!(line_err(":$7$"), (1, LineError::EmptyUsername));
        assert_eq!(
            line_err("\nbob:  "),
            (2, LineError::MissingHash("bob".into()))
        );
        assert_eq!(
            line_err("bob:secret"),
            (
                1,
                LineError::BadHash {
                    username: "bob".into(),
                    error: HashError::UnknownScheme
                }
            )
        );
        assert_eq!(
            line_err(&format!("a:{MOSQ_7}\nb:{MOSQ_6}\na:{MOSQ_6}")),
            (
                3,
                LineError::DuplicateUser {
                    username: "a".into(),
                    first_line: 1
                }
            )
        );
        let err = PasswordFile::parse("/etc/tern/passwd", "\n\ncarol:plain").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("password file /etc/tern/passwd, line 3: user `carol`"),
            "{msg}"
        );
        assert!(msg.contains("tern passwd -U"), "{msg}");
        let err = PasswordFile::load("/nonexistent/tern-passwd").unwrap_err();
        assert!(matches!(err, PasswordFileError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/tern-passwd"));
    }

    #[test]
    fn authenticator_maps_outcomes_to_connack_decisions() {
        let file = PasswordFile::parse("pw", &format!("u:{MOSQ_7}")).unwrap();
        assert_eq!(
            file.authenticate("c", Some("u"), Some(b"p")),
            AuthDecision::Allow
        );
        assert_eq!(
            file.authenticate("c", Some("u"), Some(b"x")),
            AuthDecision::BadCredentials
        );
        assert_eq!(
            file.authenticate("c", Some("u"), None),
            AuthDecision::BadCredentials
        );
        assert_eq!(
            file.authenticate("c", Some("nobody"), Some(b"p")),
            AuthDecision::BadCredentials
        );
        assert_eq!(
            file.authenticate("c", None, Some(b"p")),
            AuthDecision::NotAuthorized
        );
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(text in "([a-z]|:|\\$|7|6|101|A|=|/|\\+|#| |\n){0,200}") {
            if let Ok(file) = PasswordFile::parse("pw", &text) {
                let _ = file.verify("a", b"a");
            }
        }

        #[test]
        fn parser_never_panics_on_any_text(text in proptest::prelude::any::<String>()) {
            let _ = PasswordFile::parse("pw", &text);
        }

        #[test]
        fn hash_parser_never_panics(text in "\\$[67]\\$[0-9A-Za-z+/=$]{0,120}") {
            let _ = PasswordHash::parse(&text);
        }
    }

    #[test]
    fn backoff_doubles_caps_and_clears() {
        let t0 = Instant::now();
        let mut b = LoginBackoff::new(
            Duration::from_millis(100),
            Duration::from_millis(1000),
            Duration::from_secs(60),
            10,
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(b.delay(ip, t0), Duration::ZERO);
        assert_eq!(b.record_failure(ip, t0), Duration::from_millis(100));
        assert_eq!(b.record_failure(ip, t0), Duration::from_millis(200));
        assert_eq!(b.record_failure(ip, t0), Duration::from_millis(400));
        assert_eq!(b.record_failure(ip, t0), Duration::from_millis(800));
        assert_eq!(b.record_failure(ip, t0), Duration::from_millis(1000));
        for _ in 0..100 {
            b.record_failure(ip, t0);
        }
        assert_eq!(b.delay(ip, t0), Duration::from_millis(1000));
        assert_eq!(b.delay(other, t0), Duration::ZERO);
        b.record_success(ip);
        assert_eq!(b.delay(ip, t0), Duration::ZERO);
    }

    #[test]
    fn backoff_forgets_after_quiet_period_and_is_bounded() {
        let t0 = Instant::now();
        let mut b = LoginBackoff::new(
            Duration::from_millis(100),
            Duration::from_secs(10),
            Duration::from_secs(60),
            3,
        );
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        b.record_failure(ip, t0);
        b.record_failure(ip, t0);
        assert_eq!(b.delay(same_64, t0), Duration::from_millis(200));
        let later = t0 + Duration::from_secs(61);
        assert_eq!(b.delay(ip, later), Duration::ZERO);
        assert_eq!(b.record_failure(ip, later), Duration::from_millis(100));
        for i in 0..10u8 {
            b.record_failure(
                IpAddr::from([10, 0, 0, i]),
                later + Duration::from_secs(i.into()),
            );
        }
        assert!(b.len() <= 3);
        b.prune(later + Duration::from_secs(1000));
        assert!(b.is_empty());
    }
}
