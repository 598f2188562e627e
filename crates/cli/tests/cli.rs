//! The `squall` client against a real server: run, tail, output, list, get, cancel, re-run,
//! exit codes, and clean errors.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn squall(s: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_squall")).args(args).env("SQUALL_URL", &s.base).env("NO_COLOR", "1").output().expect("run squall")
}

/// The client as a user whose only setting is `HOME` (and so `~/.config/squall/config.toml`).
fn squall_at_home(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(args)
        .env("HOME", home)
        .env_remove("SQUALL_URL")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("run squall")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn run_tail_shows_lines_as_they_are_produced() {
    let s = Server::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["run", "core.local", "cmd=for i in 1 2 3; do echo line $i; sleep 0.7; done", "--tail"])
        .env("SQUALL_URL", &s.base)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut arrivals = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        arrivals.push((line.unwrap(), started.elapsed()));
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{err}");
    let lines: Vec<&str> = arrivals.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(lines, ["line 1", "line 2", "line 3"]);
    // Live, not all at the end: the lines arrive about as far apart as they were written.
    let gap = arrivals[2].1 - arrivals[0].1;
    assert!(gap >= Duration::from_millis(1000), "lines arrived together ({gap:?}): not live");
    assert!(err.contains("has started.") && err.contains("has completed (status=succeeded)."), "{err}");
}

#[tokio::test]
async fn tail_of_a_finished_execution_prints_everything_with_its_exit_code() {
    let s = Server::start();
    let cases = [
        ("printf 'a\\377\\000'; echo oops >&2; exit 0", json!({}), 0, "succeeded"),
        ("echo bad; exit 4", json!({}), 1, "failed"),
        ("echo slow; sleep 30", json!({"timeout": 1}), 3, "timeout"),
    ];
    for (cmd, extra, code, status) in cases {
        let id = run_cmd(&s, cmd, extra).await;
        wait_done(&s, &id, Duration::from_secs(30)).await;
        let out = squall(&s, &["execution", "tail", &id]);
        assert_eq!(out.status.code(), Some(code), "{cmd}: {}", text(&out.stderr));
        let stored = get_bytes(&s, &format!("/v1/executions/{id}/output?output_type=stdout")).await;
        assert_eq!(out.stdout, stored, "tail > file reproduces the action's stdout byte for byte");
        assert!(text(&out.stderr).contains(&format!("Execution {id} has completed (status={status}).")));
    }
    // Streams stay apart: the action's stderr goes to tail's stderr.
    let id = run_cmd(&s, "echo to-out; echo to-err >&2", json!({})).await;
    wait_done(&s, &id, Duration::from_secs(20)).await;
    let out = squall(&s, &["execution", "tail", "last"]);
    assert_eq!(text(&out.stdout), "to-out\n");
    assert!(text(&out.stderr).starts_with("to-err\n"));
    // One chosen stream goes to stdout, as `output --type` does (`tail --type stderr > file`).
    let only_err = squall(&s, &["execution", "tail", &id, "--type", "stderr"]);
    assert_eq!(text(&only_err.stdout), "to-err\n");
    let meta = squall(&s, &["execution", "tail", &id, "--include-metadata", "--type", "stdout"]);
    let line = text(&meta.stdout);
    assert!(line.starts_with("[20") && line.ends_with("Z][stdout] to-out\n"), "{line}");
}

#[tokio::test]
async fn canceled_executions_exit_with_their_code() {
    let s = Server::start();
    let id = run_cmd(&s, "sleep 30", json!({})).await;
    wait_status(&s, &id, &["running"], Duration::from_secs(20)).await;
    let tail = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["execution", "tail", &id])
        .env("SQUALL_URL", &s.base)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = squall(&s, &["execution", "cancel", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&id));
    let tail = tail.wait_with_output().unwrap();
    assert_eq!(tail.status.code(), Some(4));
    let again = squall(&s, &["execution", "cancel", &run_and_wait(&s, "true").await]);
    assert_eq!(again.status.code(), Some(6));
    assert!(text(&again.stderr).contains("Action cannot be canceled. State = succeeded."));
}

async fn run_and_wait(s: &Server, cmd: &str) -> String {
    let id = run_cmd(s, cmd, json!({})).await;
    wait_done(s, &id, Duration::from_secs(20)).await;
    id
}

#[tokio::test]
async fn tail_survives_a_server_restart_without_loss_or_repeat() {
    let mut s = Server::start();
    let id = run_cmd(&s, "i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo line $i; sleep 0.005; done; sleep 30", json!({})).await;
    let mut tail = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["execution", "tail", &id])
        .env("SQUALL_URL", &s.base)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(tail.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert_eq!(first, "line 1\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.restart(); // the running execution becomes `abandoned`; its log stays
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    let status = tail.wait().unwrap();
    let seen = first + &text(&rest);
    let stored = text(&get_bytes(&s, &format!("/v1/executions/{id}/output?output_type=stdout")).await);
    assert_eq!(seen, stored, "nothing lost, nothing repeated");
    assert_eq!(status.code(), Some(5), "abandoned");
    let mut err = String::new();
    tail.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("Lost the connection to") && err.contains("Reconnected; resuming after record"), "{err}");
}

#[tokio::test]
async fn only_new_skips_what_came_before() {
    let s = Server::start();
    let id = run_cmd(&s, "echo old; sleep 1.5; echo new", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_bytes(&s, &format!("/v1/executions/{id}/output")).await.is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = squall(&s, &["execution", "tail", &id, "--only-new"]);
    assert_eq!(text(&out.stdout), "new\n");
    let all = squall(&s, &["execution", "tail", &id]);
    assert_eq!(text(&all.stdout), "old\nnew\n");
}

#[tokio::test]
async fn run_get_list_output_and_rerun() {
    let s = Server::start();
    let out = squall(&s, &["run", "core.local", "echo", "hello", "world"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("succeeded") && text(&out.stdout).contains("hello world"));

    let out = squall(&s, &["run", "core.local", "cmd=echo '{\"k\": 1}'", "timeout=30", "--json"]);
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["result"]["stdout"], json!({"k": 1}));
    assert_eq!(e["parameters"]["timeout"], 30, "typed from the runner's parameter definition");
    let id = e["id"].as_str().unwrap().to_string();

    let out = squall(&s, &["run", "core.local", "cmd=exit 2"]);
    assert_eq!(out.status.code(), Some(1));

    let out = squall(&s, &["run", "core.local", "cmd=sleep 0.2", "--async"]);
    let async_id = text(&out.stdout).trim().to_string();
    assert_eq!(async_id.len(), 24);

    let out = squall(&s, &["execution", "get", &id, "--json"]);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"], id.as_str());
    let out = squall(&s, &["execution", "get", "last", "--detail"]);
    assert!(text(&out.stdout).contains(&async_id) && text(&out.stdout).contains("requested"));

    let out = squall(&s, &["execution", "list", "-n", "10", "--status", "failed"]);
    let table = text(&out.stdout);
    assert!(table.starts_with("ID") && table.lines().count() == 2, "{table}");
    let out = squall(&s, &["execution", "list", "--json", "--action", "core.local"]);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().len(), 4);

    let out = squall(&s, &["execution", "output", &id]);
    assert_eq!(text(&out.stdout), "{\"k\": 1}\n");

    let out = squall(&s, &["execution", "re-run", &id, "cmd=echo again", "--json"]);
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["result"]["stdout"], "again");
    assert_eq!(again["parameters"]["timeout"], 30);

    let out = squall(&s, &["action", "list", "--pack", "core"]);
    assert!(text(&out.stdout).contains("core.local"));
    let out = squall(&s, &["action", "get", "core.echo"]);
    assert!(text(&out.stdout).contains("message"));
}

#[tokio::test]
async fn errors_are_one_clear_line() {
    let s = Server::start();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "core.nope"], "core.nope"),
        (vec!["run", "core.local", "cmd=x", "timeout=soon"], "parameter timeout"),
        (vec!["run", "core.local", "cmd=x", "bogus=1"], "Additional properties are not allowed"),
        (vec!["execution", "get", "0123456789abcdef01234567"], "Unable to identify resource"),
        (vec!["execution", "tail", "nope"], "Unable to identify resource"),
        (vec!["action", "get", "core.nope"], "not found"),
    ];
    for (args, want) in cases {
        let out = squall(&s, &args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{args:?}: {err}");
        assert!(err.contains(want) && err.lines().count() == 1 && !err.contains("panicked"), "{args:?}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_squall")).args(["--url", "http://127.0.0.1:1", "action", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert!(text(&out.stderr).contains("cannot reach the squall server"));
    let out = Command::new(env!("CARGO_BIN_EXE_squall")).args(["execution", "frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn the_url_comes_from_the_user_config_file() {
    let s = Server::start();
    let home = tempfile::tempdir().unwrap();
    write_file(&home.path().join(".config/squall/config.toml"), &format!("url = \"{}\"\n", s.base));
    let out = squall_at_home(home.path(), &["action", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test]
async fn small_conveniences() {
    let s = Server::start();
    // Shell completion knows the subcommands.
    let out = squall(&s, &["completion", "bash"]);
    assert!(out.status.success() && text(&out.stdout).contains("execution") && text(&out.stdout).contains("complete"));
    // `version` names the commit.
    let out = squall(&s, &["version"]);
    assert!(out.status.success() && text(&out.stdout).starts_with("squall "), "{}", text(&out.stdout));
    // An unknown status is refused with the list of valid ones.
    let out = squall(&s, &["execution", "list", "--status", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("possible values"), "{}", text(&out.stderr));
    // `action get` lists the runner's parameters too.
    let out = squall(&s, &["action", "get", "core.local"]);
    let table = text(&out.stdout);
    assert!(table.contains("timeout") && table.contains("runner") && table.contains("env") && table.contains("cwd"), "{table}");
    // A parameter error names the action and where to look.
    let out = squall(&s, &["run", "core.local", "timeout=5"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(text(&out.stderr).contains("squall action get core.local"), "{}", text(&out.stderr));
    // A run that fails in the runner says why.
    let out = squall(&s, &["run", "core.remote", "hosts=127.0.0.1:1", "cmd=true", "--tail"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("error:"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn every_command_speaks_json() {
    let s = Server::start();
    let json_of = |args: &[&str]| -> Value {
        let out = squall(&s, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", text(&out.stdout)))
    };
    assert!(json_of(&["version", "--json"])["version"].is_string());
    let id = run_and_wait(&s, "echo one; sleep 0.2; echo two >&2").await; // two pipes: only time orders them
    assert_eq!(json_of(&["execution", "output", &id, "--json"])["data"], "one\ntwo\n");
    assert_eq!(json_of(&["--json", "execution", "get", &id])["id"], id.as_str());

    // tail: one object per record and line, the final status last.
    let out = squall(&s, &["execution", "tail", &id, "--json"]);
    let lines: Vec<Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    let data: Vec<(&str, &str)> = lines.iter().filter_map(|l| Some((l["output_type"].as_str()?, l["data"].as_str()?))).collect();
    assert_eq!(data, [("stdout", "one\n"), ("stderr", "two\n")], "{}", text(&out.stdout));
    assert_eq!(lines.last().unwrap()["status"], "succeeded");

    let running = run_cmd(&s, "sleep 30", json!({})).await;
    wait_status(&s, &running, &["running"], Duration::from_secs(20)).await;
    assert_eq!(json_of(&["execution", "cancel", &running, "--json"])["id"], running.as_str());
    assert!(json_of(&["action", "list", "--json"]).as_array().is_some_and(|a| !a.is_empty()));
    assert!(json_of(&["logout", "--json"]).get("logged_out").is_some());
    let data_dir = s.data_dir();
    let data_dir = data_dir.to_str().unwrap();
    let purge = json_of(&["purge", "output", "--older-than", "30d", "--dry-run", "--data-dir", data_dir, "--json"]);
    assert_eq!((purge["dry_run"].as_bool(), purge["would_purge"].as_u64()), (Some(true), Some(0)));
    assert!(json_of(&["pack", "list", "--json"])["actions"].is_array());
}

#[tokio::test]
async fn mistakes_in_filters_and_config_are_reported() {
    let s = Server::start();
    let out = squall(&s, &["execution", "list", "--action", "core.nosuch"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(text(&out.stderr).contains("no action core.nosuch"), "{}", text(&out.stderr));
    let home = tempfile::tempdir().unwrap();
    for (config, want) in [("urll = \"http://x\"\n", "unknown field `urll`"), ("url = 9101\n", "invalid type")] {
        write_file(&home.path().join(".config/squall/config.toml"), config);
        let out = squall_at_home(home.path(), &["action", "list"]);
        assert_eq!(out.status.code(), Some(6), "{config}");
        let err = text(&out.stderr);
        assert!(err.contains("config.toml") && err.contains(want), "{config}: {err}");
    }
    // Help shows no environment values (nor a stray `=` where there is none).
    for args in [&["purge", "output", "--help"][..], &["server", "--help"], &["pack", "list", "--help"]] {
        let help = text(&squall(&s, args).stdout);
        assert!(help.contains("[env: SQUALL_") && !help.contains("=]"), "{args:?}: {help}");
    }
}

#[tokio::test]
async fn the_example_configurations_are_valid() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let out =
        Command::new(env!("CARGO_BIN_EXE_squall")).args(["pack", "list", "--config"]).arg(examples.join("squall.toml")).output().unwrap();
    assert!(out.status.success(), "examples/squall.toml: {}", text(&out.stderr));
    let s = Server::start();
    let home = tempfile::tempdir().unwrap();
    let client = std::fs::read_to_string(examples.join("config.toml")).unwrap().replace("http://127.0.0.1:9101", &s.base);
    write_file(&home.path().join(".config/squall/config.toml"), &client);
    let out = squall_at_home(home.path(), &["action", "list"]);
    assert!(out.status.success(), "examples/config.toml: {}", text(&out.stderr));
}

#[tokio::test]
async fn the_server_logs_json_lines_from_its_configuration_and_never_a_query_token() {
    let s = Server::start_with(&[("SQUALL_LOG__FORMAT", "json"), ("SQUALL_LOG", "info,squall_server=debug")]);
    let id = run_cmd(&s, "echo hi", json!({})).await;
    wait_done(&s, &id, Duration::from_secs(30)).await;
    let token = "0123456789abcdef-not-a-real-token";
    let r = reqwest::get(s.url(&format!("/v1/executions?x-auth-token={token}"))).await.unwrap();
    assert!(r.status().is_client_error() || r.status().is_success());
    let r = reqwest::get(s.url(&format!("/stream/v1/executions/{id}/output?x-auth-token={token}"))).await.unwrap();
    let _ = r.bytes().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = s.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("listening on http://")), "{log}");
    assert!(!log.contains(token), "a token from a query string reached the log:\n{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes in a log that is not a terminal");
}
