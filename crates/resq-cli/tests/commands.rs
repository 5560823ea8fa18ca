//! The command set a user expects, through the real binary: enqueue options,
//! acting on one scheduled, retried or expired job, filtered failures, key
//! rotation, `config check`, and the guard on opening every queue.

mod common;

use common::*;
use serde_json::Value;

fn json(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn enqueue_schedules_limits_lifetimes_and_refuses_duplicates() {
    let env = Env::start().await;
    let echo = r#"{"message":"x"}"#;
    // --at: due exactly then.
    let o = env.run(&["enqueue", "Echo", "--args", echo, "--at", "2100-01-01T01:00:00+01:00"]);
    assert!(stdout(&o).contains("due 2100-01-01T00:00:00Z"), "{}", stdout(&o));
    // --in: due that long after now.
    let before = now_ms();
    env.run(&["enqueue", "Echo", "--args", echo, "--in", "1h30m"]);
    let after = now_ms();
    let listed = json(&env.run(&["scheduled", "list", "--json"]));
    let due: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["due_ms"].as_u64().unwrap())
        .collect();
    assert!((before + 5_400_000..=after + 5_400_000).contains(&due[0]), "{due:?}");
    assert_eq!(due[1], 4_102_444_800_000);
    // --ttl: the job's lifetime.
    env.run(&["enqueue", "Echo", "--args", echo, "--queue", "ttl", "--ttl", "90s"]);
    let job: Value = serde_json::from_str(&env.lrange("resque:queue:ttl").await[0]).unwrap();
    let life = job["expires_at"].as_f64().unwrap() - job["enqueued_at"].as_f64().unwrap();
    assert!((life - 90.0).abs() < 0.002, "{life}");
    // --unique: one job per key within the window (the key's TTL).
    let o = env.run(&[
        "enqueue",
        "Echo",
        "--args",
        echo,
        "--queue",
        "u",
        "--unique",
        "order-7",
        "--unique-for",
        "5m",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env.run(&["enqueue", "Echo", "--args", echo, "--queue", "u", "--unique", "order-7"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("with unique key \"order-7\" was enqueued within its window"),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.llen("resque:queue:u").await, 1);
    let claim = env.keys("resque:resq:unique:Echo:*").await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&claim[0])
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert!((290_000..=300_000).contains(&ttl), "{ttl}");
    // Nonsense is refused before anything is stored.
    for (args, says) in [
        (&["--in", "soon"][..], "--in: \"soon\" is not a duration"),
        (&["--at", "tomorrow"][..], "--at: \"tomorrow\" is not an RFC 3339 time"),
        (&["--ttl", "0s"][..], "--ttl must be longer than 0"),
        (&["--in", "1h", "--unique", "k"][..], "cannot be used with"),
    ] {
        let o = env.run(&[&["enqueue", "Echo", "--args", echo, "--queue", "bad"][..], args].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(env.llen("resque:queue:bad").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_scheduled_job_is_removed_or_run_now() {
    let env = Env::start().await;
    let echo = r#"{"message":"x"}"#;
    for _ in 0..2 {
        env.run(&["enqueue", "Echo", "--args", echo, "--in", "1d"]);
    }
    let listed = json(&env.run(&["scheduled", "list", "--json"]));
    let (first, second) = (listed[0]["id"].as_str().unwrap(), listed[1]["id"].as_str().unwrap());
    let o = env.run(&["scheduled", "run", first]);
    assert_eq!(stdout(&o).trim(), format!("pushed {first} to default now"));
    let queued: Value = serde_json::from_str(&env.lrange("resque:queue:default").await[0]).unwrap();
    assert_eq!(queued["id"], first);
    let o = env.run(&["scheduled", "remove", second]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&env.run(&["scheduled", "list", "--json"])), serde_json::json!([]));
    let o = env.run(&["scheduled", "run", second]);
    assert_eq!(o.status.code(), Some(2), "gone: {}", stderr(&o));
    // The job run now is a normal job: a worker runs it.
    let o = env.run(&["worker", "--burst"]);
    assert_eq!(
        stdout(&o),
        "  echo [default]: x\nprocessed 1 failed 0 requeued 0 recovered 0\n"
    );

    // A retry waiting for its backoff can be run now too.
    env.run(&["enqueue", "Flaky", "--args", r#"{"failures":1,"message":"again"}"#]);
    env.run(&["worker", "--burst"]);
    let retries = json(&env.run(&["retry-set", "list", "--json"]));
    let id = retries[0]["id"].as_str().unwrap();
    assert_eq!(retries[0]["attempt"], 1);
    assert!(env.run(&["retry-set", "run", id]).status.success());
    let o = env.run(&["worker", "--burst"]);
    assert!(
        stdout(&o).contains("flaky [default] attempt 1: again"),
        "{}",
        stdout(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_jobs_are_removed_or_enqueued_again_as_new_jobs() {
    let env = Env::start().await;
    std::fs::write(
        env.dir.path().join("resq.toml"),
        "[worker]\nliveness_ttl_ms = 900\nreap_interval_ms = 200\npoll_max_ms = 50\nsweep_interval_ms = 100\n",
    )
    .unwrap();
    // Two jobs that expire in a second, on a queue no worker serves.
    for n in 0..2 {
        env.run(&[
            "enqueue",
            "Echo",
            "--queue",
            "idle",
            "--ttl",
            "1s",
            "--args",
            &format!(r#"{{"message":"late {n}"}}"#),
        ]);
    }
    let mut sweeper = env.spawn_worker(&["--queues", "busy"]);
    env.wait_until("both swept", || async { env.llen("resque:resq:expired").await == 2 })
        .await;
    signal(&sweeper, libc::SIGQUIT);
    assert!(wait_child(&mut sweeper).success());
    let listed = json(&env.run(&["expired", "list", "--json"]));
    assert!(listed[0]["payload"].is_object(), "a payload is an object: {listed}");
    let (a, b) = (listed[0]["id"].as_str().unwrap(), listed[1]["id"].as_str().unwrap());
    let old_id = listed[1]["payload"]["id"].as_str().unwrap().to_string();
    assert!(env.run(&["expired", "remove", a]).status.success());
    let o = env.run(&["expired", "retry", b]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("again as "), "{}", stdout(&o));
    assert_eq!(env.llen("resque:resq:expired").await, 0);
    let again: Value = serde_json::from_str(&env.lrange("resque:queue:idle").await[0]).unwrap();
    assert_ne!(again["id"].as_str().unwrap(), old_id, "a new job");
    let o = env.run(&["worker", "--queues", "idle", "--burst"]);
    assert!(stdout(&o).contains("processed 1 failed 0"), "{}", stdout(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_filtered_and_retried_in_bulk() {
    let env = Env::start().await;
    for (queue, message) in [("a", "one"), ("a", "two"), ("b", "three")] {
        env.run(&[
            "enqueue",
            "Fail",
            "--queue",
            queue,
            "--args",
            &format!(r#"{{"message":"{message}"}}"#),
        ]);
    }
    env.run(&[
        "enqueue",
        "Sleep",
        "--queue",
        "a",
        "--timeout-ms",
        "10",
        "--args",
        r#"{"ms":60000}"#,
    ]);
    env.run(&["worker", "--queues", "a,b", "--burst"]);
    let count = |args: &[&str]| {
        json(&env.run(&[&["failed", "list", "--json"][..], args].concat()))
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count(&[]), 4);
    assert_eq!(count(&["--queue", "a"]), 3);
    assert_eq!(count(&["--reason", "timeout"]), 1);
    assert_eq!(count(&["--queue", "a", "--class", "Fail"]), 2);
    let text = stdout(&env.run(&["failed", "list", "--queue", "b"]));
    assert!(text.starts_with("1 failed job(s) match"), "{text}");
    let o = env.run(&["failed", "retry", "--all", "--queue", "a", "--class", "Fail"]);
    assert_eq!(stdout(&o).trim(), "retried 2, skipped 0");
    assert_eq!(env.llen("resque:queue:a").await, 2);
    assert_eq!(count(&[]), 2);
    let o = env.run(&["failed", "retry"]);
    assert_eq!(o.status.code(), Some(2), "an id or --all is required");
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_caps_are_shown_and_jobs_listed_as_json() {
    let env = Env::start().await;
    env.run(&["queue", "cap", "mail", "10"]);
    env.run(&["enqueue", "Echo", "--queue", "mail", "--args", r#"{"message":"x"}"#]);
    assert_eq!(
        stdout(&env.run(&["queue", "cap", "mail"])).trim(),
        "mail is capped at 10 waiting jobs (1 waiting)"
    );
    assert_eq!(
        stdout(&env.run(&["queue", "cap", "other"])).trim(),
        "other has no cap (0 waiting)"
    );
    let jobs = json(&env.run(&["jobs", "list", "--json"]));
    let flaky = jobs.as_array().unwrap().iter().find(|j| j["class"] == "Flaky").unwrap();
    assert_eq!(flaky["max_attempts"], 3);
    assert_eq!(flaky["timeout_ms"], Value::Null);
    assert_eq!(flaky["queue"], "default");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_without_hand_editing_and_old_jobs_still_run() {
    let env = Env::start().await;
    env.run(&["enqueue", "Echo", "--args", r#"{"message":"signed by the old key"}"#]);
    let o = env.run(&["keys", "rotate", "--file", env.keys_path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("and made it the active one"), "{}", stdout(&o));
    env.run(&["enqueue", "Echo", "--args", r#"{"message":"signed by the new key"}"#]);
    let kids: Vec<String> = env
        .lrange("resque:queue:default")
        .await
        .iter()
        .map(|p| {
            serde_json::from_str::<Value>(p).unwrap()["sig"]["kid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_ne!(kids[0], kids[1], "the new key signs");
    let o = env.run(&["worker", "--burst"]);
    assert!(
        stdout(&o).contains("processed 2 failed 0"),
        "both verify: {}",
        stdout(&o)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.keys_path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Ed25519: the producers' file rotates; the workers' file gets the new
    // public key; the workers' file also opens encrypted arguments.
    let producer = env.dir.path().join("producer.toml");
    let workers = env.dir.path().join("workers.toml");
    let o = env.run(&[
        "keys",
        "generate",
        "--alg",
        "ed25519",
        "--out",
        producer.to_str().unwrap(),
        "--public-out",
        workers.to_str().unwrap(),
    ]);
    assert!(stdout(&o).contains("holds the encryption key"), "{}", stdout(&o));
    let o = env.run(&[
        "keys",
        "rotate",
        "--alg",
        "ed25519",
        "--file",
        producer.to_str().unwrap(),
        "--worker-file",
        workers.to_str().unwrap(),
    ]);
    assert!(
        stdout(&o).contains("added its public key to the workers' file"),
        "{}",
        stdout(&o)
    );
    let signing = std::sync::Arc::new(resq::Keyring::load(&producer).unwrap());
    let client = resq::Client::new(std::sync::Arc::new(env.store.clone()), signing).unwrap();
    client
        .enqueue_raw_with(
            "Echo",
            vec![serde_json::json!({"message": "sealed"})],
            "ed",
            resq::SealOptions {
                encrypt: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let o = env
        .resq()
        .env("RESQ_KEYS_FILE", &workers)
        .args(["worker", "--queues", "ed", "--burst"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&o),
        "  echo [ed]: sealed\nprocessed 1 failed 0 requeued 0 recovered 0\n",
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_checks_what_a_worker_would_without_starting_one() {
    let env = Env::start().await;
    let o = env.run(&["config", "check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).ends_with("config ok\n"), "{}", stdout(&o));
    assert!(env.keys("resque:workers").await.is_empty(), "no worker started");
    let cases = [
        (
            "[[cron]]\nname = \"n\"\nschedule = \"@daily\"\nclass = \"Kernel\"\n",
            "cron entry n:",
        ),
        ("[worker]\nqueues = \"a b\"\n", "--queues"),
        (
            "[security]\nallow_unsigned = [\"*\"]\n",
            "opens every queue to unsigned jobs",
        ),
        (
            "[security]\nallow_unsigned = [\"leg acy\"]\n",
            "is not a queue name or a glob",
        ),
    ];
    for (config, says) in cases {
        std::fs::write(env.dir.path().join("resq.toml"), config).unwrap();
        let o = env.run(&["config", "check"]);
        assert_eq!(o.status.code(), Some(2), "{config}");
        assert!(stderr(&o).contains(says), "{config}: {}", stderr(&o));
    }
    // Every queue open needs its own opt-in, and is then allowed (loudly).
    std::fs::write(
        env.dir.path().join("resq.toml"),
        "[security]\nallow_unsigned = [\"*\"]\nallow_unsigned_everything = true\n",
    )
    .unwrap();
    let o = env.run(&["config", "check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("WARNING: queues open to unsigned jobs: [\"*\"]"),
        "{}",
        stdout(&o)
    );
    // And Redis must answer.
    let o = env
        .resq()
        .env("RESQ_REDIS_URL", "redis://127.0.0.1:1/0")
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
}
