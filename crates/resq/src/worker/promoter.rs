//! The promoter: every worker, now and then, moves due jobs from the schedule
//! and retry sets to their queues. The store makes each move atomic, so all
//! workers may run it; a burst of due jobs is moved in batches until none is
//! left.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::store::Store;

const BATCH: usize = 1000;

pub(crate) async fn run(store: Arc<dyn Store>, every: Duration, clock: Clock) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            match store.promote_due(clock.now(), BATCH).await {
                // A full batch: there may be more.
                Ok(promoted) if promoted.moved + promoted.unroutable >= BATCH as u64 => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not move due scheduled jobs; will retry");
                    break;
                }
            }
        }
    }
}
