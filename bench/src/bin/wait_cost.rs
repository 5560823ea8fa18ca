//! What `redis.wait_replicas` costs: a private master and one replica on
//! loopback, and the same work with `wait_replicas` 0 and 1, interleaved
//! run by run (median [min..max] of `--runs`):
//!
//! - one enqueue at a time from one task: its latency, p50 and p99 (µs);
//! - enqueue one by one from `--tasks` concurrent tasks (jobs/s): the
//!   store's acknowledged writes share one connection, and `WAIT` blocks it
//!   until the replica answers, so these queue behind each other;
//! - bulk enqueue, 1,000 jobs a call (jobs/s): one `WAIT` a call;
//! - processing `--jobs` prefilled no-op jobs with an in-process worker of
//!   `--concurrency` slots, burst mode (jobs/s): one `WAIT` per ack batch
//!   (and requeue).
//!
//! All signed, through `resq::Client` and `resq::Worker` (the code
//! `resq worker` runs). On loopback the replica answers in microseconds: on
//! a network each `WAIT` adds at least one round trip to the replica.
//!
//! `cargo run --release -p resq-bench --bin wait_cost -- [--jobs N]
//! [--runs N] [--tasks N] [--concurrency N]` (defaults 50,000, 3, 64, 256);
//! writes `bench/results/wait.md`. Run on purpose, never in the suite;
//! debug-build figures mean nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use local_redis::{LocalRedis, Options};
use resq::{Client, Control, JobQueues, Keyring, Registry, Worker, WorkerConfig};
use resq_bench::{flag_count, BenchError, Figure, Noop};
use resq_redis::{RedisConfig, RedisStore, WaitReplicas};

struct Args {
    jobs: usize,
    runs: usize,
    tasks: usize,
    concurrency: usize,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let number = |flag: &str, default: usize| flag_count(&argv, flag, default);
    Args {
        jobs: number("--jobs", 50_000),
        runs: number("--runs", 3),
        tasks: number("--tasks", 64),
        concurrency: number("--concurrency", 256),
    }
}

/// A replica's first sync waits 5 s for more replicas by default.
fn no_sync_delay() -> Vec<String> {
    vec!["--repl-diskless-sync-delay".into(), "0".into()]
}

/// Until a write on the master is acknowledged by its replica.
async fn replica_acknowledges(master: &LocalRedis) -> Result<(), BenchError> {
    let mut conn = redis::Client::open(master.url())?
        .get_multiplexed_async_connection()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, acked): ((), u32) = redis::pipe()
            .set("probe", "x")
            .cmd("WAIT")
            .arg(1)
            .arg(100)
            .query_async(&mut conn)
            .await?;
        if acked >= 1 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the replica never acknowledged a write".into());
        }
    }
}

struct Bench {
    args: Args,
    master: LocalRedis,
    keyring: Arc<Keyring>,
}

impl Bench {
    /// A store on the master, its acknowledged writes waiting for `wait` replicas.
    async fn store(&self, wait: u32) -> Result<Arc<RedisStore>, BenchError> {
        let mut config = RedisConfig::new(self.master.url());
        config.wait = (wait > 0).then_some(WaitReplicas {
            replicas: wait,
            timeout: Duration::from_millis(1000),
        });
        Ok(Arc::new(RedisStore::connect(&config, "resque").await?))
    }

    fn client(&self, store: &Arc<RedisStore>) -> Result<Client, BenchError> {
        Ok(Client::new(store.clone(), Arc::clone(&self.keyring))?)
    }

    async fn flush(&self) -> Result<(), BenchError> {
        let mut conn = redis::Client::open(self.master.url())?
            .get_multiplexed_async_connection()
            .await?;
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await?;
        Ok(())
    }

    async fn waits(&self) -> Result<u64, BenchError> {
        let mut conn = redis::Client::open(self.master.url())?
            .get_multiplexed_async_connection()
            .await?;
        let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    /// One enqueue at a time: p50 and p99 of `n` enqueues, in µs.
    async fn latency(&self, wait: u32, n: usize) -> Result<(f64, f64), BenchError> {
        self.flush().await?;
        let store = self.store(wait).await?;
        let client = self.client(&store)?;
        let mut us = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            client.enqueue(&Noop { pad: String::new() }).await?;
            us.push(start.elapsed().as_secs_f64() * 1e6);
        }
        us.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| us.get(((us.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(0.0);
        Ok((at(0.5), at(0.99)))
    }

    /// `jobs` enqueues, one job each, from `tasks` tasks: jobs/s.
    async fn one_by_one(&self, wait: u32) -> Result<f64, BenchError> {
        self.flush().await?;
        let store = self.store(wait).await?;
        let per_task = self.args.jobs / self.args.tasks;
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.args.tasks {
            let client = self.client(&store)?;
            tasks.spawn(async move {
                for _ in 0..per_task {
                    client.enqueue(&Noop { pad: String::new() }).await?;
                }
                Ok::<(), resq::EnqueueError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok((per_task * self.args.tasks) as f64 / start.elapsed().as_secs_f64())
    }

    /// `jobs` enqueued 1,000 a call: jobs/s.
    async fn bulk(&self, wait: u32) -> Result<f64, BenchError> {
        self.flush().await?;
        let store = self.store(wait).await?;
        let client = self.client(&store)?;
        let batch: Vec<Noop> = (0..1000).map(|_| Noop { pad: String::new() }).collect();
        let calls = self.args.jobs.div_ceil(1000);
        let start = Instant::now();
        for _ in 0..calls {
            client.enqueue_bulk(&batch).await?;
        }
        Ok((calls * 1000) as f64 / start.elapsed().as_secs_f64())
    }

    /// `jobs` prefilled (without waiting), then worked by one burst worker
    /// whose acks wait for `wait` replicas: jobs/s, and WAITs per 1,000 jobs.
    async fn process(&self, wait: u32) -> Result<(f64, f64), BenchError> {
        self.flush().await?;
        let filler = self.store(0).await?;
        let policy = resq::Policy::new(Arc::clone(&self.keyring))?;
        for start in (0..self.args.jobs).step_by(10_000) {
            let n = (self.args.jobs - start).min(10_000);
            let args: Vec<Vec<serde_json::Value>> = (0..n).map(|_| vec![serde_json::json!({"pad": ""})]).collect();
            let jobs = policy.seal_many("Noop", "default", args, resq::SealOptions::default())?;
            filler.enqueue(&jobs).await?;
        }
        let store = self.store(wait).await?;
        let mut config = WorkerConfig::new("default".parse()?, Arc::clone(&self.keyring));
        config.concurrency = self.args.concurrency;
        config.burst = true;
        let (_control, rx) = Control::new();
        let waits_before = self.waits().await?;
        let start = Instant::now();
        let report = Worker::new(store, Registry::new().register::<Noop>(), config)
            .run(rx)
            .await?;
        let rate = report.processed as f64 / start.elapsed().as_secs_f64();
        if report.processed != self.args.jobs as u64 {
            return Err(format!("{} jobs processed, expected {}", report.processed, self.args.jobs).into());
        }
        let waits = self.waits().await?.saturating_sub(waits_before);
        Ok((rate, waits as f64 * 1000.0 / self.args.jobs as f64))
    }
}

async fn run(args: Args) -> Result<(), BenchError> {
    let master = LocalRedis::start_with(Options {
        extra_args: no_sync_delay(),
        ..Options::default()
    })?;
    let mut replica_args = vec!["--replicaof".into(), "127.0.0.1".into(), master.port().to_string()];
    replica_args.extend(no_sync_delay());
    let _replica = LocalRedis::start_with(Options {
        extra_args: replica_args,
        ..Options::default()
    })?;
    replica_acknowledges(&master).await?;
    let bench = Bench {
        args,
        master,
        keyring: Arc::new(Keyring::ephemeral()),
    };
    let runs = bench.args.runs;
    let version = resq_bench::redis_version();
    let mut report = resq_bench::Report::default();
    report.line(format!(
        "# what redis.wait_replicas costs ({} no-op jobs, {runs} runs each, interleaved: median [min..max])\n",
        bench.args.jobs
    ));
    report.line(format!(
        "machine: {} cores; {version}; a master and one replica on loopback; {} build\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        if cfg!(debug_assertions) {
            "a DEBUG (meaningless)"
        } else {
            "a release"
        },
    ));
    // Per wait setting: (p50, p99, one by one, bulk, process, WAITs per 1,000 processed).
    type Series = [Vec<f64>; 6];
    let mut series: [Series; 2] = Default::default();
    for run in 0..runs {
        for (i, wait) in [0u32, 1].into_iter().enumerate() {
            let (p50, p99) = bench.latency(wait, 2000).await?;
            let one = bench.one_by_one(wait).await?;
            let bulk = bench.bulk(wait).await?;
            let (process, waits) = bench.process(wait).await?;
            eprintln!(
                "run {}/{runs}, wait_replicas {wait}: p50 {p50:.0} µs, p99 {p99:.0} µs, one by one {one:.0}/s, bulk \
                 {bulk:.0}/s, process {process:.0}/s ({waits:.1} WAITs per 1,000 jobs)",
                run + 1
            );
            for (s, v) in series[i].iter_mut().zip([p50, p99, one, bulk, process, waits]) {
                s.push(v);
            }
        }
    }
    report.line(format!(
        "| wait_replicas | one enqueue, p50 / p99 (µs) | enqueue one by one, {} tasks (jobs/s) | bulk enqueue, 1,000 a call (jobs/s) | process, 1 worker of {} slots (jobs/s) | WAITs per 1,000 jobs processed |",
        bench.args.tasks, bench.args.concurrency
    ));
    report.line("|---|---|---|---|---|---|".into());
    for (wait, s) in series.into_iter().enumerate() {
        let [p50, p99, one, bulk, process, waits] = s.map(Figure::of);
        report.line(format!(
            "| {wait} | {:.0} / {:.0} | {} | {} | {} | {:.1} |",
            p50.median,
            p99.median,
            one.rate(),
            bulk.rate(),
            process.rate(),
            waits.median
        ));
    }
    report.write("wait.md");
    Ok(())
}

fn main() -> std::process::ExitCode {
    resq_bench::run_main(run(parse_args()))
}
