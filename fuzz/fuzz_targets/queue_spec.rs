//! libFuzzer on queue specs (`crates/resq/src/queue_spec.rs`). The
//! properties, and why they are the ones, are in
//! `resq_fuzz_checks::queue_spec`
//! (`crates/resq-fuzz-checks/src/queue_spec.rs`), which `cargo test` also
//! runs on the seed corpus (`fuzz/corpus/queue_spec/`) and its mutations.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| resq_fuzz_checks::queue_spec::check(data));
