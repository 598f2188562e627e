//! One host of a remote execution: connect, upload (scripts), run, stop, clean up. Output goes
//! through the same capture as local processes, tagged with the host, so records split at true
//! line boundaries whatever the SSH packet sizes.

use std::sync::Arc;
use std::time::Duration;

use russh::{ChannelMsg, Sig};
use squall_core::StreamKind;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::command::{BOOTSTRAP, PgidScanner};
use super::ssh::{Login, Session, Target, Upload};
use crate::capture::{Chunk, capture};
use crate::local::quote;
use crate::process::Stopper;

/// How one host's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEnd {
    /// The command exited with this code (`-n` for signal `n`).
    Exited(i32),
    TimedOut,
    /// Canceled or shut down.
    Stopped,
    /// Could not connect or log in.
    Unreachable(String),
    /// Connected, but the upload or the run failed.
    Failed(String),
}

impl HostEnd {
    pub fn error(&self) -> Option<&str> {
        match self {
            HostEnd::Unreachable(e) | HostEnd::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// What to run on one host.
pub struct HostJob<'a> {
    /// The host's result key and output tag.
    pub label: Arc<str>,
    pub target: &'a Target,
    pub login: &'a Login,
    pub script: &'a str,
    /// Script actions: the run directory and the files to put in it.
    pub upload: Option<(String, &'a [Upload])>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Between SIGTERM and SIGKILL of the remote process group.
    pub grace: Duration,
}

/// How long the channel may stay open after the command exited (children holding its output)
/// before the rest of its process group is killed, as for local actions.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
/// How long to wait for the channel to close after SIGKILL before closing it ourselves.
const CLOSE_AFTER_KILL: Duration = Duration::from_secs(2);
/// Bytes buffered between the SSH channel and capture, per stream.
const PIPE: usize = 256 * 1024;

/// Runs `job` and returns the host's label and how it ended. Never fails as a whole: every
/// problem becomes that host's end, and a line on its `output` stream.
pub async fn run(job: HostJob<'_>, stopper: &Stopper, tx: mpsc::Sender<Chunk>) -> (Arc<str>, HostEnd) {
    let label = Arc::clone(&job.label);
    let end = run_inner(&job, stopper, &tx).await;
    if let Some(error) = end.error() {
        let line = format!("{error}\n");
        let _ = tx.send(Chunk { stream: StreamKind::Output, host: Some(Arc::clone(&label)), data: line.into() }).await;
    }
    (label, end)
}

async fn run_inner(job: &HostJob<'_>, stopper: &Stopper, tx: &mpsc::Sender<Chunk>) -> HostEnd {
    if stopper.reason().is_some() {
        return HostEnd::Stopped; // canceled before this host's turn came
    }
    let host = &job.target.host;
    let connecting = tokio::time::timeout(job.connect_timeout, Session::open(job.target, job.login));
    let session = tokio::select! {
        _ = stopper.stopped() => return HostEnd::Stopped,
        opened = connecting => match opened {
            Ok(Ok(session)) => Arc::new(session),
            Ok(Err(e)) => return HostEnd::Unreachable(format!("Failed connecting to host {host}. {e}")),
            Err(_) => {
                let secs = job.connect_timeout.as_secs();
                return HostEnd::Unreachable(format!("Failed connecting to host {host}. The connection did not succeed in {secs} seconds"));
            }
        },
    };
    let mut script = job.script.to_string();
    if let Some((dir, files)) = &job.upload {
        if let Err(e) = session.upload(dir, files).await {
            cleanup(&session, dir).await;
            session.close().await;
            return HostEnd::Failed(format!("Failed copying content to remote boxes. {e}"));
        }
        script = format!("export SQUALL_RUN_DIR={}\n{script}", quote(dir));
    }
    let end = match execute(&session, job, script, stopper, tx).await {
        Ok(end) => end,
        Err(e) => HostEnd::Failed(format!("Failed executing script on remote boxes. {e}")),
    };
    if let Some((dir, _)) = &job.upload {
        cleanup(&session, dir).await;
    }
    session.close().await;
    end
}

async fn cleanup(session: &Session, dir: &str) {
    if let Err(e) = session.run_quiet(&format!("rm -rf -- {}", quote(dir))).await {
        tracing::warn!(dir, error = %e, "could not remove the remote run directory");
    }
}

/// Streams of one host going to capture.
struct Pipes {
    stdout: DuplexStream,
    stderr: DuplexStream,
    scanner: PgidScanner,
}

/// Runs the bootstrap with `script` on its stdin and pumps the channel until it closes,
/// stopping the remote process group on timeout or cancel.
async fn execute(
    session: &Arc<Session>,
    job: &HostJob<'_>,
    script: String,
    stopper: &Stopper,
    tx: &mpsc::Sender<Chunk>,
) -> Result<HostEnd, String> {
    let channel = session.channel().await?;
    channel.exec(true, BOOTSTRAP).await.map_err(|e| format!("The command could not be started: {e}"))?;
    let (mut read, write) = channel.split();
    write.data_bytes(script.into_bytes()).await.map_err(|e| format!("The command could not be sent: {e}"))?;
    write.eof().await.map_err(|e| format!("The command could not be sent: {e}"))?;

    let (out_w, out_r) = tokio::io::duplex(PIPE);
    let (err_w, err_r) = tokio::io::duplex(PIPE);
    let host = Some(Arc::clone(&job.label));
    let capturing = [
        tokio::spawn(capture(out_r, StreamKind::Stdout, host.clone(), tx.clone())),
        tokio::spawn(capture(err_r, StreamKind::Stderr, host, tx.clone())),
    ];
    let mut pipes = Pipes { stdout: out_w, stderr: err_w, scanner: PgidScanner::default() };

    let deadline = Instant::now() + job.timeout;
    let (mut stopping, mut timed_out, mut exit, mut refused) = (false, false, None, false);
    // Escalation: SIGKILL after the grace period; after the command exited, the rest of its
    // group; and, when even that does not close the channel, closing it ourselves.
    let (mut kill_at, mut drain_at, mut give_up_at): (Option<Instant>, Option<Instant>, Option<Instant>) = (None, None, None);
    loop {
        tokio::select! {
            msg = read.wait() => match msg {
                None | Some(ChannelMsg::Close) => break,
                Some(ChannelMsg::Data { data }) => {
                    let _ = pipes.stdout.write_all(&data).await;
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    let data = pipes.scanner.push(&data);
                    let _ = pipes.stderr.write_all(&data).await;
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    exit = Some(exit_status as i32);
                    drain_at = drain_at.or(Some(Instant::now() + DRAIN_AFTER_EXIT));
                }
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    exit = Some(-signal_number(&signal_name));
                    drain_at = drain_at.or(Some(Instant::now() + DRAIN_AFTER_EXIT));
                }
                Some(ChannelMsg::Failure) => {
                    refused = true;
                    break;
                }
                Some(_) => {}
            },
            _ = tokio::time::sleep_until(deadline), if !stopping => {
                (stopping, timed_out) = (true, true);
                let _ = write.signal(Sig::TERM).await;
                kill_at = Some(Instant::now() + job.grace);
            }
            _ = stopper.stopped(), if !stopping => {
                stopping = true;
                let _ = write.signal(Sig::TERM).await;
                kill_at = Some(Instant::now() + job.grace);
            }
            _ = until(kill_at) => {
                kill_at = None;
                let _ = write.signal(Sig::KILL).await;
                kill_group(session, pipes.scanner.pgid());
                give_up_at = give_up_at.or(Some(Instant::now() + CLOSE_AFTER_KILL));
            }
            _ = until(drain_at) => {
                drain_at = Some(Instant::now() + Duration::from_secs(86400)); // once
                kill_group(session, pipes.scanner.pgid());
                give_up_at = give_up_at.or(Some(Instant::now() + CLOSE_AFTER_KILL));
            }
            _ = until(give_up_at) => {
                let _ = write.close().await;
                break;
            }
        }
    }
    let rest = pipes.scanner.finish();
    let _ = pipes.stderr.write_all(&rest).await;
    drop(pipes);
    for task in capturing {
        let _ = task.await;
    }
    if refused {
        return Err("the server refused to run the command".into());
    }
    Ok(match (timed_out, stopping, exit) {
        (true, _, _) => HostEnd::TimedOut,
        (false, true, _) => HostEnd::Stopped,
        (false, false, Some(code)) => HostEnd::Exited(code),
        (false, false, None) => HostEnd::Failed("The SSH connection closed before the command finished".into()),
    })
}

async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// SIGKILL to the remote process group over a second channel (in the background: the caller
/// keeps draining the first one, or the session could stall).
fn kill_group(session: &Arc<Session>, pgid: Option<u32>) {
    let Some(pgid) = pgid else { return };
    let session = Arc::clone(session);
    tokio::spawn(async move {
        let _ = session.run_quiet(&format!("kill -KILL -- -{pgid} 2>/dev/null")).await;
    });
}

fn signal_number(sig: &Sig) -> i32 {
    match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(_) => 1,
    }
}
