//! The wire form of live events between nodes: committed output records (a JSON head line,
//! then the records' bytes back to back) and execution changes (JSON).

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use squall_core::{Execution, OutputRecord, StreamKind, Timestamp};

use crate::{ChangeKind, RecordSource};

/// Room kept in every message for the head line and NATS' own framing.
const HEAD_ROOM: usize = 16 * 1024;

#[derive(Serialize, Deserialize)]
struct Head {
    /// The records' execution, as viewers need it.
    source: Source,
    records: Vec<RecordHead>,
}

#[derive(Serialize, Deserialize)]
struct Source {
    action_ref: String,
    runner_ref: String,
    pack: String,
    action_name: String,
    user: String,
}

#[derive(Serialize, Deserialize)]
struct RecordHead {
    seq: u64,
    stream: i64,
    offset: u64,
    ts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    len: usize,
    /// The record was too large for a message: its bytes are not here; read it from the store.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    omitted: bool,
}

/// A decoded output frame: records with their bytes, and the `seq`s of records whose bytes
/// must be read from the store.
pub struct OutputFrame {
    pub source: RecordSource,
    pub records: Vec<OutputRecord>,
    pub omitted: Vec<u64>,
}

/// Encodes records (all of one execution, in `seq` order) as messages of at most
/// `max_payload` bytes. A record that cannot fit travels as a head only (`omitted`).
pub fn encode_output(source: &RecordSource, records: &[OutputRecord], max_payload: usize) -> Vec<Bytes> {
    let budget = max_payload.saturating_sub(HEAD_ROOM).max(1);
    let carried = |r: &OutputRecord| if r.data.len() > budget { 0 } else { r.data.len() };
    let (mut messages, mut start, mut bytes) = (Vec::new(), 0, 0);
    for (at, r) in records.iter().enumerate() {
        if at > start && bytes + carried(r) > budget {
            messages.push(encode_group(source, &records[start..at], budget));
            (start, bytes) = (at, 0);
        }
        bytes += carried(r);
    }
    if start < records.len() {
        messages.push(encode_group(source, &records[start..], budget));
    }
    messages
}

fn encode_group(source: &RecordSource, records: &[OutputRecord], budget: usize) -> Bytes {
    let head = Head {
        source: Source {
            action_ref: source.action_ref.to_string(),
            runner_ref: source.runner_ref.to_string(),
            pack: source.pack.to_string(),
            action_name: source.action_name.to_string(),
            user: source.user.to_string(),
        },
        records: records
            .iter()
            .map(|r| RecordHead {
                seq: r.seq,
                stream: r.stream.code(),
                offset: r.offset,
                ts: r.timestamp.micros(),
                host: r.host.clone(),
                len: r.data.len(),
                omitted: r.data.len() > budget,
            })
            .collect(),
    };
    let head = serde_json::to_vec(&head).expect("a frame head serialises");
    let body: usize = records.iter().filter(|r| r.data.len() <= budget).map(|r| r.data.len()).sum();
    let mut out = BytesMut::with_capacity(head.len() + 1 + body);
    out.put_slice(&head);
    out.put_u8(b'\n');
    for r in records.iter().filter(|r| r.data.len() <= budget) {
        out.put_slice(&r.data);
    }
    out.freeze()
}

/// Decodes an output frame of `execution_id`; `None` when it is malformed.
pub fn decode_output(execution_id: &str, payload: Bytes) -> Option<OutputFrame> {
    let newline = payload.iter().position(|b| *b == b'\n')?;
    let head: Head = serde_json::from_slice(&payload[..newline]).ok()?;
    let mut body = payload.slice(newline + 1..);
    let source = RecordSource {
        action_ref: head.source.action_ref.into(),
        runner_ref: head.source.runner_ref.into(),
        pack: head.source.pack.into(),
        action_name: head.source.action_name.into(),
        user: head.source.user.into(),
    };
    let (mut records, mut omitted) = (Vec::new(), Vec::new());
    for r in head.records {
        if r.omitted {
            omitted.push(r.seq);
            continue;
        }
        if r.len > body.len() {
            return None;
        }
        records.push(OutputRecord {
            execution_id: execution_id.to_string(),
            seq: r.seq,
            stream: StreamKind::from_code(r.stream)?,
            offset: r.offset,
            timestamp: Timestamp(r.ts),
            host: r.host,
            line: None,
            data: body.split_to(r.len),
        });
    }
    Some(OutputFrame { source, records, omitted })
}

#[derive(Serialize, Deserialize)]
struct Change {
    create: bool,
    execution: Execution,
}

pub fn encode_change(kind: ChangeKind, execution: &Execution) -> Bytes {
    #[derive(Serialize)]
    struct ChangeRef<'a> {
        create: bool,
        execution: &'a Execution,
    }
    Bytes::from(serde_json::to_vec(&ChangeRef { create: kind == ChangeKind::Create, execution }).expect("an execution serialises"))
}

pub fn decode_change(payload: &[u8]) -> Option<(ChangeKind, Execution)> {
    let change: Change = serde_json::from_slice(payload).ok()?;
    Some((if change.create { ChangeKind::Create } else { ChangeKind::Update }, change.execution))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> RecordSource {
        RecordSource { action_ref: "p.a".into(), runner_ref: "r".into(), pack: "p".into(), action_name: "a".into(), user: "u".into() }
    }

    fn record(seq: u64, data: &[u8]) -> OutputRecord {
        OutputRecord {
            execution_id: "e".into(),
            seq,
            stream: StreamKind::Stderr,
            offset: seq * 10,
            timestamp: Timestamp(seq as i64),
            host: seq.is_multiple_of(2).then(|| "web-1".to_string()),
            line: None,
            data: Bytes::copy_from_slice(data),
        }
    }

    #[test]
    fn records_round_trip_in_messages_that_fit() {
        let big = vec![b'x'; 40_000];
        let records = vec![record(1, b"a\n"), record(2, &big), record(3, b"\0\xff"), record(4, &vec![b'y'; 100_000]), record(5, b"end")];
        let messages = encode_output(&source(), &records, 64 * 1024);
        assert!(messages.iter().all(|m| m.len() <= 64 * 1024), "{:?}", messages.iter().map(Bytes::len).collect::<Vec<_>>());
        let mut got = Vec::new();
        let mut omitted = Vec::new();
        for m in messages {
            let frame = decode_output("e", m).unwrap();
            assert_eq!(&*frame.source.action_ref, "p.a");
            got.extend(frame.records);
            omitted.extend(frame.omitted);
        }
        assert_eq!(omitted, [4], "too large for a message: read from the store");
        let want: Vec<OutputRecord> = records.into_iter().filter(|r| r.seq != 4).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert!(decode_output("e", Bytes::from_static(b"no newline")).is_none());
        let mut m = encode_output(&source(), &[record(1, b"hello")], 1 << 20).remove(0).to_vec();
        m.truncate(m.len() - 2);
        assert!(decode_output("e", Bytes::from(m)).is_none(), "short body");
    }
}
