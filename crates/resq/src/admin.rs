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

/// Which failures an action takes: every one when all are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedFilter {
    pub queue: Option<String>,
    pub class: Option<String>,
    /// resq's reason code, or for a record without one (Ruby's) its exception.
    pub reason: Option<String>,
}

impl FailedFilter {
    pub fn is_empty(&self) -> bool {
        self.queue.is_none() && self.class.is_none() && self.reason.is_none()
    }

    /// True when `entry` passes every condition set.
    pub fn matches(&self, entry: &FailedEntry) -> bool {
        let Some(record) = &entry.record else {
            return self.is_empty();
        };
        let queue_ok = self.queue.as_deref().is_none_or(|q| record.queue.as_deref() == Some(q));
        let class_ok = self
            .class
            .as_deref()
            .is_none_or(|c| record.payload_class().as_deref() == Some(c));
        let reason_ok = self
            .reason
            .as_deref()
            .is_none_or(|r| record.reason.as_deref().or(record.exception.as_deref()) == Some(r));
        queue_ok && class_ok && reason_ok
    }
}

/// What a bulk retry did.
#[derive(Debug, Clone, Default)]
pub struct BulkRetry {
    pub retried: u64,
    /// Records that matched but could not be retried, with why.
    pub skipped: Vec<(String, String)>,
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
        None => bytes_handle(raw),
    }
}

impl ScheduledEntry {
    /// What `remove` and `run` take: the job's id, or for a job without one
    /// the handle of its bytes (`r-` and 16 hex digits of their SHA-256).
    pub fn handle(&self) -> String {
        match &self.id {
            Some(id) if (1..=64).contains(&id.len()) => id.clone(),
            _ => bytes_handle(&self.raw),
        }
    }
}

/// The handle of a record that has no id of its own: `r-` and 16 hex digits
/// of the SHA-256 of its bytes, stable while other records come and go.
pub fn bytes_handle(raw: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(raw.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("r-{hex}")
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

    /// The failures `filter` takes, oldest first: `limit` of them from
    /// `offset`, and how many there are in all. Scans the list (a page at a
    /// time).
    pub async fn failed_matching(
        &self,
        filter: &FailedFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<FailedEntry>, u64), StoreError> {
        if filter.is_empty() {
            return Ok((self.failed(offset, limit).await?, self.store.failed_len().await?));
        }
        let total = self.store.failed_len().await?;
        let (mut out, mut matching, mut at) = (Vec::new(), 0u64, 0u64);
        while at < total {
            for entry in self.failed(at, SCAN_PAGE).await? {
                if filter.matches(&entry) {
                    if matching >= offset && (out.len() as u64) < limit {
                        out.push(entry);
                    }
                    matching += 1;
                }
            }
            at += SCAN_PAGE;
        }
        Ok((out, matching))
    }

    /// Retries every failure `filter` takes (each atomically, as one retry).
    pub async fn retry_failed_matching(&self, filter: &FailedFilter) -> Result<BulkRetry, StoreError> {
        let (entries, _) = self.failed_matching(filter, 0, u64::MAX).await?;
        let mut report = BulkRetry::default();
        for entry in entries {
            match self.retry_failed(&entry.handle).await {
                Ok(()) => report.retried += 1,
                Err(AdminError::Store(e)) => return Err(e),
                Err(e) => report.skipped.push((entry.handle, e.to_string())),
            }
        }
        Ok(report)
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

    /// Finds a waiting job by its id (or, for a job without one, the handle
    /// of its bytes, as for failures).
    pub async fn find_scheduled(&self, which: Schedule, id: &str) -> Result<ScheduledEntry, AdminError> {
        let total = self.store.schedule_len(which).await?;
        let mut offset = 0;
        while offset < total {
            for entry in self.schedule(which, offset, SCAN_PAGE).await? {
                if entry.handle() == id {
                    return Ok(entry);
                }
            }
            offset += SCAN_PAGE;
        }
        Err(AdminError::NotFound(id.chars().take(64).collect()))
    }

    /// Removes one waiting job.
    pub async fn remove_scheduled(&self, which: Schedule, id: &str) -> Result<(), AdminError> {
        let entry = self.find_scheduled(which, id).await?;
        if self.store.schedule_remove(which, &entry.raw).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound(id.to_string()))
        }
    }

    /// Pushes one waiting job to its queue now, instead of when it is due.
    pub async fn run_scheduled_now(&self, which: Schedule, id: &str) -> Result<String, AdminError> {
        let entry = self.find_scheduled(which, id).await?;
        let queue = entry.queue.clone().ok_or_else(|| AdminError::NotRetryable {
            id: id.to_string(),
            why: "the job names no queue".into(),
        })?;
        check_queue(&queue).map_err(|e| AdminError::BadQueue(e.to_string()))?;
        if self.store.schedule_run_now(which, &entry.raw, &queue).await? {
            Ok(queue)
        } else {
            Err(AdminError::NotFound(id.to_string()))
        }
    }

    /// Removes one expired-job record, by its handle.
    pub async fn remove_expired(&self, handle: &str) -> Result<(), AdminError> {
        // The list keeps the newest 1,000 records (the sweeper trims it).
        let (records, _) = self.expired(0, 1000).await?;
        let record = records
            .into_iter()
            .find(|r| bytes_handle(r) == handle)
            .ok_or_else(|| AdminError::NotFound(handle.chars().take(64).collect()))?;
        if self.store.expired_remove(&record).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound(handle.to_string()))
        }
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
