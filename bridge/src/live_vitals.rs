//! `GET /vitals`: the broker's vitals for the dashboard's charts, as JSON — totals
//! and gauges read from the metrics recorder (at most once a second, however many
//! dashboards ask), and the delivery-latency histogram's buckets. Same auth as `/ws`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::Serialize;

use crate::state::HttpState;

const FRESH_FOR: Duration = Duration::from_secs(1);

/// The series the dashboard charts, summed over their labels.
const SERIES: &[(&str, &str)] = &[
    ("mqtt_connections", "switchboard_mqtt_connections"),
    ("browser_connections", "switchboard_bridge_connections"),
    ("retained_topics", "switchboard_retained_topics"),
    ("messages_in", "switchboard_bridge_messages_in_total"),
    (
        "browser_messages_out",
        "switchboard_bridge_messages_out_total",
    ),
    ("mqtt_packets_out", "switchboard_mqtt_packets_out_total"),
    ("conflated", "switchboard_bridge_conflated_total"),
    ("dropped", "switchboard_bridge_dropped_total"),
    ("uptime_seconds", "switchboard_uptime_seconds"),
];
const DELIVERY_BUCKET: &str = "switchboard_bridge_delivery_seconds_bucket{";

#[derive(Serialize, Default, Clone)]
pub struct Vitals {
    /// Milliseconds since the Unix epoch when read.
    ts: u64,
    values: BTreeMap<&'static str, f64>,
    /// Cumulative (upper bound in seconds, count) of browser delivery latency.
    delivery_buckets: Vec<(f64, f64)>,
}

static LAST: Mutex<Option<(Instant, Vitals)>> = Mutex::new(None);

pub async fn vitals(State(state): State<HttpState>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(why) = crate::sse::token_grant(&state.bridge, &headers, &uri) {
        let challenge = [(header::WWW_AUTHENTICATE, "Bearer")];
        return (StatusCode::UNAUTHORIZED, challenge, format!("{why}\n")).into_response();
    }
    let vitals = {
        let mut last = LAST.lock();
        match &*last {
            Some((at, vitals)) if at.elapsed() < FRESH_FOR => vitals.clone(),
            _ => {
                let vitals = read(&state.metrics.render());
                *last = Some((Instant::now(), vitals.clone()));
                vitals
            }
        }
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(vitals)).into_response()
}

/// Reads the Prometheus text exposition for the series above.
fn read(text: &str) -> Vitals {
    let mut vitals = Vitals {
        ts: switchboard_broker::events::now_ms(),
        ..Vitals::default()
    };
    for (key, _) in SERIES {
        vitals.values.insert(key, 0.0);
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if let Some(labels) = series.strip_prefix(DELIVERY_BUCKET) {
            let bound = labels
                .split_once("le=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(le, _)| le);
            match bound {
                Some("+Inf") => vitals.delivery_buckets.push((f64::MAX, value)),
                Some(le) => {
                    if let Ok(le) = le.parse() {
                        vitals.delivery_buckets.push((le, value));
                    }
                }
                None => {}
            }
            continue;
        }
        let name = series.split('{').next().unwrap_or(series);
        if let Some((key, _)) = SERIES.iter().find(|(_, metric)| *metric == name) {
            *vitals.values.entry(key).or_default() += value;
        }
    }
    vitals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_summed_over_labels_and_buckets_kept() {
        let text = "# HELP x\nswitchboard_mqtt_connections{listener=\"tcp\"} 3\nswitchboard_mqtt_connections{listener=\"ws\"} 2\nswitchboard_bridge_delivery_seconds_bucket{le=\"0.001\"} 4\nswitchboard_bridge_delivery_seconds_bucket{le=\"+Inf\"} 5\nswitchboard_bridge_conflated_total 7\n";
        let vitals = read(text);
        assert_eq!(vitals.values["mqtt_connections"], 5.0);
        assert_eq!(vitals.values["conflated"], 7.0);
        assert_eq!(vitals.values["dropped"], 0.0);
        assert_eq!(vitals.delivery_buckets, vec![(0.001, 4.0), (f64::MAX, 5.0)]);
    }
}
