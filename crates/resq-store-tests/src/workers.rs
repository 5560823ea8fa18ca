//! Workers: registration, liveness, and the recovery of the dead. A worker
//! "dies" here by registering with a one-millisecond liveness and letting
//! it lapse.

use std::sync::Arc;
use std::time::Duration;

use resq::store::{ClaimOutcome, Finished, Outcome, ReapRules, Working};
use resq::Store;

use crate::support::*;

pub async fn a_worker_registers_pauses_and_unregisters(store: Arc<dyn Store>) {
    let w = worker("w", "q");
    let reg = registration(&w, Duration::from_secs(60));
    store.register_worker(&reg).await.unwrap();
    store.heartbeat(&w).await.unwrap();
    let listed = store.workers().await.unwrap();
    let me = listed.iter().find(|r| r.id == w.as_str()).expect("registered");
    assert!(me.resq && !me.paused && !me.busy);
    assert_eq!(me.started.map(|t| t.0 / 1000), Some(reg.started.0 / 1000));
    assert!(me.heartbeat.is_some());
    store.set_paused(&w, true).await.unwrap();
    assert!(store
        .workers()
        .await
        .unwrap()
        .iter()
        .any(|r| r.id == w.as_str() && r.paused));
    store.set_paused(&w, false).await.unwrap();
    assert!(store
        .workers()
        .await
        .unwrap()
        .iter()
        .any(|r| r.id == w.as_str() && !r.paused));
    store.unregister_worker(&w).await.unwrap();
    assert!(store.workers().await.unwrap().iter().all(|r| r.id != w.as_str()));
}

pub async fn a_dead_workers_jobs_come_back_in_order_with_claims_released(store: Arc<dyn Store>) {
    let p = policy();
    let jobs: Vec<_> = (0..5).map(|n| job(&p, "q", n)).collect();
    store.enqueue(&jobs).await.unwrap();
    let dead = worker("dead", "q");
    store
        .register_worker(&registration(&dead, Duration::from_secs(60)))
        .await
        .unwrap();
    let held = fetch(store.as_ref(), &dead, &["q"], 3).await;
    let claims: Vec<_> = held.iter().map(claim).collect();
    assert_eq!(store.claim(&dead, &claims).await.unwrap(), [ClaimOutcome::Claimed; 3]);
    register_and_die(store.as_ref(), &dead).await;
    let report = store.reap_dead_workers(ReapRules::after(Duration::ZERO)).await.unwrap();
    assert_eq!(report.dead_workers, [dead.as_str()]);
    assert_eq!(report.requeued, 3);
    assert!(store.workers().await.unwrap().iter().all(|r| r.id != dead.as_str()));
    // The three were in flight at a death: suspects, each run alone (one a
    // fetch, nothing else while it is held), then the rest as usual.
    let heir = worker("heir", "q");
    let mut all = Vec::new();
    for _ in 0..3 {
        let alone = fetch(store.as_ref(), &heir, &["q"], 10).await;
        assert_eq!(alone.len(), 1, "a suspect runs alone");
        assert!(
            fetch(store.as_ref(), &heir, &["q"], 10).await.is_empty(),
            "nothing beside it"
        );
        let claims: Vec<_> = alone.iter().map(claim).collect();
        assert_eq!(
            store.claim(&heir, &claims).await.unwrap(),
            [ClaimOutcome::Claimed],
            "a dead worker's claims are released: its jobs run (at least once)"
        );
        let done: Vec<Finished> = alone
            .iter()
            .map(|job| Finished {
                job: job.clone(),
                outcome: Outcome::Succeeded,
            })
            .collect();
        assert_eq!(store.finish(&heir, &done, &Working::Keep).await.unwrap().acked, 1);
        all.extend(alone);
    }
    all.extend(fetch(store.as_ref(), &heir, &["q"], 10).await);
    let expected: Vec<&[u8]> = jobs.iter().map(|j| j.payload()).collect();
    assert_eq!(payloads(&all), expected, "back at the head, in order");
    let again = store.reap_dead_workers(ReapRules::after(Duration::ZERO)).await.unwrap();
    assert!(again.dead_workers.is_empty() && again.requeued == 0);
}

pub async fn a_job_taken_back_is_never_acked_twice(store: Arc<dyn Store>) {
    let p = policy();
    store.enqueue(&[job(&p, "q", 0)]).await.unwrap();
    let slow = worker("slow", "q");
    store
        .register_worker(&registration(&slow, Duration::from_secs(60)))
        .await
        .unwrap();
    let held = fetch(store.as_ref(), &slow, &["q"], 1).await;
    register_and_die(store.as_ref(), &slow).await;
    assert_eq!(
        store
            .reap_dead_workers(ReapRules::after(Duration::ZERO))
            .await
            .unwrap()
            .requeued,
        1
    );
    // The slow worker was alive after all and finishes: nothing is counted.
    let report = store
        .finish(&slow, &[succeeded(&held[0])], &Working::Keep)
        .await
        .unwrap();
    assert_eq!((report.acked, report.taken.clone()), (0, vec![held[0].token.clone()]));
    assert_eq!(store.stats().await.unwrap().processed, 0);
    assert_eq!(
        queue_len(store.as_ref(), "q").await,
        1,
        "the job waits for whoever takes it"
    );
}

pub async fn no_one_is_judged_before_the_fleet_renewed_long_enough(store: Arc<dyn Store>) {
    let p = policy();
    store.enqueue(&[job(&p, "q", 0)]).await.unwrap();
    let quiet = worker("quiet", "q");
    store
        .register_worker(&registration(&quiet, Duration::from_secs(60)))
        .await
        .unwrap();
    fetch(store.as_ref(), &quiet, &["q"], 1).await;
    register_and_die(store.as_ref(), &quiet).await;
    let report = store
        .reap_dead_workers(ReapRules::after(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(
        report.deferred,
        [quiet.as_str()],
        "a lapse right after a gap proves nothing"
    );
    assert!(report.dead_workers.is_empty() && report.requeued == 0);
    assert_eq!(queue_len(store.as_ref(), "q").await, 0, "its job stays with it");
}

pub async fn keep_alive_tells_a_lapse_and_repairs_it(store: Arc<dyn Store>) {
    let w = worker("w", "q");
    register_and_die(store.as_ref(), &w).await;
    // (The reaper that registered meanwhile never reaps here.)
    let reg = registration(&w, Duration::from_secs(60));
    assert!(!store.keep_alive(&reg).await.unwrap(), "the mark had lapsed");
    assert!(store.keep_alive(&reg).await.unwrap());
    store.unregister_worker(&w).await.unwrap();
    assert!(store.workers().await.unwrap().iter().all(|r| r.id != w.as_str()));
    assert!(!store.keep_alive(&reg).await.unwrap());
    assert!(
        store.workers().await.unwrap().iter().any(|r| r.id == w.as_str()),
        "a worker removed by someone else registers again"
    );
}
