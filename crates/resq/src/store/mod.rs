//! The store interface: the only door to storage, split by role.
//!
//! - [`JobQueues`]: what producers and workers do with queues (push,
//!   fetch, claim, ack, requeue);
//! - [`WorkerRegistry`]: workers' registration, liveness and recovery;
//! - [`Schedules`]: jobs for later, retries, expiry sweeps, recurring ticks;
//! - [`AdminStore`]: what the CLI, the dashboard and the HTTP API read and
//!   act on (through [`crate::Admin`]).
//!
//! It speaks resq's types (records, outcomes, [`UnixMs`]); a store writes
//! them in its own formats (the Redis store: Resque's). **Atomicity is
//! promised per queue only**: no operation needs one atomic step across
//! two queues, so a clustered store can place each queue alone. Each method
//! says what it makes atomic. The Redis store implements every operation of
//! more than one step as one Lua script; an embedded store would use one
//! transaction. Every store passes the conformance suite
//! (`resq-store-tests`).

mod error;
mod types;

use async_trait::async_trait;

pub use error::{BackendError, StoreError};
pub use types::*;

use crate::clock::UnixMs;
use crate::policy::Sealed;
use crate::worker_id::WorkerId;

/// What producers and workers do with queues.
#[async_trait]
pub trait JobQueues: Send + Sync {
    /// Pushes sealed jobs to the tail of their queues, in order, and adds
    /// the queues to the queue set. A queue over its cap refuses the whole
    /// call (`QueueFull`) and nothing is stored. Atomic per queue (one
    /// script or transaction for the whole call in the Redis store).
    async fn enqueue(&self, jobs: &[Sealed]) -> Result<(), StoreError>;

    /// Pushes `job` unless its uniqueness key is held, and takes the key for
    /// its window: check, cap, push and claim are one atomic step (two
    /// producers racing store one job).
    async fn enqueue_unique(&self, job: &Sealed, unique: &UniqueKey<'_>) -> Result<Uniqueness, StoreError>;

    /// The names in the queue set.
    async fn queues(&self) -> Result<Vec<String>, StoreError>;

    /// Writes tracked jobs' records (opt-in per job; one round trip for
    /// the call). A store that does not track ignores it.
    async fn track(&self, updates: &[TrackUpdate]) -> Result<(), StoreError> {
        let _ = updates;
        Ok(())
    }

    /// A tracked job's record; `None` for a job not tracked (or whose
    /// record has been dropped, a day after its expiry).
    async fn tracked(&self, id: &str) -> Result<Option<TrackRecord>, StoreError> {
        let _ = id;
        Ok(None)
    }

    /// Moves up to `max` jobs, in the order of `queues` (each queue from its
    /// head), into the worker's in-flight set. Atomic: a job is never in
    /// neither place.
    async fn fetch(&self, worker: &WorkerId, queues: &[String], max: usize) -> Result<Fetched, StoreError>;

    /// Claims the replay marks of signed jobs this worker fetched: of all
    /// copies of one attempt, one is claimed (atomic per claim). A claimed
    /// mark stays set once its job is acked, whatever the outcome; a requeue
    /// or a recovery releases it.
    async fn claim(&self, worker: &WorkerId, claims: &[Claim]) -> Result<Vec<ClaimOutcome>, StoreError>;

    /// Acks finished jobs: removes them (and their claims) from the
    /// in-flight set, writes failure records (trimming the oldest past the
    /// cap), schedules retries, counts processed and failed, and updates the
    /// worker's current-job record, all at once. A job no longer in this
    /// worker's in-flight set (a reaper took it back) is left alone and
    /// reported as taken: it is never acked twice.
    async fn finish(&self, worker: &WorkerId, done: &[Finished], working: &Working)
        -> Result<FinishReport, StoreError>;

    /// Puts in-flight jobs back at the head of their queues, in their
    /// order, releasing their claims; a job already taken back is skipped.
    /// Atomic per call.
    async fn requeue(&self, worker: &WorkerId, jobs: &[FetchedJob]) -> Result<(), StoreError>;

    /// Puts back, in fetch order and with their claims released, the jobs in
    /// this worker's in-flight records that it does not hold (`held`: the
    /// tokens it runs, has finished or will put back). A fetch whose reply
    /// was lost (the connection dropped after the store took the jobs)
    /// leaves such jobs, which nobody else would take back while the worker
    /// lives. Returns how many went back.
    async fn requeue_unheld(&self, worker: &WorkerId, held: &[String]) -> Result<u64, StoreError>;

    /// Sets (or clears) the worker's current-job record, which Resque's
    /// tools show: a job that runs, never one that was refused.
    async fn set_working(&self, worker: &WorkerId, working: &Working) -> Result<(), StoreError>;

    /// A signal that bumps whenever a producer may have pushed a job, so an
    /// idle worker fetches at once instead of at its next poll. `None` when
    /// the store has none (workers then only poll).
    fn wakeups(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// Workers' registration, liveness and recovery.
#[async_trait]
pub trait WorkerRegistry: Send + Sync {
    /// Registers the worker (Resque's registry too) and marks it alive.
    async fn register_worker(&self, registration: &Registration<'_>) -> Result<(), StoreError>;

    /// Extends the worker's liveness and repairs its registration if
    /// something removed it. Returns false when the liveness had lapsed (an
    /// outage, or it was taken for dead). Keeps the fleet's continuity (see
    /// [`WorkerRegistry::reap_dead_workers`]).
    async fn keep_alive(&self, registration: &Registration<'_>) -> Result<bool, StoreError>;

    /// Writes the Resque heartbeat from the store's own clock.
    async fn heartbeat(&self, worker: &WorkerId) -> Result<(), StoreError>;

    /// Says whether the worker is paused (fetching nothing), for the tools
    /// that list workers.
    async fn set_paused(&self, worker: &WorkerId, paused: bool) -> Result<(), StoreError>;

    /// Removes every trace of the worker, putting its in-flight jobs back
    /// first (claims released). Atomic per queue.
    async fn unregister_worker(&self, worker: &WorkerId) -> Result<(), StoreError>;

    /// Finds workers whose liveness lapsed, returns their in-flight jobs to
    /// the head of their queues (claims released) and unregisters them.
    /// Judges no one unless the fleet renewed its liveness without a gap for
    /// at least `rules.min_continuity` (a lapse during an outage proves
    /// nothing): those are reported as deferred. Each death is counted
    /// against the jobs it interrupts; a job counted before runs alone, and
    /// one whose lone run took its worker down more than
    /// `rules.max_recoveries` times goes to the failed list (`poison`)
    /// instead of its queue. The check and the move are atomic per queue;
    /// many reapers at once are safe.
    async fn reap_dead_workers(&self, rules: ReapRules) -> Result<ReapReport, StoreError>;
}

/// Jobs for later, retries, expiry and recurring ticks.
#[async_trait]
pub trait Schedules: Send + Sync {
    /// Holds `job` until `at`, then it is pushed to its queue.
    async fn schedule(&self, job: &Sealed, at: UnixMs) -> Result<(), StoreError>;

    /// Moves up to `limit` jobs due at `now` from both schedules to the tail
    /// of their queues; a job whose queue is full stays where it is until
    /// there is room. Each move is atomic; many workers may run it at once.
    /// `now` is a parameter so tests control the clock.
    async fn promote_due(&self, now: UnixMs, limit: usize) -> Result<Promoted, StoreError>;

    /// Jobs in a schedule, soonest first.
    async fn schedule_range(&self, which: Schedule, start: u64, count: u64) -> Result<Vec<ScheduledJob>, StoreError>;

    /// How many jobs a schedule holds.
    async fn schedule_len(&self, which: Schedule) -> Result<u64, StoreError>;

    /// Removes exactly this job from a schedule; false when it was gone.
    async fn schedule_remove(&self, which: Schedule, job: &ScheduledJob) -> Result<bool, StoreError>;

    /// Moves exactly this job to the tail of `queue` now (its cap checked:
    /// `QueueFull` leaves it where it was), atomically; false when gone.
    async fn schedule_run_now(&self, which: Schedule, job: &ScheduledJob, queue: &str) -> Result<bool, StoreError>;

    /// Removes jobs past their expiry from the queues and schedules (a
    /// bounded scan), records and counts them, if no other caller swept in
    /// this turn's interval; `None` when another one holds the turn.
    async fn sweep_expired(&self, turn: &SweepTurn<'_>) -> Result<Option<u64>, StoreError>;

    /// The newest expired-job records.
    async fn expired_range(&self, start: u64, count: u64) -> Result<Vec<ExpiredRecord>, StoreError>;

    /// How many expired jobs were removed, ever.
    async fn expired_total(&self) -> Result<u64, StoreError>;

    /// Removes one expired-job record; false when it was gone.
    async fn expired_remove(&self, record: &ExpiredRecord) -> Result<bool, StoreError>;

    /// Pushes `job` as tick `tick` of the recurring entry `name`, unless
    /// that tick or a later one was fired: check, mark and push are one
    /// atomic step. A full queue is `QueueFull`, and the tick is spent.
    async fn fire_cron(&self, name: &str, tick: UnixMs, job: &Sealed) -> Result<CronFired, StoreError>;

    /// Records `passed` as the last fired tick of `name` if it has none (it
    /// was just deployed); true when this call recorded it.
    async fn cron_first_sight(&self, name: &str, passed: UnixMs) -> Result<bool, StoreError>;

    /// Every recurring entry's last fired tick.
    async fn cron_last_fired(&self) -> Result<Vec<(String, UnixMs)>, StoreError>;
}

/// What the admin layer reads and does.
#[async_trait]
pub trait AdminStore: Send + Sync {
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Each known queue with its length.
    async fn queue_sizes(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Every registered worker, Ruby's included.
    async fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        let ids = self.worker_ids().await?;
        self.worker_records(&ids).await
    }

    /// The ids of every registered worker, sorted (one read, however many
    /// workers: a page then reads only its own records).
    async fn worker_ids(&self) -> Result<Vec<String>, StoreError>;

    /// The records of these workers, in order (one round trip); a worker
    /// gone since its id was read still gets a record, empty.
    async fn worker_records(&self, ids: &[String]) -> Result<Vec<WorkerRecord>, StoreError>;

    /// The jobs a worker holds in flight (fetched, not yet acked): at most
    /// `count` from `start`, each with its queue, in a bounded number of
    /// round trips (one per queue it fetched from, plus one).
    async fn in_flight(&self, worker: &str, start: u64, count: u64) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// How many jobs a worker holds in flight, without reading them.
    async fn in_flight_count(&self, worker: &str) -> Result<u64, StoreError> {
        Ok(self.in_flight(worker, 0, u64::MAX).await?.len() as u64)
    }

    /// Jobs waiting in `queue`, `start..start+count` from its head, exactly
    /// as stored.
    async fn queue_range(&self, queue: &str, start: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Removes one waiting job with exactly these bytes from `queue`; false
    /// when none was there (a worker took it, or another operator).
    async fn queue_remove(&self, queue: &str, job: &[u8]) -> Result<bool, StoreError>;

    async fn failed_len(&self) -> Result<u64, StoreError>;

    /// Failure records `start..start+count`, oldest first.
    async fn failed_range(&self, start: u64, count: u64) -> Result<Vec<FailureRecord>, StoreError>;

    /// One failure record by its id, in a constant number of steps (`None`
    /// when no record has it). Records written without an id (Ruby's) are
    /// found by their handle through [`AdminStore::failed_range`].
    async fn failed_get(&self, id: &str) -> Result<Option<FailureRecord>, StoreError>;

    /// Removes exactly this record; false when it was gone.
    async fn failed_remove(&self, record: &FailureRecord) -> Result<bool, StoreError>;

    /// Removes exactly this record and pushes its job to its queue (the cap
    /// checked: `QueueFull` leaves it), atomically, so two operators
    /// retrying at once enqueue it once. `release` is the job's replay mark:
    /// the operator's retry runs the spent attempt once more, so the mark is
    /// cleared in the same step. False when the record was gone.
    async fn failed_requeue(
        &self,
        record: &FailureRecord,
        queue: &str,
        release: Option<&crate::mark::Mark>,
    ) -> Result<bool, StoreError>;

    /// Empties the failed list; returns how many records it held.
    async fn failed_clear(&self) -> Result<u64, StoreError>;

    /// Pauses (or resumes) fetching from one queue, for every worker.
    async fn set_queue_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError>;

    async fn paused_queues(&self) -> Result<Vec<String>, StoreError>;

    /// Caps how many jobs may wait in `queue` (`None` removes the cap).
    async fn set_queue_cap(&self, queue: &str, cap: Option<u64>) -> Result<(), StoreError>;

    async fn queue_caps(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// True when every worker is paused (Resque's `pause-all-workers`).
    async fn paused_all(&self) -> Result<bool, StoreError>;
}

/// Everything resq needs from storage: every role.
pub trait Store: JobQueues + WorkerRegistry + Schedules + AdminStore + 'static {}

impl<T: JobQueues + WorkerRegistry + Schedules + AdminStore + 'static> Store for T {}
