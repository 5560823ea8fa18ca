//! Queues: enqueue, caps, uniqueness, reliable fetch, claims, pauses.

use std::sync::Arc;
use std::time::Duration;

use resq::store::{ClaimOutcome, UniqueKey, Uniqueness, Working, WorkingRecord};
use resq::{Store, StoreError, UnixMs};

use crate::support::*;

pub async fn enqueue_keeps_order_per_queue_and_lists_the_queues(store: Arc<dyn Store>) {
    let p = policy();
    let jobs = vec![job(&p, "q1", 1), job(&p, "q2", 2), job(&p, "q1", 3), job(&p, "q1", 4)];
    store.enqueue(&jobs).await.unwrap();
    store.enqueue(&[]).await.unwrap();
    let mut queues = store.queues().await.unwrap();
    queues.sort();
    assert_eq!(queues, ["q1", "q2"]);
    assert_eq!(
        store.queue_sizes().await.unwrap(),
        [("q1".to_string(), 3), ("q2".to_string(), 1)]
    );
    let w = worker("w", "q1,q2");
    let fetched = fetch(store.as_ref(), &w, &["q1", "q2"], 10).await;
    let expected: Vec<&[u8]> = [0, 2, 3, 1].iter().map(|&i| jobs[i].payload()).collect();
    assert_eq!(payloads(&fetched), expected, "q1 in order, then q2");
    assert_eq!(fetched[3].queue, "q2");
}

pub async fn a_capped_queue_refuses_what_would_overflow_it(store: Arc<dyn Store>) {
    let p = policy();
    store.set_queue_cap("capped", Some(2)).await.unwrap();
    assert_eq!(store.queue_caps().await.unwrap(), [("capped".to_string(), 2)]);
    let three: Vec<_> = (0..3).map(|n| job(&p, "capped", n)).collect();
    match store.enqueue(&three).await {
        Err(StoreError::QueueFull {
            queue,
            cap: 2,
            length: 0,
        }) => assert_eq!(queue, "capped"),
        other => panic!("three jobs in a queue capped at 2: {other:?}"),
    }
    assert_eq!(queue_len(store.as_ref(), "capped").await, 0, "all or nothing");
    store.enqueue(&three[..2]).await.unwrap();
    assert!(matches!(
        store.enqueue(&three[2..]).await,
        Err(StoreError::QueueFull { length: 2, .. })
    ));
    let unique = UniqueKey {
        class: "Echo",
        key: "k",
        job_id: three[2].id(),
        window: Duration::from_secs(60),
    };
    assert!(matches!(
        store.enqueue_unique(&three[2], &unique).await,
        Err(StoreError::QueueFull { .. })
    ));
    assert_eq!(
        store.enqueue_unique(&job(&p, "open", 9), &unique).await.unwrap(),
        Uniqueness::Enqueued,
        "a unique job refused by a full queue does not hold its key"
    );
    store.set_queue_cap("capped", None).await.unwrap();
    assert!(store.queue_caps().await.unwrap().is_empty());
    store.enqueue(&three[2..]).await.unwrap();
    assert_eq!(queue_len(store.as_ref(), "capped").await, 3);
}

pub async fn a_unique_key_stores_one_job_whatever_the_races(store: Arc<dyn Store>) {
    let p = policy();
    let first = job(&p, "u", 0);
    fn key(id: &str) -> UniqueKey<'_> {
        UniqueKey {
            class: "Echo",
            key: "user-7",
            job_id: id,
            window: Duration::from_secs(60),
        }
    }
    assert_eq!(
        store.enqueue_unique(&first, &key(first.id())).await.unwrap(),
        Uniqueness::Enqueued
    );
    let second = job(&p, "u", 1);
    assert_eq!(
        store.enqueue_unique(&second, &key(second.id())).await.unwrap(),
        Uniqueness::Duplicate(first.id().to_string())
    );
    let other = UniqueKey {
        key: "user-8",
        ..key(second.id())
    };
    assert_eq!(
        store.enqueue_unique(&second, &other).await.unwrap(),
        Uniqueness::Enqueued
    );
    let racers: Vec<_> = (0..16).map(|n| job(&p, "race", n)).collect();
    let results = futures::future::join_all(racers.iter().map(|j| {
        let store = Arc::clone(&store);
        async move {
            let key = UniqueKey {
                class: "Echo",
                key: "race",
                job_id: j.id(),
                window: Duration::from_secs(60),
            };
            store.enqueue_unique(j, &key).await.unwrap()
        }
    }))
    .await;
    let stored = results.iter().filter(|r| **r == Uniqueness::Enqueued).count();
    assert_eq!(stored, 1, "{results:?}");
    assert_eq!(queue_len(store.as_ref(), "race").await, 1);
}

pub async fn fetched_jobs_wait_in_flight_until_acked(store: Arc<dyn Store>) {
    let p = policy();
    let jobs: Vec<_> = (0..3).map(|n| job(&p, "q", n)).collect();
    store.enqueue(&jobs).await.unwrap();
    let w = worker("w", "q");
    let fetched = fetch(store.as_ref(), &w, &["q"], 2).await;
    assert_eq!(payloads(&fetched), [jobs[0].payload(), jobs[1].payload()]);
    assert_ne!(fetched[0].token, fetched[1].token);
    assert_eq!(queue_len(store.as_ref(), "q").await, 1, "fetched jobs left the queue");
    let done: Vec<_> = fetched.iter().map(succeeded).collect();
    let report = store.finish(&w, &done, &Working::Keep).await.unwrap();
    assert_eq!((report.acked, report.taken.len()), (2, 0));
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.processed, stats.failed), (2, 0));
    let again = store.finish(&w, &done, &Working::Keep).await.unwrap();
    assert_eq!(again.acked, 0, "an ack counts once");
    assert_eq!(store.stats().await.unwrap().processed, 2);
    assert_eq!(
        payloads(&fetch(store.as_ref(), &w, &["q"], 5).await),
        [jobs[2].payload()]
    );
}

pub async fn requeue_puts_jobs_back_at_the_head_in_order(store: Arc<dyn Store>) {
    let p = policy();
    let jobs: Vec<_> = (0..3).map(|n| job(&p, "q", n)).collect();
    store.enqueue(&jobs).await.unwrap();
    let w = worker("w", "q");
    let fetched = fetch(store.as_ref(), &w, &["q"], 2).await;
    store.requeue(&w, &fetched).await.unwrap();
    store.requeue(&w, &fetched).await.unwrap(); // already back: skipped
    let all = fetch(store.as_ref(), &w, &["q"], 10).await;
    let expected: Vec<&[u8]> = jobs.iter().map(|j| j.payload()).collect();
    assert_eq!(payloads(&all), expected);
}

pub async fn one_copy_claims_an_attempt_and_a_requeue_releases_it(store: Arc<dyn Store>) {
    let p = policy();
    let one = job(&p, "q", 0);
    let other = job(&p, "q", 1);
    store.enqueue(&[one.clone(), one.clone(), other]).await.unwrap();
    let w = worker("w", "q");
    let fetched = fetch(store.as_ref(), &w, &["q"], 3).await;
    let claims: Vec<_> = fetched.iter().map(claim).collect();
    assert_eq!(
        store.claim(&w, &claims).await.unwrap(),
        [ClaimOutcome::Claimed, ClaimOutcome::Replayed, ClaimOutcome::Claimed]
    );
    // Its attempt was never run: a requeue gives it back, to be claimed anew.
    store.requeue(&w, &fetched[..1]).await.unwrap();
    let back = fetch(store.as_ref(), &w, &["q"], 1).await;
    assert_eq!(back[0].payload, one.payload());
    assert_eq!(
        store.claim(&w, &[claim(&back[0])]).await.unwrap(),
        [ClaimOutcome::Claimed]
    );
    // An acked attempt stays spent.
    store.finish(&w, &[succeeded(&back[0])], &Working::Keep).await.unwrap();
    store.enqueue(std::slice::from_ref(&one)).await.unwrap();
    let copy = fetch(store.as_ref(), &w, &["q"], 1).await;
    assert_eq!(
        store.claim(&w, &[claim(&copy[0])]).await.unwrap(),
        [ClaimOutcome::Replayed]
    );
    // A copy no longer in this worker's hands cannot be claimed.
    store.requeue(&w, &copy).await.unwrap();
    assert_eq!(store.claim(&w, &[claim(&copy[0])]).await.unwrap(), [ClaimOutcome::Gone]);
}

pub async fn a_paused_queue_gives_no_jobs_until_resumed(store: Arc<dyn Store>) {
    let p = policy();
    store.enqueue(&[job(&p, "held", 0), job(&p, "open", 1)]).await.unwrap();
    store.set_queue_paused("held", true).await.unwrap();
    assert_eq!(store.paused_queues().await.unwrap(), ["held"]);
    assert!(!store.paused_all().await.unwrap());
    let w = worker("w", "held,open");
    let fetched = fetch(store.as_ref(), &w, &["held", "open"], 10).await;
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].queue, "open");
    store.set_queue_paused("held", false).await.unwrap();
    assert!(store.paused_queues().await.unwrap().is_empty());
    assert_eq!(fetch(store.as_ref(), &w, &["held", "open"], 10).await.len(), 1);
}

pub async fn the_working_record_shows_the_job_that_runs(store: Arc<dyn Store>) {
    let p = policy();
    let w = worker("w", "q");
    store
        .register_worker(&registration(&w, Duration::from_secs(60)))
        .await
        .unwrap();
    let j = job(&p, "q", 0);
    let shown = WorkingRecord {
        queue: "q".into(),
        run_at: UnixMs(1_795_514_338_000),
        payload: j.payload().to_vec(),
    };
    store.set_working(&w, &Working::Show(shown.clone())).await.unwrap();
    let listed = store.workers().await.unwrap();
    let me = listed.iter().find(|r| r.id == w.as_str()).expect("listed");
    assert!(me.busy && me.resq);
    assert_eq!(me.working.as_ref(), Some(&shown));
    store.set_working(&w, &Working::Keep).await.unwrap();
    store.set_working(&w, &Working::Clear).await.unwrap();
    let listed = store.workers().await.unwrap();
    let me = listed.iter().find(|r| r.id == w.as_str()).expect("listed");
    assert!(!me.busy && me.working.is_none());
}
