//! Stopping actions for real, and surviving the server's own death: timeout and cancel leave no
//! process of the action's group; a crash leaves `abandoned` executions with their output; a
//! graceful shutdown lets work finish, then abandons what is left.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// An action that prints its process group id, then leaves children and grandchildren behind,
/// one of which ignores SIGTERM.
const STUBBORN: &str = "echo $$; (trap '' TERM; sleep 1000) & (sh -c 'sleep 1000 & sleep 1000') & sleep 1000";

async fn pgid_of(s: &Server, id: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = get_bytes(s, &format!("/v1/executions/{id}/output?output_type=stdout")).await;
        if let Some(line) = String::from_utf8_lossy(&out).lines().next() {
            return line.trim().parse().expect("pgid");
        }
        assert!(Instant::now() < deadline, "action never printed its pgid");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the action's children and grandchildren are there (a loaded machine forks late).
async fn assert_group_running(pgid: i32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while live_group_members(pgid).len() < 4 {
        assert!(Instant::now() < deadline, "the action's children are not running: {:?}", live_group_members(pgid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn assert_group_gone(pgid: i32) {
    // The group was SIGKILLed before the status changed; give the kernel a moment to reap.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !live_group_members(pgid).is_empty() {
        assert!(Instant::now() < deadline, "processes of group {pgid} survived: {:?}", live_group_members(pgid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let s = Server::start();
    let started = Instant::now();
    let id = run_cmd(&s, STUBBORN, json!({"timeout": 3})).await;
    let pgid = pgid_of(&s, &id).await;
    assert_group_running(pgid).await;
    let e = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(e["status"], "timeout");
    assert_eq!(e["result"]["return_code"], -9);
    assert_eq!(e["result"]["error"], "Action failed to complete in 3 seconds");
    // timeout (3 s) + grace (2 s, set by the harness) + slack
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn cancel_kills_the_whole_group() {
    let s = Server::start();
    let id = run_cmd(&s, STUBBORN, json!({})).await;
    let pgid = pgid_of(&s, &id).await;
    let r = reqwest::Client::new().delete(s.url(&format!("/v1/executions/{id}"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let e = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(e["status"], "canceled");
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn leftover_children_do_not_outlive_a_finished_action() {
    let s = Server::start();
    let id = run_cmd(&s, "echo $$; (sleep 1000 > /dev/null 2>&1 &); sleep 1000 > /dev/null 2>&1 & echo done", json!({})).await;
    let e = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(e["status"], "succeeded");
    let pgid: i32 = e["result"]["stdout"].as_str().unwrap().lines().next().unwrap().parse().unwrap();
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn a_crash_leaves_abandoned_executions_with_their_output() {
    let mut s = Server::start();
    let id = run_cmd(&s, "echo $$; for i in $(seq 1 5); do echo before-crash-$i; done; sleep 1000", json!({})).await;
    let pgid = pgid_of(&s, &id).await;
    // Everything printed before the crash is committed once /output shows it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&get_bytes(&s, &format!("/v1/executions/{id}/output")).await).contains("before-crash-5") {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queued_behind = {
        // A second execution that has not started yet must be run after the restart.
        let (_, e) = post(&s, "/v1/executions", json!({"action": "core.local", "parameters": {"cmd": "echo after"}, "delay": 60000})).await;
        e["id"].as_str().unwrap().to_string()
    };
    s.kill9();
    // The action is the leader of its own group, so it does not die with the server: the
    // group keeper kills it.
    assert_group_gone(pgid).await;
    s.restart();

    let (_, e) = get(&s, &format!("/v1/executions/{id}")).await;
    assert_eq!(e["status"], "abandoned");
    let last = e["log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "abandoned");
    assert!(last["message"].as_str().unwrap().contains("did not survive"));
    let out = String::from_utf8(get_bytes(&s, &format!("/v1/executions/{id}/output")).await).unwrap();
    let want: String = (1..=5).map(|i| format!("before-crash-{i}\n")).collect();
    let note = "squall stopped while this execution was running; its process did not survive the restart\n";
    assert!(out.ends_with(&(want + note)), "everything committed, then the note saying why it ended: {out}");

    // The delayed one is still waiting, not lost.
    let (_, waiting) = get(&s, &format!("/v1/executions/{queued_behind}")).await;
    assert!(["requested", "delayed"].contains(&waiting["status"].as_str().unwrap()), "{waiting}");
}

#[tokio::test]
async fn requested_executions_run_after_a_restart() {
    let mut s = Server::start();
    let (_, e) = post(&s, "/v1/executions", json!({"action": "core.local", "parameters": {"cmd": "echo later"}, "delay": 1500})).await;
    let id = e["id"].as_str().unwrap().to_string();
    s.restart();
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["result"]["stdout"], "later");
}

#[tokio::test]
async fn graceful_shutdown_waits_then_abandons() {
    let mut s = Server::start_with(&[("SQUALL_ACTIONRUNNER__EXIT_STILL_ACTIVE_CHECK", "2")]);
    let quick = run_cmd(&s, "sleep 0.5; echo finished", json!({})).await;
    let slow = run_cmd(&s, STUBBORN, json!({})).await;
    wait_status(&s, &quick, &["running"], Duration::from_secs(20)).await;
    let pgid = pgid_of(&s, &slow).await;
    let started = Instant::now();
    let status = s.terminate();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    // grace (2 s) + kill grace (2 s) + slack
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown took {:?}", started.elapsed());
    assert_group_gone(pgid).await;
    s.restart();
    assert_eq!(get(&s, &format!("/v1/executions/{quick}")).await.1["status"], "succeeded", "work within the grace period finishes");
    let (_, e) = get(&s, &format!("/v1/executions/{slow}")).await;
    assert_eq!(e["status"], "abandoned");
}

#[tokio::test]
async fn bad_configuration_is_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("squall.toml");
    std::fs::write(&config, "[actionrunner]\nstream_outptu = false\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["server", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stream_outptu") && !err.contains("panicked"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["server", "--listen", "nonsense", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected ADDR:PORT"));
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let s = Server::start();
    let out = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(s.data_dir())
        .env("SQUALL_AUTH__ENABLE", "false")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("another squall server (pid {})", s.pid())) && err.contains("--data-dir"), "{err}");
    // The first one is untouched.
    let id = run_cmd(&s, "echo still here", json!({})).await;
    assert_eq!(wait_done(&s, &id, Duration::from_secs(20)).await["status"], "succeeded");
}

#[tokio::test]
async fn the_log_has_a_line_per_execution_and_no_colour_in_a_pipe() {
    let s = Server::start();
    let id = run_cmd(&s, "exit 3", json!({})).await;
    wait_done(&s, &id, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.log().contains("ended") {
        assert!(Instant::now() < deadline, "no end line in the log:\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = s.log();
    assert!(!log.contains('\x1b'), "colour codes in a log that goes to a pipe:\n{log}");
    let ended = log.lines().find(|l| l.contains(&id) && l.contains("ended")).unwrap_or_else(|| panic!("{log}"));
    assert!(ended.contains("action=core.local") && ended.contains("status=failed") && ended.contains("user="), "{ended}");
    assert!(log.contains("loaded 0 packs with 0 actions from"), "{log}");
}
