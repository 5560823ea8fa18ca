//! The admin API: what the CLI, the dashboard and the HTTP API read and do,
//! over the store. None of them reads Redis on its own.

use std::sync::Arc;

use crate::failure::FailureRecord;
use crate::names::check_queue;
use crate::store::{OutgoingJob, Schedule, Store, StoreError, StoreStats, WorkerRecord};

/// Failure records are scanned in pages of this size when looked up by id.
const SCAN_PAGE: u64 = 500;

/// One entry of the failed list.
#[derive(Debug, Clone)]
pub struct FailedEntry {
    /// The stable handle that `retry` and `remove` take: the record's
    /// `failure_id`, or for a record without one (Ruby's, `DirtyExit`
    /// included) `r-` and 16 hex digits of the SHA-256 of its bytes. It
    /// does not change when other records come or go.
    pub handle: String,
    /// Position in the list (0 = oldest); changes as records are removed.
    pub index: u64,
    /// The record, parsed leniently; `None` when it is not a JSON object.
    pub record: Option<FailureRecord>,
    /// The record exactly as stored.
    pub raw: String,
}

/// A job waiting in the schedule or the retry set.
#[derive(Debug, Clone)]
pub struct ScheduledEntry {
    /// When it is due (Unix ms).
    pub due_ms: u64,
    pub class: Option<String>,
    pub queue: Option<String>,
    pub id: Option<String>,
    pub attempt: u64,
    /// The job exactly as stored.
    pub raw: String,
}

/// A failure record's handle (see [`FailedEntry::handle`]).
fn handle(record: Option<&FailureRecord>, raw: &str) -> String {
    let id = record.and_then(|r| r.failure_id.as_deref()).filter(|id| {
        (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    match id {
        Some(id) => id.to_string(),
        None => {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(raw.as_bytes());
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("r-{hex}")
        }
    }
}

/// Why an admin action failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no failure with id {0} (see `resq failed list`)")]
    NotFound(String),
    #[error("failure {id} cannot be retried: {why}")]
    NotRetryable { id: String, why: String },
    #[error("{0}")]
    BadQueue(String),
}

/// Reads and acts on a store.
#[derive(Clone)]
pub struct Admin {
    store: Arc<dyn Store>,
}

impl Admin {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.store.stats().await
    }

    pub async fn queues(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.store.queue_sizes().await
    }

    pub async fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        self.store.workers().await
    }

    pub async fn failed_count(&self) -> Result<u64, StoreError> {
        self.store.failed_len().await
    }

    /// A page of the failed list, oldest first.
    pub async fn failed(&self, offset: u64, limit: u64) -> Result<Vec<FailedEntry>, StoreError> {
        let raw = self.store.failed_range(offset, limit).await?;
        Ok(raw
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                let record = FailureRecord::parse(&raw);
                FailedEntry {
                    handle: handle(record.as_ref(), &raw),
                    index: offset + i as u64,
                    record,
                    raw,
                }
            })
            .collect())
    }

    /// Finds a failure by its stable id.
    pub async fn find_failed(&self, failure_id: &str) -> Result<FailedEntry, AdminError> {
        let total = self.store.failed_len().await?;
        let mut offset = 0;
        while offset < total {
            for entry in self.failed(offset, SCAN_PAGE).await? {
                if entry.handle == failure_id {
                    return Ok(entry);
                }
            }
            offset += SCAN_PAGE;
        }
        Err(AdminError::NotFound(failure_id.chars().take(64).collect()))
    }

    /// Puts the failed job back on its queue, byte for byte as it was
    /// enqueued, and removes the record, atomically.
    pub async fn retry_failed(&self, failure_id: &str) -> Result<(), AdminError> {
        let entry = self.find_failed(failure_id).await?;
        let not_retryable = |why: &str| AdminError::NotRetryable {
            id: failure_id.to_string(),
            why: why.to_string(),
        };
        let record = entry
            .record
            .as_ref()
            .ok_or_else(|| not_retryable("the record is not JSON"))?;
        let payload = record
            .payload
            .as_ref()
            .ok_or_else(|| not_retryable("the record has no payload"))?;
        if !payload.get().starts_with('{') {
            return Err(not_retryable(
                "its payload was never a job (it would fail the same way again)",
            ));
        }
        let queue = record
            .queue
            .clone()
            .ok_or_else(|| not_retryable("the record names no queue"))?;
        check_queue(&queue).map_err(|e| not_retryable(&e.to_string()))?;
        let job = OutgoingJob {
            queue,
            payload: payload.get().as_bytes().to_vec(),
        };
        // A signed job's attempt was spent (its replay mark is set): the
        // operator's retry releases it, so the attempt runs once more.
        let release = crate::envelope::Envelope::decode(&job.payload, &crate::limits::PayloadLimits::default())
            .ok()
            .and_then(|envelope| crate::mark::mark_of(&envelope).ok().flatten());
        if self.store.failed_requeue(&entry.raw, &job, release.as_ref()).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound(failure_id.to_string()))
        }
    }

    /// Removes one failure record.
    pub async fn remove_failed(&self, failure_id: &str) -> Result<(), AdminError> {
        let entry = self.find_failed(failure_id).await?;
        if self.store.failed_remove(&entry.raw).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound(failure_id.to_string()))
        }
    }

    /// A page of a schedule (jobs enqueued for later, or retries), soonest first.
    pub async fn schedule(&self, which: Schedule, offset: u64, limit: u64) -> Result<Vec<ScheduledEntry>, StoreError> {
        let items = self.store.schedule_range(which, offset, limit).await?;
        Ok(items
            .into_iter()
            .map(|(raw, due_ms)| {
                let v: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
                let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
                ScheduledEntry {
                    due_ms,
                    class: text("class"),
                    queue: text("queue"),
                    id: text("id"),
                    attempt: v.get("attempt").and_then(|a| a.as_u64()).unwrap_or(0),
                    raw,
                }
            })
            .collect())
    }

    /// How many jobs a schedule holds.
    pub async fn schedule_len(&self, which: Schedule) -> Result<u64, StoreError> {
        self.store.schedule_len(which).await
    }

    /// The newest expired jobs the sweeper removed, and how many it removed in all.
    pub async fn expired(&self, offset: u64, limit: u64) -> Result<(Vec<String>, u64), StoreError> {
        Ok((
            self.store.expired_range(offset, limit).await?,
            self.store.expired_total().await?,
        ))
    }

    /// Pauses or resumes one queue for every worker.
    pub async fn set_queue_paused(&self, queue: &str, paused: bool) -> Result<(), AdminError> {
        check_queue(queue).map_err(|e| AdminError::BadQueue(e.to_string()))?;
        Ok(self.store.set_queue_paused(queue, paused).await?)
    }

    /// Caps a queue's length (`None` removes the cap).
    pub async fn set_queue_cap(&self, queue: &str, cap: Option<u64>) -> Result<(), AdminError> {
        check_queue(queue).map_err(|e| AdminError::BadQueue(e.to_string()))?;
        Ok(self.store.set_queue_cap(queue, cap).await?)
    }

    /// The queues Ruby workers (registered workers that are not resq's)
    /// serve, among `queues`: Ruby ignores resq's pause and caps, so a
    /// paused or capped queue a Ruby worker serves is not paused or capped
    /// for its jobs. A Ruby worker's queues are the third part of its id,
    /// matched the way Resque 3 does (`*`, and fnmatch globs).
    pub async fn served_by_ruby(&self, queues: &[String]) -> Result<Vec<String>, StoreError> {
        let ruby_specs: Vec<String> = self
            .store
            .workers()
            .await?
            .into_iter()
            .filter(|w| !w.resq)
            .filter_map(|w| w.id.splitn(3, ':').nth(2).map(str::to_string))
            .collect();
        let served = |queue: &str| {
            ruby_specs.iter().any(|spec| {
                spec.split(',').any(|entry| {
                    entry == "*" || entry == queue || glob::Pattern::new(entry).is_ok_and(|p| p.matches(queue))
                })
            })
        };
        Ok(queues.iter().filter(|q| served(q)).cloned().collect())
    }

    /// Paused queues, and capped queues with their caps.
    pub async fn queue_controls(&self) -> Result<(Vec<String>, Vec<(String, u64)>), StoreError> {
        Ok((self.store.paused_queues().await?, self.store.queue_caps().await?))
    }

    /// Empties the failed list; returns how many records were removed.
    /// Each recurring entry's last fired tick (Unix ms), by name.
    pub async fn cron_last_fired(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.store.cron_last_fired().await
    }

    pub async fn clear_failed(&self) -> Result<u64, StoreError> {
        self.store.failed_clear().await
    }
}
