//! The range each worker setting must lie in, checked before the worker
//! starts. A value outside it does not "work a bit worse": a huge
//! concurrency allocates a slot per job up front, a huge liveness period
//! is refused by Redis on every renewal, a memory limit in MiB multiplied
//! into bytes can wrap to zero. So each is refused at start, with its range.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::WorkerConfig;
use crate::limits::{PayloadLimits, MAX_CONFIGURABLE_DEPTH};

/// Jobs run at once by one worker process (tasks in this process).
pub const CONCURRENCY: RangeInclusive<usize> = 1..=1024;
/// With process isolation and no `children` setting each slot is a child process.
pub const ISOLATED_CONCURRENCY: RangeInclusive<usize> = 1..=256;
/// Child processes of one worker (and never more than its concurrency).
pub const CHILDREN: RangeInclusive<usize> = 1..=256;
pub const LIVENESS_TTL: RangeInclusive<Duration> = ms(300)..=secs(3600);
pub const REAP_INTERVAL: RangeInclusive<Duration> = ms(50)..=secs(600);
/// At least one recovery: the first death is counted against every job in
/// flight, so only a later one, while the job ran alone, is its own.
pub const MAX_RECOVERIES: RangeInclusive<u32> = 1..=1000;
/// A replay mark outlives its job by at least a second and at most a day.
pub const MARK_MARGIN: RangeInclusive<Duration> = secs(1)..=secs(86_400);
/// Ruby prunes a worker whose heartbeat is older than 300 s.
pub const HEARTBEAT_INTERVAL: RangeInclusive<Duration> = secs(1)..=secs(240);
pub const POLL: RangeInclusive<Duration> = ms(1)..=secs(60);
pub const QUEUE_REFRESH: RangeInclusive<Duration> = ms(100)..=secs(3600);
pub const SCHEDULE_INTERVAL: RangeInclusive<Duration> = ms(10)..=secs(3600);
pub const SWEEP_INTERVAL: RangeInclusive<Duration> = ms(100)..=secs(86_400);
pub const DEFAULT_TIMEOUT: RangeInclusive<Duration> = ms(1)..=secs(7 * 86_400);
/// Address space of a job child: the program needs some tens of MiB.
pub const CHILD_MEMORY_MB: RangeInclusive<u64> = 48..=1_048_576;
pub const CHILD_CPU: RangeInclusive<Duration> = ms(1)..=secs(86_400);
pub const JOBS_PER_CHILD: RangeInclusive<u32> = 1..=1_000_000;
pub const PAYLOAD_BYTES: RangeInclusive<usize> = 64..=64 * 1024 * 1024;
pub const PAYLOAD_DEPTH: RangeInclusive<usize> = 2..=MAX_CONFIGURABLE_DEPTH;
pub const PAYLOAD_STRING_BYTES: RangeInclusive<usize> = 1..=64 * 1024 * 1024;
pub const PAYLOAD_ARRAY_LEN: RangeInclusive<usize> = 1..=10_000_000;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A setting outside its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} is {value}: it must be between {low} and {high}")]
pub struct OutOfRange {
    pub setting: &'static str,
    pub value: String,
    pub low: String,
    pub high: String,
}

/// Checks `value` against `range`, naming the setting in the error.
pub fn check<T: PartialOrd + Shown>(
    setting: &'static str,
    value: T,
    range: &RangeInclusive<T>,
) -> Result<(), OutOfRange> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(OutOfRange {
            setting,
            value: value.shown(),
            low: range.start().shown(),
            high: range.end().shown(),
        })
    }
}

/// How a setting's value is written in messages.
pub trait Shown {
    fn shown(&self) -> String;
}
impl Shown for Duration {
    fn shown(&self) -> String {
        format!("{} ms", self.as_millis())
    }
}
macro_rules! shown_as_number {
    ($($t:ty),*) => {$(impl Shown for $t {
        fn shown(&self) -> String { self.to_string() }
    })*};
}
shown_as_number!(usize, u64, u32);

/// Checks every payload limit.
pub fn check_limits(limits: &PayloadLimits) -> Result<(), OutOfRange> {
    check("limits.max_bytes", limits.max_bytes, &PAYLOAD_BYTES)?;
    check("limits.max_depth", limits.max_depth, &PAYLOAD_DEPTH)?;
    check(
        "limits.max_string_bytes",
        limits.max_string_bytes,
        &PAYLOAD_STRING_BYTES,
    )?;
    check("limits.max_array_len", limits.max_array_len, &PAYLOAD_ARRAY_LEN)
}

/// The children a worker of `concurrency` slots may run.
pub fn children_range(concurrency: usize) -> RangeInclusive<usize> {
    *CHILDREN.start()..=concurrency.clamp(*CHILDREN.start(), *CHILDREN.end())
}

impl WorkerConfig {
    /// Checks every setting against its range (see [`crate::worker::ranges`]).
    pub fn check(&self) -> Result<(), OutOfRange> {
        let one_child_a_slot = self.isolation.as_ref().is_some_and(|i| i.children.is_none());
        let slots = if one_child_a_slot {
            &ISOLATED_CONCURRENCY
        } else {
            &CONCURRENCY
        };
        check("concurrency", self.concurrency, slots)?;
        check("liveness_ttl", self.liveness_ttl, &LIVENESS_TTL)?;
        check("reap_interval", self.reap_interval, &REAP_INTERVAL)?;
        check("max_recoveries", self.max_recoveries, &MAX_RECOVERIES)?;
        check("mark_margin", self.mark_margin, &MARK_MARGIN)?;
        check("heartbeat_interval", self.heartbeat_interval, &HEARTBEAT_INTERVAL)?;
        check("poll_min", self.poll_min, &POLL)?;
        check("poll_max", self.poll_max, &(self.poll_min..=*POLL.end()))?;
        check("queue_refresh", self.queue_refresh, &QUEUE_REFRESH)?;
        check("schedule_interval", self.schedule_interval, &SCHEDULE_INTERVAL)?;
        check("sweep_interval", self.sweep_interval, &SWEEP_INTERVAL)?;
        if let Some(timeout) = self.default_timeout {
            check("default_timeout", timeout, &DEFAULT_TIMEOUT)?;
        }
        check_limits(&self.limits)?;
        if let Some(isolation) = &self.isolation {
            if let Some(n) = isolation.children {
                check("isolation.children", n, &children_range(self.concurrency))?;
            }
            if let Some(bytes) = isolation.memory_limit {
                check("isolation.memory_limit (MiB)", bytes / (1024 * 1024), &CHILD_MEMORY_MB)?;
            }
            if let Some(cpu) = isolation.cpu_limit {
                check("isolation.cpu_limit", cpu, &CHILD_CPU)?;
            }
            if let Some(n) = isolation.jobs_per_child {
                check("isolation.jobs_per_child", n, &JOBS_PER_CHILD)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::worker::isolation::Isolation;

    fn config() -> WorkerConfig {
        WorkerConfig::new("*".parse().unwrap(), Arc::new(crate::Keyring::ephemeral()))
    }

    #[test]
    fn the_defaults_pass_and_each_out_of_range_value_is_named() {
        assert_eq!(config().check(), Ok(()));
        type Breaks = fn(&mut WorkerConfig);
        let cases: [(&str, Breaks); 10] = [
            ("concurrency is 0", |c| c.concurrency = 0),
            ("concurrency is 1000000: it must be between 1 and 1024", |c| {
                c.concurrency = 1_000_000
            }),
            ("liveness_ttl is 18446744073709551615000 ms", |c| {
                c.liveness_ttl = Duration::from_secs(u64::MAX)
            }),
            ("reap_interval is 0 ms", |c| c.reap_interval = Duration::ZERO),
            ("heartbeat_interval is 300000 ms", |c| c.heartbeat_interval = secs(300)),
            ("poll_max is 1 ms: it must be between 2 ms", |c| c.poll_max = ms(1)),
            ("limits.max_depth is 500", |c| c.limits.max_depth = 500),
            ("concurrency is 300: it must be between 1 and 256", |c| {
                c.concurrency = 300;
                c.isolation = Some(Default::default());
            }),
            ("isolation.children is 9: it must be between 1 and 8", |c| {
                c.concurrency = 8;
                c.isolation = Some(Isolation {
                    children: Some(9),
                    ..Default::default()
                });
            }),
            ("isolation.children is 0: it must be between 1 and 256", |c| {
                c.concurrency = 1000;
                c.isolation = Some(Isolation {
                    children: Some(0),
                    ..Default::default()
                });
            }),
        ];
        for (message, breaks) in cases {
            let mut c = config();
            breaks(&mut c);
            let err = c.check().unwrap_err().to_string();
            assert!(err.starts_with(message), "{err}");
        }
    }
}
