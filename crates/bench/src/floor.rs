//! The loopback floor: the least any server has to do to hand bytes to the bench's viewers on
//! this machine. A bare TCP sender (plain threads, no runtime, no per-record framing) answers
//! each connection with one HTTP/1.1 response of the given bytes, written 256 KiB at a time;
//! the viewers read it with the same client as squall's responses. `join` and `firehose`
//! measure it in the same run, so their figures can be read against what the machine allows.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

/// Where each response's bytes come from.
pub enum Source {
    /// This file, read with the viewers' read size (what a server reading a stored log does).
    File(std::path::PathBuf),
    /// One buffer sent again and again, one write each (output that is already in memory).
    Repeat(Arc<[u8]>),
}

/// Listens on loopback and answers the next `connections` connections, each on its own thread,
/// with `bytes` bytes of `source`. Returns the address to connect to.
pub fn serve(connections: usize, bytes: u64, source: Source) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let source = Arc::new(source);
    std::thread::spawn(move || {
        for _ in 0..connections {
            let Ok((sock, _)) = listener.accept() else { return };
            let source = Arc::clone(&source);
            std::thread::spawn(move || {
                if let Err(e) = answer(sock, bytes, &source) {
                    eprintln!("squall bench: the loopback floor's sender failed: {e}");
                }
            });
        }
    });
    Ok(addr)
}

fn answer(mut sock: TcpStream, bytes: u64, source: &Source) -> io::Result<()> {
    sock.set_nodelay(true)?;
    read_request(&mut sock)?;
    sock.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut left = bytes;
    match source {
        Source::File(path) => {
            let mut file = std::fs::File::open(path)?;
            let mut buf = vec![0u8; super::viewers::READ];
            while left > 0 {
                let want = (left as usize).min(buf.len());
                let n = file.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file is shorter than the bytes to send"));
                }
                sock.write_all(&buf[..n])?;
                left -= n as u64;
            }
        }
        Source::Repeat(data) => {
            while left > 0 {
                let n = (left as usize).min(data.len());
                sock.write_all(&data[..n])?;
                left -= n as u64;
            }
        }
    }
    Ok(())
}

/// Reads up to the end of the request's headers (the request itself does not matter).
fn read_request(sock: &mut TcpStream) -> io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while memchr::memmem::find(&head, b"\r\n\r\n").is_none() {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the viewer closed before its request ended"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::RawStream;

    #[tokio::test]
    async fn every_connection_gets_the_bytes() {
        let data: Arc<[u8]> = (0..1000u32).map(|i| i as u8).collect::<Vec<_>>().into();
        let addr = serve(3, 2500, Source::Repeat(Arc::clone(&data))).unwrap();
        let expected: Vec<u8> = data.iter().copied().cycle().take(2500).collect();
        for _ in 0..3 {
            let mut stream = RawStream::get(addr, "/", &[], 4096).await.unwrap();
            let mut got = Vec::new();
            stream.read_to_end(&mut |b| got.extend_from_slice(b)).await.unwrap();
            assert_eq!((stream.status, got.len()), (200, 2500));
            assert!(got == expected);
        }
    }

    #[tokio::test]
    async fn a_file_is_sent_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let addr = serve(1, data.len() as u64, Source::File(path)).unwrap();
        let mut stream = RawStream::get(addr, "/", &[], 64 * 1024).await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut |b| got.extend_from_slice(b)).await.unwrap();
        assert!(got == data);
    }
}
