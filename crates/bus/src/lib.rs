//! Live delivery and work distribution. [`Bus`] carries committed output records and execution
//! changes to viewers, and cancel requests to runners; [`WorkQueue`] hands executions to
//! runners. [`LocalBus`] and [`LocalQueue`] are the in-process backends of `squall server`;
//! [`NatsBus`] and [`JetStreamQueue`] connect the nodes of a cluster.

mod frame;
mod hub;
mod jetstream;
pub mod lifecycle;
mod local;
mod nats;
mod queue;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use squall_core::{Execution, OutputRecord};
use tokio::sync::broadcast;

pub use hub::Hub;
pub use jetstream::JetStreamQueue;
pub use local::LocalBus;
pub use nats::{BusError, NatsBus, NatsConnection, NatsSettings};
pub use queue::{LocalQueue, WorkQueue};

/// A committed output record on its way to viewers. Each wire encoding is computed by the first
/// viewer that needs it and shared by all the others ("encode once, write many").
#[derive(Debug)]
pub struct LiveRecord {
    pub record: OutputRecord,
    pub source: RecordSource,
    /// One slot per wire format (the HTTP layer decides what the formats are).
    pub encoded: [OnceLock<Bytes>; 3],
}

impl LiveRecord {
    pub fn new(record: OutputRecord, source: RecordSource) -> LiveRecord {
        LiveRecord { record, source, encoded: Default::default() }
    }
}

/// What a viewer needs to know about the execution a record belongs to (StackStorm's output
/// events name the action and runner).
#[derive(Debug, Clone)]
pub struct RecordSource {
    pub action_ref: Arc<str>,
    pub runner_ref: Arc<str>,
    pub pack: Arc<str>,
    pub action_name: Arc<str>,
    /// Who started the execution (for per-event authorisation).
    pub user: Arc<str>,
}

impl RecordSource {
    pub fn of(execution: &Execution) -> RecordSource {
        RecordSource {
            action_ref: execution.action.ref_.as_str().into(),
            runner_ref: execution.runner.name.as_str().into(),
            pack: execution.action.pack.as_str().into(),
            action_name: execution.action.name.as_str().into(),
            user: execution.user().into(),
        }
    }
}

/// Whether an execution event announces a new execution or a change to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Create,
    Update,
}

/// An execution as it was just stored, with its shared wire encoding.
#[derive(Debug)]
pub struct ExecutionChange {
    pub kind: ChangeKind,
    pub execution: Execution,
    pub encoded: OnceLock<Bytes>,
}

/// One live event.
#[derive(Debug, Clone)]
pub enum Live {
    Record(Arc<LiveRecord>),
    Execution(Arc<ExecutionChange>),
}

/// What a subscriber gets when it asks for the next event.
#[derive(Debug)]
pub enum Received {
    Event(Live),
    /// The subscriber fell behind and `n` events went by; it must catch up from the store.
    Lagged(u64),
    /// The bus is shutting down.
    Closed,
}

/// A subscription to live events. Each subscriber has a bounded queue: one that falls behind
/// is told so ([`Received::Lagged`]) instead of slowing the publisher.
pub struct Subscription {
    rx: Option<broadcast::Receiver<Live>>,
    /// For per-execution subscriptions: the hub entry to release when the last one goes.
    entry: Option<(Arc<Hub>, String)>,
    /// For global subscriptions that asked for output records.
    _output_interest: Option<hub::OutputInterest>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Received {
        let Some(rx) = self.rx.as_mut() else { return Received::Closed };
        match rx.recv().await {
            Ok(ev) => Received::Event(ev),
            Err(broadcast::error::RecvError::Lagged(n)) => Received::Lagged(n),
            Err(broadcast::error::RecvError::Closed) => Received::Closed,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some((hub, id)) = self.entry.take() {
            hub.release(&id, self.rx.take());
        }
    }
}

/// The live bus boundary. Publishers call it only after the data is committed to the store
/// (invariant: commit, then publish).
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes committed output records (all of one execution, in `seq` order).
    async fn publish_output(&self, source: &RecordSource, records: Vec<OutputRecord>);

    /// Publishes a stored execution change.
    async fn publish_execution(&self, kind: ChangeKind, execution: Execution);

    /// Live events of one execution: its output records and its changes.
    async fn subscribe_execution(&self, execution_id: &str) -> Subscription;

    /// Every execution's changes, and every output record when `with_output` (records are
    /// carried on the all-executions channel only while such a subscriber exists).
    async fn subscribe_all(&self, with_output: bool) -> Subscription;

    /// Asks whichever runner holds `execution_id` to stop it.
    async fn request_cancel(&self, execution_id: &str);

    /// Cancel requests, for runners.
    async fn cancel_requests(&self) -> broadcast::Receiver<String>;

    /// Number of executions that currently have live per-execution state (viewers).
    fn live_executions(&self) -> usize;
}
