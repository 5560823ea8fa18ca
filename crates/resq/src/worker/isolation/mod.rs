//! Process isolation: jobs run in child processes that the worker can kill.
//!
//! Cooperative timeouts cancel a job's future at its next `.await`; a job that
//! spins on the CPU, blocks its thread or allocates without bound never gets
//! there. In this mode each job runs in a pre-started child process (the
//! same program, started again with a marker in its environment) under an
//! address-space limit and a per-job CPU limit. A child whose job passes its
//! timeout is killed with its process group and replaced; one that hits a
//! limit dies and is replaced; the worker records `timeout`,
//! `resource_limit` or `job_crashed` and goes on.
//!
//! The program must hand control to [`serve_if_child`] first thing in `main`:
//!
//! ```no_run
//! use std::process::ExitCode;
//! # fn registry() -> resq::Registry { resq::Registry::new() }
//!
//! fn main() -> ExitCode {
//!     // In a child process this runs jobs until the worker is done with it.
//!     if let Some(code) = resq::worker::isolation::serve_if_child(&registry()) {
//!         return code;
//!     }
//!     // ... the program's own main: start a Worker with
//!     // `config.isolation = Some(Isolation::default())`, parse arguments, etc.
//!     ExitCode::SUCCESS
//! }
//! ```
//!
//! A job's `before_perform` and `after_perform` hooks run in the child with
//! it; `on_retry` and `on_failure` run in the worker (the child may be dead).
//!
//! Whatever a job starts ends with it: job children and the worker are
//! child subreapers, so a process a job started in a new session (`setsid`,
//! a daemon's double fork) stays in the tree, and it is stopped and killed
//! after the job, at its timeout, and when the worker dies (see `tree.rs`).
//!
//! The children run as the worker's user: this stops runaway jobs, it is not
//! a sandbox against hostile code. They do not inherit any variable
//! [`Isolation::remove_env`] names (the `resq` command removes its own
//! settings, `RESQ_*`, which carry the Redis address and password).

mod child;
mod death;
mod pool;
mod protocol;
mod tree;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub(crate) use pool::Children;
/// The child protocol's reader, for the fuzz target (`fuzz/`) only.
#[doc(hidden)]
pub use protocol::fuzzing as protocol_fuzzing;

use crate::registry::Registry;

/// How jobs run in child processes.
#[derive(Debug, Clone, Default)]
pub struct Isolation {
    /// The program started as a child; `None`: this executable.
    pub program: Option<PathBuf>,
    /// How many child processes run jobs; `None`: one per concurrency slot.
    /// Fewer children than slots keeps jobs fetched and checked, ready for
    /// the next free child, so a child never waits on a Redis round trip
    /// (a job's timeout starts when a child takes it).
    pub children: Option<usize>,
    /// Address-space limit of each child (RLIMIT_AS, bytes): a job that
    /// allocates past it ends its process and is recorded `resource_limit`.
    /// It counts mapped memory, not only what is touched, so leave room
    /// for the program itself (tens of MiB).
    pub memory_limit: Option<u64>,
    /// CPU time one job may use (RLIMIT_CPU, whole seconds, rounded up):
    /// past it the kernel ends the process and the job is recorded
    /// `resource_limit`. The wall-clock timeout is separate.
    pub cpu_limit: Option<Duration>,
    /// Replace a child after this many jobs; `Some(1)` runs every job in a
    /// fresh process. `None`: keep children as long as they are healthy.
    pub jobs_per_child: Option<u32>,
    /// Environment variables the children must not see (secrets the worker
    /// needs and the jobs do not): names, or prefixes ending in `*`
    /// (`MYAPP_*`).
    pub remove_env: Vec<String>,
    /// Variables among those removed that the children get anyway (a log
    /// filter, say).
    pub pass_env: Vec<String>,
}

/// Why process isolation could not start.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    #[error("cannot find this program to start children: {0}")]
    NoProgram(#[source] std::io::Error),
    #[error("cannot start the job child processes: {0}")]
    Start(String),
}

/// True in a process a worker started as its child (to set up logging
/// before [`serve_if_child`], say).
pub fn is_child() -> bool {
    std::env::var_os(protocol::CHILD_ENV).is_some()
}

/// In a process started as a worker's child, runs jobs from `registry` until
/// the worker closes the pipe, and returns the exit code for `main`.
/// Anywhere else returns `None` at once.
pub fn serve_if_child(registry: &Registry) -> Option<ExitCode> {
    let version = std::env::var(protocol::CHILD_ENV).ok()?;
    if version != protocol::PROTOCOL_VERSION {
        eprintln!(
            "resq child: the worker speaks child protocol {version:?}, this program {:?}; \
             run the same build for both",
            protocol::PROTOCOL_VERSION
        );
        return Some(ExitCode::from(70));
    }
    Some(child::serve(registry))
}
