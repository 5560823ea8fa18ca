//! `resque:failed` records: Resque's fields (`failed_at`, `payload`,
//! `exception`, `error`, `backtrace`, `worker`, `queue`) plus `failure_id`
//! (a UUID, as Resque 3.1 has) and `reason` (resq's code). Ruby's
//! resque-web reads them unchanged.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use resq::failure::{BOUNDED_WHOLE_MAX, RAW_PREFIX_BYTES, UNREADABLE_CLASS};
use resq::store::{FailureRecord, KeepPayload, NewFailure, PayloadExcerpt, Stored};

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
    backtrace: &'a [String],
    worker: &'a str,
    queue: &'a str,
    failure_id: &'a str,
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

/// A new failure record, as Resque's JSON.
pub fn build(payload: &[u8], failure: &NewFailure, worker: &str, queue: &str, failure_id: &str) -> Vec<u8> {
    build_with_backtrace(payload, failure, worker, queue, failure_id, &[])
}

/// A new failure record with lines in Resque's `backtrace` field (a poison
/// job's deaths, one line each).
pub fn build_with_backtrace(
    payload: &[u8],
    failure: &NewFailure,
    worker: &str,
    queue: &str,
    failure_id: &str,
    backtrace: &[String],
) -> Vec<u8> {
    fn job_object(bytes: &[u8]) -> Option<&RawValue> {
        serde_json::from_slice::<&RawValue>(bytes)
            .ok()
            .filter(|raw| serde_json::from_str::<JobShape>(raw.get()).is_ok())
    }
    let info = &failure.info;
    let whole = match &failure.keep {
        _ if info.reason.is_decode_failure() => None,
        KeepPayload::Whole => job_object(payload),
        KeepPayload::Bounded { .. } if payload.len() <= BOUNDED_WHOLE_MAX => job_object(payload),
        KeepPayload::Bounded { .. } => None,
    };
    let (field, payload_raw, payload_bytes) = match whole {
        Some(raw) => (PayloadField::Json(raw), None, None),
        None => {
            let class = match &failure.keep {
                KeepPayload::Bounded { class: Some(c) } if resq::names::check_class(c).is_ok() => c.as_str(),
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
        failed_at: super::time::failed_at(failure.at),
        payload: field,
        exception: &info.exception,
        error: &info.message,
        backtrace,
        worker,
        queue,
        failure_id,
        reason: info.reason.code(),
        payload_raw,
        payload_bytes,
    };
    // ok: serializing strings and a validated RawValue cannot fail.
    serde_json::to_vec(&record).unwrap_or_else(|_| b"{}".to_vec())
}

/// A record as read back: every field optional, unknown keys allowed, since
/// Ruby and older versions wrote them too.
#[derive(Deserialize)]
struct RecordIn {
    #[serde(default)]
    failure_id: Option<String>,
    #[serde(default)]
    failed_at: Option<String>,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    exception: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    backtrace: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    worker: Option<String>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    retried_at: Option<String>,
    #[serde(default)]
    payload_raw: Option<String>,
    #[serde(default)]
    payload_bytes: Option<u64>,
}

/// Reads a stored record, whatever wrote it; a record that is not a JSON
/// object comes back unreadable, with its bytes.
pub fn parse(bytes: &[u8]) -> FailureRecord {
    #[derive(Deserialize)]
    struct ClassOnly {
        class: String,
    }
    let stored = Stored(bytes.to_vec());
    let Ok(record) = serde_json::from_slice::<RecordIn>(bytes) else {
        return FailureRecord {
            stored,
            ..FailureRecord::default()
        };
    };
    let payload = record.payload.filter(|p| p.get().starts_with('{'));
    let class = payload
        .as_ref()
        .and_then(|p| serde_json::from_str::<ClassOnly>(p.get()).ok())
        .map(|c| c.class);
    let excerpt = record.payload_bytes.map(|bytes| PayloadExcerpt {
        bytes,
        head: record.payload_raw.unwrap_or_default(),
    });
    FailureRecord {
        id: record.failure_id,
        failed_at: record.failed_at.as_deref().and_then(super::time::parse),
        queue: record.queue,
        class,
        exception: record.exception,
        error: record.error,
        reason: record.reason,
        worker: record.worker,
        backtrace: record
            .backtrace
            .unwrap_or_default()
            .into_iter()
            .filter_map(|line| line.as_str().map(str::to_string))
            .collect(),
        retried_at: record.retried_at.as_deref().and_then(super::time::parse),
        payload: payload.map(|p| p.get().as_bytes().to_vec()),
        excerpt,
        readable: true,
        stored,
    }
}

/// The `failure_id` of a stored record, if it has one: what the index is
/// keyed by.
pub fn id_of(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        failure_id: Option<String>,
    }
    serde_json::from_slice::<IdOnly>(bytes).ok()?.failure_id
}

#[cfg(test)]
mod tests {
    use super::*;
    use resq::clock::UnixMs;
    use resq::{FailureInfo, Reason};

    fn failure(reason: Reason, keep: KeepPayload) -> NewFailure {
        NewFailure {
            info: FailureInfo {
                reason,
                exception: "IoError".into(),
                message: "disk <full>".into(),
            },
            keep,
            at: UnixMs(1_795_514_338_000),
        }
    }

    fn record(payload: &[u8], keep: KeepPayload, reason: Reason) -> serde_json::Value {
        serde_json::from_slice(&build(payload, &failure(reason, keep), "w", "q", "id-1")).unwrap()
    }

    #[test]
    fn record_has_resque_fields_in_order_keeps_payload_bytes_and_reads_back() {
        let payload = br#"{"class":"A","args":[1.50,"x"]}"#;
        let rec = build(
            payload,
            &failure(Reason::JobFailed, KeepPayload::Whole),
            "h:1:q",
            "q",
            "f-1",
        );
        assert_eq!(
            String::from_utf8_lossy(&rec),
            r#"{"failed_at":"2026/11/24 09:58:58 UTC","payload":{"class":"A","args":[1.50,"x"]},"exception":"IoError","error":"disk <full>","backtrace":[],"worker":"h:1:q","queue":"q","failure_id":"f-1","reason":"job_failed"}"#
        );
        let back = parse(&rec);
        assert_eq!(back.class.as_deref(), Some("A"));
        assert_eq!(back.reason.as_deref(), Some("job_failed"));
        assert_eq!(back.id.as_deref(), Some("f-1"));
        assert_eq!(back.failed_at, Some(UnixMs(1_795_514_338_000)));
        assert_eq!(back.payload.as_deref(), Some(&payload[..]));
        assert_eq!(back.stored, Stored(rec.clone()));
        assert_eq!(id_of(&rec).as_deref(), Some("f-1"));
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
            let keep = KeepPayload::Bounded {
                class: class.map(str::to_string),
            };
            let v = record(payload, keep.clone(), *reason);
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
            let back = parse(&build(payload, &failure(*reason, keep), "w", "q", "i"));
            assert_eq!(back.excerpt.map(|e| e.bytes), Some(payload.len() as u64));
        }
    }

    #[test]
    fn small_refused_job_objects_and_whole_payloads_are_kept_as_they_were() {
        let small = br#"{"class":"Mailer","args":[{"to":"a"}],"sig":{"kid":"k","alg":"HS256","v":"x"}}"#;
        let v = record(
            small,
            KeepPayload::Bounded {
                class: Some("Mailer".into()),
            },
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
        let v = record(big.as_bytes(), KeepPayload::Whole, Reason::JobFailed);
        assert_eq!(v["payload"]["args"][0].as_str().map(str::len), Some(100_000));
    }

    /// What Ruby writes (Resque 3.0's `DirtyExit` record, a retried one) and
    /// what is not a record at all both read back without a panic.
    #[test]
    fn ruby_records_and_junk_read_back() {
        let ruby = br#"{"failed_at":"2026/11/24 10:58:58 +0100","payload":{"class":"Resize","args":[1]},"exception":"Resque::DirtyExit","error":"Child process received unhandled signal","backtrace":["a.rb:1"],"worker":"h:9:*","queue":"images","retried_at":"2026/11/24 11:00:00"}"#;
        let r = parse(ruby);
        assert!(r.readable && r.id.is_none());
        assert_eq!(r.class.as_deref(), Some("Resize"));
        assert_eq!(r.backtrace, ["a.rb:1"]);
        assert_eq!(r.retried_at, Some(UnixMs(1_795_518_000_000)));
        for junk in [&b"nope"[..], b"[1]", b"\xff", b"{\"payload\":\"text\"}"] {
            let r = parse(junk);
            assert!(r.payload.is_none() && r.class.is_none());
            assert_eq!(r.stored.0, junk);
        }
    }
}
