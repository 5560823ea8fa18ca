//! Unique jobs: one job per key and window, whatever the races.

mod common;

use std::time::Duration;

use common::*;
use resq::store::AdminStore;
use resq::{Job, JobContext, JobError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
