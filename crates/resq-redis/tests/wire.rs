//! The Resque wire contract, checked key by key and byte by byte against a
//! real redis-server (DESIGN.md, "Resque wire contract").

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use resq::{Control, Worker};
use serde_json::Value;

fn is_started_format(s: &str) -> bool {
    // 2026-11-24 09:58:58 +0000
    let b = s.as_bytes();
    s.len() == 25 && b[4] == b'-' && b[10] == b' ' && b[13] == b':' && s.ends_with(" +0000")
}

fn is_iso8601_z(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 20 && b[10] == b'T' && s.ends_with('Z')
}

#[tokio::test]
async fn enqueue_writes_resque_payload_and_queue_set() {
    let env = Env::start().await;
    let client = env.client();
    let id = client.enqueue_to("mail", &Echo { message: "hi".into() }).await.unwrap();

    let queues: Vec<String> = redis::cmd("SMEMBERS")
        .arg("resque:queues")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert_eq!(queues, ["mail"]);
    let items = env.lrange("resque:queue:mail").await;
    assert_eq!(items.len(), 1);
    let text = &items[0];
    assert!(
        text.starts_with(r#"{"class":"Echo","args":[{"message":"hi"}],"id":""#),
        "{text}"
    );
    let v: Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["queue"], "mail");
    assert_eq!(v["attempt"], 0);
    let (enq, exp) = (v["enqueued_at"].as_f64().unwrap(), v["expires_at"].as_f64().unwrap());
    assert!((exp - enq - 7.0 * 86400.0).abs() < 1.0);
    // compact JSON, no whitespace
    assert!(!text.contains(' '));
}

#[tokio::test]
async fn bulk_enqueue_is_one_queue_write_in_order() {
    let env = Env::start().await;
    let client = env.client();
    let jobs: Vec<Echo> = (0..500).map(|i| Echo { message: i.to_string() }).collect();
    let ids = client.enqueue_bulk(&jobs).await.unwrap();
    assert_eq!(ids.len(), 500);
    let items = env.lrange("resque:queue:default").await;
    assert_eq!(items.len(), 500);
    for (i, item) in items.iter().enumerate() {
        let v: Value = serde_json::from_str(item).unwrap();
        assert_eq!(v["args"][0]["message"], i.to_string());
        assert_eq!(v["id"], ids[i].as_str());
    }
}

#[tokio::test]
async fn ruby_payloads_run_and_stats_are_counted() {
    let env = Env::start().await;
    // As Ruby's Resque.enqueue writes them, positional and hash arguments.
    env.push_raw("ruby", br#"{"class":"Add","args":[1,2]}"#).await;
    env.push_raw("ruby", br#"{"class":"Echo","args":[{"message":"from ruby"}]}"#)
        .await;
    env.push_raw("ruby", br#"{"class":"Fail","args":[{"message":"nope"}]}"#)
        .await;
    let report = env.burst("ruby", registry()).await;
    assert_eq!((report.processed, report.failed), (3, 1));
    assert_eq!(env.get("resque:stat:processed").await.as_deref(), Some("3"));
    assert_eq!(env.get("resque:stat:failed").await.as_deref(), Some("1"));
    // per-worker stats are deleted at unregister, with every other trace
    assert!(env.keys("resque:stat:processed:*").await.is_empty());
    assert!(env.keys("resque:worker:*").await.is_empty());
    let mut own = env.keys("resque:resq:*").await;
    own.sort();
    assert_eq!(
        own,
        ["resque:resq:beat", "resque:resq:failure-index"],
        "the fleet's beat, which lapses by itself, and the failed list's index"
    );
    let workers: Vec<String> = redis::cmd("SMEMBERS")
        .arg("resque:workers")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert!(workers.is_empty());
}

#[tokio::test]
async fn failure_record_matches_resque_format() {
    let env = Env::start().await;
    let payload = br#"{"class":"Fail","args":[{"message":"disk <full>"}],"extra":1.50}"#;
    env.push_raw("ruby_low", payload).await;
    env.burst("ruby_low", registry()).await;
    let failed = env.lrange("resque:failed").await;
    assert_eq!(failed.len(), 1);
    let rec = &failed[0];
    let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(rec)
        .unwrap()
        .keys()
        .cloned()
        .collect();
    // serde_json's Map is sorted; check the order in the raw text instead
    let order = [
        "\"failed_at\"",
        "\"payload\"",
        "\"exception\"",
        "\"error\"",
        "\"backtrace\"",
        "\"worker\"",
        "\"queue\"",
        "\"failure_id\"",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| rec.find(k).unwrap_or_else(|| panic!("{k} in {rec}")))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{rec}");
    assert!(keys.contains(&"reason".to_string()));
    // the payload is embedded byte for byte
    assert!(rec.contains(std::str::from_utf8(payload).unwrap()), "{rec}");
    let v: Value = serde_json::from_str(rec).unwrap();
    let failed_at = v["failed_at"].as_str().unwrap();
    assert!(
        failed_at.len() == 23 && failed_at.as_bytes()[4] == b'/' && failed_at.ends_with(" UTC"),
        "{failed_at}"
    );
    assert_eq!(v["exception"], "JobError");
    assert_eq!(v["error"], "disk <full>");
    assert_eq!(v["backtrace"], serde_json::json!([]));
    assert_eq!(v["queue"], "ruby_low");
    assert_eq!(v["worker"].as_str().unwrap().matches(':').count(), 2);
    assert_eq!(
        uuid::Uuid::parse_str(v["failure_id"].as_str().unwrap()).map(|_| ()),
        Ok(())
    );
}

#[tokio::test]
async fn registry_started_heartbeat_and_current_job_while_working() {
    let env = Env::start().await;
    let client = env.client();
    client.enqueue_to("slow", &Nap { ms: 1500 }).await.unwrap();
    let config = env.config("slow,default");
    let id = config.worker_id().as_str().to_string();
    assert_eq!(id, format!("testhost:{}:slow,default", std::process::id()));
    let (control, rx) = Control::new();
    let worker = tokio::spawn(Worker::new(env.dyn_store(), registry(), config).run(rx));

    // wait until the job is picked up
    let mut working = None;
    for _ in 0..200 {
        working = env.get(&format!("resque:worker:{id}")).await;
        if working.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let working: Value = serde_json::from_str(&working.expect("current job recorded")).unwrap();
    assert_eq!(working["queue"], "slow");
    assert!(is_iso8601_z(working["run_at"].as_str().unwrap()), "{working}");
    assert_eq!(working["payload"]["class"], "Nap");

    let workers: Vec<String> = redis::cmd("SMEMBERS")
        .arg("resque:workers")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert_eq!(workers, std::slice::from_ref(&id));
    let started = env.get(&format!("resque:worker:{id}:started")).await.unwrap();
    assert!(is_started_format(&started), "{started}");
    let beat: Option<String> = redis::cmd("HGET")
        .arg("resque:workers:heartbeat")
        .arg(&id)
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert!(is_iso8601_z(&beat.clone().unwrap()), "{beat:?}");

    control.quit();
    let report = worker.await.unwrap().unwrap();
    assert_eq!(report.processed, 1);
    let beat: Option<String> = redis::cmd("HGET")
        .arg("resque:workers:heartbeat")
        .arg(&id)
        .query_async(&mut env.conn())
        .await
        .unwrap();
    assert_eq!(beat, None);
    assert_eq!(env.get(&format!("resque:worker:{id}:started")).await, None);
}

#[tokio::test]
async fn pause_all_workers_is_honoured() {
    let env = Env::start().await;
    let client = env.client();
    redis::cmd("SET")
        .arg("resque:pause-all-workers")
        .arg("true")
        .query_async::<()>(&mut env.conn())
        .await
        .unwrap();
    client.enqueue(&Echo { message: "wait".into() }).await.unwrap();
    let (control, rx) = Control::new();
    let store = env.dyn_store();
    let worker = tokio::spawn(Worker::new(Arc::clone(&store), registry(), env.config("default")).run(rx));
    // It lists itself paused once a fetch found pause-all-workers set.
    eventually("the worker is listed as paused", || async {
        store.workers().await.unwrap().iter().any(|w| w.paused)
    })
    .await;
    assert_eq!(
        env.lrange("resque:queue:default").await.len(),
        1,
        "a paused worker took a job"
    );
    redis::cmd("DEL")
        .arg("resque:pause-all-workers")
        .query_async::<()>(&mut env.conn())
        .await
        .unwrap();
    for _ in 0..200 {
        if env.get("resque:stat:processed").await.as_deref() == Some("1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    control.quit();
    assert_eq!(worker.await.unwrap().unwrap().processed, 1);
}

#[tokio::test]
async fn strict_priority_across_queues_with_globs() {
    let env = Env::start().await;
    for q in ["low", "mail_b", "critical", "mail_a"] {
        env.push_raw(
            q,
            format!(r#"{{"class":"Echo","args":[{{"message":"{q}"}}]}}"#).as_bytes(),
        )
        .await;
    }
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&order);
    let mut config = env.config("critical,mail*,*,!low");
    config.burst = true;
    config.concurrency = 1;
    let (_c, rx) = Control::new();
    Worker::new(env.dyn_store(), registry(), config)
        .with_observer(Arc::new(move |o: &resq::JobOutcome| {
            seen.lock().unwrap().push(o.queue.clone())
        }))
        .run(rx)
        .await
        .unwrap();
    assert_eq!(*order.lock().unwrap(), ["critical", "mail_a", "mail_b"]);
    assert_eq!(
        env.lrange("resque:queue:low").await.len(),
        1,
        "excluded queue untouched"
    );
}
