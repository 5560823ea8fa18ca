//! `resq demo`: the README's first command. Runs a worker with the demo jobs
//! against a private throwaway redis-server (or the configured Redis, under its
//! own `resq-demo` namespace), feeds it good and hostile jobs, and prints what
//! happened to each. Exits non-zero if any outcome is not the expected one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use local_redis::LocalRedis;
use resq::{Client, Control, JobOutcome, OutgoingJob, Store, Worker};
use resq_redis::{RedisConfig, RedisStore};

use crate::config::Settings;
use crate::demo_jobs::{Alloc, Echo, Fail, Sleep, Spin};
use crate::output::{clip, safe};
use crate::worker_cmd::worker_config;
use crate::Failure;

/// One demo job: its queue (which names the case) and the expected outcome.
struct Case {
    queue: &'static str,
    what: &'static str,
    /// `None` = runs to success, else the failure reason code.
    expect: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        queue: "demo.01",
        what: "Echo enqueued from Rust",
        expect: None,
    },
    Case {
        queue: "demo.02",
        what: "Echo pushed the way Ruby's Resque.enqueue does",
        expect: None,
    },
    Case {
        queue: "demo.03",
        what: "Sleep 200 ms",
        expect: None,
    },
    Case {
        queue: "demo.04",
        what: "Spin (busy CPU) 100 ms",
        expect: None,
    },
    Case {
        queue: "demo.05",
        what: "Alloc 16 MiB",
        expect: None,
    },
    Case {
        queue: "demo.06",
        what: "Fail on purpose",
        expect: Some("job_failed"),
    },
    Case {
        queue: "demo.07",
        what: "YAML object-injection payload (not JSON)",
        expect: Some("malformed_payload"),
    },
    Case {
        queue: "demo.08",
        what: "class Kernel, args [\"system\",\"rm -rf /\"]",
        expect: Some("unregistered_class"),
    },
    Case {
        queue: "demo.09",
        what: "Sleep with ms: \"forever\"",
        expect: Some("invalid_args"),
    },
    Case {
        queue: "demo.10",
        what: "Echo with an extra admin:true field",
        expect: Some("invalid_args"),
    },
    Case {
        queue: "demo.11",
        what: "a 1 MiB payload",
        expect: Some("payload_too_large"),
    },
    Case {
        queue: "demo.12",
        what: "arrays nested 10,000 deep",
        expect: Some("payload_too_deep"),
    },
    Case {
        queue: "demo.13",
        what: "an integer with 40 digits",
        expect: Some("number_out_of_range"),
    },
    Case {
        queue: "demo.14",
        what: "a job that expired in 1970",
        expect: Some("expired"),
    },
    Case {
        queue: "demo.15",
        what: "bytes that are not UTF-8",
        expect: Some("malformed_payload"),
    },
];

fn raw(queue: &str, payload: impl Into<Vec<u8>>) -> OutgoingJob {
    OutgoingJob {
        queue: queue.to_string(),
        payload: payload.into(),
    }
}

async fn enqueue_cases(client: &Client, store: &dyn Store) -> Result<(), Failure> {
    let err = |e: resq::EnqueueError| Failure::runtime(format!("demo enqueue failed: {e}"));
    client
        .enqueue_to(
            "demo.01",
            &Echo {
                message: "Hello from resq".into(),
            },
        )
        .await
        .map_err(err)?;
    client
        .enqueue_to("demo.03", &Sleep { ms: 200 })
        .await
        .map_err(err)?;
    client
        .enqueue_to("demo.04", &Spin { ms: 100 })
        .await
        .map_err(err)?;
    client
        .enqueue_to("demo.05", &Alloc { mb: 16 })
        .await
        .map_err(err)?;
    client
        .enqueue_to(
            "demo.06",
            &Fail {
                message: "a job that fails on purpose".into(),
            },
        )
        .await
        .map_err(err)?;
    // What an attacker with write access to Redis, or a careless producer, pushes:
    let hostile = vec![
        raw(
            "demo.02",
            r#"{"class":"Echo","args":[{"message":"enqueued the way Ruby does"}]}"#,
        ),
        raw("demo.07", "--- !ruby/object:Gem::Installer\ni: x\n"),
        raw(
            "demo.08",
            r#"{"class":"Kernel","args":["system","rm -rf /"]}"#,
        ),
        raw("demo.09", r#"{"class":"Sleep","args":[{"ms":"forever"}]}"#),
        raw(
            "demo.10",
            r#"{"class":"Echo","args":[{"message":"hi","admin":true}]}"#,
        ),
        raw(
            "demo.11",
            format!(
                r#"{{"class":"Echo","args":[{{"message":"{}"}}]}}"#,
                "A".repeat(1 << 20)
            ),
        ),
        raw(
            "demo.12",
            format!(
                r#"{{"class":"Echo","args":[{}{}]}}"#,
                "[".repeat(10_000),
                "]".repeat(10_000)
            ),
        ),
        raw(
            "demo.13",
            r#"{"class":"Sleep","args":[{"ms":1234567890123456789012345678901234567890}]}"#,
        ),
        raw(
            "demo.14",
            r#"{"class":"Echo","args":[{"message":"too late"}],"expires_at":1.0}"#,
        ),
        raw("demo.15", &b"{\"class\":\"Echo\xff\xfe\",\"args\":[]}"[..]),
    ];
    store
        .enqueue(&hostile)
        .await
        .map_err(|e| Failure::runtime(format!("demo enqueue failed: {e}")))
}

pub async fn run(settings: &Settings) -> Result<(), Failure> {
    // A private server unless the user configured one.
    let mut private: Option<LocalRedis> = None;
    let (redis_config, namespace) = match &settings.redis {
        Some(c) => (c.clone(), "resq-demo".to_string()),
        None => {
            let server = LocalRedis::start().map_err(|e| Failure::usage(e.to_string()))?;
            let config = RedisConfig::new(server.url());
            println!(
                "resq demo: started a private redis-server on 127.0.0.1:{} (removed on exit)",
                server.port()
            );
            private = Some(server);
            (config, "resque".to_string())
        }
    };
    let store = Arc::new(
        RedisStore::connect(&redis_config, &namespace)
            .await
            .map_err(Failure::runtime)?,
    );
    let client = Client::new(store.clone());
    enqueue_cases(&client, store.as_ref()).await?;
    println!(
        "resq demo: enqueued {} jobs (5 good, 1 failing, 9 hostile); running a worker on demo.*\n",
        CASES.len()
    );

    let mut config = worker_config(settings, Some("demo.*".into()), Some(4))?;
    config.burst = true;
    config.poll_max = Duration::from_millis(50);
    let outcomes: Arc<Mutex<Vec<JobOutcome>>> = Arc::default();
    let sink = Arc::clone(&outcomes);
    let (_control, rx) = Control::new();
    let report = Worker::new(store.clone(), crate::demo_jobs::registry(), config)
        .with_observer(Arc::new(move |o: &JobOutcome| {
            if let Ok(mut v) = sink.lock() {
                v.push(o.clone());
            }
        }))
        .run(rx)
        .await
        .map_err(Failure::runtime)?;

    let outcomes = outcomes.lock().map(|v| v.clone()).unwrap_or_default();
    println!("\n{:<8} {:<48} {:<22} result", "queue", "job", "expected");
    let mut mismatches = 0;
    for case in CASES {
        let got = outcomes.iter().find(|o| o.queue == case.queue);
        let (got_code, detail) = match got.map(|o| &o.result) {
            None => (
                "missing".to_string(),
                "the worker never reported this job".to_string(),
            ),
            Some(Ok(())) => ("ran".to_string(), String::new()),
            Some(Err(f)) => (f.reason.code().to_string(), clip(&f.message, 90)),
        };
        let expected = case.expect.unwrap_or("ran");
        let ok = got_code == expected;
        if !ok {
            mismatches += 1;
        }
        let mark = if ok { "ok " } else { "BAD" };
        println!(
            "{:<8} {:<48} {:<22} {mark} {}{}",
            case.queue,
            case.what,
            expected,
            got_code,
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {}", safe(&detail))
            }
        );
    }
    let failed_list = store.failed_len().await.map_err(Failure::runtime)?;
    println!(
        "\nworker: processed {} (failed {}), every refused job is in {namespace}:failed ({failed_list} record(s)) \
         with its reason; no hostile job ran and the worker never stopped.",
        report.processed, report.failed
    );
    drop(private);
    if mismatches > 0 {
        return Err(Failure::runtime(format!(
            "{mismatches} demo job(s) did not end as expected"
        )));
    }
    println!("resq demo: all {} outcomes as expected.", CASES.len());
    Ok(())
}
