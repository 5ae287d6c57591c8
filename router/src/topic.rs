//! Topic names and filters as MQTT defines them: what is valid, how a filter matches
//! a topic (`$`-topics are never matched by a leading wildcard), and shared
//! subscriptions (`$share/GROUP/FILTER`).

/// Why a topic name or filter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    Empty,
    TooLong,
    Nul,
    /// `+` or `#` in a topic name.
    Wildcard,
    /// `#` not alone as the last level, or `+` sharing a level.
    MisplacedWildcard,
    /// `$share/` without a group or filter, or a group name with a wildcard.
    BadShare,
}

impl TopicError {
    pub fn describe(self) -> &'static str {
        match self {
            TopicError::Empty => "empty topic",
            TopicError::TooLong => "topic longer than 65535 bytes",
            TopicError::Nul => "topic contains NUL",
            TopicError::Wildcard => "topic name contains a wildcard",
            TopicError::MisplacedWildcard => "wildcard must be a whole level ('#' last)",
            TopicError::BadShare => "shared subscription needs $share/GROUP/FILTER",
        }
    }
}

const MAX_LEN: usize = 65_535;

/// A topic a client may publish to (not checked: the `$` rule, which is policy).
pub fn check_topic_name(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_LEN {
        return Err(TopicError::TooLong);
    }
    if topic.contains('\0') {
        return Err(TopicError::Nul);
    }
    if topic.contains(['+', '#']) {
        return Err(TopicError::Wildcard);
    }
    Ok(())
}

/// A topic filter (without a `$share/` prefix).
pub fn check_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.len() > MAX_LEN {
        return Err(TopicError::TooLong);
    }
    if filter.contains('\0') {
        return Err(TopicError::Nul);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let ok = match level {
            "#" => last,
            "+" => true,
            other => !other.contains(['+', '#']),
        };
        if !ok {
            return Err(TopicError::MisplacedWildcard);
        }
    }
    Ok(())
}

/// A subscription's filter as the index keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilterSpec {
    /// `Some(group)` for `$share/group/filter`.
    pub share_group: Option<String>,
    pub filter: String,
}

impl FilterSpec {
    /// Parses and validates what a client put in SUBSCRIBE.
    pub fn parse(raw: &str) -> Result<FilterSpec, TopicError> {
        if let Some(rest) = raw.strip_prefix("$share/") {
            let (group, filter) = rest.split_once('/').ok_or(TopicError::BadShare)?;
            if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
                return Err(TopicError::BadShare);
            }
            check_filter(filter)?;
            return Ok(FilterSpec {
                share_group: Some(group.to_string()),
                filter: filter.to_string(),
            });
        }
        if raw == "$share" {
            return Err(TopicError::BadShare);
        }
        check_filter(raw)?;
        Ok(FilterSpec {
            share_group: None,
            filter: raw.to_string(),
        })
    }

    /// The text the client subscribed with.
    pub fn raw(&self) -> String {
        match &self.share_group {
            Some(group) => format!("$share/{group}/{}", self.filter),
            None => self.filter.clone(),
        }
    }
}

/// Whether `filter` (valid, no `$share/`) matches `topic` (valid). Iterative.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(_) if level == "+" => {}
            Some(t) if t == level => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// The part of `filter` before its first wildcard level: every matching topic starts
/// with it.
pub fn literal_prefix(filter: &str) -> &str {
    let mut start: usize = 0;
    for level in filter.split('/') {
        if level == "#" {
            // `a/#` matches `a` itself: the prefix stops before the separator.
            return filter.get(..start.saturating_sub(1)).unwrap_or("");
        }
        if level == "+" {
            return filter.get(..start).unwrap_or("");
        }
        start += level.len() + 1;
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_validated() {
        for bad in ["", "a/#/b", "#/#", "a+", "a/b#", "+a/b", "a/\0"] {
            assert!(check_filter(bad).is_err(), "{bad:?}");
        }
        for good in [
            "#", "+", "a/+/c", "a/#", "/", "+/+", "ü/#", "a//b", "$SYS/#",
        ] {
            assert!(check_filter(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn topic_names_are_validated() {
        assert!(check_topic_name("ü/ß").is_ok());
        assert!(check_topic_name("").is_err());
        assert!(check_topic_name("a/+").is_err());
        assert!(check_topic_name("#").is_err());
    }

    #[test]
    fn shared_subscriptions_parse() {
        let spec = FilterSpec::parse("$share/g1/a/+").unwrap();
        assert_eq!(spec.share_group.as_deref(), Some("g1"));
        assert_eq!(spec.filter, "a/+");
        assert_eq!(spec.raw(), "$share/g1/a/+");
        assert!(FilterSpec::parse("$share/g1").is_err());
        assert!(FilterSpec::parse("$share//a").is_err());
        assert!(FilterSpec::parse("$share/g+/a").is_err());
    }

    #[test]
    fn matching_follows_the_spec() {
        assert!(matches("#", "ü/ß"));
        assert!(matches("+/ß", "ü/ß"));
        assert!(matches("ü/#", "ü/ß"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/+", "a/"));
        assert!(!matches("a/+", "a"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(matches("/+", "/x"));
        assert!(!matches("a/b", "a/b/c"));
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix("a/b/+/c"), "a/b/");
        assert_eq!(literal_prefix("#"), "");
        assert_eq!(literal_prefix("a/b"), "a/b");
        assert_eq!(literal_prefix("ü/#"), "ü");
        assert_eq!(literal_prefix("a/b/#"), "a/b");
        assert_eq!(literal_prefix("a/+/#"), "a/");
    }
}
