//! libFuzzer on the config file (`crates/resq-cli/src/config.rs`). The
//! properties, and why they are the ones, are in `resq_fuzz_checks::config`
//! (`crates/resq-fuzz-checks/src/config.rs`), which `cargo test` also runs
//! on the seed corpus (`fuzz/corpus/config/`) and its mutations.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| resq_fuzz_checks::config::check(data));
