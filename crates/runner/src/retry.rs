//! Riding out storage outages: a runner keeps what it must store (a status, a batch of output)
//! until the store is back, instead of losing it to a database restart or a full disk. While a
//! batch waits, capture stops reading and the action blocks on its pipe — only storage slows a
//! producer.

use std::future::Future;
use std::time::Duration;

use squall_store::StoreError;

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);
/// A full disk is asked again often: trying costs one local write, and the work should go on
/// within a second of space being freed.
const DISK_FULL_PAUSE: Duration = Duration::from_millis(200);

/// Calls `call` until it succeeds or fails for a reason other than the store being unreachable
/// ([`StoreError::is_transient`]); `what` names the work in the log.
pub async fn persist<T, F, Fut>(what: &str, mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut pause = FIRST_PAUSE;
    let mut failures = 0u32;
    loop {
        match call().await {
            Err(e) if e.is_transient() => {
                failures += 1;
                let full = e.is_disk_full();
                if failures == 1 || failures.is_power_of_two() {
                    if full {
                        tracing::error!(error = %e, attempts = failures, "the data directory's disk is full; the action waits, and squall will {what} once space is freed");
                    } else {
                        tracing::warn!(error = %e, attempts = failures, "storage is unreachable; will {what} when it is back");
                    }
                }
                tokio::time::sleep(if full { DISK_FULL_PAUSE } else { pause }).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
            other => {
                if failures > 0 {
                    tracing::info!(attempts = failures + 1, "storage is back; did {what}");
                }
                return other;
            }
        }
    }
}
