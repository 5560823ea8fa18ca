//! Sentinel mode against real servers on free loopback ports: a master, one
//! replica and three sentinels (`down-after-milliseconds` 1000). The real
//! `resq` binary checks its config, runs the doctor and works jobs in
//! sentinel mode while a producer in this process enqueues signed `Record`
//! jobs through the library, also in sentinel mode; the master is killed
//! with SIGKILL under that load. The worker must never exit, and every job
//! acknowledged to the producer after the failover must run (counted from
//! the lines `Record` appends). Jobs acknowledged before the kill may be
//! lost by Redis's asynchronous replication, and finished ones may run
//! again: those are counted and printed, not asserted. A second test
//! demotes a live master (`SENTINEL FAILOVER`: it turns replica and answers
//! writes with READONLY), a third runs against a sentinel that wants a
//! password.
//!
//! Durable acknowledgements (`redis.wait_replicas`): the same setup under
//! the load of 2,000 jobs from four producer tasks, the replication link
//! cut 300 ms before the master's SIGKILL (the replica frozen by `DEBUG
//! SLEEP` so it cannot reconnect, the master's link dropped by `CLIENT KILL
//! TYPE replica`): with `wait_replicas = 1` every acknowledged job completes
//! (asserted; duplicates counted). Without it, the jobs lost are counted by
//! an ignored test, run on purpose, for the figures in docs/operations.md.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::failover::{log_of, lost_and_twice, resq, run, runs, spawn_worker, wait_for, workdir, Load, Record};
use common::{signal, stderr, stdout, wait_child};
use local_redis::{LocalRedis, Options};
use resq::{Client, Keyring};
use resq_redis::{RedisConfig, RedisStore, SentinelConfig, WaitReplicas};

const MASTER: &str = "mymaster";

/// One command to the server on `port`, over a connection of its own.
async fn query<T: redis::FromRedisValue>(port: u16, password: Option<&str>, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    let auth = password.map_or(String::new(), |p| format!(":{p}@"));
    let client = redis::Client::open(format!("redis://{auth}127.0.0.1:{port}/0"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    cmd.query_async(&mut conn).await
}

/// The master's port as the sentinel on `port` names it.
async fn named_master(port: u16, password: Option<&str>) -> Option<u16> {
    let reply: Option<(String, String)> = query(
        port,
        password,
        redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(MASTER),
    )
    .await
    .ok()?;
    reply.and_then(|(_, p)| p.parse().ok())
}

/// A sentinel watching the master on `master_port`.
fn sentinel(master_port: u16, quorum: u32, extra: &str, requirepass: Option<&str>) -> LocalRedis {
    LocalRedis::start_with(Options {
        sentinel: Some(format!(
            "sentinel monitor {MASTER} 127.0.0.1 {master_port} {quorum}\n\
             sentinel down-after-milliseconds {MASTER} 1000\n\
             sentinel failover-timeout {MASTER} 2000\n{extra}"
        )),
        requirepass: requirepass.map(str::to_string),
        ..Options::default()
    })
    .expect("a sentinel")
}

/// The environment that puts resq in sentinel mode with `sentinels`.
fn sentinel_mode(sentinels: &[LocalRedis]) -> [(&'static str, String); 3] {
    let list = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port()))
        .collect::<Vec<_>>()
        .join(",");
    [
        ("RESQ_REDIS_MODE", "sentinel".to_string()),
        ("RESQ_REDIS_MASTER_NAME", MASTER.to_string()),
        ("RESQ_REDIS_SENTINELS", list),
    ]
}

/// A steady producer of signed `Record` jobs through the library in
/// sentinel mode: each acknowledged id with the instant of its ack. An
/// enqueue that fails is not retried (its job may or may not have landed:
/// it is in neither count).
struct Producer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Producer {
    fn start(client: Client, every: Duration) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let (stop2, acked2, failed2) = (Arc::clone(&stop), Arc::clone(&acked), Arc::clone(&failed));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop2.load(Ordering::Relaxed) {
                tick.tick().await;
                match client.enqueue(&Record { ms: 5 }).await {
                    Ok(id) => acked2.lock().unwrap().push((id, Instant::now())),
                    Err(_) => {
                        failed2.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Producer {
            stop,
            acked,
            failed,
            task,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn stop(self) -> (Vec<(String, Instant)>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let acked = self.acked.lock().unwrap().clone();
        (acked, self.failed.load(Ordering::Relaxed))
    }
}

/// The library's store in sentinel mode, over `sentinels`.
async fn sentinel_store(sentinels: &[&LocalRedis]) -> RedisStore {
    sentinel_store_waiting(sentinels, None).await
}

/// The same, its acknowledged writes waiting for replicas as `wait` says.
async fn sentinel_store_waiting(sentinels: &[&LocalRedis], wait: Option<WaitReplicas>) -> RedisStore {
    let mut config = RedisConfig::new(format!("redis://{MASTER}/0"));
    config.wait = wait;
    config.sentinel = Some(SentinelConfig {
        master_name: MASTER.into(),
        sentinels: sentinels.iter().map(|s| ("127.0.0.1".to_string(), s.port())).collect(),
        username: None,
        password: None,
    });
    RedisStore::connect(&config, "resque")
        .await
        .expect("connect in sentinel mode")
}

/// A master whose replica is in sync.
async fn master_and_replica() -> (LocalRedis, LocalRedis) {
    // A replica's first sync waits 5 s for more replicas by default.
    let no_delay = || vec!["--repl-diskless-sync-delay".to_string(), "0".to_string()];
    let master = LocalRedis::start_with(Options {
        extra_args: no_delay(),
        ..Options::default()
    })
    .expect("redis-server");
    // DEBUG SLEEP freezes the replica in the durable-acknowledgement tests.
    let mut replica_args = vec![
        "--replicaof".to_string(),
        "127.0.0.1".to_string(),
        master.port().to_string(),
        "--enable-debug-command".to_string(),
        "local".to_string(),
    ];
    replica_args.extend(no_delay());
    let replica = LocalRedis::start_with(Options {
        extra_args: replica_args,
        ..Options::default()
    })
    .expect("a replica");
    wait_for("the replica to sync", Duration::from_secs(20), || async {
        let info: String = query(replica.port(), None, redis::cmd("INFO").arg("replication"))
            .await
            .unwrap_or_default();
        info.contains("master_link_status:up")
    })
    .await;
    (master, replica)
}

/// Waits until the sentinel knows `peers` other sentinels and the replica.
async fn wait_sentinel_ready(s: &LocalRedis, peers: usize) {
    wait_for("the sentinels to meet", Duration::from_secs(20), || async {
        let known: Vec<redis::Value> = query(s.port(), None, redis::cmd("SENTINEL").arg("sentinels").arg(MASTER))
            .await
            .unwrap_or_default();
        let replicas: Vec<redis::Value> = query(s.port(), None, redis::cmd("SENTINEL").arg("replicas").arg(MASTER))
            .await
            .unwrap_or_default();
        known.len() == peers && replicas.len() == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_follows_a_failover_and_runs_every_job_acknowledged_after_it() {
    let began = Instant::now();
    let (mut master, replica) = master_and_replica().await;
    let sentinels: Vec<LocalRedis> = (0..3).map(|_| sentinel(master.port(), 2, "", None)).collect();
    // A failover needs a majority of sentinels that know each other (they
    // meet through the master every 2 s) and the replica.
    for s in &sentinels {
        wait_sentinel_ready(s, 2).await;
    }
    let ready = began.elapsed();
    let vars = sentinel_mode(&sentinels);
    let dir = workdir("[worker]\nliveness_ttl_ms = 900\nreap_interval_ms = 200\npoll_max_ms = 50\n");
    let dir = dir.path();

    let o = run(dir, &vars, &["config", "check"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let named = format!(
        "the sentinels name 127.0.0.1:{} as the master of {MASTER}",
        master.port()
    );
    assert!(stdout(&o).contains(&named), "{}", stdout(&o));
    let o = run(dir, &vars, &["doctor", "--json"]);
    let code = o.status.code();
    assert!(
        code == Some(0) || code == Some(3) || code == Some(4),
        "{code:?}: {}",
        stderr(&o)
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("doctor's JSON");
    let codes: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["code"].as_str())
        .collect();
    // It audited the master (a stock server: no password) and judged its
    // loopback address, not the URL's placeholder host.
    assert!(codes.contains(&"redis-no-password"), "{codes:?}");
    assert!(!codes.contains(&"redis-url-plain"), "{codes:?}");

    let record = dir.join("record.log");
    let mut worker = spawn_worker(dir, &vars, &record, "default", 4);
    let store = sentinel_store(&sentinels.iter().collect::<Vec<_>>()).await;
    assert_eq!(store.sentinel_master(), Some(format!("127.0.0.1:{}", master.port())));
    let keyring = Arc::new(Keyring::load(&dir.join("keys.toml")).unwrap());
    let client = Client::new(Arc::new(store.clone()), keyring).unwrap();
    let producer = Producer::start(client, Duration::from_millis(10));

    // Load, and jobs running, before the kill.
    wait_for("jobs to run before the kill", Duration::from_secs(20), || async {
        producer.acked() >= 100 && runs(&record).len() >= 50
    })
    .await;
    let kill_started = Instant::now();
    master.kill();
    let killed = Instant::now();
    let new_port = replica.port();
    wait_for(
        "the sentinels to promote the replica",
        Duration::from_secs(30),
        || async { named_master(sentinels[0].port(), None).await == Some(new_port) },
    )
    .await;
    let failover_at = Instant::now();
    let failover = failover_at - killed;
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker exited during the failover"
    );
    let before_failover = producer.acked();
    wait_for(
        "jobs acknowledged after the failover",
        Duration::from_secs(30),
        || async {
            let acked = producer.acked.lock().unwrap();
            acked.iter().filter(|(_, at)| *at > failover_at).count() >= 150
        },
    )
    .await;
    let first_ack_after = producer
        .acked
        .lock()
        .unwrap()
        .iter()
        .find(|(_, at)| *at > killed)
        .map(|(_, at)| *at - killed);
    let (acked, failed_enqueues) = producer.stop().await;
    assert_eq!(store.sentinel_master(), Some(format!("127.0.0.1:{new_port}")));

    let after: Vec<&String> = acked
        .iter()
        .filter(|(_, at)| *at > failover_at)
        .map(|(id, _)| id)
        .collect();
    let before: Vec<&String> = acked
        .iter()
        .filter(|(_, at)| *at <= kill_started)
        .map(|(id, _)| id)
        .collect();
    let between = acked.len() - after.len() - before.len();
    wait_for(
        "every job acknowledged after the failover to run",
        Duration::from_secs(30),
        || async {
            let done = runs(&record);
            after.iter().all(|id| done.get(*id).is_some_and(|r| r.1 > 0))
        },
    )
    .await;
    // Jobs the old master had handed out but the new one still holds in
    // flight come back through the reaper (liveness 900 ms): a moment more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker exited after the failover"
    );
    let done = runs(&record);
    let lost = |ids: &[&String]| ids.iter().filter(|id| done.get(**id).is_none_or(|r| r.1 == 0)).count();
    let twice = |ids: &[&String]| ids.iter().filter(|id| done.get(**id).is_some_and(|r| r.0 > 1)).count();
    let (lost_before, lost_after) = (lost(&before), lost(&after));
    let (twice_before, twice_after) = (twice(&before), twice(&after));
    let log = log_of(dir);
    println!(
        "sentinel failover: servers ready in {ready:.1?}; the sentinels promoted the replica {failover:.2?} after \
         SIGKILL of the master; first ack after the kill {first_ack_after:.2?}; acknowledged {} jobs: {} before the \
         kill (lost {lost_before}, ran more than once {twice_before}), {between} between the kill and the promotion, \
         {} after it (lost {lost_after}, ran more than once {twice_after}); {failed_enqueues} enqueues failed \
         (Unavailable, not retried); acked by the promotion: {before_failover}; the worker logged {} failed fetches \
         and {} moves; test time {:.1?}",
        acked.len(),
        before.len(),
        after.len(),
        log.matches("fetch failed").count(),
        log.matches("the Redis master moved").count(),
        began.elapsed(),
    );
    // What the worker warned about, by message.
    let mut warnings: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
    for line in log.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if matches!(entry["level"].as_str(), Some("WARN" | "ERROR")) {
            let message = entry["fields"]["message"].as_str().unwrap_or("?");
            *warnings.entry(message.to_string()).or_default() += 1;
        }
    }
    println!("  the worker's warnings: {warnings:?}");
    assert_eq!(lost_after, 0, "jobs acknowledged after the failover never ran");
    assert!(
        log.contains("the Redis master moved: following it"),
        "the worker did not say it followed the master"
    );

    // A new process finds the new master.
    let o = run(dir, &vars, &["config", "check"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!("the sentinels name 127.0.0.1:{new_port} as the master")),
        "{}",
        stdout(&o)
    );
    signal(&worker, libc::SIGTERM);
    assert!(wait_child(&mut worker).success(), "{}", log_of(dir));
}

/// A master demoted while alive: the sentinel turns it into a replica (it
/// answers writes with READONLY, after dropping its clients), and the
/// worker and the producer follow the promoted one; the worker's wake-up
/// listener too (idle polls are 10 s apart here, so a job that runs within
/// 2 s was woken by its publish on the new master).
#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_master_is_left_for_the_promoted_one_wake_ups_included() {
    let began = Instant::now();
    let (master, replica) = master_and_replica().await;
    // A promotion slower than failover-timeout is abandoned: give it room.
    let s = sentinel(
        master.port(),
        1,
        &format!("sentinel failover-timeout {MASTER} 10000\n"),
        None,
    );
    wait_sentinel_ready(&s, 0).await;
    let vars = [
        ("RESQ_REDIS_MODE", "sentinel".to_string()),
        ("RESQ_REDIS_MASTER_NAME", MASTER.to_string()),
        ("RESQ_REDIS_SENTINELS", format!("127.0.0.1:{}", s.port())),
    ];
    let dir = workdir("[worker]\nliveness_ttl_ms = 900\nreap_interval_ms = 200\npoll_max_ms = 10000\n");
    let dir = dir.path();
    let record = dir.join("record.log");
    let mut worker = spawn_worker(dir, &vars, &record, "default", 4);
    let store = sentinel_store(&[&s]).await;
    let keyring = Arc::new(Keyring::load(&dir.join("keys.toml")).unwrap());
    let client = Client::new(Arc::new(store.clone()), keyring).unwrap();
    // Enqueues until one is acknowledged (each failure is Unavailable).
    let enqueue = || async {
        for _ in 0..200 {
            match client.enqueue(&Record { ms: 0 }).await {
                Ok(id) => return id,
                Err(resq::EnqueueError::Store(resq::store::StoreError::Unavailable(_))) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("a refusal, not an outage: {e}"),
            }
        }
        panic!("no enqueue acknowledged in 10 s");
    };
    let ran = |id: String| {
        let record = record.clone();
        async move {
            wait_for("the job to run", Duration::from_secs(20), || async {
                runs(&record).get(&id).is_some_and(|r| r.1 > 0)
            })
            .await;
        }
    };
    // Once the worker idles, a job runs at its publish, not at the next poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = enqueue().await;
    ran(id).await;

    let demoted_at = Instant::now();
    let _: String = query(s.port(), None, redis::cmd("SENTINEL").arg("failover").arg(MASTER))
        .await
        .expect("SENTINEL FAILOVER");
    wait_for("the promotion", Duration::from_secs(20), || async {
        named_master(s.port(), None).await == Some(replica.port())
    })
    .await;
    let promoted = demoted_at.elapsed();
    // The old master lives on and still takes writes (the sentinels turn it
    // into a replica seconds later): no command of ours fails. Both
    // processes leave it at the sentinels' +switch-master.
    let write: redis::RedisResult<()> = query(master.port(), None, redis::cmd("SET").arg("k").arg("v")).await;
    let new_master = format!("127.0.0.1:{}", replica.port());
    wait_for("the producer to follow", Duration::from_secs(5), || async {
        store.sentinel_master().as_ref() == Some(&new_master)
    })
    .await;
    let producer_followed = demoted_at.elapsed();
    wait_for("the worker to follow", Duration::from_secs(5), || async {
        log_of(dir).contains("the Redis master moved: following it")
    })
    .await;
    let worker_followed = demoted_at.elapsed();
    let id = enqueue().await;
    ran(id).await;
    // Idle again: the next job is woken on the new master.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = enqueue().await;
    let enqueued = Instant::now();
    ran(id).await;
    let woken = enqueued.elapsed();
    println!(
        "demotion: promoted {promoted:.2?} after SENTINEL FAILOVER (the old master then took a write: {}); the \
         producer followed by {producer_followed:.2?}, the worker by {worker_followed:.2?}; a job enqueued after \
         ran in {woken:.2?} (idle polls 10 s apart); test time {:.1?}",
        write.is_ok(),
        began.elapsed()
    );
    assert!(
        woken < Duration::from_secs(2),
        "the wake-up listener did not follow: {woken:?}"
    );
    assert!(worker.try_wait().unwrap().is_none(), "the worker exited");
    signal(&worker, libc::SIGTERM);
    assert!(wait_child(&mut worker).success(), "{}", log_of(dir));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sentinel_login_is_used_and_a_wrong_one_is_refused_without_quoting_it() {
    let data_pw = "data-Zk9xQ3Rm7bW2pL0v";
    let sentinel_pw = "sentinel-S8nHjT4yE1cA6dUq";
    let wrong_pw = "wrong-Qm4rT8vB2nX6pL1s";
    let master = LocalRedis::start_with(Options {
        requirepass: Some(data_pw.into()),
        ..Options::default()
    })
    .expect("redis-server");
    let s = sentinel(
        master.port(),
        1,
        &format!("sentinel auth-pass {MASTER} {data_pw}\n"),
        Some(sentinel_pw),
    );
    wait_for(
        "the sentinel to answer with its password",
        Duration::from_secs(20),
        || async { named_master(s.port(), Some(sentinel_pw)).await == Some(master.port()) },
    )
    .await;
    assert!(
        named_master(s.port(), None).await.is_none(),
        "the sentinel answers without its password"
    );
    let secrets = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let path = secrets.path().join(name);
        std::fs::write(&path, format!("{text}\n")).unwrap();
        path
    };
    let (data_file, sentinel_file) = (write("data", data_pw), write("sentinel", sentinel_pw));
    let config = format!(
        "[redis]\nmode = \"sentinel\"\nmaster_name = \"{MASTER}\"\nsentinels = [\"127.0.0.1:{}\"]\n\
         password_file = {:?}\nsentinel_password_file = {:?}\n",
        s.port(),
        data_file.display().to_string(),
        sentinel_file.display().to_string(),
    );
    let dir = workdir(&config);
    let dir = dir.path();
    let no_secret = |o: &Output| {
        let all = format!("{}{}", stdout(o), stderr(o));
        for secret in [data_pw, sentinel_pw, wrong_pw] {
            assert!(!all.contains(secret), "a password was printed:\n{all}");
        }
        all
    };

    let o = run(dir, &[], &["config", "check"]);
    no_secret(&o);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = run(
        dir,
        &[],
        &["enqueue", "Echo", "--args", r#"{"message":"through the sentinel"}"#],
    );
    no_secret(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(dir, &[], &["worker", "--burst", "--queues", "default"]);
    no_secret(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("echo [default]: through the sentinel"),
        "{}",
        stdout(&o)
    );

    // A wrong sentinel password, and none: refused by the sentinel, said so.
    let o = run(
        dir,
        &[("RESQ_REDIS_SENTINEL_PASSWORD", wrong_pw.to_string())],
        &["config", "check"],
    );
    let all = no_secret(&o);
    assert!(!o.status.success(), "{all}");
    assert!(all.contains("refused the sentinel login"), "{all}");
    assert!(
        all.contains("redis.sentinel_password_file"),
        "the hint names the setting: {all}"
    );
    std::fs::write(
        dir.join("resq.toml"),
        config.replace(
            &format!("sentinel_password_file = {:?}\n", sentinel_file.display().to_string()),
            "",
        ),
    )
    .unwrap();
    let o = run(dir, &[], &["config", "check"]);
    let all = no_secret(&o);
    assert!(
        !o.status.success() && all.contains("refused the sentinel login"),
        "{all}"
    );
    // The right sentinel login and a wrong data password: the master refuses.
    let o = run(
        dir,
        &[
            ("RESQ_REDIS_SENTINEL_PASSWORD", sentinel_pw.to_string()),
            ("RESQ_REDIS_PASSWORD", wrong_pw.to_string()),
        ],
        &["config", "check"],
    );
    let all = no_secret(&o);
    assert!(!o.status.success() && all.contains("refused the master login"), "{all}");
}

/// One command to the sentinel on `port` as the ACL user `user`.
async fn query_as<T: redis::FromRedisValue>(
    port: u16,
    user: &str,
    password: &str,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://{user}:{password}@127.0.0.1:{port}/0"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    cmd.query_async(&mut conn).await
}

/// `resq acl --role sentinel` prints the rule for the sentinels' user:
/// applied on a sentinel as printed, resq checks its config, enqueues and
/// works through the sentinel logged in as that user, and the user cannot
/// fail the master over, reconfigure it, or listen to other announcements.
#[tokio::test(flavor = "multi_thread")]
async fn the_sentinel_acl_rule_is_enough_for_resq_and_no_more() {
    let master = LocalRedis::start().expect("redis-server");
    let s = sentinel(master.port(), 1, "", None);
    wait_for("the sentinel to name the master", Duration::from_secs(20), || async {
        named_master(s.port(), None).await == Some(master.port())
    })
    .await;
    let dir = workdir("");
    let dir = dir.path();
    let printed = run(dir, &[], &["acl", "--role", "sentinel"]);
    assert!(printed.status.success(), "{}", stderr(&printed));
    let text = stdout(&printed);
    let setuser = text
        .lines()
        .find_map(|l| l.strip_prefix("ACL SETUSER "))
        .unwrap_or_else(|| panic!("no rule printed: {text}"));
    let password = text
        .lines()
        .find_map(|l| l.split("(shown once; Redis keeps only its SHA-256): ").nth(1))
        .unwrap_or_else(|| panic!("no password printed: {text}"))
        .trim()
        .to_string();
    let words: Vec<&str> = setuser.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"resq-sentinel"), "{setuser}");
    let mut apply = redis::cmd("ACL");
    apply.arg("SETUSER").arg(&words);
    let _: () = query(s.port(), None, &apply)
        .await
        .expect("the sentinel takes the rule as printed");

    let secret = dir.join("sentinel-password");
    std::fs::write(&secret, format!("{password}\n")).unwrap();
    let config = format!(
        "[redis]\nmode = \"sentinel\"\nmaster_name = \"{MASTER}\"\nsentinels = [\"127.0.0.1:{}\"]\n\
         sentinel_username = \"resq-sentinel\"\nsentinel_password_file = {:?}\n",
        s.port(),
        secret.display().to_string(),
    );
    std::fs::write(dir.join("resq.toml"), config).unwrap();
    let o = run(dir, &[], &["config", "check"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = run(
        dir,
        &[],
        &["enqueue", "Echo", "--args", r#"{"message":"as the sentinel user"}"#],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(dir, &[], &["worker", "--burst", "--queues", "default"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("echo [default]: as the sentinel user"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains(&password) && !stderr(&o).contains(&password));

    // What the user may not do: each refused by the sentinel's ACL.
    let named: Option<(String, String)> = query_as(
        s.port(),
        "resq-sentinel",
        &password,
        redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(MASTER),
    )
    .await
    .expect("the user asks for the master");
    assert_eq!(named.map(|(_, port)| port), Some(master.port().to_string()));
    for forbidden in [
        redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER).clone(),
        redis::cmd("SENTINEL")
            .arg("SET")
            .arg(MASTER)
            .arg("down-after-milliseconds")
            .arg(5000)
            .clone(),
        redis::cmd("SENTINEL").arg("MASTERS").clone(),
        redis::cmd("PUBLISH").arg("+switch-master").arg("forged").clone(),
    ] {
        let refused = query_as::<redis::Value>(s.port(), "resq-sentinel", &password, &forbidden).await;
        let e = refused.expect_err("refused");
        assert!(
            e.to_string().contains("NOPERM") || e.to_string().contains("permission"),
            "{e}"
        );
    }
}

/// How the replica is kept from a window of the master's writes before
/// the master dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Nothing: the master is killed under load, the replica in sync (on
    /// loopback its lag is well under a millisecond).
    None,
    /// The replication link fails shortly before the master does: the
    /// replica is frozen (`DEBUG SLEEP 0.8`, so it cannot reconnect), the
    /// master drops its link (`CLIENT KILL TYPE replica`), goes on taking
    /// and acknowledging writes for this long, then is killed. Those writes
    /// exist only on the master when it dies: what asynchronous
    /// replication loses when a link fails before its master.
    Link(Duration),
}

/// What one failover under load found.
struct Tally {
    /// Jobs the producer was told were enqueued.
    acked: usize,
    /// ... of which this many before the replication link was cut (before
    /// the kill, without a cut).
    acked_at_cut: usize,
    /// ... and this many before the master was killed.
    acked_before_kill: usize,
    /// Acknowledged jobs that never completed.
    lost: usize,
    /// Acknowledged jobs that completed only once the worker exited (left
    /// in its in-flight records on the new master, see below).
    stranded: usize,
    /// Acknowledged jobs that ran more than once.
    twice: usize,
    /// Enqueues that failed (not acknowledged), by error.
    failed: std::collections::BTreeMap<String, u64>,
    /// SIGKILL to the promotion.
    failover: Duration,
    took: Duration,
}

/// Until a write on the master is acknowledged by its replica (it lists a
/// replica `online` before the replica sent its first acknowledgement).
async fn wait_replica_acks(master: &LocalRedis) {
    wait_for("the replica to acknowledge writes", Duration::from_secs(20), || async {
        let client = redis::Client::open(master.url()).unwrap();
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        let reply: redis::RedisResult<((), u32)> = redis::pipe()
            .set("probe", "x")
            .cmd("WAIT")
            .arg(1)
            .arg(100)
            .query_async(&mut conn)
            .await;
        reply.is_ok_and(|(_, n)| n >= 1)
    })
    .await;
}

/// A master, its replica and three sentinels; a `resq worker` in sentinel
/// mode running `Record` jobs; `producers` tasks of this process enqueueing
/// them through the library in sentinel mode until `jobs` are acknowledged.
/// Halfway (and once jobs run), the master dies by SIGKILL (after `cut`);
/// the sentinels promote the replica; the producers and the worker follow;
/// a new replica of the promoted master joins.
/// With `wait`, the worker and the producers set `redis.wait_replicas = 1`.
/// Returns once every acknowledged job completed, or (some never will)
/// once the new master holds nothing queued or in flight and the record
/// stopped growing.
async fn failover_under_load(wait: bool, cut: Cut, jobs: usize, producers: usize) -> Tally {
    let began = Instant::now();
    let (mut master, replica) = master_and_replica().await;
    wait_replica_acks(&master).await;
    let sentinels: Vec<LocalRedis> = (0..3).map(|_| sentinel(master.port(), 2, "", None)).collect();
    for s in &sentinels {
        wait_sentinel_ready(s, 2).await;
    }
    let vars = sentinel_mode(&sentinels);
    let wait_config = if wait { "[redis]\nwait_replicas = 1\n" } else { "" };
    let dir = workdir(&format!(
        "[worker]\nliveness_ttl_ms = 900\nreap_interval_ms = 200\npoll_max_ms = 50\nconcurrency = 8\n{wait_config}"
    ));
    let dir = dir.path();
    let record = dir.join("record.log");
    let mut worker = spawn_worker(dir, &vars, &record, "default", 4);
    let store = sentinel_store_waiting(
        &sentinels.iter().collect::<Vec<_>>(),
        wait.then_some(WaitReplicas {
            replicas: 1,
            timeout: Duration::from_millis(1000),
        }),
    )
    .await;
    let keyring = Arc::new(Keyring::load(&dir.join("keys.toml")).unwrap());
    let client = Client::new(Arc::new(store.clone()), keyring).unwrap();

    // The producers: each acknowledged id; each failure by its error.
    let load = Load::start(&client, jobs, producers, &["default"]);
    let count = || load.count();

    wait_for(
        "half the jobs acknowledged, and jobs running",
        Duration::from_secs(60),
        || async { count() >= jobs / 2 && runs(&record).len() >= 50 },
    )
    .await;
    let mut acked_at_cut = count();
    if let Cut::Link(window) = cut {
        let port = replica.port();
        let frozen =
            tokio::spawn(async move { query::<()>(port, None, redis::cmd("DEBUG").arg("SLEEP").arg("0.8")).await });
        // The sleep has begun once the replica answers nothing.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let cut: i64 = query(
            master.port(),
            None,
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica"),
        )
        .await
        .expect("CLIENT KILL TYPE replica");
        acked_at_cut = count();
        assert_eq!(cut, 1, "the master had one replica link to cut");
        tokio::time::sleep(window).await;
        master.kill();
        let _ = frozen.await;
    } else {
        master.kill();
    }
    let killed = Instant::now();
    let acked_before_kill = count();
    if cut == Cut::None {
        acked_at_cut = acked_before_kill;
    }
    wait_for(
        "the sentinels to promote the replica",
        Duration::from_secs(30),
        || async { named_master(sentinels[0].port(), None).await == Some(replica.port()) },
    )
    .await;
    let failover = killed.elapsed();
    // The promoted master has no replica: with wait_replicas = 1 nothing
    // is acknowledged until one joins (each write waits, then is reported
    // NotReplicated). A replacement joins, as an operator or an
    // orchestrator would bring one.
    let mut args = vec![
        "--replicaof".to_string(),
        "127.0.0.1".to_string(),
        replica.port().to_string(),
    ];
    args.extend(["--repl-diskless-sync-delay".to_string(), "0".to_string()]);
    let _replacement = LocalRedis::start_with(Options {
        extra_args: args,
        ..Options::default()
    })
    .expect("a replacement replica");
    let (acked, failed) = load.finish(Duration::from_secs(60)).await;
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker exited during the failover"
    );

    // Every acknowledged job completes, or the new master is quiet:
    // nothing queued, the record unchanged for 3 s (in-flight jobs of the
    // old master come back through the reaper or the worker within ~1 s).
    let all_done = |done: &HashMap<String, (u32, u32)>| acked.iter().all(|id| done.get(id).is_some_and(|r| r.1 > 0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since: Option<(Instant, u32)> = None;
    loop {
        let done = runs(&record);
        if all_done(&done) || Instant::now() > deadline {
            break;
        }
        let queued: u64 = query(replica.port(), None, redis::cmd("LLEN").arg("resque:queue:default"))
            .await
            .unwrap_or(1);
        let lines = done.values().map(|r| r.0 + r.1).sum::<u32>();
        match quiet_since {
            Some((at, seen)) if queued == 0 && seen == lines => {
                if at.elapsed() >= Duration::from_secs(3) {
                    break;
                }
            }
            _ if queued == 0 => quiet_since = Some((Instant::now(), lines)),
            _ => quiet_since = None,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(worker.try_wait().unwrap().is_none(), "the worker exited");
    signal(&worker, libc::SIGTERM);
    assert!(wait_child(&mut worker).success(), "{}", log_of(dir));
    // Jobs can be left in the worker's in-flight records on the new master
    // (fetched before the failover, acked on the old master only): the
    // worker does not hold them, and nothing takes them back while it
    // lives. Its exit puts them back; a burst worker drains them.
    let before_drain = runs(&record);
    let stranded = if all_done(&before_drain) {
        0
    } else {
        let o = resq(dir, &vars)
            .env("DEMO_RECORD_FILE", &record)
            .args(["worker", "--burst", "--queues", "default"])
            .output()
            .expect("a burst worker");
        assert!(o.status.success(), "{}", stderr(&o));
        let done = runs(&record);
        let late = |id: &String| before_drain.get(id).is_none_or(|r| r.1 == 0) && done.get(id).is_some_and(|r| r.1 > 0);
        acked.iter().filter(|id| late(id)).count()
    };
    let (lost, twice) = lost_and_twice(&acked, &runs(&record));
    Tally {
        acked: acked.len(),
        acked_at_cut,
        acked_before_kill,
        lost,
        stranded,
        twice,
        failed,
        failover,
        took: began.elapsed(),
    }
}

fn describe(what: &str, t: &Tally) -> String {
    format!(
        "{what}: {} jobs acknowledged ({} between the cut and the master's SIGKILL), {} lost, {} ran more than \
         once, {} ran only after the worker's exit; enqueues not acknowledged: {:?}; promotion {:.2?} after the \
         kill; run {:.1?}",
        t.acked,
        t.acked_before_kill.saturating_sub(t.acked_at_cut),
        t.lost,
        t.twice,
        t.stranded,
        t.failed,
        t.failover,
        t.took
    )
}

/// `redis.wait_replicas = 1` on the producers and the worker: a failover
/// under load, the replication link cut 300 ms before the master dies,
/// loses no acknowledged job (duplicates are counted, and allowed).
#[tokio::test(flavor = "multi_thread")]
async fn with_wait_replicas_every_acknowledged_job_survives_a_failover() {
    let t = failover_under_load(true, Cut::Link(Duration::from_millis(300)), 2000, 4).await;
    println!("{}", describe("wait_replicas = 1, link cut 300 ms before the kill", &t));
    assert!(t.acked >= 2000);
    assert_eq!(t.lost, 0, "acknowledged jobs were lost with wait_replicas = 1");
    assert_eq!(t.stranded, 0, "acknowledged acks were lost with wait_replicas = 1");
}

/// The same failovers without `wait_replicas`, on purpose (`cargo test -p
/// resq-cli --test sentinel -- --ignored --nocapture`): how many
/// acknowledged jobs Redis's asynchronous replication loses, as a figure
/// (`RESQ_TEST_RUNS` runs of each kind, default 3), printed not asserted.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run it on purpose"]
async fn without_wait_replicas_a_failover_loses_acknowledged_jobs_measured() {
    let runs: usize = std::env::var("RESQ_TEST_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    for (what, wait, cut) in [
        (
            "no wait, link cut 300 ms before the kill",
            false,
            Cut::Link(Duration::from_millis(300)),
        ),
        (
            "wait_replicas = 1, link cut 300 ms before the kill",
            true,
            Cut::Link(Duration::from_millis(300)),
        ),
        ("no wait, SIGKILL under load, replica in sync", false, Cut::None),
        (
            "wait_replicas = 1, SIGKILL under load, replica in sync",
            true,
            Cut::None,
        ),
    ] {
        for run in 1..=runs {
            // Enough jobs for the producers to go on through the window.
            let t = failover_under_load(wait, cut, 4000, 4).await;
            println!("{}", describe(&format!("{what}, run {run}/{runs}"), &t));
        }
    }
}
