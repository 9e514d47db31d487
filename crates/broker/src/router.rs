//! The router: which clients receive a message published to a topic.
//!
//! [`Router`] is the narrow interface the rest of the broker uses; [`TrieRouter`] is the in-process
//! implementation: a topic trie with `+` and `#` nodes for wildcard filters plus a hash map for
//! exact filters (the common case costs one lookup), both under one `RwLock` that PUBLISH only ever
//! takes for reading. Shared subscriptions (`$share/{group}/{filter}`) are kept per group at the
//! filter's node and balanced round-robin.
//!
//! The router does not know whether a client is online: it returns targets, and the broker
//! delivers to a live connection or queues in the session.

use crate::topic;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tern_codec::{QoS, SubscriptionOptions};

/// One subscription as the router stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEntry {
    /// Options granted (QoS is the granted QoS).
    pub options: SubscriptionOptions,
    /// v5 Subscription Identifier.
    pub subscription_id: Option<u32>,
}

/// A client that receives one copy of a message (all its matching non-shared subscriptions merged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Client id.
    pub client_id: Arc<str>,
    /// Highest granted QoS among its matching subscriptions [MQTT-3.3.4-2].
    pub qos: QoS,
    /// Retain As Published set on any matching subscription.
    pub retain_as_published: bool,
    /// Identifiers of all matching subscriptions that have one [MQTT-3.3.4-3].
    pub subscription_ids: Vec<u32>,
}

/// A shared subscription group that matched: exactly one member gets the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedTarget {
    /// Members in the order to try them: round-robin, the next in turn first.
    pub members: RoundRobin,
}

/// A shared group's members as they were when the message was routed, read from the one in
/// turn: the router's own list with a starting point (one reference count per message, not a
/// copy of the list).
#[derive(Debug, Clone, Default)]
pub struct RoundRobin {
    members: Arc<[(Arc<str>, RouteEntry)]>,
    start: usize,
}

impl RoundRobin {
    /// Members from the one in turn, wrapping around.
    pub fn iter(&self) -> impl Iterator<Item = &(Arc<str>, RouteEntry)> {
        let (before, from) = self.members.split_at(self.start.min(self.members.len()));
        from.iter().chain(before)
    }

    /// The member in turn.
    pub fn first(&self) -> Option<&(Arc<str>, RouteEntry)> {
        self.iter().next()
    }

    /// How many members the group has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True for a group without members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl PartialEq for RoundRobin {
    /// Equal when the members come in the same order.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for RoundRobin {}

/// Everything a topic matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matches {
    /// Ordinary subscribers, one entry per client.
    pub targets: Vec<Target>,
    /// Shared groups, one entry per group.
    pub shared: Vec<SharedTarget>,
}

/// Subscription index. Implementations may live in this process (the trie) or elsewhere (a
/// cluster); nothing else in the broker looks inside.
pub trait Router: Send + Sync {
    /// Adds or replaces `client_id`'s subscription to `filter` (which may be `$share/...`).
    fn subscribe(&self, client_id: &Arc<str>, filter: &str, entry: RouteEntry);
    /// Removes one subscription; true when it existed.
    fn unsubscribe(&self, client_id: &str, filter: &str) -> bool;
    /// Who should receive a message on `topic` published by `publisher` (for No Local).
    fn route(&self, topic: &str, publisher: Option<&str>) -> Matches;
}

/// The hasher of the router's maps and of the broker's other maps keyed by client input: topics
/// are short and hashed on every publish, where SipHash showed up as the largest cost.
/// `foldhash`'s fast variant is seeded per process and per map, so that colliding topic names
/// cannot be precomputed.
pub(crate) type FastState = foldhash::fast::RandomState;

type FastMap<K, V> = HashMap<K, V, FastState>;

#[derive(Debug, Default)]
struct SharedGroup {
    /// Replaced whole on (rare) subscribe and unsubscribe, shared by every routed message.
    members: Arc<[(Arc<str>, RouteEntry)]>,
    next: AtomicUsize,
}

#[derive(Debug, Default)]
struct Subscribers {
    direct: FastMap<Arc<str>, RouteEntry>,
    shared: FastMap<Box<str>, SharedGroup>,
}

impl Subscribers {
    fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.shared.is_empty()
    }

    fn insert(&mut self, group: Option<&str>, client_id: &Arc<str>, entry: RouteEntry) {
        match group {
            None => {
                self.direct.insert(client_id.clone(), entry);
            }
            Some(g) => {
                let grp = self.shared.entry(g.into()).or_default();
                let mut members = grp.members.to_vec();
                match members.iter_mut().find(|(c, _)| **c == **client_id) {
                    Some(m) => m.1 = entry,
                    None => members.push((client_id.clone(), entry)),
                }
                grp.members = members.into();
            }
        }
    }

    fn remove(&mut self, group: Option<&str>, client_id: &str) -> bool {
        match group {
            None => self.direct.remove(client_id).is_some(),
            Some(g) => {
                let Some(grp) = self.shared.get_mut(g) else {
                    return false;
                };
                let before = grp.members.len();
                let members: Vec<_> = grp
                    .members
                    .iter()
                    .filter(|(c, _)| &**c != client_id)
                    .cloned()
                    .collect();
                let removed = members.len() != before;
                grp.members = members.into();
                if grp.members.is_empty() {
                    self.shared.remove(g);
                }
                removed
            }
        }
    }

    fn collect(&self, publisher: Option<&str>, acc: &mut Collector) {
        // A map's clients are distinct: only those of a second matching filter need merging.
        let merge = !acc.targets.is_empty();
        acc.targets.reserve(self.direct.len());
        for (client, entry) in &self.direct {
            // No Local: not back to the publisher through this subscription [MQTT-3.8.3-3].
            if entry.options.no_local && publisher == Some(&**client) {
                continue;
            }
            acc.add(client, entry, merge);
        }
        for grp in self.shared.values() {
            let n = grp.members.len();
            if n == 0 {
                continue;
            }
            let start = grp.next.fetch_add(1, Ordering::Relaxed) % n;
            acc.shared.push(SharedTarget {
                members: RoundRobin {
                    members: grp.members.clone(),
                    start,
                },
            });
        }
    }
}

#[derive(Default)]
struct Collector {
    targets: Vec<Target>,
    shared: Vec<SharedTarget>,
}

impl Collector {
    fn add(&mut self, client: &Arc<str>, entry: &RouteEntry, merge: bool) {
        // Few targets per topic is the common case: a linear scan beats a map here.
        let same = |t: &&mut Target| Arc::ptr_eq(&t.client_id, client) || t.client_id == *client;
        if merge && let Some(t) = self.targets.iter_mut().find(same) {
            t.qos = t.qos.max(entry.options.qos);
            t.retain_as_published |= entry.options.retain_as_published;
            t.subscription_ids.extend(entry.subscription_id);
        } else {
            self.targets.push(Target {
                client_id: client.clone(),
                qos: entry.options.qos,
                retain_as_published: entry.options.retain_as_published,
                subscription_ids: entry.subscription_id.into_iter().collect(),
            });
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    /// Children by literal level.
    children: FastMap<Box<str>, Node>,
    /// The `+` child and the `#` child, apart from the literals: every publish looks both up at
    /// every level it walks, and a field costs no hashing.
    plus: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    subs: Subscribers,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
            && self.subs.is_empty()
    }

    fn get_or_create(&mut self, filter: &str) -> &mut Node {
        let mut node = self;
        for level in filter.split('/') {
            node = match level {
                "+" => node.plus.get_or_insert_with(Box::default),
                "#" => node.hash.get_or_insert_with(Box::default),
                _ => node.children.entry(level.into()).or_default(),
            };
        }
        node
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node> {
        match level {
            "+" => self.plus.as_deref_mut(),
            "#" => self.hash.as_deref_mut(),
            _ => self.children.get_mut(level),
        }
    }

    fn remove_child(&mut self, level: &str) {
        match level {
            "+" => self.plus = None,
            "#" => self.hash = None,
            _ => {
                self.children.remove(level);
            }
        }
    }

    /// Removes a subscription and prunes empty nodes on the way back.
    fn remove(&mut self, levels: &[&str], group: Option<&str>, client_id: &str) -> bool {
        match levels.split_first() {
            None => self.subs.remove(group, client_id),
            Some((first, rest)) => {
                let Some(child) = self.child_mut(first) else {
                    return false;
                };
                let removed = child.remove(rest, group, client_id);
                if child.is_empty() {
                    self.remove_child(first);
                }
                removed
            }
        }
    }

    /// Matches the topic levels in `rest` (None once every level is consumed) below this node.
    fn collect(
        &self,
        rest: Option<&str>,
        first: bool,
        publisher: Option<&str>,
        acc: &mut Collector,
    ) {
        let dollar = first && rest.is_some_and(|l| l.starts_with('$'));
        // `#` also matches the parent level ("a/#" matches "a") [MQTT-4.7.1-2].
        if !dollar && let Some(hash) = &self.hash {
            hash.subs.collect(publisher, acc);
        }
        let Some(levels) = rest else {
            self.subs.collect(publisher, acc);
            return;
        };
        // A byte scan: topics are short, and `split_once` costs several times more per level.
        let (level, next) = match levels.bytes().position(|b| b == b'/') {
            Some(i) => (levels.get(..i).unwrap_or_default(), levels.get(i + 1..)),
            None => (levels, None),
        };
        if let Some(child) = self.children.get(level) {
            child.collect(next, false, publisher, acc);
        }
        // Wildcards at the first level never match `$` topics [MQTT-4.7.2-1].
        if !dollar && let Some(plus) = &self.plus {
            plus.collect(next, false, publisher, acc);
        }
    }
}

#[derive(Debug, Default)]
struct Index {
    /// Filters without wildcards, keyed by the filter itself: one hash lookup per publish.
    exact: FastMap<Box<str>, Subscribers>,
    /// Filters with `+` or `#`.
    trie: Node,
}

/// The in-process router: a wildcard trie plus an exact-topic map under one read-mostly lock.
#[derive(Debug, Default)]
pub struct TrieRouter {
    index: RwLock<Index>,
}

fn has_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

impl TrieRouter {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Router for TrieRouter {
    fn subscribe(&self, client_id: &Arc<str>, full_filter: &str, entry: RouteEntry) {
        let Ok(parsed) = topic::parse_filter(full_filter) else {
            return;
        };
        let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
        let subs = if has_wildcard(parsed.filter) {
            &mut idx.trie.get_or_create(parsed.filter).subs
        } else {
            idx.exact.entry(parsed.filter.into()).or_default()
        };
        subs.insert(parsed.group, client_id, entry);
    }

    fn unsubscribe(&self, client_id: &str, full_filter: &str) -> bool {
        let Ok(parsed) = topic::parse_filter(full_filter) else {
            return false;
        };
        let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
        if has_wildcard(parsed.filter) {
            let levels: Vec<&str> = parsed.filter.split('/').collect();
            idx.trie.remove(&levels, parsed.group, client_id)
        } else {
            let Some(subs) = idx.exact.get_mut(parsed.filter) else {
                return false;
            };
            let removed = subs.remove(parsed.group, client_id);
            if subs.is_empty() {
                idx.exact.remove(parsed.filter);
            }
            removed
        }
    }

    fn route(&self, topic: &str, publisher: Option<&str>) -> Matches {
        let mut acc = Collector::default();
        {
            let idx = self.index.read().unwrap_or_else(|e| e.into_inner());
            if let Some(subs) = idx.exact.get(topic) {
                subs.collect(publisher, &mut acc);
            }
            if !idx.trie.is_empty() {
                idx.trie.collect(Some(topic), true, publisher, &mut acc);
            }
        }
        Matches {
            targets: acc.targets,
            shared: acc.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(qos: QoS, id: Option<u32>) -> RouteEntry {
        RouteEntry {
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
            subscription_id: id,
        }
    }

    fn ids(m: &Matches) -> Vec<&str> {
        let mut v: Vec<&str> = m.targets.iter().map(|t| &*t.client_id).collect();
        v.sort();
        v
    }

    #[test]
    fn exact_and_wildcard_filters_match() {
        let r = TrieRouter::new();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        let c: Arc<str> = "c".into();
        r.subscribe(&a, "x/y", entry(QoS::AtMostOnce, None));
        r.subscribe(&b, "x/+", entry(QoS::AtMostOnce, None));
        r.subscribe(&c, "x/#", entry(QoS::AtMostOnce, None));
        assert_eq!(ids(&r.route("x/y", None)), ["a", "b", "c"]);
        assert_eq!(ids(&r.route("x", None)), ["c"]);
        assert_eq!(ids(&r.route("x/y/z", None)), ["c"]);
        assert!(r.route("q", None).targets.is_empty());
    }

    #[test]
    fn dollar_topics_not_matched_by_leading_wildcards_mqtt_4_7_2_1() {
        let r = TrieRouter::new();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        r.subscribe(&a, "#", entry(QoS::AtMostOnce, None));
        r.subscribe(&b, "$SYS/#", entry(QoS::AtMostOnce, None));
        assert_eq!(ids(&r.route("$SYS/load", None)), ["b"]);
        let r2 = TrieRouter::new();
        r2.subscribe(&a, "+/load", entry(QoS::AtMostOnce, None));
        assert!(r2.route("$SYS/load", None).targets.is_empty());
    }

    #[test]
    fn overlapping_subscriptions_give_one_copy_at_highest_qos_with_all_ids_mqtt_3_3_4_2() {
        let r = TrieRouter::new();
        let a: Arc<str> = "a".into();
        r.subscribe(&a, "s/+", entry(QoS::AtMostOnce, Some(1)));
        r.subscribe(&a, "s/#", entry(QoS::ExactlyOnce, Some(2)));
        r.subscribe(&a, "s/t", entry(QoS::AtLeastOnce, None));
        let m = r.route("s/t", None);
        assert_eq!(m.targets.len(), 1);
        assert_eq!(m.targets[0].qos, QoS::ExactlyOnce);
        let mut sid = m.targets[0].subscription_ids.clone();
        sid.sort();
        assert_eq!(sid, [1, 2]);
    }

    #[test]
    fn no_local_skips_publisher_mqtt_3_8_3_3() {
        let r = TrieRouter::new();
        let a: Arc<str> = "a".into();
        let mut e = entry(QoS::AtMostOnce, None);
        e.options.no_local = true;
        r.subscribe(&a, "t", e);
        assert!(r.route("t", Some("a")).targets.is_empty());
        assert_eq!(ids(&r.route("t", Some("b"))), ["a"]);
    }

    #[test]
    fn unsubscribe_removes_and_reports_existence() {
        let r = TrieRouter::new();
        let a: Arc<str> = "a".into();
        r.subscribe(&a, "t/+", entry(QoS::AtMostOnce, None));
        assert!(r.unsubscribe("a", "t/+"));
        assert!(!r.unsubscribe("a", "t/+"));
        assert!(r.route("t/x", None).targets.is_empty());
        let idx = r.index.read().unwrap();
        assert!(idx.trie.is_empty(), "empty nodes are pruned");
    }

    #[test]
    fn shared_group_round_robins_members_mqtt_4_8_2() {
        let r = TrieRouter::new();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        r.subscribe(&a, "$share/g/job/+", entry(QoS::AtLeastOnce, None));
        r.subscribe(&b, "$share/g/job/+", entry(QoS::AtLeastOnce, None));
        let first: Vec<_> = (0..4)
            .map(|_| {
                let m = r.route("job/1", None);
                assert!(m.targets.is_empty());
                assert_eq!(m.shared.len(), 1);
                m.shared[0]
                    .members
                    .iter()
                    .next()
                    .map(|m| m.0.to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(first, ["a", "b", "a", "b"]);
        assert!(r.unsubscribe("a", "$share/g/job/+"));
        assert_eq!(
            r.route("job/1", None).shared[0]
                .members
                .first()
                .map(|m| &*m.0),
            Some("b")
        );
    }

    #[test]
    fn shared_group_offers_every_member_from_the_one_in_turn() {
        let r = TrieRouter::new();
        for c in ["a", "b", "c"] {
            r.subscribe(
                &Arc::from(c),
                "$share/g/job/+",
                entry(QoS::AtMostOnce, None),
            );
        }
        // Re-subscribing replaces the member's entry in place: same order, new options.
        r.subscribe(
            &Arc::from("b"),
            "$share/g/job/+",
            entry(QoS::ExactlyOnce, None),
        );
        let orders: Vec<Vec<(String, QoS)>> = (0..4)
            .map(|_| {
                let m = r.route("job/7", None);
                let g = &m.shared[0].members;
                assert_eq!(g.len(), 3);
                g.iter()
                    .map(|(c, e)| (c.to_string(), e.options.qos))
                    .collect()
            })
            .collect();
        let q = |c: &str| {
            if c == "b" {
                QoS::ExactlyOnce
            } else {
                QoS::AtMostOnce
            }
        };
        let expect = |names: [&str; 3]| -> Vec<(String, QoS)> {
            names.iter().map(|c| (c.to_string(), q(c))).collect()
        };
        assert_eq!(orders[0], expect(["a", "b", "c"]));
        assert_eq!(orders[1], expect(["b", "c", "a"]));
        assert_eq!(orders[2], expect(["c", "a", "b"]));
        assert_eq!(orders[3], expect(["a", "b", "c"]));
        // A message routed before an unsubscribe keeps the members it was routed to.
        let before = r.route("job/7", None);
        assert!(r.unsubscribe("b", "$share/g/job/+"));
        assert_eq!(before.shared[0].members.len(), 3);
        let after = r.route("job/7", None);
        let names: Vec<&str> = after.shared[0].members.iter().map(|(c, _)| &**c).collect();
        assert_eq!(names.len(), 2);
        assert!(!names.contains(&"b"));
    }

    #[test]
    fn two_shared_groups_each_get_a_copy() {
        let r = TrieRouter::new();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        r.subscribe(&a, "$share/g1/t", entry(QoS::AtMostOnce, None));
        r.subscribe(&b, "$share/g2/t", entry(QoS::AtMostOnce, None));
        r.subscribe(&b, "t", entry(QoS::AtMostOnce, None));
        let m = r.route("t", None);
        assert_eq!(m.shared.len(), 2);
        assert_eq!(m.targets.len(), 1);
    }

    #[test]
    fn trie_agrees_with_single_filter_matching_on_every_combination() {
        let levels = ["a", "b", "$s", "+", "#", ""];
        let mut filters = Vec::new();
        for x in levels {
            filters.push(x.to_string());
            for y in levels {
                filters.push(format!("{x}/{y}"));
                for z in ["a", "+", "#"] {
                    filters.push(format!("{x}/{y}/{z}"));
                }
            }
        }
        filters.retain(|f| topic::validate_topic_filter(f).is_ok());
        let r = TrieRouter::new();
        let ids: Vec<Arc<str>> = (0..filters.len())
            .map(|i| Arc::from(i.to_string()))
            .collect();
        for (f, id) in filters.iter().zip(&ids) {
            r.subscribe(id, f, entry(QoS::AtMostOnce, None));
        }
        let names = ["a", "b", "$s", ""];
        let mut topics = Vec::new();
        for x in names {
            topics.push(x.to_string());
            for y in names {
                topics.push(format!("{x}/{y}"));
                for z in names {
                    topics.push(format!("{x}/{y}/{z}"));
                }
            }
        }
        for t in topics
            .iter()
            .filter(|t| topic::validate_topic_name(t).is_ok())
        {
            let mut got: Vec<usize> = r
                .route(t, None)
                .targets
                .iter()
                .map(|x| x.client_id.parse().unwrap())
                .collect();
            got.sort();
            let want: Vec<usize> = (0..filters.len())
                .filter(|&i| topic::matches(&filters[i], t))
                .collect();
            assert_eq!(got, want, "topic {t:?}");
        }
    }
}
