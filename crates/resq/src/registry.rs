//! The registry: the allowlist of job classes a worker will run.
//!
//! A worker runs a payload only if its class is registered here, and only after
//! its `args` deserialize into the registered type. Nothing is looked up by
//! name in any other way: there is no path from a string in Redis to code that
//! was not registered.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::job::{decode_args, Job, JobContext, JobError};
use crate::names::check_class;
use crate::reason::{Reason, Rejection};

type Runner = dyn Fn(Vec<Value>, JobContext) -> Result<BoxFuture<'static, Result<(), JobError>>, Rejection>
    + Send
    + Sync;

/// The classes a worker may run, each with its typed handler.
///
/// ```
/// # use resq::{Job, JobContext, JobError, Registry};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping {}
/// # impl Job for Ping { const CLASS: &'static str = "Ping";
/// #   async fn perform(self, _: JobContext) -> Result<(), JobError> { Ok(()) } }
/// let registry = Registry::new().register::<Ping>();
/// assert!(registry.contains("Ping"));
/// assert!(!registry.contains("Kernel"));
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    runners: HashMap<&'static str, Arc<Runner>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `J` to the allowlist.
    ///
    /// # Panics
    /// When `J::CLASS` is not a valid class name or is registered twice: both are
    /// mistakes in the program itself, found the first time it starts.
    pub fn register<J: Job>(mut self) -> Self {
        if let Err(e) = check_class(J::CLASS) {
            panic!("cannot register job type: {e}");
        }
        let runner: Arc<Runner> = Arc::new(|args, ctx| {
            let job = decode_args::<J>(args)
                .map_err(|e| Rejection::new(Reason::InvalidArgs, e.to_string()))?;
            Ok(Box::pin(job.perform(ctx)) as BoxFuture<'static, _>)
        });
        if self.runners.insert(J::CLASS, runner).is_some() {
            panic!("job class {} is registered twice", J::CLASS);
        }
        self
    }

    /// True when `class` is on the allowlist.
    pub fn contains(&self, class: &str) -> bool {
        self.runners.contains_key(class)
    }

    /// The registered class names, sorted.
    pub fn classes(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.runners.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// Looks the class up and decodes its arguments; the returned future runs it.
    pub(crate) fn prepare(
        &self,
        class: &str,
        args: Vec<Value>,
        ctx: JobContext,
    ) -> Result<BoxFuture<'static, Result<(), JobError>>, Rejection> {
        let runner = self.runners.get(class).ok_or_else(|| {
            Rejection::new(
                Reason::UnregisteredClass,
                format!("class {:?} is not registered in this worker", short(class)),
            )
        })?;
        runner(args, ctx)
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("classes", &self.classes())
            .finish()
    }
}

/// Class names from Redis are outside data: keep them short in messages.
fn short(s: &str) -> String {
    s.chars().take(128).collect()
}
