//! Tracing set-up: human text (coloured only on a terminal) or JSON lines, levels from
//! `[log] level` and `[log] modules` unless RUST_LOG is set.

use std::io::IsTerminal;

use switchboard_config::{Config, LogFormat};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

pub fn init(config: &Config) {
    // Validated with the config: a filter that does not parse never gets here.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(config.log_filter()))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    switchboard_broker::repeats::set_max_per_second(config.log.max_repeats_per_sec);
    // Colour codes only for a person at a terminal, never into a log file.
    let ansi = std::io::stdout().is_terminal();
    let format = match config.log.format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_ansi(ansi).boxed(),
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
