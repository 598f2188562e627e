//! Test harness: starts the real `squall` binary on a temporary data directory and a free port,
//! and talks HTTP to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct Server {
    pub dir: tempfile::TempDir,
    pub base: String,
    child: Option<Child>,
    env: Vec<(String, String)>,
    port: u16,
    /// Every line the server logged, since it first started.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with extra environment variables (config overrides such as
    /// `SQUALL_ACTIONRUNNER__KILL_GRACE_PERIOD`).
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        Server::start_in(tempfile::tempdir().expect("temp dir"), env)
    }

    /// Starts a server whose data directory is `dir/data` (which may be a mount of the test's).
    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        let mut server = Server {
            dir,
            base: String::new(),
            child: None,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            port: 0,
            log: Default::default(),
        };
        server.spawn();
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn packs_dir(&self) -> PathBuf {
        self.dir.path().join("packs")
    }

    fn spawn(&mut self) {
        let listen = format!("127.0.0.1:{}", self.port);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_squall"));
        cmd.args(["server", "--listen", &listen, "--data-dir"])
            .arg(self.data_dir())
            .env("SQUALL_CONTENT__PACKS_BASE_PATHS", self.packs_dir())
            .env("SQUALL_ACTIONRUNNER__KILL_GRACE_PERIOD", "2")
            // Tests of everything but authentication run in the explicit development mode;
            // the auth tests turn it back on with `start_with`.
            .env("SQUALL_AUTH__ENABLE", "false")
            .env("SQUALL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn squall server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::clone(&self.log);
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line.clone());
                if !sent && let Some(addr) = line.split("listening on http://").nth(1) {
                    // The address ends where a text line's next word, or a JSON line's quote, begins.
                    let end = addr.find(|c: char| !(c.is_ascii_alphanumeric() || ".:[]".contains(c))).unwrap_or(addr.len());
                    let _ = tx.send(addr[..end].to_string());
                    sent = true;
                }
                if std::env::var_os("SQUALL_TEST_SERVER_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|e| {
            panic!("the server did not announce its address ({e}); it logged:\n{}", self.log.lock().unwrap().join("\n"))
        });
        self.port = addr.rsplit(':').next().unwrap().parse().unwrap();
        self.base = format!("http://{addr}");
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        c.wait().unwrap()
    }

    /// Starts the server again on the same data directory and port.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// Anything with an HTTP API to test against: a server, or one API node of a cluster.
pub trait Endpoint {
    fn url(&self, path: &str) -> String;
}

impl Endpoint for Server {
    fn url(&self, path: &str) -> String {
        Server::url(self, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub async fn post(server: &impl Endpoint, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(server.url(path)).json(&body).send().await.expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn get(server: &impl Endpoint, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new().get(server.url(path)).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn get_bytes(server: &impl Endpoint, path: &str) -> Vec<u8> {
    let r = reqwest::Client::new().get(server.url(path)).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    r.bytes().await.expect("body").to_vec()
}

/// Runs `core.local` with `cmd` (plus extra parameters) and returns the execution id.
pub async fn run_cmd(server: &impl Endpoint, cmd: &str, extra: Value) -> String {
    let mut params = json!({"cmd": cmd});
    if let Value::Object(extra) = extra {
        params.as_object_mut().unwrap().extend(extra);
    }
    let (status, body) = post(server, "/v1/executions", json!({"action": "core.local", "parameters": params})).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

pub const TERMINAL: [&str; 5] = ["succeeded", "failed", "timeout", "canceled", "abandoned"];

/// Polls until the execution reaches a terminal status; returns it.
pub async fn wait_done(server: &impl Endpoint, id: &str, within: Duration) -> Value {
    wait_status(server, id, &TERMINAL, within).await
}

pub async fn wait_status(server: &impl Endpoint, id: &str, statuses: &[&str], within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, e) = get(server, &format!("/v1/executions/{id}")).await;
        assert_eq!(code, 200, "{e}");
        if statuses.contains(&e["status"].as_str().unwrap_or("")) {
            return e;
        }
        assert!(Instant::now() < deadline, "execution {id} still {} after {within:?}", e["status"]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Processes (not zombies) in process group `pgid`.
pub fn live_group_members(pgid: i32) -> Vec<i32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // Fields after the parenthesised command: state, ppid, pgrp, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2].parse::<i32>() == Ok(pgid) {
            members.push(pid);
        }
    }
    members
}

pub fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// A minimal SSE reader over a streaming response, for tests.
pub struct Sse {
    response: reqwest::Response,
    buf: Vec<u8>,
    /// Number of bare keep-alive newlines seen between frames.
    pub keepalives: usize,
}

impl Sse {
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> Sse {
        let mut req = reqwest::Client::new().get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = req.send().await.expect("open stream");
        assert_eq!(response.status().as_u16(), 200, "stream {url}");
        let ct = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Sse { response, buf: Vec::new(), keepalives: 0 }
    }

    /// The next event with data, or `None` when the server closed the stream.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            while self.buf.first() == Some(&b'\n') {
                self.buf.remove(0);
                self.keepalives += 1;
            }
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(frame).expect("utf-8 frame");
                let mut ev = Event::default();
                let mut data = Vec::new();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        ev.event = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v.to_string());
                    }
                }
                ev.data = data.join("\n");
                return Some(ev);
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }

    /// Every remaining event until the server closes the stream.
    pub async fn rest(mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

/// Concatenated `data` of output events (decoded from their JSON payloads).
pub fn output_text(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.event.as_deref() == Some("st2.execution.output__create"))
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["data"].as_str().unwrap().to_string())
        .collect()
}

/// `s` without terminal colour codes (CSI sequences), as a terminal would show it.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Opens the server's SQLite database read-only and asserts `PRAGMA integrity_check` says `ok`.
pub async fn integrity_check(s: &Server) {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", s.data_dir().join("squall.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.expect("open the database read-only");
    let (verdict,): (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(&mut db).await.unwrap();
    assert_eq!(verdict, "ok", "SQLite integrity check");
}

/// An `Authorization: Basic` header value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Adds a squall user with `squall user add` (the password on stdin) to the server's data.
pub fn add_user(s: &Server, name: &str, password: &str) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["user", "add", name, "--data-dir"])
        .arg(s.data_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success());
}
