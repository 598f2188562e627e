//! Query-string parsing with StackStorm's rules and error texts.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use squall_core::Timestamp;

use crate::error::ApiError;
use squall_core::output::{RecordFilter, StreamFilter};

/// The request's query parameters, percent-decoded. A comma list is one parameter.
#[derive(Debug, Default)]
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::bad_request(format!("Invalid query string: {e}")))
    }
}

impl Params {
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

/// StackStorm's limit rules: default `default`, `-1` for all, `0` and other negatives are 400.
pub fn limit(params: &Params, default: u64) -> Result<Option<u64>, ApiError> {
    match params.int("limit")? {
        None => Ok(Some(default)),
        Some(-1) => Ok(None),
        Some(n) if n <= 0 => Err(ApiError::bad_request(format!("Limit, \"{n}\" specified, must be a positive number."))),
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
