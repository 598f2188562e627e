//! A node's membership of a cluster: its lease in the store, the reaper that abandons what dead
//! runners held, and the sweeper that queues again work a dead node took or never queued.
//!
//! Every node renews its lease every `heartbeat`; a lease not renewed for `ttl` (judged by the
//! store's clock, never a node's) makes the node dead. Any node may reap: abandoning is a
//! compare-and-set in the store (status and note in one transaction), so two reapers cannot
//! both do it, and no leader is needed. A reaper arms only after a full `ttl` of working store
//! access, so an outage of the store (when nobody could renew) abandons nothing; the PostgreSQL
//! store also reports no expired lease within `ttl` of its own restart.
//!
//! A runner that learns it was declared dead (its renewal finds no lease: a paused VM, a long
//! partition) stops every process it runs and joins again under a new id; the store's fence
//! already refuses its output for the abandoned executions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use squall_core::{Execution, Status, Timestamp};
use squall_store::{ExecutionQuery, NodeRecord, SortOrder, Store, StoreError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Worker;
use crate::process::StopReason;

/// Lease timings (`[cluster]`).
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    /// How often a node renews its lease.
    pub heartbeat: Duration,
    /// How long a lease lasts without renewal.
    pub ttl: Duration,
}

/// How often the reaper looks for expired leases.
const REAP_EVERY: Duration = Duration::from_secs(1);
/// How often the sweeper looks for work that is not queued.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// A `requested` execution younger than this may still be on its way to the queue.
const SWEEP_AFTER: Duration = Duration::from_secs(10);
/// Executions the sweeper checks per pass, oldest first.
const SWEEP_BATCH: u64 = 200;

/// The statuses in which an execution belongs to the runner that claimed it.
const HELD: [Status; 4] = [Status::Delayed, Status::Scheduled, Status::Running, Status::Canceling];

/// One node's membership.
pub struct Membership {
    store: Arc<dyn Store>,
    /// The runner of this node, when it has the runner role.
    worker: Option<Arc<Worker>>,
    roles: String,
    node: Mutex<NodeRecord>,
    settings: LeaseSettings,
}

impl Membership {
    /// Registers this process as a node with `roles` (`api`, `runner`, `api,runner`).
    pub async fn join(
        store: Arc<dyn Store>,
        worker: Option<Arc<Worker>>,
        roles: &str,
        settings: LeaseSettings,
    ) -> Result<Arc<Membership>, StoreError> {
        let node = NodeRecord::this_process(roles);
        store.register_node(&node).await?;
        if let Some(w) = &worker {
            w.set_node(&node.id);
        }
        tracing::info!(node = %node.id, roles, "joined the cluster");
        Ok(Arc::new(Membership { store, worker, roles: roles.to_string(), node: Mutex::new(node), settings }))
    }

    pub fn node_id(&self) -> String {
        self.node.lock().expect("node lock").id.clone()
    }

    /// Renews the lease, reaps and sweeps until `stop` fires; then leaves the cluster.
    pub fn start(self: &Arc<Self>, stop: CancellationToken) {
        tokio::spawn(Arc::clone(self).renew(stop.clone()));
        if self.worker.is_some() {
            tokio::spawn(Arc::clone(self).reap(stop.clone()));
            tokio::spawn(Arc::clone(self).sweep(stop));
        }
    }

    /// Removes this node's lease (a clean shutdown: nothing of it needs reaping).
    pub async fn leave(&self) {
        let id = self.node_id();
        if let Err(e) = self.store.remove_node(&id).await {
            tracing::warn!(error = %e, "cannot remove this node's lease; it expires on its own");
        }
    }

    async fn renew(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let id = self.node_id();
            match self.store.renew_node(&id).await {
                Ok(true) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("lease renewed again");
                    }
                    self.stop_canceled_here(&id).await;
                }
                Ok(false) => self.declared_dead(&id).await,
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "cannot renew this node's lease; retrying");
                    }
                }
            }
        }
    }

    /// The lease is gone: other nodes abandoned what this one ran. Stop all of it, join again.
    async fn declared_dead(&self, id: &str) {
        tracing::error!(node = %id, "this node was declared dead (its lease expired); stopping its actions and joining again");
        if let Some(worker) = &self.worker {
            worker.stop_all(StopReason::Shutdown);
        }
        let node = NodeRecord::this_process(&self.roles);
        match self.store.register_node(&node).await {
            Ok(()) => {
                if let Some(worker) = &self.worker {
                    worker.set_node(&node.id);
                }
                tracing::info!(node = %node.id, "joined the cluster again");
                *self.node.lock().expect("node lock") = node;
            }
            Err(e) => tracing::warn!(error = %e, "cannot join the cluster again; retrying"),
        }
    }

    /// A cancel request sent over the bus can be lost; the store's `canceling` status cannot.
    async fn stop_canceled_here(&self, id: &str) {
        let Some(worker) = &self.worker else { return };
        let running = worker.running_ids();
        if running.is_empty() {
            return;
        }
        let query = ExecutionQuery { ids: Some(running), status: Some(Status::Canceling.as_str().into()), ..Default::default() };
        if let Ok((canceling, _)) = self.store.list_executions(&query).await {
            for e in canceling.iter().filter(|e| held_by(e, id)) {
                worker.stop_execution(&e.id, StopReason::Canceled);
            }
        }
    }

    async fn reap(self: Arc<Self>, stop: CancellationToken) {
        let worker = self.worker.clone().expect("reapers run on runner nodes");
        let mut tick = tokio::time::interval(REAP_EVERY);
        // Armed once the store has answered for a whole lease without a failure.
        let mut healthy_since: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let expired = match self.store.expired_nodes(self.settings.ttl).await {
                Ok(expired) => expired,
                Err(_) => {
                    healthy_since = None;
                    continue;
                }
            };
            let since = *healthy_since.get_or_insert_with(Instant::now);
            if since.elapsed() < self.settings.ttl {
                continue;
            }
            let me = self.node_id();
            for dead in expired.into_iter().filter(|n| n.id != me) {
                if let Err(e) = self.bury(&worker, &dead).await {
                    tracing::warn!(node = %dead.id, error = %e, "cannot abandon a dead node's executions; retrying");
                    healthy_since = None;
                }
            }
        }
    }

    /// Abandons every execution `dead` held, then removes its lease.
    async fn bury(&self, worker: &Worker, dead: &NodeRecord) -> Result<(), StoreError> {
        let message = format!(
            "runner node {} on {} (pid {}) was lost: its lease was last renewed at {}; execution abandoned",
            dead.id,
            dead.hostname,
            dead.pid,
            dead.heartbeat.to_iso()
        );
        let held: Vec<Execution> = self.store.executions_with_status(&HELD).await?.into_iter().filter(|e| held_by(e, &dead.id)).collect();
        tracing::warn!(node = %dead.id, host = %dead.hostname, executions = held.len(), "a node's lease expired");
        for e in held {
            worker.abandon(e, &message).await?;
        }
        self.store.remove_node(&dead.id).await?;
        Ok(())
    }

    async fn sweep(self: Arc<Self>, stop: CancellationToken) {
        let worker = self.worker.clone().expect("sweepers run on runner nodes");
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let before = Timestamp(Timestamp::now().micros() - SWEEP_AFTER.as_micros() as i64);
            let query = ExecutionQuery {
                status: Some(Status::Requested.as_str().into()),
                start_before: Some(before),
                order: SortOrder::OldestFirst,
                limit: Some(SWEEP_BATCH),
                ..Default::default()
            };
            let Ok((waiting, _)) = self.store.list_executions(&query).await else { continue };
            for e in waiting {
                if worker.requeue_if_missing(&e.id).await {
                    tracing::info!(execution = %e.id, "queued again: it was requested but not waiting in the queue");
                }
            }
        }
    }
}

/// Whether `e` was claimed by node `node_id`.
fn held_by(e: &Execution, node_id: &str) -> bool {
    e.runner_info.as_ref().and_then(|i| i.get("node")).and_then(|n| n.as_str()) == Some(node_id)
}
