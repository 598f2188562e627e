//! The output record: one entry of an execution's append-only, sequenced log.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Which stream a record belongs to. `Output` holds lines squall itself writes (progress,
/// truncation markers), as StackStorm's `output` type does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    Stdout,
    Stderr,
    Output,
}

impl StreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
            StreamKind::Output => "output",
        }
    }

    pub fn parse(s: &str) -> Option<StreamKind> {
        match s {
            "stdout" => Some(StreamKind::Stdout),
            "stderr" => Some(StreamKind::Stderr),
            "output" => Some(StreamKind::Output),
            _ => None,
        }
    }

    /// Small integer code used by storage.
    pub fn code(self) -> i64 {
        match self {
            StreamKind::Stdout => 1,
            StreamKind::Stderr => 2,
            StreamKind::Output => 3,
        }
    }

    pub fn from_code(code: i64) -> Option<StreamKind> {
        match code {
            1 => Some(StreamKind::Stdout),
            2 => Some(StreamKind::Stderr),
            3 => Some(StreamKind::Output),
            _ => None,
        }
    }
}

/// One record of an execution's output log. `seq` is assigned by the execution's log writer
/// and is the resume token everywhere; `offset` is the byte offset of `data` within its stream;
/// `data` is exactly what the process wrote (no decoding, no trimming).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub execution_id: String,
    pub seq: u64,
    pub stream: StreamKind,
    pub offset: u64,
    pub timestamp: Timestamp,
    /// The remote host that produced it (remote runners); `None` for local output.
    pub host: Option<String>,
    /// The display line its first byte lands on ([`crate::lines`]), numbered by the log writer;
    /// `None` for records written elsewhere (the store's own notes) or before lines were numbered.
    pub line: Option<u64>,
    pub data: Bytes,
}

/// Which streams a reader wants. `All` includes squall's own `output` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFilter {
    All,
    Only(StreamKind),
    /// Matches nothing: StackStorm answers an unknown `output_type` with an empty body.
    Nothing,
}

impl StreamFilter {
    /// Parses StackStorm's `output_type` query value (`all`, `stdout`, `stderr`, `output`).
    pub fn from_output_type(value: Option<&str>) -> StreamFilter {
        match value {
            None | Some("all") | Some("") => StreamFilter::All,
            Some(other) => StreamKind::parse(other).map_or(StreamFilter::Nothing, StreamFilter::Only),
        }
    }

    pub fn matches(self, kind: StreamKind) -> bool {
        match self {
            StreamFilter::All => true,
            StreamFilter::Only(k) => k == kind,
            StreamFilter::Nothing => false,
        }
    }
}

/// Which records a viewer wants: by stream (`output_type`) and, for remote runners, by host
/// (`host`). A host filter leaves out squall's own host-less `output` records too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFilter {
    pub streams: StreamFilter,
    pub host: Option<String>,
}

impl RecordFilter {
    pub fn matches(&self, record: &OutputRecord) -> bool {
        self.streams.matches(record.stream) && self.host.as_ref().is_none_or(|h| record.host.as_ref() == Some(h))
    }
}
