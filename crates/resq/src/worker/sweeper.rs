//! The expiry sweeper: expired jobs never run (the worker refuses them), and
//! this loop also removes them from queues and schedules before anyone
//! fetches them, so they stop taking space and show up in `resq expired list`.
//! Every worker tries each interval; the store's lock lets one of them sweep.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::store::{Store, SweepTurn, SWEEP_BATCH};

/// Most sweeps one tick runs while each removes a full batch.
const MAX_ROUNDS: usize = 100;
use crate::worker_id::WorkerId;

pub(crate) async fn run(store: Arc<dyn Store>, worker: WorkerId, every: Duration, clock: Clock) {
    // The first sweep waits one interval: a worker that just started has
    // better things to do, and many starting together do not all try at once.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // A sweep that removed a full batch may have left more: sweep again
        // (the lock's holder may), a bounded number of rounds a tick.
        for _ in 0..MAX_ROUNDS {
            let turn = SweepTurn {
                now: clock.now(),
                owner: worker.as_str(),
                every,
            };
            match store.sweep_expired(&turn).await {
                Ok(Some(removed)) if removed > 0 => {
                    tracing::info!(removed, "swept expired jobs");
                    if removed < SWEEP_BATCH {
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not sweep expired jobs; will retry");
                    break;
                }
            }
        }
    }
}
