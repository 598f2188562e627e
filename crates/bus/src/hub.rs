//! The fan-out hub: per-execution channels shared by every viewer of that execution on this
//! node, plus one channel for everything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::{Live, Subscription};

/// Per-execution queue depth. A viewer more than this many events behind is told it lagged
/// and catches up from the store; the publisher never waits for it.
const EXECUTION_QUEUE: usize = 1024;
/// Queue depth of the all-executions channel.
const GLOBAL_QUEUE: usize = 8192;

/// Routes live events to the viewers that asked for them. A per-execution channel exists only
/// while someone watches that execution; it is freed when its last subscription is dropped.
/// Output records go to the all-executions channel only while a subscriber there asked for
/// them, so event-stream clients that do not (st2web, `/stream` by default) never make it hold
/// output for them.
pub struct Hub {
    executions: Mutex<HashMap<String, broadcast::Sender<Live>>>,
    global: broadcast::Sender<Live>,
    global_output_subscribers: Arc<AtomicUsize>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            executions: Mutex::new(HashMap::new()),
            global: broadcast::channel(GLOBAL_QUEUE).0,
            global_output_subscribers: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// A global subscriber's interest in output records, counted while it lives.
pub(crate) struct OutputInterest(Arc<AtomicUsize>);

impl Drop for OutputInterest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hub {
    /// Delivers an event of `execution_id` to its viewers and to global subscribers.
    pub fn publish(&self, execution_id: &str, event: Live) {
        self.publish_to_execution(execution_id, event.clone());
        self.publish_global(event);
    }

    /// Delivers an event to the viewers of its execution only.
    pub fn publish_to_execution(&self, execution_id: &str, event: Live) {
        let sender = self.executions.lock().expect("hub lock").get(execution_id).cloned();
        if let Some(sender) = sender {
            if let Live::Record(r) = &event {
                // From the writer's timestamp (taken before the commit) to this node's viewers.
                let age = r.record.timestamp.seconds_until(squall_core::Timestamp::now());
                metrics::histogram!("squall_delivery_seconds").record(age.max(0.0));
            }
            let _ = sender.send(event);
        }
    }

    /// Delivers an event to the all-executions channel only (an output record only while a
    /// subscriber there wants output).
    pub fn publish_global(&self, event: Live) {
        if !matches!(event, Live::Record(_)) || self.wants_global_output() {
            let _ = self.global.send(event);
        }
    }

    /// Whether a global subscriber asked for output records.
    pub fn wants_global_output(&self) -> bool {
        self.global_output_subscribers.load(Ordering::SeqCst) > 0
    }

    /// Whether anyone subscribed to the all-executions channel.
    pub fn has_global_subscribers(&self) -> bool {
        self.global.receiver_count() > 0
    }

    /// Whether `execution_id` has live viewers on this node.
    pub fn is_watched(&self, execution_id: &str) -> bool {
        self.executions.lock().expect("hub lock").contains_key(execution_id)
    }

    pub fn subscribe_execution(self: &Arc<Self>, execution_id: &str) -> Subscription {
        let mut map = self.executions.lock().expect("hub lock");
        let rx = map.entry(execution_id.to_string()).or_insert_with(|| broadcast::channel(EXECUTION_QUEUE).0).subscribe();
        Subscription { rx: Some(rx), entry: Some((Arc::clone(self), execution_id.to_string())), _output_interest: None }
    }

    /// Every execution's changes, and their output records when `with_output`.
    pub fn subscribe_all(&self, with_output: bool) -> Subscription {
        let output_interest = with_output.then(|| {
            self.global_output_subscribers.fetch_add(1, Ordering::SeqCst);
            OutputInterest(Arc::clone(&self.global_output_subscribers))
        });
        Subscription { rx: Some(self.global.subscribe()), entry: None, _output_interest: output_interest }
    }

    /// Number of executions with live viewers.
    pub fn watched(&self) -> usize {
        self.executions.lock().expect("hub lock").len()
    }

    pub(crate) fn release(&self, execution_id: &str, rx: Option<broadcast::Receiver<Live>>) {
        let mut map = self.executions.lock().expect("hub lock");
        drop(rx);
        if map.get(execution_id).is_some_and(|s| s.receiver_count() == 0) {
            map.remove(execution_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use squall_core::{OutputRecord, StreamKind, Timestamp};

    use super::*;
    use crate::{LiveRecord, Received, RecordSource, Subscription};

    fn record(seq: u64) -> Live {
        let record = OutputRecord {
            execution_id: "e".into(),
            seq,
            stream: StreamKind::Stdout,
            offset: 0,
            timestamp: Timestamp(0),
            host: None,
            line: None,
            data: Bytes::from_static(b"line\n"),
        };
        let source =
            RecordSource { action_ref: "p.a".into(), runner_ref: "r".into(), pack: "p".into(), action_name: "a".into(), user: "u".into() };
        Live::Record(Arc::new(LiveRecord::new(record, source)))
    }

    async fn next_seq(sub: &mut Subscription) -> Option<u64> {
        match tokio::time::timeout(Duration::from_millis(50), sub.recv()).await {
            Ok(Received::Event(Live::Record(r))) => Some(r.record.seq),
            _ => None,
        }
    }

    #[tokio::test]
    async fn output_reaches_the_global_channel_only_while_someone_wants_it() {
        let hub = Arc::new(Hub::default());
        let mut changes_only = hub.subscribe_all(false);
        hub.publish("e", record(1));
        assert_eq!(next_seq(&mut changes_only).await, None, "nobody asked for output: the global channel holds none");
        let mut with_output = hub.subscribe_all(true);
        hub.publish("e", record(2));
        assert_eq!(next_seq(&mut with_output).await, Some(2));
        assert_eq!(next_seq(&mut changes_only).await, Some(2), "a shared channel: others see it too and filter it");
        drop(with_output);
        hub.publish("e", record(3));
        assert_eq!(next_seq(&mut changes_only).await, None);
        let mut viewer = hub.subscribe_execution("e");
        hub.publish("e", record(4));
        assert_eq!(next_seq(&mut viewer).await, Some(4), "per-execution viewers always get output");
    }
}
