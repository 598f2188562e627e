//! Live output: StackStorm's event stream (`/stream`), the per-execution SSE output stream, and
//! squall's long-running plain-text `/stdout` and `/stderr`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use squall_bus::{ChangeKind, ExecutionChange, Live, LiveRecord, Received};
use squall_core::output::{RecordFilter, StreamFilter};
use squall_core::{Status, StreamKind};
use tokio::time::Instant;

use super::executions::find_for;
use crate::auth::{Method, Principal};
use crate::error::{ApiError, ApiResult};
use crate::follow::{self, Item};
use crate::paths::ViaStream;
use crate::query::{self, Params, Resume, glob};
use crate::wire::{DataEncoding, OUTPUT_EVENT};
use crate::{AppState, wire};

const UPDATE_EVENT: &str = "st2.execution__update";
/// StackStorm's event list when a client names none (it has no output events).
const DEFAULT_EVENTS: &[&str] = &[
    "st2.announcement__*",
    "st2.execution__create",
    "st2.execution__update",
    "st2.execution__delete",
    "st2.liveaction__create",
    "st2.liveaction__update",
    "st2.liveaction__delete",
];

/// The SSE frame of an output record; built once per live record and encoding, shared by every
/// viewer.
fn output_frame(r: &LiveRecord, encoding: DataEncoding) -> Bytes {
    r.encoded[encoding as usize]
        .get_or_init(|| Bytes::from(wire::output_sse_frame(&r.record, &r.source.action_ref, &r.source.runner_ref, encoding)))
        .clone()
}

/// The slot of [`LiveRecord::encoded`] after the SSE encodings: the record stream's head line.
const RECORD_HEAD_SLOT: usize = 2;

/// A record's head line in the record stream; built once per live record, shared by every viewer.
fn record_head(r: &LiveRecord) -> Bytes {
    r.encoded[RECORD_HEAD_SLOT]
        .get_or_init(|| Bytes::from(wire::record_frame_head(&r.record, &r.source.action_ref, &r.source.runner_ref)))
        .clone()
}

fn event_name(c: &ExecutionChange) -> &'static str {
    match c.kind {
        ChangeKind::Create => "st2.execution__create",
        ChangeKind::Update => UPDATE_EVENT,
    }
}

/// The SSE frame of an execution change (secrets masked); built once per change.
fn execution_frame(c: &ExecutionChange, state: &AppState) -> Bytes {
    c.encoded
        .get_or_init(|| {
            let json = wire::execution_json(&c.execution, None, &state.settings.wire);
            Bytes::from(wire::json_sse_frame(event_name(c), &json))
        })
        .clone()
}

/// What a viewer's encoder does with one item.
enum Step {
    Emit(Bytes),
    /// A frame in two parts (a head and a record's bytes, not copied).
    EmitParts([Bytes; 2]),
    Skip,
    /// Last frame (if any), then the response ends.
    End(Option<Bytes>),
}

/// Resolves when the caller's credential stops being valid, and a stream ends then, as a new
/// request would be refused: at a token's expiry, or at the first check (every
/// [`crate::ServerSettings::credential_check`]) that finds the token revoked or the API key
/// disabled or deleted. The check reads the store, so a revocation on any node counts. A check
/// the store cannot answer keeps the stream open until the next one. Never with authentication
/// off.
fn credential_end(state: &Arc<AppState>, caller: &Principal) -> impl Future<Output = ()> + Send + 'static {
    let (state, caller) = (Arc::clone(state), caller.clone());
    async move {
        let expiry = match caller.method {
            Method::Token { expiry, .. } => {
                let left = (expiry.micros() - squall_core::Timestamp::now().micros()).max(0) as u64;
                Some(Instant::now() + Duration::from_micros(left))
            }
            Method::ApiKey { .. } => None,
            Method::None => return std::future::pending().await,
        };
        let mut expired = std::pin::pin!(async move {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        });
        let every = state.settings.credential_check;
        let mut check = tokio::time::interval_at(Instant::now() + every, every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = expired.as_mut() => return,
                _ = check.tick() => match caller.still_valid(&state).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(user = %caller.user, "a stream ends: its credential was revoked or disabled");
                        return;
                    }
                    Err(e) => tracing::warn!(user = %caller.user, error = %e.faultstring, "cannot check a stream's credential; it stays open until the next check"),
                },
            }
        }
    }
}

/// Turns a viewer's items into a response body. With `heartbeat`, a `\n` goes out at once and
/// whenever nothing was sent for that long. One timer per viewer stays armed and is moved only
/// when it fires: a frame costs a clock read, not a timer update. When `ends` resolves (the
/// caller's credential is no longer valid: [`credential_end`]) the body ends.
fn body_of<T: Send + 'static>(
    items: impl Stream<Item = T> + Send + 'static,
    heartbeat: Option<Duration>,
    ends: impl Future<Output = ()> + Send + 'static,
    mut step: impl FnMut(T) -> Step + Send + 'static,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    const KEEPALIVE: Bytes = Bytes::from_static(b"\n");
    async_stream::stream! {
        let _viewer = crate::metrics::Viewer::enter();
        let mut items = std::pin::pin!(items);
        let mut beat = heartbeat.map(|every| (Box::pin(tokio::time::sleep(every)), every));
        let mut expired = std::pin::pin!(ends);
        let mut last_sent = Instant::now();
        if beat.is_some() {
            yield Ok(KEEPALIVE);
        }
        loop {
            let next = match &mut beat {
                Some((timer, every)) => tokio::select! {
                    biased;
                    () = expired.as_mut() => break,
                    item = items.next() => Next::Item(item),
                    () = timer.as_mut() => {
                        let (due, now) = (last_sent + *every, Instant::now());
                        timer.as_mut().reset(if now >= due { now + *every } else { due });
                        if now >= due { Next::Beat } else { continue }
                    }
                },
                None => tokio::select! {
                    biased;
                    () = expired.as_mut() => break,
                    item = items.next() => Next::Item(item),
                },
            };
            let item = match next {
                Next::Beat => {
                    last_sent = Instant::now();
                    yield Ok(KEEPALIVE);
                    continue;
                }
                Next::Item(Some(item)) => item,
                Next::Item(None) => break,
            };
            match step(item) {
                Step::Emit(frame) => {
                    if beat.is_some() {
                        last_sent = Instant::now();
                    }
                    yield Ok(frame);
                }
                Step::EmitParts([head, data]) => {
                    if beat.is_some() {
                        last_sent = Instant::now();
                    }
                    yield Ok(head);
                    yield Ok(data);
                }
                Step::Skip => {}
                Step::End(last) => {
                    if let Some(frame) = last {
                        yield Ok(frame);
                    }
                    break;
                }
            }
        }
    }
}

/// What a viewer's body waits for next.
enum Next<T> {
    Item(Option<T>),
    Beat,
}

fn streaming_response(content_type: &'static str, body: impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("X-Accel-Buffering", HeaderValue::from_static("no"));
    (headers, Body::from_stream(body)).into_response()
}

const SSE: &str = "text/event-stream; charset=UTF-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Resolves `id` (or `last`) for a caller allowed to view it, subscribes to its live channel,
/// *then* reads its state, and starts a follower after `cursor`. One check covers every event:
/// an execution's action and owner never change.
async fn follow_execution(
    state: &AppState,
    id: &str,
    caller: &Principal,
    cursor: u64,
) -> ApiResult<impl Stream<Item = Item> + Send + 'static> {
    let id = find_for(state, id, caller, "execution_view").await?.id;
    let subscription = state.bus.subscribe_execution(&id).await;
    let execution = state.store.execution(&id).await?.ok_or_else(|| ApiError::no_execution(&id))?;
    Ok(follow::start(state.store.clone(), subscription, execution, cursor))
}

/// The resume point ([`query::resume`]); `latest` is looked up in the store.
async fn resume_point(state: &AppState, id: &str, caller: &Principal, headers: &HeaderMap, params: &Params) -> ApiResult<u64> {
    match query::resume(headers.get("last-event-id"), params)? {
        Resume::After(seq) => Ok(seq),
        Resume::Latest => {
            let id = find_for(state, id, caller, "execution_view").await?.id;
            Ok(state.store.last_seq(&id).await?)
        }
    }
}

#[utoipa::path(get, path = "/v1/executions/{id}/output", tag = "output", operation_id = "executionOutput",
    params(crate::openapi::IdPath, crate::openapi::OutputFilter),
    description = "The stored output as plain text: every chunk so far, in order; it never waits for more. Through the stream service \
        (`/stream/v1/…`), or with `Accept: text/event-stream` or `Accept: application/vnd.squall.records`, the same path follows the \
        output live instead (see `streamExecutionOutput`).",
    responses(
        (status = 200, description = "The output so far", content_type = "text/plain; charset=utf-8", body = String),
        (status = 400, description = "A query string that cannot be read, or a parameter given twice", body = crate::openapi::Error),
        (status = 404, description = "No such execution", body = crate::openapi::Error),
    ))]
/// `GET /executions/{id}/output`: plain text on the API service, SSE on the stream service
/// (or when the client asks for `text/event-stream`).
pub async fn output(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Params,
    headers: HeaderMap,
    Extension(via): Extension<ViaStream>,
    caller: Principal,
) -> ApiResult<Response> {
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or_default();
    if accept.contains(wire::RECORDS_TYPE) {
        return records(state, id, params, headers, caller).await;
    }
    if !via.0 && !accept.contains("text/event-stream") {
        return super::output::plain(State(state), Path(id), params, caller).await;
    }
    let filter = params.record_filter();
    let cursor = resume_point(&state, &id, &caller, &headers, &params).await?;
    let encoding = match params.get("encoding") {
        None | Some("text") => DataEncoding::Text,
        Some("base64") => DataEncoding::Base64,
        Some(other) => return Err(ApiError::bad_request(format!("Unknown encoding \"{other}\" (use text or base64)"))),
    };
    let rx = follow_execution(&state, &id, &caller, cursor).await?;
    let mut last_seq = cursor;
    let body = body_of(rx, Some(state.settings.heartbeat), credential_end(&state, &caller), move |item| match item {
        Item::Record(r) => {
            last_seq = r.record.seq;
            if filter.matches(&r.record) { Step::Emit(output_frame(&r, encoding)) } else { Step::Skip }
        }
        Item::Done(_) => Step::End(Some(Bytes::from(wire::eof_sse_frame(last_seq)))),
        Item::Current(_) | Item::Update(_) => Step::Skip,
    });
    Ok(streaming_response(SSE, body))
}

/// `GET /executions/{id}/output` with `Accept: application/vnd.squall.records`: squall's
/// byte-exact record stream, what `squall execution tail` reads. The SSE stream's records and
/// resume points (`Last-Event-ID`, `?after=`) and filters, framed as a JSON head line with the
/// record's `length`, then that many raw bytes — nothing to encode or decode. An empty line is a
/// heartbeat; the last line says the execution ended (`{"end":true,"seq":…,"status":…}`).
async fn records(state: Arc<AppState>, id: String, params: Params, headers: HeaderMap, caller: Principal) -> ApiResult<Response> {
    let filter = params.record_filter();
    let cursor = resume_point(&state, &id, &caller, &headers, &params).await?;
    let rx = follow_execution(&state, &id, &caller, cursor).await?;
    let mut last_seq = cursor;
    let body = body_of(rx, Some(state.settings.heartbeat), credential_end(&state, &caller), move |item| match item {
        Item::Record(r) => {
            last_seq = r.record.seq;
            if !filter.matches(&r.record) {
                return Step::Skip;
            }
            Step::EmitParts([record_head(&r), r.record.data.clone()])
        }
        Item::Done(c) => Step::End(Some(Bytes::from(wire::record_stream_end(last_seq, c.execution.status.as_str())))),
        Item::Current(_) | Item::Update(_) => Step::Skip,
    });
    Ok(streaming_response(wire::RECORDS_TYPE, body))
}

/// `GET /executions/{id}/stdout` and `/stderr`: raw bytes of one stream, everything so far and
/// then live, until the execution completes. Nothing is injected into the body. `?host=` keeps
/// one remote host's bytes.
pub async fn raw(
    state: Arc<AppState>,
    id: String,
    params: Params,
    headers: HeaderMap,
    caller: Principal,
    kind: StreamKind,
) -> ApiResult<Response> {
    let filter = RecordFilter { streams: StreamFilter::Only(kind), host: params.record_filter().host };
    if let Some(range) = headers.get(header::RANGE).and_then(|r| r.to_str().ok()).and_then(super::output::ByteRange::parse)
        && filter.host.is_none()
    {
        let e = find_for(&state, &id, &caller, "execution_view").await?;
        if e.status.is_terminal() {
            return super::output::ranged(state, e.id, kind, range).await;
        }
    }
    let rx = follow_execution(&state, &id, &caller, 0).await?;
    let body = body_of(rx, None, credential_end(&state, &caller), move |item| match item {
        Item::Record(r) if filter.matches(&r.record) => Step::Emit(r.record.data.clone()),
        Item::Done(_) => Step::End(None),
        _ => Step::Skip,
    });
    Ok(streaming_response(TEXT, body))
}

#[utoipa::path(get, path = "/v1/executions/{id}/stdout", tag = "output", operation_id = "executionStdout",
    params(crate::openapi::IdPath, crate::openapi::HostQuery, ("Range" = Option<String>, Header, description = "`bytes=A-B` of a finished execution's stdout")),
    responses(
        (status = 200, description = "The raw bytes, then live ones until the execution ends", content_type = "text/plain; charset=utf-8", body = String),
        (status = 206, description = "The range asked for", content_type = "text/plain; charset=utf-8", body = String),
        (status = 400, description = "A query string that cannot be read, or a parameter given twice", body = crate::openapi::Error),
        (status = 404, description = "No such execution", body = crate::openapi::Error),
        (status = 416, description = "The range is outside the stream"),
    ))]
/// `GET /executions/{id}/stdout`: raw stdout, followed live to the end; a finished execution's
/// also answers a single `Range: bytes=…` with 206.
pub async fn stdout(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Params,
    headers: HeaderMap,
    caller: Principal,
) -> ApiResult<Response> {
    raw(state, id, params, headers, caller, StreamKind::Stdout).await
}

#[utoipa::path(get, path = "/v1/executions/{id}/stderr", tag = "output", operation_id = "executionStderr",
    params(crate::openapi::IdPath, crate::openapi::HostQuery, ("Range" = Option<String>, Header, description = "`bytes=A-B` of a finished execution's stderr")),
    responses(
        (status = 200, description = "The raw bytes, then live ones until the execution ends", content_type = "text/plain; charset=utf-8", body = String),
        (status = 206, description = "The range asked for", content_type = "text/plain; charset=utf-8", body = String),
        (status = 400, description = "A query string that cannot be read, or a parameter given twice", body = crate::openapi::Error),
        (status = 404, description = "No such execution", body = crate::openapi::Error),
        (status = 416, description = "The range is outside the stream"),
    ))]
/// `GET /executions/{id}/stderr`: as `stdout`, for stderr.
pub async fn stderr(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Params,
    headers: HeaderMap,
    caller: Principal,
) -> ApiResult<Response> {
    raw(state, id, params, headers, caller, StreamKind::Stderr).await
}

/// StackStorm's stream filters (`events`, `action_refs`, `execution_ids`), plus the viewer's
/// right to see each event's execution.
struct Filters {
    events: Vec<String>,
    action_refs: Option<Vec<String>>,
    execution_ids: Option<Vec<String>>,
    caller: Principal,
}

impl Filters {
    fn from(params: &Params, caller: Principal) -> Filters {
        Filters {
            caller,
            events: params.list("events").unwrap_or_else(|| DEFAULT_EVENTS.iter().map(|e| e.to_string()).collect()),
            action_refs: params.list("action_refs"),
            execution_ids: params.list("execution_ids"),
        }
    }

    fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|pattern| glob(pattern, event))
    }

    fn passes(&self, event: &str, action_ref: &str, execution_id: &str) -> bool {
        self.wants(event)
            && self.action_refs.as_ref().is_none_or(|r| r.iter().any(|x| x == action_ref))
            && self.execution_ids.as_ref().is_none_or(|i| i.iter().any(|x| x == execution_id))
    }

    fn record(&self, r: &LiveRecord, state: &AppState) -> Option<Bytes> {
        let s = &r.source;
        (self.passes(OUTPUT_EVENT, &s.action_ref, &r.record.execution_id) && self.caller.can_view(state, &s.pack, &s.action_name, &s.user))
            .then(|| output_frame(r, DataEncoding::Text))
    }

    fn change(&self, c: &ExecutionChange, state: &AppState) -> Option<Bytes> {
        let e = &c.execution;
        (self.passes(event_name(c), &e.action.ref_, &e.id) && self.caller.can_view(state, &e.action.pack, &e.action.name, e.user()))
            .then(|| execution_frame(c, state))
    }
}

#[utoipa::path(get, path = "/stream/v1/stream", tag = "stream", operation_id = "stream",
    params(crate::openapi::StreamQuery),
    description = "Server-sent events (`event:` the name, `data:` the JSON), with a keep-alive newline after each quiet `[stream] heartbeat`; \
        it lasts until the client leaves, the token expires, or the `end_execution_id` completes. Also at `/v1/stream`, `/stream` and `/api/v1/stream`.",
    responses(
        (status = 200, description = "The events", content_type = "text/event-stream", body = crate::openapi::StreamEvent),
        (status = 400, description = "A query string that cannot be read, or a parameter given twice", body = crate::openapi::Error),
    ))]
/// `GET /stream`: StackStorm's event stream. A request that names an `end_execution_id` with
/// `end_event=st2.execution__update` (what `st2 execution tail` sends) is served from that
/// execution's own channel: subscribe first, then emit its current `running` state, replay its
/// stored output, follow it live, and end with its completion — so the CLI never hangs and never
/// misses a line, and never receives other executions' traffic. A workflow's tail needs its
/// children's events too: it gets the whole stream, and its completion if it already ended.
pub async fn events(State(state): State<Arc<AppState>>, params: Params, caller: Principal) -> ApiResult<Response> {
    caller.require(&state, "stream_view", crate::rbac::Resource::Global)?;
    let filters = Filters::from(&params, caller.clone());
    let heartbeat = Some(state.settings.heartbeat);
    let tailed = match (params.get("end_execution_id"), params.get("end_event")) {
        (Some(id), Some(UPDATE_EVENT)) => Some(id),
        _ => None,
    };
    let workflow = match tailed {
        Some(id) => state.store.execution(id).await?.is_some_and(|e| e.is_workflow()),
        None => false,
    };
    if let Some(end_id) = tailed.filter(|_| !workflow)
        && let Ok(rx) = follow_execution(&state, end_id, &caller, 0).await
    {
        let st = Arc::clone(&state);
        let body = body_of(rx, heartbeat, credential_end(&state, &caller), move |item| match item {
            Item::Current(c) if c.execution.status == Status::Running => filters.change(&c, &st).map_or(Step::Skip, Step::Emit),
            Item::Current(_) => Step::Skip,
            Item::Record(r) => filters.record(&r, &st).map_or(Step::Skip, Step::Emit),
            Item::Update(c) => filters.change(&c, &st).map_or(Step::Skip, Step::Emit),
            Item::Done(c) => Step::End(filters.change(&c, &st)),
        });
        return Ok(streaming_response(SSE, body));
    }
    let end = params.get("end_execution_id").map(String::from).zip(params.get("end_event").map(String::from));
    let sub = state.bus.subscribe_all(filters.wants(OUTPUT_EVENT)).await;
    let replay = match tailed.filter(|_| workflow) {
        Some(id) => Some(WorkflowReplay::read(&state, id, &caller).await?),
        None => None,
    };
    let events = global_events(Arc::clone(&state.store), sub, replay);
    let body = body_of(events, heartbeat, credential_end(&state, &caller), move |live| match live {
        Live::Record(r) => filters.record(&r, &state).map_or(Step::Skip, Step::Emit),
        Live::Execution(c) => {
            let frame = filters.change(&c, &state);
            let ends = end
                .as_ref()
                .is_some_and(|(id, event)| *id == c.execution.id && event == event_name(&c) && c.execution.status.is_terminal());
            match (ends, frame) {
                (true, frame) => Step::End(frame),
                (false, Some(frame)) => Step::Emit(frame),
                (false, None) => Step::Skip,
            }
        }
    });
    Ok(streaming_response(SSE, body))
}

/// What a workflow's tail joins into: the tasks that started before it subscribed, each with
/// its output so far and, if it ended, its end — what a viewer there from the start saw. Only
/// the tasks the viewer may see are read (each event is checked again on the way out).
struct WorkflowReplay {
    workflow: squall_core::Execution,
    children: Vec<squall_core::Execution>,
}

impl WorkflowReplay {
    async fn read(state: &AppState, id: &str, viewer: &Principal) -> ApiResult<WorkflowReplay> {
        let workflow = state.store.execution(id).await?.ok_or_else(|| ApiError::no_execution(id))?;
        let mut visible = squall_store::ExecutionQuery::default();
        viewer.restrict(state, &mut visible);
        let children = crate::service::descendants(state, &workflow, -1, &visible).await?;
        Ok(WorkflowReplay { workflow, children })
    }
}

fn execution_change(execution: squall_core::Execution) -> Live {
    Live::Execution(Arc::new(ExecutionChange { kind: ChangeKind::Update, execution, encoded: Default::default() }))
}

/// The all-executions stream, after a workflow's replay when there is one. Live events the
/// replay already covered (records up to the `seq` replayed, status changes up to the log
/// length replayed) are not sent twice.
fn global_events(
    store: Arc<dyn squall_store::Store>,
    mut sub: squall_bus::Subscription,
    replay: Option<WorkflowReplay>,
) -> impl Stream<Item = Live> + Send {
    async_stream::stream! {
        // Per execution replayed: (last seq sent, status changes sent).
        let mut sent: std::collections::HashMap<String, (u64, usize)> = Default::default();
        if let Some(WorkflowReplay { workflow, children }) = replay {
            for child in children {
                let source = squall_bus::RecordSource::of(&child);
                if child.log.iter().any(|l| l.status == Status::Running) {
                    let mut started = child.clone();
                    started.status = Status::Running;
                    yield execution_change(started);
                }
                let mut cursor = 0;
                loop {
                    let page = match store.read_output(&child.id, cursor, StreamFilter::All, 16).await {
                        Ok(page) => page,
                        Err(e) => {
                            tracing::warn!(execution = %child.id, error = %e, "cannot replay a workflow task's output");
                            break;
                        }
                    };
                    let Some(last) = page.last() else { break };
                    cursor = last.seq;
                    for record in page {
                        yield Live::Record(Arc::new(LiveRecord::new(record, source.clone())));
                    }
                }
                sent.insert(child.id.clone(), (cursor, child.log.len()));
                if child.status.is_terminal() {
                    yield execution_change(child);
                }
            }
            if workflow.status.is_terminal() {
                yield execution_change(workflow);
            }
        }
        loop {
            match sub.recv().await {
                Received::Event(Live::Record(r)) if sent.get(&r.record.execution_id).is_some_and(|(seq, _)| r.record.seq <= *seq) => {}
                Received::Event(Live::Execution(c)) if sent.get(&c.execution.id).is_some_and(|(_, n)| c.execution.log.len() <= *n) => {}
                Received::Event(live) => yield live,
                Received::Lagged(n) => tracing::warn!(missed = n, "a global stream viewer fell behind; events were skipped"),
                Received::Closed => return,
            }
        }
    }
}
