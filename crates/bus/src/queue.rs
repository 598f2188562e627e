//! The work queue: executions waiting for a runner.

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc};

/// Hands execution ids to runners, each id to exactly one.
#[async_trait]
pub trait WorkQueue: Send + Sync + 'static {
    async fn push(&self, execution_id: String);
    /// The next id, waiting for one; `None` once the queue is closed.
    async fn pop(&self) -> Option<String>;
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
}
