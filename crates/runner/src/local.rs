//! The local runners: `local-shell-cmd` (a command line run by `bash -c`, see [`crate::run_as`]) and
//! `local-shell-script` (a pack script with StackStorm's argument serialisation).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};
use squall_core::params::py_repr;
use squall_core::{Action, Execution};

use crate::process::Job;
use crate::run_as::ActionUser;

/// What a local job needs besides the execution itself.
pub struct LocalContext<'a> {
    pub runner: &'a Map<String, Value>,
    pub action: &'a Map<String, Value>,
    /// Names of secret parameters: passed through the environment, never spelled out in argv.
    pub secrets: &'a [String],
    /// The script's path, for `local-shell-script`.
    pub script: Option<&'a Path>,
    /// Environment every action gets (allow-listed server variables plus `ST2_ACTION_*`).
    pub base_env: BTreeMap<String, String>,
    pub grace: Duration,
    /// Who the command runs as, and with which bash.
    pub user: &'a ActionUser,
}

/// Builds the process for a local action, or explains why it cannot run.
pub fn build_job(execution: &Execution, ctx: LocalContext<'_>) -> Result<Job, String> {
    let mut env = action_env(ctx.base_env, ctx.runner);
    let line = match ctx.script {
        None => match ctx.runner.get("cmd") {
            Some(Value::String(cmd)) => cmd.clone(),
            _ => return Err("Parameter \"cmd\" is required for a local command".into()),
        },
        Some(script) => {
            make_executable(script);
            script_line(quote(&script.display().to_string()), &execution.action, ctx.action, ctx.runner, ctx.secrets, &mut env)
        }
    };

    let sudo = ctx.runner.get("sudo").and_then(Value::as_bool).unwrap_or(false);
    let sudo_password = ctx.runner.get("sudo_password").and_then(Value::as_str).filter(|p| !p.is_empty());
    let sudo_password = sudo_password.filter(|_| sudo);
    let mut command = ctx.user.shell(&line, sudo, sudo_password.is_some())?;
    let stdin = sudo_password.map(|p| format!("{p}\n").into_bytes());
    command.env_clear().envs(&env);
    if let Some(Value::String(cwd)) = ctx.runner.get("cwd")
        && !cwd.is_empty()
    {
        command.current_dir(cwd);
    }
    let timeout = ctx.runner.get("timeout").and_then(Value::as_i64).filter(|t| *t > 0).map(|t| Duration::from_secs(t as u64));
    Ok(Job { command, stdin, timeout, grace: ctx.grace })
}

/// The environment a shell action gets: `base` (allow-listed server variables and `ST2_*`), the
/// user's `env` over it, then `ST2_*` and `ST2_ACTION_DEBUG`, which win (runner semantics §7).
pub fn action_env(base: BTreeMap<String, String>, runner: &Map<String, Value>) -> BTreeMap<String, String> {
    let (st2, mut env): (BTreeMap<_, _>, BTreeMap<_, _>) = base.into_iter().partition(|(k, _)| k.starts_with("ST2_"));
    if let Some(Value::Object(user_env)) = runner.get("env") {
        for (k, v) in user_env {
            env.insert(k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string));
        }
    }
    env.extend(st2);
    let debug = runner.get("debug").and_then(Value::as_bool).unwrap_or(false);
    env.insert("ST2_ACTION_DEBUG".into(), if debug { "True" } else { "False" }.into());
    env
}

fn make_executable(script: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(script) {
        let mut perms = meta.permissions();
        if perms.mode() & 0o111 != 0o111 {
            perms.set_mode(perms.mode() | 0o111);
            let _ = std::fs::set_permissions(script, perms);
        }
    }
}

/// `<program> <named args…> <positional args…>` as StackStorm builds it (runner semantics §4);
/// `program` is already in shell syntax. Secret values are exported as `SQUALL_SECRET_<n>` and
/// referenced, so the shell's own argv never spells them out.
pub fn script_line(
    program: String,
    action: &Action,
    values: &Map<String, Value>,
    runner: &Map<String, Value>,
    secrets: &[String],
    env: &mut BTreeMap<String, String>,
) -> String {
    let kwarg_op = runner.get("kwarg_op").and_then(Value::as_str).unwrap_or("--");
    let mut words = vec![program];
    let mut positional: Vec<(i64, String)> = Vec::new();
    let mut secret_n = 0;
    let mut word_for = |name: &str, text: String, env: &mut BTreeMap<String, String>| {
        if secrets.iter().any(|s| s == name) {
            secret_n += 1;
            let var = format!("SQUALL_SECRET_{secret_n}");
            env.insert(var.clone(), text);
            format!("\"${var}\"")
        } else {
            quote(&text)
        }
    };
    for (name, spec) in &action.parameters {
        let value = values.get(name).unwrap_or(&Value::Null);
        if let Some(position) = spec.get("position").and_then(Value::as_i64) {
            let ty = spec.get("type").and_then(Value::as_str).unwrap_or("string");
            positional.push((position, word_for(name, positional_text(ty, value), env)));
            continue;
        }
        match value {
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            Value::Bool(false) => {}
            Value::Bool(true) => words.push(quote(&format!("{kwarg_op}{name}"))),
            other => {
                let text = match other {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    v => py_repr(v),
                };
                words.push(format!("{}={}", quote(&format!("{kwarg_op}{name}")), word_for(name, text, env)));
            }
        }
    }
    positional.sort_by_key(|(p, _)| *p);
    words.extend(positional.into_iter().map(|(_, w)| w));
    words.join(" ")
}

/// Text of a positional argument by declared type (runner semantics §4.2). Unlike StackStorm,
/// an integer `0` is passed as `0`, not as an empty string.
fn positional_text(ty: &str, value: &Value) -> String {
    match (ty, value) {
        (_, Value::Null) => String::new(),
        ("boolean", Value::Bool(b)) => if *b { "1" } else { "0" }.into(),
        ("array", Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect::<Vec<_>>().join(",")
        }
        ("object", Value::Object(m)) if m.is_empty() => String::new(),
        (_, Value::String(s)) => s.clone(),
        (_, other) => other.to_string(),
    }
}

/// POSIX shell single-quoting.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use squall_core::action::ActionMetadata;

    #[test]
    fn serialises_like_stackstorm() {
        let meta: ActionMetadata = serde_json::from_value(json!({
            "name": "s", "runner_type": "local-shell-script", "entry_point": "s.sh",
            "parameters": {
                "name": {"type": "string", "position": 0},
                "tags": {"type": "array", "position": 1},
                "count": {"type": "integer"},
                "verbose": {"type": "boolean"},
                "note": {"type": "string"},
                "items": {"type": "array"},
                "token": {"type": "string", "secret": true}
            }
        }))
        .unwrap();
        let action = Action::from_metadata("p", meta, "actions/s.yaml");
        let values =
            json!({"name": "a b", "tags": ["x", "y"], "count": 3, "verbose": true, "note": "", "items": ["a", "b"], "token": "s3cr3t"});
        let mut env = BTreeMap::new();
        let line = script_line(
            "/packs/p/actions/s.sh".into(),
            &action,
            values.as_object().unwrap(),
            &Map::new(),
            &["token".to_string()],
            &mut env,
        );
        assert_eq!(
            line,
            "/packs/p/actions/s.sh --count=3 --verbose --items='['\\''a'\\'', '\\''b'\\'']' --token=\"$SQUALL_SECRET_1\" 'a b' x,y"
        );
        assert_eq!(env["SQUALL_SECRET_1"], "s3cr3t");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
