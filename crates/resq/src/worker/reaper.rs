//! The reaper: every worker looks, now and then, for workers whose liveness
//! mark lapsed and returns their in-flight jobs to the head of their queues.
//! The store makes each recovery atomic, so many reapers at once are safe.
//!
//! A lapsed mark means "dead" only if its worker could have renewed it: after
//! an outage (Redis stopped, restarted or cut off for longer than the
//! liveness period) every mark has lapsed, live workers' too. The store
//! therefore judges no one until the fleet has renewed its marks without a
//! gap for a full liveness period; until then the lapsed workers are
//! "deferred", and a burst worker waits for the verdict before it exits (so
//! it does not leave a dead worker's jobs behind).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::store::{ReapRules, Store};

/// What this worker's reaper found, shared with the manager.
pub(crate) struct Reaping {
    /// How long the fleet's marks must have been renewed without a gap
    /// before a lapsed one counts (one liveness period), and how many
    /// recoveries a job gets before it is poison.
    rules: ReapRules,
    recovered: AtomicU64,
    poisoned: AtomicU64,
    /// Lapsed workers are waiting for a verdict.
    undecided: AtomicBool,
}

impl Reaping {
    pub(crate) fn new(liveness_ttl: Duration, max_recoveries: u32) -> Self {
        Self {
            rules: ReapRules {
                min_continuity: liveness_ttl,
                max_recoveries,
            },
            recovered: AtomicU64::new(0),
            poisoned: AtomicU64::new(0),
            undecided: AtomicBool::new(false),
        }
    }

    /// Jobs of dead workers recovered so far.
    pub(crate) fn recovered(&self) -> u64 {
        self.recovered.load(Ordering::Relaxed)
    }

    /// Jobs recorded as poison so far.
    pub(crate) fn poisoned(&self) -> u64 {
        self.poisoned.load(Ordering::Relaxed)
    }

    /// True while some lapsed worker waits for a verdict.
    pub(crate) fn undecided(&self) -> bool {
        self.undecided.load(Ordering::Relaxed)
    }

    pub(crate) async fn reap_once(&self, store: &dyn Store) {
        match store.reap_dead_workers(self.rules).await {
            Ok(report) => {
                for job in &report.poisoned {
                    tracing::error!(
                        queue = %job.queue, failure_id = %job.failure_id, deaths = job.deaths,
                        max_recoveries = self.rules.max_recoveries,
                        "poison job: its worker died while running it alone more often than max_recoveries allows \
                         (a crash, an OOM kill or an abort in the job); it is in the failed list with reason poison \
                         and will not run again unless retried"
                    );
                }
                self.poisoned.fetch_add(report.poisoned.len() as u64, Ordering::Relaxed);
                if !report.dead_workers.is_empty() {
                    tracing::warn!(
                        workers = ?report.dead_workers, requeued = report.requeued,
                        "recovered the in-flight jobs of dead workers (they may run twice)"
                    );
                }
                if !report.deferred.is_empty() {
                    tracing::info!(
                        workers = ?report.deferred,
                        "workers look dead, but the store was not reachable to everyone for a full liveness \
                         period (an outage just ended, or the fleet just started): judging them later"
                    );
                }
                self.recovered.fetch_add(report.requeued, Ordering::Relaxed);
                self.undecided.store(!report.deferred.is_empty(), Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "reaper could not run; will retry"),
        }
    }
}

pub(crate) async fn run(store: Arc<dyn Store>, every: Duration, reaping: Arc<Reaping>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        reaping.reap_once(store.as_ref()).await;
    }
}
