//! `executions`: many trivial executions from concurrent clients. Each client submits, then
//! waits on StackStorm's tail stream for that execution (`/stream?end_execution_id=…`, what
//! `st2 execution tail` opens), which ends with the execution's terminal update.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use super::cluster::BenchCluster;
use super::harness::{self, BenchServer, ServerOptions, mib};
use super::stats::{Samples, Sorted};
use super::{Ctx, Figs, Run};

struct Done {
    submit: Duration,
    completed: Duration,
    succeeded: bool,
}

/// Submits `core.local cmd=true` and waits for its terminal update on the tail stream.
async fn one(server: &BenchServer) -> Result<Done> {
    let t0 = Instant::now();
    let id = server.submit("true").await?;
    let submit = t0.elapsed();
    let url = server.url(&format!("/v1/stream?events=st2.execution__update&end_execution_id={id}&end_event=st2.execution__update"));
    let body = server.http.get(url).send().await.context("open the tail stream")?.bytes().await.context("read the tail stream")?;
    let completed = t0.elapsed();
    let text = String::from_utf8_lossy(&body);
    let last = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .ok_or_else(|| anyhow!("the tail stream of {id} carried no update"))?;
    let status = serde_json::from_str::<Value>(last).ok().and_then(|v| v["status"].as_str().map(String::from)).unwrap_or_default();
    Ok(Done { submit, completed, succeeded: status == "succeeded" })
}

pub async fn executions(ctx: &Ctx) -> Result<Run> {
    let n = ctx.scaled(10_000.0, 20.0) as usize;
    let clients = n.min(50);
    let root = ctx.temp_root()?;
    let mut run = Run::default();
    run.params.num("executions", "executions", n as f64, "").num("clients", "concurrent clients", clients as f64, "").text(
        "action",
        "action",
        "core.local cmd=true",
    );
    let embedded = Arc::new(BenchServer::start(root.path(), ServerOptions { env: &[], port: None }).await?);
    let (figures, per_s, samples) = measure(std::slice::from_ref(&embedded), n, clients).await?;
    drop(embedded);
    let Some(backends) = &ctx.cluster else {
        run.figures = figures;
        if ctx.svg {
            run.latencies =
                Some((format!("squall bench executions: submit → completion reported, {n} executions, {clients} clients"), samples));
        }
        return Ok(run);
    };
    let cluster = BenchCluster::start(&root.path().join("cluster"), backends, 2, 2, &[]).await?;
    let cpu0 = cluster.cpu();
    let (mut cluster_figures, cluster_per_s, cluster_samples) = measure(&cluster.apis, n, clients).await?;
    let cpu = cluster.cpu().since(cpu0);
    let per = |s: f64| s / n as f64 * 1000.0;
    cluster_figures
        .num("cpu_per_execution_ms", "CPU per execution, every process of the cluster", per(cpu.total()), "ms")
        .num("api_cpu_per_execution_ms", "… of which API nodes", per(cpu.api), "ms")
        .num("runner_cpu_per_execution_ms", "… runner nodes", per(cpu.runners), "ms")
        .num("action_cpu_per_execution_ms", "… the actions (`true`)", per(cpu.actions), "ms")
        .num("postgres_cpu_per_execution_ms", "… PostgreSQL", per(cpu.postgres), "ms")
        .num("nats_cpu_per_execution_ms", "… NATS", per(cpu.nats), "ms");
    run.ratio = Some(cluster_per_s / per_s);
    run.baseline = figures;
    run.figures = cluster_figures;
    run.params.text("deployment", "deployment", "2 API + 2 runner nodes; clients spread over both API nodes");
    run.notes.push("baseline: the embedded server in the same run; ratio: cluster ÷ embedded completions per second".into());
    if ctx.svg {
        run.latencies = Some((format!("squall bench executions --cluster: submit → completion, {n} executions"), cluster_samples));
    }
    Ok(run)
}

/// `n` executions from `clients` clients spread over `servers`: the figures, completions per
/// second, and the submit → completion samples.
async fn measure(servers: &[Arc<BenchServer>], n: usize, clients: usize) -> Result<(Figs, f64, Sorted)> {
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0: Vec<harness::Cpu> = servers.iter().map(|s| s.cpu()).collect();
    let bench0 = harness::bench_cpu_s();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (server, next) = (Arc::clone(&servers[c % servers.len()]), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                done.push(one(&server).await);
            }
            done
        }));
    }
    let mut results = Vec::with_capacity(n);
    for t in tasks {
        results.extend(t.await?);
    }
    let wall = t0.elapsed();
    let cpu = servers
        .iter()
        .zip(&cpu0)
        .map(|(s, c0)| s.cpu().since(*c0))
        .fold(harness::Cpu::default(), |a, c| harness::Cpu { own_s: a.own_s + c.own_s, children_s: a.children_s + c.children_s });
    let bench_cpu = harness::bench_cpu_s() - bench0;
    let peak = servers.iter().map(|s| s.memory().hwm_kib).max().unwrap_or(0);

    let errors = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("squall bench: {errors} of {n} executions failed in the client; first: {e:#}");
    }
    let done: Vec<Done> = results.into_iter().filter_map(Result::ok).collect();
    let succeeded = done.iter().filter(|d| d.succeeded).count();
    // Cross-check with the server's own count.
    let server = &servers[0];
    let r = server.http.get(server.url("/v1/executions?status=succeeded&limit=1&include_attributes=id")).send().await?;
    let stored: usize = r.headers().get("x-total-count").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);

    let submit = Samples(done.iter().map(|d| d.submit.as_nanos() as u64).collect()).sorted();
    let completed = Samples(done.iter().map(|d| d.completed.as_nanos() as u64).collect()).sorted();
    let per_s = done.len() as f64 / wall.as_secs_f64();
    let mut figures = Figs::default();
    figures
        .num("completed_per_s", "completed per second", per_s, "/s")
        .num("elapsed_s", "first submit → last completion", wall.as_secs_f64(), "s")
        .flag("all_succeeded", "every execution succeeded", succeeded == n && stored == n)
        .num("succeeded", "succeeded (reported on the stream)", succeeded as f64, "")
        .num("succeeded_stored", "succeeded (server's count)", stored as f64, "")
        .num("completed_p50_ms", "submit → completion reported p50", completed.pct_ms(50.0), "ms")
        .num("completed_p99_ms", "submit → completion reported p99", completed.pct_ms(99.0), "ms")
        .num("completed_max_ms", "submit → completion reported max", completed.max_ms(), "ms")
        .num("submit_p50_ms", "POST round trip p50", submit.pct_ms(50.0), "ms")
        .num("submit_p99_ms", "POST round trip p99", submit.pct_ms(99.0), "ms")
        .num("server_cpu_s", "server CPU (the nodes serving the API)", cpu.own_s, "s")
        .num("action_cpu_s", "actions' CPU (embedded only: a runner node's children)", cpu.children_s, "s")
        .num("bench_cpu_s", "bench (clients) CPU", bench_cpu, "s")
        .num("server_peak_rss_mib", "server peak RSS (largest node)", mib(peak), "MiB");
    Ok((figures, per_s, completed))
}
