//! The group keeper: nothing outlives its runner, even a runner killed with SIGKILL.
//!
//! Every action is the leader of its own process group, so it does not die with the runner
//! process. At start the runner spawns one small helper, the keeper (the same binary, hidden
//! subcommand), with a pipe on its stdin; it writes `+<pgid>` when an action starts and
//! `-<pgid>` when its group is gone. When the pipe closes — the runner exited, however it died
//! — the keeper kills every group still listed and exits. It ignores the signals a terminal or
//! a service manager sends (SIGINT, SIGTERM, SIGHUP): it must outlive the runner's own
//! graceful shutdown, and it ends by itself right after it.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use nix::sys::signal::{SigHandler, Signal, killpg, signal};
use nix::unistd::Pid;

/// The hidden subcommand that runs [`keeper_main`].
pub const SUBCOMMAND: &str = "__group-keeper";

static KEEPER: OnceLock<Keeper> = OnceLock::new();

struct Keeper {
    pipe: Mutex<ChildStdin>,
    _child: Child,
}

/// Starts this process's keeper from `exe` (the squall binary). Idempotent; without a keeper
/// (tests of the runner crate alone) actions are still stopped by every normal path.
pub fn install(exe: &std::path::Path) -> std::io::Result<()> {
    if KEEPER.get().is_some() {
        return Ok(());
    }
    let mut child = Command::new(exe).arg(SUBCOMMAND).stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
    let pipe = child.stdin.take().expect("piped stdin");
    let _ = KEEPER.set(Keeper { pipe: Mutex::new(pipe), _child: child });
    Ok(())
}

fn tell(line: String) {
    if let Some(keeper) = KEEPER.get() {
        let mut pipe = keeper.pipe.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = pipe.write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "the group keeper is gone; actions would not be killed if squall died");
        }
    }
}

/// An action's process group started.
pub fn watch(pgid: i32) {
    tell(format!("+{pgid}\n"));
}

/// An action's process group is gone.
pub fn release(pgid: i32) {
    tell(format!("-{pgid}\n"));
}

/// The keeper process: reads `+pgid` / `-pgid` lines until end of input, then kills the groups
/// still listed.
pub fn keeper_main() -> ! {
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGPIPE] {
        // SAFETY: installing SIG_IGN runs no handler code.
        unsafe {
            let _ = signal(s, SigHandler::SigIgn);
        }
    }
    let mut groups = BTreeSet::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (op, pgid) = line.split_at(line.len().min(1));
        match (op, pgid.parse::<i32>()) {
            ("+", Ok(pgid)) if pgid > 1 => {
                groups.insert(pgid);
            }
            ("-", Ok(pgid)) => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    std::process::exit(0)
}
