#![no_main]
//! SSE frames decoded by a strict decoder: the round trip. The body, shared with the `cargo test` replay, is `squall_fuzz_bodies::sse`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| squall_fuzz_bodies::sse::body(data));
