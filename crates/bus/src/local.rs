//! The in-process bus of `squall server`.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use squall_core::{Execution, OutputRecord};
use tokio::sync::broadcast;

use crate::{Bus, ChangeKind, ExecutionChange, Hub, Live, LiveRecord, RecordSource, Subscription};

/// Bus for a single process: publishing is a hand-off to the local [`Hub`].
pub struct LocalBus {
    hub: Arc<Hub>,
    cancels: broadcast::Sender<String>,
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus { hub: Arc::new(Hub::default()), cancels: broadcast::channel(1024).0 }
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish_output(&self, source: &RecordSource, records: Vec<OutputRecord>) {
        for record in records {
            let id = record.execution_id.clone();
            self.hub.publish(&id, Live::Record(Arc::new(LiveRecord::new(record, source.clone()))));
        }
    }

    async fn publish_execution(&self, kind: ChangeKind, execution: Execution) {
        let id = execution.id.clone();
        let change = ExecutionChange { kind, execution, encoded: OnceLock::new() };
        self.hub.publish(&id, Live::Execution(Arc::new(change)));
    }

    async fn subscribe_execution(&self, execution_id: &str) -> Subscription {
        self.hub.subscribe_execution(execution_id)
    }

    async fn subscribe_all(&self, with_output: bool) -> Subscription {
        self.hub.subscribe_all(with_output)
    }

    async fn request_cancel(&self, execution_id: &str) {
        let _ = self.cancels.send(execution_id.to_string());
    }

    async fn cancel_requests(&self) -> broadcast::Receiver<String> {
        self.cancels.subscribe()
    }

    fn live_executions(&self) -> usize {
        self.hub.watched()
    }
}
