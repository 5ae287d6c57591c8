//! Percentiles over recorded samples, and the result every scenario prints.

use serde_json::{Map, Value};

/// Latency samples in nanoseconds.
#[derive(Default)]
pub struct Samples(pub Vec<u64>);

impl Samples {
    pub fn percentile(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let rank = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0.get(rank).copied().unwrap_or_default() as f64 / 1e6
    }

    pub fn max(&self) -> f64 {
        self.0.iter().copied().max().unwrap_or(0) as f64 / 1e6
    }
}

/// A scenario's outcome: printed as `name: value` lines, then one JSON line.
pub struct Report {
    scenario: String,
    fields: Map<String, Value>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_string(),
            fields: Map::new(),
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    /// p50/p99/p999/max in milliseconds under `prefix_`.
    pub fn latencies(&mut self, prefix: &str, samples: &mut Samples) -> &mut Self {
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        self.set(&format!("{prefix}_p50_ms"), round(samples.percentile(50.0)));
        self.set(&format!("{prefix}_p99_ms"), round(samples.percentile(99.0)));
        self.set(
            &format!("{prefix}_p999_ms"),
            round(samples.percentile(99.9)),
        );
        self.set(&format!("{prefix}_max_ms"), round(samples.max()));
        self.set(&format!("{prefix}_samples"), samples.0.len() as u64)
    }

    /// The report of a fixed-rate latency scenario.
    pub fn latency(scenario: &str, rate: u64, sent: u64, samples: &mut Samples) -> Report {
        let mut report = Report::new(scenario);
        report
            .set("rate_per_s", rate)
            .set("sent", sent)
            .set("received", samples.0.len() as u64)
            .latencies("latency", samples);
        report
    }

    pub fn print(&self) {
        println!("== {}", self.scenario);
        for (key, value) in &self.fields {
            println!("  {key:<24} {value}");
        }
        let mut json = self.fields.clone();
        json.insert("scenario".into(), Value::from(self.scenario.clone()));
        println!("{}", Value::Object(json));
    }
}
