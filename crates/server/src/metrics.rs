//! `GET /metrics`: the node's figures in Prometheus' text format, for the operator's dashboards
//! and alerts. Counters and histograms are recorded where things happen (the `metrics` facade,
//! here and in the runner); gauges of stored state (executions by status) are read from the
//! store when scraped. Labels never carry user data: routes are path templates, not paths.

use std::sync::OnceLock;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use squall_core::Status;
use squall_store::ExecutionQuery;

use crate::AppState;
use crate::error::ApiResult;

/// Seconds: from a tenth of a millisecond to ten seconds.
const LATENCY_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The process-wide recorder, installed on first use (the server's start).
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first (a test harness): then this
        // node's figures go there and /metrics shows what this handle saw.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the recorder (before anything records a figure) and folds its histogram samples into
/// buckets every few seconds: the recorder keeps each sample until then, so a node nobody scrapes
/// would otherwise grow by every request and every commit it timed. Needs a Tokio runtime.
pub fn install() {
    let handle = recorder();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    });
}

/// Counts each request by route template and status, and times it.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("squall_http_requests_total", "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("squall_http_response_head_seconds", "route" => route).record(started.elapsed().as_secs_f64());
    response
}

#[utoipa::path(get, path = "/metrics", tag = "operator", operation_id = "metrics", security(()),
    responses((status = 200, description = "Prometheus' text format", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
pub async fn render(State(state): State<std::sync::Arc<AppState>>) -> ApiResult<Response> {
    for status in Status::ALL {
        let query = ExecutionQuery { status: Some(status.as_str().to_string()), limit: Some(1), ..ExecutionQuery::default() };
        let (_, total) = state.store.list_executions(&query).await?;
        metrics::gauge!("squall_executions", "status" => status.as_str()).set(total as f64);
    }
    // Tasks of this node's runtime: a figure that must return to its idle level after load.
    metrics::gauge!("squall_tasks").set(tokio::runtime::Handle::current().metrics().num_alive_tasks() as f64);
    let body = recorder().render();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
}

/// Keeps `squall_live_viewers` counting a response body that follows an execution or the event
/// stream while it exists.
pub struct Viewer;

impl Viewer {
    pub fn enter() -> Viewer {
        metrics::gauge!("squall_live_viewers").increment(1.0);
        Viewer
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        metrics::gauge!("squall_live_viewers").decrement(1.0);
    }
}
