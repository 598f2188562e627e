//! The `action-chain` runner against the real server: each task is a child execution that
//! streams like any other; the real `st2` CLI tails the chain; cancel stops the running child.

mod common;
#[path = "common/sshd.rs"]
mod sshd;
#[path = "common/st2.rs"]
mod st2;

use std::time::Duration;

use common::{Server, get, post, wait_done, wait_status, write_file};
use serde_json::{Value, json};
use st2::{Layout, St2, completed};

/// Pack `flow`: a five-task chain mixing a command, a script and a Python action, with
/// `publish`, `vars` and an `on-failure` path; and a chain whose first task sleeps.
fn write_flow_pack(packs: &std::path::Path) {
    let pack = packs.join("flow");
    write_file(&pack.join("pack.yaml"), "name: flow\nversion: 0.1.0\n");
    write_file(
        &pack.join("actions/demo.yaml"),
        "name: demo\nrunner_type: action-chain\nentry_point: chains/demo.yaml\nparameters:\n  count: {type: integer, default: 3}\n",
    );
    write_file(
        &pack.join("actions/chains/demo.yaml"),
        r#"vars:
  greeting: "hello {{ count }}"
chain:
  - name: first
    ref: core.local
    params:
      cmd: "for i in $(seq {{ count }}); do echo first $i; sleep 0.5; done"
    publish:
      said: "{{ first.stdout }}"
    on-success: script
  - name: script
    ref: flow.script
    params:
      word: "{{ greeting }}"
    on-success: py
  - name: py
    ref: flow.py
    params:
      n: "{{ count }}"
    on-success: broken
  - name: broken
    ref: core.local
    params:
      cmd: "echo oops >&2; exit 3"
    on-failure: recover
  - name: recover
    ref: core.local
    params:
      cmd: "echo recovered from {{ broken.return_code }} after {{ py.result }}"
"#,
    );
    write_file(
        &pack.join("actions/script.yaml"),
        "name: script\nrunner_type: local-shell-script\nentry_point: script.sh\nparameters:\n  word: {type: string, position: 0}\n",
    );
    write_file(&pack.join("actions/script.sh"), "#!/bin/bash\necho \"script says $1\"\n");
    write_file(
        &pack.join("actions/py.yaml"),
        "name: py\nrunner_type: python-script\nentry_point: py.py\nparameters:\n  n: {type: integer}\n",
    );
    write_file(
        &pack.join("actions/py.py"),
        "from st2common.runners.base_action import Action\n\nclass Double(Action):\n    def run(self, n):\n        print('python got', n)\n        return n * 2\n",
    );
    write_file(&pack.join("actions/slow.yaml"), "name: slow\nrunner_type: action-chain\nentry_point: chains/slow.yaml\n");
    write_file(
        &pack.join("actions/chains/slow.yaml"),
        "chain:\n  - name: wait\n    ref: core.local\n    params: {cmd: 'echo waiting; sleep 30 # squall-chain-cancel-marker'}\n    on-success: never\n  - name: never\n    ref: core.local\n    params: {cmd: 'echo never'}\n",
    );
}

async fn start_with_flow() -> Server {
    let mut s = Server::start();
    write_flow_pack(&s.packs_dir());
    s.restart();
    s
}

#[tokio::test]
async fn a_chain_runs_each_task_as_a_child_and_st2_tails_them_live() {
    let s = start_with_flow().await;
    let (code, e) = post(&s, "/v1/executions", json!({"action": "flow.demo"})).await;
    assert_eq!(code, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    let tail = St2::new(&s, Layout::BareV1).spawn(&["execution", "tail", &id]);
    let out = tail.finish(Duration::from_secs(60)).await.ok();
    let text = out.all();

    let done = wait_done(&s, &id, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let children: Vec<String> = done["children"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let tasks: Vec<&str> = done["result"]["tasks"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tasks, ["first", "script", "py", "broken", "recover"]);
    assert_eq!(children.len(), 5);
    assert_eq!(done["result"]["published"]["said"], "first 1\nfirst 2\nfirst 3");
    assert_eq!(done["result"]["tasks"][3]["state"], "failed");
    assert_eq!(done["result"]["tasks"][4]["result"]["stdout"], "recovered from 3 after 6");

    // Every child's start, output and finish, in order, then the chain's completion.
    let mut expected = Vec::new();
    for (task, child) in tasks.iter().zip(&children) {
        expected.push(format!("Child execution (task={task}) {child} has started."));
        let status = if *task == "broken" { "failed" } else { "succeeded" };
        let output = match *task {
            "first" => "first 3",
            "script" => "script says hello 3",
            "py" => "python got 3",
            "broken" => "oops",
            _ => "recovered from 3 after 6",
        };
        expected.push(output.to_string());
        expected.push(format!("Child execution (task={task}) {child} has finished (status={status})."));
    }
    expected.push(completed(&id, "succeeded"));
    let mut at = 0;
    for needle in &expected {
        let found = text[at..].find(needle.as_str()).unwrap_or_else(|| panic!("{needle:?} not after byte {at} of:\n{text}"));
        at += found + needle.len();
    }
    // Live: lines arrived while the chain ran (st2 may join a little late; the start is replayed).
    let lines = out.timed_lines();
    let when = |needle: &str| lines.iter().find(|(_, l)| l.contains(needle)).map(|(t, _)| *t).unwrap();
    assert!(when("recovered from") - when("first 1") >= Duration::from_millis(300), "{lines:?}");

    for (task, child) in tasks.iter().zip(&children) {
        let (_, c) = get(&s, &format!("/v1/executions/{child}")).await;
        assert_eq!(c["parent"], id.as_str());
        assert_eq!(c["context"]["parent"]["execution_id"], id.as_str());
        assert_eq!(c["context"]["chain"]["name"], *task);
        assert_eq!(c["context"]["user"], done["context"]["user"]);
    }
    let (_, listed) = get(&s, &format!("/v1/executions/{id}/children")).await;
    let listed: Vec<&str> = listed.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(listed, children.iter().map(String::as_str).collect::<Vec<_>>());
    let (_, filtered) = get(&s, &format!("/v1/executions?parent={id}")).await;
    assert_eq!(filtered.as_array().unwrap().len(), 5);
    let (_, top) = get(&s, "/v1/executions?parent=null").await;
    assert!(top.as_array().unwrap().iter().all(|e| e.get("parent").is_none()));
}

fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker)))
        .count()
}

#[tokio::test]
async fn canceling_a_chain_cancels_its_running_task_and_starts_no_other() {
    let s = start_with_flow().await;
    let (_, e) = post(&s, "/v1/executions", json!({"action": "flow.slow"})).await;
    let id = e["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let child = loop {
        let (_, chain) = get(&s, &format!("/v1/executions/{id}")).await;
        if let Some(Value::String(child)) = chain["children"].get(0) {
            break child.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no child started: {chain}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    wait_status(&s, &child, &["running"], Duration::from_secs(20)).await;
    let r = reqwest::Client::new().delete(s.url(&format!("/v1/executions/{id}"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let done = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "canceled", "{done}");
    assert_eq!(wait_done(&s, &child, Duration::from_secs(20)).await["status"], "canceled");
    assert_eq!(done["children"].as_array().unwrap().len(), 1, "no further task started: {done}");
    assert_eq!(processes_with("squall-chain-cancel-marker"), 0, "the task's process is gone");
}

#[tokio::test]
async fn a_chain_that_does_not_parse_is_unavailable_and_a_missing_task_fails_the_run() {
    let mut s = Server::start();
    let pack = s.packs_dir().join("bad");
    write_file(&pack.join("pack.yaml"), "name: bad\n");
    write_file(&pack.join("actions/c.yaml"), "name: c\nrunner_type: action-chain\nentry_point: chains/c.yaml\n");
    write_file(&pack.join("actions/chains/c.yaml"), "chain: [unclosed\n");
    write_file(&pack.join("actions/d.yaml"), "name: d\nrunner_type: action-chain\nentry_point: chains/d.yaml\n");
    write_file(&pack.join("actions/chains/d.yaml"), "chain:\n  - name: a\n    ref: core.local\n    on-success: b\n");
    s.restart();
    let (code, body) = post(&s, "/v1/executions", json!({"action": "bad.c"})).await;
    assert_eq!(code, 400);
    assert!(body["faultstring"].as_str().unwrap().contains("chains/c.yaml is not valid"), "{body}");
    let (_, e) = post(&s, "/v1/executions", json!({"action": "bad.d"})).await;
    let done = wait_done(&s, e["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(done["status"], "failed");
    assert!(done["result"]["error"].as_str().unwrap().contains("Unable to find node with name \"b\""), "{done}");
    assert!(done.get("children").is_none(), "no task ran: {done}");
}

/// `squall execution tail ID [ARGS]` of a chain, as (stdout, stderr).
fn squall_tail(s: &Server, id: &str, args: &[&str]) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["execution", "tail", id])
        .args(args)
        .env("SQUALL_URL", &s.base)
        .env("NO_COLOR", "1")
        .output()
        .expect("run squall");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn squall_execution_tail_follows_a_chain_joined_midway_and_after_the_end() {
    let s = start_with_flow().await;
    let (_, e) = post(&s, "/v1/executions", json!({"action": "flow.demo"})).await;
    let id = e["id"].as_str().unwrap().to_string();
    // Join once the first task has printed a line.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, chain) = get(&s, &format!("/v1/executions/{id}")).await;
        if let Some(Value::String(child)) = chain["children"].get(0)
            && reqwest::get(s.url(&format!("/v1/executions/{child}/stdout"))).await.unwrap().text().await.unwrap().contains("first 1")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the first task printed nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (midway_out, midway_err) = squall_tail(&s, &id, &[]);
    let (after_out, after_err) = squall_tail(&s, &id, &[]);
    let stdout = "first 1\nfirst 2\nfirst 3\nscript says hello 3\npython got 3\nrecovered from 3 after 6\n";
    assert_eq!(midway_out, stdout, "{midway_err}");
    assert_eq!(after_out, stdout, "{after_err}");
    for err in [&midway_err, &after_err] {
        let tasks: Vec<&str> = err.lines().filter(|l| l.starts_with("Child execution") && l.ends_with("has started.")).collect();
        assert_eq!(tasks.len(), 5, "{err}");
        assert!(err.contains("oops") && err.contains("(task=broken)") && err.contains("has finished (status=failed)."), "{err}");
        assert!(err.trim_end().ends_with(&format!("Execution {id} has completed (status=succeeded).")), "{err}");
    }
    assert!(midway_err.contains(&format!("Execution {id} has started.")), "joined while it ran: {midway_err}");

    let (with_metadata, _) = squall_tail(&s, &id, &["--include-metadata"]);
    assert!(with_metadata.lines().any(|l| l.contains("][stdout][task=script] script says hello 3")), "{with_metadata}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["execution", "get", &id])
        .env("SQUALL_URL", &s.base)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = tree.lines().skip_while(|l| !l.starts_with("TASK")).collect();
    assert_eq!(rows.len(), 6, "a header and five tasks: {tree}");
    assert!(rows[1].starts_with("first") && rows[1].contains("core.local") && rows[1].contains("succeeded"), "{tree}");
    assert!(rows[4].starts_with("broken") && rows[4].contains("failed"), "{tree}");
}

/// Pack `demo10`: ten tasks in a line, as StackStorm's streaming demo has them — a marker line
/// between tasks that each interleave stdout and stderr: a command, a script, a Python action,
/// a remote command and a remote script (on the test sshd).
fn write_ten_task_pack(packs: &std::path::Path) {
    let pack = packs.join("demo10");
    write_file(&pack.join("pack.yaml"), "name: demo10\nversion: 0.1.0\n");
    write_file(
        &pack.join("actions/stream.yaml"),
        "name: stream\nrunner_type: action-chain\nentry_point: chains/stream.yaml\nparameters:\n  count: {type: integer, default: 4}\n  hosts: {type: string, required: true}\n  username: {type: string, required: true}\n  private_key: {type: string, required: true, secret: true}\n",
    );
    let lines = "for i in $(seq {{ count }}); do if [ $((i % 2)) = 0 ]; then echo \\\"$0 out $i\\\"; else echo \\\"$0 err $i\\\" >&2; fi; sleep 0.1; done";
    let remote = "hosts: '{{ hosts }}', username: '{{ username }}', private_key: '{{ private_key }}'";
    let tasks = [
        ("t1", "core.local", "cmd: \"echo 'Task 1'\"".to_string()),
        ("t2", "core.local", format!("cmd: \"bash -c '{lines}' local\"")),
        ("t3", "core.local", "cmd: \"echo 'Task 3'\"".to_string()),
        ("t4", "demo10.script", "count: '{{ count }}'".to_string()),
        ("t5", "core.local", "cmd: \"echo 'Task 5'\"".to_string()),
        ("t6", "demo10.py", "count: '{{ count }}'".to_string()),
        ("t7", "core.local", "cmd: \"echo 'Task 7'\"".to_string()),
        ("t8", "core.remote", format!("{remote}, cmd: \"bash -c '{lines}' remote\"")),
        ("t9", "core.local", "cmd: \"echo 'Task 9'\"".to_string()),
        ("t10", "demo10.rscript", format!("{remote}, count: '{{{{ count }}}}'")),
    ];
    let mut chain = String::from("chain:\n");
    for (i, (name, action, params)) in tasks.iter().enumerate() {
        chain += &format!("  - name: {name}\n    ref: {action}\n    params: {{{params}}}\n");
        if let Some((next, _, _)) = tasks.get(i + 1) {
            chain += &format!("    on-success: {next}\n");
        }
    }
    write_file(&pack.join("actions/chains/stream.yaml"), &chain);
    let script = "#!/bin/bash\nfor i in $(seq \"$1\"); do if [ $((i % 2)) = 0 ]; then echo \"$2 out $i\"; else echo \"$2 err $i\" >&2; fi; sleep 0.1; done\n";
    write_file(
        &pack.join("actions/script.yaml"),
        "name: script\nrunner_type: local-shell-script\nentry_point: lines.sh\nparameters:\n  count: {type: integer, position: 0}\n  label: {type: string, position: 1, default: script}\n",
    );
    write_file(
        &pack.join("actions/rscript.yaml"),
        "name: rscript\nrunner_type: remote-shell-script\nentry_point: lines.sh\nparameters:\n  count: {type: integer, position: 0}\n  label: {type: string, position: 1, default: rscript}\n",
    );
    write_file(&pack.join("actions/lines.sh"), script);
    write_file(
        &pack.join("actions/py.yaml"),
        "name: py\nrunner_type: python-script\nentry_point: lines.py\nparameters:\n  count: {type: integer}\n",
    );
    write_file(
        &pack.join("actions/lines.py"),
        "import sys, time\nfrom st2common.runners.base_action import Action\n\nclass Lines(Action):\n    def run(self, count):\n        for i in range(1, count + 1):\n            print('python %s %d' % ('out' if i % 2 == 0 else 'err', i), file=sys.stdout if i % 2 == 0 else sys.stderr, flush=True)\n            time.sleep(0.1)\n",
    );
}

#[tokio::test]
async fn a_ten_task_chain_of_every_kind_streams_through_st2() {
    let sshd = sshd::Sshd::start();
    let mut s = Server::start_with(&[("SQUALL_SSH_RUNNER__SSH_CONNECT_TIMEOUT", "5")]);
    write_ten_task_pack(&s.packs_dir());
    s.restart();
    let parameters = json!({
        "hosts": format!("127.0.0.1:{}", sshd.port),
        "username": sshd::USER,
        "private_key": sshd::account().key_material,
    });
    let (code, e) = post(&s, "/v1/executions", json!({"action": "demo10.stream", "parameters": parameters})).await;
    assert_eq!(code, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    let out = St2::new(&s, Layout::BareV1).spawn(&["execution", "tail", &id]).finish(Duration::from_secs(120)).await.ok();
    let text = out.all();
    let done = wait_done(&s, &id, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "succeeded", "{done}\n{text}");
    let children = done["children"].as_array().unwrap();
    assert_eq!(children.len(), 10, "{done}");
    let mut at = 0;
    for (i, child) in children.iter().enumerate() {
        let child = child.as_str().unwrap();
        let task = format!("t{}", i + 1);
        let mut expected = vec![format!("Child execution (task={task}) {child} has started.")];
        match i + 1 {
            n if n % 2 == 1 => expected.push(format!("Task {n}")),
            n => {
                let label = ["local", "script", "python", "remote", "rscript"][n / 2 - 1];
                expected.extend((1..=4).map(|k| format!("{label} {} {k}", if k % 2 == 0 { "out" } else { "err" })));
            }
        }
        expected.push(format!("Child execution (task={task}) {child} has finished (status=succeeded)."));
        for needle in expected {
            let found = text[at..].find(needle.as_str()).unwrap_or_else(|| panic!("{needle:?} not after byte {at} of:\n{text}"));
            at += found + needle.len();
        }
    }
    assert!(text[at..].contains(&completed(&id, "succeeded")), "{text}");
    assert!(!text.contains(sshd::account().key_material.lines().nth(1).unwrap()), "the key is never shown");
}

#[tokio::test]
async fn a_chain_does_not_hold_the_only_runner_slot() {
    let mut s = Server::start_with(&[("SQUALL_ACTIONRUNNER__ACTIONS_POOL_SIZE", "1")]);
    write_flow_pack(&s.packs_dir());
    s.restart();
    let (_, e) = post(&s, "/v1/executions", json!({"action": "flow.demo", "parameters": {"count": 1}})).await;
    let done = wait_done(&s, e["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
}

#[tokio::test]
async fn a_task_that_times_out_fails_the_chain_with_timeout() {
    let mut s = Server::start();
    let pack = s.packs_dir().join("late");
    write_file(&pack.join("pack.yaml"), "name: late\n");
    write_file(&pack.join("actions/c.yaml"), "name: c\nrunner_type: action-chain\nentry_point: chains/c.yaml\n");
    write_file(
        &pack.join("actions/chains/c.yaml"),
        "chain:\n  - name: slow\n    ref: core.local\n    params: {cmd: 'sleep 20', timeout: 1}\n    on-success: after\n  - name: after\n    ref: core.local\n    params: {cmd: 'echo after'}\n",
    );
    s.restart();
    let (_, e) = post(&s, "/v1/executions", json!({"action": "late.c"})).await;
    let done = wait_done(&s, e["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(done["status"], "timeout", "{done}");
    assert_eq!(done["result"]["tasks"][0]["state"], "timeout");
    assert_eq!(done["children"].as_array().unwrap().len(), 1, "on-success is not taken: {done}");
}
