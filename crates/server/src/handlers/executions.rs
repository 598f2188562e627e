//! `/executions`: list, get, run, cancel, re-run.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use squall_bus::lifecycle::{self, Canceled};
use squall_core::Execution;
use squall_store::{ExecutionQuery, ParentFilter, SortOrder};

use super::{json_body, paged};
use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::query::{Attributes, Params, limit, offset};
use crate::rbac::Resource;
use crate::service::{self, RunRequest};
use crate::wire::execution_json;

const EXECUTION_FIELDS: &[&str] = &[
    "id",
    "action",
    "runner",
    "liveaction",
    "status",
    "start_timestamp",
    "end_timestamp",
    "elapsed_seconds",
    "web_url",
    "parameters",
    "context",
    "result",
    "result_size",
    "log",
    "parent",
    "children",
    "delay",
    "trigger",
    "trigger_type",
    "trigger_instance",
    "rule",
    "task_execution",
    "workflow_execution",
];
const EXCLUDABLE: &[&str] = &["result", "trigger_instance", "status"];

/// Finds an execution by id, or the newest for `last`.
pub async fn find(state: &AppState, id: &str) -> ApiResult<Execution> {
    let found = if id == "last" { state.store.latest_execution().await? } else { state.store.execution(id).await? };
    found.ok_or_else(|| ApiError::no_execution(id))
}

/// Finds an execution the caller may act on with `permission` (`execution_view` also applies
/// permission isolation). `last` means the newest the caller may see.
pub async fn find_for(state: &AppState, id: &str, caller: &Principal, permission: &str) -> ApiResult<Execution> {
    let mut newest = ExecutionQuery { limit: Some(1), ..Default::default() };
    let e = if id == "last" && caller.restrict(state, &mut newest) {
        state.store.list_executions(&newest).await?.0.pop().ok_or_else(|| ApiError::no_execution(id))?
    } else {
        find(state, id).await?
    };
    caller.require(state, permission, Resource::Action { pack: &e.action.pack, name: &e.action.name })?;
    if !caller.can_view(state, &e.action.pack, &e.action.name, e.user()) {
        return Err(ApiError::forbidden(format!(
            "User \"{}\" doesn't have access to execution \"{}\" (permission isolation)",
            caller.user, e.id
        )));
    }
    Ok(e)
}

fn render(state: &AppState, e: &Execution, params: &Params, attributes: &Attributes, caller: &Principal) -> ApiResult<Value> {
    let show_secrets = params.boolean("show_secrets")?.unwrap_or(false) && caller.is_admin;
    let opened = show_secrets.then(|| state.sealing.open(&e.id, &e.runner, &e.action, &e.parameters)).transpose()?;
    let mut doc = execution_json(e, opened, &state.settings.wire);
    attributes.apply(&mut doc, &["id"]);
    Ok(doc)
}

pub async fn list(State(state): State<Arc<AppState>>, params: Params, caller: Principal) -> ApiResult<impl IntoResponse> {
    caller.require(&state, "execution_list", Resource::Global)?;
    let attributes = params.attributes(EXECUTION_FIELDS, EXCLUDABLE)?;
    let null_or = |name: &str| params.get(name).filter(|v| *v != "null").map(String::from);
    let parent = match params.get("parent") {
        None => ParentFilter::Any,
        Some("null") => ParentFilter::None,
        Some(p) => ParentFilter::Is(p.to_string()),
    };
    let start_after = params.timestamp("timestamp_gt")?;
    let start_before = params.timestamp("timestamp_lt")?;
    let order = if params.boolean("sort_desc")? == Some(true) || start_before.is_some() {
        SortOrder::NewestFirst
    } else if params.boolean("sort_asc")? == Some(true) || start_after.is_some() {
        SortOrder::OldestFirst
    } else {
        SortOrder::NewestFirst
    };
    let mut query = ExecutionQuery {
        ids: params.list("id"),
        status: null_or("status"),
        action: null_or("action"),
        user: null_or("user"),
        actions_in: None,
        parent,
        start_after,
        start_before,
        order,
        limit: limit(&params, 100, &caller)?,
        offset: offset(&params)?,
    };
    caller.restrict(&state, &mut query);
    let (executions, total) = state.store.list_executions(&query).await?;
    let items = executions.iter().map(|e| render(&state, e, &params, &attributes, &caller)).collect::<ApiResult<Vec<_>>>()?;
    Ok(paged(items, total, query.limit))
}

pub async fn get(State(state): State<Arc<AppState>>, Path(id): Path<String>, params: Params, caller: Principal) -> ApiResult<Json<Value>> {
    let attributes = params.attributes(EXECUTION_FIELDS, EXCLUDABLE)?;
    let e = find_for(&state, &id, &caller, "execution_view").await?;
    Ok(Json(render(&state, &e, &params, &attributes, &caller)?))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    params: Params,
    caller: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let mut req = RunRequest::from_json(&json_body(&body)?)?;
    if let Some(extra) = headers.get("st2-context") {
        let extra: Value = extra
            .to_str()
            .ok()
            .and_then(|s| serde_json::from_str(s).ok())
            .filter(Value::is_object)
            .ok_or_else(|| ApiError::bad_request("The st2-context header must hold a JSON object"))?;
        if let Value::Object(extra) = extra {
            req.context.extend(extra);
        }
    }
    let e = service::run(&state, req, &caller).await?;
    Ok((StatusCode::CREATED, Json(render(&state, &e, &params, &Attributes::All, &caller)?)).into_response())
}

pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Params,
    caller: Principal,
) -> ApiResult<Json<Value>> {
    let e = find_for(&state, &id, &caller, "execution_stop").await?;
    // StackStorm's cancel semantics; a running execution's process group is really stopped.
    match lifecycle::cancel(&*state.store, &*state.bus, e, &caller.user).await? {
        Canceled::Execution(e) => Ok(Json(render(&state, &e, &params, &Attributes::All, &caller)?)),
        Canceled::NotCancelable(status) => Ok(Json(json!({"faultstring": format!("Action cannot be canceled. State = {status}.")}))),
        Canceled::Gone => Err(ApiError::no_execution(&id)),
    }
}

pub async fn rerun(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Params,
    caller: Principal,
    body: Bytes,
) -> ApiResult<Response> {
    let original = find_for(&state, &id, &caller, "execution_rerun").await?;
    let e = service::rerun(&state, &original, &json_body(&body)?, &caller).await?;
    Ok((StatusCode::CREATED, Json(render(&state, &e, &params, &Attributes::All, &caller)?)).into_response())
}

/// A workflow's descendants the caller may view, depth-first in creation order (`depth`:
/// levels, -1 for all).
pub async fn children(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Params,
    caller: Principal,
) -> ApiResult<Json<Value>> {
    let parent = find_for(&state, &id, &caller, "execution_view").await?;
    let depth = match params.get("depth") {
        None => -1,
        Some(d) => d.parse::<i64>().map_err(|_| ApiError::bad_request(format!("depth must be an integer, not \"{d}\"")))?,
    };
    let mut out = Vec::new();
    let mut visible = ExecutionQuery::default();
    caller.restrict(&state, &mut visible);
    for e in service::descendants(&state, &parent, depth, &visible).await? {
        out.push(render(&state, &e, &params, &Attributes::All, &caller)?);
    }
    Ok(Json(Value::Array(out)))
}
