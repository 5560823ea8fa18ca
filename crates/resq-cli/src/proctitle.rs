//! The process title Ruby workers look for.
//!
//! Ruby's Resque prunes, on start-up, every registered worker on its host whose
//! pid is not a process whose `ps` command line matches /resque/i. `resq
//! worker` therefore re-executes itself once with an argv[0] of
//! `resque-resq-<version>:` so same-host Ruby workers see it as alive. The pid
//! stays the same across exec, so the worker id is unchanged.

use std::os::unix::process::CommandExt;

const MARK: &str = "RESQ_TITLED";

/// Re-executes the current process with a Resque-style title, once. Returns
/// only if that is not needed or not possible (then it logs why).
pub fn ensure_resque_title() {
    let already = std::env::args_os()
        .next()
        .is_some_and(|a0| a0.to_string_lossy().to_ascii_lowercase().contains("resque"));
    if already || std::env::var_os(MARK).is_some() {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::warn!(error = %e, "cannot find my own executable to set the process title; same-host Ruby workers may prune this worker");
            return;
        }
    };
    let title = format!("resque-resq-{}:", env!("CARGO_PKG_VERSION"));
    let err = std::process::Command::new(exe)
        .arg0(title)
        .args(std::env::args_os().skip(1))
        .env(MARK, "1")
        .exec();
    tracing::warn!(error = %err, "cannot re-execute with a Resque process title; same-host Ruby workers may prune this worker");
}
