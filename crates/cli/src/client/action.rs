//! `squall action list|get`.

use serde_json::Value;

use super::{Api, CliResult, render};

pub async fn list(api: &Api, pack: Option<String>, json: bool) -> CliResult<u8> {
    let path = match &pack {
        Some(p) => format!("/actions?pack={p}"),
        None => "/actions".to_string(),
    };
    let actions = api.get(&path).await?;
    if json {
        render::json(&actions);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = actions
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| vec![str_of(a, "ref"), str_of(a, "runner_type"), str_of(a, "description")])
        .collect();
    render::table(&["ref", "runner", "description"], &rows);
    Ok(0)
}

pub async fn get(api: &Api, reference: &str, json: bool) -> CliResult<u8> {
    let action = api.get(&format!("/actions/{reference}")).await?;
    if json {
        render::json(&action);
        return Ok(0);
    }
    println!("{} ({})", str_of(&action, "ref"), str_of(&action, "runner_type"));
    let description = str_of(&action, "description");
    if !description.is_empty() {
        println!("{description}");
    }
    // The action's own parameters, then the runner's that it does not redefine (timeout, env,
    // cwd, …): every parameter `squall run` accepts.
    let mut params: Vec<(String, Value, bool)> =
        action["parameters"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.clone(), false)).collect();
    let runner_name = str_of(&action, "runner_type");
    let runners = api.get(&format!("/runnertypes?name={runner_name}")).await?;
    if let Some(runner) = runners.get(0).and_then(|r| r["runner_parameters"].as_object()) {
        for (name, spec) in runner {
            match params.iter_mut().find(|(n, _, _)| n == name) {
                // The action redefines some attributes of a runner parameter: show the merge.
                Some((_, own, _)) => {
                    let mut merged = spec.clone();
                    if let (Some(m), Some(o)) = (merged.as_object_mut(), own.as_object()) {
                        m.extend(o.clone());
                    }
                    *own = merged;
                }
                None => params.push((name.clone(), spec.clone(), true)),
            }
        }
    }
    if params.is_empty() {
        return Ok(0);
    }
    println!();
    let rows: Vec<Vec<String>> = params
        .iter()
        .map(|(name, spec, of_runner)| {
            let mut flags: Vec<&str> = [("required", "required"), ("secret", "secret"), ("immutable", "immutable")]
                .iter()
                .filter(|(k, _)| spec.get(*k).and_then(Value::as_bool) == Some(true))
                .map(|(_, label)| *label)
                .collect();
            if *of_runner {
                flags.push("runner");
            }
            vec![
                name.clone(),
                str_of(spec, "type"),
                spec.get("default").map(|d| d.to_string()).unwrap_or_default(),
                flags.join(","),
                str_of(spec, "description"),
            ]
        })
        .collect();
    render::table(&["parameter", "type", "default", "flags", "description"], &rows);
    Ok(0)
}

pub fn str_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}
