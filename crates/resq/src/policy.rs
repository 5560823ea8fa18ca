//! The policy check every enqueue path goes through (library, CLI, and later
//! HTTP): names, class allowlist, argument rules, payload limits, then the
//! envelope is sealed (expiry, encryption, signature) before anything is stored.
//!
//! A producer's job is refused here with a typed error, so it is never written;
//! the worker checks everything again on what it reads back.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::clock::{Clock, UnixMs};
use crate::envelope::{encrypt_args, sign, Envelope, SealError};
use crate::keyring::Keyring;
use crate::limits::{LimitError, PayloadLimits};
use crate::mark::MarkSource;
use crate::names::{check_class, check_queue, NameError};
use crate::reason::Rejection;
use crate::registry::Registry;

/// What the producer side enforces, and the keys it signs with.
#[derive(Debug, Clone)]
pub struct Policy {
    pub limits: PayloadLimits,
    /// How long a job may wait before it expires and must never run.
    pub default_ttl: Duration,
    keyring: Arc<Keyring>,
    registry: Option<Registry>,
    /// Replay marks for the envelopes this policy seals (shared by clones).
    marks: Arc<MarkSource>,
    /// What `enqueued_at` and `expires_at` are counted from.
    clock: Clock,
}

/// Per-job choices on top of the job type's.
#[derive(Debug, Clone, Default)]
pub struct SealOptions {
    /// Encrypt the arguments (the job type may ask for it too).
    pub encrypt: bool,
    /// This job's lifetime, instead of the type's or the policy's.
    pub ttl: Option<Duration>,
    /// When the job is scheduled to start: its lifetime counts from then, so
    /// a job scheduled a week out does not expire before it runs.
    pub starts_at: Option<UnixMs>,
    /// This job's timeout, instead of the type's.
    pub timeout: Option<Duration>,
    /// The uniqueness key the job is enqueued under (recorded, signed).
    pub unique: Option<String>,
    /// Track the job's state (`Store::tracked`), readable by this owner
    /// (an API token's id; empty for the library). The envelope carries
    /// `"track": true` (signed) so workers record its progress.
    pub track: Option<String>,
    /// The trace the enqueue belongs to (W3C `traceparent`): carried signed,
    /// so the worker's span for the job continues it.
    pub traceparent: Option<crate::trace::TraceParent>,
}

/// The envelope field that asks workers to record a job's progress.
pub const TRACK_FIELD: &str = "track";

/// Why a job was not enqueued. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the keyring holds no signing key: a producer signs every job (`resq keys generate` makes one)")]
    NoSigningKey,
    #[error("job {class} needs encrypted arguments but the keyring has no encryption_key")]
    NoEncryptionKey { class: String },
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("job {class} on queue {queue} is refused: {source}")]
    Limits {
        class: String,
        queue: String,
        source: LimitError,
    },
    #[error("job {class} is refused: {rejection}")]
    Rejected { class: String, rejection: Rejection },
    #[error("job {class} could not be sealed: {source}")]
    Seal { class: String, source: SealError },
}

impl Policy {
    /// A policy that signs with `keyring`'s signing key.
    pub fn new(keyring: Arc<Keyring>) -> Result<Policy, PolicyError> {
        if keyring.signer().is_none() {
            return Err(PolicyError::NoSigningKey);
        }
        Ok(Policy {
            limits: PayloadLimits::default(),
            default_ttl: Duration::from_secs(7 * 24 * 3600),
            keyring,
            registry: None,
            marks: Arc::new(MarkSource::new()),
            clock: Clock::system(),
        })
    }

    /// Counts jobs' times from `clock` instead of this machine's clock
    /// (benchmarks and tests that move time; see [`Clock`]).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock jobs' times are counted from.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Also refuse classes that `registry` does not know, and arguments that
    /// break their type's rules (the path for untyped producers: CLI, HTTP).
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The registry the policy checks classes and arguments against.
    pub fn registry(&self) -> Option<&Registry> {
        self.registry.as_ref()
    }

    /// Checks a job and seals it: the envelope's bytes, ready to store.
    pub fn seal(
        &self,
        class: &str,
        queue: &str,
        args: Vec<Value>,
        options: SealOptions,
    ) -> Result<Sealed, PolicyError> {
        check_class(class)?;
        check_queue(queue)?;
        let (mut encrypt, mut ttl) = (options.encrypt, options.ttl);
        if let Some(registry) = &self.registry {
            registry
                .check_args(class, args.clone())
                .map_err(|rejection| PolicyError::Rejected {
                    class: class.to_string(),
                    rejection,
                })?;
            if let Some(info) = registry.info(class) {
                encrypt |= info.encrypt;
                ttl = ttl.or(info.ttl);
            }
        }
        let now = self.clock.now().as_secs_f64();
        let id = uuid::Uuid::now_v7().to_string();
        let mut envelope = Envelope {
            class: class.to_string(),
            args,
            id: Some(id.clone()),
            queue: Some(queue.to_string()),
            enqueued_at: Some(round_ms(now)),
            expires_at: Some(round_ms(
                options.starts_at.map_or(now, UnixMs::as_secs_f64).max(now)
                    + ttl.unwrap_or(self.default_ttl).as_secs_f64(),
            )),
            attempt: 0,
            timeout_ms: options.timeout.map(|t| t.as_millis() as u64),
            mark: Some(self.marks.next().to_string()),
            unique: options.unique.clone(),
            enc: None,
            extra: {
                let mut extra = serde_json::Map::new();
                if options.track.is_some() {
                    extra.insert(TRACK_FIELD.to_string(), serde_json::Value::Bool(true));
                }
                if let Some(t) = &options.traceparent {
                    extra.insert(
                        crate::trace::TRACEPARENT_FIELD.to_string(),
                        serde_json::Value::String(t.as_str().to_string()),
                    );
                }
                extra
            },
            sig: None,
        };
        let seal_err = |source| PolicyError::Seal {
            class: class.to_string(),
            source,
        };
        if encrypt {
            let key = self.keyring.encrypter().ok_or_else(|| PolicyError::NoEncryptionKey {
                class: class.to_string(),
            })?;
            encrypt_args(&mut envelope, key).map_err(seal_err)?;
        }
        let signer = self.keyring.signer().ok_or(PolicyError::NoSigningKey)?;
        sign(&mut envelope, signer).map_err(seal_err)?;
        let bytes = envelope.to_bytes().map_err(|e| seal_err(SealError::Encode(e)))?;
        self.limits.check(&bytes).map_err(|source| PolicyError::Limits {
            class: class.to_string(),
            queue: queue.to_string(),
            source,
        })?;
        let mut sealed = Sealed::new(id, queue.to_string(), bytes);
        sealed.expires_at = envelope.expires_at.map(UnixMs::from_secs_f64);
        Ok(sealed)
    }
}

/// A job that passed the policy (or a retry the worker re-signed): the only
/// thing a store's `enqueue`, `schedule` and `fire_cron` take. Nothing
/// outside this crate can make one, so every door goes through the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    id: String,
    queue: String,
    payload: Vec<u8>,
    expires_at: Option<UnixMs>,
}

impl Sealed {
    pub(crate) fn new(id: String, queue: String, payload: Vec<u8>) -> Self {
        Self {
            id,
            queue,
            payload,
            expires_at: None,
        }
    }

    /// When the job expires, when the policy that sealed it knows.
    pub fn expires_at(&self) -> Option<UnixMs> {
        self.expires_at
    }

    /// The job's id (empty for a job without one, as Ruby's are).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The queue it goes to.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The envelope's bytes, as they are stored.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// Below this many jobs a bulk is sealed on the calling thread.
const PARALLEL_SEAL_MIN: usize = 2048;

impl Policy {
    /// Seals many jobs of one class and queue, in order, on every core when
    /// there are many (signing is the bulk of the cost; Redis is not).
    pub fn seal_many(
        &self,
        class: &str,
        queue: &str,
        args: Vec<Vec<Value>>,
        options: SealOptions,
    ) -> Result<Vec<Sealed>, PolicyError> {
        parallel_map(&args, |a| self.seal(class, queue, a.clone(), options.clone()))
    }
}

/// Maps `items` in order, on every core when there are many of them; the first
/// error wins. Runs on scoped threads, so it blocks the caller for its length.
pub(crate) fn parallel_map<T: Sync, R: Send, E: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if items.len() < PARALLEL_SEAL_MIN || threads < 2 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    let parts: Vec<Option<Result<Vec<R>, E>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Result<Vec<R>, E>>()))
            .collect();
        handles.into_iter().map(|h| h.join().ok()).collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        match part {
            Some(Ok(values)) => out.extend(values),
            Some(Err(e)) => return Err(e),
            // A panic in `f` is a bug in this crate, not outside data: surface it.
            None => std::panic::resume_unwind(Box::new("a sealing thread panicked")),
        }
    }
    Ok(out)
}

/// Millisecond precision keeps timestamps short and exact in every language.
fn round_ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}
