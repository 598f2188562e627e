//! A full disk under the data directory (a small tmpfs the test mounts; another file takes the
//! last free bytes while an action writes): the action's output is held back and the action
//! waits on its pipe, nothing half-written is ever indexed, reads keep working, the log says
//! why; once the space is freed the output goes on within about a second, the action ends
//! `succeeded` with every byte stored exactly once, its log carries a note saying how long
//! output was held back, and SQLite's integrity check passes. Needs root (to mount a tmpfs).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A tmpfs of `size` mounted at `path` until dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"]).arg(path).output();
        let out = out.unwrap_or_else(|e| panic!("cannot run mount ({e}): install util-linux"));
        assert!(
            out.status.success(),
            "mounting a tmpfs for the data directory failed (the disk-full test must run as root, with CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { path: path.to_path_buf() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes zeros to `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    let mut written = 0;
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "filling the tmpfs: {e}");
                break;
            }
        }
    }
    written
}

/// Lines stored so far (the `/lines` total).
async fn stored_lines(s: &Server, id: &str) -> u64 {
    let (code, page) = get(s, &format!("/v1/executions/{id}/lines?from=-1&count=1")).await;
    assert_eq!(code, 200, "reading lines while the disk is full: {page}");
    page["total"].as_u64().unwrap()
}

async fn notes(s: &Server, id: &str) -> Vec<String> {
    let body = reqwest::get(s.url(&format!("/v1/executions/{id}/search?q=disk&output_type=output"))).await.unwrap().text().await.unwrap();
    body.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["hit"]["text"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_full_disk_holds_output_back_and_loses_nothing_once_space_is_freed() {
    const LINES: u64 = 2_000_000;
    const BEFORE: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tmpfs = Tmpfs::mount(&data, "64m");
    let mut s = Server::start_in(dir, &[]);
    // Some output is stored before the disk fills, the rest after.
    let id = run_cmd(&s, &format!("seq 1 {BEFORE}; sleep 1; seq {} {LINES}", BEFORE + 1), json!({"timeout": 300})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored_lines(&s, &id).await < BEFORE {
        assert!(Instant::now() < deadline, "the first {BEFORE} lines were not stored within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Someone else's file takes all the room there is (the server's own files stay as they are).
    let ballast = data.join("ballast");
    let taken = fill(&ballast);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.log().contains("disk is full") {
        assert!(Instant::now() < deadline, "no disk-full error in the log after 30 s:\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Held back: the action is still running, nothing more is stored, reads still work.
    let held = stored_lines(&s, &id).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stored_lines(&s, &id).await, held, "output was stored while the disk was full");
    assert!((BEFORE..LINES).contains(&held), "{held} lines stored before the disk filled");
    let (code, e) = get(&s, &format!("/v1/executions/{id}")).await;
    assert_eq!((code, e["status"].as_str()), (200, Some("running")), "{e}");

    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    while stored_lines(&s, &id).await == held {
        assert!(freed.elapsed() < Duration::from_secs(10), "output did not go on within 10 s of space being freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resumed = freed.elapsed();
    let e = wait_done(&s, &id, Duration::from_secs(120)).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    let expected: String = (1..=LINES).map(|n| format!("{n}\n")).collect();
    let stdout = get_bytes(&s, &format!("/v1/executions/{id}/stdout")).await;
    assert!(
        stdout == expected.as_bytes(),
        "stdout differs from what seq wrote ({} bytes stored, {} written)",
        stdout.len(),
        expected.len()
    );
    let notes = notes(&s, &id).await;
    assert_eq!(notes.len(), 1, "one note on the execution: {notes:?}");
    assert!(notes[0].contains("held back") && notes[0].contains("disk was full"), "{notes:?}");
    println!(
        "figures: disk full: a {:.1} MiB ballast filled a 64 MiB tmpfs; output held back at line {held} of {LINES}; went on {:.0} ms after the space was freed; {} bytes of stdout exact; note: {}",
        taken as f64 / 1048576.0,
        resumed.as_secs_f64() * 1000.0,
        stdout.len(),
        notes[0].trim()
    );
    assert!(resumed < Duration::from_secs(3), "output went on {resumed:?} after the space was freed (expected within about a second)");
    s.terminate();
    integrity_check(&s).await;
    drop(tmpfs); // before the server's temporary directory goes
}
