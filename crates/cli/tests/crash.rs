//! The kill -9 loop: writers with known output and live viewers, the server killed with SIGKILL at
//! random moments, again and again. After every restart: no execution is left `running`, `seq` is
//! dense, each stored stream is an exact prefix of what its process wrote, everything a viewer saw
//! is stored, and a viewer resuming with `Last-Event-ID` ends with exactly the stored bytes. The
//! database passes SQLite's integrity check. The fault model is a process crash (the kernel keeps
//! the page cache), not a power cut.
//!
//! `SQUALL_TEST_CRASH_KILLS` sets the number of kills (CI: 50; the long run in
//! docs/reliability.md: 1,000).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const WRITERS: usize = 3;
const VIEWERS_PER_WRITER: usize = 2;

/// The command writer `w` runs: numbered lines, forever (until the kill), a little at a time.
fn writer_cmd(w: usize) -> String {
    format!("i=0; while :; do i=$((i+1)); echo \"w{w} line $i\"; if [ $((i % 50)) -eq 0 ]; then sleep 0.01; fi; done")
}

/// The first `len` bytes writer `w` produces.
fn written(w: usize, len: usize) -> String {
    let mut out = String::with_capacity(len + 32);
    let mut i = 0;
    while out.len() < len {
        i += 1;
        out.push_str(&format!("w{w} line {i}\n"));
    }
    out.truncate(len);
    out
}

struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What a viewer received before its connection ended: (last `seq`, text of every record).
/// `connected` is told once the stream is open.
async fn view(url: String, connected: tokio::sync::oneshot::Sender<()>) -> (Option<String>, String) {
    let mut sse = Sse::open(&url, &[]).await;
    let _ = connected.send(());
    let (mut last, mut text) = (None, String::new());
    while let Some(e) = sse.next().await {
        if e.event.as_deref() == Some("st2.execution.output__create") {
            text.push_str(&output_text(std::slice::from_ref(&e)));
            last = e.id.clone();
        }
    }
    (last, text)
}

#[tokio::test]
async fn kill_9_at_random_moments_loses_and_corrupts_nothing() {
    let kills: usize = std::env::var("SQUALL_TEST_CRASH_KILLS").ok().and_then(|n| n.parse().ok()).unwrap_or(50);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut s = Server::start();
    let started = Instant::now();
    let (mut executions, mut stored_bytes, mut records) = (0, 0, 0);
    for kill in 0..kills {
        let mut ids = Vec::new();
        for w in 0..WRITERS {
            ids.push(run_cmd(&s, &writer_cmd(w), json!({"timeout": 600})).await);
        }
        let mut viewers = Vec::new();
        for id in ids.iter().flat_map(|id| std::iter::repeat_n(id, VIEWERS_PER_WRITER)) {
            let (connected, is_connected) = tokio::sync::oneshot::channel();
            viewers.push((id.clone(), tokio::spawn(view(s.url(&format!("/stream/v1/executions/{id}/output")), connected))));
            is_connected.await.expect("the viewer connected");
        }
        tokio::time::sleep(Duration::from_millis(20 + rng.below(280))).await;
        s.kill9();
        let mut seen = Vec::new();
        for (id, viewer) in viewers {
            seen.push((id, viewer.await.expect("viewer task")));
        }
        s.restart();

        for (w, id) in ids.iter().enumerate() {
            let e = get(&s, &format!("/v1/executions/{id}")).await.1;
            let status = e["status"].as_str().unwrap_or_default().to_string();
            assert!(["abandoned", "failed", "succeeded"].contains(&status.as_str()), "kill {kill}: {id} is {status} after the restart");
            let stdout = String::from_utf8(get_bytes(&s, &format!("/v1/executions/{id}/output?output_type=stdout")).await).unwrap();
            assert_eq!(stdout, written(w, stdout.len()), "kill {kill}: {id}'s stdout is not a prefix of what it wrote");
            let all = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &[]).await.rest().await;
            let seqs: Vec<u64> =
                all.iter().filter(|e| e.event.as_deref() != Some("EOF")).filter_map(|e| e.id.as_ref()?.parse().ok()).collect();
            assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "kill {kill}: {id}'s seq is not dense");
            stored_bytes += stdout.len();
            records += seqs.len();
        }
        for (id, (last, text)) in seen {
            let stored = String::from_utf8(get_bytes(&s, &format!("/v1/executions/{id}/output")).await).unwrap();
            assert!(stored.starts_with(&text), "kill {kill}: a viewer of {id} saw bytes that are not stored");
            let headers: Vec<(&str, &str)> = last.as_deref().map(|l| vec![("Last-Event-ID", l)]).unwrap_or_default();
            let resumed = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &headers).await.rest().await;
            assert_eq!(text + &output_text(&resumed), stored, "kill {kill}: a resumed viewer of {id} did not end with the stored bytes");
        }
        executions += ids.len();
        if kill % 10 == 9 {
            integrity_check(&s).await;
        }
    }
    integrity_check(&s).await;
    let listed = get(&s, "/v1/executions?limit=100&status=running").await.1;
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "no execution left running: {listed}");
    println!(
        "kill -9 loop: {kills} kills, {executions} executions, {WRITERS} writers × {VIEWERS_PER_WRITER} viewers each time, \
         {records} records and {:.1} MiB of stdout checked, in {:.1} s",
        stored_bytes as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64()
    );
}
