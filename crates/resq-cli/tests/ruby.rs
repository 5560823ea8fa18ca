//! Sharing a Redis with Ruby Resque 3.0, through the real binary. Where a
//! point is about Ruby's behaviour, the test makes Ruby's exact reads: the
//! `ps | grep` pipeline `Worker#prune_dead_workers` trusts, the JSON shapes
//! resque-web's templates index into, and what its Retry pushes.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

/// Resque 3.0's `Worker#linux_worker_pids`, run as it runs it.
fn ruby_worker_pids() -> BTreeSet<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ps -A -o pid,command | grep -E "[r]esque:work|[r]esque:\sStarting|[r]esque-[0-9]" | grep -v "resque-web""#)
        .output()
        .expect("sh, ps and grep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

async fn registered(env: &Env) -> Vec<String> {
    redis::cmd("SMEMBERS")
        .arg("resque:workers")
        .query_async(&mut env.conn())
        .await
        .unwrap()
}

/// Ruby's reading of a worker id: `host, pid, queues = id.split(':')`.
fn ruby_split(id: &str) -> (String, String, String) {
    let parts: Vec<&str> = id.split(':').collect();
    assert_eq!(parts.len(), 3, "Ruby splits on every ':': {id}");
    (parts[0].into(), parts[1].into(), parts[2].into())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_same_host_ruby_worker_finds_every_resq_worker_alive() {
    let env = Env::start().await;
    let mut plain = env.spawn_worker(&["--queues", "a"]);
    let mut isolated = env.spawn_worker(&["--queues", "b", "--isolation", "process", "--concurrency", "2"]);
    let mut weighted = env.spawn_worker(&["--queues", "rq:2,legacy:1"]);
    env.wait_until("three workers registered", || async {
        registered(&env).await.len() == 3
    })
    .await;
    let pids = ruby_worker_pids();
    for worker in [&plain, &isolated, &weighted] {
        assert!(
            pids.contains(&worker.id().to_string()),
            "{} not in {pids:?}",
            worker.id()
        );
    }
    // What prune_dead_workers does with each registered id: the same host,
    // and its pid among the live ones, so it is left alone.
    for id in registered(&env).await {
        let (_host, pid, queues) = ruby_split(&id);
        assert!(pids.contains(&pid), "Ruby would prune {id}");
        if pid == weighted.id().to_string() {
            assert_eq!(queues, "rq,legacy", "the id lists real queue names, no weights");
        }
    }
    for worker in [&plain, &isolated, &weighted] {
        signal(worker, libc::SIGTERM);
    }
    for worker in [&mut plain, &mut isolated, &mut weighted] {
        assert!(wait_child(worker).success());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pruned_worker_registers_itself_again() {
    let env = Env::start().await;
    let mut worker = env.spawn_worker(&["--queues", "a"]);
    env.wait_until("registered", || async { registered(&env).await.len() == 1 })
        .await;
    let id = registered(&env).await.remove(0);
    // Ruby's Worker#unregister_worker, as an older Resque that cannot see
    // resq's title would run it.
    redis::pipe()
        .srem("resque:workers", &id)
        .del(format!("resque:worker:{id}"))
        .del(format!("resque:worker:{id}:started"))
        .hdel("resque:workers:heartbeat", &id)
        .del(format!("resque:stat:processed:{id}"))
        .del(format!("resque:stat:failed:{id}"))
        .query_async::<()>(&mut env.conn())
        .await
        .unwrap();
    env.wait_until("registered again, :started and heartbeat included", || async {
        let heartbeat: Option<String> = redis::cmd("HGET")
            .arg("resque:workers:heartbeat")
            .arg(&id)
            .query_async(&mut env.conn())
            .await
            .unwrap();
        registered(&env).await.contains(&id)
            && env.get(&format!("resque:worker:{id}:started")).await.is_some()
            && heartbeat.is_some()
    })
    .await;
    signal(&worker, libc::SIGTERM);
    assert!(wait_child(&mut worker).success());
}

/// What resque-web's working.erb, processing.erb and failed_job.erb read of
/// a payload, and what its Retry (`Job.create(queue, class, *args)`) needs.
fn assert_resque_web_can_read_payload(payload: &Value, context: &str) {
    assert!(payload.is_object(), "{context}: payload is not an object: {payload}");
    assert!(
        payload["class"].as_str().is_some_and(|c| !c.is_empty()),
        "{context}: class: {payload}"
    );
    assert!(payload["args"].is_array(), "{context}: args: {payload}");
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_resq_writes_has_the_shapes_resque_web_reads() {
    let env = Env::start().await;
    // Hostile and foreign payloads on a queue open to unsigned jobs, a queue
    // that requires signatures, and one long signed job.
    let big = format!(r#"{{"class":"Echo","args":["{}"]}}"#, "x".repeat(10_000));
    let hostile: Vec<&[u8]> = vec![
        b"[1,2]",
        b"\"a string\"",
        b"not json",
        b"\xff\xfe",
        br#"{"class":"Nope","args":[]}"#,
        br#"{"class":"Echo","args":{"message":"not an array"}}"#,
        br#"{"class":["Echo"],"args":[]}"#,
        big.as_bytes(),
    ];
    let mut pipe = redis::pipe();
    pipe.sadd("resque:queues", "open").sadd("resque:queues", "closed");
    for p in &hostile {
        pipe.rpush("resque:queue:open", *p).rpush("resque:queue:closed", *p);
    }
    pipe.query_async::<()>(&mut env.conn()).await.unwrap();
    env.client().enqueue_to("slow", &Sleep { ms: 1_500 }).await.unwrap();

    let mut worker = {
        let mut cmd = env.resq();
        cmd.env("RESQ_ALLOW_UNSIGNED", "open")
            .args(["worker", "--queues", "slow,open,closed", "--concurrency", "4"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().unwrap()
    };
    // While the Sleep runs, the working record shows it and nothing else.
    let mut seen_running = 0;
    for _ in 0..100 {
        for key in env.keys("resque:worker:*").await {
            if key.ends_with(":started") {
                continue;
            }
            let Some(record) = env.get(&key).await else { continue };
            let v: Value = serde_json::from_str(&record).unwrap();
            assert!(v["queue"].is_string() && v["run_at"].is_string(), "{record}");
            assert_resque_web_can_read_payload(&v["payload"], "working record");
            assert_eq!(
                v["payload"]["class"], "Sleep",
                "a refused job was shown as running: {record}"
            );
            seen_running += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(seen_running > 0, "the running job was never shown");
    env.wait_until("all handled", || async {
        env.processed().await == 1 + 2 * hostile.len() as u64
    })
    .await;
    env.wait_until("nothing runs: the record is gone", || async {
        env.keys("resque:worker:*")
            .await
            .iter()
            .all(|k| k.ends_with(":started"))
    })
    .await;
    signal(&worker, libc::SIGTERM);
    assert!(wait_child(&mut worker).success());

    let records = env.lrange("resque:failed").await;
    assert_eq!(records.len(), 2 * hostile.len());
    for record in &records {
        let v: Value = serde_json::from_str(record).unwrap();
        assert_resque_web_can_read_payload(&v["payload"], record);
        // failed_job.erb: worker.split(':'), DateTime.parse(failed_at),
        // backtrace.join; Retry needs a queue.
        assert!(
            v["worker"].is_string() && v["exception"].is_string() && v["error"].is_string(),
            "{record}"
        );
        assert!(v["backtrace"].is_array(), "{record}");
        assert!(
            v["queue"].as_str().is_some_and(|q| q == "open" || q == "closed"),
            "{record}"
        );
        let at = v["failed_at"].as_str().unwrap();
        assert!(
            at.len() == 23 && at.ends_with(" UTC") && at.as_bytes()[4] == b'/',
            "{at}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_records_without_an_id_have_a_stable_handle() {
    let env = Env::start().await;
    // As Ruby writes them (its JSON keeps key order: class first).
    let ruby_record = |n: u32| {
        format!(
            r#"{{"failed_at":"2026/11/24 09:58:58 UTC","payload":{{"class":"Legacy::Export","args":[{n},"csv"]}},"exception":"Resque::DirtyExit","error":"Job still being processed","backtrace":[],"worker":"rubyhost:1234:legacy","queue":"legacy"}}"#
        )
    };
    redis::pipe()
        .rpush("resque:failed", ruby_record(1))
        .rpush("resque:failed", ruby_record(2))
        .rpush("resque:failed", ruby_record(3))
        .query_async::<()>(&mut env.conn())
        .await
        .unwrap();
    let list = |env: &Env| {
        let o = env.run(&["failed", "list", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<Vec<Value>>(&o.stdout).unwrap()
    };
    let before = list(&env);
    let handles: Vec<String> = before.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert!(
        handles.iter().all(|h| h.starts_with("r-") && h.len() == 18),
        "{handles:?}"
    );
    // Removing the first does not move the others' handles (an index would).
    let o = env.run(&["failed", "remove", &handles[0]]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after: Vec<String> = list(&env)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(after, handles[1..]);
    // Retry the last: Resque's form on its queue, the record gone.
    let o = env.run(&["failed", "retry", &handles[2]]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        env.lrange("resque:queue:legacy").await,
        [r#"{"class":"Legacy::Export","args":[3,"csv"]}"#]
    );
    assert_eq!(list(&env).len(), 1);
    let o = env.run(&["failed", "retry", &handles[2]]);
    assert_eq!(o.status.code(), Some(2), "a second retry finds nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn resque_webs_retry_of_a_signed_job_is_refused_with_the_way_to_retry_it() {
    let env = Env::start().await;
    env.client()
        .enqueue_to("mail", &Noop { pad: "x".into() })
        .await
        .unwrap();
    // Noop succeeds; use a failing job: the demo's Fail, signed.
    let keyring = std::sync::Arc::new(resq::Keyring::load(&env.keys_path()).unwrap());
    resq::Client::new(std::sync::Arc::new(env.store.clone()), keyring)
        .unwrap()
        .enqueue_raw("Fail", vec![json!({"message": "smtp down"})], "mail")
        .await
        .unwrap();
    let o = env.run(&["worker", "--queues", "mail", "--burst"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let failed = env.lrange("resque:failed").await;
    assert_eq!(failed.len(), 1);
    let mut record: Value = serde_json::from_str(&failed[0]).unwrap();
    // resque-web's Failure::Redis.requeue: sets retried_at in place, then
    // Job.create(queue, class, *args): class and args only, no signature.
    record["retried_at"] = json!("2026/11/24 10:00:00 UTC");
    let class = record["payload"]["class"].clone();
    let args = record["payload"]["args"].clone();
    redis::pipe()
        .cmd("LSET")
        .arg("resque:failed")
        .arg(0)
        .arg(record.to_string())
        .rpush("resque:queue:mail", json!({"class": class, "args": args}).to_string())
        .query_async::<()>(&mut env.conn())
        .await
        .unwrap();
    let o = env.run(&["worker", "--queues", "mail", "--burst"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let failed = env.lrange("resque:failed").await;
    let refusal: Value = serde_json::from_str(&failed[1]).unwrap();
    assert_eq!(refusal["reason"], "unsigned");
    let error = refusal["error"].as_str().unwrap();
    assert!(
        error.contains("resque-web's Retry") && error.contains("resq failed retry <id>"),
        "{error}"
    );
    // The way it names works: the original record, retried by resq, runs.
    let id = record["failure_id"].as_str().unwrap();
    let o = env.run(&["failed", "retry", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env.run(&["worker", "--queues", "mail", "--burst"]);
    assert_eq!(stdout(&o).trim(), "processed 1 failed 1 requeued 0 recovered 0");
    let last: Value = serde_json::from_str(&env.lrange("resque:failed").await[1]).unwrap();
    assert_eq!(last["reason"], "job_failed", "it ran (and failed as Fail does)");
}

#[tokio::test(flavor = "multi_thread")]
async fn queues_show_which_paused_or_capped_queues_ruby_workers_serve() {
    let env = Env::start().await;
    // A Ruby worker: in Resque's registry, not in resq's.
    redis::pipe()
        .sadd("resque:workers", "rubyhost:4242:legacy,mail*")
        .sadd("resque:queues", "legacy")
        .sadd("resque:queues", "mail_bulk")
        .sadd("resque:queues", "other")
        .query_async::<()>(&mut env.conn())
        .await
        .unwrap();
    for args in [
        &["queue", "pause", "legacy"][..],
        &["queue", "cap", "mail_bulk", "10"],
        &["queue", "pause", "other"],
    ] {
        assert!(env.run(args).status.success());
    }
    let o = env.run(&["queues", "--json"]);
    let queues: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let ruby: Vec<&str> = queues
        .iter()
        .filter(|q| q["ruby_workers"] == true)
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(ruby, ["legacy", "mail_bulk"]);
    let o = env.run(&["queues"]);
    assert!(stdout(&o).contains("ignore pause and caps"), "{}", stdout(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn resq_enqueues_for_a_ruby_fleet_on_ruby_queues_only() {
    let env = Env::start().await;
    let config = env.dir.path().join("resq.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}[ruby]\nqueues = [\"legacy\", \"served\"]\n")).unwrap();
    let o = env.run(&[
        "--log-format",
        "json",
        "enqueue",
        "--for-ruby",
        "Archive::Export",
        "--queue",
        "legacy",
        "--args",
        r#"[42,"csv"]"#,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        env.lrange("resque:queue:legacy").await,
        [r#"{"class":"Archive::Export","args":[42,"csv"]}"#],
        "Resque's exact form"
    );
    let audit: Value = stderr(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["target"] == "resq::audit")
        .expect("an audit line");
    assert_eq!(audit["fields"]["class"], "Archive::Export");
    assert_eq!(audit["fields"]["queue"], "legacy");

    // A resq worker serves "served" (and requires signatures there).
    redis::pipe()
        .sadd("resque:workers", "resqhost:1:served")
        .sadd("resque:resq:workers", "resqhost:1:served")
        .query_async::<()>(&mut env.conn())
        .await
        .unwrap();
    let refused: &[(&[&str], &str)] = &[
        (&["--queue", "default"], "not declared as Ruby's"),
        (&["--queue", "served"], "requires signed jobs there"),
        (&["--queue", "legacy", "--timeout-ms", "5"], "Ruby workers ignore them"),
    ];
    for (extra, says) in refused {
        let o = env.run(&[&["enqueue", "--for-ruby", "Archive::Export"][..], extra].concat());
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{extra:?}: {}", stderr(&o));
    }
    // Caps still hold.
    assert!(env.run(&["queue", "cap", "legacy", "1"]).status.success());
    let o = env.run(&["enqueue", "--for-ruby", "Archive::Export", "--queue", "legacy"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("queue legacy is full"), "{}", stderr(&o));
    assert_eq!(env.llen("resque:queue:legacy").await, 1);
}
