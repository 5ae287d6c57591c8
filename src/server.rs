//! `switchboard run`: start-up in order (store → core with its retained index loaded
//! → bridge → listeners), then wait for SIGINT/SIGTERM and shut down gracefully (listeners,
//! connections, then the last retained changes to disk).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use switchboard_bridge::store::{RetainedStore, RetainedWrite, SledStore};
use switchboard_bridge::{Bridge, HttpServer, HttpState};
use switchboard_broker::auth::{Auth, AuthState};
use switchboard_broker::{Broker, Supervisor};
use switchboard_config::Config;
use tokio::sync::watch;
use tracing::{error, info, warn};

pub fn run(config: Config) -> Result<(), String> {
    crate::logging::init(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("switchboard")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = runtime.block_on(serve(config));
    // Connection tasks that ignored shutdown must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_millis(500));
    result
}

async fn serve(mut config: Config) -> Result<(), String> {
    if config.tls_explicitly_requested() && !(config.tls.cert.exists() && config.tls.key.exists()) {
        return Err(format!(
            "TLS listeners are configured but {} or {} is missing; make development certificates with `switchboard certs-dev`, or set [tls] cert and key",
            config.tls.cert.display(),
            config.tls.key.display()
        ));
    }
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("switchboard_bridge_delivery_seconds".into()),
            &[
                0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ],
        )
        .map_err(|e| format!("cannot configure metrics: {e}"))?
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    switchboard_bridge::vitals::describe();
    let capped = crate::fd_budget::apply(&mut config);
    let config = Arc::new(config);
    if let Some(line) = capped {
        warn!("{line}");
    }
    match &config.source {
        Some(path) => info!("config: {}", path.display()),
        None => info!("config: built-in defaults (see `switchboard print-config`)"),
    }

    let reading = Instant::now();
    let store = SledStore::open(&config.node.data_dir).map_err(|e| e.to_string())?;
    let opened_ms = reading.elapsed().as_millis() as u64;
    let now = switchboard_broker::events::now_ms();
    let mut stored = store.load().map_err(|e| {
        format!(
            "{e} (in {}; `switchboard data check` reports what is wrong)",
            config.node.data_dir.display()
        )
    })?;
    let expired: Vec<RetainedWrite> = stored
        .iter()
        .filter(|r| r.expired(now))
        .map(|r| RetainedWrite {
            topic: r.topic.clone(),
            value: None,
        })
        .collect();
    if !expired.is_empty() {
        stored.retain(|r| !r.expired(now));
        store.apply(&expired).map_err(|e| e.to_string())?;
        info!(
            expired = expired.len(),
            "stored retained messages past their message expiry were deleted, not restored"
        );
    }
    let store: Arc<dyn RetainedStore> = Arc::new(store);
    let read_ms = reading.elapsed().as_millis() as u64;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (supervisor, mut core_failures) = Supervisor::new();
    let auth = Auth::load(&config)?;
    info!("MQTT clients: {}", auth.describe());
    let auth = Arc::new(AuthState::new(auth));
    let broker = Broker::start(config.clone(), auth.clone(), supervisor.clone());
    let started = Instant::now();
    let messages = stored.into_iter().filter_map(|r| {
        let usable = switchboard_bridge::topic::valid_topic(&r.topic) && !r.payload.is_empty();
        if !usable {
            warn!(topic = %r.topic, "skipped a stored retained message that no client could have published");
            return None;
        }
        Some(r.into_message(now))
    });
    let restored = broker.router().retained().load(messages);
    let sessions = store.load_sessions().map_err(|e| e.to_string())?;
    let sessions = broker.router().restore_sessions(sessions);
    info!(
        restored,
        sessions,
        open_ms = opened_ms,
        read_ms,
        index_ms = started.elapsed().as_millis() as u64,
        data_dir = %config.node.data_dir.display(),
        "retained messages and persistent sessions restored"
    );
    let router = broker.router();
    crate::autosave::spawn(
        &supervisor,
        router.clone(),
        store.clone(),
        config.storage.autosave_interval,
    );
    let bridge = Bridge::start(
        config.clone(),
        broker.router(),
        broker.events(),
        store.clone(),
        auth.clone(),
        stop_rx.clone(),
        &supervisor,
    )
    .map_err(|e| e.to_string())?;
    let mqtt_listeners = broker.bind().await.map_err(|e| e.to_string())?;
    let http = match config.http.listen.addr() {
        Some(addr) => Some(
            HttpServer::bind(addr, &config)
                .await
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };

    let ready = Arc::new(AtomicBool::new(false));
    let http_task = http.map(|server| {
        server.serve(
            HttpState {
                metrics,
                ready: ready.clone(),
                bridge: bridge.state(),
            },
            stop_rx.clone(),
            &supervisor,
        )
    });
    broker.serve(mqtt_listeners);
    ready.store(true, Ordering::Relaxed);
    info!("switchboard ready");

    // A core task that dies makes the broker unready at once; after a graceful
    // attempt the process exits non-zero so a supervisor restarts it.
    let failure = loop {
        tokio::select! {
            signal = wait_for_signal() => match signal {
                Signal::Reload => reload(&config, &auth),
                Signal::Stop => break None,
            },
            failure = core_failures.recv() => break failure,
        }
    };
    ready.store(false, Ordering::Relaxed);
    match &failure {
        Some(f) => error!(
            task = f.task,
            "core task ended: {}; shutting down", f.reason
        ),
        None => info!("shutting down"),
    }
    supervisor.stopping();
    let _ = stop_tx.send(true);
    broker
        .shutdown(Duration::from_secs(config.node.shutdown_grace_secs))
        .await;
    // Browsers were closed with 1001 when the stop began; let their close frames out
    // (a restart's clients then spread their reconnects instead of seeing 1006).
    let grace = Duration::from_secs(config.node.shutdown_grace_secs.min(5));
    if !bridge.browsers_closed(grace).await {
        warn!("some browser connections did not close within {grace:?}");
    }
    crate::autosave::save_at_shutdown(&router, &store).await;
    bridge.finish().await;
    if let Some(task) = http_task {
        if tokio::time::timeout(Duration::from_secs(2), task.finished())
            .await
            .is_err()
        {
            error!("HTTP server did not stop in time");
        }
    }
    info!("stopped");
    match failure {
        Some(f) => Err(format!("core task {} ended: {}", f.task, f.reason)),
        None => Ok(()),
    }
}

enum Signal {
    /// SIGHUP: read the password and ACL files again.
    Reload,
    /// SIGINT or SIGTERM: shut down gracefully.
    Stop,
}

async fn wait_for_signal() -> Signal {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(term), Ok(hup)) => (term, hup),
        (Err(e), _) | (_, Err(e)) => {
            error!("cannot listen for SIGTERM / SIGHUP: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return Signal::Stop;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Signal::Stop,
        _ = term.recv() => Signal::Stop,
        _ = hup.recv() => Signal::Reload,
    }
}

/// SIGHUP: new users and ACLs for new connections at once and for connected clients
/// at their next delivery; a file that does not load leaves the old rules in force.
fn reload(config: &Config, auth: &AuthState) {
    match auth.reload(config) {
        Ok(described) => {
            info!("SIGHUP: password and ACL files reloaded; MQTT clients: {described}")
        }
        Err(e) => error!("SIGHUP: {e}; the previous users and ACLs stay in force"),
    }
}
