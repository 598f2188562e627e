//! The result of a shell runner, in StackStorm's shape.

use serde_json::{Value, json};

use crate::status::Status;

/// How a shell action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The process exited with this code (a signal `n` is reported as `-n`).
    Code(i32),
    /// squall killed it because it ran past its timeout (seconds).
    TimedOut(u64),
    /// squall killed it because a user canceled it.
    Canceled,
}

/// Status for an exit, with StackStorm's mapping: 0 → succeeded, timeout → timeout,
/// killed by SIGTERM (−15) → abandoned, anything else → failed.
pub fn status_for(exit: Exit) -> Status {
    match exit {
        Exit::Code(0) => Status::Succeeded,
        Exit::Code(-15) => Status::Abandoned,
        Exit::Code(_) => Status::Failed,
        Exit::TimedOut(_) => Status::Timeout,
        Exit::Canceled => Status::Canceled,
    }
}

/// `{failed, succeeded, return_code, stdout, stderr}` (+ `error` on timeout). stdout and stderr
/// lose exactly one trailing `\n`, then one trailing `\r`, and are JSON-decoded when they are
/// valid JSON — what StackStorm does and workflows rely on.
pub fn shell_result(exit: Exit, stdout: &str, stderr: &str) -> Value {
    let code = match exit {
        Exit::Code(c) => c,
        Exit::TimedOut(_) => -9,
        Exit::Canceled => -15,
    };
    let succeeded = code == 0;
    let mut result = json!({
        "failed": !succeeded,
        "succeeded": succeeded,
        "return_code": code,
        "stdout": decode(stdout),
        "stderr": decode(stderr),
    });
    if let Exit::TimedOut(secs) = exit {
        result["error"] = Value::String(format!("Action failed to complete in {secs} seconds"));
    }
    result
}

fn decode(text: &str) -> Value {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let trimmed = text.trim_start();
    if (trimmed.starts_with(['{', '[', '"']) || trimmed.parse::<f64>().is_ok() || matches!(trimmed, "true" | "false" | "null"))
        && let Ok(v) = serde_json::from_str::<Value>(text)
    {
        return v;
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_one_newline_and_decodes_json() {
        let r = shell_result(Exit::Code(0), "{\"a\":1}\n", "oops\n\n");
        assert_eq!(r["stdout"], json!({"a": 1}));
        assert_eq!(r["stderr"], json!("oops\n"));
        assert_eq!(shell_result(Exit::Code(0), "5\n", "")["stdout"], json!(5));
        assert_eq!(shell_result(Exit::Code(0), "hi\r\n", "")["stdout"], json!("hi"));
    }

    #[test]
    fn timeout_result() {
        let r = shell_result(Exit::TimedOut(3), "", "");
        assert_eq!(r["return_code"], json!(-9));
        assert_eq!(r["error"], json!("Action failed to complete in 3 seconds"));
        assert_eq!(status_for(Exit::TimedOut(3)), Status::Timeout);
        assert_eq!(status_for(Exit::Code(2)), Status::Failed);
    }
}
