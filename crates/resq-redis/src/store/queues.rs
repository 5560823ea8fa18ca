//! [`JobQueues`] over Redis: queues are Resque's lists, in-flight jobs a
//! hash per worker and queue (token -> job), replay marks bitmaps.

use std::collections::BTreeMap;

use async_trait::async_trait;
use redis::{AsyncCommands, Value};

use resq::policy::Sealed;
use resq::store::{
    Claim, ClaimOutcome, Fetched, FetchedJob, FinishReport, Finished, JobQueues, Outcome, StoreError, UniqueKey,
    Uniqueness, Working,
};
use resq::store::{TrackRecord, TrackState, TrackUpdate};
use resq::{UnixMs, WorkerId};

use super::{protocol, queue_full, store_err, RedisStore};
use crate::keys::Keys;
use crate::resque;
use crate::scripts;

impl RedisStore {
    /// One SADD and RPUSH per queue (in a MULTI/EXEC transaction when
    /// there are several queues: all or nothing, a batch included), then
    /// the wake-up outside it, and with `redis.wait_replicas` a `WAIT`
    /// (one for the whole call), all in one round trip.
    pub(super) async fn enqueue_plain(&self, by_queue: &BTreeMap<&str, Vec<&[u8]>>) -> Result<(), StoreError> {
        if self.keys.is_cluster() {
            self.register_queues(by_queue.keys().copied()).await?;
            let each = by_queue.iter().map(|(queue, payloads)| async move {
                self.enqueue_plain_in(&self.keys.for_queue(queue), &[(*queue, payloads)])
                    .await
            });
            futures::future::try_join_all(each).await?;
            return Ok(());
        }
        let all: Vec<(&str, &Vec<&[u8]>)> = by_queue.iter().map(|(q, p)| (*q, p)).collect();
        self.enqueue_plain_in(&self.keys, &all).await
    }

    /// [`Self::enqueue_plain`] in one keyspace (in cluster mode, one queue's).
    async fn enqueue_plain_in(&self, keys: &Keys, by_queue: &[(&str, &Vec<&[u8]>)]) -> Result<(), StoreError> {
        let (mut conn, wait) = self.durable();
        let mut pipe = redis::pipe();
        // One queue: its one RPUSH is atomic by itself (the SADD before it
        // is idempotent), so the transaction is only for several queues.
        let transaction = by_queue.len() > 1;
        if transaction {
            pipe.cmd("MULTI");
        }
        for (queue, payloads) in by_queue {
            pipe.sadd(keys.queues(), *queue);
            pipe.rpush(keys.queue(queue), *payloads);
        }
        if transaction {
            pipe.cmd("EXEC");
        }
        // Best effort, and outside the transaction: an ACL user without
        // channel rights still enqueues (workers then find the job at their
        // next poll).
        pipe.publish(keys.wake_channel(), "");
        if let Some(wait) = wait {
            super::add_wait(&mut pipe, wait);
        }
        let mut replies: Vec<redis::RedisResult<redis::Value>> =
            pipe.ignore_errors().query_async(&mut conn).await.map_err(store_err)?;
        // WAIT's reply is the last; it is read once the pushes are known to
        // have been made.
        let waited = match wait {
            Some(_) => Some(
                replies
                    .pop()
                    .ok_or_else(|| protocol("an enqueue pipeline without WAIT's reply"))?,
            ),
            None => None,
        };
        // The pushes (or MULTI, one QUEUED a command and EXEC: a command
        // refused while queued, out of memory or no permission, aborts the
        // EXEC), then PUBLISH, whose error is ignored.
        let pushes = replies.len().saturating_sub(1);
        for reply in replies.into_iter().take(pushes) {
            match reply.map_err(store_err)? {
                redis::Value::Array(results) => {
                    for result in results {
                        if let redis::Value::ServerError(e) = result {
                            return Err(store_err(e.into()));
                        }
                    }
                }
                redis::Value::Nil => return Err(protocol("a transaction that did not run")),
                _ => {}
            }
        }
        match (waited, wait) {
            (Some(waited), Some(wait)) => super::replicated(waited, wait),
            _ => Ok(()),
        }
    }

    /// Caps checked and every job pushed in one script: all or nothing.
    /// In cluster mode, one script a queue: all or nothing per queue.
    async fn enqueue_checked(&self, by_queue: &BTreeMap<&str, Vec<&[u8]>>) -> Result<(), StoreError> {
        if self.keys.is_cluster() {
            self.register_queues(by_queue.keys().copied()).await?;
            let each = by_queue.iter().map(|(queue, payloads)| async move {
                self.enqueue_checked_in(&self.keys.for_queue(queue), &[(*queue, payloads)])
                    .await
            });
            futures::future::try_join_all(each).await?;
            return Ok(());
        }
        let all: Vec<(&str, &Vec<&[u8]>)> = by_queue.iter().map(|(q, p)| (*q, p)).collect();
        self.enqueue_checked_in(&self.keys, &all).await
    }

    async fn enqueue_checked_in(&self, keys: &Keys, by_queue: &[(&str, &Vec<&[u8]>)]) -> Result<(), StoreError> {
        // Keys first, then the arguments, each payload copied once, into
        // the command's one buffer.
        let mut cmd = scripts::evalsha(&scripts::ENQUEUE, 2 + by_queue.len());
        cmd.arg(keys.queues()).arg(keys.queue_caps());
        for (queue, _) in by_queue {
            cmd.arg(keys.queue(queue));
        }
        cmd.arg(keys.wake_channel());
        for (queue, payloads) in by_queue {
            cmd.arg(*queue).arg(payloads.len());
            for p in payloads.iter() {
                cmd.arg(*p);
            }
        }
        let reply: Vec<Value> = self.invoke_acknowledged(&scripts::ENQUEUE, &cmd).await?;
        match reply.as_slice() {
            [Value::Int(0)] => Ok(()),
            [Value::Int(1), Value::BulkString(queue), Value::Int(cap), Value::Int(length)] => {
                Err(queue_full(queue, *cap, *length))
            }
            _ => Err(protocol("an enqueue script reply it does not know")),
        }
    }

    /// Runs a script that guards a one-job push with a mark of its own
    /// (`mark_key`, and two arguments about it) and the queue's cap. The
    /// scripts share their keys and arguments after the first ones; the mark
    /// must be in the job's queue's keyspace (its slot, in cluster mode).
    /// `acknowledged`: the push is answered to a producer, so it waits for
    /// `redis.wait_replicas` (a cron tick is answered to no one: a tick a
    /// failover loses goes with its mark, and fires again).
    pub(super) async fn guarded_push(
        &self,
        script: &redis::Script,
        mark_key: String,
        (first, second): (impl redis::ToRedisArgs, impl redis::ToRedisArgs),
        job: &Sealed,
        acknowledged: bool,
    ) -> Result<Vec<Value>, StoreError> {
        let keys = self.keys.for_queue(job.queue());
        if keys.is_cluster() {
            self.register_queues([job.queue()]).await?;
        }
        let mut cmd = scripts::evalsha(script, 4);
        cmd.arg(mark_key)
            .arg(keys.queues())
            .arg(keys.queue(job.queue()))
            .arg(keys.queue_caps())
            .arg(first)
            .arg(second)
            .arg(job.queue())
            .arg(job.payload())
            .arg(keys.wake_channel());
        if acknowledged {
            self.invoke_acknowledged(script, &cmd).await
        } else {
            scripts::run_evalsha(script, &cmd, &mut self.conn.clone())
                .await
                .map_err(store_err)
        }
    }
}

impl RedisStore {
    /// Runs the fetch script over `queues`, all in `keys`' keyspace;
    /// `elsewhere`: whether the worker holds jobs of queues not in the call
    /// (`None`: not looked at, see `fetch.lua`). Also says what next.
    async fn fetch_in(
        &self,
        keys: &Keys,
        worker: &WorkerId,
        queues: &[String],
        max: usize,
        elsewhere: Option<bool>,
    ) -> Result<(Fetched, Next), StoreError> {
        let w = worker.as_str();
        let mut inv = scripts::FETCH.prepare_invoke();
        inv.key(keys.pause_all())
            .key(keys.inflight_queues(w))
            .key(keys.inflight_seq(w))
            .key(keys.paused_queues())
            .key(keys.solo(w));
        for q in queues {
            inv.key(keys.queue(q))
                .key(keys.inflight(w, q))
                .key(keys.suspects(q))
                .key(keys.inflight_batches(w, q));
        }
        inv.arg(max).arg(self.token_floor(w)).arg(match elsewhere {
            Some(true) => "1",
            Some(false) => "0",
            None => "?",
        });
        let small: String = {
            let large = self.large_jobs.lock().unwrap_or_else(|p| p.into_inner());
            queues
                .iter()
                .map(|q| if large.contains(q) { '0' } else { '1' })
                .collect()
        };
        inv.arg(small);
        for q in queues {
            inv.arg(q);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = inv.invoke_async(&mut conn).await.map_err(store_err)?;
        let (mut batches, next) = parse_fetch(reply, queues, max)?;
        if next == Next::Paused {
            return Ok((Fetched::Paused, next));
        }
        if let Some(highest) = batches.iter().map(|b| b.first + b.count - 1).max() {
            self.raise_token_floor(w, highest);
        }
        // The batches that moved inside Redis are read from their lists.
        let unread: Vec<usize> = (0..batches.len()).filter(|&i| batches[i].jobs.is_none()).collect();
        if !unread.is_empty() {
            let mut pipe = redis::pipe();
            for &i in &unread {
                let b = &batches[i];
                pipe.lrange(format!("{}:{}", keys.inflight_batches(w, b.queue), b.first), 0, -1);
            }
            let lists: Vec<Vec<bytes::Bytes>> = pipe.query_async(&mut conn).await.map_err(store_err)?;
            for (i, list) in unread.into_iter().zip(lists) {
                if let Some(b) = batches.get_mut(i) {
                    b.jobs = Some(list);
                }
            }
        }
        let mut jobs = Vec::with_capacity(batches.iter().map(|b| b.count as usize).sum());
        for b in batches {
            let list = b.jobs.unwrap_or_default();
            self.note_job_size(b.queue, &list);
            // A list read short was taken back by a reaper meanwhile (this
            // worker was judged dead): its jobs are not this worker's.
            for (token, payload) in (b.first..b.first + b.count).zip(list) {
                jobs.push(FetchedJob {
                    queue: b.queue.to_string(),
                    payload,
                    token: token.to_string(),
                });
            }
        }
        Ok((Fetched::Jobs(jobs), next))
    }

    /// Cluster mode: which of `queues` hold jobs of `worker` in flight, and
    /// whether it runs a suspect alone or drains for one (its marks, one
    /// per queue: those of `queues` and of every queue a fetch of this
    /// process left one in). One read per queue, each in its own slot.
    async fn holdings(&self, worker: &str, queues: &[String]) -> Result<Holdings, StoreError> {
        let mut all = queues.to_vec();
        for q in self.marked_queues(worker) {
            if !all.contains(&q) {
                all.push(q);
            }
        }
        let states = futures::future::try_join_all(all.iter().map(|q| {
            let keys = self.keys.for_queue(q);
            let mut conn = self.conn.clone();
            let mut pipe = redis::pipe();
            pipe.get(keys.solo(worker)).exists(keys.inflight(worker, q));
            async move {
                pipe.query_async::<(Option<String>, bool)>(&mut conn)
                    .await
                    .map_err(store_err)
            }
        }))
        .await?;
        Ok(Holdings {
            running_alone: states
                .iter()
                .any(|(mark, _)| mark.as_deref().is_some_and(|m| m != "drain")),
            draining: states.iter().any(|(mark, _)| mark.as_deref() == Some("drain")),
            drained: all
                .iter()
                .zip(&states)
                .filter(|(_, (mark, _))| mark.as_deref() == Some("drain"))
                .map(|(q, _)| q.clone())
                .collect(),
            in_flight: states.into_iter().take(queues.len()).map(|(_, held)| held).collect(),
        })
    }

    /// Cluster mode's fetch: the fleet-wide pause is read, and the queues
    /// are added to the worker's list of queues it may hold jobs of (which
    /// a reaper reads), in the fleet's slot; then the fetch script runs
    /// queue by queue in the order given (strict or weighted, as the worker
    /// laid it out) until `max` jobs are taken. Not atomic across queues,
    /// and need not be: only this worker writes its own in-flight hashes
    /// and marks.
    ///
    /// A suspect runs alone, whichever queue it came from: that needs what
    /// the worker holds in every queue, one read per queue. It is read only
    /// when it matters: when this worker may hold a mark (a fetch of this
    /// process set one, in a queue it remembers: only a fetch sets one), or
    /// when a queue's script meets a suspect and asks (status 3). A fetch that meets none costs its
    /// queues' scripts and one command in the fleet's slot.
    async fn fetch_cluster(&self, worker: &WorkerId, queues: &[String], max: usize) -> Result<Fetched, StoreError> {
        let w = worker.as_str();
        let mut conn = self.conn.clone();
        let (paused,): (Option<String>,) = redis::pipe()
            .get(self.keys.pause_all())
            .sadd(self.keys.inflight_queues(w), queues)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(store_err)?;
        if paused.as_deref() == Some("true") {
            return Ok(Fetched::Paused);
        }
        let mut holdings = None;
        let mut order: Vec<String> = queues.to_vec();
        if !self.marked_queues(w).is_empty() {
            let read = self.holdings(w, queues).await?;
            if !read.running_alone && !read.draining {
                self.forget_marks(w);
            }
            if read.blocks() {
                return Ok(Fetched::Jobs(Vec::new()));
            }
            // Drained and idle now: the queue whose suspect it drained for
            // first, so the suspect is taken now, not after other jobs.
            order.sort_by_key(|q| !read.drained.contains(q));
            holdings = Some(read.reordered(queues, &order));
        }
        let queues = &order[..];
        let mut taken = Vec::new();
        let mut i = 0;
        while let Some(q) = queues.get(i) {
            let room = max.saturating_sub(taken.len());
            if room == 0 {
                break;
            }
            let elsewhere = if taken.is_empty() {
                holdings.as_ref().map(|h| h.elsewhere(i))
            } else {
                Some(true)
            };
            let (fetched, next) = self
                .fetch_in(
                    &self.keys.for_queue(q),
                    worker,
                    std::slice::from_ref(q),
                    room,
                    elsewhere,
                )
                .await?;
            match next {
                Next::NeedsHoldings if holdings.is_some() => {
                    return Err(protocol("a fetch asked again what the worker holds"));
                }
                Next::NeedsHoldings => {
                    let read = self.holdings(w, queues).await?;
                    if read.blocks() {
                        return Ok(Fetched::Jobs(taken));
                    }
                    holdings = Some(read);
                    // The same queue again, now that the script can know.
                    continue;
                }
                Next::Paused => return Ok(Fetched::Paused),
                Next::More | Next::Stop => {}
            }
            if let Fetched::Jobs(jobs) = fetched {
                taken.extend(jobs);
            }
            if next == Next::Stop {
                self.remember_mark(w, q);
                break;
            }
            i += 1;
        }
        Ok(Fetched::Jobs(taken))
    }

    /// The queues in which a fetch of this process may have left `worker`
    /// a suspect mark (see [`Self::fetch_cluster`]).
    fn marked_queues(&self, worker: &str) -> Vec<String> {
        let marked = self.marked.lock().unwrap_or_else(|p| p.into_inner());
        marked
            .get(worker)
            .map(|qs| qs.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn remember_mark(&self, worker: &str, queue: &str) {
        let mut marked = self.marked.lock().unwrap_or_else(|p| p.into_inner());
        marked.entry(worker.to_string()).or_default().insert(queue.to_string());
    }

    fn forget_marks(&self, worker: &str) {
        let mut marked = self.marked.lock().unwrap_or_else(|p| p.into_inner());
        marked.remove(worker);
    }

    /// Acks `done` in one script, all in `keys`' keyspace (in cluster
    /// mode, jobs of one queue, and `working` is written by the caller, in
    /// the fleet's slot).
    async fn finish_in(
        &self,
        keys: &Keys,
        worker: &WorkerId,
        done: &[&Finished],
        working: &Working,
    ) -> Result<FinishReport, StoreError> {
        let w = worker.as_str();
        let (list_numbers, lists) = number_queues(done.iter().map(|f| f.job.queue.as_str()));
        // Keys first, then the arguments, all written into the command's
        // one buffer: no allocation per argument.
        let mut cmd = scripts::evalsha(&scripts::FINISH, 10 + 4 * lists.len());
        cmd.arg(keys.stat("processed"))
            .arg(keys.stat("failed"))
            .arg(keys.worker_stat("processed", w))
            .arg(keys.worker_stat("failed", w))
            .arg(keys.failed())
            .arg(keys.retry())
            .arg(keys.failed_trimmed())
            .arg(keys.worker(w))
            .arg(keys.failure_index())
            .arg(keys.solo(w));
        for queue in &lists {
            cmd.arg(keys.inflight(w, queue))
                .arg(keys.suspects(queue))
                .arg(keys.suspects_at(queue))
                .arg(keys.inflight_batches(w, queue));
        }
        cmd.arg(lists.len()).arg(self.failed_max);
        match working {
            Working::Keep => cmd.arg("keep").arg(""),
            Working::Clear => cmd.arg("clear").arg(""),
            Working::Show(record) => cmd.arg("show").arg(resque::working::build(record)),
        };
        let small: String = {
            let large = self.large_jobs.lock().unwrap_or_else(|p| p.into_inner());
            lists
                .iter()
                .map(|q| if large.contains(*q) { '0' } else { '1' })
                .collect()
        };
        cmd.arg(small);
        for f in done {
            let list = list_numbers.get(f.job.queue.as_str()).copied().unwrap_or(1);
            cmd.arg(list).arg(&f.job.token);
            match &f.outcome {
                Outcome::Succeeded => cmd.arg("").arg("").arg("").arg(0),
                Outcome::Failed(failure) => {
                    let id = uuid::Uuid::new_v4().to_string();
                    let record = resque::failure::build(&f.job.payload, failure, w, &f.job.queue, &id);
                    cmd.arg(record).arg(id).arg("").arg(0)
                }
                Outcome::Retry { next, due } => cmd.arg("").arg("").arg(next.payload()).arg(due.0),
            };
        }
        let reply: Vec<Value> = self.invoke_acknowledged(&scripts::FINISH, &cmd).await?;
        let bad = || protocol("an ack reply it does not know");
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

    /// Puts `jobs` back in one script, all in `keys`' keyspace (in cluster
    /// mode, jobs of one queue).
    async fn requeue_in(&self, keys: &Keys, worker: &WorkerId, jobs: &[&FetchedJob]) -> Result<(), StoreError> {
        let w = worker.as_str();
        let (pair_numbers, pairs) = number_queues(jobs.iter().map(|job| job.queue.as_str()));
        let mut cmd = scripts::evalsha(&scripts::REQUEUE, 1 + 3 * pairs.len());
        cmd.arg(keys.solo(w));
        for queue in &pairs {
            cmd.arg(keys.inflight(w, queue))
                .arg(keys.queue(queue))
                .arg(keys.inflight_batches(w, queue));
        }
        for job in jobs {
            let n = pair_numbers.get(job.queue.as_str()).copied().unwrap_or(1);
            cmd.arg(n).arg(&job.token);
        }
        self.invoke_acknowledged::<i64>(&scripts::REQUEUE, &cmd).await?;
        Ok(())
    }

    /// The highest token `worker` was given by this store (0 for none).
    fn token_floor(&self, worker: &str) -> u64 {
        // A poisoned lock only means another fetch panicked mid-update: the
        // map holds whole values, so it is read as it is.
        let floors = self.token_floors.lock().unwrap_or_else(|p| p.into_inner());
        floors.get(worker).copied().unwrap_or(0)
    }

    /// Remembers whether `queue`'s jobs are large (their mean size at
    /// least [`LARGE_JOB`]), for the next fetch of it.
    fn note_job_size(&self, queue: &str, jobs: &[bytes::Bytes]) {
        if jobs.is_empty() {
            return;
        }
        let mean = jobs.iter().map(bytes::Bytes::len).sum::<usize>() / jobs.len();
        let mut large = self.large_jobs.lock().unwrap_or_else(|p| p.into_inner());
        if mean >= LARGE_JOB {
            large.insert(queue.to_string());
        } else {
            large.remove(queue);
        }
    }

    fn raise_token_floor(&self, worker: &str, token: u64) {
        let mut floors = self.token_floors.lock().unwrap_or_else(|p| p.into_inner());
        let floor = floors.entry(worker.to_string()).or_insert(0);
        *floor = (*floor).max(token);
    }
}

/// What a fetch script's status says to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Go on to the next queue, if there is room (0).
    More,
    /// Paused by the fleet-wide flag (1).
    Paused,
    /// The worker runs a suspect alone or drains for one: nothing more (2).
    Stop,
    /// The script needs to know what the worker holds in other queues, and
    /// did nothing (3).
    NeedsHoldings,
}

/// Cluster mode: what a worker holds in flight, queue by queue, and its
/// suspect marks.
struct Holdings {
    running_alone: bool,
    draining: bool,
    /// The queues whose suspect the worker drained for.
    drained: Vec<String>,
    in_flight: Vec<bool>,
}

impl Holdings {
    /// Nothing may be fetched: a suspect runs alone, or the worker drains
    /// for one and is not idle yet.
    fn blocks(&self) -> bool {
        self.running_alone || (self.draining && self.in_flight.iter().any(|held| *held))
    }

    /// The same, its in-flight flags in the order of `order` (a
    /// permutation of `queues`).
    fn reordered(self, queues: &[String], order: &[String]) -> Holdings {
        let in_flight = order
            .iter()
            .map(|q| {
                queues
                    .iter()
                    .position(|x| x == q)
                    .and_then(|i| self.in_flight.get(i).copied())
                    .unwrap_or(false)
            })
            .collect();
        Holdings { in_flight, ..self }
    }

    /// Jobs in flight in a queue other than the `i`th.
    fn elsewhere(&self, i: usize) -> bool {
        self.in_flight.iter().enumerate().any(|(j, held)| j != i && *held)
    }
}

/// A job at least this large (on average over a queue's last fetch) is
/// moved inside Redis by the next fetch of its queue, not through the
/// script: Redis 7 hashes every byte of a string a script makes, which made
/// a 64 KB job cost Redis about three times the CPU. Up to 16 smaller jobs
/// (`INLINE_MOST` in `fetch.lua`) come back with the script's reply, one
/// round trip instead of two; a larger batch of them moves inside Redis too.
pub(crate) const LARGE_JOB: usize = 8 * 1024;

/// One queue's jobs that a fetch took: tokens `first .. first + count`, in
/// the list `<inflight batches>:<first>`, and in the reply when they came
/// through the script.
#[derive(Debug, PartialEq, Eq)]
struct Batch<'q> {
    queue: &'q str,
    first: u64,
    count: u64,
    jobs: Option<Vec<bytes::Bytes>>,
}

/// Reads `{status, pair, first token, count, inline, job, ..., pair, ...}`
/// from the fetch script: each queue's batch of jobs under consecutive
/// tokens (with them when inline is 1), and what next.
fn parse_fetch<'q>(reply: Vec<Value>, queues: &'q [String], max: usize) -> Result<(Vec<Batch<'q>>, Next), StoreError> {
    let mut items = reply.into_iter();
    let next = match items.next() {
        Some(Value::Int(0)) => Next::More,
        Some(Value::Int(1)) => return Ok((Vec::new(), Next::Paused)),
        Some(Value::Int(2)) => Next::Stop,
        Some(Value::Int(3)) => return Ok((Vec::new(), Next::NeedsHoldings)),
        _ => return Err(protocol("a fetch reply without a status")),
    };
    let mut batches = Vec::new();
    // More jobs than asked for is a reply this store did not write.
    let mut room = u64::try_from(max).unwrap_or(u64::MAX);
    while let Some(pair) = items.next() {
        let (Value::Int(p), Some(Value::Int(first)), Some(Value::Int(count))) = (pair, items.next(), items.next())
        else {
            return Err(protocol(
                "a fetch reply with a queue's jobs not under a number, a first token and a count",
            ));
        };
        let queue = usize::try_from(p - 1)
            .ok()
            .and_then(|i| queues.get(i))
            .ok_or_else(|| protocol("a fetch reply with an unknown queue number"))?;
        let (Ok(first), Ok(count)) = (u64::try_from(first), u64::try_from(count)) else {
            return Err(protocol("a fetch reply with a negative token or count"));
        };
        if first == 0
            || count == 0
            || first
                .checked_add(count)
                .and_then(|end| i64::try_from(end).ok())
                .is_none()
        {
            return Err(protocol("a fetch reply with an empty batch or one out of range"));
        }
        room = room
            .checked_sub(count)
            .ok_or_else(|| protocol("a fetch reply with more jobs than asked for"))?;
        let jobs = match items.next() {
            Some(Value::Int(0)) => None,
            Some(Value::Int(1)) => Some(
                (0..count)
                    .map(|_| match items.next() {
                        Some(Value::BulkString(bytes)) => Ok(bytes::Bytes::from(bytes)),
                        _ => Err(protocol(
                            "a fetch reply with fewer jobs than it counts, or one not a string",
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => return Err(protocol("a fetch reply without whether its jobs are in it")),
        };
        batches.push(Batch {
            queue,
            first,
            count,
            jobs,
        });
    }
    Ok((batches, next))
}

#[async_trait]
impl JobQueues for RedisStore {
    async fn enqueue(&self, jobs: &[Sealed]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        // Group by queue, keeping order.
        let mut by_queue: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
        for job in jobs {
            by_queue.entry(job.queue()).or_default().push(job.payload());
        }
        let capped = self.capped_queues().await?;
        if by_queue.keys().any(|q| capped.contains(*q)) {
            self.enqueue_checked(&by_queue).await
        } else {
            self.enqueue_plain(&by_queue).await
        }
    }

    async fn enqueue_unique(&self, job: &Sealed, unique: &UniqueKey<'_>) -> Result<Uniqueness, StoreError> {
        let window_ms = unique.window.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        let reply = self
            .guarded_push(
                &scripts::ENQUEUE_UNIQUE,
                self.keys.for_queue(job.queue()).unique(unique.class, unique.key),
                (unique.job_id, window_ms),
                job,
                true,
            )
            .await?;
        match reply.as_slice() {
            [Value::Int(0)] => Ok(Uniqueness::Enqueued),
            [Value::Int(1), Value::BulkString(id)] => {
                Ok(Uniqueness::Duplicate(String::from_utf8_lossy(id).into_owned()))
            }
            [Value::Int(2), Value::BulkString(queue), Value::Int(cap), Value::Int(length)] => {
                Err(queue_full(queue, *cap, *length))
            }
            _ => Err(protocol("a unique enqueue reply it does not know")),
        }
    }

    async fn queues(&self) -> Result<Vec<String>, StoreError> {
        self.conn.clone().smembers(self.keys.queues()).await.map_err(store_err)
    }

    async fn track(&self, updates: &[TrackUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        // One pipeline in standalone mode; in cluster mode one a record
        // (each is in a slot of its own), sent together.
        let cluster = self.keys.is_cluster();
        let mut pipes = vec![redis::pipe()];
        for u in updates {
            if cluster && !pipes.iter().all(|p| p.is_empty()) {
                pipes.push(redis::pipe());
            }
            let Some(pipe) = pipes.last_mut() else { break };
            let key = self.keys.track(&u.id);
            let mut fields: Vec<(&str, String)> = vec![
                ("state", u.state.as_str().to_string()),
                ("attempt", u.attempt.to_string()),
                ("at", u.at.0.to_string()),
            ];
            if let Some(first) = &u.first {
                fields.push(("owner", first.owner.clone()));
                fields.push(("class", first.class.clone()));
                fields.push(("queue", first.queue.clone()));
                fields.push(("expires_at", first.expires_at.0.to_string()));
            }
            if let Some(error) = &u.error {
                fields.push(("error", error.clone()));
            }
            let mut hset = redis::cmd("HSET");
            hset.arg(&key);
            for (name, value) in &fields {
                hset.arg(*name).arg(value);
            }
            pipe.add_command(hset).ignore();
            pipe.cmd("PEXPIREAT").arg(&key).arg(u.keep_until.0).ignore();
        }
        let sent = pipes.iter().map(|pipe| {
            let mut conn = self.conn.clone();
            async move { pipe.query_async::<()>(&mut conn).await.map_err(store_err) }
        });
        futures::future::try_join_all(sent).await?;
        Ok(())
    }

    async fn tracked(&self, id: &str) -> Result<Option<TrackRecord>, StoreError> {
        let fields: std::collections::HashMap<String, String> = self
            .conn
            .clone()
            .hgetall(self.keys.track(id))
            .await
            .map_err(store_err)?;
        let Some(state) = fields.get("state").and_then(|s| TrackState::parse(s)) else {
            return Ok(None);
        };
        let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let text = |name: &str| fields.get(name).cloned().unwrap_or_default();
        Ok(Some(TrackRecord {
            id: id.to_string(),
            state,
            attempt: u32::try_from(number("attempt")).unwrap_or(u32::MAX),
            updated_at: UnixMs(number("at")),
            owner: text("owner"),
            class: text("class"),
            queue: text("queue"),
            expires_at: UnixMs(number("expires_at")),
            error: fields.get("error").cloned(),
        }))
    }

    async fn fetch(&self, worker: &WorkerId, queues: &[String], max: usize) -> Result<Fetched, StoreError> {
        if self.keys.is_cluster() {
            return self.fetch_cluster(worker, queues, max).await;
        }
        let (fetched, _) = self.fetch_in(&self.keys, worker, queues, max, Some(false)).await?;
        Ok(fetched)
    }

    async fn claim(&self, worker: &WorkerId, claims: &[Claim]) -> Result<Vec<ClaimOutcome>, StoreError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        if !self.keys.is_cluster() {
            return self.claim_groups(worker, claims).await;
        }
        let mut outcomes = vec![ClaimOutcome::Gone; claims.len()];
        for (_, places) in super::places_by_queue(claims, |c| c.queue.as_str()) {
            let mine: Vec<Claim> = places.iter().filter_map(|&i| claims.get(i).cloned()).collect();
            let got = self.claim_groups(worker, &mine).await?;
            for (&i, outcome) in places.iter().zip(got) {
                if let Some(slot) = outcomes.get_mut(i) {
                    *slot = outcome;
                }
            }
        }
        Ok(outcomes)
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
        if !self.keys.is_cluster() {
            let all: Vec<&Finished> = done.iter().collect();
            return self.finish_in(&self.keys, worker, &all, working).await;
        }
        let mut report = FinishReport::default();
        for (queue, places) in super::places_by_queue(done, |f| f.job.queue.as_str()) {
            let mine: Vec<&Finished> = places.iter().filter_map(|&i| done.get(i)).collect();
            let got = self
                .finish_in(&self.keys.for_queue(queue), worker, &mine, &Working::Keep)
                .await?;
            report.acked += got.acked;
            report.trimmed += got.trimmed;
            report.taken.extend(got.taken);
        }
        self.set_working(worker, working).await?;
        Ok(report)
    }

    async fn requeue(&self, worker: &WorkerId, jobs: &[FetchedJob]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        if !self.keys.is_cluster() {
            let all: Vec<&FetchedJob> = jobs.iter().collect();
            return self.requeue_in(&self.keys, worker, &all).await;
        }
        for (queue, places) in super::places_by_queue(jobs, |j| j.queue.as_str()) {
            let mine: Vec<&FetchedJob> = places.iter().filter_map(|&i| jobs.get(i)).collect();
            self.requeue_in(&self.keys.for_queue(queue), worker, &mine).await?;
        }
        Ok(())
    }

    /// Not waited for (`redis.wait_replicas`): a repair, retried by the
    /// worker before each fetch while it fails, so a `NotReplicated` here
    /// would hold a worker in a loop of waits while a replica is away.
    async fn requeue_unheld(&self, worker: &WorkerId, held: &[String]) -> Result<u64, StoreError> {
        let w = worker.as_str();
        let mut conn = self.conn.clone();
        let queues: Vec<String> = conn.smembers(self.keys.inflight_queues(w)).await.map_err(store_err)?;
        let mut back = 0u64;
        for q in &queues {
            let keys = self.keys.for_queue(q);
            let mut inv = scripts::REQUEUE_UNHELD.prepare_invoke();
            inv.key(keys.inflight(w, q))
                .key(keys.queue(q))
                .key(keys.solo(w))
                .key(keys.inflight_batches(w, q));
            for token in held {
                inv.arg(token);
            }
            let n: i64 = inv.invoke_async(&mut conn).await.map_err(store_err)?;
            back += n.max(0) as u64;
        }
        Ok(back)
    }

    async fn set_working(&self, worker: &WorkerId, working: &Working) -> Result<(), StoreError> {
        let key = self.keys.worker(worker.as_str());
        let mut conn = self.conn.clone();
        match working {
            Working::Keep => Ok(()),
            Working::Clear => conn.del::<_, ()>(key).await.map_err(store_err),
            Working::Show(record) => conn
                .set::<_, _, ()>(key, resque::working::build(record))
                .await
                .map_err(store_err),
        }
    }

    fn wakeups(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.wake.get_or_init(|| self.start_wake_listener()).clone())
    }
}

/// Numbers the queues of a call 1, 2, ... in order of first appearance, as
/// the ack and requeue scripts number their keys per queue: each queue's
/// number, and the queues in that order (for the keys, which come first).
fn number_queues<'a>(queues: impl Iterator<Item = &'a str>) -> (BTreeMap<&'a str, usize>, Vec<&'a str>) {
    let mut numbers: BTreeMap<&str, usize> = BTreeMap::new();
    let mut in_order = Vec::new();
    for queue in queues {
        let next = numbers.len() + 1;
        if *numbers.entry(queue).or_insert(next) == next {
            in_order.push(queue);
        }
    }
    (numbers, in_order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(n: i64) -> Value {
        Value::Int(n)
    }

    #[test]
    fn queues_are_numbered_in_order_of_first_appearance() {
        for (queues, numbers, in_order) in [
            (vec![], vec![], vec![]),
            (vec!["a"], vec![("a", 1)], vec!["a"]),
            (
                vec!["b", "a", "b", "c", "a"],
                vec![("a", 2), ("b", 1), ("c", 3)],
                vec!["b", "a", "c"],
            ),
        ] {
            let (got_numbers, got_order) = number_queues(queues.iter().copied());
            assert_eq!(got_numbers.into_iter().collect::<Vec<_>>(), numbers, "{queues:?}");
            assert_eq!(got_order, in_order, "{queues:?}");
        }
    }

    #[test]
    fn fetch_replies_are_read_or_refused_with_a_protocol_error() {
        let queues = ["a".to_string(), "b".to_string()];
        let job = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let jobs = |j: &[&str]| Some(j.iter().map(|s| bytes::Bytes::from(s.to_string())).collect::<Vec<_>>());
        let batch = |queue, first, count, jobs| Batch {
            queue,
            first,
            count,
            jobs,
        };
        let ok: &[(Vec<Value>, Vec<Batch>, Next)] = &[
            (vec![int(0)], vec![], Next::More),
            (
                vec![int(0), int(1), int(7), int(2), int(0), int(2), int(9), int(1), int(0)],
                vec![batch("a", 7, 2, None), batch("b", 9, 1, None)],
                Next::More,
            ),
            (
                vec![
                    int(0),
                    int(1),
                    int(7),
                    int(2),
                    int(1),
                    job("x"),
                    job("y"),
                    int(2),
                    int(9),
                    int(1),
                    int(0),
                ],
                vec![batch("a", 7, 2, jobs(&["x", "y"])), batch("b", 9, 1, None)],
                Next::More,
            ),
            (vec![int(1)], vec![], Next::Paused),
            (
                vec![int(2), int(1), int(7), int(1), int(1), job("x")],
                vec![batch("a", 7, 1, jobs(&["x"]))],
                Next::Stop,
            ),
            (vec![int(3)], vec![], Next::NeedsHoldings),
        ];
        for (reply, want, want_next) in ok {
            let (got, next) = parse_fetch(reply.clone(), &queues, 10).unwrap_or_else(|e| panic!("{reply:?}: {e}"));
            assert_eq!((&got, next), (want, *want_next), "{reply:?}");
        }
        let bad: &[Vec<Value>] = &[
            vec![],
            vec![int(4)],
            vec![int(0), int(3), int(7), int(1), int(0)],
            vec![int(0), int(1), int(-7), int(1), int(0)],
            vec![int(0), int(1), int(7), int(-1), int(0)],
            vec![int(0), int(1), int(7), int(0), int(0)],
            vec![int(0), int(1), int(0), int(1), int(0)],
            vec![int(0), int(1), int(i64::MAX), int(2), int(0)],
            vec![int(0), int(1), int(7), int(11), int(0)],
            vec![int(0), int(1), int(7), int(6), int(0), int(2), int(20), int(5), int(0)],
            vec![int(0), int(1), int(1), int(1 << 40), int(0)],
            vec![int(0), int(1), int(7)],
            vec![int(0), int(1), int(7), int(1)],
            vec![int(0), int(1), int(7), int(1), int(2)],
            vec![int(0), int(1), int(7), int(2), int(1), job("x")],
            vec![int(0), int(1), int(7), int(1), int(1), int(5)],
            vec![int(0), int(1), int(7), int(1), int(0), job("x")],
            vec![int(0), job("1"), int(7), int(1), int(0)],
        ];
        for reply in bad {
            assert!(
                matches!(
                    parse_fetch(reply.clone(), &queues, 10),
                    Err(StoreError::Protocol { .. })
                ),
                "{reply:?}"
            );
        }
    }
}
