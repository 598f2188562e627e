//! The execution list query, independent of any backend's query language.

use squall_core::Timestamp;

/// Which executions a list request wants, already validated by the caller.
#[derive(Debug, Clone, Default)]
pub struct ExecutionQuery {
    pub ids: Option<Vec<String>>,
    pub status: Option<String>,
    pub action: Option<String>,
    pub user: Option<String>,
    /// Only executions of the actions in this scope (`None`: of any action). A caller whose
    /// `execution_view` is granted on some packs or actions only may list no other executions;
    /// the database applies it, so paging and totals count only those.
    pub actions_in: Option<ActionScope>,
    pub parent: ParentFilter,
    pub start_after: Option<Timestamp>,
    pub start_before: Option<Timestamp>,
    pub order: SortOrder,
    /// `None` means no limit.
    pub limit: Option<u64>,
    pub offset: u64,
}

/// A set of actions: every action of `packs`, and the actions `refs` (`pack.name`). An empty
/// scope holds none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionScope {
    pub packs: Vec<String>,
    pub refs: Vec<String>,
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
