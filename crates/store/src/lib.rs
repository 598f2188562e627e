//! Durable state: executions and their output logs. [`Store`] is the boundary every backend
//! implements; [`SqliteStore`] is the embedded backend and [`PgStore`] the distributed one. One
//! conformance suite (`tests/conformance.rs`) runs against every backend.

mod auth;
mod nodes;
mod payloads;
mod postgres;
mod private;
mod query;
pub mod retention;
mod sql;
mod sqlite;

use async_trait::async_trait;
use squall_core::output::StreamFilter;
use squall_core::{Execution, OutputRecord, Status, StreamKind};

pub use auth::{ApiKeyRecord, TokenRecord, UserRecord};
pub use nodes::NodeRecord;
pub use postgres::{PgSettings, PgStore};
pub use query::{ActionScope, ExecutionQuery, ParentFilter, PurgeScope, SortOrder};
pub use sqlite::SqliteStore;

/// The data a page of [`Store::read_output`] holds, at most (plus the last record's overshoot).
/// Measured on the `join` bench: 4 MiB pages read a log as fast as unbounded 16-record pages.
pub const PAGE_BYTES: u64 = 4 << 20;

/// What went wrong talking to storage. These are server-side failures (500s), never a client's
/// mistake; the message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored execution {id} is unreadable: {source}")]
    Corrupt { id: String, source: serde_json::Error },
    #[error("cannot open the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("database error: {0}")]
    Index(#[from] rusqlite::Error),
    /// A setting the backend cannot use; the message names it.
    #[error("{0}")]
    Config(String),
    #[error("output payload file {path}: {source}")]
    Payload { path: String, source: std::io::Error },
    /// An append to an execution that has ended (or does not exist): the writer was fenced
    /// off, e.g. a runner that came back after it was declared dead.
    #[error("execution {id} has ended; no more output can be appended to it")]
    Ended { id: String },
}

impl StoreError {
    /// Whether the failure is the storage being unreachable for now (a restart, a dropped
    /// connection) or out of space, so that the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        if self.is_disk_full() {
            return true;
        }
        match self {
            StoreError::Database(e) => match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
                // Connection exceptions (08…), the server shutting down or starting (57P…),
                // too many connections (53300).
                sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300"),
                _ => false,
            },
            _ => false,
        }
    }
}

impl StoreError {
    /// Whether the disk (or the quota) holding the data is full: nothing was stored, and the same
    /// write succeeds once space is freed. SQLite's SQLITE_FULL, PostgreSQL's `disk_full` (53100),
    /// or ENOSPC/EDQUOT from a payload file.
    pub fn is_disk_full(&self) -> bool {
        let io_full = |e: &std::io::Error| matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded);
        match self {
            StoreError::Payload { source, .. } => io_full(source),
            StoreError::Index(rusqlite::Error::SqliteFailure(e, _)) => e.code == rusqlite::ErrorCode::DiskFull,
            StoreError::Database(sqlx::Error::Io(e)) => io_full(e),
            // SQLITE_FULL is 13 (sqlx reports SQLite's code as a number), PostgreSQL's 53100.
            StoreError::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|c| c == "13" || c == "53100"),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The storage boundary. Implementations must make `append_output` durable before returning
/// (the log writer publishes only after it returns) and must keep `seq` order on reads.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers once the database can be reached and queried (`/readyz`).
    async fn ping(&self) -> Result<()>;

    async fn insert_execution(&self, execution: &Execution) -> Result<()>;

    /// Replaces the stored execution only if its stored status is still `expected`; returns
    /// whether it did. Every status change goes through here, so a cancel and a runner that
    /// finishes at the same moment cannot overwrite each other.
    async fn update_execution(&self, execution: &Execution, expected: Status) -> Result<bool>;

    async fn execution(&self, id: &str) -> Result<Option<Execution>>;

    /// The newest execution (by start time, then id): what `last` means.
    async fn latest_execution(&self) -> Result<Option<Execution>>;

    /// Matching executions (after limit/offset) and the number of matches ignoring them.
    async fn list_executions(&self, query: &ExecutionQuery) -> Result<(Vec<Execution>, u64)>;

    /// Every execution currently in one of `statuses` (start-up recovery).
    async fn executions_with_status(&self, statuses: &[Status]) -> Result<Vec<Execution>>;

    /// Appends records (all of one execution, in `seq` order) in one transaction (group
    /// commit). Fails with [`StoreError::Ended`] when the execution has ended or does not
    /// exist, so a writer that lost its execution (a runner declared dead) cannot add to it.
    async fn append_output(&self, records: &[OutputRecord]) -> Result<()>;

    /// Stores `execution` (already moved to `abandoned` by the caller) if its stored status is
    /// still `expected`, and in the same transaction appends `note` as an `output` record after
    /// its last record. Returns that record when it happened.
    async fn abandon(&self, execution: &Execution, expected: Status, note: &str) -> Result<Option<OutputRecord>>;

    /// Up to `limit` records of one execution with `seq > after`, in `seq` order, ending early
    /// with the record that brings the page to [`PAGE_BYTES`] of data (a page always has at
    /// least one record when there is one): many viewers catching up at once hold bounded
    /// memory whatever the records' sizes.
    async fn read_output(&self, execution_id: &str, after: u64, filter: StreamFilter, limit: u32) -> Result<Vec<OutputRecord>>;

    /// The `seq` of the last record that begins on a display line before `line` (its stored
    /// [`OutputRecord::line`]), or 0 when none does: line `line` starts in a record after it, so
    /// a line reader reads from there (`read_output(after = seq - 1)`) instead of from the start.
    async fn seq_before_line(&self, execution_id: &str, line: u64) -> Result<u64>;

    /// The `seq` of the last record of `stream` whose bytes begin at or before byte `offset` of
    /// that stream (0 when none does): a ranged read of the stream starts there.
    async fn seq_at_offset(&self, execution_id: &str, stream: StreamKind, offset: u64) -> Result<u64>;

    /// The highest stored `seq` of an execution (0 when it has none).
    async fn last_seq(&self, execution_id: &str) -> Result<u64>;

    /// Creates the user, or replaces its password hash when it exists.
    async fn put_user(&self, name: &str, password_hash: Option<&str>) -> Result<()>;
    /// Creates the user only if there is none of that name; false when there was (two nodes
    /// creating the first administrator at once: one wins, the other learns it).
    async fn create_user(&self, name: &str, password_hash: &str) -> Result<bool>;
    async fn user(&self, name: &str) -> Result<Option<UserRecord>>;
    async fn users(&self) -> Result<Vec<UserRecord>>;
    /// Removes the user and every token and API key of theirs; false when there was none.
    async fn delete_user(&self, name: &str) -> Result<bool>;

    async fn insert_token(&self, token: &TokenRecord) -> Result<()>;
    async fn token(&self, token_hash: &str) -> Result<Option<TokenRecord>>;
    async fn delete_token(&self, token_hash: &str) -> Result<()>;

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>>;
    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>>;
    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>>;
    /// Enables or disables a key; false when there is no such key.
    async fn set_api_key_enabled(&self, id: &str, enabled: bool) -> Result<bool>;
    async fn delete_api_key(&self, id: &str) -> Result<bool>;

    /// Up to `limit` ids of executions matching `scope` (oldest first). Used by retention,
    /// which then deletes them in batches.
    async fn purgeable(&self, scope: &PurgeScope, limit: u32) -> Result<Vec<String>>;

    /// Deletes up to `limit` output records of these executions; returns how many went. Called
    /// in a loop, so no single transaction holds the database for long.
    async fn delete_output_batch(&self, execution_ids: &[String], limit: u32) -> Result<u64>;

    /// Deletes execution rows (their output must be gone already); returns how many went.
    async fn delete_executions(&self, execution_ids: &[String]) -> Result<u64>;

    /// Returns freed pages to the file system, a bounded number at a time, and empties the WAL.
    async fn reclaim_space(&self) -> Result<()>;

    /// Registers a node (a `squall server` process) with a fresh lease.
    async fn register_node(&self, node: &NodeRecord) -> Result<()>;

    /// Renews a node's lease; false when the node is no longer registered (it was declared
    /// dead and must stop everything it runs).
    async fn renew_node(&self, node_id: &str) -> Result<bool>;

    /// Nodes whose lease was not renewed for `ttl`, judged by the store's own clock (never a
    /// node's). A backend whose server restarted within `ttl` reports none: nodes could not
    /// renew while it was down.
    async fn expired_nodes(&self, ttl: std::time::Duration) -> Result<Vec<NodeRecord>>;

    /// Removes a node; false when there was none.
    async fn remove_node(&self, node_id: &str) -> Result<bool>;

    /// Every registered node.
    async fn nodes(&self) -> Result<Vec<NodeRecord>>;
}
