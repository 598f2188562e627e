//! The `python-script` runner against the real server and a real `python3`: StackStorm-style
//! actions run unchanged, print live, log to stderr, return results (large ones too) over their
//! own pipe, keep secrets out of argv and output, and leave nothing running after a timeout.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Writes pack `py` with one python-script action per `(name, parameters yaml, source)` and
/// restarts the server so it loads them.
fn python_pack(s: &mut Server, actions: &[(&str, &str, &str)]) -> PathBuf {
    let pack = s.packs_dir().join("py");
    write_file(&pack.join("pack.yaml"), "name: py\nversion: 0.1.0\n");
    for (name, params, source) in actions {
        write_file(
            &pack.join(format!("actions/{name}.yaml")),
            &format!("name: {name}\nrunner_type: python-script\nentry_point: {name}.py\nparameters:\n{params}"),
        );
        write_file(&pack.join(format!("actions/{name}.py")), source);
    }
    s.restart();
    pack
}

async fn run(s: &Server, action: &str, parameters: Value) -> String {
    let (code, e) = post(s, "/v1/executions", json!({"action": action, "parameters": parameters})).await;
    assert_eq!(code, 201, "{e}");
    e["id"].as_str().unwrap().to_string()
}

/// Reads output events until `text` has appeared on `stream`; returns everything read so far.
async fn read_until(sse: &mut Sse, seen: &mut Vec<(String, String)>, stream: &str, text: &str) {
    let wait = async {
        loop {
            if seen.iter().filter(|(s, _)| s == stream).map(|(_, d)| d.as_str()).collect::<String>().contains(text) {
                return;
            }
            let ev = sse.next().await.unwrap_or_else(|| panic!("stream ended before {stream} showed {text:?}: {seen:?}"));
            if ev.event.as_deref() == Some("st2.execution.output__create") {
                let doc: Value = serde_json::from_str(&ev.data).unwrap();
                seen.push((doc["output_type"].as_str().unwrap().into(), doc["data"].as_str().unwrap().into()));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.unwrap_or_else(|_| panic!("{text:?} never arrived on {stream}: {seen:?}"));
}

/// A process that exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().next() != Some("Z")))
        .unwrap_or(false)
}

const TALK: &str = r#"import os
import time

from st2common.runners.base_action import Action


class Talk(Action):
    def run(self, go_file, name="world"):
        print("first line")
        self.logger.debug("hidden debug line")
        self.logger.info("hello %s", name)
        deadline = time.time() + 30
        while not os.path.exists(go_file) and time.time() < deadline:
            time.sleep(0.02)
        print("second line")
        try:
            self.config["nope"]
            missing = None
        except KeyError as e:
            missing = str(e)
        return {
            "greeting": "hi " + name,
            "region": self.config["region"],
            "missing": missing,
            "foo": os.environ.get("FOO"),
            "pythonpath_ignored": "/not/used" not in os.environ.get("PYTHONPATH", ""),
            "pack": os.environ.get("ST2_ACTION_PACK_NAME"),
            "execution": os.environ.get("ST2_ACTION_EXECUTION_ID"),
            "debug": os.environ.get("ST2_ACTION_DEBUG"),
            "api_url": os.environ.get("ST2_API_URL") == os.environ.get("ST2_ACTION_API_URL") != None,
            "token": os.environ.get("ST2_AUTH_TOKEN") == os.environ.get("ST2_ACTION_AUTH_TOKEN") != None,
        }
"#;

#[tokio::test]
async fn prints_stream_live_and_the_logger_writes_stderr() {
    let mut s = Server::start();
    let pack = python_pack(&mut s, &[("talk", "  go_file: {type: string, required: true}\n  name: {type: string}\n", TALK)]);
    write_file(&pack.join("config.yaml"), "region: eu-west\n");
    let (_, runner) = get(&s, "/v1/runnertypes/python-script").await;
    assert_eq!(runner["output_key"], "result", "{runner}");
    assert_eq!(runner["runner_parameters"]["timeout"]["default"], 600);

    let go = s.dir.path().join("go");
    let id =
        run(&s, "py.talk", json!({"go_file": go, "name": "ada", "log_level": "INFO", "env": {"FOO": "bar", "pythonpath": "/not/used"}}))
            .await;
    let mut sse = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &[]).await;
    let mut seen = Vec::new();
    read_until(&mut sse, &mut seen, "stdout", "first line\n").await;
    read_until(&mut sse, &mut seen, "stderr", "actions.python.Talk: INFO hello ada\n").await;
    // Both arrived while the action is still waiting for us: they are live.
    let (_, now) = get(&s, &format!("/v1/executions/{id}")).await;
    assert_eq!(now["status"], "running", "{now}");
    std::fs::write(&go, "").unwrap();
    read_until(&mut sse, &mut seen, "stdout", "second line\n").await;

    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let result = &done["result"];
    assert_eq!(result["stdout"], "first line\nsecond line\n");
    assert_eq!(result["stderr"], "actions.python.Talk: INFO hello ada\n", "DEBUG is below log_level INFO");
    assert_eq!(result["exit_code"], 0);
    let r = &result["result"];
    assert_eq!(r["greeting"], "hi ada");
    assert_eq!(r["region"], "eu-west");
    let missing = r["missing"].as_str().unwrap();
    assert!(missing.contains(r#"Config for pack "py" is missing key "nope""#) && missing.contains("config.yaml"), "{missing}");
    assert_eq!(r["foo"], "bar");
    assert_eq!(r["pythonpath_ignored"], true);
    assert_eq!(r["pack"], "py");
    assert_eq!(r["execution"], id);
    assert_eq!(r["debug"], "False");
    assert_eq!(r["api_url"], true);
    assert_eq!(r["token"], true);
}

#[tokio::test]
async fn return_conventions_and_failures() {
    let mut s = Server::start();
    let base = "from st2common.runners.base_action import Action\n\n\n";
    let refuse = format!("{base}class Refuse(Action):\n    def run(self):\n        return (False, {{\"why\": \"no\"}})\n");
    let agree = format!("{base}class Agree(Action):\n    def run(self, n):\n        return True, [n, None]\n");
    let boom =
        format!("{base}class Boom(Action):\n    def run(self):\n        print('about to fail')\n        raise ValueError('kaboom')\n");
    let badstatus = format!("{base}class Bad(Action):\n    def run(self):\n        return ('yes', 1)\n");
    let plain = "class NotAnAction(object):\n    pass\n".to_string();
    let odd = format!(
        "import datetime\n{base}class Odd(Action):\n    def run(self):\n        return {{'when': datetime.date(2024, 1, 2), 'tuple': (1, 2, 3)}}\n"
    );
    let service = format!("{base}class Svc(Action):\n    def run(self):\n        return self.action_service.get_value('k')\n");
    python_pack(
        &mut s,
        &[
            ("refuse", "  {}\n", &refuse),
            ("agree", "  n: {type: integer}\n", &agree),
            ("boom", "  {}\n", &boom),
            ("badstatus", "  {}\n", &badstatus),
            ("plain", "  {}\n", &plain),
            ("odd", "  {}\n", &odd),
            ("service", "  {}\n", &service),
        ],
    );
    let mut ids = Vec::new();
    for (action, params) in [
        ("py.refuse", json!({})),
        ("py.agree", json!({"n": "7"})),
        ("py.boom", json!({})),
        ("py.badstatus", json!({})),
        ("py.plain", json!({})),
        ("py.odd", json!({})),
        ("py.service", json!({})),
    ] {
        ids.push(run(&s, action, params).await);
    }
    let mut done = Vec::new();
    for id in &ids {
        done.push(wait_done(&s, id, Duration::from_secs(30)).await);
    }
    let [refuse, agree, boom, badstatus, plain, odd, service] = &done[..] else { unreachable!() };

    assert_eq!(refuse["status"], "failed", "{refuse}");
    assert_eq!(refuse["result"]["result"], json!({"why": "no"}));
    assert_eq!(refuse["result"]["exit_code"], 0);

    assert_eq!(agree["status"], "succeeded", "{agree}");
    assert_eq!(agree["result"]["result"], json!([7, null]), "parameters are cast to their declared types");

    assert_eq!(boom["status"], "failed", "{boom}");
    assert_eq!(boom["result"]["result"], "None");
    assert_eq!(boom["result"]["exit_code"], 1);
    assert_eq!(boom["result"]["stdout"], "about to fail\n");
    let stderr = boom["result"]["stderr"].as_str().unwrap();
    assert!(stderr.starts_with("Traceback (most recent call last):") && stderr.contains("ValueError: kaboom"), "{stderr}");
    assert!(stderr.contains("boom.py"), "the traceback names the action's file: {stderr}");

    assert_eq!(badstatus["status"], "failed", "{badstatus}");
    assert_eq!(badstatus["result"]["exit_code"], 220);
    assert!(
        badstatus["result"]["stderr"]
            .as_str()
            .unwrap()
            .contains("Status returned from the action run() method must either be True or False, got: yes")
    );

    assert_eq!(plain["status"], "failed", "{plain}");
    assert!(plain["result"]["stderr"].as_str().unwrap().contains("has no action class or the file doesn't exist."), "{plain}");

    assert_eq!(odd["status"], "succeeded", "{odd}");
    assert_eq!(odd["result"]["result"], json!({"when": "2024-01-02", "tuple": [1, 2, 3]}));

    assert_eq!(service["status"], "failed", "{service}");
    let stderr = service["result"]["stderr"].as_str().unwrap();
    assert!(stderr.contains("NotImplementedError") && stderr.contains("datastore"), "{stderr}");
}

#[tokio::test]
async fn a_large_result_arrives_intact_and_apart_from_stdout() {
    let mut s = Server::start();
    let big = "from st2common.runners.base_action import Action\n\n\nclass Big(Action):\n    def run(self, size):\n        print('made it')\n        return {'blob': 'x' * size, 'items': list(range(10000)), 'text': 'caf\\u00e9 \\u2603'}\n";
    python_pack(&mut s, &[("big", "  size: {type: integer, required: true}\n", big)]);
    let size = 5_000_000;
    let id = run(&s, "py.big", json!({"size": size})).await;
    let done = wait_done(&s, &id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{}", &done.to_string()[..500]);
    let r = &done["result"]["result"];
    let blob = r["blob"].as_str().unwrap();
    assert_eq!(blob.len(), size);
    assert!(blob.bytes().all(|b| b == b'x'));
    assert_eq!(r["items"].as_array().unwrap().len(), 10000);
    assert_eq!(r["items"][9999], 9999);
    assert_eq!(r["text"], "café ☃");
    assert_eq!(done["result"]["stdout"], "made it\n", "the result never travels on stdout");
    let stored = get_bytes(&s, &format!("/v1/executions/{id}/output")).await;
    assert_eq!(stored, b"made it\n");

    // Beyond 64 MiB the result is not kept, and that is said, not fatal.
    let id = run(&s, "py.big", json!({"size": 70_000_000})).await;
    let done = wait_done(&s, &id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["result"], "None");
    assert!(done["result"]["result_omitted"].as_str().unwrap().contains("was not kept"), "{done}");
}

#[tokio::test]
async fn secret_parameters_stay_out_of_argv_and_output() {
    let mut s = Server::start();
    let leak = r#"import os
import sys
import time

from st2common.runners.base_action import Action


class Leak(Action):
    def run(self, password, go_file):
        for ch in password:
            sys.stdout.write(ch)
            sys.stdout.flush()
            time.sleep(0.01)
        print()
        self.logger.info("using %s", password)
        print("token:" + os.environ["ST2_AUTH_TOKEN"])
        print("ready")
        deadline = time.time() + 30
        while not os.path.exists(go_file) and time.time() < deadline:
            time.sleep(0.02)
        return {"length": len(password)}
"#;
    python_pack(&mut s, &[("leak", "  password: {type: string, secret: true, required: true}\n  go_file: {type: string}\n", leak)]);
    let secret = "Tr0ub4dor-and-3-horses";
    let go = s.dir.path().join("go");
    let (code, e) = post(&s, "/v1/executions", json!({"action": "py.leak", "parameters": {"password": secret, "go_file": go}})).await;
    assert_eq!(code, 201, "{e}");
    assert_eq!(e["parameters"]["password"], "********");
    let id = e["id"].as_str().unwrap().to_string();

    let mut sse = Sse::open(&s.url(&format!("/stream/v1/executions/{id}/output")), &[]).await;
    let mut seen = Vec::new();
    read_until(&mut sse, &mut seen, "stdout", "ready\n").await;
    // The action is running and holds the secret: no process shows it in argv or environment.
    let mut wrapper_seen = false;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        for file in ["cmdline", "environ"] {
            let Ok(bytes) = std::fs::read(entry.path().join(file)) else { continue };
            if file == "cmdline" && bytes.windows(24).any(|w| w == b"squall_python_wrapper.py") {
                wrapper_seen = true;
            }
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret is in {}/{file}", entry.path().display());
        }
    }
    assert!(wrapper_seen, "the wrapper was running while /proc was scanned");
    std::fs::write(&go, "").unwrap();
    let rest = sse.rest().await;
    let streamed: String = seen.iter().map(|(_, d)| d.as_str()).collect::<String>() + &output_text(&rest);

    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["result"], json!({"length": secret.len()}));
    let stored = String::from_utf8(get_bytes(&s, &format!("/v1/executions/{id}/output")).await).unwrap();
    for (name, text) in [("stream", streamed), ("/output", stored.clone()), ("result", done["result"].to_string())] {
        assert!(!text.contains(secret), "{name} leaked the secret: {text}");
    }
    let stdout = String::from_utf8(get_bytes(&s, &format!("/v1/executions/{id}/output?output_type=stdout")).await).unwrap();
    assert_eq!(
        stdout, "********\ntoken:********\nready\n",
        "the secret printed byte by byte is masked, and ST2_AUTH_TOKEN is the action's (masked) token"
    );
    assert!(stored.contains("actions.python.Leak: INFO using ********\n"), "{stored}");
}

const SLEEPER: &str = r#"import subprocess
import sys
import time

from st2common.runners.base_action import Action


class Sleeper(Action):
    def run(self):
        child = subprocess.Popen(["sleep", "300"])
        print("child %d" % child.pid)
        sys.stdout.flush()
        time.sleep(300)
"#;

async fn child_pid(s: &Server, id: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = String::from_utf8(get_bytes(s, &format!("/v1/executions/{id}/output?output_type=stdout")).await).unwrap();
        if let Some(pid) = out.lines().find_map(|l| l.strip_prefix("child ")) {
            return pid.trim().parse().unwrap();
        }
        if Instant::now() > deadline {
            let (_, e) = get(s, &format!("/v1/executions/{id}")).await;
            panic!("the action never reported its child: {e}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn timeout_and_cancel_kill_what_the_action_spawned() {
    let mut s = Server::start();
    python_pack(&mut s, &[("sleeper", "  {}\n", SLEEPER)]);

    // Long enough for Python to start and report its child on a loaded machine.
    let id = run(&s, "py.sleeper", json!({"timeout": 6})).await;
    let child = child_pid(&s, &id).await;
    assert!(alive(child));
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "timeout", "{done}");
    let result = &done["result"];
    assert_eq!(result["error"], "Action failed to complete in 6 seconds");
    assert_eq!(result["exit_code"], -9);
    assert_eq!(result["result"], "None");
    assert_eq!(result["stdout"], format!("child {child}\n"));
    assert!(!alive(child), "the action's child {child} survived the timeout");

    let id = run(&s, "py.sleeper", json!({})).await;
    let child = child_pid(&s, &id).await;
    let r = reqwest::Client::new().delete(s.url(&format!("/v1/executions/{id}"))).send().await.unwrap();
    assert!(r.status().is_success());
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "canceled", "{done}");
    assert!(!alive(child), "the action's child {child} survived the cancel");
}

#[tokio::test]
async fn a_pack_virtualenv_is_used_when_present() {
    let mut s = Server::start();
    let which = "import sys\n\nfrom st2common.runners.base_action import Action\n\n\nclass Which(Action):\n    def run(self):\n        return sys.prefix\n";
    let pack = python_pack(&mut s, &[("which", "  {}\n", which)]);
    let id = run(&s, "py.which", json!({})).await;
    let system = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(system["status"], "succeeded", "{system}");

    // StackStorm's layout: <packs base>/../virtualenvs/<pack>.
    let venv = s.dir.path().join("virtualenvs/py");
    let made = std::process::Command::new("python3").args(["-m", "venv", "--without-pip"]).arg(&venv).status().unwrap();
    assert!(made.success());
    let id = run(&s, "py.which", json!({})).await;
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let prefix = Path::new(done["result"]["result"].as_str().unwrap()).canonicalize().unwrap();
    assert_eq!(prefix, venv.canonicalize().unwrap(), "ran with the pack's virtualenv");
    assert_ne!(system["result"]["result"], done["result"]["result"]);
    let _ = pack;
}
