//! The bus and work-queue conformance suites: every backend must pass them. The bus suite takes
//! two bus instances — two nodes — so cross-node delivery is what is tested (the in-process bus
//! is one node, passed twice). NATS tests use the machine's NATS (`SQUALL_TEST_NATS_URL`, else
//! nats://127.0.0.1:4222, JetStream on) under a subject prefix of their own.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, json};
use squall_bus::{
    Bus, ChangeKind, JetStreamQueue, Live, LocalBus, LocalQueue, NatsBus, NatsConnection, NatsSettings, Received, RecordSource,
    Subscription, WorkQueue,
};
use squall_core::{Catalog, Execution, OutputRecord, Status, StreamKind, Timestamp};
use squall_store::{SqliteStore, Store};

fn execution() -> Execution {
    let catalog = Catalog::builtin();
    let action = catalog.action("core.local").unwrap().clone();
    let runner = catalog.runner("local-shell-cmd").unwrap().clone();
    let mut e = Execution::new(action, runner, json!({"cmd": "true"}).as_object().unwrap().clone(), Map::new(), "u", None);
    e.status = Status::Running;
    e
}

fn record(e: &Execution, seq: u64, data: &[u8]) -> OutputRecord {
    OutputRecord {
        execution_id: e.id.clone(),
        seq,
        stream: StreamKind::Stdout,
        offset: 0,
        timestamp: Timestamp::now(),
        host: None,
        line: None,
        data: Bytes::copy_from_slice(data),
    }
}

/// The next event, waiting at most `within`.
async fn next(sub: &mut Subscription, within: Duration) -> Option<Live> {
    match tokio::time::timeout(within, sub.recv()).await {
        Ok(Received::Event(ev)) => Some(ev),
        _ => None,
    }
}

/// Record seqs (and their bytes) until `count` records came or nothing came for `within`.
async fn records(sub: &mut Subscription, count: usize, within: Duration) -> Vec<(u64, Vec<u8>)> {
    let mut got = Vec::new();
    while got.len() < count {
        match next(sub, within).await {
            Some(Live::Record(r)) => got.push((r.record.seq, r.record.data.to_vec())),
            Some(Live::Execution(_)) => {}
            None => break,
        }
    }
    got
}

/// Commit, then publish, as the log writer does.
async fn commit(store: &dyn Store, bus: &dyn Bus, e: &Execution, batch: Vec<OutputRecord>) {
    store.append_output(&batch).await.unwrap();
    bus.publish_output(&RecordSource::of(e), batch).await;
}

async fn bus_suite(a: Arc<dyn Bus>, b: Arc<dyn Bus>, store: Arc<dyn Store>) {
    let e = execution();
    store.insert_execution(&e).await.unwrap();
    let wait = Duration::from_secs(5);

    // Output committed on node A reaches a viewer on node B, in seq order, byte-exact.
    let mut viewer = b.subscribe_execution(&e.id).await;
    let mut everything = b.subscribe_all(false).await;
    let mut with_output = b.subscribe_all(true).await;
    commit(&*store, &*a, &e, vec![record(&e, 1, b"one\n"), record(&e, 2, b"\0\xff\r")]).await;
    commit(&*store, &*a, &e, vec![record(&e, 3, b"three\n")]).await;
    assert_eq!(records(&mut viewer, 3, wait).await, [(1, b"one\n".to_vec()), (2, b"\0\xff\r".to_vec()), (3, b"three\n".to_vec())]);
    assert_eq!(records(&mut with_output, 3, wait).await.len(), 3, "the all-executions channel carries output to those who ask");

    // Execution changes reach the execution's viewers and the all-executions channel.
    let mut done = e.clone();
    done.transition(Status::Succeeded, None);
    store.update_execution(&done, Status::Running).await.unwrap();
    a.publish_execution(ChangeKind::Update, done.clone()).await;
    for sub in [&mut viewer, &mut everything] {
        let change = loop {
            match next(sub, wait).await.expect("a change") {
                Live::Execution(c) => break c,
                Live::Record(_) => {}
            }
        };
        assert_eq!((change.kind, change.execution.status), (ChangeKind::Update, Status::Succeeded));
    }

    // Cancel requests reach runners on every node.
    let mut cancels = b.cancel_requests().await;
    a.request_cancel(&e.id).await;
    assert_eq!(tokio::time::timeout(wait, cancels.recv()).await.unwrap().unwrap(), e.id);
}

async fn queue_suite(a: Arc<dyn WorkQueue>, b: Arc<dyn WorkQueue>) {
    let ids: BTreeSet<String> = (0..20).map(|_| squall_core::id::new_id()).collect();
    for id in &ids {
        a.push(id.clone()).await;
    }
    let pop = |q: Arc<dyn WorkQueue>| async move { tokio::time::timeout(Duration::from_secs(10), q.pop()).await.ok().flatten() };
    let mut got = BTreeSet::new();
    while got.len() < ids.len() {
        let (x, y) = tokio::join!(pop(Arc::clone(&a)), pop(Arc::clone(&b)));
        got.extend(x.into_iter().chain(y));
        if got.len() < ids.len() {
            assert!(got.is_subset(&ids), "only what was pushed comes out");
        }
    }
    assert_eq!(got, ids, "every pushed id comes out");
    // Taken ids are not waiting any more; a backend that can lose work (one shared between
    // nodes) queues them again.
    let first = ids.iter().next().unwrap();
    if a.requeue_if_missing(first).await {
        assert_eq!(pop(Arc::clone(&b)).await.as_deref(), Some(first.as_str()));
    }
}

#[tokio::test]
async fn local_backends_conform() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::default());
    bus_suite(Arc::clone(&bus), bus, store).await;
    let queue: Arc<dyn WorkQueue> = Arc::new(LocalQueue::default());
    queue_suite(Arc::clone(&queue), queue).await;
}

fn nats_url() -> String {
    std::env::var("SQUALL_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A connection under `prefix`, or a failure that says how to get NATS.
async fn connect(prefix: &str) -> NatsConnection {
    let settings = NatsSettings { url: nats_url(), prefix: prefix.into(), name: "squall-test".into(), ..Default::default() };
    NatsConnection::connect(&settings).await.unwrap_or_else(|e| {
        panic!("{e}; start NATS with JetStream (Debian: nats-server -js -a 127.0.0.1 -p 4222) or set SQUALL_TEST_NATS_URL")
    })
}

/// Removes the test's work stream.
async fn delete_stream(prefix: &str) {
    let client = async_nats::connect(nats_url()).await.unwrap();
    let _ = async_nats::jetstream::new(client).delete_stream(format!("{}_WORK", prefix.to_ascii_uppercase())).await;
}

struct Nodes {
    a: Arc<NatsBus>,
    b: Arc<NatsBus>,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn two_nodes(prefix: &str) -> Nodes {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let a = Arc::new(NatsBus::start(connect(prefix).await, Arc::clone(&store)).await.unwrap());
    let b = Arc::new(NatsBus::start(connect(prefix).await, Arc::clone(&store)).await.unwrap());
    Nodes { a, b, store, _dir: dir }
}

#[tokio::test]
async fn nats_backends_conform() {
    let prefix = format!("t{}", squall_core::id::new_id());
    let nodes = two_nodes(&prefix).await;
    bus_suite(nodes.a.clone(), nodes.b.clone(), Arc::clone(&nodes.store)).await;
    let qa: Arc<dyn WorkQueue> = Arc::new(JetStreamQueue::start(connect(&prefix).await).await.unwrap());
    let qb: Arc<dyn WorkQueue> = Arc::new(JetStreamQueue::start(connect(&prefix).await).await.unwrap());
    queue_suite(qa, qb).await;
    delete_stream(&prefix).await;
}

/// NATS core loses messages (slow consumers, reconnects, a full publish queue): whatever the
/// store has, a viewer gets — after a gap, after a quiet second, for records too large for a
/// message, and a final status that was never published.
#[tokio::test]
async fn nats_viewers_get_what_the_store_has_when_messages_are_lost() {
    let prefix = format!("t{}", squall_core::id::new_id());
    let Nodes { a, b, store, _dir } = two_nodes(&prefix).await;
    let e = execution();
    store.insert_execution(&e).await.unwrap();
    let mut viewer = b.subscribe_execution(&e.id).await;
    let wait = Duration::from_secs(5);

    // Records 1 and 2 were committed but their message was lost; 3 arrives and reveals the gap.
    store.append_output(&[record(&e, 1, b"lost 1\n"), record(&e, 2, b"lost 2\n")]).await.unwrap();
    commit(&*store, &*a, &e, vec![record(&e, 3, b"three\n")]).await;
    assert_eq!(records(&mut viewer, 3, wait).await.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 3]);

    // The last record's message was lost and nothing follows: a quiet second finds it.
    store.append_output(&[record(&e, 4, b"lost 4\n")]).await.unwrap();
    assert_eq!(records(&mut viewer, 1, wait).await, [(4, b"lost 4\n".to_vec())]);

    // A record larger than a NATS message travels without its bytes; the store has them.
    let big = vec![b'x'; 3 << 20];
    commit(&*store, &*a, &e, vec![record(&e, 5, &big), record(&e, 6, b"after\n")]).await;
    let got = records(&mut viewer, 2, wait).await;
    assert_eq!(got.iter().map(|(s, d)| (*s, d.len())).collect::<Vec<_>>(), [(5, big.len()), (6, 6)]);

    // The final status was stored but never published: a quiet second delivers it.
    let mut done = e.clone();
    done.transition(Status::Succeeded, None);
    store.update_execution(&done, Status::Running).await.unwrap();
    let change = match next(&mut viewer, wait).await.expect("the stored final status reaches the viewer") {
        Live::Execution(c) => c,
        Live::Record(r) => panic!("unexpected record {}", r.record.seq),
    };
    assert_eq!(change.execution.status, Status::Succeeded);
    drop(viewer);
    assert_eq!(b.live_executions(), 0, "the last viewer gone, the node stops watching");
}
