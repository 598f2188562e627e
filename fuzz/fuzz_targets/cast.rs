#![no_main]
//! Parameter casting (API and CLI). The body, shared with the `cargo test` replay, is `squall_fuzz_bodies::cast`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| squall_fuzz_bodies::cast::body(data));
