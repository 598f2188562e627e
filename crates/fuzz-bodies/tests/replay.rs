//! Replays every committed fuzz input through its target's body: the minimised corpus
//! (`fuzz/corpus/<target>/`) and every crasher ever found (`fuzz/regressions/<target>/`). So
//! `cargo test` guards what the fuzzer found on every change; the long runs are in
//! `docs/reliability.md`. Each target prints its figures.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use squall_fuzz_bodies::{TARGETS, Target};

/// An input slower than this is a hang (cargo fuzz runs with `-timeout=10`; this is a debug build).
const HANG: Duration = Duration::from_secs(10);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs `body` on `data` in a thread of its own, so that a hang fails the test instead of
/// stalling it (the thread is left behind; the test process ends without it).
fn run(body: fn(&[u8]), data: Vec<u8>) -> Result<Duration, String> {
    let (done, finished) = std::sync::mpsc::channel();
    let at = Instant::now();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(|| body(&data));
        let _ = done.send(outcome.is_ok());
    });
    match finished.recv_timeout(HANG) {
        Ok(true) => Ok(at.elapsed()),
        Ok(false) => Err("panics".into()),
        Err(_) => Err(format!("hangs (still running after {HANG:?})")),
    }
}

fn replay(name: &str) {
    let Target { body, .. } = TARGETS.iter().find(|t| t.name == name).expect("a known target");
    let corpus = inputs(&fuzz_dir().join("corpus").join(name));
    let regressions = inputs(&fuzz_dir().join("regressions").join(name));
    assert!(!corpus.is_empty(), "fuzz/corpus/{name} has no inputs");
    let started = Instant::now();
    let (mut slowest, mut slowest_file) = (Duration::ZERO, String::new());
    for file in corpus.iter().chain(&regressions) {
        let data = std::fs::read(file).unwrap();
        let shown = file.strip_prefix(fuzz_dir()).unwrap_or(file).display().to_string();
        let took = run(*body, data).unwrap_or_else(|why| panic!("{name}: {shown} {why}"));
        if took > slowest {
            (slowest, slowest_file) = (took, shown);
        }
    }
    println!(
        "{name}: {} inputs replayed ({} corpus, {} regressions) in {:.0?}; slowest {slowest:.1?} ({slowest_file})",
        corpus.len() + regressions.len(),
        corpus.len(),
        regressions.len(),
        started.elapsed(),
    );
}

#[test]
fn cast() {
    replay("cast");
}

#[test]
fn pack_yaml() {
    replay("pack_yaml");
}

#[test]
fn resume() {
    replay("resume");
}

#[test]
fn query() {
    replay("query");
}

#[test]
fn sse() {
    replay("sse");
}

#[test]
fn records() {
    replay("records");
}

#[test]
fn mask() {
    replay("mask");
}

#[test]
fn every_target_is_replayed() {
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(names, ["cast", "pack_yaml", "resume", "query", "sse", "records", "mask"]);
    for name in names {
        assert!(fuzz_dir().join("fuzz_targets").join(format!("{name}.rs")).is_file(), "fuzz/fuzz_targets/{name}.rs");
    }
}
