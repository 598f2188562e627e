//! The log writer: the one place an execution's records get their `seq`. It batches whatever
//! capture has produced while the previous commit was running (group commit), commits the batch,
//! and only then publishes it.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use squall_bus::{Bus, RecordSource};
use squall_core::lines::LineCursor;
use squall_core::mask::Masker;
use squall_core::{Execution, OutputRecord, OutputStats, StreamKind, Timestamp};
use squall_store::{Store, StoreError};
use tokio::sync::mpsc;

use crate::capture::{Chunk, MAX_RECORD};
use crate::process::{StopReason, Stopper};

/// Upper bound of bytes taken into one commit.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// A bounded view of one stream for the execution's `result`: the first and the last
/// `limit / 2` bytes, with an explicit marker between them when something was cut. The full
/// stream stays in the log; this is never a second full copy: the head is copied once, the
/// tail holds references to the last records' bytes.
#[derive(Debug, Clone)]
pub struct HeadTail {
    half: usize,
    head: Vec<u8>,
    tail: VecDeque<Bytes>,
    tail_len: usize,
    total: u64,
}

impl HeadTail {
    pub fn new(limit: usize) -> HeadTail {
        HeadTail { half: limit / 2, head: Vec::new(), tail: VecDeque::new(), tail_len: 0, total: 0 }
    }

    pub fn push(&mut self, data: &Bytes) {
        self.total += data.len() as u64;
        let take = self.half.saturating_sub(self.head.len()).min(data.len());
        self.head.extend_from_slice(&data[..take]);
        if take == data.len() {
            return;
        }
        self.tail_len += data.len() - take;
        self.tail.push_back(data.slice(take..));
        // Keep just enough pieces to cover the last `half` bytes.
        while let Some(front) = self.tail.front()
            && self.tail_len - front.len() >= self.half
        {
            self.tail_len -= front.len();
            self.tail.pop_front();
        }
    }

    /// The kept text (lossy UTF-8), with `… N bytes omitted …` where bytes were dropped.
    pub fn text(&self) -> String {
        let mut tail: Vec<u8> = Vec::with_capacity(self.tail_len);
        self.tail.iter().for_each(|piece| tail.extend_from_slice(piece));
        let tail = &tail[tail.len().saturating_sub(self.half)..];
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
    pub stats: OutputStats,
    /// Result views of stdout and stderr, per host.
    views: PerHost<[HeadTail; 2]>,
}

impl WriterSummary {
    /// The kept text of one stream of local output (`host` `None`) or of one host's output.
    pub fn text(&self, host: Option<&str>, stream: StreamKind) -> String {
        let slot = if stream == StreamKind::Stderr { 1 } else { 0 };
        self.views.iter().find(|(h, _)| h.as_deref() == host).map_or_else(String::new, |(_, views)| views[slot].text())
    }
}

/// Per-host state (`None`: local output), in the order hosts first wrote.
type PerHost<T> = Vec<(Option<Arc<str>>, T)>;

/// The entry of `host`, made on its first use.
fn per_host<'a, T>(list: &'a mut PerHost<T>, host: &Option<Arc<str>>, make: impl FnOnce() -> T) -> &'a mut T {
    let at = match list.iter().position(|(h, _)| h == host) {
        Some(at) => at,
        None => {
            list.push((host.clone(), make()));
            list.len() - 1
        }
    };
    &mut list[at].1
}

/// `[actionrunner] max_output_bytes`: the first half is stored as it comes; past it, a rolling
/// last half is kept in memory and stored, after a marker in each stream naming what it lost,
/// when the streams close. Viewers see a marker live the moment the limit is reached.
#[derive(Debug, Default)]
struct Limit {
    /// 0: unlimited.
    max: u64,
    stored: u64,
    tail: VecDeque<Chunk>,
    tail_bytes: u64,
    /// Per host, per stream (stdout, stderr): where the head ended and what the tail dropped,
    /// for the markers that tell each stream's readers where bytes are missing.
    cuts: PerHost<[Cut; 2]>,
}

/// One stream's side of a truncation.
#[derive(Debug, Clone, Copy)]
struct Cut {
    head_ends_line: bool,
    omitted: u64,
}

impl Default for Cut {
    fn default() -> Self {
        Cut { head_ends_line: true, omitted: 0 }
    }
}

impl Limit {
    fn head_budget(&self) -> u64 {
        self.max / 2
    }

    fn tail_budget(&self) -> u64 {
        self.max - self.head_budget()
    }

    fn cut(&mut self, host: &Option<Arc<str>>, stream: StreamKind) -> &mut Cut {
        &mut per_host(&mut self.cuts, host, Default::default)[stream.code() as usize - 1]
    }

    /// `… N bytes omitted …` in each stream that lost bytes, on a line of its own, to be
    /// stored just before the tail: every view of that stream (and the combined log) shows it.
    fn markers(&self) -> Vec<Chunk> {
        let mut markers = Vec::new();
        for (host, cuts) in &self.cuts {
            for (stream, cut) in [StreamKind::Stdout, StreamKind::Stderr].into_iter().zip(cuts) {
                if cut.omitted > 0 {
                    let newline = if cut.head_ends_line { "" } else { "\n" };
                    let data = format!("{newline}… {} bytes omitted …\n", cut.omitted);
                    markers.push(Chunk { stream, host: host.clone(), data: data.into() });
                }
            }
        }
        markers
    }
}

/// Adjacent chunks of one stream and host that become one record.
struct Coalesced {
    stream: StreamKind,
    host: Option<Arc<str>>,
    parts: Vec<Bytes>,
    len: usize,
}

impl Coalesced {
    /// The record's bytes: a record of one piece is not copied.
    fn into_bytes(mut self) -> Bytes {
        if self.parts.len() == 1 {
            return self.parts.pop().expect("one part");
        }
        let mut buf = BytesMut::with_capacity(self.len);
        self.parts.iter().for_each(|p| buf.extend_from_slice(p));
        buf.freeze()
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
    /// Numbers each record by its first display line; `None` when continuing a log whose
    /// earlier records this writer did not see (those records then carry no line).
    lines: Option<LineCursor>,
    summary: WriterSummary,
    result_limit: usize,
    /// Values masked in stdout and stderr before anything is stored or published.
    secrets: Vec<String>,
    mask_min_length: usize,
    /// Streaming maskers of stdout and stderr, per host: a secret split across reads of one
    /// host's stream must not meet another host's bytes.
    maskers: PerHost<[Masker; 2]>,
    limit: Limit,
    /// Stopped when the writer cannot go on, so the process does not run on unrecorded.
    on_failure: Option<Arc<Stopper>>,
    /// A note for the next batch: output was held back while the disk was full.
    held_note: Option<Chunk>,
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
            lines: Some(LineCursor::default()),
            summary: WriterSummary { last_seq: 0, stats: OutputStats::default(), views: Vec::new() },
            result_limit,
            secrets: Vec::new(),
            mask_min_length: 1,
            maskers: Vec::new(),
            limit: Limit::default(),
            on_failure: None,
            held_note: None,
        }
    }

    /// Stops `stopper` when the writer fails (the store refused the output for good).
    pub fn stopping_on_failure(mut self, stopper: Arc<Stopper>) -> LogWriter {
        self.on_failure = Some(stopper);
        self
    }

    /// Stores at most `max_bytes` of stdout and stderr together (0: no limit).
    pub fn limit(mut self, max_bytes: u64) -> LogWriter {
        self.limit.max = max_bytes;
        self
    }

    /// Masks these values (those of at least `min_length` bytes) in everything written.
    pub fn masking(mut self, secrets: &[String], min_length: usize) -> LogWriter {
        self.secrets = secrets.to_vec();
        self.mask_min_length = min_length;
        self
    }

    /// Continues a log that already has records (for squall's own `output` lines written after
    /// a restart): numbering resumes after `last_seq`.
    pub fn resume_after(mut self, last_seq: u64) -> LogWriter {
        self.next_seq = last_seq + 1;
        self.lines = None;
        self
    }

    /// Consumes chunks until every sender is gone, committing them in groups.
    pub async fn run(mut self, rx: mpsc::Receiver<Chunk>) -> Result<WriterSummary, StoreError> {
        let on_failure = self.on_failure.take();
        let written = self.write_all(rx).await;
        if let (Err(e), Some(stopper)) = (&written, on_failure) {
            tracing::warn!(execution = %self.execution_id, error = %e, "output cannot be stored; stopping the action");
            stopper.stop(StopReason::Shutdown);
        }
        written
    }

    async fn write_all(&mut self, mut rx: mpsc::Receiver<Chunk>) -> Result<WriterSummary, StoreError> {
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
        let held: Vec<Chunk> = self
            .maskers
            .iter_mut()
            .flat_map(|(host, [out, err])| {
                [(StreamKind::Stdout, out.finish()), (StreamKind::Stderr, err.finish())].map(|(stream, data)| Chunk {
                    stream,
                    host: host.clone(),
                    data: data.into(),
                })
            })
            .collect();
        let mut kept = Vec::new();
        for chunk in held {
            self.keep(chunk, &mut kept);
        }
        self.store_records(kept.into_iter()).await?;
        if self.summary.stats.truncated {
            self.summary.stats.omitted_bytes = self.limit.cuts.iter().flat_map(|(_, cuts)| cuts).map(|c| c.omitted).sum();
            let markers = self.limit.markers();
            let tail: Vec<Chunk> = std::mem::take(&mut self.limit.tail).into();
            self.limit.max = 0; // the tail is stored whole
            self.store_records(markers.into_iter().chain(tail)).await?;
        }
        self.summary.last_seq = self.next_seq - 1;
        Ok(std::mem::replace(&mut self.summary, WriterSummary { last_seq: 0, stats: OutputStats::default(), views: Vec::new() }))
    }

    /// Masks chunks, applies the size limit, and stores what is kept.
    pub async fn commit(&mut self, chunks: impl Iterator<Item = Chunk>) -> Result<(), StoreError> {
        let mut kept = Vec::new();
        let masking = !self.secrets.is_empty();
        for mut chunk in chunks {
            if masking && chunk.stream != StreamKind::Output {
                let slot = chunk.stream.code() as usize - 1;
                let (secrets, min_length) = (&self.secrets, self.mask_min_length);
                let masker =
                    &mut per_host(&mut self.maskers, &chunk.host, || [Masker::new(secrets, min_length), Masker::new(secrets, min_length)])
                        [slot];
                if !masker.is_empty() {
                    chunk.data = masker.push_bytes(chunk.data);
                }
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
                limit.cut(&chunk.host, chunk.stream).head_ends_line = chunk.data.ends_with(b"\n");
                kept.push(chunk);
                return;
            }
            let cut = crate::capture::utf8_safe_len(&chunk.data[..room]);
            let head = chunk.data.split_to(cut);
            limit.stored += head.len() as u64;
            if !head.is_empty() {
                limit.cut(&chunk.host, chunk.stream).head_ends_line = head.ends_with(b"\n");
                kept.push(Chunk { stream: chunk.stream, host: chunk.host.clone(), data: head });
            }
            let note = format!(
                "… output limit reached (max_output_bytes = {}): the rest is kept as a rolling last {} bytes, stored when the action ends …\n",
                limit.max,
                limit.tail_budget()
            );
            kept.push(Chunk::local(StreamKind::Output, note));
            self.summary.stats.truncated = true;
        }
        limit.tail_bytes += chunk.data.len() as u64;
        limit.tail.push_back(chunk);
        while limit.tail_bytes > limit.tail_budget() {
            let excess = (limit.tail_bytes - limit.tail_budget()) as usize;
            let front = limit.tail.front_mut().expect("tail holds the excess");
            let drop = excess.min(front.data.len());
            let _ = front.data.split_to(drop);
            let (host, stream) = (front.host.clone(), front.stream);
            if front.data.is_empty() {
                limit.tail.pop_front();
            }
            limit.tail_bytes -= drop as u64;
            limit.cut(&host, stream).omitted += drop as u64;
        }
    }

    /// Coalesces adjacent chunks of the same stream and host (up to [`MAX_RECORD`]), numbers
    /// them, stores them in one transaction and then publishes them.
    async fn store_records(&mut self, chunks: impl Iterator<Item = Chunk>) -> Result<(), StoreError> {
        let mut merged: Vec<Coalesced> = Vec::new();
        for chunk in self.held_note.take().into_iter().chain(chunks) {
            if chunk.data.is_empty() {
                continue;
            }
            match merged.last_mut() {
                Some(m) if m.stream == chunk.stream && m.host == chunk.host && m.len + chunk.data.len() <= MAX_RECORD => {
                    m.len += chunk.data.len();
                    m.parts.push(chunk.data);
                }
                _ => merged.push(Coalesced { stream: chunk.stream, host: chunk.host, len: chunk.data.len(), parts: vec![chunk.data] }),
            }
        }
        let timestamp = Timestamp::now();
        let mut records = Vec::with_capacity(merged.len());
        for m in merged {
            let (stream, host) = (m.stream, m.host.clone());
            let data = m.into_bytes();
            let slot = (stream.code() - 1) as usize;
            if stream != StreamKind::Output {
                let limit = self.result_limit;
                per_host(&mut self.summary.views, &host, || [HeadTail::new(limit), HeadTail::new(limit)])[slot].push(&data);
            }
            let line = self.lines.as_mut().map(|lines| {
                let first = lines.begin(stream, host.as_deref());
                lines.consume(stream, host.as_deref(), &data);
                first
            });
            records.push(OutputRecord {
                execution_id: self.execution_id.clone(),
                seq: self.next_seq,
                stream,
                offset: self.offsets[slot],
                timestamp,
                host: host.map(|h| h.to_string()),
                line,
                data,
            });
            self.next_seq += 1;
            self.offsets[slot] += records.last().map_or(0, |r| r.data.len() as u64);
        }
        if records.is_empty() {
            return Ok(());
        }
        let (id, last) = (&self.execution_id, self.next_seq - 1);
        let started = std::time::Instant::now();
        let disk_full = std::sync::atomic::AtomicBool::new(false);
        crate::retry::persist("store output", || async {
            match self.store.append_output(&records).await {
                Err(err) if err.is_disk_full() => {
                    disk_full.store(true, std::sync::atomic::Ordering::Relaxed);
                    Err(err)
                }
                // The batch may have committed just before the connection dropped.
                Err(err) if err.is_transient() => match self.store.last_seq(id).await {
                    Ok(stored) if stored >= last => Ok(()),
                    _ => Err(err),
                },
                other => other,
            }
        })
        .await?;
        metrics::histogram!("squall_output_commit_seconds").record(started.elapsed().as_secs_f64());
        if disk_full.into_inner() {
            let note = format!(
                "… output held back for {:.1} s: the data directory's disk was full; nothing was lost …\n",
                started.elapsed().as_secs_f64()
            );
            self.held_note = Some(Chunk::local(StreamKind::Output, note));
        }
        metrics::counter!("squall_output_records_total").increment(records.len() as u64);
        metrics::counter!("squall_output_bytes_total").increment(records.iter().map(|r| r.data.len() as u64).sum());
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
        let mut push = |data: &'static [u8]| v.push(&Bytes::from_static(data));
        push(b"abcd");
        push(b"efgh");
        push(b"ijklmnop");
        for _ in 0..100 {
            push(b"x");
        }
        push(b"yz");
        let mut w = HeadTail::new(8);
        w.push(&Bytes::from_static(b"abcd"));
        assert_eq!(w.text(), "abcd");
        w.push(&Bytes::from_static(b"efgh"));
        assert_eq!(w.text(), "abcdefgh");
        w.push(&Bytes::from_static(b"ijklmnop"));
        assert_eq!(w.text(), "abcd\n… 8 bytes omitted …\nmnop");
        assert_eq!(v.text(), "abcd\n… 110 bytes omitted …\nxxyz");
        assert_eq!(v.total(), 118);
    }
}
