//! The time formats of the Resque wire contract, all in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

use time::macros::format_description;
use time::OffsetDateTime;

/// Seconds since the Unix epoch, as a float (Resque/Sidekiq style).
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn datetime(unix: f64) -> OffsetDateTime {
    let nanos = (unix * 1e9) as i128;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `worker:<id>:started`, Ruby's `Time#to_s`: `2026-11-24 09:58:58 +0000`.
pub fn started_format(unix: f64) -> String {
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] +0000");
    datetime(unix).format(&fmt).unwrap_or_default()
}

/// Heartbeats and `run_at`: ISO 8601 with `Z`, `2026-11-24T09:58:58Z`.
pub fn iso8601(unix: f64) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    datetime(unix).format(&fmt).unwrap_or_default()
}

/// A failure record's `failed_at`: `2026/11/24 09:58:58 UTC`.
pub fn failed_at_format(unix: f64) -> String {
    let fmt = format_description!("[year]/[month]/[day] [hour]:[minute]:[second] UTC");
    datetime(unix).format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_the_contract() {
        let t = 1_795_514_338.25; // 2026-11-24 09:58:58.25 UTC
        assert_eq!(started_format(t), "2026-11-24 09:58:58 +0000");
        assert_eq!(iso8601(t), "2026-11-24T09:58:58Z");
        assert_eq!(failed_at_format(t), "2026/11/24 09:58:58 UTC");
    }
}
