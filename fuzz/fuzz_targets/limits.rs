//! libFuzzer on the payload limits scanner (`crates/resq/src/limits.rs`).
//! The properties, and why they are the ones, are in
//! `resq_fuzz_checks::limits` (`crates/resq-fuzz-checks/src/limits.rs`),
//! which `cargo test` also runs on the seed corpus (`fuzz/corpus/limits/`)
//! and its mutations.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| resq_fuzz_checks::limits::check(data));
