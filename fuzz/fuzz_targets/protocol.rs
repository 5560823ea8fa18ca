//! libFuzzer on the isolation protocol reader
//! (`crates/resq/src/worker/isolation/protocol.rs`). The properties, and
//! why they are the ones, are in `resq_fuzz_checks::protocol`
//! (`crates/resq-fuzz-checks/src/protocol.rs`), which `cargo test` also
//! runs on the seed corpus (`fuzz/corpus/protocol/`) and its mutations.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| resq_fuzz_checks::protocol::check(data));
