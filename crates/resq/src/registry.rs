//! The registry: the allowlist of job classes a worker will run, and the
//! argument rules and schema of each.
//!
//! A worker runs a payload only if its class is registered here, and only after
//! its `args` deserialize into the registered type and pass its rules. Nothing
//! is looked up by name in any other way: there is no path from a string in
//! Redis to code that was not registered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::job::{decode_args, Job, JobContext, JobError};
use crate::names::check_class;
use crate::reason::{Reason, Rejection};

type Runner =
    dyn Fn(Vec<Value>, JobContext) -> Result<BoxFuture<'static, Result<(), JobError>>, Rejection> + Send + Sync;
type Checker = dyn Fn(Vec<Value>) -> Result<(), Rejection> + Send + Sync;

/// What the registry knows of one class.
#[derive(Clone)]
struct Entry {
    runner: Arc<Runner>,
    checker: Arc<Checker>,
    schema: Value,
    info: ClassInfo,
}

/// A registered class's policy: its queue, encryption and lifetime.
#[derive(Debug, Clone, Copy)]
pub struct ClassInfo {
    pub class: &'static str,
    pub queue: &'static str,
    pub encrypt: bool,
    pub ttl: Option<Duration>,
    pub max_attempts: u32,
    pub retry_delay: fn(u32) -> Duration,
    pub timeout: Option<Duration>,
    pub hooks: Hooks,
}

/// A class's hooks (see `Job`), as plain function pointers.
#[derive(Clone, Copy)]
pub struct Hooks {
    pub before_perform: fn(&JobContext) -> Result<(), JobError>,
    pub after_perform: fn(&JobContext),
    pub on_failure: fn(&JobContext, &crate::failure::FailureInfo),
    pub on_retry: fn(&JobContext, &crate::failure::FailureInfo, Duration),
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

/// The classes a worker may run, each with its typed handler.
///
/// ```
/// # use resq::{Job, JobContext, JobError, Registry};
/// # #[derive(serde::Serialize, serde::Deserialize, garde::Validate, schemars::JsonSchema)]
/// # #[serde(deny_unknown_fields)] struct Ping {}
/// # impl Job for Ping { const CLASS: &'static str = "Ping";
/// #   async fn perform(self, _: JobContext) -> Result<(), JobError> { Ok(()) } }
/// let registry = Registry::new().register::<Ping>();
/// assert!(registry.contains("Ping"));
/// assert!(!registry.contains("Kernel"));
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    entries: HashMap<&'static str, Entry>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `J` to the allowlist.
    ///
    /// # Panics
    /// When `J::CLASS` is not a valid class name, is registered twice, or `J`'s
    /// schema accepts unknown fields: mistakes in the program itself, found the
    /// first time it starts.
    pub fn register<J: Job>(mut self) -> Self {
        if let Err(e) = check_class(J::CLASS) {
            panic!("cannot register job type: {e}");
        }
        let schema = schemars::schema_for!(J).to_value();
        if schema.get("type") == Some(&Value::from("object"))
            && schema.get("additionalProperties") != Some(&Value::Bool(false))
        {
            panic!(
                "job class {} accepts unknown fields: add #[serde(deny_unknown_fields)] to its type",
                J::CLASS
            );
        }
        let invalid = |e: crate::job::ArgsError| Rejection::new(Reason::InvalidArgs, e.to_string());
        let runner: Arc<Runner> = Arc::new(move |args, ctx| {
            let job = decode_args::<J>(args).map_err(invalid)?;
            Ok(Box::pin(job.perform(ctx)) as BoxFuture<'static, _>)
        });
        let checker: Arc<Checker> = Arc::new(move |args| decode_args::<J>(args).map(|_| ()).map_err(invalid));
        let info = ClassInfo {
            class: J::CLASS,
            queue: J::QUEUE,
            encrypt: J::ENCRYPT,
            ttl: J::TTL,
            max_attempts: J::MAX_ATTEMPTS.max(1),
            retry_delay: J::retry_delay,
            timeout: J::TIMEOUT,
            hooks: Hooks {
                before_perform: J::before_perform,
                after_perform: J::after_perform,
                on_failure: J::on_failure,
                on_retry: J::on_retry,
            },
        };
        if self
            .entries
            .insert(
                J::CLASS,
                Entry {
                    runner,
                    checker,
                    schema,
                    info,
                },
            )
            .is_some()
        {
            panic!("job class {} is registered twice", J::CLASS);
        }
        self
    }

    /// True when `class` is on the allowlist.
    pub fn contains(&self, class: &str) -> bool {
        self.entries.contains_key(class)
    }

    /// The registered class names, sorted.
    pub fn classes(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.entries.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// A class's queue, encryption and lifetime policy.
    pub fn info(&self, class: &str) -> Option<ClassInfo> {
        self.entries.get(class).map(|e| e.info)
    }

    /// A class's argument schema (JSON Schema 2020-12), derived from its type.
    pub fn schema(&self, class: &str) -> Option<&Value> {
        self.entries.get(class).map(|e| &e.schema)
    }

    /// Checks `args` for `class` exactly as the worker will (unregistered
    /// class, shape, types, rules) without running anything.
    pub fn check_args(&self, class: &str, args: Vec<Value>) -> Result<(), Rejection> {
        (self.entry(class)?.checker)(args)
    }

    /// Looks the class up and decodes and validates its arguments; the
    /// returned future runs it.
    pub(crate) fn prepare(
        &self,
        class: &str,
        args: Vec<Value>,
        ctx: JobContext,
    ) -> Result<BoxFuture<'static, Result<(), JobError>>, Rejection> {
        (self.entry(class)?.runner)(args, ctx)
    }

    fn entry(&self, class: &str) -> Result<&Entry, Rejection> {
        self.entries.get(class).ok_or_else(|| {
            Rejection::new(
                Reason::UnregisteredClass,
                format!("class {:?} is not registered in this worker", short(class)),
            )
        })
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("classes", &self.classes()).finish()
    }
}

/// Class names from Redis are outside data: keep them short in messages.
fn short(s: &str) -> String {
    s.chars().take(128).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobContext, JobError};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        #[garde(skip)]
        n: u32,
    }
    impl Job for Strict {
        const CLASS: &'static str = "Strict";
        async fn perform(self, _: JobContext) -> Result<(), JobError> {
            Ok(())
        }
    }

    /// No `deny_unknown_fields`: `{"n": 1, "admin": true}` would pass.
    #[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
    struct Lenient {
        #[garde(skip)]
        n: u32,
    }
    impl Job for Lenient {
        const CLASS: &'static str = "Lenient";
        async fn perform(self, _: JobContext) -> Result<(), JobError> {
            Ok(())
        }
    }

    #[test]
    #[should_panic(
        expected = "job class Lenient accepts unknown fields: add #[serde(deny_unknown_fields)] to its type"
    )]
    fn a_type_that_accepts_unknown_fields_is_refused() {
        let _ = Registry::new().register::<Lenient>();
    }

    #[test]
    #[should_panic(expected = "job class Strict is registered twice")]
    fn a_class_registered_twice_is_refused() {
        let _ = Registry::new().register::<Strict>().register::<Strict>();
    }

    #[test]
    fn a_strict_type_registers_and_refuses_unknown_fields_at_run_time() {
        let registry = Registry::new().register::<Strict>();
        assert!(registry.check_args("Strict", vec![serde_json::json!({"n": 1})]).is_ok());
        let refused = registry
            .check_args("Strict", vec![serde_json::json!({"n": 1, "admin": true})])
            .unwrap_err();
        assert_eq!(refused.reason, Reason::InvalidArgs);
    }
}
