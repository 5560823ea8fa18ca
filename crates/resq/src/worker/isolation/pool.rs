//! The worker side of process isolation: a pool of pre-started child
//! processes, one job at a time each. A child whose job runs past its
//! timeout is killed with its whole process group (anything the job started
//! goes too) and replaced; one that dies on its own is reaped, the cause is
//! recorded, and it is replaced as well.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::death::{classify, Limits};
use super::protocol::{
    encode, read_message, ChildMessage, FrameError, RunRequest, CHILD_ENV, MEMORY_ENV, PARENT_ENV, PROTOCOL_VERSION,
};
use super::{tree, Isolation, IsolationError};
use crate::failure::FailureInfo;
use crate::job::JobContext;
use crate::worker::process::timed_out;

/// How long a new child has to say it is ready. A binary that is not a
/// resq child mostly exits or says something else at once (found at once);
/// this bound is for one that stays silent, and it is wall time: on a
/// machine whose cores are all taken a sound child waited more than 10 s
/// for one (the chaos harness, load average 20), and its worker exited.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a dead child's pipes may take to close.
const REAP_WITHIN: Duration = Duration::from_secs(2);
/// Stderr lines kept for a post-mortem (a backtrace can follow the line
/// that says what happened), and how much of each.
const TAIL_LINES: usize = 32;
const TAIL_LINE_CHARS: usize = 512;

/// The pool: `Isolation::children` processes, or one per concurrency slot.
/// Each running job holds one child, and gives it (or its replacement) back
/// before it finishes; with fewer children than slots, the other fetched
/// jobs wait here for a free one.
pub(crate) struct Children {
    config: Isolation,
    program: std::path::PathBuf,
    /// One permit a child: a job holds one from checkout to give-back, so
    /// no more than `size` children ever run.
    free: tokio::sync::Semaphore,
    idle: Mutex<Vec<Child>>,
    /// Pids of the job children alive now. Spawning holds this lock, so a
    /// sweep for strays never takes a child being born for one.
    live: Mutex<std::collections::HashSet<u32>>,
}

/// A job could not be handed to any child (none would start): the job did
/// not run and goes back to its queue.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NoChild(String);

impl Children {
    /// Starts the children of a worker with `concurrency` slots and waits
    /// until each says it is ready.
    pub(crate) async fn start(config: Isolation, concurrency: usize) -> Result<Arc<Self>, IsolationError> {
        let size = config.children.unwrap_or(concurrency).clamp(1, concurrency.max(1));
        let program = match &config.program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(IsolationError::NoProgram)?,
        };
        // What a child that dies leaves behind is re-parented here, not to
        // init, so it can be found and ended (see tree.rs).
        if let Err(e) = tree::become_subreaper() {
            tracing::warn!(error = %e, "cannot become a child subreaper: a process a crashed job left in a new session may outlive it");
        }
        let children = Arc::new(Self {
            config,
            program,
            free: tokio::sync::Semaphore::new(size),
            idle: Mutex::new(Vec::with_capacity(size)),
            live: Mutex::new(std::collections::HashSet::new()),
        });
        let started = futures::future::join_all((0..size).map(|_| children.spawn())).await;
        let mut ready = Vec::with_capacity(size);
        for child in started {
            ready.push(child.map_err(|e| IsolationError::Start(e.0))?);
        }
        tracing::info!(
            children = size, program = %children.program.display(),
            memory_limit_mb = children.config.memory_limit.map(|b| b / (1024 * 1024)),
            cpu_limit_ms = children.config.cpu_limit.map(|d| d.as_millis() as u64),
            "process isolation: children started"
        );
        children.lock_idle().extend(ready);
        Ok(children)
    }

    /// Runs one job in a child, once one is free: `started` is called when
    /// a child takes it, and `limit`, its wall-clock timeout, counts from
    /// then.
    pub(crate) async fn run(
        &self,
        class: &str,
        args: Vec<Value>,
        ctx: JobContext,
        limit: Option<Duration>,
        started: impl FnOnce(),
    ) -> Result<Result<(), FailureInfo>, NoChild> {
        let request = encode(&RunRequest {
            class: class.to_string(),
            args,
            id: ctx.id,
            queue: ctx.queue,
            attempt: ctx.attempt,
            cpu_limit_ms: self.limits().cpu_ms,
        });
        // Never closed; an error would only mean no child can be had.
        let _turn = self
            .free
            .acquire()
            .await
            .map_err(|_| NoChild("the child pool is closed".into()))?;
        let mut child = self.checkout().await?;
        started();
        if child.send(&request).await.is_err() {
            // It died while idle; the job has not started. One fresh try.
            tracing::warn!(pid = child.pid, "an idle child process was gone; starting another");
            self.forget(child.pid);
            drop(child);
            child = self.spawn().await?;
            if let Err(e) = child.send(&request).await {
                return Err(NoChild(format!("a new child process would not take the job: {e}")));
            }
        }
        let answer = match limit {
            None => read_message(&mut child.output).await,
            Some(limit) => match tokio::time::timeout(limit, read_message(&mut child.output)).await {
                Ok(answer) => answer,
                Err(_) => {
                    let pid = self.discard(child).await;
                    tracing::warn!(pid, class, "a job ran past its timeout; its process was killed");
                    return Ok(Err(timed_out(limit, &format!("its process ({pid}) was killed"))));
                }
            },
        };
        match answer {
            Ok(ChildMessage::Done) => {
                self.give_back(child).await;
                Ok(Ok(()))
            }
            Ok(ChildMessage::Failed {
                reason,
                exception,
                message,
            }) => {
                self.give_back(child).await;
                Ok(Err(FailureInfo {
                    reason,
                    exception,
                    message,
                }))
            }
            Ok(ChildMessage::Ready { .. }) | Err(FrameError::Malformed(_) | FrameError::TooLong) => {
                // Alive but not making sense: job code wrote to the answer pipe.
                let pid = self.discard(child).await;
                Ok(Err(FailureInfo::of(
                    crate::reason::Reason::JobCrashed,
                    format!("the job's process ({pid}) broke the worker protocol and was killed"),
                )))
            }
            Err(FrameError::Closed | FrameError::Io(_)) => {
                let pid = child.pid;
                let (status, tail) = child.post_mortem().await;
                self.forget(pid);
                self.end_strays().await;
                let info = classify(status, &tail, self.limits());
                tracing::warn!(pid, class, reason = %info.reason, error = %info.message, "a job's process died");
                self.replace().await;
                Ok(Err(info))
            }
        }
    }

    /// Kills a child that is still running a job, reaps it and starts its
    /// replacement; returns its pid.
    async fn discard(&self, mut child: Child) -> u32 {
        // Stopped first, it starts nothing more; then everything it started
        // (in its group or not) goes, then the child.
        tree::signal(child.pid, rustix::process::Signal::STOP);
        let left = tree::kill_descendants(child.pid);
        if !left.is_empty() {
            tracing::warn!(pid = child.pid, processes = ?left, "killed the processes the job started");
        }
        child.kill_group();
        child.reap().await;
        self.forget(child.pid);
        self.end_strays().await;
        self.replace().await;
        child.pid
    }

    fn forget(&self, pid: u32) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
    }

    /// Ends processes re-parented to this worker from a child that died
    /// (they carry the marker of this worker's children in their
    /// environment, and are not a live child), and reaps them.
    async fn end_strays(&self) {
        let me = std::process::id();
        let strays: Vec<u32> = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            tree::children_of(me)
                .into_iter()
                .filter(|pid| !live.contains(pid) && started_by_a_child_of(*pid, me))
                .collect()
        };
        for &pid in &strays {
            tree::kill_descendants(pid);
            tree::signal(pid, rustix::process::Signal::KILL);
        }
        for pid in strays {
            tracing::warn!(pid, "killed a process a dead job child left behind");
            reap_pid(pid).await;
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            memory_bytes: self.config.memory_limit,
            cpu_ms: self.config.cpu_limit.map(|d| d.as_millis() as u64),
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Child>> {
        // A panic while holding this lock cannot leave the Vec half-changed.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn checkout(&self) -> Result<Child, NoChild> {
        let idle = self.lock_idle().pop();
        match idle {
            Some(child) => Ok(child),
            // Only after a replacement could not start.
            None => self.spawn().await,
        }
    }

    /// Returns a child after a job, or replaces it when it has done its share.
    async fn give_back(&self, mut child: Child) {
        child.jobs += 1;
        if self.config.jobs_per_child.is_some_and(|n| child.jobs >= n) {
            let pid = child.pid;
            child.retire().await;
            self.forget(pid);
            self.replace().await;
        } else {
            self.lock_idle().push(child);
        }
    }

    /// Starts a child for the next job, so the next job does not wait for one.
    async fn replace(&self) {
        match self.spawn().await {
            Ok(child) => self.lock_idle().push(child),
            Err(e) => {
                tracing::error!(error = %e, "cannot start a replacement child process; will try again at the next job")
            }
        }
    }

    async fn spawn(&self) -> Result<Child, NoChild> {
        let mut command = Command::new(&self.program);
        // The worker's own settings (Redis URL and password, keys file)
        // stay with it: job code in the child has no use for them.
        for (name, _) in std::env::vars_os() {
            let Some(n) = name.to_str() else { continue };
            let named = |list: &[String]| {
                list.iter().any(|r| match r.strip_suffix('*') {
                    Some(prefix) => n.starts_with(prefix),
                    None => r == n,
                })
            };
            if named(&self.config.remove_env) && !named(&self.config.pass_env) {
                command.env_remove(&name);
            }
        }
        command
            .arg0(format!("resq-child (worker {})", std::process::id()))
            .env(CHILD_ENV, PROTOCOL_VERSION)
            .env(PARENT_ENV, std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(bytes) = self.config.memory_limit {
            command.env(MEMORY_ENV, bytes.to_string());
        }
        let mut process = {
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            let process = command
                .spawn()
                .map_err(|e| NoChild(format!("cannot start {}: {e}", self.program.display())))?;
            live.extend(process.id());
            process
        };
        let (Some(input), Some(output), Some(stderr), Some(pid)) = (
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
            process.id(),
        ) else {
            return Err(NoChild("a child process started without its pipes".into()));
        };
        let mut child = Child {
            process,
            pid,
            input: Some(input),
            output: BufReader::new(output),
            stderr: Some(tokio::spawn(forward_stderr(pid, stderr))),
            jobs: 0,
            reaped: false,
        };
        match tokio::time::timeout(READY_WITHIN, read_message(&mut child.output)).await {
            Ok(Ok(ChildMessage::Ready { .. })) => Ok(child),
            other => {
                let said = match other {
                    Err(_) => format!("nothing within {} s", READY_WITHIN.as_secs()),
                    Ok(Ok(m)) => format!("{m:?}"),
                    Ok(Err(e)) => e.to_string(),
                };
                let (_, tail) = child.post_mortem().await;
                Err(NoChild(format!(
                    "{} did not start as a resq child ({said}; last words: {:?}). Its main() must call \
                     resq::worker::isolation::serve_if_child first",
                    self.program.display(),
                    tail.lines().last().unwrap_or("")
                )))
            }
        }
    }
}

/// True when `pid`'s environment names `worker` as the worker of the job
/// child it descends from.
fn started_by_a_child_of(pid: u32, worker: u32) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{PARENT_ENV}={worker}");
    environ.split(|b| *b == 0).any(|var| var == wanted.as_bytes())
}

/// Waits (briefly) for a killed process that is not tokio's to be reaped.
async fn reap_pid(pid: u32) {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return;
    };
    for _ in 0..100 {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
            Ok(None) => tokio::time::sleep(Duration::from_millis(10)).await,
            _ => return,
        }
    }
}

/// One child process and its pipes.
struct Child {
    process: tokio::process::Child,
    pid: u32,
    /// `None` once closed, which tells the child to exit.
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
    /// Forwards the child's stderr to ours; returns its last lines.
    stderr: Option<JoinHandle<String>>,
    jobs: u32,
    /// Reaped: its pid (the group id) may be reused after its group empties,
    /// so the group is no longer signalled from `Drop`.
    reaped: bool,
}

impl Child {
    async fn send(&mut self, line: &[u8]) -> std::io::Result<()> {
        let input = self.input.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        input.write_all(line).await?;
        input.flush().await
    }

    /// Ends an idle child politely: its stdin closes, it exits, and what it
    /// wrote last still reaches the log.
    async fn retire(mut self) {
        self.input = None;
        match tokio::time::timeout(REAP_WITHIN, self.process.wait()).await {
            Ok(Ok(_)) => self.reaped = true,
            _ => self.kill_group(),
        }
    }

    /// SIGKILL to the child's whole process group.
    fn kill_group(&self) {
        if let Some(pid) = i32::try_from(self.pid).ok().and_then(rustix::process::Pid::from_raw) {
            // ESRCH: already gone.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }

    async fn reap(&mut self) -> Option<ExitStatus> {
        let status = match tokio::time::timeout(REAP_WITHIN, self.process.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                self.kill_group();
                tokio::time::timeout(REAP_WITHIN, self.process.wait()).await.ok()?.ok()
            }
        };
        // What the job started dies with it (and lets go of the stderr pipe);
        // the group cannot be reused while any of it is left.
        self.kill_group();
        self.reaped = status.is_some();
        status
    }

    /// The child broke off in the middle of a job: how it ended, and what it
    /// said last.
    async fn post_mortem(&mut self) -> (Option<ExitStatus>, String) {
        let status = self.reap().await;
        let tail = match self.stderr.take() {
            Some(task) => tokio::time::timeout(REAP_WITHIN, task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        };
        if let Some(status) = status {
            tracing::debug!(
                pid = self.pid,
                signal = status.signal(),
                code = status.code(),
                "child process reaped"
            );
        }
        (status, tail)
    }
}

impl Drop for Child {
    /// Kills what is left of the child. The stderr task is left to drain the
    /// pipe: it ends when the last process holding the pipe is gone.
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_group();
        }
    }
}

/// Copies a child's stderr to the worker's, line by line (control
/// characters replaced, so job output cannot drive the operator's terminal),
/// and returns the last lines when the pipe closes.
async fn forward_stderr(pid: u32, stderr: ChildStderr) -> String {
    const MAX_LINE: u64 = 16 * 1024;
    let mut reader = BufReader::new(stderr);
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::with_capacity(TAIL_LINES);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line: String = String::from_utf8_lossy(&buf)
                    .trim_end()
                    .chars()
                    .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
                    .collect();
                use std::io::Write;
                let _ = writeln!(std::io::stderr().lock(), "[child {pid}] {line}");
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.chars().take(TAIL_LINE_CHARS).collect());
            }
        }
    }
    tail.into_iter().collect::<Vec<_>>().join("\n")
}
