//! The OpenAPI document (issue 17, items "OpenAPI" and "Schemathesis") against the real server.
//!
//! What it proves:
//! * `/v1/openapi.json` is served, without credentials, under every prefix clients use, and is
//!   the same document everywhere.
//! * Schemathesis, with every check, generates requests from that document for every operation
//!   that ends by itself and sends them to a fresh server with authentication on: no server error,
//!   no answer that breaks the document (status, content type, headers, body schema), no invalid
//!   request accepted, no valid one refused, no operation that ignores missing or bad credentials.
//!
//! **Why nothing generated can run on this machine.** The server is an API-only node
//! (`--role api`) on PostgreSQL and NATS: it has no runner at all, so an execution it accepts is
//! queued (on a NATS subject prefix of this test's own, that no runner reads) and stays
//! `requested`. Generated `cmd` parameters are stored, never run. Its packs directory is empty, so
//! only the built-in `core` actions exist.
//!
//! The long-lived streams (`/stream`, the SSE output stream, `/stdout`, `/stderr`) are documented
//! but not sent to Schemathesis: for an execution that never ends they never end either. Their
//! behaviour is tested by `live.rs`, `output.rs` and `authz.rs`.
//!
//! Every check runs but `use_after_free`: `DELETE /v1/executions/{id}` cancels, as StackStorm's
//! does, and the execution (and every path below it) stays; Schemathesis 4.32 does not honour
//! that check's switch per operation in its stateful phase, so it is off for the run. That a
//! deleted API key answers 404 is tested by `authz.rs`.
//!
//! Figures printed: operations, requests (counted by the server's own `/metrics`), test cases and
//! failures by kind. The long run (more examples) is in `docs/reliability.md`.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use cluster::{Cluster, nats_url, pg_url};
use common::Endpoint;
use serde_json::Value;

/// The Schemathesis release this test is written for (`scripts/test` installs it).
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Examples per operation and phase (Schemathesis' default): about a minute on two shared cores. `docs/reliability.md` records a longer run.
const MAX_EXAMPLES: &str = "100";
const ADMIN_PASSWORD: &str = "openapi-test-admin-password";

/// The `st` command: `SQUALL_TEST_SCHEMATHESIS`, else the virtual environment `scripts/test`
/// creates. Missing or another version is a failure that says how to install it.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("SQUALL_TEST_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/schemathesis-venv/bin/st"));
    let install = format!(
        "run ./scripts/test once (it installs it), or: python3 -m venv target/schemathesis-venv && \
         target/schemathesis-venv/bin/pip install schemathesis=={SCHEMATHESIS_VERSION} (or set SQUALL_TEST_SCHEMATHESIS to an `st` of that version)"
    );
    let out = Command::new(&path)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("Schemathesis is not installed at {} ({e}): {install}", path.display()));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.contains(SCHEMATHESIS_VERSION),
        "{} is {version:?}, not Schemathesis {SCHEMATHESIS_VERSION}: {install}",
        path.display()
    );
    path
}

async fn login(node: &impl Endpoint) -> String {
    let r = reqwest::Client::new().post(node.url("/auth/v1/tokens")).basic_auth("st2admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string()
}

/// Requests the server answered so far, by its `squall_http_requests_total`.
async fn requests_served(node: &impl Endpoint) -> u64 {
    let text = reqwest::get(node.url("/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("squall_http_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Schemathesis' configuration: the credentials, and where the document cannot say everything.
fn config(token: &str) -> String {
    format!(
        r#"
[auth.openapi.X-Auth-Token]
api_key = "{token}"

[auth.openapi.basic]
username = "st2admin"
password = "{ADMIN_PASSWORD}"

# Streams that last until the execution ends: never, on a node without a runner.
[[operations]]
include-operation-id = ["stream", "streamExecutionOutput", "executionStdout", "executionStderr"]
enabled = false

# Constraints that span several parameters, which OpenAPI cannot state, answer 400 to requests
# that are each schema-valid: `include_attributes` with `exclude_attributes`, an attribute name
# the resource lacks, an action that does not exist or parameters that do not fit the action's
# own schema (it is data, `GET /v1/actions/{{ref}}`), a `q` that is not a regular expression.
[[operations]]
include-operation-id = ["listActions", "listRunnerTypes", "listExecutions", "getExecution", "createExecution", "reRunExecution", "searchExecutionOutput"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_wrong_with_the_api_or_its_document() {
    let st = schemathesis();
    let cluster =
        Cluster::start_on(&pg_url(), &nats_url(), 1, 0, &[("SQUALL_AUTH__ENABLE", "true"), ("SQUALL_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let node = cluster.api(0);

    // The document: public, the same under every prefix, and OpenAPI 3.1.
    let mut served = Vec::new();
    for path in ["/v1/openapi.json", "/api/v1/openapi.json", "/openapi.json", "/v1/openapi.json/"] {
        let r = reqwest::get(node.url(path)).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        served.push(r.json::<Value>().await.unwrap());
    }
    assert!(served.windows(2).all(|w| w[0] == w[1]), "the document differs between prefixes");
    assert_eq!(served[0]["openapi"], "3.1.0");

    let token = login(node).await;
    let dir = cluster.dir.path();
    std::fs::write(dir.join("schemathesis.toml"), config(&token)).unwrap();
    let reports = dir.join("schemathesis-report");
    let before = requests_served(node).await;
    let started = Instant::now();
    let out = Command::new(&st)
        .current_dir(dir)
        .args(["--config-file", "schemathesis.toml", "run"])
        .arg(node.url("/v1/openapi.json"))
        .args(["--checks", "all", "--exclude-checks", "use_after_free"])
        .args(["--mode", "all", "--max-examples", MAX_EXAMPLES, "--seed", "42"])
        // One worker: with two threads, CPython 3.11's AST compiler (which hypothesis uses) can
        // fail with "AST constructor recursion depth mismatch", an error of the tool, not of squall.
        .args(["--workers", "1", "--request-timeout", "10", "--report", "json", "--report-dir"])
        .arg(&reports)
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let elapsed = started.elapsed();
    let requests = requests_served(node).await - before;
    let output = String::from_utf8_lossy(&out.stdout);

    let report = std::fs::read_dir(&reports).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "json"));
    let report: Value = match report {
        Some(path) => serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap(),
        None => panic!("Schemathesis wrote no report (exit {:?}):\n{output}\n{}", out.status, String::from_utf8_lossy(&out.stderr)),
    };
    let ops = &report["operations"];
    let failures = report["failures"].as_array().cloned().unwrap_or_default();
    let by_kind: Vec<String> = failures
        .iter()
        .map(|f| {
            format!("{} {} {}: {}", f["code"].as_str().unwrap_or("?"), f["title"].as_str().unwrap_or("?"), f["count"], f["operations"])
        })
        .collect();
    let kinds = if by_kind.is_empty() { "none".to_string() } else { by_kind.join("; ") };
    println!(
        "schemathesis: {} operations tested of {} ({} left out: the long-lived streams), {requests} requests, {} test cases, {} failures ({kinds}), {} errors, in {:.0} s",
        ops["tested"],
        ops["total"],
        ops["total"].as_u64().unwrap_or(0) - ops["selected"].as_u64().unwrap_or(0),
        report["test_cases"]["generated"],
        failures.iter().map(|f| f["count"].as_u64().unwrap_or(1)).sum::<u64>(),
        report["errors"].as_array().map_or(0, Vec::len),
        elapsed.as_secs_f64(),
    );
    assert!(
        failures.is_empty() && report["errors"].as_array().is_some_and(Vec::is_empty) && out.status.success(),
        "Schemathesis found problems (exit {:?}):\n{output}",
        out.status
    );
    assert_eq!(ops["selected"], ops["tested"], "operations selected but not tested:\n{output}");
    assert!(ops["tested"].as_u64().unwrap() >= 20 && requests > 1000, "too little was tested:\n{output}");
}
