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

/// Whether the caller asked for secrets and may see them; read before anything is looked up, so
/// a bad value is a 400 even when no execution would be rendered.
fn show_secrets(params: &Params, caller: &Principal) -> ApiResult<bool> {
    Ok(params.boolean("show_secrets")?.unwrap_or(false) && caller.is_admin)
}

fn render(state: &AppState, e: &Execution, show_secrets: bool, attributes: &Attributes) -> ApiResult<Value> {
    let opened = show_secrets.then(|| state.sealing.open(&e.id, &e.runner, &e.action, &e.parameters)).transpose()?;
    let mut doc = execution_json(e, opened, &state.settings.wire);
    attributes.apply(&mut doc, &["id"]);
    Ok(doc)
}

#[utoipa::path(get, path = "/v1/executions", tag = "executions", operation_id = "listExecutions",
    params(crate::openapi::ExecutionFilters, crate::openapi::Paging, crate::openapi::Projection, crate::openapi::Secrets),
    responses(
        (status = 200, description = "Executions, newest first unless asked otherwise", body = Vec<crate::openapi::Execution>,
            headers(("X-Total-Count" = u64, description = "How many match"), ("X-Limit" = u64, description = "The limit applied, when one was"))),
        (status = 400, description = "A bad timestamp, limit, offset, boolean or attribute list", body = crate::openapi::Error),
    ))]
pub async fn list(State(state): State<Arc<AppState>>, params: Params, caller: Principal) -> ApiResult<impl IntoResponse> {
    caller.require(&state, "execution_list", Resource::Global)?;
    let attributes = params.attributes(EXECUTION_FIELDS, EXCLUDABLE)?;
    let secrets = show_secrets(&params, &caller)?;
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
        limit: limit(&params, 100, state.settings.max_page_size, &caller)?,
        offset: offset(&params)?,
    };
    caller.restrict(&state, &mut query);
    let (executions, total) = state.store.list_executions(&query).await?;
    let items = executions.iter().map(|e| render(&state, e, secrets, &attributes)).collect::<ApiResult<Vec<_>>>()?;
    Ok(paged(items, total, query.limit))
}

#[utoipa::path(get, path = "/v1/executions/{id}", tag = "executions", operation_id = "getExecution",
    params(crate::openapi::IdPath, crate::openapi::Projection, crate::openapi::Secrets),
    responses(
        (status = 200, description = "The execution", body = crate::openapi::Execution),
        (status = 400, description = "A bad attribute list or boolean", body = crate::openapi::Error),
        (status = 404, description = "`Unable to identify resource with id \"X\".`", body = crate::openapi::Error),
    ))]
pub async fn get(State(state): State<Arc<AppState>>, Path(id): Path<String>, params: Params, caller: Principal) -> ApiResult<Json<Value>> {
    let attributes = params.attributes(EXECUTION_FIELDS, EXCLUDABLE)?;
    let secrets = show_secrets(&params, &caller)?;
    let e = find_for(&state, &id, &caller, "execution_view").await?;
    Ok(Json(render(&state, &e, secrets, &attributes)?))
}

#[utoipa::path(post, path = "/v1/executions", tag = "executions", operation_id = "createExecution",
    params(crate::openapi::Secrets, ("st2-context" = Option<String>, Header, description = "A JSON object merged into the execution's `context`")),
    request_body(content = crate::openapi::ExecutionRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The execution, `requested`", body = crate::openapi::Execution,
            links(("GetExecution" = (operation_id = "getExecution", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "A bad body, an unknown or disabled action, or parameters that do not fit the action", body = crate::openapi::Error),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    params: Params,
    caller: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let secrets = show_secrets(&params, &caller)?;
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
    Ok((StatusCode::CREATED, Json(render(&state, &e, secrets, &Attributes::All)?)).into_response())
}

#[utoipa::path(delete, path = "/v1/executions/{id}", tag = "executions", operation_id = "cancelExecution",
    params(crate::openapi::IdPath, crate::openapi::Secrets),
    description = "Cancels the execution (StackStorm's DELETE: the execution is not deleted). One that already ended answers 200 with `{\"faultstring\": \"Action cannot be canceled. State = …\"}`.",
    responses(
        (status = 200, description = "The execution, `canceling` or `canceled`; or the faultstring of one that cannot be", body = crate::openapi::CancelOutcome),
        (status = 400, description = "A bad boolean", body = crate::openapi::Error),
        (status = 404, description = "No such execution", body = crate::openapi::Error),
    ))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Params,
    caller: Principal,
) -> ApiResult<Json<Value>> {
    let secrets = show_secrets(&params, &caller)?;
    let e = find_for(&state, &id, &caller, "execution_stop").await?;
    // StackStorm's cancel semantics; a running execution's process group is really stopped.
    match lifecycle::cancel(&*state.store, &*state.bus, e, &caller.user).await? {
        Canceled::Execution(e) => Ok(Json(render(&state, &e, secrets, &Attributes::All)?)),
        Canceled::NotCancelable(status) => Ok(Json(json!({"faultstring": format!("Action cannot be canceled. State = {status}.")}))),
        Canceled::Gone => Err(ApiError::no_execution(&id)),
    }
}

#[utoipa::path(post, path = "/v1/executions/{id}/re_run", tag = "executions", operation_id = "reRunExecution",
    params(crate::openapi::IdPath, crate::openapi::Secrets),
    request_body(content = Option<crate::openapi::ReRunRequest>, content_type = "application/json"),
    responses(
        (status = 201, description = "The new execution", body = crate::openapi::Execution),
        (status = 400, description = "A bad body, or parameters that do not fit the action", body = crate::openapi::Error),
        (status = 404, description = "No such execution", body = crate::openapi::Error),
    ))]
pub async fn rerun(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Params,
    caller: Principal,
    body: Bytes,
) -> ApiResult<Response> {
    let secrets = show_secrets(&params, &caller)?;
    let original = find_for(&state, &id, &caller, "execution_rerun").await?;
    let e = service::rerun(&state, &original, &json_body(&body)?, &caller).await?;
    Ok((StatusCode::CREATED, Json(render(&state, &e, secrets, &Attributes::All)?)).into_response())
}

#[utoipa::path(get, path = "/v1/executions/{id}/children", tag = "executions", operation_id = "executionChildren",
    params(crate::openapi::IdPath, crate::openapi::Depth, crate::openapi::Secrets),
    responses(
        (status = 200, description = "Descendants, depth-first", body = Vec<crate::openapi::Execution>),
        (status = 400, description = "A bad depth or boolean", body = crate::openapi::Error),
        (status = 404, description = "No such execution", body = crate::openapi::Error),
    ))]
/// A workflow's descendants the caller may view, depth-first in creation order (`depth`:
/// levels, -1 for all).
pub async fn children(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Params,
    caller: Principal,
) -> ApiResult<Json<Value>> {
    let secrets = show_secrets(&params, &caller)?;
    let parent = find_for(&state, &id, &caller, "execution_view").await?;
    let depth = match params.get("depth") {
        None => -1,
        Some(d) => d.parse::<i64>().map_err(|_| ApiError::bad_request(format!("depth must be an integer, not \"{d}\"")))?,
    };
    let mut out = Vec::new();
    let mut visible = ExecutionQuery::default();
    caller.restrict(&state, &mut visible);
    for e in service::descendants(&state, &parent, depth, &visible).await? {
        out.push(render(&state, &e, secrets, &Attributes::All)?);
    }
    Ok(Json(Value::Array(out)))
}
