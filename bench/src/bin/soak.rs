//! resq's soak: `scripts/soak [--minutes N --rate N --warmup N --ttl-s N]`.
//!
//! On a private redis-server (`noeviction`, a `maxmemory`), the real `resq
//! worker` and a real `resq serve` run for an hour (`--minutes`) while this
//! process enqueues a steady 1,000 signed jobs a second (`--rate`), paced by
//! the clock: 90% through the library (`Client::enqueue_raw_bulk`, one round
//! trip every 10 ms) and 10% one by one over HTTP to `resq serve` with an API
//! token (each request an entry in the audit stream). Of every 1,000 jobs: 20
//! fail (`Fail`: the failed list, capped at a small `failures.max` so it
//! trims within minutes), 20 fail once and are retried a second later
//! (`Flaky`), 10 go to a queue no worker serves and expire there (the sweeper
//! records them), the rest succeed (`Noop`).
//!
//! Every job lives `--ttl-s` (3 minutes): replay marks live a job's lifetime
//! plus a fixed 15-minute margin, expired records and the failed list are
//! capped, the audit stream is trimmed to `api.audit_max`, so every key
//! family reaches its steady state early in the hour.
//!
//! Each minute it samples the worker's VmRSS and VmHWM, `resq serve`'s VmRSS,
//! Redis's `used_memory`, the counters, and every key (SCAN + MEMORY USAGE)
//! by family. At the end, worker RSS and `used_memory` must each be at most
//! 5% above their level at the end of warm-up (`--warmup`, 10 minutes): PASS
//! or FAIL each (a fall passes: it is not growth). Writes `bench/results/soak.md` and a chart,
//! `bench/results/soak.svg` (rewritten after every sample, so a run cut
//! short still leaves its figures).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use local_redis::LocalRedis;
use resq::{Client, Keyring, RawJob, SealOptions};
use resq_bench::{write_keys, BenchError, TempDirGuard};
use resq_redis::{RedisConfig, RedisStore};
use serde_json::json;

/// Of every 1,000 jobs: how many fail for good, fail once then succeed,
/// expire unrun, and come over HTTP.
const FAIL_PER_MILLE: u64 = 20;
const RETRY_PER_MILLE: u64 = 20;
const EXPIRE_PER_MILLE: u64 = 10;
const API_PER_MILLE: u64 = 100;

/// The settings that make each bounded family reach its bound within minutes.
const FAILURES_MAX: u64 = 5_000;
const AUDIT_MAX: u64 = 10_000;
const SAMPLE_INTERVAL_S: u64 = 1;
/// Replay marks outlive their job by this much (`MARK_SKEW_MARGIN` in
/// `resq::worker::process`, a constant, not a setting).
const MARK_MARGIN_S: u64 = 15 * 60;
/// The sweeper's default interval, and what it keeps.
const SWEEP_INTERVAL_S: u64 = 60;
const EXPIRED_KEPT: u64 = 1_000;
/// The bound: the end at most this share above the post-warm-up level.
const BOUND: f64 = 0.05;

/// Whether a change from the post-warm-up level to the end keeps the bound.
/// Growth is what a leak or an unbounded key family shows, so only growth is
/// judged: a fall (glibc handing freed heap back to the kernel, a capped
/// list trimmed) passes and is printed as it is.
fn bounded(change: f64) -> bool {
    change <= BOUND
}
const MAXMEMORY: &str = "1gb";

struct Args {
    resq: PathBuf,
    minutes: u64,
    rate: u64,
    warmup: u64,
    ttl_s: u64,
    sample_s: u64,
}

fn args() -> Result<Args, BenchError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let known = ["--resq", "--minutes", "--rate", "--warmup", "--ttl-s", "--sample-s"];
    for pair in argv.chunks(2) {
        if !known.contains(&pair[0].as_str()) || pair.len() < 2 {
            return Err(format!(
                "unknown argument {}; use --resq PATH --minutes N --rate N --warmup N --ttl-s N --sample-s N",
                pair[0]
            )
            .into());
        }
    }
    let value = |flag: &str| resq_bench::flag_value(&argv, flag);
    let number = |flag: &str, default: u64| -> Result<u64, BenchError> {
        match value(flag) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("{flag} takes a whole number, not {v:?}").into()),
        }
    };
    let a = Args {
        // Absolute: the processes run in the scratch folder.
        resq: std::fs::canonicalize(value("--resq").unwrap_or_else(|| "target/release/resq".into()))
            .map_err(|e| format!("the resq binary: {e} (build it with `cargo build --release -p resq-cli`)"))?,
        minutes: number("--minutes", 60)?,
        rate: number("--rate", 1000)?,
        warmup: number("--warmup", 10)?,
        ttl_s: number("--ttl-s", 180)?,
        sample_s: number("--sample-s", 60)?,
    };
    if a.minutes == 0 || a.rate == 0 || a.sample_s == 0 || a.ttl_s == 0 || a.warmup >= a.minutes {
        return Err("--minutes, --rate, --ttl-s and --sample-s must be above 0, and --warmup below --minutes".into());
    }
    Ok(a)
}

/// The children this soak started: TERM, then reaped, when dropped.
struct Children(Vec<Child>);

impl Children {
    fn stop(&mut self) {
        for child in &self.0 {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
        self.0.clear();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the producers did.
#[derive(Default)]
struct Counters {
    library: AtomicU64,
    library_errors: AtomicU64,
    api_accepted: AtomicU64,
    api_refused: AtomicU64,
    api_errors: AtomicU64,
    /// Jobs the library producer was behind the clock at most.
    max_lag: AtomicU64,
    last_error: Mutex<String>,
}

impl Counters {
    fn error(&self, e: impl std::fmt::Display) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = e.to_string();
        }
    }
}

/// A process's stderr, counted line by line: how many lines, how many of
/// them the failed list's trim notice or a job's failure (the soak's own
/// `Fail` and `Flaky` jobs), and the last few others.
#[derive(Default)]
struct LogTally {
    lines: AtomicU64,
    trim_notices: AtomicU64,
    job_failures: AtomicU64,
    last_others: Mutex<Vec<String>>,
}

fn tally(stream: impl Read + Send + 'static, tally: Arc<LogTally>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            tally.lines.fetch_add(1, Ordering::Relaxed);
            if line.contains("failed list is at its cap") {
                tally.trim_notices.fetch_add(1, Ordering::Relaxed);
            } else if line.contains("job failed") && line.contains("reason=job_failed") {
                tally.job_failures.fetch_add(1, Ordering::Relaxed);
            } else if let Ok(mut others) = tally.last_others.lock() {
                others.push(line);
                if others.len() > 5 {
                    others.remove(0);
                }
            }
        }
    });
}

impl LogTally {
    fn summary(&self) -> String {
        let others = self.last_others.lock().map(|o| o.clone()).unwrap_or_default();
        let mut s = format!(
            "{} lines: {} job failures (`job_failed`), {} failed-list trim notices, {} others",
            self.lines.load(Ordering::Relaxed),
            self.job_failures.load(Ordering::Relaxed),
            self.trim_notices.load(Ordering::Relaxed),
            self.lines
                .load(Ordering::Relaxed)
                .saturating_sub(self.job_failures.load(Ordering::Relaxed))
                .saturating_sub(self.trim_notices.load(Ordering::Relaxed))
        );
        if !others.is_empty() {
            s.push_str("; the last others:\n");
            for line in others {
                let _ = writeln!(s, "    {line}");
            }
        }
        s
    }
}

/// One minute's figures.
#[derive(Clone, Default)]
struct Sample {
    minute: f64,
    worker_rss_kib: u64,
    worker_hwm_kib: u64,
    serve_rss_kib: u64,
    used_memory: u64,
    used_memory_rss: u64,
    enqueued: u64,
    processed: u64,
    failed: u64,
    failed_list: u64,
    failed_trimmed: u64,
    retry_set: u64,
    expired_list: u64,
    expired_total: u64,
    queue_default: u64,
    queue_parked: u64,
    audit: u64,
    keys: u64,
    /// Family -> (keys, bytes by MEMORY USAGE).
    families: BTreeMap<String, (u64, u64)>,
}

/// A `/proc/<pid>/status` field in KiB (0 once the process is gone).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// The family a key belongs to: its namespace's parts without the ids.
fn family(key: &str) -> String {
    let rest = key.strip_prefix("resque:").unwrap_or(key);
    let parts: Vec<&str> = rest.split(':').collect();
    let take = match parts.first().copied() {
        Some("resq") if matches!(parts.get(1).copied(), Some("api" | "web" | "stat")) => 3,
        Some("resq") => 2,
        Some("queue") => 2,
        _ => 1,
    };
    parts[..take.min(parts.len())].join(":")
}

async fn int(conn: &mut resq_redis::Connection, cmd: &str, key: &str) -> Result<u64, BenchError> {
    let v: Option<u64> = redis::cmd(cmd).arg(key).query_async(conn).await?;
    Ok(v.unwrap_or(0))
}

fn info_field(info: &str, field: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|v| v.strip_prefix(':')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn sample(
    conn: &mut resq_redis::Connection,
    minute: f64,
    worker: u32,
    serve: u32,
    counters: &Counters,
) -> Result<Sample, BenchError> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    let mut s = Sample {
        minute,
        worker_rss_kib: status_kib(worker, "VmRSS:"),
        worker_hwm_kib: status_kib(worker, "VmHWM:"),
        serve_rss_kib: status_kib(serve, "VmRSS:"),
        used_memory: info_field(&info, "used_memory"),
        used_memory_rss: info_field(&info, "used_memory_rss"),
        enqueued: counters.library.load(Ordering::Relaxed) + counters.api_accepted.load(Ordering::Relaxed),
        processed: int(conn, "GET", "resque:stat:processed").await?,
        failed: int(conn, "GET", "resque:stat:failed").await?,
        failed_list: int(conn, "LLEN", "resque:failed").await?,
        failed_trimmed: int(conn, "GET", "resque:resq:stat:failed-trimmed").await?,
        retry_set: int(conn, "ZCARD", "resque:resq:retry").await?,
        expired_list: int(conn, "LLEN", "resque:resq:expired").await?,
        expired_total: int(conn, "GET", "resque:resq:stat:expired").await?,
        queue_default: int(conn, "LLEN", "resque:queue:default").await?,
        queue_parked: int(conn, "LLEN", "resque:queue:parked").await?,
        audit: int(conn, "XLEN", "resque:resq:api:audit").await?,
        ..Sample::default()
    };
    // Every key by family: a few hundred keys, so an exact MEMORY USAGE
    // each costs little once a minute.
    s.families = resq_bench::key_families(conn, family).await?;
    s.keys = s.families.values().map(|(keys, _)| keys).sum();
    Ok(s)
}

/// The library's share: every 10 ms, the jobs the clock says are due, in
/// one round trip.
async fn produce(client: Client, rate: f64, ttl: Duration, stop: Arc<AtomicBool>, counters: Arc<Counters>) {
    let options = SealOptions {
        ttl: Some(ttl),
        ..SealOptions::default()
    };
    // The library's slice of every 1,000 jobs, and where each kind sits in it.
    let slots = 1000 - API_PER_MILLE;
    let job = |n: u64| -> RawJob {
        let slot = n % slots;
        let (class, args, queue) = if slot < FAIL_PER_MILLE {
            ("Fail", json!({ "message": "soak: fails on purpose" }), "default")
        } else if slot < FAIL_PER_MILLE + RETRY_PER_MILLE {
            ("Flaky", json!({ "failures": 1 }), "default")
        } else if slot < FAIL_PER_MILLE + RETRY_PER_MILLE + EXPIRE_PER_MILLE {
            ("Noop", json!({}), "parked")
        } else {
            ("Noop", json!({}), "default")
        };
        RawJob {
            class: class.into(),
            args: vec![args],
            queue: queue.into(),
            options: options.clone(),
            at: None,
            unique: None,
        }
    };
    // Interleave the kinds (slot order would bunch each kind together).
    let spread = |n: u64| -> u64 { (n / slots) * slots + (n % slots * 97) % slots };
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        if due <= sent {
            continue;
        }
        counters.max_lag.fetch_max(due - sent, Ordering::Relaxed);
        // At most 10 s of jobs at once after a stall.
        let upto = due.min(sent + (rate as u64 * 10).max(1));
        let jobs: Vec<RawJob> = (sent..upto).map(|n| job(spread(n))).collect();
        match client.enqueue_raw_bulk(&jobs).await {
            Ok(ids) => {
                counters.library.fetch_add(ids.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                counters.library_errors.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                counters.error(format!("library enqueue: {e}"));
            }
        }
        sent = upto;
    }
}

/// One HTTP/1.1 request on a keep-alive connection: the status code.
fn request(reader: &mut BufReader<TcpStream>, request: &[u8]) -> Result<u16, BenchError> {
    reader.get_mut().write_all(request)?;
    let mut status_line = String::new();
    if reader.read_line(&mut status_line)? == 0 {
        return Err("the server closed the connection".into());
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err("the server closed the connection".into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse()?;
            }
        }
    }
    let mut sink = vec![0u8; length];
    reader.read_exact(&mut sink)?;
    Ok(status_line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// The HTTP share: one job a request, one keep-alive connection, paced by
/// the clock (late requests go at once); reconnects after an error.
fn produce_http(addr: String, token: String, rate: f64, ttl_s: u64, stop: Arc<AtomicBool>, counters: Arc<Counters>) {
    let body = format!(r#"{{"class":"Noop","args":{{}},"ttl_s":{ttl_s}}}"#);
    let text = format!(
        "POST /api/v1/jobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let every = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut reader: Option<BufReader<TcpStream>> = None;
    let mut n: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = start + every * n;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        n += 1;
        if reader.is_none() {
            match TcpStream::connect(&addr).and_then(|s| s.set_nodelay(true).map(|()| s)) {
                Ok(stream) => reader = Some(BufReader::new(stream)),
                Err(e) => {
                    counters.api_errors.fetch_add(1, Ordering::Relaxed);
                    counters.error(format!("API connect: {e}"));
                    continue;
                }
            }
        }
        let Some(r) = reader.as_mut() else { continue };
        match request(r, text.as_bytes()) {
            Ok(201) => {
                counters.api_accepted.fetch_add(1, Ordering::Relaxed);
            }
            Ok(status) => {
                counters.api_refused.fetch_add(1, Ordering::Relaxed);
                counters.error(format!("API answered {status}"));
            }
            Err(e) => {
                counters.api_errors.fetch_add(1, Ordering::Relaxed);
                counters.error(format!("API request: {e}"));
                reader = None;
            }
        }
    }
}

fn resq(args: &Args, dir: &Path, redis: &LocalRedis, keys: &Path) -> Command {
    let mut cmd = Command::new(&args.resq);
    cmd.current_dir(dir)
        .env("RESQ_CONFIG", dir.join("resq.toml"))
        .env("RESQ_REDIS_URL", redis.url())
        .env("RESQ_KEYS_FILE", keys)
        .env("RESQ_LOG", "warn");
    cmd
}

fn main() -> std::process::ExitCode {
    let result = args().and_then(|args| {
        tokio::runtime::Runtime::new()
            .map_err(BenchError::from)
            .and_then(|runtime| runtime.block_on(run(args)))
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("soak failed: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs the soak; true when both metrics held their bound.
async fn run(args: Args) -> Result<bool, BenchError> {
    let redis = LocalRedis::start_with(local_redis::Options {
        extra_args: vec![
            "--maxmemory".into(),
            MAXMEMORY.into(),
            "--maxmemory-policy".into(),
            "noeviction".into(),
        ],
        ..local_redis::Options::default()
    })?;
    let dir = std::env::temp_dir().join(format!("resq-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _guard = TempDirGuard(dir.clone());
    let keys = write_keys(&dir)?;
    std::fs::write(
        dir.join("resq.toml"),
        format!(
            "[worker]\nqueues = \"default\"\nsweep_interval_ms = {}\n[failures]\nmax = {FAILURES_MAX}\n\
             [api]\naudit_max = {AUDIT_MAX}\n[dashboard]\nsample_interval_s = {SAMPLE_INTERVAL_S}\n",
            SWEEP_INTERVAL_S * 1000
        ),
    )?;
    let api_rate = args.rate as f64 * API_PER_MILLE as f64 / 1000.0;
    let library_rate = args.rate as f64 - api_rate;

    let o = resq(&args, &dir, &redis, &keys)
        .args(["token", "create", "--json", "--name", "soak", "--classes", "Noop"])
        .args([
            "--queues",
            "default",
            "--rate",
            &format!("{}/s", (api_rate * 4.0).ceil().max(10.0)),
        ])
        .args(["--burst", &((api_rate * 4.0).ceil().max(10.0) as u64).to_string()])
        .output()?;
    if !o.status.success() {
        return Err(format!("token create: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    let token_json: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let token = token_json["secret"]
        .as_str()
        .ok_or("token create printed no secret")?
        .to_string();

    let mut children = Children(Vec::new());
    let serve_log = Arc::new(LogTally::default());
    let mut serve = resq(&args, &dir, &redis, &keys)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let serve_pid = serve.id();
    let serve_out = serve.stdout.take().ok_or("resq serve: no stdout")?;
    if let Some(err) = serve.stderr.take() {
        tally(err, Arc::clone(&serve_log));
    }
    children.0.push(serve);
    let mut serve_out = BufReader::new(serve_out);
    let mut first = String::new();
    serve_out.read_line(&mut first)?;
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .ok_or_else(|| format!("resq serve said {first:?}; its log: {}", serve_log.summary()))?
        .to_string();
    tally(serve_out.into_inner(), Arc::new(LogTally::default()));

    let worker_log = Arc::new(LogTally::default());
    let mut worker = resq(&args, &dir, &redis, &keys)
        .args(["worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let worker_pid = worker.id();
    if let Some(err) = worker.stderr.take() {
        tally(err, Arc::clone(&worker_log));
    }
    children.0.push(worker);

    let store = Arc::new(RedisStore::connect(&RedisConfig::new(redis.url()), "resque").await?);
    let keyring = Arc::new(Keyring::load(&keys)?);
    let client = Client::new(store.clone(), keyring)?;
    let mut conn = RedisStore::connect(&RedisConfig::new(redis.url()), "resque")
        .await?
        .connection();

    let version = resq_bench::redis_version();
    let header = Header {
        date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        machine: machine(),
        version,
        commit: commit(),
        command: format!(
            "scripts/soak --minutes {} --rate {} --warmup {} --ttl-s {}{}",
            args.minutes,
            args.rate,
            args.warmup,
            args.ttl_s,
            if args.sample_s == 60 {
                String::new()
            } else {
                format!(" --sample-s {}", args.sample_s)
            }
        ),
    };
    let setup = setup_text(&args, library_rate, api_rate);
    println!("# resq soak\n\n{}\n\n{setup}", header.command);

    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let producer = tokio::spawn(produce(
        client,
        library_rate,
        Duration::from_secs(args.ttl_s),
        Arc::clone(&stop),
        Arc::clone(&counters),
    ));
    let http = {
        let (stop, counters, token) = (Arc::clone(&stop), Arc::clone(&counters), token.clone());
        let ttl_s = args.ttl_s;
        let addr = addr.clone();
        std::thread::spawn(move || produce_http(addr, token, api_rate, ttl_s, stop, counters))
    };

    let start = Instant::now();
    let every = Duration::from_secs(args.sample_s);
    let samples_wanted = args.minutes * 60 / args.sample_s;
    let mut samples: Vec<Sample> = Vec::new();
    let mut died: Option<String> = None;
    for i in 0..=samples_wanted {
        let due = start + every * i as u32;
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        for (child, name) in children.0.iter_mut().zip(["resq serve", "resq worker"]) {
            if let Some(status) = child.try_wait()? {
                died = Some(format!("{name} exited ({status})"));
            }
        }
        if died.is_some() {
            break;
        }
        let minute = start.elapsed().as_secs_f64() / 60.0;
        let s = sample(&mut conn, minute, worker_pid, serve_pid, &counters).await?;
        print_sample(&s, samples.is_empty());
        samples.push(s);
        let status = format!("running: {} of {} samples", samples.len(), samples_wanted + 1);
        write_results(
            &header,
            &setup,
            &args,
            &samples,
            &counters,
            &status,
            &worker_log,
            &serve_log,
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = producer.await;
    let _ = http.join();
    children.stop();

    let status = match &died {
        Some(why) => format!("stopped early: {why}"),
        None => "complete".to_string(),
    };
    let passed = write_results(
        &header,
        &setup,
        &args,
        &samples,
        &counters,
        &status,
        &worker_log,
        &serve_log,
    );
    println!(
        "\n{}",
        verdict_text(&args, &samples, &counters, &worker_log, &serve_log)
    );
    println!("wrote bench/results/soak.md and bench/results/soak.svg");
    if let Some(why) = died {
        return Err(why.into());
    }
    Ok(passed)
}

struct Header {
    date: String,
    machine: String,
    version: String,
    commit: String,
    command: String,
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The commit measured, and whether tracked files differ from it.
fn commit() -> String {
    let head = command_line("git", &["rev-parse", "--short", "HEAD"]);
    if head.is_empty() {
        return "unknown (not a git checkout)".into();
    }
    let dirty = command_line("git", &["status", "--porcelain", "--untracked-files=no"]);
    if dirty.is_empty() {
        head
    } else {
        format!("{head} plus uncommitted changes to tracked files")
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        })
        .unwrap_or(0);
    format!(
        "{} cores ({cpu}), {:.1} GB RAM, Linux {} (shared with other work)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        mem_kib as f64 / 1024.0 / 1024.0,
        command_line("uname", &["-r"])
    )
}

fn setup_text(args: &Args, library_rate: f64, api_rate: f64) -> String {
    let mark_plateau = (args.ttl_s + MARK_MARGIN_S) as f64 / 60.0;
    format!(
        "A private redis-server (maxmemory {MAXMEMORY}, noeviction, no persistence), one real `resq worker` \
         (queue `default`, default concurrency) and one real `resq serve` (HTTP API, one token), all on loopback. \
         {rate} signed jobs/s paced by the clock: {library_rate:.0}/s through the library (`enqueue_raw_bulk`, one round \
         trip each 10 ms) and {api_rate:.0}/s one request each over HTTP (each request an audit entry). Of every \
         1,000 jobs: {FAIL_PER_MILLE} `Fail` (the failed list), {RETRY_PER_MILLE} `Flaky` failing once then retried \
         1 s later, {EXPIRE_PER_MILLE} `Noop` on `parked`, a queue no worker serves, where they expire and the sweeper \
         records them, the rest `Noop`.\n\n\
         Bounded by design, and made to reach the bound early: every job lives {ttl} s (`ttl`, `ttl_s`), so replay \
         marks (a job's lifetime + the fixed 15-minute margin) plateau after about {mark_plateau:.0} minutes and \
         parked jobs are swept after {ttl} s (sweep every {SWEEP_INTERVAL_S} s; the newest {EXPIRED_KEPT} records \
         kept); `failures.max = {FAILURES_MAX}` (reached after about {fail_min:.1} minutes, then trimmed); \
         `api.audit_max = {AUDIT_MAX}` (about {audit_min:.1} minutes); `dashboard.sample_interval_s = \
         {SAMPLE_INTERVAL_S}` (the 720-sample chart history is full after 12 minutes). Warm-up: {warmup} minutes. \
         The replay-mark margin is a constant (`MARK_SKEW_MARGIN`), not a setting, so marks are still growing at \
         the end of a warm-up shorter than {mark_plateau:.0} minutes: their share shows in the key families below.",
        rate = args.rate,
        ttl = args.ttl_s,
        fail_min = FAILURES_MAX as f64 / (args.rate as f64 * FAIL_PER_MILLE as f64 / 1000.0) / 60.0,
        audit_min = AUDIT_MAX as f64 / api_rate.max(0.001) / 60.0,
        warmup = args.warmup,
    )
}

fn mb(kib_or_bytes: u64, per_mb: f64) -> f64 {
    kib_or_bytes as f64 / per_mb
}

const KIB_PER_MB: f64 = 1024.0;
const BYTES_PER_MB: f64 = 1024.0 * 1024.0;

fn marks(s: &Sample) -> (u64, u64) {
    s.families.get("resq:marks").copied().unwrap_or((0, 0))
}

fn sample_row(s: &Sample) -> String {
    let (mark_keys, mark_bytes) = marks(s);
    format!(
        "| {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} ({:.0} KB) | {} |",
        s.minute,
        mb(s.worker_rss_kib, KIB_PER_MB),
        mb(s.worker_hwm_kib, KIB_PER_MB),
        mb(s.serve_rss_kib, KIB_PER_MB),
        mb(s.used_memory, BYTES_PER_MB),
        mb(s.used_memory_rss, BYTES_PER_MB),
        s.enqueued,
        s.processed,
        s.failed,
        s.failed_list,
        s.failed_trimmed,
        s.retry_set,
        s.expired_list,
        s.expired_total,
        s.queue_default,
        s.queue_parked,
        s.audit,
        mark_keys,
        mark_bytes as f64 / 1024.0,
        s.keys
    )
}

const SAMPLE_HEADER: &str = "| min | worker RSS (MB) | worker HWM (MB) | serve RSS (MB) | used_memory (MB) | Redis RSS (MB) | enqueued | processed | failed | failed list | trimmed | retry set | expired list / total | queue default | queue parked | audit | mark keys | keys |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

fn print_sample(s: &Sample, first: bool) {
    if first {
        println!("{SAMPLE_HEADER}");
    }
    println!("{}", sample_row(s));
}

/// The sample that ends warm-up: the first at or after `--warmup` minutes.
fn warm(args: &Args, samples: &[Sample]) -> Option<usize> {
    samples.iter().position(|s| s.minute + 1e-6 >= args.warmup as f64)
}

/// (after warm-up, end, change) of one metric, once the run is past warm-up.
fn change(args: &Args, samples: &[Sample], f: impl Fn(&Sample) -> f64) -> Option<(f64, f64, f64)> {
    let w = warm(args, samples)?;
    let (a, b) = (f(samples.get(w)?), f(samples.last()?));
    Some((a, b, if a > 0.0 { (b - a) / a } else { f64::INFINITY }))
}

/// A metric's name, unit, reading, and whether the bound judges it.
type Metric = (&'static str, &'static str, Box<dyn Fn(&Sample) -> f64>, bool);

fn verdict_text(
    args: &Args,
    samples: &[Sample],
    counters: &Counters,
    worker_log: &LogTally,
    serve_log: &LogTally,
) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| metric | after warm-up | end | change | bound | verdict |\n|---|---|---|---|---|---|"
    );
    let metrics: [Metric; 4] = [
        (
            "worker RSS (VmRSS)",
            "MB",
            Box::new(|s| mb(s.worker_rss_kib, KIB_PER_MB)),
            true,
        ),
        (
            "Redis used_memory",
            "MB",
            Box::new(|s| mb(s.used_memory, BYTES_PER_MB)),
            true,
        ),
        (
            "worker peak RSS (VmHWM)",
            "MB",
            Box::new(|s| mb(s.worker_hwm_kib, KIB_PER_MB)),
            false,
        ),
        (
            "resq serve RSS (VmRSS)",
            "MB",
            Box::new(|s| mb(s.serve_rss_kib, KIB_PER_MB)),
            false,
        ),
    ];
    for (name, unit, f, judged) in metrics {
        match change(args, samples, f) {
            Some((a, b, c)) => {
                let verdict = if !judged {
                    "(shown)".to_string()
                } else if bounded(c) {
                    "**PASS**".to_string()
                } else {
                    "**FAIL**".to_string()
                };
                let _ = writeln!(
                    t,
                    "| {name} | {a:.2} {unit} (min {:.1}) | {b:.2} {unit} (min {:.1}) | {:+.2}% | {} | {verdict} |",
                    warm(args, samples)
                        .and_then(|w| samples.get(w))
                        .map(|s| s.minute)
                        .unwrap_or(0.0),
                    samples.last().map(|s| s.minute).unwrap_or(0.0),
                    c * 100.0,
                    if judged { "at most +5%" } else { "-" }
                );
            }
            None => {
                let _ = writeln!(t, "| {name} | (warm-up not over) | | | | |");
            }
        }
    }
    let elapsed_s = samples.last().map(|s| s.minute * 60.0).unwrap_or(0.0).max(1.0);
    let enqueued = counters.library.load(Ordering::Relaxed) + counters.api_accepted.load(Ordering::Relaxed);
    let _ = writeln!(
        t,
        "\nProducers: {} jobs through the library, {} over HTTP ({} refused, {} errors), {} library errors: {:.1} jobs/s on average; the library producer was at most {} jobs behind the clock.",
        counters.library.load(Ordering::Relaxed),
        counters.api_accepted.load(Ordering::Relaxed),
        counters.api_refused.load(Ordering::Relaxed),
        counters.api_errors.load(Ordering::Relaxed),
        counters.library_errors.load(Ordering::Relaxed),
        enqueued as f64 / elapsed_s,
        counters.max_lag.load(Ordering::Relaxed),
    );
    let last_error = counters.last_error.lock().map(|e| e.clone()).unwrap_or_default();
    if !last_error.is_empty() {
        let _ = writeln!(t, "Last producer error: {last_error}");
    }
    let _ = writeln!(t, "\nWorker stderr: {}", worker_log.summary());
    let _ = writeln!(t, "resq serve stderr: {}", serve_log.summary());
    t
}

fn families_text(args: &Args, samples: &[Sample]) -> String {
    let (Some(w), Some(end)) = (warm(args, samples).and_then(|w| samples.get(w)), samples.last()) else {
        return String::new();
    };
    let mut t = format!(
        "| family | keys (min {:.0}) | bytes (min {:.0}) | keys (min {:.0}) | bytes (min {:.0}) | bytes change |\n|---|---|---|---|---|---|\n",
        w.minute, w.minute, end.minute, end.minute
    );
    let mut names: Vec<&String> = w.families.keys().chain(end.families.keys()).collect();
    names.sort();
    names.dedup();
    let (mut total_w, mut total_end) = (0u64, 0u64);
    for name in names {
        let (kw, bw) = w.families.get(name).copied().unwrap_or((0, 0));
        let (ke, be) = end.families.get(name).copied().unwrap_or((0, 0));
        total_w += bw;
        total_end += be;
        let _ = writeln!(
            t,
            "| `{name}` | {kw} | {bw} | {ke} | {be} | {:+} |",
            be as i64 - bw as i64
        );
    }
    let _ = writeln!(
        t,
        "| all keys | {} | {total_w} | {} | {total_end} | {:+} |",
        w.keys,
        end.keys,
        total_end as i64 - total_w as i64
    );
    t
}

#[allow(clippy::too_many_arguments)]
fn write_results(
    header: &Header,
    setup: &str,
    args: &Args,
    samples: &[Sample],
    counters: &Counters,
    status: &str,
    worker_log: &LogTally,
    serve_log: &LogTally,
) -> bool {
    let passed = ["rss", "mem"].iter().all(|m| {
        change(args, samples, |s| {
            if *m == "rss" {
                s.worker_rss_kib as f64
            } else {
                s.used_memory as f64
            }
        })
        .is_some_and(|(_, _, c)| bounded(c))
    });
    let mut md = String::new();
    let _ = writeln!(md, "# resq soak: {} minutes at {} jobs/s\n", args.minutes, args.rate);
    let _ = writeln!(md, "- status: {status}");
    let _ = writeln!(md, "- date: {}", header.date);
    let _ = writeln!(md, "- machine: {}; {}", header.machine, header.version);
    let _ = writeln!(md, "- resq: commit {}, release build", header.commit);
    let _ = writeln!(md, "- command: `{}`\n", header.command);
    let _ = writeln!(md, "{setup}\n");
    let _ = writeln!(
        md,
        "## Verdict: {}\n",
        if status != "complete" {
            "not final".to_string()
        } else if passed {
            "PASS".to_string()
        } else {
            "FAIL".to_string()
        }
    );
    let _ = writeln!(
        md,
        "Each metric's last sample against its sample at the end of warm-up (minute {}).\n",
        args.warmup
    );
    md.push_str(&verdict_text(args, samples, counters, worker_log, serve_log));
    let _ = writeln!(md, "\n![worker RSS and Redis used_memory per minute](soak.svg)\n");
    let _ = writeln!(md, "## Samples\n\n{SAMPLE_HEADER}");
    for s in samples {
        let _ = writeln!(md, "{}", sample_row(s));
    }
    let families = families_text(args, samples);
    if !families.is_empty() {
        let _ = writeln!(
            md,
            "\n## Key families at the end of warm-up and at the end (SCAN, MEMORY USAGE ... SAMPLES 0)\n\n{families}"
        );
    }
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let written = std::fs::create_dir_all(&results)
        .and_then(|()| std::fs::write(results.join("soak.md"), md))
        .and_then(|()| std::fs::write(results.join("soak.svg"), svg(args, samples)));
    if let Err(e) = written {
        eprintln!("could not write bench/results/soak.*: {e}");
    }
    passed
}

/// A chart line: its name, colour and (minute, MB) points.
type Series = (&'static str, &'static str, Vec<(f64, f64)>);

/// A line chart of worker RSS and `used_memory` (MB) per minute, with the
/// end of warm-up and each metric's 5% band after it. Drawn by hand: no
/// chart crate.
fn svg(args: &Args, samples: &[Sample]) -> String {
    let (width, height) = (900.0, 460.0);
    let (left, right, top, bottom) = (70.0, 200.0, 40.0, 50.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let series: [Series; 3] = [
        (
            "worker RSS",
            "#1f77b4",
            samples
                .iter()
                .map(|s| (s.minute, mb(s.worker_rss_kib, KIB_PER_MB)))
                .collect(),
        ),
        (
            "Redis used_memory",
            "#d62728",
            samples
                .iter()
                .map(|s| (s.minute, mb(s.used_memory, BYTES_PER_MB)))
                .collect(),
        ),
        (
            "resq serve RSS",
            "#999999",
            samples
                .iter()
                .map(|s| (s.minute, mb(s.serve_rss_kib, KIB_PER_MB)))
                .collect(),
        ),
    ];
    let x_max = (args.minutes as f64).max(samples.last().map(|s| s.minute).unwrap_or(0.0));
    let y_top = series
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let y_step = nice_step(y_top / 6.0);
    let y_max = (y_top / y_step).ceil() * y_step;
    let x = |m: f64| left + m / x_max * plot_w;
    let y = |v: f64| top + plot_h - v / y_max * plot_h;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{width}" height="{height}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="22" font-size="15">resq soak: {} jobs/s, {} minutes (worker RSS, Redis used_memory, MB)</text>"#,
        args.rate, args.minutes
    );
    // Grid and axes.
    let mut v = 0.0;
    while v <= y_max + 1e-9 {
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 6.0,
            y(v) + 4.0,
            trim_float(v),
            py = y(v)
        );
        v += y_step;
    }
    let x_step = nice_step(x_max / 8.0).max(1.0);
    let mut m = 0.0;
    while m <= x_max + 1e-9 {
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            top + plot_h,
            top + plot_h + 16.0,
            trim_float(m),
            px = x(m)
        );
        m += x_step;
    }
    let _ = writeln!(
        out,
        r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{b:.1}" stroke="#333"/><line x1="{left}" y1="{b:.1}" x2="{:.1}" y2="{b:.1}" stroke="#333"/>"##,
        left + plot_w,
        b = top + plot_h
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">minutes</text><text x="18" y="{:.1}" transform="rotate(-90 18 {:.1})" text-anchor="middle">MB</text>"#,
        left + plot_w / 2.0,
        height - 12.0,
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    // The end of warm-up.
    let wx = x(args.warmup as f64);
    let _ = writeln!(
        out,
        r##"<line x1="{wx:.1}" y1="{top}" x2="{wx:.1}" y2="{:.1}" stroke="#555" stroke-dasharray="4 4"/><text x="{:.1}" y="{:.1}" fill="#555">end of warm-up</text>"##,
        top + plot_h,
        wx + 4.0,
        top + 14.0
    );
    for (i, (name, color, points)) in series.iter().enumerate() {
        // The 5% band around the level at the end of warm-up (judged metrics).
        if i < 2 {
            if let Some(level) = warm(args, samples).and_then(|w| points.get(w)).map(|p| p.1) {
                let x2 = x(x_max);
                let (hi, lo) = (y(level * (1.0 + BOUND)), y(level * (1.0 - BOUND)));
                let _ = writeln!(
                    out,
                    r#"<rect x="{wx:.1}" y="{hi:.1}" width="{:.1}" height="{:.1}" fill="{color}" fill-opacity="0.10"/>"#,
                    (x2 - wx).max(0.0),
                    (lo - hi).max(0.0)
                );
            }
        }
        let path: Vec<String> = points
            .iter()
            .map(|(m, v)| format!("{:.1},{:.1}", x(*m), y(*v)))
            .collect();
        let dash = if i == 2 { r#" stroke-dasharray="5 3""# } else { "" };
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            path.join(" ")
        );
        for (m, v) in points {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{color}"/>"#,
                x(*m),
                y(*v)
            );
        }
        let ly = top + 20.0 + i as f64 * 22.0;
        let lx = left + plot_w + 15.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" fill="#555">shaded: ±5% of the level</text><text x="{:.1}" y="{:.1}" fill="#555">at the end of warm-up</text>"##,
        left + plot_w + 15.0,
        top + 100.0,
        left + plot_w + 15.0,
        top + 116.0
    );
    out.push_str("</svg>\n");
    out
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power)
}

fn trim_float(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}
