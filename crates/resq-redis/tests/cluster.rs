//! Cluster mode on a private Redis Cluster (3 masters, a replica each):
//! each queue's keys live in its own slot, so queues spread over the
//! masters and a job's whole path stays on its queue's master.

use local_redis::{LocalCluster, Options};
use resq::store::{AdminStore, JobQueues, TrackState, TrackUpdate};
use resq::UnixMs;
use resq_redis::{ClusterConfig, RedisConfig, RedisStore};

#[tokio::test(flavor = "multi_thread")]
async fn queues_spread_over_the_masters_and_each_keeps_its_keys_on_one() {
    let cluster = LocalCluster::start(3, 1, Options::default()).expect("start a cluster");
    let mut config = RedisConfig::new(cluster.nodes()[0].url());
    config.cluster = Some(ClusterConfig {
        nodes: cluster
            .nodes()
            .iter()
            .map(|n| ("127.0.0.1".to_string(), n.port()))
            .collect(),
    });
    let store = RedisStore::connect(&config, "spread").await.expect("connect");
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
