//! A worker whose Redis goes away neither spins nor exits: while the server
//! is down it waits on its backoff (its CPU time over the outage stays under
//! 1% of the outage), and once the server is back it resumes at its next
//! retry (at most one more failed try is logged). The outage lasts
//! `RESQ_TEST_OUTAGE_SECS` (20 s by default; the issue's 5 minutes is
//! `RESQ_TEST_OUTAGE_SECS=300`).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// User plus system CPU time of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the worker's /proc stat");
    // Fields after the command's closing parenthesis: utime is the 14th
    // field of the line, the 12th after it.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

fn log_text(env: &Env) -> String {
    log_paths(env.dir.path())
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_waits_out_a_redis_outage_without_spinning_and_resumes_at_its_next_try() {
    let outage = Duration::from_secs(
        std::env::var("RESQ_TEST_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let mut env = Env::start().await;
    let mut worker = env.spawn_worker(&["--queues", "default", "--concurrency", "8"]);
    let o = env.run(&["enqueue", "Echo", "--args", r#"{"message":"before"}"#]);
    assert!(o.status.success(), "{}", stderr(&o));
    env.wait_until("the first job ran", || async { env.processed().await == 1 })
        .await;

    env.redis.kill();
    let (cpu_before, wall) = (cpu_time(worker.id()), Instant::now());
    tokio::time::sleep(outage).await;
    let used = cpu_time(worker.id()) - cpu_before;
    let waited = wall.elapsed();
    assert!(worker.try_wait().unwrap().is_none(), "the worker is still running");
    println!(
        "outage {waited:?}: the worker used {used:?} of CPU ({:.3}%)",
        used.as_secs_f64() * 100.0 / waited.as_secs_f64()
    );
    assert!(
        used.as_secs_f64() < waited.as_secs_f64() / 100.0,
        "the worker spun while Redis was away: {used:?} of CPU in {waited:?}"
    );

    let seen = log_text(&env).len();
    env.redis.restart().expect("redis starts again on its port");
    // The test's own connection reconnects on its first use after the restart.
    for _ in 0..100 {
        let ping: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut env.conn()).await;
        if ping.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let o = env.run(&["enqueue", "Echo", "--args", r#"{"message":"after"}"#]);
    assert!(o.status.success(), "{}", stderr(&o));
    env.wait_until("the job enqueued after the outage ran", || async {
        env.processed().await == 1
    })
    .await;
    let after = log_text(&env)[seen..].to_string();
    let failed_tries = after.lines().filter(|l| l.contains("fetch failed")).count();
    assert!(
        failed_tries <= 1,
        "the worker resumes at its next try, not after several: {failed_tries} failed fetches after the restart"
    );
    signal(&worker, libc::SIGTERM);
    assert!(wait_child(&mut worker).success());
}
