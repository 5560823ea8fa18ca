//! The attack that multiplied signed jobs, through the real binary: one
//! signed job's exact bytes pushed 50 times while four `resq worker`
//! processes (concurrency 64 each) wait for work. Exactly one copy runs;
//! the other 49 are refused `replayed`, whichever process fetched them.

mod common;

use std::collections::BTreeMap;

use common::*;
use resq::{Keyring, Policy, SealOptions};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn fifty_copies_across_four_workers_run_once() {
    let env = Env::start().await;
    let mut workers: Vec<_> = (0..4)
        .map(|_| env.spawn_worker(&["--queues", "copies", "--concurrency", "64"]))
        .collect();
    env.wait_until("four workers registered", || async {
        env.keys("resque:worker:*:started").await.len() == 4
    })
    .await;

    let keyring = std::sync::Arc::new(Keyring::load(&env.keys_path()).unwrap());
    let sealed = Policy::new(keyring)
        .unwrap()
        .seal(
            "Echo",
            "copies",
            vec![serde_json::json!({"message": "one of fifty"})],
            SealOptions::default(),
        )
        .unwrap();
    let (id, job) = (sealed.id().to_string(), sealed.payload().to_vec());
    // Pushed the way an attacker with Redis access would, each copy with a
    // wake-up so that every idle worker races for it.
    for _ in 0..50 {
        redis::pipe()
            .sadd("resque:queues", "copies")
            .rpush("resque:queue:copies", &job)
            .publish("resque:resq:wake", "")
            .query_async::<()>(&mut env.conn())
            .await
            .unwrap();
    }
    env.wait_until("all 50 copies handled", || async { env.processed().await == 50 })
        .await;
    for worker in &workers {
        signal(worker, libc::SIGQUIT);
    }
    for worker in &mut workers {
        assert!(wait_child(worker).success());
    }

    let runs = done_count(&env.dir, &id);
    assert_eq!(runs, 1, "job {id} ran {runs} times");
    let mut refused_by: BTreeMap<String, u32> = BTreeMap::new();
    for record in env.lrange("resque:failed").await {
        let v: Value = serde_json::from_str(&record).unwrap();
        assert_eq!(v["reason"], "replayed", "{record}");
        *refused_by.entry(v["worker"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(refused_by.values().sum::<u32>(), 49);
    println!("49 copies refused `replayed`, by worker: {refused_by:?}");
}

/// `job done` log lines for this id across every worker's JSON log.
fn done_count(dir: &tempfile::TempDir, id: &str) -> usize {
    log_paths(dir.path())
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter(|v| v["fields"]["message"] == "job done" && v["fields"]["id"] == id)
                .count()
        })
        .sum()
}
