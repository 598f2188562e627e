//! squall as a cluster on loopback: 2 API nodes and 2 runner nodes, separate processes, on the
//! machine's PostgreSQL and NATS — viewers on either API node follow executions that run on
//! either runner, byte-exact, by every follow path; the st2 CLI works against it; and the
//! failures the design promises to survive: a runner killed or paused, an API node killed, NATS
//! and PostgreSQL restarted, the same work delivered twice.

mod common;
#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/st2.rs"]
mod st2;

use std::process::Command;
use std::time::{Duration, Instant};


use cluster::{Cluster, Node};
use common::*;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

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
