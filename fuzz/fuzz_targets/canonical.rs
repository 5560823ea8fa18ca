//! libFuzzer on RFC 8785 canonical JSON
//! (`crates/resq/src/envelope/canonical.rs`). The properties, and why they
//! are the ones, are in `resq_fuzz_checks::canonical`
//! (`crates/resq-fuzz-checks/src/canonical.rs`), which `cargo test` also
//! runs on the seed corpus (`fuzz/corpus/canonical/`) and its mutations.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| resq_fuzz_checks::canonical::check(data));
