//! The client side of squall's record stream (`Accept: application/vnd.squall.records` on
//! `/executions/{id}/output`): each record is a JSON head line carrying its `length`, then that
//! many raw bytes. `squall execution tail` read the SSE stream with `encoding=base64` before;
//! encoding, parsing and decoding a 100 MB log's 130 MB of base64 made it wait on itself, not on
//! the server. Here a record's bytes are sliced out of the body, never copied or decoded.

use bytes::Bytes;
use futures::{Stream, StreamExt};
pub use squall_server::wire::RecordFrame as Frame;
use squall_server::wire::RecordReader;

/// Why reading the stream stopped early.
#[derive(Debug)]
pub enum FrameError<E> {
    /// The connection failed.
    Transport(E),
    /// The body is not a record stream (the message says how).
    Malformed(String),
}

/// The frames of a record-stream response body (read by the server's own
/// [`RecordReader`]); the stream ends where the body ends (after `End`, or early when the
/// connection drops).
pub fn frames<S, E>(body: S) -> impl Stream<Item = Result<Frame, FrameError<E>>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let state = Reader { body, frames: RecordReader::default(), failed: false };
    futures::stream::unfold(state, |mut r| async move {
        loop {
            if r.failed {
                return None;
            }
            match r.frames.next_frame() {
                Ok(Some(frame)) => return Some((Ok(frame), r)),
                Ok(None) => {}
                Err(message) => {
                    r.failed = true;
                    return Some((Err(FrameError::Malformed(message)), r));
                }
            }
            match r.body.next().await {
                Some(Ok(piece)) => r.frames.push(&piece),
                Some(Err(e)) => {
                    r.failed = true;
                    return Some((Err(FrameError::Transport(e)), r));
                }
                None => return None,
            }
        }
    })
}

/// The body and the frame reader holding what was received but not yet framed.
struct Reader<S> {
    body: S,
    frames: RecordReader,
    failed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &[u8], size: usize) -> Vec<Frame> {
        let pieces: Vec<Result<Bytes, std::convert::Infallible>> = body.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let frames = futures::executor::block_on(frames(futures::stream::iter(pieces)).collect::<Vec<_>>());
        frames.into_iter().map(|f| f.expect("well formed")).collect()
    }

    #[test]
    fn every_cut_gives_the_same_frames() {
        let mut body = b"\n{\"seq\":1,\"length\":3}\na\nb\n\n{\"seq\":2,\"length\":0}\n".to_vec();
        body.extend_from_slice(b"{\"seq\":3,\"length\":4}\n\xff\x00\n\n{\"end\":true,\"seq\":3,\"status\":\"failed\"}\n");
        let want = vec![
            Frame::Record { head: Bytes::from_static(b"{\"seq\":1,\"length\":3}"), data: Bytes::from_static(b"a\nb") },
            Frame::Record { head: Bytes::from_static(b"{\"seq\":2,\"length\":0}"), data: Bytes::new() },
            Frame::Record { head: Bytes::from_static(b"{\"seq\":3,\"length\":4}"), data: Bytes::from_static(b"\xff\x00\n\n") },
            Frame::End { status: "failed".into() },
        ];
        for size in 1..=body.len() {
            assert_eq!(parse(&body, size), want, "pieces of {size} bytes");
        }
    }

    #[test]
    fn a_cut_short_body_ends_without_the_partial_record() {
        assert_eq!(parse(b"{\"seq\":1,\"length\":3}\nab", 4), vec![]);
    }

    #[test]
    fn a_body_that_is_not_a_record_stream_is_an_error() {
        let pieces: Vec<Result<Bytes, std::convert::Infallible>> = vec![Ok(Bytes::from_static(b"<html>\n"))];
        let got = futures::executor::block_on(frames(futures::stream::iter(pieces)).collect::<Vec<_>>());
        assert!(matches!(&got[..], [Err(FrameError::Malformed(m))] if m.contains("not JSON")), "{got:?}");
    }
}
