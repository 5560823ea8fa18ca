//! Redis memory through a job's whole lifetime, without waiting a week:
//! `memory [--jobs N] [--margin-s S]` (`scripts/bench --memory`).
//!
//! The producer and the worker run on a clock moved back by the jobs'
//! lifetime (7 days, the default), so everything they count from it (each
//! job's `expires_at`, the replay marks kept until then) lands at the real
//! now: when the run ends, the lifetime of every job has passed, and Redis
//! drops the marks once the mark margin (`--margin-s`, 120 s here instead
//! of 15 minutes; the clock skew a fleet allows) is over. Nothing sleeps for
//! the lifetime.
//!
//! N jobs (1,000,000 by default) go through enqueue and processing: 96%
//! succeed, 2% fail (one attempt: a failure record), 2% expire before a
//! worker fetches them (refused `expired`). It prints, and writes to
//! `bench/results/memory.md`: Redis `used_memory` at the baseline, at the
//! peak (all marks held), and once the marks are gone, with each key
//! family's share (`MEMORY USAGE`), and the bytes a replay mark costs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use local_redis::LocalRedis;
use resq::clock::Clock;
use resq::{
    Client, Control, EnqueueOptions, Job, JobContext, JobError, Keyring, Policy, Registry, Store, Worker, WorkerConfig,
};
use resq_bench::{BenchError, TempDirGuard};
use resq_redis::{RedisConfig, RedisStore};
use serde::{Deserialize, Serialize};

const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
const QUEUE: &str = "mem";

#[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Noop {}
impl Job for Noop {
    const CLASS: &'static str = "Noop";
    const QUEUE: &'static str = QUEUE;
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// Always fails, once: its record goes to the failed list.
#[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Boom {}
impl Job for Boom {
    const CLASS: &'static str = "Boom";
    const QUEUE: &'static str = QUEUE;
    const MAX_ATTEMPTS: u32 = 1;
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        Err(JobError::msg("boom"))
    }
}

/// `used_memory` and each key family's bytes.
struct Snapshot {
    used: u64,
    families: BTreeMap<String, (u64, u64)>,
}

/// A key's family: its name with ids, queue names and block ids folded.
fn family(key: &str) -> String {
    let parts: Vec<&str> = key.split(':').collect();
    match parts.as_slice() {
        ["resque", "resq", "marks", ..] => "resque:resq:marks:<q>:<block>".into(),
        ["resque", "resq", kind, ..] if parts.len() > 3 => format!("resque:resq:{kind}:*"),
        ["resque", "queue", ..] => "resque:queue:<q>".into(),
        ["resque", "stat", _, _, ..] => "resque:stat:<name>:<worker>".into(),
        ["resque", "worker", ..] => "resque:worker:*".into(),
        _ => key.to_string(),
    }
}

async fn snapshot(conn: &mut resq_redis::Connection) -> Result<Snapshot, BenchError> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    let used = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("INFO memory has no used_memory")?;
    let families = resq_bench::key_families(conn, family).await?;
    Ok(Snapshot { used, families })
}

async fn count_marks(conn: &mut resq_redis::Connection) -> Result<usize, BenchError> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("resque:resq:marks:*").query_async(conn).await?;
    Ok(keys.len())
}

/// Runs a burst worker on the moved clock until the queue is empty.
async fn work(url: &str, keyring: &Arc<Keyring>, clock: Clock, margin: Duration) -> Result<(), BenchError> {
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&RedisConfig::new(url), "resque").await?);
    let registry = Registry::new().register::<Noop>().register::<Boom>();
    let mut config = WorkerConfig::new(QUEUE.parse()?, Arc::clone(keyring));
    config.concurrency = 256;
    config.burst = true;
    config.clock = clock;
    config.mark_margin = margin;
    // The sweeper would move the expired jobs to resq:expired before the
    // worker meets them; either way they are refused, never run.
    config.sweep_interval = Duration::from_secs(3600);
    config.check()?;
    let (_control, rx) = Control::new();
    Worker::new(store, registry, config).run(rx).await?;
    Ok(())
}

async fn enqueue(client: &Client, jobs: usize) -> Result<(usize, usize, usize), BenchError> {
    let (mut ok, mut failing, mut expiring) = (0, 0, 0);
    let batch = 10_000;
    let noops: Vec<Noop> = (0..batch).map(|_| Noop {}).collect();
    let mut left = jobs;
    while left > 0 {
        let n = left.min(batch);
        // Per 10,000: 9,600 succeed, 200 fail, 200 expire at once.
        let (fail, expire) = (n / 50, n / 50);
        let good = n - fail - expire;
        client.enqueue_bulk(&noops[..good]).await?;
        for _ in 0..fail {
            client.enqueue_with(&Boom {}, queue_options(None)).await?;
        }
        for _ in 0..expire {
            client
                .enqueue_with(&Noop {}, queue_options(Some(Duration::from_millis(1))))
                .await?;
        }
        ok += good;
        failing += fail;
        expiring += expire;
        left -= n;
    }
    Ok((ok, failing, expiring))
}

fn queue_options(ttl: Option<Duration>) -> EnqueueOptions {
    EnqueueOptions {
        queue: Some(QUEUE.into()),
        ttl,
        ..Default::default()
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

#[tokio::main]
async fn main() -> Result<(), BenchError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| resq_bench::flag_value(&argv, flag);
    let jobs: usize = value("--jobs").and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let margin = Duration::from_secs(value("--margin-s").and_then(|v| v.parse().ok()).unwrap_or(120));

    let redis = LocalRedis::start()?;
    let url = redis.url();
    let mut conn = RedisStore::connect(&RedisConfig::new(url.clone()), "resque")
        .await?
        .connection();
    let dir = std::env::temp_dir().join(format!("resq-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _tmp = TempDirGuard(dir.clone());
    let keys = resq_bench::write_keys(&dir)?;
    let keyring = Arc::new(Keyring::load(&keys)?);
    let clock = Clock::system().moved_back(LIFETIME);
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&RedisConfig::new(url.clone()), "resque").await?);
    let client = Client::with_policy(store, Policy::new(Arc::clone(&keyring))?.with_clock(clock));

    // A warm-up through the same path (scripts loaded, counters made), its
    // marks gone: the baseline.
    let short = Duration::from_secs(2);
    enqueue(&client, 2_000).await?;
    work(&url, &keyring, clock, short).await?;
    wait_marks_gone(&mut conn, short + Duration::from_secs(30)).await?;
    let _: () = redis::cmd("DEL")
        .arg("resque:failed")
        .arg("resque:resq:failure-index")
        .query_async(&mut conn)
        .await?;
    let baseline = snapshot(&mut conn).await?;

    let started = Instant::now();
    let (ok, failing, expiring) = enqueue(&client, jobs).await?;
    let enqueued_in = started.elapsed();
    let queued = snapshot(&mut conn).await?;
    let started = Instant::now();
    work(&url, &keyring, clock, margin).await?;
    let worked_in = started.elapsed();
    let peak = snapshot(&mut conn).await?;
    let waited = Instant::now();
    wait_marks_gone(&mut conn, margin + Duration::from_secs(60)).await?;
    let after = snapshot(&mut conn).await?;

    let (marks_keys, marks_bytes) = peak
        .families
        .get("resque:resq:marks:<q>:<block>")
        .copied()
        .unwrap_or_default();
    let claimed = ok + failing;
    let per_mark = marks_bytes as f64 / claimed.max(1) as f64;
    let mut out = String::new();
    out.push_str(&format!(
        "# Redis memory through the lifetime of {jobs} jobs\n\n\
         `scripts/bench --memory --jobs {jobs}` on {}: producer and worker on a clock moved back by the \
         jobs' 7-day lifetime, mark margin {} s. {ok} succeed, {failing} fail (failed list), {expiring} \
         expire before they run. Enqueued in {:.1} s, processed in {:.1} s; the marks were gone {:.0} s after \
         the run (the margin).\n\n",
        machine(),
        margin.as_secs(),
        enqueued_in.as_secs_f64(),
        worked_in.as_secs_f64(),
        waited.elapsed().as_secs_f64(),
    ));
    out.push_str("| moment | used_memory | over the baseline | over it, the failed list aside |\n|---|---|---|---|\n");
    for (name, s) in [
        ("baseline", &baseline),
        ("enqueued (all waiting)", &queued),
        ("processed (marks held)", &peak),
        ("lifetime passed (marks gone)", &after),
    ] {
        let failed: u64 = ["resque:failed", "resque:resq:failure-index"]
            .iter()
            .filter_map(|f| s.families.get(*f))
            .map(|(_, bytes)| bytes)
            .sum();
        out.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            mb(s.used),
            mb(s.used.saturating_sub(baseline.used)),
            mb(s.used.saturating_sub(baseline.used).saturating_sub(failed))
        ));
    }
    out.push_str(&format!(
        "\nReplay marks at the peak: {marks_keys} bitmaps, {marks_bytes} bytes for {claimed} claimed jobs: \
         **{per_mark:.2} bytes a mark**.\n\nKey families once the lifetime passed (`MEMORY USAGE`):\n\n\
         | family | keys | bytes | bounded by |\n|---|---|---|---|\n"
    ));
    for (family, (keys, bytes)) in &after.families {
        let bound = match family.as_str() {
            "resque:failed" | "resque:resq:failure-index" => "the failed list's cap (100,000 records)",
            f if f.starts_with("resque:stat") || f.starts_with("resque:resq:stat") => "constant (counters)",
            "resque:resq:expired" => "the newest 1,000 records",
            _ => "see docs/keys.md",
        };
        out.push_str(&format!("| `{family}` | {keys} | {bytes} | {bound} |\n"));
    }
    print!("{out}");
    let results = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/memory.md");
    std::fs::write(results, out)?;
    Ok(())
}

async fn wait_marks_gone(conn: &mut resq_redis::Connection, most: Duration) -> Result<(), BenchError> {
    let deadline = Instant::now() + most;
    while count_marks(conn).await? > 0 {
        if Instant::now() > deadline {
            return Err("replay marks outlived their margin".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// The machine, for the results page.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{date}, a {cores}-core machine")
}
