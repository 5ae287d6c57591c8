//! `[log]` as a tracing filter: `level` (a level, or `level,module=level,…`) and
//! `modules`, checked so that a wrong word is refused instead of silencing the log.

use crate::LogConfig;

const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

fn level_hint(level: &str) -> String {
    format!("{level:?} is not a level: use error, warn, info, debug, trace or off")
}

/// A tracing filter: comma-separated `level` or `module=level` directives.
fn check_filter(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err(level_hint(filter));
    }
    for directive in filter.split(',').map(str::trim) {
        let (module, level) = match directive.split_once('=') {
            Some((module, level)) => (Some(module.trim()), level.trim()),
            None => (None, directive),
        };
        if module.is_some_and(|m| m.is_empty() || m.contains(' ')) {
            return Err(format!("{directive:?} is not a module=level directive"));
        }
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(level_hint(level));
        }
    }
    Ok(())
}

/// The key and message of the first thing wrong in `[log]`.
pub(crate) fn check(log: &LogConfig) -> Result<(), (String, String)> {
    check_filter(&log.level).map_err(|m| ("log.level".to_string(), m))?;
    for (module, level) in &log.modules {
        let key = format!("log.modules.{module}");
        if module.is_empty() || module.contains([',', '=', ' ']) {
            return Err((key, "is not a module path like switchboard_bridge".into()));
        }
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err((key, level_hint(level)));
        }
    }
    Ok(())
}
