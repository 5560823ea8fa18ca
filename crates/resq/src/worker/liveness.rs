//! Two signals that this worker is alive, on their own clocks:
//! Resque's heartbeat (every 60 s, from the store's clock, so Ruby does not
//! prune us) and resq's liveness mark (a key with a TTL, renewed every third of
//! it, so the reaper recovers a dead worker's jobs in seconds, not minutes).
//! Each renewal also repairs the Resque registration if something removed it
//! (an older Ruby worker pruning us), so resq is listed again within seconds.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::UnixMs;
use crate::store::{Registration, Store};
use crate::worker_id::WorkerId;

pub(crate) async fn run(
    store: Arc<dyn Store>,
    worker: WorkerId,
    started: UnixMs,
    heartbeat_every: Duration,
    liveness_ttl: Duration,
) {
    let registration = Registration {
        worker: &worker,
        started,
        liveness_ttl,
    };
    let renew_every = (liveness_ttl / 3).max(Duration::from_millis(100));
    let mut renew = tokio::time::interval(renew_every);
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = renew.tick() => {
                match store.keep_alive(&registration).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        "this worker's liveness mark had lapsed (the store was away or stalled longer than \
                         liveness_ttl, or it was taken for dead); renewed it and re-registered"
                    ),
                    Err(e) => tracing::warn!(error = %e, "could not renew the liveness mark; will retry"),
                }
            }
            _ = heartbeat.tick() => {
                if let Err(e) = store.heartbeat(&worker).await {
                    tracing::warn!(error = %e, "could not write the heartbeat; will retry");
                }
            }
        }
    }
}
