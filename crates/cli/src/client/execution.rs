//! `squall run` and `squall execution list|get|cancel|re-run|output`.

use std::io::Write;

use serde_json::{Value, json};

use super::action::str_of;
use super::render::{self, Spinner};
use super::tail::{self, TailOptions};
use super::{Api, CliError, CliResult, exit, parse_parameters};

const WAITING: [&str; 4] = ["requested", "scheduled", "delayed", "canceling"];

/// How `run` and `re-run` wait for the execution.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// Print the id and return.
    Async,
    /// Stream the output live, then the result.
    Tail,
    /// Wait quietly (spinner on a terminal), then print the result.
    Result,
}

pub async fn run(api: &Api, action: &str, words: &[String], wait: Wait, json: bool) -> CliResult<u8> {
    let parameters = parse_parameters(api, action, words).await?;
    let e = api.post("/executions", &json!({"action": action, "parameters": parameters, "user": null})).await.map_err(|mut e| {
        // jsonschema's wording names a parameter, not the action or where to look.
        if e.message.contains("property") || e.message.contains("is not of type") || e.message.contains("is not one of") {
            e.message = format!("{action}: {} (its parameters: squall action get {action})", e.message);
        }
        e
    })?;
    finish(api, e, wait, json).await
}

pub async fn rerun(api: &Api, id: &str, words: &[String], wait: Wait, json: bool) -> CliResult<u8> {
    let original = api.get(&format!("/executions/{id}")).await?;
    let action = original["action"]["ref"].as_str().unwrap_or_default();
    let parameters = parse_parameters(api, action, words).await?;
    let e = api
        .post(
            &format!("/executions/{}/re_run", str_of(&original, "id")),
            &json!({"parameters": parameters, "tasks": [], "reset": [], "delay": 0}),
        )
        .await?;
    finish(api, e, wait, json).await
}

async fn finish(api: &Api, e: Value, wait: Wait, json: bool) -> CliResult<u8> {
    let id = str_of(&e, "id");
    match wait {
        Wait::Async => {
            if json {
                render::json(&e);
            } else {
                println!("{id}");
                eprintln!("To follow its output: squall execution tail {id}");
            }
            Ok(0)
        }
        Wait::Tail => {
            let code = tail::tail(api, &id, &TailOptions::default()).await?;
            if json {
                render::json(&api.get(&format!("/executions/{id}")).await?);
            }
            Ok(code)
        }
        Wait::Result => {
            let mut spinner = Spinner::new();
            let wait = async {
                loop {
                    let e = api.get(&format!("/executions/{id}")).await?;
                    let status = str_of(&e, "status");
                    if !WAITING.contains(&status.as_str()) && status != "running" {
                        return Ok::<_, CliError>(e);
                    }
                    spinner.tick(&format!("{id} {status}"));
                    tokio::time::sleep(Spinner::INTERVAL).await;
                }
            };
            let done = tokio::select! {
                done = wait => done?,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("\nStopped waiting. Execution {id} keeps running: `squall execution tail {id}` follows it, `squall execution get {id}` shows its result, `squall execution cancel {id}` stops it.");
                    return Ok(tail::INTERRUPTED);
                }
            };
            spinner.clear();
            if json {
                render::json(&done);
            } else {
                print_execution(&done, false);
            }
            Ok(exit::for_status(&str_of(&done, "status")))
        }
    }
}

/// An execution for people: identity, status, parameters and the result.
fn print_execution(e: &Value, detail: bool) {
    let color = render::color_stdout();
    let mut rows = vec![
        ("id", str_of(e, "id")),
        ("action", e["action"]["ref"].as_str().unwrap_or_default().to_string()),
        ("status", format!("{} {}", render::status(&str_of(e, "status"), color), render::elapsed(e)).trim_end().to_string()),
        ("user", e["context"]["user"].as_str().unwrap_or_default().to_string()),
        ("started", render::when(&str_of(e, "start_timestamp"))),
        ("ended", render::when(&str_of(e, "end_timestamp"))),
    ];
    if let Some(params) = e.get("parameters").filter(|p| p.as_object().is_some_and(|m| !m.is_empty())) {
        rows.push(("parameters", params.to_string()));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        println!("{k:width$}  {v}");
    }
    if detail && let Some(log) = e["log"].as_array() {
        println!("{:width$}", "log");
        for entry in log {
            println!("  {}  {}", str_of(entry, "timestamp"), str_of(entry, "status"));
        }
    }
    if let Some(result) = e.get("result") {
        println!("result:");
        println!("{}", serde_json::to_string_pretty(result).unwrap_or_default());
    }
}

pub async fn list(api: &Api, n: u32, status: Option<String>, action: Option<String>, mine: bool, json: bool) -> CliResult<u8> {
    let limit = n.to_string();
    let mut filters = vec![("limit", limit.as_str())];
    if let Some(s) = &status {
        filters.push(("status", s));
    }
    if let Some(a) = &action {
        filters.push(("action", a));
    }
    let user = if mine { Some(api.whoami().await?) } else { None };
    if let Some(u) = &user {
        filters.push(("user", u));
    }
    let path = super::executions_query(api, &filters)?;
    let (items, total) = api.get_counted(&path).await?;
    // An empty list for an action that does not exist would look as if it never ran.
    if let Some(a) = action.as_ref().filter(|_| items.as_array().is_none_or(Vec::is_empty)) {
        api.get(&format!("/actions/{a}"))
            .await
            .map_err(|e| CliError::new(format!("no action {a} on {} (see `squall action list`): {}", api.server(), e.message)))?;
    }
    if json {
        render::json(&items);
        return Ok(0);
    }
    let color = render::color_stdout();
    let mut rows: Vec<Vec<String>> = items
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                str_of(e, "id"),
                e["action"]["ref"].as_str().unwrap_or_default().to_string(),
                e["context"]["user"].as_str().unwrap_or_default().to_string(),
                render::status(&str_of(e, "status"), color),
                render::when(&str_of(e, "start_timestamp")),
                render::elapsed(e),
            ]
        })
        .collect();
    rows.reverse(); // oldest at the top, newest next to the prompt
    render::table(&["id", "action", "user", "status", "started", "elapsed"], &rows);
    if let Some(total) = total.filter(|t| *t > u64::from(n)) {
        eprintln!("(showing the newest {n} of {total}; use -n to see more)");
    }
    Ok(0)
}

pub async fn get(api: &Api, id: &str, json: bool, detail: bool) -> CliResult<u8> {
    let e = api.get(&format!("/executions/{id}")).await?;
    if json {
        render::json(&e);
    } else {
        print_execution(&e, detail);
        if e["liveaction"]["action_is_workflow"].as_bool().unwrap_or(false) {
            let tasks = api.get(&format!("/executions/{}/children?depth=-1", str_of(&e, "id"))).await?;
            print_task_tree(&str_of(&e, "id"), tasks.as_array().map_or(&[][..], Vec::as_slice));
        }
    }
    Ok(0)
}

/// A workflow's tasks, depth-first as they ran, nested tasks indented under their workflow.
fn print_task_tree(root: &str, tasks: &[Value]) {
    let color = render::color_stdout();
    let mut depth: std::collections::HashMap<String, usize> = [(root.to_string(), 0)].into();
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let level = depth.get(t["parent"].as_str().unwrap_or_default()).copied().unwrap_or(0) + 1;
            depth.insert(str_of(t, "id"), level);
            let name = t["context"]["chain"]["name"].as_str().unwrap_or("unknown");
            vec![
                format!("{}{name}", "  ".repeat(level - 1)),
                t["action"]["ref"].as_str().unwrap_or_default().to_string(),
                format!("{} {}", render::status(&str_of(t, "status"), color), render::elapsed(t)).trim_end().to_string(),
                str_of(t, "id"),
            ]
        })
        .collect();
    println!();
    if rows.is_empty() {
        println!("no task has started yet");
    } else {
        render::table(&["task", "action", "status", "id"], &rows);
    }
}

pub async fn cancel(api: &Api, id: &str, json: bool) -> CliResult<u8> {
    let e = api.delete(&format!("/executions/{id}")).await?;
    if let Some(fault) = e.get("faultstring").and_then(Value::as_str) {
        return Err(CliError::new(fault.to_string()));
    }
    if json {
        render::json(&e);
    } else {
        println!("execution {} {}", str_of(&e, "id"), str_of(&e, "status"));
    }
    Ok(0)
}

/// The stored output, byte-exact, to stdout; with `json`, one object holding it as text.
pub async fn output(api: &Api, id: &str, kind: Option<&str>, host: Option<&str>, json: bool) -> CliResult<u8> {
    let url = api.url_with(&format!("/executions/{id}/output"), &[("output_type", kind), ("host", host)])?;
    let mut resp = api.http().get(url).send().await.map_err(|e| api.unreachable(e))?;
    if !resp.status().is_success() {
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        return Err(CliError::new(body["faultstring"].as_str().unwrap_or("request failed").to_string()));
    }
    if json {
        let data = resp.bytes().await.map_err(|e| api.unreachable(e))?;
        let id = match id {
            "last" => str_of(&api.get("/executions/last").await?, "id"),
            id => id.to_string(),
        };
        render::json(
            &json!({"execution_id": id, "output_type": kind.unwrap_or("all"), "host": host, "data": String::from_utf8_lossy(&data)}),
        );
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = resp.chunk().await.map_err(|e| api.unreachable(e))? {
        out.write_all(&chunk).map_err(|e| CliError::new(format!("cannot write output: {e}")))?;
    }
    let _ = out.flush();
    Ok(0)
}
