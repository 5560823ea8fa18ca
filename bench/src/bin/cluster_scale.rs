//! How processing divides over the masters of a Redis Cluster: the same
//! `--jobs` signed no-op jobs, spread over `--queues` queues, processed by
//! one in-process worker (the code `resq worker` runs, `--concurrency`
//! slots, the queues weighted equally so it fetches from all of them) on a
//! standalone server, then on clusters of 1, 2 and 3 masters, interleaved
//! run by run (median [min..max] of `--runs`).
//!
//! For each layout: jobs/s, and for each master its share of the jobs and
//! the Redis CPU it spent per job of its own (`INFO cpu`, user + sys,
//! before and after, less what it spends idle: a cluster's nodes ping each
//! other, measured for a second before the run), so the report shows
//! whether the work divides evenly and what one job costs a master. The queues' names are picked so each
//! master holds as many of them (a queue's keys are on the master of its
//! name's slot; many queues spread by themselves, a few need picking).
//!
//! On a 2-core machine the worker and every master share the two cores, so
//! the total cannot grow with masters: the per-master CPU per job is what
//! tells the capacity of a fleet with a core per master (see the report).
//!
//! `cargo run --release -p resq-bench --bin cluster_scale -- [--jobs N]
//! [--runs N] [--queues N] [--concurrency N]` (defaults 100,000, 3, 12,
//! 256); writes `bench/results/cluster.md`. Run on purpose, never in the
//! suite; debug-build figures mean nothing.

use std::sync::Arc;
use std::time::Instant;

use local_redis::{LocalCluster, LocalRedis, Options};
use resq::{Control, JobQueues, Keyring, Registry, Worker, WorkerConfig};
use resq_bench::{flag_count, BenchError, Figure, Noop};
use resq_redis::{ClusterConfig, Keys, RedisConfig, RedisStore};

struct Args {
    jobs: usize,
    runs: usize,
    queues: usize,
    concurrency: usize,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let number = |flag: &str, default: usize| flag_count(&argv, flag, default);
    Args {
        jobs: number("--jobs", 100_000),
        runs: number("--runs", 3),
        queues: number("--queues", 12),
        concurrency: number("--concurrency", 256),
    }
}

/// Where a run's jobs go: a standalone server, or a cluster of N masters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Standalone,
    Cluster(usize),
}

impl Layout {
    fn name(self) -> String {
        match self {
            Layout::Standalone => "standalone".into(),
            Layout::Cluster(1) => "cluster, 1 master".into(),
            Layout::Cluster(n) => format!("cluster, {n} masters"),
        }
    }
}

/// The servers of one layout, the ports of its masters, and a store on it.
struct Setup {
    _standalone: Option<LocalRedis>,
    _cluster: Option<LocalCluster>,
    masters: Vec<u16>,
    store: Arc<RedisStore>,
}

async fn setup(layout: Layout) -> Result<Setup, BenchError> {
    match layout {
        Layout::Standalone => {
            let redis = LocalRedis::start()?;
            let store = RedisStore::connect(&RedisConfig::new(redis.url()), "resque").await?;
            Ok(Setup {
                masters: vec![redis.port()],
                _standalone: Some(redis),
                _cluster: None,
                store: Arc::new(store),
            })
        }
        Layout::Cluster(n) => {
            let cluster = LocalCluster::start(n, 0, Options::default())?;
            let mut config = RedisConfig::new(cluster.nodes()[0].url());
            config.cluster = Some(ClusterConfig {
                nodes: cluster.seed_addrs(),
            });
            let store = RedisStore::connect(&config, "resque").await?;
            Ok(Setup {
                masters: cluster.master_ports(),
                _standalone: None,
                _cluster: Some(cluster),
                store: Arc::new(store),
            })
        }
    }
}

/// `count` queue names, as many on each of `masters` masters (even slot
/// ranges, as `LocalCluster` assigns them) as can be, by `CLUSTER KEYSLOT`
/// of each queue's key; any names in standalone mode.
async fn balanced_queues(store: &RedisStore, count: usize, masters: usize) -> Result<Vec<String>, BenchError> {
    let keys = store.keys();
    if !keys.is_cluster() {
        return Ok((0..count).map(|i| format!("q{i}")).collect());
    }
    let mut conn = store.connection();
    let per_master = count.div_ceil(masters);
    let mut taken = vec![0usize; masters];
    let mut names = Vec::with_capacity(count);
    for i in 0..100 * count {
        if names.len() == count {
            break;
        }
        let name = format!("q{i}");
        let slot: usize = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(keys.for_queue(&name).queue(&name))
            .query_async(&mut conn)
            .await?;
        let m = (slot * masters / 16_384).min(masters - 1);
        if taken[m] < per_master {
            taken[m] += 1;
            names.push(name);
        }
    }
    Ok(names)
}

/// A master's CPU (user + sys, seconds) and the jobs its queues hold.
async fn master_state(port: u16) -> Result<f64, BenchError> {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))?
        .get_multiplexed_async_connection()
        .await?;
    let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(field("used_cpu_user") + field("used_cpu_sys"))
}

/// The jobs waiting in a master's queues (its own keys only).
async fn master_jobs(port: u16, queues: &[String], keys: &Keys) -> Result<u64, BenchError> {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))?
        .get_multiplexed_async_connection()
        .await?;
    let mut total = 0;
    for q in queues {
        // A key of another master answers MOVED: not this master's.
        let n: redis::RedisResult<u64> = redis::cmd("LLEN")
            .arg(keys.for_queue(q).queue(q))
            .query_async(&mut conn)
            .await;
        total += n.unwrap_or(0);
    }
    Ok(total)
}

/// One run of one layout: jobs/s, and per master (share of jobs, Redis CPU
/// µs per job of its own).
async fn run_once(layout: Layout, args: &Args, keyring: &Arc<Keyring>) -> Result<(f64, Vec<(f64, f64)>), BenchError> {
    let masters = match layout {
        Layout::Standalone => 1,
        Layout::Cluster(n) => n,
    };
    let s = setup(layout).await?;
    let queues = balanced_queues(&s.store, args.queues, masters).await?;
    let policy = resq::Policy::new(Arc::clone(keyring))?;
    let per_queue = args.jobs / queues.len();
    for q in &queues {
        for start in (0..per_queue).step_by(10_000) {
            let n = (per_queue - start).min(10_000);
            let jobs = policy.seal_many(
                "Noop",
                q,
                (0..n).map(|_| vec![serde_json::json!({"pad": ""})]).collect(),
                resq::SealOptions::default(),
            )?;
            s.store.enqueue(&jobs).await?;
        }
    }
    let keys = s.store.keys().clone();
    let mut jobs_on = Vec::with_capacity(s.masters.len());
    for &port in &s.masters {
        jobs_on.push(if layout == Layout::Standalone {
            (per_queue * queues.len()) as u64
        } else {
            master_jobs(port, &queues, &keys).await?
        });
    }
    // What each master spends idle (a cluster's nodes ping each other on
    // the cluster bus): measured for a second, and taken off its CPU per job.
    let mut idle_before = Vec::with_capacity(s.masters.len());
    for &port in &s.masters {
        idle_before.push(master_state(port).await?);
    }
    let idle_start = Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let idle_s = idle_start.elapsed().as_secs_f64();
    let mut idle_rate = Vec::with_capacity(s.masters.len());
    let mut cpu_before = Vec::with_capacity(s.masters.len());
    for (i, &port) in s.masters.iter().enumerate() {
        let now = master_state(port).await?;
        idle_rate.push((now - idle_before[i]) / idle_s);
        cpu_before.push(now);
    }
    let spec = queues.iter().map(|q| format!("{q}:1")).collect::<Vec<_>>().join(",");
    let mut config = WorkerConfig::new(spec.parse()?, Arc::clone(keyring));
    config.concurrency = args.concurrency;
    config.burst = true;
    let (_control, rx) = Control::new();
    let start = Instant::now();
    let report = Worker::new(s.store.clone(), Registry::new().register::<Noop>(), config)
        .run(rx)
        .await?;
    let took = start.elapsed().as_secs_f64();
    let rate = report.processed as f64 / took;
    let total = (per_queue * queues.len()) as u64;
    if report.processed != total {
        return Err(format!("{} jobs processed, expected {total}", report.processed).into());
    }
    let mut per_master = Vec::with_capacity(s.masters.len());
    for (i, &port) in s.masters.iter().enumerate() {
        let cpu = (master_state(port).await? - cpu_before[i] - idle_rate[i] * took).max(0.0);
        let jobs = jobs_on[i].max(1) as f64;
        per_master.push((jobs / total as f64, cpu * 1e6 / jobs));
    }
    // The busiest master first, so runs line up.
    per_master.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok((rate, per_master))
}

async fn run(args: Args) -> Result<(), BenchError> {
    let keyring = Arc::new(Keyring::ephemeral());
    let layouts = [
        Layout::Standalone,
        Layout::Cluster(1),
        Layout::Cluster(2),
        Layout::Cluster(3),
    ];
    // Per layout: jobs/s of each run; per master, shares and CPU per job.
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); layouts.len()];
    let mut shares: Vec<Vec<Vec<f64>>> = vec![Vec::new(); layouts.len()];
    let mut cpus: Vec<Vec<Vec<f64>>> = vec![Vec::new(); layouts.len()];
    for run in 0..args.runs {
        for (i, layout) in layouts.iter().enumerate() {
            let (rate, per_master) = run_once(*layout, &args, &keyring).await?;
            eprintln!(
                "run {}/{}, {}: {rate:.0} jobs/s; per master (share, Redis CPU µs/job): {:?}",
                run + 1,
                args.runs,
                layout.name(),
                per_master
                    .iter()
                    .map(|(s, c)| format!("{:.0}%, {c:.2}", s * 100.0))
                    .collect::<Vec<_>>()
            );
            rates[i].push(rate);
            shares[i].resize(per_master.len(), Vec::new());
            cpus[i].resize(per_master.len(), Vec::new());
            for (m, (share, cpu)) in per_master.into_iter().enumerate() {
                shares[i][m].push(share * 100.0);
                cpus[i][m].push(cpu);
            }
        }
    }
    let mut report = resq_bench::Report::default();
    report.line(format!(
        "# processing over the masters of a Redis Cluster ({} signed no-op jobs over {} queues, one worker of {} \
         slots, {} runs each, interleaved: median [min..max])\n",
        args.jobs, args.queues, args.concurrency, args.runs
    ));
    report.line(format!(
        "machine: {} cores; {}; every server on loopback, no replicas; {} build\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        resq_bench::redis_version(),
        if cfg!(debug_assertions) {
            "a DEBUG (meaningless)"
        } else {
            "a release"
        },
    ));
    report.line("| layout | processed (jobs/s) | per master: share of the jobs, Redis CPU per job of its own |".into());
    report.line("|---|---|---|".into());
    let mut cpu_per_job = Vec::new();
    for (i, layout) in layouts.iter().enumerate() {
        let per_master: Vec<String> = shares[i]
            .iter()
            .zip(&cpus[i])
            .map(|(share, cpu)| {
                let (share, cpu) = (Figure::of(share.clone()), Figure::of(cpu.clone()));
                cpu_per_job.push((layout.name(), cpu.median));
                format!("{:.0}%, {}", share.median, cpu.plain(" µs"))
            })
            .collect();
        report.line(format!(
            "| {} | {} | {} |",
            layout.name(),
            Figure::of(rates[i].clone()).rate(),
            per_master.join("; ")
        ));
    }
    // On paper: a master with a core of its own does 1e6 / (its CPU per
    // job) jobs a second, and the queues divide the jobs over the masters.
    let three: Vec<f64> = cpu_per_job
        .iter()
        .filter(|(name, _)| name == &Layout::Cluster(3).name())
        .map(|(_, cpu)| *cpu)
        .collect();
    if let Some(worst) = three.iter().copied().reduce(f64::max).filter(|w| *w > 0.0) {
        report.line(String::new());
        report.line(format!(
            "on paper, with a core per master: each master of the 3 spends at most {worst:.2} µs of Redis CPU a job, \
             so it serves about {:.0} jobs/s of its queues, and the 3 together about {:.0} jobs/s, if the workers \
             (about 8 µs of CPU a job each, a core per 125,000 jobs/s) are given the cores for it",
            1e6 / worst,
            3.0 * 1e6 / worst
        ));
    }
    report.write("cluster.md");
    Ok(())
}

fn main() -> std::process::ExitCode {
    resq_bench::run_main(run(parse_args()))
}
