//! The fan-out hub: per-execution channels shared by every viewer of that execution on this
//! node, plus one channel for everything.

use std::collections::HashMap;
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
pub struct Hub {
    executions: Mutex<HashMap<String, broadcast::Sender<Live>>>,
    global: broadcast::Sender<Live>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub { executions: Mutex::new(HashMap::new()), global: broadcast::channel(GLOBAL_QUEUE).0 }
    }
}

impl Hub {
    /// Delivers an event of `execution_id` to its viewers and to global subscribers.
    pub fn publish(&self, execution_id: &str, event: Live) {
        let sender = self.executions.lock().expect("hub lock").get(execution_id).cloned();
        if let Some(sender) = sender {
            let _ = sender.send(event.clone());
        }
        let _ = self.global.send(event);
    }

    pub fn subscribe_execution(self: &Arc<Self>, execution_id: &str) -> Subscription {
        let mut map = self.executions.lock().expect("hub lock");
        let rx = map.entry(execution_id.to_string()).or_insert_with(|| broadcast::channel(EXECUTION_QUEUE).0).subscribe();
        Subscription { rx: Some(rx), entry: Some((Arc::clone(self), execution_id.to_string())) }
    }

    pub fn subscribe_all(&self) -> Subscription {
        Subscription { rx: Some(self.global.subscribe()), entry: None }
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
