//! Envelope v1: what resq writes as a Resque list element, and how any element
//! read back from a queue is turned into a job, or refused with a reason.
//!
//! The shape is Resque's (`class` first, `args` an array) plus resq's own fields,
//! which Ruby workers ignore. A job pushed by any Resque client
//! (`{"class":"X","args":[...]}`) decodes too: resq's fields are optional on read.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::limits::PayloadLimits;
use crate::reason::{Reason, Rejection};

pub mod canonical;
mod open;
mod seal;

pub use open::{decrypt_args, verify, Verified};
pub use seal::{encrypt_args, sign, signing_message, SealError, AAD_DOMAIN, SIG_DOMAIN};

/// `sig`: who signed, with what, and the signature (unpadded base64url).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub kid: String,
    pub alg: String,
    pub v: String,
}

/// `enc`: arguments encrypted with an AEAD; `args` is then `[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encrypted {
    pub kid: String,
    pub alg: String,
    /// Unpadded base64url nonce (24 bytes for XC20P).
    pub nonce: String,
    /// Unpadded base64url ciphertext with its tag.
    pub ct: String,
}

/// One job as it travels through Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The job class; the worker's registry must know it.
    pub class: String,
    /// Positional arguments, as Resque defines them.
    pub args: Vec<Value>,
    /// A UUIDv7 for jobs resq enqueued; absent on jobs from Ruby producers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The queue the producer meant the job for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Unix seconds when the job was enqueued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<f64>,
    /// Unix seconds after which the job must never run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<f64>,
    /// How many times the job has been tried before this run.
    #[serde(default)]
    pub attempt: u32,
    /// The uniqueness key the producer enqueued it under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<String>,
    /// How long one run may take before it is cancelled (milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The replay mark this attempt is claimed under before it runs
    /// (`<block>.<index>`, see [`crate::mark`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<String>,
    /// Encrypted arguments, when the job type asks for encryption at rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enc: Option<Encrypted>,
    /// Fields resq does not know (plugins, newer producers): kept, and signed.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
    /// The signature over everything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<Signature>,
}

impl Envelope {
    /// Serializes the envelope to the compact JSON stored in Redis.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Decodes a list element, checking the limits first and refusing anything
    /// that is not a well-formed job object. Never panics, whatever the bytes.
    ///
    /// ```
    /// use resq::{Envelope, PayloadLimits, Reason};
    /// # fn main() -> Result<(), resq::Rejection> {
    /// let job = Envelope::decode(br#"{"class":"Echo","args":["hi"]}"#, &PayloadLimits::default())?;
    /// assert_eq!(job.class, "Echo");
    /// let refused = Envelope::decode(b"\x80garbage", &PayloadLimits::default()).err();
    /// assert_eq!(refused.map(|r| r.reason), Some(Reason::MalformedPayload));
    /// # Ok(()) }
    /// ```
    pub fn decode(bytes: &[u8], limits: &PayloadLimits) -> Result<Envelope, Rejection> {
        limits
            .check(bytes)
            .map_err(|e| Rejection::new(e.reason(), e.to_string()))?;
        let text = std::str::from_utf8(bytes).map_err(|e| {
            Rejection::new(
                Reason::MalformedPayload,
                format!("payload is not valid UTF-8 (at byte {})", e.valid_up_to()),
            )
        })?;
        serde_json::from_str::<Envelope>(text).map_err(|e| {
            let reason = if e.to_string().contains("number out of range") {
                Reason::NumberOutOfRange
            } else {
                Reason::MalformedPayload
            };
            Rejection::new(reason, format!("payload is not a job object: {e}"))
        })
    }

    /// True when the job carries an expiry that is at or before `now`.
    pub fn is_expired(&self, now: crate::clock::UnixMs) -> bool {
        self.expires_at.is_some_and(|at| at <= now.as_secs_f64())
    }
}

/// An unsigned envelope of class `A` on queue `q` with these arguments,
/// for tests.
#[cfg(test)]
pub(crate) fn sample(args: Vec<Value>) -> Envelope {
    Envelope {
        class: "A".into(),
        args,
        id: Some("x".into()),
        queue: Some("q".into()),
        enqueued_at: Some(1.5),
        expires_at: None,
        attempt: 0,
        unique: None,
        timeout_ms: None,
        mark: None,
        enc: None,
        extra: Default::default(),
        sig: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_comes_first_and_args_second() {
        let env = sample(vec![Value::from(1)]);
        let text = String::from_utf8(env.to_bytes().unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"class":"A","args":[1],"id":"x","queue":"q","enqueued_at":1.5,"attempt":0}"#
        );
    }

    #[test]
    fn table_of_refusals() {
        let limits = PayloadLimits::default();
        let cases: &[(&[u8], Reason)] = &[
            (b"", Reason::MalformedPayload),
            (b"not json", Reason::MalformedPayload),
            (b"[1,2]", Reason::MalformedPayload),
            (b"\"str\"", Reason::MalformedPayload),
            (br#"{"class":"A"}"#, Reason::MalformedPayload),
            (br#"{"args":[]}"#, Reason::MalformedPayload),
            (br#"{"class":"A","args":{}}"#, Reason::MalformedPayload),
            (br#"{"class":1,"args":[]}"#, Reason::MalformedPayload),
            (br#"{"class":"A","class":"B","args":[]}"#, Reason::MalformedPayload),
            (b"{\"class\":\"A\xff\",\"args\":[]}", Reason::MalformedPayload),
            (br#"{"class":"A","args":[1e999]}"#, Reason::NumberOutOfRange),
            (
                br#"{"class":"A","args":[99999999999999999999999]}"#,
                Reason::NumberOutOfRange,
            ),
        ];
        for (bytes, reason) in cases {
            let err = Envelope::decode(bytes, &limits).unwrap_err();
            assert_eq!(err.reason, *reason, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn ruby_payload_with_unknown_keys_decodes() {
        let env = Envelope::decode(
            br#"{"class":"Mailers::Welcome","args":[1,"x"],"plugin":{"a":1}}"#,
            &PayloadLimits::default(),
        )
        .unwrap();
        assert_eq!(env.class, "Mailers::Welcome");
        assert_eq!(env.args.len(), 2);
        assert_eq!(env.id, None);
    }
}
