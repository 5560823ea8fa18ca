//! resq's throughput harness: `scripts/bench` (see the README).
//!
//! Starts its own redis-server, then measures, each `--runs` times (median and
//! spread): enqueue one by one from many tasks, bulk enqueue, processing with
//! the real `resq worker` binary (and its peak RSS), and enqueue-to-start
//! latency at a steady 1,000 jobs/s. All with the full security path (signed
//! envelopes, validation) and again without it (unsigned jobs on an open
//! queue), then how processing grows with 10 and 100 queues, 1 KB and 64 KB
//! payloads, and 4 worker processes. Prints a table and writes it to
//! `bench/results/latest.md`. `--latency-only` runs just the latency runs
//! (signed) and prints their tail, to compare two builds on latency.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use local_redis::LocalRedis;
use resq::{Client, Control, Job, JobContext, JobError, JobQueues, Keyring, Registry, Store, Worker, WorkerConfig};
use resq_bench::{vm_hwm_kib, write_keys, BenchError, Figure, Noop, TempDirGuard};
use resq_redis::{RedisConfig, RedisStore};
use serde::{Deserialize, Serialize};

/// Records when it started, for the latency run (in-process worker).
#[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Stamp {
    #[garde(skip)]
    sent_us: u64,
}
static LATENCIES: Mutex<Vec<u64>> = Mutex::new(Vec::new());
impl Job for Stamp {
    const CLASS: &'static str = "Stamp";
    const QUEUE: &'static str = "lat";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        let now = now_us();
        if let Ok(mut v) = LATENCIES.lock() {
            v.push(now.saturating_sub(self.sent_us));
        }
        Ok(())
    }
}

/// Microseconds: a nanosecond timestamp is over 2^53 and could not be signed exactly.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct Args {
    resq: PathBuf,
    jobs: usize,
    runs: usize,
    quick: bool,
    /// Only the latency runs (to compare builds on latency alone).
    latency_only: bool,
    concurrency: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        resq: PathBuf::from("target/release/resq"),
        jobs: 100_000,
        runs: 3,
        quick: false,
        latency_only: false,
        concurrency: 256,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        match argv[i].as_str() {
            "--resq" => a.resq = PathBuf::from(argv.get(i + 1).cloned().unwrap_or_default()),
            "--jobs" => a.jobs = argv.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(a.jobs),
            "--runs" => a.runs = argv.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(a.runs),
            "--concurrency" => a.concurrency = argv.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(a.concurrency),
            "--quick" => {
                a.quick = true;
                i += 1;
                continue;
            }
            "--latency-only" => {
                a.latency_only = true;
                i += 1;
                continue;
            }
            other => {
                eprintln!("unknown argument {other}; use --resq PATH --jobs N --runs N --concurrency N --quick --latency-only");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

struct Bench {
    args: Args,
    redis: LocalRedis,
    store: Arc<RedisStore>,
    dir: PathBuf,
    keys: PathBuf,
    keyring: Arc<Keyring>,
    _tmp: TempDirGuard,
}

impl Bench {
    fn concurrency(&self) -> String {
        self.args.concurrency.to_string()
    }

    async fn flush(&self) -> Result<(), BenchError> {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut self.store.connection()).await?;
        Ok(())
    }

    fn client(&self) -> Result<Client, BenchError> {
        Ok(Client::new(self.store.clone(), Arc::clone(&self.keyring))?)
    }

    /// Fills `queues` round-robin with `n` jobs (signed or not) of `pad` bytes.
    async fn fill(&self, n: usize, queues: &[String], pad: usize, signed: bool) -> Result<(), BenchError> {
        let policy = resq::Policy::new(Arc::clone(&self.keyring))?;
        let per_queue = n.div_ceil(queues.len());
        let mut left = n;
        for q in queues {
            let count = per_queue.min(left);
            left -= count;
            for start in (0..count).step_by(10_000) {
                let batch = (count - start).min(10_000);
                if signed {
                    // Sealed like any producer's jobs: validated, signed.
                    let args: Vec<Vec<serde_json::Value>> = (0..batch)
                        .map(|_| vec![serde_json::json!({ "pad": "x".repeat(pad) })])
                        .collect();
                    let jobs = policy.seal_many("Noop", q, args, resq::SealOptions::default())?;
                    self.store.enqueue(&jobs).await?;
                } else {
                    // Ruby's jobs: bytes no policy saw.
                    let payload = format!(
                        r#"{{"class":"Noop","args":[{{"pad":"{}"}}],"queue":"{q}"}}"#,
                        "x".repeat(pad)
                    );
                    let jobs: Vec<(String, Vec<u8>)> =
                        (0..batch).map(|_| (q.clone(), payload.clone().into_bytes())).collect();
                    self.store.push_unchecked(&jobs).await?;
                }
            }
        }
        Ok(())
    }

    /// Runs `workers` `resq worker --burst` processes over `spec`; returns jobs/s and peak RSS (KiB).
    fn process(&self, spec: &str, n: usize, workers: usize, open: bool) -> Result<(f64, u64), BenchError> {
        self.process_with(spec, n, workers, open, None)
    }

    /// `process`, with jobs in `children` child processes per worker when given.
    fn process_with(
        &self,
        spec: &str,
        n: usize,
        workers: usize,
        open: bool,
        children: Option<usize>,
    ) -> Result<(f64, u64), BenchError> {
        let start = Instant::now();
        let concurrency = self.concurrency();
        let mut children: Vec<std::process::Child> = (0..workers)
            .map(|_| {
                let mut cmd = Command::new(&self.args.resq);
                cmd.args(["worker", "--queues", spec, "--concurrency", &concurrency, "--burst"]);
                if let Some(n) = children {
                    // The other slots hold jobs ready for the next free child.
                    cmd.args(["--isolation", "process", "--children", &n.to_string()]);
                }
                cmd.env("RESQ_REDIS_URL", self.redis.url())
                    .env("RESQ_KEYS_FILE", &self.keys)
                    .env("RESQ_LOG", "warn")
                    .current_dir(&self.dir)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                if open {
                    // Every queue open to unsigned jobs: the loud setting says so.
                    cmd.env("RESQ_ALLOW_UNSIGNED", "*")
                        .env("RESQ_ALLOW_UNSIGNED_EVERYTHING", "true");
                }
                cmd.spawn()
            })
            .collect::<Result<_, _>>()?;
        let mut peak_kib = 0u64;
        loop {
            let mut running = false;
            for child in children.iter_mut() {
                if child.try_wait().ok().flatten().is_none() {
                    running = true;
                    peak_kib = peak_kib.max(vm_hwm_kib(child.id()));
                }
            }
            if !running {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok((n as f64 / start.elapsed().as_secs_f64(), peak_kib))
    }
}

async fn processed(store: &RedisStore) -> u64 {
    let v: Option<String> = redis::cmd("GET")
        .arg("resque:stat:processed")
        .query_async(&mut store.connection())
        .await
        .unwrap_or(None);
    v.and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn main() -> std::process::ExitCode {
    resq_bench::run_main(run(parse_args()))
}

/// The run stops here when the store lost or double-counted jobs.
fn check_processed(got: u64, expected: usize) -> Result<(), BenchError> {
    if got == expected as u64 {
        Ok(())
    } else {
        Err(format!("{got} jobs processed, expected {expected}").into())
    }
}

async fn run(args: Args) -> Result<(), BenchError> {
    let mut args = args;
    match args.resq.canonicalize() {
        Ok(path) => args.resq = path,
        Err(_) => {
            eprintln!(
                "{} not found: build it with `cargo build --release -p resq-cli`",
                args.resq.display()
            );
            std::process::exit(2);
        }
    }
    let redis = LocalRedis::start()?;
    let store = Arc::new(RedisStore::connect(&RedisConfig::new(redis.url()), "resque").await?);
    let dir = std::env::temp_dir().join(format!("resq-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let keys = write_keys(&dir)?;
    let keyring = Arc::new(Keyring::load(&keys)?);
    let bench = Bench {
        args,
        redis,
        store,
        dir: dir.clone(),
        keys,
        keyring,
        _tmp: TempDirGuard(dir),
    };
    let n = if bench.args.quick {
        bench.args.jobs.min(20_000)
    } else {
        bench.args.jobs
    };
    let runs = bench.args.runs.max(1);
    if bench.args.latency_only {
        // The tail as well: p99 alone hides whether a build moved it.
        for _ in 0..runs {
            for rate in [1_000, 50_000] {
                let (p50, p99) = latency(&bench, true, rate).await?;
                let mut seen = LATENCIES.lock().map(|v| v.clone()).unwrap_or_default();
                seen.sort_unstable();
                let ms = |p: f64| percentile_ms(&seen, p);
                println!(
                    "signed, {rate} jobs/s: p50 {p50:.2} ms, p90 {:.2}, p99 {p99:.2}, p99.9 {:.2}, max {:.2}",
                    ms(0.90),
                    ms(0.999),
                    ms(1.0)
                );
            }
        }
        return Ok(());
    }
    let version = resq_bench::redis_version();
    let mut report = resq_bench::Report::default();
    report.line(format!(
        "# resq throughput ({n} no-op jobs, {runs} runs each: median [min..max])\n"
    ));
    report.line(format!(
        "machine: {} cores; {version}\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    ));
    report.line("| security | enqueue one by one, 64 tasks (jobs/s) | bulk enqueue (jobs/s) | process, 1 worker (jobs/s) | worker peak RSS (MB) | latency p50 / p99 at 1,000 jobs/s (ms) | at 50,000 jobs/s (ms) |".into());
    report.line("|---|---|---|---|---|---|---|".into());
    for signed in [true, false] {
        // Enqueue one by one from many concurrent tasks.
        let mut one = Vec::new();
        let mut bulk = Vec::new();
        let mut proc_rates = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..runs {
            bench.flush().await?;
            let start = Instant::now();
            let per_task = n / 64;
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..64 {
                let client = bench.client()?;
                let store = bench.store.clone();
                tasks.spawn(async move {
                    for _ in 0..per_task {
                        if signed {
                            client.enqueue(&Noop { pad: String::new() }).await?;
                        } else {
                            let p = br#"{"class":"Noop","args":[{"pad":""}],"queue":"default"}"#.to_vec();
                            store.push_unchecked(&[("default".to_string(), p)]).await?;
                        }
                    }
                    Ok::<(), BenchError>(())
                });
            }
            while let Some(task) = tasks.join_next().await {
                task??;
            }
            one.push((per_task * 64) as f64 / start.elapsed().as_secs_f64());

            bench.flush().await?;
            let jobs: Vec<Noop> = (0..n).map(|_| Noop { pad: String::new() }).collect();
            let start = Instant::now();
            if signed {
                for chunk in jobs.chunks(10_000) {
                    bench.client()?.enqueue_bulk(chunk).await?;
                }
            } else {
                for chunk in jobs.chunks(10_000) {
                    let out: Vec<(String, Vec<u8>)> = chunk
                        .iter()
                        .map(|_| {
                            let p = br#"{"class":"Noop","args":[{"pad":""}],"queue":"default"}"#;
                            ("default".to_string(), p.to_vec())
                        })
                        .collect();
                    bench.store.push_unchecked(&out).await?;
                }
            }
            bulk.push(n as f64 / start.elapsed().as_secs_f64());
            // The queue now holds n jobs: process them with the real binary.
            let (rate, kib) = bench.process("default", n, 1, !signed)?;
            check_processed(processed(&bench.store).await, n)?;
            proc_rates.push(rate);
            rss.push(kib as f64 / 1024.0);
        }
        let (p50, p99) = latency(&bench, signed, 1_000).await?;
        let (fast50, fast99) = latency(&bench, signed, 50_000).await?;
        report.line(format!(
            "| {} | {} | {} | {} | {} | {:.2} / {:.2} | {:.2} / {:.2} |",
            if signed {
                "signed + validated"
            } else {
                "off (unsigned, open queue)"
            },
            Figure::of(one).rate(),
            Figure::of(bulk).rate(),
            Figure::of(proc_rates).rate(),
            Figure::of(rss).plain(""),
            p50,
            p99,
            fast50,
            fast99
        ));
    }

    report.line("\n## How processing grows (signed + validated)\n".into());
    report.line("| shape | process (jobs/s) | worker peak RSS (MB) |".into());
    report.line("|---|---|---|".into());
    let shapes: Vec<(&str, usize, usize, usize, Option<usize>)> = vec![
        ("1 queue, empty payload", 1, 0, 1, None),
        ("10 queues", 10, 0, 1, None),
        ("100 queues", 100, 0, 1, None),
        ("1 KB payloads", 1, 1024, 1, None),
        ("64 KB payloads", 1, 65536, 1, None),
        ("4 worker processes", 1, 0, 4, None),
        ("process isolation, 8 children", 1, 0, 1, Some(8)),
    ];
    for (label, queues, pad, workers, children) in shapes {
        let names: Vec<String> = if queues == 1 {
            vec!["default".into()]
        } else {
            (0..queues).map(|i| format!("bq{i}")).collect()
        };
        let spec = if queues == 1 {
            "default".to_string()
        } else {
            "bq*".to_string()
        };
        let jobs = if pad >= 65536 || children.is_some() {
            (n / 10).max(1000)
        } else {
            n
        };
        let mut rates = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..runs {
            bench.flush().await?;
            bench.fill(jobs, &names, pad, true).await?;
            let (rate, kib) = bench.process_with(&spec, jobs, workers, false, children)?;
            check_processed(processed(&bench.store).await, jobs)?;
            rates.push(rate);
            rss.push(kib as f64 / 1024.0);
        }
        report.line(format!(
            "| {label}{} | {} | {} |",
            if jobs != n {
                format!(" ({jobs} jobs)")
            } else {
                String::new()
            },
            Figure::of(rates).rate(),
            Figure::of(rss).plain("")
        ));
    }
    report.write("latest.md");
    Ok(())
}

/// p50 and p99 enqueue-to-start latency, in ms, at a steady 1,000 jobs/s for 5 s,
/// with an in-process worker (the library's, same defaults as the binary's).
async fn latency(bench: &Bench, signed: bool, rate: usize) -> Result<(f64, f64), BenchError> {
    bench.flush().await?;
    if let Ok(mut v) = LATENCIES.lock() {
        v.clear();
    }
    let registry = Registry::new().register::<Stamp>();
    let mut config = WorkerConfig::new("lat".parse()?, Arc::clone(&bench.keyring));
    config.concurrency = 256;
    if !signed {
        config.allow_unsigned = vec![glob_all()];
    }
    let (control, rx) = Control::new();
    // Its own store: its wake listener ends with it, so later enqueue runs
    // are not slowed by a subscriber in this process.
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&RedisConfig::new(bench.redis.url()), "resque").await?);
    let worker = tokio::spawn(Worker::new(store, registry, config).run(rx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = bench.client()?;
    // A steady rate: every millisecond, rate/1000 jobs in one round trip.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let per_tick = (rate / 1000).max(1);
    let count = (rate * 5).min(250_000);
    for _ in 0..count / per_tick {
        tick.tick().await;
        let sent_us = now_us();
        if signed {
            let jobs: Vec<Stamp> = (0..per_tick).map(|_| Stamp { sent_us }).collect();
            client.enqueue_bulk(&jobs).await?;
        } else {
            let p = format!(r#"{{"class":"Stamp","args":[{{"sent_us":{sent_us}}}],"queue":"lat"}}"#);
            let jobs: Vec<(String, Vec<u8>)> = (0..per_tick)
                .map(|_| ("lat".to_string(), p.clone().into_bytes()))
                .collect();
            bench.store.push_unchecked(&jobs).await?;
        }
    }
    let count = count / per_tick * per_tick;
    for _ in 0..200 {
        if LATENCIES.lock().map(|v| v.len()).unwrap_or(0) >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    control.quit();
    let _ = worker.await;
    let mut v = LATENCIES.lock().map(|v| v.clone()).unwrap_or_default();
    v.sort_unstable();
    Ok((percentile_ms(&v, 0.50), percentile_ms(&v, 0.99)))
}

/// The `p` quantile (0..=1) of sorted latencies in µs, in ms (0 when empty).
fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    let at = ((sorted_us.len() as f64 * p) as usize).min(sorted_us.len().saturating_sub(1));
    sorted_us.get(at).map(|us| *us as f64 / 1e3).unwrap_or(0.0)
}

fn glob_all() -> glob::Pattern {
    // ok: a constant pattern, and "*" is valid.
    glob::Pattern::new("*").expect("pattern")
}
