//! `squall bench SCENARIO`: starts its own server on a temporary data directory (with
//! `--cluster`, also a cluster of API and runner nodes on PostgreSQL and NATS), drives it with a
//! built-in async load generator, measures the scenario's baseline in the same run, and reports
//! every figure against the targets (a readable summary, or one JSON object with `--json`).
//! `--scale` (or `--quick`) shrinks every size so CI can run each scenario in seconds.
//!
//! Layout: `harness` (the server child, HTTP helpers, process accounting), `cluster` (the
//! cluster's nodes and its clean-up), `http` (the raw streaming HTTP client and SSE parser the
//! viewers use), `stats`, `emit` (the paced line writer the latency scenarios run as their
//! action), and one module per family of scenarios.

mod cluster;
mod emit;
mod executions;
mod failover;
mod floor;
mod harness;
mod http;
mod live;
mod stats;
mod throughput;
mod viewers;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use serde_json::{Map, Value, json};

use stats::Sorted;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Set by the global `--json`: print one JSON object holding every figure, the baseline,
    /// the ratio and the targets.
    #[arg(skip)]
    pub json: bool,
    /// Size factor for every size in the scenario (bytes, lines, viewers, executions,
    /// durations); 1 is the benchmark the targets are defined for.
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    scale: f64,
    /// A smoke run of a few seconds: the same as --scale 0.001.
    #[arg(long, conflicts_with = "scale")]
    quick: bool,
    /// Repeat the scenario this many times, each on a fresh server, and report medians.
    #[arg(long, default_value_t = 1, value_name = "N")]
    runs: usize,
    /// Write an SVG histogram of the latencies measured (latency, fanout, executions).
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    /// Where the temporary data directories go [default: $TMPDIR or /tmp].
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,
    /// Measure a cluster — 2 API and 2 runner nodes, separate processes, on PostgreSQL and NATS —
    /// against the embedded server in the same run (latency, ingest, executions, fanout;
    /// failover always runs on a cluster).
    #[arg(long)]
    cluster: bool,
    /// The cluster's PostgreSQL (a schema of the run's own is created and dropped).
    #[arg(
        long,
        env = "SQUALL_BENCH_DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/test",
        value_name = "URL"
    )]
    database_url: String,
    /// The cluster's NATS, with JetStream (a subject prefix of the run's own).
    #[arg(long, env = "SQUALL_BENCH_NATS_URL", hide_env_values = true, default_value = "nats://127.0.0.1:4222", value_name = "URL")]
    nats_url: String,

    // `squall bench emit`: the paced line writer the latency scenarios run as their action.
    #[arg(long, hide = true, default_value_t = 0)]
    lines: u64,
    #[arg(long, hide = true, default_value_t = 1000)]
    interval_us: u64,
    #[arg(long, hide = true)]
    go_file: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// One action writes 1 GiB of 100-byte lines, vs the same command writing to a file.
    Ingest,
    /// 10 million short lines (`seq`), vs the same command writing to a file.
    Lines,
    /// One line per millisecond for 10 s, one SSE viewer: write → viewer latency.
    Latency,
    /// 10,000 SSE viewers of one execution writing 10 lines/s for 30 s.
    Fanout,
    /// 100 SSE viewers of one action writing 1 GiB as fast as it can, vs unwatched.
    Firehose,
    /// A viewer joins a finished 1 GiB log over /stdout, vs reading a local file; and
    /// `squall execution tail` of it, vs the /stdout read.
    Join,
    /// `ingest` with 1,000 secret values registered, vs the same ingest without them.
    Mask,
    /// 10,000 trivial executions from 50 concurrent clients.
    Executions,
    /// A fresh server: time to accept requests, idle RSS, peak RSS during `ingest`.
    Idle,
    /// A cluster's runner node is killed while it runs an action: time until `abandoned`.
    Failover,
    #[value(hide = true)]
    Emit,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Ingest => "ingest",
            Scenario::Lines => "lines",
            Scenario::Latency => "latency",
            Scenario::Fanout => "fanout",
            Scenario::Firehose => "firehose",
            Scenario::Join => "join",
            Scenario::Mask => "mask",
            Scenario::Executions => "executions",
            Scenario::Idle => "idle",
            Scenario::Failover => "failover",
            Scenario::Emit => "emit",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Scenario::Ingest => "one action writes 1 GiB of 100-byte lines; submit → succeeded with every byte committed",
            Scenario::Lines => "one action writes 10 million short lines (seq); submit → succeeded with every byte committed",
            Scenario::Latency => "one line per millisecond for 10 s, each carrying its write time; one SSE viewer",
            Scenario::Fanout => "10,000 concurrent SSE viewers of one execution writing 10 lines/s for 30 s",
            Scenario::Firehose => "100 SSE viewers of one action writing 1 GiB as fast as it can",
            Scenario::Join => "a viewer joins a finished 1 GiB log over /stdout (and with `squall execution tail`)",
            Scenario::Mask => "ingest with 1,000 secret values registered",
            Scenario::Executions => "10,000 trivial executions (core.local cmd=true) from 50 concurrent clients",
            Scenario::Idle => "a fresh server: start-up, idle memory, peak memory during ingest",
            Scenario::Failover => "kill -9 the runner node of a running action in a cluster of 1 API and 2 runner nodes",
            Scenario::Emit => "",
        }
    }

    /// Whether the scenario can run against a cluster (and must, for `failover`).
    fn on_cluster(self) -> bool {
        matches!(self, Scenario::Latency | Scenario::Ingest | Scenario::Executions | Scenario::Fanout | Scenario::Failover)
    }

    fn targets(self, cluster: bool) -> Vec<Target> {
        use Op::*;
        let t = |figure, op, limit| Target { figure, op, limit };
        if cluster {
            return match self {
                Scenario::Latency => vec![t("latency_p50_ms", AtMost, 2.0), t("latency_p99_ms", AtMost, 10.0), t("every_line", Holds, 0.0)],
                Scenario::Ingest => vec![t("ratio", AtMost, 2.0), t("every_byte_committed", Holds, 0.0)],
                Scenario::Executions => vec![t("completed_per_s", AtLeast, 500.0), t("all_succeeded", Holds, 0.0)],
                Scenario::Fanout => vec![t("every_viewer_every_line", Holds, 0.0), t("latency_p99_ms", AtMost, 100.0)],
                Scenario::Failover => vec![t("abandoned_s", AtMost, 10.0), t("group_gone", Holds, 0.0)],
                _ => vec![],
            };
        }
        match self {
            Scenario::Ingest | Scenario::Lines => {
                vec![t("ratio", AtMost, if self == Scenario::Ingest { 1.3 } else { 1.5 }), t("every_byte_committed", Holds, 0.0)]
            }
            Scenario::Latency => vec![t("latency_p50_ms", AtMost, 0.2), t("latency_p99_ms", AtMost, 0.7), t("every_line", Holds, 0.0)],
            Scenario::Fanout => {
                vec![t("every_viewer_every_line", Holds, 0.0), t("latency_p99_ms", AtMost, 100.0), t("server_peak_rss_mib", AtMost, 512.0)]
            }
            Scenario::Firehose => vec![t("every_viewer_every_byte", Holds, 0.0), t("ratio", AtMost, 1.5)],
            Scenario::Join => vec![t("first_byte_ms", AtMost, 50.0), t("ratio", AtMost, 2.0), t("every_byte", Holds, 0.0)],
            Scenario::Mask => vec![t("ratio", AtMost, 1.05)],
            Scenario::Executions => vec![t("completed_per_s", AtLeast, 500.0), t("all_succeeded", Holds, 0.0)],
            Scenario::Idle => vec![t("ready_ms", AtMost, 200.0), t("idle_rss_mib", AtMost, 30.0), t("ingest_peak_rss_mib", AtMost, 64.0)],
            Scenario::Failover | Scenario::Emit => vec![],
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    AtMost,
    AtLeast,
    Holds,
}

struct Target {
    figure: &'static str,
    op: Op,
    limit: f64,
}

impl Target {
    fn text(&self) -> String {
        match self.op {
            Op::AtMost => format!("{} ≤ {}", self.figure, self.limit),
            Op::AtLeast => format!("{} ≥ {}", self.figure, self.limit),
            Op::Holds => self.figure.to_string(),
        }
    }

    fn holds(&self, value: Option<&Value>) -> Option<bool> {
        match (self.op, value?) {
            (Op::AtMost, Value::Number(n)) => n.as_f64().map(|v| v <= self.limit),
            (Op::AtLeast, Value::Number(n)) => n.as_f64().map(|v| v >= self.limit),
            (Op::Holds, Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }
}

/// What a scenario needs from the command line.
pub struct Ctx {
    pub scale: f64,
    tmp: PathBuf,
    pub svg: bool,
    /// Also measure a cluster on these backends (`--cluster`).
    pub cluster: Option<cluster::Backends>,
}

impl Ctx {
    /// A fresh temporary directory (removed when dropped).
    pub fn temp_root(&self) -> Result<tempfile::TempDir> {
        Ok(tempfile::Builder::new().prefix("squall-bench-").tempdir_in(&self.tmp)?)
    }

    /// `full` scaled, at least `min`.
    pub fn scaled(&self, full: f64, min: f64) -> f64 {
        (full * self.scale).max(min)
    }
}

/// One figure of a run.
pub struct Fig {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub value: Value,
}

/// Figures in the order they are reported.
#[derive(Default)]
pub struct Figs(pub Vec<Fig>);

impl Figs {
    pub fn num(&mut self, key: &'static str, label: &'static str, value: f64, unit: &'static str) -> &mut Self {
        self.0.push(Fig { key, label, unit, value: number(value) });
        self
    }

    pub fn flag(&mut self, key: &'static str, label: &'static str, value: bool) -> &mut Self {
        self.0.push(Fig { key, label, unit: "", value: Value::Bool(value) });
        self
    }

    pub fn text(&mut self, key: &'static str, label: &'static str, value: impl Into<String>) -> &mut Self {
        self.0.push(Fig { key, label, unit: "", value: Value::String(value.into()) });
        self
    }

    fn map(&self) -> Map<String, Value> {
        self.0.iter().map(|f| (f.key.to_string(), f.value.clone())).collect()
    }
}

/// A figure as JSON: integers stay integers, other values keep six decimals, NaN is null.
fn number(value: f64) -> Value {
    if !value.is_finite() {
        Value::Null
    } else if value.fract() == 0.0 && value.abs() < 9e15 {
        json!(value as i64)
    } else {
        json!((value * 1e6).round() / 1e6)
    }
}

/// The outcome of one run of a scenario.
#[derive(Default)]
pub struct Run {
    /// The scenario's sizes (same in every run).
    pub params: Figs,
    pub figures: Figs,
    /// The baseline measured in the same run, if the scenario names one.
    pub baseline: Figs,
    /// Scenario / baseline, if the scenario names a baseline.
    pub ratio: Option<f64>,
    pub notes: Vec<String>,
    /// Latency samples for `--svg`, with a title.
    pub latencies: Option<(String, Sorted)>,
    /// Why the scenario cannot be measured on this build (nothing else is reported then).
    pub unavailable: Option<String>,
}

/// Medians of numbers, `all` of flags, the first of texts, key by key.
fn aggregate(figs: &[&Figs]) -> Figs {
    let mut out = Figs::default();
    let Some(first) = figs.first() else { return out };
    for f in &first.0 {
        let values: Vec<&Value> = figs.iter().filter_map(|r| r.0.iter().find(|g| g.key == f.key)).map(|g| &g.value).collect();
        let value = match &f.value {
            Value::Number(_) => {
                let mut nums: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
                number(stats::median(&mut nums))
            }
            Value::Bool(_) => Value::Bool(values.iter().all(|v| v.as_bool() == Some(true))),
            other => other.clone(),
        };
        out.0.push(Fig { key: f.key, label: f.label, unit: f.unit, value });
    }
    out
}

/// Reports a scenario this build cannot measure, with no figures.
fn unavailable(scenario: Scenario, mut head: Map<String, Value>, reason: &str, params: &Figs, json: bool) -> ExitCode {
    let cluster = head.get("cluster") == Some(&Value::Bool(true));
    let targets: Vec<Value> =
        scenario.targets(cluster).iter().map(|t| json!({"figure": t.figure, "target": t.text(), "value": null, "holds": null})).collect();
    if json {
        head.insert("available".into(), json!(false));
        head.insert("reason".into(), json!(reason));
        head.insert("runs".into(), json!(0));
        head.insert("parameters".into(), Value::Object(params.map()));
        head.insert("figures".into(), json!({}));
        head.insert("baseline".into(), Value::Null);
        head.insert("ratio".into(), Value::Null);
        head.insert("targets".into(), json!(targets));
        head.insert("targets_hold".into(), Value::Null);
        println!("{}", Value::Object(head));
    } else {
        println!("squall bench {} — {}", scenario.name(), scenario.description());
        println!("{reason}");
        for t in scenario.targets(cluster) {
            println!("  {:<32} not measured", t.text());
        }
    }
    ExitCode::SUCCESS
}

pub fn main(args: BenchArgs) -> ExitCode {
    if args.scenario == Scenario::Emit {
        return emit::main(args.lines, Duration::from_micros(args.interval_us), args.go_file.as_deref());
    }
    harness::raise_nofile();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("squall: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(bench(args))
}

async fn bench(args: BenchArgs) -> ExitCode {
    let scale = if args.quick { 0.001 } else { args.scale };
    if !(scale > 0.0 && scale.is_finite()) || args.runs == 0 {
        eprintln!("squall: --scale must be a positive number and --runs at least 1");
        return ExitCode::from(2);
    }
    let scenario = args.scenario;
    let on_cluster = args.cluster || scenario == Scenario::Failover;
    if on_cluster && !scenario.on_cluster() {
        eprintln!(
            "squall: {} is not measured on a cluster; --cluster applies to latency, ingest, executions, fanout and failover",
            scenario.name()
        );
        return ExitCode::from(2);
    }
    let backends = cluster::Backends { database_url: args.database_url.clone(), nats_url: args.nats_url.clone() };
    let ctx = Ctx {
        scale,
        tmp: args.tmp_dir.clone().unwrap_or_else(std::env::temp_dir),
        svg: args.svg.is_some(),
        cluster: on_cluster.then(|| backends.clone()),
    };
    let mut head = Map::new();
    head.insert("scenario".into(), json!(scenario.name()));
    head.insert("description".into(), json!(scenario.description()));
    head.insert("scale".into(), json!(scale));
    head.insert("cluster".into(), json!(on_cluster));
    head.insert("machine".into(), harness::machine());

    let mut runs = Vec::new();
    for i in 0..args.runs {
        if args.runs > 1 && !args.json {
            eprintln!("run {}/{} …", i + 1, args.runs);
        }
        let (busy0, own0, started) = (harness::machine_busy_s(), harness::own_cpu_s(), std::time::Instant::now());
        let one = async {
            match scenario {
                Scenario::Ingest => throughput::ingest(&ctx).await,
                Scenario::Lines => throughput::lines(&ctx).await,
                Scenario::Idle => throughput::idle(&ctx).await,
                Scenario::Latency => live::latency(&ctx).await,
                Scenario::Fanout => live::fanout(&ctx).await,
                Scenario::Firehose => viewers::firehose(&ctx).await,
                Scenario::Join => viewers::join(&ctx).await,
                Scenario::Executions => executions::executions(&ctx).await,
                Scenario::Mask => throughput::mask(&ctx).await,
                Scenario::Failover => failover::failover(&ctx, &backends).await,
                Scenario::Emit => unreachable!("handled in main"),
            }
        };
        // On SIGINT/SIGTERM the run is dropped: its server is stopped (which stops its
        // actions) and its temporary directory removed.
        let outcome = tokio::select! {
            outcome = one => outcome,
            _ = interrupted() => Err(anyhow::anyhow!("interrupted")),
        };
        match outcome {
            Ok(Run { unavailable: Some(reason), params, .. }) => return unavailable(scenario, head, &reason, &params, args.json),
            Ok(mut run) => {
                // CPU that other processes on this machine used meanwhile: the figures are
                // only as good as the machine was quiet.
                let other = (harness::machine_busy_s() - busy0) - (harness::own_cpu_s() - own0);
                let capacity = started.elapsed().as_secs_f64() * harness::nproc() as f64;
                run.figures.num(
                    "other_cpu_share",
                    "CPU used by other processes meanwhile",
                    (other.max(0.0) / capacity * 1000.0).round() / 1000.0,
                    "of the machine",
                );
                if on_cluster {
                    run.notes.push("in a cluster run, PostgreSQL and NATS count as other processes".into());
                } else if other > 0.05 * capacity {
                    run.notes.push(format!(
                        "other processes used {:.0}% of the machine's CPU during a run; its figures are disturbed",
                        100.0 * other / capacity
                    ));
                }
                runs.push(run)
            }
            Err(e) => {
                if args.json {
                    head.insert("error".into(), json!(format!("{e:#}")));
                    println!("{}", Value::Object(head));
                } else {
                    eprintln!("squall bench {}: {e:#}", scenario.name());
                }
                return ExitCode::FAILURE;
            }
        }
    }

    let figures = aggregate(&runs.iter().map(|r| &r.figures).collect::<Vec<_>>());
    let baseline = aggregate(&runs.iter().map(|r| &r.baseline).collect::<Vec<_>>());
    let ratio = {
        let mut rs: Vec<f64> = runs.iter().filter_map(|r| r.ratio).collect();
        (!rs.is_empty()).then(|| stats::median(&mut rs))
    };
    let mut fig_map = figures.map();
    if let Some(r) = ratio {
        fig_map.insert("ratio".into(), json!((r * 1e4).round() / 1e4));
    }
    let targets: Vec<(Target, Option<Value>, Option<bool>)> = scenario
        .targets(on_cluster)
        .into_iter()
        .map(|t| {
            let v = fig_map.get(t.figure).cloned();
            let holds = t.holds(v.as_ref());
            (t, v, holds)
        })
        .collect();
    let all_hold = targets.iter().all(|(_, _, h)| *h == Some(true));
    let full_size = (scale - 1.0).abs() < 1e-9;
    let notes: Vec<String> =
        runs.iter().flat_map(|r| r.notes.iter().cloned()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();

    if let (Some(path), Some((title, samples))) = (&args.svg, runs.last().and_then(|r| r.latencies.as_ref()))
        && let Err(e) = std::fs::write(path, stats::svg_histogram(title, samples))
    {
        eprintln!("squall: cannot write {}: {e}", path.display());
    }

    if args.json {
        head.insert("available".into(), json!(true));
        head.insert("runs".into(), json!(runs.len()));
        head.insert("parameters".into(), Value::Object(runs[0].params.map()));
        head.insert("figures".into(), Value::Object(fig_map.clone()));
        head.insert("baseline".into(), if baseline.0.is_empty() { Value::Null } else { Value::Object(baseline.map()) });
        head.insert("ratio".into(), ratio.map_or(Value::Null, |r| json!((r * 1e4).round() / 1e4)));
        let t: Vec<Value> =
            targets.iter().map(|(t, v, h)| json!({"figure": t.figure, "target": t.text(), "value": v, "holds": h})).collect();
        head.insert("targets".into(), json!(t));
        head.insert("targets_hold".into(), json!(all_hold));
        head.insert("targets_apply".into(), json!(full_size));
        head.insert("notes".into(), json!(notes));
        let per_run: Vec<Value> =
            runs.iter().map(|r| json!({"figures": r.figures.map(), "baseline": r.baseline.map(), "ratio": r.ratio})).collect();
        head.insert("per_run".into(), json!(per_run));
        println!("{}", Value::Object(head));
        return ExitCode::SUCCESS;
    }

    let m = harness::machine();
    println!(
        "squall bench {}{} — {}{}",
        scenario.name(),
        if on_cluster { " --cluster" } else { "" },
        scenario.description(),
        if full_size { String::new() } else { format!(" (scale {scale})") }
    );
    println!(
        "machine: {} × {}, {} GiB, {} build; {} run{}{}",
        m["nproc"],
        m["cpu_model"].as_str().unwrap_or("?"),
        m["memory_gib"],
        m["build"].as_str().unwrap_or("?"),
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        if runs.len() > 1 { ", medians" } else { "" }
    );
    let params: Vec<String> = runs[0].params.0.iter().map(|f| format!("{}={}", f.key, plain(&f.value))).collect();
    println!("parameters: {}", params.join(", "));
    print_figs("", &figures);
    if !baseline.0.is_empty() {
        println!("baseline:");
        print_figs("  ", &baseline);
    }
    if let Some(r) = ratio {
        println!("{:<34} {:.3}", "ratio", r);
    }
    println!("targets{}:", if full_size { "" } else { " (defined for scale 1; shown for reference)" });
    for (t, v, h) in &targets {
        let verdict = match h {
            Some(true) => "holds",
            Some(false) => "DOES NOT HOLD",
            None => "not measured",
        };
        println!("  {:<32} {:>12}   {verdict}", t.text(), v.as_ref().map_or("-".into(), plain));
    }
    for n in &notes {
        println!("note: {n}");
    }
    ExitCode::SUCCESS
}

async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), fmt_num),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "NO".into(),
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn print_figs(indent: &str, figs: &Figs) {
    for f in &figs.0 {
        let value = plain(&f.value);
        let label = format!("{indent}{}", f.label);
        if f.unit.is_empty() {
            println!("{label:<34} {value}");
        } else {
            println!("{label:<34} {value} {}", f.unit);
        }
    }
}
