//! The bench's own server (the current executable, `squall server`, on a temporary data
//! directory and a free port), the HTTP helpers scenarios share, and process accounting
//! (`/proc/<pid>/status` and `stat`, `getrusage`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::http::{OutputEvent, OutputParser, RawStream};

/// The statuses an execution ends in.
pub const TERMINAL: [&str; 5] = ["succeeded", "failed", "timeout", "canceled", "abandoned"];

/// A `squall server` child process owned by the bench: stopped (SIGTERM, then SIGKILL after a
/// few seconds) when dropped.
pub struct Process {
    child: Option<Child>,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within a few seconds.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `squall server` that serves HTTP (the embedded server, or an API node of a cluster).
pub struct BenchServer {
    pub process: Process,
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    /// From spawn to the "listening on" log line.
    pub listening_after: Duration,
}

pub struct ServerOptions<'a> {
    pub env: &'a [(&'a str, &'a str)],
    /// Listen on this port instead of a free one picked by the server.
    pub port: Option<u16>,
}

/// What a node does (`--role`); `All` is the embedded server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    All,
    Api,
    Runner,
}

/// Starts `squall server --role ROLE` with its data in `data`; returns once it announced itself
/// (its address, for nodes that listen) and how long that took.
pub async fn start_node(data: &Path, packs: &Path, role: Role, options: ServerOptions<'_>) -> Result<(Process, Option<String>, Duration)> {
    let exe = std::env::current_exe().context("cannot find the squall executable")?;
    std::fs::create_dir_all(packs)?;
    let mut cmd = Command::new(exe);
    cmd.arg("server").arg("--data-dir").arg(data);
    match role {
        Role::Runner => cmd.args(["--role", "runner"]),
        Role::Api => cmd.args(["--role", "api", "--listen", &format!("127.0.0.1:{}", options.port.unwrap_or(0))]),
        Role::All => cmd.args(["--listen", &format!("127.0.0.1:{}", options.port.unwrap_or(0))]),
    };
    cmd.env("SQUALL_CONTENT__PACKS_BASE_PATHS", packs)
        .env("SQUALL_ACTIONRUNNER__EXIT_STILL_ACTIVE_CHECK", "2")
        // The bench measures the data path; requests act as the development user.
        .env("SQUALL_AUTH__ENABLE", "false")
        .env("SQUALL_LOG", "warn,squall::server=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in options.env {
        cmd.env(k, v);
    }
    // If the bench dies without stopping it, the server gets SIGTERM (and stops its
    // actions). The signal follows the spawning thread: an async runtime worker, which
    // lives as long as the bench.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(std::io::Error::from));
    }
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start squall server")?;
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        let echo = std::env::var_os("SQUALL_BENCH_SERVER_LOG").is_some();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let announced = match line.split("listening on http://").nth(1) {
                Some(addr) => Some(Some(addr.trim().to_string())),
                None => (role == Role::Runner && line.contains("squall is running")).then_some(None),
            };
            if let Some(addr) = announced
                && let Some(tx) = tx.take()
            {
                let _ = tx.send((addr, Instant::now()));
            }
            if echo {
                eprintln!("[server {role:?}] {line}");
            }
        }
    });
    let (addr, at) = match tokio::time::timeout(Duration::from_secs(60), rx).await {
        Ok(Ok(found)) => found,
        _ => {
            let _ = child.kill();
            let status = child.wait().ok();
            bail!("squall server did not start (exit status {status:?}); set SQUALL_BENCH_SERVER_LOG=1 to see its log");
        }
    };
    Ok((Process { child: Some(child) }, addr, at - started))
}

impl BenchServer {
    /// Starts the embedded `squall server` with its data in `root/data`; returns once it
    /// announced its address.
    pub async fn start(root: &Path, options: ServerOptions<'_>) -> Result<BenchServer> {
        BenchServer::start_as(&root.join("data"), &root.join("packs"), Role::All, options).await
    }

    /// Starts a node that serves HTTP (`All` or `Api`).
    pub async fn start_as(data: &Path, packs: &Path, role: Role, options: ServerOptions<'_>) -> Result<BenchServer> {
        let (process, addr, listening_after) = start_node(data, packs, role, options).await?;
        let addr = addr.ok_or_else(|| anyhow!("a {role:?} node serves no HTTP"))?;
        let addr: SocketAddr = addr.parse().with_context(|| format!("unexpected listen address {addr}"))?;
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
        Ok(BenchServer { process, addr, base: format!("http://{addr}"), http, listening_after })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Memory of the server process now.
    pub fn memory(&self) -> Memory {
        Memory::of(self.pid())
    }

    /// CPU time of the server process and of its reaped children (the actions) so far.
    pub fn cpu(&self) -> Cpu {
        Cpu::of(self.pid())
    }

    /// Runs `core.local` with `cmd`; returns the execution id.
    pub async fn submit(&self, cmd: &str) -> Result<String> {
        self.submit_with(cmd, json!({})).await
    }

    /// Runs `core.local` with `cmd` and further parameters (an object).
    pub async fn submit_with(&self, cmd: &str, extra: Value) -> Result<String> {
        let mut parameters = json!({"cmd": cmd, "timeout": 3600});
        if let (Some(p), Value::Object(extra)) = (parameters.as_object_mut(), extra) {
            p.extend(extra);
        }
        let body = json!({"action": "core.local", "parameters": parameters});
        let r = self.http.post(self.url("/v1/executions")).json(&body).send().await.context("POST /v1/executions")?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status.as_u16() != 201 {
            bail!("POST /v1/executions answered {status}: {v}");
        }
        v["id"].as_str().map(String::from).ok_or_else(|| anyhow!("no id in {v}"))
    }

    pub async fn status(&self, id: &str) -> Result<String> {
        let r = self.http.get(self.url(&format!("/v1/executions/{id}?include_attributes=status"))).send().await?;
        let v: Value = r.json().await?;
        v["status"].as_str().map(String::from).ok_or_else(|| anyhow!("no status in {v}"))
    }

    /// Polls (every `every`) until the execution is in one of `statuses`; returns the status
    /// and the moment it was seen.
    pub async fn wait_for(&self, id: &str, statuses: &[&str], every: Duration, within: Duration) -> Result<(String, Instant)> {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status(id).await?;
            let seen = Instant::now();
            if statuses.contains(&s.as_str()) {
                return Ok((s, seen));
            }
            if TERMINAL.contains(&s.as_str()) {
                bail!("execution {id} ended {s} while waiting for {statuses:?}");
            }
            if seen > deadline {
                bail!("execution {id} still {s} after {within:?}");
            }
            tokio::time::sleep(every).await;
        }
    }

    pub async fn wait_done(&self, id: &str, within: Duration) -> Result<(String, Instant)> {
        self.wait_for(id, &TERMINAL, Duration::from_millis(5), within).await
    }

    /// Opens a streaming GET on the server.
    pub async fn open(&self, path: &str, headers: &[(&str, &str)], buf: usize) -> Result<RawStream> {
        let s = RawStream::get(self.addr, path, headers, buf).await.with_context(|| format!("GET {path}"))?;
        if s.status != 200 {
            bail!("GET {path} answered {}", s.status);
        }
        Ok(s)
    }

    /// Bytes of stdout the execution's log holds: the last stdout record's offset plus its
    /// length (offsets are assigned by the log writer from the bytes it committed).
    pub async fn committed_stdout(&self, id: &str) -> Result<(u64, u64)> {
        let last = self.sse_events(&format!("/stream/v1/executions/{id}/output?after=latest")).await?.1;
        if last == 0 {
            return Ok((0, 0));
        }
        let mut from = last - 1;
        loop {
            let (records, _) = self.sse_events(&format!("/stream/v1/executions/{id}/output?after={from}&output_type=stdout")).await?;
            if let Some((_, offset, len)) = records.last() {
                return Ok((last, offset + len));
            }
            if from == 0 {
                return Ok((last, 0));
            }
            from = from.saturating_sub(16);
        }
    }

    /// Records `(seq, offset, len)` of a finished execution's SSE stream, and the EOF id.
    async fn sse_events(&self, path: &str) -> Result<(Vec<(u64, u64, u64)>, u64)> {
        let mut s = self.open(path, &[], 64 * 1024).await?;
        let mut parser = OutputParser::new(false);
        let mut records = Vec::new();
        let mut eof = None;
        s.read_to_end(&mut |b| {
            parser.feed(b, &mut |e| match e {
                OutputEvent::Record { seq, offset, len, .. } => records.push((seq, offset, len)),
                OutputEvent::Eof { id } => eof = Some(id),
            })
        })
        .await?;
        Ok((records, eof.ok_or_else(|| anyhow!("{path}: stream ended without EOF"))?))
    }
}

/// `VmRSS` and `VmHWM` (peak RSS) of a process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Memory {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Memory { rss_kib: field("VmRSS:"), hwm_kib: field("VmHWM:") }
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// CPU seconds of a process (`utime + stime`) and of its waited-for children.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub own_s: f64,
    pub children_s: f64,
}

impl Cpu {
    pub fn of(pid: u32) -> Cpu {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else { return Cpu::default() };
        let f: Vec<f64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
        let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
        // After ')': state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14)
        if f.len() < 15 {
            return Cpu::default();
        }
        Cpu { own_s: (f[11] + f[12]) / tick, children_s: (f[13] + f[14]) / tick }
    }

    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu { own_s: self.own_s - earlier.own_s, children_s: self.children_s - earlier.children_s }
    }
}

/// CPU seconds the bench process itself used so far (the load generator's cost).
pub fn bench_cpu_s() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

/// CPU seconds every process on the machine used so far (`/proc/stat`, all CPUs, busy time).
pub fn machine_busy_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return 0.0 };
    let f: Vec<f64> = line.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0.0)).collect();
    // user nice system idle iowait irq softirq steal …: everything but idle and iowait.
    let busy: f64 = f.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4 && *i < 8).map(|(_, v)| v).sum();
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    busy / tick
}

/// CPU seconds of the bench and of everything it started and reaped (the server, the
/// baseline commands, and through the server the actions).
pub fn own_cpu_s() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let t = |who| {
        getrusage(who).map_or(0.0, |u| {
            let s = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            s(u.user_time()) + s(u.system_time())
        })
    };
    t(UsageWho::RUSAGE_SELF) + t(UsageWho::RUSAGE_CHILDREN)
}

/// Runs `sh -c cmd` directly (no squall) and times it from spawn to exit.
pub async fn time_shell(cmd: &str) -> Result<Duration> {
    let started = Instant::now();
    let status =
        tokio::process::Command::new("/bin/sh").args(["-c", cmd]).stdin(Stdio::null()).status().await.context("cannot run /bin/sh")?;
    let took = started.elapsed();
    if !status.success() {
        bail!("baseline command failed ({status}): {cmd}");
    }
    Ok(took)
}

/// Writes dirty pages out (`sync`), so each measured run starts with the same page-cache state
/// instead of paying for the previous run's writeback.
pub async fn settle_disk() -> Result<()> {
    let status = tokio::process::Command::new("sync").status().await.context("cannot run sync")?;
    if !status.success() {
        bail!("sync failed ({status})");
    }
    Ok(())
}

/// Samples the server's RSS until dropped; `peak()` is the largest `VmRSS` seen.
pub struct RssSampler {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let p = std::sync::Arc::clone(&peak);
        let task = tokio::spawn(async move {
            loop {
                p.fetch_max(Memory::of(pid).rss_kib, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(every).await;
            }
        });
        RssSampler { peak, task }
    }

    pub fn peak_kib(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Raises this process's open-file limit to its hard limit (inherited by the server it
/// starts), so thousands of viewers can connect. Returns the new soft limit.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 0,
    }
}

/// A line of `n - 1` printable bytes (plus the newline makes `n`), for `yes`.
pub fn line_of(n: usize) -> String {
    "x".repeat(n.saturating_sub(1))
}

/// The command that writes `bytes` bytes of 100-byte lines as fast as it can.
pub fn bulk_cmd(bytes: u64) -> String {
    format!("yes {} | head -c {bytes}", line_of(100))
}

/// Shell-quotes a path.
pub fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// This machine, for the report.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    json!({
        "nproc": nproc(),
        "cpu_model": model.unwrap_or_else(|| "unknown".into()),
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}
