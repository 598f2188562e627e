//! Process supervision: every action runs as the leader of its own process group, and stopping
//! it (timeout, cancel, shutdown) means SIGTERM to the whole group, a grace period, then SIGKILL
//! — children and grandchildren included.

use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use squall_core::StreamKind;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::capture::{Chunk, capture};

/// Why squall stopped a process before it finished on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Timeout,
    /// A user canceled the execution.
    Canceled,
    /// The server is shutting down and the grace period ran out.
    Shutdown,
}

/// A handle to stop a running execution from elsewhere (the cancel listener, shutdown).
/// The first reason given wins.
#[derive(Debug, Default)]
pub struct Stopper {
    token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl Stopper {
    pub fn stop(&self, reason: StopReason) {
        self.reason.lock().expect("stopper lock").get_or_insert(reason);
        self.token.cancel();
    }

    pub fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().expect("stopper lock")
    }

    pub async fn stopped(&self) {
        self.token.cancelled().await
    }
}

/// How a supervised process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Exit code, or `-signal` when a signal ended it.
    pub code: i32,
    pub stopped: Option<StopReason>,
}

/// What to run and how long it may take.
pub struct Job {
    pub command: Command,
    /// Written to the process's stdin, which is then closed (secrets travel this way, never in argv).
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// How long pipes held open by leftover children may keep delivering after the leader exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// Runs `job` to completion, sending its output to `tx`. Returns once the leader has exited and
/// both pipes are closed; nothing of the process group is left running.
pub async fn supervise(mut job: Job, stopper: &Stopper, tx: mpsc::Sender<Chunk>) -> std::io::Result<Ended> {
    job.command
        .process_group(0)
        .stdin(if job.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = job.command.spawn()?;
    let pgid = Pid::from_raw(child.id().map(|p| p as i32).unwrap_or(0));
    crate::keeper::watch(pgid.as_raw());
    if let (Some(data), Some(mut stdin)) = (job.stdin.take(), child.stdin.take()) {
        tokio::spawn(async move {
            let _ = stdin.write_all(&data).await;
        });
    }
    let (stdout, stderr) = (child.stdout.take().expect("piped stdout"), child.stderr.take().expect("piped stderr"));
    widen_pipe(&stdout);
    widen_pipe(&stderr);
    let out = tokio::spawn(capture(stdout, StreamKind::Stdout, None, tx.clone()));
    let err = tokio::spawn(capture(stderr, StreamKind::Stderr, None, tx));

    let deadline = async {
        match job.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let stopped = tokio::select! {
        _ = child.wait() => None,
        _ = deadline => Some(StopReason::Timeout),
        _ = stopper.stopped() => stopper.reason(),
    };
    if stopped.is_some() {
        terminate_group(pgid, job.grace, &mut child).await;
    }
    let status = child.wait().await?;

    // The leader is gone. Children that still hold the pipes get a moment to finish writing,
    // then the rest of the group is killed so nothing outlives the action.
    let mut drained = std::pin::pin!(async {
        let _ = out.await;
        let _ = err.await;
    });
    if tokio::time::timeout(DRAIN_AFTER_EXIT, &mut drained).await.is_err() {
        let _ = killpg(pgid, Signal::SIGKILL);
        drained.await;
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    crate::keeper::release(pgid.as_raw());

    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or_else(|| -status.signal().unwrap_or(9));
    Ok(Ended { code, stopped })
}

/// Asks for a 1 MiB pipe buffer (Linux's default is 64 KiB): a fast writer then blocks, and
/// wakes squall, sixteen times less often. Best effort; the system may cap it.
fn widen_pipe(pipe: &impl std::os::fd::AsFd) {
    let _ = nix::fcntl::fcntl(pipe.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
}

/// Pipe buffer asked for per stream (`/proc/sys/fs/pipe-max-size` is 1 MiB by default).
const PIPE_SIZE: i32 = 1024 * 1024;

/// SIGTERM to the group, up to `grace` for it to go, then SIGKILL.
async fn terminate_group(pgid: Pid, grace: Duration, child: &mut tokio::process::Child) {
    let _ = killpg(pgid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    let _ = tokio::time::timeout_at(deadline, child.wait()).await;
    // The leader may be gone while members that ignore SIGTERM live on: wait for the group too.
    while tokio::time::Instant::now() < deadline && group_alive(pgid) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = killpg(pgid, Signal::SIGKILL);
}

fn group_alive(pgid: Pid) -> bool {
    killpg(pgid, None).is_ok()
}
