//! Resque failure records, written by the worker and read by the admin API.
//!
//! The record is Resque's (`failed_at`, `payload`, `exception`, `error`,
//! `backtrace`, `worker`, `queue`) plus `failure_id` (a UUID, as Resque 3.1 has)
//! and `reason` (resq's code). Ruby's resque-web reads them unchanged.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::clock::failed_at_format;
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

/// How much of a job's payload its failure record keeps.
#[derive(Debug, Clone, Copy)]
pub enum RecordPayload<'a> {
    /// The payload as it was: a job that ran, or the one claimed attempt of
    /// a signed job. An operator can retry it byte for byte.
    Whole,
    /// A refusal of a copy anyone could push again: the payload whole only
    /// when it is a small job object, otherwise a stand-in object (`class`
    /// when it is a valid name, empty `args`) with the first bytes as text in
    /// `payload_raw`. Pushing a million junk payloads then costs the failed
    /// list at most a million bounded records (and the list itself is capped).
    Bounded { class: Option<&'a str> },
}

/// A refused job object up to this size is kept whole.
pub const BOUNDED_WHOLE_MAX: usize = 4096;
/// How much of a refused payload `payload_raw` keeps.
pub const RAW_PREFIX_BYTES: usize = 512;
/// The class a stand-in names when the payload had no usable one.
pub const UNREADABLE_CLASS: &str = "Resq::Unreadable";

/// The payload field: the original JSON object, or a stand-in object. Either
/// way an object with a string `class` and an array `args`, which is what
/// Ruby's resque-web indexes into.
#[derive(Serialize)]
#[serde(untagged)]
enum PayloadField<'a> {
    Json(&'a RawValue),
    StandIn { class: &'a str, args: [(); 0] },
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
    payload_raw: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_bytes: Option<usize>,
}

/// The parts of a job object a reader relies on.
#[derive(Deserialize)]
struct JobShape {
    #[allow(dead_code)]
    class: String,
    #[allow(dead_code)]
    args: Vec<serde::de::IgnoredAny>,
}

/// Builds a failure record as a JSON string.
pub fn build_record(
    payload: &[u8],
    keep: RecordPayload<'_>,
    info: &FailureInfo,
    worker: &str,
    queue: &str,
    now_unix: f64,
) -> String {
    fn job_object(bytes: &[u8]) -> Option<&RawValue> {
        serde_json::from_slice::<&RawValue>(bytes)
            .ok()
            .filter(|raw| serde_json::from_str::<JobShape>(raw.get()).is_ok())
    }
    let whole = match keep {
        _ if info.reason.is_decode_failure() => None,
        RecordPayload::Whole => job_object(payload),
        RecordPayload::Bounded { .. } if payload.len() <= BOUNDED_WHOLE_MAX => job_object(payload),
        RecordPayload::Bounded { .. } => None,
    };
    let (field, payload_raw, payload_bytes) = match whole {
        Some(raw) => (PayloadField::Json(raw), None, None),
        None => {
            let class = match keep {
                RecordPayload::Bounded { class: Some(c) } if crate::names::check_class(c).is_ok() => c,
                _ => UNREADABLE_CLASS,
            };
            let cut = &payload[..payload.len().min(RAW_PREFIX_BYTES)];
            (
                PayloadField::StandIn { class, args: [] },
                Some(String::from_utf8_lossy(cut).into_owned()),
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
        payload_raw,
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

    fn record(payload: &[u8], keep: RecordPayload<'_>, reason: Reason) -> serde_json::Value {
        let info = FailureInfo { reason, ..info() };
        let text = build_record(payload, keep, &info, "w", "q", 0.0);
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn record_has_resque_fields_in_order_and_keeps_payload_bytes() {
        let payload = br#"{"class":"A","args":[1.50,"x"]}"#;
        let rec = build_record(payload, RecordPayload::Whole, &info(), "h:1:q", "q", 1_795_514_338.0);
        assert!(rec.starts_with(
            r#"{"failed_at":"2026/11/24 09:58:58 UTC","payload":{"class":"A","args":[1.50,"x"]},"exception":"IoError","error":"disk <full>","backtrace":[],"worker":"h:1:q","queue":"q","failure_id":""#
        ), "{rec}");
        let back = FailureRecord::parse(&rec).unwrap();
        assert_eq!(back.payload_class().as_deref(), Some("A"));
        assert_eq!(back.reason.as_deref(), Some("job_failed"));
    }

    /// Whatever the bytes, the payload is an object with a string class and
    /// an array args (resque-web indexes into both), and a record of a
    /// refusal is at most a fixed size plus the payload's first bytes.
    #[test]
    fn every_record_payload_is_a_job_object_and_refusals_are_bounded() {
        let big_object = format!(r#"{{"class":"Big","args":["{}"]}}"#, "x".repeat(100_000));
        let cases: &[(&[u8], Reason, Option<&str>, &str)] = &[
            (b"\xff\xfe", Reason::MalformedPayload, None, UNREADABLE_CLASS),
            (b"not json", Reason::MalformedPayload, None, UNREADABLE_CLASS),
            (b"[1,2]", Reason::MalformedPayload, None, UNREADABLE_CLASS),
            (b"\"str\"", Reason::MalformedPayload, None, UNREADABLE_CLASS),
            (b"{\"class\":", Reason::MalformedPayload, None, UNREADABLE_CLASS),
            (br#"{"a":[1e999]}"#, Reason::NumberOutOfRange, None, UNREADABLE_CLASS),
            (br#"{"class":"A","args":[1]}"#, Reason::PayloadTooDeep, Some("A"), "A"),
            (br#"{"class":"A","args":{}}"#, Reason::Unsigned, Some("A"), "A"),
            (big_object.as_bytes(), Reason::Unsigned, Some("Big"), "Big"),
            (
                big_object.as_bytes(),
                Reason::Replayed,
                Some("<script>"),
                UNREADABLE_CLASS,
            ),
        ];
        for (payload, reason, class, shown) in cases {
            let v = record(payload, RecordPayload::Bounded { class: *class }, *reason);
            assert_eq!(v["payload"]["class"], *shown, "{v}");
            assert_eq!(v["payload"]["args"], serde_json::json!([]), "{v}");
            assert_eq!(v["payload_bytes"], payload.len());
            let raw = v["payload_raw"].as_str().unwrap();
            assert!(raw.len() <= RAW_PREFIX_BYTES * 3, "{}", raw.len());
            assert!(
                v.to_string().len() < 600 + RAW_PREFIX_BYTES * 6,
                "{}",
                v.to_string().len()
            );
        }
    }

    #[test]
    fn small_refused_job_objects_and_whole_payloads_are_kept_as_they_were() {
        let small = br#"{"class":"Mailer","args":[{"to":"a"}],"sig":{"kid":"k","alg":"HS256","v":"x"}}"#;
        let v = record(
            small,
            RecordPayload::Bounded { class: Some("Mailer") },
            Reason::Unsigned,
        );
        assert_eq!(
            v["payload"],
            serde_json::from_slice::<serde_json::Value>(small).unwrap()
        );
        assert!(
            v.get("payload_raw").is_none() && v.get("payload_bytes").is_none(),
            "{v}"
        );
        let big = format!(r#"{{"class":"Big","args":["{}"]}}"#, "x".repeat(100_000));
        let v = record(big.as_bytes(), RecordPayload::Whole, Reason::JobFailed);
        assert_eq!(v["payload"]["args"][0].as_str().map(str::len), Some(100_000));
    }
}
