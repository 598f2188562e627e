#![no_main]
//! The output streams' resume point: Last-Event-ID and ?after=. The body, shared with the `cargo test` replay, is `squall_fuzz_bodies::resume`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| squall_fuzz_bodies::resume::body(data));
