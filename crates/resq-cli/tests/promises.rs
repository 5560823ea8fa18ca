//! README promises that had no test, each through the real binary: the
//! default timeout, SIGINT, RESQ_CONFIG, TLS settings from the config
//! file, no secret in a worker's logs, burst workers and cron.

mod common;

use common::*;
use local_redis::{LocalRedis, Options, TlsFiles};
use resq_test_support::Pki;
use serde_json::Value;

fn failed(env: &Env) -> Vec<Value> {
    let o = env.run(&["failed", "list", "--json", "--limit", "100"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn write_config(env: &Env, text: &str) {
    std::fs::write(env.dir.path().join("resq.toml"), text).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_default_timeout_ms_applies_to_jobs_that_set_none() {
    let env = Env::start().await;
    write_config(&env, "[worker]\ndefault_timeout_ms = 300\n");
    env.client().enqueue(&Sleep { ms: 600_000 }).await.unwrap();
    let o = env.run(&["worker", "--burst"]);
    assert_eq!(stdout(&o).trim(), "processed 1 failed 1 requeued 0 recovered 0");
    let records = failed(&env);
    assert_eq!(records[0]["reason"], "timeout");
    assert_eq!(
        records[0]["error"],
        "the job ran longer than 300 ms and it was cancelled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_now_and_puts_running_jobs_back() {
    let env = Env::start().await;
    let jobs: Vec<Sleep> = (0..2).map(|_| Sleep { ms: 600_000 }).collect();
    let ids = env.client().enqueue_bulk(&jobs).await.unwrap();
    let mut worker = env.spawn_worker(&["--concurrency", "2"]);
    env.wait_until("both running", || async { env.in_flight().await == 2 })
        .await;
    signal(&worker, libc::SIGINT);
    assert!(wait_child(&mut worker).success());
    let back: Vec<String> = env
        .lrange("resque:queue:default")
        .await
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
    // Their claims went with them: the next worker runs them.
    assert_eq!(env.in_flight().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn resq_config_names_the_config_file() {
    let env = Env::start().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("settings.toml");
    std::fs::write(&file, "namespace = \"from-resq-config\"\n").unwrap();
    let o = env
        .resq()
        .env("RESQ_CONFIG", &file)
        .args(["enqueue", "Echo", "--args", r#"{"message":"x"}"#])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(env.llen("from-resq-config:queue:default").await, 1);
    assert_eq!(env.llen("resque:queue:default").await, 0);
    // A file that is not there is an error that names it.
    let o = env
        .resq()
        .env("RESQ_CONFIG", elsewhere.path().join("nope.toml"))
        .args(["stats"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nope.toml"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_settings_from_the_config_file_connect() {
    let env = Env::start().await;
    let pki = Pki::generate();
    let tls = LocalRedis::start_with(Options {
        tls: Some(TlsFiles {
            cert: pki.path("server.pem"),
            key: pki.path("server.key"),
            ca: pki.path("ca.pem"),
            require_client_cert: true,
        }),
        ..Options::default()
    })
    .unwrap();
    write_config(
        &env,
        &format!(
            "[redis]\nurl = \"{}\"\nca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
            tls.url(),
            pki.path("ca.pem").display(),
            pki.path("client.pem").display(),
            pki.path("client.key").display()
        ),
    );
    // The environment's plain URL is not set for these runs: the file's is used.
    let run = |args: &[&str]| {
        let mut cmd = env.resq();
        cmd.env_remove("RESQ_REDIS_URL");
        cmd.args(args).output().unwrap()
    };
    let o = run(&["enqueue", "Echo", "--args", r#"{"message":"over tls"}"#]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["worker", "--burst"]);
    assert_eq!(
        stdout(&o),
        "  echo [default]: over tls\nprocessed 1 failed 0 requeued 0 recovered 0\n",
        "{}",
        stderr(&o)
    );
    // Without the client certificate the server refuses, and says which file.
    write_config(
        &env,
        &format!(
            "[redis]\nurl = \"{}\"\nca_file = \"{}\"\n",
            tls.url(),
            pki.path("ca.pem").display()
        ),
    );
    let o = run(&["stats"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("refused the client certificate (none was given)"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_logs_no_secret_when_redis_has_a_password() {
    let env = Env::start().await;
    let secret = "pw-that-must-not-be-logged-7f3a";
    let redis = LocalRedis::start_with(Options {
        requirepass: Some(secret.into()),
        ..Options::default()
    })
    .unwrap();
    let pw = env.dir.path().join("redis.pw");
    std::fs::write(&pw, format!("{secret}\n")).unwrap();
    let o = env
        .resq()
        .env("RESQ_REDIS_URL", redis.url())
        .env("RESQ_REDIS_PASSWORD_FILE", &pw)
        .env("RESQ_LOG", "trace")
        .args(["enqueue", "Fail", "--args", r#"{"message":"logged failure"}"#])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env
        .resq()
        .env("RESQ_REDIS_URL", redis.url())
        .env("RESQ_REDIS_PASSWORD_FILE", &pw)
        .env("RESQ_LOG", "trace")
        .args(["--log-format", "json", "worker", "--burst"])
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), "processed 1 failed 1 requeued 0 recovered 0");
    let logs = stderr(&o);
    assert!(
        logs.contains("\"reason\":\"job_failed\""),
        "the worker's logs were written: {logs}"
    );
    assert!(!logs.contains(secret), "the password reached the logs");
}

/// Yesterday, today and tomorrow: a yearly entry's next tick is next 1 January.
fn next_new_year_ms() -> u64 {
    let now = time::OffsetDateTime::now_utc();
    let next = time::Date::from_calendar_date(now.year() + 1, time::Month::January, 1).unwrap();
    (next.midnight().assume_utc().unix_timestamp() * 1000) as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn burst_workers_fire_no_cron_and_cron_list_shows_the_next_tick() {
    let env = Env::start().await;
    write_config(
        &env,
        "[[cron]]\nname = \"every-second\"\nschedule = \"* * * * * *\"\nclass = \"Echo\"\nargs = { message = \"tick\" }\n\
         [[cron]]\nname = \"new-year\"\nschedule = \"0 0 1 1 *\"\nclass = \"Echo\"\nargs = { message = \"happy\" }\n",
    );
    let o = env.run(&["worker", "--burst"]);
    assert_eq!(
        stdout(&o).trim(),
        "processed 0 failed 0 requeued 0 recovered 0",
        "{}",
        stderr(&o)
    );
    assert!(
        env.keys("resque:queue:*").await.is_empty(),
        "a burst worker fired a tick"
    );
    assert!(env.get("resque:resq:cron:last").await.is_none());
    let o = env.run(&["cron", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&o.stdout).unwrap();
    let entries = listed["entries"].as_array().unwrap();
    let new_year = entries.iter().find(|e| e["name"] == "new-year").unwrap();
    let expected = resq::UnixMs(next_new_year_ms()).to_string();
    assert_eq!(new_year["next"], expected.as_str());
    assert_eq!(new_year["last_fired"], Value::Null);
}
