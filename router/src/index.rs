//! The subscription index: a trie over topic levels with `+` and `#` edges, kept in
//! an arena so that matching and pruning are loops, not recursion. A publish costs
//! the topic's depth plus the matching subscriptions, whatever else was ever
//! subscribed: removing a filter's last subscriber frees its nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::topic::FilterSpec;

/// A session's number, unique for the process's life.
pub type SessionId = u64;

/// What a client asked for with one filter of a SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Granted QoS (0–2).
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained on subscribe, 1: only for a new subscription, 2: never.
    pub retain_handling: u8,
    /// MQTT 5 Subscription Identifier.
    pub identifier: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Entry<S> {
    pub id: SessionId,
    pub subscriber: S,
    pub options: SubscriptionOptions,
}

/// Members of one shared subscription group (one group name *and* one filter).
#[derive(Debug)]
pub struct SharedGroup<S> {
    pub members: Vec<Entry<S>>,
    next: AtomicUsize,
}

impl<S> SharedGroup<S> {
    /// Where a round-robin pick starts this time.
    pub fn next_start(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Subscribers<S> {
    direct: HashMap<SessionId, Entry<S>>,
    shared: HashMap<Box<str>, SharedGroup<S>>,
}

impl<S> Default for Subscribers<S> {
    fn default() -> Self {
        Subscribers {
            direct: HashMap::new(),
            shared: HashMap::new(),
        }
    }
}

impl<S> Subscribers<S> {
    fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.shared.is_empty()
    }
}

#[derive(Debug, Clone)]
enum Edge {
    Root,
    Level(Box<str>),
    Plus,
}

#[derive(Debug)]
struct Node<S> {
    parent: usize,
    edge: Edge,
    children: HashMap<Box<str>, usize>,
    plus: Option<usize>,
    /// Filters ending at this node.
    exact: Option<Box<Subscribers<S>>>,
    /// Filters ending with `#` below this node.
    multi: Option<Box<Subscribers<S>>>,
}

impl<S> Node<S> {
    fn new(parent: usize, edge: Edge) -> Node<S> {
        Node {
            parent,
            edge,
            children: HashMap::new(),
            plus: None,
            exact: None,
            multi: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_none()
            && self.multi.is_none()
    }
}

/// One match of a topic: a direct subscription, or a shared group to pick from.
pub enum Matched<'a, S> {
    Direct(&'a Entry<S>),
    Shared(&'a SharedGroup<S>),
}

#[derive(Debug)]
pub struct SubscriptionIndex<S> {
    nodes: Vec<Option<Node<S>>>,
    free: Vec<usize>,
    subscriptions: usize,
}

impl<S> Default for SubscriptionIndex<S> {
    fn default() -> Self {
        SubscriptionIndex {
            nodes: vec![Some(Node::new(0, Edge::Root))],
            free: Vec::new(),
            subscriptions: 0,
        }
    }
}

const ROOT: usize = 0;

impl<S> SubscriptionIndex<S> {
    /// Subscriptions held (each shared group member counts once).
    pub fn len(&self) -> usize {
        self.subscriptions
    }

    pub fn is_empty(&self) -> bool {
        self.subscriptions == 0
    }

    /// Trie nodes in use (the root included): what memory the index holds.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    fn node(&self, at: usize) -> Option<&Node<S>> {
        self.nodes.get(at).and_then(Option::as_ref)
    }

    fn node_mut(&mut self, at: usize) -> Option<&mut Node<S>> {
        self.nodes.get_mut(at).and_then(Option::as_mut)
    }

    fn alloc(&mut self, node: Node<S>) -> usize {
        match self.free.pop() {
            Some(at) => {
                if let Some(slot) = self.nodes.get_mut(at) {
                    *slot = Some(node);
                }
                at
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        }
    }

    /// The node for `levels`, created when `create`.
    fn walk(&mut self, levels: &[&str], create: bool) -> Option<usize> {
        let mut at = ROOT;
        for level in levels {
            let next = {
                let node = self.node(at)?;
                if *level == "+" {
                    node.plus
                } else {
                    node.children.get(*level).copied()
                }
            };
            at = match next {
                Some(next) => next,
                None if create => {
                    let edge = if *level == "+" {
                        Edge::Plus
                    } else {
                        Edge::Level(Box::from(*level))
                    };
                    let child = self.alloc(Node::new(at, edge.clone()));
                    let node = self.node_mut(at)?;
                    match edge {
                        Edge::Level(key) => {
                            node.children.insert(key, child);
                        }
                        _ => node.plus = Some(child),
                    }
                    child
                }
                None => return None,
            };
        }
        Some(at)
    }

    /// Splits a filter into the trie path and whether it ends with `#`.
    fn path(filter: &str) -> (Vec<&str>, bool) {
        let mut levels: Vec<&str> = filter.split('/').collect();
        let multi = levels.last() == Some(&"#");
        if multi {
            levels.pop();
        }
        (levels, multi)
    }

    /// The node `spec` ends at and its subscriber slot (`#` filters: the node's
    /// `multi`), the path created when `create`.
    #[allow(clippy::type_complexity)]
    fn slot(
        &mut self,
        spec: &FilterSpec,
        create: bool,
    ) -> Option<(usize, &mut Option<Box<Subscribers<S>>>)> {
        let (levels, multi) = Self::path(&spec.filter);
        let at = self.walk(&levels, create)?;
        let node = self.node_mut(at)?;
        Some((
            at,
            if multi {
                &mut node.multi
            } else {
                &mut node.exact
            },
        ))
    }

    /// Adds or replaces `id`'s subscription to `spec`. True when it is new.
    pub fn insert(
        &mut self,
        spec: &FilterSpec,
        id: SessionId,
        subscriber: S,
        options: SubscriptionOptions,
    ) -> bool {
        let Some((_, slot)) = self.slot(spec, true) else {
            return false;
        };
        let subscribers = slot.get_or_insert_with(Box::default);
        let entry = Entry {
            id,
            subscriber,
            options,
        };
        let new = match &spec.share_group {
            None => subscribers.direct.insert(id, entry).is_none(),
            Some(group) => {
                let group = subscribers
                    .shared
                    .entry(Box::from(group.as_str()))
                    .or_insert_with(|| SharedGroup {
                        members: Vec::new(),
                        next: AtomicUsize::new(0),
                    });
                match group.members.iter_mut().find(|m| m.id == id) {
                    Some(existing) => {
                        *existing = entry;
                        false
                    }
                    None => {
                        group.members.push(entry);
                        true
                    }
                }
            }
        };
        if new {
            self.subscriptions += 1;
        }
        new
    }

    /// Removes `id`'s subscription to `spec` and frees nodes nobody needs any more.
    /// True when there was one.
    pub fn remove(&mut self, spec: &FilterSpec, id: SessionId) -> bool {
        let Some((at, slot)) = self.slot(spec, false) else {
            return false;
        };
        let Some(subscribers) = slot.as_mut() else {
            return false;
        };
        let removed = match &spec.share_group {
            None => subscribers.direct.remove(&id).is_some(),
            Some(group) => {
                let mut removed = false;
                if let Some(members) = subscribers.shared.get_mut(group.as_str()) {
                    let before = members.members.len();
                    members.members.retain(|m| m.id != id);
                    removed = members.members.len() != before;
                    if members.members.is_empty() {
                        subscribers.shared.remove(group.as_str());
                    }
                }
                removed
            }
        };
        if subscribers.is_empty() {
            *slot = None;
        }
        if removed {
            self.subscriptions -= 1;
        }
        self.prune(at);
        removed
    }

    /// Frees `at` and its ancestors while they hold nothing.
    fn prune(&mut self, mut at: usize) {
        while at != ROOT {
            let Some(node) = self.node(at) else { return };
            if !node.is_empty() {
                return;
            }
            let parent = node.parent;
            let edge = node.edge.clone();
            if let Some(slot) = self.nodes.get_mut(at) {
                *slot = None;
            }
            self.free.push(at);
            if let Some(parent_node) = self.node_mut(parent) {
                match edge {
                    Edge::Level(key) => {
                        parent_node.children.remove(&key);
                    }
                    Edge::Plus => parent_node.plus = None,
                    Edge::Root => {}
                }
            }
            at = parent;
        }
        if self.node_count() == 1 {
            // Everything is gone: give the arena's memory back too.
            self.nodes.truncate(1);
            self.nodes.shrink_to_fit();
            self.free = Vec::new();
        }
    }

    /// Calls `visit` for every subscription matching `topic` (a valid topic name).
    pub fn for_each_match<'a>(&'a self, topic: &str, mut visit: impl FnMut(Matched<'a, S>)) {
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        let mut stack: Vec<(usize, usize)> = vec![(ROOT, 0)];
        while let Some((at, depth)) = stack.pop() {
            let Some(node) = self.node(at) else { continue };
            let leading_wildcard_blocked = dollar && depth == 0;
            if let Some(multi) = &node.multi {
                if !leading_wildcard_blocked {
                    Self::visit_all(multi, &mut visit);
                }
            }
            match levels.get(depth) {
                None => {
                    if let Some(exact) = &node.exact {
                        Self::visit_all(exact, &mut visit);
                    }
                }
                Some(level) => {
                    if let Some(child) = node.children.get(*level) {
                        stack.push((*child, depth + 1));
                    }
                    if let (Some(plus), false) = (node.plus, leading_wildcard_blocked) {
                        stack.push((plus, depth + 1));
                    }
                }
            }
        }
    }

    fn visit_all<'a>(subscribers: &'a Subscribers<S>, visit: &mut impl FnMut(Matched<'a, S>)) {
        for entry in subscribers.direct.values() {
            visit(Matched::Direct(entry));
        }
        for group in subscribers.shared.values() {
            visit(Matched::Shared(group));
        }
    }
}
