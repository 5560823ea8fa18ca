//! [`AdminStore`] over Redis: stats, queues, workers (Ruby's included), the
//! failed list with its index by id, and queue controls.

use std::collections::BTreeMap;

use async_trait::async_trait;
use redis::{AsyncCommands, Value};

use resq::mark::Mark;
use resq::store::{AdminStore, FailureRecord, StoreError, StoreStats, WorkerRecord};

use super::{opt_u64, protocol, queue_full, store_err, RedisStore};
use crate::keys::Keys;
use crate::resque;
use crate::scripts;

impl RedisStore {
    /// Each keyspace's failed list and its length, in order.
    async fn failed_lengths(&self) -> Result<Vec<(Keys, u64)>, StoreError> {
        let keyspaces = self.keyspaces().await?;
        let lengths = futures::future::try_join_all(keyspaces.iter().map(|keys| {
            let key = keys.failed();
            let mut conn = self.conn.clone();
            async move { conn.llen::<_, u64>(key).await.map_err(store_err) }
        }))
        .await?;
        Ok(keyspaces.into_iter().zip(lengths).collect())
    }

    /// Where a failure record may be: its queue's keyspace first (cluster
    /// mode), then every other.
    async fn failure_homes(&self, record: &FailureRecord) -> Result<Vec<Keys>, StoreError> {
        if !self.keys.is_cluster() {
            return Ok(vec![self.keys.clone()]);
        }
        let mut homes = Vec::new();
        if let Some(queue) = &record.queue {
            homes.push(self.keys.for_queue(queue).into_owned());
        }
        homes.extend(self.keyspaces().await?);
        Ok(homes)
    }
}

#[async_trait]
impl AdminStore for RedisStore {
    /// In cluster mode, the sums of every queue's counts.
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let each = self.keyspaces().await?.into_iter().map(|keys| {
            let mut conn = self.conn.clone();
            async move {
                let (p, f, t): (Option<String>, Option<String>, Option<String>) = redis::pipe()
                    .get(keys.stat("processed"))
                    .get(keys.stat("failed"))
                    .get(keys.failed_trimmed())
                    .query_async(&mut conn)
                    .await
                    .map_err(store_err)?;
                Ok::<_, StoreError>((opt_u64(p), opt_u64(f), opt_u64(t)))
            }
        });
        let mut stats = StoreStats::default();
        for (p, f, t) in futures::future::try_join_all(each).await? {
            stats.processed += p;
            stats.failed += f;
            stats.failed_trimmed += t;
        }
        Ok(stats)
    }

    async fn queue_sizes(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut names: Vec<String> = self
            .conn
            .clone()
            .smembers(self.keys.queues())
            .await
            .map_err(store_err)?;
        if names.is_empty() {
            return Ok(Vec::new()); // Redis refuses an empty pipeline
        }
        names.sort();
        if self.keys.is_cluster() {
            let sizes = futures::future::try_join_all(names.iter().map(|q| {
                let key = self.keys.for_queue(q).queue(q);
                let mut conn = self.conn.clone();
                async move { conn.llen::<_, u64>(key).await.map_err(store_err) }
            }))
            .await?;
            return Ok(names.into_iter().zip(sizes).collect());
        }
        let mut pipe = redis::pipe();
        for q in &names {
            pipe.llen(self.keys.queue(q));
        }
        let sizes: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await.map_err(store_err)?;
        Ok(names.into_iter().zip(sizes).collect())
    }

    async fn worker_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = self
            .conn
            .clone()
            .smembers(self.keys.workers())
            .await
            .map_err(store_err)?;
        ids.sort();
        Ok(ids)
    }

    async fn worker_records(&self, ids: &[String]) -> Result<Vec<WorkerRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new()); // Redis refuses an empty pipeline
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.get(self.keys.worker_started(id))
                .hget(self.keys.heartbeats(), id)
                .get(self.keys.worker(id))
                .get(self.keys.worker_stat("processed", id))
                .get(self.keys.worker_stat("failed", id))
                .sismember(self.keys.resq_workers(), id)
                .sismember(self.keys.paused_workers(), id);
        }
        type Row = (
            Option<String>,
            Option<String>,
            Option<Vec<u8>>,
            Option<String>,
            Option<String>,
            bool,
            bool,
        );
        let values: Vec<Value> = pipe.query_async(&mut self.conn.clone()).await.map_err(store_err)?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, row) in ids.iter().zip(values.chunks(7)) {
            let (started, heartbeat, working, processed, failed, resq, paused): Row =
                redis::from_redis_value(Value::Array(row.to_vec())).map_err(|_| protocol("a worker record"))?;
            let (processed, failed) = if self.keys.is_cluster() {
                self.worker_counts(id).await?
            } else {
                (opt_u64(processed), opt_u64(failed))
            };
            out.push(WorkerRecord {
                id: id.clone(),
                started: started.as_deref().and_then(resque::time::parse),
                heartbeat: heartbeat.as_deref().and_then(resque::time::parse),
                busy: working.is_some(),
                working: working.as_deref().and_then(resque::working::parse),
                processed,
                failed,
                resq,
                paused,
            });
        }
        Ok(out)
    }

    async fn in_flight(&self, worker: &str, start: u64, count: u64) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut queues: Vec<String> = self
            .conn
            .clone()
            .smembers(self.keys.inflight_queues(worker))
            .await
            .map_err(store_err)?;
        queues.sort();
        // Each in-flight hash holds at most the worker's concurrency of jobs
        // beside their claims ("c<token>") and batches ("b<first>"): reading
        // them is bounded by the concurrency (at most 1,024), whatever the
        // queues hold.
        let mut jobs: Vec<(String, u64, Vec<u8>)> = Vec::new();
        for queue in queues {
            let keys = self.keys.for_queue(&queue);
            let fields: Vec<(String, String)> = self
                .conn
                .clone()
                .hgetall(keys.inflight(worker, &queue))
                .await
                .map_err(store_err)?;
            // token -> the first token of its batch; the jobs are read
            // from the batches' lists (one read a batch). A batch gone
            // meanwhile (its jobs acked) is left out.
            let mut batches: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for (field, first) in fields {
                if let (Ok(token), Ok(first)) = (field.parse::<u64>(), first.parse::<u64>()) {
                    batches.entry(first).or_default().push(token);
                }
            }
            let mut pipe = redis::pipe();
            for first in batches.keys() {
                pipe.lrange(format!("{}:{first}", keys.inflight_batches(worker, &queue)), 0, -1);
            }
            let lists: Vec<Vec<Vec<u8>>> = pipe.query_async(&mut self.conn.clone()).await.map_err(store_err)?;
            for ((first, tokens), list) in batches.into_iter().zip(lists) {
                let mut list: Vec<Option<Vec<u8>>> = list.into_iter().map(Some).collect();
                for token in tokens {
                    let job = token
                        .checked_sub(first)
                        .and_then(|i| usize::try_from(i).ok())
                        .and_then(|i| list.get_mut(i))
                        .and_then(Option::take);
                    if let Some(job) = job {
                        jobs.push((queue.clone(), token, job));
                    }
                }
            }
        }
        jobs.sort_by_key(|(_, token, _)| *token);
        Ok(jobs
            .into_iter()
            .skip(usize::try_from(start).unwrap_or(usize::MAX))
            .take(usize::try_from(count).unwrap_or(usize::MAX))
            .map(|(queue, _, job)| (queue, job))
            .collect())
    }

    async fn in_flight_count(&self, worker: &str) -> Result<u64, StoreError> {
        let queues: Vec<String> = self
            .conn
            .clone()
            .smembers(self.keys.inflight_queues(worker))
            .await
            .map_err(store_err)?;
        let mut count = 0;
        for queue in queues {
            // Field names only: jobs are numeric tokens, claims `c<token>`.
            let fields: Vec<String> = self
                .conn
                .clone()
                .hkeys(self.keys.for_queue(&queue).inflight(worker, &queue))
                .await
                .map_err(store_err)?;
            count += fields.iter().filter(|f| f.parse::<u64>().is_ok()).count() as u64;
        }
        Ok(count)
    }

    async fn queue_range(&self, queue: &str, start: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.list_page(self.keys.for_queue(queue).queue(queue), start, count)
            .await
    }

    async fn queue_remove(&self, queue: &str, job: &[u8]) -> Result<bool, StoreError> {
        let n: i64 = self
            .conn
            .clone()
            .lrem(self.keys.for_queue(queue).queue(queue), 1, job)
            .await
            .map_err(store_err)?;
        Ok(n > 0)
    }

    async fn failed_len(&self) -> Result<u64, StoreError> {
        if !self.keys.is_cluster() {
            return self.conn.clone().llen(self.keys.failed()).await.map_err(store_err);
        }
        Ok(self.failed_lengths().await?.iter().map(|(_, n)| n).sum())
    }

    /// In cluster mode, the queues' failed lists one after the other (by
    /// queue name), each oldest first.
    async fn failed_range(&self, start: u64, count: u64) -> Result<Vec<FailureRecord>, StoreError> {
        if !self.keys.is_cluster() {
            let raw = self.list_page(self.keys.failed(), start, count).await?;
            return Ok(raw.iter().map(|bytes| resque::failure::parse(bytes)).collect());
        }
        let mut out = Vec::new();
        let (mut skip, mut left) = (start, count);
        for (keys, len) in self.failed_lengths().await? {
            if left == 0 {
                break;
            }
            if skip >= len {
                skip -= len;
                continue;
            }
            let raw = self.list_page(keys.failed(), skip, left.min(len - skip)).await?;
            left -= raw.len() as u64;
            skip = 0;
            out.extend(raw.iter().map(|bytes| resque::failure::parse(bytes)));
        }
        Ok(out)
    }

    async fn failed_get(&self, id: &str) -> Result<Option<FailureRecord>, StoreError> {
        for keys in self.keyspaces().await? {
            let bytes: Option<Vec<u8>> = self
                .conn
                .clone()
                .hget(keys.failure_index(), id)
                .await
                .map_err(store_err)?;
            if let Some(b) = bytes {
                return Ok(Some(resque::failure::parse(&b)));
            }
        }
        Ok(None)
    }

    async fn failed_remove(&self, record: &FailureRecord) -> Result<bool, StoreError> {
        for keys in self.failure_homes(record).await? {
            let n: i64 = scripts::FAILED_REMOVE
                .key(keys.failed())
                .key(keys.failure_index())
                .arg(&record.stored.0)
                .arg(record.id.as_deref().unwrap_or(""))
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(store_err)?;
            if n == 1 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn failed_requeue(
        &self,
        record: &FailureRecord,
        queue: &str,
        release: Option<&Mark>,
    ) -> Result<bool, StoreError> {
        let payload = record
            .payload
            .as_deref()
            .ok_or(protocol("a failure record that keeps no payload cannot be requeued"))?;
        let keys = self.keys.for_queue(queue);
        if keys.is_cluster() {
            // The record and the queue must share a slot: a failure is
            // retried on the queue it failed on (the record's own).
            if record.queue.as_deref().is_some_and(|own| own != queue) {
                return Err(StoreError::Refused(resq::store::BackendError::message(
                    "in cluster mode a failure is retried on the queue it failed on",
                )));
            }
            self.register_queues([queue]).await?;
        }
        let (marks, bit) = match release {
            Some(mark) => (keys.marks(queue, &mark.block), i64::from(mark.index)),
            None => (keys.marks(queue, "-"), -1),
        };
        let reply: Vec<Value> = scripts::FAILED_REQUEUE
            .key(keys.failed())
            .key(keys.queues())
            .key(keys.queue(queue))
            .key(marks)
            .key(keys.failure_index())
            .key(keys.queue_caps())
            .arg(&record.stored.0)
            .arg(queue)
            .arg(payload)
            .arg(bit)
            .arg(record.id.as_deref().unwrap_or(""))
            .arg(keys.wake_channel())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        match reply.as_slice() {
            [Value::Int(0)] => Ok(true),
            [Value::Int(1)] => Ok(false),
            [Value::Int(2), Value::BulkString(queue), Value::Int(cap), Value::Int(length)] => {
                Err(queue_full(queue, *cap, *length))
            }
            _ => Err(protocol("a failure retry reply it does not know")),
        }
    }

    async fn failed_clear(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for keys in self.keyspaces().await? {
            let (n,): (u64,) = redis::pipe()
                .atomic()
                .llen(keys.failed())
                .del(keys.failed())
                .ignore()
                .del(keys.failure_index())
                .ignore()
                .query_async(&mut self.conn.clone())
                .await
                .map_err(store_err)?;
            total += n;
        }
        Ok(total)
    }

    /// In cluster mode the flag the workers read is in the queue's own
    /// keyspace (their fetch reads it in the queue's slot); the fleet's list
    /// names the paused queues for the dashboard. Written there first, so a
    /// queue listed as paused is paused.
    async fn set_queue_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let own = self.keys.for_queue(queue);
        let mut lists = vec![own.paused_queues()];
        if own.is_cluster() {
            lists.push(self.keys.paused_queues());
        }
        for list in lists {
            if paused {
                conn.sadd::<_, _, ()>(list, queue).await
            } else {
                conn.srem::<_, _, ()>(list, queue).await
            }
            .map_err(store_err)?;
        }
        Ok(())
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

    /// In cluster mode, as a pause: the cap the scripts read is in the
    /// queue's keyspace, the fleet's hash lists the capped queues.
    async fn set_queue_cap(&self, queue: &str, cap: Option<u64>) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let own = self.keys.for_queue(queue);
        let mut hashes = vec![own.queue_caps()];
        if own.is_cluster() {
            hashes.push(self.keys.queue_caps());
        }
        for hash in hashes {
            match cap {
                Some(cap) => conn.hset::<_, _, _, ()>(hash, queue, cap).await.map_err(store_err)?,
                None => conn.hdel::<_, _, ()>(hash, queue).await.map_err(store_err)?,
            }
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

    async fn paused_all(&self) -> Result<bool, StoreError> {
        let v: Option<String> = self.conn.clone().get(self.keys.pause_all()).await.map_err(store_err)?;
        Ok(v.as_deref() == Some("true"))
    }
}
