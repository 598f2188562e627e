//! The remote runners, `remote-shell-cmd` and `remote-shell-script` (runner semantics §5):
//! the same command or script on every host of `hosts` over SSH, every host's output streamed
//! live and tagged with the host, the result keyed by host.

mod command;
mod host;
pub mod ssh;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Map, Value, json};
use squall_core::shell::{Exit, shell_result};
use squall_core::{Execution, Status, StreamKind, params};
use squall_store::StoreError;
use tokio::sync::mpsc;

use crate::content::Content;
use crate::local::quote;
use crate::process::{StopReason, Stopper};
use crate::writer::{LogWriter, WriterSummary};
use host::{HostEnd, HostJob};
use ssh::{Credentials, Login, Target, Upload};

/// `[ssh_runner]` settings plus the system user's login.
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// Where scripts are uploaded when the action gives no `dir`.
    pub remote_dir: String,
    /// Succeed when any host succeeded (instead of all).
    pub allow_partial_failure: bool,
    /// Most hosts connected at once in a `parallel` run.
    pub max_parallel: usize,
    pub connect_timeout: Duration,
    /// Login when the action gives no `username`.
    pub default_user: String,
    /// Key used when the action gives neither `password` nor `private_key`.
    pub default_key_file: PathBuf,
    /// Host keys must be listed here when set; otherwise any key is accepted (and logged).
    pub known_hosts: Option<PathBuf>,
}

/// What a remote execution needs besides the execution itself.
pub struct RemoteContext<'a> {
    pub resolved: &'a params::Resolved,
    pub content: &'a Content,
    /// `ST2_ACTION_*` variables (the token included); remote hosts get these and `env` only.
    pub st2_env: BTreeMap<String, String>,
    /// Names of secret parameters (script arguments travel as exported variables).
    pub secrets: &'a [String],
    pub grace: Duration,
    pub settings: &'a SshSettings,
    pub capture_queue: usize,
}

/// Runs a remote action on every host and returns its status, the result keyed by host, and
/// what the log writer recorded.
pub async fn execute(
    e: &Execution,
    ctx: RemoteContext<'_>,
    writer: LogWriter,
    stopper: &Stopper,
) -> Result<(Status, Value, Option<WriterSummary>), StoreError> {
    let prepared = match prepare(e, &ctx) {
        Ok(p) => p,
        Err(message) => return Ok((Status::Failed, json!({"error": message, "traceback": ""}), None)),
    };
    let (tx, rx) = mpsc::channel(ctx.capture_queue);
    let writing = tokio::spawn(writer.run(rx));
    let mut runs = Vec::with_capacity(prepared.hosts.len());
    for (i, (label, target)) in prepared.hosts.iter().enumerate() {
        let job = HostJob {
            label: Arc::clone(label),
            target,
            login: &prepared.login,
            script: &prepared.script,
            upload: prepared.upload.as_deref().map(|files| (format!("{}/squall-{}-{i}", prepared.dir, e.id), files)),
            timeout: prepared.timeout,
            connect_timeout: prepared.connect_timeout,
            grace: ctx.grace,
        };
        runs.push(host::run(job, stopper, tx.clone()));
    }
    let ends: BTreeMap<Arc<str>, HostEnd> = futures::stream::iter(runs).buffer_unordered(prepared.concurrency).collect().await;
    drop(tx);
    let summary = writing.await.expect("log writer task")?;
    let (status, result) = conclude(&prepared, &ends, &summary, ctx.settings.allow_partial_failure, stopper.reason());
    Ok((status, result, Some(summary)))
}

/// Everything decided before connecting anywhere.
struct Prepared {
    /// Result key and output tag of each host, with where to connect.
    hosts: Vec<(Arc<str>, Target)>,
    login: Login,
    /// Sent over stdin (runner semantics §5.3, without secrets on any command line).
    script: String,
    /// Script actions: the files to upload (path relative to the run directory, content, mode).
    upload: Option<Vec<Upload>>,
    dir: String,
    /// What the result's timeout message calls the command.
    command: String,
    timeout: Duration,
    connect_timeout: Duration,
    concurrency: usize,
    sudo_password: bool,
}

fn prepare(e: &Execution, ctx: &RemoteContext<'_>) -> Result<Prepared, String> {
    let runner = &ctx.resolved.runner;
    let text = |name: &str| runner.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    let port = runner.get("port").and_then(Value::as_u64).map_or(Ok(22), |p| u16::try_from(p).map_err(|_| format!("Invalid port {p}")))?;
    let hosts = parse_hosts(text("hosts").unwrap_or_default(), port)?;
    if hosts.is_empty() {
        return Err(format!("No hosts specified to run action for action {}.", e.id));
    }
    let credentials = Credentials::choose(text("password"), text("private_key"), text("passphrase"), &ctx.settings.default_key_file)?;
    let login = Login {
        user: text("username").map_or_else(|| ctx.settings.default_user.clone(), str::to_string),
        credentials,
        bastion: text("bastion_host").map(|b| Target::parse(b, port)).transpose()?,
        known_hosts: ctx.settings.known_hosts.clone(),
    };
    let timeout_secs = runner.get("timeout").and_then(Value::as_u64).filter(|t| *t > 0).unwrap_or(60);
    let timeout = Duration::from_secs(timeout_secs);
    let connect_timeout = ctx.settings.connect_timeout.min(Duration::from_secs(timeout_secs.saturating_sub(2).max(1)));
    let dir = text("dir").unwrap_or(&ctx.settings.remote_dir).trim_end_matches('/').to_string();
    let mut env = crate::local::action_env(ctx.st2_env.clone(), runner);

    let (line, cwd, upload, command) = if e.runner.name == "remote-shell-script" {
        let script =
            ctx.content.entry_point(&e.action).ok_or_else(|| format!("Action {} has no entry point in a loaded pack", e.action.ref_))?;
        let name = script.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "script".into());
        // The run directory differs per host: `host` exports it as `SQUALL_RUN_DIR`.
        let program = format!("\"$SQUALL_RUN_DIR\"/{}", quote(&name));
        let line = crate::local::script_line(program, &e.action, &ctx.resolved.action, runner, ctx.secrets, &mut env);
        let cwd = quote(text("cwd").unwrap_or("/tmp"));
        (line.clone(), cwd, Some(files_to_upload(&script, &name)?), line)
    } else {
        let cmd = text("cmd").ok_or("Parameter \"cmd\" is required for a remote command")?.to_string();
        (cmd.clone(), text("cwd").unwrap_or("/tmp").to_string(), None, cmd)
    };
    let sudo = runner.get("sudo").and_then(Value::as_bool).unwrap_or(false);
    let plan = command::Plan { env: &env, cwd, line: &line, sudo, sudo_password: text("sudo_password") };
    let parallel = runner.get("parallel").and_then(Value::as_bool).unwrap_or(false);
    // Unlike StackStorm's ⌊hosts/3⌋+1, `parallel` means every host at once (up to the cap).
    let concurrency = if parallel { hosts.len().min(ctx.settings.max_parallel.max(1)) } else { 1 };
    Ok(Prepared {
        hosts,
        login,
        script: command::script(&plan),
        upload,
        dir,
        command,
        timeout,
        connect_timeout,
        concurrency,
        sudo_password: sudo && text("sudo_password").is_some(),
    })
}

/// Splits `hosts` on commas (entries trimmed, empty ones dropped). A host is its own result
/// key unless it appears with several ports; those are keyed `host:port`.
fn parse_hosts(list: &str, default_port: u16) -> Result<Vec<(Arc<str>, Target)>, String> {
    let targets: Vec<Target> =
        list.split(',').map(str::trim).filter(|h| !h.is_empty()).map(|h| Target::parse(h, default_port)).collect::<Result<_, _>>()?;
    let mut keyed: Vec<(Arc<str>, Target)> = Vec::new();
    for t in &targets {
        let shared = targets.iter().filter(|o| o.host == t.host).count() > 1;
        let label: Arc<str> = if shared { format!("{}:{}", t.host, t.port).into() } else { t.host.as_str().into() };
        if !keyed.iter().any(|(l, _)| *l == label) {
            keyed.push((label, t.clone()));
        }
    }
    Ok(keyed)
}

/// The script and, when the pack has one beside it, its `lib/` directory.
fn files_to_upload(script: &Path, name: &str) -> Result<Vec<Upload>, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("Could not read {}: {e}", p.display()));
    let mut files = vec![Upload { path: name.to_string(), content: read(script)?, mode: 0o744 }];
    if let Some(lib) = script.parent().map(|d| d.join("lib")).filter(|l| l.is_dir()) {
        let mut pending = vec![(lib, "lib".to_string())];
        while let Some((dir, relative)) = pending.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| format!("Could not read {}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                let (path, rel) = (entry.path(), format!("{relative}/{}", entry.file_name().to_string_lossy()));
                if path.is_dir() {
                    pending.push((path, rel));
                } else {
                    files.push(Upload { path: rel, content: read(&path)?, mode: 0o644 });
                }
            }
        }
    }
    Ok(files)
}

/// Status and result from every host's end (runner semantics §5.5).
fn conclude(
    prepared: &Prepared,
    ends: &BTreeMap<Arc<str>, HostEnd>,
    summary: &WriterSummary,
    allow_partial_failure: bool,
    stopped: Option<StopReason>,
) -> (Status, Value) {
    if ends.values().all(|end| matches!(end, HostEnd::Unreachable(_))) {
        let hosts: Vec<String> = ends.keys().map(|h| format!("'{h}'")).collect();
        let errors: Map<String, Value> = ends.iter().map(|(h, end)| (h.to_string(), json!(end.error()))).collect();
        let error =
            format!("Unable to connect to any one of the hosts: [{}].\n\n connect_errors={}", hosts.join(", "), Value::Object(errors));
        return (Status::Failed, json!({"error": error, "traceback": ""}));
    }
    let mut result = Map::new();
    for (label, end) in ends {
        let stdout = summary.text(Some(label), StreamKind::Stdout);
        let stderr = summary.text(Some(label), StreamKind::Stderr);
        let mut host = match end {
            HostEnd::Exited(code) => shell_result(Exit::Code(*code), &stdout, &stderr),
            HostEnd::TimedOut => shell_result(Exit::Code(-9), &stdout, &stderr),
            HostEnd::Stopped => shell_result(Exit::Canceled, &stdout, &stderr),
            HostEnd::Unreachable(_) | HostEnd::Failed(_) => shell_result(Exit::Code(255), "", ""),
        };
        if let Some(error) = end.error() {
            host["error"] = json!(error);
            host["traceback"] = json!("");
            host["timeout"] = json!(false);
        }
        if let HostEnd::TimedOut = end {
            host["timeout"] = json!(true);
            host["error"] = json!(format!(
                "Failed executing command \"{}\" on host \"{label}\" Command didn't finish in {} seconds or the SSH connection did not succeed in {} seconds",
                prepared.command,
                prepared.timeout.as_secs(),
                prepared.connect_timeout.as_secs()
            ));
        }
        if prepared.sudo_password && matches!(end, HostEnd::Exited(c) if *c != 0) && stderr.contains("incorrect password attempt") {
            host["error"] =
                json!(format!("Invalid sudo password provided or sudo is not configured for this user ({})", prepared.login.user));
        }
        result.insert(label.to_string(), host);
    }
    let succeeded = ends.values().filter(|end| matches!(end, HostEnd::Exited(0))).count();
    let status = match stopped {
        Some(StopReason::Canceled) => Status::Canceled,
        Some(StopReason::Shutdown) => Status::Abandoned,
        _ if succeeded == ends.len() || (allow_partial_failure && succeeded > 0) => Status::Succeeded,
        _ if ends.values().any(|end| matches!(end, HostEnd::TimedOut)) => Status::Timeout,
        _ => Status::Failed,
    };
    (status, Value::Object(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_keyed_by_name_unless_ports_tell_them_apart() {
        let hosts = parse_hosts(" a, b:2222 ,,a:23, [::1]:2200,c ", 22).unwrap();
        let labels: Vec<&str> = hosts.iter().map(|(l, _)| &**l).collect();
        assert_eq!(labels, ["a:22", "b", "a:23", "::1", "c"]);
        assert_eq!(hosts[1].1, Target { host: "b".into(), port: 2222 });
        assert_eq!(hosts[3].1, Target { host: "::1".into(), port: 2200 });
        assert!(parse_hosts("a:xx", 22).unwrap_err().contains("Invalid port"));
        assert!(parse_hosts(" , ", 22).unwrap().is_empty());
    }
}
