//! Recurring jobs: each tick fires once across workers, through the policy.

mod common;

use std::sync::Arc;

use common::*;
use resq::UnixMs;
use serde_json::Value;

use resq::cron::{CronEntry, CronScheduler, TickOutcome};
use resq::Policy;

/// 2026-11-24 00:00:00 UTC.
const DAY: u64 = 1_795_478_400_000;
const MIN: u64 = 60_000;

fn scheduler(env: &Env, entry: CronEntry) -> CronScheduler {
    let policy = Policy::new(Arc::clone(&env.keyring)).unwrap().with_registry(registry());
    CronScheduler::new(vec![entry], policy, env.dyn_store()).unwrap()
}

fn every_minute() -> CronEntry {
    CronEntry::new(
        "ping",
        "* * * * *",
        "Echo",
        vec![serde_json::json!({"message": "tick"})],
    )
    .unwrap()
}

/// The `unique` mark of each job waiting in `queue`: "cron:<name>:<tick>".
async fn ticks_queued(env: &Env, queue: &str) -> Vec<String> {
    env.lrange(&format!("resque:queue:{queue}"))
        .await
        .iter()
        .map(|p| {
            let v: Value = serde_json::from_str(p).unwrap();
            v["unique"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn three_workers_fire_each_tick_once() {
    let env = Env::start().await;
    let workers: Vec<CronScheduler> = (0..3).map(|_| scheduler(&env, every_minute())).collect();
    let mut fired = Vec::new();
    // Three minutes, each looked at by the three workers at once, a few
    // times within the minute.
    for minute in 1..=3u64 {
        for offset_ms in [0, 150, 20_000] {
            let now = DAY + minute * MIN + offset_ms;
            let looks = futures::future::join_all(workers.iter().map(|w| w.fire_due(UnixMs(now)))).await;
            for (_, outcome) in looks.into_iter().flatten() {
                if let Ok(TickOutcome::Fired { tick, .. }) = outcome {
                    fired.push(tick);
                }
            }
        }
    }
    assert_eq!(fired.len(), 3, "one job per tick: {fired:?}");
    let ticks: Vec<String> = (1..=3).map(|m| format!("cron:ping:{}", DAY + m * MIN)).collect();
    let mut queued = ticks_queued(&env, "default").await;
    queued.sort();
    assert_eq!(queued, ticks);
    // The jobs are signed and valid: a worker runs all three.
    let report = env.burst("default", registry()).await;
    assert_eq!((report.processed, report.failed), (3, 0));
}

#[tokio::test]
async fn missed_ticks_fire_the_latest_once_within_the_grace() {
    let env = Env::start().await;
    let first = scheduler(&env, every_minute());
    let fired = first.fire_due(UnixMs(DAY + 10 * MIN)).await;
    assert!(matches!(fired[0].1, Ok(TickOutcome::Fired { missed: 0, .. })));
    // Every worker down for minutes 11..=14; one comes back at 15:30.
    let back = scheduler(&env, every_minute());
    let fired = back.fire_due(UnixMs(DAY + 15 * MIN + 30_000)).await;
    assert!(
        matches!(&fired[0].1, Ok(TickOutcome::Fired { tick, missed: 4, .. }) if *tick == UnixMs(DAY + 15 * MIN)),
        "{fired:?}"
    );
    assert_eq!(ticks_queued(&env, "default").await.len(), 2, "no burst of missed jobs");
    // A long outage: still only the latest tick, once.
    let late = scheduler(&env, every_minute());
    let fired = late.fire_due(UnixMs(DAY + 40 * MIN + 30_000)).await;
    assert!(
        matches!(fired[0].1, Ok(TickOutcome::Fired { missed: 24, .. })),
        "{fired:?}"
    );
    // A tick older than the grace (a daily entry deployed at noon) is skipped.
    let daily = CronEntry::new("daily", "0 3 * * *", "Echo", vec![serde_json::json!({"message": "d"})]).unwrap();
    let fired = scheduler(&env, daily).fire_due(UnixMs(DAY + 12 * 60 * MIN)).await;
    assert!(matches!(fired[0].1, Ok(TickOutcome::TooLate { .. })), "{fired:?}");
    assert_eq!(ticks_queued(&env, "default").await.len(), 3);
}

/// The README's promise: a tick earlier than an entry's first sight is
/// never fired. A daily 03:00 entry deployed at 03:04 (inside its 5-minute
/// grace) waits for the next day's 03:00.
#[tokio::test]
async fn a_new_entry_fires_no_tick_from_before_it_was_deployed() {
    let env = Env::start().await;
    let daily = || {
        CronEntry::new(
            "nightly",
            "0 3 * * *",
            "Echo",
            vec![serde_json::json!({"message": "n"})],
        )
        .unwrap()
    };
    let three = DAY + 3 * 60 * MIN;
    let nothing_fired = |fired: &[(String, Result<TickOutcome, resq::cron::CronFireError>)]| {
        fired
            .iter()
            .all(|(_, o)| matches!(o, Ok(TickOutcome::AlreadyFired { .. })))
    };
    let fired = scheduler(&env, daily()).fire_due(UnixMs(three + 4 * MIN)).await;
    assert!(nothing_fired(&fired), "{fired:?}");
    // Another worker, started later the same morning: nothing either.
    let fired = scheduler(&env, daily())
        .fire_due(UnixMs(three + 4 * MIN + 30_000))
        .await;
    assert!(nothing_fired(&fired), "{fired:?}");
    assert!(ticks_queued(&env, "default").await.is_empty());
    let next = three + 24 * 60 * MIN;
    let fired = scheduler(&env, daily()).fire_due(UnixMs(next + 500)).await;
    assert!(
        matches!(&fired[0].1, Ok(TickOutcome::Fired { tick, missed: 0, .. }) if *tick == UnixMs(next)),
        "{fired:?}"
    );
    assert_eq!(ticks_queued(&env, "default").await, [format!("cron:nightly:{next}")]);
}

#[tokio::test]
async fn a_full_queue_spends_the_tick_and_says_so() {
    let env = Env::start().await;
    env.dyn_store().set_queue_cap("default", Some(0)).await.unwrap();
    let fired = scheduler(&env, every_minute()).fire_due(UnixMs(DAY + MIN)).await;
    assert!(matches!(&fired[0].1, Ok(TickOutcome::QueueFull { queue, .. }) if queue == "default"));
    // Another worker does not push it either.
    let again = scheduler(&env, every_minute()).fire_due(UnixMs(DAY + MIN + 1)).await;
    assert!(matches!(again[0].1, Ok(TickOutcome::AlreadyFired { .. })), "{again:?}");
    assert!(env.lrange("resque:queue:default").await.is_empty());
}

#[tokio::test]
async fn entries_that_could_never_run_are_refused_at_start() {
    let env = Env::start().await;
    let policy = || Policy::new(Arc::clone(&env.keyring)).unwrap().with_registry(registry());
    let unknown = CronEntry::new("x", "@daily", "Kernel", vec![]).unwrap();
    let bad_args = CronEntry::new("y", "@daily", "Echo", vec![serde_json::json!({"nope": 1})]).unwrap();
    for entry in [unknown, bad_args] {
        let err = CronScheduler::new(vec![entry], policy(), env.dyn_store())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("unregistered_class") || err.contains("invalid_args"),
            "{err}"
        );
    }
}
