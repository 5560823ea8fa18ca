//! `RedisStore`: resq's store interface over Resque's keyspace, one file per
//! role ([`queues`], [`workers`], [`schedules`], [`admin`]); the bytes Ruby
//! reads are built in [`crate::resque`].

mod admin;
mod claims;
mod poison;
mod queues;
mod schedules;
mod workers;

pub use schedules::UNROUTABLE_QUEUE;

use std::collections::BTreeMap;

use redis::{AsyncCommands, RedisError, Value};

use resq::clock::UnixMs;
use resq::store::{BackendError, NewFailure, StoreError};

use crate::connect::{connect, ConnectError, RedisConfig};
use crate::connection::Connection;
use crate::keys::Keys;
use crate::scripts;

/// The Redis store. Cheap to clone: clones share one multiplexed connection
/// that reconnects by itself (in sentinel mode, to the current master).
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    /// For dedicated connections in standalone mode (in sentinel mode
    /// `conn` has the current master's).
    client: redis::Client,
    keys: Keys,
    wake: std::sync::Arc<std::sync::OnceLock<tokio::sync::watch::Receiver<u64>>>,
    /// Which queues are capped, and when that was read.
    caps: CapsCache,
    /// Most records the failed list keeps (the oldest are trimmed).
    failed_max: u64,
    /// The highest in-flight token each worker of this process was given,
    /// sent with its next fetch as a floor: a worker's tokens only grow,
    /// even after its counter was deleted (see `claim.lua`).
    token_floors: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    /// The queues whose last fetched jobs were large (see
    /// [`queues::LARGE_JOB`]): their jobs move inside Redis, not through
    /// the fetch script.
    large_jobs: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Cluster mode: the workers of this process a fetch may have left a
    /// suspect mark (see `fetch_cluster`).
    marked: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::collections::BTreeSet<String>>>>,
    /// In cluster mode, the queues this process added to the fleet's list
    /// of queues, and when (see [`RedisStore::register_queues`]).
    registered: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// With `redis.wait_replicas`: the connection the acknowledged writes
    /// go through, each followed by `WAIT` (see [`RedisStore::durable`]).
    durable: Option<Durable>,
}

/// Connections of their own for the writes that end in `WAIT`. `WAIT`
/// blocks the connection it is sent on (Redis reads nothing more from that
/// client until the replicas answer or the timeout passes), and the store's
/// main connection is shared by every task of the process: liveness
/// renewals, fetches and heartbeats queued behind a `WAIT` would wait with
/// it (up to `wait_timeout_ms` each while a replica is away). So the
/// acknowledged writes, and only they, go through these (in sentinel mode
/// each follows the master on its own).
///
/// Several, taken in turn: on one connection each write waits for the
/// `WAIT`s of all the writes before it, so a process's acknowledged writes
/// went one replica round trip at a time (14,700 enqueues/s from 64 tasks
/// on loopback against 126,500 without a wait; `scripts/bench --wait`).
#[derive(Clone)]
struct Durable {
    conns: std::sync::Arc<[Connection]>,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    wait: crate::connect::WaitReplicas,
}

/// How many connections a process's acknowledged writes are spread over:
/// as many `WAIT`s can be out at once.
pub const DURABLE_CONNECTIONS: usize = 8;

/// How often one process adds a queue it enqueues to again to the fleet's
/// list of queues, in cluster mode.
const REGISTER_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The failed list's cap unless [`RedisStore::with_failed_max`] says.
pub const DEFAULT_FAILED_MAX: u64 = 100_000;

/// What the recovery of a worker that looks dead found.
enum Recovery {
    /// Its jobs went back to their queues (this many), but those recorded as
    /// poison, and it was unregistered.
    Recovered(u64, Vec<resq::store::PoisonedJob>),
    /// Its liveness mark exists: it is alive.
    Alive,
    /// The fleet's renewals have not been continuous long enough to judge.
    Deferred,
}

/// How long a death stays counted against a job that was not seen again:
/// the default lifetime of a job.
const SUSPECT_MEMORY_MS: u64 = 7 * 24 * 3600 * 1000;

type CapsCache = std::sync::Arc<std::sync::Mutex<Option<(std::time::Instant, std::collections::HashSet<String>)>>>;

pub(crate) fn store_err(e: RedisError) -> StoreError {
    // A server loading its data (LOADING) answers again in a moment, and so
    // does a master after a failover: a demoted master (READONLY) and a
    // replica cut from its master (MASTERDOWN) are away, not refusing.
    let unavailable = e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_connection_refusal()
        || matches!(e.code(), Some("LOADING" | "READONLY" | "MASTERDOWN"));
    let source = BackendError::new(e);
    if unavailable {
        StoreError::Unavailable(source)
    } else {
        StoreError::Refused(source)
    }
}

/// Appends `WAIT <replicas> <timeout>` to a pipeline.
pub(crate) fn add_wait(pipe: &mut redis::Pipeline, wait: crate::connect::WaitReplicas) {
    pipe.cmd("WAIT").arg(wait.replicas).arg(wait.timeout_ms());
}

/// Reads `WAIT`'s reply: the number of replicas that confirmed the write,
/// which must be at least the number asked for. A `WAIT` the server
/// refused (an ACL user without `+wait`: `resq acl` grants it, `resq doctor`
/// checks it) confirmed nothing, and is logged with the refusal, since the
/// write before it was made all the same.
pub(crate) fn replicated(
    reply: redis::RedisResult<Value>,
    wait: crate::connect::WaitReplicas,
) -> Result<(), StoreError> {
    let got = match reply {
        Ok(Value::Int(n)) => u32::try_from(n.max(0)).unwrap_or(u32::MAX),
        Ok(_) => return Err(protocol("a WAIT reply that is not a number")),
        Err(e) => {
            tracing::warn!(error = %e, "Redis refused WAIT: the write is not confirmed on any replica");
            0
        }
    };
    if got < wait.replicas {
        return Err(StoreError::NotReplicated {
            wanted: wait.replicas,
            got,
        });
    }
    Ok(())
}

/// A script's answer this version does not understand.
pub(crate) fn protocol(what: &'static str) -> StoreError {
    StoreError::Protocol { what }
}

/// A script's "queue full" answer as the error it is.
fn queue_full(queue: &[u8], cap: i64, length: i64) -> StoreError {
    StoreError::QueueFull {
        queue: String::from_utf8_lossy(queue).into_owned(),
        cap: cap.max(0) as u64,
        length: length.max(0) as u64,
    }
}

/// The places of `items` grouped by queue, each queue where it first comes:
/// in cluster mode, an operation over jobs of several queues is one call
/// per queue (one slot each).
fn places_by_queue<T>(items: &[T], queue: impl Fn(&T) -> &str) -> Vec<(&str, Vec<usize>)> {
    let mut out: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let q = queue(item);
        match out.iter_mut().find(|(name, _)| *name == q) {
            Some((_, places)) => places.push(i),
            None => out.push((q, vec![i])),
        }
    }
    out
}

/// `start..start+count` as the inclusive range LRANGE and ZRANGE take.
fn index_range(start: u64, count: u64) -> (isize, isize) {
    let clamp = |n: u64| n.min(isize::MAX as u64) as isize;
    (clamp(start), clamp(start.saturating_add(count.saturating_sub(1))))
}

fn opt_u64(v: Option<String>) -> u64 {
    v.and_then(|s| s.parse().ok()).unwrap_or(0)
}

impl RedisStore {
    /// Connects to Redis and uses `namespace` (Resque's is `resque`).
    /// With `config.wait` (and at least one replica to wait for), a second
    /// connection for the acknowledged writes; a wait not shorter than the
    /// response timeout is refused.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), resq_redis::ConnectError> {
    /// use resq_redis::{RedisConfig, RedisStore};
    /// let store = RedisStore::connect(&RedisConfig::new("redis://127.0.0.1:6379/0"), "resque").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: &RedisConfig, namespace: &str) -> Result<Self, ConnectError> {
        let durable_wait = config.wait.filter(|w| w.replicas > 0);
        if let Some(wait) = durable_wait {
            if wait.timeout >= config.response_timeout {
                return Err(ConnectError::WaitOutlastsResponse {
                    wait_ms: wait.timeout_ms(),
                    response_ms: config.response_timeout.as_millis().min(u128::from(u64::MAX)) as u64,
                });
            }
        }
        let (conn, client) = connect(config).await?;
        let durable = match durable_wait {
            Some(wait) => {
                let opened = futures::future::try_join_all((0..DURABLE_CONNECTIONS).map(|_| connect(config))).await?;
                Some(Durable {
                    conns: opened.into_iter().map(|(conn, _)| conn).collect(),
                    next: Default::default(),
                    wait,
                })
            }
            None => None,
        };
        Ok(Self {
            conn,
            client,
            keys: match config.cluster {
                Some(_) => Keys::cluster(namespace),
                None => Keys::new(namespace),
            },
            wake: Default::default(),
            caps: Default::default(),
            failed_max: DEFAULT_FAILED_MAX,
            token_floors: Default::default(),
            large_jobs: Default::default(),
            registered: Default::default(),
            marked: Default::default(),
            durable,
        })
    }

    /// How many replicas each acknowledged write waits for, and how long:
    /// `None` when it waits for none (`redis.wait_replicas = 0`).
    pub fn wait_replicas(&self) -> Option<crate::connect::WaitReplicas> {
        self.durable.as_ref().map(|d| d.wait)
    }

    /// The connection an acknowledged write goes through (the durable ones
    /// in turn), and the `WAIT` to send after it in the same pipeline
    /// (`None`: no wait, the main connection).
    fn durable(&self) -> (Connection, Option<crate::connect::WaitReplicas>) {
        use std::sync::atomic::Ordering;
        let Some(d) = &self.durable else {
            return (self.conn.clone(), None);
        };
        let turn = d.next.fetch_add(1, Ordering::Relaxed) % d.conns.len().max(1);
        match d.conns.get(turn) {
            Some(conn) => (conn.clone(), Some(d.wait)),
            None => (self.conn.clone(), Some(d.wait)),
        }
    }

    /// Runs a script's call (`cmd`, from [`scripts::evalsha`]) whose success
    /// is acknowledged to someone (an enqueue, an ack, a requeue): with
    /// `redis.wait_replicas`, the script and a `WAIT` in one pipeline (one
    /// round trip) on the durable connection, else the script alone. A script the server does not hold yet
    /// (`NOSCRIPT`: a restarted or new master) is loaded and the pipeline
    /// sent again; the first `WAIT` then covered nothing of ours and is
    /// ignored. The script's own error comes first: a write that was not
    /// made has nothing to wait for.
    pub(crate) async fn invoke_acknowledged<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let (mut conn, Some(wait)) = self.durable() else {
            return scripts::run_evalsha(script, cmd, &mut self.conn.clone())
                .await
                .map_err(store_err);
        };
        let mut loaded = false;
        loop {
            let mut pipe = redis::pipe();
            pipe.add_command(cmd.clone());
            add_wait(&mut pipe, wait);
            let replies: Vec<redis::RedisResult<Value>> =
                pipe.ignore_errors().query_async(&mut conn).await.map_err(store_err)?;
            let mut replies = replies.into_iter();
            let (Some(reply), Some(waited)) = (replies.next(), replies.next()) else {
                return Err(protocol("a script and WAIT pipeline without two replies"));
            };
            match reply {
                Err(e) if !loaded && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                    script.load_async(&mut conn).await.map_err(store_err)?;
                    loaded = true;
                }
                Err(e) => return Err(store_err(e)),
                Ok(value) => {
                    let value = redis::from_redis_value(value).map_err(|e| store_err(e.into()))?;
                    replicated(waited, wait)?;
                    return Ok(value);
                }
            }
        }
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
    pub fn connection(&self) -> Connection {
        self.conn.clone()
    }

    /// In sentinel mode, the `host:port` of the master in use; `None` in
    /// standalone mode.
    pub fn sentinel_master(&self) -> Option<String> {
        self.conn.master_address()
    }

    /// Starts (once) the task that turns messages on the wake channel into
    /// bumps of a watch value. It reconnects with backoff and bumps after each
    /// reconnect, since jobs may have arrived while it was away. In sentinel
    /// mode it connects to the current master, and again when the master
    /// moves; in cluster mode to a seed node (the next when one goes away),
    /// listening to every queue's channel.
    fn start_wake_listener(&self) -> tokio::sync::watch::Receiver<u64> {
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let fallback = self.client.clone();
        let conn = self.conn.clone();
        let channel = self.keys.wake_channel();
        let pattern = self.keys.wake_pattern();
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut delay = std::time::Duration::from_millis(100);
            loop {
                let mut moves = conn.master_moves();
                let moved = async {
                    match moves.as_mut() {
                        Some(moves) => {
                            if moves.changed().await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::pin!(moved);
                let client = conn.master_client().unwrap_or_else(|| fallback.clone());
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        let subscribed = match &pattern {
                            Some(pattern) => pubsub.psubscribe(pattern).await,
                            None => pubsub.subscribe(&channel).await,
                        };
                        if subscribed.is_ok() {
                            delay = std::time::Duration::from_millis(100);
                            tx.send_modify(|v| *v += 1);
                            let mut messages = pubsub.on_message();
                            loop {
                                tokio::select! {
                                    message = messages.next() => match message {
                                        Some(_) => tx.send_modify(|v| *v += 1),
                                        None => {
                                            conn.suspect();
                                            break;
                                        }
                                    },
                                    // Nobody watches any more: stop listening.
                                    _ = tx.closed() => return,
                                    // Another master: listen there.
                                    _ = &mut moved => {
                                        delay = std::time::Duration::ZERO;
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        conn.suspect();
                        tracing::debug!(error = %e, "wake channel unavailable; workers poll meanwhile")
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).clamp(std::time::Duration::from_millis(100), std::time::Duration::from_secs(5));
            }
        });
        rx
    }

    /// Runs the renewal script (see `renew.lua`); true when the liveness
    /// mark was still there.
    async fn renew(
        &self,
        registration: &resq::store::Registration<'_>,
        heartbeat: UnixMs,
        register: bool,
    ) -> Result<bool, StoreError> {
        let worker = registration.worker.as_str();
        let ttl_ms = registration.liveness_ttl.as_millis().min(u128::from(u64::MAX)) as u64;
        let had: i64 = scripts::RENEW
            .key(self.keys.alive(worker))
            .key(self.keys.resq_workers())
            .key(self.keys.workers())
            .key(self.keys.worker_started(worker))
            .key(self.keys.heartbeats())
            .key(self.keys.beat())
            .arg(worker)
            .arg(ttl_ms.max(1))
            .arg(crate::resque::time::started(registration.started))
            .arg(crate::resque::time::iso8601(heartbeat))
            .arg(if register { "register" } else { "" })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(had == 1)
    }

    /// Cluster mode: adds `queues` to the fleet's list of queues (the
    /// queue's own keyspace has its own, which only names it), at most once
    /// every [`REGISTER_EVERY`] a queue from one process, so the fleet's
    /// slot sees a command per queue now and then, not one per enqueue. A
    /// queue an operator removed while jobs still came is listed again
    /// within that time.
    pub(super) async fn register_queues<'a>(
        &self,
        queues: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        let due: Vec<&str> = {
            let registered = self.registered.lock().unwrap_or_else(|p| p.into_inner());
            queues
                .into_iter()
                .filter(|q| registered.get(*q).is_none_or(|at| at.elapsed() >= REGISTER_EVERY))
                .collect()
        };
        if due.is_empty() {
            return Ok(());
        }
        self.conn
            .clone()
            .sadd::<_, _, ()>(self.keys.queues(), &due)
            .await
            .map_err(store_err)?;
        let mut registered = self.registered.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        for q in due {
            registered.insert(q.to_string(), now);
        }
        Ok(())
    }

    /// Every keyspace that holds part of a fleet-wide count or list (stats,
    /// failures, schedules, expired jobs): the one keyspace in standalone
    /// mode; in cluster mode each listed queue's, and the keyspace of the
    /// failures of jobs that named no queue.
    pub(super) async fn keyspaces(&self) -> Result<Vec<Keys>, StoreError> {
        if !self.keys.is_cluster() {
            return Ok(vec![self.keys.clone()]);
        }
        let mut queues: Vec<String> = self
            .conn
            .clone()
            .smembers(self.keys.queues())
            .await
            .map_err(store_err)?;
        queues.push(UNROUTABLE_QUEUE.to_string());
        queues.sort();
        queues.dedup();
        Ok(queues.iter().map(|q| self.keys.for_queue(q).into_owned()).collect())
    }

    /// Cluster mode: a worker's processed and failed counts, the sums of its
    /// counts in the queues it fetched from.
    pub(super) async fn worker_counts(&self, worker: &str) -> Result<(u64, u64), StoreError> {
        let queues: Vec<String> = self
            .conn
            .clone()
            .smembers(self.keys.inflight_queues(worker))
            .await
            .map_err(store_err)?;
        let each = queues.iter().map(|q| {
            let keys = self.keys.for_queue(q);
            let mut pipe = redis::pipe();
            pipe.get(keys.worker_stat("processed", worker))
                .get(keys.worker_stat("failed", worker));
            let mut conn = self.conn.clone();
            async move {
                pipe.query_async::<(Option<String>, Option<String>)>(&mut conn)
                    .await
                    .map_err(store_err)
            }
        });
        let mut sums = (0, 0);
        for (p, f) in futures::future::try_join_all(each).await? {
            sums.0 += opt_u64(p);
            sums.1 += opt_u64(f);
        }
        Ok(sums)
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

    /// Items `start..start+count` of a list, oldest first.
    async fn list_page(&self, key: String, start: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let (start, stop) = index_range(start, count);
        self.conn.clone().lrange(key, start, stop).await.map_err(store_err)
    }

    /// The server's clock (heartbeats use it, as Resque does).
    pub async fn server_time(&self) -> Result<UnixMs, StoreError> {
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_err)?;
        Ok(UnixMs(secs.saturating_mul(1000).saturating_add(micros / 1000)))
    }

    /// Pushes bytes the policy never saw to the tail of `queue`: the raw
    /// path, outside the store interface, for the demo's hostile jobs and
    /// for attack tests (workers still check everything they fetch). A
    /// program's own enqueues go through `resq::Client`.
    /// Each job is `(queue, payload)`; they are pushed in order.
    pub async fn push_unchecked(&self, jobs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut by_queue: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
        for (queue, payload) in jobs {
            by_queue.entry(queue.as_str()).or_default().push(payload);
        }
        self.enqueue_plain(&by_queue).await
    }

    /// Builds failure records for jobs that failed outside a worker (a
    /// scheduled job that names no usable queue), appends them and keeps
    /// the failed list at its cap.
    async fn record_failures(&self, failures: &[(&[u8], &NewFailure, &str)]) -> Result<u64, StoreError> {
        // In cluster mode, the keyspace of jobs that named no usable queue.
        let keys = self.keys.for_queue(UNROUTABLE_QUEUE);
        let mut inv = scripts::RECORD_FAILURES.prepare_invoke();
        inv.key(keys.failed())
            .key(keys.stat("failed"))
            .key(keys.failed_trimmed())
            .key(keys.failure_index())
            .arg(self.failed_max);
        for (payload, failure, queue) in failures {
            let id = uuid::Uuid::new_v4().to_string();
            inv.arg(crate::resque::failure::build(payload, failure, "", queue, &id))
                .arg(id);
        }
        let trimmed: i64 = inv.invoke_async(&mut self.conn.clone()).await.map_err(store_err)?;
        Ok(trimmed.max(0) as u64)
    }

    /// Recovers a worker's in-flight jobs and unregisters it: always when
    /// `force` (the worker itself leaving), else only if its liveness mark
    /// lapsed and the fleet's renewals were continuous for `min_continuity_ms`.
    /// Unless forced, the death is counted against its jobs, and the ones it
    /// makes poison go to the failed list before the worker is forgotten (so
    /// an error on the way leaves them in flight, for the next reaper).
    async fn recover_worker(
        &self,
        worker: &str,
        force: bool,
        rules: resq::store::ReapRules,
    ) -> Result<Recovery, StoreError> {
        let min_continuity_ms = rules.min_continuity.as_millis().min(u128::from(u64::MAX)) as u64;
        let mut conn = self.conn.clone();
        let queues: Vec<String> = conn
            .smembers(self.keys.inflight_queues(worker))
            .await
            .map_err(store_err)?;
        let mut mode = if force { "force" } else { "" };
        if self.keys.is_cluster() && !force {
            // The liveness mark and the fleet's beat are in the fleet's
            // slot, the in-flight hashes in their queues': the worker is
            // judged there first. A worker that renews between the judgement
            // and the recovery finds its jobs taken back (a claim or an ack
            // says so): they may run twice, never not at all.
            let verdict: i64 = scripts::JUDGE
                .key(self.keys.alive(worker))
                .key(self.keys.beat())
                .arg(min_continuity_ms)
                .invoke_async(&mut conn)
                .await
                .map_err(store_err)?;
            match verdict {
                -1 => return Ok(Recovery::Alive),
                -2 => return Ok(Recovery::Deferred),
                _ => mode = "judged",
            }
        }
        let mut requeued = 0u64;
        let mut poisoned = Vec::new();
        for q in &queues {
            let keys = self.keys.for_queue(q);
            let reply: Vec<Value> = scripts::RECOVER
                .key(keys.alive(worker))
                .key(keys.inflight(worker, q))
                .key(keys.queue(q))
                .key(keys.beat())
                .key(keys.suspects(q))
                .key(keys.suspects_at(q))
                .key(keys.solo(worker))
                .key(keys.inflight_batches(worker, q))
                .arg(mode)
                .arg(min_continuity_ms)
                .arg(rules.max_recoveries)
                .arg(worker)
                .arg(SUSPECT_MEMORY_MS)
                .invoke_async(&mut conn)
                .await
                .map_err(store_err)?;
            let recovered = poison::parse_recovery(reply)?;
            match recovered.requeued {
                -1 => return Ok(Recovery::Alive),
                -2 => return Ok(Recovery::Deferred),
                n => requeued += n.max(0) as u64,
            }
            if !recovered.poison.is_empty() {
                poisoned.extend(self.record_poison(worker, q, &recovered.poison, rules).await?);
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
            .key(self.keys.solo(worker))
            .arg(worker)
            .arg(if force { "force" } else { "" })
            .arg(min_continuity_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(store_err)?;
        if forgotten == 1 && self.keys.is_cluster() {
            // Its counts, token counters and suspect marks in each queue's
            // keyspace (forget_worker.lua removed the fleet's).
            for q in &queues {
                let keys = self.keys.for_queue(q);
                conn.del::<_, ()>(&[
                    keys.worker_stat("processed", worker),
                    keys.worker_stat("failed", worker),
                    keys.inflight_seq(worker),
                    keys.solo(worker),
                ])
                .await
                .map_err(store_err)?;
            }
        }
        Ok(match forgotten {
            1 => Recovery::Recovered(requeued, poisoned),
            -2 => Recovery::Deferred,
            _ => Recovery::Alive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(line: &[u8]) -> RedisError {
        match redis::parse_redis_value(line) {
            Ok(Value::ServerError(e)) => e.into(),
            other => panic!("not a server error: {other:?}"),
        }
    }

    #[test]
    fn a_server_loading_its_data_or_failing_over_is_away_and_an_oom_refusal_is_a_refusal() {
        let cases: [(&[u8], bool); 6] = [
            (b"-LOADING Redis is loading the dataset in memory\r\n", true),
            (b"-READONLY You can't write against a read only replica.\r\n", true),
            (
                b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n",
                true,
            ),
            (b"-ERR unknown command 'FOO'\r\n", false),
            (b"-OOM command not allowed when used memory > 'maxmemory'.\r\n", false),
            (b"-NOPERM this user has no permissions\r\n", false),
        ];
        for (line, away) in cases {
            let e = store_err(server_error(line));
            assert_eq!(
                matches!(e, StoreError::Unavailable(_)),
                away,
                "{}: {e}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
