//! The runner role: takes executions off the work queue, moves them through their statuses,
//! runs them, and records how they ended. Also start-up recovery and graceful shutdown.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use squall_bus::{Bus, ChangeKind, WorkQueue};
use squall_core::sealed::SealingKey;
use squall_core::shell::{Exit, shell_result, status_for};
use squall_core::{Execution, OutputStats, Status, StreamKind, mask, params};
use squall_store::{Store, StoreError, TokenRecord};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::chain::ChainContext;
use crate::content::Content;
use crate::local::{LocalContext, build_job};
use crate::process::{StopReason, Stopper, supervise};
use crate::python::PythonContext;
use crate::remote::{RemoteContext, SshSettings};
use crate::run_as::ActionUser;
use crate::writer::LogWriter;

/// Runner settings, from the `[actionrunner]` configuration section.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Executions run at once (`actions_pool_size`).
    pub pool_size: usize,
    /// Time between SIGTERM and SIGKILL when an action is stopped.
    pub kill_grace: Duration,
    /// Publish output live (`stream_output`).
    pub stream_output: bool,
    /// Bytes of each stream kept in `result.stdout` / `result.stderr` (head and tail).
    pub result_max_bytes: usize,
    /// Public API URL handed to actions as `ST2_ACTION_API_URL`.
    pub api_url: String,
    /// Names of the server's environment variables actions inherit.
    pub env_allowlist: Vec<String>,
    /// Secret values shorter than this are not masked in output.
    pub mask_min_length: usize,
    /// Lifetime of `ST2_ACTION_AUTH_TOKEN`, seconds (it is revoked when the execution ends).
    pub service_token_ttl: u64,
    /// Store the service token so the API accepts it. Off when authentication is off: nothing
    /// checks tokens then, and each execution saves two store writes.
    pub store_service_tokens: bool,
    /// Most output bytes stored per execution (0: unlimited); see `LogWriter::limit`.
    pub max_output_bytes: u64,
    /// The remote runners' settings.
    pub ssh: SshSettings,
    /// Opens the execution's sealed secret values to run it.
    pub sealing: SealingKey,
    /// Who local actions run as (`[system_user] user`, or the server's own user).
    pub action_user: ActionUser,
}

/// How an execution ended, as the runner saw it.
pub struct Outcome {
    pub status: Status,
    pub result: Value,
    pub output: Option<OutputStats>,
    /// Child executions a workflow started.
    pub children: Vec<String>,
}

impl Outcome {
    fn ended(status: Status, result: Value, output: Option<OutputStats>) -> Outcome {
        Outcome { status, result, output, children: Vec::new() }
    }

    fn failed(result: Value) -> Outcome {
        Outcome { status: Status::Failed, result, output: None, children: Vec::new() }
    }
}

/// Chunks in flight between capture and the log writer. When full, capture stops reading.
const CAPTURE_QUEUE: usize = 16;

/// What every process-running action gets: resolved parameters, the environment (with its
/// service token), secret parameter names, and the values masked in its output.
struct Run<'a> {
    resolved: &'a params::Resolved,
    env: BTreeMap<String, String>,
    secrets: &'a [String],
    masked: &'a [String],
}

/// One runner: a pool of execution slots fed by the work queue.
pub struct Worker {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    queue: Arc<dyn WorkQueue>,
    content: Arc<Content>,
    settings: RunnerSettings,
    running: Mutex<HashMap<String, Arc<Stopper>>>,
    tasks: TaskTracker,
    /// This runner's node id in a cluster (recorded in `runner_info.node` of what it claims,
    /// so the reaper knows whose executions to abandon); empty on the embedded backends.
    node: Mutex<String>,
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        queue: Arc<dyn WorkQueue>,
        content: Arc<Content>,
        settings: RunnerSettings,
    ) -> Arc<Worker> {
        Arc::new(Worker {
            store,
            bus,
            queue,
            content,
            settings,
            running: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            node: Mutex::new(String::new()),
        })
    }

    /// Sets the node id this runner claims executions under.
    pub fn set_node(&self, node_id: &str) {
        *self.node.lock().expect("node lock") = node_id.to_string();
    }

    /// The ids of the executions this runner is running now.
    pub fn running_ids(&self) -> Vec<String> {
        self.running.lock().expect("running lock").keys().cloned().collect()
    }

    /// Queues `id` again if the work queue lost it (see [`WorkQueue::requeue_if_missing`]).
    pub async fn requeue_if_missing(&self, id: &str) -> bool {
        self.queue.requeue_if_missing(id).await
    }

    /// Stops every execution this runner runs (its node was declared dead: they were
    /// abandoned, and nothing of them may go on).
    pub fn stop_all(&self, reason: StopReason) {
        for stopper in self.running.lock().expect("running lock").values() {
            stopper.stop(reason);
        }
    }

    /// Start-up recovery for a single-node deployment: executions a dead process left
    /// `running` or `canceling` become `abandoned`; waiting ones are queued again.
    pub async fn recover(&self) -> Result<(), StoreError> {
        for e in self.store.executions_with_status(&[Status::Running, Status::Canceling]).await? {
            let message = "squall stopped while this execution was running; its process did not survive the restart";
            self.abandon(e, message).await?;
        }
        for e in self.store.executions_with_status(&[Status::Requested, Status::Scheduled, Status::Delayed]).await? {
            self.queue.push(e.id).await;
        }
        Ok(())
    }

    /// Marks `e` abandoned with `message` (in its result, its status log and, as the last
    /// record, its output), unless someone else changed it first; publishes what changed.
    pub async fn abandon(&self, mut e: Execution, message: &str) -> Result<bool, StoreError> {
        let before = e.status;
        e.result = Some(json!({"error": message}));
        e.transition(Status::Abandoned, Some(message.to_string()));
        let Some(note) = self.store.abandon(&e, before, &format!("{message}\n")).await? else { return Ok(false) };
        tracing::warn!(execution = %e.id, "{message}");
        self.bus.publish_output(&squall_bus::RecordSource::of(&e), vec![note]).await;
        self.bus.publish_execution(ChangeKind::Update, e).await;
        Ok(true)
    }

    /// Runs the dispatch loop and the cancel listener until `stop` fires.
    pub fn start(self: &Arc<Self>, stop: CancellationToken) {
        let worker = Arc::clone(self);
        let cancel_stop = stop.clone();
        tokio::spawn(async move {
            let mut requests = worker.bus.cancel_requests().await;
            loop {
                tokio::select! {
                    _ = cancel_stop.cancelled() => break,
                    id = requests.recv() => match id {
                        Ok(id) => worker.stop_execution(&id, StopReason::Canceled),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    },
                }
            }
        });
        let worker = Arc::clone(self);
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(worker.settings.pool_size.max(1)));
            loop {
                let permit = tokio::select! {
                    _ = stop.cancelled() => break,
                    permit = Arc::clone(&slots).acquire_owned() => permit.expect("semaphore open"),
                };
                let id = tokio::select! {
                    _ = stop.cancelled() => break,
                    id = worker.queue.pop() => match id { Some(id) => id, None => break },
                };
                let w = Arc::clone(&worker);
                worker.tasks.spawn(async move {
                    if let Err(e) = w.run(&id, permit).await {
                        tracing::error!(execution = %id, error = %e, "execution failed in storage");
                    }
                });
            }
        });
    }

    /// Graceful shutdown: lets running executions finish within `grace`, then stops the rest;
    /// they end `abandoned`.
    pub async fn shutdown(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            let ids: Vec<String> = self.running.lock().expect("running lock").keys().cloned().collect();
            tracing::warn!(count = ids.len(), "grace period over; stopping running executions");
            for id in ids {
                self.stop_execution(&id, StopReason::Shutdown);
            }
            self.tasks.wait().await;
        }
    }

    pub fn stop_execution(&self, id: &str, reason: StopReason) {
        if let Some(stopper) = self.running.lock().expect("running lock").get(id) {
            stopper.stop(reason);
        }
    }

    /// Moves `e` from `from` to `to` if nobody else changed it meanwhile, and publishes it. While
    /// the store is unreachable it keeps trying (a status must not be lost to a restart of the
    /// database); an update that committed just before the connection dropped counts as done.
    async fn advance(&self, e: &mut Execution, to: Status, message: Option<String>) -> Result<bool, StoreError> {
        let from = e.status;
        e.transition(to, message);
        let moved = crate::retry::persist("store a status", || async {
            match self.store.update_execution(e, from).await {
                Err(err) if err.is_transient() => match self.store.execution(&e.id).await {
                    Ok(Some(stored)) if stored == *e => Ok(true),
                    _ => Err(err),
                },
                other => other,
            }
        })
        .await?;
        if moved {
            log_change(e);
            self.bus.publish_execution(ChangeKind::Update, e.clone()).await;
        }
        Ok(moved)
    }

    /// Runs execution `id`, holding one of the pool's slots (`slot`) while it runs a process. A
    /// workflow gives its slot back once running: it only waits for its tasks, which need
    /// slots of their own (with one slot, a chain holding it would wait forever).
    async fn run(&self, id: &str, slot: OwnedSemaphorePermit) -> Result<(), StoreError> {
        let Some(mut e) = self.store.execution(id).await? else { return Ok(()) };
        if let Some(delay) = e.delay {
            if e.status == Status::Requested {
                e.runner_info = Some(self.runner_info());
                if !self.advance(&mut e, Status::Delayed, None).await? {
                    return Ok(());
                }
            }
            // Measured from the request, so a restart does not start the delay over.
            let due = e.start_timestamp.micros() + delay as i64 * 1000;
            let wait = (due - squall_core::Timestamp::now().micros()).max(0) as u64;
            tokio::time::sleep(Duration::from_micros(wait)).await;
            match self.store.execution(id).await? {
                Some(current) if current.status == Status::Delayed => e = current,
                _ => return Ok(()), // canceled while waiting
            }
        }
        if !matches!(e.status, Status::Requested | Status::Delayed) {
            return Ok(());
        }
        e.runner_info = Some(self.runner_info());
        if !self.advance(&mut e, Status::Scheduled, None).await? {
            return Ok(());
        }
        let stopper = Arc::new(Stopper::default());
        self.running.lock().expect("running lock").insert(e.id.clone(), Arc::clone(&stopper));
        let running = self.advance(&mut e, Status::Running, None).await?;
        let slot = (!e.is_workflow()).then_some(slot);
        let outcome = if running { Some(self.execute(&e, &stopper).await) } else { None };
        drop(slot);
        self.running.lock().expect("running lock").remove(&e.id);
        match outcome {
            Some(Ok(outcome)) => self.finish(e, outcome).await,
            // Fenced: the execution was abandoned (its runner was declared dead).
            Some(Err(StoreError::Ended { .. })) | None => Ok(()),
            Some(Err(err)) => {
                let message = format!("squall could not store this execution's output: {err}");
                if let Some(current) = self.store.execution(&e.id).await?.filter(|c| !c.status.is_terminal()) {
                    self.abandon(current, &message).await?;
                }
                Err(err)
            }
        }
    }

    /// Where an execution runs: this process, and its node in a cluster.
    fn runner_info(&self) -> Value {
        let mut info = json!({"hostname": hostname(), "pid": std::process::id()});
        let node = self.node.lock().expect("node lock").clone();
        if !node.is_empty() {
            info["node"] = Value::String(node);
        }
        info
    }

    /// Runs the action and returns its final status and result. Actions that run a process get
    /// a service token (`ST2_ACTION_AUTH_TOKEN`), revoked when they end.
    async fn execute(&self, e: &Execution, stopper: &Arc<Stopper>) -> Result<Outcome, StoreError> {
        let parameters = match self.settings.sealing.open(&e.id, &e.runner, &e.action, &e.parameters) {
            Ok(p) => p,
            Err(err) => return Ok(Outcome::failed(json!({"error": err.to_string()}))),
        };
        let resolved = match params::resolve(&e.runner, &e.action, &parameters) {
            Ok(r) => r,
            Err(err) => return Ok(Outcome::failed(json!({"error": err.0}))),
        };
        if e.runner.name == "noop" {
            return Ok(Outcome::ended(Status::Succeeded, shell_result(Exit::Code(0), "", ""), None));
        }
        if e.runner.name == "action-chain" {
            let ctx = ChainContext {
                store: &*self.store,
                bus: &*self.bus,
                queue: &*self.queue,
                content: &self.content,
                sealing: &self.settings.sealing,
            };
            let chain = crate::chain::execute(&ctx, e, &resolved, stopper).await?;
            return Ok(Outcome { status: chain.status, result: chain.result, output: None, children: chain.children });
        }
        let secrets = params::secret_names(&e.runner, &e.action);
        let (token, token_record) = TokenRecord::issue(e.user(), self.settings.service_token_ttl, true);
        let stored = self.settings.store_service_tokens;
        if stored {
            self.store.insert_token(&token_record).await?;
        }
        let mut env = self.base_env(e);
        env.insert("ST2_ACTION_AUTH_TOKEN".into(), token.clone());
        let mut masked = secret_values(e, &resolved, self.settings.mask_min_length);
        // The token itself only: its JSON and URL forms are the same 32 hex digits, and its
        // base64 forms would make every execution hold back unfinished lines ending in any of
        // six more characters, for a credential the action has no reason to encode.
        masked.push(token);
        let run = Run { resolved: &resolved, env, secrets: &secrets, masked: &masked };
        let outcome = self.run_action(e, run, stopper).await;
        if stored {
            self.store.delete_token(&token_record.token_hash).await?;
        }
        outcome
    }

    async fn run_action(&self, e: &Execution, run: Run<'_>, stopper: &Arc<Stopper>) -> Result<Outcome, StoreError> {
        let Run { resolved, env, secrets, masked } = run;
        let grace = self.settings.kill_grace;
        let missing_entry_point =
            || Outcome::failed(json!({"error": format!("Action {} has no entry point in a loaded pack", e.action.ref_)}));
        let (status, result, summary) = match e.runner.name.as_str() {
            "local-shell-cmd" | "local-shell-script" => {
                let script = match e.runner.name.as_str() {
                    "local-shell-script" => match self.content.entry_point(&e.action) {
                        Some(path) => Some(path),
                        None => return Ok(missing_entry_point()),
                    },
                    _ => None,
                };
                let ctx = LocalContext {
                    runner: &resolved.runner,
                    action: &resolved.action,
                    secrets,
                    script: script.as_deref(),
                    base_env: env,
                    grace,
                    user: &self.settings.action_user,
                };
                return match build_job(e, ctx) {
                    Ok(job) => self.supervise_local(e, job, masked, stopper).await,
                    Err(message) => Ok(Outcome::failed(json!({"error": message}))),
                };
            }
            "python-script" => {
                let ctx = PythonContext {
                    resolved,
                    content: &self.content,
                    base_env: env,
                    grace,
                    capture_queue: CAPTURE_QUEUE,
                    user: &self.settings.action_user,
                };
                crate::python::execute(e, ctx, self.writer(e, masked, stopper), stopper).await?
            }
            "remote-shell-cmd" | "remote-shell-script" => {
                let st2_env = env.into_iter().filter(|(k, _)| k.starts_with("ST2_")).collect();
                let ctx = RemoteContext {
                    resolved,
                    content: &self.content,
                    st2_env,
                    secrets,
                    grace,
                    settings: &self.settings.ssh,
                    capture_queue: CAPTURE_QUEUE,
                };
                crate::remote::execute(e, ctx, self.writer(e, masked, stopper), stopper).await?
            }
            other => {
                return Ok(Outcome::failed(json!({"error": format!("Runner type \"{other}\" is not available in this squall build")})));
            }
        };
        Ok(Outcome::ended(status, result, summary.map(|s| s.stats)))
    }

    /// The execution's log writer, masking `masked`; when it cannot store output (the
    /// execution was taken from this runner, or storage failed) it stops the process.
    fn writer(&self, e: &Execution, masked: &[String], stopper: &Arc<Stopper>) -> LogWriter {
        LogWriter::new(e, Arc::clone(&self.store), Arc::clone(&self.bus), self.settings.stream_output, self.settings.result_max_bytes)
            .masking(masked, self.settings.mask_min_length)
            .limit(self.settings.max_output_bytes)
            .stopping_on_failure(Arc::clone(stopper))
    }

    async fn supervise_local(
        &self,
        e: &Execution,
        job: crate::process::Job,
        secrets: &[String],
        stopper: &Arc<Stopper>,
    ) -> Result<Outcome, StoreError> {
        let timeout_secs = job.timeout.map_or(0, |t| t.as_secs());
        let (tx, rx) = mpsc::channel(CAPTURE_QUEUE);
        let writing = tokio::spawn(self.writer(e, secrets, stopper).run(rx));
        let ended = supervise(job, stopper, tx).await;
        let summary = writing.await.expect("log writer task")?;
        let ended = match ended {
            Ok(ended) => ended,
            Err(err) => {
                let message = format!("Failed to start the action's process: {err}");
                return Ok(Outcome::failed(
                    json!({"failed": true, "succeeded": false, "return_code": -1, "stdout": "", "stderr": "", "error": message}),
                ));
            }
        };
        let exit = match ended.stopped {
            Some(StopReason::Timeout) => Exit::TimedOut(timeout_secs),
            Some(StopReason::Canceled) => Exit::Canceled,
            Some(StopReason::Shutdown) => Exit::Code(-15),
            None => Exit::Code(ended.code),
        };
        let mut result = shell_result(exit, &summary.text(None, StreamKind::Stdout), &summary.text(None, StreamKind::Stderr));
        if ended.stopped == Some(StopReason::Shutdown) {
            result["error"] = json!("squall shut down before the action finished");
        }
        Ok(Outcome::ended(status_for(exit), result, Some(summary.stats)))
    }

    /// Records the final status. A cancel that raced with the end wins: the user asked for it.
    async fn finish(&self, mut e: Execution, Outcome { status, result, output, children }: Outcome) -> Result<(), StoreError> {
        e.result = Some(result);
        e.output = output;
        if !children.is_empty() {
            e.children = children;
        }
        if status != Status::Canceled && self.advance(&mut e, status, None).await? {
            return Ok(());
        }
        let Some(mut current) = self.store.execution(&e.id).await? else { return Ok(()) };
        if matches!(current.status, Status::Canceling | Status::Running) {
            let user = current.context.get("cancelled_by").cloned().unwrap_or(Value::Null);
            current.result = Some(json!({"message": "Action canceled by user.", "user": user}));
            current.output = output;
            self.advance(&mut current, Status::Canceled, None).await?;
        }
        Ok(())
    }

    fn base_env(&self, e: &Execution) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> =
            std::env::vars().filter(|(k, _)| self.settings.env_allowlist.iter().any(|a| allowed(a, k))).collect();
        env.insert("ST2_ACTION_PACK_NAME".into(), e.action.pack.clone());
        env.insert("ST2_ACTION_EXECUTION_ID".into(), e.id.clone());
        env.insert("ST2_ACTION_API_URL".into(), self.settings.api_url.clone());
        env
    }
}

/// One log line when an execution starts running and one when it ends.
fn log_change(e: &Execution) {
    let (id, action, user) = (e.id.as_str(), e.action.ref_.as_str(), e.user());
    if e.status == Status::Running {
        tracing::info!(execution = %id, action = %action, user = %user, "running");
    } else if e.status.is_terminal() {
        let seconds = e.end_timestamp.map_or(0.0, |end| e.start_timestamp.seconds_until(end));
        tracing::info!(execution = %id, action = %action, user = %user, status = %e.status.as_str(), seconds, "ended");
    }
}

/// Values to mask in the output: every secret value of the resolved parameters (defaults
/// included), as [`params::for_each_secret`] finds them, and the encoded forms of those long
/// enough to be masked at all ([`mask::encoded_forms`]) — unless that makes more than
/// [`FAST_MASK_PATTERNS`] values, when only the values themselves are masked (and the log says
/// so).
fn secret_values(e: &Execution, resolved: &params::Resolved, min_length: usize) -> Vec<String> {
    let mut values = Vec::new();
    for parameters in [&resolved.runner, &resolved.action] {
        params::for_each_secret(&e.runner, &e.action, &mut parameters.clone(), |_, v| {
            values.push(v.as_str().map_or_else(|| v.to_string(), str::to_string));
        });
    }
    let forms: Vec<String> = values.iter().filter(|v| v.len() >= min_length).flat_map(|v| mask::encoded_forms(v)).collect();
    // One place stays free for the action's token, which the caller adds.
    if values.len() + forms.len() < FAST_MASK_PATTERNS {
        values.extend(forms);
    } else {
        tracing::warn!(execution = %e.id, secrets = values.len(), "too many secret values to mask their encoded forms too: only the values themselves are masked");
    }
    values
}

/// Most values the masker searches for at its full speed. Measured (release build, 256 MiB of
/// 100-byte lines): 6.2 GB/s with 64 values, 0.62 GB/s with 80 — beyond 64 aho-corasick leaves
/// its SIMD searcher, and masking would halve a fast action's output rate. 64 values hold the
/// encoded forms of about 16 secrets; executions with more mask the secrets as themselves only.
const FAST_MASK_PATTERNS: usize = 64;

/// `pattern` is a variable name, or a prefix ending in `*` (`LC_*`).
fn allowed(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}
