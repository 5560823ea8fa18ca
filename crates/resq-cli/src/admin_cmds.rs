//! `resq enqueue`, `queues`, `workers`, `stats` and `failed ...`: thin layers
//! over the library's `Client` and `Admin`.

use std::sync::Arc;

use clap::{Args, Subcommand};
use resq::{Admin, Client, Policy, Schedule, Store};
use serde_json::{json, Value};

use crate::config::Settings;
use crate::output::{clip, safe};
use crate::{connect, Failure};

#[derive(Args)]
pub struct EnqueueArgs {
    /// The job class, e.g. `Echo` or `Mailers::Welcome`.
    class: String,
    /// The arguments: a JSON array (Resque's `args`) or one JSON object
    /// (shorthand for `[object]`).
    #[arg(long, default_value = "[]")]
    args: String,
    /// The queue (default: `default`).
    #[arg(long, default_value = "default")]
    queue: String,
    /// Stop the run after this many milliseconds (recorded `timeout`).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Run it after this long instead of now: `90s`, `10m`, `1h30m`, `2d`.
    #[arg(long = "in", value_name = "DURATION", conflicts_with = "at")]
    in_: Option<String>,
    /// Run it at this time (RFC 3339, e.g. `2026-12-24T18:00:00+01:00`).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Enqueue it only if no job of this class holds this key within the
    /// window (else refused, naming the existing job).
    #[arg(long, value_name = "KEY", conflicts_with_all = ["in_", "at"])]
    unique: Option<String>,
    /// How long `--unique`'s key is held (default 1h).
    #[arg(long, value_name = "DURATION", requires = "unique")]
    unique_for: Option<String>,
    /// Its lifetime: past it, it expires and never runs (default 7d, or
    /// the class's own).
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
    /// Push the job for Ruby workers: Resque's exact form (`class` and
    /// positional `args`, unsigned), for a class resq does not run, onto a
    /// queue listed in `[ruby] queues` (RESQ_RUBY_QUEUES). Audited.
    #[arg(long)]
    for_ruby: bool,
}

#[derive(Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Which page of a list to show, and how.
#[derive(Args)]
pub struct Page {
    #[arg(long, default_value_t = 0)]
    offset: u64,
    #[arg(long, default_value_t = 20)]
    limit: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// An admin action's failure: the store's is a runtime error, the rest are the
/// user's input (exit 2).
fn admin_failure(e: resq::AdminError) -> Failure {
    match e {
        resq::AdminError::Store(_) => Failure::runtime(e),
        _ => Failure::usage(e),
    }
}

#[derive(Subcommand)]
pub enum FailedAction {
    /// List failures, oldest first.
    List {
        #[command(flatten)]
        page: Page,
        #[command(flatten)]
        filter: FailedFilterArgs,
    },
    /// Put a failed job back on its queue (byte for byte) and remove the
    /// record; with --all, every failure the filters take.
    Retry {
        /// The failure's id (see `resq failed list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        failure_id: Option<String>,
        /// Every failure (or every one the filters take).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: FailedFilterArgs,
    },
    /// Remove one failure record.
    Remove { failure_id: String },
    /// Remove every failure record.
    Clear,
}

/// Filters of `failed list` and `failed retry --all`.
#[derive(Args)]
pub struct FailedFilterArgs {
    /// Only failures from this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only failures of this job class.
    #[arg(long)]
    class: Option<String>,
    /// Only failures with this reason (e.g. job_failed, timeout, unsigned;
    /// Ruby's records: their exception).
    #[arg(long)]
    reason: Option<String>,
}

impl From<FailedFilterArgs> for resq::FailedFilter {
    fn from(a: FailedFilterArgs) -> Self {
        resq::FailedFilter {
            queue: a.queue,
            class: a.class,
            reason: a.reason,
        }
    }
}

#[derive(Subcommand)]
pub enum QueueAction {
    /// Stop every worker from fetching from QUEUE (jobs stay queued).
    Pause { queue: String },
    /// Let workers fetch from QUEUE again.
    Resume { queue: String },
    /// Refuse enqueues that would leave more than MAX jobs waiting in QUEUE;
    /// without MAX, show QUEUE's cap.
    Cap {
        queue: String,
        /// The most jobs that may wait.
        max: Option<u64>,
        /// Remove the cap instead.
        #[arg(long, conflicts_with = "max")]
        remove: bool,
    },
}

/// `resq queue pause|resume|cap`.
pub async fn queue(settings: &Settings, action: QueueAction) -> Result<(), Failure> {
    let admin = admin(settings).await?;
    match action {
        QueueAction::Pause { queue } => {
            admin.set_queue_paused(&queue, true).await.map_err(admin_failure)?;
            println!(
                "paused {}: workers fetch nothing from it until `resq queue resume {}`",
                safe(&queue),
                safe(&queue)
            );
        }
        QueueAction::Resume { queue } => {
            admin.set_queue_paused(&queue, false).await.map_err(admin_failure)?;
            println!("resumed {}", safe(&queue));
        }
        QueueAction::Cap {
            queue,
            max: None,
            remove: false,
        } => {
            let (_, caps) = admin.queue_controls().await.map_err(Failure::runtime)?;
            let length = admin
                .queues()
                .await
                .map_err(Failure::runtime)?
                .into_iter()
                .find(|(q, _)| *q == queue)
                .map_or(0, |(_, n)| n);
            match caps.iter().find(|(q, _)| *q == queue) {
                Some((_, cap)) => println!("{} is capped at {cap} waiting jobs ({length} waiting)", safe(&queue)),
                None => println!("{} has no cap ({length} waiting)", safe(&queue)),
            }
        }
        QueueAction::Cap { queue, max, remove } => {
            let cap = if remove { None } else { max };
            admin.set_queue_cap(&queue, cap).await.map_err(admin_failure)?;
            match cap {
                Some(n) => println!("capped {} at {n} waiting jobs", safe(&queue)),
                None => println!("removed the cap of {}", safe(&queue)),
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum ExpiredAction {
    /// The newest jobs the sweeper removed because they expired.
    List(Page),
    /// Remove one record (by the handle `list` shows).
    Remove { handle: String },
    /// Enqueue the job again as a new job (new id, a fresh lifetime, signed
    /// anew): an expired job never runs as it was.
    Retry { handle: String },
}

/// `resq expired list`.
pub async fn expired(settings: &Settings, action: ExpiredAction) -> Result<(), Failure> {
    let (offset, limit, json) = match action {
        ExpiredAction::List(Page { offset, limit, json }) => (offset, limit, json),
        ExpiredAction::Remove { handle } => {
            admin(settings)
                .await?
                .remove_expired(&handle)
                .await
                .map_err(admin_failure)?;
            println!("removed {}", safe(&handle));
            return Ok(());
        }
        ExpiredAction::Retry { handle } => return retry_expired(settings, &handle).await,
    };
    let (records, total) = admin(settings)
        .await?
        .expired(offset, limit.min(1000))
        .await
        .map_err(Failure::runtime)?;
    // One shape: each record with its handle, its payload as an object.
    let parsed: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut v: Value = serde_json::from_str(r).unwrap_or_else(|_| json!({"raw": r}));
            v["id"] = Value::String(resq::admin::bytes_handle(r));
            if let Some(text) = v["payload"].as_str() {
                v["payload"] = payload_object(text);
            }
            v
        })
        .collect();
    if json {
        println!("{}", Value::Array(parsed));
        return Ok(());
    }
    println!(
        "{total} expired job(s) swept in all; showing {} from {offset}",
        parsed.len()
    );
    for r in parsed {
        let payload = &r["payload"];
        println!(
            "{}  {}  queue={}  class={} id={}",
            safe(r["id"].as_str().unwrap_or("-")),
            safe(r["expired_at"].as_str().unwrap_or("-")),
            safe(r["queue"].as_str().filter(|q| !q.is_empty()).unwrap_or("(scheduled)")),
            safe(&clip(payload["class"].as_str().unwrap_or("?"), 60)),
            safe(payload["id"].as_str().unwrap_or("-"))
        );
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum ScheduleAction {
    /// List the jobs waiting, soonest first.
    List(Page),
    /// Remove one waiting job (by its id).
    Remove { id: String },
    /// Push one waiting job to its queue now, instead of when it is due.
    Run { id: String },
}

/// A stored payload as JSON output shows it: always an object (a stand-in
/// with the text in `raw` when it is not a job object).
fn payload_object(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"class": resq::failure::UNREADABLE_CLASS, "args": [], "raw": clip(text, 512)}),
    }
}

/// `resq expired retry`: the job again, as a new job.
async fn retry_expired(settings: &Settings, handle: &str) -> Result<(), Failure> {
    let store: Arc<dyn Store> = connect(settings).await?;
    let admin = Admin::new(Arc::clone(&store));
    let (records, _) = admin.expired(0, 1000).await.map_err(Failure::runtime)?;
    let record = records
        .iter()
        .find(|r| resq::admin::bytes_handle(r) == handle)
        .ok_or_else(|| Failure::usage(format!("no expired record {} (see `resq expired list`)", safe(handle))))?;
    let text: Value = serde_json::from_str(record).map_err(|_| Failure::usage("the record is not JSON"))?;
    let payload = text["payload"].as_str().unwrap_or_default();
    let keyring = settings.keyring().map_err(Failure::usage)?;
    let mut envelope = resq::Envelope::decode(payload.as_bytes(), &settings.limits)
        .map_err(|e| Failure::usage(format!("the expired job cannot be read: {e}")))?;
    // Encrypted arguments are opened (and sealed again by the policy).
    resq::envelope::decrypt_args(&mut envelope, &keyring, &settings.limits)
        .map_err(|e| Failure::usage(format!("the expired job's arguments: {e}")))?;
    let queue = envelope
        .queue
        .clone()
        .or_else(|| text["queue"].as_str().filter(|q| !q.is_empty()).map(str::to_string))
        .ok_or_else(|| Failure::usage("the expired job names no queue"))?;
    let mut policy = Policy::new(keyring)
        .map_err(Failure::usage)?
        .with_registry(crate::demo_jobs::registry());
    policy.limits = settings.limits;
    let id = Client::with_policy(store, policy)
        .enqueue_raw(&envelope.class, envelope.args, &queue)
        .await
        .map_err(Failure::usage)?;
    admin.remove_expired(handle).await.map_err(admin_failure)?;
    println!("enqueued {} on {} again as {id}", safe(&envelope.class), safe(&queue));
    Ok(())
}

/// `resq scheduled list` and `resq retry-set list`.
pub async fn schedule(settings: &Settings, which: Schedule, action: ScheduleAction) -> Result<(), Failure> {
    let admin = admin(settings).await?;
    let (offset, limit, json) = match action {
        ScheduleAction::List(Page { offset, limit, json }) => (offset, limit, json),
        ScheduleAction::Remove { id } => {
            admin.remove_scheduled(which, &id).await.map_err(admin_failure)?;
            println!("removed {}", safe(&id));
            return Ok(());
        }
        ScheduleAction::Run { id } => {
            let queue = admin.run_scheduled_now(which, &id).await.map_err(admin_failure)?;
            println!("pushed {} to {} now", safe(&id), safe(&queue));
            return Ok(());
        }
    };
    let total = admin.schedule_len(which).await.map_err(Failure::runtime)?;
    let entries = admin
        .schedule(which, offset, limit.min(1000))
        .await
        .map_err(Failure::runtime)?;
    if json {
        let v: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({"due_ms": e.due_ms, "class": e.class, "queue": e.queue, "id": e.handle(), "attempt": e.attempt,
                       "payload": payload_object(&e.raw)})
            })
            .collect();
        println!("{}", Value::Array(v));
        return Ok(());
    }
    let what = if which == Schedule::Retry {
        "retries"
    } else {
        "scheduled jobs"
    };
    println!("{total} {what}; showing {} from {offset}", entries.len());
    for e in entries {
        println!(
            "due {}  {}  class={} queue={} attempt={}",
            resq::clock::iso8601(e.due_ms as f64 / 1000.0),
            safe(&e.handle()),
            safe(&clip(e.class.as_deref().unwrap_or("?"), 60)),
            safe(e.queue.as_deref().unwrap_or("?")),
            e.attempt
        );
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum CronAction {
    /// The recurring jobs in the config, their next tick and the last one fired.
    List(JsonFlag),
}

/// `resq cron list`.
pub async fn cron(settings: &Settings, action: CronAction) -> Result<(), Failure> {
    let CronAction::List(JsonFlag { json }) = action;
    let admin = admin(settings).await?;
    let last: std::collections::BTreeMap<String, u64> = admin
        .cron_last_fired()
        .await
        .map_err(Failure::runtime)?
        .into_iter()
        .collect();
    let now_ms = (resq::clock::now_unix() * 1000.0) as u64;
    let registry = crate::demo_jobs::registry();
    let iso = |ms: Option<u64>| ms.map(|t| resq::clock::iso8601(t as f64 / 1000.0));
    let rows: Vec<Value> = settings
        .cron
        .iter()
        .map(|e| {
            let queue = e
                .queue
                .clone()
                .or_else(|| registry.info(&e.class).map(|i| i.queue.to_string()))
                .unwrap_or_else(|| "default".into());
            json!({"name": e.name, "schedule": e.expression(), "time_zone": e.time_zone(), "class": e.class,
                   "queue": queue, "next": iso(e.next_tick(now_ms)), "last_fired": iso(last.get(&e.name).copied())})
        })
        .collect();
    // Marks of entries this config does not have (removed, or another deployment's).
    let orphans: Vec<(&String, &u64)> = last
        .iter()
        .filter(|(n, _)| !settings.cron.iter().any(|e| &e.name == *n))
        .collect();
    if json {
        let orphans: Vec<Value> = orphans
            .iter()
            .map(|(n, t)| json!({"name": n, "last_fired": iso(Some(**t))}))
            .collect();
        println!("{}", json!({"entries": rows, "not_configured": orphans}));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no recurring jobs: add [[cron]] tables to resq.toml");
    }
    for r in &rows {
        println!(
            "{}  {:?} ({})  class={} queue={}  next {}  last fired {}",
            safe(r["name"].as_str().unwrap_or("")),
            r["schedule"].as_str().unwrap_or(""),
            r["time_zone"].as_str().unwrap_or(""),
            safe(r["class"].as_str().unwrap_or("")),
            safe(r["queue"].as_str().unwrap_or("")),
            r["next"].as_str().unwrap_or("never"),
            r["last_fired"].as_str().unwrap_or("never"),
        );
    }
    for (name, tick) in orphans {
        println!(
            "{}  (not in this config)  last fired {}",
            safe(&clip(name, 64)),
            resq::clock::iso8601(*tick as f64 / 1000.0)
        );
    }
    Ok(())
}

/// Parses `--args`: an array, or one object meaning `[object]`.
pub fn parse_args(text: &str, limits: &resq::PayloadLimits) -> Result<Vec<Value>, Failure> {
    limits
        .check(text.as_bytes())
        .map_err(|e| Failure::usage(format!("--args is refused: {e}")))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(obj @ Value::Object(_)) => Ok(vec![obj]),
        Ok(other) => Err(Failure::usage(format!(
            "--args must be a JSON array or one JSON object, not {}",
            clip(&other.to_string(), 40)
        ))),
        Err(e) => Err(Failure::usage(format!("--args is not valid JSON: {e}"))),
    }
}

pub async fn enqueue(settings: &Settings, a: EnqueueArgs) -> Result<(), Failure> {
    if a.for_ruby {
        return enqueue_for_ruby(settings, a).await;
    }
    if let Some(ms) = a.timeout_ms {
        resq::worker::ranges::check(
            "--timeout-ms",
            std::time::Duration::from_millis(ms),
            &resq::worker::ranges::DEFAULT_TIMEOUT,
        )
        .map_err(Failure::usage)?;
    }
    // The same policy as every other path: the class must be registered here
    // and its arguments must pass its rules, then the job is signed.
    let keyring = settings.keyring().map_err(Failure::usage)?;
    let verify_only = keyring.has_verification_keys();
    let mut policy = Policy::new(keyring)
        .map_err(|e| match e {
            resq::PolicyError::NoSigningKey if verify_only => Failure::usage(
                "the keys file holds no signing key: it is a verify-only (public) file, as workers get; \
                 a producer needs the private keys file that `resq keys generate` wrote (RESQ_KEYS_FILE)",
            ),
            other => Failure::usage(other),
        })?
        .with_registry(crate::demo_jobs::registry());
    policy.limits = settings.limits;
    let args = parse_args(&a.args, &policy.limits)?;
    let duration = |flag: &str, text: &Option<String>| {
        text.as_deref()
            .map(crate::when::parse_duration)
            .transpose()
            .map_err(|e| Failure::usage(format!("{flag}: {e}")))
    };
    let at = match (duration("--in", &a.in_)?, &a.at) {
        (Some(delay), _) => Some(std::time::SystemTime::now() + delay),
        (None, Some(at)) => Some(crate::when::parse_time(at).map_err(|e| Failure::usage(format!("--at: {e}")))?),
        (None, None) => None,
    };
    let ttl = duration("--ttl", &a.ttl)?;
    if ttl.is_some_and(|t| t.is_zero()) {
        return Err(Failure::usage("--ttl must be longer than 0"));
    }
    let unique = match &a.unique {
        Some(key) => Some((
            key.clone(),
            duration("--unique-for", &a.unique_for)?.unwrap_or(std::time::Duration::from_secs(3600)),
        )),
        None => None,
    };
    let store = connect(settings).await?;
    let client = Client::with_policy(store, policy);
    let id = client
        .enqueue_raw_job(resq::RawJob {
            class: a.class.clone(),
            args,
            queue: a.queue.clone(),
            options: resq::SealOptions {
                timeout: a.timeout_ms.map(std::time::Duration::from_millis),
                ttl,
                ..Default::default()
            },
            at,
            unique,
        })
        .await
        .map_err(|e| match e {
            resq::EnqueueError::Store(_) => Failure::runtime(e),
            resq::EnqueueError::Policy(resq::PolicyError::Rejected { ref rejection, .. })
                if rejection.reason == resq::Reason::UnregisteredClass =>
            {
                Failure::usage(format!(
                    "class {} is not a job type this binary knows (see `resq jobs list`): `resq enqueue` \
                     checks a job against its type's rules before it signs it; for a class Ruby workers run, \
                     use --for-ruby",
                    safe(&clip(&a.class, 64))
                ))
            }
            _ => Failure::usage(e),
        })?;
    match at {
        Some(at) => println!(
            "scheduled {} on {} as {id}, due {}",
            safe(&a.class),
            safe(&a.queue),
            resq::clock::iso8601(
                at.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            )
        ),
        None => println!("enqueued {} on {} as {id}", safe(&a.class), safe(&a.queue)),
    }
    Ok(())
}

/// `resq enqueue --for-ruby`: no registry, no signature; the queue must be
/// Ruby's (see `resq::ruby`).
async fn enqueue_for_ruby(settings: &Settings, a: EnqueueArgs) -> Result<(), Failure> {
    if a.timeout_ms.is_some() || a.ttl.is_some() || a.unique.is_some() || a.in_.is_some() || a.at.is_some() {
        return Err(Failure::usage(
            "--timeout-ms, --ttl, --unique, --in and --at are resq's: Ruby workers ignore them",
        ));
    }
    let args = parse_args(&a.args, &settings.limits)?;
    let store = connect(settings).await?;
    let mut producer =
        resq::ruby::RubyProducer::new(store, settings.ruby_queues.clone(), settings.allow_unsigned.clone())
            .map_err(Failure::usage)?;
    producer.limits = settings.limits;
    producer.enqueue(&a.class, args, &a.queue).await.map_err(|e| match e {
        resq::ruby::RubyEnqueueError::Store(_) => Failure::runtime(e),
        _ => Failure::usage(e),
    })?;
    println!(
        "enqueued {} on {} for Ruby workers (unsigned)",
        safe(&a.class),
        safe(&a.queue)
    );
    Ok(())
}

async fn admin(settings: &Settings) -> Result<Admin, Failure> {
    let store: Arc<dyn Store> = connect(settings).await?;
    Ok(Admin::new(store))
}

pub async fn queues(settings: &Settings, f: JsonFlag) -> Result<(), Failure> {
    let admin = admin(settings).await?;
    let queues = admin.queues().await.map_err(Failure::runtime)?;
    let (paused, caps) = admin.queue_controls().await.map_err(Failure::runtime)?;
    let cap_of = |q: &str| caps.iter().find(|(name, _)| name == q).map(|(_, c)| *c);
    // Ruby workers ignore resq's pause and caps: say so where it matters.
    let controlled: Vec<String> = queues
        .iter()
        .map(|(q, _)| q.clone())
        .filter(|q| paused.contains(q) || cap_of(q).is_some())
        .collect();
    let ruby = admin.served_by_ruby(&controlled).await.map_err(Failure::runtime)?;
    if f.json {
        let v: Vec<Value> = queues
            .iter()
            .map(|(q, n)| {
                let mut entry = json!({"queue": q, "size": n});
                if paused.contains(q) {
                    entry["paused"] = json!(true);
                }
                if let Some(cap) = cap_of(q) {
                    entry["cap"] = json!(cap);
                }
                if ruby.contains(q) {
                    entry["ruby_workers"] = json!(true);
                }
                entry
            })
            .collect();
        println!("{}", Value::Array(v));
        return Ok(());
    }
    if queues.is_empty() {
        println!("no queues");
    }
    for (q, n) in queues {
        let mut notes = String::new();
        if paused.contains(&q) {
            notes.push_str("  paused");
        }
        if let Some(cap) = cap_of(&q) {
            notes.push_str(&format!("  cap {cap}"));
        }
        if ruby.contains(&q) {
            notes.push_str("  (served by Ruby workers too, which ignore pause and caps)");
        }
        println!("{:<40} {n}{notes}", safe(&q));
    }
    Ok(())
}

pub async fn workers(settings: &Settings, f: JsonFlag) -> Result<(), Failure> {
    let workers = admin(settings).await?.workers().await.map_err(Failure::runtime)?;
    if f.json {
        let v: Vec<Value> = workers
            .iter()
            .map(|w| {
                let working = w.working.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok());
                json!({"id": w.id, "started": w.started, "heartbeat": w.heartbeat, "working": working,
                       "processed": w.processed, "failed": w.failed, "resq": w.resq, "paused": w.paused})
            })
            .collect();
        println!("{}", Value::Array(v));
        return Ok(());
    }
    if workers.is_empty() {
        println!("no workers");
    }
    for w in workers {
        let doing = match w.working.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok()) {
            Some(v) => format!(
                "working on {} from {}",
                safe(v["payload"]["class"].as_str().unwrap_or("?")),
                safe(v["queue"].as_str().unwrap_or("?"))
            ),
            None if w.paused => "paused".to_string(),
            None => "idle".to_string(),
        };
        let doing = if w.paused && !doing.starts_with("paused") {
            format!("paused, {doing}")
        } else {
            doing
        };
        println!(
            "{}  started {}  heartbeat {}  processed {} failed {}  {doing}",
            safe(&w.id),
            safe(w.started.as_deref().unwrap_or("-")),
            safe(w.heartbeat.as_deref().unwrap_or("-")),
            w.processed,
            w.failed
        );
    }
    Ok(())
}

pub async fn stats(settings: &Settings, f: JsonFlag) -> Result<(), Failure> {
    let admin = admin(settings).await?;
    let stats = admin.stats().await.map_err(Failure::runtime)?;
    let queues = admin.queues().await.map_err(Failure::runtime)?;
    let workers = admin.workers().await.map_err(Failure::runtime)?;
    let failed_now = admin.failed_count().await.map_err(Failure::runtime)?;
    let pending: u64 = queues.iter().map(|(_, n)| n).sum();
    let working = workers.iter().filter(|w| w.working.is_some()).count();
    if f.json {
        println!(
            "{}",
            json!({"processed": stats.processed, "failed": stats.failed, "pending": pending,
                   "queues": queues.len(), "workers": workers.len(), "working": working, "failed_list": failed_now})
        );
    } else {
        println!("processed    {}", stats.processed);
        println!("failed       {}", stats.failed);
        println!("pending      {pending}");
        println!("queues       {}", queues.len());
        println!("workers      {}", workers.len());
        println!("working      {working}");
        println!("failed list  {failed_now}");
    }
    Ok(())
}

pub async fn failed(settings: &Settings, action: FailedAction) -> Result<(), Failure> {
    let admin = admin(settings).await?;
    match action {
        FailedAction::List {
            page: Page { offset, limit, json },
            filter,
        } => {
            let filter = resq::FailedFilter::from(filter);
            let (entries, total) = admin
                .failed_matching(&filter, offset, limit.min(1000))
                .await
                .map_err(Failure::runtime)?;
            if json {
                // Each record as stored, with its handle as `id`.
                let v: Vec<Value> = entries
                    .iter()
                    .map(|e| {
                        let mut entry = serde_json::Map::new();
                        entry.insert("id".into(), Value::String(e.handle.clone()));
                        match serde_json::from_str::<Value>(&e.raw) {
                            Ok(Value::Object(record)) => entry.extend(record),
                            _ => {
                                entry.insert("raw".into(), Value::String(e.raw.clone()));
                            }
                        }
                        Value::Object(entry)
                    })
                    .collect();
                println!("{}", Value::Array(v));
                return Ok(());
            }
            println!("{total} failed job(s) match; showing {} from {offset}", entries.len());
            for e in entries {
                match e.record {
                    Some(r) => println!(
                        "{}  {}  {}  class={} queue={}  {}",
                        safe(&e.handle),
                        safe(r.failed_at.as_deref().unwrap_or("-")),
                        safe(r.reason.as_deref().or(r.exception.as_deref()).unwrap_or("-")),
                        safe(&clip(&r.payload_class().unwrap_or_else(|| "?".into()), 60)),
                        safe(r.queue.as_deref().unwrap_or("-")),
                        safe(&clip(r.error.as_deref().unwrap_or(""), 120)),
                    ),
                    None => println!("{}  (not a JSON record) {}", e.handle, safe(&clip(&e.raw, 80))),
                }
            }
        }
        FailedAction::Retry {
            failure_id: Some(failure_id),
            ..
        } => {
            admin.retry_failed(&failure_id).await.map_err(admin_failure)?;
            println!("retried {}", safe(&failure_id));
        }
        FailedAction::Retry { filter, .. } => {
            let report = admin
                .retry_failed_matching(&filter.into())
                .await
                .map_err(Failure::runtime)?;
            for (id, why) in &report.skipped {
                eprintln!("skipped {}: {}", safe(id), safe(why));
            }
            println!("retried {}, skipped {}", report.retried, report.skipped.len());
        }
        FailedAction::Remove { failure_id } => {
            admin.remove_failed(&failure_id).await.map_err(admin_failure)?;
            println!("removed {}", safe(&failure_id));
        }
        FailedAction::Clear => {
            let n = admin.clear_failed().await.map_err(Failure::runtime)?;
            println!("cleared {n} failed job(s)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_take_an_array_or_one_object() {
        let p = resq::PayloadLimits::default();
        assert_eq!(parse_args(r#"[1,"a"]"#, &p).ok().unwrap(), vec![json!(1), json!("a")]);
        assert_eq!(parse_args(r#"{"m":1}"#, &p).ok().unwrap(), vec![json!({"m":1})]);
        for bad in [
            "",
            "1",
            "\"s\"",
            "{",
            "[1,]",
            &format!("{}1{}", "[".repeat(64), "]".repeat(64)),
        ] {
            assert!(parse_args(bad, &p).is_err(), "{bad}");
        }
    }
}
