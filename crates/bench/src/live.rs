//! `latency` and `fanout`: the action is `squall bench emit` (paced lines carrying their write
//! time); viewers follow the per-execution SSE output stream and measure write → receive.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tokio::sync::{Semaphore, mpsc};

use super::cluster::BenchCluster;
use super::harness::{self, BenchServer, RssSampler, ServerOptions, mib, quote};
use super::http::{OutputEvent, OutputParser, RawStream};
use super::stats::{Samples, Sorted};
use super::{Ctx, Figs, Run};

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// The action: `lines` lines, one every `interval`, starting when `go` exists.
fn emit_cmd(lines: u64, interval: Duration, go: &std::path::Path) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find the squall executable")?;
    Ok(format!("{} bench emit --lines {lines} --interval-us {} --go-file {}", quote(&exe), interval.as_micros(), quote(go)))
}

/// What one viewer saw.
pub struct Viewed {
    /// Write → receive, per line, in nanoseconds.
    pub latencies: Vec<u64>,
    /// The same split at the record's timestamp (taken by the log writer as it starts the
    /// commit): write → commit start, and commit start → receive (microsecond precision).
    pub before_commit: Vec<u64>,
    pub after_commit: Vec<u64>,
    /// Lines arrived numbered 0, 1, 2, … with none missing or repeated.
    pub in_order: bool,
    pub lines: u64,
    pub records: u64,
    pub eof: bool,
}

/// Reads an SSE output stream to its end, timing every line of the emitter.
pub async fn view_lines(mut stream: RawStream, expected: u64) -> Result<Viewed> {
    let mut parser = OutputParser::new(true);
    let mut v = Viewed {
        latencies: Vec::with_capacity(expected as usize),
        before_commit: Vec::with_capacity(expected as usize),
        after_commit: Vec::with_capacity(expected as usize),
        in_order: true,
        lines: 0,
        records: 0,
        eof: false,
    };
    loop {
        let more = stream
            .read_some(&mut |bytes| {
                let now = unix_ns();
                parser.feed(bytes, &mut |e| match e {
                    OutputEvent::Record { data, timestamp_us, .. } => {
                        let committed = timestamp_us * 1000;
                        v.records += 1;
                        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                            let text = std::str::from_utf8(line).unwrap_or("");
                            let mut parts = text.split(' ');
                            let index: Option<u64> = parts.next().and_then(|s| s.parse().ok());
                            let written: Option<u64> = parts.next().and_then(|s| s.parse().ok());
                            match (index, written) {
                                (Some(i), Some(w)) => {
                                    if i != v.lines {
                                        v.in_order = false;
                                    }
                                    v.lines += 1;
                                    v.latencies.push(now.saturating_sub(w));
                                    v.before_commit.push(committed.saturating_sub(w));
                                    v.after_commit.push(now.saturating_sub(committed));
                                }
                                _ => v.in_order = false,
                            }
                        }
                    }
                    OutputEvent::Eof { .. } => v.eof = true,
                });
            })
            .await?;
        if !more {
            break;
        }
    }
    Ok(v)
}

pub async fn latency(ctx: &Ctx) -> Result<Run> {
    let lines = ctx.scaled(10_000.0, 200.0) as u64;
    let root = ctx.temp_root()?;
    let mut run = Run::default();
    run.params.num("lines", "lines", lines as f64, "").num("interval_ms", "one line every", 1.0, "ms").num("viewers", "viewers", 1.0, "");
    let embedded = BenchServer::start(root.path(), ServerOptions { env: &[], port: None }).await?;
    let (figures, samples) = measure_latency(&embedded, &embedded, root.path(), lines).await?;
    drop(embedded);
    let Some(backends) = &ctx.cluster else {
        run.figures = figures;
        if ctx.svg {
            run.latencies = Some((format!("squall bench latency: write → SSE viewer, {lines} lines at 1/ms"), samples));
        }
        return Ok(run);
    };
    // The cluster: the action runs on a runner node, the viewer reads from the other API node
    // than the one it was submitted to; the embedded server above is the baseline.
    let cluster = BenchCluster::start(&root.path().join("cluster"), backends, 2, 2, &[]).await?;
    let (cluster_figures, cluster_samples) = measure_latency(&cluster.apis[0], &cluster.apis[1], root.path(), lines).await?;
    run.ratio = Some(cluster_samples.pct_ms(50.0) / samples.pct_ms(50.0));
    run.baseline = figures;
    run.figures = cluster_figures;
    run.params.text("deployment", "deployment", "2 API + 2 runner nodes; submitted to one API node, viewed on the other");
    run.notes.push("baseline: the embedded server in the same run; ratio: cluster p50 ÷ embedded p50".into());
    if ctx.svg {
        run.latencies =
            Some((format!("squall bench latency --cluster: write → SSE viewer on another node, {lines} lines at 1/ms"), cluster_samples));
    }
    Ok(run)
}

/// One emitter submitted to `submit`, one viewer on `view`: the latency figures and samples.
async fn measure_latency(submit: &BenchServer, view: &BenchServer, dir: &std::path::Path, lines: u64) -> Result<(Figs, Sorted)> {
    let interval = Duration::from_millis(1);
    let go = dir.join(format!("go-{}", submit.pid()));
    let id = submit.submit(&emit_cmd(lines, interval, &go)?).await?;
    // The response headers arrive after the server subscribed the viewer: nothing can be missed.
    let stream = view.open(&format!("/stream/v1/executions/{id}/output"), &[], 64 * 1024).await?;
    let cpu0 = view.cpu();
    let bench0 = harness::bench_cpu_s();
    std::fs::write(&go, b"")?;
    let viewed = view_lines(stream, lines).await?;
    let (status, _) = submit.wait_done(&id, Duration::from_secs(600)).await?;
    let cpu = view.cpu().since(cpu0);
    let bench_cpu = harness::bench_cpu_s() - bench0;

    let n = viewed.lines;
    let records = viewed.records;
    let before = Samples(viewed.before_commit).sorted();
    let after = Samples(viewed.after_commit).sorted();
    let every = viewed.in_order && viewed.eof && n == lines && status == "succeeded";
    let s = Samples(viewed.latencies).sorted();
    let mut figures = Figs::default();
    figures
        .num("latency_p50_ms", "write → viewer p50", s.pct_ms(50.0), "ms")
        .num("latency_p90_ms", "write → viewer p90", s.pct_ms(90.0), "ms")
        .num("latency_p99_ms", "write → viewer p99", s.pct_ms(99.0), "ms")
        .num("latency_p999_ms", "write → viewer p99.9", s.pct_ms(99.9), "ms")
        .num("latency_max_ms", "write → viewer max", s.max_ms(), "ms")
        .num("latency_mean_ms", "write → viewer mean", s.mean_ms(), "ms")
        .num("to_commit_p50_ms", "write → log writer starts the commit, p50", before.pct_ms(50.0), "ms")
        .num("to_commit_p99_ms", "write → log writer starts the commit, p99", before.pct_ms(99.0), "ms")
        .num("from_commit_p50_ms", "commit start → viewer, p50", after.pct_ms(50.0), "ms")
        .num("from_commit_p99_ms", "commit start → viewer, p99", after.pct_ms(99.0), "ms")
        .flag("every_line", "every line, in order", every)
        .num("lines_received", "lines received", n as f64, "")
        .num("records", "SSE records (lines are batched when the writer is busy)", records as f64, "")
        .num("server_cpu_s", "server CPU (the viewer's node)", cpu.own_s, "s")
        .num("bench_cpu_s", "bench (viewer) CPU", bench_cpu, "s");
    Ok((figures, s))
}

pub async fn fanout(ctx: &Ctx) -> Result<Run> {
    let viewers = ctx.scaled(10_000.0, 10.0) as usize;
    let lines = ctx.scaled(300.0, 20.0) as u64;
    let root = ctx.temp_root()?;
    let mut run = Run::default();
    run.params.num("viewers", "viewers", viewers as f64, "").num("lines", "lines", lines as f64, "").num(
        "lines_per_s",
        "lines per second",
        10.0,
        "",
    );
    let embedded = Arc::new(BenchServer::start(root.path(), ServerOptions { env: &[], port: None }).await?);
    let (figures, samples) = measure_fanout(&embedded, std::slice::from_ref(&embedded), root.path(), viewers, lines).await?;
    drop(embedded);
    let Some(backends) = &ctx.cluster else {
        run.figures = figures;
        if ctx.svg {
            run.latencies = Some((format!("squall bench fanout: write → SSE viewer, {viewers} viewers × {lines} lines"), samples));
        }
        return Ok(run);
    };
    let cluster = BenchCluster::start(&root.path().join("cluster"), backends, 2, 2, &[]).await?;
    let (cluster_figures, cluster_samples) = measure_fanout(&cluster.apis[0], &cluster.apis, root.path(), viewers, lines).await?;
    run.ratio = Some(cluster_samples.pct_ms(99.0) / samples.pct_ms(99.0));
    run.baseline = figures;
    run.figures = cluster_figures;
    run.params.text("deployment", "deployment", "2 API + 2 runner nodes; viewers split over both API nodes");
    run.notes.push("baseline: the embedded server in the same run; ratio: cluster p99 ÷ embedded p99".into());
    if ctx.svg {
        run.latencies =
            Some((format!("squall bench fanout --cluster: {viewers} viewers over 2 API nodes × {lines} lines"), cluster_samples));
    }
    Ok(run)
}

/// One emitter submitted to `submit` at 10 lines/s, `viewers` viewers spread over `views`.
async fn measure_fanout(
    submit: &Arc<BenchServer>,
    views: &[Arc<BenchServer>],
    dir: &std::path::Path,
    viewers: usize,
    lines: u64,
) -> Result<(Figs, Sorted)> {
    let interval = Duration::from_millis(100);
    let go = dir.join(format!("go-{}", submit.pid()));
    let id = submit.submit(&emit_cmd(lines, interval, &go)?).await?;
    let path = format!("/stream/v1/executions/{id}/output");

    // Connect every viewer first (a bounded number of connects in flight, so the listen
    // backlog never overflows), then let the action start writing.
    let connect_start = Instant::now();
    let gate = Arc::new(Semaphore::new(256));
    let (connected_tx, mut connected_rx) = mpsc::unbounded_channel::<bool>();
    let mut tasks = Vec::with_capacity(viewers);
    for n in 0..viewers {
        let server = Arc::clone(&views[n % views.len()]);
        let (path, gate, connected) = (path.clone(), Arc::clone(&gate), connected_tx.clone());
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("semaphore open");
            let mut stream = None;
            for attempt in 0..5 {
                match server.open(&path, &[], 4096).await {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) if attempt == 4 => {
                        eprintln!("squall bench: a viewer could not connect: {e:#}");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            drop(permit);
            let _ = connected.send(stream.is_some());
            match stream {
                Some(s) => view_lines(s, lines).await.ok(),
                None => None,
            }
        }));
    }
    drop(connected_tx);
    let mut connected = 0;
    for _ in 0..viewers {
        match connected_rx.recv().await {
            Some(ok) => connected += usize::from(ok),
            None => break,
        }
    }
    let connect_s = connect_start.elapsed().as_secs_f64();
    let rss_connected: u64 = views.iter().map(|v| v.memory().rss_kib).max().unwrap_or(0);
    let samplers: Vec<RssSampler> = views.iter().map(|v| RssSampler::start(v.pid(), Duration::from_millis(100))).collect();
    let cpu0: Vec<harness::Cpu> = views.iter().map(|v| v.cpu()).collect();
    let bench0 = harness::bench_cpu_s();
    std::fs::write(&go, b"")?;

    let mut complete = 0usize;
    let mut all = Vec::with_capacity(viewers * lines as usize);
    let mut after = Vec::with_capacity(viewers * lines as usize);
    let mut before = Vec::new();
    for t in tasks {
        if let Ok(Some(v)) = t.await {
            if v.in_order && v.eof && v.lines == lines {
                complete += 1;
            }
            all.extend_from_slice(&v.latencies);
            after.extend_from_slice(&v.after_commit);
            if before.is_empty() {
                before = v.before_commit;
            }
        }
    }
    let (status, _) = submit.wait_done(&id, Duration::from_secs(600)).await?;
    let cpu: f64 = views.iter().zip(&cpu0).map(|(v, c0)| v.cpu().since(*c0).own_s).sum();
    let bench_cpu = harness::bench_cpu_s() - bench0;
    let peak = views.iter().zip(&samplers).map(|(v, s)| v.memory().hwm_kib.max(s.peak_kib())).max().unwrap_or(0);
    drop(samplers);

    let s = Samples(all).sorted();
    let (before, after) = (Samples(before).sorted(), Samples(after).sorted());
    let mut figures = Figs::default();
    figures
        .flag("every_viewer_every_line", "every viewer got every line, in order", complete == viewers && status == "succeeded")
        .num("viewers_connected", "viewers connected", connected as f64, "")
        .num("viewers_complete", "viewers with every line", complete as f64, "")
        .num("connect_s", "time to connect every viewer", connect_s, "s")
        .num("latency_p50_ms", "write → viewer p50", s.pct_ms(50.0), "ms")
        .num("latency_p90_ms", "write → viewer p90", s.pct_ms(90.0), "ms")
        .num("latency_p99_ms", "write → viewer p99", s.pct_ms(99.0), "ms")
        .num("latency_p999_ms", "write → viewer p99.9", s.pct_ms(99.9), "ms")
        .num("latency_max_ms", "write → viewer max", s.max_ms(), "ms")
        .num("to_commit_p99_ms", "write → log writer starts the commit, p99", before.pct_ms(99.0), "ms")
        .num("from_commit_p50_ms", "commit start → viewer, p50", after.pct_ms(50.0), "ms")
        .num("from_commit_p99_ms", "commit start → viewer, p99", after.pct_ms(99.0), "ms")
        .num("server_rss_connected_mib", "server RSS with every viewer connected (largest node)", mib(rss_connected), "MiB")
        .num("server_peak_rss_mib", "server peak RSS (largest node)", mib(peak), "MiB")
        .num("server_cpu_s", "server CPU while lines flowed (viewers' nodes)", cpu, "s")
        .num("bench_cpu_s", "bench (viewers) CPU while lines flowed", bench_cpu, "s");
    Ok((figures, s))
}
