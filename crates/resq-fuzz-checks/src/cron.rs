//! Cron entries (`crates/resq/src/cron/entry.rs`): the input's first line
//! is a schedule; the bytes after it pick a time zone and the instants.
//!
//! Properties:
//! - parsing gives an entry or `BadExpression`, never a panic, and the
//!   error never quotes the schedule (it comes from a config file);
//! - at every instant (any millisecond, and the edges of DST changes in
//!   zones that shift by 30 minutes, cross the date line, or start DST at
//!   midnight): the next tick is after now, the latest tick at or before
//!   now, the latest before the next;
//! - a tick that `next_tick` announces is the latest tick at that instant,
//!   so the scheduler (which fires `latest_tick`) fires it;
//! - `due` fires or skips exactly the latest tick.

use arbitrary::Unstructured;
use resq::cron::{CronEntry, CronError, Due};
use resq::UnixMs;

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Kathmandu",
    "Pacific/Apia",
    "America/Santiago",
    "America/Havana",
    "Africa/Casablanca",
];

/// Instants near DST changes of 2026 and near the ends of the range.
const INSTANTS: &[u64] = &[
    0,
    1,
    1_774_745_999_999, // 2026-03-29 00:59:59.999 UTC, before Berlin's spring change
    1_774_746_000_000,
    1_792_889_999_999, // 2026-10-25 00:59:59.999 UTC, before Berlin's autumn change
    1_792_890_000_000,
    1_772_953_200_000,   // 2026-03-08 07:00 UTC, New York's spring change
    1_325_239_200_000,   // 2011-12-29 10:00 UTC, Apia skipped 2011-12-30
    4_102_444_800_000,   // 2100-01-01
    253_402_300_799_999, // 9999-12-31 23:59:59.999, jiff's last instant
];

/// The target's properties on `data` (see the module): panics when one
/// fails.
pub fn check(data: &[u8]) {
    let (line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(expression) = std::str::from_utf8(line) else {
        return;
    };
    let entry = match CronEntry::new("e", expression, "Echo", Vec::new()) {
        Ok(entry) => entry,
        Err(e @ CronError::BadExpression { .. }) => {
            let shown = e.to_string();
            // The message's own words have no digit and no `*`: a schedule
            // with one cannot be in it by chance.
            let quotable = expression.trim();
            if quotable.contains(|c: char| c.is_ascii_digit() || c == '*') {
                assert!(!shown.contains(quotable), "the error quotes the schedule: {shown}");
            }
            return;
        }
        Err(e) => panic!("a schedule refused for another reason: {e}"),
    };
    let mut u = Unstructured::new(rest);
    let zone = u.choose(ZONES).copied().unwrap_or("UTC");
    let entry = entry.with_time_zone(zone).expect("a zone of the tz database"); // ok: a property check; a panic is the finding
    let mut nows = vec![
        u.arbitrary::<u64>().unwrap_or(0),
        u.int_in_range(0..=4_102_444_800_000u64).unwrap_or(1_792_890_000_000),
    ];
    if let Ok(i) = u.choose_index(INSTANTS.len()) {
        nows.push(INSTANTS[i]);
    }
    for now in nows {
        check_at(&entry, UnixMs(now));
    }
}

/// The properties of `entry`'s ticks at `now`.
fn check_at(entry: &CronEntry, now: UnixMs) {
    let latest = entry.latest_tick(now);
    let next = entry.next_tick(now);
    if let Some(l) = latest {
        assert!(l <= now, "latest tick {l:?} after now {now:?}");
    }
    if let Some(n) = next {
        assert!(n > now, "next tick {n:?} not after now {now:?}");
        assert_eq!(
            entry.latest_tick(n),
            Some(n),
            "next tick {n:?} is not a tick the scheduler fires"
        );
    }
    if let (Some(l), Some(n)) = (latest, next) {
        assert!(l < n);
    }
    match entry.due(now, None) {
        Due::Nothing => assert_eq!(latest, None),
        Due::Fire { tick } | Due::TooLate { tick } => assert_eq!(Some(tick), latest),
    }
    if let Some(l) = latest {
        assert_eq!(entry.due(now, Some(l)), Due::Nothing, "a fired tick is due again");
    }
}
