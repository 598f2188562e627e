//! `--cluster`: the scenarios against 2 API nodes and 2 runner nodes, separate processes on this
//! machine, on its PostgreSQL and NATS (`--database-url`, `--nats-url`). Each run gets a schema
//! and a subject prefix of its own, dropped when the run ends.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::harness::{BenchServer, Cpu, Process, Role, ServerOptions, start_node};

/// Where the cluster's PostgreSQL and NATS are.
#[derive(Debug, Clone)]
pub struct Backends {
    pub database_url: String,
    pub nats_url: String,
}

/// The nodes of one run.
pub struct BenchCluster {
    pub apis: Vec<Arc<BenchServer>>,
    pub runners: Vec<Process>,
    backends: Backends,
    schema: String,
    prefix: String,
}

impl BenchCluster {
    /// `apis` API nodes and `runners` runner nodes, data under `root`, with `env` on each.
    pub async fn start(root: &Path, backends: &Backends, apis: usize, runners: usize, env: &[(&str, &str)]) -> Result<BenchCluster> {
        let tag = format!("{:x}{:x}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros());
        let (schema, prefix) = (format!("bench_{tag}"), format!("bench{tag}"));
        std::fs::create_dir_all(root)?;
        let key = root.join("encryption.key");
        let exe = std::env::current_exe().context("cannot find the squall executable")?;
        let made = Command::new(exe).arg("key").arg("generate").arg(&key).output()?;
        if !made.status.success() {
            bail!("squall key generate failed: {}", String::from_utf8_lossy(&made.stderr));
        }
        let key = key.display().to_string();
        let mut all_env: Vec<(&str, &str)> = vec![
            ("SQUALL_DATABASE__URL", &backends.database_url),
            ("SQUALL_DATABASE__SCHEMA", &schema),
            ("SQUALL_MESSAGING__URL", &backends.nats_url),
            ("SQUALL_MESSAGING__PREFIX", &prefix),
            ("SQUALL_KEYVALUE__ENCRYPTION_KEY_PATH", &key),
        ];
        all_env.extend_from_slice(env);
        let mut cluster = BenchCluster {
            apis: Vec::new(),
            runners: Vec::new(),
            backends: backends.clone(),
            schema: schema.clone(),
            prefix: prefix.clone(),
        };
        let packs = root.join("packs");
        for n in 0..apis + runners {
            let data = root.join(format!("node-{n}"));
            let options = ServerOptions { env: &all_env, port: None };
            if n < apis {
                cluster
                    .apis
                    .push(Arc::new(BenchServer::start_as(&data, &packs, Role::Api, options).await.context(cluster_hint(backends))?));
            } else {
                cluster.runners.push(start_node(&data, &packs, Role::Runner, options).await.context(cluster_hint(backends))?.0);
            }
        }
        Ok(cluster)
    }

    /// CPU seconds used so far by the cluster's nodes (API; runners with their actions) and by
    /// every PostgreSQL and NATS server process on this machine.
    pub fn cpu(&self) -> CpuSplit {
        let runners: Vec<Cpu> = self.runners.iter().map(|r| Cpu::of(r.pid())).collect();
        CpuSplit {
            api: self.apis.iter().map(|a| a.cpu().own_s).sum(),
            runners: runners.iter().map(|c| c.own_s).sum(),
            actions: runners.iter().map(|c| c.children_s).sum(),
            postgres: cpu_of_processes_named("postgres"),
            nats: cpu_of_processes_named("nats-server"),
        }
    }

    /// Kills the runner node with `pid` (SIGKILL).
    pub fn kill_runner(&mut self, pid: u32) {
        if let Some(r) = self.runners.iter_mut().find(|r| r.pid() == pid) {
            r.kill9();
        }
    }
}

/// Where a cluster's CPU went (seconds).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSplit {
    pub api: f64,
    pub runners: f64,
    pub actions: f64,
    pub postgres: f64,
    pub nats: f64,
}

impl CpuSplit {
    pub fn since(self, earlier: CpuSplit) -> CpuSplit {
        CpuSplit {
            api: self.api - earlier.api,
            runners: self.runners - earlier.runners,
            actions: self.actions - earlier.actions,
            postgres: self.postgres - earlier.postgres,
            nats: self.nats - earlier.nats,
        }
    }

    pub fn total(&self) -> f64 {
        self.api + self.runners + self.actions + self.postgres + self.nats
    }
}

/// CPU seconds of every live process whose command name is `name` (its own, not its children).
fn cpu_of_processes_named(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name))
        .map(|pid| Cpu::of(pid).own_s)
        .sum()
}

fn cluster_hint(b: &Backends) -> String {
    format!(
        "cannot start a cluster node on PostgreSQL {} and NATS {} (start them, or point --database-url / --nats-url elsewhere)",
        redact(&b.database_url),
        b.nats_url
    )
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***@{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl Drop for BenchCluster {
    fn drop(&mut self) {
        self.apis.clear();
        self.runners.clear();
        let (backends, schema, prefix) = (self.backends.clone(), self.schema.clone(), self.prefix.clone());
        // Drop is synchronous and may run inside the bench's runtime: clean up on a thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut db) = sqlx::PgConnection::connect(&backends.database_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))).execute(&mut db).await;
                }
                if let Ok(client) = async_nats::connect(&backends.nats_url).await {
                    let _ = async_nats::jetstream::new(client).delete_stream(format!("{}_WORK", prefix.to_ascii_uppercase())).await;
                }
            });
        })
        .join();
    }
}
