//! Runs one fetched job: decode with limits, verify the signature, its scope
//! and queue, check expiry and replay, decrypt, look the class up in the
//! allowlist, deserialize and validate its arguments, run it, and turn whatever
//! happened into a `Finished` with its `Outcome`.
//!
//! Nothing here can take the worker down: every refusal is a typed `Rejection`,
//! a job's error is recorded, and a job's panic is caught.

use std::sync::Arc;

use glob::Pattern;

use crate::clock::UnixMs;
use crate::envelope::{decrypt_args, verify, Envelope, Verified};
use crate::failure::FailureInfo;
use crate::job::JobContext;
use crate::keyring::Keyring;
use crate::limits::PayloadLimits;
use crate::mark::{mark_of, MarkSource};
use crate::policy::Sealed;
use crate::reason::{Reason, Rejection};
use crate::registry::Registry;
use crate::retry::{next_attempt, NoRetry};
use crate::store::{
    Claim, ClaimOutcome, FetchedJob, Finished, KeepPayload, NewFailure, Outcome, TrackState, TrackUpdate,
};

use super::isolation::Children;
use super::perform::{guarded, prepare, refused};

/// What happened to one job, as told to an observer.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub queue: String,
    /// The class, when the payload could be decoded.
    pub class: Option<String>,
    pub id: Option<String>,
    /// `Ok` for success, or what went wrong.
    pub result: Result<(), FailureInfo>,
    /// When the job failed with attempts left: its next attempt is due
    /// then, and it is not in the failed list.
    pub retry_at: Option<UnixMs>,
    /// How long it ran (`None`: refused before it started).
    pub ran_for: Option<std::time::Duration>,
    /// From its `enqueued_at` to its start (`None`: it did not start, or
    /// the job does not say when it was enqueued).
    pub waited: Option<std::time::Duration>,
}

/// A callback told about every job's outcome (demo output, metrics).
pub type Observer = Arc<dyn Fn(&JobOutcome) + Send + Sync>;

/// What every job task shares.
pub(crate) struct ProcessContext {
    pub claims: super::claim::ClaimGate,
    /// Marks for the retries this worker re-signs.
    pub marks: MarkSource,
    pub registry: Registry,
    pub limits: PayloadLimits,
    pub keyring: Arc<Keyring>,
    pub allow_unsigned: Vec<Pattern>,
    pub default_timeout: Option<std::time::Duration>,
    pub observer: Option<Observer>,
    /// Process isolation: jobs run in these child processes. `None`: in this
    /// process, cancelled at their timeout (cooperative).
    pub children: Option<Arc<Children>>,
    /// Tells the manager a job passed its checks and runs (its token, when).
    pub started: tokio::sync::mpsc::UnboundedSender<(String, UnixMs)>,
    /// Where tracked jobs' progress is written (opt-in per job).
    pub store: Arc<dyn crate::store::Store>,
    /// What expiry, retries and records are counted by.
    pub clock: crate::clock::Clock,
    /// How much longer than its job a replay mark is kept.
    pub mark_margin: std::time::Duration,
}

/// A job task's result.
pub(crate) enum TaskOutput {
    /// Ran, or refused: ack it (with a failure record when it did not succeed).
    Finished(Finished, Option<Reason>),
    /// The job could not be claimed or handed to a child (the store or the
    /// children were away): put it back.
    Requeue(FetchedJob),
    /// A reaper took the job back from this worker before it ran: it is
    /// someone else's now; neither ack nor requeue it.
    Taken,
}

/// Why `run` stopped short of a result.
enum NotRun {
    Requeue,
    Taken,
}

/// What `run` learned besides the result.
#[derive(Default)]
struct Seen {
    class: Option<String>,
    id: Option<String>,
    attempt: u32,
    /// This copy claimed its attempt (a signed job): it is the one attempt,
    /// so its failure record keeps the whole payload.
    claimed: bool,
    /// A signed job that asked to be tracked: its id and expiry.
    tracked: Option<(String, UnixMs)>,
    /// When the producer enqueued it (the envelope's `enqueued_at`).
    enqueued_at: Option<UnixMs>,
    /// When it started (past every check), by both clocks.
    started: Option<(std::time::Instant, UnixMs)>,
}

/// Runs one fetched job inside its span (`job`: queue, class, id, attempt,
/// and the producer's trace when the envelope carries one), so every log
/// line of the job says which it is and continues the enqueuer's trace.
pub(crate) async fn process(job: FetchedJob, ctx: Arc<ProcessContext>) -> TaskOutput {
    use tracing::field::Empty;
    use tracing::Instrument;
    let span = tracing::info_span!(
        "job",
        queue = %job.queue,
        class = Empty,
        id = Empty,
        attempt = Empty,
        trace_id = Empty,
        parent_id = Empty
    );
    process_in_span(job, ctx).instrument(span).await
}

async fn process_in_span(job: FetchedJob, ctx: Arc<ProcessContext>) -> TaskOutput {
    let mut seen = Seen::default();
    let result = match run(&job, &ctx, &mut seen).await {
        Ok(result) => result,
        Err(NotRun::Requeue) => return TaskOutput::Requeue(job),
        Err(NotRun::Taken) => return TaskOutput::Taken,
    };
    let (class_field, id_field) = (seen.class.as_deref().unwrap_or("-"), seen.id.as_deref().unwrap_or("-"));
    match &result {
        Ok(()) => tracing::debug!(queue = %job.queue, class = class_field, id = id_field, "job done"),
        Err(f) => tracing::warn!(
            queue = %job.queue, class = class_field, id = id_field, reason = %f.reason, error = %f.message,
            "job failed"
        ),
    }
    let now = ctx.clock.now();
    let mut result = result;
    let retry = match &mut result {
        Err(info) => plan_retry(&job, &ctx, &seen, info, now),
        Ok(()) => None,
    };
    // A job of a known class that ends in the failed list: its on_failure hook.
    if let (Err(info), None, Some(class)) = (
        &result,
        &retry,
        seen.class.as_deref().and_then(|c| ctx.registry.info(c)),
    ) {
        let hook_ctx = JobContext {
            id: seen.id.clone(),
            queue: job.queue.clone(),
            attempt: seen.attempt,
        };
        guarded("on_failure", || (class.hooks.on_failure)(&hook_ctx, info));
    }
    let outcome = match (&result, retry) {
        (Ok(()), _) => Outcome::Succeeded,
        (Err(_), Some((next, due))) => Outcome::Retry { next, due },
        (Err(info), None) => {
            // A run's failure, or the one claimed attempt of a signed job,
            // keeps its payload whole (an operator may retry it); any other
            // refusal keeps a bounded copy, so copies pushed in bulk cannot
            // inflate the failed list.
            let keep = if seen.claimed || info.reason.is_run_outcome() {
                KeepPayload::Whole
            } else {
                KeepPayload::Bounded {
                    class: seen.class.clone(),
                }
            };
            Outcome::Failed(NewFailure {
                info: info.clone(),
                keep,
                at: now,
            })
        }
    };
    let reason = result.as_ref().err().map(|f| f.reason);
    if let Some((id, expires_at)) = &seen.tracked {
        let (state, error) = match (&outcome, &result) {
            (Outcome::Succeeded, _) => (TrackState::Succeeded, None),
            (Outcome::Retry { .. }, Err(info)) => (TrackState::Retrying, Some(info.message.clone())),
            (_, Err(info)) => (TrackState::Failed, Some(info.message.clone())),
            (_, Ok(())) => (TrackState::Failed, None),
        };
        track(&ctx, id, *expires_at, state, seen.attempt, error).await;
    }
    if let Some(observer) = &ctx.observer {
        let retry_at = match &outcome {
            Outcome::Retry { due, .. } => Some(*due),
            _ => None,
        };
        let ran_for = seen.started.map(|(at, _)| at.elapsed());
        let waited = match (seen.started, seen.enqueued_at) {
            (Some((_, started)), Some(enqueued)) => Some(started.since(enqueued)),
            _ => None,
        };
        observer(&JobOutcome {
            queue: job.queue.clone(),
            class: seen.class,
            id: seen.id,
            result,
            retry_at,
            ran_for,
            waited,
        });
    }
    TaskOutput::Finished(Finished { job, outcome }, reason)
}

/// Writes a tracked job's progress. Tracking is a view: a store error is
/// logged, never a reason to fail or repeat the job.
async fn track(
    ctx: &ProcessContext,
    id: &str,
    expires_at: UnixMs,
    state: TrackState,
    attempt: u32,
    error: Option<String>,
) {
    let update = TrackUpdate {
        id: id.to_string(),
        state,
        attempt,
        at: ctx.clock.now(),
        first: None,
        error: error.map(|e| e.chars().take(500).collect()),
        keep_until: expires_at.plus(crate::client::TRACK_KEPT_AFTER_EXPIRY),
    };
    if let Err(e) = ctx.store.track(std::slice::from_ref(&update)).await {
        tracing::warn!(error = %e, id, state = state.as_str(), "could not record a tracked job's progress");
    }
}

/// A job that ran and failed (error or panic) with attempts left gets its next
/// attempt; refusals never do (they would fail the same way again). When the
/// worker cannot re-sign it, the failure record says why it was not retried.
fn plan_retry(
    job: &FetchedJob,
    ctx: &ProcessContext,
    seen: &Seen,
    info: &mut FailureInfo,
    now: UnixMs,
) -> Option<(Sealed, UnixMs)> {
    if !matches!(
        info.reason,
        Reason::JobFailed | Reason::JobPanicked | Reason::Timeout | Reason::ResourceLimit | Reason::JobCrashed
    ) {
        return None;
    }
    let class = ctx.registry.info(seen.class.as_deref()?)?;
    if seen.attempt.saturating_add(1) >= class.max_attempts {
        return None;
    }
    match next_attempt(
        &job.payload,
        &ctx.limits,
        &job.queue,
        info,
        now,
        &ctx.keyring,
        &ctx.marks,
    ) {
        Ok(next) => {
            let delay = (class.retry_delay)(seen.attempt + 1);
            let due = now.plus(delay);
            tracing::info!(
                queue = %job.queue, class = class.class, attempt = seen.attempt + 1,
                retry_in_ms = delay.as_millis() as u64, "job will be retried"
            );
            let hook_ctx = JobContext {
                id: seen.id.clone(),
                queue: job.queue.clone(),
                attempt: seen.attempt,
            };
            guarded("on_retry", || (class.hooks.on_retry)(&hook_ctx, info, delay));
            Some((next, due))
        }
        Err(NoRetry::CannotSign(why)) => {
            info.message = format!("{} (not retried: {why})", info.message);
            None
        }
    }
}

async fn run(job: &FetchedJob, ctx: &ProcessContext, seen: &mut Seen) -> Result<Result<(), FailureInfo>, NotRun> {
    let mut envelope = match Envelope::decode(&job.payload, &ctx.limits) {
        Ok(e) => e,
        Err(r) => return Ok(Err(refused(r))),
    };
    seen.class = Some(envelope.class.clone());
    seen.id = envelope.id.clone();
    seen.attempt = envelope.attempt;
    seen.enqueued_at = envelope.enqueued_at.map(UnixMs::from_secs_f64);
    let span = tracing::Span::current();
    span.record("class", envelope.class.as_str());
    if let Some(id) = &envelope.id {
        span.record("id", id.as_str());
    }
    span.record("attempt", envelope.attempt);
    // Only a well-formed value is believed (and it is checked with the
    // signature below before the job runs).
    if let Some(t) = envelope
        .extra
        .get(crate::trace::TRACEPARENT_FIELD)
        .and_then(|v| v.as_str())
        .and_then(crate::trace::TraceParent::parse)
    {
        span.record("trace_id", t.trace_id());
        span.record("parent_id", t.parent_id());
    }
    let allow_unsigned = ctx.allow_unsigned.iter().any(|p| p.matches(&job.queue));
    let verified = match verify(&envelope, &job.queue, &ctx.keyring, allow_unsigned) {
        Ok(v) => v,
        Err(r) => return Ok(Err(refused(r))),
    };
    if envelope.is_expired(ctx.clock.now()) {
        return Ok(Err(refused(Rejection::new(
            Reason::Expired,
            "the job's expires_at has passed; it was not run",
        ))));
    }
    if let Verified::Signed { .. } = &verified {
        let claim = match claim_for(&envelope, job, ctx.mark_margin) {
            Ok(claim) => claim,
            Err(r) => return Ok(Err(refused(r))),
        };
        match ctx.claims.claim(claim).await {
            Ok(ClaimOutcome::Claimed) => {
                seen.claimed = true;
                // Only a signed job may ask to be tracked: an unsigned copy
                // could otherwise rewrite another job's record.
                let wants = envelope.extra.get(crate::policy::TRACK_FIELD) == Some(&serde_json::Value::Bool(true));
                if let (true, Some(id), Some(expires_at)) = (wants, &envelope.id, envelope.expires_at) {
                    seen.tracked = Some((id.clone(), UnixMs::from_secs_f64(expires_at)));
                }
            }
            Ok(ClaimOutcome::Replayed) => {
                return Ok(Err(refused(Rejection::new(
                    Reason::Replayed,
                    "this attempt of the job was claimed by another copy (it ran, or runs); this copy was not run",
                ))))
            }
            Ok(ClaimOutcome::Gone) => {
                tracing::warn!(queue = %job.queue, "a reaper took this job back before it ran; leaving it to the worker that has it now");
                return Err(NotRun::Taken);
            }
            Err(e) => {
                tracing::warn!(error = %e, queue = %job.queue, "cannot claim the job; putting it back");
                return Err(NotRun::Requeue);
            }
        }
    }
    let needs_encryption = ctx.registry.info(&envelope.class).is_some_and(|i| i.encrypt);
    if needs_encryption && envelope.enc.is_none() {
        return Ok(Err(refused(Rejection::new(
            Reason::DecryptFailed,
            "this class requires encrypted arguments; the job's are plaintext",
        ))));
    }
    if let Err(r) = decrypt_args(&mut envelope, &ctx.keyring, &ctx.limits) {
        return Ok(Err(refused(r)));
    }
    let limit = envelope
        .timeout_ms
        .map(std::time::Duration::from_millis)
        .or_else(|| ctx.registry.info(&envelope.class).and_then(|i| i.timeout))
        .or(ctx.default_timeout);
    let job_ctx = JobContext {
        id: envelope.id,
        queue: job.queue.clone(),
        attempt: envelope.attempt,
    };
    let Some(children) = &ctx.children else {
        let run = match prepare(&ctx.registry, &envelope.class, envelope.args, job_ctx) {
            Ok(run) => run,
            Err(refusal) => return Ok(Err(refusal)),
        };
        // Past every check: it runs, and Resque's "working" record may show it.
        let now = ctx.clock.now();
        seen.started = Some((std::time::Instant::now(), now));
        let _ = ctx.started.send((job.token.clone(), now));
        if let Some((id, expires_at)) = &seen.tracked {
            track(ctx, id, *expires_at, TrackState::Running, seen.attempt, None).await;
        }
        return Ok(match limit {
            None => run.await,
            Some(limit) => tokio::time::timeout(limit, run)
                .await
                .unwrap_or_else(|_| Err(timed_out(limit, "it was cancelled"))),
        });
    };
    // The child decodes and validates the arguments again, as `perform`
    // does here; checking them here first keeps a refused job off the
    // "working" record.
    if let Err(r) = ctx.registry.check_args(&envelope.class, envelope.args.clone()) {
        return Ok(Err(refused(r)));
    }
    // Set when a child takes the job (it may wait for a free child).
    let started_at = std::sync::OnceLock::new();
    let started = || {
        let now = ctx.clock.now();
        let _ = started_at.set((std::time::Instant::now(), now));
        let _ = ctx.started.send((job.token.clone(), now));
    };
    if let Some((id, expires_at)) = &seen.tracked {
        track(ctx, id, *expires_at, TrackState::Running, seen.attempt, None).await;
    }
    // Boxed: the child run's future is about 2 KB, and carried inline it
    // made every job's task, in-process ones too, twice as large (3.9 KB
    // instead of 1.8 KB): moved at each spawn, and allocated at a size
    // the allocator serves more slowly.
    let ran = Box::pin(children.run(&envelope.class, envelope.args, job_ctx, limit, started)).await;
    seen.started = started_at.get().copied();
    match ran {
        Ok(result) => Ok(result),
        Err(e) => {
            tracing::warn!(error = %e, queue = %job.queue, "no child process can take the job; putting it back");
            // Holding the slot a moment keeps a worker that cannot start
            // children from fetching and requeueing in a tight loop.
            tokio::time::sleep(NO_CHILD_PAUSE).await;
            Err(NotRun::Requeue)
        }
    }
}

/// The claim a verified, signed copy makes before it runs: its `mark`, or
/// one derived from its signature when its producer set none. Its mark is
/// kept until the job expires, plus `margin` for clock skew between the
/// worker that checks the expiry and the store that drops the mark.
fn claim_for(envelope: &Envelope, job: &FetchedJob, margin: std::time::Duration) -> Result<Claim, Rejection> {
    let Some(expires_at) = envelope.expires_at else {
        return Err(Rejection::new(
            Reason::MalformedPayload,
            "a signed job must carry expires_at (its replay mark must end some day); every resq producer writes one",
        ));
    };
    let mark = mark_of(envelope)
        .map_err(|e| Rejection::new(Reason::MalformedPayload, e.to_string()))?
        .ok_or_else(|| Rejection::new(Reason::Unsigned, "the job is not signed"))?;
    // Clamped to year 9999: a store cannot keep a key for longer anyway.
    let until = UnixMs::from_secs_f64(expires_at).plus(margin).min(UnixMs(LAST_MARK_MS));
    Ok(Claim {
        queue: job.queue.clone(),
        token: job.token.clone(),
        mark,
        until,
    })
}

/// 9999-12-31T23:59:59Z in Unix ms.
const LAST_MARK_MS: u64 = 253_402_300_799_000;

/// How much longer than its job a replay mark is kept, unless the worker's
/// `mark_margin` says: the clock skew between workers and Redis it absorbs.
pub(crate) const MARK_SKEW_MARGIN: std::time::Duration = std::time::Duration::from_secs(15 * 60);

const NO_CHILD_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// A run stopped at its time limit.
pub(crate) fn timed_out(limit: std::time::Duration, how: &str) -> FailureInfo {
    FailureInfo::of(
        Reason::Timeout,
        format!("the job ran longer than {} ms and {how}", limit.as_millis()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn returns, without calling it.
    fn future_size<A, B, F: std::future::Future>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every job is a task of this size, moved at its spawn: 1,792 bytes
    /// in the release and debug builds of rustc 1.95, 3,944 when the child
    /// run (boxed in `run`) was carried inline.
    #[test]
    fn a_jobs_task_stays_small() {
        let size = future_size(process);
        assert!(size <= 2048, "a job's task is {size} bytes");
    }
}
