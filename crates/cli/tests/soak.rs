//! Soak: rounds of large jobs, each watched live by SSE viewers and read back whole, against one
//! server. After every round the server's resident memory, open file descriptors and Tokio
//! tasks are sampled once it is idle again and has trimmed its heap: they must level off — the
//! first rounds fill pools, so growth is measured from the end of the second round, not from
//! the start. Then the memory an idle SSE viewer costs, and that closing it frees its
//! descriptor and task.
//!
//! CI runs 6 rounds of 16 jobs of 4.9 MB, enough to catch a gross leak; `SQUALL_TEST_SOAK_ROUNDS`
//! and `SQUALL_TEST_SOAK_JOBS` make it long enough to hold the growth slope to its target
//! (docs/reliability.md).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const MIB: f64 = 1024.0 * 1024.0;
/// Each job prints the numbers 1..=N, one per line: 4.9 MB.
const LINES: u64 = 700_000;
/// Live viewers per job.
const VIEWERS: usize = 2;
/// Jobs running at once.
const PARALLEL: usize = 4;
/// Jobs after round 2 from which the growth slope is precise enough to hold to its target.
const LONG_RUN_JOBS: usize = 500;
/// How far above the first rounds' idle RSS the last rounds' may sit without a leak (≈ 2.4 σ of
/// the round-to-round spread, for each of two rounds).
const SPREAD_MIB: f64 = 12.0;
/// Descriptors or tasks a sample may catch in passing (the scrape's own connection closing).
const SLACK: usize = 2;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What the server process holds, read from /proc.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss: f64,
    fds: usize,
    tasks: f64,
}

fn rss_bytes(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024.0
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("server fds").count()
}

/// A series of `/metrics`; `squall_live_viewers` is absent until the first viewer came.
async fn gauge(s: &Server, series: &str) -> f64 {
    let page = reqwest::get(s.url("/metrics")).await.unwrap().text().await.unwrap();
    let value = page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok());
    match (value, series) {
        (Some(v), _) => v,
        (None, "squall_live_viewers") => 0.0,
        (None, _) => panic!("no {series} in /metrics:\n{page}"),
    }
}

/// Waits until no viewer is left, then samples.
async fn idle_sample(s: &Server) -> Sample {
    let deadline = Instant::now() + Duration::from_secs(30);
    while gauge(s, "squall_live_viewers").await > 0.0 {
        assert!(Instant::now() < deadline, "viewers still counted 30 s after the last one closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Buffers of the last responses and the store's group commit settle, and the server gives
    // free memory back to the system (every 5 s, `crates/cli/src/memory.rs`): before that, RSS
    // holds whatever the last burst happened to leave in glibc's arenas (±10 MiB here).
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    Sample { rss: rss_bytes(s.pid()), fds: open_fds(s.pid()), tasks: gauge(s, "squall_tasks").await }
}

/// One job: started, followed live by `VIEWERS` SSE streams to its end, then read back raw.
async fn job(s: &Server) {
    let id = run_cmd(s, &format!("seq 1 {LINES}"), json!({})).await;
    let viewers: Vec<_> = (0..VIEWERS)
        .map(|_| {
            let url = s.url(&format!("/stream/v1/executions/{id}/output"));
            tokio::spawn(async move { output_text(&Sse::open(&url, &[]).await.rest().await).len() })
        })
        .collect();
    let expected: usize = (1..=LINES).map(|n| n.to_string().len() + 1).sum();
    for viewer in viewers {
        assert_eq!(viewer.await.unwrap(), expected, "a viewer saw every byte of {id}");
    }
    assert_eq!(wait_done(s, &id, Duration::from_secs(60)).await["status"], "succeeded");
    assert_eq!(get_bytes(s, &format!("/v1/executions/{id}/stdout")).await.len(), expected);
}

async fn round(s: &Server, jobs: usize) {
    for _ in 0..jobs.div_ceil(PARALLEL) {
        let batch: Vec<_> = (0..PARALLEL).map(|_| job(s)).collect();
        futures::future::join_all(batch).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_descriptors_and_tasks_level_off_over_rounds_of_large_watched_jobs() {
    let rounds = env_or("SQUALL_TEST_SOAK_ROUNDS", 6).max(3);
    let jobs = env_or("SQUALL_TEST_SOAK_JOBS", 16).div_ceil(PARALLEL) * PARALLEL;
    let s = Server::start();
    let started = Instant::now();
    let idle = idle_sample(&s).await;
    let mut samples = Vec::new();
    for n in 1..=rounds {
        round(&s, jobs).await;
        let sample = idle_sample(&s).await;
        println!("soak round {n}: {} jobs so far, RSS {:.1} MiB, {} fds, {} tasks", n * jobs, sample.rss / MIB, sample.fds, sample.tasks);
        samples.push(sample);
    }
    let (second, last) = (samples[1], samples[rounds - 1]);
    // Growth: the least-squares slope of RSS over the rounds from the second on.
    let points: Vec<(f64, f64)> = samples[1..].iter().enumerate().map(|(i, s)| (((i + 2) * jobs) as f64, s.rss / MIB)).collect();
    let per_100 = slope(&points) * 100.0;
    let later_jobs = (rounds - 2) * jobs;
    println!(
        "figures: soak {} jobs of {:.1} MB with {VIEWERS} viewers each in {:.0} s; RSS idle {:.1} → {:.1} MiB after round 2 → {:.1} MiB after round {rounds}: {per_100:+.2} MiB per 100 jobs; fds {} → {}; tasks {} → {}",
        rounds * jobs,
        (1..=LINES).map(|n| n.to_string().len() as f64 + 1.0).sum::<f64>() / 1e6,
        started.elapsed().as_secs_f64(),
        idle.rss / MIB,
        second.rss / MIB,
        last.rss / MIB,
        idle.fds,
        last.fds,
        idle.tasks,
        last.tasks,
    );
    // The first rounds fill pools (database connections, buffers); from then on, a plateau. Even
    // after a trim, idle RSS differs from round to round by up to 19 MiB here (what small live
    // allocations pin in glibc's arenas; σ ≈ 5 MiB over 30 rounds), so the slope resolves the
    // < 5 MiB per 100 jobs target only over many jobs: the long run (docs/reliability.md)
    // asserts it. A short run asserts that the last two rounds do not both sit well above the
    // first two, which a leak of ~20 MiB per 100 jobs or more makes them do.
    if later_jobs >= LONG_RUN_JOBS {
        assert!(per_100 < 5.0, "memory grows {per_100:.2} MiB per 100 jobs after the second round (target < 5)");
    } else {
        let early = samples[0].rss.max(second.rss) / MIB;
        let late = samples[rounds - 2].rss.min(last.rss) / MIB;
        assert!(late < early + SPREAD_MIB, "RSS at least {late:.1} MiB in the last two rounds, at most {early:.1} MiB in the first two");
    }
    assert!(last.fds <= second.fds + SLACK, "descriptors: {} after round 2, {} after round {rounds}", second.fds, last.fds);
    assert!(last.tasks <= second.tasks + SLACK as f64, "tasks: {} after round 2, {} after round {rounds}", second.tasks, last.tasks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sse_viewer_costs_little_memory_and_nothing_once_gone() {
    const N: usize = 400;
    let s = Server::start();
    let id = run_cmd(&s, "sleep 60", json!({"timeout": 120})).await;
    wait_status(&s, &id, &["running"], Duration::from_secs(10)).await;
    // One warm-up viewer: the first stream's one-time allocations are not a viewer's cost.
    let warm = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &[]).await;
    let before = idle_sample_with_viewers(&s, 1).await;
    let mut viewers = Vec::new();
    for _ in 0..N {
        viewers.push(Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &[]).await);
    }
    let during = idle_sample_with_viewers(&s, N + 1).await;
    let per_viewer = (during.rss - before.rss) / N as f64 / 1024.0;
    drop(viewers);
    drop(warm);
    // Closed connections' tasks end as the server notices each close: allow them a few seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = idle_sample(&s).await;
    while (after.fds > before.fds + SLACK || after.tasks > before.tasks + SLACK as f64) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = idle_sample(&s).await;
    }
    println!(
        "figures: {N} idle SSE viewers: RSS {:.1} → {:.1} MiB, {per_viewer:.1} KiB each; fds {} → {} → {}; tasks {} → {} → {}",
        before.rss / MIB,
        during.rss / MIB,
        before.fds,
        during.fds,
        after.fds,
        before.tasks,
        during.tasks,
        after.tasks
    );
    assert!(per_viewer <= 50.0, "an idle SSE viewer costs {per_viewer:.1} KiB (target ≤ 50)");
    assert!(after.fds <= before.fds + SLACK, "descriptors of closed viewers are released: {} → {} → {}", before.fds, during.fds, after.fds);
    assert!(
        after.tasks <= before.tasks + SLACK as f64,
        "tasks of closed viewers end: {} → {} → {}",
        before.tasks,
        during.tasks,
        after.tasks
    );
}

/// The least-squares slope of `points`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    sxy / sxx
}

/// Samples once the server counts `n` live viewers.
async fn idle_sample_with_viewers(s: &Server, n: usize) -> Sample {
    let deadline = Instant::now() + Duration::from_secs(30);
    while gauge(s, "squall_live_viewers").await < n as f64 {
        assert!(Instant::now() < deadline, "the server counts fewer than {n} viewers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Sample { rss: rss_bytes(s.pid()), fds: open_fds(s.pid()), tasks: gauge(s, "squall_tasks").await }
}
