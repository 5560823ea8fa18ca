//! resq's expired-job records, `{"expired_at":..,"queue":..,"payload":"<job>"}`,
//! written by `sweep.lua` (the job as a string: it is whatever was stored).

use serde::Deserialize;

use resq::store::{ExpiredRecord, Stored};

/// Reads a record back; fields it cannot read are left out.
pub fn parse(bytes: &[u8]) -> ExpiredRecord {
    #[derive(Deserialize, Default)]
    struct RecordIn {
        #[serde(default)]
        expired_at: Option<String>,
        #[serde(default)]
        queue: Option<String>,
        #[serde(default)]
        payload: Option<String>,
    }
    let record: RecordIn = serde_json::from_slice(bytes).unwrap_or_default();
    ExpiredRecord {
        expired_at: record.expired_at.as_deref().and_then(super::time::parse),
        queue: record.queue,
        payload: record.payload.unwrap_or_default().into_bytes(),
        stored: Stored(bytes.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resq::clock::UnixMs;

    #[test]
    fn reads_what_the_sweeper_writes() {
        let bytes = br#"{"expired_at":"2026-11-24T09:58:58Z","payload":"{\"class\":\"A\"}","queue":"q"}"#;
        let r = parse(bytes);
        assert_eq!(r.expired_at, Some(UnixMs(1_795_514_338_000)));
        assert_eq!(r.queue.as_deref(), Some("q"));
        assert_eq!(r.payload, br#"{"class":"A"}"#);
        assert_eq!(parse(b"junk").stored.0, b"junk");
    }
}
