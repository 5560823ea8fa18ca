//! [`Schedules`] over Redis: two sorted sets (jobs for later, retries)
//! scored by when they are due, the expiry sweep, and recurring ticks.

use async_trait::async_trait;
use redis::{AsyncCommands, Value};

use resq::clock::UnixMs;
use resq::policy::Sealed;
use resq::store::{
    CronFired, ExpiredRecord, JobQueues, KeepPayload, NewFailure, Promoted, Schedule, ScheduledJob, Schedules,
    StoreError, SweepTurn,
};
use resq::{FailureInfo, Reason};

use super::{index_range, protocol, queue_full, store_err, RedisStore};
use crate::keys::Keys;
use crate::resque;
use crate::scripts;

/// The queue a failure record names when its job named none.
pub const UNROUTABLE_QUEUE: &str = "resq.unroutable";

fn schedule_key(keys: &Keys, which: Schedule) -> String {
    match which {
        Schedule::Scheduled => keys.schedule(),
        Schedule::Retry => keys.retry(),
    }
}

impl RedisStore {
    /// Each keyspace's schedule `which` and its length, in order.
    async fn schedule_lengths(&self, which: Schedule) -> Result<Vec<(Keys, u64)>, StoreError> {
        let keyspaces = self.keyspaces().await?;
        let lengths = futures::future::try_join_all(keyspaces.iter().map(|keys| {
            let key = schedule_key(keys, which);
            let mut conn = self.conn.clone();
            async move { conn.zcard::<_, u64>(key).await.map_err(store_err) }
        }))
        .await?;
        Ok(keyspaces.into_iter().zip(lengths).collect())
    }

    /// Jobs `start..start+count` of one keyspace's schedule `which`.
    async fn schedule_page(
        &self,
        keys: &Keys,
        which: Schedule,
        start: u64,
        count: u64,
    ) -> Result<Vec<ScheduledJob>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let (first, last) = index_range(start, count);
        let items: Vec<(Vec<u8>, f64)> = self
            .conn
            .clone()
            .zrange_withscores(schedule_key(keys, which), first, last)
            .await
            .map_err(store_err)?;
        Ok(items
            .into_iter()
            .map(|(payload, at)| ScheduledJob {
                due: UnixMs(if at.is_finite() && at > 0.0 { at as u64 } else { 0 }),
                payload,
            })
            .collect())
    }

    /// Promotes due jobs of one keyspace's schedules.
    async fn promote_in(&self, keys: &Keys, now: UnixMs, limit: usize) -> Result<Promoted, StoreError> {
        // In cluster mode a job moves only to the queue whose keyspace holds
        // it: one naming another queue is unroutable there.
        let only = keys
            .is_cluster()
            .then(|| keys.own_queue())
            .flatten()
            .unwrap_or_default();
        let reply: Vec<Value> = scripts::PROMOTE
            .key(keys.schedule())
            .key(keys.retry())
            .key(keys.queues())
            .key(keys.queue_caps())
            .arg(now.0)
            .arg(limit.max(1))
            .arg(keys.queue_prefix())
            .arg(keys.wake_channel())
            .arg(only)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        let mut items = reply.into_iter();
        let (Some(Value::Int(moved)), Some(Value::Int(held))) = (items.next(), items.next()) else {
            return Err(protocol("a promotion reply it does not know"));
        };
        let unroutable: Vec<Vec<u8>> = items
            .filter_map(|v| match v {
                Value::BulkString(job) => Some(job),
                _ => None,
            })
            .collect();
        if !unroutable.is_empty() {
            // Recorded as failures (`malformed_payload`) under a queue of
            // their own, so a retry from resque-web has somewhere to go.
            let failure = NewFailure {
                info: FailureInfo::of(
                    Reason::MalformedPayload,
                    "a scheduled job names no valid queue; it was taken out of the schedule",
                ),
                keep: KeepPayload::Bounded { class: None },
                at: now,
            };
            let records: Vec<(&[u8], &NewFailure, &str)> = unroutable
                .iter()
                .map(|job| (job.as_slice(), &failure, UNROUTABLE_QUEUE))
                .collect();
            self.record_failures(&records).await?;
            tracing::warn!(
                jobs = unroutable.len(),
                "scheduled jobs that name no valid queue were recorded as failed"
            );
        }
        Ok(Promoted {
            moved: moved.max(0) as u64,
            held: held.max(0) as u64,
            unroutable: unroutable.len() as u64,
        })
    }
}

#[async_trait]
impl Schedules for RedisStore {
    /// In the job's queue's keyspace (cluster mode: its slot).
    async fn schedule(&self, job: &Sealed, at: UnixMs) -> Result<(), StoreError> {
        let keys = self.keys.for_queue(job.queue());
        if keys.is_cluster() {
            self.register_queues([job.queue()]).await?;
        }
        let (mut conn, wait) = self.durable();
        let Some(wait) = wait else {
            return conn
                .zadd::<_, _, _, ()>(keys.schedule(), job.payload(), at.0)
                .await
                .map_err(store_err);
        };
        // The producer's acknowledgement: ZADD and WAIT in one round trip.
        let mut pipe = redis::pipe();
        pipe.zadd(keys.schedule(), job.payload(), at.0);
        super::add_wait(&mut pipe, wait);
        let replies: Vec<redis::RedisResult<Value>> =
            pipe.ignore_errors().query_async(&mut conn).await.map_err(store_err)?;
        let mut replies = replies.into_iter();
        let (Some(added), Some(waited)) = (replies.next(), replies.next()) else {
            return Err(protocol("a schedule pipeline without two replies"));
        };
        added.map_err(store_err)?;
        super::replicated(waited, wait)
    }

    /// In cluster mode, each queue's schedules in turn, `limit` jobs in all.
    async fn promote_due(&self, now: UnixMs, limit: usize) -> Result<Promoted, StoreError> {
        let mut all = Promoted::default();
        for keys in self.keyspaces().await? {
            let left = limit
                .max(1)
                .saturating_sub(all.moved as usize + all.unroutable as usize);
            if left == 0 {
                break;
            }
            let got = self.promote_in(&keys, now, left).await?;
            all.moved += got.moved;
            all.held += got.held;
            all.unroutable += got.unroutable;
        }
        Ok(all)
    }

    /// In cluster mode, the queues' schedules one after the other.
    async fn schedule_range(&self, which: Schedule, start: u64, count: u64) -> Result<Vec<ScheduledJob>, StoreError> {
        if !self.keys.is_cluster() {
            return self.schedule_page(&self.keys, which, start, count).await;
        }
        let mut out = Vec::new();
        let (mut skip, mut left) = (start, count);
        for (keys, len) in self.schedule_lengths(which).await? {
            if left == 0 {
                break;
            }
            if skip >= len {
                skip -= len;
                continue;
            }
            let page = self.schedule_page(&keys, which, skip, left.min(len - skip)).await?;
            left = left.saturating_sub(page.len() as u64);
            skip = 0;
            out.extend(page);
        }
        Ok(out)
    }

    async fn schedule_len(&self, which: Schedule) -> Result<u64, StoreError> {
        if !self.keys.is_cluster() {
            return self
                .conn
                .clone()
                .zcard(schedule_key(&self.keys, which))
                .await
                .map_err(store_err);
        }
        Ok(self.schedule_lengths(which).await?.iter().map(|(_, n)| n).sum())
    }

    async fn schedule_remove(&self, which: Schedule, job: &ScheduledJob) -> Result<bool, StoreError> {
        for keys in self.keyspaces().await? {
            let n: i64 = self
                .conn
                .clone()
                .zrem(schedule_key(&keys, which), &job.payload)
                .await
                .map_err(store_err)?;
            if n > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// In cluster mode, from the schedule of `queue`'s keyspace (where the
    /// job waits: a job is scheduled in its own queue's).
    async fn schedule_run_now(&self, which: Schedule, job: &ScheduledJob, queue: &str) -> Result<bool, StoreError> {
        let keys = self.keys.for_queue(queue);
        let reply: Vec<Value> = scripts::SCHEDULE_RUN
            .key(schedule_key(&keys, which))
            .key(keys.queues())
            .key(keys.queue(queue))
            .key(keys.queue_caps())
            .arg(&job.payload)
            .arg(queue)
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
            _ => Err(protocol("a schedule reply it does not know")),
        }
    }

    /// In cluster mode each queue's keyspace has its own turn (its own
    /// lock): `None` only when no keyspace's turn was this caller's.
    async fn sweep_expired(&self, turn: &SweepTurn<'_>) -> Result<Option<u64>, StoreError> {
        let mut swept: Option<u64> = None;
        for keys in self.keyspaces().await? {
            let removed: i64 = scripts::SWEEP
                .key(keys.sweep_lock())
                .key(keys.expired())
                .key(keys.queues())
                .key(keys.schedule())
                .key(keys.retry())
                .key(keys.expired_count())
                .arg(turn.now.0)
                .arg(turn.owner)
                .arg(turn.every.as_millis().clamp(1, u128::from(u64::MAX)) as u64)
                .arg(resq::store::SWEEP_BATCH)
                .arg(1000)
                .arg(keys.queue_prefix())
                .arg(resque::time::iso8601(turn.now))
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(store_err)?;
            if let Ok(n) = u64::try_from(removed) {
                swept = Some(swept.unwrap_or(0) + n);
            }
        }
        Ok(swept)
    }

    /// In cluster mode, the queues' lists one after the other.
    async fn expired_range(&self, start: u64, count: u64) -> Result<Vec<ExpiredRecord>, StoreError> {
        if !self.keys.is_cluster() {
            let raw = self.list_page(self.keys.expired(), start, count).await?;
            return Ok(raw.iter().map(|bytes| resque::expired::parse(bytes)).collect());
        }
        let mut out = Vec::new();
        let (mut skip, mut left) = (start, count);
        for keys in self.keyspaces().await? {
            if left == 0 {
                break;
            }
            let len: u64 = self.conn.clone().llen(keys.expired()).await.map_err(store_err)?;
            if skip >= len {
                skip -= len;
                continue;
            }
            let raw = self.list_page(keys.expired(), skip, left.min(len - skip)).await?;
            left -= raw.len() as u64;
            skip = 0;
            out.extend(raw.iter().map(|bytes| resque::expired::parse(bytes)));
        }
        Ok(out)
    }

    async fn expired_total(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for keys in self.keyspaces().await? {
            let v: Option<u64> = self.conn.clone().get(keys.expired_count()).await.map_err(store_err)?;
            total += v.unwrap_or(0);
        }
        Ok(total)
    }

    async fn expired_remove(&self, record: &ExpiredRecord) -> Result<bool, StoreError> {
        for keys in self.keyspaces().await? {
            let n: i64 = self
                .conn
                .clone()
                .lrem(keys.expired(), 1, &record.stored.0)
                .await
                .map_err(store_err)?;
            if n > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// In cluster mode the mark (the fleet's slot) comes first, then the
    /// push (the queue's): a tick fires at most once, and a tick whose push
    /// fails (the queue's master away) is spent, logged, not fired again.
    async fn fire_cron(&self, name: &str, tick: UnixMs, job: &Sealed) -> Result<CronFired, StoreError> {
        let reply: Vec<Value> = if self.keys.is_cluster() {
            let marked: Vec<Value> = scripts::CRON_MARK
                .key(self.keys.cron_last())
                .arg(name)
                .arg(tick.0)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(store_err)?;
            if let [Value::Int(0), _] = marked.as_slice() {
                if let Err(e) = self.enqueue(std::slice::from_ref(job)).await {
                    if !matches!(e, StoreError::QueueFull { .. }) {
                        tracing::warn!(entry = %name, error = %e, "a recurring job's tick was marked but not pushed");
                    }
                    return Err(e);
                }
            }
            marked
        } else {
            self.guarded_push(&scripts::CRON_FIRE, self.keys.cron_last(), (name, tick.0), job, false)
                .await?
        };
        match reply.as_slice() {
            [Value::Int(0), Value::Int(previous)] => Ok(CronFired::Fired {
                previous: u64::try_from(*previous).ok().map(UnixMs),
            }),
            [Value::Int(1), Value::Int(last)] => Ok(CronFired::AlreadyFired {
                last: UnixMs((*last).max(0) as u64),
            }),
            [Value::Int(2), Value::BulkString(queue), Value::Int(cap), Value::Int(length)] => {
                Err(queue_full(queue, *cap, *length))
            }
            _ => Err(protocol("a recurring-job reply it does not know")),
        }
    }

    async fn cron_first_sight(&self, name: &str, passed: UnixMs) -> Result<bool, StoreError> {
        self.conn
            .clone()
            .hset_nx(self.keys.cron_last(), name, passed.0)
            .await
            .map_err(store_err)
    }

    async fn cron_last_fired(&self) -> Result<Vec<(String, UnixMs)>, StoreError> {
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
            .filter_map(|(name, tick)| Some((name, UnixMs(tick.parse().ok()?))))
            .collect())
    }
}
