//! The remote runners against real `sshd`s on loopback: every host streams live and tagged,
//! timeouts and cancels stop the remote process group, an unreachable host fails alone, scripts
//! are uploaded and removed, and secrets stay off remote command lines.

mod common;
#[path = "common/sshd.rs"]
mod sshd;

use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::{Value, json};
use sshd::{Sshd, USER, account};

fn server() -> Server {
    Server::start_with(&[("SQUALL_SSH_RUNNER__SSH_CONNECT_TIMEOUT", "5")])
}

async fn run_remote(s: &Server, action: &str, parameters: Value) -> String {
    let (code, body) = post(s, "/v1/executions", json!({"action": action, "parameters": parameters})).await;
    assert_eq!(code, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// Key login with the key given as material.
fn with_key(mut params: Value) -> Value {
    params["username"] = json!(USER);
    params["private_key"] = json!(account().key_material);
    params
}

/// Output records of a finished SSE follow: (host, stream, bytes).
fn records(events: &[Event]) -> Vec<(Option<String>, String, Vec<u8>)> {
    events
        .iter()
        .filter(|e| e.event.as_deref() == Some("st2.execution.output__create"))
        .map(|e| {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            let data = base64::engine::general_purpose::STANDARD.decode(v["data_b64"].as_str().unwrap()).unwrap();
            (v["host"].as_str().map(String::from), v["output_type"].as_str().unwrap().to_string(), data)
        })
        .collect()
}

fn stream_of(records: &[(Option<String>, String, Vec<u8>)], host: &str, stream: &str) -> Vec<u8> {
    records.iter().filter(|(h, s, _)| h.as_deref() == Some(host) && s == stream).flat_map(|(_, _, d)| d.clone()).collect()
}

#[tokio::test]
async fn two_hosts_stream_live_tagged_and_complete() {
    let (a, b) = (Sshd::start(), Sshd::start());
    let mut s = server();
    ops_pack(&mut s);
    // Both hosts print a line, wait, and print the rest: an empty line, a character split
    // across two writes, and a last line without a newline.
    let cmd = r#"echo "start $SSH_CONNECTION"; sleep 2; printf 'a\n\nb \303'; sleep 0.3; printf '\251\n'; echo oops >&2; printf end"#;
    let params = with_key(json!({"hosts": format!("localhost:{}, 127.0.0.1:{}", a.port, b.port), "cmd": cmd}));
    let id = run_remote(&s, "ops.everywhere", params).await;
    let mut sse = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output?encoding=base64")), &[]).await;
    let mut started = std::collections::BTreeSet::new();
    while started.len() < 2 {
        let event = sse.next().await.expect("stream open");
        if event.event.as_deref() == Some("st2.execution.output__create") {
            let v: Value = serde_json::from_str(&event.data).unwrap();
            started.insert(v["host"].as_str().expect("every record names its host").to_string());
        }
    }
    let (_, e) = get(&s, &format!("/v1/executions/{id}")).await;
    assert_eq!(e["status"], "running", "both hosts' first lines arrived while both were still running");
    assert_eq!(started.into_iter().collect::<Vec<_>>(), ["127.0.0.1", "localhost"]);

    let rest = sse.rest().await;
    let all = records(&rest);
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    for host in ["localhost", "127.0.0.1"] {
        let out = stream_of(&all, host, "stdout");
        assert_eq!(out, "a\n\nb é\nend".as_bytes(), "{host}: nothing invented, nothing dropped");
        assert_eq!(stream_of(&all, host, "stderr"), b"oops\n");
        let result = &done["result"][host];
        assert_eq!((result["return_code"].clone(), result["succeeded"].clone()), (json!(0), json!(true)), "{result}");
        assert!(result["stdout"].as_str().unwrap().starts_with("start "), "{result}");
        assert!(result["stdout"].as_str().unwrap().ends_with("a\n\nb é\nend"), "{result}");
        assert_eq!(result["stderr"], "oops");
        // The raw follow endpoint with a host filter gives exactly that host's bytes.
        let raw = get_bytes(&s, &format!("/v1/executions/{id}/stdout?host={host}")).await;
        assert!(raw.ends_with("a\n\nb é\nend".as_bytes()) && raw.starts_with(b"start "), "{}", String::from_utf8_lossy(&raw));
        let own_port = if host == "localhost" { a.port } else { b.port };
        let first = String::from_utf8_lossy(&raw).lines().next().unwrap().to_string();
        assert!(first.ends_with(&format!(" {own_port}")), "{host} sees only its own lines: {first}");
    }
    for (_, _, data) in &all {
        assert!(std::str::from_utf8(data).is_ok(), "no record splits a character: {data:?}");
    }

    // The client shows the host with the metadata, and filters by it.
    let squall = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_squall")).args(args).env("SQUALL_URL", &s.base).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let tagged = squall(&["execution", "tail", &id, "--include-metadata"]);
    assert!(tagged.contains("Z][stdout][localhost] a\n") && tagged.contains("Z][stdout][127.0.0.1] a\n"), "{tagged}");
    let one = squall(&["execution", "output", &id, "--host", "127.0.0.1", "--type", "stdout"]);
    assert!(one.starts_with("start ") && one.ends_with("a\n\nb é\nend") && one.matches("start").count() == 1, "{one}");
}

#[tokio::test]
async fn timeout_stops_the_remote_process_group() {
    let a = Sshd::start();
    let s = server();
    let cmd = "(sleep 4711 &); sleep 4712; echo never";
    let id = run_remote(&s, "core.remote", with_key(json!({"hosts": format!("127.0.0.1:{}", a.port), "cmd": cmd, "timeout": 2}))).await;
    let started = Instant::now();
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "timeout", "{done}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let host = &done["result"]["127.0.0.1"];
    assert_eq!((host["timeout"].clone(), host["return_code"].clone()), (json!(true), json!(-9)), "{host}");
    assert!(host["error"].as_str().unwrap().contains("didn't finish in 2 seconds"), "{host}");
    assert_gone("sleep 471").await;
}

#[tokio::test]
async fn cancel_stops_the_remote_process_group() {
    let a = Sshd::start();
    let s = server();
    let cmd = "echo ready; (sleep 4721 &); sleep 4722";
    let id = run_remote(&s, "core.remote", with_key(json!({"hosts": format!("127.0.0.1:{}", a.port), "cmd": cmd, "timeout": 600}))).await;
    let mut sse = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &[]).await;
    while !output_text(&[sse.next().await.expect("output")]).contains("ready") {}
    let deadline = Instant::now() + Duration::from_secs(10);
    while sshd::user_processes_with("sleep 472").len() < 2 {
        assert!(Instant::now() < deadline, "both sleeps should be running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = reqwest::Client::new().delete(s.url(&format!("/v1/executions/{id}"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "canceled", "{done}");
    assert_gone("sleep 472").await;
}

/// The processes are gone on the remote side (here: the same machine).
async fn assert_gone(needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = sshd::user_processes_with(needle);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still running remotely: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_unreachable_host_fails_alone_and_fast() {
    let a = Sshd::start();
    let s = server();
    let closed = sshd::free_port();
    let hosts = format!("localhost:{closed},127.0.0.1:{}", a.port);
    let started = Instant::now();
    let id = run_remote(&s, "core.remote", with_key(json!({"hosts": hosts, "cmd": "echo fine"}))).await;
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert!(started.elapsed() < Duration::from_secs(5), "within the connect timeout: {:?}", started.elapsed());
    assert_eq!(done["status"], "failed", "all hosts must succeed by default: {done}");
    let bad = &done["result"]["localhost"];
    assert_eq!((bad["return_code"].clone(), bad["failed"].clone()), (json!(255), json!(true)), "{bad}");
    assert!(bad["error"].as_str().unwrap().starts_with("Failed connecting to host localhost."), "{bad}");
    assert_eq!(done["result"]["127.0.0.1"]["stdout"], "fine");
    let text = String::from_utf8(get_bytes(&s, &format!("/v1/executions/{id}/output?host=localhost")).await).unwrap();
    assert!(text.starts_with("Failed connecting to host localhost."), "viewers see why: {text}");

    // With allow_partial_failure one good host is enough; with no reachable host at all the
    // execution fails with StackStorm's message.
    let s = Server::start_with(&[("SQUALL_SSH_RUNNER__ALLOW_PARTIAL_FAILURE", "true")]);
    let id = run_remote(&s, "core.remote", with_key(json!({"hosts": hosts, "cmd": "echo fine"}))).await;
    assert_eq!(wait_done(&s, &id, Duration::from_secs(30)).await["status"], "succeeded");
    let id = run_remote(&s, "core.remote", with_key(json!({"hosts": format!("127.0.0.1:{closed}"), "cmd": "true"}))).await;
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "failed");
    assert!(done["result"]["error"].as_str().unwrap().starts_with("Unable to connect to any one of the hosts: ['127.0.0.1']."), "{done}");
    let id = run_remote(&s, "core.remote", with_key(json!({"hosts": " , ", "cmd": "true"}))).await;
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["result"]["error"], format!("No hosts specified to run action for action {id}."));
}

/// A pack with a remote script and a command that runs on every host at once (`parallel` is
/// immutable in the runner, so only an action can turn it on, as in StackStorm).
fn ops_pack(s: &mut Server) {
    let actions = s.packs_dir().join("ops/actions");
    write_file(&s.packs_dir().join("ops/pack.yaml"), "name: ops\nversion: 0.1.0\n");
    write_file(
        &actions.join("everywhere.yaml"),
        "name: everywhere\nrunner_type: remote-shell-cmd\nparameters:\n  cmd: {type: string, required: true}\n  \
         parallel: {default: true, immutable: true}\n",
    );
    write_file(
        &actions.join("probe.yaml"),
        "name: probe\nrunner_type: remote-shell-script\nentry_point: probe.sh\nparameters:\n  \
         name: {type: string, position: 0}\n  count: {type: integer}\n  token: {type: string, secret: true}\n",
    );
    write_file(
        &actions.join("probe.sh"),
        "#!/bin/sh\nd=$(cd \"$(dirname \"$0\")\" && pwd)\necho \"dir=$d\"\necho \"args=$*\"\necho \"pwd=$(pwd)\"\n\
         cat \"$d/lib/helper.txt\"\necho \"user=$(id -un)\"\n[ -n \"$SLEEP\" ] && sleep \"$SLEEP\"\nexit 0\n",
    );
    write_file(&actions.join("lib/helper.txt"), "helper from lib\n");
    s.restart();
}

#[tokio::test]
async fn scripts_are_uploaded_run_with_arguments_and_removed() {
    let a = Sshd::start();
    let mut s = server();
    ops_pack(&mut s);
    let params =
        with_key(json!({"hosts": format!("127.0.0.1:{}", a.port), "name": "it's me", "count": 3, "token": "tok-3141592653", "cwd": "/"}));
    let id = run_remote(&s, "ops.probe", params).await;
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let stdout = done["result"]["127.0.0.1"]["stdout"].as_str().unwrap().to_string();
    let dir = stdout.lines().next().unwrap().strip_prefix("dir=").unwrap().to_string();
    assert!(dir.starts_with(&format!("/tmp/squall-{id}")), "{stdout}");
    assert!(stdout.contains("args=--count=3 --token=******** it's me"), "secret argument masked: {stdout}");
    assert!(stdout.contains("pwd=/\nhelper from lib\nuser=squall-ssh"), "{stdout}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is removed after the run");

    // Removed after a timeout too.
    let params = with_key(json!({"hosts": format!("127.0.0.1:{}", a.port), "name": "x", "env": {"SLEEP": "30"}, "timeout": 2}));
    let id = run_remote(&s, "ops.probe", params).await;
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "timeout", "{done}");
    let stdout = done["result"]["127.0.0.1"]["stdout"].as_str().unwrap().to_string();
    let dir = stdout.lines().next().unwrap().strip_prefix("dir=").unwrap().to_string();
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is removed after a timeout");
}

#[tokio::test]
async fn passwords_never_reach_a_remote_command_line() {
    let a = Sshd::start();
    let s = server();
    let password = account().password.clone();
    let params = json!({
        "hosts": format!("127.0.0.1:{}", a.port), "username": USER, "password": password, "sudo_password": password,
        "cmd": "sleep 2; id -un; echo \"$ST2_ACTION_AUTH_TOKEN\" | wc -c", "env": {"API_SECRET": "env-secret-value"}
    });
    let id = run_remote(&s, "core.remote_sudo", params).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen_running = false;
    loop {
        let (_, e) = get(&s, &format!("/v1/executions/{id}")).await;
        let lines = sshd::processes_with("sleep 2");
        seen_running |= !lines.is_empty();
        for secret in [password.as_str(), "env-secret-value"] {
            let leaked = sshd::processes_with(secret);
            assert!(leaked.is_empty(), "a secret is visible in ps: {leaked:?}");
        }
        if TERMINAL.contains(&e["status"].as_str().unwrap()) {
            break;
        }
        assert!(Instant::now() < deadline, "still {}", e["status"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_running, "the command was observed while it ran");
    let done = wait_done(&s, &id, Duration::from_secs(5)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let stdout = done["result"]["127.0.0.1"]["stdout"].as_str().unwrap().to_string();
    assert!(stdout.starts_with("root\n"), "ran through sudo: {stdout}");
    assert!(stdout.trim_end().ends_with("33"), "the action token reached the command: {stdout}");

    // A wrong sudo password is named as such.
    let params = json!({"hosts": format!("127.0.0.1:{}", a.port), "username": USER, "password": password, "sudo_password": "wrong-password", "cmd": "true"});
    let id = run_remote(&s, "core.remote_sudo", params).await;
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(
        done["result"]["127.0.0.1"]["error"],
        format!("Invalid sudo password provided or sudo is not configured for this user ({USER})")
    );
}

#[tokio::test]
async fn key_files_bastions_and_bad_credentials() {
    let (a, b) = (Sshd::start(), Sshd::start());
    let s = server();
    let key_path = account().key_path.display().to_string();
    // A key given as a path, through a bastion (the first sshd) to the second.
    let params = json!({"hosts": format!("127.0.0.1:{}", b.port), "bastion_host": format!("127.0.0.1:{}", a.port),
        "username": USER, "private_key": key_path, "cmd": "echo $SSH_CONNECTION"});
    let id = run_remote(&s, "core.remote", params).await;
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["result"]["127.0.0.1"]["stdout"].as_str().unwrap().ends_with(&b.port.to_string()), "{done}");

    let params = json!({"hosts": format!("127.0.0.1:{}", a.port), "username": USER, "password": "not-it", "cmd": "true"});
    let id = run_remote(&s, "core.remote", params).await;
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert!(done["result"]["error"].as_str().unwrap().contains(&format!("Authentication failed for user {USER}")), "{done}");
}
