//! Runs the real StackStorm CLI (`st2`, st2client 3.9.0, which `./scripts/test` installs into
//! `target/st2-venv` and names in `SQUALL_TEST_ST2`) against a test server, with a fresh `HOME`
//! and a timeout on every invocation. Shared by `st2_cli.rs` and `st2_cli_auth.rs`, which include
//! it next to `mod common;` with `#[path = "common/st2.rs"] mod st2;`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::common::{Server, strip_ansi};

/// Output chunks with the time each arrived, shared with the reader thread.
type Captured = Arc<Mutex<Vec<(Duration, Vec<u8>)>>>;

/// Longest any single `st2` command may take before the test fails.
pub const ST2_TIMEOUT: Duration = Duration::from_secs(60);

pub fn st2_bin() -> PathBuf {
    const HINT: &str = "run ./scripts/test (it installs st2client into target/st2-venv) or set SQUALL_TEST_ST2";
    let Some(path) = std::env::var_os("SQUALL_TEST_ST2") else {
        panic!("SQUALL_TEST_ST2 is not set: {HINT}");
    };
    let path = PathBuf::from(path);
    assert!(path.is_file(), "SQUALL_TEST_ST2={} is not a file: {HINT}", path.display());
    path
}

#[derive(Clone, Copy, Debug)]
pub enum Layout {
    /// `ST2_API_URL=http://h:P/api/v1`, `ST2_AUTH_URL=http://h:P/auth/v1`, `ST2_STREAM_URL=http://h:P/stream/v1`.
    Prefixed,
    /// All three set to `http://h:P/v1`.
    BareV1,
}

/// The `st2` CLI with a fresh `HOME` (so a fresh, empty `~/.st2`), pointed at one server.
pub struct St2 {
    pub bin: PathBuf,
    pub home: tempfile::TempDir,
    /// Environment of every invocation (the URL variables; tests may add credentials).
    pub env: Vec<(&'static str, String)>,
}

impl St2 {
    pub fn new(s: &Server, layout: Layout) -> St2 {
        St2::at(&s.base, layout)
    }

    /// The CLI pointed at the server (or API node) at `b` (`http://host:port`).
    pub fn at(b: &str, layout: Layout) -> St2 {
        let b = &b.to_string();
        let (api, auth, stream) = match layout {
            Layout::Prefixed => (format!("{b}/api/v1"), format!("{b}/auth/v1"), format!("{b}/stream/v1")),
            Layout::BareV1 => (format!("{b}/v1"), format!("{b}/v1"), format!("{b}/v1")),
        };
        St2 {
            bin: st2_bin(),
            home: tempfile::tempdir().expect("temp HOME"),
            env: vec![("ST2_BASE_URL", b.clone()), ("ST2_API_URL", api), ("ST2_AUTH_URL", auth), ("ST2_STREAM_URL", stream)],
        }
    }

    /// Starts `st2 ARGS…`; its stdout is read as it is produced, with arrival times.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("LANG", "C.UTF-8")
            // st2 writes tail output with sys.stdout.write and no flush: on a terminal that is
            // line-buffered, into a pipe it would be block-buffered. Unbuffered makes the pipe
            // behave like the terminal, so arrival times measure the server.
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn st2");
        let started = Instant::now();
        let out: Captured = Arc::default();
        let err: Arc<Mutex<Vec<u8>>> = Arc::default();
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let o = out.clone();
        let out_reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().push((started.elapsed(), buf[..n].to_vec()));
            }
        });
        let e = err.clone();
        let err_reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                e.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Running { what: format!("st2 {}", args.join(" ")), child, started, out, err, readers: vec![out_reader, err_reader] }
    }

    /// Runs `st2 ARGS…` to completion (at most `ST2_TIMEOUT`).
    pub async fn run(&self, args: &[&str]) -> Out {
        self.spawn(args).finish(ST2_TIMEOUT).await
    }
}

pub struct Running {
    what: String,
    child: tokio::process::Child,
    started: Instant,
    out: Captured,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn stdout_so_far(&self) -> String {
        let bytes: Vec<u8> = self.out.lock().unwrap().iter().flat_map(|(_, b)| b.clone()).collect();
        strip_ansi(&String::from_utf8_lossy(&bytes))
    }

    /// Waits until stdout contains `needle` (fails the test after `within`).
    pub async fn wait_for_stdout(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stdout_so_far().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "`{}` did not print {needle:?} within {within:?}; stdout so far:\n{}",
                self.what,
                self.stdout_so_far()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the process to exit; a process still running after `within` is killed and the
    /// test fails with what it printed so far.
    pub async fn finish(mut self, within: Duration) -> Out {
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for st2"),
            Err(_) => {
                let _ = self.child.kill().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "`{}` hung: still running after {within:?}.\nstdout so far:\n{}\nstderr so far:\n{}",
                    self.what,
                    self.stdout_so_far(),
                    String::from_utf8_lossy(&self.err.lock().unwrap())
                );
            }
        };
        for r in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
        }
        let chunks = std::mem::take(&mut *self.out.lock().unwrap());
        let raw: Vec<u8> = chunks.iter().flat_map(|(_, b)| b.clone()).collect();
        let stderr = String::from_utf8(std::mem::take(&mut *self.err.lock().unwrap())).expect("st2 stderr is UTF-8");
        let raw = String::from_utf8(raw).unwrap_or_else(|e| panic!("`{}` printed invalid UTF-8: {e}", self.what));
        Out {
            what: self.what,
            code: status.code().unwrap_or(-1),
            stdout: strip_ansi(&raw),
            stderr: strip_ansi(&stderr),
            chunks,
            elapsed: self.started.elapsed(),
        }
    }
}

/// What one `st2` invocation printed (ANSI colours removed) and how it exited.
pub struct Out {
    pub what: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Raw stdout pieces with the time (since start) each arrived.
    pub chunks: Vec<(Duration, Vec<u8>)>,
    pub elapsed: Duration,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

impl Out {
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "{self}");
        self
    }

    pub fn exit(self, code: i32) -> Out {
        assert_eq!(self.code, code, "{self}");
        self
    }

    pub fn has(&self, needle: &str) -> &Out {
        assert!(self.stdout.contains(needle), "expected {needle:?} in stdout of {self}");
        self
    }

    pub fn lacks(&self, needle: &str) -> &Out {
        assert!(!self.stdout.contains(needle), "did not expect {needle:?} in stdout of {self}");
        self
    }

    /// Everything printed, stdout and stderr.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The JSON document printed by `-j` (st2 may print a blank line or progress dots first).
    pub fn json(&self) -> Value {
        let start = self.stdout.find(['{', '[']).unwrap_or_else(|| panic!("no JSON in {self}"));
        serde_json::from_str(self.stdout[start..].trim()).unwrap_or_else(|e| panic!("bad JSON ({e}) in {self}"))
    }

    /// Complete stdout lines with the time the line's end arrived.
    pub fn timed_lines(&self) -> Vec<(Duration, String)> {
        let mut lines = Vec::new();
        let mut current = Vec::new();
        for (at, bytes) in &self.chunks {
            for &b in bytes {
                if b == b'\n' {
                    lines.push((*at, strip_ansi(&String::from_utf8_lossy(&current))));
                    current.clear();
                } else {
                    current.push(b);
                }
            }
        }
        lines
    }

    pub fn line_time(&self, line: &str) -> Duration {
        self.timed_lines().into_iter().find(|(_, l)| l == line).unwrap_or_else(|| panic!("no line {line:?} in {self}")).0
    }
}

pub fn completed(id: &str, status: &str) -> String {
    format!("Execution {id} has completed (status={status}).")
}

/// Defines `mod NAME { prefixed, bare_v1 }`: the async fn NAME(Layout) run under each layout.
#[allow(unused_macros)]
macro_rules! both_layouts {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn prefixed() {
                super::$name(super::Layout::Prefixed).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bare_v1() {
                super::$name(super::Layout::BareV1).await
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use both_layouts;
