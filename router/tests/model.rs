//! Model-based test of the core: random subscribe (with options) / unsubscribe /
//! publish (QoS 0–2, retained or not) / ack / reconnect sequences from several
//! clients, run against the `Router` and against a small reference model written
//! from the MQTT spec (filters matched level by level, overlapping subscriptions
//! folded into one copy at the highest granted QoS with every identifier, No Local by
//! client, Retain As Published, retained messages on subscribe by Retain Handling at
//! min(stored, granted) QoS), comparing what every client receives. Topics and filters cover multi-byte first characters, `$`,
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

/// What one client receives: (topic, payload, QoS, retain flag, subscription ids).
type Received = (String, String, u8, bool, Vec<u32>);

/// The reference: MQTT's matching rule written out, one copy per client, retained
/// messages by topic.
struct Model {
    subscriptions: Vec<BTreeMap<String, SubscriptionOptions>>,
    /// topic → (payload, QoS)
    retained: BTreeMap<String, (String, u8)>,
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

    /// What client `c` gets for a live publish by `publisher`: one copy at the
    /// highest granted QoS (capped by the publish), every identifier, the retain flag
    /// kept if a matching subscription has Retain As Published.
    fn live(&self, c: usize, publisher: usize, message: &Received) -> Vec<Received> {
        let (topic, payload, qos, retain, _) = message;
        let mut best: Option<(u8, bool, Vec<u32>)> = None;
        for (filter, options) in &self.subscriptions[c] {
            if !Self::matches(filter, topic) || (options.no_local && c == publisher) {
                continue;
            }
            let entry = best.get_or_insert((0, false, Vec::new()));
            entry.0 = entry.0.max(options.qos);
            entry.1 |= options.retain_as_published;
            entry.2.extend(options.identifier);
        }
        best.map(|(granted, rap, mut ids)| {
            ids.sort_unstable();
            ids.dedup();
            (
                topic.clone(),
                payload.clone(),
                granted.min(*qos),
                *retain && rap,
                ids,
            )
        })
        .into_iter()
        .collect()
    }

    /// Retained messages a new subscription is served, by topic.
    fn on_subscribe(
        &self,
        filter: &str,
        options: &SubscriptionOptions,
        new: bool,
    ) -> Vec<Received> {
        let wanted = match options.retain_handling {
            0 => true,
            1 => new,
            _ => false,
        };
        if !wanted {
            return Vec::new();
        }
        self.retained
            .iter()
            .filter(|(topic, _)| Self::matches(filter, topic))
            .map(|(topic, (payload, qos))| {
                let ids = options.identifier.into_iter().collect();
                (
                    topic.clone(),
                    payload.clone(),
                    (*qos).min(options.qos),
                    true,
                    ids,
                )
            })
            .collect()
    }
}

/// Everything `session` may send now, acknowledged at once.
fn drain(router: &Router, session: &switchboard_router::Session) -> Vec<Received> {
    let mut out = Vec::new();
    session.take_outbound(router.retained(), &mut out, usize::MAX);
    out.into_iter()
        .map(|o| match o {
            Outbound::Publish { delivery, pkid, .. } => {
                if delivery.qos > 0 {
                    assert!(session.complete(pkid));
                }
                let m = &delivery.message;
                (
                    m.topic.to_string(),
                    String::from_utf8_lossy(&m.payload).into_owned(),
                    delivery.qos,
                    delivery.retain,
                    delivery.subscription_ids,
                )
            }
            Outbound::PubRel { .. } => panic!("no PUBREL expected"),
        })
        .collect()
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
        retained: BTreeMap::new(),
    };
    let mut published = 0u32;
    for _ in 0..rng.gen_range(1..14) {
        let c = rng.gen_range(0..CLIENTS);
        match rng.gen_range(0..10) {
            0..=3 => {
                let raw = filter(&mut rng);
                let options = SubscriptionOptions {
                    qos: rng.gen_range(0..=2),
                    no_local: rng.gen_bool(0.3),
                    retain_as_published: rng.gen_bool(0.5),
                    retain_handling: rng.gen_range(0..=2),
                    identifier: rng.gen_bool(0.5).then(|| rng.gen_range(1..5)),
                };
                // The generator's only invalid filter is the empty one.
                let Ok(spec) = FilterSpec::parse(&raw) else {
                    assert!(raw.is_empty(), "{raw:?} refused");
                    continue;
                };
                router.subscribe(&attached[c].session, &spec, options);
                let new = model.subscriptions[c]
                    .insert(raw.clone(), options)
                    .is_none();
                let want = model.on_subscribe(&raw, &options, new);
                let got = drain(&router, &attached[c].session);
                assert_eq!(got, want, "seed {seed}: retained for {raw:?} ({options:?})");
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
                let retain = rng.gen_bool(0.4);
                published += 1;
                // An empty retained payload clears the topic (and is still delivered).
                let payload = if retain && rng.gen_bool(0.2) {
                    String::new()
                } else {
                    format!("p{published}")
                };
                let mut message =
                    Message::new(topic.as_str(), Bytes::from(payload.clone()), qos, retain);
                message.publisher = Some(ids[c].clone());
                router.publish(message);
                if retain {
                    if payload.is_empty() {
                        model.retained.remove(&topic);
                    } else {
                        model.retained.insert(topic.clone(), (payload.clone(), qos));
                    }
                }
                let sent: Received = (topic.clone(), payload, qos, retain, Vec::new());
                for (r, a) in attached.iter().enumerate() {
                    let got = drain(&router, &a.session);
                    let want = model.live(r, c, &sent);
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
