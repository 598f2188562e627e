//! The paced line writer the latency scenarios run as their action (`squall bench emit`, hidden):
//! line `i` is written at `start + i × interval` and carries its own write time, taken just
//! before the `write(2)` that puts it on the pipe.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Writes `lines` lines of the form `<index> <unix-time-ns>\n`, one every `interval`, after
/// `go_file` exists (when given). Each line is its own `write(2)`.
pub fn main(lines: u64, interval: Duration, go_file: Option<&Path>) -> ExitCode {
    if let Some(go) = go_file {
        while !go.exists() {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    // Unbuffered stdout: one write per line, nothing held back.
    let mut out = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
    let start = Instant::now();
    let mut line = Vec::with_capacity(64);
    for i in 0..lines {
        let due = start + interval * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        line.clear();
        let ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let _ = writeln!(line, "{i} {ns}");
        if out.write_all(&line).is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
