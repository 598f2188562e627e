//! SQL that every SQL backend shares: the execution list filters and the retention scope. The
//! text is portable (SQLite and PostgreSQL); `QueryBuilder` writes each backend's placeholders.

use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::{ExecutionQuery, ParentFilter, PurgeScope};

/// The terminal statuses, as an SQL list.
pub const TERMINAL: &str = "('succeeded', 'failed', 'timeout', 'canceled', 'abandoned')";

/// Whether PostgreSQL can hold `text`: its text type has no NUL character, so a value with one
/// names no row (and binding it would fail the whole query).
pub fn storable(text: &str) -> bool {
    !text.contains('\0')
}

/// `, `-separated binds of `items`.
pub fn push_list<DB: Database>(q: &mut QueryBuilder<DB>, items: &[String])
where
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let mut list = q.separated(", ");
    for item in items {
        list.push_bind(item.clone());
    }
}

/// Whether the execution's action is in pack `pack`: its ref starts with `pack.` (compared as
/// text, so a `_` or `%` in a pack name is no pattern).
fn push_in_pack<DB: Database>(q: &mut QueryBuilder<DB>, pack: &str)
where
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    q.push("substr(action_ref, 1, CAST(").push_bind(pack.chars().count() as i64 + 1).push(" AS INTEGER)) = ").push_bind(format!("{pack}."));
}

/// The `AND …` conditions of an execution list query (after a `WHERE 1=1`).
pub fn push_filters<DB: Database>(q: &mut QueryBuilder<DB>, f: &ExecutionQuery)
where
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let parent = match &f.parent {
        ParentFilter::Is(p) => Some(p),
        ParentFilter::Any | ParentFilter::None => None,
    };
    let values = [&f.status, &f.action, &f.user].into_iter().flatten().chain(parent).chain(f.ids.iter().flatten());
    if !values.into_iter().all(|v| storable(v)) {
        q.push(" AND 1=0");
        return;
    }
    match &f.ids {
        None => {}
        // `IN ()` is SQLite's "nothing" but a syntax error in PostgreSQL.
        Some(ids) if ids.is_empty() => {
            q.push(" AND 1=0");
        }
        Some(ids) => {
            q.push(" AND id IN (");
            push_list(q, ids);
            q.push(")");
        }
    }
    for (column, value) in [("status", &f.status), ("action_ref", &f.action), ("user_name", &f.user)] {
        if let Some(v) = value {
            q.push(format!(" AND {column} = ")).push_bind(v.clone());
        }
    }
    if let Some(scope) = &f.actions_in {
        q.push(" AND (1=0");
        if !scope.refs.is_empty() {
            q.push(" OR action_ref IN (");
            push_list(q, &scope.refs);
            q.push(")");
        }
        for pack in &scope.packs {
            q.push(" OR ");
            push_in_pack(q, pack);
        }
        q.push(")");
    }
    match &f.parent {
        ParentFilter::Any => {}
        ParentFilter::None => {
            q.push(" AND parent IS NULL");
        }
        ParentFilter::Is(p) => {
            q.push(" AND parent = ").push_bind(p.clone());
        }
    }
    if let Some(t) = f.start_after {
        q.push(" AND start_ts > ").push_bind(t.micros());
    }
    if let Some(t) = f.start_before {
        q.push(" AND start_ts < ").push_bind(t.micros());
    }
}

/// `SELECT id FROM executions WHERE <scope> ORDER BY start_ts, id LIMIT <limit>`.
pub fn purgeable<DB: Database>(scope: &PurgeScope, limit: u32) -> QueryBuilder<DB>
where
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    <DB as Database>::Arguments: Default,
{
    let mut q = QueryBuilder::<DB>::new("SELECT id FROM executions WHERE (1=0");
    if let Some(t) = scope.ended_before {
        q.push(format!(" OR (status IN {TERMINAL} AND end_ts < ")).push_bind(t.micros()).push(")");
    }
    if let Some(t) = scope.unfinished_started_before {
        q.push(format!(" OR (status NOT IN {TERMINAL} AND start_ts < ")).push_bind(t.micros()).push(")");
    }
    q.push(")");
    if scope.with_output {
        q.push(" AND EXISTS (SELECT 1 FROM output WHERE output.execution_id = executions.id)");
    }
    // `name` is an action ref, or a pack.
    if !scope.only.is_empty() {
        q.push(" AND (1=0");
        for name in &scope.only {
            q.push(" OR action_ref = ").push_bind(name.clone()).push(" OR ");
            push_in_pack(&mut q, name);
        }
        q.push(")");
    }
    for name in &scope.except {
        q.push(" AND action_ref <> ").push_bind(name.clone()).push(" AND NOT ");
        push_in_pack(&mut q, name);
    }
    q.push(" ORDER BY start_ts, id LIMIT ").push_bind(i64::from(limit));
    q
}
