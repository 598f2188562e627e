#![no_main]
//! Query strings, read as the handlers read them. The body, shared with the `cargo test` replay, is `squall_fuzz_bodies::query`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| squall_fuzz_bodies::query::body(data));
