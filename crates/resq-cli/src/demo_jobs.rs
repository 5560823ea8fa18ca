//! The job types `resq worker` and `resq demo` ship, for trying resq, the
//! tests and the benchmarks: `Echo`, `Sleep`, `Fail`, `Flaky` (retries), `Spin` (busy CPU),
//! `Alloc` (memory), `Detach` (a process in a new session), `Noop` and
//! `Record` (evidence of each run, for the chaos harness). Real deployments
//! build their own binary with their jobs.

use std::time::{Duration, Instant};

use resq::{Job, JobContext, JobError, Registry};
use serde::{Deserialize, Serialize};

use crate::output::safe;

/// Prints its message (control characters escaped).
#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Echo {
    #[garde(length(max = 10_000))]
    pub message: String,
}

impl Job for Echo {
    const CLASS: &'static str = "Echo";
    async fn perform(self, ctx: JobContext) -> Result<(), JobError> {
        println!("  echo [{}]: {}", ctx.queue, safe(&self.message));
        Ok(())
    }
}

/// Waits `ms` milliseconds without using the CPU.
#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sleep {
    /// At most an hour.
    #[garde(range(max = 3_600_000))]
    pub ms: u64,
}

impl Job for Sleep {
    const CLASS: &'static str = "Sleep";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(())
    }
}

/// Always fails with its message.
#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fail {
    #[garde(length(max = 10_000))]
    pub message: String,
}

impl Job for Fail {
    const CLASS: &'static str = "Fail";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        Err(JobError {
            exception: "DemoFailure".into(),
            message: self.message,
        })
    }
}

/// Fails its first `failures` attempts, then succeeds. Up to three attempts,
/// one second apart: for trying retries. `how` it fails: an error, a panic,
/// or (for process isolation) a crash or running out of memory.
#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Flaky {
    #[garde(range(max = 10))]
    pub failures: u32,
    #[serde(default)]
    #[garde(length(max = 1_000))]
    pub message: String,
    #[serde(default)]
    #[garde(skip)]
    pub how: FailHow,
}

/// How `Flaky` fails.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailHow {
    /// Returns an error (`job_failed`).
    #[default]
    Error,
    /// Panics (`job_panicked`).
    Panic,
    /// Aborts its process (`job_crashed` under process isolation; without
    /// it, the worker itself).
    Crash,
    /// Allocates without bound (`resource_limit` under a memory limit).
    Exhaust,
}

impl Job for Flaky {
    const CLASS: &'static str = "Flaky";
    const MAX_ATTEMPTS: u32 = 3;
    fn retry_delay(_retry: u32) -> Duration {
        Duration::from_secs(1)
    }
    async fn perform(self, ctx: JobContext) -> Result<(), JobError> {
        println!(
            "  flaky [{}] attempt {}: {}",
            ctx.queue,
            ctx.attempt,
            safe(&self.message)
        );
        if ctx.attempt >= self.failures {
            return Ok(());
        }
        match self.how {
            FailHow::Error => Err(JobError {
                exception: "DemoFlake".into(),
                message: format!("attempt {} of {} fails", ctx.attempt, self.failures),
            }),
            FailHow::Panic => panic!("flaky attempt {} panics", ctx.attempt),
            FailHow::Crash => std::process::abort(),
            FailHow::Exhaust => Alloc { mb: 1_048_576 }.perform(ctx).await,
        }
    }
}

/// Keeps one CPU busy for `ms` milliseconds (on the blocking pool, so the
/// other jobs keep running).
#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spin {
    #[garde(range(max = 3_600_000))]
    pub ms: u64,
}

impl Job for Spin {
    const CLASS: &'static str = "Spin";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        let until = Duration::from_millis(self.ms);
        tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let mut x = 0u64;
            while start.elapsed() < until {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })
        .await
        .map_err(|e| JobError::msg(format!("spin task failed: {e}")))
    }
}

/// Allocates and touches `mb` MiB one MiB at a time, the way a leak grows,
/// then frees it. Allocation failure ends the process (Rust's default), so
/// past a memory limit only process isolation (`--isolation process`) keeps
/// the worker alive: the job is then recorded `resource_limit`.
#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alloc {
    /// At most 1 TiB.
    #[garde(range(max = 1_048_576))]
    pub mb: u64,
}

impl Job for Alloc {
    const CLASS: &'static str = "Alloc";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        const MIB: usize = 1024 * 1024;
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        for _ in 0..self.mb {
            blocks.push(vec![1u8; MIB]);
            tokio::task::yield_now().await;
        }
        std::hint::black_box(&blocks);
        Ok(())
    }
}

/// Starts `sleep <seconds>` in a new session, the way a daemon detaches
/// from its parent, then waits `wait_ms`. For showing that process isolation
/// ends what a job starts: after the job, at its timeout, and when the
/// worker dies (`resq worker --isolation process`).
#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Detach {
    #[garde(range(min = 1, max = 86_400))]
    pub seconds: u32,
    #[serde(default)]
    #[garde(range(max = 3_600_000))]
    pub wait_ms: u64,
}

impl Job for Detach {
    const CLASS: &'static str = "Detach";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        std::process::Command::new("setsid")
            .arg("sleep")
            .arg(self.seconds.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| JobError::msg(format!("cannot start setsid sleep: {e}")))?;
        tokio::time::sleep(Duration::from_millis(self.wait_ms)).await;
        Ok(())
    }
}

/// Does nothing: for benchmarks. `pad` lets a benchmark choose the payload size.
#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Noop {
    #[serde(default)]
    #[garde(length(max = 1_048_576))]
    pub pad: String,
}

impl Job for Noop {
    const CLASS: &'static str = "Noop";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// The file `Record` appends to (an operator's setting, never a job's
/// argument: a job cannot choose where it writes). Not a `RESQ_*` name, so
/// process isolation's children get it too.
pub const RECORD_FILE_ENV: &str = "DEMO_RECORD_FILE";

/// Leaves evidence of each run, for the chaos harness (`scripts/chaos`) to
/// count jobs that ran, ran twice or never ran: appends `start <id>
/// <attempt> <pid>` to the file `DEMO_RECORD_FILE` names when it starts,
/// waits `ms`, then appends `done <id> <attempt> <pid>`. Each line is one
/// `write` to a file opened with `O_APPEND`, so lines from many workers and
/// children never interleave. Fails when the variable is not set.
#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// At most a minute.
    #[serde(default)]
    #[garde(range(max = 60_000))]
    pub ms: u64,
}

impl Record {
    fn append(ctx: &JobContext, what: &str) -> Result<(), JobError> {
        use std::io::Write;
        let path = std::env::var_os(RECORD_FILE_ENV)
            .ok_or_else(|| JobError::msg(format!("{RECORD_FILE_ENV} is not set: Record has nowhere to write")))?;
        let line = format!(
            "{what} {} {} {}\n",
            ctx.id.as_deref().unwrap_or("-"),
            ctx.attempt,
            std::process::id()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| {
                JobError::msg(format!(
                    "cannot append to {}: {e}",
                    std::path::Path::new(&path).display()
                ))
            })
    }
}

impl Job for Record {
    const CLASS: &'static str = "Record";
    async fn perform(self, ctx: JobContext) -> Result<(), JobError> {
        Self::append(&ctx, "start")?;
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Self::append(&ctx, "done")
    }
}

/// The registry of the demo jobs.
pub fn registry() -> Registry {
    Registry::new()
        .register::<Echo>()
        .register::<Sleep>()
        .register::<Fail>()
        .register::<Flaky>()
        .register::<Spin>()
        .register::<Alloc>()
        .register::<Noop>()
        .register::<Detach>()
        .register::<Record>()
}
