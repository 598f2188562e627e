//! `squall execution tail`: everything so far, then live, byte-exact, each stream to its own
//! file descriptor, across dropped connections and server restarts (resuming after the last
//! `seq` received), ending with the execution.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use squall_server::wire::RECORDS_TYPE;

use super::action::str_of;
use super::records::{self, Frame, FrameError};
use super::render::Spinner;
use super::{Api, CliError, CliResult, exit};

/// What `tail` shows.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    /// `stdout` or `stderr`; both when `None`.
    pub kind: Option<String>,
    /// Only this remote host's output.
    pub host: Option<String>,
    /// Prefix each record with `[timestamp][stream] ` as `st2 execution tail` does, plus
    /// `[host]` for remote runners.
    pub include_metadata: bool,
    /// Prefix each line with the time it was recorded.
    pub timestamps: bool,
    /// Skip what was produced before the tail started (StackStorm's behaviour).
    pub only_new: bool,
    /// Each record as one JSON object per line on stdout, and the final status as the last.
    pub json: bool,
}

/// Consecutive failed connection attempts before giving up (about a minute of retrying).
const MAX_RETRIES: u32 = 40;

/// The exit code of a command the user interrupted (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;

pub async fn tail(api: &Api, id: &str, opts: &TailOptions) -> CliResult<u8> {
    let e = api.get(&format!("/executions/{id}")).await?;
    let id = str_of(&e, "id");
    let workflow = e["liveaction"]["action_is_workflow"].as_bool().unwrap_or(false);
    tokio::select! {
        followed = follow(api, &id, str_of(&e, "status"), opts, workflow) => followed,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nStopped following. Execution {id} keeps running: `squall execution tail {id}` follows it again, `squall execution cancel {id}` stops it.");
            Ok(INTERRUPTED)
        }
    }
}

async fn follow(api: &Api, id: &str, status: String, opts: &TailOptions, workflow: bool) -> CliResult<u8> {
    // Said for any execution that had not ended when the tail began, even one that ended
    // before it was seen running (a fast action under `run --tail`).
    let was_live = !TERMINAL.contains(&status.as_str());
    wait_until_started(api, id, status).await?;
    if was_live {
        eprintln!("Execution {id} has started.");
    }
    let mut printer = Printer::new(opts);
    if workflow {
        follow_tasks(api, id, opts, &mut printer).await?;
    } else {
        follow_output(api, id, opts, &mut printer).await?;
    }
    let done = get_with_retries(api, &format!("/executions/{id}")).await?;
    let status = str_of(&done, "status");
    eprintln!("Execution {id} has completed (status={status}).");
    if opts.json {
        println!("{}", serde_json::json!({"execution_id": id, "status": status, "completed": true}));
    }
    if let Some(error) = done["result"]["error"].as_str().filter(|_| status != "succeeded") {
        eprintln!("error: {error}");
    }
    Ok(exit::for_status(&status))
}

const TERMINAL: [&str; 5] = ["succeeded", "failed", "timeout", "canceled", "abandoned"];

/// Everything one execution wrote, then live until it ends, across dropped connections.
async fn follow_output(api: &Api, id: &str, opts: &TailOptions, printer: &mut Printer) -> CliResult<()> {
    let mut cursor = if opts.only_new { "latest".to_string() } else { "0".to_string() };
    let mut retries = 0;
    loop {
        match follow_once(api, id, &cursor, opts, printer).await? {
            Follow::Ended => return Ok(()),
            Follow::Interrupted(last) => {
                if let Some(seq) = last {
                    cursor = seq.to_string();
                    retries = 0;
                }
                if retries == 0 {
                    eprintln!("Lost the connection to {}; reconnecting…", api.server());
                }
                retries += 1;
                if retries > MAX_RETRIES {
                    return Err(CliError::new(format!("lost the connection to {} and could not get it back", api.server())));
                }
                tokio::time::sleep(backoff(retries)).await;
                printer.reconnecting = true;
            }
        }
    }
}

/// A workflow: each task (child execution, depth-first in the order they were started) from
/// its start, through its output, to its end — those that ran before the tail began included —
/// until the workflow has ended and every task has been shown.
async fn follow_tasks(api: &Api, id: &str, opts: &TailOptions, printer: &mut Printer) -> CliResult<()> {
    let mut shown: std::collections::HashSet<String> = Default::default();
    // Nested workflows whose end is still to be announced.
    let mut open: Vec<(String, String)> = Vec::new();
    loop {
        let ended = TERMINAL.contains(&str_of(&get_with_retries(api, &format!("/executions/{id}")).await?, "status").as_str());
        let children = get_with_retries(api, &format!("/executions/{id}/children?depth=-1")).await?;
        for child in children.as_array().into_iter().flatten() {
            let child_id = str_of(child, "id");
            if !shown.insert(child_id.clone()) {
                continue;
            }
            let task = child["context"]["chain"]["name"].as_str().unwrap_or("unknown").to_string();
            wait_until_started(api, &child_id, str_of(child, "status")).await?;
            eprintln!("Child execution (task={task}) {child_id} has started.");
            if child["liveaction"]["action_is_workflow"].as_bool().unwrap_or(false) {
                open.push((child_id, task));
                continue;
            }
            printer.task = Some(task.clone());
            follow_output(api, &child_id, opts, printer).await?;
            printer.task = None;
            let status = str_of(&get_with_retries(api, &format!("/executions/{child_id}")).await?, "status");
            eprintln!("Child execution (task={task}) {child_id} has finished (status={status}).");
        }
        let mut still_open = Vec::new();
        for (child_id, task) in open.drain(..) {
            let status = str_of(&get_with_retries(api, &format!("/executions/{child_id}")).await?, "status");
            if TERMINAL.contains(&status.as_str()) {
                eprintln!("Child execution (task={task}) {child_id} has finished (status={status}).");
            } else {
                still_open.push((child_id, task));
            }
        }
        open = still_open;
        // The children were read after the workflow was seen ended: none can be missing.
        if ended && open.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((250 * u64::from(attempt)).min(2000))
}

/// Waits (spinner on a terminal) while the execution has not started yet.
async fn wait_until_started(api: &Api, id: &str, mut status: String) -> CliResult<String> {
    let mut spinner = Spinner::new();
    while ["requested", "scheduled", "delayed"].contains(&status.as_str()) {
        spinner.tick(&format!("waiting for {id} to start ({status})"));
        // Poll briskly: the first lines should not wait for the spinner's pace.
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        status = str_of(&api.get(&format!("/executions/{id}")).await?, "status");
    }
    spinner.clear();
    Ok(status)
}

async fn get_with_retries(api: &Api, path: &str) -> CliResult<Value> {
    let mut attempt = 0;
    loop {
        match api.get(path).await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < MAX_RETRIES && e.message.starts_with("cannot reach") => {
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

enum Follow {
    /// The server sent `EOF`: the execution completed and everything was delivered.
    Ended,
    /// The connection ended early; the last `seq` received, if any.
    Interrupted(Option<u64>),
}

/// One connection to the execution's record stream, resuming after `cursor`.
async fn follow_once(api: &Api, id: &str, cursor: &str, opts: &TailOptions, printer: &mut Printer) -> CliResult<Follow> {
    let query = [("after", Some(cursor)), ("output_type", opts.kind.as_deref()), ("host", opts.host.as_deref())];
    let url = api.url_with(&format!("/executions/{id}/output"), &query)?;
    let resp = match api.http().get(url).header("accept", RECORDS_TYPE).send().await {
        Ok(resp) => resp,
        Err(_) => return Ok(Follow::Interrupted(None)),
    };
    if resp.status().is_client_error() {
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        return Err(CliError::new(body["faultstring"].as_str().unwrap_or("the server refused the stream").to_string()));
    }
    if !resp.status().is_success() {
        return Ok(Follow::Interrupted(None));
    }
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.starts_with(RECORDS_TYPE) {
        return Err(CliError::new(format!(
            "{} answered with {content_type:?}, not a record stream: a squall server older than this client, or not squall (a StackStorm server is followed with `st2 execution tail`)?",
            api.server()
        )));
    }
    if std::mem::take(&mut printer.reconnecting) {
        eprintln!("Reconnected; resuming after record {cursor}.");
    }
    let mut frames = std::pin::pin!(records::frames(resp.bytes_stream()));
    let mut last = None;
    while let Some(frame) = frames.next().await {
        match frame {
            Ok(Frame::End { .. }) => return Ok(Follow::Ended),
            Ok(Frame::Record { head, data }) => {
                let record: Record = serde_json::from_slice(&head)
                    .map_err(|e| CliError::new(format!("the server sent a record head squall cannot read: {e}")))?;
                printer.write(&record, &head, &data)?;
                last = Some(record.seq);
            }
            Err(FrameError::Transport(_)) => break,
            Err(FrameError::Malformed(message)) => return Err(CliError::new(format!("the server sent a broken record stream: {message}"))),
        }
    }
    Ok(Follow::Interrupted(last))
}

/// A record's head line; the text fields are borrowed from it.
#[derive(Deserialize)]
struct Record<'a> {
    seq: u64,
    #[serde(borrow)]
    output_type: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    timestamp: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    host: Option<std::borrow::Cow<'a, str>>,
}

/// Writes records to the matching file descriptor, with the optional prefixes.
struct Printer {
    include_metadata: bool,
    timestamps: bool,
    /// One stream was chosen (`--type`): it goes to stdout, whichever it is.
    one_stream: bool,
    /// Per stream (stdout, stderr): whether the next byte starts a line.
    at_line_start: [bool; 2],
    /// The connection dropped; say so when it is back.
    reconnecting: bool,
    /// The workflow task whose output this is, for `--include-metadata`.
    task: Option<String>,
    /// Records as JSON lines.
    json: bool,
}

impl Printer {
    fn new(opts: &TailOptions) -> Printer {
        Printer {
            include_metadata: opts.include_metadata,
            timestamps: opts.timestamps,
            one_stream: opts.kind.is_some(),
            at_line_start: [true, true],
            reconnecting: false,
            task: None,
            json: opts.json,
        }
    }

    /// `record` as parsed from `json`, the event's text; `data`, its bytes.
    fn write(&mut self, record: &Record, json: &[u8], data: &[u8]) -> CliResult<()> {
        if self.json {
            return self.write_json(json, data);
        }
        let (kind, timestamp) = (&*record.output_type, &*record.timestamp);
        // squall's own `output` lines (an abandonment, the size limit) go with stderr, so that
        // stdout stays a byte-exact copy of the action's.
        let slot = usize::from(kind != "stdout");
        let mut head = Vec::new();
        if self.include_metadata {
            head.extend_from_slice(format!("[{timestamp}][{kind}]").as_bytes());
            if let Some(host) = &record.host {
                head.extend_from_slice(format!("[{host}]").as_bytes());
            }
            if let Some(task) = &self.task {
                head.extend_from_slice(format!("[task={task}]").as_bytes());
            }
            head.push(b' ');
        }
        let body = if self.timestamps {
            let mut stamped = Vec::with_capacity(data.len() + 64);
            for line in data.split_inclusive(|b| *b == b'\n') {
                if self.at_line_start[slot] {
                    stamped.extend_from_slice(format!("[{timestamp}] ").as_bytes());
                }
                stamped.extend_from_slice(line);
                self.at_line_start[slot] = line.ends_with(b"\n");
            }
            std::borrow::Cow::Owned(stamped)
        } else {
            std::borrow::Cow::Borrowed(data)
        };
        fn put(mut to: impl Write, head: &[u8], body: &[u8]) -> std::io::Result<()> {
            to.write_all(head)?;
            to.write_all(body)?;
            to.flush()
        }
        let result = if slot == 1 && !self.one_stream {
            put(std::io::stderr().lock(), &head, &body)
        } else {
            put(std::io::stdout().lock(), &head, &body)
        };
        result.map_err(|e| CliError::new(format!("cannot write output: {e}")))
    }

    /// The record as the server sent it, with its bytes as text (`data`) instead of `length`.
    fn write_json(&mut self, json: &[u8], data: &[u8]) -> CliResult<()> {
        let mut line: Value = serde_json::from_slice(json).unwrap_or(Value::Null);
        if let Some(fields) = line.as_object_mut() {
            fields.remove("length");
            fields.insert("data".into(), Value::String(String::from_utf8_lossy(data).into_owned()));
            if let Some(task) = &self.task {
                fields.insert("task".into(), Value::String(task.clone()));
            }
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").and_then(|_| out.flush()).map_err(|e| CliError::new(format!("cannot write output: {e}")))
    }
}
