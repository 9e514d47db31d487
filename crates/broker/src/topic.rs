//! Topic names, topic filters and shared-subscription filters as the broker checks them
//! (spec section 4.7). Matching of one filter against one name lives here; matching one name
//! against many filters is the router's job.
//!
//! The codec crate validates what it decodes; these checks are the broker's own, applied to every
//! topic whatever its source (a decoded packet, a will, a message injected by a rules engine).

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Topic names and filters are at least one character long [MQTT-4.7.3-1].
    #[error("empty topic")]
    Empty,
    /// A topic name contains `+` or `#` [MQTT-4.7.0-1].
    #[error("wildcard in a topic name")]
    WildcardInName,
    /// `#` not last, or `+`/`#` not alone in its level [MQTT-4.7.1-1] [MQTT-4.7.1-2].
    #[error("misplaced wildcard in a topic filter")]
    BadWildcard,
    /// U+0000 in a topic [MQTT-4.7.3-2].
    #[error("null character in a topic")]
    NullChar,
    /// `$share/{group}/{filter}` with an empty or invalid group or filter [MQTT-4.8.2-1] [MQTT-4.8.2-2].
    #[error("malformed shared subscription")]
    BadShare,
}

/// Checks a topic name used in PUBLISH or a will [MQTT-4.7.0-1] [MQTT-4.7.3-1].
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.contains('\0') {
        return Err(TopicError::NullChar);
    }
    if name.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a (non-shared) topic filter [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1].
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.contains('\0') {
        return Err(TopicError::NullChar);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        match level {
            "#" if !last => return Err(TopicError::BadWildcard),
            "#" | "+" => {}
            l if l.contains(['+', '#']) => return Err(TopicError::BadWildcard),
            _ => {}
        }
    }
    Ok(())
}

/// A topic filter split into its shared-subscription group (if any) and the filter proper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedFilter<'a> {
    /// The share name of `$share/{group}/{filter}`, or `None` for an ordinary subscription.
    pub group: Option<&'a str>,
    /// The filter that topics are matched against.
    pub filter: &'a str,
}

/// Parses and validates a SUBSCRIBE/UNSUBSCRIBE filter, shared or not [MQTT-4.8.2-1] [MQTT-4.8.2-2].
pub fn parse_filter(full: &str) -> Result<ParsedFilter<'_>, TopicError> {
    if let Some(rest) = full.strip_prefix("$share/") {
        let (group, filter) = rest.split_once('/').ok_or(TopicError::BadShare)?;
        if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
            return Err(TopicError::BadShare);
        }
        validate_topic_filter(filter)?;
        return Ok(ParsedFilter {
            group: Some(group),
            filter,
        });
    }
    if full == "$share" {
        return Err(TopicError::BadShare);
    }
    validate_topic_filter(full)?;
    Ok(ParsedFilter {
        group: None,
        filter: full,
    })
}

/// True when `filter` matches topic name `name`. A filter starting with a wildcard does not match
/// a name starting with `$` [MQTT-4.7.2-1].
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut n = name.split('/');
    loop {
        match (f.next(), n.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name_with_wildcard_is_invalid_mqtt_4_7_0_1() {
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert!(validate_topic_name("a/b").is_ok());
        assert!(validate_topic_name("/").is_ok());
    }

    #[test]
    fn multi_level_wildcard_must_be_last_mqtt_4_7_1_2() {
        assert!(validate_topic_filter("a/#").is_ok());
        assert!(validate_topic_filter("#").is_ok());
        assert_eq!(validate_topic_filter("a/#/b"), Err(TopicError::BadWildcard));
        assert_eq!(validate_topic_filter("a#"), Err(TopicError::BadWildcard));
    }

    #[test]
    fn single_level_wildcard_occupies_whole_level_mqtt_4_7_1_3() {
        assert!(validate_topic_filter("+/a/+").is_ok());
        assert_eq!(validate_topic_filter("a+/b"), Err(TopicError::BadWildcard));
    }

    #[test]
    fn shared_filter_parses_group_and_filter_mqtt_4_8_2_1() {
        let p = parse_filter("$share/g1/a/+").unwrap();
        assert_eq!(p.group, Some("g1"));
        assert_eq!(p.filter, "a/+");
        assert!(parse_filter("$share/g1").is_err());
        assert!(parse_filter("$share//a").is_err());
        assert!(parse_filter("$share/g+/a").is_err());
        assert_eq!(parse_filter("a/b").unwrap().group, None);
    }

    #[test]
    fn wildcards_match_levels() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+/c", "a/b/d"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "a/b"));
        assert!(matches("+", "a"));
        assert!(!matches("+", "a/b"));
        assert!(matches("+/+", "/a"));
        assert!(!matches("a/b", "a/b/c"));
    }

    #[test]
    fn leading_wildcard_does_not_match_dollar_topics_mqtt_4_7_2_1() {
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
    }
}
