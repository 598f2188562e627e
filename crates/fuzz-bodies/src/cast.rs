//! Parameter casting: the API's (`params::resolve`, StackStorm's casts, `enum`, `required`,
//! Jinja templates in values) and the CLI's (`params::cast_cli`, `key=value` arguments).
//!
//! Input: one byte picks a parameter definition, the rest is the value (as a string, and as
//! JSON when it parses). Properties: no panic; a cast value, rendered back to text, casts to
//! itself (`cast(render(v)) == v`).

use serde_json::{Map, Value, json};
use squall_core::action::{Action, ActionMetadata, Catalog};
use squall_core::params;

/// The parameter definitions a value is cast to: each type, a union, an enum, a required one,
/// and one whose default is a template of the value.
const SPECS: [&str; 12] = [
    r#"{"type": "string"}"#,
    r#"{"type": "integer"}"#,
    r#"{"type": "number"}"#,
    r#"{"type": "boolean"}"#,
    r#"{"type": "array"}"#,
    r#"{"type": "object"}"#,
    r#"{"type": "null"}"#,
    r#"{"type": ["integer", "boolean", "null"]}"#,
    r#"{"type": "integer", "enum": [1, 2, 3]}"#,
    r#"{"type": "string", "required": true}"#,
    r#"{}"#,
    r#"{"type": "any"}"#,
];

pub fn body(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let spec: Value = serde_json::from_str(SPECS[usize::from(pick) % SPECS.len()]).expect("the definitions are JSON");
    cli(spec.get("type").and_then(Value::as_str), text);
    api(&spec, Value::String(text.to_string()));
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        api(&spec, value);
    }
}

/// `squall run … key=value`: a value that casts, rendered again, casts to the same value.
fn cli(ty: Option<&str>, raw: &str) {
    let Ok(value) = params::cast_cli(ty, raw) else { return };
    let again = params::cast_cli(ty, &render(&value));
    assert_eq!(again.as_ref(), Ok(&value), "cast_cli({ty:?}) of {raw:?} gave {value}, which does not cast back");
}

/// The API: `p` defined by `spec` on an action of the `noop` runner, `q` a string whose default
/// renders `p`. A value that casts, rendered as text, casts to itself.
fn api(spec: &Value, value: Value) {
    let catalog = Catalog::builtin();
    let runner = catalog.runner("noop").expect("the noop runner is built in");
    let action = action_with(spec);
    let supplied = Map::from_iter([("p".to_string(), value)]);
    let Ok(resolved) = params::resolve(runner, &action, &supplied) else { return };
    let cast = &resolved.supplied["p"];
    if renders_exactly(spec, cast) {
        let again = Map::from_iter([("p".to_string(), Value::String(render(cast)))]);
        let resolved = params::resolve(runner, &action, &again).unwrap_or_else(|e| panic!("{cast} rendered does not cast: {e}"));
        assert_eq!(&resolved.supplied["p"], cast, "{cast} rendered casts to another value");
    }
}

/// Whether `cast`, typed as text, must cast back to the same JSON value: integers (as i64) and
/// booleans of a definition that is not a string. (A number typed as text comes back as a float,
/// `5` as `5.0`: the same number, another JSON value.)
fn renders_exactly(spec: &Value, cast: &Value) -> bool {
    let types = match spec.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return false,
    };
    let typed = types.iter().all(|t| ["integer", "boolean", "null"].contains(t));
    typed && (cast.is_i64() || cast.is_boolean())
}

fn action_with(spec: &Value) -> Action {
    let meta = json!({
        "name": "fuzz",
        "runner_type": "noop",
        "parameters": {"p": spec, "q": {"type": "string", "default": "{{ p }}"}},
    });
    let meta: ActionMetadata = serde_json::from_value(meta).expect("valid metadata");
    Action::from_metadata("fuzz", meta, "actions/fuzz.yaml")
}

/// A value as a user would type it: a string as itself, anything else as JSON.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
