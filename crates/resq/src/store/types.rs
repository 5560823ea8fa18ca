//! The values that cross the store interface: resq's own types. A store
//! writes them in its formats (the Redis store: Resque's) and reads them
//! back into these.

use std::time::Duration;

use crate::clock::UnixMs;
use crate::failure::FailureInfo;
use crate::mark::Mark;
use crate::policy::Sealed;
use crate::worker_id::WorkerId;

/// A job moved into a worker's in-flight set: the unit of work that is later
/// finished (acked) or requeued. The payload stays as raw bytes, so ack,
/// requeue and failure records use exactly what was stored; it is shared,
/// not copied, between the worker's bookkeeping and the task that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedJob {
    pub queue: String,
    pub payload: bytes::Bytes,
    /// The store's handle on this in-flight copy (ack and requeue use it).
    pub token: String,
}

/// The answer of a fetch.
#[derive(Debug)]
pub enum Fetched {
    /// Every worker is paused (Resque's `pause-all-workers`): nothing moved.
    Paused,
    /// Up to `max` jobs, in priority order (possibly none).
    Jobs(Vec<FetchedJob>),
}

/// A job that left the worker, and how.
#[derive(Debug, Clone)]
pub struct Finished {
    pub job: FetchedJob,
    pub outcome: Outcome,
}

/// How a job left the worker: exactly one of these.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded,
    /// It failed (or was refused) for good: the store records the failure.
    Failed(NewFailure),
    /// It failed with attempts left: `next` (re-signed by the worker) waits
    /// in the retry schedule until `due`. Counted as failed.
    Retry {
        next: Sealed,
        due: UnixMs,
    },
}

/// A failure to record: what went wrong, when, and how much of the payload
/// the record keeps. The store adds the worker and the queue.
#[derive(Debug, Clone)]
pub struct NewFailure {
    pub info: FailureInfo,
    pub keep: KeepPayload,
    pub at: UnixMs,
}

/// How much of a job's payload its failure record keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepPayload {
    /// The payload as it was: a job that ran, or the one claimed attempt of
    /// a signed job. An operator can retry it byte for byte.
    Whole,
    /// A refusal of a copy anyone could push again: whole only when it is a
    /// small job object, otherwise a stand-in naming `class` (when it is a
    /// valid class name) with the first bytes, so a million junk payloads
    /// cost the failed list a million bounded records at most (and the list
    /// itself is capped).
    Bounded { class: Option<String> },
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
    pub mark: Mark,
    /// The mark must be kept until then: the job's expiry.
    pub until: UnixMs,
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

/// A job a worker is running, as Resque's tools show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingRecord {
    pub queue: String,
    pub run_at: UnixMs,
    /// The job as stored: a JSON object with a string `class` and an array
    /// `args` (only a job that decoded is ever shown).
    pub payload: Vec<u8>,
}

/// What to do with a worker's current-job record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Working {
    /// Leave it as it is.
    Keep,
    /// Nothing runs: remove it.
    Clear,
    /// Show this job.
    Show(WorkingRecord),
}

/// A uniqueness claim: while `key` of `class` is held (for `window`), the
/// same job is not enqueued again.
#[derive(Debug, Clone, Copy)]
pub struct UniqueKey<'a> {
    pub class: &'a str,
    pub key: &'a str,
    pub job_id: &'a str,
    pub window: Duration,
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
    /// This call pushed the tick's job; `previous` is the tick fired before.
    Fired { previous: Option<UnixMs> },
    /// Another worker fired this tick (or a later one) first.
    AlreadyFired { last: UnixMs },
}

/// The two time-ordered sets: jobs enqueued to run later, and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// `enqueue_at` / `enqueue_in`.
    Scheduled,
    /// Failed jobs waiting for their next attempt.
    Retry,
}

/// A job waiting in a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledJob {
    pub due: UnixMs,
    /// The job exactly as stored (removal matches these bytes).
    pub payload: Vec<u8>,
}

/// What one promotion turn did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Promoted {
    /// Jobs pushed to their queues.
    pub moved: u64,
    /// Due jobs left in their schedule because their queue is full.
    pub held: u64,
    /// Due jobs that name no usable queue: recorded as failed.
    pub unroutable: u64,
}

/// A record exactly as the store holds it: what a removal matches, so an
/// operator removes the record they saw and not one that replaced it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Stored(pub Vec<u8>);

/// A job the expiry sweeper removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredRecord {
    /// When it was removed (`None` when the record does not say).
    pub expired_at: Option<UnixMs>,
    pub queue: Option<String>,
    /// The job as it was stored.
    pub payload: Vec<u8>,
    pub stored: Stored,
}

/// A failure record, read back. Every field but `stored` may be missing:
/// Ruby and older versions wrote them too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureRecord {
    /// resq's id for the record (Resque 3.1's `failure_id`).
    pub id: Option<String>,
    pub failed_at: Option<UnixMs>,
    pub queue: Option<String>,
    /// The payload's class, when the payload is a job object.
    pub class: Option<String>,
    /// Resque's `exception`: the error type, or resq's reason code.
    pub exception: Option<String>,
    /// The message.
    pub error: Option<String>,
    /// resq's reason code.
    pub reason: Option<String>,
    pub worker: Option<String>,
    pub backtrace: Vec<String>,
    /// When an operator last retried it from Ruby's tools.
    pub retried_at: Option<UnixMs>,
    /// The job as the record keeps it (JSON), when it keeps one.
    pub payload: Option<Vec<u8>>,
    /// For a refusal that kept a stand-in: the payload's size and first
    /// bytes. Such a record cannot be retried.
    pub excerpt: Option<PayloadExcerpt>,
    /// False when the stored bytes are not a record at all.
    pub readable: bool,
    pub stored: Stored,
}

/// The start of a payload too large or too broken to keep whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadExcerpt {
    pub bytes: u64,
    pub head: String,
}

/// A worker's registration and liveness.
#[derive(Debug, Clone, Copy)]
pub struct Registration<'a> {
    pub worker: &'a WorkerId,
    pub started: UnixMs,
    /// The worker is taken for dead this long after its last renewal.
    pub liveness_ttl: Duration,
}

/// Most jobs one sweep looks at per queue or schedule (from the head); a
/// sweeper that removed this many sweeps again at once.
pub const SWEEP_BATCH: u64 = 1000;

/// One caller's bid for the sweep of this interval.
#[derive(Debug, Clone, Copy)]
pub struct SweepTurn<'a> {
    pub now: UnixMs,
    pub owner: &'a str,
    pub every: Duration,
}

/// How many times, by default, a job in flight when its worker died is put
/// back before the next death records it as poison.
pub const DEFAULT_MAX_RECOVERIES: u32 = 3;

/// How a reaper judges workers and treats their jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReapRules {
    /// Judge no one unless the fleet renewed its liveness marks without a
    /// gap for this long (a lapse during an outage proves nothing).
    pub min_continuity: Duration,
    /// A death is counted against every job it interrupts, and such a job
    /// is put back at most this many times; from its first recovery on it
    /// runs alone, and a lone run that takes its worker down once more
    /// records it as failed with reason `poison` instead.
    pub max_recoveries: u32,
}

impl ReapRules {
    /// The default limit on recoveries, after `min_continuity`.
    pub fn after(min_continuity: Duration) -> Self {
        Self {
            min_continuity,
            max_recoveries: DEFAULT_MAX_RECOVERIES,
        }
    }
}

/// A job recorded as poison by a reaper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoisonedJob {
    pub queue: String,
    /// Its failure record's id.
    pub failure_id: String,
    /// How many workers died while it was in flight.
    pub deaths: u32,
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
    /// Jobs that took their worker down too often: now in the failed list
    /// with reason `poison`, not in their queue.
    pub poisoned: Vec<PoisonedJob>,
}

/// A registered worker as the store sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerRecord {
    pub id: String,
    pub started: Option<UnixMs>,
    pub heartbeat: Option<UnixMs>,
    /// It shows a current job (which `working` is, when it can be read).
    pub busy: bool,
    pub working: Option<WorkingRecord>,
    pub processed: u64,
    pub failed: u64,
    /// A resq worker (else Ruby's, or another Resque client's).
    pub resq: bool,
    /// A resq worker that fetches nothing for now (USR2, or every worker
    /// paused).
    pub paused: bool,
}

/// Global counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub processed: u64,
    pub failed: u64,
    /// Failure records dropped to keep the failed list at its cap.
    pub failed_trimmed: u64,
}

/// Where a tracked job is (tracking is opt-in per job: `SealOptions::track`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackState {
    Queued,
    Scheduled,
    Running,
    Retrying,
    Succeeded,
    Failed,
    /// Its lifetime passed before it ran (read from its `expires_at`).
    Expired,
}

impl TrackState {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackState::Queued => "queued",
            TrackState::Scheduled => "scheduled",
            TrackState::Running => "running",
            TrackState::Retrying => "retrying",
            TrackState::Succeeded => "succeeded",
            TrackState::Failed => "failed",
            TrackState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<TrackState> {
        Some(match text {
            "queued" => TrackState::Queued,
            "scheduled" => TrackState::Scheduled,
            "running" => TrackState::Running,
            "retrying" => TrackState::Retrying,
            "succeeded" => TrackState::Succeeded,
            "failed" => TrackState::Failed,
            "expired" => TrackState::Expired,
            _ => return None,
        })
    }
}

/// One change of a tracked job's record.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackUpdate {
    pub id: String,
    pub state: TrackState,
    pub attempt: u32,
    pub at: UnixMs,
    /// Set when the job is enqueued: who may read the record, its class,
    /// queue and expiry.
    pub first: Option<TrackFirst>,
    /// Why it failed (clipped), for `retrying` and `failed`.
    pub error: Option<String>,
    /// The record is kept until then (the job's expiry and a day).
    pub keep_until: UnixMs,
}

/// What a tracked job's record learns once, at enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackFirst {
    pub owner: String,
    pub class: String,
    pub queue: String,
    pub expires_at: UnixMs,
}

/// A tracked job's record.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackRecord {
    pub id: String,
    pub state: TrackState,
    pub attempt: u32,
    pub updated_at: UnixMs,
    pub owner: String,
    pub class: String,
    pub queue: String,
    pub expires_at: UnixMs,
    pub error: Option<String>,
}

impl TrackRecord {
    /// The state as of `now`: a job still waiting past its expiry is
    /// `expired` (it will never run).
    pub fn state_at(&self, now: UnixMs) -> TrackState {
        let waiting = matches!(
            self.state,
            TrackState::Queued | TrackState::Scheduled | TrackState::Retrying
        );
        if waiting && self.expires_at.0 > 0 && now > self.expires_at {
            TrackState::Expired
        } else {
            self.state
        }
    }
}
