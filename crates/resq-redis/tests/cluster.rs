//! Cluster mode on a private Redis Cluster (3 masters, a replica each):
//! each queue's keys live in its own slot, so queues spread over the
//! masters and a job's whole path stays on its queue's master.

mod common;

use std::time::Duration;

use local_redis::{LocalCluster, Options};

use common::succeed;
use resq::store::{
    AdminStore, Fetched, FetchedJob, JobQueues, ReapRules, Registration, TrackState, TrackUpdate, WorkerRegistry,
};
use resq::{UnixMs, WorkerId};
use resq_redis::{ClusterConfig, RedisConfig, RedisStore};

/// A store in cluster mode on `cluster`, in `namespace`.
async fn cluster_store(cluster: &LocalCluster, namespace: &str) -> RedisStore {
    let mut config = RedisConfig::new(cluster.nodes()[0].url());
    config.cluster = Some(ClusterConfig {
        nodes: cluster.seed_addrs(),
    });
    RedisStore::connect(&config, namespace).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread")]
async fn queues_spread_over_the_masters_and_each_keeps_its_keys_on_one() {
    let cluster = LocalCluster::start(3, 1, Options::default()).expect("start a cluster");
    let store = cluster_store(&cluster, "spread").await;
    // Idle workers hear of a push on any queue: each queue publishes on
    // its own channel, in its own slot, and the listener hears them all.
    let mut wake = store.wakeups().expect("a wake-up listener");
    tokio::time::timeout(std::time::Duration::from_secs(10), wake.changed())
        .await
        .expect("the listener subscribes")
        .expect("listening");
    let seen = *wake.borrow_and_update();
    let queues: Vec<String> = (0..12).map(|i| format!("q{i}")).collect();
    let jobs: Vec<(String, Vec<u8>)> = queues
        .iter()
        .flat_map(|q| (0..3).map(move |n| (q.clone(), format!("job {n} of {q}").into_bytes())))
        .collect();
    store.push_unchecked(&jobs).await.expect("enqueue");
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while *wake.borrow_and_update() == seen {
            wake.changed().await.expect("listening");
        }
    })
    .await
    .expect("a push wakes the listener");
    let mut listed = store.queues().await.expect("queues");
    listed.sort();
    let mut want = queues.clone();
    want.sort();
    assert_eq!(listed, want, "every queue is listed in the fleet's keyspace");
    let sizes = store.queue_sizes().await.expect("sizes");
    assert!(sizes.iter().all(|(_, n)| *n == 3), "{sizes:?}");

    // Each master holds the keys of some queues, and every key of a queue
    // is on one master.
    let masters = cluster.master_ports();
    assert_eq!(masters.len(), 3);
    let mut queues_on = Vec::new();
    for port in &masters {
        let keys = cluster.ask(*port, &["KEYS", "{spread:*"]).expect("KEYS");
        let here: std::collections::BTreeSet<String> = keys
            .lines()
            .filter_map(|k| k.strip_prefix("{spread:")?.split_once('}').map(|(q, _)| q.to_string()))
            .collect();
        queues_on.push(here);
    }
    assert!(
        queues_on.iter().all(|q| !q.is_empty()),
        "a master holds no queue: {queues_on:?}"
    );
    for (i, a) in queues_on.iter().enumerate() {
        for b in queues_on.iter().skip(i + 1) {
            assert!(a.is_disjoint(b), "a queue's keys on two masters: {queues_on:?}");
        }
    }

    // Tracked jobs' records, each in a slot of its own, are written in one
    // call and read back.
    let far = UnixMs(u64::MAX / 2);
    let updates: Vec<TrackUpdate> = (0..8)
        .map(|i| TrackUpdate {
            id: format!("job-{i}"),
            state: TrackState::Running,
            attempt: i,
            at: UnixMs(1),
            first: None,
            error: None,
            keep_until: far,
        })
        .collect();
    store.track(&updates).await.expect("track");
    for i in 0..8u32 {
        let record = store
            .tracked(&format!("job-{i}"))
            .await
            .expect("read")
            .expect("a record");
        assert_eq!(record.attempt, i);
    }
}

async fn fetch(store: &RedisStore, worker: &WorkerId, queues: &[&str]) -> Vec<FetchedJob> {
    let queues: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
    match store.fetch(worker, &queues, 10).await.expect("fetch") {
        Fetched::Jobs(jobs) => jobs,
        Fetched::Paused => panic!("paused"),
    }
}

fn registration(worker: &WorkerId) -> Registration<'_> {
    Registration {
        worker,
        started: UnixMs::now(),
        liveness_ttl: Duration::from_secs(60),
    }
}

/// A suspect runs alone whichever queue the worker's other jobs came from,
/// though each queue's keys are in a slot of their own: a worker holding a
/// job of `r` meets a suspect at the head of `q` and takes nothing (it
/// drains); once idle it takes the suspect, alone; while it runs it, it
/// takes nothing from `r` either.
#[tokio::test(flavor = "multi_thread")]
async fn a_suspect_runs_alone_across_queues_in_different_slots() {
    let cluster = LocalCluster::start(3, 0, Options::default()).expect("start a cluster");
    let store = cluster_store(&cluster, "alone").await;
    let keys = store.keys();
    assert_ne!(
        redis::cluster_routing::Slot::for_key(keys.for_queue("q").queue("q")),
        redis::cluster_routing::Slot::for_key(keys.for_queue("r").queue("r")),
    );
    let job = |queue: &str, n: u32| {
        (
            queue.to_string(),
            format!("{{\"class\":\"Echo\",\"args\":[{n}]}}").into_bytes(),
        )
    };
    store
        .push_unchecked(&[job("q", 0), job("r", 1), job("r", 2)])
        .await
        .expect("push");

    // A worker takes q's job and dies with it: the job is a suspect.
    let dead = WorkerId::new("dead", 1, "q");
    store.register_worker(&registration(&dead)).await.expect("register");
    assert_eq!(fetch(&store, &dead, &["q"]).await.len(), 1);
    let _: () = redis::cmd("DEL")
        .arg(keys.alive(dead.as_str()))
        .query_async(&mut store.connection())
        .await
        .expect("DEL");
    let rules = ReapRules {
        min_continuity: Duration::ZERO,
        max_recoveries: 3,
    };
    let report = store.reap_dead_workers(rules).await.expect("reap");
    assert_eq!(report.requeued, 1, "{report:?}");

    // A busy worker (a job of r in flight) meets the suspect: nothing.
    let w = WorkerId::new("w", 2, "q,r");
    store.register_worker(&registration(&w)).await.expect("register");
    let held = fetch(&store, &w, &["r"]).await;
    assert_eq!(held.len(), 2);
    store.push_unchecked(&[job("r", 3)]).await.expect("push");
    assert!(
        fetch(&store, &w, &["q", "r"]).await.is_empty(),
        "a busy worker leaves a suspect, and drains"
    );
    assert!(
        fetch(&store, &w, &["r"]).await.is_empty(),
        "draining: nothing from r either"
    );
    // Idle, it takes the suspect, alone, and nothing else while it runs it.
    succeed(&store, &w, &held).await;
    let alone = fetch(&store, &w, &["r", "q"]).await;
    assert_eq!(alone.len(), 1);
    assert_eq!(alone[0].queue, "q", "the suspect, alone");
    assert!(
        fetch(&store, &w, &["r"]).await.is_empty(),
        "nothing else while it runs a suspect"
    );
    // Back from it: a suspect no more, and r's next job comes.
    succeed(&store, &w, &alone).await;
    let next = fetch(&store, &w, &["r"]).await;
    assert_eq!(next.len(), 1);
}

/// Cluster mode over TLS with a private CA (nodes serve TLS only, their bus
/// and replication too): resq learns the layout and works every node.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_that_serves_tls_only_is_worked_over_tls() {
    let pki = resq_test_support::Pki::generate();
    let cluster = LocalCluster::start(
        3,
        1,
        Options {
            tls: Some(local_redis::TlsFiles {
                cert: pki.path("server.pem"),
                key: pki.path("server.key"),
                ca: pki.path("ca.pem"),
                require_client_cert: false,
            }),
            // The cluster bus and replication authenticate both ends.
            extra_args: vec![
                "--tls-client-cert-file".into(),
                pki.path("client.pem").display().to_string(),
                "--tls-client-key-file".into(),
                pki.path("client.key").display().to_string(),
            ],
            ..Options::default()
        },
    )
    .expect("start a TLS cluster");
    let url = cluster.nodes()[0].url();
    assert!(url.starts_with("rediss://"), "{url}");
    let mut config = RedisConfig::new(url);
    config.ca_file = Some(pki.path("ca.pem"));
    config.cluster = Some(ClusterConfig {
        nodes: cluster.seed_addrs(),
    });
    let store = RedisStore::connect(&config, "tls").await.expect("connect over TLS");
    let jobs: Vec<(String, Vec<u8>)> = (0..9)
        .map(|i| (format!("q{i}"), format!("job {i}").into_bytes()))
        .collect();
    store.push_unchecked(&jobs).await.expect("enqueue");
    let w = WorkerId::new("w", 1, "q");
    store.register_worker(&registration(&w)).await.expect("register");
    let queues: Vec<&str> = jobs.iter().map(|(q, _)| q.as_str()).collect();
    let taken = fetch(&store, &w, &queues).await;
    assert_eq!(taken.len(), 9);
    succeed(&store, &w, &taken).await;
    assert_eq!(store.stats().await.expect("stats").processed, 9);

    // Without the CA the nodes' certificates are not trusted.
    config.ca_file = None;
    assert!(RedisStore::connect(&config, "tls").await.is_err());
}
