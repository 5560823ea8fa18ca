//! `redis.wait_replicas` against real servers on loopback ports: a master
//! alone, then with a replica attached.
//!
//! With no replica, every acknowledged write (enqueue, bulk enqueue, capped
//! and unique enqueue, schedule, ack, requeue) is made on the master and then returns
//! `StoreError::NotReplicated`: the job is there (counted on the master), the
//! caller is told it is not yet on a replica. With one replica in sync the
//! same calls succeed, and `INFO commandstats` counts one `WAIT` per call
//! (a bulk enqueue of 100 jobs, an ack of 50, a requeue of 10: one each),
//! not one per job. A script the master lost (`SCRIPT FLUSH`) is loaded
//! again through the pipeline. A worker whose acks are all `NotReplicated`
//! takes them as done (it neither loops re-acking nor runs the jobs again).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use local_redis::{LocalRedis, Options};
use resq::store::{Fetched, FetchedJob, Finished, JobQueues, Outcome, StoreError, WorkerRegistry};
use resq::{Client, Control, EnqueueError, Keyring, Worker, WorkerId};
use resq_redis::store::DURABLE_CONNECTIONS;
use resq_redis::{RedisConfig, RedisStore, WaitReplicas};

/// How long each acknowledged write waits for its replica here.
const WAIT_MS: u64 = 200;

/// A replica's first sync waits 5 s for more replicas by default.
fn no_sync_delay() -> Vec<String> {
    vec!["--repl-diskless-sync-delay".into(), "0".into()]
}

fn master() -> LocalRedis {
    LocalRedis::start_with(Options {
        extra_args: no_sync_delay(),
        ..Options::default()
    })
    .expect("redis-server")
}

/// A replica of `master`, once it acknowledges the master's writes (the
/// master lists a replica `online` before it has loaded the snapshot and
/// sent its first acknowledgement).
async fn replica_of(master: &LocalRedis) -> LocalRedis {
    let mut args = vec!["--replicaof".into(), "127.0.0.1".into(), master.port().to_string()];
    args.extend(no_sync_delay());
    let replica = LocalRedis::start_with(Options {
        extra_args: args,
        ..Options::default()
    })
    .expect("a replica");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = raw(master).await;
    loop {
        let (_, acked): ((), u32) = redis::pipe()
            .set("probe", "x")
            .cmd("WAIT")
            .arg(1)
            .arg(100)
            .query_async(&mut conn)
            .await
            .unwrap();
        if acked >= 1 && online_replicas(master).await >= 1 {
            return replica;
        }
        assert!(Instant::now() < deadline, "the replica never acknowledged a write");
    }
}

async fn raw(server: &LocalRedis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn online_replicas(master: &LocalRedis) -> u32 {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut raw(master).await)
        .await
        .unwrap();
    resq_redis::facts::online_replicas(&info)
}

/// How many `WAIT`s the server ran since its stats were reset.
async fn waits(master: &LocalRedis) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut raw(master).await)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn reset_stats(master: &LocalRedis) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut raw(master).await)
        .await
        .unwrap();
}

async fn llen(master: &LocalRedis, key: &str) -> u64 {
    redis::cmd("LLEN")
        .arg(key)
        .query_async(&mut raw(master).await)
        .await
        .unwrap()
}

async fn durable_store(master: &LocalRedis) -> RedisStore {
    let mut config = RedisConfig::new(master.url());
    config.wait = Some(WaitReplicas {
        replicas: 1,
        timeout: Duration::from_millis(WAIT_MS),
    });
    RedisStore::connect(&config, "resque").await.expect("connect")
}

fn not_replicated(e: &StoreError) -> bool {
    matches!(e, StoreError::NotReplicated { wanted: 1, got: 0 })
}

fn enqueue_not_replicated(e: &EnqueueError) -> bool {
    matches!(e, EnqueueError::Store(s) if not_replicated(s))
}

async fn fetch(store: &RedisStore, w: &WorkerId, queue: &str, max: usize) -> Vec<FetchedJob> {
    match store.fetch(w, &[queue.to_string()], max).await.unwrap() {
        Fetched::Jobs(jobs) => jobs,
        Fetched::Paused => panic!("paused"),
    }
}

fn succeeded(jobs: &[FetchedJob]) -> Vec<Finished> {
    jobs.iter()
        .map(|job| Finished {
            job: job.clone(),
            outcome: Outcome::Succeeded,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_replica_writes_are_made_but_not_acknowledged_and_with_one_each_call_waits_once() {
    let master = master();
    let store = durable_store(&master).await;
    assert_eq!(store.wait_replicas().map(|w| w.replicas), Some(1));
    let client = Client::new(Arc::new(store.clone()), Arc::new(Keyring::ephemeral())).unwrap();
    let echo = |m: &str| Echo { message: m.into() };
    // A capped queue takes the enqueue script's path (the store reads caps
    // once a second: set before the first enqueue).
    let _: () = redis::cmd("HSET")
        .arg("resque:resq:queue-caps")
        .arg("capped")
        .arg(1000)
        .query_async(&mut raw(&master).await)
        .await
        .unwrap();

    // No replica: each write is on the master, and the caller is told it
    // is on no replica (after the wait's timeout, not before).
    let began = Instant::now();
    let e = client.enqueue(&echo("alone")).await.unwrap_err();
    assert!(enqueue_not_replicated(&e), "{e:?}");
    assert!(
        began.elapsed() >= Duration::from_millis(WAIT_MS),
        "{:?}",
        began.elapsed()
    );
    assert!(e.to_string().contains("0 of the 1 replica"), "{e}");
    assert_eq!(
        llen(&master, "resque:queue:default").await,
        1,
        "the job is on the master"
    );
    let e = client
        .enqueue_bulk(&[echo("b1"), echo("b2"), echo("b3")])
        .await
        .unwrap_err();
    assert!(enqueue_not_replicated(&e), "{e:?}");
    assert_eq!(llen(&master, "resque:queue:default").await, 4);
    let e = client
        .enqueue_in(&echo("later"), Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert!(enqueue_not_replicated(&e), "{e:?}");
    let scheduled: u64 = redis::cmd("ZCARD")
        .arg("resque:resq:schedule")
        .query_async(&mut raw(&master).await)
        .await
        .unwrap();
    assert_eq!(scheduled, 1, "the scheduled job is on the master");
    let e = client.enqueue_to("capped", &echo("capped")).await.unwrap_err();
    assert!(enqueue_not_replicated(&e), "{e:?}");
    assert_eq!(llen(&master, "resque:queue:capped").await, 1);
    let unique = |key: &str| resq::EnqueueOptions {
        queue: Some("unique".into()),
        unique_key: Some(key.into()),
        ..resq::EnqueueOptions::default()
    };
    let e = client.enqueue_with(&echo("u"), unique("u1")).await.unwrap_err();
    assert!(enqueue_not_replicated(&e), "{e:?}");
    assert_eq!(llen(&master, "resque:queue:unique").await, 1);
    let w = WorkerId::new("w", 1, "default");
    store.register_worker(&registration(&w, 60_000)).await.unwrap();
    let jobs = fetch(&store, &w, "default", 4).await;
    assert_eq!(jobs.len(), 4);
    let e = store.requeue(&w, &jobs[..1]).await.unwrap_err();
    assert!(not_replicated(&e), "{e:?}");
    let e = store
        .finish(&w, &succeeded(&jobs[1..]), &resq::Working::Keep)
        .await
        .unwrap_err();
    assert!(not_replicated(&e), "{e:?}");
    assert_eq!(
        llen(&master, "resque:queue:default").await,
        1,
        "the requeue and the ack were made"
    );
    let in_flight: u64 = redis::cmd("HLEN")
        .arg(format!("resque:resq:inflight:{}:default", w.as_str()))
        .query_async(&mut raw(&master).await)
        .await
        .unwrap();
    assert_eq!(in_flight, 0);

    // One replica in sync: the same calls succeed, each with one WAIT.
    let _replica = replica_of(&master).await;
    reset_stats(&master).await;
    client.enqueue(&echo("one")).await.unwrap();
    assert_eq!(waits(&master).await, 1);
    let hundred: Vec<Echo> = (0..100).map(|i| echo(&format!("bulk {i}"))).collect();
    client.enqueue_bulk(&hundred).await.unwrap();
    assert_eq!(waits(&master).await, 2, "one WAIT for a bulk enqueue of 100 jobs");
    client.enqueue_to("capped", &echo("capped 2")).await.unwrap();
    client
        .enqueue_in(&echo("later 2"), Duration::from_secs(3600))
        .await
        .unwrap();
    client.enqueue_with(&echo("u"), unique("u2")).await.unwrap();
    assert_eq!(waits(&master).await, 5);
    let jobs = fetch(&store, &w, "default", 60).await;
    assert_eq!(jobs.len(), 60);
    assert_eq!(waits(&master).await, 5, "a fetch does not wait");
    store.requeue(&w, &jobs[..10]).await.unwrap();
    assert_eq!(waits(&master).await, 6, "one WAIT for a requeue of 10 jobs");
    let report = store
        .finish(&w, &succeeded(&jobs[10..]), &resq::Working::Keep)
        .await
        .unwrap();
    assert_eq!(report.acked, 50);
    assert_eq!(waits(&master).await, 7, "one WAIT for an ack of 50 jobs");

    // The master lost its scripts (a restart, a new master): the script is
    // loaded again and the write made once. The first pipeline's WAIT ran
    // too (it covered nothing of ours), so two WAITs.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw(&master).await)
        .await
        .unwrap();
    let jobs = fetch(&store, &w, "default", 5).await;
    let report = store.finish(&w, &succeeded(&jobs), &resq::Working::Keep).await.unwrap();
    assert_eq!(report.acked, 5);
    assert_eq!(waits(&master).await, 9);
    let processed: u64 = redis::cmd("GET")
        .arg("resque:stat:processed")
        .query_async(&mut raw(&master).await)
        .await
        .unwrap();
    assert_eq!(processed, 3 + 50 + 5, "each ack counted once");
}

/// A process's acknowledged writes take its durable connections in turn,
/// so that many `WAIT`s can be out at once (on one connection each write
/// waited for the `WAIT`s of every write before it): after twice that many
/// enqueues at once, that many distinct clients of the master last ran
/// `WAIT`.
#[tokio::test(flavor = "multi_thread")]
async fn waited_writes_take_the_durable_connections_in_turn() {
    let master = master();
    let _replica = replica_of(&master).await;
    let client = Client::new(Arc::new(durable_store(&master).await), Arc::new(Keyring::ephemeral())).unwrap();
    let enqueues = (0..2 * DURABLE_CONNECTIONS).map(|i| {
        let client = &client;
        async move { client.enqueue(&Echo { message: i.to_string() }).await }
    });
    for enqueued in futures::future::join_all(enqueues).await {
        enqueued.unwrap();
    }
    assert_eq!(
        llen(&master, "resque:queue:default").await,
        2 * DURABLE_CONNECTIONS as u64
    );
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut raw(&master).await)
        .await
        .unwrap();
    let waited_last = clients.lines().filter(|l| l.contains(" cmd=wait ")).count();
    assert_eq!(waited_last, DURABLE_CONNECTIONS, "{clients}");
}

/// A wait the client would time out before is refused at connect.
#[tokio::test]
async fn a_wait_not_shorter_than_the_response_timeout_is_refused() {
    let master = master();
    let mut config = RedisConfig::new(master.url());
    config.response_timeout = Duration::from_millis(500);
    config.wait = Some(WaitReplicas {
        replicas: 1,
        timeout: Duration::from_millis(500),
    });
    let Err(e) = RedisStore::connect(&config, "resque").await else {
        panic!("connected");
    };
    assert!(
        matches!(
            e,
            resq_redis::ConnectError::WaitOutlastsResponse {
                wait_ms: 500,
                response_ms: 500
            }
        ),
        "{e}"
    );
    // No replica to wait for: no wait, nothing to refuse.
    config.wait = Some(WaitReplicas {
        replicas: 0,
        timeout: Duration::from_millis(500),
    });
    let store = RedisStore::connect(&config, "resque").await.unwrap();
    assert_eq!(store.wait_replicas(), None);
}

/// A worker whose every ack and requeue is made on the master but not
/// confirmed (its replica gone) takes them as done: the burst ends, every
/// job ran once, nothing is left in flight.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_takes_an_ack_not_yet_on_the_replicas_as_done() {
    let master = master();
    let plain = RedisStore::connect(&RedisConfig::new(master.url()), "resque")
        .await
        .unwrap();
    let keyring = Arc::new(Keyring::ephemeral());
    let producer = Client::new(Arc::new(plain), Arc::clone(&keyring)).unwrap();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(producer.enqueue_to("acks", &Tracked { ms: 0 }).await.unwrap());
    }
    let store = durable_store(&master).await;
    let mut config = fast_config("acks", keyring);
    config.burst = true;
    let (_control, rx) = Control::new();
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        Worker::new(Arc::new(store), registry(), config).run(rx),
    )
    .await
    .expect("the burst ended: no ack was retried for ever")
    .expect("the worker ran");
    assert_eq!(report.processed, 6, "{report:?}");
    for id in &ids {
        assert_eq!(starts(id), 1, "{id} ran once");
    }
    assert_eq!(llen(&master, "resque:queue:acks").await, 0);
    let in_flight: Vec<String> = redis::cmd("KEYS")
        .arg("resque:resq:inflight:*")
        .query_async(&mut raw(&master).await)
        .await
        .unwrap();
    assert_eq!(in_flight, Vec::<String>::new());
}
