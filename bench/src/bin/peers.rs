//! resq beside its peers, in one run on one private redis-server:
//! `scripts/bench --peers` (see docs/benchmarks.md).
//!
//! For each of `--runs` rounds, on the same server and the same number of
//! no-op jobs: resq (signed + validated, bulk enqueue, then one `resq worker`
//! process), the server's own unpipelined `redis-benchmark -t lpop` rate,
//! Sidekiq (Debian's, `push_bulk`, one `sidekiq` process at its default
//! concurrency) and BullMQ (from npm, `addBulk`, one worker process). Prints
//! each figure and its ratio to resq's; writes `bench/results/peers.md`.
//!
//! How each is timed: resq from the worker's start to its exit (a burst
//! worker: start-up included); Sidekiq and BullMQ from their first job to
//! their last, counted in the worker process (start-up excluded). Per-job
//! log lines are off for all three. Completed jobs are not kept by any.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use local_redis::LocalRedis;
use resq::{Client, Keyring};
use resq_bench::{watch, write_keys, BenchError, Figure, Noop, TempDirGuard};
use resq_redis::{RedisConfig, RedisStore};

struct Args {
    resq: PathBuf,
    jobs: usize,
    runs: usize,
    concurrency: usize,
    bullmq_concurrency: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        resq: PathBuf::from("target/release/resq"),
        jobs: 100_000,
        runs: 3,
        concurrency: 256,
        bullmq_concurrency: 100,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1);
        let number = |default: usize| value.and_then(|v| v.parse().ok()).unwrap_or(default);
        match argv[i].as_str() {
            "--resq" => a.resq = PathBuf::from(value.cloned().unwrap_or_default()),
            "--jobs" => a.jobs = number(a.jobs),
            "--runs" => a.runs = number(a.runs),
            "--concurrency" => a.concurrency = number(a.concurrency),
            "--bullmq-concurrency" => a.bullmq_concurrency = number(a.bullmq_concurrency),
            "--quick" => {
                a.jobs = a.jobs.min(20_000);
                i += 1;
                continue;
            }
            other => {
                eprintln!(
                    "unknown argument {other}; use --resq PATH --jobs N --runs N --concurrency N \
                     --bullmq-concurrency N --quick"
                );
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

/// One system's figures for one round.
#[derive(Default)]
struct Round {
    enqueue: f64,
    process: f64,
    rss_mb: f64,
}

struct Peers {
    args: Args,
    redis: LocalRedis,
    store: Arc<RedisStore>,
    dir: PathBuf,
    keys: PathBuf,
    peers_dir: PathBuf,
}

impl Peers {
    async fn flush(&self) -> Result<(), BenchError> {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut self.store.connection()).await?;
        Ok(())
    }

    async fn resq(&self, n: usize) -> Result<Round, BenchError> {
        self.flush().await?;
        let client = Client::new(self.store.clone(), Arc::new(Keyring::load(&self.keys)?))?;
        let jobs: Vec<Noop> = (0..n).map(|_| Noop { pad: String::new() }).collect();
        let start = Instant::now();
        for chunk in jobs.chunks(10_000) {
            client.enqueue_bulk(chunk).await?;
        }
        let enqueue = n as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut worker = Command::new(&self.args.resq)
            .args(["worker", "--queues", "default", "--burst"])
            .args(["--concurrency", &self.args.concurrency.to_string()])
            .env("RESQ_REDIS_URL", self.redis.url())
            .env("RESQ_KEYS_FILE", &self.keys)
            .env("RESQ_LOG", "warn")
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let peak = watch(&mut worker, || false)?;
        let process = n as f64 / start.elapsed().as_secs_f64();
        let processed: Option<u64> = redis::cmd("GET")
            .arg("resque:stat:processed")
            .query_async(&mut self.store.connection())
            .await?;
        if processed != Some(n as u64) {
            return Err(format!("resq processed {processed:?} of {n} jobs").into());
        }
        Ok(Round {
            enqueue,
            process,
            rss_mb: peak as f64 / 1024.0,
        })
    }

    /// The server's own unpipelined LPOP rate (redis-benchmark's defaults:
    /// 50 clients, one command each at a time).
    fn lpop(&self) -> Result<f64, BenchError> {
        let out = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &self.redis.port().to_string()])
            .args(["-t", "lpop", "-n", "200000", "-q"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // Progress lines end in \r; the last one is the result:
        // "LPOP: 123456.79 requests per second, p50=0.2 msec"
        text.rsplit('\r')
            .next()
            .unwrap_or_default()
            .split(':')
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("redis-benchmark printed {text:?}").into())
    }

    async fn sidekiq(&self, n: usize) -> Result<Round, BenchError> {
        self.flush().await?;
        let here = self.peers_dir.join("sidekiq");
        let enqueue = rate_from(
            Command::new("ruby")
                .arg("enqueue.rb")
                .arg(n.to_string())
                .env("REDIS_URL", self.redis.url())
                .current_dir(&here),
        )?;
        let done = self.dir.join("sidekiq.done");
        let _ = std::fs::remove_file(&done);
        let mut worker = Command::new("sidekiq")
            .args(["-r", "./job.rb", "-q", "default"])
            .env("REDIS_URL", self.redis.url())
            .env("BENCH_JOBS", n.to_string())
            .env("BENCH_DONE", &done)
            .current_dir(&here)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let peak = watch(&mut worker, || {
            std::fs::read_to_string(&done).is_ok_and(|t| !t.trim().is_empty())
        })?;
        let process = std::fs::read_to_string(&done)?.trim().parse()?;
        Ok(Round {
            enqueue,
            process,
            rss_mb: peak as f64 / 1024.0,
        })
    }

    async fn bullmq(&self, n: usize) -> Result<Round, BenchError> {
        self.flush().await?;
        let here = self.peers_dir.join("bullmq");
        let enqueue = rate_from(
            Command::new("node")
                .args(["enqueue.mjs", &self.redis.url(), &n.to_string()])
                .current_dir(&here),
        )?;
        let out = self.dir.join("bullmq.out");
        let mut worker = Command::new("node")
            .args(["work.mjs", &self.redis.url(), &n.to_string()])
            .arg(self.args.bullmq_concurrency.to_string())
            .current_dir(&here)
            .stdout(std::fs::File::create(&out)?)
            .stderr(Stdio::null())
            .spawn()?;
        let peak = watch(&mut worker, || false)?;
        let process = std::fs::read_to_string(&out)?.trim().parse()?;
        Ok(Round {
            enqueue,
            process,
            rss_mb: peak as f64 / 1024.0,
        })
    }
}

/// Runs a producer script that prints its rate (jobs/s) on its last line.
fn rate_from(command: &mut Command) -> Result<f64, BenchError> {
    let out = command.stderr(Stdio::null()).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("{command:?} printed {text:?}").into())
}

fn main() -> std::process::ExitCode {
    resq_bench::run_main(run(parse_args()))
}

fn version(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

async fn run(mut args: Args) -> Result<(), BenchError> {
    args.resq = args.resq.canonicalize().map_err(|_| {
        format!(
            "{} not found: build it with `cargo build --release -p resq-cli`",
            args.resq.display()
        )
    })?;
    let peers_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers");
    let redis = LocalRedis::start()?;
    let store = Arc::new(RedisStore::connect(&RedisConfig::new(redis.url()), "resque").await?);
    let dir = std::env::temp_dir().join(format!("resq-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _tmp = TempDirGuard(dir.clone());
    let keys = write_keys(&dir)?;
    let (n, runs) = (args.jobs, args.runs.max(1));
    let peers = Peers {
        args,
        redis,
        store,
        dir,
        keys,
        peers_dir,
    };
    let (mut resq, mut sidekiq, mut bullmq, mut lpop) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=runs {
        eprintln!("round {round} of {runs}: resq, redis-benchmark, Sidekiq, BullMQ");
        resq.push(peers.resq(n).await?);
        lpop.push(peers.lpop()?);
        sidekiq.push(peers.sidekiq(n).await?);
        bullmq.push(peers.bullmq(n).await?);
    }
    let resq_process = Figure::of(resq.iter().map(|r| r.process).collect()).median;
    let resq_enqueue = Figure::of(resq.iter().map(|r| r.enqueue).collect()).median;
    let mut report = resq_bench::Report::default();
    report.line(format!(
        "# resq beside its peers ({n} no-op jobs, {runs} rounds: median [min..max])\n"
    ));
    report.line(format!(
        "machine: {} cores; {}; {}; Sidekiq {}; BullMQ {} on Node {}\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        version("redis-server", &["--version"]),
        version("ruby", &["--version"]),
        version("ruby", &["-rsidekiq", "-e", "puts Sidekiq::VERSION"]),
        version(
            "node",
            &[
                "-p",
                "require('./bench/peers/bullmq/node_modules/bullmq/package.json').version"
            ]
        ),
        version("node", &["--version"]),
    ));
    report.line("| system | bulk enqueue (jobs/s) | resq ÷ it | process, 1 worker process (jobs/s) | resq ÷ it | worker peak RSS (MB) |".into());
    report.line("|---|---|---|---|---|---|".into());
    let concurrency = peers.args.concurrency;
    let bullmq_concurrency = peers.args.bullmq_concurrency;
    for (name, rounds) in [
        (format!("resq, signed + validated (concurrency {concurrency})"), &resq),
        ("Sidekiq (its default concurrency, 10)".to_string(), &sidekiq),
        (format!("BullMQ (concurrency {bullmq_concurrency})"), &bullmq),
    ] {
        let enqueue = Figure::of(rounds.iter().map(|r| r.enqueue).collect());
        let process = Figure::of(rounds.iter().map(|r| r.process).collect());
        let rss = Figure::of(rounds.iter().map(|r| r.rss_mb).collect());
        report.line(format!(
            "| {name} | {} | {:.1}x | {} | {:.1}x | {} |",
            enqueue.rate(),
            resq_enqueue / enqueue.median.max(1.0),
            process.rate(),
            resq_process / process.median.max(1.0),
            rss.plain("")
        ));
    }
    let lpop = Figure::of(lpop);
    report.line(format!(
        "\nThe same server's unpipelined `redis-benchmark -t lpop` (50 clients): {} ops/s; resq processes {:.2}x that.",
        lpop.rate(),
        resq_process / lpop.median.max(1.0)
    ));
    report.write("peers.md");
    Ok(())
}
