//! Actions and runner types: what can be run, and with which parameters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::id::stable_id;

/// An action, in StackStorm's shape. `parameters` maps each name to its JSON-schema-like
/// definition and keeps the metadata's declaration order (script arguments depend on it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub id: String,
    pub uid: String,
    #[serde(rename = "ref")]
    pub ref_: String,
    pub pack: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub entry_point: String,
    pub runner_type: String,
    pub parameters: Map<String, Value>,
    pub output_schema: Map<String, Value>,
    pub notify: Map<String, Value>,
    pub tags: Vec<Value>,
    pub metadata_file: String,
    /// Why squall cannot run this action (a runner it does not provide, a missing entry point,
    /// an invalid parameter schema): such actions are listed, so an operator sees what does not
    /// work, and refused with this reason when run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// The part of an action's metadata file (`actions/<name>.yaml`) squall reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ActionMetadata {
    pub name: String,
    #[serde(default)]
    pub pack: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub entry_point: String,
    pub runner_type: String,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub output_schema: Map<String, Value>,
    #[serde(default)]
    pub notify: Map<String, Value>,
    #[serde(default)]
    pub tags: Vec<Value>,
}

fn yes() -> bool {
    true
}

impl Action {
    /// Builds an action of `pack` from its metadata (`metadata_file` is relative to the pack).
    pub fn from_metadata(pack: &str, meta: ActionMetadata, metadata_file: &str) -> Action {
        let ref_ = format!("{pack}.{}", meta.name);
        Action {
            id: stable_id(&format!("action:{ref_}")),
            uid: format!("action:{pack}:{}", meta.name),
            ref_,
            pack: pack.to_string(),
            name: meta.name,
            description: meta.description,
            enabled: meta.enabled,
            entry_point: meta.entry_point,
            runner_type: meta.runner_type,
            parameters: meta.parameters,
            output_schema: meta.output_schema,
            notify: meta.notify,
            tags: meta.tags,
            metadata_file: metadata_file.to_string(),
            unavailable: None,
        }
    }

    /// Marks the action as one squall cannot run, for `reason`.
    pub fn mark_unavailable(&mut self, reason: String) {
        self.unavailable.get_or_insert(reason);
    }
}

/// What is wrong with an action's parameter schema, if anything: each parameter must be a
/// mapping whose `type` (when given) is a JSON-schema type, with a non-negative integer
/// `position`, boolean `required`, `secret` and `immutable`, and a list for `enum`.
pub fn parameter_schema_problem(parameters: &Map<String, Value>) -> Option<String> {
    const TYPES: [&str; 7] = ["string", "integer", "number", "boolean", "object", "array", "null"];
    for (name, definition) in parameters {
        let Value::Object(d) = definition else { return Some(format!("parameter \"{name}\" is not a mapping")) };
        let type_ok = match d.get("type") {
            None => true,
            Some(Value::String(t)) => TYPES.contains(&t.as_str()),
            Some(Value::Array(ts)) => ts.iter().all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t))),
            Some(_) => false,
        };
        if !type_ok {
            return Some(format!("parameter \"{name}\" has type {}, not one of {}", d["type"], TYPES.join(", ")));
        }
        if d.get("position").is_some_and(|p| !p.is_u64()) {
            return Some(format!("parameter \"{name}\" has position {}, not a non-negative integer", d["position"]));
        }
        for flag in ["required", "secret", "immutable"] {
            if d.get(flag).is_some_and(|v| !v.is_boolean()) {
                return Some(format!("parameter \"{name}\" has {flag}: {}, not true or false", d[flag]));
            }
        }
        if d.get("enum").is_some_and(|v| !v.is_array()) {
            return Some(format!("parameter \"{name}\" has an enum that is not a list"));
        }
    }
    None
}

/// A runner type: the kind of thing that runs an action, and the parameters it understands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerType {
    pub id: String,
    pub uid: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub runner_package: String,
    pub runner_module: String,
    pub runner_parameters: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Map<String, Value>>,
}

/// Everything runnable: the runner types squall implements and the actions of loaded packs.
/// Built once at start-up and shared read-only.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    runners: BTreeMap<String, RunnerType>,
    /// Keyed by `(pack, name)` so iteration is sorted by pack, then name, as StackStorm lists.
    actions: BTreeMap<(String, String), Action>,
}

/// Why an action could not be added to the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("action {0} is defined twice")]
    Duplicate(String),
}

impl Catalog {
    /// The built-in runner types and the built-in `core` pack.
    pub fn builtin() -> Catalog {
        let mut catalog = Catalog::default();
        for runner in builtin_runners() {
            catalog.runners.insert(runner.name.clone(), runner);
        }
        for meta in core_pack() {
            catalog.add_action(Action::from_metadata("core", meta.1, meta.0)).expect("core pack is valid");
        }
        catalog
    }

    /// Adds `action`; one whose runner type squall does not provide is added as unavailable,
    /// with the reason naming the runner.
    pub fn add_action(&mut self, mut action: Action) -> Result<(), CatalogError> {
        if !self.runners.contains_key(&action.runner_type) {
            let available = self.runners.keys().cloned().collect::<Vec<_>>().join(", ");
            action.mark_unavailable(format!(
                "it uses runner type \"{}\", which squall does not provide (available: {available})",
                action.runner_type
            ));
        }
        let key = (action.pack.clone(), action.name.clone());
        if self.actions.contains_key(&key) {
            return Err(CatalogError::Duplicate(action.ref_));
        }
        self.actions.insert(key, action);
        Ok(())
    }

    /// Looks an action up by `pack.name` ref or by id.
    pub fn action(&self, ref_or_id: &str) -> Option<&Action> {
        if let Some((pack, name)) = ref_or_id.split_once('.')
            && let Some(a) = self.actions.get(&(pack.to_string(), name.to_string()))
        {
            return Some(a);
        }
        self.actions.values().find(|a| a.id == ref_or_id)
    }

    /// Actions sorted by pack, then name.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.actions.values()
    }

    pub fn runner(&self, name_or_id: &str) -> Option<&RunnerType> {
        self.runners.get(name_or_id).or_else(|| self.runners.values().find(|r| r.id == name_or_id))
    }

    /// Runner types sorted by name.
    pub fn runners(&self) -> impl Iterator<Item = &RunnerType> {
        self.runners.values()
    }
}

fn runner(name: &str, description: &str, package: &str, module: &str, params: Value) -> RunnerType {
    RunnerType {
        id: stable_id(&format!("runner_type:{name}")),
        uid: format!("runner_type:{name}"),
        name: name.to_string(),
        description: description.to_string(),
        enabled: true,
        runner_package: package.to_string(),
        runner_module: module.to_string(),
        runner_parameters: params.as_object().cloned().unwrap_or_default(),
        output_key: None,
        output_schema: None,
    }
}

/// The runner types squall implements, with StackStorm's parameters and defaults.
fn builtin_runners() -> Vec<RunnerType> {
    let common = json!({
        "cwd": {"description": "Working directory where the command will be executed in", "type": "string"},
        "env": {"description": "Environment variables which will be available to the command (e.g. key1=val1,key2=val2)", "type": "object"},
        "kwarg_op": {"description": "Operator to use in front of keyword args i.e. \"--\" or \"-\".", "type": "string", "default": "--"},
        "sudo": {"description": "The command will be executed with sudo.", "type": "boolean", "default": false},
        "sudo_password": {"description": "Sudo password. To be used when passwordless sudo is not allowed.", "type": "string", "required": false, "default": null, "secret": true},
        "timeout": {"description": "Action timeout in seconds. Action will get killed if it doesn't finish in timeout seconds.", "type": "integer", "default": 60}
    });
    let mut cmd_params = json!({
        "cmd": {"description": "Arbitrary Linux command to be executed on the local host.", "type": "string"}
    });
    merge_into(&mut cmd_params, &common);
    let mut script_params = json!({
        "debug": {"description": "Enable runner debug mode.", "type": "boolean", "default": false},
        "content_version": {"description": "Git revision of the pack content to use for this action execution (git commit sha / tag / branch). Only applies to packs which are git repositories.", "type": "string"}
    });
    merge_into(&mut script_params, &common);
    vec![
        runner(
            "local-shell-cmd",
            "A runner to execute local actions as a fixed user.",
            "local_runner",
            "local_shell_command_runner",
            cmd_params,
        ),
        runner(
            "local-shell-script",
            "A runner to execute local actions as a fixed user.",
            "local_runner",
            "local_shell_script_runner",
            script_params,
        ),
        runner("noop", "A runner which does nothing.", "noop_runner", "noop_runner", json!({})),
        chain_runner(),
        python_runner(),
        remote_runner("remote-shell-cmd"),
        remote_runner("remote-shell-script"),
    ]
}

/// `remote-shell-cmd` and `remote-shell-script`: a command or a pack script run over SSH on
/// every host of `hosts` (runner semantics §5, wire contract §7.3).
fn remote_runner(name: &str) -> RunnerType {
    let script = name == "remote-shell-script";
    let mut params = json!({
        "bastion_host": {"description": "The host SSH connections will be proxied through. Note: This connection is made using the same parameters as the final connection, and is only used in ParamikoSSHClient.", "type": "string"},
        "cwd": {"description": "Working directory where the script will be executed in", "type": "string", "default": "/tmp"},
        "dir": {"description": "The working directory where the script will be copied to on the remote host.", "type": "string", "default": "/tmp"},
        "env": {"description": "Environment variables which will be available to the command(e.g. key1=val1,key2=val2)", "type": "object"},
        "hosts": {"description": "A comma delimited string of a list of hosts where the remote command will be executed.", "type": "string", "required": true},
        "kwarg_op": {"description": "Operator to use in front of keyword args i.e. \"--\" or \"-\".", "type": "string", "default": "--"},
        "parallel": {"description": "Default to parallel execution.", "type": "boolean", "default": false, "immutable": true},
        "passphrase": {"description": "Passphrase for the private key, if needed.", "type": "string", "secret": true},
        "password": {"description": "Password used to log in. If not provided, private key from the config file is used.", "type": "string", "secret": true},
        "port": {"description": "SSH port. Note: This parameter is used only in ParamikoSSHClient.", "type": "integer"},
        "private_key": {"description": "Private key material or path to the private key file on disk used to log in.", "type": "string", "secret": true},
        "sudo": {"description": "The remote command will be executed with sudo.", "type": "boolean", "default": false},
        "sudo_password": {"description": "Sudo password. To be used when passwordless sudo is not allowed.", "type": "string", "required": false, "default": null, "secret": true},
        "timeout": {"description": "Action timeout in seconds. Action will get killed if it doesn't finish in timeout seconds.", "type": "integer", "default": 60},
        "username": {"description": "Username used to log-in. If not provided, default username from config is used.", "type": "string"}
    });
    let map = params.as_object_mut().expect("object literal");
    if script {
        map.insert("debug".into(), json!({"description": "Enable runner debug mode.", "type": "boolean", "default": false}));
    } else {
        map.insert("cmd".into(), json!({"description": "Arbitrary Linux command to be executed on the remote host(s).", "type": "string"}));
        map["dir"]["immutable"] = json!(true);
    }
    let description = if script {
        "A remote execution runner that executes actions as a fixed system user."
    } else {
        "A remote execution runner that executes commands as a fixed system user."
    };
    let module = if script { "remote_script_runner" } else { "remote_command_runner" };
    runner(name, description, "remote_runner", module, params)
}

/// `python-script`: a Python `Action` class from a pack (runner semantics §6, wire contract §7.3).
fn chain_runner() -> RunnerType {
    let params = json!({
        "display_published": {"description": "Intermediate published variables will be stored and displayed.", "type": "boolean", "default": true},
        "skip_notify": {"description": "List of tasks to skip notifications for.", "type": "array", "default": []}
    });
    let mut chain =
        runner("action-chain", "A runner for launching linear action chains.", "action_chain_runner", "action_chain_runner", params);
    chain.output_key = Some("published".into());
    chain
}

fn python_runner() -> RunnerType {
    let mut python = runner(
        "python-script",
        "A runner for launching python actions.",
        "python_runner",
        "python_runner",
        json!({
            "debug": {"description": "Enable runner debug mode.", "type": "boolean", "default": false},
            "content_version": {"description": "Git revision of the pack content to use for this action execution (git commit sha / tag / branch). Only applies to packs which are git repositories.", "type": "string"},
            "env": {"description": "Environment variables which will be available to the script.", "type": "object"},
            "timeout": {"description": "Action timeout in seconds. Action will get killed if it doesn't finish in timeout seconds.", "type": "integer", "default": 600},
            "log_level": {
                "description": "Log level of the action's logger (self.logger); it writes to stderr.",
                "type": "string",
                "default": "DEBUG",
                "enum": ["AUDIT", "CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]
            }
        }),
    );
    python.output_key = Some("result".into());
    let any = json!([{"type": "object"}, {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}, {"type": "array"}, {"type": "null"}]);
    python.output_schema = json!({
        "result": {"anyOf": any},
        "stderr": {"type": "string", "required": true},
        "stdout": {"type": "string", "required": true},
        "exit_code": {"type": "integer", "required": true}
    })
    .as_object()
    .cloned();
    python
}

fn merge_into(target: &mut Value, extra: &Value) {
    if let (Some(t), Some(e)) = (target.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            t.insert(k.clone(), v.clone());
        }
    }
}

/// The built-in `core` pack, as StackStorm ships it (the actions squall can run).
fn core_pack() -> Vec<(&'static str, ActionMetadata)> {
    let parse = |v: Value| serde_json::from_value::<ActionMetadata>(v).expect("valid core metadata");
    vec![
        (
            "actions/local.yaml",
            parse(json!({
                "name": "local", "runner_type": "local-shell-cmd",
                "description": "Action that executes an arbitrary Linux command on the localhost.",
                "parameters": {
                    "cmd": {"description": "Arbitrary Linux command to be executed on the local host.", "required": true, "type": "string"},
                    "sudo": {"immutable": true}
                }
            })),
        ),
        (
            "actions/local_sudo.yaml",
            parse(json!({
                "name": "local_sudo", "runner_type": "local-shell-cmd",
                "description": "Action that executes an arbitrary Linux command on the localhost.",
                "parameters": {
                    "cmd": {"description": "Arbitrary Linux command to be executed on the local host.", "required": true, "type": "string"},
                    "sudo": {"default": true, "immutable": true}
                }
            })),
        ),
        (
            "actions/echo.yaml",
            parse(json!({
                "name": "echo", "runner_type": "local-shell-cmd",
                "description": "Action that executes the Linux echo command on the localhost.",
                "parameters": {
                    "message": {"description": "The message that the command will echo.", "type": "string", "required": true},
                    "cmd": {"description": "Arbitrary Linux command to be executed on the local host.", "required": true, "type": "string", "default": "echo \"{{message}}\"", "immutable": true},
                    "kwarg_op": {"immutable": true},
                    "sudo": {"default": false, "immutable": true},
                    "sudo_password": {"immutable": true}
                }
            })),
        ),
        (
            "actions/remote.yaml",
            parse(json!({
                "name": "remote", "runner_type": "remote-shell-cmd",
                "description": "Action to execute arbitrary linux command remotely.",
                "parameters": {
                    "cmd": {"description": "Arbitrary Linux command to be executed on the remote host(s).", "required": true, "type": "string"},
                    "sudo": {"immutable": true}
                }
            })),
        ),
        (
            "actions/remote_sudo.yaml",
            parse(json!({
                "name": "remote_sudo", "runner_type": "remote-shell-cmd",
                "description": "Action to execute arbitrary linux command remotely.",
                "parameters": {
                    "cmd": {"description": "Arbitrary Linux command to be executed on the remote host(s).", "required": true, "type": "string"},
                    "sudo": {"default": true, "immutable": true}
                }
            })),
        ),
        (
            "actions/noop.yaml",
            parse(json!({
                "name": "noop", "runner_type": "noop",
                "description": "Action that does nothing"
            })),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_core_actions_sorted() {
        let c = Catalog::builtin();
        let refs: Vec<_> = c.actions().map(|a| a.ref_.as_str()).collect();
        assert_eq!(refs, ["core.echo", "core.local", "core.local_sudo", "core.noop", "core.remote", "core.remote_sudo"]);
        let local = c.action("core.local").unwrap();
        assert_eq!(c.action(&local.id).unwrap().ref_, "core.local");
        assert_eq!(local.uid, "action:core:local");
        assert!(c.runner("local-shell-cmd").unwrap().runner_parameters.contains_key("cmd"));
        let python = c.runner("python-script").unwrap();
        assert_eq!(python.output_key.as_deref(), Some("result"));
        assert_eq!(python.runner_parameters["timeout"]["default"], 600);
        assert_eq!(python.output_schema.as_ref().unwrap()["exit_code"]["type"], "integer");
        let remote = &c.runner("remote-shell-cmd").unwrap().runner_parameters;
        assert_eq!((remote["hosts"]["required"].clone(), remote["dir"]["immutable"].clone()), (json!(true), json!(true)));
        let script = &c.runner("remote-shell-script").unwrap().runner_parameters;
        assert!(!script.contains_key("cmd") && script["dir"].get("immutable").is_none() && script["password"]["secret"] == json!(true));
    }

    #[test]
    fn an_unknown_runner_is_listed_as_unavailable() {
        let mut c = Catalog::builtin();
        let meta: ActionMetadata = serde_json::from_value(json!({"name": "x", "runner_type": "nope"})).unwrap();
        c.add_action(Action::from_metadata("p", meta.clone(), "actions/x.yaml")).unwrap();
        assert!(c.action("p.x").unwrap().unavailable.as_deref().unwrap().contains("\"nope\""));
        assert!(c.add_action(Action::from_metadata("p", meta, "actions/x.yaml")).is_err(), "twice is an error");
    }

    #[test]
    fn parameter_schemas_are_checked() {
        let check = |v: Value| parameter_schema_problem(v.as_object().unwrap());
        assert_eq!(check(json!({"a": {"type": "string", "position": 0, "required": true, "enum": ["x"]}})), None);
        assert!(check(json!({"a": "string"})).unwrap().contains("not a mapping"));
        assert!(check(json!({"a": {"type": "strnig"}})).unwrap().contains("strnig"));
        assert!(check(json!({"a": {"position": -1}})).unwrap().contains("position"));
        assert!(check(json!({"a": {"required": "yes"}})).unwrap().contains("required"));
    }
}
