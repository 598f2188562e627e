//! Abusive clients beside a normal one. Slowloris (headers sent a little at a time) and slow read
//! (a response taken a few bytes a second), both from Debian's `slowhttptest`, and SSE viewers
//! that stop reading while a fast action writes. Slowloris connections must be closed within the
//! header timeout (10 s by default), slow readers must cost the others nothing, and stalled
//! viewers must not slow the writer. The normal client's p99 and the writer's run time are
//! printed against baselines measured in the same run; the assertions are loose bounds that only
//! a server held up by the abusers would cross (timings on a shared 2-core machine swing; the
//! figures in docs/reliability.md come from quiet runs).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A normal client: `n` requests, each on a new connection; the p99 latency.
async fn p99(s: &Server, n: usize) -> Duration {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let r = client.get(s.url("/v1/actions/core.local")).send().await.expect("a normal request failed");
        assert_eq!(r.status().as_u16(), 200);
        r.bytes().await.unwrap();
        times.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    times.sort();
    times[n * 99 / 100]
}

/// Runs slowhttptest with `args` against `url`; returns what it printed.
fn slowhttptest(args: &[&str], url: &str) -> std::process::Child {
    Command::new("slowhttptest")
        .args(args)
        .args(["-u", url, "-v", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run slowhttptest ({e}): apt-get install slowhttptest (scripts/test does)"))
}

fn plain(out: &[u8]) -> String {
    // slowhttptest colours its report.
    strip_ansi(&String::from_utf8_lossy(out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_within_the_header_timeout_and_a_normal_client_is_served() {
    let s = Server::start();
    let before = p99(&s, 100).await;
    // 300 connections opened over 2 s, each sending one more header line every 3 s; the test
    // would go on for 40 s, but ends once the server has closed every connection.
    let attack = slowhttptest(&["-H", "-c", "300", "-r", "150", "-i", "3", "-l", "40"], &s.url("/v1/executions"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = p99(&s, 100).await;
    let out = tokio::task::spawn_blocking(move || attack.wait_with_output().unwrap()).await.unwrap();
    let report = plain(&out.stdout) + &plain(&out.stderr);
    let ended: u64 = report
        .split("Test ended on ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no end in slowhttptest's report:\n{report}"));
    println!(
        "figures: slowloris 300 connections: all closed by the server by second {ended} (opened over seconds 0–2, header timeout 10 s); a normal client's p99 {:.1} ms before, {:.1} ms during",
        before.as_secs_f64() * 1000.0,
        during.as_secs_f64() * 1000.0
    );
    assert!(report.contains("No open connections left"), "slowhttptest ended with connections still open:\n{report}");
    assert!(ended <= 2 + 10 + 2, "the last slowloris connection was closed at second {ended}:\n{report}");
    assert!(during < Duration::from_secs(1), "a normal request took {during:?} (p99) during the attack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_of_a_large_log_cost_a_normal_client_nothing() {
    let s = Server::start();
    let id = run_cmd(&s, "seq 1 2000000", json!({})).await;
    wait_done(&s, &id, Duration::from_secs(60)).await;
    let before = p99(&s, 100).await;
    // 200 connections reading a 14.9 MB log through a window of 1–512 bytes, 5 bytes a second.
    let attack = slowhttptest(
        &["-X", "-c", "200", "-r", "100", "-w", "1", "-y", "512", "-n", "1", "-z", "5", "-l", "15"],
        &s.url(&format!("/v1/executions/{id}/stdout")),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = p99(&s, 100).await;
    let out = tokio::task::spawn_blocking(move || attack.wait_with_output().unwrap()).await.unwrap();
    let report = plain(&out.stdout) + &plain(&out.stderr);
    let connected = report.rsplit("connected:").next().and_then(|r| r.split_whitespace().next()).unwrap_or("?").to_string();
    println!(
        "figures: slow read 200 connections ({connected} still connected at the end, as slow readers may be); a normal client's p99 {:.1} ms before, {:.1} ms during",
        before.as_secs_f64() * 1000.0,
        during.as_secs_f64() * 1000.0
    );
    assert!(
        report.contains("service available") && !report.contains("service available:   NO"),
        "slowhttptest saw the service unavailable:\n{report}"
    );
    assert!(during < Duration::from_secs(3), "a normal request took {during:?} (p99) during the attack");
}

/// An SSE viewer that sends its request and never reads a byte.
fn stalled_viewer(s: &Server, id: &str) -> TcpStream {
    let addr = s.base.trim_start_matches("http://");
    let mut c = TcpStream::connect(addr).unwrap();
    write!(c, "GET /stream/v1/executions/{id}/output HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    c
}

/// Seconds `seq` took inside the action (its run time less the leading sleep).
async fn writer_seconds(s: &Server, stalled: usize) -> f64 {
    let id = run_cmd(s, "sleep 0.5; seq 1 20000000", json!({})).await;
    let viewers: Vec<TcpStream> = (0..stalled).map(|_| stalled_viewer(s, &id)).collect();
    let e = wait_done(s, &id, Duration::from_secs(120)).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    drop(viewers);
    let at = |k: &str| squall_core::Timestamp::parse_query(e[k].as_str().unwrap()).unwrap();
    at("start_timestamp").seconds_until(at("end_timestamp")) - 0.5
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_sse_viewers_do_not_slow_a_fast_writer() {
    let s = Server::start();
    let mut ratios = Vec::new();
    let mut pairs = Vec::new();
    for pair in 0..3 {
        // Alternating order, so that neither side always runs on a warmer cache.
        let (watched, unwatched) = if pair % 2 == 0 {
            let w = writer_seconds(&s, 20).await;
            (w, writer_seconds(&s, 0).await)
        } else {
            let u = writer_seconds(&s, 0).await;
            (writer_seconds(&s, 20).await, u)
        };
        ratios.push(watched / unwatched);
        pairs.push(format!("{watched:.2}/{unwatched:.2} s"));
    }
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[1];
    println!(
        "figures: a 169 MB writer with 20 stalled SSE viewers: {ratio:.2}× its unwatched run time (median of 3 pairs: {})",
        pairs.join(", ")
    );
    assert!(ratio < 2.0, "stalled viewers slowed the writer {ratio:.2}× ({pairs:?})");
}
