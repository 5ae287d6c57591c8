//! MQTT topic and filter rules as the bridge needs them.

pub use switchboard_config::valid_filter;

/// A topic a browser may publish to: non-empty, no wildcards, no NUL.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// Whether `topic` matches `filter`. Topics starting with `$` match only filters
/// that start with the same literal level (MQTT §4.7.2).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            literal => {
                if topic_levels.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

/// The literal part of `filter` before its first wildcard level: every matching
/// topic starts with it (used for range scans over sorted topics).
pub fn literal_prefix(filter: &str) -> &str {
    let mut end = 0;
    for level in filter.split('/') {
        if level == "+" || level == "#" {
            return &filter[..end];
        }
        end += level.len() + 1;
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_mqtt() {
        assert!(matches("sensors/+/temp", "sensors/a/temp"));
        assert!(!matches("sensors/+/temp", "sensors/a/b/temp"));
        assert!(matches("sensors/#", "sensors"));
        assert!(matches("sensors/#", "sensors/a/b"));
        assert!(matches("#", "anything/at/all"));
        assert!(!matches("#", "$SYS/x"));
        assert!(matches("$devices/#", "$devices/a"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("+", ""));
        assert!(matches("a/+", "a/"));
    }

    #[test]
    fn literal_prefix_stops_at_the_first_wildcard() {
        assert_eq!(literal_prefix("sensors/+/temp"), "sensors/");
        assert_eq!(literal_prefix("#"), "");
        assert_eq!(literal_prefix("a/b"), "a/b");
        assert_eq!(literal_prefix("a/b/#"), "a/b/");
    }
}
