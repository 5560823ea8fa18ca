//! What the behaviours share: sealed jobs, fetches, claims, workers.

use std::sync::Arc;
use std::time::Duration;

use resq::envelope::Envelope;
use resq::store::{Claim, Fetched, FetchedJob, Finished, Outcome, Registration};
use resq::{Keyring, PayloadLimits, Policy, SealOptions, Sealed, Store, UnixMs, WorkerId};
use serde_json::json;

/// A policy that signs with a key of its own.
pub fn policy() -> Policy {
    Policy::new(Arc::new(Keyring::ephemeral())).expect("a policy with a signing key")
}

/// An `Echo` job for `queue`, sealed; `n` tells jobs apart.
pub fn job(policy: &Policy, queue: &str, n: u32) -> Sealed {
    job_with(policy, queue, n, SealOptions::default())
}

pub fn job_with(policy: &Policy, queue: &str, n: u32, options: SealOptions) -> Sealed {
    policy
        .seal("Echo", queue, vec![json!({ "message": format!("m{n}") })], options)
        .expect("seal")
}

pub fn worker(name: &str, queues: &str) -> WorkerId {
    WorkerId::new(name, 1, queues)
}

pub fn registration(worker: &WorkerId, ttl: Duration) -> Registration<'_> {
    Registration {
        worker,
        started: UnixMs::now(),
        liveness_ttl: ttl,
    }
}

/// Registers `worker` with a liveness of one millisecond and waits for it
/// to lapse, as a worker that died would; then a live worker (the one that
/// reaps) renews, as the fleet goes on.
pub async fn register_and_die(store: &dyn Store, worker: &WorkerId) {
    store
        .register_worker(&registration(worker, Duration::from_millis(1)))
        .await
        .expect("register");
    tokio::time::sleep(Duration::from_millis(30)).await;
    let reaper = self::worker("reaper", "*");
    store
        .register_worker(&registration(&reaper, Duration::from_secs(60)))
        .await
        .expect("register the reaper");
}

pub async fn fetch(store: &dyn Store, worker: &WorkerId, queues: &[&str], max: usize) -> Vec<FetchedJob> {
    let queues: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
    match store.fetch(worker, &queues, max).await.expect("fetch") {
        Fetched::Jobs(jobs) => jobs,
        Fetched::Paused => panic!("every worker is paused"),
    }
}

/// The claim a worker makes for a fetched signed job.
pub fn claim(job: &FetchedJob) -> Claim {
    let envelope = Envelope::decode(&job.payload, &PayloadLimits::default()).expect("a resq envelope");
    Claim {
        queue: job.queue.clone(),
        token: job.token.clone(),
        mark: resq::mark::mark_of(&envelope)
            .expect("a well-formed mark")
            .expect("a signed job"),
        until: UnixMs::from_secs_f64(envelope.expires_at.expect("an expiry")),
    }
}

pub fn succeeded(job: &FetchedJob) -> Finished {
    Finished {
        job: job.clone(),
        outcome: Outcome::Succeeded,
    }
}

pub async fn queue_len(store: &dyn Store, queue: &str) -> u64 {
    store
        .queue_sizes()
        .await
        .expect("queue sizes")
        .into_iter()
        .find(|(q, _)| q == queue)
        .map_or(0, |(_, n)| n)
}

/// The payloads `fetch` gives, in order.
pub fn payloads(jobs: &[FetchedJob]) -> Vec<&[u8]> {
    jobs.iter().map(|j| &j.payload[..]).collect()
}
