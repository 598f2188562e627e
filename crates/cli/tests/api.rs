//! The StackStorm REST surface against a real server: routes under every prefix, JSON shapes,
//! execution lifecycle, listing, cancel and re-run semantics, and clean 4xx answers to bad input.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn every_prefix_reaches_the_api() {
    let s = Server::start();
    for path in ["/v1/actions/core.local", "/api/v1/actions/core.local", "/actions/core.local", "/v1/actions/core.local/"] {
        let (code, body) = get(&s, path).await;
        assert_eq!(code, 200, "{path}");
        assert_eq!(body["ref"], "core.local", "{path}");
    }
    let (code, body) = get(&s, "/v1/").await;
    assert_eq!(code, 200);
    assert_eq!(body["version"], "3.9.0");
    let (code, body) = get(&s, "/v1/nowhere").await;
    assert_eq!((code, body), (404, json!({"faultstring": "The resource could not be found."})));
}

#[tokio::test]
async fn actions_and_runner_types() {
    let s = Server::start();
    let r = reqwest::get(s.url("/v1/actions?include_attributes=ref%2Cpack%2Cdescription")).await.unwrap();
    assert_eq!(r.headers()["x-total-count"], "6");
    let list: Value = r.json().await.unwrap();
    let refs: Vec<&str> = list.as_array().unwrap().iter().map(|a| a["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, ["core.echo", "core.local", "core.local_sudo", "core.noop", "core.remote", "core.remote_sudo"]);
    assert!(list[0].get("parameters").is_none(), "projection drops unrequested fields");
    assert!(list[0]["description"].is_string());

    let (code, body) = get(&s, "/v1/actions/core.nope").await;
    assert_eq!((code, body["faultstring"].as_str().unwrap()), (404, "Resource with a reference or id \"core.nope\" not found"));

    let (code, runners) = get(&s, "/v1/runnertypes/?name=local-shell-cmd").await;
    assert_eq!(code, 200);
    assert_eq!(runners.as_array().unwrap().len(), 1, "exact name match");
    let params = runners[0]["runner_parameters"].as_object().unwrap();
    assert!(params.values().all(|p| p.get("type").is_some()), "every runner parameter is typed");
    assert_eq!(get(&s, "/v1/runnertypes?name=local").await.1, json!([]));
}

#[tokio::test]
async fn run_to_success_with_stackstorm_shapes() {
    let s = Server::start();
    let (code, created) =
        post(&s, "/v1/executions", json!({"action": "core.local", "parameters": {"cmd": "echo '{\"a\": 1}'"}, "user": null})).await;
    assert_eq!(code, 201);
    assert_eq!(created["status"], "requested");
    for absent in ["result", "end_timestamp", "elapsed_seconds", "children"] {
        assert!(created.get(absent).is_none(), "{absent} must be omitted while falsy");
    }
    let id = created["id"].as_str().unwrap();
    assert!(id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    let done = wait_done(&s, id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["result"]["stdout"], json!({"a": 1}), "JSON stdout is decoded");
    assert_eq!(done["result"]["return_code"], 0);
    assert_eq!(done["action"]["ref"], "core.local");
    assert_eq!(done["context"]["user"], "stanley");
    let statuses: Vec<&str> = done["log"].as_array().unwrap().iter().map(|l| l["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["requested", "scheduled", "running", "succeeded"]);
    let ts = done["end_timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.len() == 27, "{ts}");
    assert_eq!(get(&s, "/v1/executions/last").await.1["id"], id);
}

#[tokio::test]
async fn failures_and_echo_templates() {
    let s = Server::start();
    let failed = run_cmd(&s, "echo oops >&2; exit 3", json!({})).await;
    let e = wait_done(&s, &failed, Duration::from_secs(20)).await;
    assert_eq!((e["status"].as_str(), e["result"]["return_code"].as_i64()), (Some("failed"), Some(3)));
    assert_eq!(e["result"]["stderr"], "oops");

    let (_, echo) = post(&s, "/v1/executions", json!({"action": "core.echo", "parameters": {"message": "hello there"}})).await;
    let e = wait_done(&s, echo["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(e["result"]["stdout"], "hello there");

    let (_, noop) = post(&s, "/v1/executions", json!({"action": "core.noop"})).await;
    assert_eq!(wait_done(&s, noop["id"].as_str().unwrap(), Duration::from_secs(20)).await["status"], "succeeded");
}

#[tokio::test]
async fn actions_get_their_environment() {
    let s = Server::start_with(&[("SQUALL_SECRET_OF_THE_SERVER", "do-not-leak")]);
    let id = run_cmd(&s, "env", json!({"env": {"GREETING": "hi", "ST2_ACTION_PACK_NAME": "spoofed"}})).await;
    wait_done(&s, &id, Duration::from_secs(20)).await;
    let env = String::from_utf8(get_bytes(&s, &format!("/v1/executions/{id}/output")).await).unwrap();
    assert!(env.contains("GREETING=hi\n"));
    assert!(env.contains(&format!("ST2_ACTION_EXECUTION_ID={id}\n")));
    assert!(env.contains("ST2_ACTION_PACK_NAME=core\n"), "ST2_* variables win over the user's env");
    assert!(env.contains("ST2_ACTION_DEBUG=False\n"));
    assert!(env.contains("ST2_ACTION_API_URL=http://"));
    assert!(!env.contains("do-not-leak"), "server environment is allow-listed");
}

#[tokio::test]
async fn bad_input_gets_clear_4xx() {
    let s = Server::start();
    let c = reqwest::Client::new();
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.post(s.url("/v1/executions")).body("{\"action\": ").header("content-type", "application/json"),
            400,
            "Failed to parse request body as JSON",
        ),
        (c.post(s.url("/v1/executions")).json(&json!({"action": "core.nope"})), 400, "Action \"core.nope\" cannot be found."),
        (c.post(s.url("/v1/executions")).json(&json!({"parameters": {}})), 400, "'action' is a required property"),
        (c.post(s.url("/v1/executions")).json(&json!({"action": "core.local"})), 400, "'cmd' is a required property"),
        (
            c.post(s.url("/v1/executions")).json(&json!({"action": "core.local", "parameters": {"cmd": "x", "timeout": "soon"}})),
            400,
            "'soon' is not of type 'integer'",
        ),
        (
            c.post(s.url("/v1/executions")).json(&json!({"action": "core.local", "parameters": {"cmd": "x", "bogus": 1}})),
            400,
            "Additional properties are not allowed ('bogus' was unexpected)",
        ),
        (
            c.post(s.url("/v1/executions")).json(&json!({"action": "core.local", "parameters": {"cmd": "x", "sudo": true}})),
            400,
            "Override of immutable parameter(s) ['sudo'] is unsupported.",
        ),
        (c.post(s.url("/v1/executions")).json(&json!({"action": "core.local", "parameters": "cmd=x"})), 400, "is not of type 'object'"),
        (c.post(s.url("/v1/executions")).json(&json!([1, 2])), 400, "must be a JSON object"),
        (c.get(s.url("/v1/executions/0123456789abcdef01234567")), 404, "Unable to identify resource with id \"0123456789abcdef01234567\"."),
        (c.get(s.url("/v1/executions/x/output")), 404, "Unable to identify resource with id \"x\"."),
        (c.delete(s.url("/v1/executions/nope")), 404, "Unable to identify resource with id \"nope\"."),
        (c.get(s.url("/v1/executions?limit=abc")), 400, "Parameter \"limit\" is not of type integer"),
        (c.get(s.url("/v1/executions?limit=0")), 400, "must be a positive number"),
        (c.get(s.url("/v1/executions?timestamp_gt=yesterday")), 400, "Datetime value does not match expected format."),
        (c.get(s.url("/v1/executions?sort_desc=maybe")), 400, "Parameter \"sort_desc\" is not of type boolean"),
        (c.get(s.url("/v1/executions?include_attributes=id&exclude_attributes=result")), 400, "mutually exclusive"),
        (c.get(s.url("/v1/executions/last?exclude_attributes=action")), 400, "Invalid or unsupported exclude attribute specified: action"),
        (c.get(s.url("/v1/executions?include_attributes=nonsense")), 400, "Invalid or unsupported include attribute specified: nonsense"),
    ];
    for (req, want_code, want_text) in cases {
        let r = req.send().await.unwrap();
        let code = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let fault = body["faultstring"].as_str().unwrap_or_default();
        assert_eq!(code, want_code, "{fault}");
        assert!(fault.contains(want_text), "{fault:?} should contain {want_text:?}");
    }
}

#[tokio::test]
async fn listing_filters_sorts_and_counts() {
    let s = Server::start();
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = run_cmd(&s, &format!("exit {}", i % 2), json!({})).await;
        wait_done(&s, &id, Duration::from_secs(20)).await;
        ids.push(id);
    }
    let r = reqwest::get(s.url("/v1/executions/?limit=2&parent=null&sort_desc=True&include_attributes=id%2Caction.ref%2Cstatus"))
        .await
        .unwrap();
    assert_eq!(r.headers()["x-total-count"], "3");
    assert_eq!(r.headers()["x-limit"], "2");
    let list: Value = r.json().await.unwrap();
    let got: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()], "newest first");
    assert!(list[0].get("result").is_none() && list[0]["action"]["ref"] == "core.local");

    let (_, failed) = get(&s, "/v1/executions?status=failed&action=core.local").await;
    assert_eq!(failed.as_array().unwrap().len(), 1);
    let (_, asc) = get(&s, "/v1/executions?sort_asc=True&limit=-1").await;
    assert_eq!(asc[0]["id"], ids[0].as_str());
    let (_, none) = get(&s, "/v1/executions?user=somebody-else").await;
    assert_eq!(none, json!([]));
    let (_, after) = get(&s, "/v1/executions?timestamp_gt=2000-01-01T12%3A00%3A00.000Z").await;
    assert_eq!(after.as_array().unwrap().len(), 3);
    let (_, unknown) = get(&s, "/v1/executions?status=nonsense").await;
    assert_eq!(unknown, json!([]), "an unknown status value simply matches nothing");
}

#[tokio::test]
async fn cancel_semantics() {
    let s = Server::start();
    let id = run_cmd(&s, "sleep 30", json!({})).await;
    wait_status(&s, &id, &["running"], Duration::from_secs(20)).await;
    let r = reqwest::Client::new().delete(s.url(&format!("/v1/executions/{id}"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(["canceling", "canceled"].contains(&body["status"].as_str().unwrap()));
    let done = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "canceled");
    assert_eq!(done["result"], json!({"message": "Action canceled by user.", "user": "stanley"}));
    assert_eq!(done["context"]["cancelled_by"], "stanley");

    // Canceling again returns the execution; a finished one gets StackStorm's 200 faultstring.
    let again: Value = reqwest::Client::new().delete(s.url(&format!("/v1/executions/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(again["status"], "canceled");
    let ok = run_cmd(&s, "true", json!({})).await;
    wait_done(&s, &ok, Duration::from_secs(20)).await;
    let r = reqwest::Client::new().delete(s.url(&format!("/v1/executions/{ok}"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"faultstring": "Action cannot be canceled. State = succeeded."}));
}

#[tokio::test]
async fn rerun_merges_parameters() {
    let s = Server::start();
    let id = run_cmd(&s, "echo first", json!({"timeout": 30})).await;
    wait_done(&s, &id, Duration::from_secs(20)).await;
    let (code, again) = post(
        &s,
        &format!("/v1/executions/{id}/re_run"),
        json!({"parameters": {"cmd": "echo second"}, "tasks": [], "reset": [], "delay": 0}),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(again["parameters"], json!({"cmd": "echo second", "timeout": 30}));
    assert_eq!(again["context"]["re-run"]["ref"], id.as_str());
    let done = wait_done(&s, again["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(done["result"]["stdout"], "second");
    let (code, body) = post(&s, &format!("/v1/executions/{id}/re_run"), json!({"parameters": {}, "tasks": ["t1"]})).await;
    assert_eq!((code, body["faultstring"].as_str().unwrap()), (400, "Task option is only supported for Orquesta workflows."));
}

#[tokio::test]
async fn secret_parameters_are_masked() {
    let s = Server::start();
    let (code, e) =
        post(&s, "/v1/executions", json!({"action": "core.local", "parameters": {"cmd": "true", "sudo_password": "hunter2"}})).await;
    assert_eq!(code, 201);
    assert_eq!(e["parameters"]["sudo_password"], "********");
    assert_eq!(e["liveaction"]["parameters"]["sudo_password"], "********");
    let (_, shown) = get(&s, &format!("/v1/executions/{}?show_secrets=true", e["id"].as_str().unwrap())).await;
    assert_eq!(shown["parameters"]["sudo_password"], "hunter2", "admins may ask for secrets");
}

#[tokio::test]
async fn pack_script_actions_get_stackstorm_arguments() {
    let s = Server::start();
    let pack = s.packs_dir().join("demo");
    write_file(&pack.join("pack.yaml"), "name: demo\nversion: 0.1.0\n");
    write_file(
        &pack.join("actions/args.yaml"),
        "name: args\nrunner_type: local-shell-script\nentry_point: args.sh\nparameters:\n  name: {type: string, position: 0}\n  count: {type: integer}\n  verbose: {type: boolean}\n  tags: {type: array, position: 1}\n",
    );
    write_file(&pack.join("actions/args.sh"), "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\n");
    let mut s = s;
    s.restart();
    let (code, e) = post(
        &s,
        "/v1/executions",
        json!({"action": "demo.args", "parameters": {"name": "a b", "count": 3, "verbose": true, "tags": ["x", "y"]}}),
    )
    .await;
    assert_eq!(code, 201, "{e}");
    let done = wait_done(&s, e["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(done["result"]["stdout"], "[--count=3]\n[--verbose]\n[a b]\n[x,y]", "{done}");
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() { out.extend(files_under(&path)) } else { out.push(path) }
    }
    out
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let mut s = Server::start();
    // The command names the secret in two halves, so the stored command does not hold it.
    let cmd = "test \"$DB_PASSWORD\" = hunter2-in\"\"-env && test \"$COLOR\" = blue && echo env-ok";
    let parameters = json!({"cmd": cmd, "sudo_password": "hunter2-sudo", "env": {"DB_PASSWORD": "hunter2-in-env", "COLOR": "blue"}});
    let (code, e) = post(&s, "/v1/executions", json!({"action": "core.local", "parameters": parameters})).await;
    assert_eq!(code, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    assert_eq!(e["parameters"]["env"], json!({"DB_PASSWORD": "********", "COLOR": "blue"}), "a secret-looking env value is masked");
    let done = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(done["result"]["stdout"], "env-ok", "the action gets the opened values: {done}");
    assert_eq!(done["parameters"]["env"]["DB_PASSWORD"], "********");
    let (code, again) = post(&s, &format!("/v1/executions/{id}/re_run"), json!({"parameters": {}})).await;
    assert_eq!(code, 201, "{again}");
    let rerun = wait_done(&s, again["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(rerun["result"]["stdout"], "env-ok", "a re-run gets the original's secrets: {rerun}");

    s.terminate();
    let data = s.data_dir();
    for file in files_under(&data) {
        let bytes = std::fs::read(&file).unwrap();
        for secret in ["hunter2-in-env", "hunter2-sudo"] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{} holds {secret} in clear", file.display());
        }
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", file.display());
    }
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(data.join("encryption.key").is_file());

    s.restart();
    let (_, shown) = get(&s, &format!("/v1/executions/{id}?show_secrets=true")).await;
    assert_eq!(shown["parameters"]["sudo_password"], "hunter2-sudo", "the key outlives a restart");
    assert_eq!(shown["parameters"]["env"]["DB_PASSWORD"], "hunter2-in-env");
}

#[tokio::test]
async fn a_user_name_with_a_nul_character_is_refused_on_every_backend() {
    let s = Server::start();
    for (path, body) in [
        ("/v1/apikeys", json!({"user": "eve\u{0}admin"})),
        ("/v1/executions", json!({"action": "core.local", "parameters": {"cmd": "true"}, "user": "eve\u{0}admin"})),
    ] {
        let (status, answer) = post(&s, path, body).await;
        assert_eq!((status, answer["faultstring"].as_str()), (400, Some("user must not contain a NUL character")), "{path}");
    }
}
