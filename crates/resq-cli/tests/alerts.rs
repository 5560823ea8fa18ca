//! Alerts evaluated by `resq serve` itself, end to end: two replicas (one
//! evaluates, by a Redis lock), a tampered job, a deep queue and a flood,
//! each notice POSTed to a local webhook receiver, signed, once; the flood
//! answered by pausing its queue (audited); a cleared condition resolved.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::http::Server;
use common::*;
use serde_json::{json, Value};

/// A webhook receiver on a free loopback port: every request's headers
/// (lowercased names) and body.
type Received = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got: Received = Arc::default();
    let sink = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            let _ = reader.read_line(&mut line); // request line
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            sink.lock().unwrap().push((headers, body));
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, got)
}

fn notices(got: &Received) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .map(|(_, body)| serde_json::from_slice(body).unwrap())
        .collect()
}

async fn wait_for(got: &Received, what: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..600 {
        let n = notices(got);
        if ready(&n) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {:?}", notices(got));
}

fn has(n: &[Value], status: &str, key: &str) -> bool {
    n.iter().any(|v| v["status"] == status && v["key"] == key)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_replica_evaluates_and_every_notice_reaches_the_webhook_signed() {
    let env = Env::start().await;
    let (hook, got) = receiver();
    let secret_file = env.dir.path().join("hook.secret");
    std::fs::write(&secret_file, "webhook-secret-0123456789\n").unwrap();
    env.append_config(&format!(
        "[alerts]\nwebhooks = [\"http://{hook}/hook\"]\nwebhook_secret_file = {secret_file:?}\ninterval_s = 1\n\
         queue_depth = 5\nflood_min = 50\npause_on_flood = true\n"
    ));
    let _a = Server::start(env.resq(), env.dir.path().join("serve-a.log"));
    let _b = Server::start(env.resq(), env.dir.path().join("serve-b.log"));
    // Let the evaluator take its first look (it counts what comes after).
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // A tampered job: signed, then its arguments edited in Redis.
    let client = env.client();
    client
        .enqueue_raw("Echo", vec![json!({"message": "pay 10"})], "default")
        .await
        .unwrap();
    let job = env.lrange("resque:queue:default").await[0].replace("pay 10", "pay 9999");
    let _: () = redis::cmd("LSET")
        .arg("resque:queue:default")
        .arg(0)
        .arg(job)
        .query_async(&mut env.conn())
        .await
        .unwrap();
    let mut worker = env.spawn_worker(&["--queues", "default", "--burst"]);
    wait_child(&mut worker);
    // A deep queue, and a flood on another.
    for _ in 0..6 {
        client
            .enqueue_raw("Echo", vec![json!({"message": "x"})], "deep")
            .await
            .unwrap();
    }
    let n = wait_for(&got, "tampering and depth", |n| {
        has(n, "firing", "tampering") && has(n, "firing", "queue_depth:deep")
    })
    .await;
    let tampering: Vec<&Value> = n
        .iter()
        .filter(|v| v["key"] == "tampering" && v["status"] == "firing")
        .collect();
    assert_eq!(tampering.len(), 1, "one evaluator, one notice: {n:?}");
    assert!(
        tampering[0]["summary"].as_str().unwrap().contains("bad_signature"),
        "{n:?}"
    );
    assert_eq!(tampering[0]["severity"], "critical");

    let flood: Vec<(String, Vec<u8>)> = (0..200)
        .map(|_| {
            (
                "bulk".to_string(),
                br#"{"class":"Echo","args":[{"message":"f"}]}"#.to_vec(),
            )
        })
        .collect();
    env.store.push_unchecked(&flood).await.unwrap();
    wait_for(&got, "a flood", |n| has(n, "firing", "flood:bulk")).await;
    // The automated response: the queue is paused, and the audit says who.
    env.wait_until("the flooded queue is paused", || async {
        redis::cmd("SISMEMBER")
            .arg("resque:resq:paused-queues")
            .arg("bulk")
            .query_async::<bool>(&mut env.conn())
            .await
            .unwrap()
    })
    .await;
    let audit = stdout(&env.run(&["audit", "tail", "--json", "--limit", "50"]));
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"user\":\"resq-alerts\"") && l.contains("queue.pause") && l.contains("bulk")),
        "{audit}"
    );

    // The deep queue drains: resolved.
    let _: () = redis::cmd("DEL")
        .arg("resque:queue:deep")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    wait_for(&got, "resolved", |n| has(n, "resolved", "queue_depth:deep")).await;

    // Every notice is signed: HMAC-SHA256 of "<timestamp>.<body>".
    for (headers, body) in got.lock().unwrap().iter() {
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
        let expected = resq_api::alerts::signature("webhook-secret-0123456789", &header("x-resq-timestamp"), body);
        assert_eq!(header("x-resq-signature"), expected);
    }
}
