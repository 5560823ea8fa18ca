//! The chaos harness's short mode (`scripts/chaos --short`): each fault class
//! once, briefly, against the real `resq` binary on a private Redis. The
//! harness itself lives in bench/src/bin/chaos/ and is included here, so the
//! suite runs the very code `scripts/chaos` runs. Every test waits by bounded
//! polling and asserts counts: nothing lost, nothing refused that ran,
//! every duplicate explained (its earlier run was in a killed process or a
//! worker judged dead), no worker exiting by itself, every checked outcome held.

#[path = "../../../bench/src/bin/chaos/faults.rs"]
#[allow(dead_code)]
mod faults;
#[path = "../../../bench/src/bin/chaos/lab.rs"]
#[allow(dead_code)]
mod lab;
#[path = "../../../bench/src/bin/chaos/proxy.rs"]
#[allow(dead_code)]
mod proxy;

use faults::Plan;
use lab::{Rng, Tally};

fn plan() -> Plan {
    let seed = Rng::seed();
    println!("seed {seed}");
    Plan::short(env!("CARGO_BIN_EXE_resq").into(), seed)
}

/// Prints the tally, then holds it to the harness's rules.
fn assert_held(t: &Tally) {
    println!(
        "{}: enqueued {} succeeded {} lost {} run more than once {} (killed {}, judged dead {}) \
         started more than once {} refused {} failed [{}] stuck {}\n  {}",
        t.fault,
        t.enqueued,
        t.succeeded,
        t.lost,
        t.ran_twice,
        t.twice_killed,
        t.twice_judged_dead,
        t.started_twice,
        t.refused,
        t.failed_cell(),
        t.stuck,
        t.detail
    );
    for (check, held) in &t.checks {
        println!("  [{}] {check}", if *held { "ok" } else { "FAILED" });
    }
    for note in &t.notes {
        println!("  note: {note}");
    }
    assert!(t.enqueued > 0, "nothing was enqueued");
    assert_eq!(t.lost, 0, "lost jobs: {:?}", t.lost_ids);
    assert_eq!(t.refused_but_ran, 0, "jobs refused at enqueue ran");
    assert!(
        t.twice_unexplained.is_empty(),
        "unexplained duplicates: {:?}",
        t.twice_unexplained
    );
    assert_eq!(t.unexpected_exits, 0, "workers exited by themselves: {:?}", t.notes);
    assert_eq!(t.garbled, 0, "garbled evidence lines");
    assert!(
        t.checks.iter().all(|(_, held)| *held),
        "a check did not hold: {:?}",
        t.checks
    );
    assert!(t.ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_random_workers_loses_nothing_isolation_off_and_on() {
    let plan = plan();
    let off = faults::kill(&plan, false).await.unwrap();
    assert_held(&off);
    let on = faults::kill(&plan, true).await.unwrap();
    assert_held(&on);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_restarted_and_killed_with_aof_loses_nothing() {
    let t = faults::restart(&plan()).await.unwrap();
    assert_held(&t);
    assert_eq!(t.ran_twice, 0, "nothing explains a job running twice here");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_that_stalls_drops_and_resets_connections_loses_nothing() {
    let t = faults::proxy(&plan()).await.unwrap();
    assert_held(&t);
}

#[tokio::test(flavor = "multi_thread")]
async fn clock_skew_of_five_minutes_has_the_stated_effects_on_expiry_scheduling_and_cron() {
    if !faults::have_faketime() {
        // scripts/chaos installs it; the suite says so rather than fail.
        eprintln!("SKIPPED: Debian's faketime (libfaketime) is not installed: apt-get install faketime");
        return;
    }
    let t = faults::skew(&plan()).await.unwrap();
    assert_held(&t);
    assert_eq!(t.failed_by_reason.get("expired"), Some(&t.expired));
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_at_maxmemory_refuses_enqueues_typed_while_workers_keep_going() {
    let t = faults::maxmemory(&plan()).await.unwrap();
    assert_held(&t);
    assert!(t.refused > 0);
}
