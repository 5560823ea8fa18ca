//! `resq`: the command set with the demo job types (`resq jobs list`).
//! A deployment builds the same binary with its own jobs: see the
//! `resq_cli` library.

use std::process::ExitCode;

fn main() -> ExitCode {
    resq_cli::run(resq_cli::demo_jobs::registry())
}
