//! Runs one fetched job: decode with limits, check expiry, look the class up in
//! the allowlist, deserialize its arguments, run it, and turn whatever happened
//! into a `Finished` (with a failure record when it did not succeed).
//!
//! Nothing here can take the worker down: every refusal is a typed `Rejection`,
//! a job's error is recorded, and a job's panic is caught.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;

use crate::clock::now_unix;
use crate::envelope::Envelope;
use crate::failure::{build_record, FailureInfo};
use crate::job::JobContext;
use crate::limits::PayloadLimits;
use crate::reason::{Reason, Rejection};
use crate::registry::Registry;
use crate::store::{FetchedJob, Finished};
use crate::worker_id::WorkerId;

/// What happened to one job, as told to an observer.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub queue: String,
    /// The class, when the payload could be decoded.
    pub class: Option<String>,
    pub id: Option<String>,
    /// `Ok` for success, or what went wrong.
    pub result: Result<(), FailureInfo>,
}

/// A callback told about every job's outcome (demo output, metrics).
pub type Observer = Arc<dyn Fn(&JobOutcome) + Send + Sync>;

/// What every job task shares.
pub(crate) struct ProcessContext {
    pub registry: Registry,
    pub limits: PayloadLimits,
    pub worker: WorkerId,
    pub observer: Option<Observer>,
}

pub(crate) async fn process(
    job: FetchedJob,
    ctx: Arc<ProcessContext>,
) -> (Finished, Option<Reason>) {
    let mut class = None;
    let mut id = None;
    let result = run(&job, &ctx, &mut class, &mut id).await;
    let reason = result.as_ref().err().map(|f| f.reason);
    let (class_field, id_field) = (
        class.as_deref().unwrap_or("-"),
        id.as_deref().unwrap_or("-"),
    );
    match &result {
        Ok(()) => {
            tracing::debug!(queue = %job.queue, class = class_field, id = id_field, "job done")
        }
        Err(f) => tracing::warn!(
            queue = %job.queue, class = class_field, id = id_field, reason = %f.reason, error = %f.message,
            "job failed"
        ),
    }
    let failure = result.as_ref().err().map(|info| {
        build_record(
            &job.payload,
            info,
            ctx.worker.as_str(),
            &job.queue,
            &ctx.limits,
            now_unix(),
        )
    });
    if let Some(observer) = &ctx.observer {
        observer(&JobOutcome {
            queue: job.queue.clone(),
            class,
            id,
            result,
        });
    }
    (Finished { job, failure }, reason)
}

async fn run(
    job: &FetchedJob,
    ctx: &ProcessContext,
    class: &mut Option<String>,
    id: &mut Option<String>,
) -> Result<(), FailureInfo> {
    let envelope = Envelope::decode(&job.payload, &ctx.limits).map_err(refused)?;
    *class = Some(envelope.class.clone());
    *id = envelope.id.clone();
    if envelope.is_expired(now_unix()) {
        return Err(refused(Rejection::new(
            Reason::Expired,
            "the job's expires_at has passed; it was not run",
        )));
    }
    let job_ctx = JobContext {
        id: envelope.id,
        queue: job.queue.clone(),
        attempt: envelope.attempt,
    };
    let future = ctx
        .registry
        .prepare(&envelope.class, envelope.args, job_ctx)
        .map_err(refused)?;
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(FailureInfo {
            reason: Reason::JobFailed,
            exception: e.exception,
            message: e.message,
        }),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the job panicked".to_string());
            Err(FailureInfo {
                reason: Reason::JobPanicked,
                exception: "Panic".into(),
                message,
            })
        }
    }
}

fn refused(r: Rejection) -> FailureInfo {
    FailureInfo {
        reason: r.reason,
        exception: r.reason.code().to_string(),
        message: r.message,
    }
}
