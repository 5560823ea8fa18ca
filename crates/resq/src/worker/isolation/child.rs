//! The child side of process isolation: a loop that runs one job at a time
//! for the worker that started it, under the limits it was given.
//!
//! Set-up, in order: the memory limit (RLIMIT_AS, hard and soft, so job code
//! cannot lift it); the protocol moved off stdout (a job's `println!` then
//! lands on stderr instead of corrupting the answers); a watchdog that exits
//! when the worker is gone (a child must not outlive a `kill -9`ed worker).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use rustix::process::{Resource, Rlimit};

use super::protocol::{encode, ChildMessage, RunRequest, MAX_LINE, MEMORY_ENV, PARENT_ENV};
use super::tree;
use crate::job::JobContext;
use crate::registry::Registry;
use crate::worker::perform::perform;

/// How often the watchdog looks for the worker.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(200);

pub(crate) fn serve(registry: &Registry) -> ExitCode {
    match serve_jobs(registry) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&e);
            ExitCode::from(70)
        }
    }
}

fn serve_jobs(registry: &Registry) -> Result<(), String> {
    let parent = env_number(PARENT_ENV)?.ok_or_else(|| format!("{PARENT_ENV} is not set"))?;
    if let Some(bytes) = env_number(MEMORY_ENV)? {
        let limit = Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        };
        rustix::process::setrlimit(Resource::As, limit)
            .map_err(|e| format!("cannot set the memory limit of {bytes} bytes: {e}"))?;
    }
    let answers = rustix::io::dup(std::io::stdout()).map_err(|e| format!("cannot keep the answer pipe: {e}"))?;
    rustix::stdio::dup2_stdout(std::io::stderr()).map_err(|e| format!("cannot point stdout at stderr: {e}"))?;
    let mut answers = std::fs::File::from(answers);
    // Whatever a job starts stays under this process, even in a new session.
    tree::become_subreaper().map_err(|e| format!("cannot become a child subreaper: {e}"))?;
    start_watchdog(parent)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;

    send(
        &mut answers,
        &ChildMessage::Ready {
            pid: std::process::id(),
        },
    )?;
    let mut requests = BufReader::new(std::io::stdin().lock());
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut requests)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read a request: {e}"))?;
        if n == 0 {
            return Ok(()); // the worker closed the pipe: it is done with us
        }
        let request: RunRequest =
            serde_json::from_slice(&line).map_err(|e| format!("the worker sent a malformed request: {e}"))?;
        let cpu = request.cpu_limit_ms.map(cpu_limit_for_next_run).transpose()?;
        let ctx = JobContext {
            id: request.id,
            queue: request.queue,
            attempt: request.attempt,
        };
        let result = runtime.block_on(perform(registry, &request.class, request.args, ctx));
        if cpu.is_some() {
            lift_cpu_limit()?;
        }
        end_leftovers();
        send(&mut answers, &ChildMessage::from_result(result))?;
    }
}

fn send(out: &mut std::fs::File, message: &ChildMessage) -> Result<(), String> {
    out.write_all(&encode(message))
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot answer the worker: {e}"))
}

fn env_number(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} is {v:?}, not a number")),
        Err(_) => Ok(None),
    }
}

/// RLIMIT_CPU counts the whole process's CPU seconds: the next run may use
/// `ms` more than what was used so far (rounded up to whole seconds). The
/// kernel sends SIGXCPU at the soft limit, which ends the process.
fn cpu_limit_for_next_run(ms: u64) -> Result<(), String> {
    let used = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let used_ms = (used.tv_sec.max(0) as u64) * 1000 + (used.tv_nsec.max(0) as u64) / 1_000_000;
    let seconds = (used_ms + ms).div_ceil(1000);
    let hard = rustix::process::getrlimit(Resource::Cpu).maximum;
    let limit = Rlimit {
        current: Some(hard.map_or(seconds, |h| seconds.min(h))),
        maximum: hard,
    };
    rustix::process::setrlimit(Resource::Cpu, limit).map_err(|e| format!("cannot set the CPU limit: {e}"))
}

fn lift_cpu_limit() -> Result<(), String> {
    let hard = rustix::process::getrlimit(Resource::Cpu).maximum;
    let limit = Rlimit {
        current: hard,
        maximum: hard,
    };
    rustix::process::setrlimit(Resource::Cpu, limit).map_err(|e| format!("cannot lift the CPU limit: {e}"))
}

/// Writes a line to stderr, ignoring failure: once the worker is gone the
/// pipe is broken, and `eprintln!` would panic (ending the watchdog thread
/// instead of the process, which then outlived its worker).
fn say(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "resq child {}: {what}", std::process::id());
}

/// Ends what the last job left running (a process it started and did not
/// wait for, in its group or in a new session) and reaps it.
fn end_leftovers() {
    // Every process a job started is a child of this one (it is their
    // subreaper), so when `wait` finds no child at all (ECHILD), living or
    // dead, there is nothing to walk: one system call instead of reading
    // `/proc` for every thread after every job.
    if !has_children() {
        return;
    }
    let me = std::process::id();
    let left = tree::kill_descendants(me);
    if !left.is_empty() {
        say(&format!(
            "the job left {} process(es) running ({left:?}); they were killed",
            left.len()
        ));
    }
    reap_all();
}

/// Reaps what has ended; true when a child (running, or ended but not
/// yet reaped) remains.
fn has_children() -> bool {
    loop {
        match rustix::process::wait(reap_options()) {
            Ok(Some(_)) => continue,
            Ok(None) => return true,
            Err(rustix::io::Errno::CHILD) => return false,
            // Interrupted or anything unexpected: walk to be sure.
            Err(_) => return true,
        }
    }
}

/// Reaps every child that has ended (this process runs no children of
/// its own besides what jobs start).
fn reap_all() {
    while let Ok(Some(_)) = rustix::process::wait(reap_options()) {}
}

/// `WNOHANG | __WALL`, for `wait` on any child (pid -1: not only those in
/// this process group, which a job's `setsid` process has left). `__WALL`
/// counts "clone" children too (started by job code with an exit signal
/// other than SIGCHLD), which `wait` skips otherwise.
fn reap_options() -> rustix::process::WaitOptions {
    const WALL: u32 = 0x4000_0000;
    rustix::process::WaitOptions::NOHANG | rustix::process::WaitOptions::from_bits_retain(WALL)
}

/// Exits when the worker that started this child is gone (the child was
/// re-parented). A thread, because the job may hold the runtime's only one.
fn start_watchdog(parent: u64) -> Result<(), String> {
    let is_orphan = move || u64::from(std::os::unix::process::parent_id()) != parent;
    if is_orphan() {
        return Err("the worker that started this child is already gone".into());
    }
    std::thread::Builder::new()
        .name("resq-watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            std::thread::sleep(WATCHDOG_PERIOD);
            if is_orphan() {
                say("the worker is gone; ending the job's processes and exiting");
                tree::kill_descendants(std::process::id());
                std::process::exit(70);
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the watchdog thread: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that left this process group (as `setsid` does) still
    /// counts as a child: the walk after a job must not be skipped for it.
    #[test]
    fn a_child_in_another_session_is_seen() {
        let mut daemon = std::process::Command::new("setsid")
            .args(["sleep", "30"])
            .spawn()
            .expect("start setsid sleep");
        assert!(has_children());
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
}
