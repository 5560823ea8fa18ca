//! Jobs for later, retries, the expiry sweep and recurring ticks. "Now" is
//! a parameter of every call that depends on it: nothing here waits.

use std::sync::Arc;
use std::time::Duration;

use resq::store::{CronFired, Finished, Outcome, Schedule, SweepTurn, Working};
use resq::{SealOptions, Store, StoreError, UnixMs};

use crate::support::*;

pub async fn a_retry_outcome_waits_in_the_retry_schedule_until_due(store: Arc<dyn Store>) {
    let p = policy();
    store.enqueue(&[job(&p, "q", 0)]).await.unwrap();
    let w = worker("w", "q");
    let fetched = fetch(store.as_ref(), &w, &["q"], 1).await;
    let next = job(&p, "q", 1); // stands for the re-signed next attempt
    let due = UnixMs::now().plus(Duration::from_secs(3600));
    let done = [Finished {
        job: fetched[0].clone(),
        outcome: Outcome::Retry {
            next: next.clone(),
            due,
        },
    }];
    store.finish(&w, &done, &Working::Keep).await.unwrap();
    assert_eq!(store.failed_len().await.unwrap(), 0, "attempts are left: no record");
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.processed, stats.failed), (1, 1), "a failed attempt counts");
    assert_eq!(store.schedule_len(Schedule::Retry).await.unwrap(), 1);
    let waiting = store.schedule_range(Schedule::Retry, 0, 10).await.unwrap();
    assert_eq!((waiting[0].due, waiting[0].payload.as_slice()), (due, next.payload()));
    let early = store
        .promote_due(due.minus(Duration::from_millis(1)), 100)
        .await
        .unwrap();
    assert_eq!(early.moved, 0);
    assert_eq!(store.promote_due(due, 100).await.unwrap().moved, 1);
    assert_eq!(payloads(&fetch(store.as_ref(), &w, &["q"], 10).await), [next.payload()]);
}

pub async fn scheduled_jobs_move_once_when_due_whoever_promotes(store: Arc<dyn Store>) {
    let p = policy();
    let at = UnixMs::now().plus(Duration::from_secs(60));
    for n in 0..200 {
        store.schedule(&job(&p, "later", n), at).await.unwrap();
    }
    assert_eq!(store.schedule_len(Schedule::Scheduled).await.unwrap(), 200);
    assert_eq!(store.promote_due(UnixMs::now(), 1000).await.unwrap().moved, 0);
    let promoters = (0..4).map(|_| {
        let store = Arc::clone(&store);
        async move {
            let mut moved = 0;
            loop {
                let n = store.promote_due(at, 7).await.unwrap().moved;
                if n == 0 {
                    return moved;
                }
                moved += n;
            }
        }
    });
    let moved: u64 = futures::future::join_all(promoters).await.into_iter().sum();
    assert_eq!(moved, 200, "each due job moved once");
    assert_eq!(queue_len(store.as_ref(), "later").await, 200);
    assert_eq!(store.schedule_len(Schedule::Scheduled).await.unwrap(), 0);
}

pub async fn a_due_job_for_a_full_queue_waits_without_blocking_others(store: Arc<dyn Store>) {
    let p = policy();
    store.enqueue(&[job(&p, "full", 0)]).await.unwrap();
    store.set_queue_cap("full", Some(2)).await.unwrap();
    let now = UnixMs::now();
    for n in 1..=3 {
        store.schedule(&job(&p, "full", n), now).await.unwrap();
    }
    store
        .schedule(&job(&p, "free", 9), now.plus(Duration::from_millis(1)))
        .await
        .unwrap();
    let later = now.plus(Duration::from_secs(1));
    let turn = store.promote_due(later, 100).await.unwrap();
    assert_eq!((turn.moved, turn.held), (2, 2), "one fits in full, and free's job");
    assert_eq!(queue_len(store.as_ref(), "full").await, 2);
    assert_eq!(queue_len(store.as_ref(), "free").await, 1);
    assert_eq!(store.schedule_len(Schedule::Scheduled).await.unwrap(), 2);
    // Room again: the held jobs move.
    let w = worker("w", "full");
    let taken = fetch(store.as_ref(), &w, &["full"], 2).await;
    let done: Vec<_> = taken.iter().map(succeeded).collect();
    store.finish(&w, &done, &Working::Keep).await.unwrap();
    let turn = store.promote_due(later, 100).await.unwrap();
    assert_eq!((turn.moved, turn.held), (2, 0));
}

pub async fn a_waiting_job_can_be_removed_or_run_now(store: Arc<dyn Store>) {
    let p = policy();
    let at = UnixMs::now().plus(Duration::from_secs(3600));
    let (a, b) = (job(&p, "q", 0), job(&p, "q", 1));
    store.schedule(&a, at).await.unwrap();
    store.schedule(&b, at.plus(Duration::from_secs(1))).await.unwrap();
    let waiting = store.schedule_range(Schedule::Scheduled, 0, 10).await.unwrap();
    assert_eq!(waiting.len(), 2);
    assert_eq!(
        (waiting[0].payload.as_slice(), waiting[0].due),
        (a.payload(), at),
        "soonest first"
    );
    assert!(store.schedule_remove(Schedule::Scheduled, &waiting[0]).await.unwrap());
    assert!(!store.schedule_remove(Schedule::Scheduled, &waiting[0]).await.unwrap());
    store.set_queue_cap("q", Some(0)).await.unwrap();
    assert!(matches!(
        store.schedule_run_now(Schedule::Scheduled, &waiting[1], "q").await,
        Err(StoreError::QueueFull { cap: 0, .. })
    ));
    assert_eq!(
        store.schedule_len(Schedule::Scheduled).await.unwrap(),
        1,
        "a full queue leaves it"
    );
    store.set_queue_cap("q", None).await.unwrap();
    assert!(store
        .schedule_run_now(Schedule::Scheduled, &waiting[1], "q")
        .await
        .unwrap());
    assert!(!store
        .schedule_run_now(Schedule::Scheduled, &waiting[1], "q")
        .await
        .unwrap());
    assert_eq!(store.schedule_len(Schedule::Scheduled).await.unwrap(), 0);
    assert_eq!(queue_len(store.as_ref(), "q").await, 1);
}

pub async fn the_sweep_removes_expired_jobs_once_per_turn_and_records_them(store: Arc<dyn Store>) {
    let p = policy();
    let short = SealOptions {
        ttl: Some(Duration::from_millis(1)),
        ..SealOptions::default()
    };
    let doomed = job_with(&p, "q", 0, short.clone());
    store.enqueue(&[doomed.clone(), job(&p, "q", 1)]).await.unwrap();
    store
        .schedule(
            &job_with(&p, "q", 2, short),
            UnixMs::now().plus(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let later = UnixMs::now().plus(Duration::from_secs(1));
    let turn = |owner| SweepTurn {
        now: later,
        owner,
        every: Duration::from_secs(60),
    };
    assert_eq!(store.sweep_expired(&turn("a")).await.unwrap(), Some(2));
    assert_eq!(
        store.sweep_expired(&turn("b")).await.unwrap(),
        None,
        "one sweep per turn"
    );
    assert_eq!(queue_len(store.as_ref(), "q").await, 1);
    assert_eq!(store.schedule_len(Schedule::Scheduled).await.unwrap(), 0);
    assert_eq!(store.expired_total().await.unwrap(), 2);
    let records = store.expired_range(0, 10).await.unwrap();
    assert_eq!(records.len(), 2);
    let from_queue = records
        .iter()
        .find(|r| r.payload == doomed.payload())
        .expect("the queued job's record");
    assert_eq!(from_queue.queue.as_deref(), Some("q"));
    assert!(from_queue.expired_at.is_some());
    assert!(store.expired_remove(from_queue).await.unwrap());
    assert!(!store.expired_remove(from_queue).await.unwrap());
    assert_eq!(store.expired_range(0, 10).await.unwrap().len(), 1);
    assert_eq!(store.expired_total().await.unwrap(), 2, "the count is of all time");
}

pub async fn each_recurring_tick_fires_once(store: Arc<dyn Store>) {
    let p = policy();
    let tick = UnixMs(1_795_514_340_000);
    let next = tick.plus(Duration::from_secs(60));
    assert!(store
        .cron_first_sight("nightly", tick.minus(Duration::from_secs(60)))
        .await
        .unwrap());
    assert!(!store.cron_first_sight("nightly", tick).await.unwrap(), "once");
    assert_eq!(
        store.fire_cron("nightly", tick, &job(&p, "cron", 0)).await.unwrap(),
        CronFired::Fired {
            previous: Some(tick.minus(Duration::from_secs(60)))
        }
    );
    assert_eq!(
        store.fire_cron("nightly", tick, &job(&p, "cron", 1)).await.unwrap(),
        CronFired::AlreadyFired { last: tick }
    );
    assert_eq!(
        store
            .fire_cron("nightly", tick.minus(Duration::from_secs(60)), &job(&p, "cron", 2))
            .await
            .unwrap(),
        CronFired::AlreadyFired { last: tick },
        "an earlier tick never fires after a later one"
    );
    assert_eq!(
        store.fire_cron("fresh", tick, &job(&p, "cron", 3)).await.unwrap(),
        CronFired::Fired { previous: None }
    );
    assert_eq!(queue_len(store.as_ref(), "cron").await, 2);
    store.set_queue_cap("cron", Some(2)).await.unwrap();
    assert!(matches!(
        store.fire_cron("nightly", next, &job(&p, "cron", 4)).await,
        Err(StoreError::QueueFull { .. })
    ));
    let mut last = store.cron_last_fired().await.unwrap();
    last.sort();
    assert_eq!(
        last,
        [("fresh".to_string(), tick), ("nightly".to_string(), next)],
        "a full queue spends the tick"
    );
}
