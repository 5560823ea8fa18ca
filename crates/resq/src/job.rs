//! Typed jobs: the `Job` trait, how a job's value maps to Resque's `args` array,
//! and the error a job returns.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// How a job's value travels in Resque's positional `args` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgsShape {
    /// The value is one JSON object: `args` is `[{...}]`. The usual shape for
    /// Rust jobs, and for Ruby jobs that take one hash.
    Object,
    /// The value *is* the `args` array: a tuple or tuple struct such as
    /// `struct Resize(u64, u32)` takes Ruby's `Resque.enqueue(Resize, 42, 300)`.
    Positional,
}

/// A job type: its arguments (the value itself) with their validation rules,
/// its class name, its queue, and what it does.
///
/// The rules are declared once, as `garde` attributes: `garde` checks them
/// before enqueue and again in the worker, and `schemars` reads the same
/// attributes to publish the JSON Schema (`resq jobs schema CLASS`). Unknown
/// fields must be refused (`#[serde(deny_unknown_fields)]`): `Registry`
/// refuses a type whose schema would accept them.
///
/// ```
/// use resq::{Job, JobContext, JobError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
/// #[serde(deny_unknown_fields)]
/// struct SendEmail {
///     #[garde(email)]
///     to: String,
///     #[garde(pattern(r"^[a-z_]{1,32}$"))]
///     template: String,
/// }
///
/// impl Job for SendEmail {
///     const CLASS: &'static str = "SendEmail";
///     const QUEUE: &'static str = "mailers";
///     async fn perform(self, _ctx: JobContext) -> Result<(), JobError> {
///         println!("sending {} to {}", self.template, self.to);
///         Ok(())
///     }
/// }
///
/// // Ruby code enqueuing `Resque.enqueue(Resize, 42, 300)` is typed like this:
/// #[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
/// struct Resize(#[garde(range(min = 1))] u64, #[garde(range(min = 16, max = 4096))] u32);
///
/// impl Job for Resize {
///     const CLASS: &'static str = "Resize";
///     const ARGS: resq::ArgsShape = resq::ArgsShape::Positional;
///     async fn perform(self, _ctx: JobContext) -> Result<(), JobError> { Ok(()) }
/// }
/// ```
pub trait Job:
    Serialize + DeserializeOwned + garde::Validate<Context = ()> + schemars::JsonSchema + Send + Sync + 'static
{
    /// The class name on the wire; Ruby producers and workers use the same one.
    const CLASS: &'static str;
    /// The queue `Client::enqueue` uses.
    const QUEUE: &'static str = "default";
    /// How the value maps to `args`.
    const ARGS: ArgsShape = ArgsShape::Object;
    /// Encrypt the arguments at rest (personal data): Redis then holds no
    /// plaintext of them, and the worker refuses a copy that is not encrypted.
    const ENCRYPT: bool = false;
    /// How long a job may wait before it expires; `None` takes the policy's.
    const TTL: Option<Duration> = None;
    /// How many times the job may run in all; 1 means no retry (Resque's
    /// behaviour). A failed run with attempts left is re-signed by the worker
    /// and scheduled again after `retry_delay`.
    const MAX_ATTEMPTS: u32 = 1;
    /// How long one run may take; the job's future is cancelled then and the
    /// run is recorded as `timeout` (and retried while attempts are left).
    /// `None` takes the worker's `default_timeout`. Cancelling needs the job
    /// to reach an `.await`: a job that blocks its thread needs process
    /// isolation (`WorkerConfig::isolation`), where its process is killed.
    const TIMEOUT: Option<Duration> = None;

    /// How long to wait before retry number `retry` (1 for the first retry):
    /// exponential from 10 s, doubling, capped at an hour, with ±25% jitter
    /// so a burst of failures does not come back as one burst.
    fn retry_delay(retry: u32) -> Duration {
        crate::retry::exponential_backoff(retry)
    }

    /// A key that makes this job unique for `UNIQUE_FOR`: enqueuing another
    /// job of this class with the same key inside the window is a duplicate
    /// (see `ON_DUPLICATE`). Derive it from the arguments that matter, e.g.
    /// `Some(format!("user:{}", self.user_id))`. `None` (the default): not unique.
    fn unique_key(&self) -> Option<String> {
        None
    }
    /// How long a uniqueness key is held after an enqueue.
    const UNIQUE_FOR: Duration = Duration::from_secs(3600);
    /// What a duplicate enqueue does.
    const ON_DUPLICATE: OnDuplicate = OnDuplicate::Reject;

    /// Called before `perform`, once the arguments are valid; an `Err` fails
    /// this run without performing it (and counts as a failed attempt).
    fn before_perform(_ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }

    /// Called after `perform` succeeded.
    fn after_perform(_ctx: &JobContext) {}

    /// Called when a job of this class ends in the failed list: its last
    /// attempt failed, panicked or timed out, or it was refused (expired,
    /// invalid arguments, ...). Not called for a failure that will be retried.
    fn on_failure(_ctx: &JobContext, _failure: &crate::failure::FailureInfo) {}

    /// Called when a failed run will be retried after `delay`.
    fn on_retry(_ctx: &JobContext, _failure: &crate::failure::FailureInfo, _delay: Duration) {}

    /// Runs the job. An `Err` is retried while attempts are left, then
    /// recorded in the failed list.
    fn perform(self, ctx: JobContext) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// What enqueuing a duplicate of a unique job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDuplicate {
    /// Refuse it with `EnqueueError::Duplicate` (naming the existing job).
    Reject,
    /// Store nothing and return the existing job's id, as if enqueued.
    ReturnExisting,
}

/// What a running job may know about itself.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The envelope id; `None` for jobs from Ruby producers.
    pub id: Option<String>,
    /// The queue the job was fetched from.
    pub queue: String,
    /// Earlier tries of this job.
    pub attempt: u32,
}

/// A job's failure: the error's type name (Resque's `exception`) and message.
///
/// Any `std::error::Error` converts into it, so `?` works inside `perform`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub exception: String,
    pub message: String,
}

impl JobError {
    /// A failure with a plain message, recorded as exception `JobError`.
    pub fn msg(message: impl Into<String>) -> Self {
        Self {
            exception: "JobError".into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.exception, self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(err: E) -> Self {
        let full = std::any::type_name::<E>();
        let short = full.rsplit("::").next().unwrap_or(full);
        Self {
            exception: short.to_string(),
            message: err.to_string(),
        }
    }
}

/// Why a job's value and its `args` array do not match.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("{class} takes one object argument ([{{...}}]), got {got}")]
    NotOneObject { class: &'static str, got: String },
    #[error("{class} is positional, so its value must serialize to an array")]
    NotAnArray { class: &'static str },
    #[error("arguments of {class} do not fit its type: {}{source}", at_path(path))]
    Mismatch {
        class: &'static str,
        /// Where in the arguments (`to`, `items[2].qty`); empty at the top.
        path: String,
        source: serde_json::Error,
    },
    #[error("arguments of {class} are invalid: {}", one_line(report))]
    Invalid { class: &'static str, report: garde::Report },
}

/// `path: ` before a mismatch's message, nothing at the top level.
fn at_path(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// A garde report on one line: `field: problem; field: problem` (its own
/// rendering puts each on a line of its own, ending with a newline).
fn one_line(report: &garde::Report) -> String {
    let parts: Vec<String> = report
        .iter()
        .map(|(path, error)| {
            let path = path.to_string();
            if path.is_empty() {
                error.to_string()
            } else {
                format!("{path}: {error}")
            }
        })
        .collect();
    parts.join("; ")
}

/// Checks `job` against its declared rules; the error names each field.
pub fn validate<J: Job>(job: &J) -> Result<(), ArgsError> {
    job.validate().map_err(|report| ArgsError::Invalid {
        class: J::CLASS,
        report,
    })
}

/// Turns a job value into Resque's `args` array.
pub fn encode_args<J: Job>(job: &J) -> Result<Vec<Value>, ArgsError> {
    let value = serde_json::to_value(job).map_err(|source| ArgsError::Mismatch {
        class: J::CLASS,
        path: String::new(),
        source,
    })?;
    match (J::ARGS, value) {
        (ArgsShape::Object, value) => Ok(vec![value]),
        (ArgsShape::Positional, Value::Array(items)) => Ok(items),
        (ArgsShape::Positional, _) => Err(ArgsError::NotAnArray { class: J::CLASS }),
    }
}

/// Reads a job value back from the whole `args` array and validates it.
pub fn decode_args<J: Job>(args: Vec<Value>) -> Result<J, ArgsError> {
    let value = match J::ARGS {
        ArgsShape::Positional => Value::Array(args),
        ArgsShape::Object => {
            let mut args = args;
            match (args.len(), args.first()) {
                (1, Some(Value::Object(_))) => args.swap_remove(0),
                (n, first) => {
                    let got = match first {
                        Some(v) if n == 1 => format!("one {}", json_kind(v)),
                        _ => format!("{n} arguments"),
                    };
                    return Err(ArgsError::NotOneObject { class: J::CLASS, got });
                }
            }
        }
    };
    // With the path of the field that does not fit, so every door (the
    // worker's record, the CLI, the HTTP API) can name it.
    let job: J = serde_path_to_error::deserialize(value).map_err(|e| ArgsError::Mismatch {
        class: J::CLASS,
        path: e.path().to_string(),
        source: e.into_inner(),
    })?;
    validate(&job)?;
    Ok(job)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Named {
        #[garde(length(min = 1, max = 8))]
        to: String,
        #[garde(range(max = 100))]
        n: u32,
    }
    impl Job for Named {
        const CLASS: &'static str = "Named";
        async fn perform(self, _: JobContext) -> Result<(), JobError> {
            Ok(())
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
    struct Pos(#[garde(skip)] u64, #[garde(skip)] String);
    impl Job for Pos {
        const CLASS: &'static str = "Pos";
        const ARGS: ArgsShape = ArgsShape::Positional;
        async fn perform(self, _: JobContext) -> Result<(), JobError> {
            Ok(())
        }
    }

    #[test]
    fn object_jobs_travel_as_one_object() {
        let job = Named { to: "a".into(), n: 2 };
        let args = encode_args(&job).unwrap();
        assert_eq!(args, vec![json!({"to":"a","n":2})]);
        assert_eq!(decode_args::<Named>(args).unwrap(), job);
    }

    #[test]
    fn positional_jobs_take_ruby_style_args() {
        assert_eq!(
            decode_args::<Pos>(vec![json!(42), json!("x")]).unwrap(),
            Pos(42, "x".into())
        );
        assert_eq!(encode_args(&Pos(1, "y".into())).unwrap(), vec![json!(1), json!("y")]);
    }

    #[test]
    fn mismatches_are_typed_errors() {
        let cases: Vec<Vec<Value>> = vec![
            vec![],
            vec![json!(1)],
            vec![json!({"to":"a","n":1}), json!(2)],
            vec![json!({"to":"a"})],
            vec![json!({"to":"a","n":-1})],
            vec![json!({"to":"a","n":1,"extra":true})],
            vec![json!({"to":"","n":1})],
            vec![json!({"to":"a","n":101})],
            vec![json!({"to":"123456789","n":1})],
        ];
        for args in cases {
            assert!(decode_args::<Named>(args.clone()).is_err(), "{args:?}");
        }
        assert!(decode_args::<Pos>(vec![json!("x"), json!(1)]).is_err());
        let err = decode_args::<Named>(vec![json!({"to":"a","n":101})])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "arguments of Named are invalid: n: greater than 100");
        assert!(decode_args::<Pos>(vec![json!(1)]).is_err());
    }
}
