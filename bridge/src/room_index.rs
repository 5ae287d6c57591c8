//! Which rooms a topic reaches, without scanning every room: the routing core's
//! subscription trie (iterative, pruned as filters leave) with rooms as subscribers.

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_broker::router::{FilterSpec, Matched, SessionId, SubscriptionIndex};

/// Maps topic filters to room names. A room with several filters appears once per
/// filter; [`RoomIndex::rooms_for`] returns each room once.
#[derive(Default)]
pub struct RoomIndex {
    trie: SubscriptionIndex<Arc<str>>,
    /// Each indexed room's number in the trie and how many of its filters it holds.
    rooms: HashMap<Arc<str>, (SessionId, usize)>,
    next_id: SessionId,
}

fn spec(filter: &str) -> FilterSpec {
    // Room filters are plain filters: `$share/` in a room name is not a share group.
    FilterSpec {
        share_group: None,
        filter: filter.to_string(),
    }
}

impl RoomIndex {
    pub fn insert(&mut self, filter: &str, room: &Arc<str>) {
        let next_id = &mut self.next_id;
        let (id, filters) = self.rooms.entry(room.clone()).or_insert_with(|| {
            *next_id += 1;
            (*next_id, 0)
        });
        if self
            .trie
            .insert(&spec(filter), *id, room.clone(), Default::default())
        {
            *filters += 1;
        }
    }

    pub fn remove(&mut self, filter: &str, room: &str) {
        let Some((id, filters)) = self.rooms.get_mut(room) else {
            return;
        };
        if self.trie.remove(&spec(filter), *id) {
            *filters -= 1;
            if *filters == 0 {
                self.rooms.remove(room);
            }
        }
    }

    /// Filters in the index (a gauge for metrics).
    pub fn len(&self) -> usize {
        self.trie.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.trie.is_empty() && self.rooms.is_empty()
    }

    /// Every room with a filter matching `topic`, each once.
    pub fn rooms_for(&self, topic: &str, out: &mut Vec<Arc<str>>) {
        out.clear();
        self.trie.for_each_match(topic, |matched| {
            if let Matched::Direct(entry) = matched {
                out.push(entry.subscriber.clone());
            }
        });
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
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
    }

    #[test]
    fn a_room_with_two_matching_filters_appears_once() {
        let mut index = RoomIndex::default();
        let room: Arc<str> = Arc::from("r");
        index.insert("a/#", &room);
        index.insert("a/+", &room);
        assert_eq!(rooms(&index, "a/b"), vec!["r"]);
    }

    #[test]
    fn a_filter_ten_thousand_levels_deep_is_indexed_and_removed_without_recursion() {
        let mut index = RoomIndex::default();
        let deep = vec!["+"; 10_000].join("/");
        let room: Arc<str> = Arc::from(deep.as_str());
        index.insert(&deep, &room);
        let topic = vec!["x"; 10_000].join("/");
        assert_eq!(rooms(&index, &topic).len(), 1);
        index.remove(&deep, &deep);
        assert!(index.is_empty());
    }
}
