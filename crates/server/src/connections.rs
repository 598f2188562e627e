//! squall's own accept loop. `axum::serve` installs no timer, so hyper's header-read timeout
//! never fires there and one client holding half-sent headers keeps a connection forever; it
//! also caps nothing. Here every connection gets a deadline for its first bytes and one for
//! its headers (which hyper also applies while a keep-alive connection waits for its next
//! request), a write deadline (a client that accepts no byte for that long is dropped; a
//! viewer resumes with `Last-Event-ID`), and a place under a connection limit. Accept errors
//! such as running out of file descriptors are logged and waited out, never fatal.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower::util::MapRequestLayer;

use crate::paths;

/// What a connection may cost the server. The defaults suit a server facing the open network.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Longest time to receive a request's headers, counted from its first byte or, on a
    /// keep-alive connection, from the end of the previous response: idle connections close then.
    pub header_read_timeout: Duration,
    /// Longest time a write may wait on a client that reads nothing.
    pub write_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { header_read_timeout: Duration::from_secs(10), write_timeout: Duration::from_secs(60), max_connections: 16_384 }
    }
}

/// A bound socket and the service it is: the API (and auth) or StackStorm's stream service,
/// whose paths are rewritten onto the same router.
pub struct Listener {
    pub socket: TcpListener,
    pub stream_service: bool,
}

/// Serves `router` on every listener until `shutdown` fires, then lets open requests finish.
pub async fn serve(listeners: Vec<Listener>, router: Router, limits: ConnectionLimits, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let loops = listeners.into_iter().map(|listener| {
        let stream_service = listener.stream_service;
        let app = MapRequestLayer::new(move |req: hyper::Request<Incoming>| paths::rewrite(req.map(Body::new), stream_service))
            .layer(router.clone());
        accept_loop(listener.socket, app, &limits, &slots, &graceful, &shutdown)
    });
    futures::future::join_all(loops).await;
    graceful.shutdown().await;
}

async fn accept_loop<S>(
    socket: TcpListener,
    app: S,
    limits: &ConnectionLimits,
    slots: &Arc<Semaphore>,
    graceful: &GracefulShutdown,
    shutdown: &CancellationToken,
) where
    S: tower::Service<hyper::Request<Incoming>, Response = axum::response::Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let service = TowerToHyperService::new(app);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let (mut warned_full, mut warned_accept) = (Warned::default(), Warned::default());
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(slots).acquire_owned() => slot.expect("the connection semaphore is never closed"),
            () = shutdown.cancelled() => return,
        };
        if slots.available_permits() == 0 {
            warned_full.once_a_minute(|| {
                tracing::warn!(
                    limit = limits.max_connections,
                    "connection limit reached: new clients wait until one closes ([api] max_connections)"
                )
            });
        }
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // EMFILE / ENFILE / ENOMEM: the process is out of something. Keep serving the
                // connections it has; try again shortly.
                warned_accept.once_a_minute(|| tracing::error!("cannot accept connections: {e}; retrying"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (builder, service, watcher, shutdown) = (builder.clone(), service.clone(), graceful.watcher(), shutdown.clone());
        let (opening_timeout, write_timeout) = (limits.header_read_timeout, limits.write_timeout);
        metrics::gauge!("squall_connections").increment(1.0);
        metrics::counter!("squall_connections_accepted_total").increment(1);
        tokio::spawn(async move {
            if opens_in_time(&tcp, opening_timeout, &shutdown).await {
                let io = TokioIo::new(WriteDeadline::new(tcp, write_timeout));
                let _ = watcher.watch(builder.serve_connection_with_upgrades(io, service).into_owned()).await;
            }
            metrics::gauge!("squall_connections").decrement(1.0);
            drop(slot);
        });
    }
}

/// The start of HTTP/2 with prior knowledge, which tells it from HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client sends enough to tell its protocol within `timeout`: a byte that is not the
/// HTTP/2 preface's, or the whole preface. hyper-util's protocol detection waits for that without
/// any deadline, and hyper's header-read timeout starts only after it, so a client that connects
/// and sends nothing (or part of the preface) would hold its connection for ever. A shutdown
/// ends the wait at once (the connection holds up the graceful shutdown until it is served).
async fn opens_in_time(tcp: &TcpStream, timeout: Duration, shutdown: &CancellationToken) -> bool {
    let detected = async {
        let mut start = [0u8; H2_PREFACE.len()];
        loop {
            let n = tcp.peek(&mut start).await?;
            if n == 0 {
                return Ok(false); // closed before a byte
            }
            if n == start.len() || start[..n] != H2_PREFACE[..n] {
                return Ok(true);
            }
            // Part of the preface: `peek` would return the same bytes at once, so wait a little.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        opened = tokio::time::timeout(timeout, detected) => matches!(opened, Ok(Ok::<bool, io::Error>(true))),
        () = shutdown.cancelled() => false,
    }
}

/// Errors that concern one connection that never got established, not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset)
}

/// Rate limit for warnings that a loop would otherwise print thousands of times.
#[derive(Default)]
struct Warned(Option<Instant>);

impl Warned {
    fn once_a_minute(&mut self, log: impl FnOnce()) {
        if self.0.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            self.0 = Some(Instant::now());
            log();
        }
    }
}

/// A socket whose writes fail with `TimedOut` once one has waited `timeout` without the client
/// accepting a byte. Reads are untouched (hyper's header-read timeout covers them).
struct WriteDeadline {
    inner: TcpStream,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl WriteDeadline {
    fn new(inner: TcpStream, timeout: Duration) -> Self {
        WriteDeadline { inner, timeout, deadline: None }
    }

    /// Turns a pending write into an error once the deadline passes; any progress clears it.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.deadline = None;
            return poll;
        }
        let timeout = self.timeout;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client accepted no byte within the write timeout")))
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
