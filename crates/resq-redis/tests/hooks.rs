//! A job type's hooks run around perform, on retry and on failure.

mod common;

use std::time::Duration;

use common::*;
use resq::{Control, Job, JobContext, JobError, Worker};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Records its hooks per job id.
static HOOK_EVENTS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

fn hook_event(ctx: &JobContext, event: String) {
    HOOK_EVENTS
        .lock()
        .unwrap()
        .push((ctx.id.clone().unwrap_or_default(), event));
}

fn events_of(id: &str) -> Vec<String> {
    HOOK_EVENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|(i, _)| i == id)
        .map(|(_, e)| e.clone())
        .collect()
}

#[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Hooked {
    #[garde(skip)]
    fail: bool,
}
impl Job for Hooked {
    const CLASS: &'static str = "Hooked";
    const MAX_ATTEMPTS: u32 = 2;
    fn retry_delay(_: u32) -> Duration {
        Duration::ZERO
    }
    fn before_perform(ctx: &JobContext) -> Result<(), JobError> {
        hook_event(ctx, format!("before:{}", ctx.attempt));
        if ctx.queue == "blocked" {
            return Err(JobError::msg("this queue is blocked"));
        }
        Ok(())
    }
    fn after_perform(ctx: &JobContext) {
        hook_event(ctx, "after".into());
    }
    fn on_retry(ctx: &JobContext, failure: &resq::FailureInfo, _delay: Duration) {
        hook_event(ctx, format!("retry:{}:{}", ctx.attempt, failure.reason));
    }
    fn on_failure(ctx: &JobContext, failure: &resq::FailureInfo) {
        hook_event(ctx, format!("failure:{}", failure.reason));
    }
    async fn perform(self, ctx: JobContext) -> Result<(), JobError> {
        hook_event(&ctx, "perform".into());
        if self.fail {
            return Err(JobError::msg("asked to fail"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn hooks_run_around_perform_on_retry_and_on_failure_including_expiry() {
    let env = Env::start().await;
    let client = env.client();
    let ok = client.enqueue(&Hooked { fail: false }).await.unwrap();
    let failing = client.enqueue(&Hooked { fail: true }).await.unwrap();
    let blocked = client.enqueue_to("blocked", &Hooked { fail: false }).await.unwrap();
    let options = resq::EnqueueOptions {
        ttl: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    let expired = client.enqueue_with(&Hooked { fail: false }, options).await.unwrap();
    // Until the clock passes its expires_at (1 ms from now).
    let expires_at_ms = env
        .lrange("resque:queue:default")
        .await
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .find(|v| v["id"] == expired.as_str())
        .and_then(|v| v["expires_at"].as_f64())
        .map(|at| (at * 1000.0) as u64 + 1)
        .unwrap();
    eventually("the clock passes the job's expiry", || async {
        now_ms() > expires_at_ms
    })
    .await;

    let (control, rx) = Control::new();
    let registry = registry().register::<Hooked>();
    let worker = tokio::spawn(Worker::new(env.dyn_store(), registry, env.config("default,blocked")).run(rx));
    eventually("three failures recorded", || async {
        env.lrange("resque:failed").await.len() >= 3
    })
    .await;
    control.quit();
    worker.await.unwrap().unwrap();

    assert_eq!(events_of(&ok), ["before:0", "perform", "after"]);
    assert_eq!(
        events_of(&failing),
        [
            "before:0",
            "perform",
            "retry:0:job_failed",
            "before:1",
            "perform",
            "failure:job_failed"
        ]
    );
    assert_eq!(
        events_of(&blocked),
        ["before:0", "retry:0:job_failed", "before:1", "failure:job_failed"]
    );
    assert_eq!(events_of(&expired), ["failure:expired"]);
}
