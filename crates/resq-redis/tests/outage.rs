//! A Redis outage longer than the liveness period never makes workers reap
//! each other. When Redis comes back every liveness mark has lapsed, live
//! workers' too, and a reaper that judged by them at once would requeue the
//! jobs of any worker that had not renewed yet: duplicates, and false
//! `replayed` records for the copies.
//!
//! Each test runs a real worker (it reaps every 50 ms) next to a second
//! worker driven by the test, which holds claimed jobs in flight and renews
//! its mark by hand, 300 ms late after the outage, as a worker does whose
//! reconnect backoff is longer than the other's. Redis is stopped (SIGSTOP)
//! or killed and restarted from its append-only file for several liveness
//! periods. Every job must run exactly once, the late worker keep its jobs,
//! and the failed list stay empty.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use local_redis::{LocalRedis, Options};
use resq::store::FetchedJob;
use resq::store::{Claim, ClaimOutcome, Fetched, Finished, JobQueues, Outcome, WorkerRegistry};
use resq::{Control, Envelope, PayloadLimits, Worker, WorkerId};
use resq_redis::{RedisConfig, RedisStore};

const QUEUE: &str = "outage";
/// Jobs per run: half held by the hand-driven worker, half run for real.
const JOBS: usize = 8;
const JOB_MS: u64 = 2_000;
const TTL: Duration = Duration::from_millis(1_500);
/// Several liveness periods.
const OUTAGE: Duration = Duration::from_millis(3_500);
/// How late the hand-driven worker renews once Redis is back.
const LATE: Duration = Duration::from_millis(300);

fn signal_redis(redis: &LocalRedis, signal: &str) {
    let pid = redis.pid().expect("redis runs").to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// The worker the test drives: registered, holding `JOBS / 2` claimed jobs.
struct HandWorker {
    id: WorkerId,
    jobs: Vec<FetchedJob>,
}

impl HandWorker {
    async fn start(env: &Env) -> HandWorker {
        let id = WorkerId::new("hand", 7, QUEUE);
        env.store
            .register_worker(&registration(&id, TTL.as_millis() as u64))
            .await
            .unwrap();
        let Fetched::Jobs(jobs) = env.store.fetch(&id, &[QUEUE.to_string()], JOBS / 2).await.unwrap() else {
            panic!("paused")
        };
        let claims: Vec<Claim> = jobs
            .iter()
            .map(|job| {
                let envelope = Envelope::decode(&job.payload, &PayloadLimits::default()).unwrap();
                Claim {
                    queue: job.queue.clone(),
                    token: job.token.clone(),
                    mark: resq::mark::mark_of(&envelope).unwrap().unwrap(),
                    until: resq::UnixMs::from_secs_f64(envelope.expires_at.unwrap()),
                }
            })
            .collect();
        let outcomes = env.store.claim(&id, &claims).await.unwrap();
        assert_eq!(outcomes, vec![ClaimOutcome::Claimed; JOBS / 2]);
        HandWorker { id, jobs }
    }

    /// Renews every third of the TTL from `after` on, until dropped.
    fn renew_from(&self, store: RedisStore, after: Duration) -> tokio::task::JoinHandle<()> {
        let id = self.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            loop {
                let _ = store.keep_alive(&registration(&id, TTL.as_millis() as u64)).await;
                tokio::time::sleep(TTL / 3).await;
            }
        })
    }
}

async fn run(env: &mut Env, outage: impl AsyncFnOnce(&mut Env)) {
    let client = env.client();
    let mut ids = Vec::new();
    for _ in 0..JOBS {
        ids.push(
            client
                .enqueue_to(QUEUE, &Tracked { ms: JOB_MS })
                .await
                .expect("enqueue"),
        );
    }
    let hand = HandWorker::start(env).await;
    let renewing = hand.renew_from(env.store.clone(), Duration::ZERO);

    let mut config = env.config(QUEUE);
    config.liveness_ttl = TTL;
    config.reap_interval = Duration::from_millis(50);
    let (control, rx) = Control::new();
    let worker = Worker::new(env.dyn_store(), registry(), config);
    let real = tokio::spawn(async move { worker.run(rx).await.expect("worker runs") });
    let its_half: Vec<&String> = ids.iter().filter(|id| !hand_holds(&hand, id)).collect();
    eventually("the real worker runs its half", || async {
        its_half.iter().all(|id| starts(id) == 1)
    })
    .await;

    renewing.abort();
    outage(env).await;
    let renewing = hand.renew_from(env.store.clone(), LATE);

    eventually("the real worker acks its half", || async {
        env.get("resque:stat:processed").await.as_deref() == Some(&(JOBS / 2).to_string())
    })
    .await;
    // Long enough for any reaper to have judged the hand worker.
    tokio::time::sleep(TTL * 2).await;
    let done: Vec<Finished> = hand
        .jobs
        .iter()
        .map(|job| Finished {
            job: job.clone(),
            outcome: Outcome::Succeeded,
        })
        .collect();
    let report = env.store.finish(&hand.id, &done, &resq::Working::Keep).await.unwrap();
    renewing.abort();
    control.quit();
    let real = real.await.unwrap();

    assert_eq!(
        (report.acked, report.taken.len()),
        (JOBS as u64 / 2, 0),
        "the late worker kept its jobs"
    );
    assert_eq!(real.recovered, 0, "no live worker was reaped");
    let runs: Vec<usize> = ids.iter().map(|id| starts(id)).collect();
    let expected: Vec<usize> = ids.iter().map(|id| usize::from(!hand_holds(&hand, id))).collect();
    assert_eq!(runs, expected, "each job ran once, on the worker that held it");
    assert_eq!(env.failure_reasons().await, Vec::<String>::new(), "no false records");
    assert_eq!(env.get("resque:stat:processed").await.as_deref(), Some("8"));
}

fn hand_holds(hand: &HandWorker, id: &str) -> bool {
    hand.jobs
        .iter()
        .any(|job| String::from_utf8_lossy(&job.payload).contains(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_longer_than_the_liveness_period_makes_no_duplicate() {
    let mut env = Env::start().await;
    run(&mut env, async |env: &mut Env| {
        signal_redis(&env.redis, "-STOP");
        tokio::time::sleep(OUTAGE).await;
        signal_redis(&env.redis, "-CONT");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_from_its_aof_makes_no_duplicate() {
    let options = Options {
        extra_args: ["--appendonly", "yes", "--appendfsync", "always"]
            .map(String::from)
            .to_vec(),
        ..Options::default()
    };
    let redis = LocalRedis::start_with(options).expect("redis-server");
    let mut store_config = RedisConfig::new(redis.url());
    store_config.response_timeout = Duration::from_secs(2);
    let store = RedisStore::connect(&store_config, "resque").await.expect("connect");
    let mut env = Env {
        redis,
        store,
        keyring: Arc::new(resq::Keyring::ephemeral()),
    };
    run(&mut env, async |env: &mut Env| {
        env.redis.kill();
        tokio::time::sleep(OUTAGE).await;
        env.redis.restart().expect("redis restarts from its AOF");
    })
    .await;
}
