//! Runs one fetched job: decode with limits, verify the signature, its scope
//! and queue, check expiry and replay, decrypt, look the class up in the
//! allowlist, deserialize and validate its arguments, run it, and turn whatever
//! happened into a `Finished` (with a failure record when it did not succeed).
//!
//! Nothing here can take the worker down: every refusal is a typed `Rejection`,
//! a job's error is recorded, and a job's panic is caught.

use std::sync::Arc;

use glob::Pattern;

use crate::clock::now_unix;
use crate::envelope::{decrypt_args, verify, Envelope, Verified};
use crate::failure::{build_record, FailureInfo};
use crate::job::JobContext;
use crate::keyring::Keyring;
use crate::limits::PayloadLimits;
use crate::reason::{Reason, Rejection};
use crate::registry::Registry;
use crate::retry::{next_attempt, NoRetry};
use crate::store::{DoneMark, FetchedJob, Finished, Retry};
use crate::worker_id::WorkerId;

use super::isolation::Children;
use super::perform::{guarded, perform, refused};

/// What happened to one job, as told to an observer.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub queue: String,
    /// The class, when the payload could be decoded.
    pub class: Option<String>,
    pub id: Option<String>,
    /// `Ok` for success, or what went wrong.
    pub result: Result<(), FailureInfo>,
    /// When the job failed with attempts left: its next attempt is due then
    /// (Unix ms), and it is not in the failed list.
    pub retry_at_ms: Option<u64>,
}

/// A callback told about every job's outcome (demo output, metrics).
pub type Observer = Arc<dyn Fn(&JobOutcome) + Send + Sync>;

/// What every job task shares.
pub(crate) struct ProcessContext {
    pub replay: super::replay::ReplayGate,
    pub registry: Registry,
    pub limits: PayloadLimits,
    pub worker: WorkerId,
    pub keyring: Arc<Keyring>,
    pub allow_unsigned: Vec<Pattern>,
    pub default_timeout: Option<std::time::Duration>,
    pub observer: Option<Observer>,
    /// Process isolation: jobs run in these child processes. `None`: in this
    /// process, cancelled at their timeout (cooperative).
    pub children: Option<Arc<Children>>,
}

/// A job task's result.
pub(crate) enum TaskOutput {
    /// Ran, or refused: ack it (with a failure record when it did not succeed).
    Finished(Finished, Option<Reason>),
    /// The store could not be asked whether this job already ran: put it back.
    Requeue(FetchedJob),
}

/// What `run` learned besides the result.
#[derive(Default)]
struct Seen {
    class: Option<String>,
    id: Option<String>,
    attempt: u32,
    done: Option<DoneMark>,
}

pub(crate) async fn process(job: FetchedJob, ctx: Arc<ProcessContext>) -> TaskOutput {
    let mut seen = Seen::default();
    let result = match run(&job, &ctx, &mut seen).await {
        Ok(result) => result,
        Err(()) => return TaskOutput::Requeue(job),
    };
    let (class_field, id_field) = (seen.class.as_deref().unwrap_or("-"), seen.id.as_deref().unwrap_or("-"));
    match &result {
        Ok(()) => tracing::debug!(queue = %job.queue, class = class_field, id = id_field, "job done"),
        Err(f) => tracing::warn!(
            queue = %job.queue, class = class_field, id = id_field, reason = %f.reason, error = %f.message,
            "job failed"
        ),
    }
    let now = now_unix();
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
    let failure = match (&result, &retry) {
        (Err(info), None) => Some(build_record(
            &job.payload,
            info,
            ctx.worker.as_str(),
            &job.queue,
            &ctx.limits,
            now,
        )),
        _ => None,
    };
    let reason = result.as_ref().err().map(|f| f.reason);
    let done = if result.is_ok() { seen.done.take() } else { None };
    if let Some(observer) = &ctx.observer {
        let retry_at_ms = retry.as_ref().map(|r| r.due_ms);
        observer(&JobOutcome {
            queue: job.queue.clone(),
            class: seen.class,
            id: seen.id,
            result,
            retry_at_ms,
        });
    }
    TaskOutput::Finished(
        Finished {
            job,
            failure,
            done,
            retry,
        },
        reason,
    )
}

/// A job that ran and failed (error or panic) with attempts left gets its next
/// attempt; refusals never do (they would fail the same way again). When the
/// worker cannot re-sign it, the failure record says why it was not retried.
fn plan_retry(job: &FetchedJob, ctx: &ProcessContext, seen: &Seen, info: &mut FailureInfo, now: f64) -> Option<Retry> {
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
    let failed_at = crate::clock::failed_at_format(now);
    match next_attempt(&job.payload, &ctx.limits, &job.queue, info, &failed_at, &ctx.keyring) {
        Ok(payload) => {
            let delay = (class.retry_delay)(seen.attempt + 1);
            let due_ms = ((now + delay.as_secs_f64()) * 1000.0) as u64;
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
            Some(Retry { payload, due_ms })
        }
        Err(NoRetry::CannotSign(why)) => {
            info.message = format!("{} (not retried: {why})", info.message);
            None
        }
    }
}

/// `Err(())` means: requeue, the store could not answer.
async fn run(job: &FetchedJob, ctx: &ProcessContext, seen: &mut Seen) -> Result<Result<(), FailureInfo>, ()> {
    let mut envelope = match Envelope::decode(&job.payload, &ctx.limits) {
        Ok(e) => e,
        Err(r) => return Ok(Err(refused(r))),
    };
    seen.class = Some(envelope.class.clone());
    seen.id = envelope.id.clone();
    seen.attempt = envelope.attempt;
    let allow_unsigned = ctx.allow_unsigned.iter().any(|p| p.matches(&job.queue));
    let verified = match verify(&envelope, &job.queue, &ctx.keyring, allow_unsigned) {
        Ok(v) => v,
        Err(r) => return Ok(Err(refused(r))),
    };
    if envelope.is_expired(now_unix()) {
        return Ok(Err(refused(Rejection::new(
            Reason::Expired,
            "the job's expires_at has passed; it was not run",
        ))));
    }
    if let (Verified::Signed { .. }, Some(id)) = (&verified, &envelope.id) {
        match ctx.replay.is_done(id).await {
            Ok(true) => {
                return Ok(Err(refused(Rejection::new(
                    Reason::Replayed,
                    "a job with this id already ran to success; this copy was not run",
                ))))
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, queue = %job.queue, "cannot check for a replay; putting the job back");
                return Err(());
            }
        }
        // Remembered until the job would expire anyway (a week when it never does).
        let until = envelope.expires_at.unwrap_or_else(|| now_unix() + 7.0 * 86400.0);
        let until_ms = (until * 1000.0) as u64;
        seen.done = Some(DoneMark {
            id: id.clone(),
            until_ms,
        });
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
        let run = perform(&ctx.registry, &envelope.class, envelope.args, job_ctx);
        return Ok(match limit {
            None => run.await,
            Some(limit) => tokio::time::timeout(limit, run)
                .await
                .unwrap_or_else(|_| Err(timed_out(limit, "it was cancelled"))),
        });
    };
    // The child decodes and validates the arguments, as `perform` does here.
    match children.run(&envelope.class, envelope.args, job_ctx, limit).await {
        Ok(result) => Ok(result),
        Err(e) => {
            tracing::warn!(error = %e, queue = %job.queue, "no child process can take the job; putting it back");
            // Holding the slot a moment keeps a worker that cannot start
            // children from fetching and requeueing in a tight loop.
            tokio::time::sleep(NO_CHILD_PAUSE).await;
            Err(())
        }
    }
}

const NO_CHILD_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// A run stopped at its time limit.
pub(crate) fn timed_out(limit: std::time::Duration, how: &str) -> FailureInfo {
    FailureInfo::of(
        Reason::Timeout,
        format!("the job ran longer than {} ms and {how}", limit.as_millis()),
    )
}
