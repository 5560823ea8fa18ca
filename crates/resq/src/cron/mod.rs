//! Recurring jobs: a name, a cron expression in a time zone, and the job to
//! enqueue at each tick.
//!
//! Every worker given the schedule watches it, and the store lets exactly one
//! of them enqueue each tick: a tick is fired only if it is later than the
//! entry's last fired tick, and the check, the new mark and the push are one
//! atomic step. So three workers (or thirty) make one job per tick.
//!
//! Missed ticks: when no worker ran at a tick, the most recent missed tick is
//! fired once, late, if it is at most `missed_grace` old (default five
//! minutes); older ones are skipped, counted in the log, never fired in a
//! burst. A newly added entry therefore never fires a tick from before it
//! was deployed, unless that tick is within the grace.

mod entry;
mod scheduler;

pub use entry::{check_entries, check_unique_names, CronEntry, CronError, Due, DEFAULT_MISSED_GRACE};
pub use scheduler::{CronFireError, CronScheduler, TickOutcome};
