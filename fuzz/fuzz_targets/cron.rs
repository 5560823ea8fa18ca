//! libFuzzer on cron entries (`crates/resq/src/cron/entry.rs`). The
//! properties, and why they are the ones, are in `resq_fuzz_checks::cron`
//! (`crates/resq-fuzz-checks/src/cron.rs`), which `cargo test` also runs on
//! the seed corpus (`fuzz/corpus/cron/`) and its mutations.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| resq_fuzz_checks::cron::check(data));
