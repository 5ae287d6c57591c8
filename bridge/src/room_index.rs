//! Topic-filter trie: which rooms a topic reaches, without scanning every room.

use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    /// Rooms whose filter ends here (`a/b`).
    exact: Vec<Arc<str>>,
    /// Rooms whose filter is this path followed by `/#` (or `#` at the root).
    hash: Vec<Arc<str>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.hash.is_empty()
    }
}

/// Maps topic filters to room names. A room with several filters appears once per
/// filter; [`RoomIndex::rooms_for`] returns each room once.
#[derive(Default)]
pub struct RoomIndex {
    root: Node,
    filters: usize,
}

impl RoomIndex {
    pub fn insert(&mut self, filter: &str, room: &Arc<str>) {
        let mut node = &mut self.root;
        let levels: Vec<&str> = filter.split('/').collect();
        for (i, level) in levels.iter().enumerate() {
            if *level == "#" && i == levels.len() - 1 {
                if !node.hash.iter().any(|r| r == room) {
                    node.hash.push(room.clone());
                    self.filters += 1;
                }
                return;
            }
            node = if *level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(Box::from(*level)).or_default()
            };
        }
        if !node.exact.iter().any(|r| r == room) {
            node.exact.push(room.clone());
            self.filters += 1;
        }
    }

    pub fn remove(&mut self, filter: &str, room: &str) {
        let levels: Vec<&str> = filter.split('/').collect();
        if remove_at(&mut self.root, &levels, room) {
            self.filters -= 1;
        }
    }

    /// Filters in the index (a gauge for metrics).
    pub fn len(&self) -> usize {
        self.filters
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.filters == 0
    }

    /// Every room with a filter matching `topic`, each once.
    pub fn rooms_for(&self, topic: &str, out: &mut Vec<Arc<str>>) {
        out.clear();
        let levels: Vec<&str> = topic.split('/').collect();
        let system = topic.starts_with('$');
        collect(&self.root, &levels, 0, system, out);
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }
}

fn collect(node: &Node, levels: &[&str], depth: usize, system: bool, out: &mut Vec<Arc<str>>) {
    let at_root = depth == 0;
    if !(at_root && system) {
        out.extend(node.hash.iter().cloned());
    }
    let Some(level) = levels.get(depth) else {
        out.extend(node.exact.iter().cloned());
        return;
    };
    if let Some(child) = node.children.get(*level) {
        collect(child, levels, depth + 1, system, out);
    }
    if let Some(plus) = &node.plus {
        if !(at_root && system) {
            collect(plus, levels, depth + 1, system, out);
        }
    }
}

/// Removes `room` from the filter's node; prunes empty nodes. True if it was there.
fn remove_at(node: &mut Node, levels: &[&str], room: &str) -> bool {
    match levels {
        [] => take(&mut node.exact, room),
        ["#"] => take(&mut node.hash, room),
        [level, rest @ ..] => {
            let removed;
            if *level == "+" {
                let Some(plus) = node.plus.as_mut() else {
                    return false;
                };
                removed = remove_at(plus, rest, room);
                if plus.is_empty() {
                    node.plus = None;
                }
            } else {
                let Some(child) = node.children.get_mut(*level) else {
                    return false;
                };
                removed = remove_at(child, rest, room);
                if child.is_empty() {
                    node.children.remove(*level);
                }
            }
            removed
        }
    }
}

fn take(rooms: &mut Vec<Arc<str>>, room: &str) -> bool {
    match rooms.iter().position(|r| &**r == room) {
        Some(i) => {
            rooms.swap_remove(i);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms(index: &RoomIndex, topic: &str) -> Vec<String> {
        let mut out = Vec::new();
        index.rooms_for(topic, &mut out);
        out.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn finds_rooms_by_wildcard_and_exact_filters() {
        let mut index = RoomIndex::default();
        let plant: Arc<str> = Arc::from("plant");
        let temps: Arc<str> = Arc::from("sensors/+/temp");
        let all: Arc<str> = Arc::from("#");
        index.insert("factory/plant7/#", &plant);
        index.insert("alerts/plant7/+", &plant);
        index.insert("sensors/+/temp", &temps);
        index.insert("#", &all);
        assert_eq!(
            rooms(&index, "factory/plant7/line1/speed"),
            vec!["#", "plant"]
        );
        assert_eq!(rooms(&index, "factory/plant7"), vec!["#", "plant"]);
        assert_eq!(rooms(&index, "alerts/plant7/fire"), vec!["#", "plant"]);
        assert_eq!(rooms(&index, "sensors/a/temp"), vec!["#", "sensors/+/temp"]);
        assert_eq!(rooms(&index, "$SYS/uptime"), Vec::<String>::new());
        assert_eq!(index.len(), 4);
        index.remove("factory/plant7/#", "plant");
        index.remove("alerts/plant7/+", "plant");
        index.remove("#", "#");
        assert_eq!(rooms(&index, "factory/plant7/x"), Vec::<String>::new());
        assert_eq!(index.len(), 1);
        index.remove("sensors/+/temp", "sensors/+/temp");
        assert!(index.is_empty());
        assert!(index.root.is_empty(), "pruned");
    }

    #[test]
    fn a_room_with_two_matching_filters_appears_once() {
        let mut index = RoomIndex::default();
        let room: Arc<str> = Arc::from("r");
        index.insert("a/#", &room);
        index.insert("a/+", &room);
        assert_eq!(rooms(&index, "a/b"), vec!["r"]);
    }
}
