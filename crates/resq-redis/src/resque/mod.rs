//! Resque's byte formats: every record resq writes for Ruby's tools, and
//! reads back from them, is built and parsed here and nowhere else (the Lua
//! scripts move these bytes; they never build a record Rust also builds).
//!
//! - [`failure`]: `resque:failed` records;
//! - [`working`]: `resque:worker:<id>`, the current job;
//! - [`time`]: the time formats of `:started`, heartbeats, `run_at`,
//!   `failed_at`;
//! - [`expired`]: resq's expired-job records (written by `sweep.lua`).

pub mod expired;
pub mod failure;
pub mod time;
pub mod working;
