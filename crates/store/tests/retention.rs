//! Retention with an injectable clock: what goes, what stays, and a database that stops growing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, json};
use squall_core::output::StreamFilter;
use squall_core::{Catalog, Execution, OutputRecord, Status, StreamKind, Timestamp};
use squall_store::retention::{self, RetentionPolicy, days_before};
use squall_store::{PurgeScope, SqliteStore, Store};

const DAY: i64 = 86_400 * 1_000_000;

async fn add(store: &dyn Store, action: &str, status: Status, started: Timestamp, ended: Option<Timestamp>, bytes: usize) -> String {
    let catalog = Catalog::builtin();
    let a = catalog.action(action).unwrap().clone();
    let r = catalog.runner(&a.runner_type).unwrap().clone();
    let mut e = Execution::new(a, r, json!({"cmd": "x", "message": "m"}).as_object().unwrap().clone(), Map::new(), "u", None);
    e.start_timestamp = started;
    e.status = Status::Running;
    store.insert_execution(&e).await.unwrap();
    let data = Bytes::from(vec![b'x'; bytes]);
    let records: Vec<OutputRecord> = (1..=3)
        .map(|seq| OutputRecord {
            execution_id: e.id.clone(),
            seq,
            stream: StreamKind::Stdout,
            offset: 0,
            timestamp: started,
            host: None,
            line: None,
            data: data.clone(),
        })
        .collect();
    store.append_output(&records).await.unwrap();
    (e.status, e.end_timestamp) = (status, ended);
    store.update_execution(&e, Status::Running).await.unwrap();
    e.id
}

async fn has_output(store: &dyn Store, id: &str) -> bool {
    !store.read_output(id, 0, StreamFilter::All, 1).await.unwrap().is_empty()
}

#[tokio::test]
async fn ttl_by_end_time_with_every_terminal_status_and_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let now = Timestamp(1_800_000_000_000_000);
    let ago = |days: i64| Timestamp(now.micros() - days * DAY);
    let old_ok = add(&*store, "core.local", Status::Succeeded, ago(20), Some(ago(10)), 10).await;
    let old_abandoned = add(&*store, "core.local", Status::Abandoned, ago(20), Some(ago(10)), 10).await;
    let long_running = add(&*store, "core.local", Status::Running, ago(20), None, 10).await;
    // Started long ago but ended recently: its early output must survive.
    let long_finished = add(&*store, "core.local", Status::Failed, ago(20), Some(ago(1)), 10).await;
    let kept_by_override = add(&*store, "core.echo", Status::Succeeded, ago(20), Some(ago(10)), 10).await;

    let mut policy = RetentionPolicy { output_ttl_days: Some(7), ..Default::default() };
    policy.overrides = BTreeMap::from([("core.echo".to_string(), 30)]);
    let purged = retention::collect(&*store, &policy, now, Duration::ZERO).await.unwrap();
    assert_eq!(purged.outputs, 2);
    assert!(!has_output(&*store, &old_ok).await && !has_output(&*store, &old_abandoned).await);
    assert!(store.execution(&old_ok).await.unwrap().is_some(), "an output TTL keeps the execution");
    assert!(has_output(&*store, &long_running).await, "running executions are never touched");
    assert!(has_output(&*store, &long_finished).await, "output goes by the execution's end time");
    assert!(has_output(&*store, &kept_by_override).await, "a per-action TTL overrides the global one");

    let policy = RetentionPolicy { executions_ttl_days: Some(7), ..Default::default() };
    let purged = retention::collect(&*store, &policy, now, Duration::ZERO).await.unwrap();
    assert_eq!(purged.executions, 3, "abandoned executions are purged too");
    assert!(store.execution(&old_abandoned).await.unwrap().is_none());
    assert!(store.execution(&long_running).await.unwrap().is_some());
    assert!(store.execution(&long_finished).await.unwrap().is_some());

    // --include-running-older-than
    let scope = PurgeScope { unfinished_started_before: Some(days_before(now, 7)), ..Default::default() };
    assert_eq!(retention::count(&*store, &scope).await.unwrap(), 1);
    assert_eq!(retention::purge_executions(&*store, &scope, &mut |_| {}).await.unwrap(), 1);
    assert!(store.execution(&long_running).await.unwrap().is_none());
}

#[test]
fn ttls_below_the_minimum_are_refused() {
    let policy = RetentionPolicy { executions_ttl_days: Some(0), ..Default::default() };
    assert_eq!(policy.validate().unwrap_err(), "Minimum possible TTL for action_executions_ttl in days is 1");
    assert!(RetentionPolicy { output_ttl_days: Some(7), ..Default::default() }.validate().is_ok());
}

#[tokio::test]
async fn the_database_stops_growing_under_create_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    // The database, its WAL and the payload files together.
    let size = || {
        let file = |name: &str| std::fs::metadata(dir.path().join(name)).map_or(0, |m| m.len());
        let payloads: u64 = std::fs::read_dir(dir.path().join("output")).unwrap().flatten().map(|f| f.metadata().unwrap().len()).sum();
        file("squall.db") + file("squall.db-wal") + payloads
    };
    let mut sizes = Vec::new();
    for round in 0..8 {
        let t = Timestamp(1_000_000 + round * DAY);
        for _ in 0..40 {
            add(&*store, "core.local", Status::Succeeded, t, Some(t), 20_000).await;
        }
        let scope = PurgeScope { ended_before: Some(Timestamp(t.micros() + 1)), ..Default::default() };
        assert_eq!(retention::purge_executions(&*store, &scope, &mut |_| {}).await.unwrap(), 40);
        store.reclaim_space().await.unwrap();
        sizes.push(size());
    }
    let settled = sizes[2].max(sizes[3]);
    assert!(sizes[7] <= settled + settled / 10, "the data directory keeps growing: {sizes:?}");
}
