//! The execution record: one run of one action, from request to a terminal status.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::action::{Action, RunnerType};
use crate::id::new_id;
use crate::status::Status;
use crate::time::Timestamp;

/// One entry of an execution's status history (StackStorm's `log`). `message` explains
/// transitions squall makes on its own, such as marking an orphaned execution `abandoned`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub timestamp: Timestamp,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An execution as squall stores it. The action and runner are snapshots taken at creation so a
/// later pack change does not rewrite history. `parameters` holds only what the user supplied
/// (rendered and cast), as StackStorm stores it; defaults are applied when the action runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub id: String,
    pub action: Action,
    pub runner: RunnerType,
    pub status: Status,
    pub start_timestamp: Timestamp,
    #[serde(default)]
    pub end_timestamp: Option<Timestamp>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub context: Map<String, Value>,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub log: Vec<LogEntry>,
    /// Milliseconds to wait before scheduling, when requested.
    #[serde(default)]
    pub delay: Option<u64>,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub children: Vec<String>,
    /// Where it ran: `{"hostname": …, "pid": …}` of the runner process.
    #[serde(default)]
    pub runner_info: Option<Value>,
    /// How much output it produced, and whether the size limit cut some of it.
    #[serde(default)]
    pub output: Option<OutputStats>,
}

/// Output totals of an execution, recorded when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputStats {
    /// Bytes the process wrote to stdout (after masking), stored or not.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// `[actionrunner] max_output_bytes` was reached: the middle of the output was dropped.
    pub truncated: bool,
    /// Bytes dropped between the kept head and tail.
    pub omitted_bytes: u64,
}

impl Execution {
    /// A new execution in `requested` state, for `user`.
    pub fn new(
        action: Action,
        runner: RunnerType,
        parameters: Map<String, Value>,
        mut context: Map<String, Value>,
        user: &str,
        delay: Option<u64>,
    ) -> Execution {
        let now = Timestamp::now();
        context.insert("user".into(), Value::String(user.to_string()));
        context.insert("pack".into(), Value::String(action.pack.clone()));
        Execution {
            id: new_id(),
            action,
            runner,
            status: Status::Requested,
            start_timestamp: now,
            end_timestamp: None,
            parameters,
            context,
            result: None,
            log: vec![LogEntry { timestamp: now, status: Status::Requested, message: None }],
            delay: delay.filter(|d| *d > 0),
            parent: None,
            children: Vec::new(),
            runner_info: None,
            output: None,
        }
    }

    /// Whether it runs a workflow, whose tasks are child executions.
    pub fn is_workflow(&self) -> bool {
        matches!(self.runner.name.as_str(), "action-chain" | "orquesta")
    }

    /// The user the execution runs for (`context.user`).
    pub fn user(&self) -> &str {
        self.context.get("user").and_then(Value::as_str).unwrap_or("")
    }

    /// Moves to `status`, recording the change in `log` and, for a terminal status, the end time.
    pub fn transition(&mut self, status: Status, message: Option<String>) {
        let now = Timestamp::now();
        self.status = status;
        self.log.push(LogEntry { timestamp: now, status, message });
        if status.is_terminal() {
            self.end_timestamp = Some(now);
        }
    }
}
