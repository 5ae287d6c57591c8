//! The subscription index on its own: wildcards and `$`-topics, freeing on removal,
//! shared groups per (group, filter), depth without recursion.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use switchboard_router::{FilterSpec, Matched, SessionId, SubscriptionIndex, SubscriptionOptions};

fn spec(raw: &str) -> FilterSpec {
    FilterSpec::parse(raw).unwrap()
}

fn matched(index: &SubscriptionIndex<()>, topic: &str) -> Vec<SessionId> {
    let mut ids = Vec::new();
    index.for_each_match(topic, |m| match m {
        Matched::Direct(e) => ids.push(e.id),
        Matched::Shared(g) => ids.extend(g.members.iter().map(|m| m.id)),
    });
    ids.sort_unstable();
    ids
}

#[test]
fn wildcards_and_dollar_topics() {
    let mut index = SubscriptionIndex::default();
    let opts = SubscriptionOptions::default();
    index.insert(&spec("#"), 1, (), opts);
    index.insert(&spec("+/ß"), 2, (), opts);
    index.insert(&spec("ü/#"), 3, (), opts);
    index.insert(&spec("$SYS/#"), 4, (), opts);
    index.insert(&spec("a/+"), 5, (), opts);
    assert_eq!(matched(&index, "ü/ß"), vec![1, 2, 3]);
    assert_eq!(matched(&index, "ü"), vec![1, 3]);
    assert_eq!(matched(&index, "$SYS/x"), vec![4]);
    assert_eq!(matched(&index, "a/"), vec![1, 5]);
    assert_eq!(matched(&index, "a"), vec![1]);
}

#[test]
fn removing_the_last_subscriber_frees_the_nodes() {
    let mut index = SubscriptionIndex::default();
    let opts = SubscriptionOptions::default();
    for i in 0..1000u64 {
        index.insert(&spec(&format!("a/{i}/+/c/#")), i, (), opts);
        index.insert(&spec(&format!("$share/g/a/{i}")), i, (), opts);
    }
    assert!(index.node_count() > 3000);
    for i in 0..1000u64 {
        assert!(index.remove(&spec(&format!("a/{i}/+/c/#")), i));
        assert!(index.remove(&spec(&format!("$share/g/a/{i}")), i));
    }
    assert_eq!(index.node_count(), 1);
    assert!(index.is_empty());
    assert!(!index.remove(&spec("a/1/+/c/#"), 1));
}

#[test]
fn shared_groups_are_per_group_and_filter() {
    let mut index = SubscriptionIndex::default();
    let opts = SubscriptionOptions::default();
    index.insert(&spec("$share/g/a/+"), 1, (), opts);
    index.insert(&spec("$share/g/a/b"), 2, (), opts);
    index.insert(&spec("$share/g/a/b"), 3, (), opts);
    let mut groups = Vec::new();
    index.for_each_match("a/b", |m| {
        if let Matched::Shared(g) = m {
            let mut ids: Vec<_> = g.members.iter().map(|m| m.id).collect();
            ids.sort_unstable();
            groups.push(ids);
        }
    });
    groups.sort();
    assert_eq!(groups, vec![vec![1], vec![2, 3]]);
}

#[test]
fn deep_filters_need_no_recursion() {
    let mut index = SubscriptionIndex::default();
    let deep = vec!["+"; 30_000].join("/");
    index.insert(&spec(&deep), 1, (), SubscriptionOptions::default());
    let topic = vec!["x"; 30_000].join("/");
    assert_eq!(matched(&index, &topic), vec![1]);
    assert!(index.remove(&spec(&deep), 1));
    assert_eq!(index.node_count(), 1);
}
