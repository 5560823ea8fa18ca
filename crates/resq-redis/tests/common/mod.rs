//! Shared test support: a private redis-server, a store on it, and jobs.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use local_redis::LocalRedis;
use resq::{Client, Control, Job, JobContext, JobError, Keyring, Registry, Store, Worker, WorkerConfig, WorkerReport};
use resq_redis::{RedisConfig, RedisStore};
use serde::{Deserialize, Serialize};

pub struct Env {
    pub redis: LocalRedis,
    pub store: RedisStore,
    pub keyring: Arc<Keyring>,
}

impl Env {
    pub async fn start() -> Env {
        let redis = LocalRedis::start().expect("start redis-server");
        let store = RedisStore::connect(&RedisConfig::new(redis.url()), "resque")
            .await
            .expect("connect");
        Env {
            redis,
            store,
            keyring: Arc::new(Keyring::ephemeral()),
        }
    }

    /// A client signing with this environment's keys.
    pub fn client(&self) -> Client {
        Client::new(self.dyn_store(), Arc::clone(&self.keyring)).expect("client")
    }

    /// A fast worker config with this environment's keys.
    pub fn config(&self, queues: &str) -> WorkerConfig {
        fast_config(queues, Arc::clone(&self.keyring))
    }

    pub fn dyn_store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    pub fn conn(&self) -> resq_redis::Connection {
        self.store.connection()
    }

    pub async fn push_raw(&self, queue: &str, payload: &[u8]) {
        let mut c = self.conn();
        redis::pipe()
            .sadd("resque:queues", queue)
            .rpush(format!("resque:queue:{queue}"), payload)
            .query_async::<()>(&mut c)
            .await
            .unwrap();
    }

    /// One command's reply, on a connection of the test's own.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        cmd.query_async(&mut self.conn()).await.unwrap()
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        redis::cmd("GET").arg(key).query_async(&mut self.conn()).await.unwrap()
    }

    pub async fn lrange(&self, key: &str) -> Vec<String> {
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .unwrap()
    }

    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut k: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut self.conn())
            .await
            .unwrap();
        k.sort();
        k
    }

    /// Runs a burst worker over `queues` until they are empty.
    pub async fn burst(&self, queues: &str, registry: Registry) -> WorkerReport {
        let mut config = self.config(queues);
        config.burst = true;
        let (_control, rx) = Control::new();
        Worker::new(self.dyn_store(), registry, config)
            .run(rx)
            .await
            .expect("worker runs")
    }
}

/// Queues named `ruby*` accept unsigned jobs, as during a migration from Ruby.
pub fn fast_config(queues: &str, keyring: Arc<Keyring>) -> WorkerConfig {
    let mut config = WorkerConfig::new(queues.parse().expect("queue spec"), keyring);
    config.allow_unsigned = vec![glob::Pattern::new("ruby*").expect("pattern")];
    config.hostname = "testhost".into();
    config.concurrency = 4;
    config.poll_min = Duration::from_millis(1);
    config.poll_max = Duration::from_millis(20);
    config.liveness_ttl = Duration::from_millis(600);
    config.reap_interval = Duration::from_millis(200);
    config.schedule_interval = Duration::from_millis(50);
    config
}

pub static ECHOED: AtomicU64 = AtomicU64::new(0);
/// Every message an `Echo` or `Secret` actually ran with.
pub static RAN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

pub fn ran(message: &str) -> bool {
    RAN.lock().unwrap().iter().any(|m| m == message)
}

#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Echo {
    #[garde(length(max = 1000))]
    pub message: String,
}
impl Job for Echo {
    const CLASS: &'static str = "Echo";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        ECHOED.fetch_add(1, Ordering::SeqCst);
        RAN.lock().unwrap().push(self.message);
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fail {
    #[garde(skip)]
    pub message: String,
}
impl Job for Fail {
    const CLASS: &'static str = "Fail";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        Err(JobError::msg(self.message))
    }
}

#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Panic {}
impl Job for Panic {
    const CLASS: &'static str = "Panic";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        panic!("boom in a job")
    }
}

/// Positional, as Ruby enqueues `Resque.enqueue(Add, 1, 2)`.
#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
pub struct Add(#[garde(skip)] pub i64, #[garde(skip)] pub i64);
impl Job for Add {
    const CLASS: &'static str = "Add";
    const ARGS: resq::ArgsShape = resq::ArgsShape::Positional;
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        if self.0.checked_add(self.1).is_none() {
            return Err(JobError::msg("overflow"));
        }
        Ok(())
    }
}

/// Waits `ms` milliseconds.
#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nap {
    #[garde(range(max = 60_000))]
    pub ms: u64,
}
impl Job for Nap {
    const CLASS: &'static str = "Nap";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(())
    }
}

/// Personal data: encrypted at rest.
#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    #[garde(pattern(r"^[0-9]{3}-[0-9]{2}-[0-9]{4}$"))]
    pub ssn: String,
}
impl Job for Secret {
    const CLASS: &'static str = "Secret";
    const ENCRYPT: bool = true;
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        RAN.lock().unwrap().push(self.ssn);
        Ok(())
    }
}

pub fn registry() -> Registry {
    Registry::new()
        .register::<Echo>()
        .register::<Fail>()
        .register::<Panic>()
        .register::<Add>()
        .register::<Nap>()
        .register::<Secret>()
        .register::<Tracked>()
}

/// The id of every `Tracked` run, recorded when it starts (a run cut short
/// still counts: it started).
pub static STARTED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// How many runs of this job id started.
pub fn starts(id: &str) -> usize {
    STARTED.lock().unwrap().iter().filter(|s| *s == id).count()
}

/// Records its id, then waits `ms` milliseconds.
#[derive(Debug, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tracked {
    #[garde(range(max = 60_000))]
    pub ms: u64,
}
impl Job for Tracked {
    const CLASS: &'static str = "Tracked";
    async fn perform(self, ctx: JobContext) -> Result<(), JobError> {
        STARTED.lock().unwrap().push(ctx.id.unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(())
    }
}

/// Waits (with a deadline that fails loudly) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Env {
    /// The reason of every failure record, oldest first.
    pub async fn failure_reasons(&self) -> Vec<String> {
        self.lrange("resque:failed")
            .await
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(r).unwrap()["reason"]
                    .as_str()
                    .unwrap_or("-")
                    .to_string()
            })
            .collect()
    }

    /// Jobs in one worker's in-flight hash (claims beside them not counted).
    pub async fn in_flight(&self, worker: &resq::WorkerId, queue: &str) -> Vec<String> {
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(format!("resque:resq:inflight:{worker}:{queue}"))
            .query_async(&mut self.conn())
            .await
            .unwrap();
        fields.into_iter().filter(|f| f.parse::<u64>().is_ok()).collect()
    }
}

/// Captures every log line on this thread (a `current_thread` runtime's
/// tasks included) until the guard is dropped.
pub fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || LogSink(std::sync::Arc::clone(&sink.0)))
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// The captured log text.
#[derive(Clone, Default)]
pub struct Logs(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

pub struct LogSink(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A worker's registration with a liveness of `ttl_ms`, started now.
pub fn registration(worker: &resq::WorkerId, ttl_ms: u64) -> resq::store::Registration<'_> {
    resq::store::Registration {
        worker,
        started: resq::UnixMs::now(),
        liveness_ttl: Duration::from_millis(ttl_ms),
    }
}

/// Now, in Unix ms.
pub fn now_ms() -> u64 {
    resq::UnixMs::now().0
}

/// Acks `jobs` as succeeded and checks every one was still in flight.
pub async fn succeed(store: &RedisStore, worker: &resq::WorkerId, jobs: &[resq::store::FetchedJob]) {
    let done: Vec<resq::store::Finished> = jobs
        .iter()
        .map(|job| resq::store::Finished {
            job: job.clone(),
            outcome: resq::store::Outcome::Succeeded,
        })
        .collect();
    let report = resq::store::JobQueues::finish(store, worker, &done, &resq::Working::Keep)
        .await
        .expect("ack");
    assert_eq!(report.acked, jobs.len() as u64);
}
