//! The execution list query, independent of any backend's query language.

use squall_core::Timestamp;

/// Which executions a list request wants, already validated by the caller.
#[derive(Debug, Clone, Default)]
pub struct ExecutionQuery {
    pub ids: Option<Vec<String>>,
    pub status: Option<String>,
    pub action: Option<String>,
    pub user: Option<String>,
    pub parent: ParentFilter,
    pub start_after: Option<Timestamp>,
    pub start_before: Option<Timestamp>,
    pub order: SortOrder,
    /// `None` means no limit.
    pub limit: Option<u64>,
    pub offset: u64,
}

/// `parent=null` selects top-level executions; `parent=<id>` the children of one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ParentFilter {
    #[default]
    Any,
    None,
    Is(String),
}

/// Which executions a retention pass may touch.
#[derive(Debug, Clone, Default)]
pub struct PurgeScope {
    /// Finished (any terminal status, `abandoned` included) before this time.
    pub ended_before: Option<Timestamp>,
    /// Also executions in any other status that started before this time
    /// (`--include-running-older-than`).
    pub unfinished_started_before: Option<Timestamp>,
    /// Only executions that still have output (an output-only purge).
    pub with_output: bool,
    /// Only these actions (refs) or packs; empty means all.
    pub only: Vec<String>,
    /// Never these actions (refs) or packs (they have their own retention).
    pub except: Vec<String>,
}

/// Order on start time (ties broken by id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortOrder {
    #[default]
    NewestFirst,
    OldestFirst,
}
