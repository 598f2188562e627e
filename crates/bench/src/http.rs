//! The load generator's wire layer: a minimal HTTP/1.1 streaming GET over a plain TCP socket
//! (chunked or sized bodies, decoded in place with no copy of the payload) and a streaming
//! parser for squall's per-execution SSE output stream that never buffers a record.
//!
//! Both are written for throughput: a viewer reads into one fixed buffer and the parsers walk
//! it once, so thousands of viewers or gigabytes of output cost the bench little.

use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;

use memchr::memmem;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A streaming HTTP/1.1 response body.
pub struct RawStream {
    sock: TcpStream,
    buf: Vec<u8>,
    /// Body bytes already read with the headers, not yet handed out.
    pending: std::ops::Range<usize>,
    body: Body,
    pub status: u16,
    done: bool,
}

enum Body {
    Chunked(Chunk),
    Length(u64),
    UntilClose,
}

#[derive(Clone, Copy)]
enum Chunk {
    Size { value: u64, ext: bool },
    SizeLf { value: u64 },
    Data(u64),
    DataCr,
    DataLf,
}

impl RawStream {
    /// Sends `GET path` and reads the status line and headers. `buf_size` is the read size.
    pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)], buf_size: usize) -> io::Result<RawStream> {
        let sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        let mut stream =
            RawStream { sock, buf: vec![0; buf_size.max(4096)], pending: 0..0, body: Body::UntilClose, status: 0, done: false };
        stream.sock.write_all(request.as_bytes()).await?;
        stream.read_head().await?;
        Ok(stream)
    }

    async fn read_head(&mut self) -> io::Result<()> {
        let mut filled = 0;
        let end = loop {
            if filled == self.buf.len() {
                return Err(io::Error::other("response headers too large"));
            }
            let n = self.sock.read(&mut self.buf[filled..]).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before the response headers"));
            }
            let from = filled.saturating_sub(3);
            filled += n;
            if let Some(p) = memchr::memmem::find(&self.buf[from..filled], b"\r\n\r\n") {
                break from + p + 4;
            }
        };
        let head = std::str::from_utf8(&self.buf[..end]).map_err(|_| io::Error::other("response headers are not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        self.status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked") {
                self.body = Body::Chunked(Chunk::Size { value: 0, ext: false });
            } else if name == "content-length" && !matches!(self.body, Body::Chunked(_)) {
                self.body = Body::Length(value.parse().map_err(|_| io::Error::other("bad content-length"))?);
            }
        }
        if matches!(self.body, Body::Length(0)) {
            self.done = true;
        }
        self.pending = end..filled;
        Ok(())
    }

    /// Reads once from the socket (or uses bytes left over from the headers) and hands every
    /// body byte it got to `sink`, in order, as slices of the read buffer. Returns false once
    /// the body has ended.
    pub async fn read_some(&mut self, sink: &mut impl FnMut(&[u8])) -> io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        let range = if self.pending.is_empty() {
            let n = self.sock.read(&mut self.buf).await?;
            if n == 0 {
                return match self.body {
                    Body::UntilClose => {
                        self.done = true;
                        Ok(false)
                    }
                    _ => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside the response body")),
                };
            }
            0..n
        } else {
            std::mem::replace(&mut self.pending, 0..0)
        };
        let raw = &self.buf[range];
        match &mut self.body {
            Body::UntilClose => sink(raw),
            Body::Length(left) => {
                let take = (*left).min(raw.len() as u64) as usize;
                sink(&raw[..take]);
                *left -= take as u64;
                self.done = *left == 0;
            }
            Body::Chunked(state) => self.done = dechunk(state, raw, sink)?,
        }
        Ok(!self.done)
    }

    /// Reads the whole remaining body into `sink`.
    pub async fn read_to_end(&mut self, sink: &mut impl FnMut(&[u8])) -> io::Result<()> {
        while self.read_some(sink).await? {}
        Ok(())
    }
}

/// Decodes chunked transfer encoding across reads. True when the last (empty) chunk was seen.
fn dechunk(state: &mut Chunk, raw: &[u8], sink: &mut impl FnMut(&[u8])) -> io::Result<bool> {
    let mut i = 0;
    while i < raw.len() {
        if let Chunk::Data(left) = *state {
            let take = (left as usize).min(raw.len() - i);
            sink(&raw[i..i + take]);
            i += take;
            *state = if left as usize == take { Chunk::DataCr } else { Chunk::Data(left - take as u64) };
            continue;
        }
        let c = raw[i];
        i += 1;
        *state = match *state {
            Chunk::Size { value, ext } => match c {
                b'\r' => Chunk::SizeLf { value },
                b'\n' => size_done(value),
                _ if ext => Chunk::Size { value, ext },
                b';' => Chunk::Size { value, ext: true },
                _ => {
                    let digit = (c as char).to_digit(16).ok_or_else(|| io::Error::other("bad chunk size"))?;
                    Chunk::Size { value: value * 16 + u64::from(digit), ext }
                }
            },
            Chunk::SizeLf { value } if c == b'\n' => size_done(value),
            Chunk::DataCr if c == b'\r' => Chunk::DataLf,
            Chunk::DataLf if c == b'\n' => Chunk::Size { value: 0, ext: false },
            _ => return Err(io::Error::other("malformed chunked encoding")),
        };
        if let Chunk::Data(0) = *state {
            return Ok(true); // the terminating chunk; trailers are not used
        }
    }
    Ok(false)
}

fn size_done(value: u64) -> Chunk {
    Chunk::Data(value) // Data(0) marks the end
}

/// One event of the per-execution SSE output stream.
#[derive(Debug)]
pub enum OutputEvent<'a> {
    /// `st2.execution.output__create`: the record's `seq`, `offset`, stream, its decoded byte
    /// length, and (when collecting) its decoded bytes.
    Record { seq: u64, offset: u64, stdout: bool, len: u64, data: &'a [u8], timestamp_us: u64 },
    /// `EOF`, with its `id:` (the last `seq` the stream covered).
    Eof { id: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum St {
    LineStart,
    Field,
    AfterColon,
    Id,
    Event,
    Head,
    Str,
    Escape,
    Unicode { n: u8, cp: u32 },
    Tail,
    SkipLine,
}

const OUTPUT_EVENT: &[u8] = b"st2.execution.output__create";
const DATA_KEY: &[u8] = b"\"data\":\"";
const SEQ_KEY: &[u8] = b"\"seq\":";
const OFFSET_KEY: &[u8] = b"\"offset\":";
const STDERR_KEY: &[u8] = b"\"output_type\":\"stderr\"";
const TIMESTAMP_KEY: &[u8] = b"\"timestamp\":\"";
/// How much of a record's line the head scan copies at a time.
const HEAD_PIECE: usize = 1024;

type Finder = OnceLock<memmem::Finder<'static>>;
static DATA_FINDER: Finder = OnceLock::new();
static SEQ_FINDER: Finder = OnceLock::new();
static OFFSET_FINDER: Finder = OnceLock::new();
static STDERR_FINDER: Finder = OnceLock::new();
static TIMESTAMP_FINDER: Finder = OnceLock::new();

/// A substring searcher built once (building one costs more than searching a record's head).
fn finder(cell: &'static Finder, key: &'static [u8]) -> &'static memmem::Finder<'static> {
    cell.get_or_init(|| memmem::Finder::new(key))
}

/// Streaming parser of squall's per-execution SSE output stream (text encoding). It relies on
/// the server's key order (`data` is the record's last key), keeps at most the small JSON head
/// of a record, and decodes the `data` string in one pass — copying it only when `collect`.
pub struct OutputParser {
    collect: bool,
    st: St,
    field: Vec<u8>,
    id: Vec<u8>,
    event: Vec<u8>,
    head: Vec<u8>,
    seq: u64,
    offset: u64,
    stdout: bool,
    timestamp_us: u64,
    len: u64,
    data: Vec<u8>,
    high: Option<u32>,
    record_done: bool,
    /// Bytes fed so far (including SSE framing).
    pub wire_bytes: u64,
}

impl OutputParser {
    pub fn new(collect: bool) -> OutputParser {
        OutputParser {
            collect,
            st: St::LineStart,
            field: Vec::with_capacity(8),
            id: Vec::with_capacity(16),
            event: Vec::with_capacity(32),
            head: Vec::with_capacity(512),
            seq: 0,
            offset: 0,
            stdout: true,
            timestamp_us: 0,
            len: 0,
            data: Vec::new(),
            high: None,
            record_done: false,
            wire_bytes: 0,
        }
    }

    fn push_data(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.collect {
            self.data.extend_from_slice(bytes);
        }
    }

    fn push_char(&mut self, cp: u32) {
        let c = char::from_u32(cp).unwrap_or('\u{fffd}');
        let mut tmp = [0u8; 4];
        let n = c.encode_utf8(&mut tmp).len();
        self.push_data(&tmp[..n]);
    }

    /// Feeds the next bytes of the body; calls `on` for every complete event.
    pub fn feed(&mut self, bytes: &[u8], on: &mut impl FnMut(OutputEvent<'_>)) {
        self.wire_bytes += bytes.len() as u64;
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            match self.st {
                St::LineStart => {
                    if rest[0] == b'\n' {
                        i += 1;
                        self.end_frame(on);
                    } else {
                        self.field.clear();
                        self.st = St::Field;
                    }
                }
                St::Field => {
                    let c = rest[0];
                    i += 1;
                    match c {
                        b':' => self.st = St::AfterColon,
                        b'\n' => self.st = St::LineStart,
                        _ => self.field.push(c),
                    }
                }
                St::AfterColon => {
                    if rest[0] == b' ' {
                        i += 1;
                    }
                    self.st = match self.field.as_slice() {
                        b"id" => {
                            self.id.clear();
                            St::Id
                        }
                        b"event" => {
                            self.event.clear();
                            St::Event
                        }
                        b"data" if self.event == OUTPUT_EVENT => {
                            self.head.clear();
                            St::Head
                        }
                        _ => St::SkipLine,
                    };
                }
                St::Id | St::Event | St::SkipLine => {
                    let (take, newline) = match memchr::memchr(b'\n', rest) {
                        Some(p) => (p, true),
                        None => (rest.len(), false),
                    };
                    match self.st {
                        St::Id => self.id.extend_from_slice(&rest[..take]),
                        St::Event => self.event.extend_from_slice(&rest[..take]),
                        _ => {}
                    }
                    i += take;
                    if newline {
                        i += 1;
                        self.st = St::LineStart;
                    }
                }
                St::Head => {
                    // Up to the end of the line, a bounded piece at a time: the head before
                    // `"data":"` is small, the data after it is not copied here.
                    let line = memchr::memchr(b'\n', rest);
                    let take = line.unwrap_or(rest.len()).min(HEAD_PIECE);
                    let before = self.head.len();
                    // The key may straddle the previous piece.
                    let from = before.saturating_sub(DATA_KEY.len() - 1);
                    self.head.extend_from_slice(&rest[..take]);
                    if let Some(p) = finder(&DATA_FINDER, DATA_KEY).find(&self.head[from..]) {
                        let end = from + p + DATA_KEY.len();
                        self.head.truncate(end);
                        i += end - before;
                        self.start_record();
                        self.st = St::Str;
                    } else if line == Some(take) {
                        // A record without text data (e.g. base64 encoding): keep its numbers.
                        i += take + 1;
                        self.start_record();
                        self.record_done = true;
                        self.st = St::LineStart;
                    } else {
                        i += take;
                    }
                }
                St::Str => match memchr::memchr2(b'"', b'\\', rest) {
                    Some(p) => {
                        self.push_data(&rest[..p]);
                        i += p + 1;
                        self.st = if rest[p] == b'"' { St::Tail } else { St::Escape };
                    }
                    None => {
                        self.push_data(rest);
                        i += rest.len();
                    }
                },
                St::Escape => {
                    i += 1;
                    let decoded = match rest[0] {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'u' => {
                            self.st = St::Unicode { n: 0, cp: 0 };
                            continue;
                        }
                        other => other, // \" \\ \/
                    };
                    self.push_data(&[decoded]);
                    self.st = St::Str;
                }
                St::Unicode { n, cp } => {
                    i += 1;
                    let digit = (rest[0] as char).to_digit(16).unwrap_or(0);
                    let cp = cp * 16 + digit;
                    if n < 3 {
                        self.st = St::Unicode { n: n + 1, cp };
                        continue;
                    }
                    self.st = St::Str;
                    match cp {
                        0xd800..=0xdbff => self.high = Some(cp),
                        0xdc00..=0xdfff => match self.high.take() {
                            Some(h) => self.push_char(0x10000 + ((h - 0xd800) << 10) + (cp - 0xdc00)),
                            None => self.push_char(0xfffd),
                        },
                        _ => self.push_char(cp),
                    }
                }
                St::Tail => {
                    self.record_done = true;
                    self.st = St::SkipLine;
                }
            }
        }
    }

    fn start_record(&mut self) {
        self.seq = number_after(&self.head, finder(&SEQ_FINDER, SEQ_KEY)).unwrap_or(0);
        self.offset = number_after(&self.head, finder(&OFFSET_FINDER, OFFSET_KEY)).unwrap_or(0);
        self.stdout = finder(&STDERR_FINDER, STDERR_KEY).find(&self.head).is_none();
        let timestamp = finder(&TIMESTAMP_FINDER, TIMESTAMP_KEY);
        self.timestamp_us = timestamp.find(&self.head).and_then(|at| iso_micros(&self.head[at + TIMESTAMP_KEY.len()..])).unwrap_or(0);
        self.len = 0;
        self.data.clear();
        self.high = None;
    }

    fn end_frame(&mut self, on: &mut impl FnMut(OutputEvent<'_>)) {
        if self.record_done {
            self.record_done = false;
            on(OutputEvent::Record {
                seq: self.seq,
                offset: self.offset,
                stdout: self.stdout,
                len: self.len,
                data: &self.data,
                timestamp_us: self.timestamp_us,
            });
        } else if self.event == b"EOF" {
            let id = std::str::from_utf8(&self.id).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            on(OutputEvent::Eof { id });
        }
        self.event.clear();
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff…` (UTC) as microseconds since the Unix epoch.
fn iso_micros(s: &[u8]) -> Option<u64> {
    let num = |a: usize, b: usize| -> Option<i64> { std::str::from_utf8(s.get(a..b)?).ok()?.parse().ok() };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let frac =
        s.get(20..)?.iter().take_while(|c| c.is_ascii_digit()).take(6).fold((0i64, 0), |(v, n), c| (v * 10 + i64::from(c - b'0'), n + 1));
    let micros = frac.0 * 10i64.pow(6 - frac.1);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 24 + hh) * 60 + mm) * 60 + ss).ok().map(|secs| secs * 1_000_000 + micros as u64)
}

fn number_after(hay: &[u8], key: &memmem::Finder<'_>) -> Option<u64> {
    let at = key.find(hay)? + key.needle().len();
    let digits: &[u8] = &hay[at..];
    let end = digits.iter().position(|c| !c.is_ascii_digit()).unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, offset: u64, data: &str) -> String {
        let json = serde_json::json!({
            "id": "x", "execution_id": "e", "action_ref": "core.local", "runner_ref": "local-shell-cmd",
            "timestamp": "2024-01-01T00:00:00.000000Z", "output_type": "stdout", "seq": seq, "offset": offset, "data": data,
        });
        format!("id: {seq}\nevent: st2.execution.output__create\ndata: {json}\n\n")
    }

    fn parse(wire: &[u8], step: usize) -> Vec<(u64, u64, u64, Vec<u8>)> {
        let mut p = OutputParser::new(true);
        let mut out = Vec::new();
        for piece in wire.chunks(step) {
            p.feed(piece, &mut |e| match e {
                OutputEvent::Record { seq, offset, len, data, .. } => out.push((seq, offset, len, data.to_vec())),
                OutputEvent::Eof { id } => out.push((id, u64::MAX, 0, Vec::new())),
            });
        }
        out
    }

    #[test]
    fn records_and_eof_in_any_split() {
        let texts = ["hello\nworld\n", "quote \" back \\ tab\t ctl \u{1} é € 😀\n", ""];
        let mut wire = String::from("\n");
        let mut offset = 0;
        for (i, t) in texts.iter().enumerate() {
            wire.push_str(&frame(i as u64 + 1, offset, t));
            wire.push('\n'); // keep-alive
            offset += t.len() as u64;
        }
        wire.push_str("id: 3\nevent: EOF\ndata: ''\n\n");
        for step in [1, 2, 3, 7, 64, 100_000] {
            let got = parse(wire.as_bytes(), step);
            assert_eq!(got.len(), 4, "step {step}");
            let mut off = 0;
            for (i, t) in texts.iter().enumerate() {
                assert_eq!(got[i].0, i as u64 + 1);
                assert_eq!(got[i].1, off);
                assert_eq!(got[i].2, t.len() as u64, "step {step} {t:?}");
                assert_eq!(got[i].3, t.as_bytes());
                off += t.len() as u64;
            }
            assert_eq!((got[3].0, got[3].1), (3, u64::MAX));
        }
    }

    #[test]
    fn counting_matches_collecting() {
        let long = format!("{}\\\\x\"{}", "a\n".repeat(5000), "b\t".repeat(5000));
        let texts = ["plain", "a\nb\tc\n", "q\"uote\\ and \\\" mixed\n", "uni \u{1} é 😀\n", "ends with backslash \\", "", long.as_str()];
        let mut wire = String::new();
        for (i, t) in texts.iter().enumerate() {
            wire.push_str(&frame(i as u64 + 1, 0, t));
        }
        for step in [1, 2, 3, 5, 8, 13, 100_000] {
            let collected = parse(wire.as_bytes(), step);
            let mut counter = OutputParser::new(false);
            let mut counted = Vec::new();
            for piece in wire.as_bytes().chunks(step) {
                counter.feed(piece, &mut |e| {
                    if let OutputEvent::Record { len, .. } = e {
                        counted.push(len)
                    }
                });
            }
            for (c, t) in collected.iter().zip(texts) {
                assert_eq!(c.3, t.as_bytes(), "step {step}");
            }
            let expected: Vec<u64> = collected.iter().map(|c| c.3.len() as u64).collect();
            assert_eq!(counted, expected, "step {step}");
        }
    }

    #[test]
    fn iso_timestamps() {
        assert_eq!(iso_micros(b"1970-01-01T00:00:00.000001Z"), Some(1));
        assert_eq!(iso_micros(b"2024-03-01T12:34:56.789012Z\""), Some(1_709_296_496_789_012));
        assert_eq!(iso_micros(b"2000-02-29T00:00:00Z"), Some(951_782_400_000_000));
    }

    #[test]
    fn chunked_decoding_across_splits() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n";
        for step in [1, 2, 5, 100] {
            let mut state = Chunk::Size { value: 0, ext: false };
            let mut out = Vec::new();
            let mut done = false;
            for piece in wire.chunks(step) {
                if done {
                    break;
                }
                done = dechunk(&mut state, piece, &mut |b| out.extend_from_slice(b)).unwrap();
            }
            assert!(done);
            assert_eq!(out, b"hello world!");
        }
    }
}
