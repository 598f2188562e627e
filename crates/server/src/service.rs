//! What the execution endpoints do, below HTTP: create, cancel and re-run executions.

use serde_json::{Map, Value, json};
use squall_bus::lifecycle;
use squall_core::{Execution, params};
use squall_store::{ExecutionQuery, ParentFilter, SortOrder};

use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::rbac::Resource;

/// A validated request to run an action.
pub struct RunRequest {
    pub action: String,
    pub parameters: Map<String, Value>,
    pub context: Map<String, Value>,
    pub user: Option<String>,
    pub delay: Option<u64>,
}

impl RunRequest {
    /// Reads StackStorm's ExecutionRequest body.
    pub fn from_json(body: &Value) -> ApiResult<RunRequest> {
        let Value::Object(body) = body else { return Err(ApiError::bad_request("The request body must be a JSON object")) };
        let action = match body.get("action") {
            Some(Value::String(a)) if !a.is_empty() => a.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => return Err(ApiError::bad_request("'action' is a required property")),
            Some(other) => return Err(ApiError::bad_request(format!("{} is not of type 'string'", params::py_repr(other)))),
        };
        Ok(RunRequest {
            action,
            parameters: object_field(body, "parameters")?,
            context: object_field(body, "context")?,
            user: user_field(body)?,
            delay: delay_field(body)?,
        })
    }
}

/// `user`: a string, or null or empty for the caller. No user name holds a NUL character
/// (PostgreSQL cannot even store one).
pub fn user_field(body: &Map<String, Value>) -> ApiResult<Option<String>> {
    match body.get("user") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(u)) if u.is_empty() => Ok(None),
        Some(Value::String(u)) if u.contains('\0') => Err(ApiError::bad_request("user must not contain a NUL character")),
        Some(Value::String(u)) => Ok(Some(u.clone())),
        Some(other) => Err(ApiError::bad_request(format!("{} is not of type 'string', 'null'", params::py_repr(other)))),
    }
}

/// `delay`: milliseconds, a non-negative integer, or null.
fn delay_field(body: &Map<String, Value>) -> ApiResult<Option<u64>> {
    match body.get("delay") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(ms) if ms >= 0 => Ok(Some(ms as u64)),
            _ => Err(ApiError::bad_request(format!("{} is not a valid delay: use milliseconds, 0 to {}", params::py_repr(v), i64::MAX))),
        },
    }
}

fn object_field(body: &Map<String, Value>, name: &str) -> ApiResult<Map<String, Value>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(other) => Err(ApiError::bad_request(format!("{} is not of type 'object'", params::py_repr(other)))),
    }
}

/// Validates, stores and queues a new execution.
pub async fn run(state: &AppState, req: RunRequest, caller: &Principal) -> ApiResult<Execution> {
    let action =
        state.catalog.action(&req.action).ok_or_else(|| ApiError::bad_request(format!("Action \"{}\" cannot be found.", req.action)))?;
    if !action.enabled {
        return Err(ApiError::bad_request(format!("Unable to execute. Action \"{}\" is disabled.", action.ref_)));
    }
    caller.require(state, "action_execute", Resource::Action { pack: &action.pack, name: &action.name })?;
    if let Some(reason) = &action.unavailable {
        return Err(ApiError::bad_request(format!("Action \"{}\" cannot run on squall: {reason}", action.ref_)));
    }
    let runner = state
        .catalog
        .runner(&action.runner_type)
        .ok_or_else(|| ApiError::bad_request(format!("Runner \"{}\" cannot be found.", action.runner_type)))?;
    let resolved = params::resolve(runner, action, &req.parameters).map_err(|e| ApiError::bad_request(e.0))?;
    let user = req.user.unwrap_or_else(|| caller.user.clone());
    if user != caller.user && !caller.is_admin {
        return Err(ApiError::forbidden(format!("User \"{}\" is not an admin and cannot run actions as \"{user}\"", caller.user)));
    }
    let mut execution = Execution::new(action.clone(), runner.clone(), resolved.supplied, req.context, &user, req.delay);
    state.sealing.seal(&execution.id, &execution.runner, &execution.action, &mut execution.parameters);
    lifecycle::submit(&*state.store, &*state.bus, &*state.queue, &execution).await?;
    Ok(execution)
}

/// The children of `parent` and theirs, depth-first in creation order, down to `depth` levels
/// (negative: all), that meet `within`'s filters (a caller's view rights,
/// [`Principal::restrict`]): a child that does not is left out with its own descendants.
pub async fn descendants(state: &AppState, parent: &Execution, depth: i64, within: &ExecutionQuery) -> ApiResult<Vec<Execution>> {
    async fn push_children(
        state: &AppState,
        within: &ExecutionQuery,
        stack: &mut Vec<(Execution, i64)>,
        id: &str,
        levels: i64,
    ) -> ApiResult<()> {
        if levels == 0 {
            return Ok(());
        }
        let query = ExecutionQuery { parent: ParentFilter::Is(id.to_string()), order: SortOrder::OldestFirst, ..within.clone() };
        let (children, _) = state.store.list_executions(&query).await?;
        stack.extend(children.into_iter().rev().map(|c| (c, levels - 1)));
        Ok(())
    }
    let (mut out, mut stack) = (Vec::new(), Vec::new());
    push_children(state, within, &mut stack, &parent.id, depth).await?;
    while let Some((e, levels)) = stack.pop() {
        let id = e.id.clone();
        out.push(e);
        push_children(state, within, &mut stack, &id, levels).await?;
    }
    Ok(out)
}

/// Runs `original` again with its parameters merged with `overrides`.
pub async fn rerun(state: &AppState, original: &Execution, body: &Value, caller: &Principal) -> ApiResult<Execution> {
    let Value::Object(body) = body else { return Err(ApiError::bad_request("The request body must be a JSON object")) };
    for list in ["tasks", "reset"] {
        match body.get(list) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
            Some(other) => return Err(ApiError::bad_request(format!("{} is not an array of strings ('{list}')", params::py_repr(other)))),
        }
    }
    let tasks = body.get("tasks").and_then(Value::as_array).is_some_and(|t| !t.is_empty());
    if tasks {
        return Err(ApiError::bad_request("Task option is only supported for Orquesta workflows."));
    }
    let mut parameters = state.sealing.open(&original.id, &original.runner, &original.action, &original.parameters)?;
    for (k, v) in object_field(body, "parameters")? {
        parameters.insert(k, v);
    }
    let mut context = Map::new();
    context.insert("re-run".into(), json!({"ref": original.id}));
    let req = RunRequest { action: original.action.ref_.clone(), parameters, context, user: user_field(body)?, delay: delay_field(body)? };
    run(state, req, caller).await
}
