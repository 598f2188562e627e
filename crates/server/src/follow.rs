//! Following one execution: everything stored after a cursor, then live records, then the
//! completion — with no gap, no duplicate, and the completion never missed.
//!
//! The hand-over is *subscribe, then replay*: the viewer subscribes to the execution's live
//! channel first, then reads the stored state and history, and switches to live records by
//! `seq`. A viewer that falls behind the live channel is moved back to the store and catches up
//! from its cursor; it is never dropped and never slows the action.

use std::sync::{Arc, OnceLock};

use squall_bus::{ChangeKind, ExecutionChange, Live, LiveRecord, Received, RecordSource, Subscription};
use squall_core::Execution;
use squall_core::output::StreamFilter;
use squall_store::Store;
use tokio::sync::mpsc;

use crate::handlers::output::PAGE;

/// What a follower delivers, in order.
#[derive(Debug, Clone)]
pub enum Item {
    /// The execution as it was when the follow started (before any record).
    Current(Arc<ExecutionChange>),
    /// A record with `seq` greater than every record delivered before it.
    Record(Arc<LiveRecord>),
    /// A non-terminal change of the execution.
    Update(Arc<ExecutionChange>),
    /// The execution completed; every record it produced has been delivered. Always last.
    Done(Arc<ExecutionChange>),
}

/// Items in flight to one viewer. Small on purpose: a viewer that does not read stops its
/// follower, which then falls behind the live channel and later catches up from the store.
const VIEWER_QUEUE: usize = 4;

/// Starts following `execution` (already looked up by the caller) from after `cursor`.
/// `subscription` must have been taken *before* the caller read the execution.
pub fn start(store: Arc<dyn Store>, subscription: Subscription, execution: Execution, cursor: u64) -> mpsc::Receiver<Item> {
    let (tx, rx) = mpsc::channel(VIEWER_QUEUE);
    tokio::spawn(pump(store, subscription, execution, cursor, tx));
    rx
}

fn change(kind: ChangeKind, execution: Execution) -> Arc<ExecutionChange> {
    Arc::new(ExecutionChange { kind, execution, encoded: OnceLock::new() })
}

async fn pump(store: Arc<dyn Store>, mut sub: Subscription, execution: Execution, mut cursor: u64, tx: mpsc::Sender<Item>) {
    let source = RecordSource::of(&execution);
    let id = execution.id.clone();
    let terminal = execution.status.is_terminal();
    if tx.send(Item::Current(change(ChangeKind::Update, execution.clone()))).await.is_err() {
        return;
    }
    if !catch_up(&*store, &id, &source, &mut cursor, &tx).await {
        return;
    }
    if terminal {
        let _ = tx.send(Item::Done(change(ChangeKind::Update, execution))).await;
        return;
    }
    loop {
        let received = tokio::select! {
            _ = tx.closed() => return, // the viewer left while the execution was quiet
            received = sub.recv() => received,
        };
        match received {
            Received::Event(Live::Record(r)) => {
                if r.record.seq <= cursor {
                    continue; // already replayed from the store
                }
                if r.record.seq > cursor + 1 && !catch_up(&*store, &id, &source, &mut cursor, &tx).await {
                    return;
                }
                if r.record.seq <= cursor {
                    continue;
                }
                cursor = r.record.seq;
                if tx.send(Item::Record(r)).await.is_err() {
                    return;
                }
            }
            Received::Event(Live::Execution(c)) if c.execution.status.is_terminal() => {
                // Everything was committed before the final status; output that was not
                // published live (stream_output = false) is read from the store here.
                if catch_up(&*store, &id, &source, &mut cursor, &tx).await {
                    let _ = tx.send(Item::Done(c)).await;
                }
                return;
            }
            Received::Event(Live::Execution(c)) => {
                if tx.send(Item::Update(c)).await.is_err() {
                    return;
                }
            }
            Received::Lagged(_) => {
                if !catch_up(&*store, &id, &source, &mut cursor, &tx).await {
                    return;
                }
            }
            Received::Closed => return,
        }
    }
}

/// Delivers every stored record after `cursor`, page by page. False when the viewer is gone or
/// the store failed (the follow then ends).
async fn catch_up(store: &dyn Store, id: &str, source: &RecordSource, cursor: &mut u64, tx: &mpsc::Sender<Item>) -> bool {
    loop {
        let page = match store.read_output(id, *cursor, StreamFilter::All, PAGE).await {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(execution = %id, error = %e, "cannot read output for a viewer");
                return false;
            }
        };
        if page.is_empty() {
            return true;
        }
        for record in page {
            *cursor = record.seq;
            if tx.send(Item::Record(Arc::new(LiveRecord::new(record, source.clone())))).await.is_err() {
                return false;
            }
        }
    }
}
