//! What went wrong with a job, and how much of a refused payload a failure
//! record keeps. Stores write the record in their own format (the Redis
//! store: Resque's, which resque-web reads unchanged).

use crate::reason::Reason;

/// What went wrong, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureInfo {
    pub reason: Reason,
    /// Resque's `exception`: the error type for job failures, the reason code
    /// for refusals.
    pub exception: String,
    pub message: String,
}

impl FailureInfo {
    /// A failure resq itself found (a refusal, a timeout, a limit): its
    /// reason code is also its exception.
    pub fn of(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            exception: reason.code().to_string(),
            message: message.into(),
        }
    }
}

/// A refused job object up to this size is kept whole in its record (see
/// [`crate::store::KeepPayload::Bounded`]).
pub const BOUNDED_WHOLE_MAX: usize = 4096;
/// How many of a refused payload's first bytes its record keeps otherwise.
pub const RAW_PREFIX_BYTES: usize = 512;
/// The class a stand-in names when the payload had no usable one.
pub const UNREADABLE_CLASS: &str = "Resq::Unreadable";
