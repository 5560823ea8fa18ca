//! The failed list: records written by an ack, found by id, retried once,
//! removed.

use std::sync::Arc;

use resq::store::{ClaimOutcome, Finished, KeepPayload, NewFailure, Outcome, Working};
use resq::{FailureInfo, Reason, Store, StoreError, UnixMs};

use crate::support::*;

/// Fetches one job from `queue` and acks it as failed (`job_failed`).
async fn fail_one(store: &dyn Store, queue: &str, at: UnixMs) -> resq::store::FetchedJob {
    let w = worker("w", queue);
    let fetched = fetch(store, &w, &[queue], 1).await;
    let job = fetched.into_iter().next().expect("a job to fail");
    let outcome = Outcome::Failed(NewFailure {
        info: FailureInfo {
            reason: Reason::JobFailed,
            exception: "IoError".into(),
            message: "disk full".into(),
        },
        keep: KeepPayload::Whole,
        at,
    });
    let done = [Finished {
        job: job.clone(),
        outcome,
    }];
    let report = store.finish(&w, &done, &Working::Keep).await.unwrap();
    assert_eq!(report.acked, 1);
    job
}

pub async fn a_failed_outcome_is_recorded_and_found_by_its_id(store: Arc<dyn Store>) {
    let p = policy();
    let j = job(&p, "q", 0);
    store.enqueue(std::slice::from_ref(&j)).await.unwrap();
    let at = UnixMs(1_795_514_338_000);
    fail_one(store.as_ref(), "q", at).await;
    assert_eq!(store.failed_len().await.unwrap(), 1);
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.processed, stats.failed),
        (1, 1),
        "a failure counts as processed too"
    );
    let records = store.failed_range(0, 10).await.unwrap();
    let r = &records[0];
    assert!(r.readable);
    assert_eq!(r.queue.as_deref(), Some("q"));
    assert_eq!(r.class.as_deref(), Some("Echo"));
    assert_eq!(r.reason.as_deref(), Some("job_failed"));
    assert_eq!(r.exception.as_deref(), Some("IoError"));
    assert_eq!(r.error.as_deref(), Some("disk full"));
    assert_eq!(r.worker.as_deref(), Some(worker("w", "q").as_str()));
    assert_eq!(r.failed_at, Some(at));
    assert_eq!(r.payload.as_deref(), Some(j.payload()), "kept byte for byte");
    let id = r.id.clone().expect("an id");
    assert_eq!(store.failed_get(&id).await.unwrap().as_ref(), Some(r));
    assert_eq!(store.failed_get("no-such-id").await.unwrap(), None);
    assert!(store.failed_range(1, 10).await.unwrap().is_empty());
}

pub async fn a_retried_failure_runs_once_more_with_its_mark_released(store: Arc<dyn Store>) {
    let p = policy();
    let j = job(&p, "q", 0);
    store.enqueue(std::slice::from_ref(&j)).await.unwrap();
    let w = worker("w", "q");
    // The attempt is claimed, then fails: its mark is spent.
    let fetched = fetch(store.as_ref(), &w, &["q"], 1).await;
    assert_eq!(
        store.claim(&w, &[claim(&fetched[0])]).await.unwrap(),
        [ClaimOutcome::Claimed]
    );
    store.requeue(&w, &[]).await.unwrap();
    let done = [Finished {
        job: fetched[0].clone(),
        outcome: Outcome::Failed(NewFailure {
            info: FailureInfo::of(Reason::JobFailed, "no"),
            keep: KeepPayload::Whole,
            at: UnixMs::now(),
        }),
    }];
    store.finish(&w, &done, &Working::Keep).await.unwrap();
    let record = store.failed_range(0, 1).await.unwrap().remove(0);
    let mark = claim(&fetched[0]).mark;
    assert!(store.failed_requeue(&record, "q", Some(&mark)).await.unwrap());
    assert!(
        !store.failed_requeue(&record, "q", Some(&mark)).await.unwrap(),
        "two operators retrying at once enqueue it once"
    );
    assert_eq!(store.failed_len().await.unwrap(), 0);
    assert_eq!(store.failed_get(record.id.as_deref().unwrap()).await.unwrap(), None);
    let again = fetch(store.as_ref(), &w, &["q"], 10).await;
    assert_eq!(payloads(&again), [j.payload()]);
    assert_eq!(
        store.claim(&w, &[claim(&again[0])]).await.unwrap(),
        [ClaimOutcome::Claimed],
        "the operator's retry runs the spent attempt once more"
    );
}

pub async fn a_failure_retry_respects_the_queue_cap(store: Arc<dyn Store>) {
    let p = policy();
    store.enqueue(&[job(&p, "q", 0), job(&p, "q", 1)]).await.unwrap();
    fail_one(store.as_ref(), "q", UnixMs::now()).await;
    store.set_queue_cap("q", Some(1)).await.unwrap();
    let record = store.failed_range(0, 1).await.unwrap().remove(0);
    assert!(matches!(
        store.failed_requeue(&record, "q", None).await,
        Err(StoreError::QueueFull { cap: 1, length: 1, .. })
    ));
    assert_eq!(store.failed_len().await.unwrap(), 1, "a full queue keeps the record");
    store.set_queue_cap("q", None).await.unwrap();
    assert!(store.failed_requeue(&record, "q", None).await.unwrap());
    assert_eq!(queue_len(store.as_ref(), "q").await, 2);
}

pub async fn failures_are_removed_one_by_one_or_all_at_once(store: Arc<dyn Store>) {
    let p = policy();
    let jobs: Vec<_> = (0..3).map(|n| job(&p, "q", n)).collect();
    store.enqueue(&jobs).await.unwrap();
    for _ in 0..3 {
        fail_one(store.as_ref(), "q", UnixMs::now()).await;
    }
    let records = store.failed_range(0, 10).await.unwrap();
    assert_eq!(records.len(), 3);
    assert!(store.failed_remove(&records[1]).await.unwrap());
    assert!(!store.failed_remove(&records[1]).await.unwrap(), "already gone");
    assert_eq!(store.failed_get(records[1].id.as_deref().unwrap()).await.unwrap(), None);
    let left = store.failed_range(0, 10).await.unwrap();
    assert_eq!(left, [records[0].clone(), records[2].clone()], "oldest first");
    assert_eq!(store.failed_clear().await.unwrap(), 2);
    assert_eq!(store.failed_len().await.unwrap(), 0);
    assert_eq!(store.failed_get(records[0].id.as_deref().unwrap()).await.unwrap(), None);
}
