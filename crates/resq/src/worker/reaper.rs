//! The reaper: every worker looks, now and then, for workers whose liveness
//! mark lapsed and returns their in-flight jobs to the head of their queues.
//! The store makes each recovery atomic, so many reapers at once are safe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;

pub(crate) async fn reap_once(store: &dyn Store, recovered: &AtomicU64) {
    match store.reap_dead_workers().await {
        Ok(report) => {
            if !report.dead_workers.is_empty() {
                tracing::warn!(
                    workers = ?report.dead_workers, requeued = report.requeued,
                    "recovered the in-flight jobs of dead workers (they may run twice)"
                );
            }
            recovered.fetch_add(report.requeued, Ordering::Relaxed);
        }
        Err(e) => tracing::warn!(error = %e, "reaper could not run; will retry"),
    }
}

pub(crate) async fn run(store: Arc<dyn Store>, every: Duration, recovered: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        reap_once(store.as_ref(), &recovered).await;
    }
}
