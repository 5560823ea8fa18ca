//! Fills a queue with signed no-op jobs, for profiling a worker by hand:
//! `fill --redis URL --keys FILE [--jobs N] [--queue Q] [--pad BYTES]`, then
//! run `resq worker --burst` under a profiler against the same server.

use std::sync::Arc;

use resq::{Client, EnqueueOptions, Keyring};
use resq_bench::{BenchError, Noop};
use resq_redis::{RedisConfig, RedisStore};

#[tokio::main]
async fn main() -> Result<(), BenchError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| resq_bench::flag_value(&argv, flag);
    let url = value("--redis").ok_or("--redis URL is required")?;
    let keys = value("--keys").ok_or("--keys FILE is required")?;
    let jobs: usize = value("--jobs").and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let queue = value("--queue").unwrap_or_else(|| "default".into());
    let pad: usize = value("--pad").and_then(|v| v.parse().ok()).unwrap_or(0);
    let store = Arc::new(RedisStore::connect(&RedisConfig::new(url), "resque").await?);
    let client = Client::new(store, Arc::new(Keyring::load(keys.as_ref())?))?;
    let options = || EnqueueOptions {
        queue: Some(queue.clone()),
        ..Default::default()
    };
    if queue == "default" {
        let batch: Vec<Noop> = (0..10_000.min(jobs)).map(|_| Noop { pad: "x".repeat(pad) }).collect();
        let mut left = jobs;
        while left > 0 {
            let n = left.min(batch.len());
            client.enqueue_bulk(&batch[..n]).await?;
            left -= n;
        }
    } else {
        for _ in 0..jobs {
            client.enqueue_with(&Noop { pad: "x".repeat(pad) }, options()).await?;
        }
    }
    println!("enqueued {jobs} jobs on {queue}");
    Ok(())
}
