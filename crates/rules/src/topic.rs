//! Topic filters: the index of rules by their FROM filters, over the codec's validation, matching
//! and filter trie.
//!
//! The trie is what makes 1,000 rules cheap: a PUBLISH walks one path per topic level (plus the
//! `+` branches) and meets only the rules whose filters can match. Topics starting with `$` are not
//! matched by a filter starting with a wildcard [MQTT-4.7.2-1].

use std::ops::ControlFlow;

pub use tern_codec::topic::matches;
pub(crate) use tern_codec::topic::{validate_topic_filter, validate_topic_name};

/// The hasher of topic levels (as in the broker's router): every PUBLISH walks the trie, and
/// SipHash was most of that walk's cost.
type LevelState = foldhash::fast::RandomState;

/// The rule indexes of topic filters, in the codec's [`tern_codec::topic::trie::FilterTrie`].
#[derive(Debug, Default, Clone)]
pub(crate) struct FilterTrie {
    trie: tern_codec::topic::trie::FilterTrie<Vec<usize>, LevelState>,
}

impl FilterTrie {
    /// Adds `value` under `filter` (assumed valid).
    pub(crate) fn insert(&mut self, filter: &str, value: usize) {
        self.trie.value_mut(filter).push(value);
    }

    /// Appends to `out` the values of every filter matching `topic`, sorted and deduplicated.
    pub(crate) fn matches_into(&self, topic: &str, out: &mut Vec<usize>) {
        let _: ControlFlow<()> = self.trie.visit_matches(topic, &mut |values| {
            out.extend_from_slice(values);
            ControlFlow::Continue(())
        });
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
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
