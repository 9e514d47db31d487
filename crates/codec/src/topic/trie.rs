//! A trie of topic filters, each carrying a value: a lookup walks one path per topic level (plus
//! the `+` branches) and meets only the filters that can match, so 1,000 filters cost about what
//! a handful do. The rules engine indexes its rules by their FROM filters with it, the broker its
//! ACL lines. Pure topic-filter logic: what a value means is the caller's.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::ops::ControlFlow;

/// Topic filters, each with a value `V`; `S` hashes the topic levels (every lookup hashes one
/// per level, so a fast non-cryptographic hasher pays off).
#[derive(Debug, Clone)]
pub struct FilterTrie<V, S> {
    root: Node<V, S>,
}

#[derive(Debug, Clone)]
struct Node<V, S> {
    children: HashMap<Box<str>, Node<V, S>, S>,
    plus: Option<Box<Node<V, S>>>,
    /// The value of the filter ending with `#` here (`a/#` at the node of `a`).
    hash: Option<V>,
    /// The value of the filter ending exactly here.
    exact: Option<V>,
}

impl<V, S: Default> Default for Node<V, S> {
    fn default() -> Self {
        Node {
            children: HashMap::default(),
            plus: None,
            hash: None,
            exact: None,
        }
    }
}

impl<V, S: Default> Default for FilterTrie<V, S> {
    fn default() -> Self {
        FilterTrie {
            root: Node::default(),
        }
    }
}

/// `a/b/c` → (`a`, `Some("b/c")`); `c` → (`c`, `None`). Inline: on every level of every walk,
/// and the walk is instantiated in the caller's crate.
#[inline]
fn next_level(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((level, more)) => (level, Some(more)),
        None => (rest, None),
    }
}

impl<V: Default, S: BuildHasher + Default> FilterTrie<V, S> {
    /// The value of `filter` (assumed valid), `V::default()` when the filter is new.
    pub fn value_mut(&mut self, filter: &str) -> &mut V {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            match level {
                "#" => return node.hash.get_or_insert_default(),
                "+" => node = node.plus.get_or_insert_default(),
                literal => node = node.children.entry(literal.into()).or_default(),
            }
        }
        node.exact.get_or_insert_default()
    }
}

impl<V, S: BuildHasher> FilterTrie<V, S> {
    /// Calls `visit` with the value of every filter that matches the topic name `topic`, until
    /// it breaks. As [`super::matches`]: `#` matches the parent level too [MQTT-4.7.1-2], and a
    /// topic starting with `$` is not matched by a filter starting with a wildcard
    /// [MQTT-4.7.2-1].
    #[inline]
    pub fn visit_matches<B>(
        &self,
        topic: &str,
        visit: &mut impl FnMut(&V) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        self.root
            .walk::<false, B>(Some(topic), topic.starts_with('$'), visit)
    }

    /// Calls `visit` with the value of every filter that covers the topic filter `filter`
    /// (every topic `filter` can match, the stored filter matches too), until it breaks. Level
    /// by level, and so conservative: a `#` is covered by a stored `#` only, not by `+/#`.
    pub fn visit_covering<B>(
        &self,
        filter: &str,
        visit: &mut impl FnMut(&V) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        self.root
            .walk::<true, B>(Some(filter), filter.starts_with('$'), visit)
    }
}

impl<V, S: BuildHasher> Node<V, S> {
    /// Visits the values of this node and of the nodes below it that match (`FILTER`: cover)
    /// `rest`, what is left of the topic (`None` once every level is consumed). `dollar` is true
    /// at the root of a topic starting with `$`, where wildcards do not match. A topic name has
    /// no `+` or `#` level, so both walks are this one; `FILTER` only spares topic names the
    /// wildcard test.
    fn walk<const FILTER: bool, B>(
        &self,
        rest: Option<&str>,
        dollar: bool,
        visit: &mut impl FnMut(&V) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        if !dollar && let Some(v) = &self.hash {
            visit(v)?;
        }
        let Some(rest) = rest else {
            return match &self.exact {
                Some(v) => visit(v),
                None => ControlFlow::Continue(()),
            };
        };
        let (level, more) = next_level(rest);
        // Stored `+` and `#` are in `plus` and `hash`, never children: a filter's wildcard
        // level has none to look up.
        let wildcard = FILTER && (level == "+" || level == "#");
        if !wildcard && let Some(child) = self.children.get(level) {
            child.walk::<FILTER, B>(more, false, visit)?;
        }
        // In a filter, a `#` is covered by a stored `#` only (visited above).
        let plus_may_match = !(dollar || (FILTER && level == "#"));
        if plus_may_match && let Some(plus) = &self.plus {
            plus.walk::<FILTER, B>(more, false, visit)?;
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::RandomState;

    const FILTERS: [&str; 14] = [
        "a/b", "a/+", "a/#", "#", "+/b", "+", "a/+/c", "$SYS/#", "+/+", "a//b", "/#", "a/b/#",
        "$SYS/+", "+/#",
    ];

    fn trie() -> FilterTrie<Vec<usize>, RandomState> {
        let mut t = FilterTrie::<Vec<usize>, RandomState>::default();
        for (i, f) in FILTERS.iter().enumerate() {
            t.value_mut(f).push(i);
        }
        t
    }

    /// The filters whose values `walk` visits, in the order of [`FILTERS`].
    fn visited(
        walk: impl FnOnce(&mut dyn FnMut(&Vec<usize>) -> ControlFlow<()>),
    ) -> Vec<&'static str> {
        let mut out = Vec::new();
        walk(&mut |v| {
            out.extend_from_slice(v);
            ControlFlow::Continue(())
        });
        out.sort_unstable();
        out.iter().map(|&i| FILTERS[i]).collect()
    }

    #[test]
    fn visit_matches_meets_exactly_the_filters_that_match_mqtt_4_7() {
        let t = trie();
        for topic in [
            "a/b", "a", "a/b/c", "b", "$SYS/x", "$SYS", "a//b", "/x", "x/b", "a/x/c", "", "/",
        ] {
            let want: Vec<&str> = FILTERS
                .into_iter()
                .filter(|f| super::super::matches(f, topic))
                .collect();
            let got = visited(|visit| {
                let _ = t.visit_matches(topic, &mut |v| visit(v));
            });
            assert_eq!(got, want, "topic {topic:?}");
        }
    }

    #[test]
    fn visit_covering_meets_the_filters_that_match_every_topic_of_the_filter() {
        let t = trie();
        let covering = |filter: &str| {
            visited(|visit| {
                let _ = t.visit_covering(filter, &mut |v| visit(v));
            })
        };
        assert_eq!(covering("a/+"), ["a/+", "a/#", "#", "+/+", "+/#"]);
        assert_eq!(covering("a/#"), ["a/#", "#", "+/#"]);
        assert_eq!(covering("#"), ["#"]);
        assert_eq!(covering("$SYS/+"), ["$SYS/#", "$SYS/+"]);
    }

    /// Topic names and valid filters over a small alphabet of levels, so they often match.
    fn topic_name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::vec(prop::sample::select(vec!["a", "b", "", "$SYS"]), 1..5)
            .prop_map(|levels| levels.join("/"))
    }

    fn topic_filter() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        (
            proptest::collection::vec(prop::sample::select(vec!["a", "b", "", "+", "$SYS"]), 0..4),
            any::<bool>(),
        )
            .prop_map(|(mut levels, hash)| {
                if hash || levels.is_empty() {
                    levels.push("#");
                }
                levels.join("/")
            })
    }

    proptest::proptest! {
        /// Against [`super::super::matches`], filter by filter: the trie visits exactly the
        /// filters that match a topic, and the filters it says cover a filter match every
        /// topic that filter matches (among the sampled ones).
        #[test]
        fn the_walks_agree_with_matches(
            filters in proptest::collection::vec(topic_filter(), 1..24),
            topics in proptest::collection::vec(topic_name(), 1..24),
        ) {
            let mut t = FilterTrie::<Vec<usize>, RandomState>::default();
            for (i, f) in filters.iter().enumerate() {
                t.value_mut(f).push(i);
            }
            for topic in &topics {
                let want: Vec<usize> = (0..filters.len())
                    .filter(|&i| super::super::matches(&filters[i], topic))
                    .collect();
                let mut got = Vec::new();
                let _ = t.visit_matches(topic, &mut |v: &Vec<usize>| {
                    got.extend_from_slice(v);
                    ControlFlow::<()>::Continue(())
                });
                got.sort_unstable();
                proptest::prop_assert_eq!(got, want, "topic {:?}", topic);
            }
            for filter in &filters {
                let mut covering = Vec::new();
                let _ = t.visit_covering(filter, &mut |v: &Vec<usize>| {
                    covering.extend_from_slice(v);
                    ControlFlow::<()>::Continue(())
                });
                for &i in &covering {
                    for topic in topics.iter().filter(|t| super::super::matches(filter, t)) {
                        proptest::prop_assert!(
                            super::super::matches(&filters[i], topic),
                            "{:?} said to cover {:?}, but does not match {:?}",
                            filters[i], filter, topic
                        );
                    }
                }
                // A filter always covers itself.
                let me = filters.iter().position(|f| f == filter).unwrap_or(usize::MAX);
                proptest::prop_assert!(covering.contains(&me), "{:?} does not cover itself", filter);
            }
        }
    }

    #[test]
    fn a_break_stops_the_walk() {
        let t = trie();
        let mut seen = 0;
        let flow = t.visit_matches("a/b", &mut |_| {
            seen += 1;
            ControlFlow::Break(())
        });
        assert_eq!((flow, seen), (ControlFlow::Break(()), 1));
    }
}
