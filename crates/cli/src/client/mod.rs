//! The client side of the `squall` binary: commands that talk to a server over HTTP.

pub mod action;
pub mod auth;
pub mod execution;
mod records;
pub mod render;
pub mod tail;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// Exit codes of client commands. An execution's final status maps to its own code so scripts
/// can tell a failure from a timeout or a cancel.
pub mod exit {
    pub const SUCCEEDED: u8 = 0;
    pub const FAILED: u8 = 1;
    // 2 is clap's code for bad command-line usage.
    pub const TIMEOUT: u8 = 3;
    pub const CANCELED: u8 = 4;
    pub const ABANDONED: u8 = 5;
    /// The request could not be done: server unreachable, unknown id or action, bad parameter.
    pub const ERROR: u8 = 6;

    /// The exit code for an execution that ended with `status`.
    pub fn for_status(status: &str) -> u8 {
        match status {
            "succeeded" => SUCCEEDED,
            "timeout" => TIMEOUT,
            "canceled" => CANCELED,
            "abandoned" => ABANDONED,
            _ => FAILED,
        }
    }
}

/// A client-side failure: one line for the user, and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), code: exit::ERROR }
    }
}

pub type CliResult<T> = Result<T, CliError>;

/// The user's client configuration file. Unknown keys and wrong types are errors, so a typo
/// is reported rather than silently ignored.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UserConfig {
    /// The server to talk to when neither `--url` nor `SQUALL_URL` is given.
    url: Option<String>,
}

fn read_user_config() -> CliResult<UserConfig> {
    let Some(path) = user_config_path().filter(|p| p.is_file()) else { return Ok(UserConfig::default()) };
    let text = std::fs::read_to_string(&path).map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| CliError::new(format!("{}: {}", path.display(), e.message())))
}

/// Where the server is: `--url`, then `SQUALL_URL`, then `url` in the user's config file
/// (`$XDG_CONFIG_HOME/squall/config.toml` or `~/.config/squall/config.toml`), then the default.
/// The config file is checked whenever it exists.
pub fn resolve_url(flag: Option<String>) -> CliResult<String> {
    let config = read_user_config()?;
    let url = flag.or_else(|| std::env::var("SQUALL_URL").ok()).filter(|u| !u.is_empty()).or(config.url);
    Ok(url.unwrap_or_else(|| "http://127.0.0.1:9101".to_string()))
}

/// The execution a command acts on: `id` as given, or with `--mine` the caller's own newest.
pub async fn pick(api: &Api, id: &str, mine: bool) -> CliResult<String> {
    if !mine {
        return Ok(id.to_string());
    }
    if id != "last" {
        return Err(CliError::new(format!("--mine picks your newest execution: give it instead of an id (got {id})")));
    }
    let user = api.whoami().await?;
    let newest = api.get(&executions_query(api, &[("limit", "1"), ("user", &user)])?).await?;
    match newest.as_array().and_then(|a| a.first()) {
        Some(e) => Ok(action::str_of(e, "id")),
        None => Err(CliError::new(format!("{user} has no execution on {}", api.server()))),
    }
}

/// `/executions?…`: top-level executions, newest first, without their results, plus `filters`
/// (percent-encoded).
pub fn executions_query(api: &Api, filters: &[(&str, &str)]) -> CliResult<String> {
    let fixed = [("parent", "null"), ("sort_desc", "True"), ("exclude_attributes", "result")];
    let query: Vec<(&str, Option<&str>)> = fixed.iter().chain(filters).map(|(k, v)| (*k, Some(*v))).collect();
    let url = api.url_with("/executions", &query)?;
    Ok(format!("/executions?{}", url.query().unwrap_or_default()))
}

/// `$XDG_CONFIG_HOME/squall` or `~/.config/squall`.
pub fn user_config_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("squall"))
}

fn user_config_path() -> Option<PathBuf> {
    user_config_dir().map(|d| d.join("config.toml"))
}

/// A connection to one squall (or StackStorm) API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    /// Base URL including the version, e.g. `http://127.0.0.1:9101/v1`.
    base: String,
    /// The server's key in the token cache (`auth::server_key`).
    server: String,
    /// Set when the cached login for this server has expired: the hint a 401 gives.
    expired_login: Option<String>,
}

impl Api {
    pub fn new(url: &str) -> CliResult<Api> {
        let url = url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CliError::new(format!("invalid server URL {url:?}: expected http://HOST:PORT")));
        }
        let base = if url.ends_with("/v1") { url.to_string() } else { format!("{url}/v1") };
        // Credentials: SQUALL_AUTH_TOKEN, else SQUALL_API_KEY, else the token `squall login` cached.
        let mut headers = reqwest::header::HeaderMap::new();
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let server = auth::server_key(url);
        let mut expired_login = None;
        let credential = match (env("SQUALL_AUTH_TOKEN"), env("SQUALL_API_KEY")) {
            (Some(token), _) => Some(("x-auth-token", token)),
            (None, Some(key)) => Some(("st2-api-key", key)),
            (None, None) => match auth::cached_login(&server) {
                Some(auth::CachedLogin::Valid(token)) => Some(("x-auth-token", token)),
                Some(auth::CachedLogin::Expired { user, expiry }) => {
                    expired_login = Some(format!("your login to {server} as {user} expired at {expiry}; run `squall login {user}`"));
                    None
                }
                None => None,
            },
        };
        if let Some((name, value)) = credential {
            let value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| CliError::new(format!("the {name} credential contains characters that cannot be sent")))?;
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CliError::new(format!("cannot create an HTTP client: {e}")))?;
        Ok(Api { http, base, server, expired_login })
    }

    /// The server's key in the token cache, e.g. `http://127.0.0.1:9101`.
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `url(path)` with the query parameters that have a value appended, encoded.
    pub fn url_with(&self, path: &str, query: &[(&str, Option<&str>)]) -> CliResult<reqwest::Url> {
        let mut url = reqwest::Url::parse(&self.url(path)).map_err(|e| CliError::new(format!("bad server URL: {e}")))?;
        for (name, value) in query {
            if let Some(value) = value {
                url.query_pairs_mut().append_pair(name, value);
            }
        }
        Ok(url)
    }

    /// The name the server knows the caller by.
    pub async fn whoami(&self) -> CliResult<String> {
        Ok(self.get("/user").await?["username"].as_str().unwrap_or_default().to_string())
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn get(&self, path: &str) -> CliResult<Value> {
        self.send(self.http.get(self.url(path))).await.map(|(v, _)| v)
    }

    /// GET returning the body and the `X-Total-Count` header.
    pub async fn get_counted(&self, path: &str) -> CliResult<(Value, Option<u64>)> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> CliResult<Value> {
        self.send(self.http.post(self.url(path)).json(body)).await.map(|(v, _)| v)
    }

    pub async fn delete(&self, path: &str) -> CliResult<Value> {
        self.send(self.http.delete(self.url(path))).await.map(|(v, _)| v)
    }

    /// Sends any request, mapping failures like the other helpers.
    pub async fn send_json(&self, req: reqwest::RequestBuilder) -> CliResult<Value> {
        self.send(req).await.map(|(v, _)| v)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> CliResult<(Value, Option<u64>)> {
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let total = resp.headers().get("x-total-count").and_then(|v| v.to_str().ok()?.parse().ok());
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok((body, total));
        }
        let fault = body.get("faultstring").and_then(Value::as_str).unwrap_or_else(|| status.canonical_reason().unwrap_or("error"));
        if status.as_u16() == 401 {
            return Err(CliError::new(match &self.expired_login {
                Some(hint) => format!("{fault} ({hint})"),
                None => format!("{fault} (log in to {} with `squall login USER`, or set SQUALL_AUTH_TOKEN or SQUALL_API_KEY)", self.server),
            }));
        }
        Err(CliError::new(fault.to_string()))
    }

    pub fn unreachable(&self, e: reqwest::Error) -> CliError {
        CliError::new(format!("cannot reach the squall server at {}: {}", self.base, root_cause(&e)))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Splits `key=value` words into parameters typed by the action's and runner's definitions;
/// words without `=` (and everything after the first one) form `cmd`, as `st2 run` does.
pub async fn parse_parameters(api: &Api, action_ref: &str, words: &[String]) -> CliResult<serde_json::Map<String, Value>> {
    let action =
        api.get(&format!("/actions/{action_ref}")).await.map_err(|e| CliError::new(format!("action {action_ref}: {}", e.message)))?;
    let runner_name = action["runner_type"].as_str().unwrap_or_default();
    let runners = api.get(&format!("/runnertypes?name={runner_name}")).await?;
    let runner_params = runners.get(0).and_then(|r| r.get("runner_parameters")).cloned().unwrap_or(Value::Null);
    let type_of = |key: &str| -> Option<String> {
        action["parameters"]
            .get(key)
            .and_then(|p| p.get("type"))
            .or_else(|| runner_params.get(key).and_then(|p| p.get("type")))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let mut params = serde_json::Map::new();
    let mut iter = words.iter();
    while let Some(word) = iter.next() {
        let Some((key, raw)) = word.split_once('=').filter(|(k, _)| !k.is_empty() && !k.contains(' ')) else {
            let rest: Vec<&str> = std::iter::once(word.as_str()).chain(iter.by_ref().map(String::as_str)).collect();
            params.insert("cmd".into(), Value::String(rest.join(" ")));
            break;
        };
        let value =
            squall_core::params::cast_cli(type_of(key).as_deref(), raw).map_err(|e| CliError::new(format!("parameter {key}: {e}")))?;
        match (params.get_mut(key), value) {
            (Some(Value::Array(existing)), Value::Array(more)) => existing.extend(more),
            (_, value) => {
                params.insert(key.to_string(), value);
            }
        }
    }
    Ok(params)
}
