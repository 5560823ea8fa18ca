//! Retries and scheduling against a real redis-server. Where time matters the
//! test passes "now" to `promote_due` instead of sleeping.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use resq::envelope::verify;
use resq::{Control, Envelope, Job, JobContext, JobError, Keyring, PayloadLimits, Schedule, Store, Worker};
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

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
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
    let (payload, due) = &waiting[0];
    assert!(
        *due >= before + 3_600_000 && *due <= now_ms() + 3_600_000,
        "due in one hour: {due}"
    );
    let envelope = Envelope::decode(payload.as_bytes(), &PayloadLimits::default()).unwrap();
    assert_eq!(envelope.attempt, 1);
    assert!(verify(&envelope, "default", &env.keyring, false).is_ok(), "re-signed");

    // Not due yet: nothing moves. An hour later: it goes back to its queue.
    assert_eq!(env.store.promote_due(now_ms(), 100).await.unwrap(), 0);
    assert_eq!(env.store.promote_due(due + 1, 100).await.unwrap(), 1);
    assert_eq!(env.lrange("resque:queue:default").await.len(), 1);
    env.burst("default", lifecycle_registry()).await;
    let failed = env.lrange("resque:failed").await;
    assert_eq!(failed.len(), 1, "the second attempt was the last");
}

#[tokio::test]
async fn enqueue_in_holds_the_job_until_it_is_due() {
    let env = Env::start().await;
    let id = env
        .client()
        .enqueue_in(
            &Echo {
                message: "later".into(),
            },
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert!(env.lrange("resque:queue:default").await.is_empty());
    let scheduled = env.store.schedule_range(Schedule::Scheduled, 0, 10).await.unwrap();
    assert_eq!(scheduled.len(), 1);
    let (payload, due) = &scheduled[0];
    let envelope = Envelope::decode(payload.as_bytes(), &PayloadLimits::default()).unwrap();
    assert_eq!(envelope.id.as_deref(), Some(id.as_str()));
    // Its lifetime counts from when it is due, not from now.
    assert!(envelope.expires_at.unwrap() * 1000.0 >= (*due + 7 * 86_400_000 - 1000) as f64);
    assert_eq!(env.store.promote_due(now_ms(), 100).await.unwrap(), 0);
    assert_eq!(env.store.promote_due(due + 1, 100).await.unwrap(), 1);
    env.burst("default", lifecycle_registry()).await;
    assert!(ran("later"));
}

#[tokio::test]
async fn concurrent_promoters_move_each_due_job_once() {
    let env = Env::start().await;
    let client = env.client();
    for i in 0..500 {
        client
            .enqueue_in(
                &Echo {
                    message: format!("p{i}"),
                },
                Duration::from_millis(1),
            )
            .await
            .unwrap();
    }
    let later = now_ms() + 10_000;
    let store: Arc<dyn Store> = env.dyn_store();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut moved = 0;
            loop {
                let n = store.promote_due(later, 37).await.unwrap();
                if n == 0 {
                    return moved;
                }
                moved += n;
            }
        });
    }
    let mut total = 0;
    while let Some(n) = tasks.join_next().await {
        total += n.unwrap();
    }
    assert_eq!(total, 500);
    let queue = env.lrange("resque:queue:default").await;
    let mut ids: Vec<String> = queue
        .iter()
        .map(|p| {
            serde_json::from_str::<Value>(p).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 500, "each job exactly once");
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

#[tokio::test]
async fn a_capped_queue_refuses_enqueues_that_would_overflow_it_all_or_nothing() {
    let env = Env::start().await;
    env.store.set_queue_cap("default", Some(3)).await.unwrap();
    let client = env.client();
    for i in 0..3 {
        client
            .enqueue(&Echo {
                message: format!("c{i}"),
            })
            .await
            .unwrap();
    }
    let err = client
        .enqueue(&Echo {
            message: "one too many".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            resq::EnqueueError::Store(resq::StoreError::QueueFull { cap: 3, length: 3, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("queue default is full"), "{err}");
    // A bulk that does not fit is refused whole, even the part that would fit.
    env.store.set_queue_cap("default", Some(5)).await.unwrap();
    let three: Vec<Echo> = (0..3)
        .map(|i| Echo {
            message: format!("b{i}"),
        })
        .collect();
    assert!(client.enqueue_bulk(&three).await.is_err());
    assert_eq!(env.lrange("resque:queue:default").await.len(), 3);
    // Concurrent producers cannot overshoot the cap together.
    env.store.set_queue_cap("default", Some(50)).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = client.clone();
        tasks.spawn(async move {
            client
                .enqueue(&Echo {
                    message: format!("r{i}"),
                })
                .await
                .is_ok()
        });
    }
    let mut accepted = 0;
    while let Some(ok) = tasks.join_next().await {
        accepted += usize::from(ok.unwrap());
    }
    assert_eq!(accepted, 47);
    assert_eq!(env.lrange("resque:queue:default").await.len(), 50);
    env.store.set_queue_cap("default", None).await.unwrap();
    client
        .enqueue(&Echo {
            message: "uncapped".into(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_paused_queue_is_skipped_until_resumed() {
    let env = Env::start().await;
    let client = env.client();
    client
        .enqueue_to(
            "held",
            &Echo {
                message: "held job".into(),
            },
        )
        .await
        .unwrap();
    client
        .enqueue_to(
            "open",
            &Echo {
                message: "open job".into(),
            },
        )
        .await
        .unwrap();
    env.store.set_queue_paused("held", true).await.unwrap();
    env.burst("held,open", lifecycle_registry()).await;
    assert!(ran("open job") && !ran("held job"));
    assert_eq!(env.lrange("resque:queue:held").await.len(), 1);
    env.store.set_queue_paused("held", false).await.unwrap();
    env.burst("held,open", lifecycle_registry()).await;
    assert!(ran("held job"));
}

#[tokio::test]
async fn weighted_queues_share_the_worker_in_proportion() {
    let env = Env::start().await;
    let client = env.client();
    for q in ["heavy", "light"] {
        let jobs: Vec<Echo> = (0..300)
            .map(|i| Echo {
                message: format!("{q}{i}"),
            })
            .collect();
        for job in &jobs {
            client.enqueue_to(q, job).await.unwrap();
        }
    }
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&order);
    let mut config = env.config("heavy:3,light:1");
    config.burst = true;
    config.concurrency = 1;
    let (_c, rx) = Control::new();
    Worker::new(env.dyn_store(), lifecycle_registry(), config)
        .with_observer(Arc::new(move |o: &resq::JobOutcome| {
            seen.lock().unwrap().push(o.queue.clone())
        }))
        .run(rx)
        .await
        .unwrap();
    let order = order.lock().unwrap();
    assert_eq!(order.len(), 600);
    let heavy_first = order[..200].iter().filter(|q| *q == "heavy").count();
    // Expected 150 of the first 200 (3:1); the bounds are five standard deviations.
    assert!((120..=180).contains(&heavy_first), "{heavy_first}");
}

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
    let registry = lifecycle_registry().register::<Hooked>();
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

#[tokio::test]
async fn the_sweeper_removes_expired_jobs_one_worker_at_a_time_and_records_them() {
    let env = Env::start().await;
    let client = env.client();
    let short = || resq::EnqueueOptions {
        ttl: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    for i in 0..3 {
        client
            .enqueue_with(
                &Echo {
                    message: format!("stale{i}"),
                },
                short(),
            )
            .await
            .unwrap();
    }
    client
        .enqueue(&Echo {
            message: "fresh".into(),
        })
        .await
        .unwrap();
    // A scheduled job that expired before it came due.
    let stale_scheduled = br#"{"class":"Echo","args":[{"message":"s"}],"queue":"default","expires_at":1000.0}"#;
    env.store
        .schedule(
            &resq::OutgoingJob {
                queue: "default".into(),
                payload: stale_scheduled.to_vec(),
            },
            now_ms() + 60_000,
        )
        .await
        .unwrap();

    // The sweep is told the time: a second from now, the 1 ms jobs are
    // long expired and the week-long ones are not. No waiting.
    let later = now_ms() + 1_000;
    let every = Duration::from_secs(60);
    assert_eq!(
        env.store.sweep_expired(later, "worker-a", every).await.unwrap(),
        Some(4)
    );
    // Another worker in the same interval does not sweep again.
    assert_eq!(env.store.sweep_expired(later, "worker-b", every).await.unwrap(), None);
    let queue = env.lrange("resque:queue:default").await;
    assert_eq!(queue.len(), 1);
    assert!(queue[0].contains("fresh"));
    assert_eq!(env.store.schedule_len(Schedule::Scheduled).await.unwrap(), 0);
    let records = env.store.expired_range(0, 10).await.unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(env.store.expired_total().await.unwrap(), 4);
    let record: Value = serde_json::from_str(&records[3]).unwrap();
    assert_eq!(record["queue"], "default");
    assert!(record["payload"].as_str().unwrap().contains("stale"));
}

#[tokio::test]
async fn a_running_worker_sweeps_queues_it_does_not_work() {
    let env = Env::start().await;
    let options = resq::EnqueueOptions {
        queue: Some("elsewhere".into()),
        ttl: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    env.client()
        .enqueue_with(
            &Echo {
                message: "never".into(),
            },
            options,
        )
        .await
        .unwrap();
    let mut config = env.config("default");
    config.sweep_interval = Duration::from_millis(100);
    let (control, rx) = Control::new();
    let worker = tokio::spawn(Worker::new(env.dyn_store(), lifecycle_registry(), config).run(rx));
    eventually("one expired job swept", || async {
        env.store.expired_total().await.unwrap() == 1
    })
    .await;
    control.quit();
    worker.await.unwrap().unwrap();
    assert_eq!(env.store.expired_total().await.unwrap(), 1);
    assert!(env.lrange("resque:queue:elsewhere").await.is_empty());
    assert!(!ran("never"));
}

/// Unique per user for a short window; duplicates are refused.
#[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Notify {
    #[garde(skip)]
    user: u64,
}
impl Job for Notify {
    const CLASS: &'static str = "Notify";
    const UNIQUE_FOR: Duration = Duration::from_secs(3600);
    fn unique_key(&self) -> Option<String> {
        Some(format!("user:{}", self.user))
    }
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// Unique; a duplicate returns the existing job's id.
#[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Reindex {
    #[garde(skip)]
    index: String,
}
impl Job for Reindex {
    const CLASS: &'static str = "Reindex";
    const ON_DUPLICATE: resq::OnDuplicate = resq::OnDuplicate::ReturnExisting;
    fn unique_key(&self) -> Option<String> {
        Some(self.index.clone())
    }
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_unique_job_refused_by_a_full_queue_does_not_hold_its_key() {
    let env = Env::start().await;
    env.store.set_queue_cap("default", Some(0)).await.unwrap();
    let client = env.client();
    let err = client.enqueue(&Reindex { index: "books".into() }).await.unwrap_err();
    assert!(
        matches!(err, resq::EnqueueError::Store(resq::StoreError::QueueFull { .. })),
        "{err}"
    );
    assert!(
        env.keys("resque:resq:unique:*").await.is_empty(),
        "nothing stored, no key held"
    );
    // Once there is room the same job goes in, and then holds its key.
    env.store.set_queue_cap("default", None).await.unwrap();
    let id = client.enqueue(&Reindex { index: "books".into() }).await.unwrap();
    assert_eq!(client.enqueue(&Reindex { index: "books".into() }).await.unwrap(), id);
    assert_eq!(env.lrange("resque:queue:default").await.len(), 1);
}

#[tokio::test]
async fn concurrent_duplicate_enqueues_create_one_job() {
    let env = Env::start().await;
    let client = env.client();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let client = client.clone();
        tasks.spawn(async move { client.enqueue(&Notify { user: 7 }).await });
    }
    let mut stored = Vec::new();
    let mut duplicates = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(id) => stored.push(id),
            Err(resq::EnqueueError::Duplicate { existing, .. }) => duplicates.push(existing),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(stored.len(), 1, "exactly one producer won");
    assert_eq!(duplicates.len(), 49);
    assert!(
        duplicates.iter().all(|d| *d == stored[0]),
        "duplicates name the stored job"
    );
    assert_eq!(env.lrange("resque:queue:default").await.len(), 1);
    // Another key is another job; the unique key travels, signed, in the envelope.
    client.enqueue(&Notify { user: 8 }).await.unwrap();
    let queue = env.lrange("resque:queue:default").await;
    assert_eq!(queue.len(), 2);
    assert_eq!(serde_json::from_str::<Value>(&queue[1]).unwrap()["unique"], "user:8");
    // After the window the same key may be enqueued again: the claim
    // carries the window as its TTL; end it now instead of waiting.
    let claims = env.keys("resque:resq:unique:Notify:*").await;
    assert_eq!(claims.len(), 2);
    for claim in &claims {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(claim)
            .query_async(&mut env.conn())
            .await
            .unwrap();
        assert!(
            (3_500_000..=3_600_000).contains(&ttl),
            "the window is the claim's TTL: {ttl}"
        );
    }
    let hashed_7: String = {
        use sha2::Digest;
        sha2::Sha256::digest(b"user:7")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let _: () = redis::cmd("DEL")
        .arg(format!("resque:resq:unique:Notify:{hashed_7}"))
        .query_async(&mut env.conn())
        .await
        .unwrap();
    client.enqueue(&Notify { user: 7 }).await.unwrap();
    assert_eq!(env.lrange("resque:queue:default").await.len(), 3);
}

#[tokio::test]
async fn a_duplicate_can_return_the_existing_job_and_keys_can_be_given_per_enqueue() {
    let env = Env::start().await;
    let client = env.client();
    let first = client
        .enqueue(&Reindex {
            index: "products".into(),
        })
        .await
        .unwrap();
    let again = client
        .enqueue(&Reindex {
            index: "products".into(),
        })
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(env.lrange("resque:queue:default").await.len(), 1);
    // A type without a key can still be made unique for one enqueue.
    let once = || resq::EnqueueOptions {
        unique_key: Some("nightly".into()),
        ..Default::default()
    };
    client
        .enqueue_with(&Echo { message: "once".into() }, once())
        .await
        .unwrap();
    assert!(matches!(
        client.enqueue_with(&Echo { message: "once".into() }, once()).await,
        Err(resq::EnqueueError::Duplicate { .. })
    ));
    assert_eq!(env.lrange("resque:queue:default").await.len(), 2);
}

mod cron {
    use super::*;
    use resq::cron::{CronEntry, CronScheduler, TickOutcome};
    use resq::Policy;

    /// 2026-11-24 00:00:00 UTC.
    const DAY: u64 = 1_795_478_400_000;
    const MIN: u64 = 60_000;

    fn scheduler(env: &Env, entry: CronEntry) -> CronScheduler {
        let policy = Policy::new(Arc::clone(&env.keyring)).unwrap().with_registry(registry());
        CronScheduler::new(vec![entry], policy, env.dyn_store()).unwrap()
    }

    fn every_minute() -> CronEntry {
        CronEntry::new(
            "ping",
            "* * * * *",
            "Echo",
            vec![serde_json::json!({"message": "tick"})],
        )
        .unwrap()
    }

    /// The `unique` mark of each job waiting in `queue`: "cron:<name>:<tick>".
    async fn ticks_queued(env: &Env, queue: &str) -> Vec<String> {
        env.lrange(&format!("resque:queue:{queue}"))
            .await
            .iter()
            .map(|p| {
                let v: Value = serde_json::from_str(p).unwrap();
                v["unique"].as_str().unwrap().to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn three_workers_fire_each_tick_once() {
        let env = Env::start().await;
        let workers: Vec<CronScheduler> = (0..3).map(|_| scheduler(&env, every_minute())).collect();
        let mut fired = Vec::new();
        // Three minutes, each looked at by the three workers at once, a few
        // times within the minute.
        for minute in 1..=3u64 {
            for offset_ms in [0, 150, 20_000] {
                let now = DAY + minute * MIN + offset_ms;
                let looks = futures::future::join_all(workers.iter().map(|w| w.fire_due(now))).await;
                for (_, outcome) in looks.into_iter().flatten() {
                    if let Ok(TickOutcome::Fired { tick, .. }) = outcome {
                        fired.push(tick);
                    }
                }
            }
        }
        assert_eq!(fired.len(), 3, "one job per tick: {fired:?}");
        let ticks: Vec<String> = (1..=3).map(|m| format!("cron:ping:{}", DAY + m * MIN)).collect();
        let mut queued = ticks_queued(&env, "default").await;
        queued.sort();
        assert_eq!(queued, ticks);
        // The jobs are signed and valid: a worker runs all three.
        let report = env.burst("default", registry()).await;
        assert_eq!((report.processed, report.failed), (3, 0));
    }

    #[tokio::test]
    async fn missed_ticks_fire_the_latest_once_within_the_grace() {
        let env = Env::start().await;
        let first = scheduler(&env, every_minute());
        let fired = first.fire_due(DAY + 10 * MIN).await;
        assert!(matches!(fired[0].1, Ok(TickOutcome::Fired { missed: 0, .. })));
        // Every worker down for minutes 11..=14; one comes back at 15:30.
        let back = scheduler(&env, every_minute());
        let fired = back.fire_due(DAY + 15 * MIN + 30_000).await;
        assert!(
            matches!(&fired[0].1, Ok(TickOutcome::Fired { tick, missed: 4, .. }) if *tick == DAY + 15 * MIN),
            "{fired:?}"
        );
        assert_eq!(ticks_queued(&env, "default").await.len(), 2, "no burst of missed jobs");
        // A long outage: still only the latest tick, once.
        let late = scheduler(&env, every_minute());
        let fired = late.fire_due(DAY + 40 * MIN + 30_000).await;
        assert!(
            matches!(fired[0].1, Ok(TickOutcome::Fired { missed: 24, .. })),
            "{fired:?}"
        );
        // A tick older than the grace (a daily entry deployed at noon) is skipped.
        let daily = CronEntry::new("daily", "0 3 * * *", "Echo", vec![serde_json::json!({"message": "d"})]).unwrap();
        let fired = scheduler(&env, daily).fire_due(DAY + 12 * 60 * MIN).await;
        assert!(matches!(fired[0].1, Ok(TickOutcome::TooLate { .. })), "{fired:?}");
        assert_eq!(ticks_queued(&env, "default").await.len(), 3);
    }

    /// The README's promise: a tick earlier than an entry's first sight is
    /// never fired. A daily 03:00 entry deployed at 03:04 (inside its 5-minute
    /// grace) waits for the next day's 03:00.
    #[tokio::test]
    async fn a_new_entry_fires_no_tick_from_before_it_was_deployed() {
        let env = Env::start().await;
        let daily = || {
            CronEntry::new(
                "nightly",
                "0 3 * * *",
                "Echo",
                vec![serde_json::json!({"message": "n"})],
            )
            .unwrap()
        };
        let three = DAY + 3 * 60 * MIN;
        let nothing_fired = |fired: &[(String, Result<TickOutcome, resq::cron::CronFireError>)]| {
            fired
                .iter()
                .all(|(_, o)| matches!(o, Ok(TickOutcome::AlreadyFired { .. })))
        };
        let fired = scheduler(&env, daily()).fire_due(three + 4 * MIN).await;
        assert!(nothing_fired(&fired), "{fired:?}");
        // Another worker, started later the same morning: nothing either.
        let fired = scheduler(&env, daily()).fire_due(three + 4 * MIN + 30_000).await;
        assert!(nothing_fired(&fired), "{fired:?}");
        assert!(ticks_queued(&env, "default").await.is_empty());
        let next = three + 24 * 60 * MIN;
        let fired = scheduler(&env, daily()).fire_due(next + 500).await;
        assert!(
            matches!(&fired[0].1, Ok(TickOutcome::Fired { tick, missed: 0, .. }) if *tick == next),
            "{fired:?}"
        );
        assert_eq!(ticks_queued(&env, "default").await, [format!("cron:nightly:{next}")]);
    }

    #[tokio::test]
    async fn a_full_queue_spends_the_tick_and_says_so() {
        let env = Env::start().await;
        env.dyn_store().set_queue_cap("default", Some(0)).await.unwrap();
        let fired = scheduler(&env, every_minute()).fire_due(DAY + MIN).await;
        assert!(matches!(&fired[0].1, Ok(TickOutcome::QueueFull { queue, .. }) if queue == "default"));
        // Another worker does not push it either.
        let again = scheduler(&env, every_minute()).fire_due(DAY + MIN + 1).await;
        assert!(matches!(again[0].1, Ok(TickOutcome::AlreadyFired { .. })), "{again:?}");
        assert!(env.lrange("resque:queue:default").await.is_empty());
    }

    #[tokio::test]
    async fn entries_that_could_never_run_are_refused_at_start() {
        let env = Env::start().await;
        let policy = || Policy::new(Arc::clone(&env.keyring)).unwrap().with_registry(registry());
        let unknown = CronEntry::new("x", "@daily", "Kernel", vec![]).unwrap();
        let bad_args = CronEntry::new("y", "@daily", "Echo", vec![serde_json::json!({"nope": 1})]).unwrap();
        for entry in [unknown, bad_args] {
            let err = CronScheduler::new(vec![entry], policy(), env.dyn_store())
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains("unregistered_class") || err.contains("invalid_args"),
                "{err}"
            );
        }
    }
}

#[tokio::test]
async fn isolation_with_a_program_that_is_not_a_resq_child_fails_at_start() {
    let env = Env::start().await;
    let mut config = env.config("default");
    config.isolation = Some(resq::worker::isolation::Isolation {
        program: Some("/bin/true".into()),
        ..Default::default()
    });
    let (_control, rx) = Control::new();
    let err = Worker::new(env.dyn_store(), registry(), config)
        .run(rx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/bin/true did not start as a resq child") && err.contains("serve_if_child"),
        "{err}"
    );
}
