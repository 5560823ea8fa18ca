//! What a job costs Redis, script by script: fills a private redis-server
//! with signed no-op jobs, runs the real `resq worker --burst` over them with
//! every command logged (`SLOWLOG` at 0 µs), and prints, per job, the time
//! Redis spent in each script (named by the first key it is given), the
//! calls of each command the scripts ran (`INFO commandstats`), and Redis's
//! CPU (`INFO cpu`).
//!
//! `script_cost --resq PATH [--jobs N] [--concurrency N]` (defaults 50,000
//! and 256). Redis's own time per job hardly depends on the machine's other
//! load, so this is the figure to compare two builds by; it is run on
//! purpose, never in the suite.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use local_redis::LocalRedis;
use redis::Value;
use resq::{Client, Keyring};
use resq_bench::{flag_value, write_keys, BenchError, Noop, TempDirGuard};
use resq_redis::{RedisConfig, RedisStore};

/// A script's name from the first key it is given (the scripts' key
/// layouts are in `crates/resq-redis/src/lua/`).
fn script_name(first_key: &str) -> &'static str {
    let families = [
        ("resque:pause-all-workers", "fetch"),
        ("resque:stat:processed", "ack (finish)"),
        ("resque:resq:inflight:", "claim"),
        ("resque:resq:alive:", "renew"),
        ("resque:resq:solo:", "requeue"),
    ];
    families
        .iter()
        .find(|(prefix, _)| first_key.starts_with(prefix))
        .map(|(_, name)| *name)
        .unwrap_or("other")
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

/// `(name, µs)` of each logged script call.
fn script_calls(log: &[Value]) -> Vec<(&'static str, u64)> {
    let mut out = Vec::new();
    for entry in log {
        let Value::Array(fields) = entry else { continue };
        let (Some(Value::Int(us)), Some(Value::Array(args))) = (fields.get(2), fields.get(3)) else {
            continue;
        };
        let command = args.first().map(text).unwrap_or_default().to_ascii_lowercase();
        if command != "evalsha" && command != "eval" {
            continue;
        }
        let first_key = args.get(3).map(text).unwrap_or_default();
        out.push((script_name(&first_key), u64::try_from(*us).unwrap_or(0)));
    }
    out
}

fn info_field(info: &str, field: &str) -> Option<f64> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
}

async fn info(conn: &mut redis::aio::MultiplexedConnection, section: &str) -> Result<String, BenchError> {
    Ok(redis::cmd("INFO").arg(section).query_async(conn).await?)
}

#[tokio::main]
async fn main() -> Result<(), BenchError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let resq = PathBuf::from(flag_value(&argv, "--resq").ok_or("--resq PATH is required")?)
        .canonicalize()
        .map_err(|e| format!("--resq: {e}"))?;
    let jobs: usize = flag_value(&argv, "--jobs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let concurrency = flag_value(&argv, "--concurrency").unwrap_or_else(|| "256".into());

    let redis = LocalRedis::start()?;
    let dir = TempDirGuard(std::env::temp_dir().join(format!("resq-script-cost-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let keys = write_keys(&dir.0)?;
    let store = Arc::new(RedisStore::connect(&RedisConfig::new(redis.url()), "resque").await?);
    let client = Client::new(store, Arc::new(Keyring::load(&keys)?))?;
    let batch: Vec<Noop> = (0..10_000).map(|_| Noop { pad: String::new() }).collect();
    let mut left = jobs;
    while left > 0 {
        let n = left.min(batch.len());
        client.enqueue_bulk(&batch[..n]).await?;
        left -= n;
    }

    // No response timeout: reading a log of a few hundred thousand entries
    // takes longer than redis-rs's default half second.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    for (name, value) in [("slowlog-log-slower-than", "0"), ("slowlog-max-len", "10000000")] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async(&mut conn)
            .await?;
    }
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query_async(&mut conn).await?;
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut conn).await?;
    let cpu = info(&mut conn, "cpu").await?;
    let cpu_before = info_field(&cpu, "used_cpu_sys").unwrap_or(0.0) + info_field(&cpu, "used_cpu_user").unwrap_or(0.0);

    let status = Command::new(&resq)
        .args([
            "worker",
            "--queues",
            "default",
            "--concurrency",
            &concurrency,
            "--burst",
        ])
        .env("RESQ_REDIS_URL", redis.url())
        .env("RESQ_KEYS_FILE", &keys)
        .env("RESQ_LOG", "warn")
        .current_dir(&dir.0)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("resq worker exited with {status}").into());
    }

    let cpu = info(&mut conn, "cpu").await?;
    let cpu_after = info_field(&cpu, "used_cpu_sys").unwrap_or(0.0) + info_field(&cpu, "used_cpu_user").unwrap_or(0.0);
    let stats = info(&mut conn, "commandstats").await?;
    let log: Vec<Value> = redis::cmd("SLOWLOG").arg("GET").arg(-1).query_async(&mut conn).await?;
    let processed: Option<String> = redis::cmd("GET")
        .arg("resque:stat:processed")
        .query_async(&mut conn)
        .await?;
    if processed.as_deref() != Some(jobs.to_string().as_str()) {
        return Err(format!("{processed:?} jobs processed, expected {jobs}").into());
    }

    let per_job = |x: f64| x / jobs as f64;
    println!("{jobs} signed no-op jobs, one `resq worker --burst`, concurrency {concurrency}\n");
    println!("| script | calls | µs per job | µs per call |");
    println!("|---|---|---|---|");
    let mut by_script: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (name, us) in script_calls(&log) {
        let e = by_script.entry(name).or_default();
        e.0 += 1;
        e.1 += us;
    }
    let mut total = 0u64;
    for (name, (calls, us)) in &by_script {
        total += us;
        println!(
            "| {name} | {calls} | {:.2} | {:.1} |",
            per_job(*us as f64),
            *us as f64 / *calls as f64
        );
    }
    println!("| all scripts | | {:.2} | |", per_job(total as f64));
    println!(
        "\nRedis CPU (INFO cpu): {:.2} µs per job\n",
        per_job((cpu_after - cpu_before) * 1e6)
    );
    println!("| command | calls per job |");
    println!("|---|---|");
    for line in stats.lines() {
        let Some((name, rest)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(":calls=")) else {
            continue;
        };
        let calls: f64 = rest.split(',').next().and_then(|n| n.parse().ok()).unwrap_or(0.0);
        if calls > 0.0 && !matches!(name, "slowlog" | "config" | "info") {
            println!("| {name} | {:.3} |", per_job(calls));
        }
    }
    Ok(())
}
