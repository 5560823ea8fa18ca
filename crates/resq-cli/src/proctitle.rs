//! The process title Ruby workers look for.
//!
//! A Ruby Resque 3.0 worker prunes, when it starts, every registered worker on
//! its host (with its queue set, or any when it listens on `*`) whose pid is
//! not in the output of exactly this pipeline (`Worker#linux_worker_pids`):
//!
//! ```text
//! ps -A -o pid,command | grep -E "[r]esque:work|[r]esque:\sStarting|[r]esque-[0-9]" | grep -v "resque-web"
//! ```
//!
//! so a digit must follow `resque-`. `resq worker` therefore re-executes
//! itself once with an argv[0] of `resque-<version>-resq:` (Resque's own
//! title is `resque-3.0.0: ...`): it matches, and still says it is resq. The
//! pid stays the same across exec, so the worker id is unchanged.

use std::os::unix::process::CommandExt;

const MARK: &str = "RESQ_TITLED";

/// The title a worker runs under: `resque-0.1.0-resq:` for resq 0.1.0.
pub fn title() -> String {
    format!("resque-{}-resq:", env!("CARGO_PKG_VERSION"))
}

/// Re-executes the current process with a Resque-style title, once. Returns
/// only if that is not needed or not possible (then it logs why).
pub fn ensure_resque_title() {
    let already = std::env::args_os()
        .next()
        .is_some_and(|a0| a0.to_string_lossy() == title());
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
    let err = std::process::Command::new(exe)
        .arg0(title())
        .args(std::env::args_os().skip(1))
        .env(MARK, "1")
        .exec();
    tracing::warn!(error = %err, "cannot re-execute with a Resque process title; same-host Ruby workers may prune this worker");
}
