//! libFuzzer on envelopes, opened and sealed (`crates/resq/src/envelope/`).
//! The properties, and why they are the ones, are in
//! `resq_fuzz_checks::envelope`
//! (`crates/resq-fuzz-checks/src/envelope.rs`), which `cargo test` also
//! runs on the seed corpus (`fuzz/corpus/envelope/`) and its mutations.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| resq_fuzz_checks::envelope::check(data));
