//! Starting and canceling executions: the same steps whoever asks — the API for a user, a
//! workflow for its tasks — so both keep the invariants (commit, then publish; a cancel is a
//! status compare-and-set, then a request to the runner that holds the execution).

use serde_json::{Value, json};
use squall_core::{Execution, Status};
use squall_store::{Store, StoreError};

use crate::{Bus, ChangeKind, WorkQueue};

/// Stores a new execution (its secrets already sealed), announces it and queues it.
pub async fn submit(store: &dyn Store, bus: &dyn Bus, queue: &dyn WorkQueue, execution: &Execution) -> Result<(), StoreError> {
    store.insert_execution(execution).await?;
    bus.publish_execution(ChangeKind::Create, execution.clone()).await;
    queue.push(execution.id.clone()).await;
    Ok(())
}

/// What a cancel request produced.
#[derive(Debug)]
pub enum Canceled {
    /// The execution after the request (`canceling` or `canceled`).
    Execution(Box<Execution>),
    /// It had already finished.
    NotCancelable(Status),
    /// It no longer exists.
    Gone,
}

/// StackStorm's cancel: a running execution becomes `canceling` and its runner is asked to stop
/// it; one that has not started yet is `canceled` at once. `by` is recorded as `cancelled_by`.
pub async fn cancel(store: &dyn Store, bus: &dyn Bus, mut e: Execution, by: &str) -> Result<Canceled, StoreError> {
    loop {
        let before = e.status;
        if before == Status::Canceled || before == Status::Canceling {
            return Ok(Canceled::Execution(Box::new(e)));
        }
        if !before.is_cancelable() {
            return Ok(Canceled::NotCancelable(before));
        }
        e.context.insert("cancelled_by".into(), Value::String(by.to_string()));
        if before == Status::Running {
            e.transition(Status::Canceling, None);
        } else {
            e.result = Some(json!({"message": "Action canceled by user.", "user": by}));
            e.transition(Status::Canceled, None);
        }
        if store.update_execution(&e, before).await? {
            bus.publish_execution(ChangeKind::Update, e.clone()).await;
            if e.status == Status::Canceling {
                bus.request_cancel(&e.id).await;
            }
            return Ok(Canceled::Execution(Box::new(e)));
        }
        // Someone else moved it meanwhile: look again.
        match store.execution(&e.id).await? {
            Some(current) => e = current,
            None => return Ok(Canceled::Gone),
        }
    }
}
