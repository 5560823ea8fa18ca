//! Reliable fetch: which queues to ask, in which order, and how often.
//!
//! The atomic move into the in-flight list is the store's (one Lua script for
//! Redis). This side resolves the queue spec against the queue set, re-reading
//! it every `queue_refresh` when the spec has globs, so new queues are picked up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::queue_spec::QueueSpec;
use crate::store::{Fetched, Store, StoreError};
use crate::worker_id::WorkerId;

pub(crate) struct Fetcher {
    store: Arc<dyn Store>,
    worker: WorkerId,
    spec: QueueSpec,
    queue_refresh: Duration,
    resolved: Vec<String>,
    refreshed_at: Option<Instant>,
}

impl Fetcher {
    pub(crate) fn new(store: Arc<dyn Store>, worker: WorkerId, spec: QueueSpec, queue_refresh: Duration) -> Self {
        Self {
            store,
            worker,
            spec,
            queue_refresh,
            resolved: Vec::new(),
            refreshed_at: None,
        }
    }

    /// Moves up to `max` jobs into this worker's in-flight lists.
    pub(crate) async fn fetch(&mut self, max: usize) -> Result<Fetched, StoreError> {
        let stale = self.refreshed_at.is_none_or(|at| at.elapsed() >= self.queue_refresh);
        if stale {
            let known = if self.spec.is_dynamic() {
                self.store.queues().await?
            } else {
                Vec::new()
            };
            self.resolved = self.spec.resolve(&known);
            self.refreshed_at = Some(Instant::now());
        }
        if self.resolved.is_empty() {
            return Ok(Fetched::Jobs(Vec::new()));
        }
        if self.spec.is_weighted() {
            // A fresh weighted order for every fetch, as Sidekiq does.
            let order = self.spec.weighted_order(random_unit);
            return self.store.fetch(&self.worker, &order, max).await;
        }
        self.store.fetch(&self.worker, &self.resolved, max).await
    }
}

/// A random number in [0, 1) from the OS source (0.5 if it fails: the order
/// then follows the weights less well, which harms nothing).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}
