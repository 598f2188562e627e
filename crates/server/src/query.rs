//! Query-string parsing with StackStorm's rules and error texts.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Uri};
use squall_core::Timestamp;

use crate::auth::Principal;
use crate::error::ApiError;
use squall_core::output::{RecordFilter, StreamFilter};

/// The request's query parameters, percent-decoded. A comma list is one parameter.
#[derive(Debug, Default)]
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Params::from_uri(&parts.uri)
    }
}

impl Params {
    /// The query parameters of `uri`; a query string that does not decode is a 400.
    pub fn from_uri(uri: &Uri) -> Result<Params, ApiError> {
        let pairs =
            Query::<Vec<(String, String)>>::try_from_uri(uri).map_err(|e| ApiError::bad_request(format!("Invalid query string: {e}")))?.0;
        let mut params = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            // A list is one comma-separated parameter; a repeated one would silently lose values.
            if params.insert(name.clone(), value).is_some() {
                return Err(ApiError::bad_request(format!(
                    "Parameter \"{name}\" is given more than once (send a list as one comma-separated value)"
                )));
            }
        }
        Ok(Params(params))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The output filter of the follow endpoints: `output_type` and `host`.
    pub fn record_filter(&self) -> RecordFilter {
        RecordFilter {
            streams: StreamFilter::from_output_type(self.get("output_type")),
            host: self.get("host").filter(|h| !h.is_empty()).map(String::from),
        }
    }

    /// Integers must match `^-?[0-9]+$`.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let Some(raw) = self.get(name) else { return Ok(None) };
        let digits = raw.strip_prefix('-').unwrap_or(raw);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::bad_request(format!("Parameter \"{name}\" is not of type integer")));
        }
        raw.parse().map(Some).map_err(|_| ApiError::bad_request(format!("Parameter \"{name}\" is out of range")))
    }

    /// Booleans accept `true/1/yes/y` and `false/0/no/n`, case-insensitively.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        let Some(raw) = self.get(name) else { return Ok(None) };
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" => Ok(Some(true)),
            "false" | "0" | "no" | "n" => Ok(Some(false)),
            _ => Err(ApiError::bad_request(format!("Parameter \"{name}\" is not of type boolean"))),
        }
    }

    /// A comma-separated list, empty items dropped.
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        self.get(name).map(|raw| raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
    }

    pub fn timestamp(&self, name: &str) -> Result<Option<Timestamp>, ApiError> {
        let Some(raw) = self.get(name) else { return Ok(None) };
        Timestamp::parse_query(raw).map(Some).ok_or_else(|| ApiError::bad_request("Datetime value does not match expected format."))
    }

    /// `include_attributes` / `exclude_attributes`, validated against `allowed_*`.
    pub fn attributes(&self, allowed_include: &[&str], allowed_exclude: &[&str]) -> Result<Attributes, ApiError> {
        let include = self.list("include_attributes");
        let exclude = self.list("exclude_attributes");
        match (include, exclude) {
            (Some(_), Some(_)) => Err(ApiError::bad_request(
                "exclude_attributes and include_attributes arguments are mutually exclusive. You need to provide either one or another, but not both.",
            )),
            (Some(inc), None) => {
                if let Some(bad) = inc.iter().find(|a| !allowed_include.contains(&a.split('.').next().unwrap_or(""))) {
                    return Err(ApiError::bad_request(format!("Invalid or unsupported include attribute specified: {bad}")));
                }
                Ok(Attributes::Include(inc))
            }
            (None, Some(exc)) => {
                if let Some(bad) = exc.iter().find(|a| !allowed_exclude.contains(&a.as_str())) {
                    return Err(ApiError::bad_request(format!("Invalid or unsupported exclude attribute specified: {bad}")));
                }
                Ok(Attributes::Exclude(exc))
            }
            (None, None) => Ok(Attributes::All),
        }
    }
}

/// Which fields of a resource the client asked for.
#[derive(Debug, Clone)]
pub enum Attributes {
    All,
    Include(Vec<String>),
    Exclude(Vec<String>),
}

impl Attributes {
    pub fn apply(&self, doc: &mut serde_json::Value, always: &[&str]) {
        match self {
            Attributes::All => {}
            Attributes::Include(paths) => crate::wire::project(doc, paths, always),
            Attributes::Exclude(paths) => crate::wire::exclude(doc, paths),
        }
    }
}

/// StackStorm's refusal of `limit=-1` to a non-admin (its `validate_limit_query_param`).
pub const UNLIMITED_REFUSED: &str = "Administrator access required to be able to specify limit=-1 and retrieve all the records";

/// StackStorm's limit rules: default `default`, `-1` for all and more than `max_page_size`
/// (admins only: 403 for anyone else), `0` and other negatives are 400.
pub fn limit(params: &Params, default: u64, max_page_size: u64, caller: &Principal) -> Result<Option<u64>, ApiError> {
    match params.int("limit")? {
        None => Ok(Some(default)),
        Some(-1) if !caller.is_admin => Err(ApiError::forbidden(UNLIMITED_REFUSED)),
        Some(-1) => Ok(None),
        Some(0) => Err(ApiError::bad_request("Limit, \"0\" specified, must be a positive number or -1 for full result set.")),
        Some(n) if n < 0 => Err(ApiError::bad_request(format!("Limit, \"{n}\" specified, must be a positive number."))),
        Some(n) if n as u64 > max_page_size && !caller.is_admin => {
            Err(ApiError::forbidden(format!("Limit \"{n}\" specified, maximum value is \"{max_page_size}\"")))
        }
        Some(n) => Ok(Some(n as u64)),
    }
}

pub fn offset(params: &Params) -> Result<u64, ApiError> {
    match params.int("offset")? {
        None => Ok(0),
        Some(n) if n < 0 => Err(ApiError::bad_request(format!("Offset, \"{n}\" specified, must be a positive number."))),
        Some(n) => Ok(n as u64),
    }
}

/// Where a follower of an execution's output starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// After this `seq` (0: from the start).
    After(u64),
    /// After the last record stored now: only what comes next.
    Latest,
}

/// The resume point of the output streams: `?after=latest`, else the `Last-Event-ID` header (the
/// `seq` of the last event received), else `?after=<seq>`, else the start. Anything else is a 400.
pub fn resume(last_event_id: Option<&HeaderValue>, params: &Params) -> Result<Resume, ApiError> {
    if params.get("after") == Some("latest") {
        return Ok(Resume::Latest);
    }
    if let Some(v) = last_event_id {
        return v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Resume::After)
            .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be the seq of a received event (a non-negative integer)"));
    }
    match params.int("after")? {
        None => Ok(Resume::After(0)),
        Some(n) if n < 0 => Err(ApiError::bad_request("Parameter \"after\" must be a non-negative integer")),
        Some(n) => Ok(Resume::After(n as u64)),
    }
}

/// `fnmatch`-style matching with `*` and `?`, as StackStorm matches the `events` of `/stream`.
/// Each `*` first matches nothing and, on a mismatch, the latest `*` takes one more byte: at
/// most pattern × name steps, whatever the client sends (trying every split of every `*`
/// took exponential time: `events=st********************?x` held a worker for good).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    // The pattern after the latest `*`, and where in the name that `*` ends so far.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        match p.get(i) {
            Some(b'*') => {
                star = Some((i + 1, j));
                i += 1;
            }
            Some(&c) if c == b'?' || c == n[j] => (i, j) = (i + 1, j + 1),
            _ => match star {
                Some((after, end)) => {
                    star = Some((after, end + 1));
                    (i, j) = (after, end + 1);
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("st2.announcement__*", "st2.announcement__chatops"));
        assert!(glob("st2.execution__update", "st2.execution__update"));
        assert!(!glob("st2.execution__update", "st2.execution__create"));
        assert!(glob("st2.execution*", "st2.execution.output__create"));
        assert!(glob("st2.?xecution__create", "st2.execution__create"));
        assert!(glob("*", "") && glob("**", "x") && !glob("?", "") && glob("a*b*c", "aXbYbc"));
        assert!(!glob("st********************?xncon", "st2.execution.output__create"));
    }
}
