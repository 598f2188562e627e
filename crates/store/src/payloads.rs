//! Output payloads of the SQLite backend: one append-only file per execution beside the
//! database (`output/<execution id>.log`), indexed by the `output` table. Bytes are written
//! once, with one `writev` per batch, instead of going through SQLite's pages, WAL and
//! checkpoints; the index rows are committed only after the bytes are written, so an index row
//! never points past what is in the file. Bytes a crash left after the last indexed record are
//! never read, and later appends go after them.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use squall_core::OutputRecord;

use crate::{Result, StoreError};

/// Where one record's bytes are in its execution's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub pos: u64,
    pub len: u64,
}

/// The directory of payload files.
#[derive(Debug, Clone)]
pub struct Payloads {
    dir: PathBuf,
}

impl Payloads {
    pub fn open(dir: PathBuf) -> Result<Payloads> {
        crate::private::directory(&dir)?;
        Ok(Payloads { dir })
    }

    fn path(&self, execution_id: &str) -> Result<PathBuf> {
        if execution_id.is_empty() || !execution_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(StoreError::Payload { path: execution_id.to_string(), source: std::io::ErrorKind::InvalidInput.into() });
        }
        Ok(self.dir.join(format!("{execution_id}.log")))
    }

    /// Appends every record's bytes to its execution's file; returns where each went, in order.
    /// Blocking I/O: the caller picks the thread.
    pub fn append(&self, records: &[OutputRecord]) -> Result<Vec<Span>> {
        let mut batches: Vec<(PathBuf, Vec<Bytes>)> = Vec::new();
        for r in records {
            let path = self.path(&r.execution_id)?;
            match batches.last_mut() {
                Some((p, data)) if *p == path => data.push(r.data.clone()),
                _ => batches.push((path, vec![r.data.clone()])),
            }
        }
        let mut spans = Vec::new();
        for (path, data) in batches {
            let mut file = OpenOptions::new().create(true).append(true).mode(0o600).open(&path).map_err(|e| io_error(&path, e))?;
            let mut pos = file.metadata().map_err(|e| io_error(&path, e))?.len();
            if let Err(e) = write_all_vectored(&mut file, &data) {
                // What a failed write (a full disk) left is cut off again: its space comes
                // back, and the retry's bytes follow the last indexed record directly.
                let _ = file.set_len(pos);
                return Err(io_error(&path, e));
            }
            for d in &data {
                spans.push(Span { pos, len: d.len() as u64 });
                pos += d.len() as u64;
            }
        }
        Ok(spans)
    }

    /// Reads these spans of one execution's file. A span the file does not hold in full (an
    /// operating-system crash lost the file's tail) comes back short.
    pub async fn read(&self, execution_id: &str, spans: Vec<Span>) -> Result<Vec<Bytes>> {
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        let path = self.path(execution_id)?;
        blocking(move || {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(spans.iter().map(|_| Bytes::new()).collect()),
                Err(e) => return Err(io_error(&path, e)),
            };
            read_spans(&file, &spans).map_err(|e| io_error(&path, e))
        })
        .await
    }

    /// Deletes the files of these executions (missing ones are fine).
    pub async fn remove(&self, execution_ids: &[String]) -> Result<()> {
        let paths: Vec<PathBuf> = execution_ids.iter().map(|id| self.path(id)).collect::<Result<_>>()?;
        blocking(move || {
            for path in paths {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(&path, e)),
                    _ => {}
                }
            }
            Ok(())
        })
        .await
    }
}

/// Runs blocking file or database work on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::Payload { path: String::new(), source: std::io::Error::other(e) }))
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Payload { path: path.display().to_string(), source }
}

/// Reads spans with one read per run of adjacent spans (consecutive records usually are), and
/// hands out slices of it.
fn read_spans(file: &File, spans: &[Span]) -> std::io::Result<Vec<Bytes>> {
    let mut out = Vec::with_capacity(spans.len());
    let mut at = 0;
    while at < spans.len() {
        let start = spans[at].pos;
        let mut end = at + 1;
        while end < spans.len() && spans[end].pos == spans[end - 1].pos + spans[end - 1].len {
            end += 1;
        }
        let len = spans[end - 1].pos + spans[end - 1].len - start;
        let run = read_range(file, start, len)?;
        for span in &spans[at..end] {
            let from = ((span.pos - start) as usize).min(run.len());
            let to = ((span.pos - start + span.len) as usize).min(run.len());
            out.push(run.slice(from..to));
        }
        at = end;
    }
    Ok(out)
}

/// `len` bytes from `pos`, or fewer if the file ends first.
fn read_range(file: &File, pos: u64, len: u64) -> std::io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len as usize);
    let mut reader = file;
    reader.seek(SeekFrom::Start(pos))?;
    reader.take(len).read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

fn write_all_vectored(file: &mut File, data: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = data.iter().map(|d| IoSlice::new(d)).collect();
    let mut rest = &mut slices[..];
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
