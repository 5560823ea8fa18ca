//! resq: background jobs on Resque's Redis protocol, secure by default.
//!
//! Write a job as a Rust type, register it, enqueue it with a [`Client`], and
//! run it with a [`Worker`]. Storage is behind the [`Store`] traits (one per
//! role: [`JobQueues`], [`WorkerRegistry`], [`Schedules`], [`AdminStore`]);
//! the Redis store lives in the `resq-redis` crate.
//!
//! Data flows one way: producer -> [`policy`] (allowlist, argument rules,
//! limits) -> [`envelope`] (expiry, encryption, signature) -> [`Store`] ->
//! [`Worker`] (verify, decrypt, validate, run) -> outcome (ack, or a Resque
//! failure record with a [`Reason`]).
//!
//! ```
//! use resq::{Job, JobContext, JobError, Registry};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Resize {
//!     #[garde(range(min = 1))]
//!     image_id: u64,
//!     #[garde(range(min = 16, max = 4096))]
//!     width: u32,
//! }
//!
//! impl Job for Resize {
//!     const CLASS: &'static str = "Resize";
//!     const QUEUE: &'static str = "images";
//!     async fn perform(self, ctx: JobContext) -> Result<(), JobError> {
//!         println!("resizing {} to {} (job {:?})", self.image_id, self.width, ctx.id);
//!         Ok(())
//!     }
//! }
//!
//! // Only registered classes ever run.
//! let registry = Registry::new().register::<Resize>();
//! assert_eq!(registry.classes(), ["Resize"]);
//! ```

pub mod admin;
pub mod client;
pub mod clock;
pub mod cron;
pub mod envelope;
pub mod failure;
pub mod job;
pub mod keyring;
pub mod limits;
pub mod mark;
pub mod names;
pub mod policy;
pub mod queue_spec;
pub mod reason;
pub mod registry;
pub mod retry;
pub mod ruby;
pub mod store;
pub mod toml_error;
pub mod trace;
pub mod worker;
pub mod worker_id;

pub use admin::{Admin, AdminError, FailedEntry, FailedFilter, QueuedEntry, ScheduledEntry, Search};
pub use client::{Client, EnqueueError, EnqueueOptions, RawJob};
pub use envelope::Envelope;
pub use failure::FailureInfo;
pub use job::{ArgsShape, Job, JobContext, JobError, OnDuplicate};
pub use keyring::{Keyring, KeyringError, SigAlg};
pub use limits::PayloadLimits;
pub use policy::{Policy, PolicyError, SealOptions, Sealed};
pub use registry::{ClassInfo, Hooks};
// Job types derive these; re-exported so their versions always match resq's.
pub use clock::UnixMs;
pub use garde;
pub use queue_spec::QueueSpec;
pub use reason::{Reason, Rejection};
pub use registry::Registry;
pub use schemars;
pub use store::{
    AdminStore, FailureRecord, JobQueues, Outcome, Schedule, Schedules, Store, StoreError, WorkerRegistry, Working,
    WorkingRecord,
};
pub use worker::{Control, JobOutcome, Mode, Observer, Worker, WorkerConfig, WorkerError, WorkerReport};
pub use worker_id::WorkerId;
