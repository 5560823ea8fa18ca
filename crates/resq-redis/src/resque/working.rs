//! `resque:worker:<id>`: the job a worker runs,
//! `{"queue":..,"run_at":"<ISO 8601>","payload":{..}}`.

use serde::Deserialize;
use serde_json::value::RawValue;

use resq::store::WorkingRecord;

/// The record's bytes. The payload is embedded as stored: the worker shows
/// only jobs that decoded as objects with a string `class` and an array
/// `args`, so the record is valid JSON whatever the job.
pub fn build(record: &WorkingRecord) -> Vec<u8> {
    let head = serde_json::json!({"queue": record.queue, "run_at": super::time::iso8601(record.run_at)}).to_string();
    // `{"queue":..,"run_at":..}` + `,"payload":` + payload + `}`
    let mut bytes = Vec::with_capacity(head.len() + record.payload.len() + 12);
    bytes.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    bytes.extend_from_slice(b",\"payload\":");
    bytes.extend_from_slice(&record.payload);
    bytes.push(b'}');
    bytes
}

/// Reads a record any Resque worker wrote; `None` when it lacks a queue or
/// a time this can read.
pub fn parse(bytes: &[u8]) -> Option<WorkingRecord> {
    #[derive(Deserialize)]
    struct RecordIn<'a> {
        queue: String,
        run_at: String,
        #[serde(borrow)]
        payload: Option<&'a RawValue>,
    }
    let record: RecordIn<'_> = serde_json::from_slice(bytes).ok()?;
    Some(WorkingRecord {
        queue: record.queue,
        run_at: super::time::parse(&record.run_at)?,
        payload: record.payload.map(|p| p.get().as_bytes().to_vec()).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use resq::clock::UnixMs;

    #[test]
    fn builds_resque_bytes_and_reads_them_back() {
        let record = WorkingRecord {
            queue: "q".into(),
            run_at: UnixMs(1_795_514_338_000),
            payload: br#"{"class":"A","args":[1.50]}"#.to_vec(),
        };
        let bytes = build(&record);
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"queue":"q","run_at":"2026-11-24T09:58:58Z","payload":{"class":"A","args":[1.50]}}"#
        );
        assert_eq!(parse(&bytes), Some(record));
        let ruby = br#"{"queue":"images","run_at":"2026-11-24T10:58:58+01:00","payload":{"class":"R","args":[]}}"#;
        assert_eq!(parse(ruby).map(|r| r.run_at), Some(UnixMs(1_795_514_338_000)));
        assert_eq!(parse(b"{}"), None);
        assert_eq!(parse(b"\xff"), None);
    }
}
