//! resq's chaos harness: `scripts/chaos` (run on purpose; its short mode
//! runs in the test suite as crates/resq-cli/tests/chaos.rs).
//!
//! Under a steady load of signed jobs (the shipped `Record` job, which
//! leaves a line per run), each fault class starts its own private Redis
//! and real `resq worker` processes, and counts what happened to every job:
//!
//! - (a) `kill -9` of random workers, cycle after cycle, isolation off and on;
//! - (b) Redis with AOF (`appendfsync always`) restarted gracefully, and
//!   killed -9 and restarted;
//! - (c) a TCP proxy between every resq process and Redis that stalls,
//!   drops and resets connections;
//! - (d) clock skew of ±5 minutes between producer and worker (libfaketime):
//!   expiry, scheduling and cron, each a checked outcome;
//! - (e) Redis at `maxmemory` with `noeviction`.
//!
//! Prints a table (a full run also writes it to `bench/results/chaos.md`). Exits non-zero
//! when a job was lost or a check did not hold.

#[path = "chaos/faults.rs"]
mod faults;
#[path = "chaos/lab.rs"]
mod lab;
#[path = "chaos/proxy.rs"]
mod proxy;

use std::path::PathBuf;
use std::time::Instant;

use faults::Plan;
use lab::{Error, Rng, Tally};

const FAULTS: [&str; 5] = ["kill", "restart", "proxy", "skew", "maxmemory"];

struct Args {
    resq: PathBuf,
    short: bool,
    cycles: Option<u64>,
    faults: Vec<String>,
    seed: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: chaos [--short] [--cycles N] [--faults kill,restart,proxy,skew,maxmemory] [--seed N] [--resq PATH]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        resq: PathBuf::from("target/release/resq"),
        short: false,
        cycles: None,
        faults: FAULTS.iter().map(|s| s.to_string()).collect(),
        seed: Rng::seed(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned();
        match argv[i].as_str() {
            "--short" => {
                a.short = true;
                i += 1;
                continue;
            }
            "--resq" => a.resq = PathBuf::from(value.unwrap_or_else(|| usage())),
            "--cycles" => a.cycles = Some(value.and_then(|v| v.parse().ok()).unwrap_or_else(|| usage())),
            "--seed" => a.seed = value.and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            "--faults" => {
                a.faults = value
                    .unwrap_or_else(|| usage())
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect();
                if let Some(bad) = a.faults.iter().find(|f| !FAULTS.contains(&f.as_str())) {
                    eprintln!("unknown fault {bad:?}");
                    usage();
                }
            }
            _ => usage(),
        }
        i += 2;
    }
    a
}

fn main() -> std::process::ExitCode {
    let args = parse_args();
    let result = tokio::runtime::Runtime::new()
        .map_err(Error::from)
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("chaos: a job was lost, a duplicate is unexplained, or a check did not hold (see above)");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("chaos failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(mut args: Args) -> Result<bool, Error> {
    args.resq = args.resq.canonicalize().map_err(|_| {
        format!(
            "{} not found: build it with `cargo build --release -p resq-cli`",
            args.resq.display()
        )
    })?;
    let mut plan = if args.short {
        Plan::short(args.resq.clone(), args.seed)
    } else {
        Plan::full(args.resq.clone(), 1000, args.seed)
    };
    if let Some(n) = args.cycles {
        plan.cycles = n;
    }
    let started = Instant::now();
    let mut tallies: Vec<Tally> = Vec::new();
    for fault in &args.faults {
        let t0 = Instant::now();
        eprintln!("== {fault}");
        let result = match fault.as_str() {
            "kill" => {
                let off = faults::kill(&plan, false).await?;
                print_tally(&off, t0);
                tallies.push(off);
                let t1 = Instant::now();
                let on = faults::kill(&plan, true).await?;
                print_tally(&on, t1);
                on
            }
            "restart" => faults::restart(&plan).await?,
            "proxy" => faults::proxy(&plan).await?,
            "skew" => faults::skew(&plan).await?,
            "maxmemory" => faults::maxmemory(&plan).await?,
            _ => unreachable!("checked when parsed"),
        };
        if fault != "kill" {
            print_tally(&result, t0);
        }
        tallies.push(result);
    }
    let report = render(&tallies, &args, started.elapsed().as_secs());
    println!("\n{report}");
    // The short mode is a smoke test: only a full run is kept.
    if !args.short {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/chaos.md");
        if std::fs::write(&path, &report).is_ok() {
            println!("wrote {}", path.display());
        }
    }
    Ok(tallies.iter().all(Tally::ok))
}

fn print_tally(t: &Tally, since: Instant) {
    eprintln!(
        "{}: enqueued {} succeeded {} lost {} run more than once {} (started more than once {}) refused {} \
         failed [{}] stuck {} ({} s)",
        t.fault,
        t.enqueued,
        t.succeeded,
        t.lost,
        t.ran_twice,
        t.started_twice,
        t.refused,
        t.failed_cell(),
        t.stuck,
        since.elapsed().as_secs()
    );
    for (check, held) in &t.checks {
        eprintln!("  [{}] {check}", if *held { "ok" } else { "FAILED" });
    }
    for note in &t.notes {
        eprintln!("  note: {note}");
    }
    if !t.lost_ids.is_empty() {
        eprintln!("  LOST (first 20): {:?}", t.lost_ids);
    }
    if !t.twice_unexplained.is_empty() {
        eprintln!("  UNEXPLAINED duplicates: {:?}", t.twice_unexplained);
    }
}

fn render(tallies: &[Tally], args: &Args, secs: u64) -> String {
    let mut s = String::new();
    let redis = resq_bench::redis_version();
    s.push_str("# resq under faults (`scripts/chaos`)\n\n");
    s.push_str(&format!(
        "`scripts/chaos{}{}` (seed {}), {} s in all; {} cores; {redis}.\n\n",
        if args.short { " --short" } else { "" },
        args.cycles.map(|n| format!(" --cycles {n}")).unwrap_or_default(),
        args.seed,
        secs,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    ));
    s.push_str(
        "Each fault class runs on its own private redis-server with the release `resq worker` binary, \
         fed signed `Record` jobs by a producer in the harness (the library's policy and Redis store). \
         `Record` appends a line when it starts and when it ends, so every run is counted. \
         **enqueued**: the store said yes (perhaps after retrying the same signed bytes); \
         **succeeded**: ran to the end at least once; **lost**: enqueued, never ran to the end, and in \
         neither the failed nor the expired list; **run more than once**: ran to the end twice or more \
         (how many of those had every earlier run in a process the harness killed, or in a worker a reaper \
         had judged dead, and how many nothing explains); **refused**: typed enqueue errors (nothing \
         stored); **failed list**: records of these jobs in `resque:failed`, by reason.\n\n",
    );
    s.push_str(
        "| fault | enqueued | succeeded | lost | run more than once (killed / judged dead / unexplained) | \
         started more than once | refused (typed) | failed list, by reason | stuck |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for t in tallies {
        s.push_str(&format!(
            "| {} | {} | {} | **{}** | {} ({} / {} / {}) | {} | {} | {} | {} |\n",
            t.fault,
            t.enqueued,
            t.succeeded,
            t.lost,
            t.ran_twice,
            t.twice_killed,
            t.twice_judged_dead,
            t.unexplained(),
            t.started_twice,
            t.refused,
            t.failed_cell(),
            t.stuck
        ));
    }
    s.push_str("\n## What each run did, and what it found\n");
    for t in tallies {
        s.push_str(&format!("\n### {}\n\n{}\n", t.fault, t.detail));
        if t.enqueue_retried > 0 || t.ambiguous > 0 {
            s.push_str(&format!(
                "\n- the producer retried {} enqueues with the same signed bytes until the store answered; \
                 {} gave up (stored or not, unknown; {} of them ran)\n",
                t.enqueue_retried, t.ambiguous, t.ambiguous_ran
            ));
        }
        if t.refused > 0 {
            s.push_str(&format!(
                "\n- refused at enqueue: {:?}; refused and yet ran: {}\n",
                t.refused_kinds, t.refused_but_ran
            ));
        }
        if t.other_runs > 0 {
            s.push_str(&format!(
                "\n- runs of jobs this producer did not enqueue: {}\n",
                t.other_runs
            ));
        }
        for (check, held) in &t.checks {
            s.push_str(&format!("\n- {} {check}\n", if *held { "✔" } else { "✘ **FAILED**:" }));
        }
        for note in &t.notes {
            s.push_str(&format!("\n- {note}\n"));
        }
        if !t.lost_ids.is_empty() {
            s.push_str(&format!("\n- **lost** (first 20): {:?}\n", t.lost_ids));
        }
        if !t.twice_unexplained.is_empty() {
            s.push_str(&format!(
                "\n- **duplicates nothing explains** (first 20): {:?}\n",
                t.twice_unexplained
            ));
        }
    }
    s
}
