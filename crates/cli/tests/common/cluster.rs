//! A squall cluster on loopback for tests: API and runner nodes as separate `squall server`
//! processes on PostgreSQL (a schema of the test's own) and NATS (a subject prefix of its own),
//! and, for failure tests, private NATS and PostgreSQL servers that the test may kill and
//! restart. Included as `#[path = "common/cluster.rs"] mod cluster;` next to `mod common;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::Endpoint;

/// The shared PostgreSQL of the tests.
pub fn pg_url() -> String {
    std::env::var("SQUALL_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The shared NATS of the tests.
pub fn nats_url() -> String {
    std::env::var("SQUALL_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not open port {port} within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Api,
    Runner,
}

/// One `squall server` process of the cluster.
pub struct Node {
    pub role: Role,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` of an API node.
    pub base: String,
    port: u16,
    data_dir: PathBuf,
}

impl Endpoint for Node {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl Node {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).expect("signal a node");
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
        }
        self.kill9();
    }
}

/// API and runner nodes sharing a store and a bus.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub schema: String,
    pub prefix: String,
    pub db_url: String,
    pub nats_url: String,
    pub apis: Vec<Node>,
    pub runners: Vec<Node>,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// `apis` API nodes and `runners` runner nodes on the shared PostgreSQL and NATS.
    pub fn start(apis: usize, runners: usize) -> Cluster {
        Cluster::start_on(&pg_url(), &nats_url(), apis, runners, &[])
    }

    /// The same on given servers, with extra environment (configuration overrides).
    pub fn start_on(db_url: &str, nats_url: &str, apis: usize, runners: usize, env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let id = squall_core::id::new_id();
        let mut cluster = Cluster {
            schema: format!("c_{id}"),
            prefix: format!("c{id}"),
            db_url: db_url.to_string(),
            nats_url: nats_url.to_string(),
            apis: Vec::new(),
            runners: Vec::new(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            dir,
        };
        let key = cluster.dir.path().join("encryption.key");
        let out = Command::new(env!("CARGO_BIN_EXE_squall")).arg("key").arg("generate").arg(&key).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::create_dir_all(cluster.dir.path().join("packs")).unwrap();
        for _ in 0..apis {
            let node = cluster.spawn(Role::Api, 0);
            cluster.apis.push(node);
        }
        for _ in 0..runners {
            let node = cluster.spawn(Role::Runner, 0);
            cluster.runners.push(node);
        }
        cluster
    }

    pub fn api(&self, n: usize) -> &Node {
        &self.apis[n]
    }

    fn spawn(&self, role: Role, port: u16) -> Node {
        let n = self.apis.len() + self.runners.len();
        let data_dir = self.dir.path().join(format!("node-{n}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_squall"));
        cmd.arg("server")
            .arg("--role")
            .arg(match role {
                Role::Api => "api",
                Role::Runner => "runner",
            })
            .arg("--data-dir")
            .arg(&data_dir)
            .env("SQUALL_DATABASE__URL", &self.db_url)
            .env("SQUALL_DATABASE__SCHEMA", &self.schema)
            .env("SQUALL_DATABASE__POOL_SIZE", "8")
            .env("SQUALL_MESSAGING__URL", &self.nats_url)
            .env("SQUALL_MESSAGING__PREFIX", &self.prefix)
            .env("SQUALL_KEYVALUE__ENCRYPTION_KEY_PATH", self.dir.path().join("encryption.key"))
            .env("SQUALL_CONTENT__PACKS_BASE_PATHS", self.dir.path().join("packs"))
            .env("SQUALL_ACTIONRUNNER__KILL_GRACE_PERIOD", "2")
            .env("SQUALL_AUTH__ENABLE", "false")
            .env("SQUALL_LOG", "info,sqlx=warn,async_nats=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if role == Role::Api {
            cmd.arg("--listen").arg(format!("127.0.0.1:{port}"));
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn a squall node");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let tag = format!("{role:?} {n}");
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("SQUALL_TEST_SERVER_LOG").is_some() {
                    eprintln!("[{tag}] {line}");
                }
                if sent {
                    continue;
                }
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(Some(addr.split_whitespace().next().unwrap_or_default().to_string()));
                    sent = true;
                } else if line.contains("squall is running") {
                    let _ = tx.send(None);
                    sent = true;
                } else if line.starts_with("squall: ") {
                    let _ = tx.send(Some(format!("FAILED {line}")));
                    sent = true;
                }
            }
        });
        let announced = rx.recv_timeout(Duration::from_secs(60)).expect("the node announced itself");
        let (base, port) = match announced {
            Some(failed) if failed.starts_with("FAILED") => panic!("a {role:?} node did not start: {failed}"),
            Some(addr) => (format!("http://{addr}"), addr.rsplit(':').next().unwrap().parse().unwrap()),
            None => (String::new(), 0),
        };
        Node { role, child: Some(child), base, port, data_dir }
    }

    /// Starts API node `n` again on its old port (after a kill).
    pub fn restart_api(&mut self, n: usize) {
        let port = self.apis[n].port;
        self.apis[n].kill9();
        self.apis[n] = self.spawn(Role::Api, port);
    }

    /// The runner node that holds the execution described by `e` (its `runner_info.pid`).
    pub fn runner_of(&mut self, e: &serde_json::Value) -> &mut Node {
        let pid = e["liveaction"]["runner_info"]["pid"].as_i64().unwrap_or_else(|| panic!("no liveaction.runner_info: {e}")) as i32;
        self.runners.iter_mut().find(|r| r.is_running() && r.pid() == pid).unwrap_or_else(|| panic!("no runner with pid {pid}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.apis.clear();
        self.runners.clear();
        let (db_url, schema, nats_url, prefix) = (self.db_url.clone(), self.schema.clone(), self.nats_url.clone(), self.prefix.clone());
        // Drop is synchronous; the clean-up needs a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let settings = squall_store::PgSettings { url: db_url, schema: Some(schema.clone()), max_connections: 1 };
                if let Ok(store) = squall_store::PgStore::connect(&settings).await {
                    let _ = store.drop_schema(&schema).await;
                }
                if let Ok(client) = async_nats::connect(nats_url).await {
                    let _ = async_nats::jetstream::new(client).delete_stream(format!("{}_WORK", prefix.to_ascii_uppercase())).await;
                }
            });
        })
        .join();
    }
}

/// A NATS server of the test's own (JetStream on, state in a directory of its own), which the
/// test may kill and start again on the same port with the same state.
pub struct OwnNats {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnNats {
    pub fn start() -> OwnNats {
        let mut nats = OwnNats { port: free_port(), dir: tempfile::tempdir().unwrap(), child: None };
        nats.spawn();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"].into_iter().find(|p| Path::new(p).is_file()).unwrap_or_else(|| {
            panic!("nats-server is missing: install it (Debian: apt-get install nats-server; ./scripts/test does) to run the failure tests")
        });
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        wait_for_port(self.port, "nats-server", Duration::from_secs(10));
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart_after(&mut self, down: Duration) {
        self.kill9();
        std::thread::sleep(down);
        self.spawn();
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A throw-away PostgreSQL cluster (Debian's `initdb` and `pg_ctl`) on a free port, which the
/// test may restart. Run as the `postgres` user when the test runs as root (PostgreSQL refuses
/// root).
pub struct OwnPostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl OwnPostgres {
    pub fn start() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| versions.flatten().map(|v| v.path().join("bin")).filter(|b| b.join("initdb").is_file()).max())
            .unwrap_or_else(|| {
                panic!("initdb is missing: install PostgreSQL (Debian: apt-get install postgresql) to run the failure tests")
            });
        let dir = tempfile::tempdir().unwrap();
        let pg = OwnPostgres { port: free_port(), dir, bin };
        if nix::unistd::geteuid().is_root() {
            let out = Command::new("chown").arg("-R").arg("postgres:postgres").arg(pg.dir.path()).output().unwrap();
            assert!(out.status.success(), "chown: {}", String::from_utf8_lossy(&out.stderr));
        }
        pg.run("initdb", &["-D", &pg.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", pg.port, pg.dir.path().display());
        pg.run("pg_ctl", &["-D", &pg.data(), "-o", &options, "-l", &pg.log(), "-w", "start"]);
        pg.run("createdb", &["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "postgres", "test"]);
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log(&self) -> String {
        self.dir.path().join("log").display().to_string()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }

    /// One of PostgreSQL's tools, as the `postgres` user when the test runs as root.
    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if nix::unistd::geteuid().is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(out.status.success(), "{tool} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    /// `pg_ctl stop -m fast`, `down` of nothing, then start again with the same settings.
    pub fn restart_after(&self, down: Duration) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
        std::thread::sleep(down);
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        self.run("pg_ctl", &["-D", &self.data(), "-o", &options, "-l", &self.log(), "-w", "start"]);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").args(["-D", &self.data(), "-m", "immediate", "stop"]).output();
    }
}
