//! The worker: fetch -> process -> manage -> launch, each in its own module,
//! with the liveness, heartbeat and reaper loops beside them.

mod backoff;
mod claim;
mod control;
mod fetch;
pub mod isolation;
mod launch;
mod liveness;
mod manage;
mod perform;
mod process;
mod promoter;
pub mod ranges;
mod reaper;
mod sweeper;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use control::{Control, ControlReceiver, Mode};
pub use process::{JobOutcome, Observer};

use glob::Pattern;

use crate::keyring::Keyring;
use crate::limits::PayloadLimits;
use crate::queue_spec::QueueSpec;
use crate::reason::Reason;
use crate::registry::Registry;
use crate::store::Store;
use crate::worker_id::WorkerId;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Queues in priority order, with globs and exclusions.
    pub queues: QueueSpec,
    /// Jobs run at once in this process.
    pub concurrency: usize,
    /// Exit once the queues are empty and nothing runs.
    pub burst: bool,
    /// Limits on what is read back from the queues.
    pub limits: PayloadLimits,
    /// Host part of the worker id (defaults to the machine's hostname).
    pub hostname: String,
    /// Pid part of the worker id (defaults to this process).
    pub pid: u32,
    /// Resque heartbeat period; Ruby prunes workers silent for 300 s.
    pub heartbeat_interval: Duration,
    /// How long resq's liveness mark lives without renewal. A worker whose mark
    /// lapsed is dead to the reaper; it is renewed every third of this.
    pub liveness_ttl: Duration,
    /// How often this worker looks for dead workers to recover.
    pub reap_interval: Duration,
    /// Idle polling starts at `poll_min` and doubles up to `poll_max`.
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// How often a spec with globs re-reads the queue set.
    pub queue_refresh: Duration,
    /// How often this worker moves due scheduled jobs and retries to their queues.
    pub schedule_interval: Duration,
    /// The timeout of a run when neither the job nor its type sets one.
    pub default_timeout: Option<Duration>,
    /// How often one of the workers sweeps expired jobs out of the queues.
    pub sweep_interval: Duration,
    /// Verification (and decryption) keys.
    pub keyring: Arc<Keyring>,
    /// Queues whose jobs may be unsigned, for migrating from Ruby producers
    /// (globs). Empty by default: every job must be signed. The worker warns
    /// at start-up when this is set.
    pub allow_unsigned: Vec<Pattern>,
    /// Run jobs in child processes (one per concurrency slot) that are
    /// killed at their timeout and limited in memory and CPU. `None` (the
    /// default): jobs run as tasks in this process, cancelled at their timeout.
    pub isolation: Option<isolation::Isolation>,
    /// A job in flight when its worker died is put back at most this many
    /// times (running alone from the first on); one more death records it
    /// as failed with reason `poison` (see [`crate::store::ReapRules`]).
    pub max_recoveries: u32,
    /// What expiry, retries, schedules and records are counted by: this
    /// machine's clock unless a benchmark or test moves it (see
    /// [`crate::clock::Clock`]).
    pub clock: crate::clock::Clock,
    /// How much longer than its job a replay mark is kept in the store: the
    /// clock skew between workers and Redis it absorbs (15 minutes).
    pub mark_margin: Duration,
}

impl WorkerConfig {
    /// Defaults for everything but the queues and the keys.
    pub fn new(queues: QueueSpec, keyring: Arc<Keyring>) -> Self {
        Self {
            queues,
            concurrency: 8,
            burst: false,
            limits: PayloadLimits::default(),
            hostname: hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into()),
            pid: std::process::id(),
            heartbeat_interval: Duration::from_secs(60),
            liveness_ttl: Duration::from_secs(15),
            reap_interval: Duration::from_secs(5),
            poll_min: Duration::from_millis(2),
            poll_max: Duration::from_millis(500),
            queue_refresh: Duration::from_secs(2),
            schedule_interval: Duration::from_secs(1),
            default_timeout: None,
            sweep_interval: Duration::from_secs(60),
            keyring,
            allow_unsigned: Vec::new(),
            isolation: None,
            max_recoveries: crate::store::DEFAULT_MAX_RECOVERIES,
            clock: crate::clock::Clock::system(),
            mark_margin: process::MARK_SKEW_MARGIN,
        }
    }

    /// The id this worker registers under.
    pub fn worker_id(&self) -> WorkerId {
        WorkerId::new(&self.hostname, self.pid, &self.queues.for_worker_id())
    }
}

/// What a worker did, returned when it exits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub processed: u64,
    pub failed: u64,
    pub failed_by_reason: BTreeMap<&'static str, u64>,
    /// Jobs put back at the head of their queues by a stop (TERM/INT).
    pub requeued: u64,
    /// Jobs of dead workers this worker's reaper recovered.
    pub recovered: u64,
    /// Jobs this worker's reaper recorded as poison.
    pub poisoned: u64,
}

impl WorkerReport {
    fn count(&mut self, reason: Option<Reason>) {
        self.processed += 1;
        if let Some(r) = reason {
            self.failed += 1;
            *self.failed_by_reason.entry(r.code()).or_default() += 1;
        }
    }
}

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("concurrency must be at least 1")]
    ZeroConcurrency,
    #[error(transparent)]
    OutOfRange(#[from] ranges::OutOfRange),
    #[error("the registry is empty: register at least one job type")]
    EmptyRegistry,
    #[error(
        "the keyring holds no verification key and no queue accepts unsigned jobs: give the worker the \
         keys its producers sign with (`resq keys generate` makes them)"
    )]
    NoKeys,
    #[error("{0}")]
    Isolation(#[from] isolation::IsolationError),
    #[error("recurring jobs: {0}")]
    Cron(#[from] crate::cron::CronError),
    #[error("recurring jobs: workers sign the jobs they fire: {0}")]
    CronSigner(#[source] crate::policy::PolicyError),
}

/// A worker process's job runner.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use resq::{Control, Registry, Store, Worker, WorkerConfig};
/// # async fn demo(store: Arc<dyn Store>, registry: Registry) -> Result<(), Box<dyn std::error::Error>> {
/// let keyring = Arc::new(resq::Keyring::load("/etc/resq/keys.toml".as_ref())?);
/// let config = WorkerConfig::new("critical,default,*".parse()?, keyring);
/// let (control, rx) = Control::new();
/// // control.quit() from a signal handler finishes running jobs and returns.
/// let report = Worker::new(store, registry, config).run(rx).await?;
/// println!("processed {}", report.processed);
/// # Ok(()) }
/// ```
pub struct Worker {
    store: Arc<dyn Store>,
    registry: Registry,
    config: WorkerConfig,
    observer: Option<Observer>,
    cron: Vec<crate::cron::CronEntry>,
}

impl Worker {
    pub fn new(store: Arc<dyn Store>, registry: Registry, config: WorkerConfig) -> Self {
        Self {
            store,
            registry,
            config,
            observer: None,
            cron: Vec::new(),
        }
    }

    /// Also fires these recurring jobs (not in burst mode). Give every worker
    /// the same entries: each tick is enqueued once however many run them.
    /// Needs a signing key.
    pub fn with_cron(mut self, entries: Vec<crate::cron::CronEntry>) -> Self {
        self.cron = entries;
        self
    }

    /// Calls `observer` after every job.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Runs until the queues are empty (burst) or the control says stop/quit.
    pub async fn run(mut self, control: ControlReceiver) -> Result<WorkerReport, WorkerError> {
        if self.config.concurrency == 0 {
            return Err(WorkerError::ZeroConcurrency);
        }
        self.config.check()?;
        if self.registry.classes().is_empty() {
            return Err(WorkerError::EmptyRegistry);
        }
        if !self.config.keyring.has_verification_keys() && self.config.allow_unsigned.is_empty() {
            return Err(WorkerError::NoKeys);
        }
        crate::cron::check_entries(&self.cron, &self.registry)?;
        // A burst worker drains and exits: it fires no recurring jobs.
        let cron = if self.cron.is_empty() || self.config.burst {
            None
        } else {
            let policy = crate::policy::Policy::new(Arc::clone(&self.config.keyring))
                .map_err(WorkerError::CronSigner)?
                .with_registry(self.registry.clone());
            let entries = std::mem::take(&mut self.cron);
            Some(crate::cron::CronScheduler::new(
                entries,
                policy,
                Arc::clone(&self.store),
            )?)
        };
        let children = match &self.config.isolation {
            Some(isolation) => Some(isolation::Children::start(isolation.clone(), self.config.concurrency).await?),
            None => None,
        };
        Ok(launch::launch(self, control, children, cron).await)
    }
}
