#![no_main]
//! Pack YAML: pack.yaml, action metadata, action-chain files. The body, shared with the `cargo test` replay, is `squall_fuzz_bodies::pack`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| squall_fuzz_bodies::pack::body(data));
