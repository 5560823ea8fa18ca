//! The store trait: the only door to storage.
//!
//! Every operation the client, the worker and the admin API need, each atomic
//! where it must be. The Redis store implements it with one Lua script per
//! multi-step operation; an embedded store can implement it later and must pass
//! the same conformance suite.

use async_trait::async_trait;

use crate::worker_id::WorkerId;

/// A storage failure: Redis went away, refused a command, or answered with
/// something this version does not understand.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach the store: {0}")]
    Unavailable(String),
    #[error("the store refused the command: {0}")]
    Refused(String),
    #[error("the store answered something unexpected: {0}")]
    Protocol(String),
    #[error(
        "queue {queue} is full ({length} of {cap} jobs waiting): nothing was enqueued; try later or raise the cap"
    )]
    QueueFull { queue: String, cap: u64, length: u64 },
}

/// A payload ready to be pushed to the tail of a queue.
#[derive(Debug, Clone)]
pub struct OutgoingJob {
    pub queue: String,
    pub payload: Vec<u8>,
}

/// A job moved into a worker's in-flight list: the unit of work that is later
/// finished (acked) or requeued. The payload stays as raw bytes so that ack,
/// requeue and failure records use exactly what was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedJob {
    pub queue: String,
    pub payload: Vec<u8>,
    /// The store's handle on this in-flight copy (ack and requeue use it).
    pub token: String,
}

/// The answer of a fetch.
#[derive(Debug)]
pub enum Fetched {
    /// `resque:pause-all-workers` is set: nothing was moved.
    Paused,
    /// Up to `max` jobs, in priority order (possibly none).
    Jobs(Vec<FetchedJob>),
}

/// A job that left the worker: it succeeded, or it failed with this Resque
/// failure record (JSON), which the store appends to the failed list.
#[derive(Debug, Clone)]
pub struct Finished {
    pub job: FetchedJob,
    pub failure: Option<String>,
    /// For a failed job with attempts left: the next attempt, to schedule
    /// instead of writing a failure record.
    pub retry: Option<Retry>,
}

/// A job a worker is running, as Resque's "working" record shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkingRecord {
    pub queue: String,
    /// When it started (Unix seconds).
    pub run_at: f64,
    /// The job as stored: a JSON object with a string `class` and an array
    /// `args` (only a job that decoded is ever shown).
    pub payload: Vec<u8>,
}

/// What to do with a worker's current-job record.
#[derive(Debug, Clone, PartialEq)]
pub enum Working {
    /// Leave it as it is.
    Keep,
    /// Nothing runs: remove it.
    Clear,
    /// Show this job.
    Show(WorkingRecord),
}

/// What an ack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinishReport {
    /// Jobs acked: counted, their records and retries written.
    pub acked: u64,
    /// Tokens of jobs that were no longer this worker's (a reaper took them
    /// back while they ran): nothing was written for them.
    pub taken: Vec<String>,
    /// Oldest failure records dropped to keep the failed list at its cap.
    pub trimmed: u64,
}

/// A claim on one signed job attempt's replay mark, made before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The in-flight copy the claim is for (its queue and token).
    pub queue: String,
    pub token: String,
    pub mark: crate::mark::Mark,
    /// Unix ms until which the mark must be kept: the job's expiry.
    pub until_ms: u64,
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This copy holds the attempt: run it.
    Claimed,
    /// Another copy of the attempt was claimed first (it ran, or runs).
    Replayed,
    /// The copy is no longer this worker's (a reaper took it back): drop it.
    Gone,
}

/// The next attempt of a failed job and when it is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub payload: Vec<u8>,
    /// Unix milliseconds.
    pub due_ms: u64,
}

/// A uniqueness claim: while `key` of `class` is held (for `window`), the
/// same job is not enqueued again.
#[derive(Debug, Clone, Copy)]
pub struct UniqueKey<'a> {
    pub class: &'a str,
    pub key: &'a str,
    pub job_id: &'a str,
    pub window: std::time::Duration,
}

/// What a unique enqueue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uniqueness {
    Enqueued,
    /// The key is held by this job id: nothing was stored.
    Duplicate(String),
}

/// What firing one tick of a recurring job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronFired {
    /// This call pushed the tick's job. `previous` is the tick fired before
    /// it (Unix ms), if any.
    Fired { previous: Option<u64> },
    /// Another worker fired this tick (or a later one) first.
    AlreadyFired { last: u64 },
}

/// The two time-ordered sets: jobs enqueued to run later, and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// `enqueue_at` / `enqueue_in`.
    Scheduled,
    /// Failed jobs waiting for their next attempt.
    Retry,
}

/// What the reaper did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReapReport {
    /// Ids of the workers found dead and cleaned up.
    pub dead_workers: Vec<String>,
    /// Jobs put back at the head of their queues.
    pub requeued: u64,
    /// Workers whose liveness lapsed but who were not judged: the store has
    /// not been reachable to the whole fleet for a full liveness period (an
    /// outage just ended), so a lapsed mark proves nothing yet.
    pub deferred: Vec<String>,
}

/// A registered worker as the store sees it.
#[derive(Debug, Clone, Default)]
pub struct WorkerRecord {
    pub id: String,
    pub started: Option<String>,
    pub heartbeat: Option<String>,
    /// Resque's `worker:<id>` JSON (`queue`, `run_at`, `payload`) when busy.
    pub working: Option<String>,
    pub processed: u64,
    pub failed: u64,
    /// A resq worker (else Ruby's, or another Resque client's).
    pub resq: bool,
    /// A resq worker that fetches nothing for now (USR2, or
    /// `pause-all-workers`).
    pub paused: bool,
}

/// Global counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub processed: u64,
    pub failed: u64,
}

/// Everything resq needs from storage.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Pushes every job in one round trip, adding their queues to the queue set.
    async fn enqueue(&self, jobs: &[OutgoingJob]) -> Result<(), StoreError>;

    /// The names in the queue set (`resque:queues`).
    async fn queues(&self) -> Result<Vec<String>, StoreError>;

    /// Atomically moves up to `max` jobs, in queue priority order, from the
    /// heads of `queues` to the worker's in-flight lists.
    async fn fetch(&self, worker: &WorkerId, queues: &[String], max: usize) -> Result<Fetched, StoreError>;

    /// Removes finished jobs from the in-flight lists, appends failure records
    /// (trimming the oldest past the store's cap), schedules retries, counts
    /// processed/failed (global and per worker) and updates the worker's
    /// current-job record, all at once. A job no longer in this worker's
    /// in-flight list (a reaper took it back) is left alone and reported as
    /// taken: it is never acked twice.
    async fn finish(&self, worker: &WorkerId, done: &[Finished], working: &Working)
        -> Result<FinishReport, StoreError>;

    /// Sets (or clears) the worker's current-job record, which Resque's
    /// tools show: a job that is running, never one that was refused.
    async fn set_working(&self, worker: &WorkerId, working: &Working) -> Result<(), StoreError>;

    /// Claims the replay marks of signed jobs this worker fetched, each
    /// atomically: of all copies of one attempt, one is claimed. A claimed
    /// mark stays set for good once its job is acked (whatever the outcome);
    /// a requeue or a recovery of the job releases it. One call, many claims.
    async fn claim(&self, worker: &WorkerId, claims: &[Claim]) -> Result<Vec<ClaimOutcome>, StoreError>;

    /// Puts in-flight jobs back at the head of their queues, in their order,
    /// releasing their claims.
    async fn requeue(&self, worker: &WorkerId, jobs: &[FetchedJob]) -> Result<(), StoreError>;

    /// Registers the worker the Resque way (workers set, `:started`, heartbeat)
    /// and marks it alive for `liveness_ttl_ms`.
    async fn register_worker(&self, worker: &WorkerId, started: &str, liveness_ttl_ms: u64) -> Result<(), StoreError>;

    /// Says whether the worker is paused (fetching nothing), for the tools
    /// that list workers. Cleared when the worker unregisters.
    async fn set_paused(&self, worker: &WorkerId, paused: bool) -> Result<(), StoreError>;

    /// Writes Resque's heartbeat from the store's own clock.
    async fn heartbeat(&self, worker: &WorkerId) -> Result<(), StoreError>;

    /// Extends resq's liveness mark, which the reaper reads, and repairs the
    /// worker's Resque registration (workers set, `:started`, heartbeat) if
    /// something removed it. Returns false when the mark had lapsed (an
    /// outage, or this worker was taken for dead).
    async fn keep_alive(&self, worker: &WorkerId, started: &str, liveness_ttl_ms: u64) -> Result<bool, StoreError>;

    /// Removes every trace of the worker (after its in-flight jobs are gone).
    async fn unregister_worker(&self, worker: &WorkerId) -> Result<(), StoreError>;

    /// Finds resq workers whose liveness lapsed, returns their in-flight jobs to
    /// the head of their queues (releasing their claims) and unregisters them.
    /// Judges no one unless the fleet has renewed its marks without a gap for
    /// at least `min_continuity` (a lapse during an outage proves nothing):
    /// those are reported as deferred. Safe to run from many workers at once.
    async fn reap_dead_workers(&self, min_continuity: std::time::Duration) -> Result<ReapReport, StoreError>;

    /// A signal that bumps whenever a producer may have pushed a job, so an idle
    /// worker fetches at once instead of waiting for its next poll. `None` when
    /// the store has no such signal (workers then only poll).
    fn wakeups(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Holds `job` until `at_ms` (Unix milliseconds), then it is pushed to its queue.
    async fn schedule(&self, job: &OutgoingJob, at_ms: u64) -> Result<(), StoreError>;

    /// Moves up to `limit` jobs due at `now_ms` from both schedules to the tail
    /// of their queues, atomically (many workers may run it at once); returns
    /// how many moved. `now_ms` is a parameter so tests control the clock.
    async fn promote_due(&self, now_ms: u64, limit: usize) -> Result<u64, StoreError>;

    /// Jobs in a schedule, soonest first, with their due time (Unix ms).
    async fn schedule_range(&self, which: Schedule, start: u64, count: u64) -> Result<Vec<(String, u64)>, StoreError>;

    /// How many jobs a schedule holds.
    async fn schedule_len(&self, which: Schedule) -> Result<u64, StoreError>;

    /// Removes exactly this job from a schedule; false when it was gone.
    async fn schedule_remove(&self, which: Schedule, job: &str) -> Result<bool, StoreError>;

    /// Moves exactly this job from a schedule to the tail of `queue` now
    /// (its cap checked: `QueueFull` leaves it where it was), atomically;
    /// false when it was gone.
    async fn schedule_run_now(&self, which: Schedule, job: &str, queue: &str) -> Result<bool, StoreError>;

    /// Removes exactly this expired-job record; false when it was gone.
    async fn expired_remove(&self, record: &str) -> Result<bool, StoreError>;

    /// Pushes `job` unless its uniqueness key is held, atomically (two
    /// producers racing store one job).
    async fn enqueue_unique(&self, job: &OutgoingJob, unique: &UniqueKey<'_>) -> Result<Uniqueness, StoreError>;

    /// Removes jobs past their expiry from the queues and schedules (a bounded
    /// scan), records them and counts them, if no other worker swept within
    /// `every`; returns `None` when another one holds the turn.
    async fn sweep_expired(
        &self,
        now_ms: u64,
        owner: &str,
        every: std::time::Duration,
    ) -> Result<Option<u64>, StoreError>;

    /// The newest expired-job records (JSON: `expired_at`, `queue`, `payload`).
    async fn expired_range(&self, start: u64, count: u64) -> Result<Vec<String>, StoreError>;

    /// How many expired jobs the sweeper has removed.
    async fn expired_total(&self) -> Result<u64, StoreError>;

    /// Pushes `job` as tick `tick_ms` of the recurring entry `name`, unless
    /// that tick or a later one was fired already: check, mark and push are
    /// one atomic step, so many workers fire each tick once. A full queue
    /// is `StoreError::QueueFull`, and the tick is spent.
    async fn fire_cron(&self, name: &str, tick_ms: u64, job: &OutgoingJob) -> Result<CronFired, StoreError>;

    /// Records `passed_ms` as the last fired tick of `name` if the entry has
    /// no mark yet (it was just deployed), so no tick from before its first
    /// sight ever fires; true when this call recorded it.
    async fn cron_first_sight(&self, name: &str, passed_ms: u64) -> Result<bool, StoreError>;

    /// Every recurring entry's last fired tick (Unix ms).
    async fn cron_last_fired(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Pauses (or resumes) fetching from one queue, for every worker.
    async fn set_queue_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError>;

    /// The paused queues.
    async fn paused_queues(&self) -> Result<Vec<String>, StoreError>;

    /// Caps how many jobs may wait in `queue` (`None` removes the cap); an
    /// enqueue that would pass it is refused, atomically, with `QueueFull`.
    async fn set_queue_cap(&self, queue: &str, cap: Option<u64>) -> Result<(), StoreError>;

    /// Every capped queue and its cap.
    async fn queue_caps(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// True when `resque:pause-all-workers` is set.
    async fn paused_all(&self) -> Result<bool, StoreError>;

    // ---- admin: what the CLI, the dashboard and the HTTP API read and do ----

    async fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Each known queue with its length.
    async fn queue_sizes(&self) -> Result<Vec<(String, u64)>, StoreError>;
    async fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError>;
    async fn failed_len(&self) -> Result<u64, StoreError>;
    /// Raw failure records `start..start+count` (oldest first).
    async fn failed_range(&self, start: u64, count: u64) -> Result<Vec<String>, StoreError>;
    /// Removes exactly this record; false if it was already gone.
    async fn failed_remove(&self, record: &str) -> Result<bool, StoreError>;
    /// Removes exactly this record and pushes `job` to its queue, atomically, so
    /// two operators retrying at once enqueue it once. False if already gone.
    /// `release` is the job's replay mark: the operator's retry runs the
    /// spent attempt once more, so its mark is cleared in the same step.
    async fn failed_requeue(
        &self,
        record: &str,
        job: &OutgoingJob,
        release: Option<&crate::mark::Mark>,
    ) -> Result<bool, StoreError>;
    /// Empties the failed list; returns how many records it held.
    async fn failed_clear(&self) -> Result<u64, StoreError>;
}
