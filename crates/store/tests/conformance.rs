//! The storage conformance suite: every backend must pass these same checks. Each backend gets
//! one `#[tokio::test]` that opens a fresh store and hands it to [`suite`].

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, json};
use squall_core::output::StreamFilter;
use squall_core::{Catalog, Execution, OutputRecord, Status, StreamKind, Timestamp};
use std::time::Duration;

use squall_store::{
    ActionScope, ApiKeyRecord, ExecutionQuery, NodeRecord, PAGE_BYTES, ParentFilter, PgSettings, PgStore, SortOrder, SqliteStore, Store,
    StoreError, TokenRecord,
};

fn execution(cmd: &str, user: &str) -> Execution {
    let catalog = Catalog::builtin();
    let action = catalog.action("core.local").unwrap().clone();
    let runner = catalog.runner("local-shell-cmd").unwrap().clone();
    let params: Map<_, _> = json!({"cmd": cmd}).as_object().unwrap().clone();
    Execution::new(action, runner, params, Map::new(), user, None)
}

fn record(id: &str, seq: u64, stream: StreamKind, data: &[u8]) -> OutputRecord {
    OutputRecord {
        execution_id: id.to_string(),
        seq,
        stream,
        offset: 0,
        timestamp: Timestamp::now(),
        host: None,
        line: None,
        data: Bytes::copy_from_slice(data),
    }
}

async fn suite(store: Arc<dyn Store>) {
    store.ping().await.expect("a reachable store answers ping");

    // Executions round-trip and `last` is the newest.
    let mut a = execution("echo a", "alice");
    a.start_timestamp = Timestamp(1_000);
    let mut b = execution("echo b", "bob");
    b.start_timestamp = Timestamp(2_000);
    store.insert_execution(&a).await.unwrap();
    store.insert_execution(&b).await.unwrap();
    assert_eq!(store.execution(&a.id).await.unwrap().as_ref(), Some(&a));
    assert_eq!(store.execution("000000000000000000000000").await.unwrap(), None);
    assert_eq!(store.latest_execution().await.unwrap().unwrap().id, b.id);

    // Status changes are compare-and-set.
    let mut running = a.clone();
    running.transition(Status::Running, None);
    assert!(store.update_execution(&running, Status::Requested).await.unwrap());
    assert!(!store.update_execution(&running, Status::Requested).await.unwrap());
    assert_eq!(store.execution(&a.id).await.unwrap().unwrap().status, Status::Running);

    // Listing: filters, order, limit and total.
    let q = ExecutionQuery { limit: Some(1), ..Default::default() };
    let (page, total) = store.list_executions(&q).await.unwrap();
    assert_eq!((page.len(), total), (1, 2));
    assert_eq!(page[0].id, b.id);
    let q = ExecutionQuery { order: SortOrder::OldestFirst, parent: ParentFilter::None, ..Default::default() };
    let ids: Vec<_> = store.list_executions(&q).await.unwrap().0.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, [a.id.clone(), b.id.clone()]);
    let q = ExecutionQuery { user: Some("bob".into()), ..Default::default() };
    assert_eq!(store.list_executions(&q).await.unwrap().1, 1);
    // `?id=` (an empty id list) matches nothing, on every backend (PostgreSQL once answered 500).
    let q = ExecutionQuery { ids: Some(Vec::new()), ..Default::default() };
    let (page, total) = store.list_executions(&q).await.unwrap();
    assert!(page.is_empty() && total == 0, "{total} executions for an empty id list");
    // A NUL character (PostgreSQL's text cannot hold one) matches nothing either.
    let q = ExecutionQuery { parent: ParentFilter::Is("p\0".into()), user: Some("bob".into()), ..Default::default() };
    assert_eq!(store.list_executions(&q).await.unwrap().1, 0);
    assert!(store.execution("a\0").await.unwrap().is_none() && store.user("st2\0admin").await.unwrap().is_none());
    assert!(store.api_key("k\0").await.unwrap().is_none());
    let q = ExecutionQuery { ids: Some(vec![a.id.clone()]), ..Default::default() };
    assert_eq!(store.list_executions(&q).await.unwrap().1, 1);
    let q = ExecutionQuery { status: Some("running".into()), ..Default::default() };
    assert_eq!(store.list_executions(&q).await.unwrap().0[0].id, a.id);
    let q = ExecutionQuery { start_after: Some(Timestamp(1_500)), ..Default::default() };
    assert_eq!(store.list_executions(&q).await.unwrap().0[0].id, b.id);
    let running = store.executions_with_status(&[Status::Running, Status::Canceling]).await.unwrap();
    assert_eq!(running.len(), 1);

    // Listing within an action scope (a caller's view rights): packs by exact prefix (a `_` in
    // a pack name is no wildcard), refs exactly, combined with other filters, counted and paged
    // in the database.
    let mut scoped = Vec::new();
    for (n, action_ref) in ["my_pack.one", "myxpack.two", "other.three", "other.four"].into_iter().enumerate() {
        let mut e = execution("echo scoped", if n == 3 { "bob" } else { "alice" });
        let (pack, name) = action_ref.split_once('.').unwrap();
        (e.action.ref_, e.action.pack, e.action.name) = (action_ref.into(), pack.into(), name.into());
        e.start_timestamp = Timestamp(3_000 + n as i64);
        store.insert_execution(&e).await.unwrap();
        scoped.push(e.id);
    }
    let within = |packs: &[&str], refs: &[&str]| {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Some(ActionScope { packs: strings(packs), refs: strings(refs) })
    };
    let ids = |page: Vec<Execution>| page.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let q = ExecutionQuery { actions_in: within(&["my_pack"], &[]), ..Default::default() };
    let (page, total) = store.list_executions(&q).await.unwrap();
    assert_eq!((ids(page), total), (vec![scoped[0].clone()], 1));
    let q = ExecutionQuery { actions_in: within(&["core"], &["other.three"]), limit: Some(1), offset: 1, ..Default::default() };
    let (page, total) = store.list_executions(&q).await.unwrap();
    assert_eq!((ids(page), total), (vec![b.id.clone()], 3), "newest first: other.three, then b, then a");
    let q = ExecutionQuery { actions_in: within(&["other", "core"], &[]), user: Some("bob".into()), ..Default::default() };
    let (page, total) = store.list_executions(&q).await.unwrap();
    assert_eq!((ids(page), total), (vec![scoped[3].clone(), b.id.clone()], 2));
    let q = ExecutionQuery { actions_in: within(&[], &[]), ..Default::default() };
    assert_eq!(store.list_executions(&q).await.unwrap(), (vec![], 0), "an empty scope holds nothing");
    assert_eq!(store.list_executions(&ExecutionQuery::default()).await.unwrap().1, 6);
    assert_eq!(store.delete_executions(&scoped).await.unwrap(), 4);

    // Output: byte-exact, in seq order, filtered by stream, paged.
    let binary: Vec<u8> = (0..=255u8).collect();
    store
        .append_output(&[
            record(&a.id, 1, StreamKind::Stdout, b"one\n"),
            record(&a.id, 2, StreamKind::Stderr, &binary),
            record(&a.id, 3, StreamKind::Stdout, b"\0\r\x1b[31mred"),
            OutputRecord { host: Some("web-1".into()), ..record(&a.id, 4, StreamKind::Stdout, b"from a host\n") },
        ])
        .await
        .unwrap();
    let all = store.read_output(&a.id, 0, StreamFilter::All, 100).await.unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(all[1].data.as_ref(), binary.as_slice());
    assert_eq!((all[0].host.as_deref(), all[3].host.as_deref()), (None, Some("web-1")));
    let out = store.read_output(&a.id, 0, StreamFilter::Only(StreamKind::Stdout), 100).await.unwrap();
    assert_eq!(out.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 3, 4]);
    let page = store.read_output(&a.id, 1, StreamFilter::All, 1).await.unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [2]);
    assert!(store.read_output(&a.id, 0, StreamFilter::Nothing, 100).await.unwrap().is_empty());
    assert_eq!(store.last_seq(&a.id).await.unwrap(), 4);
    assert_eq!(store.last_seq(&b.id).await.unwrap(), 0);

    // A seq is written once.
    assert!(store.append_output(&[record(&a.id, 3, StreamKind::Stdout, b"dup")]).await.is_err());

    // Pages stop at PAGE_BYTES of data, with the record that reaches it; a record larger than
    // that still comes, alone; the record limit still applies.
    let mib = vec![b'x'; 1 << 20];
    let big: Vec<OutputRecord> = (5..15).map(|seq| record(&a.id, seq, StreamKind::Stdout, &mib)).collect();
    store.append_output(&big).await.unwrap();
    let page = store.read_output(&a.id, 4, StreamFilter::All, 100).await.unwrap();
    let per_page = (PAGE_BYTES as usize).div_ceil(1 << 20);
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), (5..5 + per_page as u64).collect::<Vec<_>>());
    assert!(page.iter().all(|r| r.data.len() == 1 << 20));
    let page = store.read_output(&a.id, 5, StreamFilter::All, 2).await.unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [6, 7]);
    let huge = vec![b'y'; PAGE_BYTES as usize + 1];
    store.append_output(&[record(&a.id, 15, StreamKind::Stdout, &huge), record(&a.id, 16, StreamKind::Stdout, b"after")]).await.unwrap();
    let page = store.read_output(&a.id, 14, StreamFilter::All, 100).await.unwrap();
    assert_eq!((page.len(), page[0].data.len()), (1, huge.len()));

    lines(&*store, &b).await;
    lifecycle(&*store, &a, &b).await;
    nodes(&*store).await;
    credentials(&*store).await;
    retention(&*store).await;
}

/// Purges: scopes by end time, action and pack, output only, and in batches.
async fn retention(store: &dyn Store) {
    use squall_store::PurgeScope;
    use squall_store::retention::{count, purge_executions, purge_output};
    let finished = |cmd: &str, ended_at: i64| {
        let mut e = execution(cmd, "gc");
        e.transition(Status::Succeeded, None);
        e.end_timestamp = Some(Timestamp(ended_at));
        e
    };
    let (old, recent) = (finished("echo old", 10_000), finished("echo recent", 90_000));
    let mut other_pack = finished("echo other", 10_000);
    other_pack.action.ref_ = "backups.nightly".into();
    let mut unfinished = execution("sleep 100", "gc");
    unfinished.start_timestamp = Timestamp(5_000);
    for e in [&old, &recent, &other_pack, &unfinished] {
        let mut requested = e.clone();
        requested.status = Status::Requested;
        store.insert_execution(&requested).await.unwrap();
        store.append_output(&(1..=5).map(|seq| record(&e.id, seq, StreamKind::Stdout, b"line\n")).collect::<Vec<_>>()).await.unwrap();
        store.update_execution(e, Status::Requested).await.unwrap();
    }
    let before = |t| PurgeScope { ended_before: Some(Timestamp(t)), ..Default::default() };
    assert_eq!(count(store, &PurgeScope { except: vec!["core".into()], ..before(50_000) }).await.unwrap(), 1, "only backups.nightly");
    assert_eq!(count(store, &PurgeScope { only: vec!["core.local".into()], ..before(50_000) }).await.unwrap(), 1);
    let scope = PurgeScope { only: vec!["backups".into()], ..before(50_000) };
    assert_eq!(purge_output(store, &scope, &mut |_| {}).await.unwrap(), 1);
    assert!(store.read_output(&other_pack.id, 0, StreamFilter::All, 10).await.unwrap().is_empty());
    assert!(store.execution(&other_pack.id).await.unwrap().is_some(), "an output purge keeps the execution");
    assert_eq!(count(store, &PurgeScope { with_output: true, ..scope }).await.unwrap(), 0);
    // Output goes a bounded batch at a time.
    assert_eq!(store.delete_output_batch(std::slice::from_ref(&old.id), 2).await.unwrap(), 2);
    assert_eq!(store.read_output(&old.id, 0, StreamFilter::All, 10).await.unwrap().len(), 3);
    let mut seen = 0;
    assert_eq!(purge_executions(store, &before(50_000), &mut |n| seen = n).await.unwrap(), 2);
    assert_eq!(seen, 2, "progress is reported");
    assert!(store.execution(&old.id).await.unwrap().is_none());
    assert!(store.execution(&recent.id).await.unwrap().is_some(), "ended after the cut-off");
    assert!(store.execution(&unfinished.id).await.unwrap().is_some(), "never purged while unfinished");
    let running = PurgeScope { unfinished_started_before: Some(Timestamp(6_000)), ..Default::default() };
    assert_eq!(purge_executions(store, &running, &mut |_| {}).await.unwrap(), 1, "unless named explicitly");
    assert!(store.read_output(&unfinished.id, 0, StreamFilter::All, 10).await.unwrap().is_empty());
    store.reclaim_space().await.unwrap();
}

/// Fencing and abandonment: output only goes to executions that have not ended, and an
/// abandonment stores the status and its note together.
/// Records keep the display line the writer numbered them by, and `seq_before_line` finds the
/// record a line reader starts from; records without a line (notes) are passed over.
async fn lines(store: &dyn Store, e: &Execution) {
    let numbered =
        |seq, line, offset, data: &[u8]| OutputRecord { line: Some(line), offset, ..record(&e.id, seq, StreamKind::Stdout, data) };
    assert_eq!(store.seq_before_line(&e.id, 5).await.unwrap(), 0);
    store
        .append_output(&[
            numbered(1, 0, 0, b"a\nb\n"),
            numbered(2, 2, 4, b"c\nd"),
            numbered(3, 3, 7, b"e\n"),
            record(&e.id, 4, StreamKind::Output, b"note\n"),
        ])
        .await
        .unwrap();
    let read = store.read_output(&e.id, 0, StreamFilter::All, 10).await.unwrap();
    assert_eq!(read.iter().map(|r| r.line).collect::<Vec<_>>(), [Some(0), Some(2), Some(3), None]);
    let before = |line| async move { store.seq_before_line(&e.id, line).await.unwrap() };
    assert_eq!((before(0).await, before(1).await, before(2).await, before(3).await), (0, 1, 1, 2));
    assert_eq!((before(4).await, before(u64::MAX).await), (3, 3));
    // Ranged reads of a stream start at the record holding the first byte.
    let at = |stream, offset| async move { store.seq_at_offset(&e.id, stream, offset).await.unwrap() };
    let stdout = StreamKind::Stdout;
    assert_eq!(
        (at(stdout, 0).await, at(stdout, 3).await, at(stdout, 4).await, at(stdout, 7).await, at(stdout, u64::MAX).await),
        (1, 1, 2, 3, 3)
    );
    assert_eq!(at(StreamKind::Stderr, 5).await, 0);
}

async fn lifecycle(store: &dyn Store, running: &Execution, requested: &Execution) {
    let ended = |e: &Execution, status| {
        let mut e = e.clone();
        e.transition(status, None);
        e
    };
    assert!(store.update_execution(&ended(requested, Status::Succeeded), Status::Requested).await.unwrap());
    let late = store.append_output(&[record(&requested.id, 1, StreamKind::Stdout, b"late\n")]).await;
    assert!(matches!(late, Err(StoreError::Ended { .. })), "no output after the end: {late:?}");
    let nowhere = store.append_output(&[record("0123456789abcdef01234567", 1, StreamKind::Stdout, b"?")]).await;
    assert!(matches!(nowhere, Err(StoreError::Ended { .. })), "no output for an unknown execution: {nowhere:?}");

    let last = store.last_seq(&running.id).await.unwrap();
    let mut lost = store.execution(&running.id).await.unwrap().unwrap();
    lost.transition(Status::Abandoned, Some("runner lost".into()));
    let note = store.abandon(&lost, Status::Running, "runner lost; abandoned\n").await.unwrap().expect("abandoned");
    assert_eq!((note.seq, note.stream, note.offset), (last + 1, StreamKind::Output, 0));
    assert!(store.abandon(&lost, Status::Running, "again").await.unwrap().is_none(), "compare-and-set");
    assert_eq!(store.execution(&running.id).await.unwrap().unwrap().status, Status::Abandoned);
    let tail = store.read_output(&running.id, last, StreamFilter::All, 10).await.unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!((tail[0].seq, tail[0].data.as_ref()), (note.seq, &b"runner lost; abandoned\n"[..]));
    let zombie = store.append_output(&[record(&running.id, last + 2, StreamKind::Stdout, b"zombie\n")]).await;
    assert!(matches!(zombie, Err(StoreError::Ended { .. })), "an abandoned execution takes no more output: {zombie:?}");
}

async fn nodes(store: &dyn Store) {
    let node = NodeRecord::this_process("runner");
    store.register_node(&node).await.unwrap();
    assert!(store.renew_node(&node.id).await.unwrap());
    assert!(store.expired_nodes(Duration::from_secs(3600)).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let expired = store.expired_nodes(Duration::from_millis(5)).await.unwrap();
    assert_eq!(expired.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), [node.id.as_str()]);
    assert_eq!((expired[0].roles.as_str(), expired[0].pid), ("runner", std::process::id()));
    assert_eq!(store.nodes().await.unwrap().len(), 1);
    assert!(store.remove_node(&node.id).await.unwrap());
    assert!(!store.renew_node(&node.id).await.unwrap(), "a removed node learns it was declared dead");
}

async fn credentials(store: &dyn Store) {
    store.put_user("alice", Some("$argon2id$hash1")).await.unwrap();
    store.put_user("alice", Some("$argon2id$hash2")).await.unwrap();
    store.put_user("svc", None).await.unwrap();
    assert!(!store.create_user("alice", "$argon2id$other").await.unwrap(), "an existing user is kept");
    assert!(store.create_user("carol", "$argon2id$c").await.unwrap());
    assert!(store.delete_user("carol").await.unwrap());
    assert_eq!(store.user("alice").await.unwrap().unwrap().password_hash.as_deref(), Some("$argon2id$hash2"));
    assert_eq!(store.users().await.unwrap().len(), 2);

    let token = TokenRecord {
        id: "t1".into(),
        token_hash: "h1".into(),
        user: "alice".into(),
        expiry: Timestamp(99),
        service: false,
        created: Timestamp(1),
    };
    store.insert_token(&token).await.unwrap();
    assert_eq!(store.token("h1").await.unwrap(), Some(token));
    store.delete_token("h1").await.unwrap();
    assert_eq!(store.token("h1").await.unwrap(), None);

    let key = ApiKeyRecord {
        id: "k1".into(),
        key_hash: "kh1".into(),
        user: "alice".into(),
        enabled: true,
        metadata: json!({"purpose": "ci"}),
        created: Timestamp(1),
    };
    store.insert_api_key(&key).await.unwrap();
    assert_eq!(store.api_key_by_hash("kh1").await.unwrap(), Some(key.clone()));
    assert!(store.set_api_key_enabled("k1", false).await.unwrap());
    assert!(!store.api_key("k1").await.unwrap().unwrap().enabled);
    assert_eq!(store.api_keys().await.unwrap().len(), 1);

    store.insert_token(&TokenRecord { token_hash: "h2".into(), ..store_token() }).await.unwrap();
    assert!(store.delete_user("alice").await.unwrap());
    assert_eq!(store.token("h2").await.unwrap(), None, "a removed user's tokens go with them");
    assert_eq!(store.api_key("k1").await.unwrap(), None);
    assert!(!store.delete_api_key("k1").await.unwrap());
}

fn store_token() -> TokenRecord {
    TokenRecord {
        id: "t2".into(),
        token_hash: String::new(),
        user: "alice".into(),
        expiry: Timestamp(99),
        service: true,
        created: Timestamp(1),
    }
}

#[tokio::test]
async fn sqlite_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    suite(Arc::new(store)).await;
}

/// The PostgreSQL the tests use: `SQUALL_TEST_DATABASE_URL`, else the machine's own.
fn pg_url() -> String {
    std::env::var("SQUALL_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A store on a schema of its own, dropped afterwards.
async fn pg_store() -> (PgStore, String) {
    let schema = format!("t_{}", squall_core::id::new_id());
    let settings = PgSettings { url: pg_url(), schema: Some(schema.clone()), max_connections: 4 };
    match PgStore::connect(&settings).await {
        Ok(store) => (store, schema),
        Err(e) => panic!(
            "cannot reach PostgreSQL at {} ({e}); start it (Debian: pg_ctlcluster 15 main start) or set SQUALL_TEST_DATABASE_URL",
            pg_url()
        ),
    }
}

#[tokio::test]
async fn postgres_backend_conforms() {
    let (store, schema) = pg_store().await;
    suite(Arc::new(store.clone())).await;
    store.drop_schema(&schema).await.unwrap();
}

#[tokio::test]
async fn postgres_nodes_starting_together_migrate_once() {
    let schema = format!("t_{}", squall_core::id::new_id());
    let settings = PgSettings { url: pg_url(), schema: Some(schema.clone()), max_connections: 2 };
    let stores = futures::future::join_all((0..4).map(|_| PgStore::connect(&settings))).await;
    let stores: Vec<PgStore> = stores.into_iter().map(|s| s.expect("every node starts")).collect();
    let e = execution("echo together", "erin");
    stores[0].insert_execution(&e).await.unwrap();
    assert_eq!(stores[3].execution(&e.id).await.unwrap().unwrap().id, e.id);
    stores[0].drop_schema(&schema).await.unwrap();
}

#[tokio::test]
async fn sqlite_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let e = execution("echo persisted", "carol");
    {
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store.insert_execution(&e).await.unwrap();
        store.append_output(&[record(&e.id, 1, StreamKind::Stdout, b"kept\n")]).await.unwrap();
    }
    let store = SqliteStore::open(dir.path()).await.unwrap();
    assert_eq!(store.execution(&e.id).await.unwrap().unwrap().id, e.id);
    assert_eq!(store.read_output(&e.id, 0, StreamFilter::All, 10).await.unwrap()[0].data.as_ref(), b"kept\n");
}

#[tokio::test]
async fn sqlite_payload_files_ignore_crash_leftovers_and_go_with_their_output() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let e = execution("echo files", "dave");
    store.insert_execution(&e).await.unwrap();
    store.append_output(&[record(&e.id, 1, StreamKind::Stdout, b"one\n"), record(&e.id, 2, StreamKind::Stderr, b"two\n")]).await.unwrap();
    // A crash between writing bytes and committing their index leaves unindexed bytes behind.
    let file = dir.path().join("output").join(format!("{}.log", e.id));
    std::fs::OpenOptions::new().append(true).open(&file).unwrap().write_all(b"torn write").unwrap();
    store.append_output(&[record(&e.id, 3, StreamKind::Stdout, b"three\n")]).await.unwrap();
    let all = store.read_output(&e.id, 0, StreamFilter::All, 10).await.unwrap();
    let texts: Vec<&[u8]> = all.iter().map(|r| r.data.as_ref()).collect();
    assert_eq!(texts, [&b"one\n"[..], b"two\n", b"three\n"]);
    // Many records in one batch (more than one INSERT statement) keep their order.
    let many: Vec<OutputRecord> = (4..2600).map(|seq| record(&e.id, seq, StreamKind::Stdout, seq.to_string().as_bytes())).collect();
    store.append_output(&many).await.unwrap();
    let page = store.read_output(&e.id, 2000, StreamFilter::All, 3).await.unwrap();
    assert_eq!(page.iter().map(|r| r.data.clone()).collect::<Vec<_>>(), [&b"2001"[..], b"2002", b"2003"]);
    // Purging the output removes the file with the last index row.
    while store.delete_output_batch(std::slice::from_ref(&e.id), 1000).await.unwrap() > 0 {}
    assert!(!file.exists(), "{} is removed with its output", file.display());
    assert!(store.read_output(&e.id, 0, StreamFilter::All, 10).await.unwrap().is_empty());
}
