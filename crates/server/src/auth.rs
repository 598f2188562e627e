//! Authentication: who is asking. A layer in front of every route except `POST /tokens`
//! resolves the request's credentials — in StackStorm's order, validating only the first one
//! present — into a [`Principal`]; handlers take the `Principal` extractor. With
//! `[auth] enable = false` every request acts as the configured system user (a development mode
//! the server announces loudly).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use squall_core::Timestamp;
use squall_core::auth::hash_secret;
use squall_store::ExecutionQuery;

use crate::AppState;
use crate::error::ApiError;
use crate::rbac::{Resource, Scope};

/// Authentication settings (`[auth]`).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub enable: bool,
    /// Default and maximum token lifetime, seconds.
    pub token_ttl: u64,
    /// Lifetime of the token handed to an action, seconds.
    pub service_token_ttl: u64,
    /// The user requests act as when authentication is off.
    pub dev_user: String,
}

/// How the caller proved who they are (for `GET /user`), with the stored hash of the credential
/// so that a long-lived response (a stream) can check it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Token {
        expiry: Timestamp,
        hash: String,
    },
    ApiKey {
        hash: String,
    },
    /// Authentication is off.
    None,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub is_admin: bool,
    pub method: Method,
    /// `header`, `query` or `cookie`.
    pub location: &'static str,
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("Unauthorized - One of Token or API key required."))
    }
}

impl Principal {
    /// 403 unless the caller holds `permission` on `resource`.
    pub fn require(&self, state: &AppState, permission: &str, resource: Resource<'_>) -> Result<(), ApiError> {
        if state.rbac.allows(&self.user, permission, resource) {
            return Ok(());
        }
        Err(ApiError::forbidden(match resource.uid() {
            Some(uid) => format!("User \"{}\" doesn't have required permission \"{permission}\" on resource \"{uid}\"", self.user),
            None => format!("User \"{}\" doesn't have required permission \"{permission}\"", self.user),
        }))
    }

    /// May this caller see this execution? (`execution_view` on its action, and under
    /// permission isolation only their own unless admin.)
    pub fn can_view(&self, state: &AppState, pack: &str, name: &str, owner: &str) -> bool {
        state.rbac.allows(&self.user, "execution_view", Resource::Action { pack, name })
            && (self.is_admin || !state.rbac.permission_isolation || owner == self.user)
    }

    /// Narrows an execution list to what [`Principal::can_view`] allows, in the query itself (so
    /// that paging and totals stay right): the caller's own executions under permission
    /// isolation, and the packs and actions their `execution_view` covers when it is not global.
    /// An admin's or a global grant's query is left as it was. Returns whether it narrowed.
    pub fn restrict(&self, state: &AppState, query: &mut ExecutionQuery) -> bool {
        let mut narrowed = false;
        if state.rbac.permission_isolation && !self.is_admin {
            query.user = Some(self.user.clone());
            narrowed = true;
        }
        if let Scope::Only(within) = state.rbac.scope(&self.user, "execution_view") {
            query.actions_in = Some(within);
            narrowed = true;
        }
        narrowed
    }

    /// Whether the credential this caller authenticated with would still be accepted: the token
    /// still stored (not logged out, its user not deleted) and unexpired, the API key still
    /// stored and enabled. Open streams ask this periodically; the answer comes from the store,
    /// so a revocation on one node reaches streams on every node.
    pub async fn still_valid(&self, state: &AppState) -> Result<bool, ApiError> {
        Ok(match &self.method {
            Method::Token { hash, .. } => state.store.token(hash).await?.is_some_and(|t| t.expiry > Timestamp::now()),
            Method::ApiKey { hash } => state.store.api_key_by_hash(hash).await?.is_some_and(|k| k.enabled),
            Method::None => true,
        })
    }
}

/// The credential a request presents, in the order StackStorm looks for them.
enum Credential {
    Token(String, &'static str),
    ApiKey(String, &'static str),
}

fn find_credential(headers: &HeaderMap, parts_uri: &axum::http::Uri) -> Option<Credential> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(t) = header("x-auth-token") {
        return Some(Credential::Token(t, "header"));
    }
    if let Some(k) = header("st2-api-key") {
        return Some(Credential::ApiKey(k, "header"));
    }
    let query = Query::<std::collections::HashMap<String, String>>::try_from_uri(parts_uri).map(|q| q.0).unwrap_or_default();
    if let Some(t) = query.get("x-auth-token") {
        return Some(Credential::Token(t.clone(), "query"));
    }
    if let Some(k) = query.get("st2-api-key") {
        return Some(Credential::ApiKey(k.clone(), "query"));
    }
    if let Some(t) = cookie(headers, "auth-token") {
        return Some(Credential::Token(t.to_string(), "cookie"));
    }
    cookie(headers, crate::ui::SESSION_COOKIE).map(|t| Credential::Token(t.to_string(), SESSION_LOCATION))
}

/// Where a credential came from when it is the web console's session cookie.
pub const SESSION_LOCATION: &str = "session";

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// Middleware: resolves credentials into a [`Principal`] request extension, or answers 401.
pub async fn authenticate(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if matches!(path, "/tokens" | "/tokens/validate" | "/livez" | "/readyz" | "/metrics" | "/openapi.json")
        || crate::ui::is_ui_path(path)
        || (path == "/" && crate::ui::wants_console(req.headers()))
    {
        return next.run(req).await;
    }
    let principal = if state.auth.enable {
        match resolve(&state, req.headers(), req.uri()).await {
            Ok(p) if p.location == SESSION_LOCATION && !req.method().is_safe() && !req.headers().contains_key(crate::ui::CSRF_HEADER) => {
                return ApiError::forbidden(format!(
                    "A request made with the console's session cookie must carry the {} header",
                    crate::ui::CSRF_HEADER
                ))
                .into_response();
            }
            Ok(p) => p,
            Err(e) => return e.into_response(),
        }
    } else {
        Principal { user: state.auth.dev_user.clone(), is_admin: true, method: Method::None, location: "header" }
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

async fn resolve(state: &AppState, headers: &HeaderMap, uri: &axum::http::Uri) -> Result<Principal, ApiError> {
    let principal = |user: String, method, location| Principal { is_admin: state.rbac.is_admin(&user), user, method, location };
    match find_credential(headers, uri) {
        None => Err(ApiError::unauthorized("Unauthorized - One of Token or API key required.")),
        Some(Credential::Token(token, location)) => {
            let hash = hash_secret(&token);
            let record = state.store.token(&hash).await?.ok_or_else(|| ApiError::unauthorized("Unauthorized"))?;
            if record.expiry <= Timestamp::now() {
                return Err(ApiError::unauthorized("Unauthorized - Token has expired."));
            }
            Ok(principal(record.user, Method::Token { expiry: record.expiry, hash }, location))
        }
        Some(Credential::ApiKey(key, location)) => {
            let hash = hash_secret(&key);
            let record = state
                .store
                .api_key_by_hash(&hash)
                .await?
                .ok_or_else(|| ApiError::unauthorized(format!("Unauthorized - ApiKey with key_hash={hash} not found.")))?;
            if !record.enabled {
                return Err(ApiError::unauthorized("Unauthorized - API key is disabled."));
            }
            Ok(principal(record.user, Method::ApiKey { hash }, location))
        }
    }
}

impl ApiError {
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::UNAUTHORIZED, faultstring: message.into() }
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::FORBIDDEN, faultstring: message.into() }
    }
}
