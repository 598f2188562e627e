//! `/livez` and `/readyz`: answers for load balancers and supervisors, without credentials and
//! without revealing anything beyond the node's own health.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;

/// How long `/readyz` waits on the store before calling it unreachable.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /livez`: the process answers HTTP. Nothing else is checked, so a supervisor restarts
/// only a server that is truly stuck.
#[utoipa::path(get, path = "/livez", tag = "operator", operation_id = "livez", security(()),
    responses((status = 200, description = "The process answers", body = crate::openapi::Liveness)))]
pub async fn livez() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when this node can do its work — the store answers (its migrations were
/// applied before the node began serving) and the node is not shutting down, so its runner
/// (if it has one) takes work; 503 with the failing checks otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operator", operation_id = "readyz", security(()),
    responses(
        (status = 200, description = "Ready", body = crate::openapi::Readiness),
        (status = 503, description = "Not ready: the failing checks", body = crate::openapi::Readiness),
    ))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let store = match tokio::time::timeout(STORE_CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("unreachable: {e}")),
        Err(_) => Err(format!("no answer within {} s", STORE_CHECK_TIMEOUT.as_secs())),
    };
    let stopping = state.shutting_down.is_cancelled();
    let runner = match (state.settings.node.roles.contains("runner"), stopping) {
        (false, _) => "not on this node",
        (true, false) => "accepting work",
        (true, true) => "shutting down",
    };
    let ready = store.is_ok() && !stopping;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": {"store": store.err().unwrap_or_else(|| "ok".into()), "runner": runner, "shutting_down": stopping},
    });
    (status, Json(body))
}
