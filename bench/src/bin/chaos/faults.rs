//! The fault classes: each starts its own lab (a private Redis, real
//! `resq worker` processes), runs a steady load of signed `Record` jobs
//! through a fault, waits for the system to settle (the reaper recovers
//! what dead workers held) and counts every job.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::lab::{commands_processed, done_among, used_memory, Error, Lab, LabOptions, Producer, Rng, Tally};

/// How big a run is: `Plan::full` for `scripts/chaos`, `Plan::short` for
/// the test suite.
#[derive(Clone)]
pub struct Plan {
    pub resq: PathBuf,
    /// Kill cycles per isolation mode.
    pub cycles: u64,
    /// A kill every so often (drawn between the two).
    pub kill_every: (Duration, Duration),
    pub workers: usize,
    pub concurrency: usize,
    /// Jobs a second from the producer.
    pub rate: u64,
    /// Each job sleeps up to this long (ms), so kills and faults find jobs mid-run.
    pub max_ms: u64,
    /// Redis restarts of each kind (graceful, kill -9).
    pub restarts: u32,
    pub proxy_for: Duration,
    /// How long Redis is held at maxmemory.
    pub oom_for: Duration,
    /// Jobs per clock-skew case.
    pub skew_jobs: usize,
    /// How long the end of a run may go without progress before what is
    /// left is called stuck.
    pub drain_bound: Duration,
    pub seed: u64,
}

impl Plan {
    pub fn full(resq: PathBuf, cycles: u64, seed: u64) -> Plan {
        Plan {
            resq,
            cycles,
            kill_every: (Duration::from_millis(300), Duration::from_millis(1100)),
            workers: 4,
            concurrency: 8,
            rate: 100,
            max_ms: 100,
            restarts: 5,
            proxy_for: Duration::from_secs(180),
            oom_for: Duration::from_secs(20),
            skew_jobs: 20,
            drain_bound: Duration::from_secs(60),
            seed,
        }
    }

    pub fn short(resq: PathBuf, seed: u64) -> Plan {
        Plan {
            resq,
            cycles: 5,
            kill_every: (Duration::from_millis(300), Duration::from_millis(700)),
            workers: 3,
            concurrency: 4,
            rate: 50,
            max_ms: 100,
            restarts: 1,
            proxy_for: Duration::from_secs(8),
            oom_for: Duration::from_secs(3),
            skew_jobs: 3,
            drain_bound: Duration::from_secs(15),
            seed,
        }
    }
}

const QUEUE: &str = "chaos";

fn worker_args(plan: &Plan, isolation: bool) -> Vec<String> {
    let mut args: Vec<String> = ["--queues", QUEUE, "--concurrency"].map(String::from).to_vec();
    args.push(plan.concurrency.to_string());
    if isolation {
        args.extend(["--isolation", "process"].map(String::from));
    }
    args
}

fn spawn_workers(lab: &mut Lab, plan: &Plan, isolation: bool) -> Result<(), Error> {
    let args = worker_args(plan, isolation);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for _ in 0..plan.workers {
        lab.spawn_worker(&args, None)?;
    }
    Ok(())
}

/// Waits (bounded) until the producer has stored `n` jobs, so a fault
/// starts under load.
async fn warm_up(producer: &Producer, n: usize) {
    for _ in 0..600 {
        if producer.stored() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const AT_LEAST_ONCE: &str = "a job whose process died (or whose worker was judged dead) after it ran \
    and before its ack stayed in that worker's in-flight hash; the reaper put it back and it ran again: \
    at-least-once delivery, as designed (its replay mark was released with it)";

/// (a) `kill -9` of a random worker, `plan.cycles` times, a new worker
/// started in its place each time.
pub async fn kill(plan: &Plan, isolation: bool) -> Result<Tally, Error> {
    let mut lab = Lab::start(LabOptions::new(&plan.resq)).await?;
    spawn_workers(&mut lab, plan, isolation)?;
    let producer = Producer::start(&lab, QUEUE, plan.rate, plan.max_ms, Duration::from_secs(30), plan.seed).await?;
    warm_up(&producer, 20).await;
    let mut rng = Rng::new(plan.seed ^ 0xA);
    let started = Instant::now();
    for cycle in 0..plan.cycles {
        tokio::time::sleep(rng.between(plan.kill_every.0, plan.kill_every.1)).await;
        lab.check_workers()?;
        let i = rng.below(lab.workers.len() as u64) as usize;
        lab.kill_and_replace(i)?;
        if plan.cycles >= 100 && (cycle + 1) % 100 == 0 {
            eprintln!(
                "  kill cycle {} of {} ({} s, {} jobs stored)",
                cycle + 1,
                plan.cycles,
                started.elapsed().as_secs(),
                producer.stored()
            );
        }
    }
    let took = started.elapsed();
    let produced = producer.stop().await;
    let finish = lab.finish(QUEUE, plan.drain_bound).await?;
    let name = format!(
        "(a) kill -9 workers, isolation {}",
        if isolation { "on" } else { "off" }
    );
    let mut t = lab.tally(&name, &produced, &finish).await?;
    t.detail = format!(
        "{} cycles over {} s: kill -9 one of {} workers x {}{} at random, start another; {} jobs/s, each 0-{} ms; \
         liveness 1 s",
        plan.cycles,
        took.as_secs(),
        plan.workers,
        plan.concurrency,
        if isolation { " (children)" } else { "" },
        plan.rate,
        plan.max_ms
    );
    t.notes.push(format!("run more than once: {AT_LEAST_ONCE}"));
    Ok(t)
}

/// (b) Redis with AOF (`appendfsync always`): restarted gracefully
/// (SHUTDOWN), and killed -9 and restarted, on the same port and directory.
pub async fn restart(plan: &Plan) -> Result<Tally, Error> {
    let mut options = LabOptions::new(&plan.resq);
    options.aof = true;
    let mut lab = Lab::start(options).await?;
    spawn_workers(&mut lab, plan, false)?;
    let producer = Producer::start(&lab, QUEUE, plan.rate, plan.max_ms, Duration::from_secs(60), plan.seed).await?;
    warm_up(&producer, 20).await;
    let mut rng = Rng::new(plan.seed ^ 0xB);
    let mut graceful = 0;
    let mut killed = 0;
    for k in 0..plan.restarts * 2 {
        tokio::time::sleep(rng.between(Duration::from_secs(2), Duration::from_secs(4))).await;
        lab.check_workers()?;
        let down = rng.between(Duration::from_millis(200), Duration::from_millis(1500));
        if k % 2 == 0 {
            // SHUTDOWN writes the AOF out and exits.
            lab.shutdown_redis().await?;
            graceful += 1;
        } else {
            lab.redis.kill();
            killed += 1;
        }
        tokio::time::sleep(down).await;
        // It waits (blocking) until the server answers on the same port.
        tokio::task::block_in_place(|| lab.redis.restart())?;
    }
    let produced = producer.stop().await;
    let finish = lab.finish(QUEUE, plan.drain_bound).await?;
    let mut t = lab
        .tally("(b) Redis restarts (AOF, appendfsync always)", &produced, &finish)
        .await?;
    t.detail = format!(
        "{graceful} graceful restarts (SHUTDOWN) and {killed} kill -9 + restart, 0.2-1.5 s down each, \
         same port and AOF; {} workers x {}, {} jobs/s",
        plan.workers, plan.concurrency, plan.rate
    );
    t.notes.push(
        "the producer retried the same signed bytes while Redis was away (a copy that had landed \
         is refused `replayed`, never run twice); Redis was killed, not the machine: what the AOF \
         held in the page cache survived either way"
            .into(),
    );
    Ok(t)
}

/// (c) The proxy between every resq process (and the producer) and Redis
/// stalls, drops and resets connections at random.
pub async fn proxy(plan: &Plan) -> Result<Tally, Error> {
    let mut options = LabOptions::new(&plan.resq);
    options.proxy = true;
    options.liveness_ttl_ms = 2000;
    options.reap_interval_ms = 250;
    let mut lab = Lab::start(options).await?;
    spawn_workers(&mut lab, plan, false)?;
    let producer = Producer::start(&lab, QUEUE, plan.rate, plan.max_ms, Duration::from_secs(60), plan.seed).await?;
    warm_up(&producer, 20).await;
    let mut rng = Rng::new(plan.seed ^ 0xC);
    let until = Instant::now() + plan.proxy_for;
    while Instant::now() < until {
        tokio::time::sleep(rng.between(Duration::from_millis(100), Duration::from_millis(600))).await;
        lab.check_workers()?;
        let r = rng.next_u64();
        let Some(proxy) = lab.proxy.as_mut() else { break };
        match rng.below(100) {
            0..=54 => proxy.stall_one(r, rng.between(Duration::from_millis(200), Duration::from_secs(4))),
            55..=74 => proxy.cut_one(r, false),
            75..=94 => proxy.cut_one(r, true),
            _ => proxy.stall_all(rng.between(Duration::from_secs(1), Duration::from_secs(3))),
        }
    }
    let stats = lab.proxy.as_ref().map(|p| p.stats()).unwrap_or_default();
    let produced = producer.stop().await;
    let finish = lab.finish(QUEUE, plan.drain_bound).await?;
    let mut t = lab
        .tally("(c) proxy: stalls, drops, resets", &produced, &finish)
        .await?;
    t.detail = format!(
        "{} s: {} stalls of one connection (0.2-4 s), {} of all (1-3 s), {} drops, {} resets over {} \
         connections; {} workers x {}, {} jobs/s; liveness 2 s",
        plan.proxy_for.as_secs(),
        stats.stalls,
        stats.partitions,
        stats.drops,
        stats.resets,
        stats.accepted,
        plan.workers,
        plan.concurrency,
        plan.rate
    );
    t.notes.push(format!(
        "run more than once: a stall longer than the liveness period makes a live worker look dead; \
         the reaper requeues its jobs and another worker runs them while it finishes its own copies \
         (its ack then finds them taken and records nothing); {AT_LEAST_ONCE}"
    ));
    Ok(t)
}

/// Is Debian's libfaketime installed?
pub fn have_faketime() -> bool {
    crate::lab::faketime_library().is_some()
}

/// One clock-skew case: who is off, by how much, the job's lifetime, and
/// what must happen.
struct SkewCase {
    name: &'static str,
    producer: Option<&'static str>,
    worker: Option<&'static str>,
    extra: &'static [&'static str],
    /// Every job runs (true) or every job is refused `expired` (false).
    runs: bool,
}

const SKEW_CASES: &[SkewCase] = &[
    SkewCase {
        name: "producer -5 min, default ttl (7 days)",
        producer: Some("-5m"),
        worker: None,
        extra: &[],
        runs: true,
    },
    SkewCase {
        name: "producer +5 min, default ttl",
        producer: Some("+5m"),
        worker: None,
        extra: &[],
        runs: true,
    },
    SkewCase {
        name: "producer -5 min, ttl 60 s",
        producer: Some("-5m"),
        worker: None,
        extra: &["--ttl", "60s"],
        runs: false,
    },
    SkewCase {
        name: "producer +5 min, ttl 60 s",
        producer: Some("+5m"),
        worker: None,
        extra: &["--ttl", "60s"],
        runs: true,
    },
    SkewCase {
        name: "worker +5 min, ttl 60 s",
        producer: None,
        worker: Some("+5m"),
        extra: &["--ttl", "60s"],
        runs: false,
    },
    SkewCase {
        name: "worker -5 min, ttl 60 s",
        producer: None,
        worker: Some("-5m"),
        extra: &["--ttl", "60s"],
        runs: true,
    },
    SkewCase {
        name: "worker +5 min, scheduled in 120 s",
        producer: None,
        worker: Some("+5m"),
        extra: &["--in", "120s"],
        runs: true,
    },
];

/// (d) Clock skew of ±5 minutes between producer and worker (libfaketime
/// on one of them): what happens to expiry, scheduling and cron, each a
/// checked outcome.
pub async fn skew(plan: &Plan) -> Result<Tally, Error> {
    if !have_faketime() {
        return Err("faketime is not installed: apt-get install faketime (Debian's libfaketime)".into());
    }
    let mut lab = Lab::start(LabOptions::new(&plan.resq)).await?;
    let mut t = Tally {
        fault: "(d) clock skew ±5 min".into(),
        ..Default::default()
    };
    let mut all_ids = Vec::new();
    for (i, case) in SKEW_CASES.iter().enumerate() {
        let queue = format!("skew{i}");
        lab.spawn_worker(&["--queues", &queue, "--concurrency", "4"], case.worker)?;
        let mut args = vec!["Record", "--args", r#"{"ms":0}"#, "--queue", &queue];
        args.extend_from_slice(case.extra);
        let mut ids = Vec::new();
        for _ in 0..plan.skew_jobs {
            ids.push(lab.enqueue_cli(&args, case.producer)?);
        }
        // Bounded: until every job ran or was refused.
        let mut ran = 0;
        let mut expired = 0;
        for _ in 0..600 {
            let runs = lab.runs();
            let failed = lab.failed().await?;
            let swept = lab.expired().await?;
            ran = done_among(&runs, &ids);
            expired = ids
                .iter()
                .filter(|id| failed.iter().any(|(f, r)| f == *id && r == "expired") || swept.contains(id))
                .count();
            if ran + expired >= ids.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let notes = lab.stop_workers("QUIT");
        t.notes.extend(notes);
        let held = if case.runs {
            ran == ids.len() && expired == 0
        } else {
            ran == 0 && expired == ids.len()
        };
        t.check(
            format!(
                "{}: {} of {} ran, {} refused `expired` (expected: {})",
                case.name,
                ran,
                ids.len(),
                expired,
                if case.runs { "all run" } else { "none runs, all expired" }
            ),
            held,
        );
        t.enqueued += ids.len() as u64;
        t.succeeded += ran as u64;
        t.expired += expired as u64;
        t.lost += (ids.len() - ran - expired) as u64;
        all_ids.extend(ids);
    }
    let runs = lab.runs();
    t.ran_twice = all_ids
        .iter()
        .filter(|id| runs.by_id.get(*id).is_some_and(|r| r.dones.len() > 1))
        .count() as u64;
    for (id, reason) in lab.failed().await? {
        if all_ids.contains(&id) {
            *t.failed_by_reason.entry(reason).or_default() += 1;
        }
    }
    cron_under_skew(plan, &mut t).await?;
    t.notes.push(
        "what skew does: a job's expires_at is the producer's clock plus its ttl, and each worker checks it \
         against its own clock (so does the sweeper), so a job is refused `expired` when the worker's clock \
         is ahead of the producer's by more than what is left of its ttl: with the default 7 days, ±5 min \
         changes nothing; with a ttl under the skew, every job is refused (never run, recorded in the failed \
         list). A scheduled job is due at the producer's clock and promoted by the workers' clocks: a worker \
         5 min ahead runs it up to 5 min early. Replay marks live until expires_at + 15 min by Redis's clock, \
         so a worker up to 15 min behind cannot accept a replayed copy after its mark is gone. Cron fires \
         each tick once across the fleet (the store's last-fired mark) but by the fastest worker's clock: \
         early by its skew; a faster worker joining skips the ticks between the clocks; when it leaves, \
         the others fire nothing until their clocks pass the last fired tick"
            .into(),
    );
    t.detail = format!(
        "{} cases of {} jobs each through `resq enqueue` and `resq worker` under libfaketime; \
         cron: workers at -5 min and +5 min firing a every-second entry",
        SKEW_CASES.len(),
        plan.skew_jobs
    );
    Ok(t)
}

/// The ticks (ms) of the jobs cron pushed onto `queue`, from their `unique` keys.
async fn cron_ticks(lab: &Lab, queue: &str) -> Result<Vec<i64>, Error> {
    let jobs: Vec<String> = lab
        .redis_cmd(redis::cmd("LRANGE").arg(format!("resque:queue:{queue}")).arg(0).arg(-1))
        .await?;
    Ok(jobs
        .iter()
        .filter_map(|j| {
            let v: serde_json::Value = serde_json::from_str(j).ok()?;
            v["unique"].as_str()?.rsplit(':').next()?.parse().ok()
        })
        .collect())
}

fn now_ms() -> i64 {
    resq::UnixMs::now().0 as i64
}

/// Cron under skew: a worker at -5 min fires the entry alone, then one at
/// +5 min joins, then it leaves. Nobody consumes the cron queue, so every
/// fired tick stays there to be read.
async fn cron_under_skew(plan: &Plan, t: &mut Tally) -> Result<(), Error> {
    let mut options = LabOptions::new(&plan.resq);
    options.extra_config = "\n[[cron]]\nname = \"skew\"\nschedule = \"* * * * * *\"\nclass = \"Record\"\n\
                            args = { ms = 0 }\nqueue = \"cron\"\n"
        .into();
    let mut lab = Lab::start(options).await?;
    let distinct = |ticks: &[i64]| ticks.iter().collect::<std::collections::BTreeSet<_>>().len() == ticks.len();
    // 1. The slow worker alone.
    lab.spawn_worker(&["--queues", "idle"], Some("-5m"))?;
    let mut ticks = Vec::new();
    for _ in 0..600 {
        ticks = cron_ticks(&lab, "cron").await?;
        if ticks.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lag = ticks
        .iter()
        .max()
        .map(|m| (m - now_ms()) as f64 / 1000.0)
        .unwrap_or(0.0);
    t.check(
        format!(
            "cron, a worker at -5 min alone: ticks fire by its clock, {lag:.0} s from real time (expected about -300), each once"
        ),
        ticks.len() >= 3 && (-320.0..=-280.0).contains(&lag) && distinct(&ticks),
    );
    // 2. A worker at +5 min joins: it fires its ticks, the slow one finds
    // each of its own already spent.
    let before = ticks.len();
    let slow_last = ticks.iter().copied().max().unwrap_or(0);
    let fast = lab.spawn_worker(&["--queues", "idle"], Some("+5m"))?;
    for _ in 0..600 {
        ticks = cron_ticks(&lab, "cron").await?;
        if ticks.iter().filter(|&&k| k > now_ms() + 250_000).count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lead = ticks
        .iter()
        .max()
        .map(|m| (m - now_ms()) as f64 / 1000.0)
        .unwrap_or(0.0);
    let fast_first = ticks
        .iter()
        .copied()
        .filter(|&k| k > slow_last)
        .min()
        .unwrap_or(slow_last);
    let skipped = (fast_first - slow_last) / 1000 - 1;
    t.check(
        format!(
            "cron, a worker at +5 min joins: ticks now {lead:.0} s ahead of real time (expected about +300); \
             the {skipped} ticks between the two clocks were skipped, none fired twice ({} jobs, {} distinct ticks)",
            ticks.len(),
            ticks.iter().collect::<std::collections::BTreeSet<_>>().len()
        ),
        ticks.len() > before && (280.0..=320.0).contains(&lead) && skipped >= 500 && distinct(&ticks),
    );
    // 3. The fast worker leaves: the slow one fires nothing until its
    // clock passes the last fired tick (about 10 minutes).
    let count = ticks.len();
    let _ = lab.workers[fast].child.kill();
    let _ = lab.workers[fast].child.wait();
    lab.workers.remove(fast);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = cron_ticks(&lab, "cron").await?;
    t.check(
        format!(
            "cron, the +5 min worker leaves: in the next 3 s the -5 min worker fired {} ticks (expected 0: \
             it waits until its clock passes the last fired tick, ~10 min)",
            after.len() - count
        ),
        after.len() == count && distinct(&after),
    );
    t.notes.extend(lab.stop_workers("QUIT"));
    Ok(())
}

/// Fills Redis with ballast keys (`chaos:ballast:<n>`) until `used_memory`
/// reaches `target`: 1 MB pieces, then 64 KB ones (sizes just under the
/// allocator's classes, so each adds what it says). Returns how many keys.
async fn fill(lab: &Lab, target: u64) -> Result<u64, Error> {
    let mut n = 0;
    for piece in [1_000_000u64, 64_000] {
        while used_memory(lab).await? + piece + 16 * 1024 < target {
            let key = format!("chaos:ballast:{n}");
            lab.redis_cmd::<redis::Value>(redis::cmd("SETRANGE").arg(key).arg(piece - 1).arg("x"))
                .await?;
            n += 1;
        }
    }
    Ok(n)
}

/// (e) Redis at `maxmemory` with `noeviction`: with the workers paused, a
/// backlog builds up; a ballast key then fills Redis to just under the
/// limit while the producer keeps enqueueing; once enqueues are refused the
/// workers resume, at the limit, with the backlog to drain.
pub async fn maxmemory(plan: &Plan) -> Result<Tally, Error> {
    const LIMIT: u64 = 32 * 1024 * 1024;
    let mut options = LabOptions::new(&plan.resq);
    options.maxmemory = Some(LIMIT);
    let mut lab = Lab::start(options).await?;
    spawn_workers(&mut lab, plan, false)?;
    let producer = Producer::start(&lab, QUEUE, plan.rate, plan.max_ms, Duration::from_secs(30), plan.seed).await?;
    warm_up(&producer, 20).await;
    // A backlog: the workers stop fetching (USR2) while the producer goes on.
    lab.signal_workers("USR2");
    let backlog = (plan.rate * plan.oom_for.as_secs()).max(50);
    for _ in 0..1200 {
        if lab.llen("resque:queue:chaos").await? >= backlog {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ballast = fill(&lab, LIMIT - 128 * 1024).await?;
    // Until enqueues are refused (bounded).
    for _ in 0..1200 {
        if producer.refused() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hit = producer.refused() > 0;
    let queued_at_limit = lab.llen("resque:queue:chaos").await?;
    let done_before: usize = lab.runs().by_id.values().filter(|r| !r.dones.is_empty()).count();
    let cmds_before = commands_processed(&lab).await?;
    let (refused_before, stored_before) = (producer.refused(), producer.stored());
    let t0 = Instant::now();
    lab.signal_workers("CONT");
    tokio::time::sleep(plan.oom_for).await;
    let secs = t0.elapsed().as_secs_f64();
    let done_during = lab.runs().by_id.values().filter(|r| !r.dones.is_empty()).count() - done_before;
    let cmds = (commands_processed(&lab).await? - cmds_before) as f64 / secs;
    let refused_during = producer.refused() - refused_before;
    let stored_during = producer.stored() - stored_before;
    let used_at_end = used_memory(&lab).await?;
    let queued_at_end = lab.llen("resque:queue:chaos").await?;
    let claim_refused = lab.log_lines("cannot claim the job");
    for key in 0..ballast {
        lab.redis_cmd::<redis::Value>(redis::cmd("DEL").arg(format!("chaos:ballast:{key}")))
            .await?;
    }
    // Load after the ballast is gone, then the count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let produced = producer.stop().await;
    let finish = lab.finish(QUEUE, plan.drain_bound).await?;
    let mut t = lab
        .tally("(e) Redis at maxmemory (noeviction)", &produced, &finish)
        .await?;
    let untyped: u64 = t
        .refused_kinds
        .iter()
        .filter(|(k, _)| k.as_str() != "Refused(OOM)")
        .map(|(_, n)| *n)
        .sum();
    t.check(
        format!(
            "enqueue at the limit gets a typed error: {} refusals, all `StoreError::Refused` (OOM): {:?}",
            t.refused, t.refused_kinds
        ),
        hit && untyped == 0,
    );
    t.check(
        format!(
            "workers keep going at the limit: {done_during} jobs ran to the end in {secs:.0} s at the limit, \
             with {queued_at_limit} queued when it was reached and {queued_at_end} at the end ({stored_during} \
             enqueues got through as runs freed memory, {refused_during} refused; {claim_refused} claims refused \
             in the workers' logs; Redis answered {cmds:.0} commands/s; used_memory {used_at_end} of {LIMIT})"
        ),
        done_during > 0,
    );
    t.detail = format!(
        "maxmemory {} MB, noeviction; workers paused (USR2) while {} jobs queued up, ballast keys filled \
         Redis to 128 KB under the limit, and once enqueues were refused the workers resumed (CONT) for {:.0} s \
         at the limit; then the ballast was deleted; {} jobs/s throughout; {} workers x {}",
        LIMIT / 1024 / 1024,
        queued_at_limit,
        secs,
        plan.rate,
        plan.workers,
        plan.concurrency
    );
    Ok(t)
}
