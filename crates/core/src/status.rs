//! The execution status machine, with StackStorm's exact status strings.

use serde::{Deserialize, Serialize};

/// Where an execution is in its life. The strings are StackStorm's, because clients compare
/// them literally (the `st2` CLI keeps polling only on a few of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

impl Status {
    pub const ALL: [Status; 14] = [
        Status::Requested,
        Status::Scheduled,
        Status::Delayed,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Timeout,
        Status::Abandoned,
        Status::Canceling,
        Status::Canceled,
        Status::Pending,
        Status::Pausing,
        Status::Paused,
        Status::Resuming,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Scheduled => "scheduled",
            Status::Delayed => "delayed",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Abandoned => "abandoned",
            Status::Canceling => "canceling",
            Status::Canceled => "canceled",
            Status::Pending => "pending",
            Status::Pausing => "pausing",
            Status::Paused => "paused",
            Status::Resuming => "resuming",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Completed states: nothing more will happen to the execution.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Timeout | Status::Canceled | Status::Abandoned)
    }

    /// States from which a cancel request is accepted (StackStorm's list).
    pub fn is_cancelable(self) -> bool {
        matches!(
            self,
            Status::Requested | Status::Scheduled | Status::Delayed | Status::Running | Status::Pausing | Status::Paused | Status::Resuming
        )
    }

    /// Waiting to start: not yet handed to a runner process.
    pub fn is_waiting(self) -> bool {
        matches!(self, Status::Requested | Status::Scheduled | Status::Delayed)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip() {
        for st in Status::ALL {
            assert_eq!(Status::parse(st.as_str()), Some(st));
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{}\"", st.as_str()));
        }
        assert_eq!(Status::parse("done"), None);
    }

    #[test]
    fn terminal_and_cancelable_are_disjoint() {
        for st in Status::ALL {
            assert!(!(st.is_terminal() && st.is_cancelable()), "{st}");
        }
    }
}
