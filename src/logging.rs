//! Tracing set-up: human text or JSON lines, level from config unless RUST_LOG is set.

use switchboard_config::{LogConfig, LogFormat};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(quiet_router(&config.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // rumqttd opens an error-level span for every packet it routes; formatting their
    // fields, and even registering them, cost the router thread a fifth of its time
    // under load. Filtered globally, they are never created; its events still log.
    let mut no_router_spans =
        filter_fn(|meta| !(meta.is_span() && meta.target().starts_with("rumqttd")));
    // Without a hint the global filter would leave the maximum level at TRACE, and
    // every `log` record of tungstenite (one per frame) would be built and dispatched.
    if let Some(max) = filter.max_level_hint() {
        no_router_spans = no_router_spans.with_max_level_hint(max);
    }
    let format = match config.format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed(),
    };
    let result = tracing_subscriber::registry()
        .with(no_router_spans)
        .with(format.with_filter(filter))
        .try_init();
    if let Err(e) = result {
        eprintln!("switchboard: logging not initialised: {e}");
    }
}

/// rumqttd logs every connection and subscription at info; the edge already logs
/// one line per connect and disconnect, so the router speaks up only for warnings.
fn quiet_router(level: &str) -> String {
    if level.contains("rumqttd") {
        level.to_string()
    } else {
        format!("{level},rumqttd=warn")
    }
}
