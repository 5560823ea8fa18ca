//! The Redis store passes the store conformance suite: every behaviour of
//! the interface, each on a fresh private redis-server.

use std::sync::Arc;

use local_redis::LocalRedis;
use resq_redis::{RedisConfig, RedisStore};
use resq_store_tests::Fresh;

#[tokio::test(flavor = "multi_thread")]
async fn the_redis_store_passes_the_conformance_suite() {
    resq_store_tests::run(|| async {
        let redis = LocalRedis::start().expect("start redis-server");
        let store = RedisStore::connect(&RedisConfig::new(redis.url()), "resque")
            .await
            .expect("connect");
        Fresh::new(Arc::new(store), redis)
    })
    .await;
}

/// The same suite on a Redis Cluster of 3 masters with a replica each,
/// each behaviour in a namespace of its own (a fresh store: no key of one
/// is a key of another).
#[tokio::test(flavor = "multi_thread")]
async fn the_redis_store_passes_the_conformance_suite_on_a_cluster() {
    let cluster = local_redis::LocalCluster::start(3, 1, local_redis::Options::default()).expect("start a cluster");
    let seeds: Vec<(String, u16)> = cluster.nodes().iter().map(|n| ("127.0.0.1".into(), n.port())).collect();
    let url = cluster.nodes()[0].url();
    let next = std::sync::atomic::AtomicUsize::new(0);
    resq_store_tests::run(|| async {
        let mut config = RedisConfig::new(url.clone());
        config.cluster = Some(resq_redis::ClusterConfig { nodes: seeds.clone() });
        let namespace = format!("t{}", next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let store = RedisStore::connect(&config, &namespace).await.expect("connect");
        Fresh::new(Arc::new(store), ())
    })
    .await;
    drop(cluster);
}
