//! The authorisation matrix (issue 17, item 5), against the real `squall server` and SQLite.
//!
//! What it proves:
//! * Every route the router registers (parsed out of `crates/server/src/lib.rs`, so a new route
//!   or method fails this test until [`TABLE`] lists it) × eleven kinds of caller × own, someone
//!   else's, an unpermitted and a missing resource, with `permission_isolation` off and on,
//!   answers exactly as [`TABLE`] says — over REST JSON, raw `/stdout` and `/stderr`, the
//!   per-execution SSE and record streams, `/lines`, `/search`, the global `/stream` (including
//!   `st2 execution tail`'s form of it) and the console's cookie and routes.
//! * A non-admin naming another `user` (in the body, on re-run, in `context`, in `st2-context`)
//!   never acts as them (StackStorm #6379): afterwards every execution the server holds belongs
//!   to exactly the user the table expected, and no refused request left one behind.
//! * `show_secrets=true` from a non-admin is still masked.
//! * Every list of executions (pages and totals, `last`, a workflow's children, the CLI's list)
//!   holds only those its caller may view.
//! * The global `/stream` never carries an event of an execution its viewer may not read.
//! * A token that expires, is revoked (logged out), or an API key disabled or deleted while a
//!   stream is open ends that stream.
//! * Canaries (a secret parameter, a secret env value, a password, every token and API key)
//!   appear in no log line, no byte of the data directory and no response, except where their
//!   owner was meant to receive them.
//!
//! Each test prints its figures.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, Sse, add_user, basic, write_file};
use serde_json::{Value, json};

/// The expected outcome of every cell. One row per request and resource; one cell per caller
/// (columns as in [`CALLERS`]). A cell is `STATUS[TAGS][:LABELS]`, or `OFF/ON` when it differs
/// with `permission_isolation` off and on.
///
/// * `how`: where the credential goes — `h` header, `q` query string, `c` the console's session
///   cookie — then `+`-separated extras: `x` the console's CSRF header, `rec` squall's record
///   stream, and a request body (see [`body_for`]).
/// * `res`: `A`/`B` alice's/bob's `authz.echo` execution, `X` an execution of `core.local`
///   (outside alice's grant) that an admin ran as alice, `M` an id that does not exist; `P`/`O`
///   an action inside/outside the grant; `r` a runner; `a`/`b` alice's/bob's API key, `a!` a
///   fresh key of alice's for each cell.
/// * 401: the caller's own StackStorm text ([`unauthorized_text`]); `L` the console's
///   "log in", `C` "Invalid or missing credentials".
/// * 403: `p` a missing permission, `i` permission isolation, `u` acting for another user,
///   `c` the console's CSRF rule, `l` `limit=-1` from a non-admin (StackStorm's text), `g` a
///   limit over `[api] max_page_size` from a non-admin (StackStorm's text).
/// * 2xx: `m` secrets masked (`********` present, no canary), `s` the secret shown, `o` the
///   result belongs to the caller, `b` to bob, `n` nothing of the resource (its id and output)
///   in the body.
/// * `:LABELS`: exactly which of the labelled executions (`A`, `B`, `X`) or keys (`a`, `b`) a
///   list shows.
const TABLE: &str = r#"
# method path                                                   how        res | anon  bad   exp   rev   koff | obs            A              kA             B              adm      sys
# --- the API root, the console, health and metrics
GET    /v1/                                                     h          -   | 401   401   401   401   401  | 200            200            200            200            200      200
GET    /ui                                                      h          -   | 200   200   200   200   200  | 200            200            200            200            200      200
GET    /ui/app.js                                               h          -   | 200   200   200   200   200  | 200            200            200            200            200      200
GET    /ui/session                                              c          -   | 401L  401L  401L  401L  401L | 200o           200o           401L           200o           200o     200o
POST   /ui/session                                              h+x+login  -   | 401C  401C  401C  401C  401C | 401C           401C           401C           401C           401C     401C
POST   /ui/session                                              h+login    -   | 403c  403c  403c  403c  403c | 403c           403c           403c           403c           403c     403c
DELETE /ui/session                                              h+x        -   | 204   204   204   204   204  | 204            204            204            204            204      204
DELETE /ui/session                                              h          -   | 403c  403c  403c  403c  403c | 403c           403c           403c           403c           403c     403c
GET    /livez                                                   h          -   | 200   200   200   200   200  | 200            200            200            200            200      200
GET    /readyz                                                  h          -   | 200   200   200   200   200  | 200            200            200            200            200      200
GET    /metrics                                                 h          -   | 200   200   200   200   200  | 200            200            200            200            200      200
GET    /v1/openapi.json                                         h          -   | 200   200   200   200   200  | 200            200            200            200            200      200
GET    /squall/stats                                            h          -   | 401   401   401   401   401  | 200            200            200            200            200      200
GET    /v1/no/such/route                                        h          -   | 401   401   401   401   401  | 404            404            404            404            404      404
# --- tokens, identity, API keys
POST   /auth/v1/tokens                                          h          -   | 401C  401C  401C  401C  401C | 401C           401C           401C           401C           401C     401C
POST   /auth/v1/tokens/validate                                 h+tok      -   | 200   200   200   200   200  | 200            200            200            200            200      200
GET    /v1/user                                                 h          -   | 401   401   401   401   401  | 200o           200o           200o           200o           200o     200o
GET    /v1/apikeys                                              h          -   | 401   401   401   401   401  | 200:ab         200:a          200:a          200:b          200:ab   200:ab
POST   /v1/apikeys                                              h+key      -   | 401   401   401   401   401  | 201o           201o           201o           201o           201o     201o
POST   /v1/apikeys                                              h+key-B    -   | 401   401   401   401   401  | 403u           403u           403u           201o           201b     201b
GET    /v1/apikeys/{}                                           h          a   | 401   401   401   401   401  | 200            200            200            403p           200      200
GET    /v1/apikeys/{}                                           h          b   | 401   401   401   401   401  | 200            403p           403p           200            200      200
GET    /v1/apikeys/{}                                           h          M   | 401   401   401   401   401  | 404            404            404            404            404      404
PUT    /v1/apikeys/{}                                           h+enable   a   | 401   401   401   401   401  | 403p           200            200            403p           200      200
PUT    /v1/apikeys/{}                                           h+enable   b   | 401   401   401   401   401  | 403p           403p           403p           200            200      200
PUT    /v1/apikeys/{}                                           h+enable   M   | 401   401   401   401   401  | 404            404            404            404            404      404
DELETE /v1/apikeys/{}                                           h          a!  | 401   401   401   401   401  | 403p           204            204            403p           204      204
DELETE /v1/apikeys/{}                                           h          M   | 401   401   401   401   401  | 404            404            404            404            404      404
# --- actions and runners
GET    /v1/actions                                              h          -   | 401   401   401   401   401  | 200            200            200            200            200      200
GET    /v1/actions?limit=-1                                     h          -   | 401   401   401   401   401  | 403l           403l           403l           403l           200      200
GET    /v1/actions?limit=101                                    h          -   | 401   401   401   401   401  | 403g           403g           403g           403g           200      200
GET    /v1/actions/{}                                           h          P   | 401   401   401   401   401  | 200            200            200            200            200      200
GET    /v1/actions/{}                                           h          O   | 401   401   401   401   401  | 200            403p           403p           403p           200      200
GET    /v1/actions/{}                                           h          M   | 401   401   401   401   401  | 404            404            404            404            404      404
GET    /v1/runnertypes                                          h          -   | 401   401   401   401   401  | 200            200            200            200            200      200
GET    /v1/runnertypes?limit=-1                                 h          -   | 401   401   401   401   401  | 403l           403l           403l           403l           200      200
GET    /v1/runnertypes?limit=100                                h          -   | 401   401   401   401   401  | 200            200            200            200            200      200
GET    /v1/runnertypes/{}                                       h          r   | 401   401   401   401   401  | 200            200            200            200            200      200
GET    /v1/runnertypes/{}                                       h          M   | 401   401   401   401   401  | 404            404            404            404            404      404
# --- execution lists (before anything below adds executions)
GET    /v1/executions                                           h          -   | 401   401   401   401   401  | 200:ABX/200:   200:AB/200:A   200:AB/200:A   200:AB/200:B   200:ABX  200:ABX
GET    /v1/executions?user=bob                                  h          -   | 401   401   401   401   401  | 200:B/200:     200:B/200:A    200:B/200:A    200:B          200:B    200:B
GET    /v1/actionexecutions                                     h          -   | 401   401   401   401   401  | 200:ABX/200:   200:AB/200:A   200:AB/200:A   200:AB/200:B   200:ABX  200:ABX
GET    /v1/executions?limit=-1                                  h          -   | 401   401   401   401   401  | 403l           403l           403l           403l           200:ABX  200:ABX
GET    /v1/executions?limit=101                                 h          -   | 401   401   401   401   401  | 403g           403g           403g           403g           200:ABX  200:ABX
GET    /v1/actionexecutions?limit=-1                            h          -   | 401   401   401   401   401  | 403l           403l           403l           403l           200:ABX  200:ABX
# --- the global stream, and `st2 execution tail`'s form of it
GET    /v1/stream?events=st2.execution__update                  q          -   | 401   401   401   401   401  | 200            200            200            200            200      200
GET    /stream/v1/stream?{tail}                                 q          A   | 401   401   401   401   401  | 200m/200n      200m           200m           200m/200n      200m     200m
GET    /stream/v1/stream?{tail}                                 q          B   | 401   401   401   401   401  | 200m/200n      200m/200n      200m/200n      200m           200m     200m
GET    /stream/v1/stream?{tail}                                 q          X   | 401   401   401   401   401  | 200m/200n      200n           200n           200n           200m     200m
# --- one execution: every read path
GET    /v1/executions/{}                                        h          A   | 401   401   401   401   401  | 200m/403i      200m           200m           200m/403i      200m     200m
GET    /v1/executions/{}                                        h          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /v1/executions/{}                                        h          X   | 401   401   401   401   401  | 200m/403i      403p           403p           403p           200m     200m
GET    /v1/executions/{}                                        h          M   | 401   401   401   401   401  | 404            404            404            404            404      404
GET    /v1/executions/{}?show_secrets=true                      h          A   | 401   401   401   401   401  | 200m/403i      200m           200m           200m/403i      200s     200s
GET    /v1/executions/{}?show_secrets=true                      h          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200s     200s
GET    /v1/executions/{}/output                                 h          A   | 401   401   401   401   401  | 200m/403i      200m           200m           200m/403i      200m     200m
GET    /v1/executions/{}/output                                 h          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /v1/executions/{}/output                                 h          X   | 401   401   401   401   401  | 200m/403i      403p           403p           403p           200m     200m
GET    /v1/executions/{}/output                                 h          M   | 401   401   401   401   401  | 404            404            404            404            404      404
GET    /stream/v1/executions/{}/output                          q          A   | 401   401   401   401   401  | 200m/403i      200m           200m           200m/403i      200m     200m
GET    /stream/v1/executions/{}/output                          q          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /stream/v1/executions/{}/output                          q          X   | 401   401   401   401   401  | 200m/403i      403p           403p           403p           200m     200m
GET    /stream/v1/executions/{}/output                          q          M   | 401   401   401   401   401  | 404            404            404            404            404      404
GET    /v1/executions/{}/output                                 h+rec      A   | 401   401   401   401   401  | 200m/403i      200m           200m           200m/403i      200m     200m
GET    /v1/executions/{}/output                                 h+rec      B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /v1/executions/{}/output                                 h+rec      X   | 401   401   401   401   401  | 200m/403i      403p           403p           403p           200m     200m
GET    /v1/executions/{}/stdout                                 h          A   | 401   401   401   401   401  | 200m/403i      200m           200m           200m/403i      200m     200m
GET    /v1/executions/{}/stdout                                 h          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /v1/executions/{}/stdout                                 h          X   | 401   401   401   401   401  | 200m/403i      403p           403p           403p           200m     200m
GET    /v1/executions/{}/stdout                                 h          M   | 401   401   401   401   401  | 404            404            404            404            404      404
GET    /v1/executions/{}/stderr                                 h          A   | 401   401   401   401   401  | 200m/403i      200m           200m           200m/403i      200m     200m
GET    /v1/executions/{}/stderr                                 h          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /v1/executions/{}/stderr                                 h          X   | 401   401   401   401   401  | 200m/403i      403p           403p           403p           200m     200m
GET    /v1/executions/{}/stderr                                 h          M   | 401   401   401   401   401  | 404            404            404            404            404      404
GET    /v1/executions/{}/lines                                  h          A   | 401   401   401   401   401  | 200m/403i      200m           200m           200m/403i      200m     200m
GET    /v1/executions/{}/lines                                  h          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /v1/executions/{}/lines                                  h          X   | 401   401   401   401   401  | 200m/403i      403p           403p           403p           200m     200m
GET    /v1/executions/{}/lines                                  h          M   | 401   401   401   401   401  | 404            404            404            404            404      404
GET    /v1/executions/{}/search?q=secret                        h          A   | 401   401   401   401   401  | 200m/403i      200m           200m           200m/403i      200m     200m
GET    /v1/executions/{}/search?q=secret                        h          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /v1/executions/{}/search?q=secret                        h          X   | 401   401   401   401   401  | 200m/403i      403p           403p           403p           200m     200m
GET    /v1/executions/{}/search?q=secret                        h          M   | 401   401   401   401   401  | 404            404            404            404            404      404
GET    /v1/executions/{}/children                               h          A   | 401   401   401   401   401  | 200/403i       200            200            200/403i       200      200
GET    /v1/executions/{}/children                               h          B   | 401   401   401   401   401  | 200/403i       200/403i       200/403i       200            200      200
GET    /v1/executions/{}/children                               h          X   | 401   401   401   401   401  | 200/403i       403p           403p           403p           200      200
GET    /v1/executions/{}/children                               h          M   | 401   401   401   401   401  | 404            404            404            404            404      404
# --- the /actionexecutions alias, on bob's execution
GET    /v1/actionexecutions/{}                                  h          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /v1/actionexecutions/{}/output                           h          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /v1/actionexecutions/{}/stdout                           h          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /v1/actionexecutions/{}/stderr                           h          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /v1/actionexecutions/{}/lines                            h          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /v1/actionexecutions/{}/search?q=secret                  h          B   | 401   401   401   401   401  | 200m/403i      200m/403i      200m/403i      200m           200m     200m
GET    /v1/actionexecutions/{}/children                         h          B   | 401   401   401   401   401  | 200/403i       200/403i       200/403i       200            200      200
# --- the console's session cookie on the API
GET    /v1/executions/{}                                        c          A   | 401   401   401   401   401  | 200m/403i      200m           401            200m/403i      200m     200m
DELETE /v1/executions/{}                                        c          A   | 401   401   401   401   401  | 403c           403c           401            403c           403c     403c
DELETE /v1/executions/{}                                        c+x        A   | 401   401   401   401   401  | 403p           200            401            200/403i       200      200
POST   /v1/executions                                           c+x+run    -   | 401   401   401   401   401  | 403p           201o           401            201o           201o     201o
# --- cancel and re-run (the executions are finished, so a permitted cancel changes nothing)
DELETE /v1/executions/{}                                        h          A   | 401   401   401   401   401  | 403p           200            200            200/403i       200      200
DELETE /v1/executions/{}                                        h          B   | 401   401   401   401   401  | 403p           200/403i       200/403i       200            200      200
DELETE /v1/executions/{}                                        h          X   | 401   401   401   401   401  | 403p           403p           403p           403p           200      200
DELETE /v1/executions/{}                                        h          M   | 401   401   401   401   401  | 404            404            404            404            404      404
DELETE /v1/actionexecutions/{}                                  h          B   | 401   401   401   401   401  | 403p           200/403i       200/403i       200            200      200
POST   /v1/executions/{}/re_run                                 h          A   | 401   401   401   401   401  | 403p           201o           201o           201o/403i      201o     201o
POST   /v1/executions/{}/re_run                                 h          B   | 401   401   401   401   401  | 403p           201o/403i      201o/403i      201o           201o     201o
POST   /v1/executions/{}/re_run                                 h          X   | 401   401   401   401   401  | 403p           403p           403p           403p           201o     201o
POST   /v1/executions/{}/re_run                                 h          M   | 401   401   401   401   401  | 404            404            404            404            404      404
POST   /v1/executions/{}/re_run                                 h+as-B     A   | 401   401   401   401   401  | 403p           403u           403u           201o/403i      201b     201b
POST   /v1/actionexecutions/{}/re_run                           h          B   | 401   401   401   401   401  | 403p           201o/403i      201o/403i      201o           201o     201o
# --- running actions, and trying to run them as someone else (StackStorm #6379)
POST   /v1/executions                                           h+run      -   | 401   401   401   401   401  | 403p           201o           201o           201o           201o     201o
POST   /v1/actionexecutions                                     h+run      -   | 401   401   401   401   401  | 403p           201o           201o           201o           201o     201o
POST   /v1/executions                                           h+core     -   | 401   401   401   401   401  | 403p           403p           403p           403p           201o     201o
POST   /v1/executions                                           h+as-B     -   | 401   401   401   401   401  | 403p           403u           403u           201o           201b     201b
POST   /v1/executions                                           h+ctx-B    -   | 401   401   401   401   401  | 403p           201o           201o           201o           201o     201o
POST   /v1/executions                                           h+hdr-B    -   | 401   401   401   401   401  | 403p           201o           201o           201o           201o     201o
POST   /v1/executions?show_secrets=true                         h+secret   -   | 401   401   401   401   401  | 403p           201om          201om          201om          201os    201os
"#;

/// The table's columns: no credential, a garbage token, an expired token, a revoked (logged
/// out) token, a disabled API key; an observer, alice (granted pack `authz`), alice's API key,
/// bob (the same grant), an `admin`, a `system_admin`.
const CALLERS: [&str; 11] = ["anon", "bad", "exp", "rev", "koff", "obs", "A", "kA", "B", "adm", "sys"];

/// Whose credential each caller holds.
fn username(caller: &str) -> Option<&'static str> {
    match caller {
        "obs" => Some("olive"),
        "A" | "kA" | "exp" | "koff" => Some("alice"),
        "B" | "rev" => Some("bob"),
        "adm" => Some("adam"),
        "sys" => Some("st2admin"),
        _ => None,
    }
}

const ADMIN_PASSWORD: &str = "admin-pass-123";
const PASSWORD: &str = "password-of-someone";
const GARBAGE_TOKEN: &str = "0123456789abcdef0123456789abcdef";
const MISSING_ID: &str = "5e1f000000000000000000ff";
const MASK: &str = "********";
/// StackStorm's answer to `limit=-1` from a non-admin (`validate_limit_query_param`).
const UNLIMITED_REFUSED: &str = "Administrator access required to be able to specify limit=-1 and retrieve all the records";
const STREAM_EVENTS: &str = "st2.execution__create,st2.execution__update,st2.execution.output__create";

// ---------------------------------------------------------------------------------------------
// The table, parsed

/// What one cell expects.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    status: u16,
    tags: String,
    labels: Option<String>,
}

impl Outcome {
    fn parse(text: &str) -> Outcome {
        let (head, labels) = match text.split_once(':') {
            Some((h, l)) => (h, Some(l.to_string())),
            None => (text, None),
        };
        let status = head[..3].parse().unwrap_or_else(|_| panic!("bad cell {text:?}"));
        Outcome { status, tags: head[3..].to_string(), labels }
    }

    fn has(&self, tag: char) -> bool {
        self.tags.contains(tag)
    }
}

#[derive(Debug, Clone)]
struct Row {
    line: usize,
    method: reqwest::Method,
    path: String,
    location: String,
    extras: Vec<String>,
    res: String,
    /// Per caller: (isolation off, isolation on).
    cells: Vec<(Outcome, Outcome)>,
}

fn parse_table() -> Vec<Row> {
    let mut rows = Vec::new();
    for (n, line) in TABLE.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (left, right) = line.split_once('|').expect("a row has a |");
        let left: Vec<&str> = left.split_whitespace().collect();
        let cells: Vec<&str> = right.split_whitespace().filter(|c| *c != "|").collect();
        assert_eq!((left.len(), cells.len()), (4, CALLERS.len()), "table line {}: {line}", n + 1);
        let mut how = left[2].split('+').map(String::from);
        rows.push(Row {
            line: n + 1,
            method: left[0].parse().unwrap(),
            path: left[1].to_string(),
            location: how.next().unwrap(),
            extras: how.collect(),
            res: left[3].to_string(),
            cells: cells
                .iter()
                .map(|c| match c.split_once('/') {
                    Some((off, on)) => (Outcome::parse(off), Outcome::parse(on)),
                    None => (Outcome::parse(c), Outcome::parse(c)),
                })
                .collect(),
        });
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// The routes the server has, and the check that the table covers each

/// `(METHOD, canonical path template)` of every route `router()` registers, with nested routers
/// expanded, plus `("ANY", "<fallback>")` when there is a fallback.
fn server_routes() -> BTreeSet<(String, String)> {
    let source = include_str!("../../server/src/lib.rs");
    let start = source.find("pub fn router(").expect("router() is in lib.rs");
    let body = &source[start..start + source[start..].find("\n}\n").expect("router() ends")];
    let mut nested: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut routes = BTreeSet::new();
    for statement in body.split(';') {
        let statement = statement.trim();
        let routes_here = parse_routes(statement);
        if let Some(rest) = statement.strip_prefix("let ") {
            nested.insert(rest.split_whitespace().next().unwrap().to_string(), routes_here);
            continue;
        }
        routes.extend(routes_here);
        for nest in statement.split(".nest(\"").skip(1) {
            let (prefix, rest) = nest.split_once('"').unwrap();
            let name: String = rest.trim_start_matches([',', ' ']).chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            for (method, path) in nested.get(&name).unwrap_or_else(|| panic!("nested router {name} not found")) {
                let full = if path == "/" { prefix.to_string() } else { format!("{prefix}{path}") };
                routes.insert((method.clone(), full));
            }
        }
        if statement.contains(".fallback(") {
            routes.insert(("ANY".into(), "<fallback>".into()));
        }
    }
    routes
}

/// The `.route("path", get(..).post(..))` calls of one statement, one entry per method.
fn parse_routes(statement: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for piece in statement.split(".route(\"").skip(1) {
        let (path, rest) = piece.split_once('"').unwrap();
        let (mut depth, mut word) = (0i32, String::new());
        for c in rest.trim_start_matches(',').chars() {
            match c {
                '(' => {
                    if depth == 0 && !word.is_empty() {
                        out.push((word.to_ascii_uppercase(), path.to_string()));
                    }
                    depth += 1;
                    word.clear();
                }
                ')' if depth == 0 => break,
                ')' => depth -= 1,
                c if depth == 0 && (c.is_alphanumeric() || c == '_') => word.push(c),
                _ if depth == 0 => word.clear(),
                _ => {}
            }
        }
    }
    out
}

/// Whether a canonical request path matches a route template (`{x}` one segment, `{*x}` the rest).
fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    for (i, seg) in t.iter().enumerate() {
        if seg.starts_with("{*") {
            return p.len() > i;
        }
        match p.get(i) {
            Some(s) if seg.starts_with('{') => {
                if s.is_empty() {
                    return false;
                }
            }
            Some(s) if s == seg => {}
            _ => return false,
        }
    }
    t.len() == p.len()
}

/// The route a row exercises, or `<fallback>`.
fn route_of(row: &Row, routes: &BTreeSet<(String, String)>) -> (String, String) {
    let raw = row.path.split('?').next().unwrap().replace("{}", "x");
    let (path, _) = squall_server::paths::normalize(&raw);
    routes
        .iter()
        .filter(|(m, t)| *m == row.method.as_str() && matches_template(t, &path))
        // The most specific template: the longest without a catch-all.
        .max_by_key(|(_, t)| (!t.contains("{*"), t.len()))
        .cloned()
        .unwrap_or_else(|| ("ANY".into(), "<fallback>".into()))
}

/// Routes are registered only in `router()` in lib.rs, in forms [`server_routes`] reads: any
/// other place or form would hide routes from the matrix.
fn routes_are_only_where_we_read_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src");
    let mut files = Vec::new();
    files_under(&dir, &mut files);
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
        let text = std::fs::read_to_string(file).unwrap();
        let forms: &[&str] =
            if file.ends_with("lib.rs") { &[".merge(", ".route_service(", ".nest_service("] } else { &[".route(", ".nest("] };
        for form in forms {
            assert!(!text.contains(form), "{} uses {form}: teach the authorisation matrix's route reader about it", file.display());
        }
    }
}

/// The routes no row exercises; prints the coverage.
fn uncovered_routes(rows: &[Row]) -> Vec<(String, String)> {
    routes_are_only_where_we_read_them();
    let routes = server_routes();
    assert!(routes.len() > 30, "the route parser found only {routes:?}");
    let covered: BTreeSet<_> = rows.iter().map(|r| route_of(r, &routes)).collect();
    let missing: Vec<_> = routes.difference(&covered).cloned().collect();
    println!("routes: {} (method, path) in the router, {} of them in the table", routes.len(), routes.len() - missing.len());
    missing
}

// ---------------------------------------------------------------------------------------------
// The world: a server, its users, credentials and executions

/// A credential as a caller presents it.
#[derive(Debug, Clone)]
enum Cred {
    None,
    Token(String),
    Key(String),
}

/// A captured response, and which canaries it may legitimately hold.
struct Captured {
    what: String,
    text: Vec<u8>,
    allowed: Vec<String>,
}

/// The canaries: unique values that must not leak.
struct Canaries {
    /// A `secret: true` parameter value.
    param: String,
    /// A secret `env` value.
    env: String,
    /// alice's password.
    password: String,
}

impl Canaries {
    fn new() -> Canaries {
        let fresh = |tag: &str| format!("cnry{tag}{}", squall_core::auth::new_secret());
        Canaries { param: fresh("param"), env: fresh("env"), password: fresh("pw") }
    }
}

struct World {
    server: Server,
    isolation: bool,
    http: reqwest::Client,
    creds: HashMap<&'static str, Cred>,
    /// Execution ids by label (`A`, `B`, `X`).
    executions: HashMap<&'static str, String>,
    /// API key ids by label (`a`, `b`).
    keys: HashMap<&'static str, String>,
    canaries: Arc<Canaries>,
    /// Every plaintext token and key issued, by name.
    secrets: Mutex<Vec<(String, String)>>,
    captured: Mutex<Vec<Captured>>,
    /// Executions created by the matrix: id → the user the table expected.
    created: Mutex<BTreeMap<String, String>>,
}

/// The `authz` pack (what alice and bob are granted) and the RBAC definitions.
fn write_fixtures(root: &Path) -> (PathBuf, PathBuf) {
    let (packs, rbac) = (root.join("packs"), root.join("rbac"));
    write_file(&packs.join("authz/pack.yaml"), "name: authz\n");
    write_file(
        &packs.join("authz/actions/echo.yaml"),
        "name: echo\nrunner_type: local-shell-script\nentry_point: echo.sh\nparameters:\n  word:\n    type: string\n    default: hello\n    position: 0\n  secret:\n    type: string\n    secret: true\n    default: none-given\n    position: 1\n",
    );
    write_file(&packs.join("authz/actions/echo.sh"), "#!/bin/sh\necho \"out $1 secret=$2\"\necho \"err $1 secret=$2\" >&2\n");
    write_file(
        &rbac.join("roles/runner.yaml"),
        "name: runner\npermission_grants:\n  - resource_uid: pack:authz\n    permission_types: [action_execute, action_view, execution_all]\n  - permission_types: [action_list, execution_list, stream_view]\n",
    );
    for (user, role) in [("alice", "runner"), ("bob", "runner"), ("olive", "observer"), ("adam", "admin")] {
        write_file(&rbac.join(format!("assignments/{user}.yaml")), &format!("username: {user}\nroles: [{role}]\n"));
    }
    (packs, rbac)
}

impl World {
    /// Starts a server and adds its users (blocking: run before the async part).
    fn start(isolation: bool, fixtures: &Path, canaries: Arc<Canaries>) -> World {
        let (packs, rbac) = write_fixtures(fixtures);
        let server = Server::start_with(&[
            ("SQUALL_AUTH__ENABLE", "true"),
            ("SQUALL_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("SQUALL_RBAC__ENABLE", "true"),
            ("SQUALL_RBAC__PERMISSION_ISOLATION", if isolation { "true" } else { "false" }),
            ("SQUALL_RBAC__DEFINITIONS_PATH", rbac.to_str().unwrap()),
            ("SQUALL_CONTENT__PACKS_BASE_PATHS", packs.to_str().unwrap()),
            ("SQUALL_LOG", "debug"),
        ]);
        for user in ["olive", "bob", "adam"] {
            add_user(&server, user, PASSWORD);
        }
        add_user(&server, "alice", &canaries.password);
        World {
            server,
            isolation,
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            creds: HashMap::new(),
            executions: HashMap::new(),
            keys: HashMap::new(),
            canaries,
            secrets: Mutex::new(Vec::new()),
            captured: Mutex::new(Vec::new()),
            created: Mutex::new(BTreeMap::new()),
        }
    }

    fn password(&self, user: &str) -> String {
        match user {
            "st2admin" => ADMIN_PASSWORD.to_string(),
            "alice" => self.canaries.password.clone(),
            _ => PASSWORD.to_string(),
        }
    }

    fn capture(&self, what: String, text: Vec<u8>, allowed: Vec<String>) {
        self.captured.lock().unwrap().push(Captured { what, text, allowed });
    }

    fn remember_secret(&self, name: String, value: &str) {
        self.secrets.lock().unwrap().push((name, value.to_string()));
    }

    /// `POST /tokens` with a password; the token response is where the token is meant to be.
    async fn login(&self, user: &str, ttl: Option<u64>) -> String {
        let body = ttl.map_or(json!({}), |t| json!({"ttl": t}));
        let r = self.http.post(self.server.url("/auth/v1/tokens")).header("authorization", basic(user, &self.password(user))).json(&body);
        let r = r.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 201, "login {user}");
        let doc: Value = r.json().await.unwrap();
        let token = doc["token"].as_str().unwrap().to_string();
        self.capture(format!("POST /tokens as {user}"), doc.to_string().into_bytes(), vec![token.clone()]);
        self.remember_secret(format!("token of {user}"), &token);
        token
    }

    /// A JSON request with a header credential, captured.
    async fn call(&self, method: reqwest::Method, path: &str, cred: &Cred, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method.clone(), self.server.url(path));
        req = match cred {
            Cred::Token(t) => req.header("x-auth-token", t),
            Cred::Key(k) => req.header("st2-api-key", k),
            Cred::None => req,
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap().to_vec();
        let doc = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let allowed = doc["key"].as_str().map(String::from).into_iter().collect();
        self.capture(format!("{method} {path} (set-up)"), bytes, allowed);
        (status, doc)
    }

    /// An API key for `user`, made by the admin; returns (id, plaintext key).
    async fn api_key(&self, user: &str) -> (String, String) {
        let (code, key) = self.call(reqwest::Method::POST, "/v1/apikeys", &self.creds["sys"], Some(json!({"user": user}))).await;
        assert_eq!(code, 201, "{key}");
        (key["id"].as_str().unwrap().to_string(), key["key"].as_str().unwrap().to_string())
    }

    /// A token issued by the console's login, then logged out.
    async fn revoked_token(&self) -> String {
        let r = self
            .http
            .post(self.server.url("/ui/session"))
            .header("x-squall-console", "1")
            .json(&json!({"username": "bob", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        let token = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
        self.capture("POST /ui/session (set-up)".into(), cookie.into_bytes(), vec![token.clone()]);
        self.remember_secret("revoked token".into(), &token);
        let r = self
            .http
            .delete(self.server.url("/ui/session"))
            .header("x-squall-console", "1")
            .header("cookie", format!("squall-session={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        token
    }

    /// Every credential of [`CALLERS`], and alice's and bob's API keys.
    async fn issue_credentials(&mut self) -> Instant {
        for (caller, user) in [("obs", "olive"), ("A", "alice"), ("B", "bob"), ("adm", "adam"), ("sys", "st2admin")] {
            let t = self.login(user, None).await;
            self.creds.insert(caller, Cred::Token(t));
        }
        let expired = self.login("alice", Some(1)).await;
        let expires = Instant::now() + Duration::from_secs(1);
        self.creds.insert("exp", Cred::Token(expired));
        self.creds.insert("bad", Cred::Token(GARBAGE_TOKEN.into()));
        self.creds.insert("anon", Cred::None);
        let revoked = self.revoked_token().await;
        self.creds.insert("rev", Cred::Token(revoked));
        let (a_id, a_key) = self.api_key("alice").await;
        let (b_id, b_key) = self.api_key("bob").await;
        let (off_id, off_key) = self.api_key("alice").await;
        let (code, _) =
            self.call(reqwest::Method::PUT, &format!("/v1/apikeys/{off_id}"), &self.creds["A"], Some(json!({"enabled": false}))).await;
        assert_eq!(code, 200);
        for (name, key) in [("alice's API key", &a_key), ("bob's API key", &b_key), ("disabled API key", &off_key)] {
            self.remember_secret(name.into(), key);
        }
        self.creds.insert("kA", Cred::Key(a_key));
        self.creds.insert("koff", Cred::Key(off_key));
        self.keys.insert("a", a_id);
        self.keys.insert("b", b_id);
        expires
    }

    /// alice's and bob's `authz.echo` (with the secret canary) and `X`, then waits for them.
    async fn seed_executions(&mut self) {
        let echo = |word: &str| json!({"action": "authz.echo", "parameters": {"word": word, "secret": self.canaries.param}});
        let x = json!({
            "action": "core.local", "user": "alice",
            "parameters": {"cmd": "echo \"out seedX secret=$API_TOKEN\"; echo \"err seedX secret=$API_TOKEN\" >&2",
                           "env": {"API_TOKEN": self.canaries.env}},
        });
        for (label, caller, body) in [("A", "A", echo("seedA")), ("B", "B", echo("seedB")), ("X", "adm", x)] {
            let (code, e) = self.call(reqwest::Method::POST, "/v1/executions", &self.creds[caller], Some(body)).await;
            assert_eq!(code, 201, "{e}");
            self.executions.insert(label, e["id"].as_str().unwrap().to_string());
        }
        let ids: Vec<String> = self.executions.values().cloned().collect();
        self.wait_finished(&ids).await;
    }

    async fn wait_finished(&self, ids: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for id in ids {
            loop {
                let (_, e) = self.call(reqwest::Method::GET, &format!("/v1/executions/{id}"), &self.creds["sys"], None).await;
                if common::TERMINAL.contains(&e["status"].as_str().unwrap_or("")) {
                    break;
                }
                assert!(Instant::now() < deadline, "execution {id} did not finish: {e}");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }

    fn mode(&self) -> &'static str {
        if self.isolation { "isolation on" } else { "isolation off" }
    }
}

// ---------------------------------------------------------------------------------------------
// One cell: build the request, send it, read the answer, compare

/// What came back.
struct Got {
    status: u16,
    body: Vec<u8>,
}

impl Got {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// The request body (and extra headers) an extra names.
fn body_for(world: &World, row: &Row) -> (Option<Value>, Vec<(&'static str, String)>) {
    let run = |word: &str| json!({"action": "authz.echo", "parameters": {"word": word}});
    let mut headers = Vec::new();
    let mut body = None;
    for extra in &row.extras {
        match extra.as_str() {
            "x" => headers.push(("x-squall-console", "1".to_string())),
            "rec" => headers.push(("accept", "application/vnd.squall.records".to_string())),
            "login" => body = Some(json!({"username": "alice", "password": "not-her-password"})),
            "tok" => body = Some(json!({"token": GARBAGE_TOKEN})),
            "key" => body = Some(json!({})),
            "key-B" => body = Some(json!({"user": "bob"})),
            "enable" => body = Some(json!({"enabled": true})),
            "run" => body = Some(run("matrix")),
            "core" => body = Some(json!({"action": "core.local", "parameters": {"cmd": "echo core"}})),
            "as-B" if row.path.ends_with("re_run") => body = Some(json!({"user": "bob"})),
            "as-B" => body = Some(json!({"action": "authz.echo", "parameters": {"word": "as-bob"}, "user": "bob"})),
            "ctx-B" => body = Some(json!({"action": "authz.echo", "parameters": {"word": "ctx"}, "context": {"user": "bob"}})),
            "hdr-B" => {
                body = Some(run("hdr"));
                headers.push(("st2-context", json!({"user": "bob"}).to_string()));
            }
            "secret" => body = Some(json!({"action": "authz.echo", "parameters": {"word": "sec", "secret": world.canaries.param}})),
            other => panic!("table line {}: unknown extra {other}", row.line),
        }
    }
    (body, headers)
}

/// The concrete path of a row for a resource.
fn concrete_path(world: &World, row: &Row, fresh_key: Option<&str>) -> String {
    let resource = match row.res.as_str() {
        "-" => String::new(),
        "A" | "B" | "X" => world.executions[row.res.as_str()].clone(),
        "a" | "b" => world.keys[row.res.as_str()].clone(),
        "a!" => fresh_key.expect("a fresh key").to_string(),
        "P" => "authz.echo".into(),
        "O" => "core.local".into(),
        "r" => "local-shell-cmd".into(),
        "M" => MISSING_ID.into(),
        other => panic!("table line {}: unknown resource {other}", row.line),
    };
    let tail = format!("events={STREAM_EVENTS}&end_event=st2.execution__update&end_execution_id={resource}");
    row.path.replace("{tail}", &tail).replace("{}", &resource)
}

/// Whether the path is the global stream, which never ends by itself.
fn is_open_ended(path: &str) -> bool {
    let raw = path.split('?').next().unwrap();
    squall_server::paths::normalize(raw).0 == "/stream"
}

async fn send(world: &World, row: &Row, caller: &str, path: &str) -> Got {
    let cred = &world.creds[caller];
    let mut url = world.server.url(path);
    let mut req_headers: Vec<(&str, String)> = Vec::new();
    match (row.location.as_str(), cred) {
        (_, Cred::None) => {}
        ("h", Cred::Token(t)) => req_headers.push(("x-auth-token", t.clone())),
        ("h", Cred::Key(k)) => req_headers.push(("st2-api-key", k.clone())),
        ("q", Cred::Token(t)) => url.push_str(&format!("{}x-auth-token={t}", if url.contains('?') { '&' } else { '?' })),
        ("q", Cred::Key(k)) => url.push_str(&format!("{}st2-api-key={k}", if url.contains('?') { '&' } else { '?' })),
        // An API key sent as the console's cookie must not pass for a token.
        ("c", Cred::Token(v) | Cred::Key(v)) => req_headers.push(("cookie", format!("squall-session={v}"))),
        (other, _) => panic!("table line {}: unknown location {other}", row.line),
    }
    let (body, extra_headers) = body_for(world, row);
    let mut req = world.http.request(row.method.clone(), url);
    for (k, v) in req_headers.into_iter().chain(extra_headers) {
        req = req.header(k, v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let mut response = req.send().await.expect("request");
    let status = response.status().as_u16();
    let mut head = format!("{status}\n");
    for (k, v) in response.headers() {
        head.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
    }
    let cap = if is_open_ended(path) { Duration::from_millis(300) } else { Duration::from_secs(10) };
    let deadline = tokio::time::Instant::now() + cap;
    let mut bytes = Vec::new();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await {
        bytes.extend_from_slice(&chunk);
    }
    let mut text = head.into_bytes();
    text.extend_from_slice(&bytes);
    let allowed = if row.cells[CALLERS.iter().position(|c| *c == caller).unwrap()].0.has('s') {
        vec![world.canaries.param.clone(), world.canaries.env.clone()]
    } else {
        Vec::new()
    };
    world.capture(format!("{} {path} as {caller}", row.method), text, allowed);
    Got { status, body: bytes }
}

/// StackStorm's 401 text for a caller's credential where it was sent.
fn unauthorized_text(caller: &str, location: &str) -> &'static str {
    match (caller, location) {
        ("anon", _) => "Unauthorized - One of Token or API key required.",
        ("exp", _) => "Unauthorized - Token has expired.",
        ("koff", "h" | "q") => "Unauthorized - API key is disabled.",
        _ => "Unauthorized",
    }
}

/// The user a response's document belongs to.
fn owner_of(doc: &Value) -> Option<&str> {
    doc["context"]["user"].as_str().or(doc["user"].as_str()).or(doc["username"].as_str())
}

/// Everything wrong with a cell, or nothing.
fn judge(world: &World, row: &Row, caller: &str, expected: &Outcome, got: &Got) -> Vec<String> {
    let mut wrong = Vec::new();
    if got.status != expected.status {
        return vec![format!("status {} (expected {})", got.status, expected.status)];
    }
    let text = got.text();
    let fault = got.json()["faultstring"].as_str().unwrap_or_default().to_string();
    let want_fault = |wrong: &mut Vec<String>, ok: bool, what: &str| {
        if !ok {
            wrong.push(format!("faultstring {fault:?} is not {what}"));
        }
    };
    match expected.status {
        401 if expected.has('L') => want_fault(&mut wrong, fault == "Unauthorized - log in", "the console's"),
        401 if expected.has('C') => want_fault(&mut wrong, fault == "Invalid or missing credentials", "the login failure"),
        401 => want_fault(&mut wrong, fault == unauthorized_text(caller, &row.location), unauthorized_text(caller, &row.location)),
        403 if expected.has('p') => want_fault(&mut wrong, fault.contains("doesn't have required permission"), "a permission refusal"),
        403 if expected.has('i') => want_fault(&mut wrong, fault.ends_with("(permission isolation)"), "an isolation refusal"),
        403 if expected.has('u') => want_fault(
            &mut wrong,
            fault.contains("cannot run actions as") || fault.contains("for another user"),
            "an impersonation refusal",
        ),
        403 if expected.has('c') => want_fault(&mut wrong, fault.contains("x-squall-console"), "the CSRF rule"),
        403 if expected.has('l') => want_fault(&mut wrong, fault == UNLIMITED_REFUSED, "the refusal of limit=-1"),
        403 if expected.has('g') => {
            want_fault(&mut wrong, fault == r#"Limit "101" specified, maximum value is "100""#, "the refusal of a limit over max_page_size")
        }
        404 => want_fault(&mut wrong, !fault.is_empty(), "present"),
        _ => {}
    }
    let canaries = [&world.canaries.param, &world.canaries.env];
    if expected.has('m') && (!text.contains(MASK) || canaries.iter().any(|c| text.contains(c.as_str()))) {
        wrong.push(format!("secrets not masked: {}", short(&text)));
    }
    if expected.has('s') && !canaries.iter().any(|c| text.contains(c.as_str())) {
        wrong.push(format!("the secret is not shown: {}", short(&text)));
    }
    let owner = owner_of(&got.json()).map(String::from);
    if expected.has('o') && owner.as_deref() != username(caller) {
        wrong.push(format!("belongs to {owner:?}, not the caller"));
    }
    if expected.has('b') && owner.as_deref() != Some("bob") {
        wrong.push(format!("belongs to {owner:?}, not bob"));
    }
    if expected.has('n') {
        let id = concrete_path(world, row, None).rsplit('=').next().unwrap().to_string();
        let word = format!("seed{}", row.res);
        if text.contains(&id) || text.contains(&word) {
            wrong.push(format!("shows the resource: {}", short(&text)));
        }
    }
    if let Some(labels) = &expected.labels {
        let universe: Vec<(&str, &String)> = if row.path.contains("apikeys") {
            world.keys.iter().map(|(k, v)| (*k, v)).collect()
        } else {
            world.executions.iter().map(|(k, v)| (*k, v)).collect()
        };
        let mut seen: Vec<&str> = universe.iter().filter(|(_, id)| text.contains(id.as_str())).map(|(l, _)| *l).collect();
        seen.sort();
        let mut want: Vec<String> = labels.chars().map(String::from).collect();
        want.sort();
        if seen != want.iter().map(String::as_str).collect::<Vec<_>>() {
            wrong.push(format!("lists {seen:?}, expected {want:?}"));
        }
    }
    wrong
}

fn short(text: &str) -> String {
    text.chars().take(300).collect()
}

/// Runs one row for every caller at once; returns (cells, mismatch reports).
async fn run_row(world: &World, row: &Row) -> (usize, Vec<String>) {
    let mut fresh = Vec::new();
    if row.res == "a!" {
        for _ in CALLERS {
            fresh.push(world.api_key("alice").await.0);
        }
    }
    let cells = CALLERS.iter().enumerate().map(|(i, caller)| {
        let path = concrete_path(world, row, fresh.get(i).map(String::as_str));
        async move {
            let got = send(world, row, caller, &path).await;
            let (off, on) = &row.cells[i];
            let expected = if world.isolation { on } else { off };
            if (200..300).contains(&got.status) && row.method == reqwest::Method::POST && path.contains("executions") {
                let doc = got.json();
                if let (Some(id), Some(user)) = (doc["id"].as_str(), owner_of(&doc)) {
                    world.created.lock().unwrap().insert(id.to_string(), user.to_string());
                }
            }
            judge(world, row, caller, expected, &got)
                .into_iter()
                .map(|w| format!("[{}] line {}: {} {} res={} as {caller}: {w}", world.mode(), row.line, row.method, row.path, row.res))
                .collect::<Vec<_>>()
        }
    });
    let reports = futures::future::join_all(cells).await.into_iter().flatten().collect();
    (CALLERS.len(), reports)
}

// ---------------------------------------------------------------------------------------------
// The global stream: what each viewer received

struct Watcher {
    caller: &'static str,
    events: Arc<Mutex<Vec<common::Event>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn watch(world: &World, caller: &'static str) -> Watcher {
    let Cred::Token(t) = &world.creds[caller] else { panic!("{caller} has no token") };
    let mut sse = Sse::open(&world.server.url(&format!("/v1/stream?x-auth-token={t}&events={STREAM_EVENTS}")), &[]).await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let task = tokio::spawn(async move {
        while let Some(ev) = sse.next().await {
            sink.lock().unwrap().push(ev);
        }
    });
    Watcher { caller, events, task }
}

/// Stream figures of one world.
#[derive(Default)]
struct StreamFigures {
    events: usize,
    /// Events of executions their viewer may not read.
    forbidden: usize,
    /// Events of bob's executions that alice received, with isolation on.
    bob_to_alice: usize,
}

/// Closes the watchers and checks every event they received against what the viewer may read.
async fn judge_streams(world: &World, watchers: Vec<Watcher>, reports: &mut Vec<String>) -> StreamFigures {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut figures = StreamFigures::default();
    let owners = all_executions(world).await;
    for w in watchers {
        w.task.abort();
        let events = w.events.lock().unwrap().clone();
        figures.events += events.len();
        let mut readable: HashMap<String, bool> = HashMap::new();
        let mut own_seen = false;
        for ev in &events {
            let doc: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
            let Some(id) = doc["execution_id"].as_str().or(doc["id"].as_str()).map(String::from) else { continue };
            if !readable.contains_key(&id) {
                let (code, _) = world.call(reqwest::Method::GET, &format!("/v1/executions/{id}"), &world.creds[w.caller], None).await;
                readable.insert(id.clone(), code == 200);
            }
            if !readable[&id] {
                figures.forbidden += 1;
                // The first few in full; the figure line counts them all.
                if figures.forbidden <= 5 {
                    let mode = world.mode();
                    reports.push(format!(
                        "[{mode}] /stream of {}: an event of {id}, which they may not read: {}",
                        w.caller,
                        short(&ev.data)
                    ));
                }
            }
            let owner = owners.get(&id).map(String::as_str);
            own_seen |= owner == username(w.caller);
            if world.isolation && w.caller == "A" && owner == Some("bob") {
                figures.bob_to_alice += 1;
            }
        }
        if w.caller != "obs" && !own_seen {
            reports.push(format!(
                "[{}] /stream of {}: not one event of their own executions (the check would prove nothing)",
                world.mode(),
                w.caller
            ));
        }
    }
    figures
}

/// Every execution the server holds: id → user.
async fn all_executions(world: &World) -> HashMap<String, String> {
    let (code, list) = world.call(reqwest::Method::GET, "/v1/executions?limit=-1", &world.creds["sys"], None).await;
    assert_eq!(code, 200);
    list.as_array().unwrap().iter().map(|e| (e["id"].as_str().unwrap().to_string(), owner_of(e).unwrap_or("").to_string())).collect()
}

/// Every execution on the server is a seed or one the matrix created, and belongs to whom the
/// table said: a refused request left nothing behind, and no one ran anything as someone else.
async fn judge_ownership(world: &World, reports: &mut Vec<String>) -> usize {
    let created = world.created.lock().unwrap().clone();
    let ids: Vec<String> = created.keys().cloned().collect();
    world.wait_finished(&ids).await;
    let held = all_executions(world).await;
    let seeds: HashMap<String, &str> =
        [("A", "alice"), ("B", "bob"), ("X", "alice")].iter().map(|(l, u)| (world.executions[l].clone(), *u)).collect();
    for (id, user) in &held {
        let expected = created.get(id).map(String::as_str).or(seeds.get(id).copied());
        if expected != Some(user.as_str()) {
            reports.push(format!("[{}] execution {id} belongs to {user}; the matrix expected {expected:?}", world.mode()));
        }
    }
    if held.len() != created.len() + seeds.len() {
        reports.push(format!("[{}] {} executions held, {} created", world.mode(), held.len(), created.len() + seeds.len()));
    }
    held.len()
}

// ---------------------------------------------------------------------------------------------
// The canary scan

/// The forms a canary is looked for in: as is, base64, hex.
fn encodings(value: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
    vec![value.as_bytes().to_vec(), b64.trim_end_matches('=').as_bytes().to_vec(), hex.into_bytes()]
}

fn holds(hay: &[u8], value: &str) -> bool {
    encodings(value).iter().any(|needle| memchr::memmem::find(hay, needle).is_some())
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { files_under(&path, out) } else { out.push(path) }
    }
}

/// Scans the log, every file of the data directory and every captured response; returns
/// (sinks, hits) and reports each hit.
fn scan_canaries(world: &World, reports: &mut Vec<String>) -> (usize, usize, usize) {
    let mut canaries = world.secrets.lock().unwrap().clone();
    canaries.push(("secret parameter".into(), world.canaries.param.clone()));
    canaries.push(("secret env value".into(), world.canaries.env.clone()));
    canaries.push(("alice's password".into(), world.canaries.password.clone()));
    let mut hits = 0;
    let mut hit = |sink: &str, name: &str| {
        hits += 1;
        reports.push(format!("[{}] canary \"{name}\" found in {sink}", world.mode()));
    };
    let log = world.server.log();
    for (name, value) in &canaries {
        if holds(log.as_bytes(), value) {
            hit("the server log", name);
        }
    }
    let mut files = Vec::new();
    files_under(&world.server.data_dir(), &mut files);
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_default();
        for (name, value) in &canaries {
            if holds(&bytes, value) {
                hit(&file.display().to_string(), name);
            }
        }
    }
    let captured = world.captured.lock().unwrap();
    for response in captured.iter() {
        for (name, value) in &canaries {
            if !response.allowed.contains(value) && holds(&response.text, value) {
                hit(&format!("the response to {}", response.what), name);
            }
        }
    }
    (files.len(), captured.len(), hits)
}

// ---------------------------------------------------------------------------------------------
// The tests

/// One world's figures.
struct Figures {
    cells: usize,
    streams: StreamFigures,
    executions: usize,
    data_files: usize,
    responses: usize,
    canary_hits: usize,
}

async fn run_world(mut world: World, rows: &[Row], reports: &mut Vec<String>) -> Figures {
    let expires = world.issue_credentials().await;
    let watchers = vec![watch(&world, "obs").await, watch(&world, "A").await, watch(&world, "B").await];
    world.seed_executions().await;
    tokio::time::sleep_until((expires + Duration::from_millis(200)).into()).await;
    let mut cells = 0;
    for row in rows {
        let (n, wrong) = run_row(&world, row).await;
        cells += n;
        reports.extend(wrong);
    }
    let executions = judge_ownership(&world, reports).await;
    let streams = judge_streams(&world, watchers, reports).await;
    if streams.forbidden > 5 {
        reports.push(format!("[{}] /stream: {} more events viewers may not read", world.mode(), streams.forbidden - 5));
    }
    let (data_files, responses, canary_hits) = scan_canaries(&world, reports);
    Figures { cells, streams, executions, data_files, responses, canary_hits }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authorisation_matrix() {
    let started = Instant::now();
    let rows = parse_table();
    let uncovered = uncovered_routes(&rows);
    let fixtures = tempfile::tempdir().unwrap();
    let canaries = Arc::new(Canaries::new());
    let off = World::start(false, &fixtures.path().join("off"), Arc::clone(&canaries));
    let on = World::start(true, &fixtures.path().join("on"), Arc::clone(&canaries));
    let (mut off_reports, mut on_reports) = (Vec::new(), Vec::new());
    let (a, b) = tokio::join!(run_world(off, &rows, &mut off_reports), run_world(on, &rows, &mut on_reports));
    let mut reports: Vec<String> = off_reports.into_iter().chain(on_reports).collect();
    reports.extend(uncovered.iter().map(|(m, p)| format!("route {m} {p} is not in the authorisation table")));
    for r in &reports {
        println!("MISMATCH {r}");
    }
    let cells = a.cells + b.cells;
    let mismatches = reports.len();
    let sinks = 2 + a.data_files + b.data_files + a.responses + b.responses;
    println!(
        "auth matrix: {cells} cells ({} rows × {} callers × isolation off/on), {mismatches} mismatches; \
         cross-user events on /stream: {} of {} (of bob's reaching alice with isolation on: {}); \
         executions owned as expected: {}; canary hits: {} in {sinks} sinks (2 logs, {} data files, {} responses); {:.1?}",
        rows.len(),
        CALLERS.len(),
        a.streams.forbidden + b.streams.forbidden,
        a.streams.events + b.streams.events,
        b.streams.bob_to_alice,
        a.executions + b.executions,
        a.canary_hits + b.canary_hits,
        a.data_files + b.data_files,
        a.responses + b.responses,
        started.elapsed(),
    );
    assert_eq!(mismatches, 0, "{mismatches} mismatches (listed above)");
}

/// Every list of executions shows only those the caller may view, counted and paged by the
/// database: the list (`X-Total-Count`, `limit`/`offset`), `last`, a workflow's `children`,
/// and `squall execution list`. alice holds `execution_all` on pack `authz`, carol
/// `execution_view` on the one action `core.local`; the admin ran `core.local` as alice
/// between alice's own `authz.echo` runs, the newest last, and a chain `authz.flow` as alice
/// whose tasks are an `authz.echo` and a `core.local`.
#[tokio::test(flavor = "multi_thread")]
async fn execution_lists_show_only_what_the_caller_may_view() {
    let fixtures = tempfile::tempdir().unwrap();
    let (packs, rbac) = write_fixtures(fixtures.path());
    write_file(&packs.join("authz/actions/flow.yaml"), "name: flow\nrunner_type: action-chain\nentry_point: chains/flow.yaml\n");
    write_file(
        &packs.join("authz/actions/chains/flow.yaml"),
        "chain:\n  - name: first\n    ref: authz.echo\n    params: {word: chained}\n    on-success: second\n  - name: second\n    ref: core.local\n    params: {cmd: 'echo second'}\n",
    );
    write_file(
        &rbac.join("roles/one_action.yaml"),
        "name: one_action\npermission_grants:\n  - resource_uid: action:core:local\n    permission_types: [execution_view]\n  - permission_types: [execution_list]\n",
    );
    write_file(&rbac.join("assignments/carol.yaml"), "username: carol\nroles: [one_action]\n");
    let server = Server::start_with(&[
        ("SQUALL_AUTH__ENABLE", "true"),
        ("SQUALL_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("SQUALL_RBAC__ENABLE", "true"),
        ("SQUALL_RBAC__DEFINITIONS_PATH", rbac.to_str().unwrap()),
        ("SQUALL_CONTENT__PACKS_BASE_PATHS", packs.to_str().unwrap()),
    ]);
    for user in ["alice", "carol"] {
        add_user(&server, user, PASSWORD);
    }
    let http = reqwest::Client::new();
    let login = |user: &'static str, password: &'static str| {
        let req = http.post(server.url("/auth/v1/tokens")).header("authorization", basic(user, password)).json(&json!({}));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string() }
    };
    let (admin, alice, carol) = (login("st2admin", ADMIN_PASSWORD).await, login("alice", PASSWORD).await, login("carol", PASSWORD).await);
    let get = |token: &str, path: &str| {
        let req = http.get(server.url(path)).header("x-auth-token", token);
        async move {
            let r = req.send().await.unwrap();
            let (status, total) = (r.status().as_u16(), r.headers().get("x-total-count").map(|v| v.to_str().unwrap().to_string()));
            (status, total, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let run = |token: &str, body: Value| {
        let req = http.post(server.url("/v1/executions")).header("x-auth-token", token).json(&body);
        async move {
            let e = req.send().await.unwrap().json::<Value>().await.unwrap();
            e["id"].as_str().unwrap_or_else(|| panic!("{e}")).to_string()
        }
    };
    let (mut echoes, mut locals) = (Vec::new(), Vec::new());
    for n in 0..3 {
        echoes.push(run(&alice, json!({"action": "authz.echo", "parameters": {"word": format!("mine{n}")}})).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
        if n == 1 {
            echoes.push(run(&admin, json!({"action": "authz.flow", "user": "alice"})).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        locals.push(run(&admin, json!({"action": "core.local", "user": "alice", "parameters": {"cmd": "echo theirs"}})).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let chain = echoes[2].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in echoes.iter().chain(&locals) {
        while !common::TERMINAL.contains(&get(&admin, &format!("/v1/executions/{id}")).await.2["status"].as_str().unwrap_or("")) {
            assert!(Instant::now() < deadline, "execution {id} did not finish");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let ids =
        |list: &Value| -> BTreeSet<String> { list.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect() };
    let set = |ids: &[String]| -> BTreeSet<String> { ids.iter().cloned().collect() };

    // The list, a page at a time: each page's count is of what the caller may see.
    for (who, token, visible) in
        [("alice", &alice, set(&echoes)), ("carol", &carol, set(&locals)), ("the admin", &admin, &set(&echoes) | &set(&locals))]
    {
        let mut seen = BTreeSet::new();
        for offset in (0..visible.len()).step_by(2) {
            let (status, total, page) = get(token, &format!("/v1/executions?parent=null&limit=2&offset={offset}")).await;
            assert_eq!((status, total.as_deref()), (200, Some(visible.len().to_string().as_str())), "{who}, offset {offset}: {page}");
            assert!(page.as_array().unwrap().len() <= 2);
            seen.extend(ids(&page));
        }
        assert_eq!(seen, visible, "{who}'s pages");
    }
    let (_, total, list) = get(&alice, "/v1/executions?action=core.local").await;
    assert_eq!((total.as_deref(), ids(&list).len()), (Some("0"), 0), "alice may not list core.local's executions");

    // `last`: the newest the caller may see (the admin's newest is a core.local).
    assert_eq!(get(&admin, "/v1/executions/last").await.2["id"], json!(locals[2]));
    assert_eq!(get(&alice, "/v1/executions/last").await.2["id"], json!(echoes[3]));
    assert_eq!(get(&carol, "/v1/executions/last").await.2["id"], json!(locals[2]));

    // A workflow's children: alice sees her pack's task, not the core.local one.
    let (status, _, all) = get(&admin, &format!("/v1/executions/{chain}/children")).await;
    assert_eq!((status, all.as_array().unwrap().len()), (200, 2), "{all}");
    let (status, _, hers) = get(&alice, &format!("/v1/executions/{chain}/children")).await;
    let refs: Vec<&str> = hers.as_array().unwrap().iter().map(|e| e["action"]["ref"].as_str().unwrap()).collect();
    assert_eq!((status, refs), (200, vec!["authz.echo"]), "{hers}");
    let (_, total, listed) = get(&alice, &format!("/v1/executions?parent={chain}")).await;
    assert_eq!((total.as_deref(), ids(&listed).len()), (Some("1"), 1));

    // `squall execution list`.
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["execution", "list", "--json", "-n", "50"])
        .env("SQUALL_URL", server.url(""))
        .env("SQUALL_AUTH_TOKEN", &alice)
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("SQUALL_API_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let refs: BTreeSet<&str> = listed.as_array().unwrap().iter().map(|e| e["action"]["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, BTreeSet::from(["authz.echo", "authz.flow"]), "{listed}");
    println!(
        "execution lists: alice sees {} of {} top-level executions, carol {}, paged by 2 with the totals right; last, children and the CLI agree",
        echoes.len(),
        echoes.len() + locals.len(),
        locals.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Mid-stream: a credential that stops being valid ends the streams opened with it

/// An admin token and a `core.local` that prints a line every 0.2 s for 12 s, once running.
async fn ticking_execution(server: &Server, http: &reqwest::Client) -> (String, String) {
    let r = http.post(server.url("/auth/v1/tokens")).header("authorization", basic("st2admin", ADMIN_PASSWORD)).json(&json!({}));
    let admin = r.send().await.unwrap().json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    let cmd = "i=0; while [ $i -lt 60 ]; do echo tick $i; i=$((i+1)); sleep 0.2; done";
    let r = http
        .post(server.url("/v1/executions"))
        .header("x-auth-token", &admin)
        .json(&json!({"action": "core.local", "parameters": {"cmd": cmd}}));
    let id = r.send().await.unwrap().json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while execution_status(server, http, &admin, &id).await != "running" {
        assert!(Instant::now() < deadline, "the execution did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (admin, id)
}

async fn execution_status(server: &Server, http: &reqwest::Client, admin: &str, id: &str) -> String {
    let req = http.get(server.url(&format!("/v1/executions/{id}"))).header("x-auth-token", admin);
    req.send().await.unwrap().json::<Value>().await.unwrap()["status"].as_str().unwrap_or("").to_string()
}

/// Opens every kind of stream on execution `id` with `credential` (`x-auth-token=…` or
/// `st2-api-key=…`): the per-execution SSE and record streams, raw `/stdout`, the global
/// `/stream` and its `tail` form. Each task answers (its name, when it ended, bytes received).
fn open_streams(
    server: &Server,
    http: &reqwest::Client,
    id: &str,
    credential: &str,
    label: &str,
) -> Vec<tokio::task::JoinHandle<(String, Instant, usize)>> {
    let streams = [
        ("per-execution SSE", format!("/stream/v1/executions/{id}/output?{credential}"), None),
        ("record stream", format!("/v1/executions/{id}/output?{credential}"), Some("application/vnd.squall.records")),
        ("raw /stdout", format!("/v1/executions/{id}/stdout?{credential}"), None),
        ("global /stream", format!("/v1/stream?{credential}&events={STREAM_EVENTS}"), None),
        (
            "tail /stream",
            format!("/v1/stream?{credential}&events={STREAM_EVENTS}&end_event=st2.execution__update&end_execution_id={id}"),
            None,
        ),
    ];
    streams
        .into_iter()
        .map(|(name, path, accept)| {
            let mut req = http.get(server.url(&path));
            if let Some(a) = accept {
                req = req.header("accept", a);
            }
            let name = format!("{name} ({label})");
            tokio::spawn(async move {
                let mut r = req.send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200, "{name}");
                let mut bytes = 0;
                while let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(15), r.chunk()).await {
                    bytes += chunk.len();
                }
                (name, Instant::now(), bytes)
            })
        })
        .collect()
}

/// Waits for the streams; answers each one's end relative to `moment` (seconds, negative:
/// before), after checking that it received something and ended within `window` of `moment`.
async fn ended_at(
    streams: Vec<tokio::task::JoinHandle<(String, Instant, usize)>>,
    moment: Instant,
    window: std::ops::Range<f64>,
) -> Vec<f64> {
    let mut lags = Vec::new();
    for f in streams {
        let (name, ended, bytes) = f.await.unwrap();
        let lag = ended.saturating_duration_since(moment).as_secs_f64() - moment.saturating_duration_since(ended).as_secs_f64();
        println!("{name}: {bytes} bytes, ended {lag:+.2} s from the moment the credential stopped being valid");
        assert!(bytes > 50, "{name} received nothing while its credential was valid");
        assert!(window.contains(&lag), "{name} ended {lag:+.2} s from the moment its credential stopped being valid");
        lags.push(lag);
    }
    lags
}

/// A token that expires while a stream is open ends the stream: the per-execution SSE and
/// record streams, raw `/stdout`, the global `/stream` and its `tail` form.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_that_expires_mid_stream_ends_the_stream() {
    let server = Server::start_with(&[("SQUALL_AUTH__ENABLE", "true"), ("SQUALL_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let http = reqwest::Client::new();
    let (admin, id) = ticking_execution(&server, &http).await;

    const TTL: u64 = 3;
    let r = http.post(server.url("/auth/v1/tokens")).header("authorization", basic("st2admin", ADMIN_PASSWORD)).json(&json!({"ttl": TTL}));
    let short = r.send().await.unwrap().json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    let expiry = Instant::now() + Duration::from_secs(TTL);
    let streams = open_streams(&server, &http, &id, &format!("x-auth-token={short}"), "expiring token");
    let lags = ended_at(streams, expiry, -0.5..2.0).await;
    assert_eq!(execution_status(&server, &http, &admin, &id).await, "running", "the streams ended before the execution did");
    let r = http.get(server.url("/v1/actions")).header("x-auth-token", &short).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    http.delete(server.url(&format!("/v1/executions/{id}"))).header("x-auth-token", &admin).send().await.unwrap();
    let worst = lags.iter().cloned().fold(f64::MIN, f64::max);
    println!(
        "token expiry mid-stream: {} of {} streams ended within {worst:.2} s of the expiry (execution still running)",
        lags.len(),
        lags.len()
    );
}

/// A token revoked (the console's logout), an API key disabled and one deleted while streams
/// are open end those streams within `[stream] credential_check` (1 s here) and some slack,
/// though the execution goes on: every kind of stream, for each credential.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_or_a_disabled_or_deleted_key_ends_open_streams() {
    const CHECK: f64 = 1.0;
    let server = Server::start_with(&[
        ("SQUALL_AUTH__ENABLE", "true"),
        ("SQUALL_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("SQUALL_STREAM__CREDENTIAL_CHECK", "1"),
    ]);
    let http = reqwest::Client::new();
    let (admin, id) = ticking_execution(&server, &http).await;

    let r = http
        .post(server.url("/ui/session"))
        .header("x-squall-console", "1")
        .json(&json!({"username": "st2admin", "password": ADMIN_PASSWORD}));
    let r = r.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let session = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
    let mut keys = Vec::new();
    for _ in 0..2 {
        let r = http.post(server.url("/v1/apikeys")).header("x-auth-token", &admin).json(&json!({}));
        let key = r.send().await.unwrap().json::<Value>().await.unwrap();
        keys.push((key["id"].as_str().unwrap().to_string(), key["key"].as_str().unwrap().to_string()));
    }
    let (disabled, deleted) = (&keys[0], &keys[1]);
    let mut streams = open_streams(&server, &http, &id, &format!("x-auth-token={session}"), "revoked token");
    streams.extend(open_streams(&server, &http, &id, &format!("st2-api-key={}", disabled.1), "disabled API key"));
    streams.extend(open_streams(&server, &http, &id, &format!("st2-api-key={}", deleted.1), "deleted API key"));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let revoked_at = Instant::now();
    let r = http.delete(server.url("/ui/session")).header("x-squall-console", "1").header("cookie", format!("squall-session={session}"));
    assert_eq!(r.send().await.unwrap().status().as_u16(), 204);
    let r = http.put(server.url(&format!("/v1/apikeys/{}", disabled.0))).header("x-auth-token", &admin).json(&json!({"enabled": false}));
    assert_eq!(r.send().await.unwrap().status().as_u16(), 200);
    let r = http.delete(server.url(&format!("/v1/apikeys/{}", deleted.0))).header("x-auth-token", &admin);
    assert_eq!(r.send().await.unwrap().status().as_u16(), 204);

    let lags = ended_at(streams, revoked_at, 0.0..CHECK + 1.0).await;
    assert_eq!(execution_status(&server, &http, &admin, &id).await, "running", "the streams ended before the execution did");
    for (location, credential) in [("x-auth-token", &session), ("st2-api-key", &disabled.1), ("st2-api-key", &deleted.1)] {
        let r = http.get(server.url("/v1/actions")).header(location, credential.as_str()).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{location} still accepted");
    }
    http.delete(server.url(&format!("/v1/executions/{id}"))).header("x-auth-token", &admin).send().await.unwrap();
    let worst = lags.iter().cloned().fold(f64::MIN, f64::max);
    println!(
        "revocation mid-stream: {} of {} streams (revoked token, disabled and deleted API key) ended within {worst:.2} s \
         (check every {CHECK} s; execution still running)",
        lags.len(),
        lags.len()
    );
}
