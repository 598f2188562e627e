//! `ingest` and `lines` (one action's output into the log, against the same command writing
//! to a file) and `idle` (start-up time and memory).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use super::cluster::{Backends, BenchCluster};
use super::harness::{self, BenchServer, ServerOptions, mib, quote};
use super::http::RawStream;
use super::{Ctx, Figs, Run, stats};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

pub async fn ingest(ctx: &Ctx) -> Result<Run> {
    let bytes = ctx.scaled(GIB, MIB) as u64;
    let mut params = Figs::default();
    params.num("bytes", "bytes", bytes as f64, "").num("line_bytes", "line length", 100.0, "bytes");
    match &ctx.cluster {
        Some(backends) => against_embedded(ctx, backends, &harness::bulk_cmd(bytes), bytes, params).await,
        None => against_file(ctx, &harness::bulk_cmd(bytes), bytes, params).await,
    }
}

/// The same ingest through a cluster (its output into PostgreSQL) and through the embedded
/// server, E C C E, comparing the means of submit → succeeded.
async fn against_embedded(ctx: &Ctx, backends: &Backends, cmd: &str, expected: u64, mut params: Figs) -> Result<Run> {
    let root = ctx.temp_root()?;
    let embedded = BenchServer::start(root.path(), ServerOptions { env: &[], port: None }).await?;
    let cluster = BenchCluster::start(&root.path().join("cluster"), backends, 2, 2, &[]).await?;
    let early = settled_ingest(&embedded, cmd, expected).await?;
    let c = settled_ingest(&cluster.apis[0], cmd, expected).await?.and(&settled_ingest(&cluster.apis[0], cmd, expected).await?);
    let e = early.and(&settled_ingest(&embedded, cmd, expected).await?);
    params.text("deployment", "deployment", "2 API + 2 runner nodes on PostgreSQL and NATS");
    let mut run = Run { params, ..Run::default() };
    run.figures
        .num("elapsed_s", "submit → succeeded through the cluster (mean of 2)", c.elapsed.as_secs_f64(), "s")
        .num("throughput_mib_s", "throughput", expected as f64 / MIB / c.elapsed.as_secs_f64(), "MiB/s")
        .text("status", "status", &c.status)
        .flag("every_byte_committed", "every byte committed", c.status == "succeeded" && c.committed == expected)
        .num("committed_bytes", "committed bytes", c.committed as f64, "")
        .num("records", "records in the log", c.records as f64, "");
    run.baseline
        .num("elapsed_s", "submit → succeeded, embedded server (mean of 2)", e.elapsed.as_secs_f64(), "s")
        .num("throughput_mib_s", "throughput", expected as f64 / MIB / e.elapsed.as_secs_f64(), "MiB/s")
        .flag("every_byte_committed", "every byte committed", e.status == "succeeded" && e.committed == expected);
    run.ratio = Some(c.elapsed.as_secs_f64() / e.elapsed.as_secs_f64());
    run.notes.push("baseline: the embedded server in the same run (E C C E); ratio: cluster ÷ embedded".into());
    Ok(run)
}

pub async fn lines(ctx: &Ctx) -> Result<Run> {
    let n = ctx.scaled(10_000_000.0, 1000.0) as u64;
    let mut params = Figs::default();
    params.num("lines", "lines", n as f64, "");
    against_file(ctx, &format!("seq {n}"), seq_bytes(n), params).await
}

/// Bytes `seq n` writes.
fn seq_bytes(n: u64) -> u64 {
    let mut total = 0;
    let mut lo = 1;
    let mut digits = 1;
    while lo <= n {
        let hi = (lo * 10 - 1).min(n);
        total += (hi - lo + 1) * (digits + 1);
        lo *= 10;
        digits += 1;
    }
    total
}

/// Interleaved pairs per ingest comparison: enough for a median on a VM whose file-write times
/// swing 2–4× with page-cache state.
const PAIRS: usize = 3;

/// Runs `cmd` as a squall action and redirected to a file in the server's data directory (the
/// baseline), in [`PAIRS`] interleaved pairs whose order alternates, with the `cmd > /dev/null`
/// floor in each pair; reports medians and the median of the per-pair ratios. The squall side
/// is end to end, as a user sees it: submit through the API → `succeeded` reported, every byte
/// stored. The fixed cost of an execution (`true`, the same way) is measured beside it.
async fn against_file(ctx: &Ctx, cmd: &str, expected: u64, params: Figs) -> Result<Run> {
    let root = ctx.temp_root()?;
    let server = BenchServer::start(root.path(), ServerOptions { env: &[], port: None }).await?;
    let file = root.path().join("data").join("baseline.out");
    let baseline = || async {
        harness::settle_disk().await?;
        let took = harness::time_shell(&format!("{cmd} > {}", quote(&file))).await?;
        let written = std::fs::metadata(&file)?.len();
        std::fs::remove_file(&file)?;
        if written != expected {
            bail!("the baseline wrote {written} bytes, expected {expected}");
        }
        Ok(took.as_secs_f64())
    };
    let (mut ours, mut files, mut floors, mut ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut ingests = Vec::new();
    for pair in 0..PAIRS {
        let (r, base) = if pair % 2 == 0 {
            let base = baseline().await?;
            (settled_ingest(&server, cmd, expected).await?, base)
        } else {
            let r = settled_ingest(&server, cmd, expected).await?;
            (r, baseline().await?)
        };
        floors.push(harness::time_shell(&format!("{cmd} > /dev/null")).await?.as_secs_f64());
        ratios.push(r.elapsed.as_secs_f64() / base);
        ours.push(r.elapsed.as_secs_f64());
        files.push(base);
        ingests.push(r);
    }
    let r = Ingested::across(&ingests.iter().collect::<Vec<_>>());
    let mut fixed = Vec::new();
    for _ in 0..5 {
        fixed.push(ingest_once(&server, "true", 0).await?.elapsed.as_secs_f64() * 1000.0);
    }
    // Before the medians sort them.
    let each: Vec<String> = ours.iter().zip(&files).map(|(o, f)| format!("{o:.2} s ÷ {f:.2} s")).collect();
    let elapsed = stats::median(&mut ours);
    let base = stats::median(&mut files);
    let mut run = Run { params, ..Run::default() };
    run.figures
        .num("elapsed_s", "end to end: submit → succeeded through the API (median)", elapsed, "s")
        .num("throughput_mib_s", "throughput", expected as f64 / MIB / elapsed, "MiB/s")
        .num("fixed_cost_ms", "fixed cost of an execution (`true`, submit → succeeded, median of 5)", stats::median(&mut fixed), "ms")
        .text("status", "status", &r.status)
        .flag("every_byte_committed", "every byte committed", r.status == "succeeded" && r.committed == expected)
        .num("committed_bytes", "committed bytes", r.committed as f64, "")
        .num("records", "records in the log", r.records as f64, "")
        .num("server_cpu_s", "server CPU (mean)", r.server_cpu_s, "s")
        .num("action_cpu_s", "action CPU (the command, mean)", r.action_cpu_s, "s")
        .num("server_peak_rss_mib", "server peak RSS", mib(r.peak_rss_kib), "MiB");
    run.baseline
        .num("elapsed_s", "sh -c 'CMD > file' run time (median)", base, "s")
        .num("throughput_mib_s", "throughput", expected as f64 / MIB / base, "MiB/s")
        .num("floor_s", "floor: sh -c 'CMD > /dev/null' (median)", stats::median(&mut floors), "s");
    run.ratio = Some(stats::median(&mut ratios));
    run.notes.push(format!(
        "baseline: the same command into a file, {PAIRS} interleaved pairs (order alternating); ratio: median of the pairs' squall ÷ file ({})",
        each.join(", ")
    ));
    Ok(run)
}

pub struct Ingested {
    pub elapsed: Duration,
    pub status: String,
    pub committed: u64,
    pub records: u64,
    pub server_cpu_s: f64,
    pub action_cpu_s: f64,
    pub peak_rss_kib: u64,
}

impl Ingested {
    /// The mean of two runs of the same ingest (the worse status and byte count).
    fn and(&self, other: &Ingested) -> Ingested {
        Ingested::across(&[self, other])
    }

    /// Several runs of the same ingest: mean time and CPU, the worst status, the smallest byte
    /// count, the largest record count and peak memory.
    fn across(runs: &[&Ingested]) -> Ingested {
        let n = runs.len().max(1) as f64;
        Ingested {
            elapsed: Duration::from_secs_f64(runs.iter().map(|r| r.elapsed.as_secs_f64()).sum::<f64>() / n),
            status: runs.iter().find(|r| r.status != "succeeded").or(runs.first()).map(|r| r.status.clone()).unwrap_or_default(),
            committed: runs.iter().map(|r| r.committed).min().unwrap_or(0),
            records: runs.iter().map(|r| r.records).max().unwrap_or(0),
            server_cpu_s: runs.iter().map(|r| r.server_cpu_s).sum::<f64>() / n,
            action_cpu_s: runs.iter().map(|r| r.action_cpu_s).sum::<f64>() / n,
            peak_rss_kib: runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
        }
    }
}

/// [`ingest_once`] after writing dirty pages out, so each run starts alike.
async fn settled_ingest(server: &BenchServer, cmd: &str, expected: u64) -> Result<Ingested> {
    harness::settle_disk().await?;
    ingest_once(server, cmd, expected).await
}

/// Submits `cmd`, waits for its end, and checks what the log holds.
pub async fn ingest_once(server: &BenchServer, cmd: &str, expected: u64) -> Result<Ingested> {
    ingest_with(server, cmd, expected, json!({})).await
}

async fn ingest_with(server: &BenchServer, cmd: &str, expected: u64, extra: serde_json::Value) -> Result<Ingested> {
    let cpu0 = server.cpu();
    let t0 = Instant::now();
    let id = server.submit_with(cmd, extra).await?;
    let (status, done) = server.wait_done(&id, Duration::from_secs(3600)).await?;
    let elapsed = done - t0;
    let cpu = server.cpu().since(cpu0);
    let peak = server.memory().hwm_kib;
    let (records, committed) = server.committed_stdout(&id).await?;
    if committed != expected {
        eprintln!("squall bench: execution {id} ({status}) committed {committed} bytes of stdout, expected {expected}");
    }
    Ok(Ingested { elapsed, status, committed, records, server_cpu_s: cpu.own_s, action_cpu_s: cpu.children_s, peak_rss_kib: peak })
}

/// Output masking: the same ingest with 1,000 secret values registered (as secret-named `env`
/// entries of the action), against the same ingest without them, on one server. When this
/// build does not mask output (checked with a probe), nothing is measured.
pub async fn mask(ctx: &Ctx) -> Result<Run> {
    const SECRETS: usize = 1000;
    let bytes = ctx.scaled(GIB, MIB) as u64;
    let mut run = Run::default();
    run.params.num("bytes", "bytes", bytes as f64, "").num("secrets", "secret values", SECRETS as f64, "");
    let root = ctx.temp_root()?;
    let server = BenchServer::start(root.path(), ServerOptions { env: &[], port: None }).await?;

    let probe = "squall-bench-probe-5e1f0c9a";
    let id = server.submit_with(&format!("echo {probe}"), json!({"env": {"BENCH_PROBE_SECRET": probe}})).await?;
    server.wait_done(&id, Duration::from_secs(60)).await?;
    let shown = server.http.get(server.url(&format!("/v1/executions/{id}/output"))).send().await?.text().await?;
    if shown.contains(probe) {
        run.unavailable = Some("not available: this server does not mask output".into());
        return Ok(run);
    }

    // Values that look like real secrets (and never occur in the output).
    let mut env = serde_json::Map::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..SECRETS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        env.insert(format!("BENCH_SECRET_{i:04}"), json!(format!("s3cr3t-{x:016x}")));
    }
    let cmd = harness::bulk_cmd(bytes);
    // A, B, B, A: on this VM whichever ingest comes later pays more for fresh page-cache
    // memory, so each side runs once early and once late and the sums are compared.
    let mut ingests = Vec::new();
    for masked in [false, true, true, false] {
        harness::settle_disk().await?;
        let extra = if masked { json!({"env": env}) } else { json!({}) };
        ingests.push(ingest_with(&server, &cmd, bytes, extra).await?);
    }
    let [plain, masked, masked_late, plain_late]: [Ingested; 4] = ingests.try_into().map_err(|_| anyhow::anyhow!("four ingests"))?;
    let masked = masked.and(&masked_late);
    let plain = plain.and(&plain_late);
    run.figures
        .num("elapsed_s", "submit → succeeded, 1,000 secrets (mean of 2)", masked.elapsed.as_secs_f64(), "s")
        .num("throughput_mib_s", "throughput", bytes as f64 / MIB / masked.elapsed.as_secs_f64(), "MiB/s")
        .flag("every_byte_committed", "every byte committed", masked.status == "succeeded" && masked.committed == bytes)
        .num("server_cpu_s", "server CPU", masked.server_cpu_s, "s")
        .num("server_peak_rss_mib", "server peak RSS", mib(masked.peak_rss_kib), "MiB");
    run.baseline
        .num("elapsed_s", "submit → succeeded, no secrets (mean of 2)", plain.elapsed.as_secs_f64(), "s")
        .flag("every_byte_committed", "every byte committed", plain.status == "succeeded" && plain.committed == bytes)
        .num("server_cpu_s", "server CPU", plain.server_cpu_s, "s");
    run.ratio = Some(masked.elapsed.as_secs_f64() / plain.elapsed.as_secs_f64());
    Ok(run)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `GET /v1/` on a fresh connection every millisecond until it answers 200.
async fn first_answer(addr: SocketAddr) -> Instant {
    loop {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), RawStream::get(addr, "/v1/", &[], 4096)).await
            && s.status == 200
        {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub async fn idle(ctx: &Ctx) -> Result<Run> {
    let starts = if ctx.scale >= 1.0 { 5 } else { 2 };
    let bytes = ctx.scaled(GIB, MIB) as u64;
    let root = ctx.temp_root()?;
    let mut ready = Vec::new();
    let mut listening = Vec::new();
    let mut last = None;
    for k in 0..starts {
        let dir = root.path().join(format!("start-{k}"));
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let spawned = Instant::now();
        let poll = tokio::spawn(first_answer(addr));
        let server = BenchServer::start(&dir, ServerOptions { env: &[], port: Some(port) }).await?;
        let answered = tokio::time::timeout(Duration::from_secs(30), poll).await??;
        ready.push((answered - spawned).as_secs_f64() * 1e3);
        listening.push(server.listening_after.as_secs_f64() * 1e3);
        last = Some(server);
    }
    let server = last.expect("at least one start");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = server.memory();
    let r = ingest_once(&server, &harness::bulk_cmd(bytes), bytes).await?;

    let mut run = Run::default();
    run.params.num("starts", "starts (fresh data directory each)", starts as f64, "").num("ingest_bytes", "ingest bytes", bytes as f64, "");
    run.figures
        .num("ready_ms", "spawn → first HTTP 200 (median)", stats::median(&mut ready.clone()), "ms")
        .num("ready_max_ms", "spawn → first HTTP 200 (slowest)", ready.iter().cloned().fold(0.0, f64::max), "ms")
        .num("listening_ms", "spawn → \"listening\" logged (median)", stats::median(&mut listening), "ms")
        .num("idle_rss_mib", "idle RSS (1 s after start)", mib(idle.rss_kib), "MiB")
        .num("ingest_peak_rss_mib", "peak RSS (VmHWM) after ingest", mib(r.peak_rss_kib), "MiB")
        .num("ingest_elapsed_s", "ingest submit → succeeded", r.elapsed.as_secs_f64(), "s")
        .flag("ingest_every_byte_committed", "ingest: every byte committed", r.status == "succeeded" && r.committed == bytes);
    Ok(run)
}

#[cfg(test)]
mod tests {
    #[test]
    fn seq_byte_counts() {
        assert_eq!(super::seq_bytes(9), 18);
        assert_eq!(super::seq_bytes(10), 21);
        assert_eq!(super::seq_bytes(1000), 9 * 2 + 90 * 3 + 900 * 4 + 5);
    }
}
