//! MQTT topic and filter rules as the bridge needs them.

pub use switchboard_config::valid_filter;

/// A topic a browser may publish to: non-empty, no wildcards, no NUL.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// Whether `topic` matches `filter`: the routing core's rule, so rooms and MQTT
/// subscribers never disagree.
pub use switchboard_broker::router::topic::matches;

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
}
