//! `RedisStore`: the `Store` trait over Resque's keyspace.

use std::collections::BTreeMap;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisError, Value};

use resq::clock::iso8601;
use resq::store::{
    Claim, ClaimOutcome, Fetched, FetchedJob, FinishReport, Finished, OutgoingJob, ReapReport, Schedule, Store,
    StoreError, StoreStats, WorkerRecord, Working,
};
use resq::WorkerId;

use crate::connect::{connect, ConnectError, RedisConfig};
use crate::keys::Keys;
use crate::scripts;

/// The Redis store. Cheap to clone: clones share one multiplexed connection
/// that reconnects by itself.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    client: redis::Client,
    keys: Keys,
    wake: std::sync::Arc<std::sync::OnceLock<tokio::sync::watch::Receiver<u64>>>,
    /// Which queues are capped, and when that was read.
    caps: CapsCache,
    /// Most records the failed list keeps (the oldest are trimmed).
    failed_max: u64,
}

/// The queue a failure record names when its job named none.
pub const UNROUTABLE_QUEUE: &str = "resq.unroutable";

/// The failed list's cap unless [`RedisStore::with_failed_max`] says.
pub const DEFAULT_FAILED_MAX: u64 = 100_000;

/// What the recovery of a worker that looks dead found.
enum Recovery {
    /// Its jobs went back to their queues (this many) and it was unregistered.
    Recovered(u64),
    /// Its liveness mark exists: it is alive.
    Alive,
    /// The fleet's renewals have not been continuous long enough to judge.
    Deferred,
}

type CapsCache = std::sync::Arc<std::sync::Mutex<Option<(std::time::Instant, std::collections::HashSet<String>)>>>;

fn store_err(e: RedisError) -> StoreError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Refused(e.to_string())
    }
}

impl RedisStore {
    /// Connects to Redis and uses `namespace` (Resque's is `resque`).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), resq_redis::ConnectError> {
    /// use resq_redis::{RedisConfig, RedisStore};
    /// let store = RedisStore::connect(&RedisConfig::new("redis://127.0.0.1:6379/0"), "resque").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: &RedisConfig, namespace: &str) -> Result<Self, ConnectError> {
        let (conn, client) = connect(config).await?;
        Ok(Self {
            conn,
            client,
            keys: Keys::new(namespace),
            wake: Default::default(),
            caps: Default::default(),
            failed_max: DEFAULT_FAILED_MAX,
        })
    }

    /// Keeps at most `max` records in the failed list (at least 1): each ack
    /// that passes it trims the oldest and counts them in
    /// `resq:stat:failed-trimmed`, so hostile input cannot grow it without bound.
    pub fn with_failed_max(mut self, max: u64) -> Self {
        self.failed_max = max.max(1);
        self
    }

    /// The key names this store uses.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A handle on the connection, for tests and admin tools.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Starts (once) the task that turns messages on the wake channel into
    /// bumps of a watch value. It reconnects with backoff and bumps after each
    /// reconnect, since jobs may have arrived while it was away.
    fn start_wake_listener(&self) -> tokio::sync::watch::Receiver<u64> {
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let client = self.client.clone();
        let channel = self.keys.wake_channel();
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut delay = std::time::Duration::from_millis(100);
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if pubsub.subscribe(&channel).await.is_ok() {
                            delay = std::time::Duration::from_millis(100);
                            tx.send_modify(|v| *v += 1);
                            let mut messages = pubsub.on_message();
                            loop {
                                tokio::select! {
                                    message = messages.next() => match message {
                                        Some(_) => tx.send_modify(|v| *v += 1),
                                        None => break,
                                    },
                                    // Nobody watches any more: stop listening.
                                    _ = tx.closed() => return,
                                }
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "wake channel unavailable; workers poll meanwhile"),
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        });
        rx
    }

    /// Runs the renewal script (see `renew.lua`); true when the liveness
    /// mark was still there.
    async fn renew(
        &self,
        worker: &str,
        started: &str,
        ttl_ms: u64,
        heartbeat: &str,
        register: bool,
    ) -> Result<bool, StoreError> {
        let had: i64 = scripts::RENEW
            .key(self.keys.alive(worker))
            .key(self.keys.resq_workers())
            .key(self.keys.workers())
            .key(self.keys.worker_started(worker))
            .key(self.keys.heartbeats())
            .key(self.keys.beat())
            .arg(worker)
            .arg(ttl_ms.max(1))
            .arg(started)
            .arg(heartbeat)
            .arg(if register { "register" } else { "" })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(had == 1)
    }

    /// The capped queues, re-read at most once a second: a new cap takes
    /// effect within a second, and uncapped queues keep the cheap path.
    async fn capped_queues(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        if let Ok(cache) = self.caps.lock() {
            if let Some((at, names)) = cache.as_ref() {
                if at.elapsed() < std::time::Duration::from_secs(1) {
                    return Ok(names.clone());
                }
            }
        }
        let names: std::collections::HashSet<String> = self
            .conn
            .clone()
            .hkeys(self.keys.queue_caps())
            .await
            .map_err(store_err)?;
        if let Ok(mut cache) = self.caps.lock() {
            *cache = Some((std::time::Instant::now(), names.clone()));
        }
        Ok(names)
    }

    /// One SADD and RPUSH per queue, then the wake-up, in one pipeline.
    async fn enqueue_plain(&self, by_queue: &BTreeMap<&str, Vec<&[u8]>>) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for (queue, payloads) in by_queue {
            pipe.sadd(self.keys.queues(), *queue);
            pipe.rpush(self.keys.queue(queue), payloads);
        }
        // Best effort: an ACL user without channel rights still enqueues
        // (workers then find the job at their next poll).
        pipe.publish(self.keys.wake_channel(), "");
        let replies: Vec<redis::RedisResult<redis::Value>> = pipe
            .ignore_errors()
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        let pushes = replies.len().saturating_sub(1);
        for reply in replies.into_iter().take(pushes) {
            reply.map_err(store_err)?;
        }
        Ok(())
    }

    /// Caps checked and every job pushed in one script: all or nothing.
    async fn enqueue_checked(&self, by_queue: &BTreeMap<&str, Vec<&[u8]>>) -> Result<(), StoreError> {
        let mut inv = scripts::ENQUEUE.prepare_invoke();
        inv.key(self.keys.queues()).key(self.keys.queue_caps());
        inv.arg(self.keys.wake_channel());
        for (queue, payloads) in by_queue {
            inv.key(self.keys.queue(queue));
            inv.arg(*queue).arg(payloads.len());
            for p in payloads {
                inv.arg(*p);
            }
        }
        let reply: Vec<Value> = inv.invoke_async(&mut self.conn.clone()).await.map_err(store_err)?;
        match reply.as_slice() {
            [Value::Int(0)] => Ok(()),
            [Value::Int(1), Value::BulkString(queue), Value::Int(cap), Value::Int(length)] => {
                Err(queue_full(queue, *cap, *length))
            }
            _ => Err(StoreError::Protocol(
                "enqueue script answered something unexpected".into(),
            )),
        }
    }

    /// Runs a script that guards a one-job push with a mark of its own
    /// (`mark_key`, and two arguments about it) and the queue's cap. The
    /// scripts share their keys and arguments after the first ones.
    async fn guarded_push(
        &self,
        script: &redis::Script,
        mark_key: String,
        (first, second): (impl redis::ToRedisArgs, impl redis::ToRedisArgs),
        job: &OutgoingJob,
        extra: Option<u64>,
    ) -> Result<Vec<Value>, StoreError> {
        let mut inv = script.prepare_invoke();
        inv.key(mark_key)
            .key(self.keys.queues())
            .key(self.keys.queue(&job.queue))
            .key(self.keys.queue_caps())
            .arg(first)
            .arg(second)
            .arg(&job.queue)
            .arg(&job.payload)
            .arg(self.keys.wake_channel());
        if let Some(extra) = extra {
            inv.arg(extra);
        }
        inv.invoke_async(&mut self.conn.clone()).await.map_err(store_err)
    }

    /// Records scheduled jobs that name no usable queue as failures
    /// (`malformed_payload`), under the queue `resq.unroutable` so that a
    /// retry from resque-web has somewhere to go.
    async fn record_unroutable(&self, jobs: &[Vec<u8>], now_ms: u64) -> Result<(), StoreError> {
        let info = resq::FailureInfo::of(
            resq::Reason::MalformedPayload,
            "a scheduled job names no valid queue; it was taken out of the schedule",
        );
        let mut inv = scripts::RECORD_FAILURES.prepare_invoke();
        inv.key(self.keys.failed())
            .key(self.keys.stat("failed"))
            .key(self.keys.failed_trimmed())
            .arg(self.failed_max);
        for job in jobs {
            inv.arg(resq::failure::build_record(
                job,
                resq::failure::RecordPayload::Bounded { class: None },
                &info,
                "",
                UNROUTABLE_QUEUE,
                now_ms as f64 / 1000.0,
            ));
        }
        inv.invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        tracing::warn!(
            jobs = jobs.len(),
            "scheduled jobs that name no valid queue were recorded as failed"
        );
        Ok(())
    }

    /// The server's clock, in Unix seconds (heartbeats use it, as Resque does).
    pub async fn server_time(&self) -> Result<f64, StoreError> {
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(secs as f64 + micros as f64 / 1e6)
    }

    /// Recovers a worker's in-flight jobs and unregisters it: always when
    /// `force` (the worker itself leaving), else only if its liveness mark
    /// lapsed and the fleet's renewals were continuous for `min_continuity_ms`.
    async fn recover_worker(&self, worker: &str, force: bool, min_continuity_ms: u64) -> Result<Recovery, StoreError> {
        let mut conn = self.conn.clone();
        let queues: Vec<String> = conn
            .smembers(self.keys.inflight_queues(worker))
            .await
            .map_err(store_err)?;
        let mode = if force { "force" } else { "" };
        let mut requeued = 0u64;
        for q in &queues {
            let moved: i64 = scripts::RECOVER
                .key(self.keys.alive(worker))
                .key(self.keys.inflight(worker, q))
                .key(self.keys.queue(q))
                .key(self.keys.beat())
                .arg(mode)
                .arg(min_continuity_ms)
                .invoke_async(&mut conn)
                .await
                .map_err(store_err)?;
            match moved {
                -1 => return Ok(Recovery::Alive),
                -2 => return Ok(Recovery::Deferred),
                n => requeued += n.max(0) as u64,
            }
        }
        let forgotten: i64 = scripts::FORGET_WORKER
            .key(self.keys.alive(worker))
            .key(self.keys.inflight_queues(worker))
            .key(self.keys.resq_workers())
            .key(self.keys.workers())
            .key(self.keys.heartbeats())
            .key(self.keys.worker(worker))
            .key(self.keys.worker_started(worker))
            .key(self.keys.worker_stat("processed", worker))
            .key(self.keys.worker_stat("failed", worker))
            .key(self.keys.inflight_seq(worker))
            .key(self.keys.beat())
            .key(self.keys.paused_workers())
            .arg(worker)
            .arg(mode)
            .arg(min_continuity_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        Ok(match forgotten {
            1 => Recovery::Recovered(requeued),
            -2 => Recovery::Deferred,
            _ => Recovery::Alive,
        })
    }
}

/// Reads `{status, pair, token, job, ...}` from the fetch script.
fn parse_fetch(reply: Vec<Value>, queues: &[String]) -> Result<Fetched, StoreError> {
    let bad = |what: &str| StoreError::Protocol(format!("fetch script answered {what}"));
    let mut items = reply.into_iter();
    match items.next() {
        Some(Value::Int(1)) => return Ok(Fetched::Paused),
        Some(Value::Int(0)) => {}
        _ => return Err(bad("no status")),
    }
    let mut jobs = Vec::new();
    while let Some(pair) = items.next() {
        let Value::Int(p) = pair else {
            return Err(bad("a non-integer queue number"));
        };
        let queue = usize::try_from(p - 1)
            .ok()
            .and_then(|i| queues.get(i))
            .ok_or_else(|| bad("an unknown queue number"))?;
        let token = match items.next() {
            Some(Value::BulkString(bytes)) => String::from_utf8(bytes).map_err(|_| bad("a token that is not text"))?,
            _ => return Err(bad("a job without a token")),
        };
        let payload = match items.next() {
            Some(Value::BulkString(bytes)) => bytes,
            _ => return Err(bad("a job that is not a string")),
        };
        jobs.push(FetchedJob {
            queue: queue.clone(),
            payload,
            token,
        });
    }
    Ok(Fetched::Jobs(jobs))
}

fn opt_u64(v: Option<String>) -> u64 {
    v.and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[async_trait]
impl Store for RedisStore {
    async fn enqueue(&self, jobs: &[OutgoingJob]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        // Group by queue, keeping order.
        let mut by_queue: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
        for job in jobs {
            by_queue.entry(job.queue.as_str()).or_default().push(&job.payload);
        }
        let capped = self.capped_queues().await?;
        if by_queue.keys().any(|q| capped.contains(*q)) {
            self.enqueue_checked(&by_queue).await
        } else {
            self.enqueue_plain(&by_queue).await
        }
    }

    async fn queues(&self) -> Result<Vec<String>, StoreError> {
        self.conn.clone().smembers(self.keys.queues()).await.map_err(store_err)
    }

    async fn fetch(&self, worker: &WorkerId, queues: &[String], max: usize) -> Result<Fetched, StoreError> {
        let w = worker.as_str();
        let mut inv = scripts::FETCH.prepare_invoke();
        inv.key(self.keys.pause_all())
            .key(self.keys.inflight_queues(w))
            .key(self.keys.inflight_seq(w))
            .key(self.keys.paused_queues());
        for q in queues {
            inv.key(self.keys.queue(q)).key(self.keys.inflight(w, q));
        }
        inv.arg(max);
        for q in queues {
            inv.arg(q);
        }
        let reply: Vec<Value> = inv.invoke_async(&mut self.conn.clone()).await.map_err(store_err)?;
        parse_fetch(reply, queues)
    }

    async fn finish(
        &self,
        worker: &WorkerId,
        done: &[Finished],
        working: &Working,
    ) -> Result<FinishReport, StoreError> {
        if done.is_empty() {
            return Ok(FinishReport::default());
        }
        let w = worker.as_str();
        let mut inv = scripts::FINISH.prepare_invoke();
        inv.key(self.keys.stat("processed"))
            .key(self.keys.stat("failed"))
            .key(self.keys.worker_stat("processed", w))
            .key(self.keys.worker_stat("failed", w))
            .key(self.keys.failed())
            .key(self.keys.retry())
            .key(self.keys.failed_trimmed())
            .key(self.keys.worker(w));
        let mut list_numbers: BTreeMap<&str, usize> = BTreeMap::new();
        for f in done {
            let next = list_numbers.len() + 1;
            if *list_numbers.entry(f.job.queue.as_str()).or_insert(next) == next {
                inv.key(self.keys.inflight(w, &f.job.queue));
            }
        }
        inv.arg(list_numbers.len()).arg(self.failed_max);
        match working_record(working) {
            WorkingWrite::Keep => inv.arg("keep").arg(""),
            WorkingWrite::Clear => inv.arg("clear").arg(""),
            WorkingWrite::Show(record) => inv.arg("show").arg(record),
        };
        for f in done {
            let list = list_numbers.get(f.job.queue.as_str()).copied().unwrap_or(1);
            inv.arg(list).arg(&f.job.token).arg(f.failure.as_deref().unwrap_or(""));
            match &f.retry {
                Some(retry) => inv.arg(&retry.payload).arg(retry.due_ms),
                None => inv.arg("").arg(0),
            };
        }
        let reply: Vec<Value> = inv.invoke_async(&mut self.conn.clone()).await.map_err(store_err)?;
        let bad = || StoreError::Protocol("ack script answered something unexpected".into());
        let mut items = reply.into_iter();
        let (Some(Value::Int(acked)), Some(Value::Int(trimmed))) = (items.next(), items.next()) else {
            return Err(bad());
        };
        let taken = items
            .map(|v| match v {
                Value::BulkString(token) => String::from_utf8(token).map_err(|_| bad()),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FinishReport {
            acked: acked.max(0) as u64,
            taken,
            trimmed: trimmed.max(0) as u64,
        })
    }

    async fn set_working(&self, worker: &WorkerId, working: &Working) -> Result<(), StoreError> {
        let key = self.keys.worker(worker.as_str());
        let mut conn = self.conn.clone();
        match working_record(working) {
            WorkingWrite::Keep => Ok(()),
            WorkingWrite::Clear => conn.del::<_, ()>(key).await.map_err(store_err),
            WorkingWrite::Show(record) => conn.set::<_, _, ()>(key, record).await.map_err(store_err),
        }
    }

    async fn claim(&self, worker: &WorkerId, claims: &[Claim]) -> Result<Vec<ClaimOutcome>, StoreError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let w = worker.as_str();
        let mut inv = scripts::CLAIM.prepare_invoke();
        for c in claims {
            inv.key(self.keys.inflight(w, &c.queue))
                .key(self.keys.marks(&c.queue, &c.mark.block));
            inv.arg(&c.token).arg(c.mark.index).arg(c.until_ms);
        }
        let codes: Vec<i64> = inv.invoke_async(&mut self.conn.clone()).await.map_err(store_err)?;
        if codes.len() != claims.len() {
            return Err(StoreError::Protocol("claim script answered a wrong count".into()));
        }
        codes
            .into_iter()
            .map(|code| match code {
                0 => Ok(ClaimOutcome::Claimed),
                1 => Ok(ClaimOutcome::Replayed),
                2 => Ok(ClaimOutcome::Gone),
                _ => Err(StoreError::Protocol("claim script answered an unknown code".into())),
            })
            .collect()
    }

    async fn requeue(&self, worker: &WorkerId, jobs: &[FetchedJob]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let w = worker.as_str();
        let mut inv = scripts::REQUEUE.prepare_invoke();
        let mut pair_numbers: BTreeMap<&str, usize> = BTreeMap::new();
        for job in jobs {
            let next = pair_numbers.len() + 1;
            let n = *pair_numbers.entry(job.queue.as_str()).or_insert(next);
            if n == next {
                inv.key(self.keys.inflight(w, &job.queue))
                    .key(self.keys.queue(&job.queue));
            }
            inv.arg(n).arg(&job.token);
        }
        inv.invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(())
    }

    async fn register_worker(&self, worker: &WorkerId, started: &str, liveness_ttl_ms: u64) -> Result<(), StoreError> {
        let now = iso8601(self.server_time().await?);
        self.renew(worker.as_str(), started, liveness_ttl_ms, &now, true)
            .await
            .map(|_| ())
    }

    async fn set_paused(&self, worker: &WorkerId, paused: bool) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        if paused {
            conn.sadd::<_, _, ()>(self.keys.paused_workers(), worker.as_str()).await
        } else {
            conn.srem::<_, _, ()>(self.keys.paused_workers(), worker.as_str()).await
        }
        .map_err(store_err)
    }

    async fn heartbeat(&self, worker: &WorkerId) -> Result<(), StoreError> {
        let now = iso8601(self.server_time().await?);
        self.conn
            .clone()
            .hset::<_, _, _, ()>(self.keys.heartbeats(), worker.as_str(), now)
            .await
            .map_err(store_err)
    }

    async fn keep_alive(&self, worker: &WorkerId, started: &str, liveness_ttl_ms: u64) -> Result<bool, StoreError> {
        // The heartbeat is only written here if something removed it; the
        // heartbeat loop writes it from the server's clock.
        let now = iso8601(resq::clock::now_unix());
        self.renew(worker.as_str(), started, liveness_ttl_ms, &now, false).await
    }

    async fn unregister_worker(&self, worker: &WorkerId) -> Result<(), StoreError> {
        self.recover_worker(worker.as_str(), true, 0).await.map(|_| ())
    }

    async fn reap_dead_workers(&self, min_continuity: std::time::Duration) -> Result<ReapReport, StoreError> {
        let min_ms = min_continuity.as_millis().min(u128::from(u64::MAX)) as u64;
        let candidates: Vec<String> = self
            .conn
            .clone()
            .smembers(self.keys.resq_workers())
            .await
            .map_err(store_err)?;
        let mut report = ReapReport::default();
        for worker in candidates {
            let alive: bool = self
                .conn
                .clone()
                .exists(self.keys.alive(&worker))
                .await
                .map_err(store_err)?;
            if alive {
                continue;
            }
            match self.recover_worker(&worker, false, min_ms).await? {
                Recovery::Recovered(requeued) => {
                    report.requeued += requeued;
                    report.dead_workers.push(worker);
                }
                Recovery::Deferred => report.deferred.push(worker),
                Recovery::Alive => {}
            }
        }
        Ok(report)
    }

    async fn schedule(&self, job: &OutgoingJob, at_ms: u64) -> Result<(), StoreError> {
        self.conn
            .clone()
            .zadd::<_, _, _, ()>(self.keys.schedule(), &job.payload, at_ms)
            .await
            .map_err(store_err)
    }

    async fn promote_due(&self, now_ms: u64, limit: usize) -> Result<u64, StoreError> {
        let reply: Vec<Value> = scripts::PROMOTE
            .key(self.keys.schedule())
            .key(self.keys.retry())
            .key(self.keys.queues())
            .arg(now_ms)
            .arg(limit.max(1))
            .arg(self.keys.queue_prefix())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        let mut items = reply.into_iter();
        let Some(Value::Int(moved)) = items.next() else {
            return Err(StoreError::Protocol(
                "promote script answered something unexpected".into(),
            ));
        };
        let unroutable: Vec<Vec<u8>> = items
            .filter_map(|v| match v {
                Value::BulkString(job) => Some(job),
                _ => None,
            })
            .collect();
        if !unroutable.is_empty() {
            self.record_unroutable(&unroutable, now_ms).await?;
        }
        Ok(moved.max(0) as u64)
    }

    async fn schedule_range(&self, which: Schedule, start: u64, count: u64) -> Result<Vec<(String, u64)>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let key = match which {
            Schedule::Scheduled => self.keys.schedule(),
            Schedule::Retry => self.keys.retry(),
        };
        let stop = start.saturating_add(count - 1).min(i64::MAX as u64) as isize;
        let items: Vec<(Vec<u8>, f64)> = self
            .conn
            .clone()
            .zrange_withscores(key, start.min(i64::MAX as u64) as isize, stop)
            .await
            .map_err(store_err)?;
        Ok(items
            .into_iter()
            .map(|(p, at)| (String::from_utf8_lossy(&p).into_owned(), at as u64))
            .collect())
    }

    async fn schedule_len(&self, which: Schedule) -> Result<u64, StoreError> {
        let key = match which {
            Schedule::Scheduled => self.keys.schedule(),
            Schedule::Retry => self.keys.retry(),
        };
        self.conn.clone().zcard(key).await.map_err(store_err)
    }

    async fn schedule_remove(&self, which: Schedule, job: &str) -> Result<bool, StoreError> {
        let key = match which {
            Schedule::Scheduled => self.keys.schedule(),
            Schedule::Retry => self.keys.retry(),
        };
        let n: i64 = self.conn.clone().zrem(key, job).await.map_err(store_err)?;
        Ok(n > 0)
    }

    async fn schedule_run_now(&self, which: Schedule, job: &str, queue: &str) -> Result<bool, StoreError> {
        let key = match which {
            Schedule::Scheduled => self.keys.schedule(),
            Schedule::Retry => self.keys.retry(),
        };
        let reply: Vec<Value> = scripts::SCHEDULE_RUN
            .key(key)
            .key(self.keys.queues())
            .key(self.keys.queue(queue))
            .key(self.keys.queue_caps())
            .arg(job)
            .arg(queue)
            .arg(self.keys.wake_channel())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        match reply.as_slice() {
            [Value::Int(0)] => Ok(true),
            [Value::Int(1)] => Ok(false),
            [Value::Int(2), Value::BulkString(queue), Value::Int(cap), Value::Int(length)] => {
                Err(queue_full(queue, *cap, *length))
            }
            _ => Err(StoreError::Protocol(
                "schedule script answered something unexpected".into(),
            )),
        }
    }

    async fn expired_remove(&self, record: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .conn
            .clone()
            .lrem(self.keys.expired(), 1, record)
            .await
            .map_err(store_err)?;
        Ok(n > 0)
    }

    async fn enqueue_unique(
        &self,
        job: &OutgoingJob,
        unique: &resq::store::UniqueKey<'_>,
    ) -> Result<resq::store::Uniqueness, StoreError> {
        let window_ms = unique.window.as_millis().max(1) as u64;
        let reply = self
            .guarded_push(
                &scripts::ENQUEUE_UNIQUE,
                self.keys.unique(unique.class, unique.key),
                (unique.job_id, window_ms),
                job,
                None,
            )
            .await?;
        match reply.as_slice() {
            [Value::Int(0)] => Ok(resq::store::Uniqueness::Enqueued),
            [Value::Int(1), Value::BulkString(id)] => Ok(resq::store::Uniqueness::Duplicate(
                String::from_utf8_lossy(id).into_owned(),
            )),
            [Value::Int(2), Value::BulkString(queue), Value::Int(cap), Value::Int(length)] => {
                Err(queue_full(queue, *cap, *length))
            }
            _ => Err(StoreError::Protocol(
                "unique enqueue script answered something unexpected".into(),
            )),
        }
    }

    async fn cron_first_sight(&self, name: &str, passed_ms: u64) -> Result<bool, StoreError> {
        self.conn
            .clone()
            .hset_nx(self.keys.cron_last(), name, passed_ms)
            .await
            .map_err(store_err)
    }

    async fn fire_cron(
        &self,
        name: &str,
        tick_ms: u64,
        job: &OutgoingJob,
    ) -> Result<resq::store::CronFired, StoreError> {
        use resq::store::CronFired;
        let reply = self
            .guarded_push(&scripts::CRON_FIRE, self.keys.cron_last(), (name, tick_ms), job, None)
            .await?;
        match reply.as_slice() {
            [Value::Int(0), Value::Int(previous)] => Ok(CronFired::Fired {
                previous: u64::try_from(*previous).ok(),
            }),
            [Value::Int(1), Value::Int(last)] => Ok(CronFired::AlreadyFired {
                last: (*last).max(0) as u64,
            }),
            [Value::Int(2), Value::BulkString(queue), Value::Int(cap), Value::Int(length)] => {
                Err(queue_full(queue, *cap, *length))
            }
            _ => Err(StoreError::Protocol("cron script answered something unexpected".into())),
        }
    }

    async fn cron_last_fired(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let marks: Vec<(String, String)> = self
            .conn
            .clone()
            .hgetall(self.keys.cron_last())
            .await
            .map_err(store_err)?;
        // Marks are written by the script only; one that is not a number is
        // left out rather than trusted.
        Ok(marks
            .into_iter()
            .filter_map(|(name, tick)| Some((name, tick.parse().ok()?)))
            .collect())
    }

    async fn sweep_expired(
        &self,
        now_ms: u64,
        owner: &str,
        every: std::time::Duration,
    ) -> Result<Option<u64>, StoreError> {
        let removed: i64 = scripts::SWEEP
            .key(self.keys.sweep_lock())
            .key(self.keys.expired())
            .key(self.keys.queues())
            .key(self.keys.schedule())
            .key(self.keys.retry())
            .key(self.keys.expired_count())
            .arg(now_ms)
            .arg(owner)
            .arg(every.as_millis().max(1) as u64)
            .arg(1000)
            .arg(1000)
            .arg(self.keys.queue_prefix())
            .arg(resq::clock::iso8601(now_ms as f64 / 1000.0))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(u64::try_from(removed).ok())
    }

    async fn expired_range(&self, start: u64, count: u64) -> Result<Vec<String>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let stop = start.saturating_add(count - 1).min(i64::MAX as u64) as isize;
        self.conn
            .clone()
            .lrange(self.keys.expired(), start.min(i64::MAX as u64) as isize, stop)
            .await
            .map_err(store_err)
    }

    async fn expired_total(&self) -> Result<u64, StoreError> {
        let v: Option<u64> = self
            .conn
            .clone()
            .get(self.keys.expired_count())
            .await
            .map_err(store_err)?;
        Ok(v.unwrap_or(0))
    }

    async fn set_queue_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        if paused {
            conn.sadd::<_, _, ()>(self.keys.paused_queues(), queue)
                .await
                .map_err(store_err)
        } else {
            conn.srem::<_, _, ()>(self.keys.paused_queues(), queue)
                .await
                .map_err(store_err)
        }
    }

    async fn paused_queues(&self) -> Result<Vec<String>, StoreError> {
        let mut q: Vec<String> = self
            .conn
            .clone()
            .smembers(self.keys.paused_queues())
            .await
            .map_err(store_err)?;
        q.sort();
        Ok(q)
    }

    async fn set_queue_cap(&self, queue: &str, cap: Option<u64>) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        match cap {
            Some(cap) => conn
                .hset::<_, _, _, ()>(self.keys.queue_caps(), queue, cap)
                .await
                .map_err(store_err)?,
            None => conn
                .hdel::<_, _, ()>(self.keys.queue_caps(), queue)
                .await
                .map_err(store_err)?,
        }
        // This process sees its own change at once; others within a second.
        if let Ok(mut cache) = self.caps.lock() {
            *cache = None;
        }
        Ok(())
    }

    async fn queue_caps(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let caps: BTreeMap<String, u64> = self
            .conn
            .clone()
            .hgetall(self.keys.queue_caps())
            .await
            .map_err(store_err)?;
        Ok(caps.into_iter().collect())
    }

    fn wakeups(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.wake.get_or_init(|| self.start_wake_listener()).clone())
    }

    async fn paused_all(&self) -> Result<bool, StoreError> {
        let v: Option<String> = self.conn.clone().get(self.keys.pause_all()).await.map_err(store_err)?;
        Ok(v.as_deref() == Some("true"))
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let (p, f): (Option<String>, Option<String>) = redis::pipe()
            .get(self.keys.stat("processed"))
            .get(self.keys.stat("failed"))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(StoreStats {
            processed: opt_u64(p),
            failed: opt_u64(f),
        })
    }

    async fn queue_sizes(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut names = self.queues().await?;
        if names.is_empty() {
            return Ok(Vec::new()); // Redis refuses an empty pipeline
        }
        names.sort();
        let mut pipe = redis::pipe();
        for q in &names {
            pipe.llen(self.keys.queue(q));
        }
        let sizes: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await.map_err(store_err)?;
        Ok(names.into_iter().zip(sizes).collect())
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        let mut ids: Vec<String> = self
            .conn
            .clone()
            .smembers(self.keys.workers())
            .await
            .map_err(store_err)?;
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            type Row = (
                Option<String>,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<String>,
                bool,
                bool,
            );
            let (started, heartbeat, working, processed, failed, resq, paused): Row = redis::pipe()
                .get(self.keys.worker_started(&id))
                .hget(self.keys.heartbeats(), &id)
                .get(self.keys.worker(&id))
                .get(self.keys.worker_stat("processed", &id))
                .get(self.keys.worker_stat("failed", &id))
                .sismember(self.keys.resq_workers(), &id)
                .sismember(self.keys.paused_workers(), &id)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(store_err)?;
            out.push(WorkerRecord {
                id,
                started,
                heartbeat,
                working,
                processed: opt_u64(processed),
                failed: opt_u64(failed),
                resq,
                paused,
            });
        }
        Ok(out)
    }

    async fn failed_len(&self) -> Result<u64, StoreError> {
        self.conn.clone().llen(self.keys.failed()).await.map_err(store_err)
    }

    async fn failed_range(&self, start: u64, count: u64) -> Result<Vec<String>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let stop = start.saturating_add(count - 1);
        let (start, stop) = (start.min(i64::MAX as u64) as isize, stop.min(i64::MAX as u64) as isize);
        let raw: Vec<Vec<u8>> = self
            .conn
            .clone()
            .lrange(self.keys.failed(), start, stop)
            .await
            .map_err(store_err)?;
        Ok(raw
            .into_iter()
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .collect())
    }

    async fn failed_remove(&self, record: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .conn
            .clone()
            .lrem(self.keys.failed(), 1, record)
            .await
            .map_err(store_err)?;
        Ok(n > 0)
    }

    async fn failed_requeue(
        &self,
        record: &str,
        job: &OutgoingJob,
        release: Option<&resq::mark::Mark>,
    ) -> Result<bool, StoreError> {
        let (marks, bit) = match release {
            Some(mark) => (self.keys.marks(&job.queue, &mark.block), i64::from(mark.index)),
            None => (self.keys.marks(&job.queue, "-"), -1),
        };
        let n: i64 = scripts::FAILED_REQUEUE
            .key(self.keys.failed())
            .key(self.keys.queues())
            .key(self.keys.queue(&job.queue))
            .key(marks)
            .arg(record)
            .arg(&job.queue)
            .arg(&job.payload)
            .arg(bit)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(n == 1)
    }

    async fn failed_clear(&self) -> Result<u64, StoreError> {
        let (n,): (u64,) = redis::pipe()
            .atomic()
            .llen(self.keys.failed())
            .del(self.keys.failed())
            .ignore()
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(n)
    }
}

/// A working-record update in Resque's bytes.
enum WorkingWrite {
    Keep,
    Clear,
    Show(Vec<u8>),
}

/// Resque's `worker:<id>` record: `{"queue":..,"run_at":"<ISO 8601>","payload":{..}}`.
/// The payload is embedded as stored: the worker shows only jobs that
/// decoded as objects with a string `class` and an array `args`.
fn working_record(working: &Working) -> WorkingWrite {
    match working {
        Working::Keep => WorkingWrite::Keep,
        Working::Clear => WorkingWrite::Clear,
        Working::Show(record) => {
            let head = serde_json::json!({"queue": record.queue, "run_at": iso8601(record.run_at)}).to_string();
            // `{"queue":..,"run_at":..}` + `,"payload":` + payload + `}`
            let mut bytes = Vec::with_capacity(head.len() + record.payload.len() + 12);
            bytes.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
            bytes.extend_from_slice(b",\"payload\":");
            bytes.extend_from_slice(&record.payload);
            bytes.push(b'}');
            WorkingWrite::Show(bytes)
        }
    }
}

/// A script's "queue full" answer as the error it is.
fn queue_full(queue: &[u8], cap: i64, length: i64) -> StoreError {
    StoreError::QueueFull {
        queue: String::from_utf8_lossy(queue).into_owned(),
        cap: cap.max(0) as u64,
        length: length.max(0) as u64,
    }
}
