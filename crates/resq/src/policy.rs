//! The policy check every enqueue path goes through (library, CLI, and later
//! HTTP): names, argument shape and payload limits, before anything is stored.
//!
//! A producer's job is refused here with a typed error, so it is never written;
//! the worker runs the same limits again on what it reads back.

use std::time::Duration;

use serde_json::Value;

use crate::clock::now_unix;
use crate::envelope::Envelope;
use crate::limits::{LimitError, PayloadLimits};
use crate::names::{check_class, check_queue, NameError};

/// What the producer side enforces.
#[derive(Debug, Clone)]
pub struct Policy {
    pub limits: PayloadLimits,
    /// How long a job may wait before it expires and must never run.
    pub default_ttl: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            limits: PayloadLimits::default(),
            default_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Why a job was not enqueued.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("job {class} on queue {queue} is refused: {source}")]
    Limits {
        class: String,
        queue: String,
        source: LimitError,
    },
    #[error("job {class} could not be encoded: {source}")]
    Encode {
        class: String,
        source: serde_json::Error,
    },
}

impl Policy {
    /// Checks a job and turns it into the stored envelope bytes.
    pub fn seal(
        &self,
        class: &str,
        queue: &str,
        args: Vec<Value>,
    ) -> Result<(String, Vec<u8>), PolicyError> {
        check_class(class)?;
        check_queue(queue)?;
        let now = now_unix();
        let id = uuid::Uuid::now_v7().to_string();
        let envelope = Envelope {
            class: class.to_string(),
            args,
            id: Some(id.clone()),
            queue: Some(queue.to_string()),
            enqueued_at: Some(round_ms(now)),
            expires_at: Some(round_ms(now + self.default_ttl.as_secs_f64())),
            attempt: 0,
        };
        let bytes = envelope.to_bytes().map_err(|source| PolicyError::Encode {
            class: class.to_string(),
            source,
        })?;
        self.limits
            .check(&bytes)
            .map_err(|source| PolicyError::Limits {
                class: class.to_string(),
                queue: queue.to_string(),
                source,
            })?;
        Ok((id, bytes))
    }
}

/// Millisecond precision keeps timestamps short and exact in every language.
fn round_ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}
