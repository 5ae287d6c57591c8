//! Tracing set-up: human text or JSON lines, level from config unless RUST_LOG is set.

use switchboard_config::{LogConfig, LogFormat};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let format = match config.format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed(),
    };
    // The filter is global, so its level is also the `log` facade's maximum: records
    // below it (tungstenite writes one per frame at trace) are never built.
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init();
    if let Err(e) = result {
        eprintln!("switchboard: logging not initialised: {e}");
    }
}
