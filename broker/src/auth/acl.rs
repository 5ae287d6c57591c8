//! Per-topic access in Mosquitto's acl_file syntax: `topic [read|write|readwrite|deny]
//! FILTER` lines (before any `user` line: for clients without a username; after
//! `user NAME`: for that user), and `pattern … FILTER` lines for everyone, with `%u`
//! (username) and `%c` (client id). Once an ACL is set, what is not granted is denied;
//! a matching `deny` wins over any grant.

use std::collections::HashMap;
use std::path::Path;

use switchboard_router::topic::matches;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

#[derive(Debug, Clone)]
struct Rule {
    access: Access,
    filter: String,
}

#[derive(Debug, Default)]
pub struct Acl {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

/// What one client may do, resolved at CONNECT (and again after a reload).
#[derive(Debug, Clone, Default)]
pub struct Rights {
    rules: Vec<Rule>,
    /// No ACL: everything allowed.
    unrestricted: bool,
}

/// What a SUBSCRIBE filter may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeRight {
    Denied,
    /// Every topic the filter matches may be read.
    Full,
    /// Some may: each delivery is checked.
    Partial,
}

impl Acl {
    pub fn load(path: &Path) -> Result<Acl, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the ACL file {}: {e}", path.display()))?;
        Acl::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Acl, String> {
        let mut acl = Acl::default();
        let mut user: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            let at = |why: &str| format!("line {}: {why}", n + 1);
            match word {
                "user" => {
                    if rest.is_empty() {
                        return Err(at("`user` needs a name"));
                    }
                    user = Some(rest.to_string());
                }
                "topic" | "pattern" => {
                    let rule = parse_rule(rest).map_err(|e| at(&e))?;
                    match (word, &user) {
                        ("pattern", _) => acl.patterns.push(rule),
                        (_, Some(name)) => acl.users.entry(name.clone()).or_default().push(rule),
                        (_, None) => acl.anonymous.push(rule),
                    }
                }
                other => return Err(at(&format!("unknown keyword {other:?}"))),
            }
        }
        Ok(acl)
    }

    /// The rules that apply to a client.
    pub fn rights(&self, username: Option<&str>, client_id: &str) -> Rights {
        let mut rules = match username {
            Some(user) => self.users.get(user).cloned().unwrap_or_default(),
            None => self.anonymous.clone(),
        };
        for pattern in &self.patterns {
            if let Some(filter) = substitute(&pattern.filter, username, client_id) {
                rules.push(Rule {
                    access: pattern.access,
                    filter,
                });
            }
        }
        Rights {
            rules,
            unrestricted: false,
        }
    }
}

fn parse_rule(rest: &str) -> Result<Rule, String> {
    let (access, filter) = match rest.split_once(char::is_whitespace) {
        Some((word, filter)) => match word {
            "read" => (Access::Read, filter.trim()),
            "write" => (Access::Write, filter.trim()),
            "readwrite" => (Access::ReadWrite, filter.trim()),
            "deny" => (Access::Deny, filter.trim()),
            _ => (Access::ReadWrite, rest),
        },
        None => (Access::ReadWrite, rest),
    };
    if !switchboard_config::valid_filter(filter) {
        return Err(format!("{filter:?} is not a topic filter"));
    }
    Ok(Rule {
        access,
        filter: filter.to_string(),
    })
}

/// `%u` and `%c` replaced; `None` when a value is missing or could widen the filter
/// (a `+`, `#` or `/` in it would match other clients' topics).
fn substitute(filter: &str, username: Option<&str>, client_id: &str) -> Option<String> {
    let safe = |v: &str| !v.is_empty() && !v.contains(['+', '#', '/']);
    let mut out = filter.to_string();
    if out.contains("%u") {
        let user = username.filter(|u| safe(u))?;
        out = out.replace("%u", user);
    }
    if out.contains("%c") {
        if !safe(client_id) {
            return None;
        }
        out = out.replace("%c", client_id);
    }
    Some(out)
}

impl Rights {
    /// Everything allowed (no ACL configured).
    pub fn all() -> Rights {
        Rights {
            rules: Vec::new(),
            unrestricted: true,
        }
    }

    /// Reading what `read` matches and writing what `write` matches (a token's
    /// `subscribe` and `publish` claims).
    pub fn granting(read: &[String], write: &[String]) -> Rights {
        let rule = |access, filter: &String| Rule {
            access,
            filter: filter.clone(),
        };
        let reads = read.iter().map(|f| rule(Access::Read, f));
        Rights {
            rules: reads
                .chain(write.iter().map(|f| rule(Access::Write, f)))
                .collect(),
            unrestricted: false,
        }
    }

    pub fn is_unrestricted(&self) -> bool {
        self.unrestricted
    }

    fn denied(&self, topic: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.access == Access::Deny && matches(&r.filter, topic))
    }

    pub fn may_write(&self, topic: &str) -> bool {
        self.unrestricted
            || (!self.denied(topic)
                && self
                    .rules
                    .iter()
                    .any(|r| r.access.writes() && matches(&r.filter, topic)))
    }

    pub fn may_read(&self, topic: &str) -> bool {
        self.unrestricted
            || (!self.denied(topic)
                && self
                    .rules
                    .iter()
                    .any(|r| r.access.reads() && matches(&r.filter, topic)))
    }

    /// Whether a subscription to `filter` is allowed and whether its deliveries need
    /// checking.
    pub fn subscribe(&self, filter: &str) -> SubscribeRight {
        if self.unrestricted {
            return SubscribeRight::Full;
        }
        let grants = || self.rules.iter().filter(|r| r.access.reads());
        if !grants().any(|r| intersects(&r.filter, filter)) {
            return SubscribeRight::Denied;
        }
        let denies = self
            .rules
            .iter()
            .any(|r| r.access == Access::Deny && intersects(&r.filter, filter));
        if !denies && grants().any(|r| covers(&r.filter, filter)) {
            SubscribeRight::Full
        } else {
            SubscribeRight::Partial
        }
    }
}

/// Every topic `filter` matches is matched by `grant`.
pub fn covers(grant: &str, filter: &str) -> bool {
    let mut grant_levels = grant.split('/');
    for level in filter.split('/') {
        match grant_levels.next() {
            Some("#") => return true,
            Some("+") if level != "#" => {}
            Some(g) if g == level && level != "+" && level != "#" => {}
            _ => return false,
        }
    }
    // `a/#` covers `a` too.
    matches!(grant_levels.next(), None | Some("#")) && grant_levels.next().is_none()
}

/// Some topic is matched by both.
fn intersects(a: &str, b: &str) -> bool {
    let mut a_levels = a.split('/');
    let mut b_levels = b.split('/');
    loop {
        match (a_levels.next(), b_levels.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(x), Some(y)) if x == "+" || y == "+" || x == y => {}
            (None, Some(_)) | (Some(_), None) | (Some(_), Some(_)) => {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# anonymous clients
topic read public/#

user dev1
topic write devices/dev1/#
topic read devices/dev1/cmd/#
topic deny devices/dev1/secret

pattern readwrite clients/%c/#
pattern read users/%u/inbox
";

    #[test]
    fn users_anonymous_and_patterns_get_their_rules() {
        let acl = Acl::parse(FILE).unwrap();
        let dev1 = acl.rights(Some("dev1"), "sensor-1");
        assert!(dev1.may_write("devices/dev1/state"));
        assert!(!dev1.may_write("devices/dev2/state"));
        assert!(dev1.may_read("devices/dev1/cmd/reboot"));
        assert!(!dev1.may_read("devices/dev1/state"));
        assert!(!dev1.may_write("devices/dev1/secret"), "deny wins");
        assert!(dev1.may_write("clients/sensor-1/x"), "%c");
        assert!(dev1.may_read("users/dev1/inbox"), "%u");
        assert!(
            !dev1.may_read("public/news"),
            "anonymous rules are not a user's"
        );

        let anonymous = acl.rights(None, "anon");
        assert!(anonymous.may_read("public/news"));
        assert!(!anonymous.may_write("public/news"));
        assert!(!anonymous.may_read("users//inbox"), "%u needs a username");

        let sneaky = acl.rights(Some("dev1"), "a/#");
        assert!(
            !sneaky.may_write("clients/a/x"),
            "a wildcard in %c grants nothing"
        );
    }

    #[test]
    fn subscriptions_are_full_partial_or_denied() {
        let acl = Acl::parse(FILE).unwrap();
        let dev1 = acl.rights(Some("dev1"), "c1");
        assert_eq!(dev1.subscribe("devices/dev1/cmd/#"), SubscribeRight::Full);
        assert_eq!(dev1.subscribe("devices/dev1/cmd/+"), SubscribeRight::Full);
        assert_eq!(dev1.subscribe("#"), SubscribeRight::Partial);
        assert_eq!(dev1.subscribe("devices/+/cmd/x"), SubscribeRight::Partial);
        assert_eq!(dev1.subscribe("devices/dev2/#"), SubscribeRight::Denied);
        assert_eq!(Rights::all().subscribe("#"), SubscribeRight::Full);
    }

    #[test]
    fn filter_relations() {
        assert!(covers("a/#", "a"));
        assert!(covers("a/#", "a/b/+"));
        assert!(covers("a/+", "a/b"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/b", "a/+"));
        assert!(intersects("a/+/c", "a/b/#"));
        assert!(!intersects("a/b", "a/c"));
        assert!(!intersects("a/b", "a/b/c"));
        assert!(intersects("a/b/#", "a/b"));
    }

    #[test]
    fn bad_lines_are_named() {
        let err = Acl::parse("user\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        assert!(Acl::parse("topic read a/#/b\n").is_err());
        assert!(Acl::parse("grant everything\n").is_err());
    }
}
