//! SSE encoding: the server's frames (`squall_server::wire::output_sse_frame`, `eof_sse_frame`,
//! `json_sse_frame`) decoded by a strict decoder written here from the WHATWG event-stream
//! rules (lines end at CRLF, LF or CR; an empty line dispatches; `data` lines join with LF).
//!
//! Input: eight bytes of `seq` (also the offset and timestamp), a flags byte (stream, host
//! given), a byte for the size of the pieces the decoder is fed, then the host (up to a NUL,
//! when given) and the record's bytes. Properties, for any bytes (`\r`, `\n`, empty lines,
//! NUL, invalid UTF-8): each frame is exactly one event with its id and name; the record comes
//! back exact (base64) or as its lossy text (text); its id sent back as `Last-Event-ID`
//! resumes after it; heartbeats between frames add no event.

use axum::http::HeaderValue;
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};
use squall_core::{OutputRecord, StreamKind, Timestamp};
use squall_server::query::{self, Params, Resume};
use squall_server::wire::{self, DataEncoding, OUTPUT_EVENT};

const ACTION_REF: &str = "core.local";
const RUNNER_REF: &str = "local-shell-cmd";

pub fn body(data: &[u8]) {
    let Some((record, piece)) = record_of(data) else { return };
    let text = wire::output_sse_frame(&record, ACTION_REF, RUNNER_REF, DataEncoding::Text);
    let base64 = wire::output_sse_frame(&record, ACTION_REF, RUNNER_REF, DataEncoding::Base64);
    let eof = wire::eof_sse_frame(record.seq);
    let change = json!({"status": "running", "result": {"stdout": String::from_utf8_lossy(&record.data)}, "host": record.host});
    let update = wire::json_sse_frame("st2.execution__update", &change);

    let id = record.seq.to_string();
    check_record(&only_event(&text, piece, &id, OUTPUT_EVENT), &record, DataEncoding::Text);
    check_record(&only_event(&base64, piece, &id, OUTPUT_EVENT), &record, DataEncoding::Base64);
    assert_eq!(only_event(&eof, piece, &id, "EOF").data, "''");
    let got: Value = serde_json::from_str(&only_event(&update, piece, "", "st2.execution__update").data).expect("an update's data is JSON");
    assert_eq!(got, change);

    let stream = [&b"\n"[..], &text, b"\n", &base64, b"\n\n", &update, &eof].concat();
    let names: Vec<String> = decode(&stream, piece).into_iter().map(|e| e.event).collect();
    assert_eq!(names, [OUTPUT_EVENT, OUTPUT_EVENT, "st2.execution__update", "EOF"]);
}

/// The record the input describes, and the size of the pieces to feed the decoder.
fn record_of(data: &[u8]) -> Option<(OutputRecord, usize)> {
    let (head, rest) = (data.get(..10)?, &data[10..]);
    let seq = u64::from_le_bytes(head[..8].try_into().expect("eight bytes"));
    let (flags, piece) = (head[8], usize::from(head[9]) + 1);
    let (host, bytes) = match crate::split_at_byte(rest, 0) {
        (host, Some(bytes)) if flags & 4 == 4 => (Some(String::from_utf8_lossy(host).into_owned()), bytes),
        _ => (None, rest),
    };
    let stream = [StreamKind::Stdout, StreamKind::Stderr, StreamKind::Output][usize::from(flags & 3) % 3];
    let record = OutputRecord {
        execution_id: "65f0c0ffee0000000000000a".into(),
        seq,
        stream,
        offset: seq.rotate_left(17),
        timestamp: Timestamp(seq as i64),
        host,
        line: None,
        data: Bytes::copy_from_slice(bytes),
    };
    Some((record, piece))
}

/// The one event `frame` holds, checked for its id (empty: none) and name.
fn only_event(frame: &[u8], piece: usize, id: &str, name: &str) -> Event {
    let mut events = decode(frame, piece);
    assert_eq!(events.len(), 1, "one frame, one event: {:?}", String::from_utf8_lossy(frame));
    let event = events.remove(0);
    assert_eq!((event.id.as_str(), event.event.as_str()), (id, name));
    event
}

/// The record's JSON has its fields and its bytes; its id resumes after it.
fn check_record(event: &Event, record: &OutputRecord, encoding: DataEncoding) {
    let doc: Value = serde_json::from_str(&event.data).expect("a record's data is JSON");
    assert_eq!(doc["seq"], json!(record.seq));
    assert_eq!(doc["offset"], json!(record.offset));
    assert_eq!(doc["output_type"], json!(record.stream.as_str()));
    assert_eq!(doc.get("host").and_then(Value::as_str), record.host.as_deref());
    match encoding {
        DataEncoding::Text => assert_eq!(doc["data"], json!(String::from_utf8_lossy(&record.data))),
        DataEncoding::Base64 => {
            let b64 = doc["data_b64"].as_str().expect("data_b64 is a string");
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("data_b64 is base64");
            assert_eq!(bytes, record.data);
        }
    }
    let last_event_id = HeaderValue::from_str(&event.id).expect("an event id is a header value");
    let resumed = query::resume(Some(&last_event_id), &Params::default()).map_err(|e| e.faultstring);
    assert_eq!(resumed, Ok(Resume::After(record.seq)));
}

/// A dispatched event: the last event id at that moment, its name and its data.
#[derive(Debug)]
struct Event {
    id: String,
    event: String,
    data: String,
}

/// Decodes `stream` fed in pieces of `piece` bytes. The server's frames must be UTF-8.
fn decode(stream: &[u8], piece: usize) -> Vec<Event> {
    let mut decoder = Decoder::default();
    for part in stream.chunks(piece) {
        decoder.push(part);
    }
    assert!(decoder.line.is_empty() && decoder.data.is_empty(), "the stream ends inside an event");
    decoder.events
}

/// The WHATWG event-stream parser, fed bytes as they arrive.
#[derive(Default)]
struct Decoder {
    /// The line read so far.
    line: Vec<u8>,
    /// The last line ended with CR: an LF next belongs to it.
    after_cr: bool,
    last_id: String,
    event: String,
    data: String,
    events: Vec<Event>,
}

impl Decoder {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let skip = std::mem::take(&mut self.after_cr) && b == b'\n';
            match b {
                _ if skip => {}
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_ended(&String::from_utf8(line).expect("the server's frames are UTF-8"));
                }
                _ => self.line.push(b),
            }
        }
    }

    fn line_ended(&mut self, line: &str) {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_id = value.to_string(),
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let (event, mut data) = (std::mem::take(&mut self.event), std::mem::take(&mut self.data));
        if data.is_empty() {
            return;
        }
        data.pop();
        let event = if event.is_empty() { "message".to_string() } else { event };
        self.events.push(Event { id: self.last_id.clone(), event, data });
    }
}
