//! `/actions` and `/runnertypes`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde_json::Value;

use super::paged_slice;
use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::query::{Params, limit, offset};
use crate::rbac::Resource;
use crate::wire::{action_json, runner_json};

const ACTION_FIELDS: &[&str] = &[
    "id",
    "uid",
    "ref",
    "pack",
    "name",
    "description",
    "enabled",
    "entry_point",
    "runner_type",
    "parameters",
    "output_schema",
    "notify",
    "tags",
    "metadata_file",
    "unavailable",
];

#[utoipa::path(get, path = "/v1/actions", tag = "actions", operation_id = "listActions",
    params(crate::openapi::ActionFilters, crate::openapi::Paging, crate::openapi::Projection),
    responses(
        (status = 200, description = "Actions, by pack then name", body = Vec<crate::openapi::Action>,
            headers(("X-Total-Count" = u64, description = "How many match"), ("X-Limit" = u64, description = "The limit applied, when one was"))),
        (status = 400, description = "A bad limit, offset or attribute list", body = crate::openapi::Error),
    ))]
pub async fn list_actions(State(state): State<Arc<AppState>>, params: Params, caller: Principal) -> ApiResult<impl IntoResponse> {
    caller.require(&state, "action_list", Resource::Global)?;
    let attributes = params.attributes(ACTION_FIELDS, &["parameters", "notify"])?;
    let (limit, offset) = (limit(&params, u64::MAX, state.settings.max_page_size, &caller)?, offset(&params)?);
    let packs = params.list("pack");
    let names = params.list("name");
    let ids = params.list("id");
    let tags = params.list("tags");
    let matching: Vec<_> = state
        .catalog
        .actions()
        .filter(|a| packs.as_ref().is_none_or(|p| p.contains(&a.pack)))
        .filter(|a| names.as_ref().is_none_or(|n| n.contains(&a.name)))
        .filter(|a| ids.as_ref().is_none_or(|i| i.contains(&a.id)))
        .filter(|a| {
            tags.as_ref()
                .is_none_or(|t| a.tags.iter().any(|tag| tag.get("name").and_then(Value::as_str).is_some_and(|n| t.iter().any(|x| x == n))))
        })
        .collect();
    let limit = limit.filter(|l| *l != u64::MAX);
    Ok(paged_slice(matching, offset, limit, |a| {
        let mut doc = action_json(a);
        attributes.apply(&mut doc, &["id", "ref", "name", "pack"]);
        doc
    }))
}

#[utoipa::path(get, path = "/v1/actions/{ref_or_id}", tag = "actions", operation_id = "getAction", params(crate::openapi::ActionPath),
    responses(
        (status = 200, description = "The action", body = crate::openapi::Action),
        (status = 404, description = "`Resource with a reference or id \"X\" not found`", body = crate::openapi::Error),
    ))]
pub async fn get_action(State(state): State<Arc<AppState>>, Path(ref_or_id): Path<String>, caller: Principal) -> ApiResult<Json<Value>> {
    let action = state
        .catalog
        .action(&ref_or_id)
        .ok_or_else(|| ApiError::not_found(format!("Resource with a reference or id \"{ref_or_id}\" not found")))?;
    caller.require(&state, "action_view", Resource::Action { pack: &action.pack, name: &action.name })?;
    Ok(Json(action_json(action)))
}

const RUNNER_FIELDS: &[&str] =
    &["id", "uid", "name", "description", "enabled", "runner_package", "runner_module", "runner_parameters", "output_key", "output_schema"];

#[utoipa::path(get, path = "/v1/runnertypes", tag = "actions", operation_id = "listRunnerTypes",
    params(crate::openapi::RunnerFilters, crate::openapi::Paging, crate::openapi::Projection),
    responses(
        (status = 200, description = "Runner types, by name", body = Vec<crate::openapi::RunnerType>,
            headers(("X-Total-Count" = u64, description = "How many match"), ("X-Limit" = u64, description = "The limit applied"))),
        (status = 400, description = "A bad limit, offset or attribute list", body = crate::openapi::Error),
    ))]
pub async fn list_runners(State(state): State<Arc<AppState>>, params: Params, caller: Principal) -> ApiResult<impl IntoResponse> {
    let attributes = params.attributes(RUNNER_FIELDS, RUNNER_FIELDS)?;
    let (limit, offset) = (limit(&params, 100, state.settings.max_page_size, &caller)?, offset(&params)?);
    let names = params.list("name");
    let ids = params.list("id");
    let matching: Vec<_> = state
        .catalog
        .runners()
        .filter(|r| names.as_ref().is_none_or(|n| n.contains(&r.name)))
        .filter(|r| ids.as_ref().is_none_or(|i| i.contains(&r.id)))
        .collect();
    Ok(paged_slice(matching, offset, limit, |r| {
        let mut doc = runner_json(r);
        attributes.apply(&mut doc, &["id", "name"]);
        doc
    }))
}

#[utoipa::path(get, path = "/v1/runnertypes/{name_or_id}", tag = "actions", operation_id = "getRunnerType", params(crate::openapi::RunnerPath),
    responses(
        (status = 200, description = "The runner type", body = crate::openapi::RunnerType),
        (status = 404, description = "No such runner", body = crate::openapi::Error),
    ))]
pub async fn get_runner(State(state): State<Arc<AppState>>, Path(name_or_id): Path<String>) -> ApiResult<Json<Value>> {
    state
        .catalog
        .runner(&name_or_id)
        .map(|r| Json(runner_json(r)))
        .ok_or_else(|| ApiError::not_found(format!("Resource with a reference or id \"{name_or_id}\" not found")))
}
