//! Identifiers in StackStorm's shape: 24 lower-case hex characters, like a MongoDB ObjectId.

use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh, time-ordered id: 4 bytes of seconds since the epoch, 5 random bytes chosen once per
/// process, and a 3-byte counter — the ObjectId layout, so ids sort roughly by creation time.
pub fn new_id() -> String {
    static PROCESS: std::sync::OnceLock<[u8; 5]> = std::sync::OnceLock::new();
    static COUNTER: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    let process = PROCESS.get_or_init(rand::random);
    let counter = COUNTER.get_or_init(|| AtomicU32::new(rand::random::<u32>() & 0x00ff_ffff)).fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    let secs = (chrono::Utc::now().timestamp() as u32).to_be_bytes();
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&secs);
    bytes[4..9].copy_from_slice(process);
    bytes[9..].copy_from_slice(&counter.to_be_bytes()[1..]);
    hex(&bytes)
}

/// A stable id derived from a name, for content that has no stored id of its own (actions and
/// runner types loaded from packs), so the same ref keeps the same id across restarts.
pub fn stable_id(name: &str) -> String {
    // FNV-1a, 64 bit, twice with different seeds: stability matters here, not cryptography.
    let fnv = |seed: u64| name.bytes().fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let a = fnv(0xcbf2_9ce4_8422_2325).to_be_bytes();
    let b = fnv(0x6c62_272e_07bb_0142).to_be_bytes();
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&a);
    bytes[8..].copy_from_slice(&b[..4]);
    hex(&bytes)
}

/// True when `s` looks like one of our ids (24 hex characters).
pub fn is_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_24_hex_and_unique() {
        let a = new_id();
        let b = new_id();
        assert!(is_id(&a) && is_id(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn stable_ids_are_stable() {
        assert_eq!(stable_id("core.local"), stable_id("core.local"));
        assert_ne!(stable_id("core.local"), stable_id("core.noop"));
        assert!(is_id(&stable_id("x")));
    }
}
