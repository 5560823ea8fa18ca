//! Process isolation through the real `resq worker --isolation process`:
//! runaway jobs are stopped and recorded, the worker keeps serving, children
//! do not see resq's settings, and they do not outlive their worker.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

const LIMITS: &str = "\n[isolation]\nmemory_limit_mb = 128\ncpu_limit_ms = 1000\n";

fn with_limits(env: &Env, extra: &str) {
    let path = env.dir.path().join("resq.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(LIMITS);
    text.push_str(extra);
    std::fs::write(path, text).unwrap();
}

fn failed(env: &Env) -> Vec<Value> {
    let o = env.run(&["failed", "list", "--json", "--limit", "100"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn enqueue(env: &Env, args: &[&str]) {
    let o = env.run(&[&["enqueue"], args].concat());
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The pids of `pid`'s child processes.
fn children_of(pid: u32) -> BTreeSet<u32> {
    let mut found = BTreeSet::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        found.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    found
}

/// True while `pid` is a process that has not exited (a zombie has).
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runaway_jobs_are_stopped_and_the_worker_keeps_serving() {
    let env = Env::start().await;
    with_limits(&env, "");
    // Spins far past its 500 ms timeout, on a blocking thread no await reaches.
    enqueue(&env, &["Spin", "--args", r#"{"ms":3600000}"#, "--timeout-ms", "500"]);
    // Allocates without bound: 1 TiB, a MiB at a time.
    enqueue(&env, &["Alloc", "--args", r#"{"mb":1048576}"#]);
    // No timeout, but more CPU than the 1 s limit.
    enqueue(&env, &["Spin", "--args", r#"{"ms":3600000}"#]);

    let mut worker = env.spawn_worker(&["--isolation", "process", "--concurrency", "2"]);
    env.wait_until("three runaway jobs recorded", || async {
        env.llen("resque:failed").await == 3
    })
    .await;
    let records = failed(&env);
    let mut outcomes: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["payload"]["class"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
                r["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    outcomes.sort();
    let reasons: Vec<(&str, &str)> = outcomes.iter().map(|(c, r, _)| (c.as_str(), r.as_str())).collect();
    assert_eq!(
        reasons,
        [
            ("Alloc", "resource_limit"),
            ("Spin", "resource_limit"),
            ("Spin", "timeout")
        ]
    );
    assert!(outcomes[0].2.contains("memory limit of 128 MiB"), "{}", outcomes[0].2);
    assert!(outcomes[1].2.contains("CPU limit of 1000 ms"), "{}", outcomes[1].2);
    assert!(
        outcomes[2].2.contains("its process") && outcomes[2].2.contains("was killed"),
        "{}",
        outcomes[2].2
    );

    // The same worker process goes on: jobs enqueued after the kills run.
    for n in 0..4 {
        enqueue(&env, &["Echo", "--args", &format!(r#"{{"message":"after {n}"}}"#)]);
    }
    env.wait_until("the later jobs ran", || async { env.processed().await == 7 })
        .await;
    assert_eq!(env.llen("resque:failed").await, 3);
    assert!(is_running(worker.id()), "the worker is still up");
    signal(&worker, libc::SIGQUIT);
    assert!(wait_child(&mut worker).success());
    let log = log_paths(env.dir.path())
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    for n in 0..4 {
        assert!(log.contains(&format!("echo [default]: after {n}")), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_process_per_job_when_asked() {
    let env = Env::start().await;
    with_limits(&env, "jobs_per_child = 1\n");
    for n in 0..3 {
        enqueue(&env, &["Echo", "--args", &format!(r#"{{"message":"job {n}"}}"#)]);
    }
    let o = env.run(&["worker", "--isolation", "process", "--concurrency", "1", "--burst"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("processed 3 failed 0"), "{}", stdout(&o));
    // Job output comes through the worker's stderr, tagged with the child's pid.
    let log = stderr(&o);
    let pids: BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains("echo [default]: job"))
        .filter_map(|l| l.strip_prefix("[child ")?.split(']').next())
        .collect();
    assert_eq!(pids.len(), 3, "three jobs, three processes: {log}");
}

/// Fewer children than slots: the worker holds the other fetched jobs
/// ready, never runs more children than asked, and a job's timeout starts
/// when a child takes it (the last of these waits past its own timeout
/// for a child, and still succeeds).
#[tokio::test(flavor = "multi_thread")]
async fn fewer_children_than_slots_hold_jobs_ready_and_time_them_from_their_start() {
    let env = Env::start().await;
    with_limits(&env, "");
    let jobs = 6;
    for _ in 0..jobs {
        enqueue(&env, &["Sleep", "--timeout-ms", "700", "--args", r#"{"ms":400}"#]);
    }
    let mut worker = env.spawn_worker(&["--isolation", "process", "--concurrency", "16", "--children", "2"]);
    let mut most = 0;
    env.wait_until("every job ran", || {
        most = most.max(children_of(worker.id()).len());
        async { env.processed().await == jobs }
    })
    .await;
    signal(&worker, libc::SIGTERM);
    worker.wait().unwrap();
    assert_eq!(most, 2, "two children, never more");
    assert_eq!(
        failed(&env),
        Vec::<Value>::new(),
        "no job timed out waiting for a child"
    );
    let o = env.run(&[
        "worker",
        "--isolation",
        "process",
        "--concurrency",
        "2",
        "--children",
        "3",
        "--burst",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("isolation.children is 3: it must be between 1 and 2"),
        "{}",
        stderr(&o)
    );
    let o = env.run(&["worker", "--children", "2", "--burst"]);
    assert!(
        stderr(&o).contains("--children needs process isolation"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn children_see_no_resq_settings_and_die_with_their_worker() {
    let env = Env::start().await;
    with_limits(&env, "");
    let mut command = env.resq();
    command
        .env("APP_SETTING", "kept")
        .args(["worker", "--isolation", "process", "--concurrency", "3"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut worker = command.spawn().unwrap();
    let pid = worker.id();
    let mut children = BTreeSet::new();
    // Started: forked and exec'd (between the two a child still holds the
    // worker's environment, before the variables are removed).
    env.wait_until("three children started", || {
        children = children_of(pid);
        let started = children
            .iter()
            .filter(|c| {
                std::fs::read_to_string(format!("/proc/{c}/cmdline"))
                    .is_ok_and(|l| l.starts_with("resq-child (worker "))
            })
            .count();
        async move { started == 3 }
    })
    .await;
    for child in &children {
        let environ = std::fs::read(format!("/proc/{child}/environ")).unwrap();
        let vars: Vec<String> = environ
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        assert!(vars.iter().any(|v| v == "APP_SETTING=kept"), "{vars:?}");
        for secret in ["RESQ_REDIS_URL", "RESQ_KEYS_FILE"] {
            assert!(
                !vars.iter().any(|v| v.starts_with(secret)),
                "{secret} leaked into a job child: {vars:?}"
            );
        }
        let cmdline = std::fs::read_to_string(format!("/proc/{child}/cmdline")).unwrap();
        assert!(cmdline.starts_with("resq-child (worker "), "{cmdline:?}");
    }

    // kill -9 leaves no one to close the pipes politely: the children notice.
    signal(&worker, libc::SIGKILL);
    let _ = worker.wait();
    env.wait_until("the children exit", || {
        let alive = children.iter().filter(|c| is_running(**c)).count();
        async move { alive == 0 }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn term_puts_an_isolated_job_back_and_ends_its_child() {
    let env = Env::start().await;
    with_limits(&env, "");
    enqueue(&env, &["Sleep", "--args", r#"{"ms":600000}"#]);
    let mut worker = env.spawn_worker(&["--isolation", "process", "--concurrency", "1"]);
    env.wait_until("the job is running", || async {
        env.llen("resque:queue:default").await == 0
    })
    .await;
    let children = children_of(worker.id());
    assert_eq!(children.len(), 1);
    signal(&worker, libc::SIGTERM);
    assert!(wait_child(&mut worker).success());
    assert_eq!(
        env.llen("resque:queue:default").await,
        1,
        "the job is back in its queue"
    );
    env.wait_until("its child process is gone", || {
        let alive = children.iter().filter(|c| is_running(**c)).count();
        async move { alive == 0 }
    })
    .await;
    assert_eq!(env.processed().await, 0);
}

/// Refusals are never retried, even for a type that allows retries, and the
/// job's code never runs: under process isolation, `Flaky` (3 attempts)
/// with a tampered signature and with arguments over its rules.
#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_is_never_retried_and_never_reaches_perform() {
    let env = Env::start().await;
    with_limits(&env, "");
    // Signed by a producer that does not check Flaky's rules (failures <= 10).
    let keyring = std::sync::Arc::new(resq::Keyring::load(&env.keys_path()).unwrap());
    let policy = resq::Policy::new(keyring).unwrap();
    let seal = |args: Value| {
        policy
            .seal("Flaky", "iso.refuse", vec![args], resq::SealOptions::default())
            .unwrap()
            .payload()
            .to_vec()
    };
    let invalid = seal(serde_json::json!({"failures": 99, "message": "over the rule"}));
    let mut tampered: Value = serde_json::from_slice(&seal(serde_json::json!({"failures": 0}))).unwrap();
    tampered["args"][0]["message"] = "edited in Redis".into();
    let mut pipe = redis::pipe();
    pipe.sadd("resque:queues", "iso.refuse")
        .rpush("resque:queue:iso.refuse", tampered.to_string())
        .rpush("resque:queue:iso.refuse", invalid);
    pipe.query_async::<()>(&mut env.conn()).await.unwrap();

    let o = env.run(&[
        "worker",
        "--queues",
        "iso.refuse",
        "--isolation",
        "process",
        "--concurrency",
        "1",
        "--burst",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let records = failed(&env);
    let reasons: Vec<&str> = records.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["bad_signature", "invalid_args"]);
    assert_eq!(
        records[1]["error"],
        "arguments of Flaky are invalid: failures: greater than 10"
    );
    let retries: u64 = redis::cmd("ZCARD")
        .arg("resque:resq:retry")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert_eq!(retries, 0, "a refusal is never retried");
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!out.contains("flaky ["), "perform ran: {out}");
    // The same type's real failures are retried: the refusal above is not
    // for want of attempts.
    env.client()
        .enqueue_to(
            "iso.refuse",
            &FlakyArgs {
                failures: 1,
                message: "retried".into(),
            },
        )
        .await
        .unwrap();
    let o = env.run(&[
        "worker",
        "--queues",
        "iso.refuse",
        "--isolation",
        "process",
        "--concurrency",
        "1",
        "--burst",
    ]);
    assert_eq!(stdout(&o).trim(), "processed 1 failed 1 requeued 0 recovered 0");
    let retries: u64 = redis::cmd("ZCARD")
        .arg("resque:resq:retry")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert_eq!(retries, 1, "a job_failed attempt waits for its retry");
}

/// `Flaky`'s arguments, typed on the producer side.
#[derive(serde::Serialize, serde::Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct FlakyArgs {
    #[garde(skip)]
    failures: u32,
    #[garde(skip)]
    message: String,
}
impl resq::Job for FlakyArgs {
    const CLASS: &'static str = "Flaky";
    async fn perform(self, _: resq::JobContext) -> Result<(), resq::JobError> {
        Ok(())
    }
}

/// Pids of running `sleep <seconds>` processes (any parent, any session).
fn sleeps(seconds: u32) -> Vec<u32> {
    let wanted = format!("sleep\0{seconds}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted.as_bytes()) && is_running(*pid)
        })
        .collect()
}

/// A job that starts a process in a new session (out of its process group)
/// cannot leave it running: not past the job's end, not past its timeout,
/// not past its worker's death (kill -9).
#[tokio::test(flavor = "multi_thread")]
async fn what_a_job_starts_in_a_new_session_ends_with_it() {
    let env = Env::start().await;
    with_limits(&env, "");
    // Durations no other process uses, so no other run's sleep is counted.
    let base = 40_000 + (std::process::id() % 10_000) * 3;
    let (ends, times_out, orphaned) = (base, base + 1, base + 2);
    enqueue(
        &env,
        &[
            "Detach",
            "--queue",
            "iso.detach",
            "--args",
            &format!(r#"{{"seconds":{ends}}}"#),
        ],
    );
    enqueue(
        &env,
        &[
            "Detach",
            "--queue",
            "iso.detach",
            "--timeout-ms",
            "400",
            "--args",
            &format!(r#"{{"seconds":{times_out},"wait_ms":600000}}"#),
        ],
    );
    let o = env.run(&[
        "worker",
        "--queues",
        "iso.detach",
        "--isolation",
        "process",
        "--concurrency",
        "2",
        "--burst",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "processed 2 failed 1 requeued 0 recovered 0");
    let reasons: Vec<Value> = failed(&env).iter().map(|f| f["reason"].clone()).collect();
    assert_eq!(reasons, ["timeout"]);
    assert_eq!(sleeps(ends), Vec::<u32>::new(), "the job ended, its daemon too");
    assert_eq!(
        sleeps(times_out),
        Vec::<u32>::new(),
        "the job timed out, its daemon too"
    );
    assert!(
        stderr(&o).contains("killed the processes the job started"),
        "{}",
        stderr(&o)
    );

    // The worker dies mid-job: the child's watchdog ends the daemon first.
    enqueue(
        &env,
        &[
            "Detach",
            "--queue",
            "iso.orphan",
            "--args",
            &format!(r#"{{"seconds":{orphaned},"wait_ms":600000}}"#),
        ],
    );
    let mut worker = env.spawn_worker(&["--queues", "iso.orphan", "--isolation", "process", "--concurrency", "1"]);
    env.wait_until("the daemon runs", || async { sleeps(orphaned).len() == 1 })
        .await;
    signal(&worker, libc::SIGKILL);
    worker.wait().unwrap();
    env.wait_until("the daemon is gone", || async { sleeps(orphaned).is_empty() })
        .await;
}

/// A panic, a crash and a memory limit are retried like any failed run:
/// the next attempt is re-signed with `attempt` + 1 and the failure in its
/// history, and it runs.
#[tokio::test(flavor = "multi_thread")]
async fn panics_crashes_and_limits_are_retried_with_their_history() {
    let env = Env::start().await;
    with_limits(&env, "");
    for (queue, how) in [("iso.crash", "crash"), ("iso.limit", "exhaust")] {
        enqueue(
            &env,
            &[
                "Flaky",
                "--queue",
                queue,
                "--args",
                &format!(r#"{{"failures":1,"how":"{how}","message":"{how}"}}"#),
            ],
        );
    }
    let mut isolated = env.spawn_worker(&["--queues", "iso.*", "--isolation", "process", "--concurrency", "2"]);
    // The panic in the worker itself (no isolation): a panic is caught.
    enqueue(
        &env,
        &[
            "Flaky",
            "--queue",
            "coop.panic",
            "--args",
            r#"{"failures":1,"how":"panic","message":"panic"}"#,
        ],
    );
    let mut cooperative = env.spawn_worker(&["--queues", "coop.panic", "--concurrency", "1"]);
    env.wait_until("three first attempts failed and wait for their retry", || async {
        env.processed().await == 3
    })
    .await;
    let retries: Vec<Value> = serde_json::from_slice(&env.run(&["retry-set", "list", "--json"]).stdout).unwrap();
    let mut seen: Vec<(String, u64, String)> = retries
        .iter()
        .map(|r| {
            let history = &r["payload"]["failures"];
            assert_eq!(history.as_array().map(Vec::len), Some(1), "{r}");
            assert_eq!(history[0]["attempt"], 0, "{r}");
            (
                r["queue"].as_str().unwrap().to_string(),
                r["attempt"].as_u64().unwrap(),
                history[0]["exception"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("coop.panic".to_string(), 1, "Panic".to_string()),
            ("iso.crash".to_string(), 1, "job_crashed".to_string()),
            ("iso.limit".to_string(), 1, "resource_limit".to_string()),
        ]
    );
    env.wait_until("the retries ran", || async { env.processed().await == 6 })
        .await;
    assert_eq!(env.llen("resque:failed").await, 0, "each second attempt succeeded");
    for worker in [&isolated, &cooperative] {
        signal(worker, libc::SIGQUIT);
    }
    for worker in [&mut isolated, &mut cooperative] {
        assert!(wait_child(worker).success());
    }
    // Isolated job output reaches the worker's log; a cooperative job's,
    // its stdout.
    let mut log = log_paths(env.dir.path())
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    std::io::Read::read_to_string(&mut cooperative.stdout.take().unwrap(), &mut log).unwrap();
    for (queue, message) in [
        ("iso.crash", "crash"),
        ("iso.limit", "exhaust"),
        ("coop.panic", "panic"),
    ] {
        assert!(
            log.contains(&format!("flaky [{queue}] attempt 1: {message}")),
            "{queue}: {log}"
        );
    }
}

/// Under process isolation the worker still checks every envelope itself:
/// a tampered, a replayed and an expired job never reach a child (job
/// output would show in the worker's log as `[child <pid>] echo ...`).
#[tokio::test(flavor = "multi_thread")]
async fn tampered_replayed_and_expired_jobs_never_reach_a_child() {
    let env = Env::start().await;
    with_limits(&env, "");
    let keyring = std::sync::Arc::new(resq::Keyring::load(&env.keys_path()).unwrap());
    let policy = resq::Policy::new(std::sync::Arc::clone(&keyring)).unwrap();
    let echo = |message: &str| {
        policy
            .seal(
                "Echo",
                "iso.sec",
                vec![serde_json::json!({ "message": message })],
                resq::SealOptions::default(),
            )
            .unwrap()
            .payload()
            .to_vec()
    };
    // One that runs, so its bytes can be replayed.
    let original = echo("original");
    let mut pipe = redis::pipe();
    pipe.sadd("resque:queues", "iso.sec")
        .rpush("resque:queue:iso.sec", &original);
    pipe.query_async::<()>(&mut env.conn()).await.unwrap();
    let o = env.run(&["worker", "--queues", "iso.sec", "--isolation", "process", "--burst"]);
    assert!(stderr(&o).contains("echo [iso.sec]: original"), "{}", stderr(&o));

    let mut tampered: Value = serde_json::from_slice(&echo("tampered")).unwrap();
    tampered["args"][0]["message"] = "tampered, edited in Redis".into();
    let mut expired = resq::Envelope::decode(&echo("expired"), &resq::PayloadLimits::default()).unwrap();
    expired.expires_at = Some(1_000_000_000.0); // 2001
    resq::envelope::sign(&mut expired, keyring.signer().unwrap()).unwrap();
    let mut pipe = redis::pipe();
    pipe.rpush("resque:queue:iso.sec", tampered.to_string())
        .rpush("resque:queue:iso.sec", &original)
        .rpush("resque:queue:iso.sec", expired.to_bytes().unwrap());
    pipe.query_async::<()>(&mut env.conn()).await.unwrap();
    let o = env.run(&["worker", "--queues", "iso.sec", "--isolation", "process", "--burst"]);
    assert_eq!(stdout(&o).trim(), "processed 3 failed 3 requeued 0 recovered 0");
    let mut reasons: Vec<String> = failed(&env)
        .iter()
        .map(|f| f["reason"].as_str().unwrap().to_string())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["bad_signature", "expired", "replayed"]);
    assert!(
        !stderr(&o).contains("echo ["),
        "a refused job reached a child: {}",
        stderr(&o)
    );
}

/// The variable `redis.password_env` names holds a secret the worker needs
/// and jobs do not: children never see it.
#[tokio::test(flavor = "multi_thread")]
async fn the_password_env_variable_is_withheld_from_children() {
    let env = Env::start().await;
    let redis = local_redis::LocalRedis::start_with(local_redis::Options {
        requirepass: Some("child-must-not-see".into()),
        ..Default::default()
    })
    .unwrap();
    std::fs::write(
        env.dir.path().join("resq.toml"),
        "[redis]\npassword_env = \"APP_REDIS_PW\"\n[isolation]\nmemory_limit_mb = 128\n",
    )
    .unwrap();
    let mut worker = env
        .resq()
        .env("RESQ_REDIS_URL", redis.url())
        .env("APP_REDIS_PW", "child-must-not-see")
        .env("APP_SETTING", "kept")
        .args(["worker", "--isolation", "process", "--concurrency", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = worker.id();
    let mut children = BTreeSet::new();
    env.wait_until("two children started", || {
        children = children_of(pid);
        let started = children
            .iter()
            .filter(|c| {
                std::fs::read_to_string(format!("/proc/{c}/cmdline"))
                    .is_ok_and(|l| l.starts_with("resq-child (worker "))
            })
            .count();
        async move { started == 2 }
    })
    .await;
    for child in &children {
        let environ = String::from_utf8_lossy(&std::fs::read(format!("/proc/{child}/environ")).unwrap()).into_owned();
        assert!(environ.contains("APP_SETTING=kept"), "{environ}");
        assert!(
            !environ.contains("APP_REDIS_PW") && !environ.contains("child-must-not-see"),
            "{environ}"
        );
    }
    signal(&worker, libc::SIGTERM);
    assert!(wait_child(&mut worker).success());
}
