//! A signed job attempt runs at most once, however many copies of its bytes
//! are pushed, at once or later, and whatever its outcome: the first copy
//! claims the attempt before it runs, and every other copy is refused
//! `replayed` without running. A legitimate retry is a new attempt (the
//! worker re-signs it), and an operator's `failed retry` releases the spent
//! attempt once.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use resq::{Admin, Control, JobOutcome, Policy, SealOptions, Worker};
use serde_json::{json, Value};

/// Every outcome per queue, in the order the worker reported them.
type Outcomes = Arc<Mutex<HashMap<String, Vec<String>>>>;

async fn run_burst(env: &Env, queues: &str, concurrency: usize) -> HashMap<String, Vec<String>> {
    let mut config = env.config(queues);
    config.burst = true;
    config.concurrency = concurrency;
    let seen: Outcomes = Arc::default();
    let sink = Arc::clone(&seen);
    let (_c, rx) = Control::new();
    Worker::new(env.dyn_store(), registry(), config)
        .with_observer(Arc::new(move |o: &JobOutcome| {
            let code = match &o.result {
                Ok(()) => "ok".to_string(),
                Err(f) => f.reason.code().to_string(),
            };
            sink.lock().unwrap().entry(o.queue.clone()).or_default().push(code);
        }))
        .run(rx)
        .await
        .unwrap();
    let out = seen.lock().unwrap().clone();
    out
}

/// Signs a job as a producer holding the environment's key would, without
/// checking its arguments (so a job with bad arguments can be signed).
fn signed(env: &Env, class: &str, queue: &str, args: Value, options: SealOptions) -> Vec<u8> {
    let Value::Array(args) = args else { panic!("args") };
    Policy::new(Arc::clone(&env.keyring))
        .unwrap()
        .seal(class, queue, args, options)
        .unwrap()
        .payload()
        .to_vec()
}

async fn push_copies(env: &Env, queue: &str, payload: &[u8], copies: usize) {
    // Copies of signed bytes, pushed past the policy as an attacker would.
    let jobs: Vec<(String, Vec<u8>)> = (0..copies).map(|_| (queue.to_string(), payload.to_vec())).collect();
    env.store.push_unchecked(&jobs).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_copies_pushed_at_once_run_once_under_concurrency_64() {
    let env = Env::start().await;
    let job = signed(
        &env,
        "Echo",
        "rp.burst",
        json!([{"message": "fifty copies"}]),
        SealOptions::default(),
    );
    push_copies(&env, "rp.burst", &job, 50).await;
    let seen = run_burst(&env, "rp.burst", 64).await;
    let outcomes = &seen["rp.burst"];
    assert_eq!(outcomes.iter().filter(|o| *o == "ok").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "replayed").count(), 49, "{outcomes:?}");
    assert_eq!(RAN.lock().unwrap().iter().filter(|m| *m == "fifty copies").count(), 1);
    assert_eq!(env.failure_reasons().await, vec!["replayed"; 49]);
}

/// Whatever happened to the attempt, copies of it pushed afterwards never run.
#[tokio::test(flavor = "multi_thread")]
async fn every_finished_attempt_is_spent_whatever_its_outcome() {
    let env = Env::start().await;
    let timeout = SealOptions {
        timeout: Some(Duration::from_millis(50)),
        ..SealOptions::default()
    };
    let cases: [(&str, &str, Value, SealOptions, &str); 7] = [
        (
            "rp.ok",
            "Echo",
            json!([{"message": "spent-ok"}]),
            SealOptions::default(),
            "ok",
        ),
        (
            "rp.failed",
            "Fail",
            json!([{"message": "no"}]),
            SealOptions::default(),
            "job_failed",
        ),
        ("rp.panic", "Panic", json!([{}]), SealOptions::default(), "job_panicked"),
        ("rp.timeout", "Nap", json!([{"ms": 5_000}]), timeout, "timeout"),
        (
            "rp.args",
            "Nap",
            json!([{"ms": 999_999}]),
            SealOptions::default(),
            "invalid_args",
        ),
        (
            "rp.plain",
            "Secret",
            json!([{"ssn": "000-00-0000"}]),
            SealOptions::default(),
            "decrypt_failed",
        ),
        (
            "rp.class",
            "Nobody",
            json!([]),
            SealOptions::default(),
            "unregistered_class",
        ),
    ];
    let mut payloads = Vec::new();
    for (queue, class, args, options, _) in &cases {
        let job = signed(&env, class, queue, args.clone(), options.clone());
        push_copies(&env, queue, &job, 1).await;
        payloads.push(job);
    }
    let first = run_burst(&env, "rp.*", 8).await;
    for (queue, .., outcome) in &cases {
        assert_eq!(first[*queue], [*outcome], "{queue}");
    }
    for ((queue, ..), job) in cases.iter().zip(&payloads) {
        push_copies(&env, queue, job, 3).await;
    }
    let again = run_burst(&env, "rp.*", 8).await;
    for (queue, ..) in &cases {
        assert_eq!(again[*queue], ["replayed"; 3], "{queue}: a copy of a spent attempt ran");
    }
    assert_eq!(RAN.lock().unwrap().iter().filter(|m| *m == "spent-ok").count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_job_pushed_again_is_replayed_and_an_operator_retry_runs_it_once_more() {
    let env = Env::start().await;
    let job = signed(
        &env,
        "Fail",
        "rp.fail",
        json!([{"message": "five times"}]),
        SealOptions::default(),
    );
    push_copies(&env, "rp.fail", &job, 5).await;
    let seen = run_burst(&env, "rp.fail", 8).await;
    let mut outcomes = seen["rp.fail"].clone();
    outcomes.sort();
    assert_eq!(outcomes, ["job_failed", "replayed", "replayed", "replayed", "replayed"]);

    // The operator retries the real failure: it runs once more.
    let admin = Admin::new(env.dyn_store());
    let failures = admin.failed(0, 10).await.unwrap();
    let failed = failures
        .iter()
        .find(|f| f.record.reason.as_deref() == Some("job_failed"))
        .and_then(|f| f.record.id.clone())
        .expect("the job_failed record");
    admin.retry_failed(&failed).await.unwrap();
    let seen = run_burst(&env, "rp.fail", 8).await;
    assert_eq!(seen["rp.fail"], ["job_failed"], "the retried attempt ran");
    // And its bytes pushed again are spent once more.
    push_copies(&env, "rp.fail", &job, 2).await;
    let seen = run_burst(&env, "rp.fail", 8).await;
    assert_eq!(seen["rp.fail"], ["replayed", "replayed"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_signed_without_a_mark_is_claimed_by_its_signature_and_a_bad_mark_is_refused() {
    let env = Env::start().await;
    let job = signed(
        &env,
        "Echo",
        "rp.nomark",
        json!([{"message": "markless"}]),
        SealOptions::default(),
    );
    // Another producer that sets no mark: strip it and sign again.
    let mut envelope = resq::Envelope::decode(&job, &resq::PayloadLimits::default()).unwrap();
    envelope.mark = None;
    let key = env.keyring.signer().unwrap();
    resq::envelope::sign(&mut envelope, key).unwrap();
    let markless = envelope.to_bytes().unwrap();
    envelope.mark = Some("not-a-mark".into());
    envelope.queue = Some("rp.badmark".into());
    resq::envelope::sign(&mut envelope, key).unwrap();
    let bad_mark = envelope.to_bytes().unwrap();
    push_copies(&env, "rp.nomark", &markless, 4).await;
    push_copies(&env, "rp.badmark", &bad_mark, 1).await;
    let seen = run_burst(&env, "rp.nomark,rp.badmark", 8).await;
    let mut outcomes = seen["rp.nomark"].clone();
    outcomes.sort();
    assert_eq!(outcomes, ["ok", "replayed", "replayed", "replayed"]);
    assert_eq!(seen["rp.badmark"], ["malformed_payload"]);
    assert_eq!(RAN.lock().unwrap().iter().filter(|m| *m == "markless").count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn marks_cost_a_bit_per_job_and_go_when_their_jobs_expire() {
    let env = Env::start().await;
    let client = env.client();
    let jobs: Vec<Echo> = (0..3000)
        .map(|i| Echo {
            message: format!("mark-{i}"),
        })
        .collect();
    client.enqueue_bulk(&jobs).await.unwrap();
    let latest_expiry = env
        .lrange("resque:queue:default")
        .await
        .iter()
        .map(|p| {
            serde_json::from_str::<Value>(p).unwrap()["expires_at"]
                .as_f64()
                .unwrap()
        })
        .fold(0.0, f64::max);
    run_burst(&env, "default", 64).await;
    // One producer, one block: one bitmap of 3000 bits for 3000 jobs.
    let blocks = env.keys("resque:resq:marks:default:*").await;
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let bytes: u64 = redis::cmd("STRLEN")
        .arg(&blocks[0])
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert_eq!(bytes, 3000 / 8);
    let bits: u64 = redis::cmd("BITCOUNT")
        .arg(&blocks[0])
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert_eq!(bits, 3000);
    // It is dropped when the last of its jobs expires, plus the 15-minute
    // skew margin: to the millisecond.
    let at: u64 = redis::cmd("PEXPIRETIME")
        .arg(&blocks[0])
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert_eq!(at, ((latest_expiry + 900.0) * 1000.0) as u64);
}
