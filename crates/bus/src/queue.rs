//! The work queue: executions waiting for a runner.

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc};

/// Hands execution ids to runners. Delivery is at least once (an id may come twice, or to
/// two runners); the runner's claim — the status compare-and-set `requested → scheduled` —
/// makes each execution start exactly once.
#[async_trait]
pub trait WorkQueue: Send + Sync + 'static {
    async fn push(&self, execution_id: String);
    /// The next id, waiting for one; `None` once the queue is closed.
    async fn pop(&self) -> Option<String>;
    /// Queues `execution_id` again if it is not waiting in the queue (a node died between
    /// taking it and claiming it, or between storing it and queueing it); true when it did.
    async fn requeue_if_missing(&self, execution_id: &str) -> bool;
}

/// In-process FIFO queue.
pub struct LocalQueue {
    tx: mpsc::UnboundedSender<String>,
    rx: Mutex<mpsc::UnboundedReceiver<String>>,
}

impl Default for LocalQueue {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        LocalQueue { tx, rx: Mutex::new(rx) }
    }
}

#[async_trait]
impl WorkQueue for LocalQueue {
    async fn push(&self, execution_id: String) {
        let _ = self.tx.send(execution_id);
    }

    async fn pop(&self) -> Option<String> {
        self.rx.lock().await.recv().await
    }

    /// An in-process queue loses nothing while the process lives, and start-up recovery
    /// queues every waiting execution again after a restart.
    async fn requeue_if_missing(&self, _execution_id: &str) -> bool {
        false
    }
}
