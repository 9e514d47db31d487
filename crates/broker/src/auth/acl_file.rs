//! Mosquitto's `acl_file`: which user may read or write which topics.
//!
//! ```text
//! # entries before any `user` line apply to anonymous clients
//! topic read public/#
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret
//! pattern write devices/%c/status     # %c: client id, %u: user name
//! ```
//!
//! Semantics are Mosquitto 2.0.11's, checked side by side with it (`tests/auth_interop.rs`). For a
//! client, its `topic` lines (those of its `user` section, or of the anonymous section when it has
//! no user name) are consulted first: if any `deny` line matches the topic, access is refused,
//! wherever that line stands; otherwise, if any line matching the topic grants the access asked
//! for, it is allowed. When the `topic` lines decide nothing, the `pattern` lines (which apply to
//! every client, wherever they stand in the file) are consulted the same way, denials first, after
//! `%c` and `%u` are replaced by the client id and user name. A pattern with `%u` never applies to
//! a client without a user name, and when the file has any pattern, a client whose id or user name
//! contains `+` or `#` gets nothing from them. Nothing decided means refused: once a file is given,
//! the default is deny.
//!
//! One deliberate difference: Mosquitto 2.0 accepts every SUBSCRIBE and filters on delivery.
//! [`Access::Subscribe`] here is allowed only when a line granting read covers the whole
//! subscription filter (every topic the subscription can match, the ACL filter matches too) and no
//! `deny` line covers it; otherwise the broker refuses the SUBSCRIBE. Delivery is still checked
//! with [`Access::Read`], so a `deny` inside a granted subscription still holds.
//!
//! Speed: each user's lines are compiled once, at load, into a topic trie that visits only the
//! lines that can match; [`AclFile::session`] resolves the patterns for one client into a
//! [`SessionAcl`] that the broker keeps for the life of the session.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tern_codec::topic::trie::FilterTrie;
use tern_codec::topic::{TopicError, validate_topic_filter};

use super::{Access, Authorizer, ClientIdentity};

/// What an ACL line grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclAccess {
    /// `read`: receive messages, and subscribe.
    Read,
    /// `write`: publish.
    Write,
    /// `readwrite`, or no access word: both.
    ReadWrite,
    /// `deny`: neither, and no later line can grant it.
    Deny,
}

impl AclAccess {
    #[cfg(test)]
    fn grants(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Self::ReadWrite, _)
                | (Self::Read, Access::Read | Access::Subscribe)
                | (Self::Write, Access::Write)
        )
    }
}

/// Whether a line comes from a `topic` or a `pattern` keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclKind {
    /// `topic`: for the user of the section it stands in.
    Topic,
    /// `pattern`: for every client, with `%c`/`%u` substituted.
    Pattern,
}

/// One parsed `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    /// `topic` or `pattern`.
    pub kind: AclKind,
    /// What it grants.
    pub access: AclAccess,
    /// The topic filter as written (patterns still hold `%c`/`%u`).
    pub filter: String,
    /// 1-based line in the file.
    pub line: usize,
}

/// Why an ACL file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AclFileError {
    /// The file could not be read.
    #[error("acl file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is malformed; `line` counts from 1.
    #[error("acl file {}, line {line}: {kind}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        kind: AclLineError,
    },
}

/// What is wrong with one line of an ACL file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclLineError {
    /// `topic` or `pattern` with nothing after it.
    #[error("`{0}` needs a topic filter: `{0} [read|write|readwrite|deny] <filter>`")]
    MissingTopic(&'static str),
    /// The word before the filter is not an access type.
    #[error("unknown access `{0}`: expected read, write, readwrite or deny")]
    BadAccess(String),
    /// The filter is not a valid MQTT topic filter.
    #[error("invalid topic filter `{filter}`: {reason}")]
    BadFilter {
        /// The filter as written.
        filter: String,
        /// What rule it breaks.
        reason: TopicError,
    },
    /// `user` with no name after it.
    #[error("`user` needs a user name: `user <name>`")]
    MissingUsername,
    /// The line starts with something other than `user`, `topic`, `pattern` or `#`.
    #[error("unknown keyword `{0}`: expected user, topic, pattern, or # for a comment")]
    UnknownKeyword(String),
}

/// What the lines ending at one trie node say.
#[derive(Debug, Clone, Copy, Default)]
struct Verdicts {
    deny: bool,
    read: bool,
    write: bool,
}

impl Verdicts {
    fn add(&mut self, access: AclAccess) {
        match access {
            AclAccess::Deny => self.deny = true,
            AclAccess::Read => self.read = true,
            AclAccess::Write => self.write = true,
            AclAccess::ReadWrite => {
                self.read = true;
                self.write = true;
            }
        }
    }
}

/// What the matching lines said so far, for the one access being checked.
#[derive(Debug, Clone, Copy, Default)]
struct Found {
    deny: bool,
    grant: bool,
}

impl Found {
    fn add(&mut self, v: &Verdicts, write: bool) {
        self.deny |= v.deny;
        self.grant |= if write { v.write } else { v.read };
    }

    fn decision(self) -> Option<bool> {
        if self.deny {
            Some(false)
        } else if self.grant {
            Some(true)
        } else {
            None
        }
    }
}

/// A compiled list of lines (one user's `topic` lines, or one client's resolved patterns): a
/// topic-filter trie that visits only the lines that can match. Topic levels are short and
/// looked up on every check, where SipHash dominated.
#[derive(Debug, Default, Clone)]
struct RuleSet {
    trie: FilterTrie<Verdicts, crate::router::FastState>,
}

impl RuleSet {
    fn from_rules<'a>(rules: impl IntoIterator<Item = (&'a str, AclAccess)>) -> Self {
        let mut set = Self::default();
        for (filter, access) in rules {
            set.trie.value_mut(filter).add(access);
        }
        set
    }

    /// `Some(allow)` when a line decides, `None` when none does. A `deny` decides at once.
    fn decide(&self, access: Access, topic: &str) -> Option<bool> {
        let mut found = Found::default();
        let write = access == Access::Write;
        let mut visit = |v: &Verdicts| {
            found.add(v, write);
            if found.deny {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let _ = match access {
            Access::Read | Access::Write => self.trie.visit_matches(topic, &mut visit),
            Access::Subscribe => self.trie.visit_covering(topic, &mut visit),
        };
        found.decision()
    }
}

/// A `pattern` line, kept as text until a client's id and user name are known.
#[derive(Debug, Clone)]
struct Pattern {
    filter: String,
    access: AclAccess,
    uses_username: bool,
}

/// A loaded ACL file. Immutable once loaded: swap in a new one on reload.
#[derive(Debug, Clone)]
pub struct AclFile {
    path: PathBuf,
    rules: Vec<AclRule>,
    anonymous: Option<Arc<RuleSet>>,
    users: HashMap<String, Arc<RuleSet>>,
    patterns: Arc<[Pattern]>,
    /// Resolved sessions by user name then client id, for the [`Authorizer`] path.
    memo: SessionMemo,
}

/// Resolved sessions of one user name, by client id.
type ByClientId = HashMap<String, Arc<SessionAcl>>;

/// Most identities the [`Authorizer`] path remembers before it starts over.
const MEMO_CAPACITY: usize = 65_536;

/// [`SessionAcl`]s already resolved, keyed by user name then client id. A resolved session
/// depends only on the identity and the file, so a remembered one is never stale.
#[derive(Default)]
struct SessionMemo {
    map: RwLock<HashMap<Option<String>, ByClientId>>,
    len: AtomicUsize,
}

impl std::fmt::Debug for SessionMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionMemo")
            .field("len", &self.len.load(Ordering::Relaxed))
            .finish()
    }
}

impl Clone for SessionMemo {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl SessionMemo {
    fn get(&self, who: &ClientIdentity) -> Option<Arc<SessionAcl>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(&who.username)?.get(who.client_id.as_str()).cloned()
    }

    fn insert(&self, who: &ClientIdentity, acl: Arc<SessionAcl>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if self.len.load(Ordering::Relaxed) >= MEMO_CAPACITY {
            map.clear();
            self.len.store(0, Ordering::Relaxed);
        }
        let previous = map
            .entry(who.username.clone())
            .or_default()
            .insert(who.client_id.clone(), acl);
        if previous.is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl AclFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, AclFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| AclFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses file contents; `path` is only used in error messages.
    pub fn parse(path: impl AsRef<Path>, text: &str) -> Result<Self, AclFileError> {
        let path = path.as_ref();
        // Per user (None: anonymous), the `topic` lines in file order; a `user` repeated later in
        // the file adds to the same section, as in Mosquitto.
        let mut sections: HashMap<Option<String>, Vec<(String, AclAccess)>> = HashMap::new();
        let mut patterns = Vec::new();
        let mut rules = Vec::new();
        let mut user: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |kind| AclFileError::Line {
                path: path.to_owned(),
                line,
                kind,
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(trimmed);
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err(AclLineError::MissingUsername));
                    }
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let static_keyword = if keyword == "topic" {
                        "topic"
                    } else {
                        "pattern"
                    };
                    let (first, filter) = split_word(rest);
                    if first.is_empty() {
                        return Err(err(AclLineError::MissingTopic(static_keyword)));
                    }
                    // Mosquitto: a single word is the filter, with read and write access.
                    let (access, filter) = if filter.is_empty() {
                        if matches!(first, "read" | "write" | "readwrite" | "deny") {
                            tracing::warn!(
                                path = %path.display(), line,
                                "ACL line has only the word `{first}`: taken as the topic `{first}` with readwrite access, as Mosquitto does"
                            );
                        }
                        (AclAccess::ReadWrite, first)
                    } else {
                        let access = match first {
                            "read" => AclAccess::Read,
                            "write" => AclAccess::Write,
                            "readwrite" => AclAccess::ReadWrite,
                            "deny" => AclAccess::Deny,
                            other => return Err(err(AclLineError::BadAccess(other.to_owned()))),
                        };
                        (access, filter)
                    };
                    // The checks of Mosquitto's `mosquitto_sub_topic_check`.
                    validate_topic_filter(filter).map_err(|reason| {
                        err(AclLineError::BadFilter {
                            filter: filter.to_owned(),
                            reason,
                        })
                    })?;
                    let kind = if keyword == "topic" {
                        sections
                            .entry(user.clone())
                            .or_default()
                            .push((filter.to_owned(), access));
                        AclKind::Topic
                    } else {
                        patterns.push(Pattern {
                            filter: filter.to_owned(),
                            access,
                            uses_username: filter.contains("%u"),
                        });
                        AclKind::Pattern
                    };
                    rules.push(AclRule {
                        kind,
                        access,
                        filter: filter.to_owned(),
                        line,
                    });
                }
                other => return Err(err(AclLineError::UnknownKeyword(other.to_owned()))),
            }
        }
        let mut anonymous = None;
        let mut users = HashMap::new();
        for (user, lines) in sections {
            let set = Arc::new(RuleSet::from_rules(
                lines.iter().map(|(f, a)| (f.as_str(), *a)),
            ));
            match user {
                None => anonymous = Some(set),
                Some(name) => {
                    users.insert(name, set);
                }
            }
        }
        tracing::debug!(
            path = %path.display(), users = users.len(), patterns = patterns.len(),
            "acl file loaded"
        );
        Ok(Self {
            path: path.to_owned(),
            rules,
            anonymous,
            users,
            patterns: patterns.into(),
            memo: SessionMemo::default(),
        })
    }

    /// The file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every `topic` and `pattern` line, in file order.
    pub fn rules(&self) -> &[AclRule] {
        &self.rules
    }

    /// The checks for one client, with its patterns resolved: build once per session (after
    /// CONNECT, with the final client id and user name) and keep it.
    pub fn session(&self, who: &ClientIdentity) -> SessionAcl {
        let topics = match &who.username {
            Some(name) => self.users.get(name).cloned(),
            None => self.anonymous.clone(),
        };
        let has_patterns = !self.patterns.is_empty();
        let dangerous = has_patterns
            && (who.client_id.contains(['+', '#'])
                || who
                    .username
                    .as_deref()
                    .is_some_and(|u| u.contains(['+', '#'])));
        if dangerous {
            tracing::info!(
                client_id = %who.client_id, username = ?who.username,
                "ACL patterns refuse a client whose id or user name contains + or #"
            );
        }
        let patterns = if has_patterns && !dangerous {
            let resolved: Vec<(String, AclAccess)> = self
                .patterns
                .iter()
                .filter(|p| !p.uses_username || who.username.is_some())
                .map(|p| (substitute(&p.filter, who), p.access))
                .collect();
            Some(RuleSet::from_rules(
                resolved.iter().map(|(f, a)| (f.as_str(), *a)),
            ))
        } else {
            None
        };
        SessionAcl { topics, patterns }
    }
}

/// Replaces `%c` and `%u` anywhere in `filter`, as Mosquitto 2.0 does.
fn substitute(filter: &str, who: &ClientIdentity) -> String {
    let mut out = String::with_capacity(filter.len() + 16);
    let mut chars = filter.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match (chars.peek(), who.username.as_deref()) {
                (Some('c'), _) => {
                    chars.next();
                    out.push_str(&who.client_id);
                    continue;
                }
                (Some('u'), Some(user)) => {
                    chars.next();
                    out.push_str(user);
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// Splits off the first whitespace-separated word; the rest is trimmed.
fn split_word(text: &str) -> (&str, &str) {
    match text.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((word, rest)) => (word, rest.trim()),
        None => (text, ""),
    }
}

/// The ACL of one connected client: its user's compiled `topic` lines and its resolved patterns.
/// Cheap to check, immutable, `Send + Sync`; the broker builds it once per session.
#[derive(Debug, Clone)]
pub struct SessionAcl {
    topics: Option<Arc<RuleSet>>,
    /// `None` when the file has no patterns, or the client may use none (dangerous id).
    patterns: Option<RuleSet>,
}

impl SessionAcl {
    /// True when this client may perform `access` on `topic` (a topic name for Read and Write, a
    /// topic filter for Subscribe; a shared subscription's `$share/<group>/` prefix is ignored).
    pub fn check(&self, access: Access, topic: &str) -> bool {
        let topic = match access {
            Access::Subscribe => strip_share(topic),
            Access::Read | Access::Write => topic,
        };
        if let Some(decided) = self.topics.as_ref().and_then(|t| t.decide(access, topic)) {
            return decided;
        }
        self.patterns
            .as_ref()
            .and_then(|p| p.decide(access, topic))
            .unwrap_or(false)
    }
}

/// `$share/group/a/b` → `a/b`; anything else unchanged.
fn strip_share(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, f)| f)
}

impl Authorizer for AclFile {
    /// Resolves the client's session once and remembers it (by user name and client id), so
    /// later calls cost a map lookup more than [`SessionAcl::check`]. The broker can skip even
    /// that by keeping the [`SessionAcl`] from [`AclFile::session`] in its session state.
    fn authorize(&self, who: &ClientIdentity, access: Access, topic: &str) -> bool {
        if let Some(session) = self.memo.get(who) {
            return session.check(access, topic);
        }
        let session = Arc::new(self.session(who));
        let allowed = session.check(access, topic);
        self.memo.insert(who, session);
        allowed
    }
}

/// A [`SessionAcl`] with a memo of its Read and Write decisions by topic name, for a session
/// that publishes to and receives the same topics over and over. Bounded: when `capacity`
/// topics are remembered, it starts over. The memo sits behind a mutex only the session's own
/// task takes, so it is uncontended; it is an [`Authorizer`] like the [`SessionAcl`] it wraps.
///
/// Worth it when a session's topics repeat (a hit is one hash lookup); a session publishing to
/// ever-new topics only pays for the misses, so keep the plain [`SessionAcl`] there.
pub struct AclCache {
    acl: SessionAcl,
    memo: Mutex<Memo>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Memo {
    // The router's seeded multiply-rotate hasher: SipHash was half the cost of a hit.
    read: HashMap<Box<str>, bool, crate::router::FastState>,
    write: HashMap<Box<str>, bool, crate::router::FastState>,
}

impl std::fmt::Debug for AclCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclCache")
            .field("acl", &self.acl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Clone for AclCache {
    /// The same ACL with an empty memo.
    fn clone(&self) -> Self {
        Self::new(self.acl.clone(), self.capacity)
    }
}

impl AclCache {
    /// A memo over `acl` remembering up to `capacity` topics per access.
    pub fn new(acl: SessionAcl, capacity: usize) -> Self {
        Self {
            acl,
            memo: Mutex::new(Memo::default()),
            capacity: capacity.max(1),
        }
    }

    /// Same answer as [`SessionAcl::check`]; Subscribe is not remembered (it is rare).
    pub fn check(&self, access: Access, topic: &str) -> bool {
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        let memo = match access {
            Access::Read => &mut memo.read,
            Access::Write => &mut memo.write,
            Access::Subscribe => return self.acl.check(access, topic),
        };
        if let Some(allowed) = memo.get(topic) {
            return *allowed;
        }
        let allowed = self.acl.check(access, topic);
        if memo.len() >= self.capacity {
            memo.clear();
        }
        memo.insert(topic.into(), allowed);
        allowed
    }

    /// The session ACL behind the memo.
    pub fn acl(&self) -> &SessionAcl {
        &self.acl
    }

    /// How many Read and Write decisions are remembered.
    pub fn len(&self) -> usize {
        let memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        memo.read.len() + memo.write.len()
    }

    /// True when nothing is remembered yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An [`AclCache`] is an [`Authorizer`] for the one client it was built for; `who` is ignored.
impl Authorizer for AclCache {
    fn authorize(&self, _who: &ClientIdentity, access: Access, topic: &str) -> bool {
        self.check(access, topic)
    }
}

/// A [`SessionAcl`] is an [`Authorizer`] for the one client it was built for; `who` is ignored.
impl Authorizer for SessionAcl {
    fn authorize(&self, _who: &ClientIdentity, access: Access, topic: &str) -> bool {
        self.check(access, topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(client_id: &str, username: Option<&str>) -> ClientIdentity {
        ClientIdentity {
            client_id: client_id.into(),
            username: username.map(Into::into),
        }
    }

    fn acl(text: &str) -> AclFile {
        AclFile::parse("acl", text).unwrap()
    }

    fn line_err(text: &str) -> (usize, AclLineError) {
        match AclFile::parse("acl", text) {
            Err(AclFileError::Line { line, kind, .. }) => (line, kind),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    // ---- reference model: Mosquitto 2.0's linear loop, for cross-checking the trie ----

    fn topic_matches(filter: &str, topic: &str) -> bool {
        let f: Vec<&str> = filter.split('/').collect();
        let t: Vec<&str> = topic.split('/').collect();
        if t.first().is_some_and(|l| l.starts_with('$'))
            && f.first().is_some_and(|l| *l == "+" || *l == "#")
        {
            return false;
        }
        let mut i = 0;
        loop {
            match (f.get(i), t.get(i)) {
                (Some(&"#"), _) => return true,
                (Some(&"+"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
            i += 1;
        }
    }

    fn covers(acl: &str, sub: &str) -> bool {
        let a: Vec<&str> = acl.split('/').collect();
        let s: Vec<&str> = sub.split('/').collect();
        if s.first().is_some_and(|l| l.starts_with('$'))
            && a.first().is_some_and(|l| *l == "+" || *l == "#")
        {
            return false;
        }
        let mut i = 0;
        loop {
            match (a.get(i), s.get(i)) {
                (Some(&"#"), _) => return true,
                (Some(&"+"), Some(l)) if *l != "#" => {}
                (Some(x), Some(y)) if x == y && *y != "+" && *y != "#" => {}
                (None, None) => return true,
                _ => return false,
            }
            i += 1;
        }
    }

    /// Mosquitto 2.0.11: a loop over the denials first, then one over the grants.
    fn linear(rules: &[(String, AclAccess)], access: Access, topic: &str) -> Option<bool> {
        let hit = |filter: &str| match access {
            Access::Subscribe => covers(filter, topic),
            _ => topic_matches(filter, topic),
        };
        for (filter, a) in rules {
            if *a == AclAccess::Deny && hit(filter) {
                return Some(false);
            }
        }
        for (filter, a) in rules {
            if a.grants(access) && hit(filter) {
                return Some(true);
            }
        }
        None
    }

    // ---- parser ----

    #[test]
    fn parses_every_line_form() {
        let f = acl("# comment\n\n  \t\n   # indented comment\n\
             topic read public/#\n\
             topic   anon/only  \n\
             user alice\n\
             topic write a/w\n\
             topic readwrite a/rw\n\
             topic deny a/deny\n\
             topic read with space/+\n\
             user  bob smith \n\
             pattern read p/%u/%c\n\
             pattern p/all\n");
        let kinds: Vec<(AclKind, AclAccess, &str, usize)> = f
            .rules()
            .iter()
            .map(|r| (r.kind, r.access, r.filter.as_str(), r.line))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (AclKind::Topic, AclAccess::Read, "public/#", 5),
                (AclKind::Topic, AclAccess::ReadWrite, "anon/only", 6),
                (AclKind::Topic, AclAccess::Write, "a/w", 8),
                (AclKind::Topic, AclAccess::ReadWrite, "a/rw", 9),
                (AclKind::Topic, AclAccess::Deny, "a/deny", 10),
                (AclKind::Topic, AclAccess::Read, "with space/+", 11),
                (AclKind::Pattern, AclAccess::Read, "p/%u/%c", 13),
                (AclKind::Pattern, AclAccess::ReadWrite, "p/all", 14),
            ]
        );
        // The user name is the rest of the line, trimmed: spaces inside are kept.
        let bob = f.session(&id("c", Some("bob smith")));
        assert!(bob.check(Access::Read, "p/bob smith/c"));
        let alice = f.session(&id("c", Some("alice")));
        assert!(alice.check(Access::Read, "with space/x"));
        assert_eq!(f.path(), Path::new("acl"));
    }

    #[test]
    fn errors_name_file_and_line() {
        assert_eq!(
            line_err("\ntopic"),
            (2, AclLineError::MissingTopic("topic"))
        );
        assert_eq!(
            line_err("pattern   "),
            (1, AclLineError::MissingTopic("pattern"))
        );
        assert_eq!(
            line_err("# c\n\ntopic rw a/b"),
            (3, AclLineError::BadAccess("rw".into()))
        );
        assert_eq!(line_err("user"), (1, AclLineError::MissingUsername));
        assert_eq!(line_err("user   \t"), (1, AclLineError::MissingUsername));
        assert_eq!(
            line_err("topic read a/b\nusers x"),
            (2, AclLineError::UnknownKeyword("users".into()))
        );
        assert_eq!(
            line_err("topic read a/#/b"),
            (
                1,
                AclLineError::BadFilter {
                    filter: "a/#/b".into(),
                    reason: TopicError::MisplacedMultiLevelWildcard
                }
            )
        );
        assert_eq!(
            line_err("topic read a+/b"),
            (
                1,
                AclLineError::BadFilter {
                    filter: "a+/b".into(),
                    reason: TopicError::MisplacedSingleLevelWildcard
                }
            )
        );
        let msg = AclFile::parse("/etc/tern/acl", "\n\ntopic sometimes a/b")
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "acl file /etc/tern/acl, line 3: unknown access `sometimes`: expected read, write, readwrite or deny"
        );
        let err = AclFile::load("/nonexistent/tern-acl").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/tern-acl"));
    }

    #[test]
    fn lone_access_word_is_a_topic_like_mosquitto() {
        let f = acl("topic read");
        let s = f.session(&id("c", None));
        assert!(s.check(Access::Write, "read"));
        assert!(s.check(Access::Read, "read"));
    }

    // ---- semantics ----

    #[test]
    fn anonymous_section_applies_only_without_user_name() {
        let f = acl("topic read public/#\nuser alice\ntopic read alice/#");
        let anon = f.session(&id("c", None));
        assert!(anon.check(Access::Read, "public/x"));
        assert!(!anon.check(Access::Read, "alice/x"));
        let alice = f.session(&id("c", Some("alice")));
        assert!(alice.check(Access::Read, "alice/x"));
        assert!(!alice.check(Access::Read, "public/x"));
        let bob = f.session(&id("c", Some("bob")));
        assert!(!bob.check(Access::Read, "public/x"));
        assert!(!bob.check(Access::Write, "alice/x"));
    }

    #[test]
    fn default_deny_once_a_file_is_given() {
        let f = acl("# nothing but a comment\n");
        let s = f.session(&id("c", Some("u")));
        assert!(!s.check(Access::Read, "a"));
        assert!(!s.check(Access::Write, "a"));
        assert!(!s.check(Access::Subscribe, "a"));
    }

    #[test]
    fn read_write_and_readwrite_grant_what_they_say() {
        let f = acl("user u\ntopic read r\ntopic write w\ntopic readwrite rw\ntopic rw2");
        let s = f.session(&id("c", Some("u")));
        assert!(s.check(Access::Read, "r") && !s.check(Access::Write, "r"));
        assert!(!s.check(Access::Read, "w") && s.check(Access::Write, "w"));
        assert!(s.check(Access::Read, "rw") && s.check(Access::Write, "rw"));
        assert!(s.check(Access::Read, "rw2") && s.check(Access::Write, "rw2"));
        assert!(s.check(Access::Subscribe, "r") && !s.check(Access::Subscribe, "w"));
    }

    #[test]
    fn deny_wins_wherever_it_stands() {
        let f = acl("user u\ntopic deny a/secret\ntopic readwrite a/#\n\
             user v\ntopic readwrite a/#\ntopic deny a/secret");
        for user in ["u", "v"] {
            let s = f.session(&id("c", Some(user)));
            assert!(!s.check(Access::Read, "a/secret"), "{user}");
            assert!(!s.check(Access::Write, "a/secret"), "{user}");
            assert!(s.check(Access::Read, "a/other"), "{user}");
        }
    }

    #[test]
    fn lines_granting_other_access_are_passed_over() {
        // `read a/#` matches a write to a/b but does not decide it; the later line grants.
        let f = acl("user u\ntopic read a/#\ntopic write a/b");
        let s = f.session(&id("c", Some("u")));
        assert!(s.check(Access::Write, "a/b"));
        assert!(!s.check(Access::Write, "a/c"));
    }

    #[test]
    fn topic_lines_decide_before_patterns() {
        let f = acl("pattern readwrite x/#\nuser u\ntopic deny x/no\n");
        let u = f.session(&id("c", Some("u")));
        assert!(!u.check(Access::Write, "x/no"));
        assert!(u.check(Access::Write, "x/yes"));
        let other = f.session(&id("c", Some("other")));
        assert!(other.check(Access::Write, "x/no"));
    }

    #[test]
    fn patterns_substitute_client_id_and_user_name() {
        let f = acl(
            "pattern readwrite devices/%c/#\npattern read users/%u/inbox\npattern write x%uy/%c%c",
        );
        let s = f.session(&id("dev1", Some("alice")));
        assert!(s.check(Access::Write, "devices/dev1/status"));
        assert!(s.check(Access::Read, "devices/dev1"));
        assert!(!s.check(Access::Write, "devices/dev2/status"));
        assert!(s.check(Access::Read, "users/alice/inbox"));
        assert!(!s.check(Access::Write, "users/alice/inbox"));
        assert!(s.check(Access::Write, "xalicey/dev1dev1"));
        // %u never applies without a user name.
        let anon = f.session(&id("dev1", None));
        assert!(anon.check(Access::Write, "devices/dev1/x"));
        assert!(!anon.check(Access::Read, "users//inbox"));
        assert!(!anon.check(Access::Read, "users/%u/inbox"));
    }

    #[test]
    fn patterns_refuse_wildcards_in_identity() {
        let f = acl("user u\ntopic read t/#\npattern readwrite %c/#\npattern readwrite %u/#");
        for who in [id("+", Some("u")), id("a#", Some("u")), id("c", Some("u+"))] {
            let s = f.session(&who);
            assert!(!s.check(Access::Write, "anything/x"), "{who:?}");
        }
        // Topic lines still decide for such a client (they come before the pattern check).
        assert!(f.session(&id("+", Some("u"))).check(Access::Read, "t/x"));
        // Without patterns, wildcards in the id do not matter.
        let f = acl("topic read t/#");
        assert!(f.session(&id("#", None)).check(Access::Read, "t/x"));
    }

    #[test]
    fn dollar_topics_need_dollar_filters() {
        let f = acl("topic read #\ntopic read +/x\ntopic read $SYS/broker/#");
        let s = f.session(&id("c", None));
        assert!(s.check(Access::Read, "a/x"));
        assert!(!s.check(Access::Read, "$other/x"));
        assert!(s.check(Access::Read, "$SYS/broker/load"));
        assert!(!s.check(Access::Subscribe, "$other/#"));
        assert!(s.check(Access::Subscribe, "$SYS/broker/+"));
        assert!(s.check(Access::Subscribe, "#"));
    }

    #[test]
    fn hash_matches_parent_level() {
        let f = acl("topic read a/#\ntopic write b/+/#");
        let s = f.session(&id("c", None));
        assert!(s.check(Access::Read, "a"));
        assert!(s.check(Access::Read, "a/b/c"));
        assert!(!s.check(Access::Read, "ab"));
        assert!(s.check(Access::Write, "b/x"));
        assert!(!s.check(Access::Write, "b"));
    }

    #[test]
    fn subscribe_needs_a_covering_read_grant() {
        let f = acl(
            "user u\ntopic deny s/secret\ntopic read s/#\ntopic read t/+/v\ntopic write w/#\ntopic read one/two",
        );
        let s = f.session(&id("c", Some("u")));
        assert!(s.check(Access::Subscribe, "s/#"));
        assert!(s.check(Access::Subscribe, "s/+/x"));
        assert!(s.check(Access::Subscribe, "s"));
        assert!(!s.check(Access::Subscribe, "s/secret"));
        // Covered subscription, but the denied topic is still refused on delivery.
        assert!(!s.check(Access::Read, "s/secret"));
        assert!(s.check(Access::Subscribe, "t/+/v"));
        assert!(s.check(Access::Subscribe, "t/x/v"));
        assert!(!s.check(Access::Subscribe, "t/#"));
        assert!(!s.check(Access::Subscribe, "t/+/+"));
        assert!(!s.check(Access::Subscribe, "w/#"));
        assert!(!s.check(Access::Subscribe, "one/+"));
        assert!(!s.check(Access::Subscribe, "#"));
        assert!(s.check(Access::Subscribe, "$share/g/s/#"));
        assert!(!s.check(Access::Subscribe, "$share/g/w/x"));
    }

    #[test]
    fn repeated_user_sections_merge_in_file_order() {
        let f = acl("user u\ntopic read a\nuser v\ntopic read b\nuser u\ntopic read c");
        let u = f.session(&id("c", Some("u")));
        assert!(u.check(Access::Read, "a") && u.check(Access::Read, "c"));
        assert!(!u.check(Access::Read, "b"));
    }

    #[test]
    fn authorizer_impl_matches_session() {
        let f = acl("pattern read %c/#\nuser u\ntopic write u/#");
        let who = id("me", None);
        for _ in 0..2 {
            assert!(f.authorize(&who, Access::Read, "me/x"));
            assert!(!f.authorize(&who, Access::Read, "you/x"));
        }
        let u = id("me", Some("u"));
        assert!(f.authorize(&u, Access::Write, "u/x"));
        assert!(!f.authorize(&who, Access::Write, "u/x"));
        assert!(f.authorize(&id("you", None), Access::Read, "you/x"));
        let s = f.session(&who);
        assert!(s.authorize(&who, Access::Read, "me/x"));
    }

    #[test]
    fn cache_gives_the_same_answers_and_stays_bounded() {
        let f = acl("user u\ntopic read a/#\ntopic deny a/no\ntopic write w");
        let session = f.session(&id("c", Some("u")));
        let cache = AclCache::new(session.clone(), 2);
        for _ in 0..3 {
            for topic in ["a/x", "a/no", "w", "other", "a/y"] {
                for access in [Access::Read, Access::Write, Access::Subscribe] {
                    assert_eq!(
                        cache.check(access, topic),
                        session.check(access, topic),
                        "{access:?} {topic}"
                    );
                }
            }
        }
        assert!(!cache.is_empty() && cache.len() <= 4);
        assert!(cache.acl().check(Access::Read, "a/x"));
        let who = id("c", Some("u"));
        assert!(cache.authorize(&who, Access::Read, "a/x"));
        assert!(cache.clone().is_empty());
    }

    #[test]
    fn validate_filter_follows_mqtt_rules() {
        for ok in ["a", "#", "+", "a/+/b", "a/#", "/", "+/+", "$SYS/#", "a//b"] {
            assert!(validate_topic_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a#", "#/a", "a/b#", "a+", "+a/b", "a/#/#"] {
            assert!(validate_topic_filter(bad).is_err(), "{bad}");
        }
    }

    // ---- properties ----

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("".to_string()),
            Just("$s".to_string()),
        ]
    }

    fn filter_level() -> impl Strategy<Value = String> {
        prop_oneof![4 => level(), 1 => Just("+".to_string())]
    }

    fn filter() -> impl Strategy<Value = String> {
        (prop::collection::vec(filter_level(), 1..4), any::<bool>()).prop_map(|(mut l, hash)| {
            if hash {
                l.push("#".into());
            }
            l.join("/")
        })
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
    }

    fn access_kind() -> impl Strategy<Value = AclAccess> {
        prop_oneof![
            Just(AclAccess::Read),
            Just(AclAccess::Write),
            Just(AclAccess::ReadWrite),
            Just(AclAccess::Deny)
        ]
    }

    proptest! {
        #[test]
        fn trie_agrees_with_mosquitto_linear_loop(
            rules in prop::collection::vec((filter(), access_kind()), 0..12),
            topic in topic(),
            sub in filter(),
        ) {
            let set = RuleSet::from_rules(rules.iter().map(|(f, a)| (f.as_str(), *a)));
            for access in [Access::Read, Access::Write] {
                prop_assert_eq!(set.decide(access, &topic), linear(&rules, access, &topic),
                    "{:?} {}", access, topic);
            }
            prop_assert_eq!(set.decide(Access::Subscribe, &sub), linear(&rules, Access::Subscribe, &sub),
                "subscribe {}", sub);
        }

        #[test]
        fn covering_filter_matches_every_topic_of_the_subscription(
            acl_filter in filter(), sub in filter(), topic in topic(),
        ) {
            if covers(&acl_filter, &sub) && topic_matches(&sub, &topic) {
                prop_assert!(topic_matches(&acl_filter, &topic));
            }
        }

        #[test]
        fn parser_never_panics(text in "(user|topic|pattern|read|write|deny|#|%u|%c|\\+|/| |\t|\n|[a-z]){0,200}") {
            if let Ok(f) = AclFile::parse("acl", &text) {
                let s = f.session(&id("c", Some("u")));
                let _ = s.check(Access::Read, "a/b");
                let _ = s.check(Access::Subscribe, "a/#");
            }
        }

        #[test]
        fn parser_never_panics_on_any_text(text in any::<String>()) {
            let _ = AclFile::parse("acl", &text);
        }
    }
}
