//! A recurring entry: its schedule (cron expression and time zone), its
//! job, and which tick is due at a given time.

use crate::clock::UnixMs;
use std::time::Duration;

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde_json::Value;

use crate::names::{check_class, check_queue};

#[derive(Debug, Clone)]
pub struct CronEntry {
    /// Unique in a deployment; the key of the entry's last-fired mark.
    pub name: String,
    pub class: String,
    /// `None`: the class's queue when the worker knows it, else `default`.
    pub queue: Option<String>,
    pub args: Vec<Value>,
    /// How late the latest missed tick may still fire.
    pub missed_grace: Duration,
    expression: String,
    cron: Cron,
    time_zone: TimeZone,
}

/// A recurring job that cannot be scheduled as written.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error("a cron entry name is not allowed: use 1-64 letters, digits, '_', '-' or '.'")]
    BadName,
    #[error(
        "cron entry {name}: the schedule {why}; use five fields (minute hour day month weekday), \
         six with seconds first, or @hourly, @daily, @weekly, @monthly, @yearly"
    )]
    BadExpression { name: String, why: &'static str },
    #[error("cron entry {name}: unknown time zone (use an IANA name such as Europe/Berlin)")]
    BadTimeZone { name: String },
    #[error("cron entry {name}: {message}")]
    BadJob { name: String, message: String },
    #[error("cron entry {0} is listed twice")]
    Duplicate(String),
}

/// Five minutes: a deploy or a restart does not lose a tick.
pub const DEFAULT_MISSED_GRACE: Duration = Duration::from_secs(300);

impl CronEntry {
    /// An entry in UTC. `expression` has five fields (minute hour day month
    /// weekday), or six with seconds first; `@daily` and friends work too.
    pub fn new(name: &str, expression: &str, class: &str, args: Vec<Value>) -> Result<Self, CronError> {
        let name_ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !name_ok {
            return Err(CronError::BadName);
        }
        // The messages name the entry and never quote the schedule or
        // the class: they come from a config file, and must not echo it.
        let cron = parse_schedule(expression).map_err(|why| CronError::BadExpression {
            name: name.to_string(),
            why,
        })?;
        check_class(class).map_err(|_| CronError::BadJob {
            name: name.to_string(),
            message: "the class is not a Ruby constant path such as SendEmail or Mailers::Welcome".into(),
        })?;
        Ok(Self {
            name: name.to_string(),
            class: class.to_string(),
            queue: None,
            args,
            missed_grace: DEFAULT_MISSED_GRACE,
            expression: expression.to_string(),
            cron,
            time_zone: TimeZone::UTC,
        })
    }

    /// Ticks follow the wall clock of this IANA zone (DST included).
    pub fn with_time_zone(mut self, zone: &str) -> Result<Self, CronError> {
        self.time_zone = TimeZone::get(zone).map_err(|_| CronError::BadTimeZone {
            name: self.name.clone(),
        })?;
        Ok(self)
    }

    pub fn with_queue(mut self, queue: &str) -> Result<Self, CronError> {
        check_queue(queue).map_err(|_| CronError::BadJob {
            name: self.name.clone(),
            message: "the queue is not a queue name (1 to 128 letters, digits, '_', '-' or '.')".into(),
        })?;
        self.queue = Some(queue.to_string());
        Ok(self)
    }

    pub fn with_missed_grace(mut self, grace: Duration) -> Self {
        self.missed_grace = grace;
        self
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone's IANA name (`UTC` by default).
    pub fn time_zone(&self) -> &str {
        self.time_zone.iana_name().unwrap_or("UTC")
    }

    /// The latest tick at or before `now`.
    pub fn latest_tick(&self, now: UnixMs) -> Option<UnixMs> {
        let at = self.zoned(now)?;
        let mut tick = self.cron.find_previous_occurrence(&at, true).ok()?;
        // In the hour a clock falls back, croner's backward search can take
        // the second instant of a repeated time up to a second *after* its
        // origin (at 00:59:59.999 UTC in Berlin on 2026-10-25, `@hourly`
        // gave 01:00 UTC; found by fuzz/). The tick before that one is the
        // latest; twice is more than such a slack can need.
        for _ in 0..2 {
            if tick.timestamp() <= at.timestamp() {
                break;
            }
            tick = self.cron.find_previous_occurrence(&tick, false).ok()?;
        }
        let tick = u64::try_from(tick.timestamp().as_millisecond()).ok().map(UnixMs)?;
        (tick <= now).then_some(tick)
    }

    /// The first tick after `now`.
    pub fn next_tick(&self, now: UnixMs) -> Option<UnixMs> {
        let at = self.zoned(now)?;
        let mut tick = self.cron.find_next_occurrence(&at, false).ok()?;
        // The same guard as in `latest_tick`, forward.
        for _ in 0..2 {
            if tick.timestamp() > at.timestamp() {
                break;
            }
            tick = self.cron.find_next_occurrence(&tick, false).ok()?;
        }
        let tick = u64::try_from(tick.timestamp().as_millisecond()).ok().map(UnixMs)?;
        (tick > now).then_some(tick)
    }

    fn zoned(&self, at: UnixMs) -> Option<Zoned> {
        let ts = Timestamp::from_millisecond(i64::try_from(at.0).ok()?).ok()?;
        Some(ts.to_zoned(self.time_zone.clone()))
    }

    /// Which tick to fire at `now`, given the last one fired (`None`:
    /// never). Missed ticks older than the grace are skipped.
    pub fn due(&self, now: UnixMs, last_fired: Option<UnixMs>) -> Due {
        let Some(tick) = self.latest_tick(now) else {
            return Due::Nothing;
        };
        if last_fired.is_some_and(|last| tick <= last) {
            return Due::Nothing;
        }
        if now.since(tick) > self.missed_grace {
            return Due::TooLate { tick };
        }
        Due::Fire { tick }
    }
}

/// A schedule in the documented forms (five fields, six with seconds
/// first, `@daily` and friends; no year field), refused when it never falls
/// on a date that exists.
///
/// A schedule such as `0 0 31 2 *` (31 February) parses, but then every
/// search for its tick walks croner's whole range of years, forward to 5000
/// and back to year 1: about half a second of CPU a search, and the
/// scheduler searches every second, in every worker (found by fuzz/). The
/// Gregorian calendar repeats every 400 years, so a schedule without a year
/// field that has no tick in the last 401 years of croner's range has none
/// at all; that probe walks a tenth of the range, once, when the config is
/// read. A field that matches nothing is refused before it.
fn parse_schedule(expression: &str) -> Result<Cron, &'static str> {
    use croner::parser::{CronParser, Seconds, Year};
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    let cron = parser.parse(expression).map_err(|e| match e {
        croner::errors::CronError::EmptyPattern => "is empty",
        croner::errors::CronError::IllegalCharacters(_) => "has characters no cron expression has",
        _ => "is not a cron expression",
    })?;
    // A field of commas alone (`,`) parses as matching nothing; a time of
    // day that never matches makes each search run croner's iteration
    // limit, tens of millions of steps (found by fuzz/).
    let p = &cron.pattern;
    if [&p.seconds, &p.minutes, &p.hours, &p.months]
        .iter()
        .any(|c| c.values().is_empty())
    {
        return Err("has a field that matches nothing");
    }
    let probe = i16::try_from(croner::YEAR_UPPER_LIMIT - 401)
        .ok()
        .and_then(|year| jiff::civil::Date::new(year, 1, 1).ok())
        .and_then(|day| day.at(0, 0, 0, 0).to_zoned(TimeZone::UTC).ok())
        .ok_or("cannot be checked")?;
    match cron.find_next_occurrence(&probe, true) {
        Ok(_) => Ok(cron),
        Err(_) => Err("never falls on a date that exists (such as 31 February)"),
    }
}

/// What one look at an entry found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The latest tick already fired (or none exists).
    Nothing,
    /// This tick is due and was not fired yet.
    Fire { tick: UnixMs },
    /// The latest tick was missed by more than the grace: skipped.
    TooLate { tick: UnixMs },
}

/// Checks that no two entries share a name.
pub fn check_unique_names(entries: &[CronEntry]) -> Result<(), CronError> {
    let mut seen = std::collections::BTreeSet::new();
    for e in entries {
        if !seen.insert(e.name.as_str()) {
            return Err(CronError::Duplicate(e.name.clone()));
        }
    }
    Ok(())
}

/// Checks entries against the job types a worker runs: no two share a name,
/// each class is registered and its arguments pass the class's rules. Every
/// worker runs this at start (a burst worker too, though it fires nothing),
/// so a bad entry fails at deploy time, not at 3 a.m.
pub fn check_entries(entries: &[CronEntry], registry: &crate::registry::Registry) -> Result<(), CronError> {
    check_unique_names(entries)?;
    for entry in entries {
        registry
            .check_args(&entry.class, entry.args.clone())
            .map_err(|e| CronError::BadJob {
                name: entry.name.clone(),
                // The arguments come from a config file: quote none of them.
                message: crate::toml_error::redact(&e.to_string(), &[]),
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> UnixMs {
        UnixMs(v)
    }

    const MIN: u64 = 60_000;
    /// 2026-11-24 00:00:00 UTC.
    const DAY: u64 = 1_795_478_400_000;

    fn entry(expr: &str) -> CronEntry {
        CronEntry::new("e", expr, "Echo", vec![]).unwrap()
    }

    #[test]
    fn ticks_of_common_expressions() {
        let cases = [
            ("*/5 * * * *", DAY + 12 * MIN + 3_000, DAY + 10 * MIN, DAY + 15 * MIN),
            ("0 3 * * *", DAY + 3 * 60 * MIN, DAY + 3 * 60 * MIN, DAY + 27 * 60 * MIN),
            ("* * * * * *", DAY + 1_500, DAY + 1_000, DAY + 2_000),
            ("@hourly", DAY + 61 * MIN, DAY + 60 * MIN, DAY + 120 * MIN),
        ];
        for (expr, now, latest, next) in cases {
            let e = entry(expr);
            assert_eq!(e.latest_tick(ms(now)), Some(ms(latest)), "{expr} latest");
            assert_eq!(e.next_tick(ms(now)), Some(ms(next)), "{expr} next");
        }
    }

    #[test]
    fn time_zones_follow_the_local_wall_clock() {
        let berlin = entry("0 9 * * *").with_time_zone("Europe/Berlin").unwrap();
        // 09:00 in Berlin in November (CET, UTC+1) is 08:00 UTC.
        assert_eq!(berlin.next_tick(ms(DAY)), Some(ms(DAY + 8 * 60 * MIN)));
        assert!(matches!(
            entry("0 9 * * *").with_time_zone("Mars/Olympus"),
            Err(CronError::BadTimeZone { .. })
        ));
    }

    /// Across both DST changes of 2026 in Berlin, a 09:00 entry stays at 09:00
    /// on the wall clock (08:00 UTC in winter, 07:00 UTC in summer), and a
    /// 02:30 entry fires once on the night the clock jumps over 02:30 (at
    /// 03:00 CEST) and once on the night 02:30 happens twice.
    #[test]
    fn ticks_follow_the_wall_clock_across_dst_changes() {
        const H: u64 = 60 * MIN;
        // 2026-03-28 00:00 UTC: the spring change is 2026-03-29 01:00 UTC.
        let march_28 = 1_774_656_000_000;
        let nine = entry("0 9 * * *").with_time_zone("Europe/Berlin").unwrap();
        assert_eq!(
            nine.next_tick(ms(march_28)),
            Some(ms(march_28 + 8 * H)),
            "CET: 09:00 = 08:00 UTC"
        );
        assert_eq!(
            nine.next_tick(ms(march_28 + 8 * H)),
            Some(ms(march_28 + 24 * H + 7 * H)),
            "CEST: 09:00 = 07:00 UTC"
        );
        let half_past_two = entry("30 2 * * *").with_time_zone("Europe/Berlin").unwrap();
        let spring = half_past_two.next_tick(ms(march_28 + 12 * H)).unwrap();
        let next = half_past_two.next_tick(spring).unwrap();
        // 2026-03-29 02:30 does not exist: it fires at 03:00 CEST (01:00 UTC),
        // then at 02:30 CEST (00:30 UTC) the next night.
        assert_eq!((spring.0, next.0), (1_774_746_000_000, 1_774_830_600_000));
        // 2026-10-25 01:00 UTC the clock goes from 03:00 CEST back to 02:00 CET.
        let october_24 = 1_792_800_000_000;
        let first = half_past_two.next_tick(ms(october_24 + 12 * H)).unwrap();
        let second = half_past_two.next_tick(first).unwrap();
        // 02:30 happens twice on 2026-10-25: it fires at the first (02:30
        // CEST, 00:30 UTC) only, then at 02:30 CET (01:30 UTC) the next night.
        assert_eq!((first.0, second.0), (1_792_888_200_000, 1_792_978_200_000));
    }

    /// In the last second before the second 02:00 of the night Berlin's
    /// clock falls back, the latest hourly tick is the first 02:00 (00:00
    /// UTC), not the second one (01:00 UTC), still in the future: croner
    /// gave the future one (found by fuzz/), and the scheduler would have
    /// fired it early.
    #[test]
    fn the_latest_tick_is_never_in_the_future_in_a_repeated_hour() {
        const H: u64 = 60 * MIN;
        let second_two = 1_792_890_000_000; // 2026-10-25 01:00 UTC = 02:00 CET
        let hourly = entry("@hourly").with_time_zone("Europe/Berlin").unwrap();
        for before in [1, 500, 999, 1_000, 30 * MIN] {
            let now = ms(second_two - before);
            assert_eq!(hourly.latest_tick(now), Some(ms(second_two - H)), "{before} ms before");
            assert_eq!(hourly.next_tick(now), Some(ms(second_two)), "{before} ms before");
            assert_eq!(
                hourly.due(now, None),
                Due::TooLate {
                    tick: ms(second_two - H)
                },
                "not fired early"
            );
        }
        assert_eq!(hourly.latest_tick(ms(second_two)), Some(ms(second_two)));
        assert_eq!(hourly.next_tick(ms(second_two)), Some(ms(second_two + H)));
    }

    #[test]
    fn missed_ticks_policy() {
        let every_minute = entry("* * * * *");
        let now = ms(DAY + 10 * MIN + 5_000);
        let latest = ms(DAY + 10 * MIN);
        // Fired already: nothing. Never fired, tick just passed: fire it.
        assert_eq!(every_minute.due(now, Some(latest)), Due::Nothing);
        assert_eq!(every_minute.due(now, None), Due::Fire { tick: latest });
        // Down for four minutes: only the latest tick fires, once.
        assert_eq!(
            every_minute.due(now, Some(ms(DAY + 6 * MIN))),
            Due::Fire { tick: latest }
        );
        // A daily entry deployed at noon does not fire this morning's tick.
        let daily = entry("0 3 * * *");
        let noon = ms(DAY + 12 * 60 * MIN);
        assert_eq!(
            daily.due(noon, None),
            Due::TooLate {
                tick: ms(DAY + 3 * 60 * MIN)
            }
        );
        // ... but a worker back ten minutes after 03:00 fires it, late, once.
        let grace = daily.clone().with_missed_grace(Duration::from_secs(900));
        assert_eq!(
            grace.due(ms(DAY + 3 * 60 * MIN + 10 * MIN), Some(ms(DAY - 21 * 60 * MIN))),
            Due::Fire {
                tick: ms(DAY + 3 * 60 * MIN)
            }
        );
    }

    /// A schedule that never falls on an existing date is refused when it
    /// is read (each search for its tick would walk croner's whole range of
    /// years: found by fuzz/), and so is a year field, which the documented
    /// forms do not have; rare dates still work.
    #[test]
    fn schedules_that_never_fire_are_refused() {
        for never in [
            "0 0 31 2 *",
            "0 0 30 2 *",
            "0 0 31 4,6,9,11 *",
            "0 0 31W 2 *",
            "0 0 0 30 2 *",
            "* * * * * ,",
        ] {
            let err = CronEntry::new("e", never, "Echo", vec![]).unwrap_err().to_string();
            assert!(err.contains("never falls on a date"), "{never}: {err}");
        }
        for empty in [", * * * *", "0 ,, * * *", "0 0 * , *", ", * * * * *"] {
            let err = CronEntry::new("e", empty, "Echo", vec![]).unwrap_err().to_string();
            assert!(err.contains("a field that matches nothing"), "{empty}: {err}");
        }
        let err = CronEntry::new("e", "0 0 0 1 1 * 2030", "Echo", vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a cron expression"), "{err}");
        // 29 February: a tick every four years (eight across 2100).
        let leap = entry("0 0 29 2 *");
        assert_eq!(leap.next_tick(ms(DAY)), Some(ms(1_835_395_200_000)), "2028-02-29");
        assert_eq!(leap.latest_tick(ms(DAY)), Some(ms(1_709_164_800_000)), "2024-02-29");
        for rare in [
            "0 0 * * 5#5",
            "0 0 LW 2 *",
            "0 12 ? * MON-FRI",
            "@yearly",
            "*/10 * * * * *",
        ] {
            assert!(CronEntry::new("e", rare, "Echo", vec![]).is_ok(), "{rare}");
        }
    }

    #[test]
    fn bad_entries_are_refused_with_their_name() {
        let cases: [(&str, &str, &str, &str); 5] = [
            ("", "* * * * *", "Echo", "name"),
            ("has space", "* * * * *", "Echo", "name"),
            ("ok", "61 * * * *", "Echo", "not a cron expression"),
            ("ok", "every day", "Echo", "not a cron expression"),
            ("ok", "* * * * *", "bad class!", "ok"),
        ];
        for (name, expr, class, phrase) in cases {
            let err = CronEntry::new(name, expr, class, vec![]).unwrap_err().to_string();
            assert!(err.contains(phrase), "{err}");
        }
        let twice = [entry("* * * * *"), entry("@daily")];
        assert!(matches!(check_unique_names(&twice), Err(CronError::Duplicate(_))));
    }
}
