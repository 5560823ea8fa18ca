//! Hostile input cannot inflate Redis: a flood of junk payloads becomes at
//! most `failures.max` failure records, each a fixed size plus the first
//! bytes of its payload, and every record dropped to keep the cap is counted.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_junk_is_capped_and_bounded_in_the_failed_list() {
    let env = Env::start().await;
    std::fs::write(
        env.dir.path().join("resq.toml"),
        "[worker]\nliveness_ttl_ms = 900\nreap_interval_ms = 200\npoll_max_ms = 50\n[failures]\nmax = 100\n",
    )
    .unwrap();
    // 1,000 two-byte payloads, and 200 copies of a 100 KB job object that
    // nobody signed: what an attacker with Redis write access can push.
    let big = format!(r#"{{"class":"Echo","args":[{{"message":"{}"}}]}}"#, "x".repeat(100_000));
    let mut pipe = redis::pipe();
    pipe.sadd("resque:queues", "junk");
    for i in 0..1000 {
        pipe.rpush("resque:queue:junk", format!("{}", i % 90 + 10));
    }
    for _ in 0..200 {
        pipe.rpush("resque:queue:junk", &big);
    }
    pipe.query_async::<()>(&mut env.conn()).await.unwrap();
    let pushed: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("resque:queue:junk")
        .query_async(&mut env.conn())
        .await
        .unwrap();

    let o = env.run(&["--log-format", "json", "worker", "--queues", "junk", "--burst"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "processed 1200 failed 1200 requeued 0 recovered 0");
    assert!(stderr(&o).contains("the failed list is at its cap"), "{}", stderr(&o));

    let records = env.lrange("resque:failed").await;
    assert_eq!(records.len(), 100, "the cap holds");
    assert_eq!(
        env.get("resque:resq:stat:failed-trimmed").await.as_deref(),
        Some("1100")
    );
    assert_eq!(
        env.get("resque:stat:failed").await.as_deref(),
        Some("1200"),
        "every refusal still counted"
    );
    for record in &records {
        let v: Value = serde_json::from_str(record).unwrap();
        assert_eq!(v["reason"], "unsigned", "{record}");
        assert_eq!(v["payload"]["class"], "Echo");
        assert_eq!(v["payload"]["args"], serde_json::json!([]));
        assert_eq!(v["payload_bytes"], big.len());
        assert!(
            record.len() < 1_200,
            "a refused record is a fixed size plus 512 bytes: {}",
            record.len()
        );
    }
    let kept: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("resque:failed")
        .query_async(&mut env.conn())
        .await
        .unwrap();
    println!("pushed {pushed} bytes of junk; the failed list holds {kept} bytes");
    assert!(kept < 150_000, "{kept}");
}
