//! StackStorm's JSON shapes. The core model knows nothing of these quirks (falsy fields
//! dropped, liveaction mirror, masked secrets, ObjectId-like ids); they all live here, with the
//! frames that carry them (SSE) and squall's record stream (written and read here).

use bytes::{Buf, Bytes, BytesMut};
use serde_json::{Map, Value, json};
use squall_core::id::stable_id;
use squall_core::{Action, Execution, OutputRecord, RunnerType, params};

/// The marker StackStorm shows in place of a secret value.
pub const MASK: &str = "********";

/// Settings that shape the JSON (not the data).
#[derive(Debug, Clone)]
pub struct WireSettings {
    /// `[webui] webui_base_url`, for `web_url`.
    pub webui_base_url: String,
}

/// An action as StackStorm lists it. One squall cannot run also carries `unavailable` (the
/// reason), and its description starts with it, so `st2 action list` shows it too.
pub fn action_json(action: &Action) -> Value {
    let mut doc = serde_json::to_value(action).expect("actions serialise");
    if let Some(reason) = &action.unavailable {
        let description = format!("[cannot run on squall: {reason}] {}", action.description);
        doc["description"] = Value::String(description.trim_end().to_string());
    }
    doc
}

pub fn runner_json(runner: &RunnerType) -> Value {
    serde_json::to_value(runner).expect("runner types serialise")
}

/// The full execution document. Secret values are masked, unless the caller passes
/// `opened_parameters` (the parameters with their sealed secrets opened, for an admin's
/// `show_secrets`).
pub fn execution_json(e: &Execution, opened_parameters: Option<Map<String, Value>>, settings: &WireSettings) -> Value {
    let parameters = opened_parameters.unwrap_or_else(|| mask_parameters(e));
    let result_size = e.result.as_ref().map_or(0, |r| serde_json::to_string(r).map_or(0, |s| s.len()));
    let log: Vec<Value> = e
        .log
        .iter()
        .map(|l| {
            let mut entry = json!({"timestamp": l.timestamp.to_iso(), "status": l.status.as_str()});
            if let Some(m) = &l.message {
                entry["message"] = Value::String(m.clone());
            }
            entry
        })
        .collect();
    let mut doc = json!({
        "id": e.id,
        "action": action_json(&e.action),
        "runner": runner_json(&e.runner),
        "liveaction": {
            "id": e.id,
            "action": e.action.ref_,
            "action_is_workflow": e.is_workflow(),
            "parameters": parameters,
            "callback": {},
            "runner_info": e.runner_info.clone().unwrap_or_else(|| json!({})),
        },
        "status": e.status.as_str(),
        "start_timestamp": e.start_timestamp.to_iso(),
        "end_timestamp": e.end_timestamp.map(|t| t.to_iso()),
        "elapsed_seconds": e.end_timestamp.map(|end| e.start_timestamp.seconds_until(end)),
        "web_url": format!("{}/#/history/{}/general", settings.webui_base_url.trim_end_matches('/'), e.id),
        "parameters": parameters,
        "context": e.context,
        "result": e.result,
        "result_size": result_size,
        "log": log,
        "delay": e.delay,
        "parent": e.parent,
        "children": e.children,
        // squall's own: output totals, and whether `max_output_bytes` cut the middle out.
        "output_truncated": e.output.is_some_and(|o| o.truncated),
        "output_bytes": e.output.map(|o| json!({"stdout": o.stdout_bytes, "stderr": o.stderr_bytes, "omitted": o.omitted_bytes})),
    });
    drop_falsy(&mut doc);
    doc
}

/// The parameters with every secret value (see [`params::for_each_secret`]) shown as [`MASK`].
fn mask_parameters(e: &Execution) -> Map<String, Value> {
    let mut parameters = e.parameters.clone();
    params::for_each_secret(&e.runner, &e.action, &mut parameters, |_, v| *v = Value::String(MASK.into()));
    parameters
}

/// StackStorm drops every falsy top-level field (null, false, 0, "", [], {}) of an execution.
pub fn drop_falsy(doc: &mut Value) {
    if let Value::Object(map) = doc {
        map.retain(|_, v| match v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        });
    }
}

/// How an output record's bytes travel in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataEncoding {
    /// StackStorm's `data`: text, invalid UTF-8 replaced.
    Text = 0,
    /// squall's `data_b64`: the exact bytes, base64 (for byte-exact clients such as `squall tail`).
    Base64 = 1,
}

/// The fields of an output record other than its bytes, in StackStorm's order.
#[derive(serde::Serialize)]
struct OutputHead<'a> {
    id: String,
    execution_id: &'a str,
    action_ref: &'a str,
    runner_ref: &'a str,
    timestamp: String,
    output_type: &'a str,
    seq: u64,
    offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
}

/// Appends an output record as StackStorm's `ActionExecutionOutput`, plus squall's `seq` and
/// `offset`, to `out`. Written in place, without a `Value`: a record's bytes (up to 1 MiB) are
/// encoded once, straight into `out` — this is the per-record cost of every SSE viewer's backfill.
pub fn write_output_json(record: &OutputRecord, action_ref: &str, runner_ref: &str, encoding: DataEncoding, out: &mut Vec<u8>) {
    use base64::Engine;
    write_open_head(record, action_ref, runner_ref, out);
    match encoding {
        DataEncoding::Text => {
            out.extend_from_slice(b",\"data\":");
            serde_json::to_writer(&mut *out, &String::from_utf8_lossy(&record.data)).expect("a string serialises");
        }
        DataEncoding::Base64 => {
            out.extend_from_slice(b",\"data_b64\":\"");
            let engine = &base64::engine::general_purpose::STANDARD;
            let at = out.len();
            out.resize(at + base64::encoded_len(record.data.len(), true).expect("a record's size fits"), 0);
            let written = engine.encode_slice(&record.data, &mut out[at..]).expect("room for the encoding");
            out.truncate(at + written);
            out.push(b'"');
        }
    }
    out.push(b'}');
}

/// An output record's SSE frame on the per-execution output stream and `/stream`: `id:` its
/// `seq`, then its JSON on one `data:` line (JSON escapes every `\r` and `\n`, so a record's
/// bytes can never end the line or the event early).
pub fn output_sse_frame(record: &OutputRecord, action_ref: &str, runner_ref: &str, encoding: DataEncoding) -> Vec<u8> {
    let mut frame = Vec::with_capacity(record.data.len() * 4 / 3 + 512);
    frame.extend_from_slice(format!("id: {}\nevent: {OUTPUT_EVENT}\ndata: ", record.seq).as_bytes());
    write_output_json(record, action_ref, runner_ref, encoding, &mut frame);
    frame.extend_from_slice(b"\n\n");
    frame
}

/// The event name of an output record on StackStorm's streams.
pub const OUTPUT_EVENT: &str = "st2.execution.output__create";

/// The last frame of the per-execution output stream: the execution ended after record `seq`.
pub fn eof_sse_frame(seq: u64) -> Vec<u8> {
    format!("id: {seq}\nevent: EOF\ndata: ''\n\n").into_bytes()
}

/// An SSE frame without an id: `event`, then `json` on one `data:` line (serialised JSON holds
/// no line break).
pub fn json_sse_frame(event: &str, json: &Value) -> Vec<u8> {
    format!("event: {event}\ndata: {json}\n\n").into_bytes()
}

/// The media type of squall's byte-exact record stream (`Accept:` on `/executions/{id}/output`).
pub const RECORDS_TYPE: &str = "application/vnd.squall.records";

/// A record's frame head in the record stream: its JSON (the SSE fields without the data, plus
/// `length`) on one line; the record's `length` raw bytes follow it.
pub fn record_frame_head(record: &OutputRecord, action_ref: &str, runner_ref: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(320);
    write_open_head(record, action_ref, runner_ref, &mut out);
    out.extend_from_slice(format!(",\"length\":{}}}\n", record.data.len()).as_bytes());
    out
}

/// The last line of a record stream: the execution ended with `status`, `seq` its last record.
pub fn record_stream_end(seq: u64, status: &str) -> Vec<u8> {
    let mut out = serde_json::to_vec(&json!({"end": true, "seq": seq, "status": status})).expect("an end serialises");
    out.push(b'\n');
    out
}

/// One frame of a record stream, as [`RecordReader`] reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordFrame {
    /// A record: its head line (JSON, without the newline) and its bytes.
    Record { head: Bytes, data: Bytes },
    /// The execution ended with this status; everything was sent.
    End { status: String },
}

/// The fields of a record-stream head line the framing needs.
#[derive(serde::Deserialize)]
struct FrameHead {
    length: Option<usize>,
    #[serde(default)]
    end: bool,
    status: Option<String>,
}

/// Reads a record stream (what [`record_frame_head`] and [`record_stream_end`] write) from the
/// pieces a response body arrives in. It lives beside the writer so the format has one home;
/// `squall execution tail` reads with it. A record's bytes are sliced out, never copied twice.
#[derive(Debug, Default)]
pub struct RecordReader {
    pending: BytesMut,
}

impl RecordReader {
    /// Adds the next piece of the body.
    pub fn push(&mut self, piece: &[u8]) {
        self.pending.extend_from_slice(piece);
    }

    /// The next whole frame in what was pushed, if it holds one (heartbeat lines are skipped).
    /// The error says how the body is not a record stream.
    pub fn next_frame(&mut self) -> Result<Option<RecordFrame>, String> {
        loop {
            let Some(eol) = memchr::memchr(b'\n', &self.pending) else { return Ok(None) };
            if eol == 0 {
                self.pending.advance(1);
                continue;
            }
            let head: FrameHead = serde_json::from_slice(&self.pending[..eol])
                .map_err(|e| format!("a record head is not JSON ({e}): {}", String::from_utf8_lossy(&self.pending[..eol.min(200)])))?;
            if head.end {
                self.pending.advance(eol + 1);
                return Ok(Some(RecordFrame::End { status: head.status.unwrap_or_default() }));
            }
            let length = head.length.ok_or("a record head has no length")?;
            // `length` is the sender's word: nothing is reserved for it and no sum can overflow
            // (reserving it let one head line abort the reader with a multi-terabyte allocation).
            if self.pending.len() - (eol + 1) < length {
                return Ok(None);
            }
            let head = self.pending.split_to(eol).freeze();
            self.pending.advance(1);
            let data = self.pending.split_to(length).freeze();
            return Ok(Some(RecordFrame::Record { head, data }));
        }
    }
}

/// Appends a record's JSON fields other than its bytes, leaving the object open.
fn write_open_head(record: &OutputRecord, action_ref: &str, runner_ref: &str, out: &mut Vec<u8>) {
    let head = OutputHead {
        id: stable_id(&format!("{}:{}", record.execution_id, record.seq)),
        execution_id: &record.execution_id,
        action_ref,
        runner_ref,
        timestamp: record.timestamp.to_iso(),
        output_type: record.stream.as_str(),
        seq: record.seq,
        offset: record.offset,
        host: record.host.as_deref(),
    };
    serde_json::to_writer(&mut *out, &head).expect("a record head serialises");
    out.pop(); // the closing brace: the caller's fields follow
}

/// Keeps only the top-level keys named by the first segment of each path, plus `always`.
pub fn project(doc: &mut Value, paths: &[String], always: &[&str]) {
    if let Value::Object(map) = doc {
        map.retain(|k, _| always.contains(&k.as_str()) || paths.iter().any(|p| p.split('.').next() == Some(k.as_str())));
    }
}

/// Removes the named top-level keys.
pub fn exclude(doc: &mut Value, paths: &[String]) {
    if let Value::Object(map) = doc {
        for p in paths {
            map.remove(p.split('.').next().unwrap_or(p));
        }
    }
}
