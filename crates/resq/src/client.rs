//! The producer: typed, validated, signed enqueue, one job or many in one
//! round trip.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::clock::UnixMs;
use crate::job::{encode_args, validate, ArgsError, Job};
use crate::keyring::Keyring;
use crate::policy::{parallel_map, Policy, PolicyError, SealOptions, Sealed};
use crate::store::{Store, StoreError, TrackFirst, TrackState, TrackUpdate};

/// How long a tracked job's record outlives the job's expiry.
pub const TRACK_KEPT_AFTER_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Why an enqueue failed. Nothing was stored, but in two cases of
/// [`EnqueueError::Store`]: `Unavailable` (the store's answer was lost: the
/// job may have been stored) and `NotReplicated` (the job was stored, on
/// the master only, as far as anyone knows: see [`StoreError::NotReplicated`]).
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error("{}", store_failure(.0))]
    Store(#[from] StoreError),
    #[error(
        "a {class} job with unique key {key:?} was enqueued within its window (job {existing}); nothing was stored"
    )]
    Duplicate {
        class: String,
        key: String,
        existing: String,
    },
    #[error("a scheduled job cannot also be unique: enqueue it unique now, or schedule it without a key")]
    UniqueScheduled,
    #[error("job {index} of the batch: {source}")]
    InBatch {
        /// Its place in the batch, from 0.
        index: usize,
        source: PolicyError,
    },
    #[error("job {index} of the batch is scheduled or unique: a batch holds jobs to run now, each without a key")]
    NotForBatch { index: usize },
}

/// A store's failure in an enqueue's words: a job stored on the master
/// but not confirmed on its replicas was stored, and must not read as if
/// it was not.
fn store_failure(e: &StoreError) -> String {
    match e {
        StoreError::NotReplicated { .. } => format!("the job was stored, not confirmed: {e}"),
        other => format!("could not store the job: {other}"),
    }
}

/// A job by class name and raw `args`, for the CLI and for bridges from
/// other languages: the same policy as typed jobs (give the policy a
/// registry to check the arguments).
#[derive(Debug, Clone)]
pub struct RawJob {
    pub class: String,
    pub args: Vec<Value>,
    pub queue: String,
    /// Lifetime and timeout (a `unique` key here is ignored: use `unique`).
    pub options: SealOptions,
    /// Run at this time instead of now (its lifetime counts from then).
    pub at: Option<std::time::SystemTime>,
    /// Enqueue only if no job of this class holds this key, for this window.
    pub unique: Option<(String, Duration)>,
}

/// Per-enqueue choices.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    /// The queue, instead of the type's.
    pub queue: Option<String>,
    /// The lifetime, instead of the type's or the policy's.
    pub ttl: Option<Duration>,
    /// The timeout of one run, instead of the type's.
    pub timeout: Option<Duration>,
    /// A uniqueness key, instead of the type's `unique_key`.
    pub unique_key: Option<String>,
    /// The trace this enqueue belongs to (W3C `traceparent`): the worker's
    /// span for the job continues it.
    pub traceparent: Option<crate::trace::TraceParent>,
}

/// Enqueues jobs through the policy into a store.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use resq::{Client, Job, JobContext, JobError, Keyring, Store};
/// # #[derive(serde::Serialize, serde::Deserialize, garde::Validate, schemars::JsonSchema)]
/// # #[serde(deny_unknown_fields)] struct SendEmail { #[garde(email)] to: String }
/// # impl Job for SendEmail { const CLASS: &'static str = "SendEmail";
/// #   async fn perform(self, _: JobContext) -> Result<(), JobError> { Ok(()) } }
/// # async fn demo(store: Arc<dyn Store>) -> Result<(), Box<dyn std::error::Error>> {
/// let keyring = Arc::new(Keyring::load("/etc/resq/keys.toml".as_ref())?);
/// let client = Client::new(store, keyring)?;
/// let id = client.enqueue(&SendEmail { to: "a@example.com".into() }).await?;
/// client.enqueue_to("urgent", &SendEmail { to: "b@example.com".into() }).await?;
/// let jobs: Vec<_> = (0..1000).map(|i| SendEmail { to: format!("u{i}@example.com") }).collect();
/// let ids = client.enqueue_bulk(&jobs).await?; // one round trip
/// // A job whose rules fail is refused here, naming the field; nothing is stored.
/// assert!(client.enqueue(&SendEmail { to: "not an address".into() }).await.is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
}

impl Client {
    /// A client with the default policy, signing with `keyring`'s signing key.
    pub fn new(store: Arc<dyn Store>, keyring: Arc<Keyring>) -> Result<Self, PolicyError> {
        Ok(Self::with_policy(store, Policy::new(keyring)?))
    }

    pub fn with_policy(store: Arc<dyn Store>, policy: Policy) -> Self {
        Self {
            store,
            policy: Arc::new(policy),
        }
    }

    /// Enqueues `job` on its type's queue; returns the job id.
    pub async fn enqueue<J: Job>(&self, job: &J) -> Result<String, EnqueueError> {
        self.enqueue_with(job, EnqueueOptions::default()).await
    }

    /// Enqueues `job` on `queue`.
    pub async fn enqueue_to<J: Job>(&self, queue: &str, job: &J) -> Result<String, EnqueueError> {
        self.enqueue_with(
            job,
            EnqueueOptions {
                queue: Some(queue.to_string()),
                ..EnqueueOptions::default()
            },
        )
        .await
    }

    /// Enqueues `job` with per-job options.
    pub async fn enqueue_with<J: Job>(&self, job: &J, options: EnqueueOptions) -> Result<String, EnqueueError> {
        let queue = options.queue.as_deref().unwrap_or(J::QUEUE);
        let unique = options.unique_key.or_else(|| job.unique_key());
        let mut sealed_options = self.seal_options::<J>(options.ttl, options.timeout, unique.clone());
        sealed_options.traceparent = options.traceparent;
        validate(job)?;
        let sealed = self.policy.seal(J::CLASS, queue, encode_args(job)?, sealed_options)?;
        match unique {
            Some(key) => self.push_unique::<J>(queue, sealed, key).await,
            None => self.push_one(queue, sealed).await,
        }
    }

    /// Pushes a sealed unique job; a duplicate follows `J::ON_DUPLICATE`.
    async fn push_unique<J: Job>(&self, queue: &str, sealed: Sealed, key: String) -> Result<String, EnqueueError> {
        self.push_unique_as(J::CLASS, J::UNIQUE_FOR, J::ON_DUPLICATE, queue, sealed, key)
            .await
    }

    async fn push_unique_as(
        &self,
        class: &str,
        window: Duration,
        on_duplicate: crate::job::OnDuplicate,
        queue: &str,
        sealed: Sealed,
        key: String,
    ) -> Result<String, EnqueueError> {
        use sha2::Digest;
        let hashed: String = sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let claim = crate::store::UniqueKey {
            class,
            key: &hashed,
            job_id: sealed.id(),
            window,
        };
        debug_assert_eq!(sealed.queue(), queue);
        match self.store.enqueue_unique(&sealed, &claim).await? {
            crate::store::Uniqueness::Enqueued => Ok(sealed.id().to_string()),
            crate::store::Uniqueness::Duplicate(existing) => match on_duplicate {
                crate::job::OnDuplicate::ReturnExisting => Ok(existing),
                crate::job::OnDuplicate::Reject => Err(EnqueueError::Duplicate {
                    class: class.to_string(),
                    key,
                    existing,
                }),
            },
        }
    }

    /// Schedules `job` to be pushed to its type's queue at `at`; returns its id.
    /// Every worker moves due jobs to their queues (about once a second).
    pub async fn enqueue_at<J: Job>(&self, job: &J, at: std::time::SystemTime) -> Result<String, EnqueueError> {
        let at = UnixMs::from_system_time(at);
        validate(job)?;
        let options = SealOptions {
            encrypt: J::ENCRYPT,
            ttl: J::TTL,
            starts_at: Some(at),
            timeout: None,
            unique: None,
            track: None,
            traceparent: None,
        };
        let sealed = self.policy.seal(J::CLASS, J::QUEUE, encode_args(job)?, options)?;
        self.store.schedule(&sealed, at).await?;
        Ok(sealed.id().to_string())
    }

    /// Schedules `job` to run after `delay`.
    pub async fn enqueue_in<J: Job>(&self, job: &J, delay: Duration) -> Result<String, EnqueueError> {
        self.enqueue_at(job, std::time::SystemTime::now() + delay).await
    }

    /// Enqueues all `jobs` on their type's queue in one round trip. Either every
    /// job passes the policy and all are sent, or none is. Jobs with a
    /// uniqueness key are claimed one by one after the rest.
    pub async fn enqueue_bulk<J: Job>(&self, jobs: &[J]) -> Result<Vec<String>, EnqueueError> {
        // Validate, encode and sign on every core: it is most of the cost.
        let sealed = parallel_map(jobs, |job| self.seal(job, J::QUEUE, None))?;
        let mut ids = Vec::with_capacity(sealed.len());
        let mut outgoing = Vec::with_capacity(sealed.len());
        let mut unique = Vec::new();
        for (job, sealed) in jobs.iter().zip(sealed) {
            ids.push(sealed.id().to_string());
            match job.unique_key() {
                // Unique jobs each take their own claim, after the others.
                Some(key) => unique.push((ids.len() - 1, sealed, key)),
                None => outgoing.push(sealed),
            }
        }
        self.store.enqueue(&outgoing).await?;
        for (index, sealed, key) in unique {
            ids[index] = self.push_unique::<J>(J::QUEUE, sealed, key).await?;
        }
        Ok(ids)
    }

    /// Enqueues a job by class name and raw `args`, through the same policy.
    /// This is the path for the CLI and for bridges from other languages; give
    /// the policy a registry (`Policy::with_registry`) to check the arguments.
    pub async fn enqueue_raw(&self, class: &str, args: Vec<Value>, queue: &str) -> Result<String, EnqueueError> {
        self.enqueue_raw_with(class, args, queue, SealOptions::default()).await
    }

    /// `enqueue_raw` with options (a timeout, a lifetime). A `unique` key in
    /// the options is carried, not enforced: use the typed path for that.
    pub async fn enqueue_raw_with(
        &self,
        class: &str,
        args: Vec<Value>,
        queue: &str,
        options: SealOptions,
    ) -> Result<String, EnqueueError> {
        let sealed = self.policy.seal(class, queue, args, options)?;
        self.push_one(queue, sealed).await
    }

    /// Enqueues a [`RawJob`]: now, at a time, or unique for a window.
    pub async fn enqueue_raw_job(&self, job: RawJob) -> Result<String, EnqueueError> {
        let RawJob {
            class,
            args,
            queue,
            mut options,
            at,
            unique,
        } = job;
        match (at, unique) {
            (Some(_), Some(_)) => Err(EnqueueError::UniqueScheduled),
            (Some(at), None) => {
                let at = UnixMs::from_system_time(at);
                options.starts_at = Some(at);
                options.unique = None;
                let owner = options.track.clone();
                let sealed = self.policy.seal(&class, &queue, args, options)?;
                self.track_enqueued(&[(owner.as_deref(), &class, &sealed)], TrackState::Scheduled)
                    .await?;
                self.store.schedule(&sealed, at).await?;
                Ok(sealed.id().to_string())
            }
            (None, Some((key, window))) => {
                options.unique = Some(key.clone());
                let owner = options.track.clone();
                let sealed = self.policy.seal(&class, &queue, args, options)?;
                self.track_enqueued(&[(owner.as_deref(), &class, &sealed)], TrackState::Queued)
                    .await?;
                self.push_unique_as(&class, window, crate::job::OnDuplicate::Reject, &queue, sealed, key)
                    .await
            }
            (None, None) => {
                options.unique = None;
                let owner = options.track.clone();
                let sealed = self.policy.seal(&class, &queue, args, options)?;
                self.track_enqueued(&[(owner.as_deref(), &class, &sealed)], TrackState::Queued)
                    .await?;
                self.push_one(&queue, sealed).await
            }
        }
    }

    /// A tracked job's first record, written before the job is stored (a
    /// worker's `running` can then never be overwritten by `queued`). A
    /// job that is then not stored leaves a record no one can reach by a
    /// job id the caller was given; it expires with the job's lifetime.
    async fn track_enqueued(
        &self,
        jobs: &[(Option<&str>, &str, &Sealed)],
        state: TrackState,
    ) -> Result<(), StoreError> {
        let now = self.policy.clock().now();
        let updates: Vec<TrackUpdate> = jobs
            .iter()
            .filter_map(|(owner, class, sealed)| Some((owner.as_deref()?, class, sealed)))
            .map(|(owner, class, sealed)| {
                let expires_at = sealed.expires_at().unwrap_or(now);
                TrackUpdate {
                    id: sealed.id().to_string(),
                    state,
                    attempt: 0,
                    at: now,
                    first: Some(TrackFirst {
                        owner: owner.to_string(),
                        class: class.to_string(),
                        queue: sealed.queue().to_string(),
                        expires_at,
                    }),
                    error: None,
                    keep_until: expires_at.plus(TRACK_KEPT_AFTER_EXPIRY),
                }
            })
            .collect();
        if updates.is_empty() {
            return Ok(());
        }
        self.store.track(&updates).await
    }

    /// Many [`RawJob`]s, all or nothing: every job passes the policy and
    /// all are stored in one write, or nothing is (the first refusal names
    /// its job by index). Scheduled and unique jobs are not taken here:
    /// each takes a claim of its own.
    pub async fn enqueue_raw_bulk(&self, jobs: &[RawJob]) -> Result<Vec<String>, EnqueueError> {
        if let Some(index) = jobs.iter().position(|j| j.at.is_some() || j.unique.is_some()) {
            return Err(EnqueueError::NotForBatch { index });
        }
        let indexed: Vec<(usize, &RawJob)> = jobs.iter().enumerate().collect();
        let sealed = parallel_map(&indexed, |(index, job)| {
            let options = SealOptions {
                unique: None,
                ..job.options.clone()
            };
            self.policy
                .seal(&job.class, &job.queue, job.args.clone(), options)
                .map_err(|source| EnqueueError::InBatch { index: *index, source })
        })?;
        let ids = sealed.iter().map(|s| s.id().to_string()).collect();
        let tracked: Vec<(Option<&str>, &str, &Sealed)> = jobs
            .iter()
            .zip(&sealed)
            .map(|(job, sealed)| (job.options.track.as_deref(), job.class.as_str(), sealed))
            .collect();
        self.track_enqueued(&tracked, TrackState::Queued).await?;
        self.store.enqueue(&sealed).await?;
        Ok(ids)
    }

    async fn push_one(&self, queue: &str, sealed: Sealed) -> Result<String, EnqueueError> {
        debug_assert_eq!(sealed.queue(), queue);
        self.store.enqueue(std::slice::from_ref(&sealed)).await?;
        Ok(sealed.id().to_string())
    }

    fn seal<J: Job>(&self, job: &J, queue: &str, ttl: Option<Duration>) -> Result<Sealed, EnqueueError> {
        self.seal_with(job, queue, ttl, None, job.unique_key())
    }

    fn seal_with<J: Job>(
        &self,
        job: &J,
        queue: &str,
        ttl: Option<Duration>,
        timeout: Option<Duration>,
        unique: Option<String>,
    ) -> Result<Sealed, EnqueueError> {
        validate(job)?;
        let options = self.seal_options::<J>(ttl, timeout, unique);
        Ok(self.policy.seal(J::CLASS, queue, encode_args(job)?, options)?)
    }

    /// A job type's seal options with per-job choices on top.
    fn seal_options<J: Job>(
        &self,
        ttl: Option<Duration>,
        timeout: Option<Duration>,
        unique: Option<String>,
    ) -> SealOptions {
        SealOptions {
            encrypt: J::ENCRYPT,
            ttl: ttl.or(J::TTL),
            starts_at: None,
            timeout,
            unique,
            track: None,
            traceparent: None,
        }
    }

    /// The store behind this client.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}
