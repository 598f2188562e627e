//! HTTP handlers: thin adapters between requests and the service layer.

pub mod actions;
pub mod auth;
pub mod executions;
pub mod health;
pub mod log;
pub mod output;
pub mod stream;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

/// A list response with StackStorm's paging headers.
pub fn paged(items: Vec<Value>, total: u64, limit: Option<u64>) -> (HeaderMap, Json<Value>) {
    let mut headers = HeaderMap::new();
    headers.insert("X-Total-Count", HeaderValue::from(total));
    if let Some(limit) = limit {
        headers.insert("X-Limit", HeaderValue::from(limit));
    }
    (headers, Json(Value::Array(items)))
}

/// One page (`offset`, `limit`) of in-memory matches, rendered, with the paging headers.
pub fn paged_slice<T>(matching: Vec<T>, offset: u64, limit: Option<u64>, render: impl Fn(T) -> Value) -> (HeaderMap, Json<Value>) {
    let total = matching.len() as u64;
    let items = matching.into_iter().skip(offset as usize).take(limit.unwrap_or(u64::MAX) as usize).map(render).collect();
    paged(items, total, limit)
}

/// Parses a JSON request body (empty means `{}`), answering malformed input with a 400.
pub fn json_body(body: &axum::body::Bytes) -> crate::error::ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| crate::error::ApiError::bad_request(format!("Failed to parse request body as JSON: {e}")))
}

/// `GET /v1/` — the API's version document.
/// `GET /`: StackStorm's root document, or the web console for a browser.
#[utoipa::path(get, path = "/v1/", tag = "operator", operation_id = "root",
    responses(
        (status = 200, description = "The version document", body = crate::openapi::Version),
        (status = 303, description = "A browser (`Accept: text/html`) is sent to the web console at `/ui/`; no credentials needed"),
    ))]
pub async fn root(headers: HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    if crate::ui::wants_console(&headers) {
        return crate::ui::to_console();
    }
    Json(json!({"version": "3.9.0", "docs_url": "http://docs.stackstorm.com/3.9", "server": format!("squall {}", env!("CARGO_PKG_VERSION"))}))
        .into_response()
}

/// Anything the router does not know.
pub async fn fallback() -> crate::error::ApiError {
    crate::error::ApiError::unknown_route()
}

/// `GET /squall/stats`: live state of this node and the nodes it knows, for operators and tests.
#[utoipa::path(get, path = "/v1/squall/stats", tag = "operator", operation_id = "stats",
    responses((status = 200, description = "This node and the nodes it knows", body = crate::openapi::Stats)))]
pub async fn stats(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<crate::AppState>>,
) -> crate::error::ApiResult<Json<Value>> {
    let node = &state.settings.node;
    let nodes: Vec<Value> = state
        .store
        .nodes()
        .await?
        .into_iter()
        .map(|n| {
            json!({"id": n.id, "roles": n.roles, "hostname": n.hostname, "pid": n.pid, "version": n.version,
                   "started": n.started.to_iso(), "heartbeat": n.heartbeat.to_iso()})
        })
        .collect();
    Ok(Json(json!({
        "live_executions": state.bus.live_executions(),
        "node": {"id": node.id, "roles": node.roles, "store": node.store, "bus": node.bus},
        "nodes": nodes,
    })))
}
