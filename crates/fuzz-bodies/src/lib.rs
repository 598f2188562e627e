//! The bodies of squall's fuzz targets, one module per parser. Each body takes the fuzzer's
//! bytes, feeds them to the real parser (and, where there is one, its writer) and panics only
//! when a property fails: no panic, no hang, errors are client errors, round trips are exact.
//!
//! Why a crate of its own: the bodies call parsers of three crates (core, runner, server), so
//! a `fuzzing` module in each would spread one harness over three crates and hide it behind a
//! feature in their public API. Here the dependencies point one way (this crate depends on
//! them; nothing depends on it), the parsers it calls are ordinary public functions, and both
//! callers share one body: `fuzz/fuzz_targets/<name>.rs` (cargo-fuzz, outside the workspace)
//! and `tests/replay.rs`, which `cargo test` runs on every committed corpus file and crasher
//! (`fuzz/corpus/<name>/`, `fuzz/regressions/<name>/`).

pub mod cast;
pub mod mask;
pub mod pack;
pub mod query;
pub mod records;
pub mod resume;
pub mod sse;

/// A fuzz target: the name of its `fuzz/fuzz_targets/<name>.rs` and corpus directories, and
/// its body.
pub struct Target {
    pub name: &'static str,
    pub body: fn(&[u8]),
}

/// Every target, for the replay test.
pub const TARGETS: &[Target] = &[
    Target { name: "cast", body: cast::body },
    Target { name: "pack_yaml", body: pack::body },
    Target { name: "resume", body: resume::body },
    Target { name: "query", body: query::body },
    Target { name: "sse", body: sse::body },
    Target { name: "records", body: records::body },
    Target { name: "mask", body: mask::body },
];

/// Splits `data` at its first byte `at`: what comes before and after it (`None` without one).
pub(crate) fn split_at_byte(data: &[u8], at: u8) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == at) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    }
}
