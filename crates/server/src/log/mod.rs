//! An execution's output as numbered display lines ([`squall_core::lines`]): the line reader
//! behind `/executions/{id}/lines` and `/executions/{id}/search`, for viewers that show a log
//! of any size a screen at a time (the web console).
//!
//! Finding line N costs one indexed query and at most one record of reading: the log writer
//! stores each record's first line, [`Store::seq_before_line`] names the record to start from,
//! and the [`LineSplitter`] counts from there by the same rule.

pub mod terminal;

use std::ops::ControlFlow;

use squall_core::lines::LineCursor;
use squall_core::output::StreamFilter;
use squall_core::{OutputRecord, StreamKind, Timestamp};
use squall_store::{Store, StoreError};

/// Bytes of one line kept for display and search; the rest is counted, not shown.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Records per store page while scanning (pages are also bounded by bytes).
const PAGE_RECORDS: u32 = 512;

/// One display line, borrowed from the records (or the splitter's buffer for a line that
/// spans records).
#[derive(Debug)]
pub struct LineRef<'a> {
    pub n: u64,
    pub stream: StreamKind,
    pub host: Option<&'a str>,
    /// When the record holding its first byte was committed.
    pub timestamp: Timestamp,
    /// That record's `seq`.
    pub seq: u64,
    /// Its bytes without the `\n`, at most [`MAX_LINE_BYTES`].
    pub bytes: &'a [u8],
    /// Its full length in bytes (more than `bytes.len()` for a cut line).
    pub length: u64,
    /// The last line, not ended yet: it may grow while the action runs.
    pub unfinished: bool,
}

/// A line begun in one record and continued in the next.
struct Carry {
    n: u64,
    stream: StreamKind,
    host: Option<String>,
    timestamp: Timestamp,
    seq: u64,
    bytes: Vec<u8>,
    length: u64,
}

impl Carry {
    fn line(&self, unfinished: bool) -> LineRef<'_> {
        LineRef {
            n: self.n,
            stream: self.stream,
            host: self.host.as_deref(),
            timestamp: self.timestamp,
            seq: self.seq,
            bytes: &self.bytes,
            length: self.length,
            unfinished,
        }
    }

    fn extend(&mut self, part: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&part[..part.len().min(room)]);
        self.length += part.len() as u64;
    }
}

/// Splits records, fed in `seq` order, into display lines.
pub struct LineSplitter {
    cursor: LineCursor,
    carry: Option<Carry>,
}

impl LineSplitter {
    /// A splitter whose first record begins on line `line`.
    pub fn at(line: u64) -> LineSplitter {
        LineSplitter { cursor: LineCursor::at(line), carry: None }
    }

    /// Hands every line that `record` completes to `emit`, which may stop the scan. With
    /// `inner` false, lines that lie wholly inside the record are counted but not handed on (a
    /// search that knows the record holds no hit).
    pub fn feed(&mut self, record: &OutputRecord, inner: bool, emit: &mut impl FnMut(&LineRef) -> ControlFlow<()>) -> ControlFlow<()> {
        let host = record.host.as_deref();
        let mut n = self.cursor.begin(record.stream, host);
        if let Some(carry) = self.carry.take_if(|c| c.n != n) {
            emit(&carry.line(false))?;
        }
        self.cursor.consume(record.stream, host, &record.data);
        let data = &record.data[..];
        let mut start = 0;
        if !inner {
            // Only a line continued from the last record and the unfinished tail are handed on.
            let (Some(first), Some(last)) = (memchr::memchr(b'\n', data), memchr::memrchr(b'\n', data)) else {
                self.keep_rest(record, n, data);
                return ControlFlow::Continue(());
            };
            if let Some(mut carry) = self.carry.take() {
                carry.extend(&data[..first]);
                emit(&carry.line(false))?;
            }
            n = self.cursor.lines() - u64::from(last + 1 < data.len());
            self.keep_rest(record, n, &data[last + 1..]);
            return ControlFlow::Continue(());
        }
        for end in memchr::memchr_iter(b'\n', data) {
            let part = &data[start..end];
            start = end + 1;
            match self.carry.take() {
                Some(mut carry) => {
                    carry.extend(part);
                    emit(&carry.line(false))?;
                }
                None => emit(&LineRef {
                    n,
                    stream: record.stream,
                    host,
                    timestamp: record.timestamp,
                    seq: record.seq,
                    bytes: &part[..part.len().min(MAX_LINE_BYTES)],
                    length: part.len() as u64,
                    unfinished: false,
                })?,
            }
            n += 1;
        }
        self.keep_rest(record, n, &data[start..]);
        ControlFlow::Continue(())
    }

    /// Keeps `rest` (bytes after the record's last `\n`) as, or on, the unfinished line `n`.
    fn keep_rest(&mut self, record: &OutputRecord, n: u64, rest: &[u8]) {
        if rest.is_empty() {
            return;
        }
        let carry = self.carry.get_or_insert_with(|| Carry {
            n,
            stream: record.stream,
            host: record.host.clone(),
            timestamp: record.timestamp,
            seq: record.seq,
            bytes: Vec::new(),
            length: 0,
        });
        carry.extend(rest);
    }

    /// Hands the unfinished last line, if there is one, to `emit`.
    pub fn finish(&mut self, emit: &mut impl FnMut(&LineRef) -> ControlFlow<()>) -> ControlFlow<()> {
        match self.carry.take() {
            Some(carry) => emit(&carry.line(true)),
            None => ControlFlow::Continue(()),
        }
    }

    /// Lines so far, the unfinished one included.
    pub fn lines(&self) -> u64 {
        self.cursor.lines()
    }
}

/// What one page of a [`Scan`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// A page was read (this many bytes); there may be more.
    More { bytes: u64 },
    /// The emitter stopped the scan.
    Stopped,
    /// The log ends here, with this many lines (the unfinished last one included).
    End { lines: u64 },
}

/// Asks a question of a record's bytes.
type RecordTest<'s> = Box<dyn Fn(&[u8]) -> bool + Send + Sync + 's>;

/// A scan of one execution's lines from a given line on, a store page at a time, so that a
/// caller can send what it found between pages and stop when its client goes away.
pub struct Scan<'s> {
    store: &'s dyn Store,
    execution_id: &'s str,
    from: u64,
    after: u64,
    splitter: Option<LineSplitter>,
    ended: bool,
    /// Records whose lines need not be handed on one by one (see [`Scan::skipping`]).
    skip: Option<RecordTest<'s>>,
}

impl<'s> Scan<'s> {
    /// Starts at line `from`: one query finds the record to read from.
    pub async fn start(store: &'s dyn Store, execution_id: &'s str, from: u64) -> Result<Scan<'s>, StoreError> {
        let start = store.seq_before_line(execution_id, from).await?;
        let splitter = (start == 0).then(|| LineSplitter::at(0));
        Ok(Scan { store, execution_id, from, after: start.saturating_sub(1), splitter, ended: false, skip: None })
    }

    /// Leaves out the lines wholly inside any record for which `skip` says so (lines that
    /// cross a record boundary are still handed on): a search scans a record once for its
    /// pattern instead of line by line.
    pub fn skipping(mut self, skip: impl Fn(&[u8]) -> bool + Send + Sync + 's) -> Scan<'s> {
        self.skip = Some(Box::new(skip));
        self
    }

    /// Reads the next page, handing each line from `from` on to `emit`.
    pub async fn page(&mut self, emit: &mut impl FnMut(&LineRef) -> ControlFlow<()>) -> Result<Page, StoreError> {
        let from = self.from;
        let mut wanted = |line: &LineRef| if line.n < from { ControlFlow::Continue(()) } else { emit(line) };
        if self.ended {
            return Ok(Page::End { lines: self.splitter.as_ref().map_or(0, LineSplitter::lines) });
        }
        let page = self.store.read_output(self.execution_id, self.after, StreamFilter::All, PAGE_RECORDS).await?;
        let Some(last) = page.last() else {
            self.ended = true;
            let Some(splitter) = self.splitter.as_mut() else { return Ok(Page::End { lines: 0 }) };
            if splitter.finish(&mut wanted).is_break() {
                return Ok(Page::Stopped);
            }
            return Ok(Page::End { lines: splitter.lines() });
        };
        self.after = last.seq;
        for record in &page {
            let splitter = self.splitter.get_or_insert_with(|| LineSplitter::at(record.line.unwrap_or(0)));
            let inner = !self.skip.as_ref().is_some_and(|skip| skip(&record.data));
            if splitter.feed(record, inner, &mut wanted).is_break() {
                self.ended = true;
                return Ok(Page::Stopped);
            }
        }
        Ok(Page::More { bytes: page.iter().map(|r| r.data.len() as u64).sum() })
    }

    /// Runs the scan to its end or until `emit` stops it; returns the line count at the end,
    /// or `None` when stopped.
    pub async fn run(mut self, mut emit: impl FnMut(&LineRef) -> ControlFlow<()>) -> Result<Option<u64>, StoreError> {
        loop {
            match self.page(&mut emit).await? {
                Page::More { .. } => {}
                Page::Stopped => return Ok(None),
                Page::End { lines } => return Ok(Some(lines)),
            }
        }
    }
}

/// How many display lines `execution_id` has now (the unfinished last one included): reads
/// from the last numbered record on.
pub async fn count(store: &dyn Store, execution_id: &str) -> Result<u64, StoreError> {
    Ok(Scan::start(store, execution_id, u64::MAX).await?.run(|_| ControlFlow::Continue(())).await?.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn record(seq: u64, stream: StreamKind, data: &str) -> OutputRecord {
        OutputRecord {
            execution_id: "e".into(),
            seq,
            stream,
            offset: 0,
            timestamp: Timestamp(seq as i64),
            host: None,
            line: None,
            data: Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    fn split(records: &[OutputRecord], inner: bool) -> Vec<(u64, String, bool)> {
        let mut out = Vec::new();
        let mut keep = |l: &LineRef| {
            out.push((l.n, String::from_utf8_lossy(l.bytes).into_owned(), l.unfinished));
            ControlFlow::Continue(())
        };
        let mut splitter = LineSplitter::at(0);
        for r in records {
            let _ = splitter.feed(r, inner, &mut keep);
        }
        let _ = splitter.finish(&mut keep);
        out
    }

    #[test]
    fn lines_span_records_and_end_where_the_stream_changes() {
        use StreamKind::{Stderr, Stdout};
        let records = [record(1, Stdout, "a\nb"), record(2, Stdout, "c\nd"), record(3, Stderr, "e\n"), record(4, Stdout, "f")];
        assert_eq!(
            split(&records, true),
            [(0, "a".into(), false), (1, "bc".into(), false), (2, "d".into(), false), (3, "e".into(), false), (4, "f".into(), true)]
        );
    }

    #[test]
    fn skipping_a_record_leaves_out_only_the_lines_wholly_inside_it() {
        use StreamKind::Stdout;
        let records = [record(1, Stdout, "a\nb"), record(2, Stdout, "c\nd\ne\nf"), record(3, Stdout, "g"), record(4, Stdout, "h\ni\n")];
        assert_eq!(split(&records, false), [(1, "bc".into(), false), (4, "fgh".into(), false)], "a, d, e and i lie inside one record each");
        let total = |inner| {
            let mut s = LineSplitter::at(0);
            for r in &records {
                let _ = s.feed(r, inner, &mut |_| ControlFlow::Continue(()));
            }
            s.lines()
        };
        assert_eq!((total(true), total(false)), (6, 6));
    }

    #[test]
    fn long_lines_are_cut_for_display_but_keep_their_length() {
        let long = "x".repeat(MAX_LINE_BYTES + 10);
        let mut lengths = Vec::new();
        let mut splitter = LineSplitter::at(0);
        let _ = splitter.feed(&record(1, StreamKind::Stdout, &format!("{long}\n{long}")), true, &mut |l| {
            lengths.push((l.bytes.len(), l.length));
            ControlFlow::Continue(())
        });
        let _ = splitter.feed(&record(2, StreamKind::Stdout, &format!("{long}\n")), true, &mut |l| {
            lengths.push((l.bytes.len(), l.length));
            ControlFlow::Continue(())
        });
        let full = (MAX_LINE_BYTES + 10) as u64;
        assert_eq!(lengths, [(MAX_LINE_BYTES, full), (MAX_LINE_BYTES, 2 * full)]);
    }
}
