//! Resque failure records, written by the worker and read by the admin API.
//!
//! The record is Resque's (`failed_at`, `payload`, `exception`, `error`,
//! `backtrace`, `worker`, `queue`) plus `failure_id` (a UUID, as Resque 3.1 has)
//! and `reason` (resq's code). Ruby's resque-web reads them unchanged.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::clock::failed_at_format;
use crate::limits::PayloadLimits;
use crate::reason::Reason;

/// What went wrong, for the record.
#[derive(Debug, Clone)]
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

/// The payload as it sits in a record: the original JSON when it is a JSON
/// object within the limits, otherwise a (lossy, truncated) string, so that a
/// hostile payload can neither break a Ruby reader nor double its size in Redis.
#[derive(Serialize)]
#[serde(untagged)]
enum PayloadField<'a> {
    Json(&'a RawValue),
    Text(String),
}

#[derive(Serialize)]
struct RecordOut<'a> {
    failed_at: String,
    payload: PayloadField<'a>,
    exception: &'a str,
    error: &'a str,
    backtrace: [&'a str; 0],
    worker: &'a str,
    queue: &'a str,
    failure_id: String,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_bytes: Option<usize>,
}

/// Builds a failure record as a JSON string.
pub fn build_record(
    payload: &[u8],
    info: &FailureInfo,
    worker: &str,
    queue: &str,
    limits: &PayloadLimits,
    now_unix: f64,
) -> String {
    // Embedded as JSON only when the worker could decode it (so every reader can
    // parse it back); a payload refused while decoding is kept as text.
    let readable = !info.reason.is_decode_failure() && payload.first() == Some(&b'{');
    let as_json = readable
        .then(|| serde_json::from_slice::<&RawValue>(payload).ok())
        .flatten();
    let (field, payload_bytes) = match as_json {
        Some(raw) => (PayloadField::Json(raw), None),
        None => {
            let cut = &payload[..payload.len().min(limits.max_bytes.min(64 * 1024))];
            (
                PayloadField::Text(String::from_utf8_lossy(cut).into_owned()),
                Some(payload.len()),
            )
        }
    };
    let record = RecordOut {
        failed_at: failed_at_format(now_unix),
        payload: field,
        exception: &info.exception,
        error: &info.message,
        backtrace: [],
        worker,
        queue,
        failure_id: uuid::Uuid::new_v4().to_string(),
        reason: info.reason.code(),
        payload_bytes,
    };
    // ok: serializing owned strings and a validated RawValue cannot fail.
    serde_json::to_string(&record).unwrap_or_else(|_| String::from("{}"))
}

/// A failure record as read back: every field optional, unknown keys allowed,
/// since Ruby and older versions wrote them too.
#[derive(Debug, Clone, Deserialize)]
pub struct FailureRecord {
    #[serde(default)]
    pub failure_id: Option<String>,
    #[serde(default)]
    pub failed_at: Option<String>,
    #[serde(default)]
    pub payload: Option<Box<RawValue>>,
    #[serde(default)]
    pub exception: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub worker: Option<String>,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub retried_at: Option<String>,
}

impl FailureRecord {
    /// Parses a stored record; `None` when it is not a JSON object.
    pub fn parse(raw: &str) -> Option<FailureRecord> {
        serde_json::from_str(raw).ok()
    }

    /// The payload's class, when the payload is a job object.
    pub fn payload_class(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct ClassOnly {
            class: String,
        }
        let raw = self.payload.as_ref()?;
        serde_json::from_str::<ClassOnly>(raw.get()).ok().map(|c| c.class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> FailureInfo {
        FailureInfo {
            reason: Reason::JobFailed,
            exception: "IoError".into(),
            message: "disk <full>".into(),
        }
    }

    #[test]
    fn record_has_resque_fields_in_order_and_keeps_payload_bytes() {
        let payload = br#"{"class":"A","args":[1.50,"x"]}"#;
        let rec = build_record(
            payload,
            &info(),
            "h:1:q",
            "q",
            &PayloadLimits::default(),
            1_795_514_338.0,
        );
        assert!(rec.starts_with(
            r#"{"failed_at":"2026/11/24 09:58:58 UTC","payload":{"class":"A","args":[1.50,"x"]},"exception":"IoError","error":"disk <full>","backtrace":[],"worker":"h:1:q","queue":"q","failure_id":""#
        ), "{rec}");
        let back = FailureRecord::parse(&rec).unwrap();
        assert_eq!(back.payload_class().as_deref(), Some("A"));
        assert_eq!(back.reason.as_deref(), Some("job_failed"));
    }

    #[test]
    fn hostile_payloads_become_strings() {
        let info = FailureInfo {
            reason: Reason::MalformedPayload,
            ..info()
        };
        for payload in [
            &b"\xff\xfe"[..],
            b"not json",
            b"[1,2]",
            b"{\"class\":",
            br#"{"a":[1e999]}"#,
        ] {
            let rec = build_record(payload, &info, "w", "q", &PayloadLimits::default(), 0.0);
            let v: serde_json::Value = serde_json::from_str(&rec).unwrap();
            assert!(v["payload"].is_string(), "{rec}");
            assert_eq!(v["payload_bytes"], payload.len());
        }
    }

    #[test]
    fn oversized_payload_is_truncated() {
        let limits = PayloadLimits {
            max_bytes: 100,
            ..PayloadLimits::default()
        };
        let big = format!("{{\"class\":\"A\",\"args\":[\"{}\"]}}", "x".repeat(1000));
        let info = FailureInfo {
            reason: Reason::PayloadTooLarge,
            ..info()
        };
        let rec = build_record(big.as_bytes(), &info, "w", "q", &limits, 0.0);
        assert!(rec.len() < 600, "{}", rec.len());
    }
}
