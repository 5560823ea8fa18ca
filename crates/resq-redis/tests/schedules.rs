//! Jobs for later: held until due, moved once however many promoters run.
//! The test passes "now" to `promote_due` instead of sleeping.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use resq::store::Schedules;
use resq::{Envelope, PayloadLimits, Schedule, UnixMs};
use serde_json::Value;

#[tokio::test]
async fn enqueue_in_holds_the_job_until_it_is_due() {
    let env = Env::start().await;
    let id = env
        .client()
        .enqueue_in(
            &Echo {
                message: "later".into(),
            },
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert!(env.lrange("resque:queue:default").await.is_empty());
    let scheduled = env.store.schedule_range(Schedule::Scheduled, 0, 10).await.unwrap();
    assert_eq!(scheduled.len(), 1);
    let (payload, due) = (&scheduled[0].payload, &scheduled[0].due.0);
    let envelope = Envelope::decode(payload, &PayloadLimits::default()).unwrap();
    assert_eq!(envelope.id.as_deref(), Some(id.as_str()));
    // Its lifetime counts from when it is due, not from now.
    assert!(envelope.expires_at.unwrap() * 1000.0 >= (*due + 7 * 86_400_000 - 1000) as f64);
    assert_eq!(env.store.promote_due(UnixMs(now_ms()), 100).await.unwrap().moved, 0);
    assert_eq!(env.store.promote_due(UnixMs(due + 1), 100).await.unwrap().moved, 1);
    env.burst("default", registry()).await;
    assert!(ran("later"));
}

#[tokio::test]
async fn concurrent_promoters_move_each_due_job_once() {
    let env = Env::start().await;
    let client = env.client();
    for i in 0..500 {
        client
            .enqueue_in(
                &Echo {
                    message: format!("p{i}"),
                },
                Duration::from_millis(1),
            )
            .await
            .unwrap();
    }
    let later = now_ms() + 10_000;
    let store: Arc<dyn resq::Store> = env.dyn_store();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut moved = 0;
            loop {
                let n = store.promote_due(UnixMs(later), 37).await.unwrap().moved;
                if n == 0 {
                    return moved;
                }
                moved += n;
            }
        });
    }
    let mut total = 0;
    while let Some(n) = tasks.join_next().await {
        total += n.unwrap();
    }
    assert_eq!(total, 500);
    let queue = env.lrange("resque:queue:default").await;
    let mut ids: Vec<String> = queue
        .iter()
        .map(|p| {
            serde_json::from_str::<Value>(p).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 500, "each job exactly once");
}
