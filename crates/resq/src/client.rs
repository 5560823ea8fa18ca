//! The producer: typed enqueue, one job or many in one round trip.

use std::sync::Arc;

use serde_json::Value;

use crate::job::{encode_args, ArgsError, Job};
use crate::policy::{Policy, PolicyError};
use crate::store::{OutgoingJob, Store, StoreError};

/// Why an enqueue failed. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error("could not store the job: {0}")]
    Store(#[from] StoreError),
}

/// Enqueues jobs through the policy into a store.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use resq::{Client, Job, JobContext, JobError, Store};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct SendEmail { to: String }
/// # impl Job for SendEmail { const CLASS: &'static str = "SendEmail";
/// #   async fn perform(self, _: JobContext) -> Result<(), JobError> { Ok(()) } }
/// # async fn demo(store: Arc<dyn Store>) -> Result<(), resq::EnqueueError> {
/// let client = Client::new(store);
/// let id = client.enqueue(&SendEmail { to: "a@example.com".into() }).await?;
/// client.enqueue_to("urgent", &SendEmail { to: "b@example.com".into() }).await?;
/// let jobs: Vec<_> = (0..1000).map(|i| SendEmail { to: format!("{i}@example.com") }).collect();
/// let ids = client.enqueue_bulk(&jobs).await?; // one round trip
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
}

impl Client {
    /// A client with the default policy.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_policy(store, Policy::default())
    }

    pub fn with_policy(store: Arc<dyn Store>, policy: Policy) -> Self {
        Self {
            store,
            policy: Arc::new(policy),
        }
    }

    /// Enqueues `job` on its type's queue; returns the job id.
    pub async fn enqueue<J: Job>(&self, job: &J) -> Result<String, EnqueueError> {
        self.enqueue_to(J::QUEUE, job).await
    }

    /// Enqueues `job` on `queue`.
    pub async fn enqueue_to<J: Job>(&self, queue: &str, job: &J) -> Result<String, EnqueueError> {
        self.enqueue_raw(J::CLASS, encode_args(job)?, queue).await
    }

    /// Enqueues all `jobs` on their type's queue in one round trip. Either every
    /// job passes the policy and all are sent, or none is.
    pub async fn enqueue_bulk<J: Job>(&self, jobs: &[J]) -> Result<Vec<String>, EnqueueError> {
        let mut ids = Vec::with_capacity(jobs.len());
        let mut outgoing = Vec::with_capacity(jobs.len());
        for job in jobs {
            let (id, payload) = self.policy.seal(J::CLASS, J::QUEUE, encode_args(job)?)?;
            ids.push(id);
            outgoing.push(OutgoingJob {
                queue: J::QUEUE.to_string(),
                payload,
            });
        }
        self.store.enqueue(&outgoing).await?;
        Ok(ids)
    }

    /// Enqueues a job by class name and raw `args`, through the same policy.
    /// This is the path for the CLI and for bridges from other languages.
    pub async fn enqueue_raw(
        &self,
        class: &str,
        args: Vec<Value>,
        queue: &str,
    ) -> Result<String, EnqueueError> {
        let (id, payload) = self.policy.seal(class, queue, args)?;
        self.store
            .enqueue(&[OutgoingJob {
                queue: queue.to_string(),
                payload,
            }])
            .await?;
        Ok(id)
    }

    /// The store behind this client.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}
