//! Registered nodes and their leases.

use squall_core::Timestamp;

/// One `squall server` process of a deployment. Runner nodes renew their lease every few
/// seconds; a node whose lease expired is dead, and the executions it held are abandoned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Fresh for every process start.
    pub id: String,
    /// `api`, `runner`, or both, comma-separated.
    pub roles: String,
    pub hostname: String,
    pub pid: u32,
    /// squall's version.
    pub version: String,
    /// When it registered and last renewed its lease, by the store's clock (filled in by the
    /// store; ignored on registration).
    pub started: Timestamp,
    pub heartbeat: Timestamp,
}

impl NodeRecord {
    /// This process, with a new id.
    pub fn this_process(roles: &str) -> NodeRecord {
        NodeRecord {
            id: squall_core::id::new_id(),
            roles: roles.to_string(),
            hostname: nix_hostname(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started: Timestamp::now(),
            heartbeat: Timestamp::now(),
        }
    }
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}
