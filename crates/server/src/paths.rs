//! Path normalisation: StackStorm answers every route under several prefixes (`/api/v1`,
//! `/auth/v1`, `/stream/v1`, `/v1`, bare) and with one trailing slash; squall maps them all to
//! one canonical path before routing, remembering whether the request came to the stream service.

use axum::extract::Request;
use axum::http::Uri;

/// Request extension: the request arrived through the `/stream` prefix or on the stream port,
/// so `/executions/{id}/output` means the SSE stream rather than plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaStream(pub bool);

/// Canonical form of `path`, and whether it came through the `/stream` prefix.
pub fn normalize(path: &str) -> (String, bool) {
    let mut p = path;
    let mut via_stream = false;
    for prefix in ["/api", "/auth", "/stream"] {
        if let Some(rest) = p.strip_prefix(prefix) {
            if prefix == "/stream" && (rest.is_empty() || rest == "/") {
                break; // `/stream` alone is the stream endpoint itself
            }
            if rest.starts_with('/') {
                via_stream = prefix == "/stream";
                p = rest;
                break;
            }
        }
    }
    if let Some(rest) = p.strip_prefix("/v1")
        && (rest.is_empty() || rest.starts_with('/'))
    {
        p = rest;
    }
    if p.len() > 1 && p.ends_with('/') {
        p = &p[..p.len() - 1];
    }
    if p.is_empty() {
        p = "/";
    }
    (p.to_string(), via_stream)
}

/// Rewrites the request's URI to its canonical path (query kept) and records [`ViaStream`].
pub fn rewrite(mut req: Request, stream_port: bool) -> Request {
    let (path, via_stream) = normalize(req.uri().path());
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    if let Ok(uri) = path_and_query.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
    req.extensions_mut().insert(ViaStream(via_stream || stream_port));
    req
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn every_alias_reaches_the_same_route() {
        let cases = [
            ("/v1/executions/", "/executions", false),
            ("/api/v1/executions", "/executions", false),
            ("/executions", "/executions", false),
            ("/auth/v1/tokens", "/tokens", false),
            ("/tokens", "/tokens", false),
            ("/v1/tokens", "/tokens", false),
            ("/stream", "/stream", false),
            ("/stream/", "/stream", false),
            ("/v1/stream", "/stream", false),
            ("/stream/v1/stream", "/stream", true),
            ("/api/stream", "/stream", false),
            ("/api/v1/stream", "/stream", false),
            ("/stream/v1/executions/abc/output", "/executions/abc/output", true),
            ("/v1", "/", false),
            ("/api/v1/", "/", false),
            ("/v1/actions/core.local", "/actions/core.local", false),
            ("/apis/x", "/apis/x", false),
        ];
        for (input, path, via) in cases {
            assert_eq!(normalize(input), (path.to_string(), via), "{input}");
        }
    }
}
