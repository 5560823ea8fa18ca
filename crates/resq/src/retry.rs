//! Retries: when a failed job runs again, and how its envelope changes.
//!
//! A retry is the original envelope (its encrypted arguments untouched) with
//! `attempt` raised and the failure appended to `failures`, re-signed by the
//! worker, and put in the retry schedule until it is due. After the last
//! attempt the job lands in the failed list with that history.

use std::time::Duration;

use serde_json::{json, Value};

use crate::clock::UnixMs;
use crate::envelope::{sign, Envelope};
use crate::failure::FailureInfo;
use crate::keyring::Keyring;
use crate::mark::MarkSource;
use crate::policy::Sealed;

/// Failures kept in an envelope's history (the oldest are dropped).
const MAX_HISTORY: usize = 10;

/// 10 s, 20 s, 40 s, ... capped at one hour, each ±25%.
pub fn exponential_backoff(retry: u32) -> Duration {
    let base = 10.0 * 2f64.powi(retry.saturating_sub(1).min(20) as i32);
    let capped = base.min(3600.0);
    let mut jitter = [0u8; 2];
    let spread = match getrandom::fill(&mut jitter) {
        Ok(()) => f64::from(u16::from_le_bytes(jitter)) / f64::from(u16::MAX),
        Err(_) => 0.5,
    };
    Duration::from_secs_f64(capped * (0.75 + 0.5 * spread))
}

/// Why a job that could retry goes to the failed list instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoRetry {
    /// This worker holds no key that may sign this class and queue.
    CannotSign(String),
}

/// The next attempt: `original` with `attempt` + 1, the failure appended to
/// `failures`, and, when it was signed, a replay mark of its own (a new
/// attempt is claimed anew) and a fresh signature.
pub(crate) fn next_attempt(
    original: &[u8],
    limits: &crate::limits::PayloadLimits,
    queue: &str,
    failure: &FailureInfo,
    failed_at: UnixMs,
    keyring: &Keyring,
    marks: &MarkSource,
) -> Result<Sealed, NoRetry> {
    let mut envelope =
        Envelope::decode(original, limits).map_err(|r| NoRetry::CannotSign(format!("cannot re-read the job: {r}")))?;
    let was_signed = envelope.sig.is_some();
    envelope.attempt = envelope.attempt.saturating_add(1);
    envelope.queue.get_or_insert_with(|| queue.to_string());
    let mut history: Vec<Value> = match envelope.extra.remove("failures") {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    history.push(json!({
        "attempt": envelope.attempt - 1,
        "failed_at": failed_at.to_string(),
        "exception": failure.exception,
        "error": failure.message.chars().take(512).collect::<String>(),
    }));
    let drop = history.len().saturating_sub(MAX_HISTORY);
    history.drain(..drop);
    envelope.extra.insert("failures".into(), Value::Array(history));
    if was_signed {
        let key = keyring
            .signer()
            .filter(|k| k.allows(&envelope.class, queue))
            .ok_or_else(|| NoRetry::CannotSign("this worker holds no signing key for this class and queue".into()))?;
        envelope.mark = Some(marks.next().to_string());
        sign(&mut envelope, key).map_err(|e| NoRetry::CannotSign(e.to_string()))?;
    }
    let bytes = envelope.to_bytes().map_err(|e| NoRetry::CannotSign(e.to_string()))?;
    Ok(Sealed::new(
        envelope.id.clone().unwrap_or_default(),
        queue.to_string(),
        bytes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for (retry, lo, hi) in [(1, 7.5, 12.5), (2, 15.0, 25.0), (4, 60.0, 100.0), (30, 2700.0, 4500.0)] {
            let d = exponential_backoff(retry).as_secs_f64();
            assert!(d >= lo && d <= hi, "retry {retry}: {d}");
        }
    }
}
