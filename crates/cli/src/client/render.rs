//! Human output: aligned tables, colour only on a terminal (and never with `NO_COLOR`), and a
//! spinner on stderr while waiting.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::Value;

/// Whether to colour output written to stdout.
pub fn color_stdout() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

/// A status word, coloured by outcome when `color`.
pub fn status(s: &str, color: bool) -> String {
    if !color {
        return s.to_string();
    }
    let code = match s {
        "succeeded" => "32",
        "failed" | "timeout" | "abandoned" => "31",
        "canceled" | "canceling" => "33",
        "running" => "36",
        _ => "2",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

/// Prints rows as a table with a header, columns padded to the widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let visible = |s: &str| {
        // Width without ANSI colour sequences.
        let mut n = 0;
        let mut in_escape = false;
        for c in s.chars() {
            match (in_escape, c) {
                (false, '\x1b') => in_escape = true,
                (true, 'm') => in_escape = false,
                (false, _) => n += 1,
                _ => {}
            }
        }
        n
    };
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(visible(cell));
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: Vec<String>, out: &mut std::io::StdoutLock| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c}{}", " ".repeat(w - visible(c)))).collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect(), &mut out);
    for row in rows {
        line(row.clone(), &mut out);
    }
}

/// `"3.2s"` from an execution's timestamps.
/// An ISO timestamp of the API as `st2` shows it in tables (`Tue, 01 Dec 2026 21:47:34 UTC`).
pub fn when(iso: &str) -> String {
    squall_core::Timestamp::parse_query(iso).map_or_else(|| iso.to_string(), |t| t.to_display())
}

pub fn elapsed(e: &Value) -> String {
    e.get("elapsed_seconds").and_then(Value::as_f64).map(|s| format!("{s:.1}s")).unwrap_or_default()
}

/// Prints JSON for scripts.
pub fn json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// The outcome of a command that changes something: `outcome` as JSON under `--json`, else
/// the sentence for people.
pub fn done(json: bool, outcome: Value, sentence: impl std::fmt::Display) {
    if json {
        self::json(&outcome);
    } else {
        println!("{sentence}");
    }
}

/// A spinner on stderr, shown only when stderr is a terminal.
pub struct Spinner {
    frame: usize,
    active: bool,
}

impl Spinner {
    pub fn new() -> Spinner {
        Spinner { frame: 0, active: std::io::stderr().is_terminal() }
    }

    pub fn tick(&mut self, message: &str) {
        if self.active {
            const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
            eprint!("\r{} {message}", FRAMES[(self.frame / 4) % FRAMES.len()]);
            let _ = std::io::stderr().flush();
            self.frame += 1;
        }
    }

    pub fn clear(&mut self) {
        if self.active && self.frame > 0 {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
            self.frame = 0;
        }
    }

    pub const INTERVAL: Duration = Duration::from_millis(150);
}
