//! Query strings: the request's query decoded as the handlers decode it
//! (`squall_server::query::Params`), then every parameter handlers read, read as they read it,
//! and the `events` patterns of `/stream` matched against the event names.
//!
//! Input: the query string (after `?`). Properties: no panic, no hang; a refusal is a 4xx,
//! never a 5xx; event matching agrees with a reference matcher.

use axum::http::Uri;
use squall_server::auth::{Method, Principal};
use squall_server::error::ApiError;
use squall_server::query::{self, Params};
use squall_server::wire::OUTPUT_EVENT;

/// Names of integer, boolean, list, timestamp and text parameters the handlers read.
const INTS: [&str; 5] = ["after", "count", "from", "limit", "offset"];
const BOOLS: [&str; 5] = ["case", "regex", "show_secrets", "sort_asc", "sort_desc"];
const LISTS: [&str; 7] = ["action_refs", "events", "execution_ids", "id", "name", "pack", "tags"];
const TIMES: [&str; 2] = ["timestamp_gt", "timestamp_lt"];
/// Event names `/stream` matches the `events` patterns against.
const EVENTS: [&str; 4] = [OUTPUT_EVENT, "st2.execution__update", "st2.announcement__chatops", "st2.liveaction__delete"];

pub fn body(data: &[u8]) {
    let mut uri = b"/api/v1/executions?".to_vec();
    uri.extend_from_slice(data);
    // A request line that is not a URI never reaches a handler: hyper answers 400 itself.
    let Ok(uri) = Uri::try_from(uri) else { return };
    let params = match Params::from_uri(&uri) {
        Ok(params) => params,
        Err(e) => return client_error(&e),
    };
    read_all(&params);
    for pattern in params.list("events").unwrap_or_default() {
        for event in EVENTS {
            assert_eq!(query::glob(&pattern, event), reference_glob(pattern.as_bytes(), event.as_bytes()), "{pattern:?} on {event}");
        }
    }
}

/// Reads every parameter as the handlers do; each may only succeed or be a client error.
fn read_all(params: &Params) {
    for name in INTS {
        check(params.int(name));
    }
    for name in BOOLS {
        check(params.boolean(name));
    }
    for name in TIMES {
        check(params.timestamp(name));
    }
    for name in LISTS {
        let _ = params.list(name);
    }
    for is_admin in [true, false] {
        let caller = Principal { user: "fuzz".into(), is_admin, method: Method::None, location: "header" };
        check(query::limit(params, 100, 100, &caller));
    }
    check(query::offset(params));
    check(params.attributes(&["id", "status", "result", "action"], &["result", "parameters"]));
    check(query::resume(None, params));
    let _ = params.record_filter();
}

fn check<T>(read: Result<T, ApiError>) {
    if let Err(e) = read {
        client_error(&e);
    }
}

fn client_error(e: &ApiError) {
    assert!(e.status.is_client_error(), "a query string was answered {}: {}", e.status, e.faultstring);
}

/// `fnmatch` with `*` and `?` by dynamic programming over the name's prefixes: the oracle the
/// server's matcher must agree with.
fn reference_glob(pattern: &[u8], name: &[u8]) -> bool {
    // matched[j]: the pattern read so far matches `name[..j]`.
    let mut matched = vec![false; name.len() + 1];
    matched[0] = true;
    for &c in pattern {
        let mut next = vec![false; name.len() + 1];
        if c == b'*' {
            let mut any = false;
            for (j, slot) in next.iter_mut().enumerate() {
                any |= matched[j];
                *slot = any;
            }
        } else {
            for j in 1..=name.len() {
                next[j] = matched[j - 1] && (c == b'?' || c == name[j - 1]);
            }
        }
        matched = next;
    }
    matched[name.len()]
}
