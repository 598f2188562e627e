//! The embedded backend: one SQLite file in WAL mode, and output payloads in one append-only
//! file per execution beside it (`payloads`).

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::OptionalExtension;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite, SqlitePool};

use squall_core::output::StreamFilter;
use squall_core::{Execution, OutputRecord, Status, StreamKind, Timestamp};

use crate::payloads::{self, Payloads, Span};
use crate::sql::{TERMINAL, push_filters, push_list};
use crate::{
    ApiKeyRecord, ExecutionQuery, NodeRecord, PAGE_BYTES, PurgeScope, Result, SortOrder, Store, StoreError, TokenRecord, UserRecord,
    private, sql,
};

/// SQLite storage. WAL with `synchronous = NORMAL`: a committed transaction survives a crash of
/// the squall process (it is in the WAL file); only an operating-system crash can lose the
/// last commits. Output bytes live in `<data_dir>/output/<execution id>.log`, indexed by the
/// `output` table.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Also the payload files' reader and remover (`appender.payloads`).
    appender: Appender,
    /// When the last background checkpoint started (milliseconds since `epoch`).
    last_checkpoint: Arc<AtomicU64>,
    epoch: std::time::Instant,
}

/// Connections of the pool, all open for the store's life.
const CONNECTIONS: u32 = 8;

/// How often writes start a background WAL checkpoint. SQLite's own automatic checkpoint is
/// off: it would run, with its fsyncs, inside whichever commit crossed the threshold, and a
/// live viewer would wait for it.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Appends up to this many bytes run on the calling thread.
const INLINE_APPEND: usize = 64 * 1024;

/// The output log's append path, and every status change: one rusqlite connection used on the
/// calling thread (small batches inline, large ones on the blocking pool). sqlx would hand every
/// commit to its worker thread and back, and on the append path a live viewer waits for the
/// commit (measured: 0.16 ms of the 0.29 ms write → viewer p50).
///
/// The fence (no output once an execution has ended) costs nothing per batch: status changes
/// go through this same connection, under the same lock, so the set of executions already seen
/// running is exact, and only an execution's first batch reads its status.
#[derive(Debug, Clone)]
struct Appender {
    payloads: Payloads,
    index: Arc<Mutex<Index>>,
}

#[derive(Debug)]
struct Index {
    conn: rusqlite::Connection,
    /// Executions known not to have ended (checked once, forgotten when they end or go).
    live: HashSet<String>,
}

const UPDATE: &str = "UPDATE executions SET status = ?1, end_ts = ?2, doc = ?3 WHERE id = ?4 AND status = ?5";

impl Appender {
    fn open(db: &Path, payloads: Payloads) -> Result<Appender> {
        let conn = rusqlite::Connection::open(db)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(Appender { payloads, index: Arc::new(Mutex::new(Index { conn, live: HashSet::new() })) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Blocking: writes the bytes, then commits the rows that point at them — if the
    /// execution has not ended (the bytes of a refused batch stay unindexed, never read).
    fn append(&self, records: &[OutputRecord]) -> Result<()> {
        let id = &records[0].execution_id;
        let spans = self.payloads.append(records)?;
        let mut index = self.lock();
        if !index.live.contains(id) {
            let live: Option<bool> = index
                .conn
                .prepare_cached(&format!("SELECT status NOT IN {TERMINAL} FROM executions WHERE id = ?1"))?
                .query_row([id], |row| row.get(0))
                .optional()?;
            if live != Some(true) {
                return Err(StoreError::Ended { id: id.clone() });
            }
            index.live.insert(id.clone());
        }
        let tx = index.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO output (execution_id, seq, stream, byte_offset, ts, host, data, file_pos, len, line)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, x'', ?7, ?8, ?9)",
            )?;
            for (r, span) in records.iter().zip(spans) {
                insert.execute(rusqlite::params![
                    r.execution_id,
                    r.seq as i64,
                    r.stream.code(),
                    r.offset as i64,
                    r.timestamp.micros(),
                    r.host,
                    span.pos as i64,
                    span.len as i64,
                    r.line.map(|l| l as i64)
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The status compare-and-set.
    fn update(&self, e: &Execution, expected: Status) -> Result<bool> {
        let mut index = self.lock();
        let moved = index.conn.prepare_cached(UPDATE)?.execute(rusqlite::params![
            e.status.as_str(),
            e.end_timestamp.map(Timestamp::micros),
            encode(e),
            e.id,
            expected.as_str()
        ])? == 1;
        if moved && e.status.is_terminal() {
            index.live.remove(&e.id);
        }
        Ok(moved)
    }

    /// The compare-and-set to `abandoned` and its note after the last record, in one
    /// transaction. A note is small: its bytes stay in the row (`file_pos` NULL).
    fn abandon(&self, e: &Execution, expected: Status, note: &str) -> Result<Option<OutputRecord>> {
        let mut index = self.lock();
        let tx = index.conn.transaction()?;
        let moved = tx.prepare_cached(UPDATE)?.execute(rusqlite::params![
            e.status.as_str(),
            e.end_timestamp.map(Timestamp::micros),
            encode(e),
            e.id,
            expected.as_str()
        ])? == 1;
        if !moved {
            return Ok(None);
        }
        let (seq, offset): (i64, i64) = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1, COALESCE(SUM(CASE WHEN stream = 3 THEN COALESCE(len, length(data)) END), 0)
             FROM output WHERE execution_id = ?1",
            [&e.id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let record = OutputRecord {
            execution_id: e.id.clone(),
            seq: seq as u64,
            stream: StreamKind::Output,
            offset: offset as u64,
            timestamp: Timestamp::now(),
            host: None,
            line: None,
            data: Bytes::copy_from_slice(note.as_bytes()),
        };
        tx.execute(
            "INSERT INTO output (execution_id, seq, stream, byte_offset, ts, host, data, len) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7)",
            rusqlite::params![e.id, seq, record.stream.code(), offset, record.timestamp.micros(), note.as_bytes(), note.len() as i64],
        )?;
        tx.commit()?;
        index.live.remove(&e.id);
        Ok(Some(record))
    }

    /// Deletes execution rows (their output must be gone already).
    fn delete(&self, ids: &[String]) -> Result<u64> {
        let mut index = self.lock();
        let tx = index.conn.transaction()?;
        let mut deleted = 0;
        {
            let mut delete = tx.prepare_cached("DELETE FROM executions WHERE id = ?1")?;
            for id in ids {
                deleted += delete.execute([id])? as u64;
            }
        }
        tx.commit()?;
        for id in ids {
            index.live.remove(id);
        }
        Ok(deleted)
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) `<data_dir>/squall.db`. The data directory is
    /// private to the server's user (0700) and its database files 0600; looser modes left by an
    /// older version are tightened.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore> {
        private::directory(data_dir)?;
        let path = data_dir.join("squall.db");
        private::database_files(&path)?;
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .pragma("temp_store", "memory")
            .pragma("wal_autocheckpoint", "0")
            // Lets retention hand freed pages back to the file system (effective on new files).
            .auto_vacuum(sqlx::sqlite::SqliteAutoVacuum::Incremental);
        // One connection creates and migrates the database first: the pool opens its
        // connections all at once, and on a new file their journal-mode switches and the
        // migrations' writes would meet, which SQLite answers with "database is locked" at once
        // rather than waiting (a server once failed to start so).
        {
            let mut first = options.connect().await?;
            sqlx::migrate!("./migrations/sqlite").run(&mut first).await?;
            first.close().await?;
        }
        // The connections are opened once and kept: a new one runs its pragmas as a write, which
        // fails while the disk is full, and reads must go on then.
        let pool = SqlitePoolOptions::new()
            .max_connections(CONNECTIONS)
            .min_connections(CONNECTIONS)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        let payloads = Payloads::open(data_dir.join("output"))?;
        let appender = Appender::open(&path, payloads)?;
        Ok(SqliteStore { pool, appender, last_checkpoint: Arc::default(), epoch: std::time::Instant::now() })
    }
}

fn decode_execution(row: &SqliteRow) -> Result<Execution> {
    let id: String = row.try_get("id")?;
    let doc: String = row.try_get("doc")?;
    serde_json::from_str(&doc).map_err(|source| StoreError::Corrupt { id, source })
}

fn encode(execution: &Execution) -> String {
    serde_json::to_string(execution).expect("an execution always serialises")
}

fn decode_record(execution_id: &str, row: &SqliteRow) -> Result<OutputRecord> {
    let stream: i64 = row.try_get("stream")?;
    Ok(OutputRecord {
        execution_id: execution_id.to_string(),
        seq: row.try_get::<i64, _>("seq")? as u64,
        stream: StreamKind::from_code(stream).unwrap_or(StreamKind::Output),
        offset: row.try_get::<i64, _>("byte_offset")? as u64,
        timestamp: Timestamp(row.try_get("ts")?),
        host: row.try_get("host")?,
        line: row.try_get::<Option<i64>, _>("line")?.map(|l| l as u64),
        data: Bytes::from(row.try_get::<Vec<u8>, _>("data")?),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_execution(&self, e: &Execution) -> Result<()> {
        sqlx::query(
            "INSERT INTO executions (id, status, action_ref, user_name, parent, start_ts, end_ts, doc)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.id)
        .bind(e.status.as_str())
        .bind(&e.action.ref_)
        .bind(e.user())
        .bind(e.parent.as_deref())
        .bind(e.start_timestamp.micros())
        .bind(e.end_timestamp.map(Timestamp::micros))
        .bind(encode(e))
        .execute(&self.pool)
        .await?;
        self.checkpoint_if_due();
        Ok(())
    }

    async fn update_execution(&self, e: &Execution, expected: Status) -> Result<bool> {
        let moved = self.appender.update(e, expected)?;
        self.checkpoint_if_due();
        Ok(moved)
    }

    async fn execution(&self, id: &str) -> Result<Option<Execution>> {
        let row = sqlx::query("SELECT id, doc FROM executions WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode_execution).transpose()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn latest_execution(&self) -> Result<Option<Execution>> {
        let row = sqlx::query("SELECT id, doc FROM executions ORDER BY start_ts DESC, id DESC LIMIT 1").fetch_optional(&self.pool).await?;
        row.as_ref().map(decode_execution).transpose()
    }

    async fn list_executions(&self, q: &ExecutionQuery) -> Result<(Vec<Execution>, u64)> {
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM executions WHERE 1=1");
        push_filters(&mut count, q);
        let total: i64 = count.build().fetch_one(&self.pool).await?.try_get(0)?;

        let mut select = QueryBuilder::<Sqlite>::new("SELECT id, doc FROM executions WHERE 1=1");
        push_filters(&mut select, q);
        select.push(match q.order {
            SortOrder::NewestFirst => " ORDER BY start_ts DESC, id DESC",
            SortOrder::OldestFirst => " ORDER BY start_ts ASC, id ASC",
        });
        select.push(" LIMIT ").push_bind(q.limit.map_or(-1, |l| l as i64));
        select.push(" OFFSET ").push_bind(q.offset as i64);
        let rows = select.build().fetch_all(&self.pool).await?;
        let executions = rows.iter().map(decode_execution).collect::<Result<Vec<_>>>()?;
        Ok((executions, total as u64))
    }

    async fn executions_with_status(&self, statuses: &[Status]) -> Result<Vec<Execution>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT id, doc FROM executions WHERE status IN (");
        let mut list = q.separated(", ");
        for s in statuses {
            list.push_bind(s.as_str());
        }
        q.push(") ORDER BY start_ts, id");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(decode_execution).collect()
    }

    async fn append_output(&self, records: &[OutputRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // A small append takes microseconds: cheaper on this thread than a hand-off, which a
        // live viewer would wait for. Large batches go to the blocking pool.
        if records.iter().map(|r| r.data.len()).sum::<usize>() <= INLINE_APPEND {
            self.appender.append(records)?;
        } else {
            let (appender, records) = (self.appender.clone(), records.to_vec());
            payloads::blocking(move || appender.append(&records)).await?;
        }
        self.checkpoint_if_due();
        Ok(())
    }

    async fn read_output(&self, execution_id: &str, after: u64, filter: StreamFilter, limit: u32) -> Result<Vec<OutputRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT seq, stream, byte_offset, ts, host, line, data, file_pos, len FROM output WHERE execution_id = ",
        );
        q.push_bind(execution_id).push(" AND seq > ").push_bind(after as i64);
        match filter {
            StreamFilter::All => {}
            StreamFilter::Only(kind) => {
                q.push(" AND stream = ").push_bind(kind.code());
            }
            StreamFilter::Nothing => return Ok(Vec::new()),
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        let mut records = Vec::with_capacity(rows.len());
        let (mut spans, mut in_files, mut bytes) = (Vec::new(), Vec::new(), 0);
        for row in &rows {
            if bytes >= PAGE_BYTES {
                break;
            }
            let record = decode_record(execution_id, row)?;
            if let Some(pos) = row.try_get::<Option<i64>, _>("file_pos")? {
                let len = row.try_get::<Option<i64>, _>("len")?.unwrap_or(0) as u64;
                spans.push(Span { pos: pos as u64, len });
                in_files.push(records.len());
                bytes += len;
            } else {
                bytes += record.data.len() as u64;
            }
            records.push(record);
        }
        for (at, data) in in_files.into_iter().zip(self.appender.payloads.read(execution_id, spans).await?) {
            records[at].data = data;
        }
        Ok(records)
    }

    async fn seq_before_line(&self, execution_id: &str, line: u64) -> Result<u64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM output WHERE execution_id = ? AND line IS NOT NULL AND line < ?")
            .bind(execution_id)
            .bind(line.min(i64::MAX as u64) as i64)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    async fn seq_at_offset(&self, execution_id: &str, stream: StreamKind, offset: u64) -> Result<u64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM output WHERE execution_id = ? AND stream = ? AND byte_offset <= ?")
            .bind(execution_id)
            .bind(stream.code())
            .bind(offset.min(i64::MAX as u64) as i64)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    async fn last_seq(&self, execution_id: &str) -> Result<u64> {
        let row =
            sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM output WHERE execution_id = ?").bind(execution_id).fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    async fn put_user(&self, name: &str, password_hash: Option<&str>) -> Result<()> {
        sqlx::query(
            "INSERT INTO users (name, password_hash, created_ts) VALUES (?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash",
        )
        .bind(name)
        .bind(password_hash)
        .bind(Timestamp::now().micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn create_user(&self, name: &str, password_hash: &str) -> Result<bool> {
        let done = sqlx::query("INSERT INTO users (name, password_hash, created_ts) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(password_hash)
            .bind(Timestamp::now().micros())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        let row =
            sqlx::query("SELECT name, password_hash, created_ts FROM users WHERE name = ?").bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode_user).transpose()
    }

    async fn users(&self) -> Result<Vec<UserRecord>> {
        let rows = sqlx::query("SELECT name, password_hash, created_ts FROM users ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(decode_user).collect()
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM users WHERE name = ?").bind(name).execute(&mut *tx).await?.rows_affected() == 1;
        sqlx::query("DELETE FROM tokens WHERE user_name = ?").bind(name).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM api_keys WHERE user_name = ?").bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(gone)
    }

    async fn insert_token(&self, t: &TokenRecord) -> Result<()> {
        sqlx::query("INSERT INTO tokens (token_hash, id, user_name, expiry_ts, service, created_ts) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&t.token_hash)
            .bind(&t.id)
            .bind(&t.user)
            .bind(t.expiry.micros())
            .bind(t.service)
            .bind(t.created.micros())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn token(&self, token_hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query("SELECT token_hash, id, user_name, expiry_ts, service, created_ts FROM tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| -> Result<TokenRecord> {
            Ok(TokenRecord {
                token_hash: r.try_get("token_hash")?,
                id: r.try_get("id")?,
                user: r.try_get("user_name")?,
                expiry: Timestamp(r.try_get("expiry_ts")?),
                service: r.try_get("service")?,
                created: Timestamp(r.try_get("created_ts")?),
            })
        })
        .transpose()
    }

    async fn delete_token(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM tokens WHERE token_hash = ?").bind(token_hash).execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_api_key(&self, k: &ApiKeyRecord) -> Result<()> {
        sqlx::query("INSERT INTO api_keys (id, key_hash, user_name, enabled, metadata, created_ts) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&k.id)
            .bind(&k.key_hash)
            .bind(&k.user)
            .bind(k.enabled)
            .bind(k.metadata.to_string())
            .bind(k.created.micros())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = ?").bind(key_hash).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode_api_key).transpose()
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode_api_key).transpose()
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_ts, id").fetch_all(&self.pool).await?;
        rows.iter().map(decode_api_key).collect()
    }

    async fn set_api_key_enabled(&self, id: &str, enabled: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE api_keys SET enabled = ? WHERE id = ?").bind(enabled).bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_keys WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purgeable(&self, scope: &PurgeScope, limit: u32) -> Result<Vec<String>> {
        let rows = sql::purgeable::<Sqlite>(scope, limit).build().fetch_all(&self.pool).await?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(StoreError::from)).collect()
    }

    async fn delete_output_batch(&self, execution_ids: &[String], limit: u32) -> Result<u64> {
        let mut q = QueryBuilder::<Sqlite>::new("DELETE FROM output WHERE rowid IN (SELECT rowid FROM output WHERE execution_id IN (");
        push_list(&mut q, execution_ids);
        q.push(") LIMIT ").push_bind(i64::from(limit)).push(")");
        let deleted = q.build().execute(&self.pool).await?.rows_affected();
        // Executions with no index row left lose their payload file.
        let mut q = QueryBuilder::<Sqlite>::new("SELECT DISTINCT execution_id FROM output WHERE execution_id IN (");
        push_list(&mut q, execution_ids);
        q.push(")");
        let left: Vec<String> = q.build().fetch_all(&self.pool).await?.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
        let empty: Vec<String> = execution_ids.iter().filter(|id| !left.contains(id)).cloned().collect();
        self.appender.payloads.remove(&empty).await?;
        Ok(deleted)
    }

    async fn delete_executions(&self, execution_ids: &[String]) -> Result<u64> {
        let (appender, ids) = (self.appender.clone(), execution_ids.to_vec());
        payloads::blocking(move || appender.delete(&ids)).await
    }

    async fn reclaim_space(&self) -> Result<()> {
        sqlx::query("PRAGMA incremental_vacuum(4096)").execute(&self.pool).await?;
        // Copy the WAL into the database and empty it, so the files shrink now.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await?;
        Ok(())
    }

    async fn abandon(&self, e: &Execution, expected: Status, note: &str) -> Result<Option<OutputRecord>> {
        let note = self.appender.abandon(e, expected, note)?;
        self.checkpoint_if_due();
        Ok(note)
    }

    async fn register_node(&self, n: &NodeRecord) -> Result<()> {
        let now = Timestamp::now().micros();
        sqlx::query("INSERT INTO nodes (id, roles, hostname, pid, version, started_ts, heartbeat_ts) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(&n.id)
            .bind(&n.roles)
            .bind(&n.hostname)
            .bind(i64::from(n.pid))
            .bind(&n.version)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn renew_node(&self, node_id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE nodes SET heartbeat_ts = ? WHERE id = ?")
            .bind(Timestamp::now().micros())
            .bind(node_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn expired_nodes(&self, ttl: Duration) -> Result<Vec<NodeRecord>> {
        let before = Timestamp::now().micros() - ttl.as_micros() as i64;
        let rows = sqlx::query("SELECT * FROM nodes WHERE heartbeat_ts < ? ORDER BY id").bind(before).fetch_all(&self.pool).await?;
        rows.iter().map(decode_node).collect()
    }

    async fn remove_node(&self, node_id: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM nodes WHERE id = ?").bind(node_id).execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let rows = sqlx::query("SELECT * FROM nodes ORDER BY started_ts, id").fetch_all(&self.pool).await?;
        rows.iter().map(decode_node).collect()
    }
}

fn decode_node(r: &SqliteRow) -> Result<NodeRecord> {
    Ok(NodeRecord {
        id: r.try_get("id")?,
        roles: r.try_get("roles")?,
        hostname: r.try_get("hostname")?,
        pid: r.try_get::<i64, _>("pid")? as u32,
        version: r.try_get("version")?,
        started: Timestamp(r.try_get("started_ts")?),
        heartbeat: Timestamp(r.try_get("heartbeat_ts")?),
    })
}

impl SqliteStore {
    /// Starts a `PASSIVE` checkpoint on another connection when the last one is
    /// `CHECKPOINT_EVERY` old; it copies the WAL into the database without blocking writers.
    fn checkpoint_if_due(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_checkpoint.load(Ordering::Relaxed);
        if now.saturating_sub(last) < CHECKPOINT_EVERY.as_millis() as u64
            || self.last_checkpoint.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        });
    }
}

fn decode_user(r: &SqliteRow) -> Result<UserRecord> {
    Ok(UserRecord { name: r.try_get("name")?, password_hash: r.try_get("password_hash")?, created: Timestamp(r.try_get("created_ts")?) })
}

fn decode_api_key(r: &SqliteRow) -> Result<ApiKeyRecord> {
    let metadata: String = r.try_get("metadata")?;
    Ok(ApiKeyRecord {
        id: r.try_get("id")?,
        key_hash: r.try_get("key_hash")?,
        user: r.try_get("user_name")?,
        enabled: r.try_get("enabled")?,
        metadata: serde_json::from_str(&metadata).unwrap_or(serde_json::Value::Null),
        created: Timestamp(r.try_get("created_ts")?),
    })
}
