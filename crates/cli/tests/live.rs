//! Live output against the real server: joining at any moment, resuming from any point, slow
//! viewers, instant actions, heartbeats, and state that goes away with its viewers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::future::join_all;
use serde_json::{Value, json};

/// Thousands of numbered lines on both streams, bursts and pauses, some partial lines.
const CHATTY: &str = "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo \"out $i\"; if [ $((i % 7)) -eq 0 ]; then echo \"err $i\" >&2; fi; if [ $((i % 500)) -eq 0 ]; then printf 'partial-%s' $i; sleep 0.05; echo ' done'; fi; done";

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().filter_map(|e| e.id.as_ref()?.parse().ok()).collect()
}

#[tokio::test]
async fn viewers_joining_at_random_moments_see_exactly_the_stored_bytes() {
    let s = Server::start();
    for round in 0..3 {
        let id = run_cmd(&s, CHATTY, json!({})).await;
        let viewers = (0..8).map(|i| {
            let url = s.url(&format!("/stream/v1/executions/{id}/output"));
            async move {
                tokio::time::sleep(Duration::from_millis(((i * 37 + round * 11) % 90) as u64)).await;
                Sse::open(&url, &[]).await.rest().await
            }
        });
        let results = join_all(viewers).await;
        wait_done(&s, &id, Duration::from_secs(60)).await;
        let stored = String::from_utf8(get_bytes(&s, &format!("/v1/executions/{id}/output")).await).unwrap();
        let stdout = String::from_utf8(get_bytes(&s, &format!("/v1/executions/{id}/output?output_type=stdout")).await).unwrap();
        assert!(stdout.ends_with("out 3000\npartial-3000 done\n") && stdout.contains("partial-1500 done\n"));
        for events in results {
            assert_eq!(output_text(&events), stored, "a viewer saw different bytes");
            let seq = seqs(&events);
            assert!(
                seq.windows(2).all(|w| w[1] == w[0] + 1 || w[1] == w[0]),
                "seq strictly increasing without gaps (EOF repeats the last)"
            );
            assert_eq!(events.last().unwrap().event.as_deref(), Some("EOF"));
        }
    }
}

#[tokio::test]
async fn resume_with_last_event_id_has_no_gap_and_no_duplicate() {
    let mut s = Server::start();
    let id = run_cmd(&s, &format!("{CHATTY}; sleep 30"), json!({})).await;
    let url = s.url(&format!("/stream/v1/executions/{id}/output"));
    let mut collected = String::new();
    let mut last: Option<String> = None;
    // Read a few events, drop the connection, resume — many times, mid-burst.
    for hop in 0..6 {
        let headers: Vec<(&str, &str)> = last.as_deref().map(|l| vec![("Last-Event-ID", l)]).unwrap_or_default();
        let mut sse = Sse::open(&url, &headers).await;
        for _ in 0..(3 + hop * 5) {
            let Some(ev) = sse.next().await else { break };
            collected.push_str(&output_text(std::slice::from_ref(&ev)));
            last = ev.id.clone();
        }
    }
    // Restart the server mid-run: the execution ends `abandoned`, its log stays.
    s.restart();
    let by_query = Sse::open(&format!("{url}?after={}", last.as_deref().unwrap()), &[]).await.rest().await;
    collected.push_str(&output_text(&by_query));
    let stored = String::from_utf8(get_bytes(&s, &format!("/v1/executions/{id}/output")).await).unwrap();
    assert_eq!(collected, stored);
    assert_eq!(by_query.last().unwrap().event.as_deref(), Some("EOF"));
}

#[tokio::test]
async fn a_stalled_viewer_does_not_slow_the_action_and_gets_everything_later() {
    let s = Server::start();
    let cmd = "yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c 50000000";
    let unwatched_started = Instant::now();
    let plain = run_cmd(&s, cmd, json!({})).await;
    wait_done(&s, &plain, Duration::from_secs(120)).await;
    let unwatched = unwatched_started.elapsed();

    let id = run_cmd(&s, &format!("sleep 0.3; {cmd}"), json!({})).await;
    // Open the stream and read nothing while the action runs.
    let mut stalled = reqwest::get(s.url(&format!("/v1/executions/{id}/stdout"))).await.unwrap();
    let watched_started = Instant::now();
    let e = wait_done(&s, &id, Duration::from_secs(120)).await;
    let watched = watched_started.elapsed();
    assert_eq!(e["status"], "succeeded", "the action finished while its viewer was not reading");
    eprintln!("unwatched {unwatched:?}, with a stalled viewer {watched:?}");
    // Now read: every byte arrives, from the store.
    let mut len = 0usize;
    while let Some(chunk) = stalled.chunk().await.unwrap() {
        len += chunk.len();
    }
    assert_eq!(len, 50_000_000);
}

#[tokio::test]
async fn instant_actions_always_end_the_follow() {
    let s = Server::start();
    let started = Instant::now();
    let runs: Vec<_> = (0..1000).collect();
    for batch in runs.chunks(10) {
        let checks = batch.iter().map(|i| {
            let s = &s;
            async move {
                let id = run_cmd(s, "true", json!({})).await;
                // Alternate the client's path: StackStorm's tail stream, then squall's own.
                let follow = async {
                    if i % 2 == 0 {
                        let url = s.url(&format!(
                            "/v1/stream?end_event=st2.execution__update&end_execution_id={id}&events=st2.execution__update%2Cst2.execution.output__create"
                        ));
                        let events = Sse::open(&url, &[]).await.rest().await;
                        let last: Value = serde_json::from_str(&events.last().expect("completion event").data).unwrap();
                        assert_eq!(last["status"], "succeeded");
                    } else {
                        let events = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &[]).await.rest().await;
                        assert_eq!(events.last().unwrap().event.as_deref(), Some("EOF"));
                    }
                };
                tokio::time::timeout(Duration::from_secs(20), follow).await.expect("a follow hung");
            }
        });
        join_all(checks).await;
    }
    eprintln!("1000 instant actions followed in {:?}", started.elapsed());
}

#[tokio::test]
async fn the_tail_stream_replays_earlier_output_and_announces_running() {
    let s = Server::start();
    let id = run_cmd(&s, "echo early; sleep 1; echo late", json!({})).await;
    wait_status(&s, &id, &["running"], Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = s.url(&format!(
        "/v1/stream?end_event=st2.execution__update&end_execution_id={id}&events=st2.execution__update%2Cst2.execution.output__create"
    ));
    let events = Sse::open(&url, &[]).await.rest().await;
    let statuses: Vec<String> = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("st2.execution__update"))
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["running", "succeeded"]);
    assert_eq!(output_text(&events), "early\nlate\n");
    for e in events.iter().filter(|e| e.event.as_deref() == Some("st2.execution.output__create")) {
        let payload: Value = serde_json::from_str(&e.data).unwrap();
        assert!(payload.get("status").is_none() && payload["execution_id"] == id.as_str());
    }
}

#[tokio::test]
async fn the_global_stream_filters_on_the_server() {
    let s = Server::start();
    let mine_url = s.url("/stream?events=st2.execution__create%2Cst2.execution.output__create&action_refs=core.echo");
    let mut sse = Sse::open(&mine_url, &[]).await;
    run_cmd(&s, "echo not-for-you", json!({})).await;
    let (_, echo) = post(&s, "/v1/executions", json!({"action": "core.echo", "parameters": {"message": "for you"}})).await;
    let first = sse.next().await.unwrap();
    assert_eq!(first.event.as_deref(), Some("st2.execution__create"));
    assert_eq!(serde_json::from_str::<Value>(&first.data).unwrap()["id"], echo["id"]);
    let second = sse.next().await.unwrap();
    assert_eq!(output_text(&[second]), "for you\n");

    // The default event list has no output events.
    let mut defaults = Sse::open(&s.url("/v1/stream"), &[]).await;
    run_cmd(&s, "echo x", json!({})).await;
    for _ in 0..3 {
        let e = defaults.next().await.unwrap();
        assert!(e.event.as_deref().unwrap().starts_with("st2.execution__"), "{e:?}");
    }
}

#[tokio::test]
async fn plain_followers_are_byte_exact_and_end_with_the_execution() {
    let s = Server::start();
    let id = run_cmd(&s, "printf 'a\\000\\377'; sleep 0.3; printf 'err\\n' >&2; printf 'b\\r\\n'", json!({})).await;
    let (out, err) = tokio::join!(async { reqwest::get(s.url(&format!("/v1/executions/{id}/stdout"))).await.unwrap() }, async {
        reqwest::get(s.url(&format!("/api/v1/executions/{id}/stderr"))).await.unwrap()
    },);
    assert_eq!(out.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(out.bytes().await.unwrap().as_ref(), b"a\0\xffb\r\n");
    assert_eq!(err.bytes().await.unwrap().as_ref(), b"err\n");
    let (code, body) = get(&s, "/v1/executions/nope/stdout").await;
    assert_eq!((code, body["faultstring"].as_str().unwrap()), (404, "Unable to identify resource with id \"nope\"."));
}

#[tokio::test]
async fn heartbeats_keep_an_idle_stream_alive() {
    let s = Server::start_with(&[("SQUALL_STREAM__HEARTBEAT", "1")]);
    let id = run_cmd(&s, "sleep 3.5; echo bye", json!({})).await;
    let sse = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &[]).await;
    let started = Instant::now();
    let mut sse = sse;
    let ev = sse.next().await.unwrap();
    assert_eq!(output_text(&[ev]), "bye\n");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(sse.keepalives >= 3, "one keep-alive on connect and one per idle second, got {}", sse.keepalives);
}

#[tokio::test]
async fn heartbeats_only_fill_silences() {
    let s = Server::start_with(&[("SQUALL_STREAM__HEARTBEAT", "1")]);
    let id = run_cmd(&s, "for i in 1 2 3 4 5 6 7 8 9 10; do echo $i; sleep 0.25; done; sleep 2.6; echo bye", json!({})).await;
    let mut sse = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &[]).await;
    let mut lines = String::new();
    while !lines.ends_with("10\n") {
        lines.push_str(&output_text(&[sse.next().await.unwrap()]));
    }
    assert_eq!(sse.keepalives, 1, "only the keep-alive on connect while output flows every 0.25 s");
    assert_eq!(output_text(&[sse.next().await.unwrap()]), "bye\n");
    assert!((2..=4).contains(&sse.keepalives), "one keep-alive per idle second after the output stopped, got {}", sse.keepalives);
}

#[tokio::test]
async fn viewers_leave_no_state_behind() {
    let s = Server::start();
    let id = run_cmd(&s, "sleep 5", json!({})).await;
    wait_status(&s, &id, &["running"], Duration::from_secs(20)).await;
    for batch in 0..10 {
        let opened = (0..100).map(|i| {
            let url = if (batch + i) % 2 == 0 {
                s.url(&format!("/stream/v1/executions/{id}/output"))
            } else {
                s.url(&format!("/v1/executions/{id}/stdout"))
            };
            async move { reqwest::get(url).await.unwrap() }
        });
        let responses = join_all(opened).await;
        assert_eq!(get(&s, "/squall/stats").await.1["live_executions"], 1);
        drop(responses);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&s, "/squall/stats").await.1["live_executions"] != 0 {
        assert!(Instant::now() < deadline, "per-execution state outlived its 1,000 viewers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn with_stream_output_off_viewers_get_the_output_at_completion() {
    let s = Server::start_with(&[("SQUALL_ACTIONRUNNER__STREAM_OUTPUT", "false")]);
    let id = run_cmd(&s, "sleep 0.5; echo one; sleep 0.5; echo two", json!({})).await;
    let mut sse = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &[]).await;
    let first = sse.next().await.unwrap();
    let done = get(&s, &format!("/v1/executions/{id}")).await.1;
    assert_eq!(done["status"], "succeeded", "nothing was delivered before completion");
    let mut events = vec![first];
    events.extend(sse.rest().await);
    assert_eq!(output_text(&events), "one\ntwo\n");
}

/// The frames of a whole record-stream body: (head, bytes) per record, then the end line.
fn record_frames(mut body: &[u8]) -> (Vec<(Value, Vec<u8>)>, Value) {
    let mut records = Vec::new();
    loop {
        let eol = body.iter().position(|b| *b == b'\n').expect("a complete line");
        let line = &body[..eol];
        body = &body[eol + 1..];
        if line.is_empty() {
            continue; // a heartbeat
        }
        let head: Value = serde_json::from_slice(line).unwrap();
        if head["end"] == true {
            assert!(body.is_empty(), "nothing after the end line");
            return (records, head);
        }
        let length = head["length"].as_u64().unwrap() as usize;
        records.push((head, body[..length].to_vec()));
        body = &body[length..];
    }
}

#[tokio::test]
async fn the_record_stream_is_byte_exact_resumes_and_filters() {
    let s = Server::start();
    let cmd = "printf 'a\\000\\377\\n'; sleep 0.2; printf 'err\\n' >&2; sleep 0.2; printf 'b\\r\\n'; sleep 0.2; printf 'c'; exit 3";
    let id = run_cmd(&s, cmd, json!({})).await;
    let read = |query: &'static str, last_event_id: Option<String>| {
        let url = s.url(&format!("/v1/executions/{id}/output{query}"));
        async move {
            let mut req = reqwest::Client::new().get(url).header("accept", "application/vnd.squall.records");
            if let Some(l) = last_event_id {
                req = req.header("Last-Event-ID", l);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.headers()["content-type"], "application/vnd.squall.records");
            resp.bytes().await.unwrap().to_vec()
        }
    };
    // Joined while it runs: everything, live, to the end.
    let (records, end) = record_frames(&read("", None).await);
    assert_eq!((end["status"].as_str(), end["seq"].as_u64()), (Some("failed"), records.last().map(|r| r.0["seq"].as_u64().unwrap())));
    let seqs: Vec<u64> = records.iter().map(|r| r.0["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "every record, in order");
    let of = |kind: &str| -> Vec<u8> { records.iter().filter(|r| r.0["output_type"] == kind).flat_map(|r| r.1.clone()).collect() };
    assert_eq!(of("stdout"), b"a\0\xff\nb\r\nc");
    assert_eq!(of("stderr"), b"err\n");
    assert_eq!(of("stdout"), get_bytes(&s, &format!("/v1/executions/{id}/stdout")).await);
    for (head, _) in &records {
        assert_eq!(head["execution_id"], id.as_str());
        assert!(head.get("data").is_none() && head.get("data_b64").is_none() && head["timestamp"].is_string(), "{head}");
    }
    // Resumed after record 2, by header and by query: exactly the records after it.
    let after: Vec<u64> = seqs.iter().copied().filter(|s| *s > 2).collect();
    for body in [read("", Some("2".into())).await, read("?after=2", None).await] {
        let (resumed, end) = record_frames(&body);
        assert_eq!(resumed.iter().map(|r| r.0["seq"].as_u64().unwrap()).collect::<Vec<_>>(), after);
        assert_eq!(end["status"], "failed");
    }
    // One stream only; the end still names the last record of the log.
    let (errs, end) = record_frames(&read("?output_type=stderr", None).await);
    assert_eq!(errs.iter().flat_map(|r| r.1.clone()).collect::<Vec<u8>>(), b"err\n");
    assert_eq!(end["seq"].as_u64(), seqs.last().copied());
}
