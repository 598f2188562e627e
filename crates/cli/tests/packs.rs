//! Real packs against the real server: a bad file never takes the server down, commands run
//! under bash, and actions run as `[system_user] user` when the server runs as root.

mod common;
#[path = "common/st2.rs"]
mod st2;

use std::process::Command;
use std::time::Duration;

use common::{Server, get, get_bytes, post, run_cmd, wait_done, write_file};
use serde_json::json;
use st2::{Layout, St2};

/// A pack mixing runnable actions with files squall cannot use.
fn write_mixed_pack(packs: &std::path::Path) {
    let pack = packs.join("mixed");
    write_file(&pack.join("pack.yaml"), "name: mixed\nversion: 0.1.0\n");
    write_file(
        &pack.join("actions/hello.yaml"),
        "name: hello\nrunner_type: local-shell-cmd\ndescription: Says hello\nparameters:\n  cmd: {default: echo hello}\n",
    );
    write_file(
        &pack.join("actions/flow.yaml"),
        "name: flow\nrunner_type: orquesta\nentry_point: workflows/flow.yaml\ndescription: A workflow\n",
    );
    write_file(&pack.join("actions/broken.yaml"), "name: broken\nrunner_type: [local-shell-cmd\n");
    write_file(&pack.join("actions/lost.yaml"), "name: lost\nrunner_type: local-shell-script\nentry_point: lost.sh\n");
}

#[tokio::test]
async fn a_pack_with_bad_files_loads_the_rest_and_says_why() {
    let mut s = Server::start();
    write_mixed_pack(&s.packs_dir());
    s.restart();

    let log = s.log();
    for (file, reason) in [
        ("flow.yaml", "runner type \"orquesta\", which squall does not provide"),
        ("broken.yaml", "the action is skipped"),
        ("lost.yaml", "actions/lost.sh does not exist"),
    ] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(file)).collect();
        // The server was started twice (before and after the pack was written): once each.
        assert_eq!(lines.len(), 1, "{file} is reported once: {lines:#?}");
        assert!(lines[0].contains(reason) && lines[0].contains("WARN"), "{}", lines[0]);
    }
    assert!(log.contains("loaded 1 packs with 1 actions and 2 that cannot run"), "{log}");

    let id = post(&s, "/v1/executions", json!({"action": "mixed.hello"})).await.1["id"].as_str().unwrap().to_string();
    assert_eq!(wait_done(&s, &id, Duration::from_secs(20)).await["result"]["stdout"], "hello");

    let (code, body) = post(&s, "/v1/executions", json!({"action": "mixed.flow"})).await;
    assert_eq!(code, 400, "{body}");
    let faultstring = body["faultstring"].as_str().unwrap();
    assert!(faultstring.contains("mixed.flow") && faultstring.contains("\"orquesta\""), "{faultstring}");

    let (_, actions) = get(&s, "/v1/actions?pack=mixed").await;
    let refs: Vec<&str> = actions.as_array().unwrap().iter().map(|a| a["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, ["mixed.flow", "mixed.hello", "mixed.lost"]);
    assert!(actions[0]["unavailable"].as_str().unwrap().contains("orquesta"));
    assert!(actions[1].get("unavailable").is_none());

    let st2 = St2::new(&s, Layout::BareV1);
    let listed = st2.run(&["action", "list", "--pack", "mixed"]).await.ok();
    listed.has("mixed.flow").has("cannot run on squall").has("mixed.hello");
    // st2 looks the runner type up before it posts, and names it.
    st2.run(&["run", "mixed.flow"]).await.exit(1).has("Runner type \"orquesta\"");
}

#[test]
fn squall_pack_check_lists_what_loads_and_what_not() {
    let dir = tempfile::tempdir().unwrap();
    write_mixed_pack(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_squall")).args(["pack", "check"]).arg(dir.path().join("mixed")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "problems make it fail: {text}");
    assert!(text.contains("ok           mixed.hello"), "{text}");
    assert!(text.contains("unavailable  mixed.flow") && text.contains("unavailable  mixed.lost"), "{text}");
    assert!(text.contains("broken.yaml") && text.contains("1 actions runnable, 2 unavailable, 1 files not loaded"), "{text}");

    std::fs::remove_file(dir.path().join("mixed/actions/broken.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("mixed/actions/flow.yaml")).unwrap();
    write_file(&dir.path().join("mixed/actions/lost.sh"), "#!/bin/bash\necho found\n");
    let out = Command::new(env!("CARGO_BIN_EXE_squall")).args(["pack", "check"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_squall")).args(["pack", "check"]).arg(empty.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pack in"));
}

#[tokio::test]
async fn commands_run_under_bash() {
    let s = Server::start();
    let cmd = r#"echo $[1+1]; a=(x y z); echo "${a[2]} ${#a[@]}"; [[ abc == a* ]] && echo glob; printf 'a\xffb\n'"#;
    let id = run_cmd(&s, cmd, json!({})).await;
    let done = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let bytes = get_bytes(&s, &format!("/v1/executions/{id}/stdout")).await;
    assert_eq!(bytes, b"2\nz 3\nglob\na\xffb\n", "{}", String::from_utf8_lossy(&bytes));
}

fn root() -> bool {
    nix::unistd::Uid::current().is_root()
}

/// Creates (once) an unprivileged account for actions to run as.
fn action_account() -> &'static str {
    const USER: &str = "squall-act";
    assert!(root(), "this test must run as root: it creates the user {USER} and checks that actions switch to it");
    assert!(std::path::Path::new("/usr/bin/sudo").exists(), "sudo is missing: apt-get install sudo (scripts/test does)");
    if !Command::new("id").args(["-u", USER]).output().unwrap().status.success() {
        let out = Command::new("useradd").args(["--create-home", "--shell", "/bin/bash", USER]).output().unwrap();
        assert!(out.status.success(), "useradd: {}", String::from_utf8_lossy(&out.stderr));
    }
    USER
}

/// The pack of one Python action that prints the user it runs as.
fn write_whoami_pack(packs: &std::path::Path) {
    let pack = packs.join("who");
    write_file(&pack.join("pack.yaml"), "name: who\nversion: 0.1.0\n");
    write_file(&pack.join("actions/py.yaml"), "name: py\nrunner_type: python-script\nentry_point: py.py\n");
    write_file(
        &pack.join("actions/py.py"),
        "import getpass, os\nfrom st2common.runners.base_action import Action\n\nclass Who(Action):\n    def run(self):\n        return getpass.getuser() + ' ' + os.environ['HOME']\n",
    );
}

#[tokio::test]
async fn as_root_actions_run_as_the_system_user() {
    let user = action_account();
    let mut s = Server::start_with(&[("SQUALL_SYSTEM_USER__USER", user)]);
    // The test's directory is private (0700); the action user must reach the pack in it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    write_whoami_pack(&s.packs_dir());
    s.restart();
    assert!(s.log().contains(&format!("actions run as {user} ([system_user] user) through sudo")), "{}", s.log());

    let id = run_cmd(&s, "id -un; echo $HOME", json!({})).await;
    let done = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(done["result"]["stdout"], format!("{user}\n/home/{user}"), "{done}");

    let (_, e) = post(&s, "/v1/executions", json!({"action": "core.local_sudo", "parameters": {"cmd": "id -un"}})).await;
    let id = e["id"].as_str().unwrap().to_string();
    assert_eq!(wait_done(&s, &id, Duration::from_secs(20)).await["result"]["stdout"], "root", "sudo: true runs as root");

    let data = s.data_dir().display().to_string();
    let id = run_cmd(&s, &format!("ls {data} || echo refused"), json!({})).await;
    let done = wait_done(&s, &id, Duration::from_secs(20)).await;
    assert_eq!(done["result"]["stdout"], "refused", "the action user cannot read the data directory: {done}");
    assert!(done["result"]["stderr"].as_str().unwrap().contains("Permission denied"), "{done}");

    let id = post(&s, "/v1/executions", json!({"action": "who.py"})).await.1["id"].as_str().unwrap().to_string();
    let done = wait_done(&s, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["result"], format!("{user} /home/{user}"), "Python actions run as the same user: {done}");
}

#[tokio::test]
async fn without_the_system_user_actions_run_as_the_server_user_and_it_says_so() {
    let s = Server::start_with(&[("SQUALL_SYSTEM_USER__USER", "squall-nosuchuser")]);
    let line = s.log().lines().find(|l| l.contains("actions run as")).map(str::to_string).unwrap_or_default();
    let me = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string();
    assert!(line.contains(&format!("actions run as {me}, the server's user")), "{line}");
    assert!(line.contains("squall-nosuchuser") && line.contains("[system_user] user"), "{line}");
    let id = run_cmd(&s, "id -un", json!({})).await;
    assert_eq!(wait_done(&s, &id, Duration::from_secs(20)).await["result"]["stdout"], me.as_str());
}
