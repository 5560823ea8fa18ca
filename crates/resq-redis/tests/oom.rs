//! At `maxmemory` with `noeviction`, a producer is refused with a typed
//! error and loses nothing, while workers keep going: registering and
//! renewing liveness, fetching, claiming, putting back and acking all run
//! (each adds a few bytes at most; the ack frees a payload).

mod common;

use common::*;
use local_redis::{LocalRedis, Options};
use resq::mark::Mark;
use resq::store::{Claim, ClaimOutcome, Fetched, Finished, JobQueues, Outcome, StoreError, WorkerRegistry};
use resq::WorkerId;
use resq_redis::{RedisConfig, RedisStore};

#[tokio::test]
async fn at_maxmemory_enqueue_is_refused_and_workers_keep_going() {
    let redis = LocalRedis::start_with(Options {
        extra_args: vec![
            "--maxmemory".into(),
            "4mb".into(),
            "--maxmemory-policy".into(),
            "noeviction".into(),
        ],
        ..Options::default()
    })
    .unwrap();
    let store = RedisStore::connect(&RedisConfig::new(redis.url()), "resque")
        .await
        .unwrap();
    let mut conn = store.connection();
    for i in 0..3 {
        let payload = format!(r#"{{"class":"Echo","args":[{{"message":"{i}"}}]}}"#);
        let _: () = redis::pipe()
            .sadd("resque:queues", "q")
            .rpush("resque:queue:q", payload)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // Ballast up to the limit: the next SET is refused.
    let chunk = "x".repeat(64 * 1024);
    for i in 0.. {
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("ballast:{i}"))
            .arg(&chunk)
            .query_async(&mut conn)
            .await;
        if set.is_err() {
            break;
        }
    }
    let client = resq::Client::new(
        std::sync::Arc::new(store.clone()),
        std::sync::Arc::new(resq::Keyring::ephemeral()),
    )
    .unwrap();
    let refused = client.enqueue(&Echo { message: "late".into() }).await.unwrap_err();
    assert!(
        matches!(&refused, resq::EnqueueError::Store(StoreError::Refused(_))),
        "a typed refusal: {refused:?}"
    );

    let w = WorkerId::new("w", 1, "q");
    store.register_worker(&registration(&w, 60_000)).await.unwrap();
    assert!(store.keep_alive(&registration(&w, 60_000)).await.unwrap());
    let jobs = match store.fetch(&w, &["q".to_string()], 10).await.unwrap() {
        Fetched::Jobs(jobs) => jobs,
        Fetched::Paused => panic!("paused"),
    };
    assert_eq!(jobs.len(), 3);
    let claim = |job: &resq::store::FetchedJob, i: u16| Claim {
        queue: job.queue.clone(),
        token: job.token.clone(),
        mark: Mark::parse(&format!("DDDDDDDDDDDDDDDD.{i}")).unwrap(),
        until: resq::UnixMs::now().plus(std::time::Duration::from_secs(60)),
    };
    let claims: Vec<Claim> = jobs.iter().zip(0..).map(|(j, i)| claim(j, i)).collect();
    assert_eq!(store.claim(&w, &claims).await.unwrap(), vec![ClaimOutcome::Claimed; 3]);
    // One goes back (its claim released), two are acked.
    store.requeue(&w, &jobs[..1]).await.unwrap();
    let done: Vec<Finished> = jobs[1..]
        .iter()
        .map(|job| Finished {
            job: job.clone(),
            outcome: Outcome::Succeeded,
        })
        .collect();
    assert_eq!(store.finish(&w, &done, &resq::Working::Keep).await.unwrap().acked, 2);
    let queue: Vec<String> = redis::cmd("LRANGE")
        .arg("resque:queue:q")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(queue.len(), 1, "the job put back is there, nothing else was stored");
}
