//! Tracing set-up: human text or JSON lines, level from config unless RUST_LOG is set.

use switchboard_config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(quiet_router(&config.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
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
