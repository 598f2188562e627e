//! The distributed backend: every fact in PostgreSQL, output bytes included (one row per
//! record, `bytea` compressed with lz4), so any node can serve any execution.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row};

use squall_core::output::StreamFilter;
use squall_core::{Execution, OutputRecord, Status, StreamKind, Timestamp};

use crate::sql::{TERMINAL, push_filters};
use crate::{
    ApiKeyRecord, ExecutionQuery, NodeRecord, PAGE_BYTES, PurgeScope, Result, SortOrder, Store, StoreError, TokenRecord, UserRecord, sql,
};

/// How to reach PostgreSQL (`[database]`).
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/database?sslmode=…`; every libpq-style option sqlx
    /// understands (TLS included) is passed through.
    pub url: String,
    /// The schema squall's tables live in (created when missing); `None`: the server's
    /// default search path (usually `public`).
    pub schema: Option<String>,
    /// Connections this node keeps open at most.
    pub max_connections: u32,
}

/// PostgreSQL storage. Appends are one statement per group commit; a committed append is
/// durable (`synchronous_commit` as the server is configured, `on` by default).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// Serialises schema creation and migrations of nodes that start together (an advisory lock
/// key of squall's own; sqlx's migrator also takes one of its own).
const SETUP_LOCK: i64 = 0x7371_7561_6c6c; // "squall"

impl PgStore {
    /// Connects, creates the schema when asked for one, and applies the migrations (under an
    /// advisory lock, so nodes starting together do not race).
    pub async fn connect(settings: &PgSettings) -> Result<PgStore> {
        let mut options: PgConnectOptions = settings.url.parse()?;
        if let Some(schema) = &settings.schema {
            if schema.is_empty() || !schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                return Err(StoreError::Config(format!("[database] schema {schema:?}: use lower-case letters, digits and underscores")));
            }
            options = options.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)").bind(SETUP_LOCK).execute(&mut *conn).await?;
        let setup = async {
            if let Some(schema) = &settings.schema {
                sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))).execute(&mut *conn).await?;
            }
            sqlx::migrate!("./migrations/postgres").run(&mut *conn).await?;
            Ok::<_, StoreError>(())
        }
        .await;
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(SETUP_LOCK).execute(&mut *conn).await?;
        setup?;
        drop(conn);
        Ok(PgStore { pool })
    }

    /// Drops the schema and everything in it (tests; `squall` never calls this).
    pub async fn drop_schema(&self, schema: &str) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))).execute(&self.pool).await?;
        Ok(())
    }
}

fn decode_execution(row: &PgRow) -> Result<Execution> {
    let id: String = row.try_get("id")?;
    let doc: String = row.try_get("doc")?;
    serde_json::from_str(&doc).map_err(|source| StoreError::Corrupt { id, source })
}

fn encode(execution: &Execution) -> String {
    serde_json::to_string(execution).expect("an execution always serialises")
}

fn decode_record(execution_id: &str, row: &PgRow) -> Result<OutputRecord> {
    Ok(OutputRecord {
        execution_id: execution_id.to_string(),
        seq: row.try_get::<i64, _>("seq")? as u64,
        stream: StreamKind::from_code(row.try_get("stream")?).unwrap_or(StreamKind::Output),
        offset: row.try_get::<i64, _>("byte_offset")? as u64,
        timestamp: Timestamp(row.try_get("ts")?),
        host: row.try_get("host")?,
        line: row.try_get::<Option<i64>, _>("line")?.map(|l| l as u64),
        data: Bytes::from(row.try_get::<Vec<u8>, _>("data")?),
    })
}

fn decode_user(r: &PgRow) -> Result<UserRecord> {
    Ok(UserRecord { name: r.try_get("name")?, password_hash: r.try_get("password_hash")?, created: Timestamp(r.try_get("created_ts")?) })
}

fn decode_token(r: &PgRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        token_hash: r.try_get("token_hash")?,
        id: r.try_get("id")?,
        user: r.try_get("user_name")?,
        expiry: Timestamp(r.try_get("expiry_ts")?),
        service: r.try_get("service")?,
        created: Timestamp(r.try_get("created_ts")?),
    })
}

fn decode_api_key(r: &PgRow) -> Result<ApiKeyRecord> {
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

/// Node columns, with the lease times as microseconds since the epoch.
const NODE_COLUMNS: &str = "id, roles, hostname, pid, version,
    (extract(epoch FROM started_at) * 1000000)::bigint AS started_us,
    (extract(epoch FROM heartbeat_at) * 1000000)::bigint AS heartbeat_us";

fn decode_node(r: &PgRow) -> Result<NodeRecord> {
    Ok(NodeRecord {
        id: r.try_get("id")?,
        roles: r.try_get("roles")?,
        hostname: r.try_get("hostname")?,
        pid: r.try_get::<i64, _>("pid")? as u32,
        version: r.try_get("version")?,
        started: Timestamp(r.try_get("started_us")?),
        heartbeat: Timestamp(r.try_get("heartbeat_us")?),
    })
}

#[async_trait]
impl Store for PgStore {
    async fn insert_execution(&self, e: &Execution) -> Result<()> {
        sqlx::query(
            "INSERT INTO executions (id, status, action_ref, user_name, parent, start_ts, end_ts, doc)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
        Ok(())
    }

    async fn update_execution(&self, e: &Execution, expected: Status) -> Result<bool> {
        let done = sqlx::query("UPDATE executions SET status = $1, end_ts = $2, doc = $3 WHERE id = $4 AND status = $5")
            .bind(e.status.as_str())
            .bind(e.end_timestamp.map(Timestamp::micros))
            .bind(encode(e))
            .bind(&e.id)
            .bind(expected.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn execution(&self, id: &str) -> Result<Option<Execution>> {
        if !sql::storable(id) {
            return Ok(None);
        }
        let row = sqlx::query("SELECT id, doc FROM executions WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
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
        let mut count = QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM executions WHERE 1=1");
        push_filters(&mut count, q);
        let total: i64 = count.build().fetch_one(&self.pool).await?.try_get(0)?;

        let mut select = QueryBuilder::<Postgres>::new("SELECT id, doc FROM executions WHERE 1=1");
        push_filters(&mut select, q);
        select.push(match q.order {
            SortOrder::NewestFirst => " ORDER BY start_ts DESC, id DESC",
            SortOrder::OldestFirst => " ORDER BY start_ts ASC, id ASC",
        });
        select.push(" LIMIT ").push_bind(q.limit.map_or(i64::MAX, |l| l.min(i64::MAX as u64) as i64));
        select.push(" OFFSET ").push_bind(q.offset as i64);
        let rows = select.build().fetch_all(&self.pool).await?;
        let executions = rows.iter().map(decode_execution).collect::<Result<Vec<_>>>()?;
        Ok((executions, total as u64))
    }

    async fn executions_with_status(&self, statuses: &[Status]) -> Result<Vec<Execution>> {
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let rows = sqlx::query("SELECT id, doc FROM executions WHERE status = ANY($1) ORDER BY start_ts, id")
            .bind(statuses)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_execution).collect()
    }

    async fn append_output(&self, records: &[OutputRecord]) -> Result<()> {
        let Some(first) = records.first() else { return Ok(()) };
        // One statement: the execution's row is share-locked while the records go in, so an
        // `abandon` (which updates the row) either comes before (nothing is inserted) or after.
        let inserted = sqlx::query(AssertSqlSafe(format!(
            "WITH live AS (SELECT id FROM executions WHERE id = $1 AND status NOT IN {TERMINAL} FOR SHARE)
             INSERT INTO output (execution_id, seq, stream, byte_offset, ts, host, len, data, line)
             SELECT live.id, r.seq, r.stream, r.byte_offset, r.ts, r.host, length(r.data), r.data, r.line
             FROM live, unnest($2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::bytea[], $8::int8[])
                  AS r(seq, stream, byte_offset, ts, host, data, line)"
        )))
        .bind(&first.execution_id)
        .bind(records.iter().map(|r| r.seq as i64).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.stream.code()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.offset as i64).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.timestamp.micros()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.host.as_deref()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.data.as_ref()).collect::<Vec<&[u8]>>())
        .bind(records.iter().map(|r| r.line.map(|l| l as i64)).collect::<Vec<_>>())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Ended { id: first.execution_id.clone() });
        }
        Ok(())
    }

    async fn abandon(&self, e: &Execution, expected: Status, note: &str) -> Result<Option<OutputRecord>> {
        let mut tx = self.pool.begin().await?;
        // The update waits for an append in flight (it holds a share lock on the row); the
        // insert below then sees that append's records.
        let moved = sqlx::query("UPDATE executions SET status = $1, end_ts = $2, doc = $3 WHERE id = $4 AND status = $5")
            .bind(e.status.as_str())
            .bind(e.end_timestamp.map(Timestamp::micros))
            .bind(encode(e))
            .bind(&e.id)
            .bind(expected.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !moved {
            return Ok(None);
        }
        let now = Timestamp::now();
        let row = sqlx::query(
            "INSERT INTO output (execution_id, seq, stream, byte_offset, ts, host, len, data)
             SELECT $1, COALESCE(MAX(seq), 0) + 1, 3, COALESCE(SUM(len) FILTER (WHERE stream = 3), 0), $2, NULL, length($3), $3
             FROM output WHERE execution_id = $1
             RETURNING seq, byte_offset",
        )
        .bind(&e.id)
        .bind(now.micros())
        .bind(note.as_bytes())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(OutputRecord {
            execution_id: e.id.clone(),
            seq: row.try_get::<i64, _>("seq")? as u64,
            stream: StreamKind::Output,
            offset: row.try_get::<i64, _>("byte_offset")? as u64,
            timestamp: now,
            host: None,
            line: None,
            data: Bytes::copy_from_slice(note.as_bytes()),
        }))
    }

    async fn read_output(&self, execution_id: &str, after: u64, filter: StreamFilter, limit: u32) -> Result<Vec<OutputRecord>> {
        let stream = match filter {
            StreamFilter::All => None,
            StreamFilter::Only(kind) => Some(kind.code()),
            StreamFilter::Nothing => return Ok(Vec::new()),
        };
        // The page ends with the record that brings it to PAGE_BYTES: rows after it are cut
        // by their `len`, before their data is read.
        let rows = sqlx::query(
            "SELECT seq, stream, byte_offset, ts, host, line, data FROM (
                 SELECT seq, stream, byte_offset, ts, host, line, data, SUM(len) OVER (ORDER BY seq) - len AS before
                 FROM output
                 WHERE execution_id = $1 AND seq > $2 AND ($3::int8 IS NULL OR stream = $3)
                 ORDER BY seq LIMIT $4
             ) page WHERE before < $5 ORDER BY seq",
        )
        .bind(execution_id)
        .bind(after as i64)
        .bind(stream)
        .bind(i64::from(limit))
        .bind(PAGE_BYTES as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| decode_record(execution_id, row)).collect()
    }

    async fn seq_before_line(&self, execution_id: &str, line: u64) -> Result<u64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM output WHERE execution_id = $1 AND line < $2")
            .bind(execution_id)
            .bind(line.min(i64::MAX as u64) as i64)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    async fn seq_at_offset(&self, execution_id: &str, stream: StreamKind, offset: u64) -> Result<u64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM output WHERE execution_id = $1 AND stream = $2 AND byte_offset <= $3")
            .bind(execution_id)
            .bind(stream.code())
            .bind(offset.min(i64::MAX as u64) as i64)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    async fn last_seq(&self, execution_id: &str) -> Result<u64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM output WHERE execution_id = $1")
            .bind(execution_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    async fn put_user(&self, name: &str, password_hash: Option<&str>) -> Result<()> {
        sqlx::query(
            "INSERT INTO users (name, password_hash, created_ts) VALUES ($1, $2, $3)
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
        let done = sqlx::query("INSERT INTO users (name, password_hash, created_ts) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(password_hash)
            .bind(Timestamp::now().micros())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        if !sql::storable(name) {
            return Ok(None);
        }
        let row =
            sqlx::query("SELECT name, password_hash, created_ts FROM users WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode_user).transpose()
    }

    async fn users(&self) -> Result<Vec<UserRecord>> {
        let rows = sqlx::query("SELECT name, password_hash, created_ts FROM users ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(decode_user).collect()
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM users WHERE name = $1").bind(name).execute(&mut *tx).await?.rows_affected() == 1;
        sqlx::query("DELETE FROM tokens WHERE user_name = $1").bind(name).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM api_keys WHERE user_name = $1").bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(gone)
    }

    async fn insert_token(&self, t: &TokenRecord) -> Result<()> {
        sqlx::query("INSERT INTO tokens (token_hash, id, user_name, expiry_ts, service, created_ts) VALUES ($1, $2, $3, $4, $5, $6)")
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
        let row = sqlx::query("SELECT token_hash, id, user_name, expiry_ts, service, created_ts FROM tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_token).transpose()
    }

    async fn delete_token(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM tokens WHERE token_hash = $1").bind(token_hash).execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_api_key(&self, k: &ApiKeyRecord) -> Result<()> {
        sqlx::query("INSERT INTO api_keys (id, key_hash, user_name, enabled, metadata, created_ts) VALUES ($1, $2, $3, $4, $5, $6)")
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
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = $1").bind(key_hash).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode_api_key).transpose()
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        if !sql::storable(id) {
            return Ok(None);
        }
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode_api_key).transpose()
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_ts, id").fetch_all(&self.pool).await?;
        rows.iter().map(decode_api_key).collect()
    }

    async fn set_api_key_enabled(&self, id: &str, enabled: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE api_keys SET enabled = $1 WHERE id = $2").bind(enabled).bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_keys WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purgeable(&self, scope: &PurgeScope, limit: u32) -> Result<Vec<String>> {
        let rows = sql::purgeable::<Postgres>(scope, limit).build().fetch_all(&self.pool).await?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(StoreError::from)).collect()
    }

    async fn delete_output_batch(&self, execution_ids: &[String], limit: u32) -> Result<u64> {
        let done = sqlx::query("DELETE FROM output WHERE ctid = ANY(ARRAY(SELECT ctid FROM output WHERE execution_id = ANY($1) LIMIT $2))")
            .bind(execution_ids)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn delete_executions(&self, execution_ids: &[String]) -> Result<u64> {
        let done = sqlx::query("DELETE FROM executions WHERE id = ANY($1)").bind(execution_ids).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    /// Autovacuum reclaims the space of deleted rows for reuse; nothing to do here.
    async fn reclaim_space(&self) -> Result<()> {
        Ok(())
    }

    async fn register_node(&self, n: &NodeRecord) -> Result<()> {
        sqlx::query("INSERT INTO nodes (id, roles, hostname, pid, version) VALUES ($1, $2, $3, $4, $5)")
            .bind(&n.id)
            .bind(&n.roles)
            .bind(&n.hostname)
            .bind(i64::from(n.pid))
            .bind(&n.version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn renew_node(&self, node_id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE nodes SET heartbeat_at = now() WHERE id = $1").bind(node_id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn expired_nodes(&self, ttl: Duration) -> Result<Vec<NodeRecord>> {
        // After a restart of PostgreSQL nobody could renew for a while: wait a full lease
        // after it came back before judging anyone.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {NODE_COLUMNS} FROM nodes
             WHERE heartbeat_at < now() - make_interval(secs => $1)
               AND now() - pg_postmaster_start_time() > make_interval(secs => $1)
             ORDER BY id"
        )))
        .bind(ttl.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_node).collect()
    }

    async fn remove_node(&self, node_id: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM nodes WHERE id = $1").bind(node_id).execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let rows =
            sqlx::query(AssertSqlSafe(format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY started_at, id"))).fetch_all(&self.pool).await?;
        rows.iter().map(decode_node).collect()
    }
}
