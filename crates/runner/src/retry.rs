//! Riding out storage outages: a runner keeps what it must store (a status, a batch of output)
//! until the store is back, instead of losing it to a database restart. While a batch waits,
//! capture stops reading and the action blocks on its pipe — only storage slows a producer.

use std::future::Future;
use std::time::Duration;

use squall_store::StoreError;

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

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
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(error = %e, attempts = failures, "storage is unreachable; will {what} when it is back");
                }
                tokio::time::sleep(pause).await;
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
