//! Parameter validation and casting: the runner's and the action's parameter definitions are
//! deep-merged (the action wins per attribute), user values are checked against the merge with
//! jsonschema's wording, and defaults (which may be Jinja templates) are filled in.

use serde_json::{Map, Number, Value};

use crate::action::{Action, RunnerType};

/// A parameter problem, worded as StackStorm (jsonschema) words it; the API answers it with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

/// Parameters ready to run: what the user supplied (cast), and the full runner and action
/// parameter sets with defaults applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// Only the values the user gave, after casting — what the execution record stores.
    pub supplied: Map<String, Value>,
    /// Runner parameters (`cmd`, `env`, `timeout`, …) with defaults.
    pub runner: Map<String, Value>,
    /// Action parameters (everything that is not a runner parameter), in declaration order.
    pub action: Map<String, Value>,
}

/// Names of parameters marked `secret: true` in the runner or the action.
pub fn secret_names(runner: &RunnerType, action: &Action) -> Vec<String> {
    merged_schema(&runner.runner_parameters, &action.parameters)
        .into_iter()
        .filter(|(_, spec)| spec.get("secret").and_then(Value::as_bool) == Some(true))
        .map(|(name, _)| name)
        .collect()
}

/// Calls `f` with every secret value in `parameters` and its path: parameters marked
/// `secret: true` (`password`), and entries of the `env` parameter whose names look secret
/// (`env.DB_PASSWORD`, see [`crate::mask::secret_env_name`]). Null values are skipped. Masking
/// in the API, sealing at rest and masking in the output all find secrets here.
pub fn for_each_secret(runner: &RunnerType, action: &Action, parameters: &mut Map<String, Value>, mut f: impl FnMut(&str, &mut Value)) {
    let names = secret_names(runner, action);
    for name in &names {
        if let Some(value) = parameters.get_mut(name).filter(|v| !v.is_null()) {
            f(name, value);
        }
    }
    // A secret `env` as a whole was handled above.
    if !names.iter().any(|n| n == "env")
        && let Some(Value::Object(env)) = parameters.get_mut("env")
    {
        for (name, value) in env.iter_mut().filter(|(k, v)| crate::mask::secret_env_name(k) && !v.is_null()) {
            f(&format!("env.{name}"), value);
        }
    }
}

/// Deep merge of runner and action parameter definitions; the action wins per attribute.
/// Runner parameters come first, then the action's own, each in declaration order.
pub fn merged_schema(runner: &Map<String, Value>, action: &Map<String, Value>) -> Map<String, Value> {
    let mut merged = runner.clone();
    for (name, spec) in action {
        match (merged.get_mut(name), spec) {
            (Some(Value::Object(base)), Value::Object(over)) => {
                for (k, v) in over {
                    base.insert(k.clone(), v.clone());
                }
            }
            _ => {
                merged.insert(name.clone(), spec.clone());
            }
        }
    }
    merged
}

/// Validates and casts `supplied` for `action` run by `runner`.
pub fn resolve(runner: &RunnerType, action: &Action, supplied: &Map<String, Value>) -> Result<Resolved, ParamError> {
    let schema = merged_schema(&runner.runner_parameters, &action.parameters);
    check_immutable(&schema, supplied)?;
    check_additional(&schema, supplied)?;

    let mut cast = Map::new();
    for (name, value) in supplied {
        let spec = &schema[name];
        let value = cast_value(name, spec, value.clone())?;
        cast.insert(name.clone(), value);
    }
    // Templates in supplied values see the other supplied values.
    let rendered = render_templates(&schema, &cast, &cast)?;
    for (name, spec) in &schema {
        if is_required(spec) && rendered.get(name).is_none_or(Value::is_null) && spec.get("default").is_none_or(Value::is_null) {
            return Err(ParamError(format!("'{name}' is a required property")));
        }
    }

    let mut all = rendered.clone();
    for (name, spec) in &schema {
        if !all.contains_key(name)
            && let Some(default) = spec.get("default")
        {
            all.insert(name.clone(), default.clone());
        }
    }
    let all = render_templates(&schema, &all, &all)?;

    let mut resolved = Resolved { supplied: rendered, ..Resolved::default() };
    for (name, value) in all {
        if runner.runner_parameters.contains_key(&name) {
            resolved.runner.insert(name, value);
        } else {
            resolved.action.insert(name, value);
        }
    }
    Ok(resolved)
}

fn is_required(spec: &Value) -> bool {
    spec.get("required").and_then(Value::as_bool) == Some(true)
}

fn check_immutable(schema: &Map<String, Value>, supplied: &Map<String, Value>) -> Result<(), ParamError> {
    let immutable: Vec<&str> = supplied
        .keys()
        .filter(|k| schema.get(*k).and_then(|s| s.get("immutable")).and_then(Value::as_bool) == Some(true))
        .map(String::as_str)
        .collect();
    if immutable.is_empty() {
        return Ok(());
    }
    Err(ParamError(format!("Override of immutable parameter(s) {} is unsupported.", py_list(&immutable))))
}

fn check_additional(schema: &Map<String, Value>, supplied: &Map<String, Value>) -> Result<(), ParamError> {
    let extra: Vec<&str> = supplied.keys().filter(|k| !schema.contains_key(*k)).map(String::as_str).collect();
    match extra.as_slice() {
        [] => Ok(()),
        [one] => Err(ParamError(format!("Additional properties are not allowed ('{one}' was unexpected)"))),
        many => {
            let names: Vec<String> = many.iter().map(|n| format!("'{n}'")).collect();
            Err(ParamError(format!("Additional properties are not allowed ({} were unexpected)", names.join(", "))))
        }
    }
}

/// Declared types of a parameter (`type` may be a string or a list); empty when untyped.
fn declared_types(spec: &Value) -> Vec<&str> {
    match spec.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Casts a string to the declared type where it reads as one (what StackStorm does with
/// rendered values), then checks the type and `enum`.
fn cast_value(name: &str, spec: &Value, value: Value) -> Result<Value, ParamError> {
    let types = declared_types(spec);
    if value.is_null() {
        if is_required(spec) && !types.contains(&"null") {
            return Err(ParamError(format!("None is not of type {}", type_list(&types))));
        }
        return Ok(value);
    }
    let value = match &value {
        Value::String(s) if !types.is_empty() && !types.contains(&"string") && !is_template(s) => {
            types.iter().find_map(|t| cast_str(s, t)).unwrap_or(value)
        }
        _ => value,
    };
    if !types.is_empty() && !types.iter().any(|t| is_type(&value, t)) && !value.as_str().is_some_and(is_template) {
        return Err(ParamError(format!("{} is not of type {}", py_repr(&value), type_list(&types))));
    }
    if let Some(Value::Array(choices)) = spec.get("enum")
        && !choices.contains(&value)
        && !value.as_str().is_some_and(is_template)
    {
        return Err(ParamError(format!("{} is not one of {}", py_repr(&value), py_repr(&Value::Array(choices.clone())))));
    }
    let _ = name;
    Ok(value)
}

fn type_list(types: &[&str]) -> String {
    match types {
        [one] => format!("'{one}'"),
        many => py_list(many),
    }
}

fn cast_str(s: &str, ty: &str) -> Option<Value> {
    let t = s.trim();
    match ty {
        "integer" => t.parse::<i64>().ok().map(Value::from),
        "number" => t.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number),
        "boolean" => match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" | "on" => Some(Value::Bool(true)),
            "false" | "0" | "no" | "n" | "off" => Some(Value::Bool(false)),
            _ => None,
        },
        "array" | "object" => serde_json::from_str::<Value>(t).ok().filter(|v| is_type(v, ty)),
        "null" if t.is_empty() || t == "null" => Some(Value::Null),
        _ => None,
    }
}

fn is_type(value: &Value, ty: &str) -> bool {
    match ty {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true, // "any" and unknown types accept everything, as jsonschema does
    }
}

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// The most instructions one parameter's template may run: far more than any real template
/// needs, and about a millisecond. A user's value is a template too, and without a bound
/// `{% for i in range(100000) %}{% for j in range(100000) %}…` held an API worker for hours.
const TEMPLATE_FUEL: u64 = 1_000_000;

/// Renders every string value holding a Jinja expression, with the parameters as context,
/// then casts the result to the parameter's declared type.
fn render_templates(
    schema: &Map<String, Value>,
    values: &Map<String, Value>,
    context: &Map<String, Value>,
) -> Result<Map<String, Value>, ParamError> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env.set_fuel(Some(TEMPLATE_FUEL));
    let mut out = Map::new();
    for (name, value) in values {
        let value = match value {
            Value::String(s) if is_template(s) => {
                let text = env
                    .render_str(s, minijinja::value::Serde(context))
                    .map_err(|e| ParamError(format!("Failed to render parameter \"{name}\": {e}")))?;
                let spec = schema.get(name).cloned().unwrap_or(Value::Null);
                cast_value(name, &spec, Value::String(text))?
            }
            other => other.clone(),
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

fn py_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Python's `repr` of a JSON value, as jsonschema prints instances in its messages.
pub fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'").replace('\n', "\\n"))
            }
        }
        Value::Array(items) => format!("[{}]", items.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter().map(|(k, v)| format!("{}: {}", py_repr(&Value::String(k.clone())), py_repr(v))).collect::<Vec<_>>().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Catalog;
    use serde_json::json;

    fn resolve_ref(r: &str, params: Value) -> Result<Resolved, ParamError> {
        let c = Catalog::builtin();
        let action = c.action(r).unwrap();
        let runner = c.runner(&action.runner_type).unwrap();
        resolve(runner, action, params.as_object().unwrap())
    }

    #[test]
    fn local_defaults_and_split() {
        let r = resolve_ref("core.local", json!({"cmd": "echo hi", "timeout": "5"})).unwrap();
        assert_eq!(r.supplied, json!({"cmd": "echo hi", "timeout": 5}).as_object().unwrap().clone());
        assert_eq!(r.runner["sudo"], json!(false));
        assert_eq!(r.runner["kwarg_op"], json!("--"));
        assert!(r.action.is_empty());
    }

    #[test]
    fn stackstorm_messages() {
        let e = |p: Value| resolve_ref("core.local", p).unwrap_err().0;
        assert_eq!(e(json!({})), "'cmd' is a required property");
        assert_eq!(e(json!({"cmd": "x", "timeout": "abc"})), "'abc' is not of type 'integer'");
        assert_eq!(e(json!({"cmd": "x", "foo": 1})), "Additional properties are not allowed ('foo' was unexpected)");
        assert_eq!(e(json!({"cmd": "x", "sudo": true})), "Override of immutable parameter(s) ['sudo'] is unsupported.");
        assert_eq!(e(json!({"cmd": 5})), "5 is not of type 'string'");
    }

    #[test]
    fn echo_renders_its_default_cmd() {
        let r = resolve_ref("core.echo", json!({"message": "hello"})).unwrap();
        assert_eq!(r.runner["cmd"], json!("echo \"hello\""));
        assert_eq!(r.action["message"], json!("hello"));
    }

    #[test]
    fn secrets_are_listed() {
        let c = Catalog::builtin();
        let a = c.action("core.local").unwrap();
        assert_eq!(secret_names(c.runner(&a.runner_type).unwrap(), a), ["sudo_password"]);
    }

    #[test]
    fn repr_matches_python() {
        assert_eq!(py_repr(&json!({"k": [1, true, null, "it's"]})), "{'k': [1, True, None, \"it's\"]}");
    }
}

/// Casts a `key=value` command-line value to the parameter's declared type, with the `st2`
/// CLI's rules: arrays from JSON or comma lists (a lone integer becomes a one-element array),
/// objects from JSON or `k1=v1,k2=v2`, booleans only from `true`/`false`.
pub fn cast_cli(ty: Option<&str>, raw: &str) -> Result<Value, ParamError> {
    let bad = |what: &str| ParamError(format!("\"{raw}\" is not a valid {what}"));
    match ty {
        Some("integer") => raw.trim().parse::<i64>().map(Value::from).map_err(|_| bad("integer")),
        Some("number") => raw.trim().parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number).ok_or_else(|| bad("number")),
        Some("boolean") => match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(ParamError("Invalid value for boolean parameter. Valid values are: true, false".into())),
        },
        Some("array") => {
            if let Ok(n) = raw.trim().parse::<i64>() {
                return Ok(Value::Array(vec![Value::from(n)]));
            }
            match serde_json::from_str::<Value>(raw) {
                Ok(Value::Array(items)) => Ok(Value::Array(items)),
                _ => Ok(Value::Array(raw.split(',').map(|s| Value::String(s.trim().to_string())).collect())),
            }
        }
        Some("object") if raw.trim_start().starts_with('{') => {
            serde_json::from_str::<Value>(raw).ok().filter(Value::is_object).ok_or_else(|| bad("JSON object"))
        }
        Some("object") => {
            let mut map = Map::new();
            for pair in raw.split(',').filter(|p| !p.trim().is_empty()) {
                let (k, v) = pair.split_once('=').ok_or_else(|| bad("object (use k1=v1,k2=v2 or JSON)"))?;
                map.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
            }
            Ok(Value::Object(map))
        }
        _ => Ok(Value::String(raw.to_string())),
    }
}

#[cfg(test)]
mod cli_cast_tests {
    use super::cast_cli;
    use serde_json::json;

    #[test]
    fn st2_cli_rules() {
        assert_eq!(cast_cli(Some("integer"), "3").unwrap(), json!(3));
        assert_eq!(cast_cli(Some("array"), "51").unwrap(), json!([51]));
        assert_eq!(cast_cli(Some("array"), "a, b").unwrap(), json!(["a", "b"]));
        assert_eq!(cast_cli(Some("array"), "[1,\"x\"]").unwrap(), json!([1, "x"]));
        assert_eq!(cast_cli(Some("object"), "{\"k\":1}").unwrap(), json!({"k": 1}));
        assert_eq!(cast_cli(Some("object"), "a=1,b=2").unwrap(), json!({"a": "1", "b": "2"}));
        assert_eq!(cast_cli(Some("boolean"), "TRUE").unwrap(), json!(true));
        assert!(cast_cli(Some("boolean"), "yes").is_err());
        assert_eq!(cast_cli(None, "x=y").unwrap(), json!("x=y"));
    }
}
