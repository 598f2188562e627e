//! The log writer: the one place an execution's records get their `seq`. It batches whatever
//! capture has produced while the previous commit was running (group commit), commits the batch,
//! and only then publishes it.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use squall_bus::{Bus, RecordSource};
use squall_core::mask::Masker;
use squall_core::{Execution, OutputRecord, OutputStats, StreamKind, Timestamp};
use squall_store::{Store, StoreError};
use tokio::sync::mpsc;

use crate::capture::{Chunk, MAX_RECORD};

/// Upper bound of bytes taken into one commit.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// A bounded view of one stream for the execution's `result`: the first and the last
/// `limit / 2` bytes, with an explicit marker between them when something was cut. The full
/// stream stays in the log; this is never a second full copy.
#[derive(Debug, Clone)]
pub struct HeadTail {
    half: usize,
    head: Vec<u8>,
    tail: Vec<u8>,
    total: u64,
}

impl HeadTail {
    pub fn new(limit: usize) -> HeadTail {
        HeadTail { half: limit / 2, head: Vec::new(), tail: Vec::new(), total: 0 }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.half.saturating_sub(self.head.len());
        let take = room.min(data.len());
        self.head.extend_from_slice(&data[..take]);
        data = &data[take..];
        if data.is_empty() {
            return;
        }
        if data.len() >= self.half {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - self.half..]);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > 2 * self.half {
                self.tail.drain(..self.tail.len() - self.half);
            }
        }
    }

    /// The kept text (lossy UTF-8), with `… N bytes omitted …` where bytes were dropped.
    pub fn text(&self) -> String {
        let tail_start = self.tail.len().saturating_sub(self.half);
        let tail = &self.tail[tail_start..];
        let kept = (self.head.len() + tail.len()) as u64;
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.total > kept {
            text.push_str(&format!("\n… {} bytes omitted …\n", self.total - kept));
        }
        text.push_str(&String::from_utf8_lossy(tail));
        text
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

/// What the writer hands back when the process's pipes are closed and everything is stored.
#[derive(Debug)]
pub struct WriterSummary {
    pub last_seq: u64,
    pub stdout: HeadTail,
    pub stderr: HeadTail,
    pub stats: OutputStats,
}

/// `[actionrunner] max_output_bytes`: the first half is stored as it comes; past it, a rolling
/// last half is kept in memory and stored, after a marker naming what was omitted, when the
/// streams close. Viewers see a marker live the moment the limit is reached.
#[derive(Debug, Default)]
struct Limit {
    /// 0: unlimited.
    max: u64,
    stored: u64,
    tail: VecDeque<Chunk>,
    tail_bytes: u64,
}

impl Limit {
    fn head_budget(&self) -> u64 {
        self.max / 2
    }

    fn tail_budget(&self) -> u64 {
        self.max - self.head_budget()
    }
}

/// Writes one execution's log.
pub struct LogWriter {
    execution_id: String,
    source: RecordSource,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    /// `[actionrunner] stream_output`: publish live, or leave viewers to read the store.
    publish: bool,
    next_seq: u64,
    offsets: [u64; 3],
    summary: WriterSummary,
    /// Secret masking for stdout and stderr, applied before anything is stored or published.
    maskers: [Masker; 2],
    limit: Limit,
}

impl LogWriter {
    pub fn new(execution: &Execution, store: Arc<dyn Store>, bus: Arc<dyn Bus>, publish: bool, result_limit: usize) -> LogWriter {
        LogWriter {
            execution_id: execution.id.clone(),
            source: RecordSource::of(execution),
            store,
            bus,
            publish,
            next_seq: 1,
            offsets: [0; 3],
            summary: WriterSummary {
                last_seq: 0,
                stdout: HeadTail::new(result_limit),
                stderr: HeadTail::new(result_limit),
                stats: OutputStats::default(),
            },
            maskers: [Masker::new(Vec::<String>::new(), 1), Masker::new(Vec::<String>::new(), 1)],
            limit: Limit::default(),
        }
    }

    /// Stores at most `max_bytes` of stdout and stderr together (0: no limit).
    pub fn limit(mut self, max_bytes: u64) -> LogWriter {
        self.limit.max = max_bytes;
        self
    }

    /// Masks these values (those of at least `min_length` bytes) in everything written.
    pub fn masking(mut self, secrets: &[String], min_length: usize) -> LogWriter {
        self.maskers = [Masker::new(secrets, min_length), Masker::new(secrets, min_length)];
        self
    }

    /// Continues a log that already has records (for squall's own `output` lines written after
    /// a restart): numbering resumes after `last_seq`.
    pub fn resume_after(mut self, last_seq: u64) -> LogWriter {
        self.next_seq = last_seq + 1;
        self
    }

    /// Consumes chunks until every sender is gone, committing them in groups.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Chunk>) -> Result<WriterSummary, StoreError> {
        let mut pending: Vec<Chunk> = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut bytes = first.data.len();
            pending.push(first);
            while bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(chunk) => {
                        bytes += chunk.data.len();
                        pending.push(chunk);
                    }
                    Err(_) => break,
                }
            }
            self.commit(pending.drain(..)).await?;
        }
        // The streams are closed: whatever was held back as a possible secret prefix is not one.
        // It is already masked, so it goes straight to `keep`.
        let held: Vec<Chunk> = [StreamKind::Stdout, StreamKind::Stderr]
            .into_iter()
            .zip(self.maskers.iter_mut())
            .map(|(stream, m)| Chunk { stream, data: m.finish().into() })
            .collect();
        let mut kept = Vec::new();
        for chunk in held {
            self.keep(chunk, &mut kept);
        }
        self.store_records(kept.into_iter()).await?;
        if self.summary.stats.truncated {
            let marker = format!("… {} bytes omitted …\n", self.summary.stats.omitted_bytes);
            let tail: Vec<Chunk> = std::mem::take(&mut self.limit.tail).into();
            self.limit.max = 0; // the tail is stored whole
            self.store_records(std::iter::once(Chunk { stream: StreamKind::Output, data: marker.into() }).chain(tail)).await?;
        }
        self.summary.last_seq = self.next_seq - 1;
        Ok(self.summary)
    }

    /// Masks chunks, applies the size limit, and stores what is kept.
    pub async fn commit(&mut self, chunks: impl Iterator<Item = Chunk>) -> Result<(), StoreError> {
        let mut kept = Vec::new();
        for mut chunk in chunks {
            if let Some(masker) = self.maskers.get_mut(chunk.stream.code() as usize - 1).filter(|m| !m.is_empty()) {
                chunk.data = masker.push(&chunk.data).into();
            }
            self.keep(chunk, &mut kept);
        }
        self.store_records(kept.into_iter()).await
    }

    /// Counts a masked chunk and passes it through the size limit.
    fn keep(&mut self, chunk: Chunk, kept: &mut Vec<Chunk>) {
        match chunk.stream {
            StreamKind::Stdout => self.summary.stats.stdout_bytes += chunk.data.len() as u64,
            StreamKind::Stderr => self.summary.stats.stderr_bytes += chunk.data.len() as u64,
            StreamKind::Output => {}
        }
        self.apply_limit(chunk, kept);
    }

    /// Passes `chunk` on while the head budget lasts; past it, keeps it in the rolling tail.
    fn apply_limit(&mut self, mut chunk: Chunk, kept: &mut Vec<Chunk>) {
        let limit = &mut self.limit;
        if limit.max == 0 || chunk.stream == StreamKind::Output || chunk.data.is_empty() {
            kept.push(chunk);
            return;
        }
        if !self.summary.stats.truncated {
            let room = limit.head_budget().saturating_sub(limit.stored) as usize;
            if chunk.data.len() <= room {
                limit.stored += chunk.data.len() as u64;
                kept.push(chunk);
                return;
            }
            let cut = crate::capture::utf8_safe_len(&chunk.data[..room]);
            let head = chunk.data.split_to(cut);
            limit.stored += head.len() as u64;
            if !head.is_empty() {
                kept.push(Chunk { stream: chunk.stream, data: head });
            }
            let note = format!(
                "… output limit reached (max_output_bytes = {}): the rest is kept as a rolling last {} bytes, stored when the action ends …\n",
                limit.max,
                limit.tail_budget()
            );
            kept.push(Chunk { stream: StreamKind::Output, data: note.into() });
            self.summary.stats.truncated = true;
        }
        limit.tail_bytes += chunk.data.len() as u64;
        limit.tail.push_back(chunk);
        while limit.tail_bytes > limit.tail_budget() {
            let excess = (limit.tail_bytes - limit.tail_budget()) as usize;
            let front = limit.tail.front_mut().expect("tail holds the excess");
            let drop = excess.min(front.data.len());
            let _ = front.data.split_to(drop);
            if front.data.is_empty() {
                limit.tail.pop_front();
            }
            limit.tail_bytes -= drop as u64;
            self.summary.stats.omitted_bytes += drop as u64;
        }
    }

    /// Coalesces adjacent chunks of the same stream (up to [`MAX_RECORD`]), numbers them,
    /// stores them in one transaction and then publishes them.
    async fn store_records(&mut self, chunks: impl Iterator<Item = Chunk>) -> Result<(), StoreError> {
        let mut merged: Vec<(StreamKind, BytesMut)> = Vec::new();
        for chunk in chunks {
            if chunk.data.is_empty() {
                continue;
            }
            match merged.last_mut() {
                Some((stream, buf)) if *stream == chunk.stream && buf.len() + chunk.data.len() <= MAX_RECORD => {
                    buf.extend_from_slice(&chunk.data);
                }
                _ => merged.push((chunk.stream, BytesMut::from(chunk.data.as_ref()))),
            }
        }
        let timestamp = Timestamp::now();
        let records: Vec<OutputRecord> = merged
            .into_iter()
            .map(|(stream, data)| {
                let data = data.freeze();
                let slot = (stream.code() - 1) as usize;
                let record = OutputRecord {
                    execution_id: self.execution_id.clone(),
                    seq: self.next_seq,
                    stream,
                    offset: self.offsets[slot],
                    timestamp,
                    data,
                };
                self.next_seq += 1;
                self.offsets[slot] += record.data.len() as u64;
                match stream {
                    StreamKind::Stdout => self.summary.stdout.push(&record.data),
                    StreamKind::Stderr => self.summary.stderr.push(&record.data),
                    StreamKind::Output => {}
                }
                record
            })
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        self.store.append_output(&records).await?;
        if self.publish {
            self.bus.publish_output(&self.source, records).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_tail_keeps_both_ends() {
        let mut v = HeadTail::new(8);
        v.push(b"abcd");
        assert_eq!(v.text(), "abcd");
        v.push(b"efgh");
        assert_eq!(v.text(), "abcdefgh");
        v.push(b"ijklmnop");
        assert_eq!(v.text(), "abcd\n… 8 bytes omitted …\nmnop");
        for _ in 0..100 {
            v.push(b"x");
        }
        v.push(b"yz");
        assert_eq!(v.text(), "abcd\n… 110 bytes omitted …\nxxyz");
        assert_eq!(v.total(), 118);
    }
}
