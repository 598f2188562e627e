//! Following one execution: everything stored after a cursor, then live records, then the
//! completion — with no gap, no duplicate, and the completion never missed.
//!
//! The hand-over is *subscribe, then replay*: the viewer subscribes to the execution's live
//! channel first, then reads the stored state and history, and switches to live records by
//! `seq`. A viewer that falls behind the live channel is moved back to the store and catches up
//! from its cursor; it is never dropped and never slows the action.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::Stream;
use squall_bus::{ChangeKind, ExecutionChange, Live, LiveRecord, Received, RecordSource, Subscription};
use squall_core::Execution;
use squall_core::output::StreamFilter;
use squall_store::Store;

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

/// Follows `execution` (already looked up by the caller) from after `cursor`, as a stream the
/// viewer's response body polls directly: no task and no queue between the live channel and
/// the socket. A viewer that stops reading stops polling; its subscription then lags and the
/// follow catches up from the store, page by page, when it reads again. `subscription` must
/// have been taken *before* the caller read the execution.
pub fn start(store: Arc<dyn Store>, mut sub: Subscription, execution: Execution, mut cursor: u64) -> impl Stream<Item = Item> + Send {
    async_stream::stream! {
        let source = RecordSource::of(&execution);
        let id = execution.id.clone();
        // The completion to deliver once the store has nothing more after `cursor`.
        let mut done = execution.status.is_terminal().then(|| change(ChangeKind::Update, execution.clone()));
        // Status changes delivered so far (the length of the execution's log): a change published
        // before the store was read can arrive after it, and is not news then.
        let mut changes_seen = execution.log.len();
        yield Item::Current(change(ChangeKind::Update, execution));
        let mut catching_up = true;
        loop {
            if catching_up {
                let Some(page) = next_page(&*store, &id, &source, cursor).await else { return };
                if page.is_empty() {
                    catching_up = false;
                    if let Some(done) = done.take() {
                        yield Item::Done(done);
                        return;
                    }
                }
                for item in page {
                    if let Item::Record(r) = &item {
                        cursor = r.record.seq;
                    }
                    yield item;
                }
                continue;
            }
            match sub.recv().await {
                Received::Event(Live::Record(r)) if r.record.seq <= cursor => {} // replayed already
                Received::Event(Live::Record(r)) if r.record.seq == cursor + 1 => {
                    cursor = r.record.seq;
                    yield Item::Record(r);
                }
                // A gap (records published while this viewer was not reading): the store has
                // them, this one included.
                Received::Event(Live::Record(_)) | Received::Lagged(_) => {
                    metrics::counter!("squall_viewer_catchups_total").increment(1);
                    catching_up = true;
                }
                Received::Event(Live::Execution(c)) if c.execution.status.is_terminal() => {
                    // Everything was committed before the final status; output that was not
                    // published live (stream_output = false) is read from the store first.
                    done = Some(c);
                    catching_up = true;
                }
                Received::Event(Live::Execution(c)) if c.execution.log.len() <= changes_seen => {}
                Received::Event(Live::Execution(c)) => {
                    changes_seen = c.execution.log.len();
                    yield Item::Update(c);
                }
                Received::Closed => return,
            }
        }
    }
}

fn change(kind: ChangeKind, execution: Execution) -> Arc<ExecutionChange> {
    Arc::new(ExecutionChange { kind, execution, encoded: OnceLock::new() })
}

/// How long a viewer waits for an unreachable store (a database restart) before its follow ends
/// (the client then reconnects and resumes after what it received).
const STORE_PATIENCE: Duration = Duration::from_secs(30);

/// The next page of stored records after `cursor`; `None` when the store failed (the follow
/// then ends).
async fn next_page(store: &dyn Store, id: &str, source: &RecordSource, cursor: u64) -> Option<Vec<Item>> {
    let (give_up, mut pause) = (tokio::time::Instant::now() + STORE_PATIENCE, Duration::from_millis(100));
    loop {
        match store.read_output(id, cursor, StreamFilter::All, PAGE).await {
            Ok(page) => {
                return Some(page.into_iter().map(|record| Item::Record(Arc::new(LiveRecord::new(record, source.clone())))).collect());
            }
            Err(e) if e.is_transient() && tokio::time::Instant::now() < give_up => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(execution = %id, error = %e, "cannot read output for a viewer");
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use squall_bus::{Bus, LocalBus};
    use squall_core::{Catalog, Status};
    use squall_store::SqliteStore;

    #[tokio::test]
    async fn a_change_older_than_the_read_is_not_delivered_again() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let bus = LocalBus::default();
        let catalog = Catalog::builtin();
        let action = catalog.action("core.local").unwrap().clone();
        let runner = catalog.runner("local-shell-cmd").unwrap().clone();
        let mut e = Execution::new(action, runner, Default::default(), Default::default(), "u", None);
        store.insert_execution(&e).await.unwrap();
        e.transition(Status::Running, None);
        assert!(store.update_execution(&e, Status::Requested).await.unwrap());

        let sub = bus.subscribe_execution(&e.id).await;
        // The runner's `running` news reaches this node only after the viewer read the store.
        bus.publish_execution(ChangeKind::Update, e.clone()).await;
        let mut done = e.clone();
        done.transition(Status::Succeeded, None);
        bus.publish_execution(ChangeKind::Update, done).await;

        let items: Vec<Item> = start(store, sub, e, 0).collect().await;
        let kinds: Vec<&str> = items
            .iter()
            .map(|i| match i {
                Item::Current(_) => "current",
                Item::Record(_) => "record",
                Item::Update(_) => "update",
                Item::Done(_) => "done",
            })
            .collect();
        assert_eq!(kinds, ["current", "done"]);
    }
}
