//! [`Schedules`] over Redis: two sorted sets (jobs for later, retries)
//! scored by when they are due, the expiry sweep, and recurring ticks.

use async_trait::async_trait;
use redis::{AsyncCommands, Value};

use resq::clock::UnixMs;
use resq::policy::Sealed;
use resq::store::{
    CronFired, ExpiredRecord, KeepPayload, NewFailure, Promoted, Schedule, ScheduledJob, Schedules, StoreError,
    SweepTurn,
};
use resq::{FailureInfo, Reason};

use super::{index_range, protocol, queue_full, store_err, RedisStore};
use crate::resque;
use crate::scripts;

/// The queue a failure record names when its job named none.
pub const UNROUTABLE_QUEUE: &str = "resq.unroutable";

impl RedisStore {
    fn schedule_key(&self, which: Schedule) -> String {
        match which {
            Schedule::Scheduled => self.keys.schedule(),
            Schedule::Retry => self.keys.retry(),
        }
    }
}

#[async_trait]
impl Schedules for RedisStore {
    async fn schedule(&self, job: &Sealed, at: UnixMs) -> Result<(), StoreError> {
        let (mut conn, wait) = self.durable();
        let Some(wait) = wait else {
            return conn
                .zadd::<_, _, _, ()>(self.keys.schedule(), job.payload(), at.0)
                .await
                .map_err(store_err);
        };
        // The producer's acknowledgement: ZADD and WAIT in one round trip.
        let mut pipe = redis::pipe();
        pipe.zadd(self.keys.schedule(), job.payload(), at.0);
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

    async fn promote_due(&self, now: UnixMs, limit: usize) -> Result<Promoted, StoreError> {
        let reply: Vec<Value> = scripts::PROMOTE
            .key(self.keys.schedule())
            .key(self.keys.retry())
            .key(self.keys.queues())
            .key(self.keys.queue_caps())
            .arg(now.0)
            .arg(limit.max(1))
            .arg(self.keys.queue_prefix())
            .arg(self.keys.wake_channel())
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

    async fn schedule_range(&self, which: Schedule, start: u64, count: u64) -> Result<Vec<ScheduledJob>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let (start, stop) = index_range(start, count);
        let items: Vec<(Vec<u8>, f64)> = self
            .conn
            .clone()
            .zrange_withscores(self.schedule_key(which), start, stop)
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

    async fn schedule_len(&self, which: Schedule) -> Result<u64, StoreError> {
        self.conn
            .clone()
            .zcard(self.schedule_key(which))
            .await
            .map_err(store_err)
    }

    async fn schedule_remove(&self, which: Schedule, job: &ScheduledJob) -> Result<bool, StoreError> {
        let n: i64 = self
            .conn
            .clone()
            .zrem(self.schedule_key(which), &job.payload)
            .await
            .map_err(store_err)?;
        Ok(n > 0)
    }

    async fn schedule_run_now(&self, which: Schedule, job: &ScheduledJob, queue: &str) -> Result<bool, StoreError> {
        let reply: Vec<Value> = scripts::SCHEDULE_RUN
            .key(self.schedule_key(which))
            .key(self.keys.queues())
            .key(self.keys.queue(queue))
            .key(self.keys.queue_caps())
            .arg(&job.payload)
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
            _ => Err(protocol("a schedule reply it does not know")),
        }
    }

    async fn sweep_expired(&self, turn: &SweepTurn<'_>) -> Result<Option<u64>, StoreError> {
        let removed: i64 = scripts::SWEEP
            .key(self.keys.sweep_lock())
            .key(self.keys.expired())
            .key(self.keys.queues())
            .key(self.keys.schedule())
            .key(self.keys.retry())
            .key(self.keys.expired_count())
            .arg(turn.now.0)
            .arg(turn.owner)
            .arg(turn.every.as_millis().clamp(1, u128::from(u64::MAX)) as u64)
            .arg(resq::store::SWEEP_BATCH)
            .arg(1000)
            .arg(self.keys.queue_prefix())
            .arg(resque::time::iso8601(turn.now))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(u64::try_from(removed).ok())
    }

    async fn expired_range(&self, start: u64, count: u64) -> Result<Vec<ExpiredRecord>, StoreError> {
        let raw = self.list_page(self.keys.expired(), start, count).await?;
        Ok(raw.iter().map(|bytes| resque::expired::parse(bytes)).collect())
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

    async fn expired_remove(&self, record: &ExpiredRecord) -> Result<bool, StoreError> {
        let n: i64 = self
            .conn
            .clone()
            .lrem(self.keys.expired(), 1, &record.stored.0)
            .await
            .map_err(store_err)?;
        Ok(n > 0)
    }

    async fn fire_cron(&self, name: &str, tick: UnixMs, job: &Sealed) -> Result<CronFired, StoreError> {
        let reply = self
            .guarded_push(&scripts::CRON_FIRE, self.keys.cron_last(), (name, tick.0), job, false)
            .await?;
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
