//! Queue caps, pauses and weights, as the worker and producers see them.

mod common;

use std::sync::Arc;

use common::*;
use resq::store::AdminStore;
use resq::{Control, Worker};

#[tokio::test]
async fn a_capped_queue_refuses_enqueues_that_would_overflow_it_all_or_nothing() {
    let env = Env::start().await;
    env.store.set_queue_cap("default", Some(3)).await.unwrap();
    let client = env.client();
    for i in 0..3 {
        client
            .enqueue(&Echo {
                message: format!("c{i}"),
            })
            .await
            .unwrap();
    }
    let err = client
        .enqueue(&Echo {
            message: "one too many".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            resq::EnqueueError::Store(resq::StoreError::QueueFull { cap: 3, length: 3, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("queue default is full"), "{err}");
    // A bulk that does not fit is refused whole, even the part that would fit.
    env.store.set_queue_cap("default", Some(5)).await.unwrap();
    let three: Vec<Echo> = (0..3)
        .map(|i| Echo {
            message: format!("b{i}"),
        })
        .collect();
    assert!(client.enqueue_bulk(&three).await.is_err());
    assert_eq!(env.lrange("resque:queue:default").await.len(), 3);
    // Concurrent producers cannot overshoot the cap together.
    env.store.set_queue_cap("default", Some(50)).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = client.clone();
        tasks.spawn(async move {
            client
                .enqueue(&Echo {
                    message: format!("r{i}"),
                })
                .await
                .is_ok()
        });
    }
    let mut accepted = 0;
    while let Some(ok) = tasks.join_next().await {
        accepted += usize::from(ok.unwrap());
    }
    assert_eq!(accepted, 47);
    assert_eq!(env.lrange("resque:queue:default").await.len(), 50);
    env.store.set_queue_cap("default", None).await.unwrap();
    client
        .enqueue(&Echo {
            message: "uncapped".into(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_paused_queue_is_skipped_until_resumed() {
    let env = Env::start().await;
    let client = env.client();
    client
        .enqueue_to(
            "held",
            &Echo {
                message: "held job".into(),
            },
        )
        .await
        .unwrap();
    client
        .enqueue_to(
            "open",
            &Echo {
                message: "open job".into(),
            },
        )
        .await
        .unwrap();
    env.store.set_queue_paused("held", true).await.unwrap();
    env.burst("held,open", registry()).await;
    assert!(ran("open job") && !ran("held job"));
    assert_eq!(env.lrange("resque:queue:held").await.len(), 1);
    env.store.set_queue_paused("held", false).await.unwrap();
    env.burst("held,open", registry()).await;
    assert!(ran("held job"));
}

#[tokio::test]
async fn weighted_queues_share_the_worker_in_proportion() {
    let env = Env::start().await;
    let client = env.client();
    for q in ["heavy", "light"] {
        let jobs: Vec<Echo> = (0..300)
            .map(|i| Echo {
                message: format!("{q}{i}"),
            })
            .collect();
        for job in &jobs {
            client.enqueue_to(q, job).await.unwrap();
        }
    }
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&order);
    let mut config = env.config("heavy:3,light:1");
    config.burst = true;
    config.concurrency = 1;
    let (_c, rx) = Control::new();
    Worker::new(env.dyn_store(), registry(), config)
        .with_observer(Arc::new(move |o: &resq::JobOutcome| {
            seen.lock().unwrap().push(o.queue.clone())
        }))
        .run(rx)
        .await
        .unwrap();
    let order = order.lock().unwrap();
    assert_eq!(order.len(), 600);
    let heavy_first = order[..200].iter().filter(|q| *q == "heavy").count();
    // Expected 150 of the first 200 (3:1); the bounds are five standard deviations.
    assert!((120..=180).contains(&heavy_first), "{heavy_first}");
}
