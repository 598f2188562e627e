//! What one client can cost the server: half-sent headers (slowloris), a client that stops
//! reading, more connections than allowed, and running out of file descriptors. Each test
//! prints what it measured.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, Sse, get, output_text, run_cmd, wait_done};

fn connect(server: &Server) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    TcpStream::connect(addr).expect("connect")
}

/// Reads until the server closes the connection; returns the bytes read, or `None` when the
/// connection is still open after `within`.
fn read_until_closed(conn: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        conn.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match conn.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return None,
            Err(_) => return Some(got), // reset by the server: closed too
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_headers_are_closed_after_the_header_timeout_while_others_are_served() {
    let server = Server::start_with(&[("SQUALL_API__HEADER_READ_TIMEOUT", "2")]);
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut c = connect(&server);
            c.write_all(b"GET /v1/executions HTTP/1.1\r\nHost: squall\r\nX-Slow: ").unwrap();
            c
        })
        .collect();

    // Meanwhile an ordinary client is answered at once, every time.
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let (code, _) = get(&server, "/v1/executions?limit=1").await;
        assert_eq!(code, 200);
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut closed_by = Duration::ZERO;
    for c in &mut slow {
        let got = read_until_closed(c, Duration::from_secs(10)).expect("a half-sent request was still open 10 s later");
        assert!(got.is_empty() || String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&got));
        closed_by = closed_by.max(started.elapsed());
    }
    println!(
        "200 half-sent requests closed within {closed_by:.2?} (header timeout 2 s); an ordinary request took at most {worst:.2?} meanwhile"
    );
    assert!(closed_by >= Duration::from_secs(2), "closed before the timeout: {closed_by:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_sends_nothing_or_part_of_the_http2_preface_is_closed_after_the_header_timeout() {
    let server = Server::start_with(&[("SQUALL_API__HEADER_READ_TIMEOUT", "1")]);
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..50).map(|_| connect(&server)).collect();
    let mut preface: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut c = connect(&server);
            c.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
            c
        })
        .collect();
    for c in silent.iter_mut().chain(preface.iter_mut()) {
        let got = read_until_closed(c, Duration::from_secs(10)).expect("a connection that sent nothing was still open 10 s later");
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    }
    let closed_by = started.elapsed();
    println!("50 silent connections and 50 with part of the HTTP/2 preface closed within {closed_by:.2?} (header timeout 1 s)");
    assert!(closed_by >= Duration::from_secs(1), "closed before the timeout: {closed_by:?}");
    // HTTP/2 with prior knowledge still works: the whole preface gets the server's SETTINGS.
    let mut h2 = connect(&server);
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").unwrap();
    h2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut frame = [0u8; 9];
    h2.read_exact(&mut frame).expect("the server's SETTINGS frame");
    assert_eq!(frame[3], 0x04, "a SETTINGS frame: {frame:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = Server::start_with(&[("SQUALL_API__HEADER_READ_TIMEOUT", "1")]);
    let mut c = connect(&server);
    c.write_all(b"GET /livez HTTP/1.1\r\nHost: squall\r\n\r\n").unwrap();
    let started = Instant::now();
    let got = read_until_closed(&mut c, Duration::from_secs(10)).expect("an idle keep-alive connection stayed open");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    println!("idle keep-alive connection closed after {:.2?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let server = Server::start_with(&[("SQUALL_API__WRITE_TIMEOUT", "1")]);
    // 40 MB of finished output: more than the kernel buffers between server and client hold.
    let id = run_cmd(&server, "head -c 40000000 /dev/zero | tr '\\0' x | fold -w 99", serde_json::json!({})).await;
    assert_eq!(wait_done(&server, &id, Duration::from_secs(60)).await["status"], "succeeded");

    let mut c = connect(&server);
    write!(c, "GET /v1/executions/{id}/stdout HTTP/1.1\r\nHost: squall\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_secs(4)); // reads nothing
    let got = read_until_closed(&mut c, Duration::from_secs(20)).expect("the stalled response was never dropped");
    println!("a stalled reader of a 40 MB log was dropped after receiving {} bytes", got.len());
    assert!(got.len() < 40_000_000, "the whole log arrived: the connection was not dropped");
    assert!(!got.ends_with(b"0\r\n\r\n"), "the response ended normally");

    // The server is fine and a reader that keeps up gets everything.
    let all = common::get_bytes(&server, &format!("/v1/executions/{id}/stdout")).await;
    assert_eq!(all.len(), 40_000_000 + 40_000_000 / 99); // fold adds no newline after the last line
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_connection_limit_clients_wait_until_one_closes() {
    let server = Server::start_with(&[("SQUALL_API__MAX_CONNECTIONS", "4"), ("SQUALL_API__HEADER_READ_TIMEOUT", "30")]);
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = connect(&server);
            c.write_all(b"GET /livez HTTP/1.1\r\nHost: squall\r\n").unwrap(); // headers never finished
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let mut waiting = connect(&server); // the kernel accepts it into the backlog
    waiting.write_all(b"GET /livez HTTP/1.1\r\nHost: squall\r\nConnection: close\r\n\r\n").unwrap();
    assert!(read_until_closed(&mut waiting, Duration::from_secs(1)).is_none(), "a fifth connection was served past the limit of 4");

    drop(held.pop());
    let answer = read_until_closed(&mut waiting, Duration::from_secs(5)).expect("the waiting client was not served after a slot freed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    assert!(server.log().contains("connection limit reached"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_file_descriptors_the_server_keeps_running_and_recovers() {
    let server = Server::start_with(&[]);
    let (code, _) = get(&server, "/livez").await;
    assert_eq!(code, 200);
    let pid = server.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let limit = open + 16;
    let status = std::process::Command::new("prlimit")
        .args([format!("--pid={pid}"), format!("--nofile={limit}:{limit}")])
        .status()
        .expect("prlimit (util-linux) is needed: apt-get install util-linux");
    assert!(status.success());

    let flood: Vec<TcpStream> = (0..64).map(|_| connect(&server)).collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.log().contains("cannot accept connections"), "the limit was never hit: {}", server.log());

    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = reqwest::Client::new().get(server.url("/v1/executions?limit=1")).timeout(Duration::from_secs(2)).send().await;
        if r.as_ref().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not recover after the connections closed: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("with {limit} file descriptors and 64 clients at once: accept failed, the server kept running and served again");
}

#[tokio::test(flavor = "multi_thread")]
async fn livez_and_readyz_answer_without_credentials() {
    let server = Server::start_with(&[("SQUALL_AUTH__ENABLE", "true")]);
    let (code, body) = get(&server, "/livez").await;
    assert_eq!((code, body["status"].as_str()), (200, Some("ok")));
    let (code, body) = get(&server, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["checks"]["store"], "ok");
    assert_eq!(body["checks"]["runner"], "accepting work");
    // Everything else still needs a credential.
    let (code, _) = get(&server, "/v1/executions").await;
    assert_eq!(code, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_stream_outlives_the_header_timeout() {
    let server = Server::start_with(&[("SQUALL_API__HEADER_READ_TIMEOUT", "1"), ("SQUALL_STREAM__HEARTBEAT", "1")]);
    let mut c = connect(&server);
    c.write_all(b"GET /stream HTTP/1.1\r\nHost: squall\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    assert!(read_until_closed(&mut c, Duration::from_secs(4)).is_none(), "the event stream was closed while it was sending heartbeats");
}

/// The value of the sample `name{labels}` (exactly as rendered) in a Prometheus text page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_output_executions_connections_and_viewers() {
    let s = Server::start();
    let id = run_cmd(&s, "head -c 300000 /dev/zero | tr '\\0' x", serde_json::json!({})).await;
    wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(get(&s, &format!("/v1/executions/{id}")).await.0, 200);
    assert_eq!(get(&s, "/v1/executions/nope").await.0, 404);
    // A viewer held open on an execution that keeps running.
    let long = run_cmd(&s, "sleep 30", serde_json::json!({})).await;
    let viewer = reqwest::get(s.url(&format!("/v1/executions/{long}/stdout"))).await.unwrap();
    // No credentials needed, as for a Prometheus scrape.
    let r = reqwest::Client::new().get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let page = r.text().await.unwrap();
    println!("{page}");
    let at_least = |series: &str, min: f64| {
        let v = sample(&page, series).unwrap_or_else(|| panic!("no {series} in\n{page}"));
        assert!(v >= min, "{series} = {v}, expected at least {min}");
    };
    at_least("squall_output_bytes_total", 300_000.0);
    at_least("squall_output_records_total", 1.0);
    at_least("squall_output_commit_seconds_count", 1.0);
    assert!(page.contains("squall_output_commit_seconds_bucket{le=\"0.001\"}"), "commit latency is a histogram");
    assert_eq!(sample(&page, "squall_executions{status=\"succeeded\"}"), Some(1.0));
    assert_eq!(sample(&page, "squall_executions{status=\"running\"}"), Some(1.0));
    at_least("squall_http_requests_total{route=\"/executions\",status=\"201\"}", 2.0);
    at_least("squall_http_requests_total{route=\"/executions/{id}\",status=\"200\"}", 1.0);
    at_least("squall_http_requests_total{route=\"/executions/{id}\",status=\"404\"}", 1.0);
    at_least("squall_connections", 2.0);
    assert_eq!(sample(&page, "squall_live_viewers"), Some(1.0));
    drop(viewer);
    assert!(!page.contains(&id), "no execution id in a label");
}

#[tokio::test]
async fn metrics_time_delivery_to_live_viewers() {
    let s = Server::start();
    let id = run_cmd(&s, "sleep 0.5; for n in 1 2 3; do echo $n; sleep 0.1; done", serde_json::json!({})).await;
    let viewer = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &[]).await;
    assert_eq!(output_text(&viewer.rest().await), "1\n2\n3\n");
    let page = reqwest::get(s.url("/metrics")).await.unwrap().text().await.unwrap();
    let delivered = sample(&page, "squall_delivery_seconds_count").unwrap_or_else(|| panic!("no squall_delivery_seconds in\n{page}"));
    assert!(delivered >= 3.0, "{delivered} records timed to their viewers");
    assert!(page.contains("squall_delivery_seconds_bucket{le=\"0.01\"}"), "delivery latency is a histogram");
}
