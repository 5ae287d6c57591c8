//! Open files are the one resource every listener shares: the soft limit is raised
//! to the hard one at start-up, and the HTTP side (browsers plus unfinished
//! requests) is capped so that a quarter of the files stay for MQTT clients and the
//! store however full HTTP gets.

use switchboard_config::Config;

/// The files HTTP may never take: MQTT clients, sled, logs.
fn reserve(limit: usize) -> usize {
    (limit / 4).max(512)
}

/// Raises the soft limit; returns the limit now in force (None where unknown).
fn raise_open_files() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    usize::try_from(limit.rlim_cur).ok()
}

/// Caps `[bridge] max_connections` and `[http] max_pending` to fit the open-file
/// limit with the reserve left over; returns what it changed, for the log.
pub fn apply(config: &mut Config) -> Option<String> {
    let limit = raise_open_files()?;
    Some(fit(config, limit)).flatten()
}

fn fit(config: &mut Config, limit: usize) -> Option<String> {
    let budget = limit.saturating_sub(reserve(limit));
    let wanted = config.bridge.max_connections + config.http.max_pending;
    if wanted <= budget {
        return None;
    }
    let pending = config.http.max_pending.min(budget / 8).max(1);
    let browsers = budget.saturating_sub(pending).max(1);
    let line = format!(
        "open files are limited to {limit}: HTTP takes at most {browsers} browser connections ([bridge] max_connections was {}) and {pending} unfinished requests ([http] max_pending was {}), so {} stay for MQTT clients and the store",
        config.bridge.max_connections,
        config.http.max_pending,
        limit - browsers - pending
    );
    config.bridge.max_connections = browsers;
    config.http.max_pending = pending;
    config.http.max_pending_per_ip = config.http.max_pending_per_ip.min(pending);
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_capped_to_leave_a_quarter_of_the_files() {
        let mut config = Config::default();
        let line = fit(&mut config, 20_000).expect("the defaults exceed 20 000 files");
        assert!(line.contains("20000"), "{line}");
        let http = config.bridge.max_connections + config.http.max_pending;
        assert!(http <= 15_000, "{http}");
        assert!(config.http.max_pending_per_ip <= config.http.max_pending);
        let mut roomy = Config::default();
        assert!(fit(&mut roomy, 1_000_000).is_none());
        assert_eq!(
            roomy.bridge.max_connections,
            Config::default().bridge.max_connections
        );
    }
}
