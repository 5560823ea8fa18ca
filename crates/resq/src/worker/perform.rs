//! Runs a job's own code: its arguments decoded into its type and validated,
//! its `before_perform` hook, `perform` (a panic caught), its `after_perform`
//! hook. The worker calls this in cooperative mode, and an isolated child
//! process calls the same function, so a job behaves alike in both modes.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use serde_json::Value;

use crate::failure::FailureInfo;
use crate::job::JobContext;
use crate::reason::{Reason, Rejection};
use crate::registry::Registry;

/// Runs `class` with `args`. Every way it can go wrong is a `FailureInfo`.
pub(crate) async fn perform(
    registry: &Registry,
    class: &str,
    args: Vec<Value>,
    ctx: JobContext,
) -> Result<(), FailureInfo> {
    prepare(registry, class, args, ctx)?.await
}

/// Decodes and validates the arguments (an unknown class or bad arguments
/// are refused here, before anything runs) and returns the run: hooks and
/// `perform`.
pub(crate) fn prepare(
    registry: &Registry,
    class: &str,
    args: Vec<Value>,
    ctx: JobContext,
) -> Result<impl std::future::Future<Output = Result<(), FailureInfo>> + Send + 'static, FailureInfo> {
    let hooks = registry.info(class).map(|i| i.hooks);
    let hook_ctx = ctx.clone();
    let future = registry.prepare(class, args, ctx).map_err(refused)?;
    Ok(run_prepared(hooks, hook_ctx, future))
}

async fn run_prepared(
    hooks: Option<crate::registry::Hooks>,
    hook_ctx: JobContext,
    future: futures::future::BoxFuture<'static, Result<(), crate::job::JobError>>,
) -> Result<(), FailureInfo> {
    if let Some(hooks) = hooks {
        match guarded("before_perform", || (hooks.before_perform)(&hook_ctx)) {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                return Err(FailureInfo {
                    reason: Reason::JobFailed,
                    exception: e.exception,
                    message: format!("before_perform: {}", e.message),
                })
            }
            None => return Err(panicked("before_perform panicked".into())),
        }
    }
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(Ok(())) => {
            if let Some(hooks) = hooks {
                guarded("after_perform", || (hooks.after_perform)(&hook_ctx));
            }
            Ok(())
        }
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
            Err(panicked(message))
        }
    }
}

fn panicked(message: String) -> FailureInfo {
    FailureInfo {
        reason: Reason::JobPanicked,
        exception: "Panic".into(),
        message,
    }
}

/// A refusal as the failure it is recorded as: the reason code is the exception.
pub(crate) fn refused(r: Rejection) -> FailureInfo {
    FailureInfo::of(r.reason, r.message)
}

/// Runs a hook (user code): a panic is logged and reported as `None`, never
/// propagated into the worker.
pub(crate) fn guarded<T>(name: &str, hook: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(AssertUnwindSafe(hook)) {
        Ok(value) => Some(value),
        Err(_) => {
            tracing::error!(hook = name, "a job hook panicked");
            None
        }
    }
}
