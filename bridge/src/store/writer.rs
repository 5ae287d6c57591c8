//! The write path for retained changes: one task takes them off the edge's bounded
//! queue (the core's retained index already has them), applies them to the store in batches and
//! flushes within `flush_ms` of the first unflushed change. On shutdown it drains the
//! queue and flushes, so a graceful stop loses nothing.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, histogram};
use switchboard_broker::events::now_ms;
use switchboard_broker::{RetainedChange, Supervisor, TaskDone};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::error;

use super::{RetainedStore, RetainedWrite, StoredRetained};

/// Changes applied to the store in one batch at most.
const BATCH: usize = 4096;

pub struct StoreWriter {
    task: TaskDone,
}

impl StoreWriter {
    /// Waits for the final drain and flush (after `shutdown` turned true).
    pub async fn finished(self) {
        self.task.finished().await;
    }
}

pub fn spawn_writer(
    supervisor: &Supervisor,
    store: Arc<dyn RetainedStore>,
    mut changes: mpsc::Receiver<RetainedChange>,
    flush_every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> StoreWriter {
    let task = supervisor.spawn("store writer", async move {
        let mut batch = Vec::with_capacity(BATCH);
        let mut unflushed_since: Option<Instant> = None;
        loop {
            let flush_at = unflushed_since.map(|t| t + flush_every);
            tokio::select! {
                change = changes.recv() => {
                    let Some(change) = change else { break };
                    batch.push(change);
                    while batch.len() < BATCH {
                        match changes.try_recv() {
                            Ok(change) => batch.push(change),
                            Err(_) => break,
                        }
                    }
                    write(&*store, &mut batch);
                    unflushed_since.get_or_insert_with(Instant::now);
                }
                _ = sleep_until(flush_at), if flush_at.is_some() => {}
                _ = stopping(&mut shutdown) => {
                    while let Ok(change) = changes.try_recv() {
                        batch.push(change);
                        if batch.len() == BATCH {
                            write(&*store, &mut batch);
                        }
                    }
                    write(&*store, &mut batch);
                    flush(&store).await;
                    return;
                }
            }
            if unflushed_since.is_some_and(|t| t.elapsed() >= flush_every) {
                flush(&store).await;
                unflushed_since = None;
            }
        }
    });
    StoreWriter { task }
}

async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn write(store: &dyn RetainedStore, batch: &mut Vec<RetainedChange>) {
    if batch.is_empty() {
        return;
    }
    let ts_ms = now_ms();
    let writes: Vec<RetainedWrite> = batch
        .drain(..)
        .filter_map(|change| {
            let topic = String::from_utf8(change.topic.to_vec()).ok()?;
            let value = (!change.payload.is_empty()).then(|| StoredRetained {
                topic: topic.clone(),
                payload: change.payload,
                qos: change.qos,
                ts_ms,
                expires_at_ms: change.expiry_secs.map(|s| ts_ms + u64::from(s) * 1000),
            });
            Some(RetainedWrite { topic, value })
        })
        .collect();
    let count = writes.len() as u64;
    let apply = || store.apply(&writes);
    let result = if can_block_in_place() {
        tokio::task::block_in_place(apply)
    } else {
        apply()
    };
    match result {
        Ok(()) => counter!("switchboard_store_writes_total").increment(count),
        Err(e) => {
            counter!("switchboard_store_errors_total").increment(1);
            error!("could not store {count} retained changes: {e}");
        }
    }
}

async fn flush(store: &Arc<dyn RetainedStore>) {
    let store = store.clone();
    let started = std::time::Instant::now();
    match tokio::task::spawn_blocking(move || store.flush()).await {
        Ok(Ok(())) => {
            histogram!("switchboard_store_flush_seconds").record(started.elapsed().as_secs_f64())
        }
        Ok(Err(e)) => {
            counter!("switchboard_store_errors_total").increment(1);
            error!("could not flush the store: {e}");
        }
        Err(e) => error!("store flush task failed: {e}"),
    }
}

fn can_block_in_place() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}
