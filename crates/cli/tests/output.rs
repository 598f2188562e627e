//! The output log end to end: what a process writes comes back from `/output` byte for byte,
//! whatever it is and however large.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};

async fn output(s: &Server, id: &str, kind: &str) -> Vec<u8> {
    get_bytes(s, &format!("/v1/executions/{id}/output?output_type={kind}")).await
}

#[tokio::test]
async fn binary_and_invalid_utf8_are_byte_exact() {
    let s = Server::start();
    // Every byte value, NUL and CR included, invalid UTF-8, ANSI colour, no trailing newline.
    let cmd = "printf 'a\\000b\\r\\n\\033[31mred\\033[0m\\n\\377\\376'; head -c 256 /dev/urandom > /tmp/$$.bin; cat /tmp/$$.bin; cat /tmp/$$.bin >&2; rm /tmp/$$.bin";
    let id = run_cmd(&s, cmd, json!({})).await;
    let e = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(e["status"], "succeeded");
    let out = output(&s, &id, "stdout").await;
    let err = output(&s, &id, "stderr").await;
    assert_eq!(&out[..20], b"a\0b\r\n\x1b[31mred\x1b[0m\n\xff\xfe");
    assert_eq!(out.len(), 20 + 256);
    assert_eq!(&out[20..], err.as_slice(), "same random bytes on both streams");
    let r = reqwest::get(s.url(&format!("/v1/executions/{id}/output"))).await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.bytes().await.unwrap().len(), out.len() + err.len());
    assert!(output(&s, &id, "bogus").await.is_empty(), "unknown output_type matches nothing");
}

#[tokio::test]
async fn interleaving_order_is_kept_by_seq() {
    let s = Server::start();
    // Alternate streams with a pause between writes so the order is well defined.
    let cmd = "for i in 1 2 3 4 5 6; do echo out$i; sleep 0.05; echo err$i >&2; sleep 0.05; done";
    let id = run_cmd(&s, cmd, json!({})).await;
    wait_done(&s, &id, Duration::from_secs(20)).await;
    let all = String::from_utf8(output(&s, &id, "all").await).unwrap();
    let want: String = (1..=6).map(|i| format!("out{i}\nerr{i}\n")).collect();
    assert_eq!(all, want);
    assert_eq!(String::from_utf8(output(&s, &id, "stdout").await).unwrap(), (1..=6).map(|i| format!("out{i}\n")).collect::<String>());
}

#[tokio::test]
async fn multibyte_characters_survive_slow_partial_writes() {
    let s = Server::start();
    // "é€😀" written one byte at a time with pauses longer than the partial-line flush delay.
    let cmd = r"for b in '\303' '\251' '\342' '\202' '\254' '\360' '\237' '\230' '\200'; do printf $b; sleep 0.02; done";
    let id = run_cmd(&s, cmd, json!({})).await;
    let e = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(output(&s, &id, "stdout").await, "é€😀".as_bytes());
    assert_eq!(e["result"]["stdout"], "é€😀", "JSON views never show a character cut in two");
}

#[tokio::test]
async fn a_100_mb_line_without_newline() {
    let s = Server::start();
    let id = run_cmd(&s, "head -c 104857600 /dev/zero | tr '\\0' x", json!({})).await;
    let e = wait_done(&s, &id, Duration::from_secs(300)).await;
    assert_eq!(e["status"], "succeeded");
    let out = output(&s, &id, "stdout").await;
    assert_eq!(out.len(), 104_857_600);
    assert!(out.iter().all(|b| *b == b'x'));
    let kept = e["result"]["stdout"].as_str().unwrap();
    assert!(kept.contains("bytes omitted"), "the result is a bounded view with a marker");
    assert!(kept.len() < 2 * 1024 * 1024);
}

#[tokio::test]
async fn one_gigabyte_of_lines_with_bounded_memory() {
    let s = Server::start();
    // 10,737,418 lines of 100 bytes = 1 GiB (minus a few bytes), generated without a pipe
    // bottleneck: `yes` repeats a 99-character line.
    let line = "x".repeat(99);
    let total: u64 = 1024 * 1024 * 1024;
    let cmd = format!("yes {line} | head -c {total}");
    let id = run_cmd(&s, &cmd, json!({"timeout": 600})).await;
    let mut peak_rss_kib = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        peak_rss_kib = peak_rss_kib.max(rss_kib(s.pid()));
        let (_, e) = get(&s, &format!("/v1/executions/{id}")).await;
        if TERMINAL.contains(&e["status"].as_str().unwrap()) {
            assert_eq!(e["status"], "succeeded", "{e}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "1 GiB did not finish in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stream the log back and hash it rather than holding it.
    let mut r = reqwest::get(s.url(&format!("/v1/executions/{id}/output?output_type=stdout"))).await.unwrap();
    let mut hash = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = r.chunk().await.unwrap() {
        len += chunk.len() as u64;
        hash.update(&chunk);
    }
    assert_eq!(len, total);
    let mut expected = Sha256::new();
    let unit = format!("{line}\n").repeat(1024);
    let mut left = total as usize;
    while left > 0 {
        let n = left.min(unit.len());
        expected.update(&unit.as_bytes()[..n]);
        left -= n;
    }
    assert_eq!(hash.finalize(), expected.finalize());
    assert!(peak_rss_kib < 256 * 1024, "server RSS peaked at {peak_rss_kib} KiB while capturing 1 GiB");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}
