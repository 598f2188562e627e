//! squall's line endpoints, for viewers that show a log of any size a screen at a time:
//! `GET /executions/{id}/lines` (a range of display lines, rendered) and
//! `GET /executions/{id}/search` (the whole log searched on the server, streamed as NDJSON).
//! Both read through the same authorisation as `/output` and show the stored, masked bytes.

use std::ops::ControlFlow;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::executions::find_for;
use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::log::{self, LineRef, Page, Scan, terminal};
use crate::query::Params;
use squall_core::output::{RecordFilter, StreamFilter};

/// Lines per `/lines` request when the client names no `count`, and the most it may ask for.
const DEFAULT_LINES: i64 = 200;
const MAX_LINES: i64 = 5000;
/// Hits that `/search` sends with their text when the client names no `limit`, and the most.
const DEFAULT_HITS: i64 = 1000;
const MAX_HITS: i64 = 10_000;
/// Longest pattern `/search` accepts, and the compiled regex's size limit.
const MAX_PATTERN: usize = 1000;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A line as the viewer reads it: number, stream, time, rendered text and its styled runs.
fn line_json(line: &LineRef) -> Value {
    let rendered = terminal::render(line.bytes);
    let mut m = Map::new();
    m.insert("n".into(), json!(line.n));
    m.insert("stream".into(), json!(line.stream.as_str()));
    m.insert("timestamp".into(), json!(line.timestamp.to_iso()));
    m.insert("seq".into(), json!(line.seq));
    if let Some(host) = line.host {
        m.insert("host".into(), json!(host));
    }
    m.insert("text".into(), Value::String(rendered.text));
    if !rendered.runs.is_empty() {
        let runs = rendered.runs.iter().map(|(len, style)| json!([len, style.json()])).collect();
        m.insert("runs".into(), Value::Array(runs));
    }
    if line.length > line.bytes.len() as u64 {
        m.insert("length".into(), json!(line.length));
    }
    if line.unfinished {
        m.insert("unfinished".into(), Value::Bool(true));
    }
    Value::Object(m)
}

/// `GET /executions/{id}/lines?from=N&count=K`: lines `N..N+K` (`from=-K`: the last K),
/// with the log's line count and the execution's status read before them, so a client that
/// sees a finished status knows it has every line.
#[utoipa::path(get, path = "/v1/executions/{id}/lines", tag = "output", operation_id = "executionLines",
    params(crate::openapi::IdPath, crate::openapi::LinesQuery),
    responses(
        (status = 200, description = "The lines", body = crate::openapi::Lines),
        (status = 400, description = "A bad `from` or `count`", body = crate::openapi::Error),
        (status = 404, description = "No such execution", body = crate::openapi::Error),
    ))]
pub async fn lines(State(state): State<Arc<AppState>>, Path(id): Path<String>, params: Params, caller: Principal) -> ApiResult<Response> {
    let e = find_for(&state, &id, &caller, "execution_view").await?;
    let count = params.int("count")?.unwrap_or(DEFAULT_LINES);
    if !(1..=MAX_LINES).contains(&count) {
        return Err(ApiError::bad_request(format!("count must be between 1 and {MAX_LINES}")));
    }
    let total = log::count(&*state.store, &e.id).await?;
    let from = match params.int("from")?.unwrap_or(0) {
        tail if tail < 0 => total.saturating_sub(tail.unsigned_abs()),
        from => from as u64,
    };
    let mut lines = Vec::new();
    Scan::start(&*state.store, &e.id, from)
        .await?
        .run(|line| {
            lines.push(line_json(line));
            if lines.len() as i64 >= count { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .await?;
    let total = lines.last().and_then(|l| l["n"].as_u64()).map_or(total, |n| total.max(n + 1));
    Ok(Json(json!({"id": e.id, "status": e.status.as_str(), "total": total, "from": from, "lines": lines})).into_response())
}

/// What `/search` looks for.
struct Query {
    pattern: regex::bytes::Regex,
    /// Which lines are searched: `output_type` and `host`, as on `/output`.
    filter: RecordFilter,
    /// The pattern over a whole record, `^`/`$` at line ends: whatever line matches, the record
    /// matches (absent for patterns where that may not hold: `\A`, `\z`, inline flags).
    whole_record: Option<regex::bytes::Regex>,
    from: u64,
    /// Hits sent with their line; later hits are only counted.
    limit: u64,
    /// Stop the scan after this many hits (`None`: count them all).
    stop_after: Option<u64>,
}

impl Query {
    fn parse(params: &Params) -> ApiResult<Query> {
        let filter = params.record_filter();
        let everything = filter.streams == StreamFilter::All && filter.host.is_none();
        let q = params.get("q").unwrap_or_default();
        if q.is_empty() && everything {
            return Err(ApiError::bad_request("q (what to search for) is required, unless output_type or host narrows the lines"));
        }
        if q.len() > MAX_PATTERN {
            return Err(ApiError::bad_request(format!("q is longer than {MAX_PATTERN} bytes")));
        }
        let regex = params.boolean("regex")?.unwrap_or(false);
        let case = params.boolean("case")?.unwrap_or(false);
        let source = if regex { q.to_string() } else { regex::escape(q) };
        let build = |multi_line| {
            regex::bytes::RegexBuilder::new(&source).case_insensitive(!case).multi_line(multi_line).size_limit(REGEX_SIZE_LIMIT).build()
        };
        let pattern = build(false).map_err(|e| ApiError::bad_request(format!("q is not a valid regular expression: {e}")))?;
        let whole_record = (!regex || !["\\A", "\\z", "(?"].iter().any(|s| source.contains(s))).then(|| build(true).ok()).flatten();
        let positive = |name: &str, default: Option<i64>| -> ApiResult<Option<u64>> {
            match params.int(name)?.or(default) {
                Some(v) if v < 0 => Err(ApiError::bad_request(format!("{name} must not be negative"))),
                v => Ok(v.map(|v| v as u64)),
            }
        };
        let limit = positive("limit", Some(DEFAULT_HITS))?.unwrap_or(0).min(MAX_HITS as u64);
        Ok(Query {
            pattern,
            filter,
            whole_record,
            from: positive("from", Some(0))?.unwrap_or(0),
            limit,
            stop_after: positive("stop_after", None)?,
        })
    }

    /// Whether no line wholly inside a record of `data` can match: it has no escapes and the
    /// pattern is nowhere in it.
    fn misses(&self, data: &[u8]) -> bool {
        // A record of another stream is skipped only by its lines (the splitter needs its bytes).
        self.whole_record.as_ref().is_some_and(|re| terminal::is_plain(data) && !re.is_match(data))
    }

    /// Whether the line, as the viewer shows it (escapes applied), matches.
    fn matches(&self, line: &LineRef) -> bool {
        if !self.filter.streams.matches(line.stream) || self.filter.host.as_deref().is_some_and(|h| line.host != Some(h)) {
            return false;
        }
        if terminal::is_plain(line.bytes) {
            self.pattern.is_match(line.bytes)
        } else {
            self.pattern.is_match(terminal::render(line.bytes).text.as_bytes())
        }
    }
}

/// Progress lines are sent after this many scanned bytes.
const PROGRESS_EVERY: u64 = 64 << 20;

/// `GET /executions/{id}/search?q=…[&regex=true][&case=true][&output_type=S][&host=H][&from=N][&limit=K][&stop_after=M]`:
/// every line of the log that matches, as NDJSON — `{"hit": line}` for each of the first
/// `limit` hits, `{"progress": {"bytes": B}}` now and then, and a last
/// `{"done": true, "count": C, "lines": L}` (`stopped` when `stop_after` ended it early). Literal
/// and case-insensitive unless asked otherwise; matched against the text the viewer shows.
#[utoipa::path(get, path = "/v1/executions/{id}/search", tag = "output", operation_id = "searchExecutionOutput",
    params(crate::openapi::IdPath, crate::openapi::SearchQuery),
    responses(
        (status = 200, description = "Hits, progress and a last summary, one JSON object a line", content_type = "application/x-ndjson", body = crate::openapi::SearchLine),
        (status = 400, description = "No `q` (and nothing narrowing the lines), a bad regular expression or number", body = crate::openapi::Error),
        (status = 404, description = "No such execution", body = crate::openapi::Error),
    ))]
pub async fn search(State(state): State<Arc<AppState>>, Path(id): Path<String>, params: Params, caller: Principal) -> ApiResult<Response> {
    let e = find_for(&state, &id, &caller, "execution_view").await?;
    let query = Query::parse(&params)?;
    let body = async_stream::stream! {
        let mut scan = match Scan::start(&*state.store, &e.id, query.from).await {
            Ok(scan) => scan.skipping(|data| query.misses(data)),
            Err(err) => {
                yield Ok(ndjson(&json!({"error": err.to_string()})));
                return;
            }
        };
        let (mut count, mut scanned, mut reported) = (0u64, 0u64, 0u64);
        loop {
            let mut hits = Vec::new();
            let page = scan
                .page(&mut |line| {
                    if !query.matches(line) {
                        return ControlFlow::Continue(());
                    }
                    count += 1;
                    if count <= query.limit {
                        hits.extend_from_slice(&ndjson(&json!({"hit": line_json(line)})));
                    }
                    if query.stop_after.is_some_and(|stop| count >= stop) { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
                })
                .await;
            if !hits.is_empty() {
                yield Ok::<_, std::io::Error>(Bytes::from(hits));
            }
            match page {
                Ok(Page::More { bytes }) => {
                    scanned += bytes;
                    if scanned - reported >= PROGRESS_EVERY {
                        reported = scanned;
                        yield Ok(ndjson(&json!({"progress": {"bytes": scanned}})));
                    }
                }
                Ok(Page::Stopped) => {
                    yield Ok(ndjson(&json!({"done": true, "count": count, "stopped": true})));
                    return;
                }
                Ok(Page::End { lines }) => {
                    yield Ok(ndjson(&json!({"done": true, "count": count, "lines": lines})));
                    return;
                }
                Err(err) => {
                    yield Ok(ndjson(&json!({"error": err.to_string()})));
                    return;
                }
            }
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(body)).into_response())
}

fn ndjson(value: &Value) -> Bytes {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    Bytes::from(line)
}
