//! The real binary loses no job: kill -9 in the middle of 1,000 slow jobs, start
//! another worker, and every job completes. Signals behave as Resque's do.

mod common;

use std::collections::HashMap;
use std::io::Read;

use common::*;
use serde_json::Value;

/// Counts `job done` log lines per job id across the workers' JSON logs.
fn done_counts(dir: &std::path::Path) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    for path in log_paths(dir) {
        for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if v["fields"]["message"] == "job done" {
                if let Some(id) = v["fields"]["id"].as_str() {
                    *counts.entry(id.to_string()).or_default() += 1;
                }
            }
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_the_middle_of_1000_slow_jobs_loses_nothing() {
    let env = Env::start().await;
    let jobs: Vec<Sleep> = (0..1000).map(|_| Sleep { ms: 40 }).collect();
    let ids = env.client().enqueue_bulk(&jobs).await.unwrap();

    let mut first = env.spawn_worker(&["--queues", "default", "--concurrency", "16"]);
    env.wait_until("the first worker is mid-way, jobs in flight", || async {
        env.processed().await >= 250 && env.in_flight().await > 0
    })
    .await;
    signal(&first, libc::SIGKILL);
    first.wait().unwrap();
    let after_kill = env.processed().await;
    let in_flight = env.in_flight().await;
    assert!(in_flight > 0, "the kill should catch jobs in flight");
    assert!(after_kill < 1000);

    // The dead worker's liveness mark (900 ms TTL) lapses; a burst worker then
    // recovers its jobs when it starts, before it can find the queue empty.
    env.wait_until("the dead worker's liveness lapses", || async {
        env.keys("resque:resq:alive:*").await.is_empty()
    })
    .await;
    let mut second = env.spawn_worker(&["--queues", "default", "--concurrency", "16", "--burst"]);
    let status = wait_child(&mut second);
    assert!(status.success());

    assert_eq!(env.llen("resque:queue:default").await, 0);
    assert!(
        env.keys("resque:resq:inflight:*").await.is_empty(),
        "nothing left in flight"
    );
    assert!(
        env.keys("resque:resq:inflight-batch:*").await.is_empty(),
        "no in-flight batch left"
    );
    assert_eq!(env.llen("resque:failed").await, 0);
    assert_eq!(env.processed().await, 1000, "each job acked exactly once");

    let counts = done_counts(env.dir.path());
    let missing: Vec<&String> = ids.iter().filter(|id| !counts.contains_key(*id)).collect();
    assert!(missing.is_empty(), "lost jobs: {missing:?}");
    let duplicates: u32 = counts.values().map(|c| c - 1).sum();
    // Duplicates are allowed (at-least-once) and reported; losses are not.
    println!("kill -9: {in_flight} jobs were in flight, {duplicates} ran twice, 0 lost");
    assert!(duplicates as u64 <= in_flight);
}

#[tokio::test(flavor = "multi_thread")]
async fn term_stops_now_and_puts_running_jobs_back() {
    let env = Env::start().await;
    let jobs: Vec<Sleep> = (0..3).map(|_| Sleep { ms: 60_000 }).collect();
    let ids = env.client().enqueue_bulk(&jobs).await.unwrap();
    let mut worker = env.spawn_worker(&["--queues", "default", "--concurrency", "3"]);
    env.wait_until("all three running", || async {
        env.llen("resque:queue:default").await == 0
    })
    .await;
    signal(&worker, libc::SIGTERM);
    let status = wait_child(&mut worker);
    assert!(status.success());
    let mut out = String::new();
    worker.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(out.contains("requeued 3"), "{out}");
    let queue = env.lrange("resque:queue:default").await;
    let back: Vec<String> = queue
        .iter()
        .map(|p| {
            serde_json::from_str::<Value>(p).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(back, ids, "back at the head, in order");
    assert_eq!(env.processed().await, 0);
    assert!(env.keys("resque:worker*").await.is_empty(), "unregistered");
}

#[tokio::test(flavor = "multi_thread")]
async fn quit_finishes_running_jobs_then_exits() {
    let env = Env::start().await;
    let jobs: Vec<Sleep> = (0..2).map(|_| Sleep { ms: 700 }).collect();
    env.client().enqueue_bulk(&jobs).await.unwrap();
    let mut worker = env.spawn_worker(&["--queues", "default", "--concurrency", "2"]);
    env.wait_until("both running", || async { env.llen("resque:queue:default").await == 0 })
        .await;
    assert_eq!(env.processed().await, 0);
    signal(&worker, libc::SIGQUIT);
    assert!(wait_child(&mut worker).success());
    assert_eq!(env.processed().await, 2, "QUIT let both jobs finish");
    assert_eq!(env.llen("resque:queue:default").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn usr2_pauses_and_cont_resumes() {
    let env = Env::start().await;
    let mut worker = env.spawn_worker(&["--queues", "default", "--concurrency", "2"]);
    env.wait_until("worker registered", || async {
        !env.keys("resque:worker:*:started").await.is_empty()
    })
    .await;

    // The process title that same-host Ruby workers look for.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", worker.id())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.starts_with(&format!("resque-{}-resq: ", env!("CARGO_PKG_VERSION"))),
        "{cmdline}"
    );
    assert!(!cmdline.contains("resque-web"));

    signal(&worker, libc::SIGUSR2);
    // Paused: it says so once it has stopped fetching.
    env.wait_until("listed as paused", || async {
        let workers: Value = serde_json::from_slice(&env.run(&["workers", "--json"]).stdout).unwrap();
        workers[0]["paused"] == true
    })
    .await;
    let text = stdout(&env.run(&["workers"]));
    assert!(text.contains("  paused"), "{text}");
    env.client().enqueue(&Sleep { ms: 1 }).await.unwrap();
    assert_eq!(env.llen("resque:queue:default").await, 1, "a paused worker took a job");
    signal(&worker, libc::SIGCONT);
    env.wait_until("resumed and processed", || async { env.processed().await == 1 })
        .await;
    let workers: Value = serde_json::from_slice(&env.run(&["workers", "--json"]).stdout).unwrap();
    assert_eq!(workers[0]["paused"], false);
    signal(&worker, libc::SIGTERM);
    assert!(wait_child(&mut worker).success());
}

/// The throughput path keeps the guarantee: kill -9 a worker running no-op
/// jobs as fast as it can (large batches in flight) and nothing is lost.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_full_speed_loses_nothing() {
    let env = Env::start().await;
    let jobs: Vec<Noop> = (0..20_000).map(|_| Noop { pad: String::new() }).collect();
    let ids = env.client().enqueue_bulk(&jobs).await.unwrap();
    let mut first = env.spawn_worker(&["--queues", "default", "--concurrency", "256"]);
    env.wait_until("the first worker is under way, jobs in flight", || async {
        env.processed().await >= 2_000 && env.in_flight().await > 0
    })
    .await;
    signal(&first, libc::SIGKILL);
    first.wait().unwrap();
    let after_kill = env.processed().await;
    let in_flight = env.in_flight().await;
    assert!(after_kill < 20_000, "the kill came too late to test anything");
    env.wait_until("the dead worker's liveness lapses", || async {
        env.keys("resque:resq:alive:*").await.is_empty()
    })
    .await;
    let mut second = env.spawn_worker(&["--queues", "default", "--concurrency", "256", "--burst"]);
    assert!(wait_child(&mut second).success());
    assert_eq!(env.llen("resque:queue:default").await, 0);
    assert!(env.keys("resque:resq:inflight:*").await.is_empty());
    assert!(env.keys("resque:resq:inflight-batch:*").await.is_empty());
    assert_eq!(env.llen("resque:failed").await, 0);
    assert_eq!(env.processed().await, 20_000, "every job acked once");
    // The set of jobs that ran is the set enqueued: none lost, none foreign.
    let counts = done_counts(env.dir.path());
    let ran: std::collections::BTreeSet<&String> = counts.keys().collect();
    let enqueued: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ran, enqueued, "the jobs that ran are exactly the jobs enqueued");
    let duplicates: u32 = counts.values().map(|c| c - 1).sum();
    assert!(
        duplicates as u64 <= in_flight,
        "{duplicates} ran twice, {in_flight} were in flight"
    );
    println!(
        "full speed kill -9: {after_kill} acked before the kill, {in_flight} in flight, {duplicates} ran twice, 0 lost"
    );
}

/// A job that aborts the worker process (no isolation) is put back, runs
/// alone from then on, and after `--max-recoveries` more deaths goes to the
/// failed list as `poison`, with an error in the log; the jobs that were in
/// flight beside it the first time run, once each.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_kills_its_worker_ends_as_poison_and_its_neighbours_run() {
    let env = Env::start().await;
    for i in 0..5 {
        let args = if i == 2 {
            r#"{"failures":10,"how":"crash","message":"poison"}"#.to_string()
        } else {
            format!(r#"{{"message":"m{i}"}}"#)
        };
        let class = if i == 2 { "Flaky" } else { "Echo" };
        let o = env.run(&["enqueue", class, "--args", &args]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let mut deaths = 0;
    let mut last_out = String::new();
    for _ in 0..8 {
        // A new worker judges the dead one only once the fleet renewed for a
        // full liveness period; a burst worker waits for that verdict.
        env.wait_until("no live worker", || async {
            env.keys("resque:resq:alive:*").await.is_empty()
        })
        .await;
        let mut w = env.spawn_worker(&[
            "--queues",
            "default",
            "--concurrency",
            "8",
            "--burst",
            "--max-recoveries",
            "2",
        ]);
        let status = wait_child(&mut w);
        let mut out = String::new();
        w.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        if status.success() {
            last_out = out;
            break;
        }
        deaths += 1;
    }
    // One death with all five in flight, then two lone runs put back (max 2),
    // then a third lone death: poison.
    assert_eq!(deaths, 3, "{last_out}");
    assert!(last_out.contains("poisoned 1"), "{last_out}");
    assert_eq!(env.llen("resque:queue:default").await, 0);
    assert!(env.keys("resque:resq:inflight:*").await.is_empty());
    assert!(env.keys("resque:resq:inflight-batch:*").await.is_empty());
    let failed = env.lrange("resque:failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let record: Value = serde_json::from_str(&failed[0]).unwrap();
    assert_eq!(record["reason"], "poison");
    assert_eq!(record["payload"]["class"], "Flaky");
    assert_eq!(record["backtrace"].as_array().map(Vec::len), Some(3));
    // The four neighbours ran, and the poison job counts as processed once.
    assert_eq!(env.processed().await, 5);
    let logs: String = log_paths(env.dir.path())
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    let poison_line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("poison job"))
        })
        .expect("an error line for the poison job");
    assert_eq!(poison_line["level"], "ERROR");
    assert_eq!(poison_line["fields"]["failure_id"], record["failure_id"]);
    let echoes = logs.matches("\"message\":\"job done\"").count();
    assert!(echoes >= 4, "every neighbour ran: {echoes}");
}
