//! Reliable fetch and recovery: a job leaves the in-flight list only on ack,
//! and the in-flight jobs of a worker whose liveness lapsed go back to the
//! head of their queues, in order.

mod common;

use std::time::Duration;

use common::*;
use resq::store::{Fetched, Store};
use resq::WorkerId;

#[tokio::test]
async fn fetched_jobs_wait_in_flight_and_a_dead_workers_jobs_come_back_in_order() {
    let env = Env::start().await;
    for i in 0..5 {
        env.push_raw(
            "q",
            format!(r#"{{"class":"Echo","args":[{{"message":"{i}"}}]}}"#).as_bytes(),
        )
        .await;
    }
    let dead = WorkerId::new("gone", 1, "q");
    env.store
        .register_worker(&dead, "2026-11-24 09:58:58 +0000", 200)
        .await
        .unwrap();
    let Fetched::Jobs(jobs) = env.store.fetch(&dead, &["q".into()], 3, true, "t").await.unwrap() else {
        panic!("paused?")
    };
    assert_eq!(jobs.len(), 3);
    assert_eq!(env.lrange("resque:queue:q").await.len(), 2);
    assert_eq!(
        redis::cmd("HLEN")
            .arg(format!("resque:resq:inflight:{dead}:q"))
            .query_async::<usize>(&mut env.conn())
            .await
            .unwrap(),
        3
    );

    // Alive: the reaper leaves it alone.
    let report = env.store.reap_dead_workers().await.unwrap();
    assert!(report.dead_workers.is_empty());

    // Its liveness lapses (200 ms TTL, never renewed).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = env.store.reap_dead_workers().await.unwrap();
    assert_eq!(report.dead_workers, [dead.to_string()]);
    assert_eq!(report.requeued, 3);
    let queue = env.lrange("resque:queue:q").await;
    let order: Vec<String> = queue
        .iter()
        .map(|p| {
            serde_json::from_str::<serde_json::Value>(p).unwrap()["args"][0]["message"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        order,
        ["0", "1", "2", "3", "4"],
        "recovered jobs go back to the head in order"
    );
    assert!(env.keys("resque:resq:*").await.is_empty());
    let workers: Vec<String> = redis::cmd("SMEMBERS")
        .arg("resque:workers")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert!(workers.is_empty(), "the dead worker is unregistered too");

    // A second reaper finds nothing to do.
    assert_eq!(env.store.reap_dead_workers().await.unwrap(), Default::default());
}

#[tokio::test]
async fn requeue_puts_jobs_back_at_the_head_once() {
    let env = Env::start().await;
    for i in 0..4 {
        env.push_raw(
            "q",
            format!(r#"{{"class":"Echo","args":[{{"message":"{i}"}}]}}"#).as_bytes(),
        )
        .await;
    }
    let w = WorkerId::new("w", 2, "q");
    env.store.register_worker(&w, "s", 10_000).await.unwrap();
    let Fetched::Jobs(jobs) = env.store.fetch(&w, &["q".into()], 2, true, "t").await.unwrap() else {
        panic!()
    };
    env.store.requeue(&w, &jobs).await.unwrap();
    env.store.requeue(&w, &jobs).await.unwrap(); // twice: no duplicate
    let queue = env.lrange("resque:queue:q").await;
    assert_eq!(queue.len(), 4);
    assert!(queue[0].contains("\"0\"") && queue[1].contains("\"1\""));
}

#[tokio::test]
async fn a_new_worker_recovers_a_dead_workers_jobs_and_runs_them() {
    let env = Env::start().await;
    for i in 0..20 {
        env.push_raw(
            "q",
            format!(r#"{{"class":"Echo","args":[{{"message":"{i}"}}]}}"#).as_bytes(),
        )
        .await;
    }
    let dead = WorkerId::new("gone", 3, "q");
    env.store.register_worker(&dead, "s", 100).await.unwrap();
    env.store.fetch(&dead, &["q".into()], 20, true, "t").await.unwrap();
    assert!(env.lrange("resque:queue:q").await.is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = env.burst("q", registry()).await;
    assert_eq!(report.recovered, 20);
    assert_eq!(
        report.failed, 20,
        "unsigned pushes are refused, but every one is accounted for"
    );
    assert_eq!(report.processed, 20);
    assert_eq!(env.get("resque:stat:processed").await.as_deref(), Some("20"));
}
