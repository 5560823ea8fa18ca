//! resq as a producer for a Ruby fleet: jobs for classes resq does not run,
//! pushed in Resque's exact form (`{"class":"X","args":[...]}`, positional
//! arguments, no signature) onto queues declared as Ruby's.
//!
//! A Ruby worker cannot check a signature, so nothing resq adds would protect
//! these jobs: this path is opt-in per queue, it keeps the checks that still
//! mean something (names, payload limits, queue caps), it refuses a queue a
//! resq worker serves (resq requires signatures there, and would refuse the
//! job), and it writes one audit line per job.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::limits::{LimitError, PayloadLimits};
use crate::names::{check_class, check_queue, NameError};
use crate::policy::Sealed;
use crate::store::{Store, StoreError};

/// Why a job for Ruby was not enqueued. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum RubyEnqueueError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(
        "queue {0} is not declared as Ruby's: declare it (the producer's list of Ruby queues) if Ruby \
         workers serve it, or enqueue a signed job for resq instead"
    )]
    NotRuby(String),
    #[error(
        "queue {queue} is served by resq worker {worker}, which requires signed jobs there: a job for \
         Ruby would be refused; enqueue it for resq (signed) or move the queue to Ruby first"
    )]
    SignedQueue { queue: String, worker: String },
    #[error("job {class} is refused: {source}")]
    Limits { class: String, source: LimitError },
    #[error("job {class} cannot be encoded: {source}")]
    Encode {
        class: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("could not store the job: {0}")]
    Store(#[from] StoreError),
}

/// Resque's payload: `class` first, then `args`.
#[derive(Serialize)]
struct RubyPayload<'a> {
    class: &'a str,
    args: &'a [Value],
}

/// Pushes jobs for Ruby workers.
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<dyn resq::Store>) -> Result<(), resq::ruby::RubyEnqueueError> {
/// let producer = resq::ruby::RubyProducer::new(store, vec!["legacy".into()], Vec::new())?;
/// producer.enqueue("Archive::Export", vec![serde_json::json!(42), serde_json::json!("csv")], "legacy").await?;
/// # Ok(()) }
/// ```
pub struct RubyProducer {
    store: Arc<dyn Store>,
    queues: Vec<String>,
    /// Queues (globs) resq's workers accept unsigned jobs on.
    allow_unsigned: Vec<glob::Pattern>,
    pub limits: PayloadLimits,
}

impl RubyProducer {
    /// A producer for `queues`, the queues Ruby workers serve.
    pub fn new(
        store: Arc<dyn Store>,
        queues: Vec<String>,
        allow_unsigned: Vec<glob::Pattern>,
    ) -> Result<Self, RubyEnqueueError> {
        for q in &queues {
            check_queue(q)?;
        }
        Ok(Self {
            store,
            queues,
            allow_unsigned,
            limits: PayloadLimits::default(),
        })
    }

    /// Pushes `{"class":class,"args":args}` to `queue`, after the checks
    /// (see the module doc), and logs an audit line.
    pub async fn enqueue(&self, class: &str, args: Vec<Value>, queue: &str) -> Result<(), RubyEnqueueError> {
        check_class(class)?;
        check_queue(queue)?;
        if !self.queues.iter().any(|q| q == queue) {
            return Err(RubyEnqueueError::NotRuby(queue.to_string()));
        }
        let open = self.allow_unsigned.iter().any(|p| p.matches(queue));
        if !open {
            if let Some(worker) = self.resq_worker_serving(queue).await? {
                return Err(RubyEnqueueError::SignedQueue {
                    queue: queue.to_string(),
                    worker,
                });
            }
        }
        let payload =
            serde_json::to_vec(&RubyPayload { class, args: &args }).map_err(|source| RubyEnqueueError::Encode {
                class: class.to_string(),
                source,
            })?;
        self.limits.check(&payload).map_err(|source| RubyEnqueueError::Limits {
            class: class.to_string(),
            source,
        })?;
        let bytes = payload.len();
        // Ruby's jobs carry no id: the checks above are this path's policy.
        let job = Sealed::new(String::new(), queue.to_string(), payload);
        self.store.enqueue(std::slice::from_ref(&job)).await?;
        tracing::info!(
            target: "resq::audit",
            action = "enqueue_for_ruby",
            class,
            queue,
            bytes,
            user = std::env::var("USER").unwrap_or_default(),
            "an unsigned job was enqueued for Ruby workers"
        );
        Ok(())
    }

    /// A registered resq worker whose queues include `queue`, if any.
    async fn resq_worker_serving(&self, queue: &str) -> Result<Option<String>, StoreError> {
        let workers = self.store.workers().await?;
        Ok(workers
            .into_iter()
            .filter(|w| w.resq)
            .find(|w| {
                let Some(spec) = w.id.splitn(3, ':').nth(2) else {
                    return false;
                };
                spec.parse::<crate::QueueSpec>()
                    .is_ok_and(|spec| spec.resolve(&[queue.to_string()]).iter().any(|q| q == queue))
            })
            .map(|w| w.id))
    }
}
