//! The `action-chain` runner against the real server: each task is a child execution that
//! streams like any other; the real `st2` CLI tails the chain; cancel stops the running child.

mod common;
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
async fn an_invalid_chain_is_listed_as_unavailable() {
    let mut s = Server::start();
    let pack = s.packs_dir().join("bad");
    write_file(&pack.join("pack.yaml"), "name: bad\n");
    write_file(&pack.join("actions/c.yaml"), "name: c\nrunner_type: action-chain\nentry_point: chains/c.yaml\n");
    write_file(&pack.join("actions/chains/c.yaml"), "chain:\n  - name: a\n    ref: core.local\n    on-success: b\n");
    s.restart();
    let (code, body) = post(&s, "/v1/executions", json!({"action": "bad.c"})).await;
    assert_eq!(code, 400);
    assert!(body["faultstring"].as_str().unwrap().contains("Unable to find node with name \"b\""), "{body}");
}
