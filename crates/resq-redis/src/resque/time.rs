//! Resque's time formats, written in UTC and read in any offset Ruby wrote.

use ::time::format_description::well_known::Iso8601;
use ::time::macros::format_description;
use ::time::{OffsetDateTime, PrimitiveDateTime};

use resq::clock::UnixMs;

fn datetime(at: UnixMs) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.0) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn unix_ms(at: OffsetDateTime) -> Option<UnixMs> {
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok().map(UnixMs)
}

/// `worker:<id>:started`, Ruby's `Time#to_s`: `2026-11-24 09:58:58 +0000`.
pub fn started(at: UnixMs) -> String {
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] +0000");
    datetime(at).format(&fmt).unwrap_or_default()
}

/// Heartbeats and `run_at`: ISO 8601 with `Z`, `2026-11-24T09:58:58Z`.
pub fn iso8601(at: UnixMs) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    datetime(at).format(&fmt).unwrap_or_default()
}

/// A failure record's `failed_at`: `2026/11/24 09:58:58 UTC`.
pub fn failed_at(at: UnixMs) -> String {
    let fmt = format_description!("[year]/[month]/[day] [hour]:[minute]:[second] UTC");
    datetime(at).format(&fmt).unwrap_or_default()
}

/// Reads any of the forms Resque writes: `Time#to_s` (`2026-11-24 10:58:58
/// +0100`), ISO 8601 with an offset or `Z`, and `failed_at` /
/// `retried_at` (`2026/11/24 09:58:58 UTC`, or without a zone: Resque
/// writes those from the worker's local clock, taken here as UTC).
pub fn parse(text: &str) -> Option<UnixMs> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Iso8601::DEFAULT) {
        return unix_ms(at);
    }
    let to_s = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    if let Ok(at) = OffsetDateTime::parse(text, &to_s) {
        return unix_ms(at);
    }
    let slashed = format_description!("[year]/[month]/[day] [hour]:[minute]:[second]");
    let bare = text.strip_suffix(" UTC").unwrap_or(text);
    PrimitiveDateTime::parse(bare, &slashed)
        .ok()
        .and_then(|at| unix_ms(at.assume_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_the_contract_and_read_back() {
        let t = UnixMs(1_795_514_338_250); // 2026-11-24 09:58:58.25 UTC
        let second = UnixMs(1_795_514_338_000);
        assert_eq!(started(t), "2026-11-24 09:58:58 +0000");
        assert_eq!(iso8601(t), "2026-11-24T09:58:58Z");
        assert_eq!(failed_at(t), "2026/11/24 09:58:58 UTC");
        for text in [started(t), iso8601(t), failed_at(t)] {
            assert_eq!(parse(&text), Some(second), "{text}");
        }
    }

    #[test]
    fn reads_what_ruby_writes_in_other_offsets() {
        let second = Some(UnixMs(1_795_514_338_000));
        let cases = [
            ("2026-11-24 10:58:58 +0100", second),
            ("2026-11-24 04:58:58 -0500", second),
            ("2026-11-24T10:58:58+01:00", second),
            ("2026/11/24 09:58:58", second),
            ("", None),
            ("yesterday", None),
            ("1969-12-31T23:59:59Z", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), want, "{text}");
        }
    }
}
