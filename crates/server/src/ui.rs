//! The web console: plain HTML, CSS and ES modules from `crates/server/ui/`, embedded in the
//! binary (no Node.js, no network, no build step), served at `/ui/` on every API listener.
//! Any `/ui/…` path that is not a file is the page itself (its router reads the path).
//!
//! The page holds no secret: it logs in through `POST /ui/session`, which checks the password
//! as `POST /tokens` does and answers with the token in an `HttpOnly`, `SameSite=Strict`
//! cookie that scripts cannot read. Requests made with that cookie go through the same
//! authentication and RBAC as any other; state-changing ones must also carry
//! [`CSRF_HEADER`], which a page of another site cannot add.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use squall_core::auth::hash_secret;
use squall_store::TokenRecord;

use crate::AppState;
use crate::auth::cookie;
use crate::error::{ApiError, ApiResult};
use crate::handlers::auth::check_password;

/// The console's session cookie: a token, `HttpOnly`, `SameSite=Strict`.
pub const SESSION_COOKIE: &str = "squall-session";
/// The header the console adds to every state-changing request made with its cookie.
pub const CSRF_HEADER: &str = "x-squall-console";

/// The embedded files: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../ui/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../ui/app.js")),
    ("viewer.js", "text/javascript; charset=utf-8", include_bytes!("../ui/viewer.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../ui/style.css")),
];

/// Whether `path` (canonical, after `paths::normalize`) belongs to the console.
pub fn is_ui_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// `GET /ui/{path}`: a file, or the page for any other path.
pub async fn asset(path: Option<Path<String>>, headers: HeaderMap) -> Response {
    let name = path.as_ref().map_or("index.html", |p| p.0.as_str());
    let (_, content_type, bytes) = ASSETS.iter().find(|(n, _, _)| *n == name).unwrap_or(&ASSETS[0]);
    let etag = format!("\"{}\"", &hash_secret(&String::from_utf8_lossy(bytes))[..16]);
    if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CACHE_CONTROL, "no-cache".to_string()),
            (header::ETAG, etag),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'".to_string()),
        ],
        Bytes::from_static(bytes),
    )
        .into_response()
}

/// `/` for a browser: the console. API clients keep StackStorm's root document.
pub fn wants_console(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

pub fn to_console() -> Response {
    Redirect::to("/ui/").into_response()
}

/// `GET /ui/session`: whether the console may skip its login page (authentication off, or a
/// valid session cookie).
pub async fn session(State(state): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    if !state.auth.enable {
        return Ok(Json(json!({"user": state.auth.dev_user, "auth": false})));
    }
    let token = match cookie(&headers, SESSION_COOKIE) {
        Some(t) => state.store.token(&hash_secret(t)).await?,
        None => None,
    };
    match token.filter(|t| t.expiry > squall_core::Timestamp::now()) {
        Some(t) => Ok(Json(json!({"user": t.user, "auth": true}))),
        None => Err(ApiError::unauthorized("Unauthorized - log in")),
    }
}

/// Logging in and out must come from the console's own scripts, never from another site's form.
fn require_console(headers: &HeaderMap) -> ApiResult<()> {
    if headers.contains_key(CSRF_HEADER) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("The console's requests carry the {CSRF_HEADER} header")))
    }
}

/// `POST /ui/session` with `{"username", "password"}`: logs in.
pub async fn login(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    require_console(&headers)?;
    let body: Value =
        serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("Send {\"username\": …, \"password\": …} as JSON"))?;
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    let (Some(user), Some(password)) = (field("username"), field("password")) else {
        return Err(ApiError::bad_request("username and password are required"));
    };
    check_password(&state, &user, password).await?;
    let (token, record) = TokenRecord::issue(&user, state.auth.token_ttl, false);
    state.store.insert_token(&record).await?;
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", state.auth.token_ttl);
    Ok(([(header::SET_COOKIE, cookie)], Json(json!({"user": user, "auth": true}))).into_response())
}

/// `DELETE /ui/session`: logs out (the token is deleted, the cookie cleared).
pub async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Response> {
    require_console(&headers)?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.store.delete_token(&hash_secret(token)).await?;
    }
    let cleared = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cleared)]).into_response())
}
