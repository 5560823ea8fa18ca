//! The expiry sweeper removes jobs past their lifetime from every queue and
//! schedule, one worker per interval, and records them.

mod common;

use std::time::Duration;

use common::*;
use resq::store::Schedules;
use resq::{Control, Schedule, UnixMs, Worker};

#[tokio::test]
async fn the_sweeper_removes_expired_jobs_one_worker_at_a_time_and_records_them() {
    let env = Env::start().await;
    let client = env.client();
    let short = || resq::EnqueueOptions {
        ttl: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    for i in 0..3 {
        client
            .enqueue_with(
                &Echo {
                    message: format!("stale{i}"),
                },
                short(),
            )
            .await
            .unwrap();
    }
    client
        .enqueue(&Echo {
            message: "fresh".into(),
        })
        .await
        .unwrap();
    // A scheduled job that expired before it came due.
    let stale_scheduled = br#"{"class":"Echo","args":[{"message":"s"}],"queue":"default","expires_at":1000.0}"#;
    // Written as an attacker with Redis access would: past the policy.
    let _: () = redis::cmd("ZADD")
        .arg("resque:resq:schedule")
        .arg(now_ms() + 60_000)
        .arg(&stale_scheduled[..])
        .query_async(&mut env.conn())
        .await
        .unwrap();

    // The sweep is told the time: a second from now, the 1 ms jobs are
    // long expired and the week-long ones are not. No waiting.
    let turn = |owner| resq::store::SweepTurn {
        now: UnixMs(now_ms() + 1_000),
        owner,
        every: Duration::from_secs(60),
    };
    assert_eq!(env.store.sweep_expired(&turn("worker-a")).await.unwrap(), Some(4));
    // Another worker in the same interval does not sweep again; the one that
    // holds the lock may (nothing left: 0 removed).
    assert_eq!(env.store.sweep_expired(&turn("worker-b")).await.unwrap(), None);
    assert_eq!(env.store.sweep_expired(&turn("worker-a")).await.unwrap(), Some(0));
    let queue = env.lrange("resque:queue:default").await;
    assert_eq!(queue.len(), 1);
    assert!(queue[0].contains("fresh"));
    assert_eq!(env.store.schedule_len(Schedule::Scheduled).await.unwrap(), 0);
    let records = env.store.expired_range(0, 10).await.unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(env.store.expired_total().await.unwrap(), 4);
    assert_eq!(records[3].queue.as_deref(), Some("default"));
    assert!(String::from_utf8_lossy(&records[3].payload).contains("stale"));
    assert!(records[3].expired_at.is_some());
}

#[tokio::test]
async fn a_running_worker_sweeps_queues_it_does_not_work() {
    let env = Env::start().await;
    let options = resq::EnqueueOptions {
        queue: Some("elsewhere".into()),
        ttl: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    env.client()
        .enqueue_with(
            &Echo {
                message: "never".into(),
            },
            options,
        )
        .await
        .unwrap();
    let mut config = env.config("default");
    config.sweep_interval = Duration::from_millis(100);
    let (control, rx) = Control::new();
    let worker = tokio::spawn(Worker::new(env.dyn_store(), registry(), config).run(rx));
    eventually("one expired job swept", || async {
        env.store.expired_total().await.unwrap() == 1
    })
    .await;
    control.quit();
    worker.await.unwrap().unwrap();
    assert_eq!(env.store.expired_total().await.unwrap(), 1);
    assert!(env.lrange("resque:queue:elsewhere").await.is_empty());
    assert!(!ran("never"));
}

#[tokio::test]
async fn the_lock_holder_sweeps_a_burst_of_expired_jobs_in_rounds_within_its_interval() {
    let env = Env::start().await;
    let mut pipe = redis::pipe();
    pipe.sadd("resque:queues", "burst");
    for i in 0..2_500 {
        pipe.rpush(
            "resque:queue:burst",
            format!(r#"{{"class":"Echo","args":[{{"message":"{i}"}}],"expires_at":1}}"#),
        );
    }
    pipe.query_async::<()>(&mut env.conn()).await.unwrap();
    let turn = resq::store::SweepTurn {
        now: UnixMs::now(),
        owner: "worker-a",
        every: Duration::from_secs(60),
    };
    let mut rounds = Vec::new();
    for _ in 0..4 {
        rounds.push(env.store.sweep_expired(&turn).await.unwrap());
    }
    assert_eq!(rounds, [Some(1000), Some(1000), Some(500), Some(0)]);
    assert!(env.lrange("resque:queue:burst").await.is_empty());
}
