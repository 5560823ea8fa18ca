//! The promoter: every worker, now and then, moves due jobs from the schedule
//! and retry sets to their queues. The store makes each move atomic, so all
//! workers may run it; a burst of due jobs is moved in batches until none is
//! left.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_unix;
use crate::store::Store;

const BATCH: usize = 1000;

pub(crate) async fn run(store: Arc<dyn Store>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            let now_ms = (now_unix() * 1000.0) as u64;
            match store.promote_due(now_ms, BATCH).await {
                Ok(moved) if moved as usize == BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not move due scheduled jobs; will retry");
                    break;
                }
            }
        }
    }
}
