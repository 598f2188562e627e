//! The real StackStorm CLI (`st2`, st2client 3.9.0, which `./scripts/test` installs into
//! `target/st2-venv` and names in `SQUALL_TEST_ST2`) against a `squall server` with
//! authentication ON (wire contract §4, §6.1, §6.2, §6.13, §11.14): `st2 auth`, `st2 login` and
//! the cached token (also across a server restart), `ST2_AUTH_TOKEN` and `ST2_API_KEY` (the
//! stream gets them in the query string), and the 401 texts the CLI prints.
//!
//! Every test runs under both single-port URL layouts (§1.3), with a fresh `HOME` per `St2`, and
//! every `st2` invocation has a timeout, so a CLI that hangs fails the test instead of blocking CI.

mod common;
#[path = "common/st2.rs"]
mod st2;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use st2::*;

const PASS: &str = "st2-cli-Auth-pa55";

fn secure_server() -> Server {
    Server::start_with(&[("SQUALL_AUTH__ENABLE", "true"), ("SQUALL_ADMIN_PASSWORD", PASS)])
}

/// `POST /tokens` as st2admin (optionally with a TTL); returns the token.
async fn new_token(s: &Server, ttl: Option<u64>) -> String {
    let body = ttl.map_or(json!({}), |ttl| json!({ "ttl": ttl }));
    let r =
        reqwest::Client::new().post(s.url("/tokens")).header("authorization", basic("st2admin", PASS)).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201, "POST /tokens");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["user"], "st2admin", "{t}");
    t["token"].as_str().unwrap().to_string()
}

/// One API request with `X-Auth-Token`.
async fn api(s: &Server, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, s.url(path)).header("X-Auth-Token", token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Starts `core.local` with `cmd` as st2admin; returns the execution id.
async fn start(s: &Server, token: &str, cmd: &str) -> String {
    let body = json!({"action": "core.local", "parameters": {"cmd": cmd}});
    let (code, e) = api(s, reqwest::Method::POST, "/v1/executions", token, Some(body)).await;
    assert_eq!(code, 201, "{e}");
    e["id"].as_str().unwrap().to_string()
}

async fn wait_for(s: &Server, token: &str, id: &str, statuses: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, e) = api(s, reqwest::Method::GET, &format!("/v1/executions/{id}"), token, None).await;
        assert_eq!(code, 200, "{e}");
        if statuses.contains(&e["status"].as_str().unwrap_or("")) {
            return e;
        }
        assert!(Instant::now() < deadline, "execution {id} still {}", e["status"]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The id in the `id: …` line of `st2 run`'s output.
fn run_id(out: &Out) -> String {
    out.stdout.lines().find_map(|l| l.strip_prefix("id: ")).unwrap_or_else(|| panic!("no id in {out}")).trim().to_string()
}

/// A shell command that stays running until the file `go` exists, then prints `marker`: the test
/// decides when it finishes, so the CLI always finds it running however slowly Python starts.
fn gated(go: &Path, marker: &str) -> String {
    format!("while [ ! -e '{}' ]; do sleep 0.1; done; echo {marker}", go.display())
}

/// Lets a gated command finish once the tailing `st2` is attached: it printed "has started."
/// (the live path, which opens the stream with the credential in the query string).
async fn open_gate_when_attached(tail: &Running, go: &Path) {
    tail.wait_for_stdout("has started.", ST2_TIMEOUT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(go, b"").unwrap();
}

/// `st2 execution tail ID|last` of a running execution: the marker arrives over the stream.
async fn tail_running(st2: &St2, s: &Server, token: &str, by: &str, marker: &str) -> String {
    let go = s.dir.path().join(format!("go-{marker}"));
    let id = start(s, token, &gated(&go, marker)).await;
    wait_for(s, token, &id, &["running"]).await;
    let target = if by == "last" { "last" } else { id.as_str() };
    let tail = st2.spawn(&["execution", "tail", target]);
    open_gate_when_attached(&tail, &go).await;
    let out = tail.finish(ST2_TIMEOUT).await.ok();
    out.has(&format!("Execution {id} has started.")).has(&format!("\n{marker}\n")).has(&completed(&id, "succeeded"));
    id
}

/// `st2 run --tail` of a gated command: the marker arrives over the stream; returns the id.
async fn run_tail(st2: &St2, s: &Server, marker: &str) -> String {
    let go = s.dir.path().join(format!("go-{marker}"));
    let tail = st2.spawn(&["run", "--tail", "core.local", &format!("cmd={}", gated(&go, marker))]);
    open_gate_when_attached(&tail, &go).await;
    let out = tail.finish(ST2_TIMEOUT).await.ok();
    out.has("Tailing execution \"").has(&format!("\n{marker}\n")).has("has completed (status=succeeded).");
    out.has("context.user: st2admin").has("status: succeeded").has(&format!("stdout: {marker}"));
    run_id(&out)
}

both_layouts!(
    auth_prints_tokens_and_errors,
    login_caches_a_token_for_every_command,
    env_token_and_api_key,
    missing_and_expired_credentials
);

// ---------------------------------------------------------------------------------------------
// §6.1

async fn auth_prints_tokens_and_errors(layout: Layout) {
    let s = secure_server();
    let st2 = St2::new(&s, layout);

    let out = st2.run(&["auth", "st2admin", "-p", PASS]).await.ok();
    let row = |name: &str| -> String {
        out.stdout
            .lines()
            .find_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells.len() == 4 && cells[1] == name).then(|| cells[2].to_string())
            })
            .unwrap_or_else(|| panic!("no {name:?} row in {out}"))
    };
    assert_eq!(row("user"), "st2admin", "{out}");
    let token = row("token");
    assert!(token.len() == 32 && token.chars().all(|c| c.is_ascii_hexdigit()), "{out}");
    let expiry = row("expiry");
    assert!(expiry.contains('T') && expiry.ends_with('Z'), "{out}");
    // the printed token is a real one, for st2admin
    let (code, me) = api(&s, reqwest::Method::GET, "/v1/user", &token, None).await;
    assert_eq!((code, me["username"].as_str()), (200, Some("st2admin")), "{me}");

    let out = st2.run(&["auth", "st2admin", "-p", PASS, "-t"]).await.ok();
    let only = out.stdout.trim();
    assert!(only.len() == 32 && only.chars().all(|c| c.is_ascii_hexdigit()), "-t prints only the token: {out}");
    assert_ne!(only, token);
    assert_eq!(api(&s, reqwest::Method::GET, "/v1/actions", only, None).await.0, 200);

    let out = st2.run(&["auth", "st2admin", "-p", "wrong-password"]).await.exit(1);
    assert!(out.all().contains("ERROR: 401 Client Error: Unauthorized"), "{out}");
    assert!(out.all().contains("MESSAGE: Invalid or missing credentials for url: "), "{out}");
    let out = st2.run(&["auth", "nobody", "-p", PASS]).await.exit(1);
    assert!(out.all().contains("MESSAGE: Invalid or missing credentials"), "{out}");

    let out = st2.run(&["auth", "st2admin", "-p", PASS, "-l", "999999"]).await.exit(1);
    assert!(out.all().contains("ERROR: 400 Client Error: Bad Request"), "{out}");
    assert!(out.all().contains("MESSAGE: TTL specified 999999 is greater than max allowed 86400."), "{out}");

    // `auth` caches nothing: without a login the next command has no credentials
    let out = st2.run(&["action", "list"]).await.exit(1);
    assert!(out.all().contains("Unauthorized - One of Token or API key required."), "{out}");
}

// ---------------------------------------------------------------------------------------------
// §6.2, §4.4, §6.13, §11.14: login, then everything from the cached token (no env credentials)

async fn login_caches_a_token_for_every_command(layout: Layout) {
    let mut s = secure_server();
    let st2 = St2::new(&s, layout);
    let admin = new_token(&s, None).await;

    let out = st2.run(&["login", "st2admin", "-p", PASS]).await.ok();
    out.has("Logged in as st2admin");
    let cache = st2.home.path().join(".st2/token-st2admin");
    let cached: Value =
        serde_json::from_slice(&std::fs::read(&cache).unwrap_or_else(|e| panic!("{}: {e}\n{out}", cache.display()))).unwrap();
    let cached_token = cached["token"].as_str().unwrap_or_else(|| panic!("{cached}")).to_string();
    let expires = cached["expire_timestamp"].as_f64().unwrap_or_else(|| panic!("{cached}"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((expires - now - 86400.0).abs() < 300.0, "the cached token expires in 24 h: {cached}");

    let out = st2.run(&["whoami"]).await.ok();
    out.has("Currently logged in as \"st2admin\".").has("Authentication method: authentication token");

    st2.run(&["action", "list"]).await.ok().has("| core.local ");

    let out = st2.run(&["run", "core.local", "cmd=echo hi"]).await.ok();
    out.has("context.user: st2admin").has("status: succeeded").has("stdout: hi");
    let first = run_id(&out);

    // `tail last` of a running execution: REST with the header, the stream with ?x-auth-token=
    let running = tail_running(&st2, &s, &admin, "last", "from-tail-last").await;
    let tailed = run_tail(&st2, &s, "via-run-tail").await;

    // every execution above ran as the logged-in user
    for id in [&first, &tailed] {
        let e = wait_for(&s, &admin, id, &["succeeded"]).await;
        assert_eq!(e["context"]["user"], "st2admin", "{e}");
    }

    // the token survives a restart (§4.1): no new login, the cache is still used
    s.restart();
    let out = st2.run(&["execution", "list"]).await.ok();
    out.has(&first).has(&running).has(&tailed).has("st2admin");
    st2.run(&["whoami"]).await.ok().has("Currently logged in as \"st2admin\".");
    let again: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(again["token"].as_str(), Some(cached_token.as_str()), "the CLI had to log in again");
}

// ---------------------------------------------------------------------------------------------
// §1.1 credential variables, §4.2 (headers for REST, query string for the stream)

async fn env_token_and_api_key(layout: Layout) {
    let s = secure_server();
    let admin = new_token(&s, None).await;
    let (code, key) = api(&s, reqwest::Method::POST, "/v1/apikeys", &admin, Some(json!({}))).await;
    assert_eq!(code, 201, "{key}");
    let key = key["key"].as_str().unwrap_or_else(|| panic!("no key in {key}")).to_string();
    let earlier = start(&s, &admin, "echo earlier").await;
    wait_for(&s, &admin, &earlier, &["succeeded"]).await;
    let env_token = new_token(&s, None).await;

    for (var, value, method) in [("ST2_AUTH_TOKEN", &env_token, "authentication token"), ("ST2_API_KEY", &key, "API key")] {
        let mut st2 = St2::new(&s, layout);
        st2.env.push((var, value.clone()));

        let out = st2.run(&["whoami"]).await.ok();
        out.has("Currently logged in as \"st2admin\".").has(&format!("Authentication method: {method}"));

        st2.run(&["execution", "list"]).await.ok().has(&earlier);

        let marker = format!("ran-with-{var}");
        let out = st2.run(&["run", "core.local", &format!("cmd=echo {marker}")]).await.ok();
        out.has("context.user: st2admin").has("status: succeeded").has(&format!("stdout: {marker}"));

        tail_running(&st2, &s, &admin, "id", &format!("tailed-with-{var}")).await;
        run_tail(&st2, &s, &format!("run-tail-with-{var}")).await;

        assert!(!st2.home.path().join(".st2/token-st2admin").exists(), "{var}: nothing is cached");
    }
}

// ---------------------------------------------------------------------------------------------
// §4.3: the 401 texts, as the CLI prints them

async fn missing_and_expired_credentials(layout: Layout) {
    let s = secure_server();
    let st2 = St2::new(&s, layout);

    for args in [&["action", "list"][..], &["execution", "list"][..], &["run", "core.local", "cmd=true"][..]] {
        let out = st2.run(args).await.exit(1);
        assert!(out.all().contains("ERROR: 401 Client Error: Unauthorized"), "{out}");
        assert!(out.all().contains("MESSAGE: Unauthorized - One of Token or API key required."), "{out}");
    }
    // st2client 3.9.0 tests `if response and …`, and a 401 `requests.Response` is falsy, so
    // whoami never prints "Not authenticated" (contract §6.13): it prints this and exits 0.
    let out = st2.run(&["whoami"]).await.ok();
    out.has("Unable to retrieve currently logged-in user").lacks("Currently logged in as");

    let expired = new_token(&s, Some(1)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut with_expired = St2::new(&s, layout);
    with_expired.env.push(("ST2_AUTH_TOKEN", expired));
    for args in [&["action", "list"][..], &["execution", "list"][..]] {
        let out = with_expired.run(args).await.exit(1);
        assert!(out.all().contains("MESSAGE: Unauthorized - Token has expired."), "{out}");
    }

    let mut unknown = St2::new(&s, layout);
    unknown.env.push(("ST2_AUTH_TOKEN", "0123456789abcdef0123456789abcdef".into()));
    let out = unknown.run(&["action", "list"]).await.exit(1);
    assert!(out.all().contains("MESSAGE: Unauthorized for url: "), "{out}");

    let mut bad_key = St2::new(&s, layout);
    bad_key.env.push(("ST2_API_KEY", "not-a-key".into()));
    let out = bad_key.run(&["action", "list"]).await.exit(1);
    assert!(out.all().contains("MESSAGE: Unauthorized - ApiKey with key_hash="), "{out}");
}
