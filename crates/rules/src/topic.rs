//! Topic filters: validation, matching, and the trie that indexes rules by their FROM filters.
//!
//! The trie is what makes 1,000 rules cheap: a PUBLISH walks one path per topic level (plus the
//! `+` branches) and meets only the rules whose filters can match. Topics starting with `$` are not
//! matched by a filter starting with a wildcard [MQTT-4.7.2-1].

use std::collections::HashMap;

/// Checks a topic filter's syntax [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.1-3].
pub(crate) fn validate_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("a topic filter must not be empty");
    }
    if filter.contains('\0') {
        return Err("a topic filter must not contain the NUL character");
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err("`#` must be a whole level and the last one");
        }
        if level.contains('+') && level != "+" {
            return Err("`+` must be a whole level");
        }
    }
    Ok(())
}

/// Checks a topic name for publishing: non-empty, no wildcards [MQTT-3.3.2-2], no NUL, at most
/// 65,535 bytes (a UTF-8 Encoded String, section 1.5.4).
pub(crate) fn validate_topic(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() {
        return Err("the topic is empty");
    }
    if topic.contains(['+', '#']) {
        return Err("the topic contains a wildcard (`+` or `#`)");
    }
    if topic.contains('\0') {
        return Err("the topic contains the NUL character");
    }
    if topic.len() > usize::from(u16::MAX) {
        return Err("the topic is longer than 65,535 bytes");
    }
    Ok(())
}

/// Whether `topic` matches `filter` (both assumed valid).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

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
        assert!(validate_filter("a/+/b/#").is_ok());
        assert!(validate_filter("").is_err());
        assert!(validate_filter("a/#/b").is_err());
        assert!(validate_filter("a#").is_err());
        assert!(validate_filter("a+/b").is_err());
        assert!(validate_topic("a/+").is_err());
        assert!(validate_topic("a/b").is_ok());
        assert!(validate_topic(&"a".repeat(65_536)).is_err());
    }
}
