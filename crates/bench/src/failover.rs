//! `failover` (cluster only): a runner node is killed (`kill -9`) while its action writes; the
//! figure is the time until the execution is `abandoned`, and whether its process group died
//! with the runner.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::cluster::{Backends, BenchCluster};
use super::{Ctx, Run};

pub async fn failover(ctx: &Ctx, backends: &Backends) -> Result<Run> {
    let root = ctx.temp_root()?;
    let mut cluster = BenchCluster::start(root.path(), backends, 1, 2, &[]).await?;
    let api = std::sync::Arc::clone(&cluster.apis[0]);
    let id = api.submit("echo $$; while :; do echo tick; sleep 0.01; done").await?;
    api.wait_for(&id, &["running"], Duration::from_millis(10), Duration::from_secs(60)).await?;
    let execution: Value = api.http.get(api.url(&format!("/v1/executions/{id}"))).send().await?.json().await?;
    let runner = execution["liveaction"]["runner_info"]["pid"].as_u64().context("the execution names no runner pid")? as u32;
    let pgid = first_line_number(&api, &id).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let killed = Instant::now();
    cluster.kill_runner(runner);
    let mut group_gone = None;
    let abandoned = loop {
        if group_gone.is_none() && group_members(pgid) == 0 {
            group_gone = Some(killed.elapsed());
        }
        let status = api.status(&id).await?;
        if status == "abandoned" {
            break killed.elapsed();
        }
        if status != "running" {
            bail!("execution {id} ended {status} instead of abandoned");
        }
        if killed.elapsed() > Duration::from_secs(120) {
            bail!("execution {id} still running 120 s after its runner was killed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let group_gone = group_gone.unwrap_or_else(|| if group_members(pgid) == 0 { killed.elapsed() } else { Duration::MAX });
    let mut run = Run::default();
    run.params.num("runners", "runner nodes", 2.0, "").num("lease_ttl_s", "lease (default)", 6.0, "s");
    run.figures
        .num("abandoned_s", "runner kill -9 → execution abandoned", abandoned.as_secs_f64(), "s")
        .flag("group_gone", "the action's process group died with its runner", group_gone != Duration::MAX)
        .num("group_gone_s", "runner kill -9 → action's process group gone", group_gone.as_secs_f64().min(1e9), "s");
    Ok(run)
}

/// The number the action printed first (its pid, which is its process group id).
async fn first_line_number(api: &super::harness::BenchServer, id: &str) -> Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = api.http.get(api.url(&format!("/v1/executions/{id}/output?output_type=stdout"))).send().await?.text().await?;
        if let Some(n) = body.lines().next().filter(|_| body.contains('\n')).and_then(|l| l.trim().parse().ok()) {
            return Ok(n);
        }
        if Instant::now() > deadline {
            bail!("execution {id} printed no pid");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Live (not zombie) processes in group `pgid`.
fn group_members(pgid: i32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
            fields.len() > 2 && fields[0] != "Z" && fields[2].parse::<i32>() == Ok(pgid)
        })
        .count()
}
