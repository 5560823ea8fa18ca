//! Bad input never runs and never crashes a worker: every hostile payload goes
//! to the failed list with its exact reason, is counted, and the worker goes on.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use proptest::prelude::*;
use serde_json::Value;

fn reasons(failed: &[String]) -> Vec<String> {
    failed
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(r).unwrap_or_else(|e| panic!("{e}: {}", &r[..r.len().min(300)]))["reason"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn each_hostile_payload_fails_with_its_exact_reason() {
    let env = Env::start().await;
    let deep = format!(
        "{{\"class\":\"Echo\",\"args\":[{}1{}]}}",
        "[".repeat(40),
        "]".repeat(40)
    );
    let huge = format!(
        "{{\"class\":\"Echo\",\"args\":[{{\"message\":\"{}\"}}]}}",
        "x".repeat(600 * 1024)
    );
    let wide = format!("{{\"class\":\"Echo\",\"args\":[{}]}}", vec!["1"; 20_000].join(","));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json at all".to_vec(), "malformed_payload"),
        (b"\xff\xfe\x00garbage".to_vec(), "malformed_payload"),
        (b"[1,2,3]".to_vec(), "malformed_payload"),
        (br#"{"class":"Echo"}"#.to_vec(), "malformed_payload"),
        (br#"{"class":"Echo","args":"rm -rf /"}"#.to_vec(), "malformed_payload"),
        (
            br#"{"class":"Echo","class":"Kernel","args":[]}"#.to_vec(),
            "malformed_payload",
        ),
        (deep.into_bytes(), "payload_too_deep"),
        (huge.into_bytes(), "payload_too_large"),
        (wide.into_bytes(), "payload_too_large"),
        (br#"{"class":"Echo","args":[1e999]}"#.to_vec(), "number_out_of_range"),
        (
            br#"{"class":"Echo","args":[123456789012345678901234567890]}"#.to_vec(),
            "number_out_of_range",
        ),
        (
            br#"{"class":"Kernel","args":["system","id"]}"#.to_vec(),
            "unregistered_class",
        ),
        (
            br#"{"class":"Object::Echo","args":[{"message":"x"}]}"#.to_vec(),
            "unregistered_class",
        ),
        (br#"{"class":"Echo","args":[{"message":1}]}"#.to_vec(), "invalid_args"),
        (
            br#"{"class":"Echo","args":[{"message":"x","admin":true}]}"#.to_vec(),
            "invalid_args",
        ),
        (br#"{"class":"Echo","args":["x","y"]}"#.to_vec(), "invalid_args"),
        (br#"{"class":"Add","args":[1]}"#.to_vec(), "invalid_args"),
        (
            br#"{"class":"Echo","args":[{"message":"old"}],"expires_at":1000.0}"#.to_vec(),
            "expired",
        ),
        (
            br#"{"class":"Fail","args":[{"message":"by design"}]}"#.to_vec(),
            "job_failed",
        ),
        (br#"{"class":"Panic","args":[{}]}"#.to_vec(), "job_panicked"),
    ];
    for (payload, _) in &cases {
        env.push_raw("ruby_hostile", payload).await;
    }
    // A good job after all of them: the worker must still be running.
    env.push_raw(
        "ruby_hostile",
        br#"{"class":"Echo","args":[{"message":"still alive"}]}"#,
    )
    .await;
    let before = ECHOED.load(Ordering::SeqCst);

    let mut config = env.config("ruby_hostile");
    config.burst = true;
    config.concurrency = 1; // keeps the failed list in push order
    let (_c, rx) = resq::Control::new();
    let report = resq::Worker::new(env.dyn_store(), registry(), config)
        .run(rx)
        .await
        .unwrap();

    let failed_now = env.lrange("resque:failed").await;
    assert_eq!(
        ECHOED.load(Ordering::SeqCst) - before,
        1,
        "only the good job ran: {:?}",
        reasons(&failed_now)
    );
    assert_eq!(report.processed, cases.len() as u64 + 1);
    assert_eq!(report.failed, cases.len() as u64);
    let failed = env.lrange("resque:failed").await;
    let expected: Vec<&str> = cases.iter().map(|(_, r)| *r).collect();
    assert_eq!(reasons(&failed), expected);
    assert_eq!(env.get("resque:stat:failed").await, Some(cases.len().to_string()));
    // refusals carry the reason as Resque's exception, and every record is JSON
    for rec in &failed {
        let v: Value = serde_json::from_str(rec).unwrap();
        assert!(v["exception"].is_string() && v["error"].is_string(), "{rec}");
        assert!(rec.len() < 200 * 1024, "a record stays small: {}", rec.len());
    }
    assert!(env.lrange("resque:queue:ruby_hostile").await.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Random bytes in a queue (one that accepts unsigned jobs, so every
    /// check after the signature is reached too): every item is accounted for (run or failed),
    /// nothing is left behind, and the worker exits normally.
    #[test]
    fn random_bytes_are_all_accounted_for(
        payloads in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..300),
                "\\{\"class\":\"(Echo|Add|X)\",\"args\":\\[[-0-9a-z\"{}:,\\[\\]]{0,40}\\]\\}".prop_map(String::into_bytes),
            ],
            1..40,
        )
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let env = Env::start().await;
            for p in &payloads {
                env.push_raw("ruby_fuzz", p).await;
            }
            let report = env.burst("ruby_fuzz", registry()).await;
            assert_eq!(report.processed, payloads.len() as u64);
            let failed = env.lrange("resque:failed").await.len() as u64;
            assert_eq!(failed, report.failed);
            assert!(env.lrange("resque:queue:ruby_fuzz").await.is_empty());
            // The fleet's beat lapses by itself; the failure index holds the
            // failed list's records by id, as many as the list (capped).
            let mut own = env.keys("resque:resq:*").await;
            own.sort();
            let index_len: u64 = redis::cmd("HLEN").arg("resque:resq:failure-index").query_async(&mut env.conn()).await.unwrap();
            assert_eq!(index_len, failed);
            let expected: &[&str] = if failed > 0 { &["resque:resq:beat", "resque:resq:failure-index"] } else { &["resque:resq:beat"] };
            assert_eq!(own, expected);
        });
    }
}
