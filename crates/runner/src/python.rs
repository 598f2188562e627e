//! The `python-script` runner: StackStorm-style Python actions (a class deriving from
//! `st2common.runners.base_action.Action` with a `run(self, **parameters)` method).
//!
//! squall ships its own small `st2common` shim and a wrapper script (`python/`, embedded in the
//! binary) and writes them to a fresh per-execution directory that goes first on `PYTHONPATH`.
//! The interpreter runs unbuffered (`-u`) as the leader of its own process group, supervised like
//! every action ([`crate::process::supervise`]): its stdout and stderr are the action's own and
//! stream live. Parameters and the pack config go to the wrapper over stdin as one JSON
//! document — never in argv — and the outcome comes back over a dedicated pipe on file
//! descriptor 3, so nothing the action prints can be mistaken for its result.
//!
//! The interpreter is the pack's virtualenv when there is one —
//! `<packs base>/../virtualenvs/<pack>/bin/python` (StackStorm's layout, e.g.
//! `/opt/stackstorm/virtualenvs/<pack>`), else `<pack>/.venv/bin/python` — otherwise `python3`
//! from the action's `PATH`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};
use squall_core::{Execution, Status, StreamKind, params};
use squall_store::StoreError;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::content::Content;
use crate::process::{Job, StopReason, Stopper, supervise};
use crate::run_as::ActionUser;
use crate::writer::{LogWriter, WriterSummary};

/// The wrapper script and the `st2common` shim, as `(relative path, contents)`.
const FILES: [(&str, &str); 4] = [
    ("squall_python_wrapper.py", include_str!("python/wrapper.py")),
    ("st2common/__init__.py", include_str!("python/st2common/__init__.py")),
    ("st2common/runners/__init__.py", include_str!("python/st2common/runners/__init__.py")),
    ("st2common/runners/base_action.py", include_str!("python/st2common/runners/base_action.py")),
];

/// The file descriptor the wrapper writes its outcome to.
const RESULT_FD: i32 = 3;

/// Largest result kept. Beyond it the result is dropped (`result_omitted` says so) rather than
/// held in memory and stored; the execution's status is unaffected.
pub const MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;

/// How long the outcome pipe may stay open after the process group is gone (a process that
/// escaped the group could hold it).
const RESULT_DRAIN: Duration = Duration::from_secs(2);

/// Everything a Python action needs besides the execution itself.
pub struct PythonContext<'a> {
    pub resolved: &'a params::Resolved,
    pub content: &'a Content,
    /// Allow-listed server variables plus `ST2_ACTION_*` (including `ST2_ACTION_AUTH_TOKEN`).
    pub base_env: BTreeMap<String, String>,
    pub grace: Duration,
    /// Chunks in flight between capture and the log writer.
    pub capture_queue: usize,
    /// Who the interpreter runs as.
    pub user: &'a ActionUser,
}

/// Runs a `python-script` action to its end and returns its status, StackStorm's result
/// `{"stdout", "stderr", "exit_code", "result"}` (+ `error` on timeout) and, when the action
/// ran, what the log writer recorded.
pub async fn execute(
    e: &Execution,
    ctx: PythonContext<'_>,
    writer: LogWriter,
    stopper: &Stopper,
) -> Result<(Status, Value, Option<WriterSummary>), StoreError> {
    let prepared = match prepare(e, &ctx) {
        Ok(p) => p,
        Err(message) => return Ok((Status::Failed, json!({"error": message}), None)),
    };
    let Prepared { job, result_pipe, shim, timeout_secs } = prepared;

    let (tx, rx) = mpsc::channel(ctx.capture_queue);
    let writing = tokio::spawn(writer.run(rx));
    let (pipe_reader, pipe_writer) = result_pipe;
    let mut reading = tokio::spawn(read_outcome(pipe_reader));
    let ended = supervise(job, stopper, tx).await;
    // Only the action may hold the write end now: when it (and anything it left) is gone,
    // the reader sees the end of the outcome.
    drop(pipe_writer);
    let summary = writing.await.expect("log writer task")?;
    let reply = match tokio::time::timeout(RESULT_DRAIN, &mut reading).await {
        Ok(Ok(reply)) => reply,
        _ => {
            reading.abort();
            Reply::Missing
        }
    };
    drop(shim);

    let ended = match ended {
        Ok(ended) => ended,
        Err(err) => {
            let message = format!("Failed to start the Python interpreter: {err}");
            return Ok((
                Status::Failed,
                json!({"stdout": "", "stderr": "", "exit_code": -1, "result": "None", "error": message}),
                Some(summary),
            ));
        }
    };
    // A result too large to keep is reported, not fatal: the action did what it did.
    let (returned_status, value, note, error) = match reply {
        Reply::Returned { status, result } => (status, result, None, None),
        Reply::TooLarge { status, size } => (
            status,
            Value::from("None"),
            Some(format!("The action's result ({size} bytes) is larger than {MAX_RESULT_BYTES} bytes and was not kept")),
            None,
        ),
        Reply::Missing => (None, Value::from("None"), None, None),
        Reply::Unreadable(why) => (None, Value::from("None"), None, Some(format!("The action's result could not be read: {why}"))),
    };
    // Timeout, cancel and shutdown override what the action said; otherwise exit 0 succeeds
    // unless run() returned `(False, …)`.
    let (code, status) = match ended.stopped {
        Some(StopReason::Timeout) => (-9, Status::Timeout),
        Some(StopReason::Canceled) => (-15, Status::Canceled),
        Some(StopReason::Shutdown) => (-15, Status::Abandoned),
        None if ended.code == 0 && returned_status != Some(false) && error.is_none() => (0, Status::Succeeded),
        None => (ended.code, Status::Failed),
    };
    let mut result = json!({
        "stdout": summary.text(None, StreamKind::Stdout),
        "stderr": summary.text(None, StreamKind::Stderr),
        "exit_code": code,
        "result": value,
    });
    match ended.stopped {
        Some(StopReason::Timeout) => result["error"] = json!(format!("Action failed to complete in {timeout_secs} seconds")),
        Some(StopReason::Shutdown) => result["error"] = json!("squall shut down before the action finished"),
        _ => {
            if let Some(error) = error {
                result["error"] = json!(error);
            }
        }
    }
    if let Some(note) = note {
        result["result_omitted"] = json!(note);
    }
    Ok((status, result, Some(summary)))
}

struct Prepared {
    job: Job,
    result_pipe: (std::io::PipeReader, OwnedFd),
    shim: ShimDir,
    timeout_secs: u64,
}

fn prepare(e: &Execution, ctx: &PythonContext<'_>) -> Result<Prepared, String> {
    let action = &e.action;
    let Some(file_path) = ctx.content.entry_point(action) else {
        return Err(format!("Action {} has no entry point in a loaded pack", action.ref_));
    };
    let pack_dir = ctx.content.pack_dir(&action.pack).map(Path::to_path_buf).unwrap_or_default();
    let (config, config_path) = pack_config(&pack_dir, &action.pack)?;
    let runner = &ctx.resolved.runner;

    // Every declared action parameter reaches run(): unset ones as None, as under StackStorm.
    let mut parameters = Map::new();
    for name in action.parameters.keys().filter(|n| !runner.contains_key(*n)) {
        parameters.insert(name.clone(), ctx.resolved.action.get(name).cloned().unwrap_or(Value::Null));
    }
    for (name, value) in &ctx.resolved.action {
        parameters.entry(name.clone()).or_insert_with(|| value.clone());
    }
    let log_level = runner.get("log_level").and_then(Value::as_str).unwrap_or("DEBUG");
    let request = json!({
        "file_path": file_path,
        "pack": action.pack,
        "user": e.user(),
        "parameters": parameters,
        "config": config,
        "config_path": config_path,
        "log_level": log_level,
    });

    let shim =
        ShimDir::create(&e.id, ctx.user).map_err(|err| format!("Cannot write squall's Python wrapper to a temporary directory: {err}"))?;
    let (python, venv) = interpreter(&pack_dir, &action.pack);
    let env = environment(ctx, &pack_dir, &shim.path, venv.as_deref());

    let (reader, writer) = std::io::pipe().map_err(|err| format!("Cannot create the result pipe: {err}"))?;
    let writer = OwnedFd::from(writer);
    let fd = writer.as_raw_fd();
    let mut command = Command::new(&python);
    command.arg("-u").arg(shim.path.join("squall_python_wrapper.py")).env_clear().envs(&env);
    ctx.user.switch(&mut command);
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            use nix::libc;
            if fd == RESULT_FD {
                // Already in place: just let it survive exec.
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, RESULT_FD) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let timeout = runner.get("timeout").and_then(Value::as_i64).filter(|t| *t > 0).map(|t| Duration::from_secs(t as u64));
    let stdin = serde_json::to_vec(&request).expect("request is JSON");
    Ok(Prepared {
        job: Job { command, stdin: Some(stdin), timeout, grace: ctx.grace },
        result_pipe: (reader, writer),
        shim,
        timeout_secs: timeout.map_or(0, |t| t.as_secs()),
    })
}

/// The action's environment: allow-listed server variables, then the user's `env` (without
/// `PYTHONPATH`), then squall's — `ST2_*` always win.
fn environment(ctx: &PythonContext<'_>, pack_dir: &Path, shim: &Path, venv: Option<&Path>) -> BTreeMap<String, String> {
    let runner = &ctx.resolved.runner;
    let mut env = ctx.base_env.clone();
    let st2: Vec<(String, String)> =
        ctx.base_env.iter().filter(|(k, _)| k.starts_with("ST2_")).map(|(k, v)| (k.clone(), v.clone())).collect();
    env.insert("PYTHONIOENCODING".into(), "utf-8".into());
    if let Some(venv) = venv {
        let path = env.get("PATH").map_or_else(String::new, |p| format!(":{p}"));
        env.insert("PATH".into(), format!("{}{path}", venv.join("bin").display()));
        env.insert("VIRTUAL_ENV".into(), venv.display().to_string());
    }
    if let Some(Value::Object(user_env)) = runner.get("env") {
        for (k, v) in user_env.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("PYTHONPATH")) {
            env.insert(k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string));
        }
    }
    env.extend(st2);
    let debug = runner.get("debug").and_then(Value::as_bool).unwrap_or(false);
    env.insert("ST2_ACTION_DEBUG".into(), if debug { "True" } else { "False" }.into());
    if let Some(token) = ctx.base_env.get("ST2_ACTION_AUTH_TOKEN") {
        env.insert("ST2_AUTH_TOKEN".into(), token.clone());
    }
    if let Some(url) = ctx.base_env.get("ST2_ACTION_API_URL") {
        env.insert("ST2_API_URL".into(), url.clone());
    }
    env.insert("PYTHONUNBUFFERED".into(), "1".into());
    let mut path = vec![shim.display().to_string()];
    for lib in [pack_dir.join("actions/lib"), pack_dir.join("lib")] {
        if lib.is_dir() {
            path.push(lib.display().to_string());
        }
    }
    env.insert("PYTHONPATH".into(), path.join(":"));
    env
}

/// The interpreter for a pack, and its virtualenv when it has one.
fn interpreter(pack_dir: &Path, pack: &str) -> (PathBuf, Option<PathBuf>) {
    let stackstorm = pack_dir.parent().and_then(Path::parent).map(|root| root.join("virtualenvs").join(pack));
    for venv in stackstorm.into_iter().chain([pack_dir.join(".venv")]) {
        if venv.join("bin/python").is_file() {
            return (venv.join("bin/python"), Some(venv));
        }
    }
    (PathBuf::from("python3"), None)
}

/// The pack's configuration, as JSON, and the file it came from: the first of
/// `<packs base>/../configs/<pack>.yaml` (StackStorm's layout), `/opt/stackstorm/configs/<pack>.yaml`
/// and `<pack>/config.yaml` that exists; `{}` when none does. Top-level `default`s of the
/// pack's `config.schema.yaml` fill keys the file does not set.
fn pack_config(pack_dir: &Path, pack: &str) -> Result<(Value, Option<PathBuf>), String> {
    let file = format!("{pack}.yaml");
    let candidates = [
        pack_dir.parent().and_then(Path::parent).map(|root| root.join("configs").join(&file)),
        Some(Path::new("/opt/stackstorm/configs").join(&file)),
        Some(pack_dir.join("config.yaml")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.is_file());
    let mut config = match &found {
        Some(path) => read_yaml(path)?,
        None => Value::Object(Map::new()),
    };
    if config.is_null() {
        config = Value::Object(Map::new());
    }
    let Value::Object(values) = &mut config else {
        return Err(format!("{} must hold a mapping of config keys", found.expect("a file").display()));
    };
    let schema = pack_dir.join("config.schema.yaml");
    if schema.is_file()
        && let Value::Object(props) = read_yaml(&schema)?
    {
        for (key, spec) in props {
            if let Some(default) = spec.get("default").filter(|_| !values.contains_key(&key)) {
                values.insert(key, default.clone());
            }
        }
    }
    Ok((config, found))
}

fn read_yaml(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("Cannot read {}: {e}", path.display()))?;
    yaml_serde::from_str(&text).map_err(|e| format!("{} is not valid YAML: {e}", path.display()))
}

/// What came back on the outcome pipe: a status line (`true`, `false` or `null`), then the
/// result as JSON.
enum Reply {
    Returned {
        status: Option<bool>,
        result: Value,
    },
    /// The result was larger than [`MAX_RESULT_BYTES`]; only its status was kept.
    TooLarge {
        status: Option<bool>,
        size: usize,
    },
    /// Nothing, or nothing parseable: the action raised, exited early or was killed.
    Missing,
    Unreadable(String),
}

async fn read_outcome(reader: std::io::PipeReader) -> Reply {
    let mut pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader)) {
        Ok(p) => p,
        Err(e) => return Reply::Unreadable(e.to_string()),
    };
    let mut status_line: Option<Vec<u8>> = None;
    let mut head = Vec::new();
    let mut body = Vec::new();
    let mut size = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Reply::Unreadable(e.to_string()),
        };
        let mut data = &buf[..n];
        if status_line.is_none() {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    head.extend_from_slice(&data[..i]);
                    status_line = Some(std::mem::take(&mut head));
                    data = &data[i + 1..];
                }
                None => {
                    head.extend_from_slice(data);
                    if head.len() > 16 {
                        return Reply::Unreadable("no status line".into());
                    }
                    continue;
                }
            }
        }
        size += data.len();
        // Past the limit, keep reading (so the action is not blocked) but keep nothing.
        if size <= MAX_RESULT_BYTES {
            body.extend_from_slice(data);
        } else {
            body = Vec::new();
        }
    }
    let Some(status) = status_line.and_then(|line| serde_json::from_slice::<Option<bool>>(&line).ok()) else {
        return Reply::Missing;
    };
    if size > MAX_RESULT_BYTES {
        return Reply::TooLarge { status, size };
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(result) => Reply::Returned { status, result },
        Err(_) => Reply::Missing,
    }
}

/// A private directory (mode 0700) holding the wrapper and the `st2common` shim for one
/// execution; removed when dropped.
struct ShimDir {
    path: PathBuf,
}

impl ShimDir {
    /// Writes the wrapper into a fresh private directory owned by the action user.
    fn create(execution_id: &str, user: &ActionUser) -> std::io::Result<ShimDir> {
        use std::os::unix::fs::DirBuilderExt;
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("squall-python-{execution_id}-{}-{n}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        let dir = ShimDir { path };
        user.hand_over(&dir.path)?;
        for (relative, text) in FILES {
            let file = dir.path.join(relative);
            let parent = file.parent().expect("has a parent");
            if !parent.exists() {
                std::fs::DirBuilder::new().mode(0o700).create(parent)?;
                user.hand_over(parent)?;
            }
            std::fs::File::create(&file)?.write_all(text.as_bytes())?;
            user.hand_over(&file)?;
        }
        Ok(dir)
    }
}

impl Drop for ShimDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_comes_from_the_pack_with_schema_defaults() {
        let root = tempfile::tempdir().unwrap();
        let pack = root.path().join("packs/demo");
        std::fs::create_dir_all(&pack).unwrap();
        assert_eq!(pack_config(&pack, "demo").unwrap(), (json!({}), None));
        std::fs::write(pack.join("config.yaml"), "region: eu\n").unwrap();
        std::fs::write(pack.join("config.schema.yaml"), "region: {type: string, default: us}\nretries: {type: integer, default: 3}\n")
            .unwrap();
        let (config, path) = pack_config(&pack, "demo").unwrap();
        assert_eq!(config, json!({"region": "eu", "retries": 3}));
        assert_eq!(path.unwrap(), pack.join("config.yaml"));
        // StackStorm's layout wins: <packs base>/../configs/<pack>.yaml.
        std::fs::create_dir_all(root.path().join("configs")).unwrap();
        std::fs::write(root.path().join("configs/demo.yaml"), "region: ap\n").unwrap();
        assert_eq!(pack_config(&pack, "demo").unwrap().0["region"], "ap");
        std::fs::write(root.path().join("configs/demo.yaml"), "[1, 2]\n").unwrap();
        assert!(pack_config(&pack, "demo").unwrap_err().contains("demo.yaml"));
    }

    #[test]
    fn virtualenv_layouts() {
        let root = tempfile::tempdir().unwrap();
        let pack = root.path().join("packs/demo");
        std::fs::create_dir_all(&pack).unwrap();
        assert_eq!(interpreter(&pack, "demo"), (PathBuf::from("python3"), None));
        std::fs::create_dir_all(pack.join(".venv/bin")).unwrap();
        std::fs::write(pack.join(".venv/bin/python"), "").unwrap();
        assert_eq!(interpreter(&pack, "demo").1.unwrap(), pack.join(".venv"));
        let st2 = root.path().join("virtualenvs/demo");
        std::fs::create_dir_all(st2.join("bin")).unwrap();
        std::fs::write(st2.join("bin/python"), "").unwrap();
        assert_eq!(interpreter(&pack, "demo").1.unwrap(), st2);
    }

    #[test]
    fn shim_dir_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = ShimDir::create("0123456789abcdef01234567", &ActionUser::default()).unwrap();
        let path = dir.path.clone();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(path.join("st2common/runners/base_action.py").is_file());
        drop(dir);
        assert!(!path.exists());
    }
}
