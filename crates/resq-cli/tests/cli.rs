//! The admin commands, enqueue and the demo, through the real binary.

mod common;

use common::*;
use local_redis::{LocalRedis, Options};
use serde_json::Value;

fn json_out(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
    serde_json::from_str(stdout(o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[tokio::test(flavor = "multi_thread")]
async fn enqueue_work_and_manage_failures() {
    let env = Env::start().await;
    // One object is shorthand for [object]; an array is Resque's args as is.
    let o = env.run(&["enqueue", "Echo", "--args", r#"{"message":"hi"}"#, "--queue", "mail"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env.run(&["enqueue", "Fail", "--args", r#"[{"message":"broken"}]"#]);
    assert!(o.status.success(), "{}", stderr(&o));

    let queues = json_out(&env.run(&["queues", "--json"]));
    assert_eq!(
        queues,
        serde_json::json!([{"queue":"default","size":1},{"queue":"mail","size":1}])
    );

    let o = env.run(&["worker", "--queues", "mail,default", "--burst"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("echo [mail]: hi"), "{}", stdout(&o));
    assert!(stdout(&o).contains("processed 2 failed 1"), "{}", stdout(&o));

    let stats = json_out(&env.run(&["stats", "--json"]));
    assert_eq!(
        (
            stats["processed"].as_u64(),
            stats["failed"].as_u64(),
            stats["failed_list"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );

    let failed = json_out(&env.run(&["failed", "list", "--json"]));
    let record = &failed[0];
    assert_eq!(record["reason"], "job_failed");
    let id = record["failure_id"].as_str().unwrap().to_string();
    let original = serde_json::to_string(&record["payload"]).unwrap();

    let text = stdout(&env.run(&["failed", "list"]));
    assert!(text.contains(&id) && text.contains("class=Fail"), "{text}");

    // Retry puts the very same payload back and removes the record.
    let o = env.run(&["failed", "retry", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let queue = env.lrange("resque:queue:default").await;
    assert_eq!(queue.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&queue[0]).unwrap(),
        serde_json::from_str::<Value>(&original).unwrap()
    );
    assert_eq!(env.llen("resque:failed").await, 0);
    // A second retry of the same id finds nothing (no double enqueue).
    let o = env.run(&["failed", "retry", &id]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no failure with id"), "{}", stderr(&o));

    // Fail again, then remove; fail twice more, then clear.
    env.run(&["worker", "--queues", "default", "--burst"]);
    let id = json_out(&env.run(&["failed", "list", "--json"]))[0]["failure_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(env.run(&["failed", "remove", &id]).status.success());
    assert_eq!(env.llen("resque:failed").await, 0);
    env.run(&["enqueue", "Fail", "--args", r#"{"message":"a"}"#]);
    // The policy refuses an unregistered class before anything is stored.
    let o = env.run(&["enqueue", "Kernel", "--args", r#"["system","id"]"#]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("class Kernel is not a job type this binary knows"),
        "{}",
        stderr(&o)
    );
    env.run(&["enqueue", "Fail", "--args", r#"{"message":"b"}"#]);
    env.run(&["worker", "--queues", "default", "--burst"]);
    let o = env.run(&["failed", "clear"]);
    assert!(stdout(&o).contains("cleared 2"), "{}", stdout(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_lists_a_running_worker() {
    let env = Env::start().await;
    let mut worker = env.spawn_worker(&["--queues", "critical,default"]);
    env.wait_until("registered", || async {
        !env.keys("resque:worker:*:started").await.is_empty()
    })
    .await;
    let workers = json_out(&env.run(&["workers", "--json"]));
    let id = workers[0]["id"].as_str().unwrap();
    assert_eq!(
        id,
        format!("{}:{}:critical,default", id.split(':').next().unwrap(), worker.id())
    );
    assert!(workers[0]["heartbeat"].as_str().unwrap().ends_with('Z'));
    signal(&worker, libc::SIGTERM);
    assert!(wait_child(&mut worker).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let env = Env::start().await;
    let cases: &[(&[&str], &str)] = &[
        (&["enqueue", "Kernel.system"], "class name"),
        (&["enqueue", "Echo", "--queue", "mail*"], "queue name"),
        (
            &["enqueue", "Echo", "--args", "\"just a string\""],
            "JSON array or one JSON object",
        ),
        (&["enqueue", "Echo", "--args", "{not json"], "not valid JSON"),
        (&["worker", "--queues", "a b"], "--queues"),
        (
            &["worker", "--concurrency", "0"],
            "--concurrency is 0: it must be between 1 and 1024",
        ),
        (&["failed", "retry", "no-such-id"], "no failure with id"),
    ];
    for (args, needle) in cases {
        let o = env.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    // Over the configured payload limit (one argv string is capped at 128 KiB,
    // so the limit is lowered rather than the payload raised).
    let small = env.dir.path().join("small.toml");
    std::fs::write(&small, "[limits]\nmax_bytes = 1000\n").unwrap();
    let big = format!(r#"{{"message":"{}"}}"#, "x".repeat(2000));
    let o = env.run(&["--config", small.to_str().unwrap(), "enqueue", "Echo", "--args", &big]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("over the limit of 1000"), "{}", stderr(&o));
    assert!(env.keys("resque:queue:*").await.is_empty(), "nothing was stored");
}

#[test]
fn config_errors_say_what_where_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_resq"));
        cmd.current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.args(args).output().unwrap()
    };
    let o = run(&[], &["queues"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("RESQ_REDIS_URL"), "{}", stderr(&o));

    let o = run(
        &[("RESQ_REDIS_URL", "redis://127.0.0.1:1"), ("RESQ_CONCURRENCY", "lots")],
        &["queues"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("RESQ_CONCURRENCY"), "{}", stderr(&o));

    std::fs::write(dir.path().join("resq.toml"), "[redis]\nurll = \"redis://x\"\n").unwrap();
    let o = run(&[], &["queues"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(
            "resq.toml is not a valid resq config: line 2, column 1: unknown field `(…)`, expected one of `url`"
        ),
        "{err}"
    );
}

#[test]
fn the_redis_password_is_never_printed() {
    let secret = "correct-horse-battery";
    let redis = LocalRedis::start_with(Options {
        requirepass: Some(secret.into()),
        ..Options::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, format!("{secret}\n")).unwrap();
    // Keys, so that `worker` and `enqueue` get as far as Redis too.
    let keys = dir.path().join("keys.toml");
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_resq"))
        .args(["keys", "generate", "--out"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(made.status.success());
    let run = |envs: &[(&str, String)], args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_resq"));
        cmd.current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RESQ_KEYS_FILE", &keys);
        cmd.env("RESQ_LOG", "trace");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.args(args).output().unwrap()
    };
    let url = redis.url();
    // From a file: works.
    let o = run(
        &[
            ("RESQ_REDIS_URL", url.clone()),
            ("RESQ_REDIS_PASSWORD_FILE", pwfile.display().to_string()),
        ],
        &["stats"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Wrong passwords from the environment and in the URL (with and without
    // a user): every command reaches the server, fails authentication, and
    // its whole output is searched for the secret.
    let attempts: Vec<Vec<(&str, String)>> = vec![
        vec![
            ("RESQ_REDIS_URL", url.clone()),
            ("RESQ_REDIS_PASSWORD", "wrong-horse".into()),
        ],
        vec![(
            "RESQ_REDIS_URL",
            format!("redis://:{secret}x@127.0.0.1:{}/0", redis.port()),
        )],
        vec![(
            "RESQ_REDIS_URL",
            format!("redis://default:{secret}y@127.0.0.1:{}/0", redis.port()),
        )],
    ];
    for envs in attempts {
        for args in [
            &["stats"][..],
            &["worker", "--burst"][..],
            &["enqueue", "Echo", "--args", r#"{"message":"x"}"#][..],
        ] {
            let o = run(&envs, args);
            assert!(!o.status.success(), "{args:?} should fail");
            assert!(
                stderr(&o).contains("refused the credentials"),
                "{args:?} did not reach the server: {}",
                stderr(&o)
            );
            let all = format!("{}{}", stdout(&o), stderr(&o));
            assert!(
                !all.contains(secret) && !all.contains("wrong-horse"),
                "{args:?} printed a secret: {all}"
            );
        }
    }
}

#[test]
fn demo_runs_on_a_private_redis_and_every_outcome_is_as_expected() {
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_resq"))
        .arg("demo")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(out.contains("started a private redis-server"), "{out}");
    assert!(out.contains("all 26 outcomes as expected"), "{out}");
    assert!(!out.contains("BAD"), "{out}");
}

#[test]
fn keys_generate_writes_a_private_file_that_workers_and_producers_use() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let resq = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_resq"))
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .args(args)
            .output()
            .unwrap()
    };
    let o = resq(&["keys", "generate", "--out", "k.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mode = std::fs::metadata(dir.path().join("k.toml"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(dir.path().join("k.toml")).unwrap();
    assert!(!stdout(&o).contains(
        text.lines()
            .find(|l| l.starts_with("secret"))
            .unwrap()
            .split('"')
            .nth(1)
            .unwrap()
    ));
    // Never overwritten.
    let o = resq(&["keys", "generate", "--out", "k.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("never overwrites"), "{}", stderr(&o));
    // Ed25519: a public-only file for workers, with no private key in it.
    let o = resq(&["keys", "generate", "--alg", "ed25519", "--out", "ed.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let public = std::fs::read_to_string(dir.path().join("ed.public.toml")).unwrap();
    assert!(public.contains("public") && !public.contains("private"), "{public}");
    // A keys file others can read is refused, with the fix.
    std::fs::set_permissions(dir.path().join("k.toml"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_resq"));
    cmd.current_dir(dir.path())
        .env_clear()
        .env("RESQ_REDIS_URL", "redis://127.0.0.1:1")
        .env("RESQ_KEYS_FILE", "k.toml");
    let o = cmd
        .args(["enqueue", "Echo", "--args", r#"{"message":"x"}"#])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
}

#[test]
fn without_keys_workers_and_producers_refuse_and_say_how_to_make_them() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["worker", "--burst"][..],
        &["enqueue", "Echo", "--args", r#"{"message":"x"}"#][..],
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_resq"))
            .current_dir(dir.path())
            .env_clear()
            .env("RESQ_REDIS_URL", "redis://127.0.0.1:1/0")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("resq keys generate"), "{args:?}: {}", stderr(&o));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_schema_is_derived_from_the_rust_type() {
    let env = Env::start().await;
    let schema = json_out(&env.run(&["jobs", "schema", "Sleep"]));
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["ms"]["maximum"], 3_600_000);
    assert_eq!(schema["required"], serde_json::json!(["ms"]));
    let o = env.run(&["jobs", "schema", "Kernel"]);
    assert_eq!(o.status.code(), Some(2));
    let list = stdout(&env.run(&["jobs", "list"]));
    for class in ["Alloc", "Detach", "Echo", "Fail", "Flaky", "Noop", "Sleep", "Spin"] {
        assert!(list.contains(class), "{list}");
    }
    // The CLI validates against the same rules before storing anything.
    let o = env.run(&["enqueue", "Sleep", "--args", r#"{"ms":99999999}"#]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: job Sleep is refused: invalid_args: arguments of Sleep are invalid: ms: greater than 3600000\n"
    );
    assert!(env.keys("resque:queue:*").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn queues_open_to_unsigned_jobs_are_warned_about_and_only_they_run_them() {
    let env = Env::start().await;
    let unsigned = br#"{"class":"Echo","args":[{"message":"from ruby"}]}"#;
    for q in ["legacy", "strict"] {
        let mut c = env.conn();
        redis::pipe()
            .sadd("resque:queues", q)
            .rpush(format!("resque:queue:{q}"), &unsigned[..])
            .query_async::<()>(&mut c)
            .await
            .unwrap();
    }
    let o = env
        .resq()
        .env("RESQ_ALLOW_UNSIGNED", "legacy")
        .args(["worker", "--queues", "legacy,strict", "--burst"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("UNSIGNED"), "{}", stderr(&o));
    assert!(stdout(&o).contains("echo [legacy]: from ruby"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("echo [strict]"), "{}", stdout(&o));
    let failed = json_out(&env.run(&["failed", "list", "--json"]));
    assert_eq!(failed[0]["reason"], "unsigned");
    assert_eq!(failed[0]["queue"], "strict");
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_and_retry_sets_are_listed() {
    let env = Env::start().await;
    let at = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(4_102_444_800_000); // 2100-01-01
    let id = env.client().enqueue_at(&Sleep { ms: 1 }, at).await.unwrap();
    let listed = json_out(&env.run(&["scheduled", "list", "--json"]));
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["class"], "Sleep");
    assert_eq!(listed[0]["due_ms"], 4_102_444_800_000u64, "due exactly when asked");
    let text = stdout(&env.run(&["scheduled", "list"]));
    assert!(text.contains("1 scheduled jobs") && text.contains(&id), "{text}");
    let text = stdout(&env.run(&["retry-set", "list"]));
    assert!(text.contains("0 retries"), "{text}");
    assert!(
        env.keys("resque:queue:*").await.is_empty(),
        "nothing runs before it is due"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_pause_resume_and_cap_through_the_cli() {
    let env = Env::start().await;
    assert!(env.run(&["queue", "cap", "default", "1"]).status.success());
    assert!(env
        .run(&["enqueue", "Echo", "--args", r#"{"message":"a"}"#])
        .status
        .success());
    let o = env.run(&["enqueue", "Echo", "--args", r#"{"message":"b"}"#]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is full"), "{}", stderr(&o));
    assert!(env.run(&["queue", "pause", "default"]).status.success());
    let queues = json_out(&env.run(&["queues", "--json"]));
    assert_eq!(queues[0]["paused"], true);
    assert_eq!(queues[0]["cap"], 1);
    let o = env.run(&["worker", "--queues", "default", "--burst"]);
    assert!(stdout(&o).contains("processed 0"), "{}", stdout(&o));
    assert!(env.run(&["queue", "resume", "default"]).status.success());
    assert!(env.run(&["queue", "cap", "default", "--remove"]).status.success());
    let o = env.run(&["worker", "--queues", "default", "--burst"]);
    assert!(stdout(&o).contains("processed 1"), "{}", stdout(&o));
    let o = env.run(&["queue", "pause", "mail*"]);
    assert_eq!(o.status.code(), Some(2), "a glob is not a queue name");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_jobs_are_listed_after_a_sweep() {
    use resq::Schedules;
    let env = Env::start().await;
    let options = resq::EnqueueOptions {
        ttl: Some(std::time::Duration::from_millis(1)),
        ..Default::default()
    };
    let id = env.client().enqueue_with(&Sleep { ms: 1 }, options).await.unwrap();
    // The sweep is told the time: a second from now the job has expired.
    let turn = resq::store::SweepTurn {
        now: resq::UnixMs::now().plus(std::time::Duration::from_secs(1)),
        owner: "t",
        every: std::time::Duration::from_secs(1),
    };
    assert_eq!(env.store.sweep_expired(&turn).await.unwrap(), Some(1));
    let text = stdout(&env.run(&["expired", "list"]));
    assert!(
        text.contains("1 expired job(s)") && text.contains(&id) && text.contains("class=Sleep"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cron_tick_with_three_workers_runs_once() {
    let env = Env::start().await;
    let config = env.dir.path().join("resq.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[[cron]]\nname = \"every-second\"\nschedule = \"* * * * * *\"\nclass = \"Echo\"\n\
         args = { message = \"tick\" }\nqueue = \"cron\"\n",
    );
    std::fs::write(&config, text).unwrap();
    // Held in the queue while the workers fire, so every fired job can be counted.
    assert!(env.run(&["queue", "pause", "cron"]).status.success());
    let mut workers: Vec<_> = (0..3).map(|_| env.spawn_worker(&["--queues", "cron"])).collect();
    env.wait_until("four ticks fired", || async {
        env.llen("resque:queue:cron").await >= 4
    })
    .await;
    for w in &workers {
        signal(w, libc::SIGQUIT);
    }
    for w in &mut workers {
        assert!(wait_child(w).success());
    }
    let jobs = env.lrange("resque:queue:cron").await;
    let ticks: Vec<u64> = jobs
        .iter()
        .map(|j| {
            let v: Value = serde_json::from_str(j).unwrap();
            let mark = v["unique"].as_str().unwrap();
            mark.strip_prefix("cron:every-second:").unwrap().parse().unwrap()
        })
        .collect();
    let distinct: std::collections::BTreeSet<u64> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    assert!(ticks.windows(2).all(|w| w[0] < w[1]), "ticks in order: {ticks:?}");
    assert!(ticks.iter().all(|t| t % 1000 == 0), "{ticks:?}");

    let listed = json_out(&env.run(&["cron", "list", "--json"]));
    assert_eq!(listed["entries"][0]["name"], "every-second");
    assert_eq!(listed["entries"][0]["queue"], "cron");
    assert!(listed["entries"][0]["last_fired"].is_string(), "{listed}");

    // The fired jobs are ordinary signed jobs: they run once resumed.
    assert!(env.run(&["queue", "resume", "cron"]).status.success());
    let o = env.run(&["worker", "--queues", "cron", "--burst"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("echo [cron]: tick"), "{}", stdout(&o));
}

/// A setting outside its range is refused before anything starts, with the
/// setting's name and its range: none of these may loop, wrap or allocate.
#[test]
fn settings_out_of_range_are_refused_with_their_range() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "[worker]\nconcurrency = 9223372036854775807\n",
            &["worker"],
            "worker.concurrency (RESQ_CONCURRENCY) is 9223372036854775807: it must be between 1 and 1024",
        ),
        (
            "[worker]\nliveness_ttl_ms = 18446744073709551615\n",
            &["stats"],
            "worker.liveness_ttl_ms is 18446744073709551615 ms: it must be between 300 ms and 3600000 ms",
        ),
        (
            "[worker]\nreap_interval_ms = 0\n",
            &["stats"],
            "worker.reap_interval_ms is 0 ms: it must be between 50 ms and 600000 ms",
        ),
        (
            "[worker]\nheartbeat_interval_s = 301\n",
            &["stats"],
            "worker.heartbeat_interval_s is 301000 ms: it must be between 1000 ms and 240000 ms",
        ),
        (
            "[isolation]\nmemory_limit_mb = 18446744073709551615\n",
            &["stats"],
            "isolation.memory_limit_mb is 18446744073709551615: it must be between 48 and 1048576",
        ),
        (
            "[isolation]\nmode = \"process\"\n[worker]\nconcurrency = 300\n",
            &["stats"],
            "worker.concurrency (RESQ_CONCURRENCY) is 300: it must be between 1 and 256",
        ),
        (
            "[limits]\nmax_depth = 100000\n",
            &["stats"],
            "limits.max_depth is 100000: it must be between 2 and 128",
        ),
        (
            "[failures]\nmax = 0\n",
            &["stats"],
            "failures.max is 0: it must be between 1 and 10000000",
        ),
        (
            "[redis]\nresponse_timeout_ms = 0\n",
            &["stats"],
            "redis.response_timeout_ms is 0 ms",
        ),
        (
            "",
            &["worker", "--concurrency", "1000000"],
            "--concurrency is 1000000: it must be between 1 and 1024",
        ),
    ];
    for (config, args, says) in cases {
        std::fs::write(
            dir.path().join("resq.toml"),
            format!("[redis]\n{config}").replacen("[redis]\n[redis]\n", "[redis]\n", 1),
        )
        .unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_resq"))
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RESQ_REDIS_URL", "redis://127.0.0.1:1/0")
            .env("RESQ_KEYS_FILE", dir.path().join("none.toml"))
            .args(*args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{config}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{config}: {}", stderr(&o));
    }
}

/// Each error says what, where and what to do, in the settings' own names;
/// on one line per message, with no colour when stderr is not a terminal.
#[tokio::test(flavor = "multi_thread")]
async fn errors_say_what_where_and_what_to_do() {
    let env = Env::start().await;
    let locked = LocalRedis::start_with(Options {
        acl_users: vec![
            "user default on >door-key-123 ~* +@all".into(),
            "user app on >app-pw ~* +@all".into(),
        ],
        ..Options::default()
    })
    .unwrap();
    let nobody = {
        let r = LocalRedis::start().unwrap();
        r.port()
    }; // stopped: its port refuses connections
       // A verify-only (public) keys file, as workers get.
    let public = env.dir.path().join("producer.toml");
    assert!(env
        .run(&[
            "keys",
            "generate",
            "--alg",
            "ed25519",
            "--out",
            public.to_str().unwrap()
        ])
        .status
        .success());
    let public = env.dir.path().join("producer.public.toml");
    // (variables, command, what stderr must say)
    type Case<'a> = (Vec<(&'a str, String)>, Vec<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("RESQ_REDIS_URL", locked.url())],
            vec!["stats"],
            "refused the credentials of the default user",
        ),
        (
            vec![("RESQ_REDIS_URL", locked.url())],
            vec!["stats"],
            "RESQ_REDIS_PASSWORD_FILE or redis.password_file",
        ),
        (
            vec![
                ("RESQ_REDIS_URL", locked.url()),
                ("RESQ_REDIS_USERNAME", "app".into()),
                ("RESQ_REDIS_PASSWORD", "wrong".into()),
            ],
            vec!["stats"],
            "refused the credentials of user \"app\"",
        ),
        (
            vec![("RESQ_REDIS_URL", format!("redis://127.0.0.1:{nobody}/0"))],
            vec!["stats"],
            "connection refused (nothing listens there; is the URL right and Redis running?); check RESQ_REDIS_URL or redis.url",
        ),
        (
            vec![("RESQ_KEYS_FILE", public.display().to_string())],
            vec!["enqueue", "Echo", "--args", r#"{"message":"x"}"#],
            "holds no signing key: it is a verify-only (public) file",
        ),
        (
            vec![],
            vec!["enqueue", "Archive::Export"],
            "class Archive::Export is not a job type this binary knows (see `resq jobs list`)",
        ),
        (
            vec![("RESQ_QUEUES", String::new())],
            vec!["stats"],
            "RESQ_QUEUES is set but empty: unset it to work every queue (*), or name the queues",
        ),
        (
            vec![],
            vec!["enqueue", "Echo", "--timeout-ms", "0", "--args", r#"{"message":"x"}"#],
            "--timeout-ms is 0 ms: it must be between 1 ms and",
        ),
    ];
    for (vars, args, says) in cases {
        let mut cmd = env.resq();
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let o = cmd.args(&args).output().unwrap();
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(err.ends_with('\n') && !err.ends_with("\n\n"), "{args:?}: {err:?}");
        assert!(!err.contains('\u{1b}'), "colour on a pipe: {err:?}");
    }
    // A typo in a variable name is not silent.
    let o = env.resq().env("RESQ_CONCURENCY", "4").args(["stats"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("RESQ_CONCURENCY is not a resq setting (did you mean RESQ_CONCURRENCY?); it is ignored"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains('\u{1b}'));
}
