//! `/tokens`, `/user` and `/apikeys`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use squall_core::Timestamp;
use squall_core::auth::{hash_secret, new_secret};
use squall_core::id::new_id;
use squall_store::{ApiKeyRecord, TokenRecord};

use super::json_body;
use crate::AppState;
use crate::auth::{Method, Principal};
use crate::credentials::verify_password;
use crate::error::{ApiError, ApiResult};
use crate::rbac::Resource;

const BAD_LOGIN: &str = "Invalid or missing credentials";

/// `user:password` from an HTTP Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Answers 401 unless `user` exists and `password` is theirs (the check runs off the runtime:
/// argon2 takes tens of milliseconds).
pub async fn check_password(state: &AppState, user: &str, password: String) -> ApiResult<()> {
    let record = state.store.user(user).await?;
    let hash = record.and_then(|u| u.password_hash).ok_or_else(|| ApiError::unauthorized(BAD_LOGIN))?;
    let valid = tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false);
    if !valid {
        return Err(ApiError::unauthorized(BAD_LOGIN));
    }
    Ok(())
}

/// `POST /tokens`: a token for HTTP Basic credentials.
#[utoipa::path(post, path = "/auth/v1/tokens", tag = "auth", operation_id = "createToken", security(("basic" = [])),
    request_body(content = Option<crate::openapi::TokenRequest>, description = "Optional; `{}` or empty for the default lifetime", content_type = "application/json"),
    responses(
        (status = 201, description = "A token", body = crate::openapi::Token,
            headers(("X-API-URL" = String, description = "The public API URL"))),
        (status = 400, description = "A bad body or a `ttl` above the maximum", body = crate::openapi::Error),
        (status = 401, description = "`Invalid or missing credentials`", body = crate::openapi::Error),
    ))]
pub async fn create_token(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let (user, password) = basic_credentials(&headers).ok_or_else(|| ApiError::unauthorized(BAD_LOGIN))?;
    check_password(&state, &user, password).await?;
    let body = json_body(&body)?;
    if !body.is_object() {
        return Err(ApiError::bad_request("The request body must be a JSON object"));
    }
    let max = state.auth.token_ttl;
    let ttl = match body.get("ttl") {
        None | Some(Value::Null) => max,
        Some(v) => match v.as_i64() {
            Some(t) if t >= 1 && t as u64 <= max => t as u64,
            Some(t) if t >= 1 => return Err(ApiError::bad_request(format!("TTL specified {t} is greater than max allowed {max}."))),
            _ => return Err(ApiError::bad_request(format!("{} is not a valid TTL: use a whole number of seconds, at least 1", v))),
        },
    };
    if body.get("user").is_some() || body.get("impersonate_user").is_some() {
        return Err(ApiError::bad_request("Only service users can request tokens for other users"));
    }
    let (token, record) = TokenRecord::issue(&user, ttl, false);
    state.store.insert_token(&record).await?;
    let doc = json!({
        "id": record.id,
        "user": user,
        "token": token,
        "expiry": record.expiry.to_iso(),
        "metadata": {},
        "service": false,
    });
    Ok((StatusCode::CREATED, [("X-API-URL", state.settings.public_api_url.clone())], Json(doc)).into_response())
}

/// `POST /tokens/validate`.
#[utoipa::path(post, path = "/auth/v1/tokens/validate", tag = "auth", operation_id = "validateToken", security(()),
    request_body(content = crate::openapi::TokenCheck, content_type = "application/json"),
    responses(
        (status = 200, description = "Whether the token is valid", body = crate::openapi::TokenValidity),
        (status = 400, description = "No `token`, or not JSON", body = crate::openapi::Error),
    ))]
pub async fn validate_token(State(state): State<Arc<AppState>>, body: Bytes) -> ApiResult<Json<Value>> {
    let body = json_body(&body)?;
    let token = body.get("token").and_then(Value::as_str).ok_or_else(|| ApiError::bad_request("'token' is a required property"))?;
    let valid = state.store.token(&hash_secret(token)).await?.is_some_and(|t| t.expiry > Timestamp::now());
    Ok(Json(json!({"valid": valid})))
}

/// `GET /user`: who the caller is (`st2 whoami`).
#[utoipa::path(get, path = "/v1/user", tag = "auth", operation_id = "whoami",
    responses((status = 200, description = "The caller", body = crate::openapi::Identity)))]
pub async fn whoami(State(state): State<Arc<AppState>>, caller: Principal) -> Json<Value> {
    let mut authentication = json!({"location": caller.location});
    match caller.method {
        Method::Token { expiry, .. } => {
            authentication["method"] = json!("authentication token");
            authentication["token_expire"] = json!(expiry.to_iso());
        }
        Method::ApiKey { .. } => authentication["method"] = json!("API key"),
        Method::None => authentication["method"] = json!("none (authentication is disabled)"),
    }
    Json(json!({
        "username": caller.user,
        "authentication": authentication,
        "rbac": {"enabled": state.rbac.enabled, "roles": state.rbac.roles_of(&caller.user), "is_admin": caller.is_admin},
    }))
}

fn api_key_json(k: &ApiKeyRecord) -> Value {
    json!({
        "id": k.id,
        "uid": format!("api_key:{}", k.key_hash),
        "user": k.user,
        "key_hash": k.key_hash,
        "enabled": k.enabled,
        "metadata": k.metadata,
        "created_at": k.created.to_iso(),
    })
}

/// An API key the caller may manage: their own, or any for an admin.
async fn own_key(state: &AppState, caller: &Principal, id: &str, permission: &str) -> ApiResult<ApiKeyRecord> {
    let key =
        state.store.api_key(id).await?.ok_or_else(|| ApiError::not_found(format!("Resource with a reference or id \"{id}\" not found")))?;
    if key.user != caller.user {
        caller.require(state, permission, Resource::Global)?;
    }
    Ok(key)
}

#[utoipa::path(get, path = "/v1/apikeys", tag = "auth", operation_id = "listApiKeys",
    responses((status = 200, description = "The caller's API keys (every key for an admin)", body = Vec<crate::openapi::ApiKeyDoc>)))]
pub async fn list_api_keys(State(state): State<Arc<AppState>>, caller: Principal) -> ApiResult<Json<Value>> {
    let all_visible = state.rbac.allows(&caller.user, "api_key_list", Resource::Global);
    let keys = state.store.api_keys().await?;
    Ok(Json(Value::Array(keys.iter().filter(|k| all_visible || k.user == caller.user).map(api_key_json).collect())))
}

#[utoipa::path(get, path = "/v1/apikeys/{id}", tag = "auth", operation_id = "getApiKey", params(crate::openapi::KeyPath),
    responses(
        (status = 200, description = "The API key", body = crate::openapi::ApiKeyDoc),
        (status = 404, description = "No such key", body = crate::openapi::Error),
    ))]
pub async fn get_api_key(State(state): State<Arc<AppState>>, Path(id): Path<String>, caller: Principal) -> ApiResult<Json<Value>> {
    Ok(Json(api_key_json(&own_key(&state, &caller, &id, "api_key_view").await?)))
}

#[utoipa::path(post, path = "/v1/apikeys", tag = "auth", operation_id = "createApiKey",
    request_body(content = Option<crate::openapi::ApiKeyRequest>, content_type = "application/json"),
    responses(
        (status = 201, description = "The new key, with its secret", body = crate::openapi::NewApiKey),
        (status = 400, description = "A bad body", body = crate::openapi::Error),
    ))]
/// `POST /apikeys`: the plaintext `key` is in this response only.
pub async fn create_api_key(State(state): State<Arc<AppState>>, caller: Principal, body: Bytes) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let Value::Object(body) = body else { return Err(ApiError::bad_request("The request body must be a JSON object")) };
    let wrong_type = |v: &Value, kind: &str| ApiError::bad_request(format!("{} is not of type '{kind}'", squall_core::params::py_repr(v)));
    let user = crate::service::user_field(&body)?.unwrap_or_else(|| caller.user.clone());
    let enabled = match body.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(wrong_type(other, "boolean")),
    };
    let metadata = match body.get("metadata") {
        None | Some(Value::Null) => json!({}),
        Some(m @ Value::Object(_)) => m.clone(),
        Some(other) => return Err(wrong_type(other, "object")),
    };
    if user != caller.user && !caller.is_admin {
        return Err(ApiError::forbidden(format!(
            "User \"{}\" doesn't have required permission \"api_key_create\" for another user",
            caller.user
        )));
    }
    let key = new_secret();
    let record = ApiKeyRecord { id: new_id(), key_hash: hash_secret(&key), user, enabled, metadata, created: Timestamp::now() };
    state.store.insert_api_key(&record).await?;
    let mut doc = api_key_json(&record);
    doc["key"] = json!(key);
    Ok((StatusCode::CREATED, Json(doc)).into_response())
}

#[utoipa::path(put, path = "/v1/apikeys/{id}", tag = "auth", operation_id = "updateApiKey", params(crate::openapi::KeyPath),
    request_body(content = crate::openapi::ApiKeyUpdate, content_type = "application/json"),
    responses(
        (status = 200, description = "The key, updated", body = crate::openapi::ApiKeyDoc),
        (status = 400, description = "No `enabled`, or not JSON", body = crate::openapi::Error),
        (status = 404, description = "No such key", body = crate::openapi::Error),
    ))]
/// `PUT /apikeys/{id}`: enable or disable.
pub async fn update_api_key(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Principal,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let key = own_key(&state, &caller, &id, "api_key_modify").await?;
    let body = json_body(&body)?;
    let enabled =
        body.get("enabled").and_then(Value::as_bool).ok_or_else(|| ApiError::bad_request("'enabled' (true or false) is required"))?;
    state.store.set_api_key_enabled(&key.id, enabled).await?;
    Ok(Json(api_key_json(&ApiKeyRecord { enabled, ..key })))
}

#[utoipa::path(delete, path = "/v1/apikeys/{id}", tag = "auth", operation_id = "deleteApiKey", params(crate::openapi::KeyPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such key", body = crate::openapi::Error),
    ))]
pub async fn delete_api_key(State(state): State<Arc<AppState>>, Path(id): Path<String>, caller: Principal) -> ApiResult<StatusCode> {
    let key = own_key(&state, &caller, &id, "api_key_delete").await?;
    state.store.delete_api_key(&key.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
