//! Firing recurring entries: a producer (policy, envelope, store) that
//! every worker runs; the store keeps each tick to one job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{check_unique_names, CronEntry, CronError, Due};
use crate::clock::UnixMs;
use crate::policy::{Policy, PolicyError, SealOptions};
use crate::store::{CronFired, Store, StoreError};

/// Fires the due ticks of a set of entries: a producer (policy, envelope,
/// store) that every worker runs; the store keeps each tick to one job.
///
/// ```no_run
/// # use std::sync::Arc;
/// # async fn demo(store: Arc<dyn resq::Store>, keyring: Arc<resq::Keyring>, registry: resq::Registry) -> Result<(), Box<dyn std::error::Error>> {
/// use resq::cron::{CronEntry, CronScheduler};
/// let entries = vec![CronEntry::new("cleanup", "*/15 * * * *", "Sleep", vec![serde_json::json!({"ms": 10})])?];
/// let policy = resq::Policy::new(keyring)?.with_registry(registry);
/// let scheduler = CronScheduler::new(entries, policy, store)?;
/// tokio::spawn(scheduler.run()); // Worker::with_cron does this for you
/// # Ok(()) }
/// ```
pub struct CronScheduler {
    entries: Vec<(CronEntry, String)>,
    policy: Policy,
    store: Arc<dyn Store>,
    /// Per entry, the latest tick this process already dealt with, so a
    /// tick is asked about once per process, not once per loop.
    seen: Mutex<HashMap<String, UnixMs>>,
    /// Entries whose first sight this process has made sure of.
    first_seen: Mutex<std::collections::HashSet<String>>,
}

/// What one entry's look at the clock did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickOutcome {
    /// This process pushed the tick's job (`missed`: earlier ticks that no
    /// worker fired, skipped by the policy).
    Fired { tick: UnixMs, job_id: String, missed: u64 },
    /// Another worker had fired it.
    AlreadyFired { tick: UnixMs },
    /// Missed by more than the grace: skipped.
    TooLate { tick: UnixMs },
    /// The queue was full: the tick is spent.
    QueueFull { tick: UnixMs, queue: String },
}

impl CronScheduler {
    /// Checks every entry against the policy (the class must be known and
    /// its arguments valid) so a bad entry fails at start-up, not at 3 a.m.
    pub fn new(entries: Vec<CronEntry>, policy: Policy, store: Arc<dyn Store>) -> Result<Self, CronError> {
        check_unique_names(&entries)?;
        let mut resolved = Vec::with_capacity(entries.len());
        for entry in entries {
            let queue = entry
                .queue
                .clone()
                .or_else(|| {
                    policy
                        .registry()
                        .and_then(|r| r.info(&entry.class))
                        .map(|i| i.queue.to_string())
                })
                .unwrap_or_else(|| "default".to_string());
            policy
                .seal(&entry.class, &queue, entry.args.clone(), SealOptions::default())
                .map_err(|e| CronError::BadJob {
                    name: entry.name.clone(),
                    // The arguments come from a config file: quote none of them.
                    message: crate::toml_error::redact(&e.to_string(), &[]),
                })?;
            resolved.push((entry, queue));
        }
        Ok(Self {
            entries: resolved,
            policy,
            store,
            seen: Mutex::new(HashMap::new()),
            first_seen: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// The entries and the queue each one enqueues on.
    pub fn entries(&self) -> impl Iterator<Item = (&CronEntry, &str)> {
        self.entries.iter().map(|(e, q)| (e, q.as_str()))
    }

    /// Fires what is due at `now`. A store error leaves the tick to the
    /// next look.
    pub async fn fire_due(&self, now: UnixMs) -> Vec<(String, Result<TickOutcome, CronFireError>)> {
        let mut outcomes = Vec::new();
        for (entry, queue) in &self.entries {
            // The first look of this process at an entry records, if no
            // worker did before, that every tick until now has passed: a
            // newly deployed entry fires nothing from before it existed.
            if !self.lock_first_seen().contains(&entry.name) {
                let passed = now
                    .0
                    .checked_sub(1)
                    .and_then(|t| entry.latest_tick(UnixMs(t)))
                    .unwrap_or_default();
                match self.store.cron_first_sight(&entry.name, passed).await {
                    Ok(recorded) => {
                        if recorded {
                            tracing::info!(cron = %entry.name, "new recurring entry: it fires from its next tick on");
                        }
                        self.lock_first_seen().insert(entry.name.clone());
                    }
                    Err(e) => {
                        outcomes.push((entry.name.clone(), Err(e.into())));
                        continue;
                    }
                }
            }
            // Whether the tick already fired is the store's to say.
            let due = entry.due(now, None);
            let (Due::Fire { tick } | Due::TooLate { tick }) = due else {
                continue;
            };
            if self.lock_seen().get(&entry.name) == Some(&tick) {
                continue;
            }
            let outcome = match due {
                Due::Fire { .. } => self.fire(entry, queue, tick).await,
                _ => Ok(TickOutcome::TooLate { tick }),
            };
            if outcome.is_ok() {
                self.lock_seen().insert(entry.name.clone(), tick);
            }
            outcomes.push((entry.name.clone(), outcome));
        }
        outcomes
    }

    async fn fire(&self, entry: &CronEntry, queue: &str, tick: UnixMs) -> Result<TickOutcome, CronFireError> {
        let options = SealOptions {
            unique: Some(format!("cron:{}:{}", entry.name, tick.0)),
            ..Default::default()
        };
        let job = self.policy.seal(&entry.class, queue, entry.args.clone(), options)?;
        Ok(match self.store.fire_cron(&entry.name, tick, &job).await {
            Ok(CronFired::Fired { previous }) => TickOutcome::Fired {
                tick,
                job_id: job.id().to_string(),
                missed: previous.map_or(0, |p| self.ticks_between(entry, p, tick)),
            },
            Ok(CronFired::AlreadyFired { .. }) => TickOutcome::AlreadyFired { tick },
            Err(StoreError::QueueFull { queue, .. }) => TickOutcome::QueueFull { tick, queue },
            Err(e) => return Err(e.into()),
        })
    }

    /// Ticks strictly between two fired ticks (counted up to a bound).
    fn ticks_between(&self, entry: &CronEntry, from: UnixMs, to: UnixMs) -> u64 {
        let mut n = 0;
        let mut at = from;
        while let Some(next) = entry.next_tick(at) {
            if next >= to || n == 10_000 {
                break;
            }
            n += 1;
            at = next;
        }
        n
    }

    fn lock_first_seen(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.first_seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, UnixMs>> {
        // The map holds plain numbers: a panic elsewhere cannot break it.
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks at the clock until dropped: at every tick (at least once a
    /// second, so a clock change is seen), logging what happened.
    pub async fn run(self) {
        loop {
            let now = UnixMs::now();
            for (name, outcome) in self.fire_due(now).await {
                match outcome {
                    Ok(TickOutcome::Fired { tick, job_id, missed }) => tracing::info!(
                        cron = %name, tick = %tick, late_ms = now.since(tick).as_millis() as u64, missed, job = %job_id,
                        "recurring job enqueued"
                    ),
                    Ok(TickOutcome::AlreadyFired { tick }) => {
                        tracing::debug!(cron = %name, tick = %tick, "tick fired by another worker")
                    }
                    Ok(TickOutcome::TooLate { tick }) => tracing::warn!(
                        cron = %name, tick = %tick, late_ms = now.since(tick).as_millis() as u64,
                        "missed tick skipped: no worker ran then, and it is older than the entry's missed_grace"
                    ),
                    Ok(TickOutcome::QueueFull { tick, queue }) => tracing::error!(
                        cron = %name, tick = %tick, queue = %queue, "queue full: this tick's job was not enqueued"
                    ),
                    Err(e) => tracing::warn!(cron = %name, error = %e, "could not fire a recurring job; will retry"),
                }
            }
            let now = UnixMs::now();
            let next = self
                .entries
                .iter()
                .filter_map(|(e, _)| e.next_tick(now))
                .min()
                .map_or(Duration::from_secs(1), |t| t.since(now));
            tokio::time::sleep(next.clamp(Duration::from_millis(5), Duration::from_secs(1))).await;
        }
    }
}

/// A tick that could not be fired now (it will be tried again).
#[derive(Debug, thiserror::Error)]
pub enum CronFireError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
