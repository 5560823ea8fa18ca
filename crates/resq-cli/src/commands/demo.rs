//! `resq demo`: the README's first command. Runs a worker with the demo jobs
//! against a private throwaway redis-server (or the configured Redis, under its
//! own `resq-demo` namespace) with an ephemeral signing key, feeds it good,
//! tampered and hostile jobs, and prints what happened to each. Exits non-zero
//! if any outcome is not the expected one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use local_redis::LocalRedis;
use resq::{Client, Control, EnqueueOptions, JobOutcome, Keyring, Policy, SealOptions, Store, Worker};
use resq_redis::{RedisConfig, RedisStore};
use serde_json::{json, Value};

use super::worker::worker_config;
use crate::config::Settings;
use crate::demo_jobs::{Alloc, Echo, Fail, Sleep, Spin};
use crate::output::{clip, safe};
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
        what: "Echo, signed by a Rust producer",
        expect: None,
    },
    Case {
        queue: "demo.02",
        what: "Echo pushed unsigned the Ruby way (queue allows it)",
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
        what: "Echo with encrypted arguments",
        expect: None,
    },
    Case {
        queue: "demo.07",
        what: "Fail on purpose",
        expect: Some("job_failed"),
    },
    Case {
        queue: "demo.08",
        what: "YAML object-injection payload (not JSON)",
        expect: Some("malformed_payload"),
    },
    Case {
        queue: "demo.09",
        what: "unsigned Kernel.system(\"rm -rf /\")",
        expect: Some("unsigned"),
    },
    Case {
        queue: "demo.10",
        what: "signed, but class Kernel is not registered",
        expect: Some("unregistered_class"),
    },
    Case {
        queue: "demo.11",
        what: "signed Sleep with ms: \"forever\"",
        expect: Some("invalid_args"),
    },
    Case {
        queue: "demo.12",
        what: "signed Sleep over its 1 h rule",
        expect: Some("invalid_args"),
    },
    Case {
        queue: "demo.13",
        what: "signed Echo, args edited in Redis",
        expect: Some("bad_signature"),
    },
    Case {
        queue: "demo.14",
        what: "signed Echo, class swapped to Fail",
        expect: Some("bad_signature"),
    },
    Case {
        queue: "demo.15",
        what: "signed for demo.01, moved to demo.15",
        expect: Some("wrong_queue"),
    },
    Case {
        queue: "demo.16",
        what: "demo.01's exact bytes pushed again after it ran",
        expect: Some("replayed"),
    },
    Case {
        queue: "demo.17",
        what: "signed Echo, ciphertext edited",
        expect: Some("bad_signature"),
    },
    Case {
        queue: "demo.18",
        what: "a 1 MiB payload",
        expect: Some("payload_too_large"),
    },
    Case {
        queue: "demo.19",
        what: "arrays nested 10,000 deep",
        expect: Some("payload_too_deep"),
    },
    Case {
        queue: "demo.20",
        what: "an integer with 40 digits",
        expect: Some("number_out_of_range"),
    },
    Case {
        queue: "demo.21",
        what: "signed Echo that expired before it ran",
        expect: Some("expired"),
    },
    Case {
        queue: "demo.22",
        what: "bytes that are not UTF-8",
        expect: Some("malformed_payload"),
    },
    Case {
        queue: "demo.23",
        what: "isolated: Spin for an hour, timeout 300 ms",
        expect: Some("timeout"),
    },
    Case {
        queue: "demo.24",
        what: "isolated: Alloc without bound (128 MiB limit)",
        expect: Some("resource_limit"),
    },
    Case {
        queue: "demo.25",
        what: "isolated: Spin an hour, no timeout (1 s CPU limit)",
        expect: Some("resource_limit"),
    },
    Case {
        queue: "demo.26",
        what: "isolated: Echo, after those, on the same worker",
        expect: None,
    },
];

/// The cases that run in child processes (the last phase).
const ISOLATED: &str = "demo.23,demo.24,demo.25,demo.26";

/// A job pushed as bytes, past the policy, the way an attacker with Redis
/// access (or a careless producer) would.
fn raw(queue: &str, payload: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (queue.to_string(), payload.into())
}

/// Edits a stored payload the way an attacker with Redis access would.
fn tamper(payload: &[u8], edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    if let Some(map) = v.as_object_mut() {
        edit(map);
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Enqueues every case; returns demo.01's stored bytes, which are replayed later.
async fn enqueue_cases(client: &Client, policy: &Policy, store: &RedisStore) -> Result<Vec<u8>, Failure> {
    let err = |e: resq::EnqueueError| Failure::runtime(format!("demo enqueue failed: {e}"));
    let seal_err = |e: resq::PolicyError| Failure::runtime(format!("demo enqueue failed: {e}"));
    let seal = |class: &str, queue: &str, args: Value, encrypt: bool| {
        let args = match args {
            Value::Array(items) => items,
            other => vec![other],
        };
        policy
            .seal(
                class,
                queue,
                args,
                SealOptions {
                    encrypt,
                    ttl: None,
                    ..SealOptions::default()
                },
            )
            .map(|sealed| sealed.payload().to_vec())
            .map_err(seal_err)
    };
    client.enqueue_to("demo.03", &Sleep { ms: 200 }).await.map_err(err)?;
    client.enqueue_to("demo.04", &Spin { ms: 100 }).await.map_err(err)?;
    client.enqueue_to("demo.05", &Alloc { mb: 16 }).await.map_err(err)?;
    client
        .enqueue_to(
            "demo.07",
            &Fail {
                message: "a job that fails on purpose".into(),
            },
        )
        .await
        .map_err(err)?;
    let short_lived = EnqueueOptions {
        queue: Some("demo.21".into()),
        ttl: Some(Duration::from_millis(1)),
        ..EnqueueOptions::default()
    };
    client
        .enqueue_with(
            &Echo {
                message: "too late".into(),
            },
            short_lived,
        )
        .await
        .map_err(err)?;

    // demo.01 is sealed here rather than through `client` so its exact bytes
    // can be moved to another queue (demo.15) and replayed after it ran.
    let hello = seal("Echo", "demo.01", json!({"message": "Hello from resq"}), false)?;
    let encrypted = seal(
        "Echo",
        "demo.06",
        json!({"message": "a secret only the worker reads"}),
        true,
    )?;
    let edited_args = tamper(&seal("Echo", "demo.13", json!({"message": "pay 10"}), false)?, |m| {
        m.insert("args".into(), json!([{"message": "pay 10000"}]));
    });
    let swapped = tamper(&seal("Echo", "demo.14", json!({"message": "harmless"}), false)?, |m| {
        m.insert("class".into(), json!("Fail"));
    });
    let edited_ct = tamper(&seal("Echo", "demo.17", json!({"message": "secret"}), true)?, |m| {
        if let Some(enc) = m.get_mut("enc").and_then(Value::as_object_mut) {
            let ct = enc.get("ct").and_then(Value::as_str).unwrap_or_default();
            // Change the first character of the ciphertext (base64url).
            let rest = ct.get(1..).unwrap_or_default();
            let flipped = if ct.starts_with('A') {
                format!("B{rest}")
            } else {
                format!("A{rest}")
            };
            enc.insert("ct".into(), json!(flipped));
        }
    });
    // A producer with a valid key but no registry can sign anything; the
    // worker's allowlist and rules still stand.
    let jobs = vec![
        raw("demo.01", hello.clone()),
        raw(
            "demo.02",
            r#"{"class":"Echo","args":[{"message":"enqueued the way Ruby does"}]}"#,
        ),
        raw("demo.06", encrypted),
        raw("demo.08", "--- !ruby/object:Gem::Installer\ni: x\n"),
        raw("demo.09", r#"{"class":"Kernel","args":["system","rm -rf /"]}"#),
        raw(
            "demo.10",
            seal("Kernel", "demo.10", json!(["system", "rm -rf /"]), false)?,
        ),
        raw("demo.11", seal("Sleep", "demo.11", json!({"ms": "forever"}), false)?),
        raw("demo.12", seal("Sleep", "demo.12", json!({"ms": 86_400_000}), false)?),
        raw("demo.13", edited_args),
        raw("demo.14", swapped),
        raw("demo.15", hello.clone()),
        raw("demo.17", edited_ct),
        raw(
            "demo.18",
            format!(r#"{{"class":"Echo","args":[{{"message":"{}"}}]}}"#, "A".repeat(1 << 20)),
        ),
        raw(
            "demo.19",
            format!(
                r#"{{"class":"Echo","args":[{}{}]}}"#,
                "[".repeat(10_000),
                "]".repeat(10_000)
            ),
        ),
        raw(
            "demo.20",
            r#"{"class":"Sleep","args":[{"ms":1234567890123456789012345678901234567890}]}"#,
        ),
        raw("demo.22", &b"{\"class\":\"Echo\xff\xfe\",\"args\":[]}"[..]),
    ];
    store
        .push_unchecked(&jobs)
        .await
        .map_err(|e| Failure::runtime(format!("demo enqueue failed: {e}")))?;
    Ok(hello)
}

pub async fn run(settings: &Settings, registry: &resq::Registry) -> Result<(), Failure> {
    // The demo runs the shipped demo jobs, in this process and (process
    // isolation) in children started from this program.
    let demo = crate::demo_jobs::registry();
    if demo.classes().iter().any(|c| registry.info(c).is_none()) {
        return Err(Failure::usage(
            "the demo runs resq's demo jobs (Echo, Sleep, Spin, Alloc, ...), which this program does not \
             register: run `resq demo`",
        ));
    }
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
    // The demo alone signs with a throwaway key; `resq worker` and `resq
    // enqueue` need a keys file.
    let keyring = Arc::new(Keyring::ephemeral());
    let policy = Policy::new(Arc::clone(&keyring)).map_err(Failure::runtime)?;
    let client = Client::with_policy(store.clone(), policy.clone());
    let hello = enqueue_cases(&client, &policy, store.as_ref()).await?;
    tokio::time::sleep(Duration::from_millis(20)).await; // demo.21 expires
    println!(
        "resq demo: enqueued 22 jobs (6 good, 1 failing, 15 tampered or hostile) with an ephemeral signing key;\n\
         running one worker on demo.* (only demo.02 accepts unsigned jobs)\n"
    );

    let mut config = worker_config(settings, Arc::clone(&keyring), Some("demo.*".into()), Some(4), false)?;
    config.burst = true;
    config.poll_max = Duration::from_millis(50);
    config.allow_unsigned = vec![glob::Pattern::new("demo.02").map_err(Failure::runtime)?];
    let outcomes: Arc<Mutex<Vec<JobOutcome>>> = Arc::default();
    let sink = Arc::clone(&outcomes);
    let (_control, rx) = Control::new();
    let worker = Worker::new(store.clone(), crate::demo_jobs::registry(), config).with_observer(Arc::new(
        move |o: &JobOutcome| {
            if let Ok(mut v) = sink.lock() {
                v.push(o.clone());
            }
        },
    ));
    let mut report = worker.run(rx).await.map_err(Failure::runtime)?;

    // The replay: demo.01's exact bytes pushed again on demo.01 after it ran.
    store
        .push_unchecked(&[raw("demo.01", hello)])
        .await
        .map_err(Failure::runtime)?;
    let sink = Arc::clone(&outcomes);
    let mut config = worker_config(settings, Arc::clone(&keyring), Some("demo.01".into()), Some(1), false)?;
    config.burst = true;
    let (_control, rx) = Control::new();
    let again = Worker::new(store.clone(), crate::demo_jobs::registry(), config)
        .with_observer(Arc::new(move |o: &JobOutcome| {
            if let Ok(mut v) = sink.lock() {
                v.push(JobOutcome {
                    queue: "demo.16".into(),
                    ..o.clone()
                });
            }
        }))
        .run(rx)
        .await
        .map_err(Failure::runtime)?;
    report.processed += again.processed;
    report.failed += again.failed;

    let isolated = run_isolated(settings, &client, &keyring, store.clone(), Arc::clone(&outcomes)).await?;
    report.processed += isolated.processed;
    report.failed += isolated.failed;
    print_table(
        &outcomes.lock().map(|v| v.clone()).unwrap_or_default(),
        &report,
        store.as_ref(),
        &namespace,
    )
    .await?;
    drop(private);
    Ok(())
}

/// The last phase: runaway jobs in child processes, stopped while the worker
/// goes on.
async fn run_isolated(
    settings: &Settings,
    client: &Client,
    keyring: &Arc<Keyring>,
    store: Arc<RedisStore>,
    outcomes: Arc<Mutex<Vec<JobOutcome>>>,
) -> Result<resq::WorkerReport, Failure> {
    let err = |e: resq::EnqueueError| Failure::runtime(format!("demo enqueue failed: {e}"));
    let on = |queue: &str, timeout: Option<Duration>| EnqueueOptions {
        queue: Some(queue.into()),
        timeout,
        ..EnqueueOptions::default()
    };
    let hour = 3_600_000;
    client
        .enqueue_with(&Spin { ms: hour }, on("demo.23", Some(Duration::from_millis(300))))
        .await
        .map_err(err)?;
    client
        .enqueue_with(&Alloc { mb: 1_048_576 }, on("demo.24", None))
        .await
        .map_err(err)?;
    client
        .enqueue_with(&Spin { ms: hour }, on("demo.25", None))
        .await
        .map_err(err)?;
    let echo = Echo {
        message: "still serving".into(),
    };
    client.enqueue_with(&echo, on("demo.26", None)).await.map_err(err)?;
    println!(
        "\nresq demo: 4 more jobs in child processes (--isolation process: 128 MiB address space, 1 s CPU per job)\n"
    );
    let mut config = worker_config(settings, Arc::clone(keyring), Some(ISOLATED.into()), Some(2), true)?;
    config.burst = true;
    config.poll_max = Duration::from_millis(50);
    config.isolation = Some(resq::worker::isolation::Isolation {
        memory_limit: Some(128 * 1024 * 1024),
        cpu_limit: Some(Duration::from_secs(1)),
        remove_env: vec!["RESQ_*".into()],
        ..Default::default()
    });
    let (_control, rx) = Control::new();
    Worker::new(store, crate::demo_jobs::registry(), config)
        .with_observer(Arc::new(move |o: &JobOutcome| {
            if let Ok(mut v) = outcomes.lock() {
                v.push(o.clone());
            }
        }))
        .run(rx)
        .await
        .map_err(Failure::runtime)
}

async fn print_table(
    outcomes: &[JobOutcome],
    report: &resq::WorkerReport,
    store: &dyn Store,
    namespace: &str,
) -> Result<(), Failure> {
    println!("\n{:<8} {:<52} {:<20} result", "queue", "job", "expected");
    let mut mismatches = 0;
    for case in CASES {
        let got = outcomes.iter().find(|o| o.queue == case.queue);
        let (got_code, detail) = match got.map(|o| &o.result) {
            None => ("missing".to_string(), "the worker never reported this job".to_string()),
            Some(Ok(())) => ("ran".to_string(), String::new()),
            Some(Err(f)) => (f.reason.code().to_string(), clip(&f.message, 80)),
        };
        let expected = case.expect.unwrap_or("ran");
        let ok = got_code == expected;
        if !ok {
            mismatches += 1;
        }
        let mark = if ok { "ok " } else { "BAD" };
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(": {}", safe(&detail))
        };
        println!(
            "{:<8} {:<52} {:<20} {mark} {got_code}{detail}",
            case.queue, case.what, expected
        );
    }
    let failed_list = store.failed_len().await.map_err(Failure::runtime)?;
    println!(
        "\nworker: processed {} (failed {}), every refused job is in {namespace}:failed ({failed_list} record(s)) \
         with its reason; no tampered or hostile job ran and the worker never stopped.",
        report.processed, report.failed
    );
    if mismatches > 0 {
        return Err(Failure::runtime(format!(
            "{mismatches} demo job(s) did not end as expected"
        )));
    }
    println!("resq demo: all {} outcomes as expected.", CASES.len());
    Ok(())
}
