//! The reason codes a job can be refused or fail with.
//!
//! They are the `exception` of a failure record, so operators (and Ruby's
//! resque-web) can filter on them, and metrics label rejections with them.
//! The strings are a public contract: never rename one.

use std::fmt;

/// Why a job did not run to success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not JSON, not UTF-8, not an object, or missing `class`/`args`.
    MalformedPayload,
    /// Over the byte, string or array limit.
    PayloadTooLarge,
    /// Nested deeper than the limit.
    PayloadTooDeep,
    /// An integer outside `i64`/`u64`.
    NumberOutOfRange,
    /// The class is not in this worker's registry (the allowlist).
    UnregisteredClass,
    /// The arguments do not deserialize into the job's type.
    InvalidArgs,
    /// The job's `expires_at` has passed.
    Expired,
    /// No signature, on a queue whose policy requires one.
    Unsigned,
    /// The signature does not match the envelope (it was edited), or its
    /// algorithm is not the key's.
    BadSignature,
    /// The signature names a key id this worker does not know.
    UnknownKey,
    /// The signing key is not allowed to sign this class or queue.
    OutOfScope,
    /// The job sits on another queue than the one it was signed for.
    WrongQueue,
    /// This job id already ran to success.
    Replayed,
    /// The encrypted arguments do not decrypt (edited, or bound to another job).
    DecryptFailed,
    /// The job ran and returned an error.
    JobFailed,
    /// The job ran past its timeout and was cancelled.
    Timeout,
    /// The job panicked; the worker caught it and went on.
    JobPanicked,
    /// Process isolation: the job went over its memory or CPU limit and its
    /// process was stopped.
    ResourceLimit,
    /// Process isolation: the job's process died while running it (a signal
    /// resq did not send, or an exit from inside the job).
    JobCrashed,
    /// Its worker died while running it alone more times than
    /// `max_recoveries` allows (a crash, an OOM kill, an abort): it is not
    /// run again unless an operator retries it.
    Poison,
}

impl Reason {
    /// The stable wire name, e.g. `"unregistered_class"`.
    pub fn code(self) -> &'static str {
        match self {
            Reason::MalformedPayload => "malformed_payload",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::PayloadTooDeep => "payload_too_deep",
            Reason::NumberOutOfRange => "number_out_of_range",
            Reason::UnregisteredClass => "unregistered_class",
            Reason::InvalidArgs => "invalid_args",
            Reason::Expired => "expired",
            Reason::Unsigned => "unsigned",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownKey => "unknown_key",
            Reason::OutOfScope => "out_of_scope",
            Reason::WrongQueue => "wrong_queue",
            Reason::Replayed => "replayed",
            Reason::DecryptFailed => "decrypt_failed",
            Reason::JobFailed => "job_failed",
            Reason::Timeout => "timeout",
            Reason::JobPanicked => "job_panicked",
            Reason::ResourceLimit => "resource_limit",
            Reason::JobCrashed => "job_crashed",
            Reason::Poison => "poison",
        }
    }

    /// True for the reasons found while decoding, before the payload was
    /// known to be a well-formed job.
    pub fn is_decode_failure(self) -> bool {
        matches!(
            self,
            Reason::MalformedPayload | Reason::PayloadTooLarge | Reason::PayloadTooDeep | Reason::NumberOutOfRange
        )
    }

    /// True for the reasons a job gets by running (its own error, panic,
    /// timeout, limit or crash), as opposed to being refused before it ran.
    pub fn is_run_outcome(self) -> bool {
        matches!(
            self,
            Reason::JobFailed
                | Reason::JobPanicked
                | Reason::Timeout
                | Reason::ResourceLimit
                | Reason::JobCrashed
                | Reason::Poison
        )
    }

    /// Every reason, for tables and metrics.
    pub const ALL: [Reason; 20] = [
        Reason::MalformedPayload,
        Reason::PayloadTooLarge,
        Reason::PayloadTooDeep,
        Reason::NumberOutOfRange,
        Reason::UnregisteredClass,
        Reason::InvalidArgs,
        Reason::Expired,
        Reason::Unsigned,
        Reason::BadSignature,
        Reason::UnknownKey,
        Reason::OutOfScope,
        Reason::WrongQueue,
        Reason::Replayed,
        Reason::DecryptFailed,
        Reason::JobFailed,
        Reason::Timeout,
        Reason::JobPanicked,
        Reason::ResourceLimit,
        Reason::JobCrashed,
        Reason::Poison,
    ];
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A job refused before it ran: the reason code and a message that says exactly
/// what was wrong (never the secret material, never the whole payload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}
