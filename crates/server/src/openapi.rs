//! The API's OpenAPI 3.1 document, served at `/v1/openapi.json` (and under every other prefix,
//! like every route: `/openapi.json`, `/api/v1/openapi.json`, …).
//!
//! **How it stays true.** Each handler carries its `#[utoipa::path(...)]` (method, path,
//! parameters, body, responses); [`ApiDoc`] lists them, and the unit test at the end of this file
//! asserts that the set of (method, canonical path) in the document equals the set `router()`
//! registers (read out of `lib.rs`), so a route cannot be added, removed or given a method
//! without the document following. The bodies and status codes are kept honest by the
//! Schemathesis run in `crates/cli/tests/openapi.rs`, which sends generated requests to a real
//! server and checks every answer against this document.
//!
//! Why a listing plus a test rather than `utoipa-axum`'s `OpenApiRouter`: `router()` nests one
//! executions router under two prefixes (`/executions` and StackStorm's `/actionexecutions`
//! alias, documented once), applies the metrics `route_layer` and the authentication layer
//! around everything including the fallback, and keeps the console's wildcard routes out of the
//! API; the authorisation matrix (`crates/cli/tests/authz.rs`) also reads `router()`'s route
//! calls. Building the routes from `routes!()` would change all of that for no gain
//! the equality test does not already give.
//!
//! The document names the paths clients use: `/v1/…` for the API, `/auth/v1/tokens…` for the
//! auth service, `/stream/v1/…` for the stream service, and the operator's `/livez`, `/readyz`
//! and `/metrics` bare. Every route also answers under the other prefixes (see
//! [`crate::paths`]). The web console's routes (`/ui…`) are the console's own and are not part of
//! the API document.
//!
//! The types below describe response and request bodies only; the handlers build their JSON
//! with `serde_json` (see [`crate::wire`]), so these types are never constructed.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::{AppState, handlers};

/// The whole API, assembled from the handlers' `#[utoipa::path]` attributes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "squall",
        description = "StackStorm's REST and stream API (what the official `st2` CLI speaks), and squall's extensions. \
            Every path also answers under `/api/v1`, `/auth/v1`, `/stream/v1`, `/v1` and unprefixed, with or without one \
            trailing slash; `/v1/actionexecutions…` is an alias of `/v1/executions…`. Errors are `{\"faultstring\": \"…\"}`. \
            Falsy top-level fields of an execution (null, false, 0, \"\", [], {}) are omitted, never sent as null.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        handlers::root,
        serve,
        handlers::health::livez,
        handlers::health::readyz,
        crate::metrics::render,
        handlers::stats,
        handlers::auth::create_token,
        handlers::auth::validate_token,
        handlers::auth::whoami,
        handlers::auth::list_api_keys,
        handlers::auth::create_api_key,
        handlers::auth::get_api_key,
        handlers::auth::update_api_key,
        handlers::auth::delete_api_key,
        handlers::actions::list_actions,
        handlers::actions::get_action,
        handlers::actions::list_runners,
        handlers::actions::get_runner,
        handlers::executions::list,
        handlers::executions::create,
        handlers::executions::get,
        handlers::executions::cancel,
        handlers::executions::rerun,
        handlers::executions::children,
        handlers::stream::output,
        stream_service_output,
        handlers::stream::stdout,
        handlers::stream::stderr,
        handlers::log::lines,
        handlers::log::search,
        handlers::stream::events,
    ),
    components(schemas(
        Error, Version, Liveness, Readiness, Stats, Token, TokenRequest, TokenCheck, TokenValidity, Identity, ApiKeyDoc,
        NewApiKey, ApiKeyRequest, ApiKeyUpdate, Action, RunnerType, Execution, LogEntry, Status, ExecutionRequest,
        ReRunRequest, OutputRecord, StreamEvent, CancelOutcome, Lines, Line, SearchLine
    )),
    modifiers(&Security, &OptionalBodies),
    tags(
        (name = "auth", description = "Tokens, identity and API keys"),
        (name = "actions", description = "Actions and runner types"),
        (name = "executions", description = "Running actions, and their executions"),
        (name = "output", description = "An execution's output: stored, live, by line, searched"),
        (name = "stream", description = "StackStorm's event stream"),
        (name = "operator", description = "Health, metrics and this document: no credentials needed"),
    ),
)]
pub struct ApiDoc;

/// The security schemes and which operations need them. Authentication is the middleware's
/// business ([`crate::auth::authenticate`]), not a handler's, so it is stated here once for every
/// operation: any one credential (the first present is the one checked), 401 without a valid one
/// and 403 when RBAC refuses. Public operations say `security(())` in their own attribute.
struct Security;

/// Names of the security schemes in the document.
const CREDENTIALS: [&str; 5] = ["X-Auth-Token", "St2-Api-Key", "x-auth-token", "st2-api-key", "auth-token"];

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let key = |value: ApiKey| SecurityScheme::ApiKey(value);
        let schemes = [
            key(ApiKey::Header(ApiKeyValue::with_description("X-Auth-Token", "A token from POST /auth/v1/tokens."))),
            key(ApiKey::Header(ApiKeyValue::with_description("St2-Api-Key", "An API key from POST /v1/apikeys."))),
            key(ApiKey::Query(ApiKeyValue::with_description(
                "x-auth-token",
                "A token, in the query string (what the stream client sends).",
            ))),
            key(ApiKey::Query(ApiKeyValue::with_description("st2-api-key", "An API key, in the query string."))),
            key(ApiKey::Cookie(ApiKeyValue::with_description("auth-token", "A token in StackStorm's web cookie."))),
        ];
        for (name, scheme) in CREDENTIALS.iter().zip(schemes) {
            components.add_security_scheme(*name, scheme);
        }
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "User name and password; only POST /auth/v1/tokens reads them, every other route ignores a Basic header.",
                    ))
                    .build(),
            ),
        );
        let error = |description: &str| -> RefOr<utoipa::openapi::Response> {
            ResponseBuilder::new()
                .description(description)
                .content("application/json", ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("Error"))).build())
                .build()
                .into()
        };
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                if op.security.is_some() {
                    continue; // stated by the handler: public, or Basic on POST /tokens
                }
                op.security = Some(CREDENTIALS.iter().map(|name| SecurityRequirement::new(*name, Vec::<String>::new())).collect());
                let responses = &mut op.responses.responses;
                responses.entry("401".into()).or_insert_with(|| {
                    error("No valid credential: `Unauthorized - One of Token or API key required.`, `Unauthorized`, `Unauthorized - Token has expired.`, …")
                });
                responses
                    .entry("403".into())
                    .or_insert_with(|| error("RBAC refused the request (or a console-cookie request lacked its CSRF header)."));
            }
        }
    }
}

/// A body that may be left out (`Option<T>` in a `request_body`) is still an object when it is
/// sent: utoipa writes `oneOf: [T, null]`, but a JSON `null` body is refused (400) like any other
/// non-object. The body stays optional (`required` is not set).
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::Schema;
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.put, &mut item.post].into_iter().flatten() {
                let Some(RefOr::T(body)) = &mut op.request_body else { continue };
                for content in body.content.values_mut() {
                    let RefOr::T(content) = content else { continue };
                    if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema
                        && let [only @ RefOr::Ref(_), RefOr::T(Schema::Object(null))] = one_of.items.as_slice()
                        && null.schema_type == utoipa::openapi::schema::SchemaType::Type(utoipa::openapi::schema::Type::Null)
                    {
                        content.schema = Some(only.clone());
                    }
                }
            }
        }
    }
}

/// The document, rendered once, with this server's settings: the longest token lifetime
/// (`[auth] token_ttl`) a `POST /auth/v1/tokens` may ask for.
pub fn document(token_ttl: u64) -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
        doc["components"]["schemas"]["TokenRequest"]["properties"]["ttl"]["maximum"] = token_ttl.into();
        serde_json::to_string_pretty(&doc).expect("the document serialises")
    })
}

/// `GET /v1/openapi.json`: this document (no credentials needed: it holds no data).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operator", operation_id = "openapi", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)))]
pub async fn serve(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document(state.auth.token_ttl)).into_response()
}

/// Documentation only: `GET /executions/{id}/output` as the stream service serves it (through
/// the `/stream` prefix or on the stream port). The route is one (`handlers::stream::output`);
/// what it answers depends on how it was reached, so the document shows both.
#[utoipa::path(get, path = "/stream/v1/executions/{id}/output", tag = "output", operation_id = "streamExecutionOutput",
    params(IdPath, FollowQuery, ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this `seq` (the `id:` of the last event received)")),
    description = "Server-sent events: the stored output as `st2.execution.output__create` events (each with `id:` its `seq`), then the live \
        output, until the execution ends (`event: EOF`). The same answer comes from `/v1/executions/{id}/output` with \
        `Accept: text/event-stream`; with `Accept: application/vnd.squall.records` it is squall's byte-exact record stream \
        (a JSON head line with the record's `length`, then that many raw bytes; a last line `{\"end\": true, …}`).",
    responses(
        (status = 200, description = "The output as SSE, until the execution ends",
            content((StreamEvent = "text/event-stream"), (String = "application/vnd.squall.records"))),
        (status = 400, description = "A bad `after`, `Last-Event-ID` or `encoding`", body = Error),
        (status = 404, description = "No such execution", body = Error),
    ))]
pub fn stream_service_output() {}

// ---------------------------------------------------------------------------------------------
// Parameters

/// `{id}`: an execution's id, or `last` for the newest.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The execution's id (24 hex characters), or `last`.
    #[param(min_length = 1)]
    pub id: String,
}

/// `{id}` of an API key.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    /// The API key's id.
    #[param(min_length = 1)]
    pub id: String,
}

/// `{ref_or_id}` of an action.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ActionPath {
    /// `pack.name` or the action's id.
    #[param(min_length = 1, example = "core.local")]
    pub ref_or_id: String,
}

/// `{name_or_id}` of a runner type.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RunnerPath {
    /// The runner's name (`local-shell-cmd`) or id.
    #[param(min_length = 1, example = "local-shell-cmd")]
    pub name_or_id: String,
}

/// `limit`: `-1` for all, or at least 1.
fn limit_schema() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
    let int = || {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
    };
    OneOfBuilder::new()
        .item(int().enum_values(Some([-1])))
        .item(int().minimum(Some(1)).maximum(Some(i64::MAX)))
        .description(Some("How many to return: at least 1, or -1 for all"))
        .build()
        .into()
}

/// A boolean in the query string, as StackStorm reads one: `true/1/yes/y` or `false/0/no/n`,
/// in any case.
fn query_boolean() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some("^([Tt][Rr][Uu][Ee]|1|[Yy]|[Yy][Ee][Ss]|[Ff][Aa][Ll][Ss][Ee]|0|[Nn]|[Nn][Oo])$"))
        .examples([Value::from("true"), Value::from("false")])
        .build()
        .into()
}

/// Paging, as StackStorm pages lists.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// How many to return: at least 1, or -1 for all.
    #[param(required = false, schema_with = limit_schema)]
    pub limit: i64,
    /// How many to skip.
    #[param(required = false, minimum = 0, maximum = 9223372036854775807i64)]
    pub offset: i64,
}

/// The field lists StackStorm accepts; `include_attributes` and `exclude_attributes` may not be
/// used together (400).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Projection {
    /// Comma-separated top-level fields to keep (dotted paths keep their top-level field).
    #[param(required = false)]
    pub include_attributes: String,
    /// Comma-separated fields to drop.
    #[param(required = false)]
    pub exclude_attributes: String,
}

/// Filters of `GET /v1/actions`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActionFilters {
    /// Comma-separated action names.
    #[param(required = false)]
    pub name: String,
    /// Comma-separated packs.
    #[param(required = false)]
    pub pack: String,
    /// Comma-separated tag names.
    #[param(required = false)]
    pub tags: String,
    /// Comma-separated ids.
    #[param(required = false)]
    pub id: String,
}

/// Filters of `GET /v1/runnertypes`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunnerFilters {
    /// Comma-separated runner names (exact match).
    #[param(required = false)]
    pub name: String,
    /// Comma-separated ids.
    #[param(required = false)]
    pub id: String,
}

/// Filters of `GET /v1/executions`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecutionFilters {
    /// An action ref.
    #[param(required = false)]
    pub action: String,
    /// A status.
    #[param(required = false)]
    pub status: String,
    /// The user who ran it.
    #[param(required = false)]
    pub user: String,
    /// A parent execution's id, or `null` for top-level executions only.
    #[param(required = false)]
    pub parent: String,
    /// Comma-separated ids.
    #[param(required = false)]
    pub id: String,
    /// Started after (UTC).
    #[param(
        required = false,
        pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|\+00|\+0000|\+00:00)$"
    )]
    pub timestamp_gt: String,
    /// Started before (UTC).
    #[param(
        required = false,
        pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|\+00|\+0000|\+00:00)$"
    )]
    pub timestamp_lt: String,
    /// Newest first (the default).
    #[param(required = false, schema_with = query_boolean)]
    pub sort_desc: bool,
    /// Oldest first.
    #[param(required = false, schema_with = query_boolean)]
    pub sort_asc: bool,
}

/// `show_secrets`: an admin sees secret parameters unmasked.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Secrets {
    /// Show secret parameter values (admins only; masked for anyone else).
    #[param(required = false, schema_with = query_boolean)]
    pub show_secrets: bool,
}

/// `depth` of `GET /v1/executions/{id}/children`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Depth {
    /// Levels of descendants; -1 (the default) for all.
    #[param(required = false)]
    pub depth: i64,
}

/// Which output: `output_type` and `host`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutputFilter {
    /// `all` (the default, also when empty), `stdout` or `stderr`; any other value selects nothing.
    #[param(required = false)]
    pub output_type: String,
    /// One remote host's output.
    #[param(required = false)]
    pub host: String,
}

/// Where a follower starts and how it encodes the output.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FollowQuery {
    /// `all` (the default, also when empty), `stdout` or `stderr`; any other value selects nothing.
    #[param(required = false)]
    pub output_type: String,
    /// One remote host's output.
    #[param(required = false)]
    pub host: String,
    /// Start after this `seq`, or `latest` for only what comes next.
    #[param(required = false)]
    pub after: String,
    /// `text` (StackStorm's `data`, the default) or `base64` (`data_b64`, the exact bytes).
    #[param(required = false, pattern = "^(text|base64)$")]
    pub encoding: String,
}

/// `/stdout` and `/stderr`: one host's bytes.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HostQuery {
    /// One remote host's output.
    #[param(required = false)]
    pub host: String,
}

/// A range of display lines.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinesQuery {
    /// First line (0-based); negative counts from the end (`-200`: the last 200).
    #[param(required = false, minimum = -9223372036854775808i64, maximum = 9223372036854775807i64)]
    pub from: i64,
    /// How many lines, 1 to 5000 (default 200).
    #[param(required = false, minimum = 1, maximum = 5000)]
    pub count: i64,
}

/// What `/search` looks for.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// What to look for (at most 1000 bytes); required unless `output_type` or `host` narrows the lines.
    #[param(required = false, max_length = 1000)]
    pub q: String,
    /// `q` is a regular expression (Rust `regex` syntax) rather than literal text.
    #[param(required = false, schema_with = query_boolean)]
    pub regex: bool,
    /// Case-sensitive.
    #[param(required = false, schema_with = query_boolean)]
    pub case: bool,
    /// `all` (the default, also when empty), `stdout` or `stderr`; any other value selects nothing.
    #[param(required = false)]
    pub output_type: String,
    /// One remote host's lines.
    #[param(required = false)]
    pub host: String,
    /// First line to search.
    #[param(required = false, minimum = 0, maximum = 9223372036854775807i64)]
    pub from: i64,
    /// Hits sent with their line (default 1000, at most 10000); later ones are only counted.
    #[param(required = false, minimum = 0, maximum = 9223372036854775807i64)]
    pub limit: i64,
    /// Stop after this many hits.
    #[param(required = false, minimum = 0, maximum = 9223372036854775807i64)]
    pub stop_after: i64,
}

/// StackStorm's stream filters.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Comma-separated event names or `fnmatch` patterns (default: every execution, liveaction and announcement event; output events only when named).
    #[param(required = false)]
    pub events: String,
    /// Comma-separated action refs.
    #[param(required = false)]
    pub action_refs: String,
    /// Comma-separated execution ids.
    #[param(required = false)]
    pub execution_ids: String,
    /// End the stream when this execution completes (with `end_event`).
    #[param(required = false)]
    pub end_execution_id: String,
    /// The event that ends the stream (`st2.execution__update`).
    #[param(required = false)]
    pub end_event: String,
}

// ---------------------------------------------------------------------------------------------
// Bodies

/// StackStorm's error envelope, on every failure.
#[derive(ToSchema)]
#[schema(example = json!({"faultstring": "Unable to identify resource with id \"abc\"."}))]
pub struct Error {
    /// What went wrong, in StackStorm's words where StackStorm has them.
    pub faultstring: String,
}

/// `GET /v1/`: the API's version document.
#[derive(ToSchema)]
pub struct Version {
    /// The StackStorm version this API mirrors (`3.9.0`).
    pub version: String,
    pub docs_url: String,
    /// `squall <version>`.
    pub server: String,
}

/// `GET /livez`.
#[derive(ToSchema)]
pub struct Liveness {
    /// `ok`.
    pub status: String,
}

/// `GET /readyz`: the node's checks.
#[derive(ToSchema)]
pub struct Readiness {
    /// `ready` or `not ready`.
    pub status: String,
    #[schema(value_type = Object)]
    pub checks: Value,
}

/// `GET /v1/squall/stats`: this node and the nodes it knows.
#[derive(ToSchema)]
pub struct Stats {
    /// Executions this node follows live.
    pub live_executions: u64,
    #[schema(value_type = Object)]
    pub node: Value,
    #[schema(value_type = Vec<Object>)]
    pub nodes: Value,
}

/// A token (`POST /auth/v1/tokens`).
#[derive(ToSchema)]
#[schema(example = json!({"id": "665f0c8e2a1b3c4d5e6f7a8b", "user": "st2admin", "token": "5e8f…", "expiry": "2024-06-05T12:00:14.650231Z", "metadata": {}, "service": false}))]
pub struct Token {
    pub id: String,
    pub user: String,
    /// The secret: send it as `X-Auth-Token` (or `?x-auth-token=`).
    pub token: String,
    /// UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub expiry: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub service: bool,
}

/// The body of `POST /auth/v1/tokens` (optional).
#[derive(ToSchema)]
pub struct TokenRequest {
    /// Lifetime in seconds, at least 1 and at most `[auth] token_ttl` (400 above it; the
    /// served document states this server's maximum).
    #[schema(required = false, nullable, minimum = 1)]
    pub ttl: i64,
}

/// The body of `POST /auth/v1/tokens/validate`.
#[derive(ToSchema)]
pub struct TokenCheck {
    pub token: String,
}

/// The answer of `POST /auth/v1/tokens/validate`.
#[derive(ToSchema)]
pub struct TokenValidity {
    pub valid: bool,
}

/// `GET /v1/user`: who the caller is (`st2 whoami`).
#[derive(ToSchema)]
pub struct Identity {
    pub username: String,
    /// `method` (`authentication token`, `API key`, …), `location` (`header`, `query`, `cookie`, `session`) and, for a token, `token_expire`.
    #[schema(value_type = Object)]
    pub authentication: Value,
    /// `enabled`, `roles`, `is_admin`.
    #[schema(value_type = Object)]
    pub rbac: Value,
}

/// An API key as listed (its secret is never shown again after creation).
#[derive(ToSchema)]
#[schema(as = ApiKey)]
pub struct ApiKeyDoc {
    pub id: String,
    pub uid: String,
    pub user: String,
    pub key_hash: String,
    pub enabled: bool,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub created_at: String,
}

/// `POST /v1/apikeys`' answer: the API key and, this once, its secret `key`.
#[derive(ToSchema)]
pub struct NewApiKey {
    pub id: String,
    pub uid: String,
    pub user: String,
    pub key_hash: String,
    pub enabled: bool,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub created_at: String,
    /// The secret: send it as `St2-Api-Key`.
    pub key: String,
}

/// The body of `POST /v1/apikeys`.
#[derive(ToSchema)]
pub struct ApiKeyRequest {
    /// Whose key (default: the caller; someone else needs admin). No user name holds a NUL.
    #[schema(required = false, nullable, pattern = r"^[^\u0000]*$")]
    pub user: String,
    /// Default true.
    #[schema(required = false, nullable)]
    pub enabled: bool,
    #[schema(required = false, nullable, value_type = Object)]
    pub metadata: Value,
}

/// The body of `PUT /v1/apikeys/{id}`.
#[derive(ToSchema)]
pub struct ApiKeyUpdate {
    pub enabled: bool,
}

/// An action (StackStorm's `Action`). With `include_attributes`, only the named fields and
/// `id`, `ref`, `name`, `pack` are present.
#[derive(ToSchema)]
pub struct Action {
    pub id: String,
    #[schema(required = false)]
    pub uid: String,
    #[schema(rename = "ref")]
    pub ref_: String,
    pub pack: String,
    pub name: String,
    #[schema(required = false)]
    pub description: String,
    #[schema(required = false)]
    pub enabled: bool,
    #[schema(required = false)]
    pub entry_point: String,
    /// The runner's name.
    #[schema(required = false)]
    pub runner_type: String,
    /// Parameter name → its schema (`type`, `description`, `default`, `required`, `secret`, `immutable`, `enum`, `position`, …).
    #[schema(required = false, value_type = Object)]
    pub parameters: Value,
    #[schema(required = false, value_type = Object)]
    pub output_schema: Value,
    #[schema(required = false, value_type = Object)]
    pub notify: Value,
    #[schema(required = false, value_type = Vec<Value>)]
    pub tags: Value,
    #[schema(required = false)]
    pub metadata_file: String,
    /// squall's: why squall cannot run this action (absent when it can).
    #[schema(required = false)]
    pub unavailable: String,
}

/// A runner type (StackStorm's `RunnerType`). With `include_attributes`, only the named fields
/// and `id`, `name` are present.
#[derive(ToSchema)]
pub struct RunnerType {
    pub id: String,
    #[schema(required = false)]
    pub uid: String,
    pub name: String,
    #[schema(required = false)]
    pub description: String,
    #[schema(required = false)]
    pub enabled: bool,
    #[schema(required = false)]
    pub runner_package: String,
    #[schema(required = false)]
    pub runner_module: String,
    #[schema(required = false, value_type = Object)]
    pub runner_parameters: Value,
    #[schema(required = false)]
    pub output_key: String,
    #[schema(required = false, value_type = Object)]
    pub output_schema: Value,
}

/// An execution's status (StackStorm's exact strings); a unit test keeps it equal to
/// `squall_core::Status::ALL`.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Status {
    Requested,
    Scheduled,
    Delayed,
    Running,
    Succeeded,
    Failed,
    Timeout,
    Abandoned,
    Canceling,
    Canceled,
    Pending,
    Pausing,
    Paused,
    Resuming,
}

/// One status change of an execution.
#[derive(ToSchema)]
pub struct LogEntry {
    pub timestamp: String,
    pub status: Status,
    #[schema(required = false)]
    pub message: String,
}

/// An execution (StackStorm's `ActionExecution`). Falsy fields are omitted; with
/// `include_attributes`/`exclude_attributes` only the chosen fields (and `id`) are present.
#[derive(ToSchema)]
pub struct Execution {
    /// 24 lower-case hex characters.
    pub id: String,
    /// The action, as it was when the execution was created.
    #[schema(required = false)]
    pub action: Action,
    #[schema(required = false)]
    pub runner: RunnerType,
    /// StackStorm's liveaction mirror: `id`, `action`, `action_is_workflow`, `parameters`, `callback`, `runner_info`.
    #[schema(required = false, value_type = Object)]
    pub liveaction: Value,
    #[schema(required = false)]
    pub status: Status,
    #[schema(required = false)]
    pub start_timestamp: String,
    #[schema(required = false)]
    pub end_timestamp: String,
    #[schema(required = false)]
    pub elapsed_seconds: f64,
    #[schema(required = false)]
    pub web_url: String,
    /// The parameters given (secret values `********` unless an admin asked for `show_secrets`).
    #[schema(required = false, value_type = Object)]
    pub parameters: Value,
    /// `user`, `pack`, and for workflow children `parent`, `chain`/`orquesta`, …
    #[schema(required = false, value_type = Object)]
    pub context: Value,
    /// The runner's result (any JSON).
    #[schema(required = false, value_type = Value)]
    pub result: Value,
    #[schema(required = false)]
    pub result_size: u64,
    #[schema(required = false)]
    pub log: Vec<LogEntry>,
    /// Delay before it was scheduled, in milliseconds.
    #[schema(required = false)]
    pub delay: u64,
    /// The parent execution's id (workflow children).
    #[schema(required = false)]
    pub parent: String,
    /// Child execution ids (workflows).
    #[schema(required = false)]
    pub children: Vec<String>,
    /// squall's: `max_output_bytes` cut the middle of the output out.
    #[schema(required = false)]
    pub output_truncated: bool,
    /// squall's: bytes of `stdout`, `stderr`, and `omitted`.
    #[schema(required = false, value_type = Object)]
    pub output_bytes: Value,
}

/// The body of `POST /v1/executions` (StackStorm's `ExecutionRequest`). `parameters` are
/// checked against the action's own parameter schema (see `GET /v1/actions/{ref}`): 400 when
/// they do not fit. The optional header `st2-context` (a JSON object) is merged into `context`.
#[derive(ToSchema)]
#[schema(example = json!({"action": "core.local", "parameters": {"cmd": "echo hello"}}))]
pub struct ExecutionRequest {
    /// The action's ref, e.g. `core.local`.
    #[schema(min_length = 1)]
    pub action: String,
    #[schema(required = false, nullable, value_type = Object)]
    pub parameters: Value,
    /// Run as this user (admins only; null or absent: the caller). No user name holds a NUL.
    #[schema(required = false, nullable, pattern = r"^[^\u0000]*$")]
    pub user: String,
    #[schema(required = false, nullable, value_type = Object)]
    pub context: Value,
    /// Milliseconds to wait before scheduling.
    #[schema(required = false, nullable, minimum = 0)]
    pub delay: u64,
}

/// The body of `POST /v1/executions/{id}/re_run`.
#[derive(ToSchema)]
pub struct ReRunRequest {
    /// Parameters that replace the original's.
    #[schema(required = false, nullable, value_type = Object)]
    pub parameters: Value,
    /// Orquesta tasks to re-run (not for other runners: 400).
    #[schema(required = false, nullable)]
    pub tasks: Vec<String>,
    #[schema(required = false, nullable)]
    pub reset: Vec<String>,
    #[schema(required = false, nullable, pattern = r"^[^\u0000]*$")]
    pub user: String,
    #[schema(required = false, nullable, minimum = 0)]
    pub delay: u64,
}

/// One output chunk (StackStorm's `ActionExecutionOutput`, plus squall's `seq` and `offset`).
#[derive(ToSchema)]
pub struct OutputRecord {
    pub id: String,
    pub execution_id: String,
    pub action_ref: String,
    pub runner_ref: String,
    pub timestamp: String,
    /// `stdout`, `stderr` or `output`.
    pub output_type: String,
    /// Position in the execution's output: resume after it with `Last-Event-ID` or `?after=`.
    pub seq: u64,
    /// Byte offset of this chunk in its stream.
    pub offset: u64,
    #[schema(required = false)]
    pub host: String,
    /// The bytes as text (`encoding=text`).
    #[schema(required = false)]
    pub data: String,
    /// The exact bytes, base64 (`encoding=base64`).
    #[schema(required = false)]
    pub data_b64: String,
}

/// One of two named schemas (`oneOf`), for bodies that take either shape.
fn one_of(a: &str, b: &str, description: &str) -> RefOr<utoipa::openapi::Schema> {
    use utoipa::openapi::Ref;
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(Ref::from_schema_name(a))
        .item(Ref::from_schema_name(b))
        .description(Some(description))
        .into()
}

/// The `data:` of a stream event: an execution (`st2.execution__create`/`__update`) or an output
/// chunk (`st2.execution.output__create`); clients tell them apart by whether `status` is present.
pub struct StreamEvent;

impl utoipa::PartialSchema for StreamEvent {
    fn schema() -> RefOr<utoipa::openapi::Schema> {
        one_of("Execution", "OutputRecord", "An execution event, or an output chunk (no `status`)")
    }
}

impl ToSchema for StreamEvent {}

/// What `DELETE /v1/executions/{id}` answers with 200: the execution, or StackStorm's
/// faultstring for one that cannot be canceled (still a 200, as StackStorm answers).
pub struct CancelOutcome;

impl utoipa::PartialSchema for CancelOutcome {
    fn schema() -> RefOr<utoipa::openapi::Schema> {
        one_of("Execution", "Error", "The execution, or `{\"faultstring\": \"Action cannot be canceled. State = …\"}`")
    }
}

impl ToSchema for CancelOutcome {}

/// `GET /v1/executions/{id}/lines`.
#[derive(ToSchema)]
pub struct Lines {
    pub id: String,
    /// The execution's status, read before the lines: a finished status means every line is there.
    pub status: Status,
    /// Lines in the log.
    pub total: u64,
    pub from: u64,
    pub lines: Vec<Line>,
}

/// One display line.
#[derive(ToSchema)]
pub struct Line {
    /// Line number, 0-based.
    pub n: u64,
    pub stream: String,
    pub timestamp: String,
    pub seq: u64,
    #[schema(required = false)]
    pub host: String,
    /// The line as shown (terminal escapes applied).
    pub text: String,
    /// Styled runs: `[length, style]` pairs.
    #[schema(required = false, value_type = Vec<Value>)]
    pub runs: Value,
    /// The line's full length when `text` holds only its start.
    #[schema(required = false)]
    pub length: u64,
    /// The line has no newline yet.
    #[schema(required = false)]
    pub unfinished: bool,
}

/// One NDJSON line of `GET /v1/executions/{id}/search`: `{"hit": Line}`,
/// `{"progress": {"bytes": B}}`, a last `{"done": true, "count": C, "lines": L}` (or
/// `"stopped": true`), or `{"error": "…"}`.
#[derive(ToSchema)]
pub struct SearchLine {
    #[schema(required = false)]
    pub hit: Line,
    #[schema(required = false, value_type = Object)]
    pub progress: Value,
    #[schema(required = false)]
    pub done: bool,
    #[schema(required = false)]
    pub count: u64,
    #[schema(required = false)]
    pub lines: u64,
    #[schema(required = false)]
    pub stopped: bool,
    #[schema(required = false)]
    pub error: String,
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::Value;

    /// `(METHOD, canonical path)` of every route `router()` registers, nested routers expanded.
    /// (Patterns are written with escapes: `crates/cli/tests/authz.rs` checks that no file but
    /// `lib.rs` spells a route call.)
    fn registered() -> BTreeSet<(String, String)> {
        let source = include_str!("lib.rs");
        let start = source.find("pub fn router(").expect("router() is in lib.rs");
        let body = &source[start..start + source[start..].find("\n}\n").expect("router() ends")];
        let route = regex::Regex::new(r#"\.route\("([^"]+)",\s*(.*)"#).unwrap();
        let method = regex::Regex::new(r"\b(get|post|put|delete|patch)\(").unwrap();
        let nest = regex::Regex::new(r#"\.nest\("([^"]+)",\s*(\w+)"#).unwrap();
        let mut nested: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut routes = BTreeSet::new();
        for statement in body.split(';') {
            let mut here = Vec::new();
            for line in statement.lines() {
                if let Some(c) = route.captures(line) {
                    for m in method.captures_iter(&c[2]) {
                        here.push((m[1].to_ascii_uppercase(), c[1].to_string()));
                    }
                }
            }
            if let Some(rest) = statement.trim().strip_prefix("let ") {
                nested.insert(rest.split_whitespace().next().unwrap().to_string(), here);
                continue;
            }
            routes.extend(here);
            for c in nest.captures_iter(statement) {
                for (m, path) in &nested[&c[2]] {
                    let full = if path == "/" { c[1].to_string() } else { format!("{}{path}", &c[1]) };
                    routes.insert((m.clone(), full));
                }
            }
        }
        routes
    }

    fn document() -> Value {
        serde_json::from_str(super::document(86400)).expect("the document is JSON")
    }

    /// `(METHOD, canonical path)` of every operation in the document.
    fn documented() -> BTreeSet<(String, String)> {
        let doc = document();
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let (canonical, _) = crate::paths::normalize(path);
            for method in item.as_object().unwrap().keys() {
                ops.insert((method.to_ascii_uppercase(), canonical.clone()));
            }
        }
        ops
    }

    #[test]
    fn the_documented_statuses_are_the_core_s() {
        let doc = document();
        let documented: Vec<&str> = doc["components"]["schemas"]["Status"]["enum"]
            .as_array()
            .expect("Status is an enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let core: Vec<&str> = squall_core::Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(documented, core, "openapi::Status must list squall_core::Status::ALL, in order");
    }

    #[test]
    fn the_document_has_every_route_and_nothing_else() {
        let routes = registered();
        assert!(routes.len() > 30, "the route reader found only {routes:?}");
        // The console is not part of the API; `/actionexecutions` is `/executions` again.
        let expected: BTreeSet<_> = routes
            .iter()
            .filter(|(_, p)| !crate::ui::is_ui_path(p))
            .map(|(m, p)| (m.clone(), p.replacen("/actionexecutions", "/executions", 1)))
            .collect();
        let aliases: BTreeSet<_> = routes.iter().filter(|(_, p)| p.starts_with("/actionexecutions")).collect();
        let executions: BTreeSet<_> = routes.iter().filter(|(_, p)| p.starts_with("/executions")).collect();
        assert_eq!(aliases.len(), executions.len(), "/actionexecutions must mirror /executions");
        let documented = documented();
        let missing: Vec<_> = expected.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&expected).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "routes without a document entry: {missing:?}; document entries without a route: {extra:?}"
        );
        println!(
            "openapi: {} operations document {} routes ({} in the console, not documented)",
            documented.len(),
            routes.len(),
            routes.iter().filter(|(_, p)| crate::ui::is_ui_path(p)).count()
        );
    }

    #[test]
    fn every_operation_says_who_may_call_it_and_how_it_fails() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        for name in ["X-Auth-Token", "St2-Api-Key", "x-auth-token", "st2-api-key", "auth-token", "basic"] {
            assert!(schemes.contains_key(name), "no security scheme {name}");
        }
        let public = ["/livez", "/readyz", "/metrics", "/v1/openapi.json", "/auth/v1/tokens/validate"];
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let security = op["security"].as_array().unwrap_or_else(|| panic!("{method} {path} has no security"));
                let responses = op["responses"].as_object().unwrap();
                if public.contains(&path.as_str()) {
                    assert_eq!(security, &vec![serde_json::json!({})], "{method} {path} should be public");
                } else if path == "/auth/v1/tokens" {
                    assert_eq!(security, &vec![serde_json::json!({"basic": []})]);
                } else {
                    assert_eq!(security.len(), 5, "{method} {path}");
                    assert!(responses.contains_key("401") && responses.contains_key("403"), "{method} {path}");
                }
                for (status, response) in responses {
                    if status.starts_with('4') && !["416"].contains(&status.as_str()) {
                        let schema = &response["content"]["application/json"]["schema"]["$ref"];
                        assert_eq!(schema, "#/components/schemas/Error", "{method} {path} {status}");
                    }
                }
            }
        }
    }
}
