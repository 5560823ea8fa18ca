//! Jobs as the dashboard shows them: read with the same limits as a worker,
//! encrypted arguments never decrypted, fields whose names look secret
//! masked, and everything clipped. The templates escape what this returns.

use resq::envelope::Envelope;
use resq::{PayloadLimits, UnixMs};
use serde_json::Value;

/// The longest text of arguments a page shows for one job.
const ARGS_SHOWN: usize = 2_000;
/// What a masked value is shown as.
pub const MASK: &str = "[masked]";

/// Field names masked by default: a field is masked when its lowercased
/// name contains one of these.
pub const DEFAULT_MASKED: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "cookie",
    "session",
    "ssn",
    "card",
    "iban",
    "private",
];

/// One job, ready to show.
#[derive(Debug, Clone, Default)]
pub struct JobView {
    pub class: String,
    pub id: String,
    pub queue: String,
    /// The arguments as JSON text, masked and clipped; empty when encrypted.
    pub args: String,
    pub encrypted: bool,
    pub signed: bool,
    /// Which try this is (1 for the first), computed here: a stored
    /// attempt count near `u32::MAX` must not overflow in a template.
    pub tries: u64,
    pub enqueued_at: String,
    pub bytes: usize,
    /// False when the bytes are not a job resq can read (shown as an excerpt).
    pub readable: bool,
}

/// Reads `raw` for display.
pub fn job(raw: &[u8], limits: &PayloadLimits, masked: &[String]) -> JobView {
    match Envelope::decode(raw, limits) {
        Ok(env) => JobView {
            class: env.class,
            id: env.id.unwrap_or_default(),
            queue: env.queue.unwrap_or_default(),
            args: if env.enc.is_some() {
                String::new()
            } else {
                args_text(&env.args, masked)
            },
            encrypted: env.enc.is_some(),
            signed: env.sig.is_some(),
            tries: u64::from(env.attempt) + 1,
            enqueued_at: env
                .enqueued_at
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| UnixMs((s * 1000.0) as u64).to_string())
                .unwrap_or_default(),
            bytes: raw.len(),
            readable: true,
        },
        Err(_) => JobView {
            args: clip(&String::from_utf8_lossy(&raw[..raw.len().min(200)]), 200),
            bytes: raw.len(),
            readable: false,
            ..JobView::default()
        },
    }
}

/// Arguments as compact JSON, with secret-looking fields masked.
pub fn args_text(args: &[Value], masked: &[String]) -> String {
    let shown: Vec<Value> = args.iter().map(|v| mask(v, masked, 0)).collect();
    let text = serde_json::to_string(&shown).unwrap_or_default();
    clip(&text, ARGS_SHOWN)
}

/// Masks every object field whose name looks secret, at any depth (up to
/// a bound: deeper values are not shown at all).
fn mask(value: &Value, masked: &[String], depth: usize) -> Value {
    if depth > 16 {
        return Value::String("…".into());
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    if masked.iter().any(|m| lower.contains(m.as_str())) {
                        (k.clone(), Value::String(MASK.into()))
                    } else {
                        (k.clone(), mask(v, masked, depth + 1))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| mask(v, masked, depth + 1)).collect()),
        other => other.clone(),
    }
}

/// At most `max` bytes of `text` (on a character boundary), with … when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A time for a page: ISO 8601 UTC, or empty.
pub fn when(at: Option<UnixMs>) -> String {
    at.map(|t| t.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn masked() -> Vec<String> {
        DEFAULT_MASKED.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn secret_looking_fields_are_masked_at_any_depth() {
        let cases = [
            (json!([{"password": "hunter2"}]), "[{\"password\":\"[masked]\"}]"),
            (
                json!([{"user": {"API_Token": "t"}}]),
                "[{\"user\":{\"API_Token\":\"[masked]\"}}]",
            ),
            (json!([[{"card_number": 4111}]]), "[[{\"card_number\":\"[masked]\"}]]"),
            (json!([{"name": "ada"}, 3]), "[{\"name\":\"ada\"},3]"),
        ];
        for (args, want) in cases {
            let args = args.as_array().unwrap().clone();
            assert_eq!(args_text(&args, &masked()), want);
        }
    }

    #[test]
    fn encrypted_arguments_are_not_shown_and_junk_is_an_excerpt() {
        let limits = PayloadLimits::default();
        let enc = br#"{"class":"Mail","args":[],"enc":{"kid":"k","alg":"XC20P","nonce":"AA","ct":"BB"}}"#;
        let v = job(enc, &limits, &masked());
        assert!(v.encrypted && v.readable);
        assert_eq!(v.args, "");
        let junk = job(b"<script>x</script>", &limits, &masked());
        assert!(!junk.readable);
        assert_eq!(junk.args, "<script>x</script>"); // escaped by the template
    }

    #[test]
    fn an_attempt_count_at_its_limit_does_not_overflow() {
        let raw = format!(r#"{{"class":"A","args":[],"attempt":{}}}"#, u32::MAX);
        assert_eq!(
            job(raw.as_bytes(), &PayloadLimits::default(), &masked()).tries,
            4_294_967_296
        );
    }

    #[test]
    fn clip_keeps_characters_whole() {
        assert_eq!(clip("ééé", 3), "é…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
