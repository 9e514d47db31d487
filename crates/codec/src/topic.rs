//! Topic names and topic filters (spec section 4.7): validation, wildcard matching and shared
//! subscription parsing (section 4.8.2). Both the broker and the client use these; the decoder
//! applies the validations to every topic it reads.

use thiserror::Error;

pub mod trie;

/// Longest topic name or filter: it is a UTF-8 Encoded String [MQTT-4.7.3-3].
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Why a topic name or topic filter is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Topic names and filters are at least one character long [MQTT-4.7.3-1].
    #[error("empty")]
    Empty,
    /// Longer than 65,535 bytes [MQTT-4.7.3-3].
    #[error("longer than 65535 bytes")]
    TooLong,
    /// Contains U+0000 [MQTT-4.7.3-2].
    #[error("contains the null character U+0000")]
    NullCharacter,
    /// A topic name containing `+` or `#` [MQTT-3.3.2-2], [MQTT-4.7.0-1].
    #[error("wildcard in a topic name")]
    WildcardInTopicName,
    /// `#` not alone in the last level [MQTT-4.7.1-2].
    #[error("'#' must be the last character and alone in its level")]
    MisplacedMultiLevelWildcard,
    /// `+` not alone in its level [MQTT-4.7.1-3].
    #[error("'+' must occupy an entire level")]
    MisplacedSingleLevelWildcard,
    /// A `$share/` filter without a non-empty, wildcard-free share name followed by `/` and a
    /// topic filter (section 4.8.2).
    #[error("malformed shared subscription")]
    InvalidSharedSubscription,
}

/// Checks a topic name as used in PUBLISH and Will: non-empty, no wildcard, no U+0000, at most
/// 65,535 bytes.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    check_name_bytes(topic.as_bytes())
}

/// The checks of [`validate_topic_name`] except emptiness, over bytes (UTF-8 checked elsewhere).
#[inline]
pub(crate) fn check_name_bytes(topic: &[u8]) -> Result<(), TopicError> {
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    // Fast scan for the common case (no special byte); only then find out which rule broke.
    if !has_special(topic) {
        return Ok(());
    }
    for &b in topic {
        match b {
            b'+' | b'#' => return Err(TopicError::WildcardInTopicName),
            0 => return Err(TopicError::NullCharacter),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `bytes` holds a `+`, `#` or NUL, checked eight bytes at a time (SWAR): this is on
/// the path of every PUBLISH decoded, and a byte-by-byte loop was a third of its cost. The last
/// word overlaps the one before it instead of a byte loop over the remainder.
#[inline]
pub(crate) fn has_special(bytes: &[u8]) -> bool {
    let special = special_bytes;
    let word = |b: &[u8]| {
        // Short input: pad with a byte that is not special.
        let mut w = [b'a'; 8];
        for (d, s) in w.iter_mut().zip(b) {
            *d = *s;
        }
        u64::from_le_bytes(w)
    };
    if bytes.len() < 8 {
        return special(word(bytes)) != 0;
    }
    let mut found = 0u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        if let Ok(w) = <[u8; 8]>::try_from(chunk) {
            found |= special(u64::from_le_bytes(w));
        }
    }
    if !chunks.remainder().is_empty()
        && let Some(last) = bytes.last_chunk::<8>()
    {
        found |= special(u64::from_le_bytes(*last));
    }
    found != 0
}

/// Non-zero iff one of the eight bytes of `x` is `+`, `#` or NUL (exact as a yes/no answer).
#[inline(always)]
pub(crate) fn special_bytes(x: u64) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Non-zero iff some byte of `x` is zero.
    let zero_byte = |x: u64| x.wrapping_sub(LO) & !x & HI;
    zero_byte(x) | zero_byte(x ^ (LO * u64::from(b'+'))) | zero_byte(x ^ (LO * u64::from(b'#')))
}

#[cfg(test)]
fn has_wildcard_or_null(bytes: &[u8]) -> bool {
    has_special(bytes)
}

/// Checks a topic filter as used in SUBSCRIBE and UNSUBSCRIBE: non-empty [MQTT-4.7.3-1], `#` last
/// and alone in its level [MQTT-4.7.1-2], `+` alone in its level [MQTT-4.7.1-3], no U+0000.
/// A `$share/` prefix is not interpreted here; see [`parse_shared`].
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_filter_bytes(filter.as_bytes())
}

/// [`validate_topic_filter`] over bytes, in one pass (UTF-8 is checked elsewhere).
pub(crate) fn check_filter_bytes(filter: &[u8]) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    // One pass, remembering where the current level started.
    let mut level_start = 0;
    for (i, &b) in filter.iter().enumerate() {
        match b {
            b'/' => level_start = i + 1,
            0 => return Err(TopicError::NullCharacter),
            // [MQTT-4.7.1-2]: alone in its level, and that level the last.
            b'#' if i != level_start || i + 1 != filter.len() => {
                return Err(TopicError::MisplacedMultiLevelWildcard);
            }
            // [MQTT-4.7.1-3]: alone in its level.
            b'+' if i != level_start || !matches!(filter.get(i + 1), None | Some(b'/')) => {
                return Err(TopicError::MisplacedSingleLevelWildcard);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `topic` (a topic name) matches `filter` (a topic filter without `$share/` prefix).
///
/// `+` matches one level, `#` any number of levels including the parent (`sport/#` matches
/// `sport`) [MQTT-4.7.1-2], and topics starting with `$` are not matched by a filter starting with
/// a wildcard [MQTT-4.7.2-1].
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

/// Splits a shared subscription `$share/{ShareName}/{filter}` into `(ShareName, filter)`.
///
/// Returns `None` when `filter` does not start with `$share/`, or the share name is empty or holds
/// a wildcard, or what follows is not a valid topic filter (section 4.8.2).
pub fn parse_shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix("$share/")?;
    let (group, inner) = rest.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#']) {
        return None;
    }
    validate_topic_filter(inner).ok()?;
    Some((group, inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first byte-by-byte reading of [MQTT-4.7.1-2] and [MQTT-4.7.1-3], as the reference the
    /// faster check must agree with.
    fn filter_by_bytes(filter: &[u8]) -> Result<(), TopicError> {
        if filter.is_empty() {
            return Err(TopicError::Empty);
        }
        let at = |i: Option<usize>| i.and_then(|i| filter.get(i)).copied();
        for (i, &b) in filter.iter().enumerate() {
            let level_start = i == 0 || at(i.checked_sub(1)) == Some(b'/');
            let next = at(i.checked_add(1));
            match b {
                0 => return Err(TopicError::NullCharacter),
                b'#' if !(level_start && next.is_none()) => {
                    return Err(TopicError::MisplacedMultiLevelWildcard);
                }
                b'+' if !(level_start && matches!(next, None | Some(b'/'))) => {
                    return Err(TopicError::MisplacedSingleLevelWildcard);
                }
                _ => {}
            }
        }
        Ok(())
    }

    #[test]
    fn filter_check_agrees_with_the_byte_by_byte_reading_on_every_short_filter() {
        let alphabet = [b'a', b'/', b'+', b'#', 0];
        let mut filters = vec![Vec::new()];
        for _ in 0..6 {
            let longer: Vec<Vec<u8>> = filters
                .iter()
                .filter(|f| f.len() == filters.last().map_or(0, Vec::len))
                .flat_map(|f| {
                    alphabet.iter().map(move |&c| {
                        let mut g = f.clone();
                        g.push(c);
                        g
                    })
                })
                .collect();
            filters.extend(longer);
        }
        assert!(filters.len() > 19_000);
        for f in &filters {
            assert_eq!(check_filter_bytes(f), filter_by_bytes(f), "{f:?}");
        }
    }

    #[test]
    fn topic_name_rejects_wildcards_mqtt_3_3_2_2() {
        assert_eq!(
            validate_topic_name("a/+"),
            Err(TopicError::WildcardInTopicName)
        );
        assert_eq!(
            validate_topic_name("a/#"),
            Err(TopicError::WildcardInTopicName)
        );
        assert_eq!(validate_topic_name("a/b"), Ok(()));
        assert_eq!(validate_topic_name("/"), Ok(()));
    }

    #[test]
    fn topic_name_and_filter_not_empty_mqtt_4_7_3_1() {
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
    }

    #[test]
    fn wildcard_scan_finds_every_position() {
        for len in 0..40 {
            let clean = vec![b'a'; len];
            assert!(!has_wildcard_or_null(&clean));
            for i in 0..len {
                for special in [b'+', b'#', 0] {
                    let mut t = clean.clone();
                    t[i] = special;
                    assert!(has_wildcard_or_null(&t), "{len} {i} {special}");
                }
            }
        }
        // Bytes next to the special ones (0x2A, 0x2C, 0x22, 0x24, 0x01, 0xFF) are not special.
        assert!(!has_wildcard_or_null(b"*,\"$\x01\xff*,\"$\x01\xff\x80"));
    }

    #[test]
    fn topic_rejects_null_mqtt_4_7_3_2() {
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::NullCharacter));
        assert_eq!(
            validate_topic_filter("a/\0"),
            Err(TopicError::NullCharacter)
        );
    }

    #[test]
    fn multi_level_wildcard_placement_mqtt_4_7_1_2() {
        for ok in ["#", "a/#", "/#", "+/#", "a/b/#"] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["a#", "#/a", "a/#/b", "a/b#", "##"] {
            assert_eq!(
                validate_topic_filter(bad),
                Err(TopicError::MisplacedMultiLevelWildcard),
                "{bad}"
            );
        }
    }

    #[test]
    fn single_level_wildcard_placement_mqtt_4_7_1_3() {
        for ok in ["+", "+/+", "/+", "a/+/b", "+/"] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["a+", "+a", "a/b+/c", "++"] {
            assert_eq!(
                validate_topic_filter(bad),
                Err(TopicError::MisplacedSingleLevelWildcard),
                "{bad}"
            );
        }
    }

    #[test]
    fn matching_follows_section_4_7() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "a/b/c"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/bc"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn dollar_topics_not_matched_by_leading_wildcard_mqtt_4_7_2_1() {
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(matches("$SYS/#", "$SYS/broker/uptime"));
        assert!(matches("$SYS/+/uptime", "$SYS/broker/uptime"));
    }

    #[test]
    fn shared_subscription_parsing_section_4_8_2() {
        assert_eq!(parse_shared("$share/g/a/+"), Some(("g", "a/+")));
        assert_eq!(parse_shared("$share/g/#"), Some(("g", "#")));
        assert_eq!(parse_shared("$share//a"), None);
        assert_eq!(parse_shared("$share/g+/a"), None);
        assert_eq!(parse_shared("$share/g"), None);
        assert_eq!(parse_shared("$share/g/"), None);
        assert_eq!(parse_shared("$share/g/a#"), None);
        assert_eq!(parse_shared("a/b"), None);
    }
}
