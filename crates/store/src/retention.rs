//! Retention: deleting old executions and output in bounded batches, so a purge of a million
//! rows never holds the database long enough to stall live streaming.

use std::collections::BTreeMap;
use std::time::Duration;

use squall_core::Timestamp;

use crate::{PurgeScope, Result, Store};

/// StackStorm's minimum TTL, in days.
pub const MIN_TTL_DAYS: u64 = 1;
/// Executions handled per query.
const ID_BATCH: u32 = 200;
/// Output records deleted per transaction.
const RECORD_BATCH: u32 = 2000;

const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// What to keep, from `[garbagecollector]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Executions (and their output) are deleted this many days after they ended.
    pub executions_ttl_days: Option<u64>,
    /// Output alone is deleted this many days after its execution ended.
    pub output_ttl_days: Option<u64>,
    /// Per action ref or pack: days after which its executions and output go, instead of the
    /// global TTLs.
    pub overrides: BTreeMap<String, u64>,
}

impl RetentionPolicy {
    /// Rejects TTLs below the minimum, with StackStorm's message.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let named = [("action_executions_ttl", self.executions_ttl_days), ("action_executions_output_ttl", self.output_ttl_days)];
        for (name, ttl) in named {
            if ttl.is_some_and(|d| d < MIN_TTL_DAYS) {
                return Err(format!("Minimum possible TTL for {name} in days is {MIN_TTL_DAYS}"));
            }
        }
        if let Some((name, _)) = self.overrides.iter().find(|(_, d)| **d < MIN_TTL_DAYS) {
            return Err(format!("Minimum possible TTL for {name} in days is {MIN_TTL_DAYS}"));
        }
        Ok(())
    }
}

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub executions: u64,
    /// Executions whose output (only) was removed.
    pub outputs: u64,
}

/// `now` minus `days`.
pub fn days_before(now: Timestamp, days: u64) -> Timestamp {
    Timestamp(now.micros() - days as i64 * DAY_MICROS)
}

/// One garbage-collection pass as of `now` (an argument, so tests can move the clock), with
/// `pause` between object types as StackStorm's `sleep_delay`.
pub async fn collect(store: &dyn Store, policy: &RetentionPolicy, now: Timestamp, pause: Duration) -> Result<Purged> {
    let mut purged = Purged::default();
    let except: Vec<String> = policy.overrides.keys().cloned().collect();
    if let Some(days) = policy.executions_ttl_days {
        let scope = PurgeScope { ended_before: Some(days_before(now, days)), except: except.clone(), ..Default::default() };
        purged.executions += purge_executions(store, &scope, &mut |_| {}).await?;
        tokio::time::sleep(pause).await;
    }
    if let Some(days) = policy.output_ttl_days {
        let scope = PurgeScope { ended_before: Some(days_before(now, days)), with_output: true, except, ..Default::default() };
        purged.outputs += purge_output(store, &scope, &mut |_| {}).await?;
        tokio::time::sleep(pause).await;
    }
    for (name, days) in &policy.overrides {
        let scope = PurgeScope { ended_before: Some(days_before(now, *days)), only: vec![name.clone()], ..Default::default() };
        purged.executions += purge_executions(store, &scope, &mut |_| {}).await?;
    }
    store.reclaim_space().await?;
    Ok(purged)
}

/// How many executions `scope` matches now (for `--dry-run`).
pub async fn count(store: &dyn Store, scope: &PurgeScope) -> Result<u64> {
    Ok(store.purgeable(scope, u32::MAX).await?.len() as u64)
}

/// Deletes every execution in `scope` with its output; `progress` gets the running count.
pub async fn purge_executions(store: &dyn Store, scope: &PurgeScope, progress: &mut (dyn FnMut(u64) + Send)) -> Result<u64> {
    let mut done = 0;
    loop {
        let ids = store.purgeable(scope, ID_BATCH).await?;
        if ids.is_empty() {
            return Ok(done);
        }
        delete_output(store, &ids).await?;
        done += store.delete_executions(&ids).await?;
        progress(done);
        tokio::task::yield_now().await;
    }
}

/// Deletes the output of every execution in `scope` (the executions stay).
pub async fn purge_output(store: &dyn Store, scope: &PurgeScope, progress: &mut (dyn FnMut(u64) + Send)) -> Result<u64> {
    let scope = PurgeScope { with_output: true, ..scope.clone() };
    let mut done = 0;
    loop {
        let ids = store.purgeable(&scope, ID_BATCH).await?;
        if ids.is_empty() {
            return Ok(done);
        }
        delete_output(store, &ids).await?;
        done += ids.len() as u64;
        progress(done);
    }
}

async fn delete_output(store: &dyn Store, ids: &[String]) -> Result<()> {
    while store.delete_output_batch(ids, RECORD_BATCH).await? > 0 {
        tokio::task::yield_now().await;
    }
    Ok(())
}
