//! Retries and timeouts against a real redis-server: a failed job runs
//! again until its attempts are spent, re-signed by the worker, then lands in
//! the failed list with its history. Where time matters the test passes
//! "now" to `promote_due` instead of sleeping.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use resq::envelope::verify;
use resq::store::Schedules;
use resq::{Control, Envelope, Job, JobContext, JobError, Keyring, PayloadLimits, Schedule, UnixMs, Worker};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How many times each `Flaky` job (by its `n`) ran; tests run in parallel.
static FLAKY_RUNS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Always fails; three attempts, retried at once.
#[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Flaky {
    #[garde(skip)]
    n: u32,
}
impl Job for Flaky {
    const CLASS: &'static str = "Flaky";
    const MAX_ATTEMPTS: u32 = 3;
    fn retry_delay(_: u32) -> Duration {
        Duration::ZERO
    }
    async fn perform(self, ctx: JobContext) -> Result<(), JobError> {
        FLAKY_RUNS.lock().unwrap().push(self.n);
        Err(JobError::msg(format!("attempt {} failed", ctx.attempt)))
    }
}

/// Fails; two attempts, the retry an hour per retry later.
#[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Slow {
    #[garde(skip)]
    n: u32,
}
impl Job for Slow {
    const CLASS: &'static str = "Slow";
    const MAX_ATTEMPTS: u32 = 2;
    fn retry_delay(retry: u32) -> Duration {
        Duration::from_secs(3600 * u64::from(retry))
    }
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        Err(JobError::msg("not yet"))
    }
}

fn lifecycle_registry() -> resq::Registry {
    registry().register::<Flaky>().register::<Slow>()
}

#[tokio::test]
async fn retries_run_until_max_attempts_then_land_in_failed_with_their_history() {
    let env = Env::start().await;
    env.client().enqueue(&Flaky { n: 1 }).await.unwrap();
    let (control, rx) = Control::new();
    let worker = tokio::spawn(Worker::new(env.dyn_store(), lifecycle_registry(), env.config("default")).run(rx));
    eventually("a failure recorded", || async {
        !env.lrange("resque:failed").await.is_empty()
    })
    .await;
    control.quit();
    worker.await.unwrap().unwrap();

    let runs = FLAKY_RUNS.lock().unwrap().iter().filter(|n| **n == 1).count();
    assert_eq!(runs, 3, "three attempts in all");
    let failed = env.lrange("resque:failed").await;
    assert_eq!(failed.len(), 1, "only the last attempt is a failure record");
    let record: Value = serde_json::from_str(&failed[0]).unwrap();
    assert_eq!(record["payload"]["attempt"], 2);
    let history = record["payload"]["failures"].as_array().unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| h["attempt"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(history[1]["error"], "attempt 1 failed");
    assert_eq!(record["error"], "attempt 2 failed");
    // Every failed attempt counts, as in Resque and Sidekiq.
    assert_eq!(env.get("resque:stat:failed").await.as_deref(), Some("3"));
    assert_eq!(env.get("resque:stat:processed").await.as_deref(), Some("3"));
    assert_eq!(env.store.schedule_len(Schedule::Retry).await.unwrap(), 0);
    // The worker re-signed the changed envelope: it still verifies.
    let payload = serde_json::to_vec(&record["payload"]).unwrap();
    let envelope = Envelope::decode(&payload, &PayloadLimits::default()).unwrap();
    assert!(verify(&envelope, "default", &env.keyring, false).is_ok());
}

#[tokio::test]
async fn a_retry_waits_for_its_backoff_then_runs_again() {
    let env = Env::start().await;
    env.client().enqueue(&Slow { n: 1 }).await.unwrap();
    let before = now_ms();
    env.burst("default", lifecycle_registry()).await;
    assert!(
        env.lrange("resque:failed").await.is_empty(),
        "attempts are left: no failure record yet"
    );
    let waiting = env.store.schedule_range(Schedule::Retry, 0, 10).await.unwrap();
    assert_eq!(waiting.len(), 1);
    let (payload, due) = (&waiting[0].payload, &waiting[0].due.0);
    assert!(
        *due >= before + 3_600_000 && *due <= now_ms() + 3_600_000,
        "due in one hour: {due}"
    );
    let envelope = Envelope::decode(payload, &PayloadLimits::default()).unwrap();
    assert_eq!(envelope.attempt, 1);
    assert!(verify(&envelope, "default", &env.keyring, false).is_ok(), "re-signed");

    // Not due yet: nothing moves. An hour later: it goes back to its queue.
    assert_eq!(env.store.promote_due(UnixMs(now_ms()), 100).await.unwrap().moved, 0);
    assert_eq!(env.store.promote_due(UnixMs(due + 1), 100).await.unwrap().moved, 1);
    assert_eq!(env.lrange("resque:queue:default").await.len(), 1);
    env.burst("default", lifecycle_registry()).await;
    let failed = env.lrange("resque:failed").await;
    assert_eq!(failed.len(), 1, "the second attempt was the last");
}

#[tokio::test]
async fn a_worker_that_cannot_sign_records_the_failure_instead_of_retrying() {
    let env = Env::start().await;
    // Producers sign with Ed25519; this worker holds only the public key.
    let (full, public) = Keyring::generate(resq::SigAlg::EdDsa, "t1");
    let producer = Arc::new(Keyring::from_toml(&full).unwrap());
    let worker_keys = Arc::new(Keyring::from_toml(&public.unwrap()).unwrap());
    resq::Client::new(env.dyn_store(), producer)
        .unwrap()
        .enqueue(&Flaky { n: 2 })
        .await
        .unwrap();
    let mut config = fast_config("default", worker_keys);
    config.burst = true;
    let (_c, rx) = Control::new();
    Worker::new(env.dyn_store(), lifecycle_registry(), config)
        .run(rx)
        .await
        .unwrap();
    let failed = env.lrange("resque:failed").await;
    assert_eq!(failed.len(), 1);
    let record: Value = serde_json::from_str(&failed[0]).unwrap();
    assert!(record["error"].as_str().unwrap().contains("not retried"), "{record}");
    assert_eq!(env.store.schedule_len(Schedule::Retry).await.unwrap(), 0);
}

/// Sleeps a minute; its type allows 50 ms and two attempts.
#[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Stuck {}
impl Job for Stuck {
    const CLASS: &'static str = "Stuck";
    const TIMEOUT: Option<Duration> = Some(Duration::from_millis(50));
    const MAX_ATTEMPTS: u32 = 2;
    fn retry_delay(_: u32) -> Duration {
        Duration::ZERO
    }
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(())
    }
}

#[tokio::test]
async fn a_job_past_its_own_timeout_is_cancelled_and_the_worker_goes_on() {
    let env = Env::start().await;
    let client = env.client();
    let options = resq::EnqueueOptions {
        timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    client.enqueue_with(&Nap { ms: 60_000 }, options).await.unwrap();
    client
        .enqueue(&Echo {
            message: "after the timeout".into(),
        })
        .await
        .unwrap();
    let mut config = env.config("default");
    config.burst = true;
    config.concurrency = 1;
    let (_c, rx) = Control::new();
    let report = Worker::new(env.dyn_store(), lifecycle_registry(), config)
        .run(rx)
        .await
        .unwrap();
    assert_eq!(report.failed_by_reason.get("timeout"), Some(&1));
    assert!(ran("after the timeout"), "the worker went on");
    let record: Value = serde_json::from_str(&env.lrange("resque:failed").await[0]).unwrap();
    assert_eq!(record["reason"], "timeout");
    assert_eq!(
        record["payload"]["timeout_ms"], 100,
        "the timeout travels, signed, in the envelope"
    );
}

#[tokio::test]
async fn a_types_timeout_applies_and_timeouts_are_retried() {
    let env = Env::start().await;
    env.client().enqueue(&Stuck {}).await.unwrap();
    let (control, rx) = Control::new();
    let worker = tokio::spawn(
        Worker::new(
            env.dyn_store(),
            lifecycle_registry().register::<Stuck>(),
            env.config("default"),
        )
        .run(rx),
    );
    eventually("a failure recorded", || async {
        !env.lrange("resque:failed").await.is_empty()
    })
    .await;
    control.quit();
    worker.await.unwrap().unwrap();
    let record: Value = serde_json::from_str(&env.lrange("resque:failed").await[0]).unwrap();
    assert_eq!(record["reason"], "timeout");
    assert_eq!(record["payload"]["attempt"], 1, "the first timeout was retried");
    assert_eq!(record["payload"]["failures"][0]["exception"], "timeout");
}
