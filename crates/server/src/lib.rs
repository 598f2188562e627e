//! squall's HTTP surface: the StackStorm-compatible API (one router for the API, auth and
//! stream services, under every prefix StackStorm answers on) and squall's extensions.

pub mod auth;
mod connections;
pub mod credentials;
pub mod error;
mod follow;
mod handlers;
pub mod log;
pub mod metrics;
pub mod openapi;
pub mod paths;
pub mod query;
pub mod rbac;
pub mod service;
pub mod ui;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use squall_bus::{Bus, WorkQueue};
use squall_core::Catalog;
use squall_core::sealed::SealingKey;
use squall_store::Store;

pub use connections::{ConnectionLimits, Listener, serve};
pub use wire::WireSettings;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub wire: WireSettings,
    /// `[stream] heartbeat`: longest silence on a stream before a keep-alive `\n`.
    pub heartbeat: Duration,
    /// `[stream] credential_check`: how often an open stream checks that its token or API key
    /// is still valid, so that a revoked token or a disabled key ends it.
    pub credential_check: Duration,
    /// The public API URL (`X-API-URL` on token responses).
    pub public_api_url: String,
    /// `[api] max_page_size`: the largest `limit` a non-admin may ask a list for.
    pub max_page_size: u64,
    /// What this node is, for `/squall/stats`.
    pub node: NodeIdentity,
}

/// This node's place in a deployment.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// Its id in the cluster's node registry (`None` on the embedded backends).
    pub id: Option<String>,
    /// `api`, `runner` or `api,runner`.
    pub roles: String,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// `in-process` or `nats`.
    pub bus: &'static str,
}

/// Everything a handler can reach.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub queue: Arc<dyn WorkQueue>,
    pub catalog: Arc<Catalog>,
    pub settings: ServerSettings,
    pub auth: auth::AuthSettings,
    pub rbac: rbac::Rbac,
    /// Seals secret parameter values before they are stored or published.
    pub sealing: SealingKey,
    /// Fires when the node begins to shut down: `/readyz` then answers 503 so that load
    /// balancers send new clients elsewhere.
    pub shutting_down: tokio_util::sync::CancellationToken,
}

/// The canonical routes (after [`paths::normalize`]).
pub fn router(state: Arc<AppState>) -> Router {
    use handlers::{actions, auth as auth_routes, executions, log, stream};
    let executions_routes = Router::new()
        .route("/", get(executions::list).post(executions::create))
        .route("/{id}", get(executions::get).delete(executions::cancel))
        .route("/{id}/output", get(stream::output))
        .route("/{id}/stdout", get(stream::stdout))
        .route("/{id}/stderr", get(stream::stderr))
        .route("/{id}/lines", get(log::lines))
        .route("/{id}/search", get(log::search))
        .route("/{id}/re_run", post(executions::rerun))
        .route("/{id}/children", get(executions::children));
    Router::new()
        .route("/", get(handlers::root))
        .route("/ui", get(ui::asset))
        .route("/ui/session", get(ui::session).post(ui::login).delete(ui::logout))
        .route("/ui/{*path}", get(ui::asset))
        .route("/stream", get(stream::events))
        .route("/squall/stats", get(handlers::stats))
        .route("/livez", get(handlers::health::livez))
        .route("/readyz", get(handlers::health::readyz))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(openapi::serve))
        .route("/tokens", post(auth_routes::create_token))
        .route("/tokens/validate", post(auth_routes::validate_token))
        .route("/user", get(auth_routes::whoami))
        .route("/apikeys", get(auth_routes::list_api_keys).post(auth_routes::create_api_key))
        .route("/apikeys/{id}", get(auth_routes::get_api_key).put(auth_routes::update_api_key).delete(auth_routes::delete_api_key))
        .route("/actions", get(actions::list_actions))
        .route("/actions/{ref_or_id}", get(actions::get_action))
        .route("/runnertypes", get(actions::list_runners))
        .route("/runnertypes/{name_or_id}", get(actions::get_runner))
        .nest("/executions", executions_routes.clone())
        .nest("/actionexecutions", executions_routes)
        .route_layer(axum::middleware::from_fn(metrics::track))
        .fallback(handlers::fallback)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), auth::authenticate))
        .with_state(state)
}
