//! The `action-chain` runner: StackStorm's linear workflows. A chain file (the action's entry
//! point) lists tasks; each task runs as a child execution of its own (queued like any other, so
//! it streams like any other), and the next task is picked by `on-success` / `on-failure`.
//! Task parameters and `publish` values are Jinja templates rendered with the chain's
//! parameters, its `vars`, what earlier tasks published and their results by task name.

use std::time::Duration;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value, json};
use squall_bus::lifecycle::{self, Canceled};
use squall_bus::{Bus, Live, Received, WorkQueue};
use squall_core::sealed::SealingKey;
use squall_core::{Execution, Status, params};
use squall_store::{Store, StoreError};

use crate::content::Content;
use crate::process::{StopReason, Stopper};

/// A parsed chain file.
#[derive(Debug, Clone)]
pub struct Chain {
    tasks: Vec<Task>,
    default: String,
    vars: Map<String, Value>,
}

/// One task of a chain.
#[derive(Debug, Clone)]
struct Task {
    name: String,
    action: String,
    params: Map<String, Value>,
    on_success: Option<String>,
    on_failure: Option<String>,
    publish: Map<String, Value>,
    /// The task as written, for the child's `context.chain`.
    definition: Value,
}

const CHAIN_KEYS: [&str; 3] = ["chain", "default", "vars"];
const TASK_KEYS: [&str; 8] = ["name", "ref", "params", "parameters", "on-success", "on-failure", "publish", "notify"];

impl Chain {
    /// Reads a chain file (YAML or JSON); the error says what is wrong, with StackStorm's words
    /// where StackStorm has them.
    pub fn parse(text: &str) -> Result<Chain, String> {
        let doc: Value = yaml_serde::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
        let Value::Object(doc) = doc else { return Err("the chain definition must be a mapping".into()) };
        if let Some(key) = doc.keys().find(|k| !CHAIN_KEYS.contains(&k.as_str())) {
            return Err(format!("Additional properties are not allowed ('{key}' was unexpected)"));
        }
        let Some(Value::Array(items)) = doc.get("chain") else { return Err("'chain' is a required property and must be a list".into()) };
        let tasks = items.iter().map(Task::parse).collect::<Result<Vec<_>, _>>()?;
        let vars = match doc.get("vars") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(v)) => v.clone(),
            Some(_) => return Err("'vars' must be a mapping".into()),
        };
        let default = match doc.get("default") {
            Some(Value::String(d)) => d.clone(),
            Some(_) => return Err("'default' must be a task name".into()),
            None => implicit_default(&tasks).ok_or("Failed to find default node in the chain.")?,
        };
        Ok(Chain { tasks, default, vars })
    }

    fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// Every name a task points at exists (templated names are checked when they are used).
    /// Checked when the chain runs, as StackStorm does: a chain that fails this way on purpose
    /// is still a chain.
    pub fn check_references(&self) -> Result<(), String> {
        let missing = |name: &str| !is_template(name) && self.task(name).is_none();
        if missing(&self.default) {
            return Err(format!("Unable to find node with name \"{}\" referenced in \"default\".", self.default));
        }
        for task in &self.tasks {
            for (key, next) in [("on-success", &task.on_success), ("on-failure", &task.on_failure)] {
                if let Some(next) = next.as_deref().filter(|n| missing(n)) {
                    return Err(format!("Unable to find node with name \"{next}\" referenced in \"{key}\" in task \"{}\".", task.name));
                }
            }
        }
        Ok(())
    }
}

impl Task {
    fn parse(item: &Value) -> Result<Task, String> {
        // Other keys (`description`, …) are ignored, as StackStorm ignores them past the first task.
        let Value::Object(t) = item else { return Err("every task of 'chain' must be a mapping".into()) };
        let text = |key: &str| t.get(key).and_then(Value::as_str).map(str::to_string);
        let name = text("name").ok_or("every task needs a 'name'")?;
        let action = text("ref").ok_or_else(|| format!("task \"{name}\" needs a 'ref' (the action to run)"))?;
        if t.contains_key("params") && t.contains_key("parameters") {
            return Err("Either \"params\" or \"parameters\" attribute needs to be provided, but not both".into());
        }
        let mapping = |key: &str| match t.get(key) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(_) => Err(format!("'{key}' of task \"{name}\" must be a mapping")),
        };
        let params = if t.contains_key("params") { mapping("params")? } else { mapping("parameters")? };
        let mut definition = Map::new();
        for key in TASK_KEYS {
            definition.insert(key.replace('-', "_"), t.get(key).cloned().unwrap_or(Value::Null));
        }
        Ok(Task {
            publish: mapping("publish")?,
            on_success: text("on-success"),
            on_failure: text("on-failure"),
            name,
            action,
            params,
            definition: Value::Object(definition),
        })
    }
}

/// Without `default`: the first task no other task leads to, else the first task.
fn implicit_default(tasks: &[Task]) -> Option<String> {
    let targets: Vec<&str> = tasks.iter().flat_map(|t| [t.on_success.as_deref(), t.on_failure.as_deref()]).flatten().collect();
    tasks.iter().find(|t| !targets.contains(&t.name.as_str())).or(tasks.first()).map(|t| t.name.clone())
}

fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// What a chain needs from its runner node: the store, the bus and the queue to start and
/// follow its children, the catalog to find their actions, the key to seal their secrets.
pub struct ChainContext<'a> {
    pub store: &'a dyn Store,
    pub bus: &'a dyn Bus,
    pub queue: &'a dyn WorkQueue,
    pub content: &'a Content,
    pub sealing: &'a SealingKey,
}

/// How a chain ended: its status, StackStorm's result (`tasks`, `published`, `error`) and the
/// child executions it started, in order.
pub struct ChainOutcome {
    pub status: Status,
    pub result: Value,
    pub children: Vec<String>,
}

/// The state of one run of a chain.
struct Run<'a> {
    ctx: &'a ChainContext<'a>,
    parent: Execution,
    chain: Chain,
    /// The chain's own parameters.
    parameters: Map<String, Value>,
    vars: Map<String, Value>,
    published: Map<String, Value>,
    /// Each finished task's result, by task name.
    results: Map<String, Value>,
    tasks: Vec<Value>,
    display_published: bool,
}

/// Runs the chain of `parent` (already `running`) to its end.
pub async fn execute(
    ctx: &ChainContext<'_>,
    parent: &Execution,
    resolved: &params::Resolved,
    stopper: &Stopper,
) -> Result<ChainOutcome, StoreError> {
    let failed = |error: String| ChainOutcome { status: Status::Failed, result: json!({"error": error}), children: Vec::new() };
    let Some(path) = ctx.content.entry_point(&parent.action) else {
        return Ok(failed(format!("Action {} has no entry point in a loaded pack", parent.action.ref_)));
    };
    let chain = match std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|text| Chain::parse(&text)) {
        Ok(chain) => chain,
        Err(e) => return Ok(failed(format!("Failed to parse action chain definition from \"{}\": {e}", path.display()))),
    };
    if let Err(e) = chain.check_references() {
        return Ok(failed(e));
    }
    let parameters = resolved.action.clone();
    let vars = match render_vars(&chain.vars, &parameters) {
        Ok(vars) => vars,
        Err(e) => return Ok(failed(format!("Failed initializing ``vars`` in chain: {e}"))),
    };
    let display_published = resolved.runner.get("display_published").and_then(Value::as_bool).unwrap_or(true);
    let run = Run {
        ctx,
        parent: parent.clone(),
        chain,
        parameters,
        vars,
        published: Map::new(),
        results: Map::new(),
        tasks: Vec::new(),
        display_published,
    };
    run.run(stopper).await
}

impl Run<'_> {
    async fn run(mut self, stopper: &Stopper) -> Result<ChainOutcome, StoreError> {
        let mut next = Some(self.chain.default.clone());
        let mut status = Status::Succeeded;
        let mut error = None;
        while let Some(name) = next.take() {
            if let Some(reason) = stopper.reason() {
                status = stopped_status(reason);
                break;
            }
            let Some(task) = self.chain.task(&name).cloned() else {
                (status, error) =
                    (Status::Failed, Some(format!("Failed to get next node \"{name}\": Unable to find node with name \"{name}\".")));
                break;
            };
            let step = match self.run_task(&task, stopper).await? {
                Err(message) => {
                    (status, error) = (Status::Failed, Some(message));
                    break;
                }
                Ok(step) => step,
            };
            status = step;
            next = match step {
                Status::Succeeded => match self.publish(&task) {
                    Ok(()) => task.on_success.clone(),
                    Err(message) => {
                        (status, error) = (Status::Failed, Some(message));
                        break;
                    }
                },
                Status::Failed | Status::Timeout => task.on_failure.clone(),
                _ => None,
            };
        }
        let mut result = json!({"tasks": self.tasks});
        if self.display_published {
            result["published"] = Value::Object(self.published);
        }
        if let Some(error) = error {
            result["error"] = Value::String(error);
        }
        Ok(ChainOutcome { status, result, children: self.parent.children })
    }

    /// Runs one task to its end. `Err` is an error that ends the chain (StackStorm's top-level
    /// errors: the parameters do not render, the action does not exist); `Ok` is the status the
    /// chain takes after the task.
    async fn run_task(&mut self, task: &Task, stopper: &Stopper) -> Result<Result<Status, String>, StoreError> {
        let context = self.task_context();
        let rendered = match render_params(&task.params, &context, &task.name) {
            Ok(r) => r,
            Err(e) => return Ok(Err(format!("Failed to run task \"{}\". Parameter rendering failed.. {e}", task.name))),
        };
        let catalog = &self.ctx.content.catalog;
        let Some(action) = catalog.action(&task.action).filter(|a| a.unavailable.is_none()) else {
            return Ok(Err(format!("Failed to run task \"{}\". Action with reference \"{}\" doesn't exist.", task.name, task.action)));
        };
        let Some(runner) = catalog.runner(&action.runner_type) else {
            return Ok(Err(format!("Failed to run task \"{}\". Runner \"{}\" cannot be found.", task.name, action.runner_type)));
        };
        let supplied = match params::resolve(runner, action, &rendered) {
            Ok(r) => r.supplied,
            Err(e) => {
                let result = json!({"error": format!("Failed running task \"{}\". {}", task.name, e.0)});
                self.record_task(task, None, "failed", result);
                return Ok(Ok(Status::Failed));
            }
        };
        let mut child = Execution::new(action.clone(), runner.clone(), supplied, self.child_context(task), self.parent.user(), None);
        child.parent = Some(self.parent.id.clone());
        self.ctx.sealing.seal(&child.id, &child.runner, &child.action, &mut child.parameters);
        let mut subscription = self.ctx.bus.subscribe_execution(&child.id).await;
        lifecycle::submit(self.ctx.store, self.ctx.bus, self.ctx.queue, &child).await?;
        self.add_child(&child.id).await?;
        let ended = self.wait_for(&child, &mut subscription, stopper).await?;
        let state = ended.status.as_str().to_string();
        self.results.insert(task.name.clone(), ended.result.clone().unwrap_or(Value::Null));
        self.record_task(task, Some(&ended), &state, ended.result.clone().unwrap_or(Value::Null));
        Ok(Ok(match ended.status {
            Status::Succeeded => Status::Succeeded,
            Status::Timeout => Status::Timeout,
            Status::Canceled => Status::Canceled,
            _ => Status::Failed,
        }))
    }

    /// Waits until `child` ends. A cancel of the chain cancels the child (and the chain then
    /// ends `canceled`); a shutdown leaves it to the runner that holds it.
    async fn wait_for(&self, child: &Execution, sub: &mut squall_bus::Subscription, stopper: &Stopper) -> Result<Execution, StoreError> {
        let (mut live, mut cancel_sent, mut ended_in_store) = (true, false, false);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                received = sub.recv(), if live => match received {
                    Received::Event(Live::Execution(c)) if c.execution.id == child.id && c.execution.status.is_terminal() => {
                        return Ok(c.execution.clone());
                    }
                    Received::Event(_) => {}
                    Received::Lagged(_) => tick.reset_immediately(),
                    Received::Closed => live = false,
                },
                _ = tick.tick() => {
                    // The store shows the child's end a moment before its runner publishes it;
                    // acting on that would let the chain's own events overtake the child's
                    // (`st2 execution tail` would miss "has finished"). So the store decides
                    // only when the event has not come for a whole tick (lost to a lag) or
                    // cannot come (the subscription closed).
                    if let Some(current) = self.ctx.store.execution(&child.id).await?.filter(|c| c.status.is_terminal()) {
                        if ended_in_store || !live {
                            return Ok(current);
                        }
                        ended_in_store = true;
                    }
                }
                () = stopper.stopped(), if !cancel_sent => {
                    cancel_sent = true;
                    if stopper.reason() == Some(StopReason::Shutdown) {
                        return Ok(self.ctx.store.execution(&child.id).await?.unwrap_or_else(|| child.clone()));
                    }
                    if let Some(current) = self.ctx.store.execution(&child.id).await?
                        && let Canceled::Execution(e) = lifecycle::cancel(self.ctx.store, self.ctx.bus, current, self.parent.user()).await?
                        && e.status.is_terminal()
                    {
                        return Ok(*e);
                    }
                }
            }
        }
    }

    /// Appends `child_id` (already stored) to the chain's `children`, whatever status a cancel
    /// moved the chain to meanwhile.
    async fn add_child(&mut self, child_id: &str) -> Result<(), StoreError> {
        self.parent.children.push(child_id.to_string());
        loop {
            let expected = self.parent.status;
            if self.ctx.store.update_execution(&self.parent, expected).await? {
                self.ctx.bus.publish_execution(squall_bus::ChangeKind::Update, self.parent.clone()).await;
                return Ok(());
            }
            let Some(mut current) = self.ctx.store.execution(&self.parent.id).await? else { return Ok(()) };
            if current.status.is_terminal() {
                return Ok(());
            }
            current.children = std::mem::take(&mut self.parent.children);
            self.parent = current;
        }
    }

    fn record_task(&mut self, task: &Task, child: Option<&Execution>, state: &str, result: Value) {
        let now = squall_core::Timestamp::now();
        let created = child.map_or(now, |c| c.start_timestamp);
        let updated = child.and_then(|c| c.end_timestamp).unwrap_or(now);
        let id = child.map(|c| Value::String(c.id.clone())).unwrap_or(Value::Null);
        self.tasks.push(json!({
            "id": task.name,
            "name": task.name,
            "execution_id": id,
            "liveaction_id": id,
            "workflow": null,
            "created_at": created.to_iso(),
            "updated_at": updated.to_iso(),
            "state": state,
            "result": result,
        }));
    }

    /// Renders the task's `publish` values into the chain's variables.
    fn publish(&mut self, task: &Task) -> Result<(), String> {
        if task.publish.is_empty() {
            return Ok(());
        }
        let mut context = self.parameters.clone();
        if let Some(result) = self.results.get(&task.name) {
            context.insert(task.name.clone(), result.clone());
        }
        context.extend(self.results.clone());
        context.extend(self.vars.clone());
        context.insert("__results".into(), Value::Object(self.results.clone()));
        let context = jinja_context(&context);
        for (key, template) in &task.publish {
            let value = render_value(template, &context).map_err(|e| {
                format!(
                    "Failed rendering value for publish parameter \"{key}\" in task \"{}\" (template string={template}): {e}",
                    task.name
                )
            })?;
            self.vars.insert(key.clone(), value.clone());
            self.published.insert(key.clone(), value);
        }
        Ok(())
    }

    /// What task parameters see: the chain's parameters, earlier results by task name, the
    /// variables (published ones included), `__results` and `action_context`.
    fn task_context(&self) -> Map<String, Value> {
        let mut context = self.parameters.clone();
        context.extend(self.results.clone());
        context.extend(self.vars.clone());
        context.insert("__results".into(), Value::Object(self.results.clone()));
        context.insert("action_context".into(), json!({"parent": self.parent_context()}));
        context
    }

    /// `context.parent` of a child: the chain's execution id and its whole context.
    fn parent_context(&self) -> Value {
        let mut parent = self.parent.context.clone();
        parent.insert("execution_id".into(), Value::String(self.parent.id.clone()));
        Value::Object(parent)
    }

    fn child_context(&self, task: &Task) -> Map<String, Value> {
        let mut context = Map::new();
        context.insert("parent".into(), self.parent_context());
        context.insert("chain".into(), task.definition.clone());
        context
    }
}

fn stopped_status(reason: StopReason) -> Status {
    match reason {
        StopReason::Shutdown => Status::Abandoned,
        StopReason::Canceled => Status::Canceled,
        StopReason::Timeout => Status::Timeout,
    }
}

/// StackStorm's datastore (`st2kv.system.x`, `st2kv.user.x`, `system.x`): squall has none, so
/// every key is unset — empty and false — instead of an error, as for an unset key in StackStorm.
#[derive(Debug)]
struct EmptyDatastore;

impl minijinja::value::Object for EmptyDatastore {
    fn get_value(self: &std::sync::Arc<Self>, _key: &minijinja::Value) -> Option<minijinja::Value> {
        Some(minijinja::Value::from_dyn_object(std::sync::Arc::clone(self)))
    }

    fn is_true(self: &std::sync::Arc<Self>) -> bool {
        false
    }

    fn render(self: &std::sync::Arc<Self>, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}

/// The template environment, built once.
static ENVIRONMENT: std::sync::LazyLock<Environment<'static>> = std::sync::LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_global("st2kv", minijinja::Value::from_object(EmptyDatastore));
    env.add_global("system", minijinja::Value::from_object(EmptyDatastore));
    env.add_filter("to_json_string", |v: minijinja::Value| serde_json::to_string(&v).unwrap_or_default());
    env.add_filter("from_json_string", |s: String| -> Result<minijinja::Value, minijinja::Error> {
        let v: Value = serde_json::from_str(&s)
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("not JSON: {e}")))?;
        Ok(minijinja::Value::from(minijinja::value::Serde(v)))
    });
    env
});

/// A rendering context, converted once for all the strings rendered with it.
fn jinja_context(context: &Map<String, Value>) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(context))
}

/// Renders every string inside `value`; a string that renders to itself keeps its value, and
/// non-string scalars are kept as they are.
fn render_value(value: &Value, context: &minijinja::Value) -> Result<Value, String> {
    match value {
        Value::String(s) if is_template(s) => ENVIRONMENT.render_str(s, context).map(Value::String).map_err(|e| e.to_string()),
        Value::Array(items) => items.iter().map(|v| render_value(v, context)).collect::<Result<_, _>>().map(Value::Array),
        Value::Object(m) => {
            m.iter().map(|(k, v)| Ok((k.clone(), render_value(v, context)?))).collect::<Result<Map<_, _>, String>>().map(Value::Object)
        }
        other => Ok(other.clone()),
    }
}

fn render_params(params: &Map<String, Value>, context: &Map<String, Value>, task: &str) -> Result<Map<String, Value>, String> {
    let context = &jinja_context(context);
    params
        .iter()
        .map(|(k, v)| {
            let rendered = render_value(v, context).map_err(|e| {
                format!("Failed rendering value for action parameter \"{k}\" in task \"{task}\" (template string={v}): {e}")
            })?;
            Ok((k.clone(), rendered))
        })
        .collect()
}

/// `vars` are rendered once, each on its own, with the chain's parameters.
fn render_vars(vars: &Map<String, Value>, parameters: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let context = &jinja_context(parameters);
    vars.iter().map(|(k, v)| Ok((k.clone(), render_value(v, context).map_err(|e| format!("\"{k}\": {e}"))?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_chain_and_finds_the_default() {
        let chain = Chain::parse(
            "vars: {greeting: hi}\nchain:\n  - name: b\n    ref: core.local\n    params: {cmd: echo b}\n  - name: a\n    ref: core.local\n    on-success: b\n",
        )
        .unwrap();
        assert_eq!(chain.default, "a", "the first task nothing leads to");
        assert_eq!(chain.task("b").unwrap().params["cmd"], "echo b");
        assert_eq!(chain.task("a").unwrap().definition["on_success"], "b");
    }

    #[test]
    fn bad_chains_say_why() {
        let err = |text: &str| Chain::parse(text).and_then(|c| c.check_references()).unwrap_err();
        assert!(
            err("chain:\n  - name: a\n    ref: core.local\n    on-success: nope\n")
                .contains("\"nope\" referenced in \"on-success\" in task \"a\"")
        );
        assert!(err("chain: []\ndefault: x\n").contains("\"x\" referenced in \"default\""));
        assert!(err("chain:\n  - name: a\n    ref: x\n    params: {}\n    parameters: {}\n").contains("not both"));
        assert!(Chain::parse("chain:\n  - name: a\n    ref: x\n    description: ignored\n").is_ok());
        assert!(err("chains: []\n").contains("'chains' was unexpected"));
        assert!(err("chain: []\n").contains("default node"));
    }

    #[test]
    fn renders_templates_keeping_other_values() {
        let context = jinja_context(json!({"n": 3, "t1": {"stdout": "hello"}}).as_object().unwrap());
        assert_eq!(render_value(&json!("{{ t1.stdout }} x{{ n }}"), &context).unwrap(), json!("hello x3"));
        assert_eq!(render_value(&json!({"a": ["{{ n }}", 7, true]}), &context).unwrap(), json!({"a": ["3", 7, true]}));
        assert_eq!(render_value(&json!("plain"), &context).unwrap(), json!("plain"));
        assert!(render_value(&json!("{{ missing }}"), &context).unwrap_err().contains("undefined"));
        let unset = "[{{ st2kv.system.domain }}]{% if st2kv.user.x %}set{% endif %}";
        assert_eq!(render_value(&json!(unset), &context).unwrap(), json!("[]"));
    }
}
