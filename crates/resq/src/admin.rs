//! The admin API: what the CLI, the dashboard and the HTTP API read and do,
//! over the store. None of them reads Redis on its own.

use std::sync::Arc;

use crate::clock::UnixMs;
use crate::names::check_queue;
use crate::store::{ExpiredRecord, FailureRecord, Schedule, ScheduledJob, Store, StoreError, StoreStats, WorkerRecord};

/// Failure records are scanned in pages of this size when a filter or a
/// handle without an id needs it.
const SCAN_PAGE: u64 = 500;

/// One entry of the failed list.
#[derive(Debug, Clone)]
pub struct FailedEntry {
    /// The stable handle that `retry` and `remove` take: the record's id
    /// (`failure_id`), or for a record without one (Ruby's, `DirtyExit`
    /// included) `r-` and 16 hex digits of the SHA-256 of its bytes. It
    /// does not change when other records come or go.
    pub handle: String,
    /// Position in the list (0 = oldest) when it was read from a page;
    /// changes as records are removed.
    pub index: Option<u64>,
    pub record: FailureRecord,
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
        let record = &entry.record;
        if !record.readable {
            return self.is_empty();
        }
        let queue_ok = self.queue.as_deref().is_none_or(|q| record.queue.as_deref() == Some(q));
        let class_ok = self.class.as_deref().is_none_or(|c| record.class.as_deref() == Some(c));
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
    pub due: UnixMs,
    pub class: Option<String>,
    pub queue: Option<String>,
    pub id: Option<String>,
    pub attempt: u64,
    /// The job exactly as stored.
    pub job: ScheduledJob,
}

/// A failure record's handle (see [`FailedEntry::handle`]).
pub fn failure_handle(record: &FailureRecord) -> String {
    match record.id.as_deref().filter(|id| is_id(id)) {
        Some(id) => id.to_string(),
        None => bytes_handle(&record.stored.0),
    }
}

/// An id resq hands out, and so may take back: 1 to 64 of `[A-Za-z0-9_-]`.
fn is_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ScheduledEntry {
    /// What `remove` and `run` take: the job's id, or for a job without one
    /// the handle of its bytes (`r-` and 16 hex digits of their SHA-256).
    pub fn handle(&self) -> String {
        match &self.id {
            Some(id) if (1..=64).contains(&id.len()) => id.clone(),
            _ => bytes_handle(&self.job.payload),
        }
    }
}

/// An expired-job record's handle: that of its bytes.
pub fn expired_handle(record: &ExpiredRecord) -> String {
    bytes_handle(&record.stored.0)
}

/// The handle of a record that has no id of its own: `r-` and 16 hex digits
/// of the SHA-256 of its bytes, stable while other records come and go.
pub fn bytes_handle(raw: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(raw);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("r-{hex}")
}

/// Where to look for a record a handle names. The CLI looks everywhere; the
/// dashboard says where the operator saw it, so finding it again reads a
/// bounded window around that place (records move as others come and go),
/// whatever the list's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Search {
    #[default]
    Everywhere,
    /// Within [`SCAN_PAGE`] positions of this one.
    Near(u64),
}

impl Search {
    /// The positions to read: (first, how many), within `total`.
    fn window(self, total: u64) -> (u64, u64) {
        match self {
            Search::Everywhere => (0, total),
            Search::Near(at) => {
                let from = at.saturating_sub(SCAN_PAGE).min(total);
                (from, (2 * SCAN_PAGE).min(total - from))
            }
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
        let records = self.store.failed_range(offset, limit).await?;
        Ok(records
            .into_iter()
            .enumerate()
            .map(|(i, record)| FailedEntry {
                handle: failure_handle(&record),
                index: Some(offset + i as u64),
                record,
            })
            .collect())
    }

    /// The failures `filter` takes, oldest first: `limit` of them from
    /// `offset`, and how many there are in all. Scans the list (a page at a
    /// time) when there is a filter.
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

    /// The failures `filter` takes, scanning at most `max_scan` records from
    /// position `from` (bounded work on a list of any length): up to
    /// `limit` of them, and where the next scan starts (`None`: the list
    /// ended).
    pub async fn failed_scan(
        &self,
        filter: &FailedFilter,
        from: u64,
        limit: u64,
        max_scan: u64,
    ) -> Result<(Vec<FailedEntry>, Option<u64>), StoreError> {
        let total = self.store.failed_len().await?;
        let (mut out, mut at) = (Vec::new(), from);
        let end = from.saturating_add(max_scan).min(total);
        while at < end && (out.len() as u64) < limit {
            let page = self.failed(at, SCAN_PAGE.min(end - at)).await?;
            if page.is_empty() {
                break;
            }
            for entry in page {
                at += 1;
                if filter.matches(&entry) {
                    out.push(entry);
                    if out.len() as u64 >= limit {
                        break;
                    }
                }
            }
        }
        Ok((out, (at < total).then_some(at)))
    }

    /// The failure records of one job (by its id), newest first, among the
    /// newest `max_scan` records (bounded work): the job's attempt history
    /// as the failed list keeps it (each operator retry that failed again
    /// added one).
    pub async fn failures_of_job(&self, job_id: &str, max_scan: u64) -> Result<Vec<FailedEntry>, StoreError> {
        #[derive(serde::Deserialize)]
        struct IdOnly<'a> {
            #[serde(borrow)]
            id: Option<&'a str>,
        }
        let total = self.store.failed_len().await?;
        let from = total.saturating_sub(max_scan);
        let mut out = Vec::new();
        let mut at = from;
        while at < total {
            for entry in self.failed(at, SCAN_PAGE.min(total - at)).await? {
                let id = entry
                    .record
                    .payload
                    .as_deref()
                    .and_then(|p| serde_json::from_slice::<IdOnly<'_>>(p).ok())
                    .and_then(|j| j.id.map(str::to_string));
                if id.as_deref() == Some(job_id) {
                    out.push(entry);
                }
            }
            at += SCAN_PAGE;
        }
        out.reverse();
        Ok(out)
    }

    /// Removes every failure `filter` takes; returns how many.
    pub async fn remove_failed_matching(&self, filter: &FailedFilter) -> Result<u64, StoreError> {
        let (entries, _) = self.failed_matching(filter, 0, u64::MAX).await?;
        self.remove_entries(&entries).await
    }

    /// Removes these records (each exactly as read); returns how many were
    /// still there.
    pub async fn remove_entries(&self, entries: &[FailedEntry]) -> Result<u64, StoreError> {
        let mut removed = 0;
        for entry in entries {
            if self.store.failed_remove(&entry.record).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Retries every failure `filter` takes (each atomically, as one retry).
    pub async fn retry_failed_matching(&self, filter: &FailedFilter) -> Result<BulkRetry, StoreError> {
        let (entries, _) = self.failed_matching(filter, 0, u64::MAX).await?;
        self.retry_entries(entries).await
    }

    /// Retries these records (each atomically, as one retry).
    pub async fn retry_entries(&self, entries: Vec<FailedEntry>) -> Result<BulkRetry, StoreError> {
        let mut report = BulkRetry::default();
        for entry in entries {
            match self.retry_entry(&entry).await {
                Ok(true) => report.retried += 1,
                Ok(false) => report
                    .skipped
                    .push((entry.handle, "it was removed meanwhile".to_string())),
                Err(AdminError::Store(e)) => return Err(e),
                Err(e) => report.skipped.push((entry.handle, e.to_string())),
            }
        }
        Ok(report)
    }

    /// Finds a failure by its handle: a record with an id in a constant
    /// number of steps (the store's index), one without (Ruby's, by the
    /// hash of its bytes) by a scan.
    pub async fn find_failed(&self, handle: &str) -> Result<FailedEntry, AdminError> {
        self.find_failed_in(handle, Search::Everywhere).await
    }

    /// [`Self::find_failed`], scanning only where `search` says.
    pub async fn find_failed_in(&self, handle: &str, search: Search) -> Result<FailedEntry, AdminError> {
        if is_id(handle) && !handle.starts_with("r-") {
            if let Some(record) = self.store.failed_get(handle).await? {
                return Ok(FailedEntry {
                    handle: handle.to_string(),
                    index: None,
                    record,
                });
            }
        }
        self.scan_failed(handle, search).await
    }

    /// Finds a failure by reading the list (where `search` says): for
    /// handles of records without an id, and for records that changed since
    /// they were indexed (Ruby's resque-web rewrites a record it retries).
    async fn scan_failed(&self, handle: &str, search: Search) -> Result<FailedEntry, AdminError> {
        let (from, count) = search.window(self.store.failed_len().await?);
        let mut offset = from;
        while offset < from + count {
            for entry in self.failed(offset, SCAN_PAGE.min(from + count - offset)).await? {
                if entry.handle == handle {
                    return Ok(entry);
                }
            }
            offset += SCAN_PAGE;
        }
        Err(AdminError::NotFound(handle.chars().take(64).collect()))
    }

    /// Puts the failed job back on its queue, byte for byte as it was
    /// enqueued, and removes the record, atomically. The queue's cap is
    /// checked: a full queue keeps the record (`QueueFull`).
    pub async fn retry_failed(&self, handle: &str) -> Result<(), AdminError> {
        self.retry_failed_in(handle, Search::Everywhere).await
    }

    /// [`Self::retry_failed`], scanning only where `search` says.
    pub async fn retry_failed_in(&self, handle: &str, search: Search) -> Result<(), AdminError> {
        let entry = self.find_failed_in(handle, search).await?;
        if self.retry_entry(&entry).await? {
            return Ok(());
        }
        // The record changed or went since it was read: look once more.
        let entry = self.scan_failed(handle, search).await?;
        if self.retry_entry(&entry).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound(handle.chars().take(64).collect()))
        }
    }

    /// Retries one record as read; false when it was no longer there.
    async fn retry_entry(&self, entry: &FailedEntry) -> Result<bool, AdminError> {
        let not_retryable = |why: &str| AdminError::NotRetryable {
            id: entry.handle.clone(),
            why: why.to_string(),
        };
        let record = &entry.record;
        if !record.readable {
            return Err(not_retryable("the record is not JSON"));
        }
        if record.excerpt.is_some() {
            return Err(not_retryable(
                "it was refused before it could run and only the first bytes of its payload were kept",
            ));
        }
        let payload = record
            .payload
            .as_deref()
            .ok_or_else(|| not_retryable("its payload was never a job (it would fail the same way again)"))?;
        let queue = record
            .queue
            .as_deref()
            .ok_or_else(|| not_retryable("the record names no queue"))?;
        check_queue(queue).map_err(|e| not_retryable(&e.to_string()))?;
        // A signed job's attempt was spent (its replay mark is set): the
        // operator's retry releases it, so the attempt runs once more.
        let release = crate::envelope::Envelope::decode(payload, &crate::limits::PayloadLimits::default())
            .ok()
            .and_then(|envelope| crate::mark::mark_of(&envelope).ok().flatten());
        Ok(self.store.failed_requeue(record, queue, release.as_ref()).await?)
    }

    /// Removes one failure record.
    pub async fn remove_failed(&self, handle: &str) -> Result<(), AdminError> {
        self.remove_failed_in(handle, Search::Everywhere).await
    }

    /// [`Self::remove_failed`], scanning only where `search` says.
    pub async fn remove_failed_in(&self, handle: &str, search: Search) -> Result<(), AdminError> {
        let entry = self.find_failed_in(handle, search).await?;
        if self.store.failed_remove(&entry.record).await? {
            return Ok(());
        }
        let entry = self.scan_failed(handle, search).await?;
        if self.store.failed_remove(&entry.record).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound(handle.chars().take(64).collect()))
        }
    }

    /// A page of a schedule (jobs enqueued for later, or retries), soonest first.
    pub async fn schedule(&self, which: Schedule, offset: u64, limit: u64) -> Result<Vec<ScheduledEntry>, StoreError> {
        let items = self.store.schedule_range(which, offset, limit).await?;
        Ok(items
            .into_iter()
            .map(|job| {
                let v: serde_json::Value = serde_json::from_slice(&job.payload).unwrap_or_default();
                let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
                ScheduledEntry {
                    due: job.due,
                    class: text("class"),
                    queue: text("queue"),
                    id: text("id"),
                    attempt: v.get("attempt").and_then(|a| a.as_u64()).unwrap_or(0),
                    job,
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
        self.find_scheduled_in(which, id, Search::Everywhere).await
    }

    /// [`Self::find_scheduled`], scanning only where `search` says.
    pub async fn find_scheduled_in(
        &self,
        which: Schedule,
        id: &str,
        search: Search,
    ) -> Result<ScheduledEntry, AdminError> {
        let (from, count) = search.window(self.store.schedule_len(which).await?);
        let mut offset = from;
        while offset < from + count {
            for entry in self
                .schedule(which, offset, SCAN_PAGE.min(from + count - offset))
                .await?
            {
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
        self.remove_scheduled_in(which, id, Search::Everywhere).await
    }

    /// [`Self::remove_scheduled`], scanning only where `search` says.
    pub async fn remove_scheduled_in(&self, which: Schedule, id: &str, search: Search) -> Result<(), AdminError> {
        let entry = self.find_scheduled_in(which, id, search).await?;
        if self.store.schedule_remove(which, &entry.job).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound(id.to_string()))
        }
    }

    /// Pushes one waiting job to its queue now, instead of when it is due.
    pub async fn run_scheduled_now(&self, which: Schedule, id: &str) -> Result<String, AdminError> {
        self.run_scheduled_now_in(which, id, Search::Everywhere).await
    }

    /// [`Self::run_scheduled_now`], scanning only where `search` says.
    pub async fn run_scheduled_now_in(&self, which: Schedule, id: &str, search: Search) -> Result<String, AdminError> {
        let entry = self.find_scheduled_in(which, id, search).await?;
        let queue = entry.queue.clone().ok_or_else(|| AdminError::NotRetryable {
            id: id.to_string(),
            why: "the job names no queue".into(),
        })?;
        check_queue(&queue).map_err(|e| AdminError::BadQueue(e.to_string()))?;
        if self.store.schedule_run_now(which, &entry.job, &queue).await? {
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
            .find(|r| expired_handle(r) == handle)
            .ok_or_else(|| AdminError::NotFound(handle.chars().take(64).collect()))?;
        if self.store.expired_remove(&record).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound(handle.to_string()))
        }
    }

    /// The newest expired jobs the sweeper removed, and how many it removed in all.
    pub async fn expired(&self, offset: u64, limit: u64) -> Result<(Vec<ExpiredRecord>, u64), StoreError> {
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

    /// Each recurring entry's last fired tick, by name.
    pub async fn cron_last_fired(&self) -> Result<Vec<(String, UnixMs)>, StoreError> {
        self.store.cron_last_fired().await
    }

    /// Empties the failed list; returns how many records were removed.
    pub async fn clear_failed(&self) -> Result<u64, StoreError> {
        self.store.failed_clear().await
    }

    /// A page of the workers (sorted by id) and how many there are: the
    /// records of the page only are read.
    pub async fn workers_page(&self, offset: u64, limit: u64) -> Result<(Vec<WorkerRecord>, u64), StoreError> {
        let ids = self.store.worker_ids().await?;
        let total = ids.len() as u64;
        let page: Vec<String> = ids
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect();
        Ok((self.store.worker_records(&page).await?, total))
    }

    /// Jobs a worker holds in flight, with their queues.
    pub async fn in_flight(&self, worker: &str, offset: u64, limit: u64) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.store.in_flight(worker, offset, limit).await
    }

    /// How many jobs a worker holds in flight (their bytes are not read).
    pub async fn in_flight_count(&self, worker: &str) -> Result<u64, StoreError> {
        self.store.in_flight_count(worker).await
    }

    /// A page of a queue's waiting jobs, head first. Any name in the queue
    /// set can be read (Ruby's names are not held to resq's rules).
    pub async fn queue_jobs(&self, queue: &str, offset: u64, limit: u64) -> Result<Vec<QueuedEntry>, StoreError> {
        let raw = self.store.queue_range(queue, offset, limit).await?;
        Ok(raw
            .into_iter()
            .enumerate()
            .map(|(i, raw)| QueuedEntry {
                handle: bytes_handle(&raw),
                index: offset + i as u64,
                raw,
            })
            .collect())
    }

    /// Removes the waiting job with this handle from `queue`, looking for
    /// it in the page of [`SCAN_PAGE`] jobs around `near` (where the
    /// operator saw it): bounded work on a queue of any length. A job that
    /// moved further (a worker took the ones before it) is `NotFound`.
    pub async fn remove_queued(&self, queue: &str, handle: &str, near: u64) -> Result<(), AdminError> {
        let from = near.saturating_sub(SCAN_PAGE / 2);
        let page = self.store.queue_range(queue, from, SCAN_PAGE).await?;
        let Some(raw) = page.into_iter().find(|raw| bytes_handle(raw) == handle) else {
            return Err(AdminError::NotFound(handle.to_string()));
        };
        if self.store.queue_remove(queue, &raw).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound(handle.to_string()))
        }
    }
}

/// A job waiting in a queue.
#[derive(Debug, Clone)]
pub struct QueuedEntry {
    /// The handle of its bytes (see [`bytes_handle`]).
    pub handle: String,
    /// Its position from the queue's head when it was read.
    pub index: u64,
    pub raw: Vec<u8>,
}
