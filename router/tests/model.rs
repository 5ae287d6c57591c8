//! Model-based test of the core: random subscribe (with options) / unsubscribe /
//! publish / reconnect sequences from several clients, run against the `Router`
//! and against a small reference model written from the MQTT spec (filters matched
//! level by level, overlapping subscriptions folded into one copy at the highest
//! granted QoS with every identifier, No Local by client), comparing what every
//! client receives. Topics and filters cover multi-byte first characters, `$`,
//! empty levels and wildcards in every position. `MODEL_SEQUENCES` sets how many
//! (default 100 000; `scripts/fuzz` runs more).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchboard_router::{
    FilterSpec, Limits, Message, Outbound, QueueLimits, RetainedIndex, Router, SubscriptionOptions,
};

const LEVELS: [&str; 7] = ["a", "ü", "温度", "", "$SYS", "b", "ß"];
const CLIENTS: usize = 3;

fn topic(rng: &mut StdRng) -> String {
    let depth = rng.gen_range(1..=4);
    (0..depth)
        .map(|i| {
            let level = LEVELS[rng.gen_range(0..LEVELS.len())];
            if i > 0 && level == "$SYS" {
                "a"
            } else {
                level
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn filter(rng: &mut StdRng) -> String {
    let depth = rng.gen_range(1..=4);
    let mut levels: Vec<String> = (0..depth)
        .map(|_| match rng.gen_range(0..10) {
            0..=2 => "+".to_string(),
            _ => LEVELS[rng.gen_range(0..LEVELS.len())].to_string(),
        })
        .collect();
    if rng.gen_bool(0.3) {
        levels.push("#".into());
    }
    levels.join("/")
}

/// The reference: MQTT's matching rule written out, one copy per client.
struct Model {
    subscriptions: Vec<BTreeMap<String, SubscriptionOptions>>,
}

impl Model {
    fn matches(filter: &str, topic: &str) -> bool {
        if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
            return false;
        }
        let f: Vec<&str> = filter.split('/').collect();
        let t: Vec<&str> = topic.split('/').collect();
        for (i, level) in f.iter().enumerate() {
            if *level == "#" {
                return true;
            }
            if i >= t.len() || (*level != "+" && *level != t[i]) {
                return false;
            }
        }
        f.len() == t.len()
    }

    /// (QoS, sorted ids) client `c` gets for a publish by `publisher`, if any.
    fn receives(&self, c: usize, publisher: usize, topic: &str, qos: u8) -> Option<(u8, Vec<u32>)> {
        let mut best: Option<(u8, Vec<u32>)> = None;
        for (filter, options) in &self.subscriptions[c] {
            if !Self::matches(filter, topic) || (options.no_local && c == publisher) {
                continue;
            }
            let entry = best.get_or_insert((0, Vec::new()));
            entry.0 = entry.0.max(options.qos);
            entry.1.extend(options.identifier);
        }
        best.map(|(granted, mut ids)| {
            ids.sort_unstable();
            ids.dedup();
            (granted.min(qos), ids)
        })
    }
}

fn run_sequence(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let limits = Limits {
        queue: QueueLimits {
            max_messages: 10_000,
            max_bytes: usize::MAX,
        },
        max_sessions: 100,
    };
    let router = Router::new(limits, Arc::new(RetainedIndex::default()));
    let ids: Vec<Arc<str>> = (0..CLIENTS).map(|c| Arc::from(format!("c{c}"))).collect();
    let mut attached: Vec<_> = ids
        .iter()
        .map(|id| router.connect(id, true, u16::MAX, Duration::ZERO).unwrap())
        .collect();
    let mut model = Model {
        subscriptions: vec![BTreeMap::new(); CLIENTS],
    };
    for _ in 0..rng.gen_range(1..12) {
        let c = rng.gen_range(0..CLIENTS);
        match rng.gen_range(0..10) {
            0..=3 => {
                let raw = filter(&mut rng);
                let options = SubscriptionOptions {
                    qos: rng.gen_range(0..=2),
                    no_local: rng.gen_bool(0.3),
                    retain_handling: 2,
                    identifier: rng.gen_bool(0.5).then(|| rng.gen_range(1..5)),
                    ..Default::default()
                };
                // The generator's only invalid filter is the empty one.
                let Ok(spec) = FilterSpec::parse(&raw) else {
                    assert!(raw.is_empty(), "{raw:?} refused");
                    continue;
                };
                router.subscribe(&attached[c].session, &spec, options);
                model.subscriptions[c].insert(raw, options);
            }
            4 => {
                let existing: Vec<String> = model.subscriptions[c].keys().cloned().collect();
                if !existing.is_empty() {
                    let raw = &existing[rng.gen_range(0..existing.len())];
                    let spec = FilterSpec::parse(raw).unwrap();
                    assert!(router.unsubscribe(&attached[c].session, &spec));
                    model.subscriptions[c].remove(raw);
                }
            }
            5 => {
                router.disconnect(&attached[c], Duration::ZERO);
                attached[c] = router
                    .connect(&ids[c], true, u16::MAX, Duration::ZERO)
                    .unwrap();
                model.subscriptions[c].clear();
            }
            _ => {
                let topic = topic(&mut rng);
                let qos = rng.gen_range(0..=2);
                let mut message =
                    Message::new(topic.as_str(), Bytes::from_static(b"x"), qos, false);
                message.publisher = Some(ids[c].clone());
                router.publish(message);
                for (r, a) in attached.iter().enumerate() {
                    let mut out = Vec::new();
                    a.session
                        .take_outbound(router.retained(), &mut out, usize::MAX);
                    let got: Vec<(u8, Vec<u32>)> = out
                        .into_iter()
                        .map(|o| match o {
                            Outbound::Publish { delivery, pkid, .. } => {
                                if delivery.qos > 0 {
                                    assert!(a.session.complete(pkid));
                                }
                                (delivery.qos, delivery.subscription_ids)
                            }
                            Outbound::PubRel { .. } => panic!("no PUBREL expected"),
                        })
                        .collect();
                    let want: Vec<(u8, Vec<u32>)> =
                        model.receives(r, c, &topic, qos).into_iter().collect();
                    assert_eq!(got, want, "seed {seed}: client {r} on {topic:?}");
                }
            }
        }
    }
    for a in &attached {
        router.disconnect(a, Duration::ZERO);
    }
    assert_eq!(router.session_count(), 0, "seed {seed}");
    assert_eq!(router.index_nodes(), 1, "seed {seed}: index not freed");
}

#[test]
fn core_delivers_what_the_spec_model_delivers() {
    let sequences: u64 = std::env::var("MODEL_SEQUENCES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let base: u64 = std::env::var("MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5b_2026);
    for n in 0..sequences {
        run_sequence(base.wrapping_add(n));
    }
}
