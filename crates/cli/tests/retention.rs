//! Size limits and retention end to end: head-and-tail truncation with a marker, purge commands,
//! and a purge that does not stall a live viewer.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Map, Value, json};

fn limited() -> Server {
    Server::start_with(&[("SQUALL_ACTIONRUNNER__MAX_OUTPUT_BYTES", "100000")])
}

fn seq_bytes(n: u32) -> Vec<u8> {
    (1..=n).map(|i| format!("{i}\n")).collect::<String>().into_bytes()
}

#[tokio::test]
async fn truncation_keeps_exact_head_and_tail_with_a_marker() {
    let s = limited();
    for (cmd, stream) in [("seq 1 200000", "stdout"), ("seq 1 200000 >&2", "stderr")] {
        let id = run_cmd(&s, cmd, json!({})).await;
        let e = wait_done(&s, &id, Duration::from_secs(60)).await;
        assert_eq!(e["status"], "succeeded");
        let produced = seq_bytes(200000);
        let omitted = produced.len() - 100000;
        // The stream's own views show where bytes are missing, on a line of their own.
        let newline = if produced[49999] == b'\n' { "" } else { "\n" };
        let marker = format!("{newline}… {omitted} bytes omitted …\n");
        let expected = [&produced[..50000], marker.as_bytes(), &produced[produced.len() - 50000..]].concat();
        let kept = get_bytes(&s, &format!("/v1/executions/{id}/output?output_type={stream}")).await;
        assert_eq!(String::from_utf8_lossy(&kept), String::from_utf8_lossy(&expected), "exact head, marker, exact tail");
        assert_eq!(get_bytes(&s, &format!("/v1/executions/{id}/{stream}")).await, expected, "raw /{stream} too");
        let notes = String::from_utf8(get_bytes(&s, &format!("/v1/executions/{id}/output?output_type=output")).await).unwrap();
        assert!(notes.contains("output limit reached"), "{notes}");
        assert_eq!(e["output_truncated"], true);
        assert_eq!(e["output_bytes"][stream], produced.len());
        assert_eq!(e["output_bytes"]["omitted"], omitted);
        // In the whole log: head, the live note, the marker, the tail.
        let all = get_bytes(&s, &format!("/v1/executions/{id}/output")).await;
        let find = |needle: &str| all.windows(needle.len()).position(|w| w == needle.as_bytes()).expect(needle);
        assert_eq!(find("… output limit reached"), 50000, "the live note follows the head");
        assert_eq!(find(&marker) + marker.len(), all.len() - 50000, "the marker precedes the tail");
    }
}

#[tokio::test]
async fn a_single_endless_line_is_cut_the_same_way() {
    let s = limited();
    let id = run_cmd(&s, "head -c 1000000 /dev/zero | tr '\\0' y", json!({})).await;
    let e = wait_done(&s, &id, Duration::from_secs(60)).await;
    let kept = get_bytes(&s, &format!("/v1/executions/{id}/output?output_type=stdout")).await;
    let expected = ["y".repeat(50000), "\n… 900000 bytes omitted …\n".into(), "y".repeat(50000)].concat();
    assert_eq!(String::from_utf8(kept).unwrap(), expected);
    assert_eq!(e["output_bytes"]["omitted"], 900000);
    let view = e["result"]["stdout"].as_str().unwrap();
    assert!(view.len() < 200_000, "result.stdout is a bounded view");
}

#[tokio::test]
async fn viewers_see_the_limit_live() {
    let s = limited();
    let id = run_cmd(&s, "seq 1 200000; sleep 2; echo late", json!({})).await;
    let mut sse = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &[]).await;
    let mut saw_marker_while_running = false;
    while let Some(ev) = sse.next().await {
        if ev.event.as_deref() == Some("EOF") {
            break;
        }
        let payload: Value = serde_json::from_str(&ev.data).unwrap();
        if payload["output_type"] == "output" && payload["data"].as_str().unwrap().contains("output limit reached") {
            let (_, now) = get(&s, &format!("/v1/executions/{id}")).await;
            saw_marker_while_running = now["status"] == "running";
            break;
        }
    }
    assert!(saw_marker_while_running);
}

fn squall(s: &Server, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_squall")).args(args).arg("--data-dir").arg(s.data_dir()).output().unwrap()
}

#[tokio::test]
async fn purge_commands_with_dry_run_and_bad_input() {
    let s = Server::start();
    let mut ids = Vec::new();
    for cmd in ["echo a", "echo b", "exit 1"] {
        let id = run_cmd(&s, cmd, json!({})).await;
        wait_done(&s, &id, Duration::from_secs(20)).await;
        ids.push(id);
    }
    let running = run_cmd(&s, "sleep 30", json!({})).await;
    wait_status(&s, &running, &["running"], Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let out = squall(&s, &["purge", "output", "--older-than", "1s", "--dry-run"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2 executions' output would be purged", "`exit 1` wrote nothing");
    let out = squall(&s, &["purge", "output", "--older-than", "1s", "--action", "core.local"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(get_bytes(&s, &format!("/v1/executions/{}/output", ids[0])).await.is_empty());
    assert_eq!(get(&s, &format!("/v1/executions/{}", ids[0])).await.0, 200, "output purge keeps executions");

    let out = squall(&s, &["purge", "executions", "--older-than", "1s", "--dry-run"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3 executions would be purged");
    let out = squall(&s, &["purge", "executions", "--older-than", "1s"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "purged 3 executions");
    assert_eq!(get(&s, &format!("/v1/executions/{}", ids[0])).await.0, 404);
    assert_eq!(get(&s, &format!("/v1/executions/{running}")).await.0, 200, "running executions stay");
    let out = squall(&s, &["purge", "executions", "--older-than", "1s", "--include-running-older-than", "1s", "--dry-run"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1 executions would be purged");

    for bad in ["-5d", "soon", "10"] {
        let out = squall(&s, &["purge", "executions", "--older-than", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a duration") || err.contains("unexpected argument"), "{bad}: {err}");
    }
    // 0s: everything that has ended, now.
    let quick = run_cmd(&s, "echo quick", json!({})).await;
    wait_done(&s, &quick, Duration::from_secs(20)).await;
    let out = squall(&s, &["purge", "executions", "--older-than", "0s", "--dry-run"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1 executions would be purged", "{}", String::from_utf8_lossy(&out.stderr));

    // A data directory that does not exist is named, and nothing is created.
    let nowhere = s.dir.path().join("no-such-data");
    let out = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["purge", "executions", "--older-than", "1d", "--dry-run", "--data-dir"])
        .arg(&nowhere)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--data-dir") && err.contains("SQUALL_DATA_DIR"), "{err}");
    assert!(!nowhere.exists(), "a dry run writes nothing");
}

#[tokio::test]
async fn a_big_purge_does_not_stall_a_live_viewer() {
    let mut s = Server::start();
    s.kill9();
    {
        // 100,000 finished executions from a week ago: one stored through the store, then
        // copied 99,999 times by SQLite itself (this test is about the purge, not the inserts).
        use squall_store::Store;
        let store = squall_store::SqliteStore::open(&s.data_dir()).await.unwrap();
        let catalog = squall_core::Catalog::builtin();
        let action = catalog.action("core.local").unwrap().clone();
        let runner = catalog.runner("local-shell-cmd").unwrap().clone();
        let week_ago = squall_core::Timestamp(squall_core::Timestamp::now().micros() - 7 * 86_400 * 1_000_000);
        let mut e = squall_core::Execution::new(action, runner, json!({"cmd": "x"}).as_object().unwrap().clone(), Map::new(), "u", None);
        e.status = squall_core::Status::Succeeded;
        e.start_timestamp = week_ago;
        e.end_timestamp = Some(week_ago);
        store.insert_execution(&e).await.unwrap();
        drop(store);
        const COPY: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 99999) \
             INSERT INTO executions (id, status, action_ref, user_name, parent, start_ts, end_ts, doc) \
             SELECT printf('%024x', i), status, action_ref, user_name, parent, start_ts, end_ts, doc FROM n, executions WHERE id = ?";
        let url = format!("sqlite://{}", s.data_dir().join("squall.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query(COPY).bind(&e.id).execute(&pool).await.unwrap();
        pool.close().await;
    }
    s.restart();
    let id = run_cmd(&s, "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo tick $i; sleep 0.02; done", json!({})).await;
    let mut sse = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &[]).await;
    let data_dir = s.data_dir();
    let purge = std::thread::spawn(move || {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_squall"))
            .args(["purge", "executions", "--older-than", "1d", "--data-dir"])
            .arg(data_dir)
            .output()
            .unwrap();
        (out, started.elapsed())
    });
    let mut gaps = Vec::new();
    let mut last = Instant::now();
    while let Some(ev) = sse.next().await {
        if ev.event.as_deref() == Some("EOF") {
            break;
        }
        gaps.push(last.elapsed());
        last = Instant::now();
    }
    let (out, took) = purge.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "purged 100000 executions", "{}", String::from_utf8_lossy(&out.stderr));
    let worst = gaps.iter().max().copied().unwrap_or_default();
    eprintln!("purge took {took:?}; longest pause between live events {worst:?}");
    assert!(worst < Duration::from_secs(2), "the live viewer stalled for {worst:?} during the purge");
}
