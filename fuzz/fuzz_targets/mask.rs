#![no_main]
//! The streaming masker against masking the whole input at once. The body, shared with the `cargo test` replay, is `squall_fuzz_bodies::mask`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| squall_fuzz_bodies::mask::body(data));
