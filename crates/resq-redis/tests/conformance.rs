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
