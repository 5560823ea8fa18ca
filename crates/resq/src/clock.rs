//! Time: one type for instants, [`UnixMs`], shown in ISO 8601 (UTC). The
//! formats Resque's records use live in the Redis store.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An instant: milliseconds since the Unix epoch, UTC. Every time the store
/// interface takes or gives is one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMs(pub u64);

impl UnixMs {
    /// Now, by this machine's clock.
    pub fn now() -> UnixMs {
        UnixMs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64),
        )
    }

    /// From Unix seconds (an envelope's `enqueued_at`, `expires_at`);
    /// negative or not a number is the epoch.
    pub fn from_secs_f64(secs: f64) -> UnixMs {
        if secs.is_finite() && secs > 0.0 {
            UnixMs((secs * 1000.0) as u64)
        } else {
            UnixMs(0)
        }
    }

    pub fn from_system_time(at: SystemTime) -> UnixMs {
        UnixMs(
            at.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64),
        )
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> UnixMs {
        UnixMs(self.0.saturating_add(d.as_millis().min(u128::from(u64::MAX)) as u64))
    }

    /// `self - d`, saturating at the epoch.
    pub fn minus(self, d: Duration) -> UnixMs {
        UnixMs(self.0.saturating_sub(d.as_millis().min(u128::from(u64::MAX)) as u64))
    }

    /// How long after `earlier` this is (zero when it is not later).
    pub fn since(self, earlier: UnixMs) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// Where the job pipeline (producer, worker, schedules) reads the time:
/// this machine's clock, or that clock moved by a fixed offset. An offset
/// lets a benchmark or a test live through a job's lifetime without
/// waiting for it: jobs sealed and run "a week ago" have expiries, and
/// replay marks that Redis drops, near the real now. Production code uses
/// [`Clock::system`].
///
/// ```
/// use std::time::Duration;
/// use resq::clock::{Clock, UnixMs};
/// let week_ago = Clock::system().moved_back(Duration::from_secs(7 * 86_400));
/// assert!(week_ago.now() < UnixMs::now().minus(Duration::from_secs(6 * 86_400)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    /// Milliseconds added to the system clock (negative: the past).
    offset_ms: i64,
}

impl Clock {
    /// This machine's clock.
    pub const fn system() -> Clock {
        Clock { offset_ms: 0 }
    }

    /// This clock, `by` earlier.
    pub fn moved_back(self, by: Duration) -> Clock {
        let by = by.as_millis().min(i64::MAX as u128) as i64;
        Clock {
            offset_ms: self.offset_ms.saturating_sub(by),
        }
    }

    /// This clock, `by` later.
    pub fn moved_forward(self, by: Duration) -> Clock {
        let by = by.as_millis().min(i64::MAX as u128) as i64;
        Clock {
            offset_ms: self.offset_ms.saturating_add(by),
        }
    }

    /// Now, by this clock.
    pub fn now(&self) -> UnixMs {
        let system = UnixMs::now().0;
        UnixMs(system.saturating_add_signed(self.offset_ms))
    }
}

impl std::fmt::Display for UnixMs {
    /// ISO 8601 with `Z`, to the second.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&iso8601(*self))
    }
}

use time::macros::format_description;
use time::OffsetDateTime;

/// ISO 8601 with `Z`, to the second: `2026-11-24T09:58:58Z`.
fn iso8601(at: UnixMs) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.0) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&fmt)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_iso8601_and_converts() {
        let t = UnixMs(1_795_514_338_250); // 2026-11-24 09:58:58.25 UTC
        assert_eq!(t.to_string(), "2026-11-24T09:58:58Z");
        assert_eq!(UnixMs::from_secs_f64(1_795_514_338.25), t);
        assert_eq!(UnixMs::from_secs_f64(-1.0), UnixMs(0));
        assert_eq!(UnixMs::from_secs_f64(f64::NAN), UnixMs(0));
        assert_eq!(t.plus(Duration::from_millis(750)).0, 1_795_514_339_000);
        assert_eq!(UnixMs(5).minus(Duration::from_secs(1)), UnixMs(0));
        assert_eq!(t.since(UnixMs(t.0 + 1)), Duration::ZERO);
    }
}
