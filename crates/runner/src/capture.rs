//! Capture: turning a pipe into output chunks. Large buffered reads; whole lines go out as soon
//! as they are read, a partial line is held for a few milliseconds (so progress bars and prompts
//! still show), and nothing is ever split inside a UTF-8 character unless it is invalid anyway.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use squall_core::StreamKind;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Bytes read from one stream of a process, in order. Chunks are not yet sequenced: the log
/// writer assigns `seq` and offsets.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub stream: StreamKind,
    /// The remote host it came from (remote runners); `None` for local processes.
    pub host: Option<Arc<str>>,
    pub data: Bytes,
}

impl Chunk {
    /// A chunk of local output.
    pub fn local(stream: StreamKind, data: impl Into<Bytes>) -> Chunk {
        Chunk { stream, host: None, data: data.into() }
    }
}

/// Bytes asked for per read.
const READ_SIZE: usize = 256 * 1024;
/// Largest record squall stores; a longer line is stored in pieces of this size.
pub const MAX_RECORD: usize = 1024 * 1024;
/// How long a partial line waits for its newline before it is sent anyway.
const PARTIAL_FLUSH: Duration = Duration::from_millis(5);

/// Reads `reader` to its end, sending chunks (tagged with `host`, if any) to the log writer.
/// Waiting on a full channel stops the reading, so a slow store pushes back on the process
/// through its pipe — and only the store can do that. Returns when the pipe closes or the
/// writer has gone away.
pub async fn capture<R: AsyncRead + Unpin>(mut reader: R, stream: StreamKind, host: Option<Arc<str>>, tx: mpsc::Sender<Chunk>) {
    let send = |data: Bytes| {
        let chunk = Chunk { stream, host: host.clone(), data };
        let tx = &tx;
        async move { tx.send(chunk).await.is_ok() }
    };
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    // After a timed flush has left only an incomplete character behind, wait for more without a
    // deadline instead of waking every few milliseconds.
    let mut hold_without_deadline = false;
    loop {
        if buf.capacity() - buf.len() < READ_SIZE / 4 {
            buf.reserve(READ_SIZE);
        }
        let read = if buf.is_empty() || hold_without_deadline {
            reader.read_buf(&mut buf).await
        } else {
            match tokio::time::timeout(PARTIAL_FLUSH, reader.read_buf(&mut buf)).await {
                Ok(read) => read,
                Err(_) => {
                    let cut = utf8_safe_len(&buf);
                    hold_without_deadline = cut < buf.len();
                    if cut > 0 && !send(buf.split_to(cut).freeze()).await {
                        return;
                    }
                    continue;
                }
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                if !buf.is_empty() {
                    send(buf.split().freeze()).await;
                }
                return;
            }
            Ok(n) => n,
        };
        hold_without_deadline = false;
        let fresh = buf.len() - n;
        if let Some(pos) = memchr::memrchr(b'\n', &buf[fresh..])
            && !send(buf.split_to(fresh + pos + 1).freeze()).await
        {
            return;
        }
        while buf.len() >= MAX_RECORD {
            let cut = utf8_safe_len(&buf[..MAX_RECORD]).max(1);
            if !send(buf.split_to(cut).freeze()).await {
                return;
            }
        }
    }
}

/// Length of the longest prefix of `bytes` that does not end inside a multi-byte UTF-8
/// character (a trailing incomplete character is left for the next read).
pub fn utf8_safe_len(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(4) {
        let b = bytes[len - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // continuation byte: keep looking for the lead byte
        }
        let needed = match b {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if needed > back { len - back } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_cut_points() {
        assert_eq!(utf8_safe_len(b"abc"), 3);
        let e = "é".as_bytes(); // 2 bytes
        assert_eq!(utf8_safe_len(&[b'a', e[0]]), 1);
        assert_eq!(utf8_safe_len(&[b'a', e[0], e[1]]), 3);
        let euro = "€".as_bytes(); // 3 bytes
        assert_eq!(utf8_safe_len(&[b'x', euro[0], euro[1]]), 1);
        assert_eq!(utf8_safe_len(&[0xff, 0xfe]), 2);
    }

    async fn chunks_of(input: &'static [u8]) -> Vec<Chunk> {
        let (tx, mut rx) = mpsc::channel(1024);
        capture(input, StreamKind::Stdout, None, tx).await;
        let mut out = Vec::new();
        while let Some(c) = rx.recv().await {
            out.push(c);
        }
        out
    }

    #[tokio::test]
    async fn whole_lines_then_the_rest() {
        let chunks = chunks_of(b"one\ntwo\nthree").await;
        let all: Vec<u8> = chunks.iter().flat_map(|c| c.data.to_vec()).collect();
        assert_eq!(all, b"one\ntwo\nthree");
        assert_eq!(chunks[0].data.as_ref(), b"one\ntwo\n");
    }

    #[tokio::test]
    async fn a_long_line_is_split_at_max_record() {
        static LONG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let long = LONG.get_or_init(|| vec![b'x'; MAX_RECORD * 2 + 10]);
        let chunks = chunks_of(long).await;
        assert!(chunks.iter().all(|c| c.data.len() <= MAX_RECORD));
        assert_eq!(chunks.iter().map(|c| c.data.len()).sum::<usize>(), long.len());
    }
}
