//! The manager: keeps up to `concurrency` jobs running, fetches as many as there
//! are free slots, batches acks, and carries out the control's mode.
//!
//! Every fetched job is tracked by its task id until it is finished (acked) or
//! requeued, so a stop can put back exactly the jobs that did not complete.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::control::{ControlReceiver, Mode};
use super::fetch::Fetcher;
use super::process::{process, ProcessContext, TaskOutput};
use super::WorkerReport;
use crate::clock::UnixMs;
use crate::failure::FailureInfo;
use crate::reason::Reason;
use crate::store::{
    Fetched, FetchedJob, Finished, KeepPayload, NewFailure, Outcome, Store, StoreError, Working, WorkingRecord,
};
use crate::worker_id::WorkerId;

pub(crate) struct Manager {
    pub store: Arc<dyn Store>,
    pub worker: WorkerId,
    pub fetcher: Fetcher,
    pub ctx: Arc<ProcessContext>,
    pub concurrency: usize,
    pub burst: bool,
    pub poll: Backoff,
    pub poll_max: Duration,
    pub errors: Backoff,
    pub running: JoinSet<TaskOutput>,
    /// Each running job with its fetch sequence number, so a stop can put
    /// jobs back in the order they were fetched.
    pub in_flight: HashMap<Id, (u64, FetchedJob)>,
    /// The task of each running job, by its token (so a job's start is
    /// matched in one step, not by a scan of every running job).
    pub tasks_by_token: HashMap<String, Id>,
    pub fetched_seq: u64,
    pub done: Vec<Finished>,
    pub to_requeue: Vec<(u64, FetchedJob)>,
    pub report: WorkerReport,
    /// Bumps when a producer pushed something: ends an idle wait early.
    pub wake: Option<tokio::sync::watch::Receiver<u64>>,
    /// The reaper's findings: a burst worker waits for its verdict on
    /// workers that look dead before it calls the queues empty.
    pub reaping: Arc<super::reaper::Reaping>,
    /// Jobs tell when they start running (past every check), by token.
    pub started_rx: tokio::sync::mpsc::UnboundedReceiver<(String, UnixMs)>,
    /// Running jobs (by token) and when they started.
    pub running_since: HashMap<String, UnixMs>,
    /// The job Resque's "working" record shows, if any. Only this manager
    /// writes the record, so its writes cannot overtake each other.
    pub shown: Option<String>,
    /// Whether the store lists this worker as paused.
    pub paused_listed: bool,
    /// The last fetch found `pause-all-workers` set.
    pub paused_by_store: bool,
    /// A fetch failed: jobs may sit in this worker's in-flight records that
    /// it never received (checked before the next fetch).
    pub unsure_of_fetch: bool,
}

impl Manager {
    pub(crate) async fn run(mut self, mut control: ControlReceiver) -> WorkerReport {
        // When set, do not fetch before this instant (empty queues, errors, pause-all).
        let mut fetch_after: Option<Instant> = None;
        // Jobs that came back unrun (their claim failed: the store refused
        // or was away) hold fetching back, doubling while it goes on, so a
        // store that refuses every claim is not asked again in a tight
        // fetch, claim, put-back loop. A producer's wake-up does not lift it.
        let mut put_back = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        let mut held_until: Option<Instant> = None;
        let mut processed = self.report.processed;
        // Fetch and ack in batches: refill only once a quarter of the slots are
        // free (or nothing runs), else jobs finishing one by one would turn
        // into one round trip each way per job.
        let batch = (self.concurrency / 4).max(1);
        loop {
            let refill = self.running.is_empty() || self.running.len() + batch <= self.concurrency;
            if refill || self.done.len() >= batch {
                self.flush(&mut control).await;
            }
            if !self.to_requeue.is_empty() {
                held_until = Some(Instant::now() + put_back.next_delay());
            } else if self.report.processed > processed {
                put_back.reset();
            }
            processed = self.report.processed;
            self.requeue_pending().await;
            let mode = *control.borrow_and_update();
            self.list_paused(mode == Mode::Pause || self.paused_by_store).await;
            if mode == Mode::Stop {
                self.stop_now().await;
                break;
            }
            if mode == Mode::Quit && self.running.is_empty() {
                break;
            }
            let may_fetch = mode == Mode::Run
                && refill
                && fetch_after.is_none_or(|at| Instant::now() >= at)
                && held_until.is_none_or(|at| Instant::now() >= at);
            if may_fetch && self.unsure_of_fetch {
                // A fetch failed: the store may have taken jobs for this
                // worker whose reply never came. Put those back first.
                match self.store.requeue_unheld(&self.worker, &self.held_tokens()).await {
                    Ok(back) => {
                        self.unsure_of_fetch = false;
                        if back > 0 {
                            tracing::warn!(jobs = back, "put back jobs a lost fetch reply had left in flight");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot yet check for jobs a lost fetch reply left"),
                }
            }
            if may_fetch {
                fetch_after = None;
                // Anything published from here on wakes the wait below.
                if let Some(wake) = &mut self.wake {
                    wake.borrow_and_update();
                }
                let free = self.concurrency - self.running.len();
                match self.fetcher.fetch(free).await {
                    Ok(Fetched::Jobs(jobs)) if !jobs.is_empty() => {
                        self.paused_by_store = false;
                        self.poll.reset();
                        self.errors.reset();
                        for job in jobs {
                            self.spawn(job);
                        }
                        continue;
                    }
                    Ok(Fetched::Jobs(_)) => {
                        self.paused_by_store = false;
                        self.errors.reset();
                        if self.burst && self.running.is_empty() && !self.reaping.undecided() {
                            break;
                        }
                        fetch_after = Some(Instant::now() + self.poll.next_delay());
                    }
                    Ok(Fetched::Paused) => {
                        self.paused_by_store = true;
                        fetch_after = Some(Instant::now() + self.poll_max);
                        // Listed now: the loop may wait a while before it looks again.
                        self.list_paused(true).await;
                    }
                    Err(e) => {
                        let delay = self.errors.next_delay();
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "fetch failed");
                        fetch_after = Some(Instant::now() + delay);
                        self.unsure_of_fetch = true;
                    }
                }
            }
            let wake_at = match (fetch_after, held_until.filter(|at| Instant::now() < *at)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }
            .filter(|_| mode == Mode::Run && refill);
            tokio::select! {
                Some(result) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    self.collect(result);
                    while let Some(more) = self.running.try_join_next_with_id() {
                        self.collect(more);
                    }
                }
                changed = control.changed() => {
                    if changed.is_err() {
                        // Nobody can steer us any more: finish what runs and exit.
                        tracing::warn!("worker control dropped; finishing running jobs");
                        self.drain_then_stop(&mut control).await;
                        break;
                    }
                }
                _ = sleep_until(wake_at), if wake_at.is_some() => {}
                _ = woken(&mut self.wake), if wake_at.is_some() => {
                    fetch_after = None;
                    self.poll.reset();
                }
                Some((token, at)) = self.started_rx.recv() => self.note_started(token, at).await,
            }
        }
        self.report
    }

    /// Every token this worker holds: running, finished and not yet acked,
    /// or waiting to be put back.
    fn held_tokens(&self) -> Vec<String> {
        self.in_flight
            .values()
            .map(|(_, job)| job.token.clone())
            .chain(self.done.iter().map(|f| f.job.token.clone()))
            .chain(self.to_requeue.iter().map(|(_, job)| job.token.clone()))
            .collect()
    }

    fn spawn(&mut self, job: FetchedJob) {
        let ctx = Arc::clone(&self.ctx);
        let handle = self.running.spawn(process(job.clone(), ctx));
        self.fetched_seq += 1;
        self.tasks_by_token.insert(job.token.clone(), handle.id());
        self.in_flight.insert(handle.id(), (self.fetched_seq, job));
    }

    fn collect(&mut self, result: Result<(Id, TaskOutput), JoinError>) {
        let id = match &result {
            Ok((id, _)) => *id,
            Err(err) => err.id(),
        };
        if let Some((_, job)) = self.in_flight.get(&id) {
            self.running_since.remove(&job.token);
            self.tasks_by_token.remove(&job.token);
        }
        match result {
            Ok((id, TaskOutput::Finished(finished, reason))) => {
                self.in_flight.remove(&id);
                self.report.count(reason);
                self.done.push(finished);
            }
            Ok((id, TaskOutput::Requeue(job))) => {
                if let Some((seq, _)) = self.in_flight.remove(&id) {
                    self.to_requeue.push((seq, job));
                }
            }
            Ok((id, TaskOutput::Taken)) => {
                self.in_flight.remove(&id);
            }
            Err(err) => {
                let Some((seq, job)) = self.in_flight.remove(&err.id()) else {
                    return;
                };
                if err.is_cancelled() {
                    self.to_requeue.push((seq, job));
                } else {
                    // Only an observer callback can panic here (jobs are caught
                    // in `process`); the job still gets a record.
                    let info = FailureInfo {
                        reason: Reason::JobPanicked,
                        exception: "Panic".into(),
                        message: "the job task panicked outside the job".into(),
                    };
                    self.report.count(Some(Reason::JobPanicked));
                    self.done.push(Finished {
                        job,
                        outcome: Outcome::Failed(NewFailure {
                            info,
                            keep: KeepPayload::Whole,
                            at: UnixMs::now(),
                        }),
                    });
                }
            }
        }
    }

    /// Acks finished jobs, retrying with backoff while the store is away. On a
    /// stop it gives up: the jobs stay in flight and are recovered (and may run
    /// again: at-least-once).
    async fn flush(&mut self, control: &mut ControlReceiver) {
        if self.done.is_empty() {
            return;
        }
        let working = self.working_update();
        while !self.done.is_empty() {
            match self.store.finish(&self.worker, &self.done, &working).await {
                Ok(report) => {
                    note_finish(&report);
                    self.done.clear();
                    self.errors.reset();
                }
                // The ack is made on the master; only its copy on replicas
                // is short. Sending it again adds no replica (the jobs are
                // gone from the in-flight records: they would come back as
                // "taken"), so it counts as done. A failover before a
                // replica has it brings the jobs back: they run again.
                Err(e @ StoreError::NotReplicated { .. }) => {
                    tracing::warn!(error = %e, jobs = self.done.len(), "ack not yet on the replicas");
                    self.done.clear();
                    self.errors.reset();
                }
                Err(e) => {
                    if *control.borrow() == Mode::Stop {
                        tracing::error!(error = %e, jobs = self.done.len(), "could not ack before stopping; the jobs stay in flight for recovery");
                        self.done.clear();
                        return;
                    }
                    let delay = self.errors.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "ack failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Puts back jobs that could not be checked (the store was away); they stay
    /// in flight if that fails too, for the next try or the reaper.
    async fn requeue_pending(&mut self) {
        if self.to_requeue.is_empty() {
            return;
        }
        self.to_requeue.sort_unstable_by_key(|(seq, _)| *seq);
        let jobs: Vec<FetchedJob> = self.to_requeue.iter().map(|(_, job)| job.clone()).collect();
        match self.store.requeue(&self.worker, &jobs).await {
            Ok(()) => {
                self.report.requeued += jobs.len() as u64;
                self.to_requeue.clear();
            }
            // Made on the master, as an ack above: sending it again adds no replica.
            Err(e @ StoreError::NotReplicated { .. }) => {
                tracing::warn!(error = %e, jobs = jobs.len(), "requeue not yet on the replicas");
                self.report.requeued += jobs.len() as u64;
                self.to_requeue.clear();
            }
            Err(e) => tracing::warn!(error = %e, jobs = jobs.len(), "could not requeue; will retry"),
        }
        // The shown job may have been one of them.
        let working = self.working_update();
        if working != Working::Keep {
            if let Err(e) = self.store.set_working(&self.worker, &working).await {
                tracing::debug!(error = %e, "could not update the working record");
            }
        }
    }

    /// Lists this worker as paused or not, when that changed. A worker is
    /// listed paused only once it has stopped fetching.
    async fn list_paused(&mut self, paused: bool) {
        if paused == self.paused_listed {
            return;
        }
        match self.store.set_paused(&self.worker, paused).await {
            Ok(()) => {
                self.paused_listed = paused;
                tracing::info!(paused, "worker paused state changed");
            }
            Err(e) => tracing::debug!(error = %e, "could not list the paused state; will retry"),
        }
    }

    /// A job passed its checks and runs: if no job is shown as running,
    /// show this one.
    async fn note_started(&mut self, token: String, at: UnixMs) {
        if !self.tasks_by_token.contains_key(&token) {
            return; // it ended before this note was read
        }
        self.running_since.insert(token, at);
        if self.shown.is_none() {
            let working = self.working_update();
            if let Err(e) = self.store.set_working(&self.worker, &working).await {
                tracing::debug!(error = %e, "could not update the working record");
            }
        }
    }

    /// What the working record must become: unchanged while the shown job
    /// runs, else the longest-running job, else nothing.
    fn working_update(&mut self) -> Working {
        if let Some(token) = &self.shown {
            if self.running_since.contains_key(token) {
                return Working::Keep;
            }
        }
        let oldest = self
            .running_since
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(token, at)| (token.clone(), *at));
        let record = oldest.and_then(|(token, run_at)| {
            let id = self.tasks_by_token.get(&token)?;
            let (_, job) = self.in_flight.get(id)?;
            Some((
                token,
                WorkingRecord {
                    queue: job.queue.clone(),
                    run_at,
                    payload: job.payload.to_vec(),
                },
            ))
        });
        match record {
            Some((token, record)) => {
                self.shown = Some(token);
                Working::Show(record)
            }
            None if self.shown.take().is_some() => Working::Clear,
            None => Working::Keep,
        }
    }

    /// TERM/INT: cancel what runs and put it back at the head of its queue.
    async fn stop_now(&mut self) {
        self.running.abort_all();
        while let Some(result) = self.running.join_next_with_id().await {
            self.collect(result);
        }
        self.running_since.clear();
        let working = self.working_update();
        match self.store.finish(&self.worker, &self.done, &working).await {
            Ok(report) => note_finish(&report),
            // Made on the master, as in `flush`: nothing is left to recover.
            Err(e @ StoreError::NotReplicated { .. }) => {
                tracing::warn!(error = %e, jobs = self.done.len(), "ack at stop not yet on the replicas")
            }
            Err(e) => tracing::error!(error = %e, "could not ack finished jobs at stop; they will be recovered"),
        }
        self.done.clear();
        if !self.to_requeue.is_empty() {
            self.to_requeue.sort_unstable_by_key(|(seq, _)| *seq);
            let jobs: Vec<FetchedJob> = self.to_requeue.drain(..).map(|(_, job)| job).collect();
            match self.store.requeue(&self.worker, &jobs).await {
                Ok(()) => self.report.requeued += jobs.len() as u64,
                Err(e @ StoreError::NotReplicated { .. }) => {
                    tracing::warn!(error = %e, jobs = jobs.len(), "requeue at stop not yet on the replicas");
                    self.report.requeued += jobs.len() as u64;
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not requeue at stop; unregister or the reaper will")
                }
            }
            self.to_requeue.clear();
        }
    }

    async fn drain_then_stop(&mut self, control: &mut ControlReceiver) {
        while let Some(result) = self.running.join_next_with_id().await {
            self.collect(result);
        }
        self.flush(control).await;
    }
}

/// Logs what an ack found besides the acked jobs.
fn note_finish(report: &crate::store::FinishReport) {
    if !report.taken.is_empty() {
        tracing::warn!(
            jobs = report.taken.len(),
            "jobs this worker finished had been taken back by a reaper (this worker looked dead: \
             a long pause or partition); their outcome here was not recorded, and the copy the \
             reaper requeued runs again"
        );
    }
    if report.trimmed > 0 {
        tracing::warn!(
            records = report.trimmed,
            "the failed list is at its cap: its oldest records were dropped (see failures.max)"
        );
    }
}

/// Resolves when a producer signalled new work; never, without a signal.
async fn woken(wake: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    match wake {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
