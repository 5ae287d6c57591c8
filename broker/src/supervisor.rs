//! Core tasks (accept loops, housekeeping, the bridge's feeds, the store writer) are
//! spawned through the supervisor: if one ends or panics while the server is not
//! stopping, it says which and why, once, so the process can turn `/readyz` to 503,
//! log one ERROR line and exit non-zero after a short graceful attempt.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

/// A core task that ended while it should not have.
#[derive(Debug, Clone)]
pub struct TaskFailure {
    pub task: &'static str,
    pub reason: String,
}

#[derive(Clone)]
pub struct Supervisor {
    failures: mpsc::UnboundedSender<TaskFailure>,
    stopping: Arc<AtomicBool>,
}

impl Supervisor {
    pub fn new() -> (Supervisor, mpsc::UnboundedReceiver<TaskFailure>) {
        let (failures, receiver) = mpsc::unbounded_channel();
        let supervisor = Supervisor {
            failures,
            stopping: Arc::default(),
        };
        (supervisor, receiver)
    }

    /// From now on tasks ending is expected.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Spawns a task that must run until shutdown; the returned [`TaskDone`]
    /// resolves when it has ended (for those that are waited for at shutdown).
    pub fn spawn<F>(&self, task: &'static str, future: F) -> TaskDone
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(future);
        let supervisor = self.clone();
        let (done, waiter) = oneshot::channel();
        tokio::spawn(async move {
            let reason = match handle.await {
                Ok(()) => "it returned".to_string(),
                Err(e) if e.is_panic() => format!("it panicked: {}", panic_text(e)),
                Err(e) => format!("it was cancelled: {e}"),
            };
            if !supervisor.stopping.load(Ordering::Relaxed) {
                let _ = supervisor.failures.send(TaskFailure { task, reason });
            }
            let _ = done.send(());
        });
        TaskDone(waiter)
    }
}

/// Resolves when a supervised task has ended, however it ended.
pub struct TaskDone(oneshot::Receiver<()>);

impl TaskDone {
    pub async fn finished(self) {
        let _ = self.0.await;
    }
}

fn panic_text(error: tokio::task::JoinError) -> String {
    let payload = error.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_core_task_that_panics_is_reported_once_with_its_name() {
        let (supervisor, mut failures) = Supervisor::new();
        supervisor.spawn("doomed", async { panic!("on purpose") });
        let failure = failures.recv().await.unwrap();
        assert_eq!(failure.task, "doomed");
        assert!(failure.reason.contains("on purpose"), "{}", failure.reason);
        supervisor.stopping();
        supervisor.spawn("finished", async {});
        tokio::task::yield_now().await;
        assert!(
            failures.try_recv().is_err(),
            "ends after stopping are expected"
        );
    }
}
