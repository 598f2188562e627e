//! Compatibility with the real StackStorm CLI: drives the official `st2` (st2client 3.9.0, which
//! `./scripts/test` installs into `target/st2-venv` and names in `SQUALL_TEST_ST2`) against a real
//! `squall server`, and checks what the CLI prints and how it exits (wire contract §6).
//!
//! Every test runs under both single-port URL layouts of the contract (§1.3): `/api/v1`,
//! `/auth/v1`, `/stream/v1` prefixes, and all three URLs set to a bare `/v1`. Every `st2`
//! invocation has a timeout, so a CLI that hangs fails the test instead of blocking CI.

mod common;
#[path = "common/st2.rs"]
mod st2;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use st2::*;

/// The id in `st2 run -a`'s "st2 execution get <id>" hint.
fn async_id(out: &Out) -> String {
    out.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("st2 execution get "))
        .unwrap_or_else(|| panic!("no execution id in {out}"))
        .trim()
        .to_string()
}

/// Polls until the execution's stored output contains `needle`.
async fn wait_output(s: &Server, id: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = get_bytes(s, &format!("/v1/executions/{id}/output")).await;
        if String::from_utf8_lossy(&out).contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "execution {id} never printed {needle:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

both_layouts!(
    action_list_and_get,
    run_sync_prints_the_result,
    run_positional_cmd,
    run_failed_exits_1,
    run_async_and_json,
    run_rejections_print_the_faultstring,
    run_tail_prints_lines_as_they_are_produced,
    run_tail_on_instant_actions_never_hangs,
    execution_list_and_filters,
    execution_get_plain_details_json_and_missing,
    execution_cancel_running_and_finished,
    execution_re_run,
    execution_tail_last_attached_to_a_running_action,
    execution_tail_finished_with_type_filters,
    execution_tail_live_type_and_metadata,
    non_ascii_output,
    secret_parameter_never_printed,
);

// ---------------------------------------------------------------------------------------------
// §6.3, §6.4

async fn action_list_and_get(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);

    let out = st2.run(&["action", "list"]).await.ok();
    for r in ["core.local", "core.local_sudo", "core.echo", "core.noop", "core.remote"] {
        out.has(&format!("| {r} "));
    }
    let out = st2.run(&["action", "list", "-p", "core"]).await.ok();
    out.has("| core.local ").has("| core ");
    let listed = st2.run(&["action", "list", "-p", "core", "-j"]).await.ok().json();
    let refs: Vec<&str> = listed.as_array().unwrap().iter().map(|a| a["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, ["core.echo", "core.local", "core.local_sudo", "core.noop", "core.remote", "core.remote_sudo"], "{listed}");
    st2.run(&["action", "list", "-p", "nope"]).await.ok().has("No matching items found").lacks("core.local");

    let out = st2.run(&["action", "get", "core.local"]).await.ok();
    out.has("| ref ").has("core.local").has("local-shell-cmd").has("action:core:local");
    let action = st2.run(&["action", "get", "core.local", "-j"]).await.ok().json();
    assert_eq!(action["ref"], "core.local");
    assert_eq!(action["pack"], "core");
    assert_eq!(action["name"], "local");
    assert_eq!(action["runner_type"], "local-shell-cmd");
    assert_eq!(action["parameters"]["cmd"]["type"], "string");

    let out = st2.run(&["action", "get", "core.nope"]).await.exit(1);
    assert!(out.all().contains("Action \"core.nope\" is not found."), "{out}");
    assert!(out.all().contains("ERROR: Resource core.nope not found."), "{out}");
}

// ---------------------------------------------------------------------------------------------
// §6.5 – §6.7

async fn run_sync_prints_the_result(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    let out = st2.run(&["run", "core.local", "cmd=echo hi"]).await.ok();
    out.has("action.ref: core.local")
        .has("context.user: stanley")
        .has("cmd: echo hi")
        .has("status: succeeded")
        .has("return_code: 0")
        .has("stdout: hi")
        .has("succeeded: true");
    let id = out.stdout.lines().find_map(|l| l.strip_prefix("id: ")).unwrap_or_else(|| panic!("no id in {out}"));
    let e = wait_done(&s, id.trim(), Duration::from_secs(5)).await;
    assert_eq!(e["status"], "succeeded");
    assert_eq!(e["parameters"], json!({"cmd": "echo hi"}));
}

async fn run_positional_cmd(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    for args in [&["run", "-j", "core.local", "--", "echo", "hi"][..], &["run", "-j", "core.local", "echo", "hi", "there"][..]] {
        let out = st2.run(args).await.ok();
        let e = out.json();
        let want = args[args.iter().position(|a| *a == "echo").unwrap()..].join(" ");
        assert_eq!(e["parameters"]["cmd"], want.as_str(), "{out}");
        assert_eq!(e["status"], "succeeded", "{out}");
        assert_eq!(e["result"]["stdout"], want.trim_start_matches("echo "), "{out}");
    }
    st2.run(&["run", "core.local", "--", "echo", "hi"]).await.ok().has("cmd: echo hi").has("stdout: hi");
}

async fn run_failed_exits_1(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    let out = st2.run(&["run", "core.local", "cmd=exit 3"]).await.exit(1);
    out.has("status: failed").has("return_code: 3").has("failed: true");
    // timeout is not "failed": exit 0 (§5.1)
    let out = st2.run(&["run", "core.local", "cmd=sleep 10", "timeout=1"]).await.ok();
    out.has("status: timeout").has("return_code: -9").has("error: Action failed to complete in 1 seconds");
}

async fn run_async_and_json(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    let out = st2.run(&["run", "-a", "core.local", "cmd=echo async"]).await.ok();
    let id = async_id(&out);
    let want = format!(
        "To get the results, execute:\n st2 execution get {id}\n\nTo view output in real-time, execute:\n st2 execution tail {id}\n"
    );
    assert!(out.stdout.contains(&want), "expected\n{want}\nin {out}");
    assert_eq!(wait_done(&s, &id, Duration::from_secs(20)).await["status"], "succeeded");

    // `st2 action execute` is `run -a`
    let out = st2.run(&["action", "execute", "core.local", "cmd=true"]).await.ok();
    wait_done(&s, &async_id(&out), Duration::from_secs(20)).await;

    let out = st2.run(&["run", "-j", "core.local", "cmd=echo json"]).await.ok();
    let e = out.json();
    assert_eq!(e["status"], "succeeded", "{out}");
    assert_eq!(e["action"]["ref"], "core.local", "{out}");
    assert_eq!(e["context"]["user"], "stanley", "{out}");
    assert_eq!(e["parameters"], json!({"cmd": "echo json"}), "{out}");
    assert_eq!(e["result"], json!({"failed": false, "succeeded": true, "return_code": 0, "stdout": "json", "stderr": ""}), "{out}");
    assert!(e["id"].as_str().is_some_and(|i| i.len() == 24), "{out}");
    assert!(e["start_timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{out}");
    assert!(e["end_timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{out}");

    // -k KEY prints result.KEY
    st2.run(&["run", "core.local", "cmd=echo keyed", "-k", "stdout"]).await.ok().has("keyed").lacks("return_code");
}

async fn run_rejections_print_the_faultstring(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    let cases: [(&[&str], &str); 4] = [
        (&["run", "core.local", "cmd=true", "sudo=true"], "MESSAGE: Override of immutable parameter(s) ['sudo'] is unsupported."),
        (&["run", "core.local"], "MESSAGE: 'cmd' is a required property"),
        (&["run", "core.local", "cmd=true", "foo=bar"], "MESSAGE: Additional properties are not allowed ('foo' was unexpected)"),
        (&["run", "core.nope"], "ERROR: Resource with id or reference \"core.nope\" doesn't exist."),
    ];
    for (args, want) in cases {
        let out = st2.run(args).await.exit(1);
        assert!(out.all().contains(want), "expected {want:?} in {out}");
    }
}

/// `st2 run --tail`: each line must reach the terminal when the action prints it, not at the end.
async fn run_tail_prints_lines_as_they_are_produced(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    let out = st2.run(&["run", "core.local", "cmd=for i in 1 2 3; do echo line $i; sleep 1; done", "--tail"]).await.ok();
    let id = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Tailing execution \"").and_then(|r| r.strip_suffix('"')))
        .unwrap_or_else(|| panic!("no 'Tailing execution' line in {out}"))
        .to_string();
    let done_line = completed(&id, "succeeded");
    let (t1, t2, t3, tdone) = (out.line_time("line 1"), out.line_time("line 2"), out.line_time("line 3"), out.line_time(&done_line));
    let gaps = [t2.saturating_sub(t1), t3.saturating_sub(t2)];
    let times = format!("line 1 at {t1:?}, line 2 at {t2:?}, line 3 at {t3:?}, completion at {tdone:?}\n{out}");
    for gap in gaps {
        assert!(gap >= Duration::from_millis(500) && gap <= Duration::from_millis(2500), "lines must arrive ~1 s apart: {times}");
    }
    assert!(tdone.saturating_sub(t1) >= Duration::from_millis(1500), "line 1 must arrive long before the end: {times}");
    // then the normal print of the finished execution
    out.has("status: succeeded").has("stdout: 'line 1");
}

/// §8.8(a): an action that finishes before the CLI subscribes must still end `--tail`.
async fn run_tail_on_instant_actions_never_hangs(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    for i in 0..20 {
        let out = st2.spawn(&["run", "--tail", "core.local", "cmd=true"]).finish(Duration::from_secs(30)).await;
        assert_eq!(out.code, 0, "round {i}: {out}");
        assert!(out.stdout.contains("has completed (status=succeeded)."), "round {i}: {out}");
        assert!(out.stdout.contains("status: succeeded"), "round {i}: {out}");
    }
}

// ---------------------------------------------------------------------------------------------
// §6.8, §6.9

async fn execution_list_and_filters(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    let ok1 = run_cmd(&s, "echo one", json!({})).await;
    wait_done(&s, &ok1, Duration::from_secs(20)).await;
    let bad = run_cmd(&s, "exit 1", json!({})).await;
    wait_done(&s, &bad, Duration::from_secs(20)).await;
    let (code, noop) = post(&s, "/v1/executions", json!({"action": "core.noop", "parameters": {}})).await;
    assert_eq!(code, 201, "{noop}");
    let noop = noop["id"].as_str().unwrap().to_string();
    wait_done(&s, &noop, Duration::from_secs(20)).await;
    let ok2 = run_cmd(&s, "echo two", json!({})).await;
    wait_done(&s, &ok2, Duration::from_secs(20)).await;

    let out = st2.run(&["execution", "list"]).await.ok();
    for id in [&ok1, &bad, &noop, &ok2] {
        out.has(id);
    }
    out.has("core.local").has("core.noop").has("stanley").has("succeeded (").has("failed (");
    // oldest at the top
    let pos = |id: &str| out.stdout.find(id).unwrap();
    assert!(pos(&ok1) < pos(&bad) && pos(&bad) < pos(&noop) && pos(&noop) < pos(&ok2), "{out}");

    let out = st2.run(&["execution", "list", "-n", "2"]).await.ok();
    out.has(&noop).has(&ok2).lacks(&ok1).lacks(&bad);
    assert!(out.stderr.contains("Only first 2 action executions are displayed"), "{out}");

    let out = st2.run(&["execution", "list", "--status", "succeeded"]).await.ok();
    out.has(&ok1).has(&ok2).has(&noop).lacks(&bad);
    let out = st2.run(&["execution", "list", "--status", "failed"]).await.ok();
    out.has(&bad).lacks(&ok1).lacks(&ok2).lacks(&noop);

    let out = st2.run(&["execution", "list", "--action", "core.local"]).await.ok();
    out.has(&ok1).has(&bad).has(&ok2).lacks(&noop);
    let out = st2.run(&["execution", "list", "--action", "core.local", "--status", "succeeded", "-n", "1"]).await.ok();
    out.has(&ok2).lacks(&ok1).lacks(&bad).lacks(&noop);

    let listed = st2.run(&["execution", "list", "-j"]).await.ok().json();
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [ok1.as_str(), bad.as_str(), noop.as_str(), ok2.as_str()], "{listed}");
    assert_eq!(listed[0]["action"]["ref"], "core.local");
    assert_eq!(listed[0]["context"]["user"], "stanley");

    let out = st2.run(&["execution", "list", "--user", "nobody"]).await.ok();
    out.lacks(&ok1).lacks(&ok2);
}

async fn execution_get_plain_details_json_and_missing(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    let id = run_cmd(&s, "echo got; echo oops >&2", json!({})).await;
    wait_done(&s, &id, Duration::from_secs(20)).await;

    let out = st2.run(&["execution", "get", &id]).await.ok();
    out.has(&format!("id: {id}"))
        .has("action.ref: core.local")
        .has("context.user: stanley")
        .has("status: succeeded (")
        .has("stdout: got")
        .has("stderr: oops")
        .has("- status: requested")
        .has("- status: running");

    let out = st2.run(&["execution", "get", &id, "-d"]).await.ok();
    out.has("| Property").has(&format!("| id              | {id}")).has("| status          | succeeded (").has("\"stdout\": \"got\"");

    let out = st2.run(&["execution", "get", &id, "-j"]).await.ok();
    let e = out.json();
    assert_eq!(e["id"], id.as_str(), "{out}");
    assert_eq!(e["status"], "succeeded", "{out}");
    assert_eq!(e["action"], json!({"ref": "core.local"}), "{out}");
    assert_eq!(e["context"], json!({"user": "stanley"}), "{out}");
    assert_eq!(e["result"]["stdout"], "got", "{out}");
    assert_eq!(e["result"]["stderr"], "oops", "{out}");
    let log: Vec<&str> = e["log"].as_array().unwrap().iter().map(|l| l["status"].as_str().unwrap()).collect();
    assert_eq!(log, ["requested", "scheduled", "running", "succeeded"], "{out}");

    // a running execution shows its elapsed time
    let running = run_cmd(&s, "sleep 30", json!({})).await;
    wait_status(&s, &running, &["running"], Duration::from_secs(20)).await;
    st2.run(&["execution", "get", &running]).await.ok().has("status: running (");
    let r = reqwest::Client::new().delete(s.url(&format!("/v1/executions/{running}"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let out = st2.run(&["execution", "get", "000000000000000000000000"]).await.exit(1);
    assert!(out.all().contains("Action Execution \"000000000000000000000000\" is not found."), "{out}");
    assert!(out.all().contains("ERROR: Resource 000000000000000000000000 not found."), "{out}");
}

// ---------------------------------------------------------------------------------------------
// §6.10, §6.11

async fn execution_cancel_running_and_finished(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    let id = run_cmd(&s, "sleep 30", json!({})).await;
    wait_status(&s, &id, &["running"], Duration::from_secs(20)).await;
    let out = st2.run(&["execution", "cancel", &id]).await.ok();
    out.has(&format!("action execution with id {id} canceled."));
    let e = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(e["status"], "canceled");
    assert_eq!(e["result"], json!({"message": "Action canceled by user.", "user": "stanley"}));
    st2.run(&["execution", "get", &id]).await.ok().has("status: canceled (").has("message: Action canceled by user.");

    let done = run_cmd(&s, "true", json!({})).await;
    wait_done(&s, &done, Duration::from_secs(20)).await;
    let out = st2.run(&["execution", "cancel", &done]).await.ok();
    out.has("Action cannot be canceled. State = succeeded.").lacks("ERROR");

    let out = st2.run(&["execution", "cancel", "000000000000000000000000"]).await.ok();
    out.has("Unable to identify resource with id \"000000000000000000000000\".");
}

async fn execution_re_run(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    let id = run_cmd(&s, "echo first", json!({})).await;
    wait_done(&s, &id, Duration::from_secs(20)).await;

    let out = st2.run(&["execution", "re-run", &id]).await.ok();
    out.has("status: succeeded").has("cmd: echo first").has("stdout: first");
    let new_id = out.stdout.lines().find_map(|l| l.strip_prefix("id: ")).unwrap_or_else(|| panic!("no id in {out}")).trim().to_string();
    assert_ne!(new_id, id);
    let (_, e) = get(&s, &format!("/v1/executions/{new_id}")).await;
    assert_eq!(e["context"]["re-run"]["ref"], id.as_str(), "{e}");

    let out = st2.run(&["execution", "re-run", &id, "cmd=echo second"]).await.ok();
    out.has("cmd: echo second").has("stdout: second");

    let out = st2.run(&["execution", "re-run", &id, "-a"]).await.ok();
    let async_new = async_id(&out);
    assert_eq!(wait_done(&s, &async_new, Duration::from_secs(20)).await["result"]["stdout"], "first");

    let failing = run_cmd(&s, "exit 4", json!({})).await;
    wait_done(&s, &failing, Duration::from_secs(20)).await;
    st2.run(&["execution", "re-run", &failing]).await.exit(1).has("status: failed");

    let out = st2.run(&["execution", "re-run", "000000000000000000000000"]).await.exit(1);
    assert!(out.all().contains("Action execution with id \"000000000000000000000000\" cannot be found."), "{out}");
}

// ---------------------------------------------------------------------------------------------
// §6.12, §8.7, §8.8

async fn execution_tail_last_attached_to_a_running_action(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    let id = run_cmd(&s, "echo start; sleep 2; for i in 1 2 3; do echo line $i; sleep 1; done", json!({})).await;
    wait_output(&s, &id, "start").await;
    let tail = st2.spawn(&["execution", "tail", "last"]);
    // the CLI is attached while the action still runs ...
    tail.wait_for_stdout("line 1\n", Duration::from_secs(20)).await;
    assert_eq!(get(&s, &format!("/v1/executions/{id}")).await.1["status"], "running");
    // ... and exits by itself once it completes
    let out = tail.finish(Duration::from_secs(30)).await.ok();
    out.has("line 1\nline 2\nline 3\n").has(&format!("\n{}\n", completed(&id, "succeeded")));
    assert!(out.stdout.trim_end().ends_with(&completed(&id, "succeeded")), "{out}");
    let (t1, t3) = (out.line_time("line 1"), out.line_time("line 3"));
    assert!(t3.saturating_sub(t1) >= Duration::from_millis(1000), "line 3 must arrive live, ~2 s after line 1: {t1:?} vs {t3:?}\n{out}");

    // the same with an explicit id
    let id = run_cmd(&s, "sleep 1; echo by-id; sleep 1", json!({})).await;
    wait_status(&s, &id, &["running"], Duration::from_secs(20)).await;
    let out = st2.run(&["execution", "tail", &id]).await.ok();
    out.has("by-id\n").has(&completed(&id, "succeeded"));

    let out = st2.run(&["execution", "tail", "000000000000000000000000"]).await.exit(1);
    assert!(out.all().contains("ERROR: Execution  with id 000000000000000000000000 not found."), "{out}");
}

async fn execution_tail_finished_with_type_filters(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    let id = run_cmd(&s, "echo out1; echo err1 >&2; echo out2; exit 2", json!({})).await;
    wait_done(&s, &id, Duration::from_secs(20)).await;
    let done = completed(&id, "failed");

    let out = st2.run(&["execution", "tail", &id]).await.ok();
    out.has("out1\n").has("err1\n").has("out2\n").has(&done);
    assert!(out.stdout.find("out1").unwrap() < out.stdout.find("out2").unwrap(), "{out}");

    let out = st2.run(&["execution", "tail", &id, "--type", "stdout"]).await.ok();
    out.has("out1\nout2\n").lacks("err1").has(&done);
    let out = st2.run(&["execution", "tail", &id, "--type", "stderr"]).await.ok();
    out.has("err1\n").lacks("out1").lacks("out2").has(&done);
    // --include-metadata has no effect on a finished execution
    let out = st2.run(&["execution", "tail", &id, "--include-metadata"]).await.ok();
    out.has("out1\n").has(&done).lacks("][stdout]");

    // `tail` without an id is `tail last`
    let out = st2.run(&["execution", "tail"]).await.ok();
    out.has("out1\n").has(&done);
}

async fn execution_tail_live_type_and_metadata(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    // The action waits for a file the test creates only once all three tails are attached, so
    // they always take the live path however slowly Python starts on a loaded machine.
    let go = s.dir.path().join("go");
    let cmd = format!(
        "while [ ! -e '{}' ]; do sleep 0.1; done; for i in 1 2 3; do echo tick $i; echo tock $i >&2; sleep 0.5; done",
        go.display()
    );
    let id = run_cmd(&s, &cmd, json!({})).await;
    wait_status(&s, &id, &["running"], Duration::from_secs(20)).await;
    let only_out = st2.spawn(&["execution", "tail", &id, "--type", "stdout"]);
    let only_err = st2.spawn(&["execution", "tail", &id, "--type", "stderr"]);
    let meta = st2.spawn(&["execution", "tail", &id, "--include-metadata"]);
    for tail in [&only_out, &only_err, &meta] {
        tail.wait_for_stdout("has started.", Duration::from_secs(60)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(&go, b"").unwrap();
    let done = completed(&id, "succeeded");

    let out = only_out.finish(Duration::from_secs(30)).await.ok();
    out.has("tick 1\ntick 2\ntick 3\n").lacks("tock").has(&done);
    let out = only_err.finish(Duration::from_secs(30)).await.ok();
    out.has("tock 1\ntock 2\ntock 3\n").lacks("tick").has(&done);
    let out = meta.finish(Duration::from_secs(30)).await.ok();
    for i in 1..=3 {
        for (line, kind) in [(format!("tick {i}"), "stdout"), (format!("tock {i}"), "stderr")] {
            let found = out.stdout.lines().any(|l| {
                l.strip_prefix('[')
                    .and_then(|r| r.split_once("]["))
                    .is_some_and(|(ts, rest)| ts.ends_with('Z') && ts.contains('T') && rest == format!("{kind}] {line}"))
            });
            assert!(found, "expected \"[<timestamp>][{kind}] {line}\" in {out}");
        }
    }
    out.has(&done);
}

// ---------------------------------------------------------------------------------------------
// §2.2: non-ASCII output

async fn non_ascii_output(layout: Layout) {
    let s = Server::start();
    let st2 = St2::new(&s, layout);
    let text = "héllo wörld ✓";
    let cmd = format!("echo {text}");

    let out = st2.run(&["run", "-j", "core.local", &format!("cmd={cmd}")]).await.ok();
    let e = out.json();
    assert_eq!(e["result"]["stdout"], text, "{out}");
    assert_eq!(e["parameters"]["cmd"], cmd.as_str(), "{out}");
    let id = e["id"].as_str().unwrap().to_string();

    let e = st2.run(&["execution", "get", &id, "-j"]).await.ok().json();
    assert_eq!(e["result"]["stdout"], text);

    // tail of a finished execution reads /output as text: needs charset=utf-8
    let out = st2.run(&["execution", "tail", &id]).await.ok();
    out.has(&format!("{text}\n")).lacks("Ã");

    // live tail reads the stream
    let out = st2.run(&["run", "--tail", "core.local", &format!("cmd=sleep 1; {cmd}; sleep 1")]).await.ok();
    out.has(&format!("{text}\n")).lacks("Ã");
}

// ---------------------------------------------------------------------------------------------
// §7.1.1, §11.16: secret parameters are masked everywhere the CLI prints parameters

const SECRET: &str = "Sup3r-S3cret-Value-42";

async fn secret_parameter_never_printed(layout: Layout) {
    let mut s = Server::start();
    let pack = s.packs_dir().join("sectest");
    write_file(&pack.join("pack.yaml"), "name: sectest\nversion: 0.1.0\ndescription: st2 CLI secret test pack\n");
    write_file(
        &pack.join("actions/login.yaml"),
        "name: login\nrunner_type: local-shell-script\nentry_point: login.sh\ndescription: Uses a secret.\nenabled: true\n\
         parameters:\n  user:\n    type: string\n    required: true\n    position: 0\n  token:\n    type: string\n    secret: true\n    required: true\n    position: 1\n",
    );
    // prints facts about the secret, never the secret itself
    write_file(&pack.join("actions/login.sh"), "#!/bin/sh\necho \"user=$1\"\necho \"token length ${#2}\"\n");
    let script = pack.join("actions/login.sh");
    let mut perm = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&script, perm).unwrap();
    s.restart();
    let st2 = St2::new(&s, layout);
    let token_arg = format!("token={SECRET}");
    let length = format!("token length {}", SECRET.len());
    let mut printed = Vec::new();

    let out = st2.run(&["run", "sectest.login", "user=bob", &token_arg]).await.ok();
    out.has("token: '********'").has("user=bob").has(&length);
    let id = out.stdout.lines().find_map(|l| l.strip_prefix("id: ")).unwrap_or_else(|| panic!("no id in {out}")).trim().to_string();
    printed.push(out);

    let out = st2.run(&["run", "-j", "sectest.login", "user=eve", &token_arg]).await.ok();
    assert_eq!(out.json()["parameters"]["token"], "********", "{out}");
    printed.push(out);

    let out = st2.run(&["run", "--tail", "sectest.login", "user=mallory", &token_arg]).await.ok();
    out.has(&length);
    printed.push(out);

    let out = st2.run(&["execution", "get", &id]).await.ok();
    out.has("token: '********'");
    printed.push(out);
    let out = st2.run(&["execution", "get", &id, "-d"]).await.ok();
    out.has("\"token\": \"********\"");
    printed.push(out);
    let out = st2.run(&["execution", "get", &id, "-j"]).await.ok();
    assert_eq!(out.json()["parameters"]["token"], "********", "{out}");
    printed.push(out);
    let out = st2.run(&["execution", "get", &id, "--attr", "all", "-j"]).await.ok();
    let e = out.json();
    assert_eq!(e["parameters"]["token"], "********", "{out}");
    assert_eq!(e["liveaction"]["parameters"]["token"], "********", "{out}");
    printed.push(out);

    printed.push(st2.run(&["execution", "list"]).await.ok());
    printed.push(st2.run(&["execution", "list", "-j"]).await.ok());
    printed.push(st2.run(&["execution", "list", "-a", "all", "-j"]).await.ok());
    printed.push(st2.run(&["execution", "tail", &id]).await.ok());

    // re-run uses the stored secret, not the mask, and still prints the mask
    let out = st2.run(&["execution", "re-run", &id]).await.ok();
    out.has("token: '********'").has(&length);
    printed.push(out);

    for out in &printed {
        assert!(!out.all().contains(SECRET), "the secret leaked into {out}");
    }
}
