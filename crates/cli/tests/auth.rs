//! Authentication, RBAC and secret masking against the real server and CLI.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "admin-pass-123";

fn secure_server(extra: &[(&str, &str)]) -> Server {
    let mut env = vec![("SQUALL_AUTH__ENABLE", "true"), ("SQUALL_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    env.extend_from_slice(extra);
    Server::start_with(&env)
}

async fn login(s: &Server, user: &str, password: &str) -> String {
    let r =
        reqwest::Client::new().post(s.url("/tokens")).header("authorization", basic(user, password)).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["user"], user);
    t["token"].as_str().unwrap().to_string()
}

async fn call(method: reqwest::Method, url: String, headers: &[(&str, &str)], body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_endpoint_requires_credentials() {
    let s = secure_server(&[]);
    let token = login(&s, "st2admin", ADMIN_PASSWORD).await;
    let id = {
        let (code, e) = call(
            reqwest::Method::POST,
            s.url("/v1/executions"),
            &[("x-auth-token", &token)],
            Some(json!({"action": "core.local", "parameters": {"cmd": "true"}})),
        )
        .await;
        assert_eq!(code, 201);
        e["id"].as_str().unwrap().to_string()
    };
    use reqwest::Method as M;
    let endpoints = [
        (M::GET, "/v1/".to_string()),
        (M::GET, "/v1/actions".into()),
        (M::GET, "/v1/actions/core.local".into()),
        (M::GET, "/v1/runnertypes?name=local-shell-cmd".into()),
        (M::GET, "/v1/executions".into()),
        (M::POST, "/v1/executions".into()),
        (M::GET, format!("/v1/executions/{id}")),
        (M::DELETE, format!("/v1/executions/{id}")),
        (M::POST, format!("/v1/executions/{id}/re_run")),
        (M::GET, format!("/v1/executions/{id}/output")),
        (M::GET, format!("/v1/executions/{id}/stdout")),
        (M::GET, format!("/v1/executions/{id}/stderr")),
        (M::GET, format!("/stream/v1/executions/{id}/output")),
        (M::GET, "/v1/stream".into()),
        (M::GET, "/v1/user".into()),
        (M::GET, "/v1/apikeys".into()),
        (M::POST, "/v1/apikeys".into()),
    ];
    for (method, path) in endpoints {
        let (code, body) = call(method.clone(), s.url(&path), &[], None).await;
        assert_eq!(
            (code, body["faultstring"].as_str()),
            (401, Some("Unauthorized - One of Token or API key required.")),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn tokens_and_their_failures() {
    let mut s = secure_server(&[("SQUALL_AUTH__TOKEN_TTL", "3600")]);
    let c = reqwest::Client::new();
    for header in [
        basic("st2admin", "wrong"),
        basic("nobody", "x"),
        "Basic !!!notbase64".into(),
        "Bearer abc".into(),
        format!("Basic {}", "bm9jb2xvbg=="),
    ] {
        let r = c.post(s.url("/tokens")).header("authorization", header.clone()).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{header}");
        assert_eq!(r.json::<Value>().await.unwrap()["faultstring"], "Invalid or missing credentials");
    }
    let r = c.post(s.url("/auth/v1/tokens")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .post(s.url("/tokens"))
        .header("authorization", basic("st2admin", ADMIN_PASSWORD))
        .json(&json!({"ttl": 999999}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["faultstring"], "TTL specified 999999 is greater than max allowed 3600.");

    let token = login(&s, "st2admin", ADMIN_PASSWORD).await;
    // Header, query (what the stream client uses) and cookie all work.
    assert_eq!(call(reqwest::Method::GET, s.url("/v1/actions"), &[("X-Auth-Token", &token)], None).await.0, 200);
    assert_eq!(call(reqwest::Method::GET, s.url(&format!("/v1/actions?x-auth-token={token}")), &[], None).await.0, 200);
    assert_eq!(call(reqwest::Method::GET, s.url("/v1/actions"), &[("cookie", &format!("auth-token={token}"))], None).await.0, 200);
    let (code, me) = call(reqwest::Method::GET, s.url("/v1/user"), &[("X-Auth-Token", &token)], None).await;
    assert_eq!(code, 200);
    assert_eq!((me["username"].as_str(), me["authentication"]["method"].as_str()), (Some("st2admin"), Some("authentication token")));

    // Unknown and expired tokens.
    let (code, body) =
        call(reqwest::Method::GET, s.url("/v1/actions"), &[("X-Auth-Token", "0123456789abcdef0123456789abcdef")], None).await;
    assert_eq!((code, body["faultstring"].as_str()), (401, Some("Unauthorized")));
    let r = c
        .post(s.url("/v1/tokens"))
        .header("authorization", basic("st2admin", ADMIN_PASSWORD))
        .json(&json!({"ttl": 1}))
        .send()
        .await
        .unwrap();
    let short = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (code, body) = call(reqwest::Method::GET, s.url("/v1/actions"), &[("X-Auth-Token", &short)], None).await;
    assert_eq!((code, body["faultstring"].as_str()), (401, Some("Unauthorized - Token has expired.")));

    // Only the first credential present is validated.
    let (code, _) = call(reqwest::Method::GET, s.url("/v1/actions"), &[("X-Auth-Token", &token), ("St2-Api-Key", "bogus")], None).await;
    assert_eq!(code, 200);
    let (code, _) =
        call(reqwest::Method::GET, s.url(&format!("/v1/actions?x-auth-token={token}")), &[("St2-Api-Key", "bogus")], None).await;
    assert_eq!(code, 401);

    // Tokens survive a restart; they are stored hashed.
    s.restart();
    assert_eq!(call(reqwest::Method::GET, s.url("/v1/actions"), &[("X-Auth-Token", &token)], None).await.0, 200);
    let db = std::fs::read(s.data_dir().join("squall.db")).unwrap();
    let wal = std::fs::read(s.data_dir().join("squall.db-wal")).unwrap_or_default();
    let needle = token.as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle) && !wal.windows(needle.len()).any(|w| w == needle),
        "the plaintext token is stored"
    );
}

#[tokio::test]
async fn api_keys_and_clean_rejections() {
    let s = secure_server(&[]);
    let token = login(&s, "st2admin", ADMIN_PASSWORD).await;
    let (code, key) =
        call(reqwest::Method::POST, s.url("/v1/apikeys"), &[("X-Auth-Token", &token)], Some(json!({"metadata": {"purpose": "ci"}}))).await;
    assert_eq!(code, 201);
    let plain = key["key"].as_str().unwrap().to_string();
    let id = key["id"].as_str().unwrap().to_string();
    assert_eq!(call(reqwest::Method::GET, s.url("/v1/executions"), &[("St2-Api-Key", &plain)], None).await.0, 200);
    let stream = reqwest::get(s.url(&format!("/v1/stream?st2-api-key={plain}&events=nothing"))).await.unwrap();
    assert_eq!(stream.status().as_u16(), 200, "the stream takes the key from the query string");
    drop(stream);
    let (_, listed) = call(reqwest::Method::GET, s.url("/v1/apikeys"), &[("X-Auth-Token", &token)], None).await;
    assert!(listed.as_array().unwrap().iter().all(|k| k.get("key").is_none()), "keys are never shown again");

    let (code, body) = call(reqwest::Method::GET, s.url("/v1/actions"), &[("St2-Api-Key", "not-a-key")], None).await;
    assert_eq!(code, 401);
    let fault = body["faultstring"].as_str().unwrap();
    assert!(fault.starts_with("Unauthorized - ApiKey with key_hash=") && fault.ends_with(" not found."), "{fault}");

    call(reqwest::Method::PUT, s.url(&format!("/v1/apikeys/{id}")), &[("X-Auth-Token", &token)], Some(json!({"enabled": false}))).await;
    let (code, body) = call(reqwest::Method::GET, s.url("/v1/actions"), &[("St2-Api-Key", &plain)], None).await;
    assert_eq!((code, body["faultstring"].as_str()), (401, Some("Unauthorized - API key is disabled.")));
    assert_eq!(call(reqwest::Method::DELETE, s.url(&format!("/v1/apikeys/{id}")), &[("X-Auth-Token", &token)], None).await.0, 204);

    // A 1 MB header is refused cleanly, and the server keeps serving.
    let huge = "x".repeat(1024 * 1024);
    let r = reqwest::Client::new().get(s.url("/v1/actions")).header("X-Auth-Token", huge).send().await;
    if let Ok(r) = r {
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    assert_eq!(call(reqwest::Method::GET, s.url("/v1/actions"), &[("X-Auth-Token", &token)], None).await.0, 200);
}

#[tokio::test]
async fn first_start_writes_a_private_admin_password() {
    let s = Server::start_with(&[("SQUALL_AUTH__ENABLE", "true")]);
    let path = s.data_dir().join("initial-admin-password");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let password = std::fs::read_to_string(&path).unwrap();
    login(&s, "st2admin", password.trim()).await;
    // Not on a terminal (a file, a pipe, the journal), the log names the file, never the password.
    let log = s.log();
    assert!(!log.contains(password.trim()), "the password is in the log:\n{log}");
    assert!(log.contains("initial-admin-password"), "{log}");
}

fn rbac_dir(root: &std::path::Path) {
    write_file(
        &root.join("roles/operator.yaml"),
        "name: operator\ndescription: runs core actions\npermission_grants:\n  - resource_uid: pack:core\n    permission_types: [action_execute, action_view, execution_all]\n  - permission_types: [action_list, execution_list, stream_view]\n",
    );
    write_file(&root.join("assignments/alice.yaml"), "username: alice\nroles: [operator]\n");
    write_file(&root.join("assignments/bob.yaml"), "username: bob\nroles: [operator]\n");
    write_file(&root.join("assignments/olive.yaml"), "username: olive\nroles: [observer]\n");
}

#[tokio::test]
async fn rbac_and_permission_isolation_on_every_read_path() {
    let rbac = tempfile::tempdir().unwrap();
    rbac_dir(rbac.path());
    let path = rbac.path().display().to_string();
    let s = secure_server(&[
        ("SQUALL_RBAC__ENABLE", "true"),
        ("SQUALL_RBAC__PERMISSION_ISOLATION", "true"),
        ("SQUALL_RBAC__DEFINITIONS_PATH", &path),
    ]);
    for user in ["alice", "bob", "olive"] {
        add_user(&s, user, "password-of-someone");
    }
    let alice = login(&s, "alice", "password-of-someone").await;
    let bob = login(&s, "bob", "password-of-someone").await;
    let olive = login(&s, "olive", "password-of-someone").await;

    // Bob watches the global stream before Alice runs anything.
    let mut bob_stream = Sse::open(
        &s.url(&format!(
            "/v1/stream?x-auth-token={bob}&events=st2.execution__create%2Cst2.execution__update%2Cst2.execution.output__create"
        )),
        &[],
    )
    .await;

    let (code, e) = call(
        reqwest::Method::POST,
        s.url("/v1/executions"),
        &[("X-Auth-Token", &alice)],
        Some(json!({"action": "core.local", "parameters": {"cmd": "echo alice-secret-data; sleep 1"}})),
    )
    .await;
    assert_eq!(code, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();

    // Bob may not read Alice's execution on any path.
    for path in [
        format!("/v1/executions/{id}"),
        format!("/v1/executions/{id}/output"),
        format!("/v1/executions/{id}/stdout"),
        format!("/v1/executions/{id}/lines"),
        format!("/v1/executions/{id}/search?q=alice"),
        format!("/stream/v1/executions/{id}/output"),
    ] {
        let (code, body) = call(reqwest::Method::GET, s.url(&path), &[("X-Auth-Token", &bob)], None).await;
        assert_eq!(code, 403, "{path}: {body}");
    }
    let (_, listed) = call(reqwest::Method::GET, s.url("/v1/executions"), &[("X-Auth-Token", &bob)], None).await;
    assert_eq!(listed, json!([]), "isolation hides others' executions from lists");
    let (code, _) = call(
        reqwest::Method::GET,
        s.url(&format!(
            "/v1/stream?x-auth-token={bob}&end_event=st2.execution__update&end_execution_id={id}&events=st2.execution.output__create"
        )),
        &[],
        Some(json!(null)),
    )
    .await;
    assert_eq!(code, 200, "the stream opens but");
    // Bob's own execution comes through his global stream; Alice's never does.
    let (_, mine) = call(
        reqwest::Method::POST,
        s.url("/v1/executions"),
        &[("X-Auth-Token", &bob)],
        Some(json!({"action": "core.local", "parameters": {"cmd": "echo bob-data"}})),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(3), bob_stream.next()).await else { break };
        seen.push(ev.data.clone());
        if ev.data.contains("\"status\":\"succeeded\"") && ev.data.contains(mine["id"].as_str().unwrap()) {
            break;
        }
    }
    assert!(seen.iter().any(|d| d.contains("bob-data")), "bob sees his own output");
    assert!(seen.iter().all(|d| !d.contains(&id) && !d.contains("alice-secret-data")), "an event of alice's execution reached bob");

    // Alice sees her own.
    assert_eq!(call(reqwest::Method::GET, s.url(&format!("/v1/executions/{id}")), &[("X-Auth-Token", &alice)], None).await.0, 200);

    // The observer can list but not run or cancel.
    assert_eq!(call(reqwest::Method::GET, s.url("/v1/actions"), &[("X-Auth-Token", &olive)], None).await.0, 200);
    let (code, body) = call(
        reqwest::Method::POST,
        s.url("/v1/executions"),
        &[("X-Auth-Token", &olive)],
        Some(json!({"action": "core.local", "parameters": {"cmd": "true"}})),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(body["faultstring"], "User \"olive\" doesn't have required permission \"action_execute\" on resource \"action:core:local\"");
    let (code, _) = call(reqwest::Method::DELETE, s.url(&format!("/v1/executions/{id}")), &[("X-Auth-Token", &olive)], None).await;
    assert_eq!(code, 403);
    // Alice may stop her own, and the admin sees everything.
    let admin = login(&s, "st2admin", ADMIN_PASSWORD).await;
    let (_, all) = call(reqwest::Method::GET, s.url("/v1/executions"), &[("X-Auth-Token", &admin)], None).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_rbac_files_stop_the_start_with_their_name() {
    let rbac = tempfile::tempdir().unwrap();
    write_file(&rbac.path().join("roles/broken.yaml"), "name: broken\npermission_grants:\n  - permission_types: [execution_teleport]\n");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("SQUALL_RBAC__ENABLE", "true")
        .env("SQUALL_RBAC__DEFINITIONS_PATH", rbac.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.yaml") && err.contains("execution_teleport"), "{err}");
}

#[tokio::test]
async fn secrets_are_masked_in_the_log_and_never_in_argv() {
    let s = secure_server(&[]);
    let token = login(&s, "st2admin", ADMIN_PASSWORD).await;
    let pack = s.packs_dir().join("sec");
    write_file(&pack.join("pack.yaml"), "name: sec\n");
    write_file(
        &pack.join("actions/leak.yaml"),
        "name: leak\nrunner_type: local-shell-script\nentry_point: leak.sh\nparameters:\n  password:\n    type: string\n    secret: true\n    required: true\n",
    );
    // Prints the secret one byte at a time with pauses, on both streams, then base64-encoded,
    // then sleeps so the process table can be inspected.
    write_file(
        &pack.join("actions/leak.sh"),
        "#!/bin/sh\npw=\"${1#--password=}\"\ni=1\nwhile [ $i -le ${#pw} ]; do printf '%s' \"$(echo \"$pw\" | cut -c$i)\"; sleep 0.02; i=$((i+1)); done\necho\necho \"err:$pw\" >&2\nprintf 'b64:'; printf '%s' \"$pw\" | base64\nprintf '%s' \"ab$pw\" | base64\necho \"token:$ST2_ACTION_AUTH_TOKEN\"\nsleep 1\nprintf 'ends-with:Tr0ub'\n",
    );
    let mut s = s;
    s.restart();
    let secret = "Tr0ub4dor-and-3";
    let (code, e) = call(
        reqwest::Method::POST,
        s.url("/v1/executions"),
        &[("X-Auth-Token", &token)],
        Some(json!({"action": "sec.leak", "parameters": {"password": secret}})),
    )
    .await;
    assert_eq!(code, 201, "{e}");
    assert_eq!(e["parameters"]["password"], "********");
    let id = e["id"].as_str().unwrap().to_string();

    // Watch live while it runs, and look at every process's argv.
    let live = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output?x-auth-token={token}")), &[]).await;
    let watcher = tokio::spawn(async move { live.rest().await });
    let mut argv_leak = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                let is_script = cmdline.windows(7).any(|w| w == b"leak.sh");
                let shell_line = cmdline.starts_with(b"/bin/sh\0-c");
                if shell_line && is_script && cmdline.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                    argv_leak = true;
                }
            }
        }
        let (_, now) = call(reqwest::Method::GET, s.url(&format!("/v1/executions/{id}")), &[("X-Auth-Token", &token)], None).await;
        if TERMINAL.contains(&now["status"].as_str().unwrap()) {
            assert_eq!(now["status"], "succeeded", "{now}");
            let result = now["result"].to_string();
            assert!(!result.contains(secret), "result: {result}");
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!argv_leak, "the secret appeared in the shell's argv");
    let streamed = output_text(&watcher.await.unwrap());
    let stored = String::from_utf8(
        reqwest::Client::new()
            .get(s.url(&format!("/v1/executions/{id}/output")))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let raw = reqwest::Client::new()
        .get(s.url(&format!("/v1/executions/{id}/stdout")))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (name, text) in [("stream", &streamed), ("/output", &stored), ("/stdout", &raw)] {
        assert!(!text.contains(secret), "{name} leaked the secret: {text}");
        assert!(text.contains("********"), "{name}: {text}");
    }
    assert!(stored.contains("err:********"), "stderr masked too: {stored}");
    // Encoded, at two alignments: what only the secret's bytes determine is masked.
    use base64::Engine;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let (plain, shifted) = (b64(secret), b64(&format!("ab{secret}")));
    assert!(stored.contains("b64:********\n"), "{stored}");
    assert!(!stored.contains(&plain[..8]) && !stored.contains(&shifted[4..12]), "base64 of the secret leaked: {stored}");
    assert!(stored.ends_with("ends-with:Tr0ub"), "a held-back prefix that never became the secret is released at the end: {stored}");
    // The action's own token is masked and revoked once the action is done.
    let action_token = stored.lines().find_map(|l| l.strip_prefix("token:")).unwrap();
    assert_eq!(action_token, "********");
}

#[tokio::test]
async fn the_cli_logs_in_and_uses_keys() {
    let s = secure_server(&[]);
    let home = tempfile::tempdir().unwrap();
    let squall = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_squall"))
            .args(args)
            .env("SQUALL_URL", &s.base)
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SQUALL_AUTH_TOKEN")
            .env_remove("SQUALL_API_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            writeln!(child.stdin.take().unwrap(), "{input}").unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let out = squall(&["action", "list"], None);
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("squall login"));
    let out = squall(&["login", "st2admin"], Some("wrong password"));
    assert_eq!(out.status.code(), Some(6));
    let out = squall(&["login", "st2admin", "--json"], Some(ADMIN_PASSWORD));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let login: Value = serde_json::from_slice(&out.stdout).expect("login --json prints JSON");
    assert_eq!(login["user"], "st2admin");
    assert!(login["expiry"].as_str().is_some_and(|e| !e.is_empty()) && login.get("token").is_none(), "{login}");
    use std::os::unix::fs::PermissionsExt;
    let cache = home.path().join(".config/squall/token.json");
    assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o600);
    let out = squall(&["whoami"], None);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("st2admin"));
    // `last` is the newest by anyone; `--mine`, the caller's own.
    let mine = squall(&["run", "core.local", "cmd=echo mine", "--async"], None);
    let mine = String::from_utf8_lossy(&mine.stdout).trim().to_string();
    let out = squall(&["apikey", "create", "--user", "bob", "--json"], None);
    let bob: Value = serde_json::from_slice(&out.stdout).unwrap();
    let as_bob = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["run", "core.local", "cmd=echo theirs"])
        .env("SQUALL_URL", &s.base)
        .env("SQUALL_API_KEY", bob["key"].as_str().unwrap())
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(as_bob.status.success(), "{}", String::from_utf8_lossy(&as_bob.stderr));
    let out = squall(&["execution", "tail", "--mine"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "mine\n", "{}", String::from_utf8_lossy(&out.stderr));
    let out = squall(&["execution", "tail"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "theirs\n");
    let out = squall(&["execution", "list", "--mine", "--json"], None);
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.iter().map(|e| e["id"].as_str().unwrap()).collect::<Vec<_>>(), [mine.as_str()]);
    let out = squall(&["execution", "tail", "--mine", "0123456789abcdef01234567"], None);
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mine"));

    let out = squall(&["apikey", "create"], None);
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(key.len(), 32);
    std::fs::remove_file(&cache).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["whoami", "--json"])
        .env("SQUALL_URL", &s.base)
        .env("SQUALL_API_KEY", &key)
        .env("HOME", home.path())
        .output()
        .unwrap();
    let me: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["authentication"]["method"], "API key");
}

/// A listener that answers every request with a 401 and hands back the request heads it saw.
fn recording_server() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            while reader.read_line(&mut head).is_ok_and(|n| n > 2) {}
            let body = r#"{"faultstring": "Token or API key required"}"#;
            let _ = write!(
                &stream,
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tx.send(head);
        }
    });
    (url, rx)
}

#[tokio::test]
async fn cached_logins_belong_to_their_server() {
    let (a, b) = (secure_server(&[]), secure_server(&[]));
    let home = tempfile::tempdir().unwrap();
    let squall = |url: &str, args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_squall"))
            .arg("--url")
            .arg(url)
            .args(args)
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SQUALL_URL")
            .env_remove("SQUALL_AUTH_TOKEN")
            .env_remove("SQUALL_API_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            writeln!(child.stdin.take().unwrap(), "{input}").unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    assert_eq!(squall(&a.base, &["login", "st2admin"], Some(ADMIN_PASSWORD)).0, Some(0));
    let (url, seen) = recording_server();
    let (code, text) = squall(&url, &["whoami"], None);
    assert_eq!(code, Some(6), "{text}");
    assert!(text.contains(&format!("log in to {url}")), "{text}");
    let head = seen.recv_timeout(Duration::from_secs(5)).unwrap().to_ascii_lowercase();
    assert!(!head.contains("x-auth-token") && !head.contains("st2-api-key"), "server A's token went to another server:\n{head}");

    // Logging in to B keeps A's login; each server gets its own token.
    assert_eq!(squall(&b.base, &["login", "st2admin"], Some(ADMIN_PASSWORD)).0, Some(0));
    let cache: Value = serde_json::from_slice(&std::fs::read(home.path().join(".config/squall/token.json")).unwrap()).unwrap();
    assert_eq!(cache["servers"].as_object().unwrap().len(), 2, "{cache}");
    for s in [&a, &b] {
        let (code, text) = squall(&s.base, &["whoami"], None);
        assert!(code == Some(0) && text.starts_with("st2admin"), "{text}");
    }
    // The same server spelled with `/v1` or a trailing slash is the same login.
    assert_eq!(squall(&format!("{}/v1/", a.base), &["whoami"], None).0, Some(0));

    assert!(squall(&b.base, &["logout"], None).1.contains("Logged out of"));
    assert_eq!(squall(&b.base, &["whoami"], None).0, Some(6));
    assert_eq!(squall(&a.base, &["whoami"], None).0, Some(0), "logging out of B keeps A");

    // An expired login says so, and how to renew it.
    let path = home.path().join(".config/squall/token.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut cache: Value = serde_json::from_str(&text).unwrap();
    for entry in cache["servers"].as_object_mut().unwrap().values_mut() {
        entry["expiry"] = json!("2020-01-01T00:00:00.000000Z");
    }
    std::fs::write(&path, cache.to_string()).unwrap();
    let (code, text) = squall(&a.base, &["whoami"], None);
    assert_eq!(code, Some(6));
    assert!(text.contains("expired") && text.contains("squall login st2admin"), "{text}");
    assert!(squall(&a.base, &["logout", "--all"], None).1.contains("every server"));
    assert!(!path.exists());
}
