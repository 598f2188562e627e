//! HTTP handlers: thin adapters between requests and the service layer.

pub mod actions;
pub mod auth;
pub mod executions;
pub mod output;
pub mod stream;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// A list response with StackStorm's paging headers.
pub fn paged(items: Vec<Value>, total: u64, limit: Option<u64>) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert("X-Total-Count", HeaderValue::from(total));
    if let Some(limit) = limit {
        headers.insert("X-Limit", HeaderValue::from(limit));
    }
    (headers, Json(Value::Array(items)))
}

/// `GET /v1/` — the API's version document.
pub async fn root() -> Json<Value> {
    Json(json!({"version": "3.9.0", "docs_url": "http://docs.stackstorm.com/3.9", "server": format!("squall {}", env!("CARGO_PKG_VERSION"))}))
}

/// Anything the router does not know.
pub async fn fallback() -> crate::error::ApiError {
    crate::error::ApiError::unknown_route()
}

/// `GET /squall/stats`: live state of this node, for operators and tests.
pub async fn stats(axum::extract::State(state): axum::extract::State<std::sync::Arc<crate::AppState>>) -> Json<Value> {
    Json(json!({"live_executions": state.bus.live_executions()}))
}
