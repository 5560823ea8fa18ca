//! Durations and instants as people type them on a command line: `90s`,
//! `10m`, `1h30m`, `7d`, `250ms`; and RFC 3339 times such as
//! `2026-12-24T18:00:00+01:00`.

use std::time::{Duration, SystemTime};

/// A duration: whole numbers, each followed by a unit (`ms`, `s`, `m`, `h`,
/// `d`, `w`), summed.
///
/// ```text
/// 10m      -> 600 s
/// 1h30m    -> 5400 s
/// 250ms    -> 0.25 s
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 90s, 10m, 1h30m, 7d or 250ms");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let per_unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            "w" => Duration::from_secs(7 * 86_400),
            _ => return Err(bad()),
        };
        let part = per_unit
            .checked_mul(u32::try_from(n).map_err(|_| bad())?)
            .ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// An RFC 3339 time with its offset (`Z` or `+01:00`).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let at = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("{text:?} is not an RFC 3339 time such as 2026-12-24T18:00:00+01:00"))?;
    let nanos = at.unix_timestamp_nanos();
    let since = u64::try_from(nanos).map_err(|_| format!("{text:?} is before 1970"))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(since))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_durations() {
        let ok = [
            ("90s", 90_000),
            ("10m", 600_000),
            ("1h30m", 5_400_000),
            ("7d", 604_800_000),
            ("1w", 604_800_000),
            ("250ms", 250),
            ("1m30s500ms", 90_500),
        ];
        for (text, ms) in ok {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for bad in [
            "",
            "10",
            "m",
            "10x",
            "1.5h",
            "-1s",
            "10 m",
            "99999999999999999999s",
            "4294967296w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_of_times() {
        let at = parse_time("2026-12-24T18:00:00+01:00").unwrap();
        assert_eq!(
            at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_798_131_600
        );
        assert_eq!(parse_time("2026-12-24T17:00:00Z").unwrap(), at);
        for bad in ["2026-12-24", "tomorrow", "2026-12-24 18:00", "1960-01-01T00:00:00Z"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
