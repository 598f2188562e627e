//! squall as a cluster on loopback: 2 API nodes and 2 runner nodes, separate processes, on the
//! machine's PostgreSQL and NATS — viewers on either API node follow executions that run on
//! either runner, byte-exact, by every follow path; the st2 CLI works against it; and the
//! failures the design promises to survive: a runner killed or paused, an API node killed, NATS
//! and PostgreSQL restarted, the same work delivered twice.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/st2.rs"]
mod st2;

use std::process::Command;
use std::time::{Duration, Instant};

use cluster::{Cluster, Node, OwnNats, OwnPostgres};
use common::*;
use nix::sys::signal::Signal;
use serde_json::json;

/// Numbered lines on both streams, paced, with bytes that are not UTF-8 and a partial line.
const PACED: &str = "i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo \"out $i\"; if [ $((i % 5)) -eq 0 ]; then echo \"err $i\" >&2; printf 'raw \\377\\376\\n'; fi; sleep 0.02; done; printf 'no newline'";

fn stdout_of(out: &std::process::Output) -> Vec<u8> {
    out.stdout.clone()
}

/// `squall execution tail ID` against an API node.
fn squall_tail(node: &Node, id: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["execution", "tail", id])
        .env("SQUALL_URL", &node.base)
        .env("HOME", "/nonexistent")
        .output()
        .expect("run squall execution tail")
}

#[tokio::test]
async fn viewers_on_any_api_node_follow_executions_on_any_runner() {
    let c = Cluster::start(2, 2);
    let (a, b) = (c.api(0), c.api(1));
    for round in 0..2 {
        // Submitted on A, and on B: whichever runner takes it, every path on both nodes agrees.
        let submit = if round == 0 { a } else { b };
        let id = run_cmd(submit, PACED, json!({})).await;
        let sse_b = {
            let url = b.url(&format!("/stream/v1/executions/{id}/output"));
            tokio::spawn(async move { Sse::open(&url, &[]).await.rest().await })
        };
        let events_a = {
            let url = a.url(&format!(
                "/v1/stream?end_event=st2.execution__update&end_execution_id={id}&events=st2.execution__update%2Cst2.execution.output__create"
            ));
            tokio::spawn(async move { Sse::open(&url, &[]).await.rest().await })
        };
        let raw_stdout_a = {
            let url = a.url(&format!("/v1/executions/{id}/stdout"));
            tokio::spawn(async move { reqwest::get(url).await.unwrap().bytes().await.unwrap().to_vec() })
        };
        // Join late, half-way through, then resume on the other node after what it saw.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut partial = Sse::open(&a.url(&format!("/stream/v1/executions/{id}/output")), &[]).await;
        let mut first_half = Vec::new();
        for _ in 0..5 {
            first_half.push(partial.next().await.expect("an event"));
        }
        drop(partial);
        let last_id = first_half.iter().rev().find_map(|e| e.id.clone()).expect("an id");
        let resumed = Sse::open(&b.url(&format!("/stream/v1/executions/{id}/output")), &[("Last-Event-ID", &last_id)]).await.rest().await;

        let done = wait_done(a, &id, Duration::from_secs(60)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let stored = get_bytes(b, &format!("/v1/executions/{id}/output")).await;
        let stored_stdout = get_bytes(a, &format!("/v1/executions/{id}/output?output_type=stdout")).await;
        let text = String::from_utf8_lossy(&stored_stdout);
        assert!(text.contains("out 40\n") && text.ends_with("no newline"), "{text}");

        let sse_b = sse_b.await.unwrap();
        assert_eq!(output_text(&sse_b).as_bytes(), String::from_utf8_lossy(&stored).as_bytes(), "SSE on B");
        assert_eq!(sse_b.last().unwrap().event.as_deref(), Some("EOF"));
        assert_eq!(output_text(&events_a.await.unwrap()), String::from_utf8_lossy(&stored), "/stream on A");
        assert_eq!(raw_stdout_a.await.unwrap(), stored_stdout, "/stdout on A, byte-exact");
        let mut joined = first_half;
        joined.extend(resumed);
        assert_eq!(output_text(&joined), String::from_utf8_lossy(&stored), "resumed on the other node: no gap, no duplicate");
        let tail = squall_tail(b, &id);
        assert_eq!(tail.status.code(), Some(0), "{}", String::from_utf8_lossy(&tail.stderr));
        assert_eq!(stdout_of(&tail), stored_stdout, "squall execution tail on B, byte-exact");
    }
    // Both runners took part over a handful of executions, and the nodes know each other.
    let ids: Vec<String> = futures::future::join_all((0..6).map(|_| run_cmd(a, "sleep 0.3", json!({})))).await;
    let mut pids = std::collections::BTreeSet::new();
    for id in &ids {
        pids.insert(wait_done(b, id, Duration::from_secs(30)).await["liveaction"]["runner_info"]["pid"].as_i64().unwrap());
    }
    assert_eq!(pids.len(), 2, "work is spread over both runners: {pids:?}");
    let (_, stats) = get(a, "/squall/stats").await;
    assert_eq!(stats["node"]["roles"], "api");
    assert_eq!(stats["nodes"].as_array().unwrap().len(), 4, "{stats}");
}

/// Seconds since `t`, for the figures the failure tests print.
fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// The process group id an action printed as its first line (`echo $$`).
async fn pgid_of(node: &Node, id: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = get_bytes(node, &format!("/v1/executions/{id}/output?output_type=stdout")).await;
        if let Some(line) = String::from_utf8_lossy(&out).lines().next().filter(|_| out.contains(&b'\n')) {
            return line.trim().parse().expect("the action printed its pid first");
        }
        assert!(Instant::now() < deadline, "the action printed nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn assert_group_gone(pgid: i32, within: Duration) {
    let deadline = Instant::now() + within;
    while !live_group_members(pgid).is_empty() {
        assert!(Instant::now() < deadline, "processes of group {pgid} survived: {:?}", live_group_members(pgid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An action that prints its pid, then a numbered line every 20 ms for a long time.
const LONG: &str = "echo $$; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo \"tick $i\"; sleep 0.02; done";

#[tokio::test]
async fn a_killed_runner_is_declared_dead_and_its_executions_abandoned_within_ten_seconds() {
    let mut c = Cluster::start(2, 2);
    let id = run_cmd(c.api(0), LONG, json!({})).await;
    let pgid = pgid_of(c.api(0), &id).await;
    let viewers: Vec<_> = (0..4)
        .map(|n| {
            let url = c.api(n % 2).url(&format!("/stream/v1/executions/{id}/output"));
            tokio::spawn(async move { Sse::open(&url, &[]).await.rest().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, e) = get(c.api(1), &format!("/v1/executions/{id}")).await;
    c.runner_of(&e).kill9();
    let killed = Instant::now();
    assert_group_gone(pgid, Duration::from_secs(2)).await;
    let group_gone = secs(killed);
    let done = wait_done(c.api(1), &id, Duration::from_secs(15)).await;
    let abandoned = secs(killed);
    println!("runner kill -9 -> process group gone in {group_gone:.3} s, execution abandoned in {abandoned:.2} s");
    assert_eq!(done["status"], "abandoned", "{done}");
    assert!(abandoned <= 10.0, "abandoned only after {abandoned:.1} s");
    let stored = String::from_utf8(get_bytes(c.api(0), &format!("/v1/executions/{id}/output")).await).unwrap();
    let note = stored.lines().last().unwrap();
    assert!(note.starts_with("runner node ") && note.ends_with("execution abandoned"), "{note}");
    for viewer in viewers {
        let events = viewer.await.unwrap();
        assert_eq!(output_text(&events), stored, "every committed byte, then the note, exactly once");
        assert_eq!(events.last().unwrap().event.as_deref(), Some("EOF"));
    }
}

#[tokio::test]
async fn a_paused_runner_comes_back_fenced_and_stops_its_actions() {
    let mut c = Cluster::start(1, 2);
    let id = run_cmd(c.api(0), LONG, json!({})).await;
    let pgid = pgid_of(c.api(0), &id).await;
    let (_, e) = get(c.api(0), &format!("/v1/executions/{id}")).await;
    let paused = Instant::now();
    c.runner_of(&e).signal(Signal::SIGSTOP);
    let done = wait_done(c.api(0), &id, Duration::from_secs(15)).await;
    assert_eq!(done["status"], "abandoned");
    println!("runner SIGSTOP -> abandoned in {:.2} s", secs(paused));
    let stored_at_abandon = get_bytes(c.api(0), &format!("/v1/executions/{id}/output")).await;
    assert!(!live_group_members(pgid).is_empty(), "the paused runner's action is still there");
    // The action kept running while its runner was paused; its runner wakes up.
    c.runner_of(&e).signal(Signal::SIGCONT);
    let woke = Instant::now();
    assert_group_gone(pgid, Duration::from_secs(8)).await;
    println!("runner SIGCONT -> its action's group killed in {:.2} s", secs(woke));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored = get_bytes(c.api(0), &format!("/v1/executions/{id}/output")).await;
    assert_eq!(stored, stored_at_abandon, "nothing was written into the abandoned execution after its note");
    // The fenced runner joined again and takes new work.
    let next = run_cmd(c.api(0), "echo after", json!({})).await;
    assert_eq!(wait_done(c.api(0), &next, Duration::from_secs(20)).await["status"], "succeeded");
}

#[tokio::test]
async fn a_viewer_resumes_on_another_api_node_when_its_node_dies() {
    let mut c = Cluster::start(2, 1);
    let id = run_cmd(c.api(0), "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo \"line $i\"; sleep 0.01; done", json!({})).await;
    let mut sse = Sse::open(&c.api(0).url(&format!("/stream/v1/executions/{id}/output")), &[]).await;
    let mut seen = Vec::new();
    for _ in 0..30 {
        seen.push(sse.next().await.expect("an event"));
    }
    c.apis[0].kill9();
    // The connection dies with the node; whatever was in flight is lost to this client.
    while let Some(ev) = sse.next().await {
        seen.push(ev);
    }
    let last = seen.iter().rev().find_map(|e| e.id.clone()).unwrap();
    let resumed = Instant::now();
    let mut rest = Sse::open(&c.api(1).url(&format!("/stream/v1/executions/{id}/output")), &[("Last-Event-ID", &last)]).await;
    let first = rest.next().await;
    println!("API node kill -9 -> first event from the other node {:.3} s after reconnecting", secs(resumed));
    seen.extend(first);
    seen.extend(rest.rest().await);
    wait_done(c.api(1), &id, Duration::from_secs(30)).await;
    let stored = String::from_utf8(get_bytes(c.api(1), &format!("/v1/executions/{id}/output")).await).unwrap();
    assert_eq!(output_text(&seen), stored, "no gap, no duplicate");
}

#[tokio::test]
async fn the_same_work_delivered_twice_runs_once() {
    let c = Cluster::start(1, 2);
    let marks = c.dir.path().join("runs");
    std::fs::create_dir_all(&marks).unwrap();
    let cmd = format!("echo ran >> {}/$ST2_ACTION_EXECUTION_ID; sleep 1", marks.display());
    let id = run_cmd(c.api(0), &cmd, json!({})).await;
    // The same id again on the work stream, as a redelivery or a second sweep would do.
    let client = async_nats::connect(c.nats_url.clone()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    for _ in 0..3 {
        js.publish(format!("{}.work.{id}", c.prefix), Default::default()).await.unwrap().await.unwrap();
    }
    let done = wait_done(c.api(0), &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs = std::fs::read_to_string(marks.join(&id)).unwrap();
    assert_eq!(runs.lines().count(), 1, "it ran once");
    let log: Vec<&str> = done["log"].as_array().unwrap().iter().map(|l| l["status"].as_str().unwrap()).collect();
    assert_eq!(log, ["requested", "scheduled", "running", "succeeded"]);
}

/// Viewers on both API nodes of an execution that streams through `outage`; the execution must
/// succeed and every viewer end with exactly the stored bytes, and nothing is abandoned.
async fn survives(c: &Cluster, outage: impl FnOnce() + Send + 'static) {
    let id = run_cmd(c.api(0), "i=0; while [ $i -lt 250 ]; do i=$((i+1)); echo \"line $i\"; sleep 0.02; done", json!({})).await;
    let tails: Vec<_> = (0..2)
        .map(|n| {
            let (base, id) = (c.api(n).base.clone(), id.clone());
            tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_squall")).args(["execution", "tail", &id]).env("SQUALL_URL", base).output().unwrap()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::spawn_blocking(outage).await.unwrap();
    let done = wait_done(c.api(1), &id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let stdout = get_bytes(c.api(0), &format!("/v1/executions/{id}/output?output_type=stdout")).await;
    let want: String = (1..=250).map(|i| format!("line {i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&stdout), want, "every line stored once");
    for tail in tails {
        let out = tail.await.unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, stdout, "the viewer ended with exactly the stored bytes");
    }
    let (_, abandoned) = get(c.api(0), "/v1/executions?status=abandoned").await;
    assert_eq!(abandoned.as_array().unwrap().len(), 0, "nothing abandoned: {abandoned}");
}

#[tokio::test]
async fn a_nats_restart_mid_stream_loses_nothing() {
    let nats = std::sync::Arc::new(std::sync::Mutex::new(OwnNats::start()));
    let url = nats.lock().unwrap().url();
    let c = Cluster::start_on(&cluster::pg_url(), &url, 2, 2, &[]);
    let restarting = std::sync::Arc::clone(&nats);
    survives(&c, move || restarting.lock().unwrap().restart_after(Duration::from_secs(2))).await;
    // Work submitted while NATS is down is queued again once it is back.
    nats.lock().unwrap().kill9();
    let (code, e) =
        post(c.api(0), "/v1/executions", json!({"action": "core.local", "parameters": {"cmd": "echo queued in the dark"}})).await;
    assert_eq!(code, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_secs(1));
    nats.lock().unwrap().restart_after(Duration::ZERO);
    let back = Instant::now();
    assert_eq!(wait_done(c.api(0), &id, Duration::from_secs(40)).await["status"], "succeeded");
    println!("an execution submitted during a NATS outage finished {:.1} s after NATS came back", secs(back));
}

#[tokio::test]
async fn a_postgres_restart_mid_stream_loses_nothing() {
    let pg = OwnPostgres::start();
    let c = Cluster::start_on(&pg.url(), &cluster::nats_url(), 2, 2, &[]);
    let pg = std::sync::Arc::new(pg);
    let restarting = std::sync::Arc::clone(&pg);
    let started = Instant::now();
    survives(&c, move || restarting.restart_after(Duration::from_secs(2))).await;
    println!("PostgreSQL restarted (2 s down) mid-stream: the execution succeeded, {:.1} s in all", secs(started));
    // Down for longer than a lease (and than the pool waits for a connection): nodes could not
    // renew, but nobody is declared dead for it.
    let restarting = std::sync::Arc::clone(&pg);
    let started = Instant::now();
    survives(&c, move || restarting.restart_after(Duration::from_secs(12))).await;
    println!("PostgreSQL down 12 s (twice the lease) mid-stream: the execution succeeded, {:.1} s in all", secs(started));
    // Meanwhile `/readyz` says the node cannot work, and says why; then that it can again.
    let restarting = std::sync::Arc::clone(&pg);
    let outage = std::thread::spawn(move || restarting.restart_after(Duration::from_secs(4)));
    let seen = wait_readyz(c.api(0), 503, Duration::from_secs(10)).await;
    assert!(seen["checks"]["store"].as_str().is_some_and(|s| s != "ok"), "{seen}");
    wait_readyz(c.api(0), 200, Duration::from_secs(30)).await;
    outage.join().unwrap();
}

async fn wait_readyz(node: &impl common::Endpoint, code: u16, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let (got, body) = get(node, "/readyz").await;
        if got == code {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz still {got} {body} after {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The st2 CLI, pointed at one API node while the actions run on the runner nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_st2_cli_works_against_the_cluster() {
    let c = Cluster::start(2, 2);
    let st2 = st2::St2::at(&c.api(1).base, st2::Layout::Prefixed);
    // run --tail: lines arrive live, then the result.
    let out = st2.run(&["run", "core.local", "cmd=for i in 1 2 3; do echo line $i; sleep 0.5; done", "--tail"]).await.ok();
    out.has("line 1\nline 2\nline 3\n").has("status: succeeded");
    assert!(out.line_time("line 3").saturating_sub(out.line_time("line 1")) >= Duration::from_millis(700), "live: {out}");
    // execution tail last, attached to a running action submitted on the other API node.
    let id = run_cmd(c.api(0), "echo start; sleep 1; for i in 1 2 3; do echo tail $i; sleep 0.3; done", json!({})).await;
    wait_status(c.api(0), &id, &["running"], Duration::from_secs(20)).await;
    let out = st2.run(&["execution", "tail", "last"]).await.ok();
    out.has("tail 1\ntail 2\ntail 3\n").has(&format!("Execution {id} has completed (status=succeeded)."));
    // cancel a running one: its process group is really stopped on its runner.
    let id = run_cmd(c.api(0), "echo $$; sleep 60", json!({})).await;
    let pgid = pgid_of(c.api(0), &id).await;
    st2.run(&["execution", "cancel", &id]).await.ok().has(&format!("action execution with id {id} canceled."));
    assert_eq!(wait_done(c.api(0), &id, Duration::from_secs(20)).await["status"], "canceled");
    assert_group_gone(pgid, Duration::from_secs(5)).await;
    // re-run, with a parameter override.
    let first = run_cmd(c.api(0), "echo first", json!({})).await;
    wait_done(c.api(0), &first, Duration::from_secs(20)).await;
    st2.run(&["execution", "re-run", &first, "cmd=echo again"]).await.ok().has("status: succeeded").has("stdout: again");
}
