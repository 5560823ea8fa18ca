//! The clock parameter: a producer and a worker on a clock moved back by a
//! job's lifetime live through that lifetime without waiting for it. The
//! job's times are counted from their clock, so a worker on the real clock
//! finds it expired; the replay mark is kept until the job's expiry plus the
//! worker's mark margin, which lands at the real now: Redis drops it then.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use resq::clock::Clock;
use resq::{Client, Control, Policy, UnixMs, Worker};

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

#[tokio::test]
async fn jobs_sealed_and_run_a_week_ago_expire_now_and_their_marks_with_them() {
    let env = Env::start().await;
    let clock = Clock::system().moved_back(WEEK);
    let policy = Policy::new(Arc::clone(&env.keyring)).unwrap().with_clock(clock);
    let client = Client::with_policy(env.dyn_store(), policy);
    for message in ["then-1", "then-2"] {
        client
            .enqueue(&Echo {
                message: message.into(),
            })
            .await
            .unwrap();
    }
    // The envelope says it was enqueued a week ago and expires about now.
    let queued = env.lrange("resque:queue:default").await;
    // The later of the two: the bitmap lives until the last of its marks
    // may be needed (two enqueues a few ms apart on a busy machine).
    let expires_at = queued
        .iter()
        .map(|q| {
            let envelope: serde_json::Value = serde_json::from_str(q).unwrap();
            UnixMs::from_secs_f64(envelope["expires_at"].as_f64().unwrap())
        })
        .max()
        .unwrap();
    let real = UnixMs::now();
    assert!(
        expires_at <= real && expires_at > real.minus(Duration::from_secs(60)),
        "{expires_at} vs {real}"
    );

    // A worker on the same clock runs them, and keeps their marks for the
    // margin past their expiry: a real instant a few seconds from now.
    let mut config = env.config("default");
    config.burst = true;
    config.clock = clock;
    config.mark_margin = Duration::from_secs(3);
    config.check().unwrap();
    let (_control, rx) = Control::new();
    let report = Worker::new(env.dyn_store(), registry(), config).run(rx).await.unwrap();
    assert_eq!((report.processed, report.failed), (2, 0));
    assert!(ran("then-1") && ran("then-2"));
    let marks = env.keys("resque:resq:marks:*").await;
    assert_eq!(marks.len(), 1, "one producer, one block");
    let until: i64 = redis::cmd("PEXPIRETIME")
        .arg(&marks[0])
        .query_async(&mut env.conn())
        .await
        .unwrap();
    let until = UnixMs(until as u64);
    let want = expires_at.plus(Duration::from_secs(3));
    assert!(
        until.0.abs_diff(want.0) <= 1,
        "expiry + margin, by the moved clock (to the ms the float allows): {until} vs {want} ({} vs {})",
        until.0,
        want.0
    );
    eventually("Redis drops the marks once the margin is over", || async {
        env.keys("resque:resq:marks:*").await.is_empty()
    })
    .await;

    // The same kind of job, read by a worker on the real clock: expired.
    client
        .enqueue(&Echo {
            message: "then-3".into(),
        })
        .await
        .unwrap();
    let report = env.burst("default", registry()).await;
    assert_eq!(report.failed_by_reason.get("expired"), Some(&1));
    assert!(!ran("then-3"));
}

#[test]
fn a_moved_clock_keeps_its_offset() {
    let back = Clock::system().moved_back(WEEK);
    let forth = back.moved_forward(WEEK);
    let real = UnixMs::now();
    assert!(back.now() <= real.minus(WEEK).plus(Duration::from_secs(1)));
    assert!(forth.now().since(real) < Duration::from_secs(1) && real.since(forth.now()) < Duration::from_secs(1));
    assert_eq!(Clock::default(), Clock::system());
}
