#![no_main]
//! The record stream (application/vnd.squall.records): any body, and the round trip. The body, shared with the `cargo test` replay, is `squall_fuzz_bodies::records`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| squall_fuzz_bodies::records::body(data));
