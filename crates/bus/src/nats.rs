//! The NATS bus of a cluster: live events between nodes over NATS core pub/sub.
//!
//! Subjects (`<prefix>` from `[messaging] prefix`):
//! * `<prefix>.out.<execution id>` — committed output records ([`frame`](crate::frame)),
//!   published by the runner after each commit;
//! * `<prefix>.exec.<execution id>` — execution changes, published by whoever stored them;
//! * `<prefix>.cancel` — cancel requests, to every runner (the one holding it acts).
//!
//! A subscription counts as taken once the server confirmed it ([`NatsConnection::sync`]), so
//! *subscribe, then replay* holds across nodes. NATS core is at-most-once: a message can be lost (a slow consumer, a reconnect, a full
//! publish queue). The store is the truth, so every node heals what it forwards to its
//! viewers: a node subscribes to an execution's output only while it has viewers of it (a
//! *watch*), forwards records in `seq` order and reads from the store whatever a gap, a
//! too-large record, a reconnect or a quiet second leaves unexplained. A quiet second also
//! rereads the execution, so a lost final status cannot leave a viewer waiting.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use squall_core::output::StreamFilter;
use squall_core::{Execution, OutputRecord};
use squall_store::Store;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::frame::{self, OutputFrame};
use crate::{Bus, ChangeKind, ExecutionChange, Hub, Live, LiveRecord, RecordSource, Subscription};

/// After this long without a message for a watched execution, its node checks the store.
const QUIET: Duration = Duration::from_secs(1);
/// Messages waiting to be published; beyond this, new ones are dropped (and healed by viewers'
/// nodes): a NATS outage must not block the action that produces the output.
const PUBLISH_QUEUE: usize = 4096;
/// Records read from the store per heal query.
const HEAL_PAGE: u32 = 64;

/// How to reach NATS (`[messaging]`).
#[derive(Debug, Clone, Default)]
pub struct NatsSettings {
    /// `nats://host:4222` (several, comma-separated, for a NATS cluster; `tls://` for TLS).
    /// User and password may be part of the URL.
    pub url: String,
    /// Prefix of every subject and stream: deployments sharing one NATS server differ here.
    pub prefix: String,
    /// Connection name shown by the NATS server.
    pub name: String,
    /// CA certificates to verify the server with (PEM).
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Require TLS even when the URL does not say `tls://`.
    pub tls_required: bool,
    /// A NATS `.creds` file (JWT and NKey).
    pub credentials_file: Option<PathBuf>,
    /// A token for servers that authenticate with one.
    pub token: Option<String>,
}

/// Why the NATS backends could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("{0}")]
    Config(String),
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("JetStream: {0}")]
    JetStream(String),
}

/// One connection to NATS, shared by the bus and the work queue, with the events that tell
/// the bus to heal (a reconnect, a subscription that dropped messages).
#[derive(Clone)]
pub struct NatsConnection {
    pub(crate) client: async_nats::Client,
    pub(crate) prefix: String,
    /// The server's largest message.
    max_payload: usize,
    resyncs: broadcast::Sender<()>,
}

impl NatsConnection {
    pub async fn connect(settings: &NatsSettings) -> Result<NatsConnection, BusError> {
        let prefix = settings.prefix.clone();
        if prefix.is_empty()
            || !prefix.split('.').all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        {
            return Err(BusError::Config(format!("[messaging] prefix {prefix:?}: use letters, digits, '_', '-', and '.' between words")));
        }
        let (resyncs, _) = broadcast::channel(16);
        let events = resyncs.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name(&settings.name)
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("connected to NATS");
                            let _ = events.send(());
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            tracing::warn!("a NATS subscription dropped messages; viewers are caught up from the store");
                            let _ = events.send(());
                        }
                        async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                        other => tracing::warn!("NATS: {other}"),
                    }
                }
            });
        if let Some(ca) = &settings.tls_ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        match (&settings.tls_cert_file, &settings.tls_key_file) {
            (Some(cert), Some(key)) => options = options.add_client_certificate(cert.clone(), key.clone()),
            (None, None) => {}
            _ => return Err(BusError::Config("[messaging] tls_cert_file and tls_key_file go together".into())),
        }
        if settings.tls_required {
            options = options.require_tls(true);
        }
        if let Some(path) = &settings.credentials_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| BusError::Config(format!("[messaging] credentials_file {}: {e}", path.display())))?;
        }
        if let Some(token) = &settings.token {
            options = options.token(token.clone());
        }
        let client = options
            .connect(settings.url.as_str())
            .await
            .map_err(|e| BusError::Connect { url: squall_core::auth::redact_url(&settings.url), message: e.to_string() })?;
        let max_payload = client.server_info().max_payload.max(64 * 1024);
        Ok(NatsConnection { client, prefix, max_payload, resyncs })
    }

    /// Returns once the server has processed everything this connection sent before, such as
    /// a subscription (a flush only empties the socket buffer): a request to a subject nobody
    /// serves is answered by the server itself, after what came before it.
    pub(crate) async fn sync(&self) {
        let subject = format!("{}.sync.{}", self.prefix, squall_core::id::new_id());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.request(subject, Bytes::new())).await;
    }

    pub(crate) fn subject(&self, kind: &str, id: &str) -> String {
        format!("{}.{kind}.{id}", self.prefix)
    }
}

/// An execution this node follows on NATS because it has viewers of it.
struct Watch {
    /// Set once the subscription is active at the server (and so before a viewer replays).
    ready: watch::Receiver<bool>,
    /// A final status has reached this node's viewers.
    ended: AtomicBool,
}

/// The bus of one node of a cluster.
pub struct NatsBus {
    inner: Arc<Inner>,
}

struct Inner {
    conn: NatsConnection,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    watches: Mutex<HashMap<String, Arc<Watch>>>,
    /// While every execution's output is forwarded to global subscribers: whether that
    /// subscription is active at the server yet.
    global_output: Mutex<Option<watch::Receiver<bool>>>,
    cancels: broadcast::Sender<String>,
    outgoing: mpsc::Sender<(String, Bytes)>,
    dropped: std::sync::atomic::AtomicU64,
}

impl NatsBus {
    /// Starts the node's subscriptions to execution changes and cancel requests, and its
    /// publisher. `store` is where viewers' gaps are healed from.
    pub async fn start(conn: NatsConnection, store: Arc<dyn Store>) -> Result<NatsBus, BusError> {
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        let inner = Arc::new(Inner {
            conn,
            store,
            hub: Arc::new(Hub::default()),
            watches: Mutex::new(HashMap::new()),
            global_output: Mutex::new(None),
            cancels: broadcast::channel(1024).0,
            outgoing,
            dropped: Default::default(),
        });
        let subscribe = |subject: String| {
            let client = inner.conn.client.clone();
            async move { client.subscribe(subject.clone()).await.map_err(|e| BusError::Connect { url: subject, message: e.to_string() }) }
        };
        let changes = subscribe(format!("{}.exec.*", inner.conn.prefix)).await?;
        let cancels = subscribe(format!("{}.cancel", inner.conn.prefix)).await?;
        inner.conn.sync().await;
        tokio::spawn(Arc::clone(&inner).dispatch_changes(changes));
        tokio::spawn(Arc::clone(&inner).dispatch_cancels(cancels));
        tokio::spawn(publisher(inner.conn.client.clone(), queue));
        Ok(NatsBus { inner })
    }
}

/// Publishes queued messages in order.
async fn publisher(client: async_nats::Client, mut queue: mpsc::Receiver<(String, Bytes)>) {
    while let Some((subject, payload)) = queue.recv().await {
        if let Err(e) = client.publish(subject, payload).await {
            tracing::warn!(error = %e, "cannot publish to NATS; viewers are caught up from the store");
        }
    }
}

impl Inner {
    fn enqueue(&self, subject: String, payload: Bytes) {
        if self.outgoing.try_send((subject, payload)).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_power_of_two() {
                tracing::warn!(dropped = dropped + 1, "the NATS publish queue is full; live events are dropped and viewers read the store");
            }
        }
    }

    async fn dispatch_changes(self: Arc<Self>, mut sub: async_nats::Subscriber) {
        while let Some(message) = sub.next().await {
            // Most changes concern executions nobody on this node follows: skip their decoding.
            let id = message.subject.rsplit('.').next().unwrap_or_default();
            if !self.hub.has_global_subscribers() && !self.hub.is_watched(id) {
                continue;
            }
            let Some((kind, execution)) = frame::decode_change(&message.payload) else {
                tracing::warn!(subject = %message.subject, "ignored a malformed execution change");
                continue;
            };
            let id = execution.id.clone();
            if execution.status.is_terminal()
                && let Some(watch) = self.watches.lock().expect("watches lock").get(&id)
            {
                watch.ended.store(true, Ordering::SeqCst);
            }
            self.hub.publish(&id, change(kind, execution));
        }
    }

    async fn dispatch_cancels(self: Arc<Self>, mut sub: async_nats::Subscriber) {
        while let Some(message) = sub.next().await {
            if let Ok(id) = std::str::from_utf8(&message.payload) {
                let _ = self.cancels.send(id.to_string());
            }
        }
    }

    /// Follows one execution's output on NATS while this node has viewers of it.
    async fn watch(self: Arc<Self>, id: String, watch: Arc<Watch>, ready: watch::Sender<bool>) {
        let subject = self.conn.subject("out", &id);
        let sub = self.conn.client.subscribe(subject).await;
        // Once the subscription is active at the server, every record committed later reaches
        // it: only then may viewers replay the store.
        self.conn.sync().await;
        let mut sub = match sub {
            Ok(sub) => Some(sub),
            Err(e) => {
                tracing::warn!(execution = %id, error = %e, "cannot subscribe to live output; viewers read the store each second");
                None
            }
        };
        let mut follower = Follower { inner: &self, id: &id, forwarded: 0, source: None };
        follower.forwarded = self.store.last_seq(&id).await.unwrap_or(0);
        let _ = ready.send(true);
        let mut resyncs = self.conn.resyncs.subscribe();
        let mut last_message = Instant::now();
        let quiet = tokio::time::sleep(QUIET);
        tokio::pin!(quiet);
        loop {
            tokio::select! {
                message = async { match sub.as_mut() { Some(s) => s.next().await, None => std::future::pending().await } } => {
                    let Some(message) = message else { break };
                    last_message = Instant::now();
                    follower.on_message(message.payload).await;
                }
                resync = resyncs.recv() => {
                    if !matches!(resync, Err(broadcast::error::RecvError::Closed)) {
                        follower.heal().await;
                    }
                }
                () = &mut quiet => {
                    if self.unwatch_if_idle(&id) {
                        break;
                    }
                    if last_message.elapsed() >= QUIET && !watch.ended.load(Ordering::SeqCst) {
                        follower.check_store(&watch).await;
                    }
                    let now = Instant::now();
                    quiet.as_mut().reset(if last_message + QUIET > now { last_message + QUIET } else { now + QUIET });
                }
            }
        }
    }

    /// Removes the watch of `id` when nobody on this node views it any more.
    fn unwatch_if_idle(&self, id: &str) -> bool {
        let mut watches = self.watches.lock().expect("watches lock");
        if self.hub.is_watched(id) {
            return false;
        }
        watches.remove(id);
        true
    }

    /// Forwards every execution's output to global subscribers that asked for it, while any do
    /// (at most once: a lost message is not healed on this channel).
    async fn global_output(self: Arc<Self>, ready: watch::Sender<bool>) {
        let sub = self.conn.client.subscribe(format!("{}.out.*", self.conn.prefix)).await;
        self.conn.sync().await;
        let _ = ready.send(true);
        let mut sub = match sub {
            Ok(sub) => sub,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to live output for the event stream");
                *self.global_output.lock().expect("global output lock") = None;
                return;
            }
        };
        let mut tick = tokio::time::interval(QUIET);
        loop {
            tokio::select! {
                message = sub.next() => {
                    let Some(message) = message else { break };
                    let Some(id) = message.subject.rsplit('.').next().map(str::to_string) else { continue };
                    if let Some(frame) = frame::decode_output(&id, message.payload) {
                        for record in frame.records {
                            self.hub.publish_global(Live::Record(Arc::new(LiveRecord::new(record, frame.source.clone()))));
                        }
                    }
                }
                _ = tick.tick() => {
                    let mut running = self.global_output.lock().expect("global output lock");
                    if !self.hub.wants_global_output() {
                        *running = None;
                        return;
                    }
                }
            }
        }
        *self.global_output.lock().expect("global output lock") = None;
    }
}

/// The forwarding state of one watch: the last `seq` handed to this node's viewers.
struct Follower<'a> {
    inner: &'a Inner,
    id: &'a str,
    forwarded: u64,
    source: Option<RecordSource>,
}

impl Follower<'_> {
    async fn on_message(&mut self, payload: Bytes) {
        let Some(OutputFrame { source, records, omitted }) = frame::decode_output(self.id, payload) else {
            tracing::warn!(execution = %self.id, "ignored a malformed output frame");
            return;
        };
        self.source.get_or_insert(source);
        for record in records {
            if record.seq > self.forwarded + 1 {
                // Something before this record did not arrive here: the store has it.
                self.heal().await;
            }
            if record.seq == self.forwarded + 1 {
                self.forward(record);
            }
        }
        if !omitted.is_empty() {
            self.heal().await;
        }
    }

    fn forward(&mut self, record: OutputRecord) {
        let source = self.source.clone().expect("a source before any record");
        self.forwarded = record.seq;
        self.inner.hub.publish_to_execution(self.id, Live::Record(Arc::new(LiveRecord::new(record, source))));
    }

    /// Forwards whatever the store has after `forwarded`.
    async fn heal(&mut self) {
        if self.source.is_none() {
            match self.inner.store.execution(self.id).await {
                Ok(Some(e)) => self.source = Some(RecordSource::of(&e)),
                _ => return,
            }
        }
        loop {
            let page = match self.inner.store.read_output(self.id, self.forwarded, StreamFilter::All, HEAL_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(execution = %self.id, error = %e, "cannot read output to catch viewers up; retrying");
                    return;
                }
            };
            if page.is_empty() {
                return;
            }
            for record in page {
                self.forward(record);
            }
        }
    }

    /// A quiet second: the store may know of records or a final status that NATS lost.
    async fn check_store(&mut self, watch: &Watch) {
        let Ok(Some(execution)) = self.inner.store.execution(self.id).await else { return };
        self.heal().await;
        if execution.status.is_terminal() && !watch.ended.swap(true, Ordering::SeqCst) {
            self.inner.hub.publish_to_execution(self.id, change(ChangeKind::Update, execution));
        }
    }
}

fn change(kind: ChangeKind, execution: Execution) -> Live {
    Live::Execution(Arc::new(ExecutionChange { kind, execution, encoded: OnceLock::new() }))
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish_output(&self, source: &RecordSource, records: Vec<OutputRecord>) {
        let Some(first) = records.first() else { return };
        let subject = self.inner.conn.subject("out", &first.execution_id);
        for message in frame::encode_output(source, &records, self.inner.conn.max_payload) {
            self.inner.enqueue(subject.clone(), message);
        }
    }

    async fn publish_execution(&self, kind: ChangeKind, execution: Execution) {
        let subject = self.inner.conn.subject("exec", &execution.id);
        self.inner.enqueue(subject, frame::encode_change(kind, &execution));
    }

    async fn subscribe_execution(&self, execution_id: &str) -> Subscription {
        let (subscription, watch) = {
            let mut watches = self.inner.watches.lock().expect("watches lock");
            let subscription = self.inner.hub.subscribe_execution(execution_id);
            let watch = match watches.get(execution_id) {
                Some(w) => Arc::clone(w),
                None => {
                    let (ready_tx, ready) = watch::channel(false);
                    let w = Arc::new(Watch { ready, ended: AtomicBool::new(false) });
                    watches.insert(execution_id.to_string(), Arc::clone(&w));
                    tokio::spawn(Arc::clone(&self.inner).watch(execution_id.to_string(), Arc::clone(&w), ready_tx));
                    w
                }
            };
            (subscription, watch)
        };
        let mut ready = watch.ready.clone();
        let _ = ready.wait_for(|ready| *ready).await;
        subscription
    }

    async fn subscribe_all(&self, with_output: bool) -> Subscription {
        let subscription = self.inner.hub.subscribe_all(with_output);
        if with_output {
            let mut ready = {
                let mut running = self.inner.global_output.lock().expect("global output lock");
                running
                    .get_or_insert_with(|| {
                        let (tx, rx) = watch::channel(false);
                        tokio::spawn(Arc::clone(&self.inner).global_output(tx));
                        rx
                    })
                    .clone()
            };
            let _ = ready.wait_for(|ready| *ready).await;
        }
        subscription
    }

    async fn request_cancel(&self, execution_id: &str) {
        let subject = format!("{}.cancel", self.inner.conn.prefix);
        self.inner.enqueue(subject, Bytes::from(execution_id.to_string()));
    }

    async fn cancel_requests(&self) -> broadcast::Receiver<String> {
        self.inner.cancels.subscribe()
    }

    fn live_executions(&self) -> usize {
        self.inner.hub.watched()
    }
}
