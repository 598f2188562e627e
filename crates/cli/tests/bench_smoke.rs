//! Smoke test of `squall bench`: every scenario runs at a tiny size (`--quick`) and prints one
//! JSON object with the expected keys. No timing is asserted — only that the benchmark code
//! works and that its correctness checks (every byte, every line) hold.

use std::process::Command;

use serde_json::Value;

fn bench(scenario: &str) -> Value {
    bench_with(scenario, &[])
}

/// `squall bench SCENARIO --quick --json EXTRA…` on a temporary directory of its own; the
/// cluster runs use the test machine's PostgreSQL and NATS (`SQUALL_TEST_DATABASE_URL`,
/// `SQUALL_TEST_NATS_URL`, as the other cluster tests).
fn bench_with(scenario: &str, extra: &[&str]) -> Value {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_squall"));
    cmd.args(["bench", scenario, "--quick", "--json", "--tmp-dir"]).arg(tmp.path()).args(extra);
    if let Ok(url) = std::env::var("SQUALL_TEST_DATABASE_URL") {
        cmd.env("SQUALL_BENCH_DATABASE_URL", url);
    }
    if let Ok(url) = std::env::var("SQUALL_TEST_NATS_URL") {
        cmd.env("SQUALL_BENCH_NATS_URL", url);
    }
    let out = cmd.output().expect("run squall bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "squall bench {scenario} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"));
    assert_eq!(v["scenario"], scenario);
    for key in ["description", "scale", "machine", "available", "parameters", "figures", "baseline", "ratio", "targets"] {
        assert!(v.get(key).is_some(), "{scenario}: no {key:?} in {v}");
    }
    assert_eq!(v["scale"], 0.001);
    assert!(v["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "{scenario} left temporary files behind");
    v
}

/// The figures every target names are reported, and the correctness targets hold.
fn check(v: &Value, figures: &[&str], with_baseline: bool) {
    let scenario = v["scenario"].as_str().unwrap();
    assert_eq!(v["available"], true, "{v}");
    for f in figures {
        assert!(v["figures"].get(*f).is_some_and(|x| !x.is_null()), "{scenario}: figure {f:?} missing in {}", v["figures"]);
    }
    for t in v["targets"].as_array().unwrap() {
        let figure = t["figure"].as_str().unwrap();
        assert!(!t["value"].is_null(), "{scenario}: target {figure} has no value");
        if t["value"].is_boolean() {
            assert_eq!(t["holds"], true, "{scenario}: correctness check {figure} failed: {v}");
        }
    }
    if with_baseline {
        assert!(v["baseline"].is_object(), "{scenario}: no baseline");
        assert!(v["ratio"].as_f64().is_some_and(|r| r > 0.0), "{scenario}: no ratio");
    }
}

#[test]
fn ingest() {
    check(&bench("ingest"), &["elapsed_s", "throughput_mib_s", "every_byte_committed", "server_peak_rss_mib"], true);
}

#[test]
fn lines() {
    check(&bench("lines"), &["elapsed_s", "every_byte_committed"], true);
}

#[test]
fn latency() {
    check(&bench("latency"), &["latency_p50_ms", "latency_p99_ms", "every_line"], false);
}

#[test]
fn fanout() {
    check(&bench("fanout"), &["every_viewer_every_line", "latency_p99_ms", "server_peak_rss_mib"], false);
}

#[test]
fn firehose() {
    let v = bench("firehose");
    check(&v, &["elapsed_s", "every_viewer_every_byte", "floor_elapsed_s", "floor_ratio", "watched_to_floor"], true);
    assert_eq!(v["figures"]["floor_every_byte"], true, "the loopback floor's viewers got every byte: {v}");
}

#[test]
fn join() {
    let v = bench("join");
    check(&v, &["first_byte_ms", "throughput_mib_s", "every_byte", "floor_elapsed_s", "floor_ratio", "join_to_floor"], true);
    assert_eq!(v["figures"]["floor_every_byte"], true, "the loopback floor sent the file's bytes: {v}");
}

#[test]
fn executions() {
    check(&bench("executions"), &["completed_per_s", "completed_p99_ms", "all_succeeded"], false);
}

#[test]
fn idle() {
    check(&bench("idle"), &["ready_ms", "idle_rss_mib", "ingest_peak_rss_mib"], false);
}

#[test]
fn mask() {
    let v = bench("mask");
    if v["available"] == false {
        // Reported honestly, with no figures.
        assert_eq!(v["reason"], "not available: output masking is not implemented yet");
        assert_eq!(v["figures"], serde_json::json!({}));
        assert!(v["ratio"].is_null());
    } else {
        check(&v, &["elapsed_s", "every_byte_committed"], true);
    }
}

#[test]
fn latency_on_a_cluster() {
    let v = bench_with("latency", &["--cluster"]);
    assert_eq!(v["cluster"], true);
    check(&v, &["latency_p50_ms", "latency_p99_ms", "every_line"], true);
}

#[test]
fn executions_on_a_cluster() {
    check(&bench_with("executions", &["--cluster"]), &["completed_per_s", "all_succeeded"], true);
}

#[test]
fn failover() {
    let v = bench("failover");
    assert_eq!(v["cluster"], true, "failover always runs on a cluster");
    check(&v, &["abandoned_s", "group_gone"], false);
}
