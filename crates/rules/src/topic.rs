//! Topic filters: the trie that indexes rules by their FROM filters, over the codec's validation
//! and matching (re-exported here).
//!
//! The trie is what makes 1,000 rules cheap: a PUBLISH walks one path per topic level (plus the
//! `+` branches) and meets only the rules whose filters can match. Topics starting with `$` are not
//! matched by a filter starting with a wildcard [MQTT-4.7.2-1].

use std::collections::HashMap;

pub use tern_codec::topic::matches;
pub(crate) use tern_codec::topic::{validate_topic_filter, validate_topic_name};

/// The hasher of topic levels (as in the broker's router): every PUBLISH walks the trie, and
/// SipHash was most of that walk's cost.
type LevelState = foldhash::fast::RandomState;

/// A trie of topic filters, each carrying a value (a rule index).
#[derive(Debug, Default, Clone)]
pub(crate) struct FilterTrie {
    root: Node,
}

#[derive(Debug, Default, Clone)]
struct Node {
    children: HashMap<Box<str>, Node, LevelState>,
    plus: Option<Box<Node>>,
    /// Values whose filter ends with `#` here.
    hash: Vec<usize>,
    /// Values whose filter ends exactly here.
    exact: Vec<usize>,
}

impl FilterTrie {
    /// Adds `value` under `filter` (assumed valid).
    pub(crate) fn insert(&mut self, filter: &str, value: usize) {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            match level {
                "#" => {
                    node.hash.push(value);
                    return;
                }
                "+" => node = node.plus.get_or_insert_with(Box::default),
                other => node = node.children.entry(other.into()).or_default(),
            }
        }
        node.exact.push(value);
    }

    /// Appends to `out` the values of every filter matching `topic`, sorted and deduplicated.
    pub(crate) fn matches_into(&self, topic: &str, out: &mut Vec<usize>) {
        let dollar = topic.starts_with('$');
        let mut levels = topic.split('/');
        let first = levels.next().unwrap_or("");
        walk(&self.root, first, &mut levels, dollar, out);
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }
}

fn walk<'t, I>(node: &Node, level: &'t str, rest: &mut I, first_dollar: bool, out: &mut Vec<usize>)
where
    I: Iterator<Item = &'t str> + Clone,
{
    if !first_dollar {
        out.extend_from_slice(&node.hash);
    }
    let next = rest.next();
    if let Some(child) = node.children.get(level) {
        descend(child, next, &mut rest.clone(), out);
    }
    if !first_dollar && let Some(plus) = &node.plus {
        descend(plus, next, &mut rest.clone(), out);
    }
}

fn descend<'t, I>(node: &Node, next: Option<&'t str>, rest: &mut I, out: &mut Vec<usize>)
where
    I: Iterator<Item = &'t str> + Clone,
{
    match next {
        Some(level) => walk(node, level, rest, false, out),
        None => {
            out.extend_from_slice(&node.exact);
            // `a/#` also matches `a` [MQTT-4.7.1-2].
            out.extend_from_slice(&node.hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(filters: &[&str]) -> FilterTrie {
        let mut t = FilterTrie::default();
        for (i, f) in filters.iter().enumerate() {
            t.insert(f, i);
        }
        t
    }

    fn hits(t: &FilterTrie, topic: &str) -> Vec<usize> {
        let mut out = Vec::new();
        t.matches_into(topic, &mut out);
        out
    }

    #[test]
    fn trie_agrees_with_matches() {
        let filters = [
            "a/b", "a/+", "a/#", "#", "+/b", "+", "a/+/c", "$SYS/#", "+/+", "a//b", "/#", "a/b/#",
        ];
        let t = trie(&filters);
        for topic in [
            "a/b", "a", "a/b/c", "b", "$SYS/x", "$SYS", "a//b", "/x", "x/b", "a/x/c", "",
        ] {
            let want: Vec<usize> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| matches(f, topic))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(hits(&t, topic), want, "topic {topic:?}");
        }
    }

    #[test]
    fn wildcards_do_not_match_dollar_topics_mqtt_4_7_2_1() {
        assert!(!matches("#", "$SYS/broker"));
        assert!(!matches("+/broker", "$SYS/broker"));
        assert!(matches("$SYS/#", "$SYS/broker"));
    }

    #[test]
    fn hash_matches_parent_level_mqtt_4_7_1_2() {
        assert!(matches("sport/#", "sport"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
    }

    #[test]
    fn filter_validation() {
        assert!(validate_topic_filter("a/+/b/#").is_ok());
        assert!(validate_topic_filter("").is_err());
        assert!(validate_topic_filter("a/#/b").is_err());
        assert!(validate_topic_filter("a#").is_err());
        assert!(validate_topic_filter("a+/b").is_err());
        assert!(validate_topic_name("a/+").is_err());
        assert!(validate_topic_name("a/b").is_ok());
        assert!(validate_topic_name(&"a".repeat(65_536)).is_err());
    }
}
