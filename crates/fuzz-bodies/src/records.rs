//! Output record framing: squall's record stream (`application/vnd.squall.records`), written by
//! `squall_server::wire::record_frame_head` / `record_stream_end` and read by
//! `squall_server::wire::RecordReader` (what `squall execution tail` reads with).
//!
//! Input: two bytes (record size, piece size), then bytes that are both a body for the reader
//! and the data of records to round-trip. Properties: any body gives frames or an error,
//! never a panic, and no frame holds more bytes than were sent; records written, with
//! heartbeats between them and cut into any pieces, read back as the same records and end.

use bytes::Bytes;
use serde_json::Value;
use squall_core::{OutputRecord, StreamKind, Timestamp};
use squall_server::wire::{self, RecordFrame, RecordReader};

pub fn body(data: &[u8]) {
    let Some((&[size, piece], rest)) = data.split_first_chunk::<2>() else { return };
    let piece = usize::from(piece) + 1;
    any_body(rest, piece);
    round_trip(rest, usize::from(size) + 1, piece);
}

/// Reads `body` in pieces until it ends or is refused.
fn any_body(body: &[u8], piece: usize) {
    let mut reader = RecordReader::default();
    let mut carried = 0;
    for part in body.chunks(piece) {
        reader.push(part);
        loop {
            match reader.next_frame() {
                Ok(Some(RecordFrame::Record { head, data })) => carried += head.len() + data.len(),
                Ok(Some(RecordFrame::End { .. })) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(carried <= body.len(), "frames hold more bytes than the body");
    }
}

/// `bytes` cut into records of `size` bytes (and an empty one), framed as the server frames
/// them, then read back from pieces of `piece` bytes.
fn round_trip(bytes: &[u8], size: usize, piece: usize) {
    let mut records: Vec<OutputRecord> = bytes.chunks(size).enumerate().map(|(i, c)| record(i as u64 + 1, c)).collect();
    records.push(record(records.len() as u64 + 1, b""));
    let mut body = Vec::new();
    for r in &records {
        body.extend_from_slice(&wire::record_frame_head(r, "core.local", "local-shell-cmd"));
        body.extend_from_slice(&r.data);
        if r.seq % 2 == 0 {
            body.push(b'\n'); // a heartbeat
        }
    }
    body.extend_from_slice(&wire::record_stream_end(records.len() as u64, "succeeded"));

    let mut reader = RecordReader::default();
    let mut frames = Vec::new();
    for part in body.chunks(piece) {
        reader.push(part);
        while let Some(frame) = reader.next_frame().expect("the server's framing reads back") {
            frames.push(frame);
        }
    }
    assert_eq!(frames.pop(), Some(RecordFrame::End { status: "succeeded".into() }));
    assert_eq!(frames.len(), records.len());
    for (frame, r) in frames.iter().zip(&records) {
        let RecordFrame::Record { head, data } = frame else { panic!("a record reads back as {frame:?}") };
        let head: Value = serde_json::from_slice(head).expect("a head is JSON");
        assert_eq!((head["seq"].as_u64(), head["length"].as_u64()), (Some(r.seq), Some(r.data.len() as u64)));
        assert_eq!(head.get("host").and_then(Value::as_str), r.host.as_deref());
        assert_eq!(data, &r.data);
    }
}

/// Record `seq`; every third one from a remote host whose name needs escaping.
fn record(seq: u64, data: &[u8]) -> OutputRecord {
    OutputRecord {
        execution_id: "65f0c0ffee0000000000000a".into(),
        seq,
        stream: if seq % 2 == 0 { StreamKind::Stderr } else { StreamKind::Stdout },
        offset: seq * 7,
        timestamp: Timestamp(1_717_502_414_123_456),
        host: (seq % 3 == 0).then(|| "web\n\"1\"".to_string()),
        line: None,
        data: Bytes::copy_from_slice(data),
    }
}
