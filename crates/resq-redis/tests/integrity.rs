//! Attacks on job integrity, each driven through the real worker against a real
//! redis-server: the job never runs and the failure reason is exact. Also:
//! encrypted arguments leave no plaintext in Redis, and no secret reaches the
//! logs or the failed list while every error path runs.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use resq::envelope::sign;
use resq::{Control, Envelope, JobOutcome, Keyring, PayloadLimits, Policy, SealOptions, Worker};
use serde_json::{json, Value};

const MAIN: &str = "bWFpbi1rZXktbWFpbi1rZXktbWFpbi1rZXktbWFpbiE";
const OLD: &str = "b2xkLWtleS1vbGQta2V5LW9sZC1rZXktb2xkLWtleSE";
const MAIL: &str = "bWFpbC1vbmx5LW1haWwtb25seS1tYWlsLW9ubHktbWE";
const ENC: &str = "ZW5jLWtleS1lbmMta2V5LWVuYy1rZXktZW5jLWtleSE";
const ED_PRIVATE: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";
const ED_PUBLIC: &str = "Kay64UG8yvCyLhqU000LxzYeUm0L_hLIl5S8kyKWbdc";

/// The workers' keyring: verification keys (the Ed25519 one public only).
fn worker_ring() -> Keyring {
    Keyring::from_toml(&format!(
        "signing_key = \"main\"\nencryption_key = \"e1\"\n\
         [[keys]]\nkid = \"main\"\nalg = \"HS256\"\nsecret = \"{MAIN}\"\n\
         [[keys]]\nkid = \"old\"\nalg = \"HS256\"\nsecret = \"{OLD}\"\n\
         [[keys]]\nkid = \"mail-only\"\nalg = \"HS256\"\nsecret = \"{MAIL}\"\nclasses = [\"Mailers::*\"]\n\
         [[keys]]\nkid = \"ed\"\nalg = \"EdDSA\"\npublic = \"{ED_PUBLIC}\"\n\
         [[encryption_keys]]\nkid = \"e1\"\nalg = \"XC20P\"\nsecret = \"{ENC}\"\n"
    ))
    .unwrap()
}

/// A producer's keyring that signs with `kid`.
fn producer(kid: &str) -> Arc<Keyring> {
    // A stolen scoped key: the thief has its secret but not its scope, which
    // only the workers enforce.
    if kid == "stolen-mail-only" {
        return Arc::new(
            Keyring::from_toml(&format!(
                "signing_key = \"mail-only\"\n[[keys]]\nkid = \"mail-only\"\nalg = \"HS256\"\nsecret = \"{MAIL}\"\n"
            ))
            .unwrap(),
        );
    }
    let key = match kid {
        "main" => format!("alg = \"HS256\"\nsecret = \"{MAIN}\""),
        "old" => format!("alg = \"HS256\"\nsecret = \"{OLD}\""),
        "mail-only" => format!("alg = \"HS256\"\nsecret = \"{MAIL}\"\nclasses = [\"Mailers::*\"]"),
        "ed" => format!("alg = \"EdDSA\"\nprivate = \"{ED_PRIVATE}\""),
        other => panic!("{other}"),
    };
    Arc::new(
        Keyring::from_toml(&format!(
            "signing_key = \"{kid}\"\nencryption_key = \"e1\"\n[[keys]]\nkid = \"{kid}\"\n{key}\n\
             [[encryption_keys]]\nkid = \"e1\"\nalg = \"XC20P\"\nsecret = \"{ENC}\"\n"
        ))
        .unwrap(),
    )
}

fn seal(kid: &str, class: &str, queue: &str, args: Value, encrypt: bool, ttl: Option<Duration>) -> Vec<u8> {
    let Value::Array(args) = args else { panic!("args") };
    Policy::new(producer(kid))
        .unwrap()
        .seal(
            class,
            queue,
            args,
            SealOptions {
                encrypt,
                ttl,
                ..SealOptions::default()
            },
        )
        .unwrap()
        .payload()
        .to_vec()
}

fn echo(kid: &str, queue: &str, message: &str) -> Vec<u8> {
    seal(kid, "Echo", queue, json!([{ "message": message }]), false, None)
}

fn edit(bytes: &[u8], f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    f(v.as_object_mut().unwrap());
    serde_json::to_vec(&v).unwrap()
}

/// Runs a burst worker over `atk.*` and returns each queue's outcome.
async fn run_worker(env: &Env) -> HashMap<String, Result<(), String>> {
    let mut config = fast_config("atk.*", Arc::new(worker_ring()));
    config.burst = true;
    config.concurrency = 1; // replays must run after the original
    let seen: Arc<Mutex<HashMap<String, Result<(), String>>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let (_c, rx) = Control::new();
    Worker::new(env.dyn_store(), registry(), config)
        .with_observer(Arc::new(move |o: &JobOutcome| {
            let r = o.result.clone().map_err(|f| f.reason.code().to_string());
            sink.lock().unwrap().insert(o.queue.clone(), r);
        }))
        .run(rx)
        .await
        .unwrap();
    let out = seen.lock().unwrap().clone();
    out
}

async fn push(env: &Env, queue: &str, payload: Vec<u8>) {
    // The raw path: bytes as an attacker with Redis access writes them.
    env.store.push_unchecked(&[(queue.to_string(), payload)]).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn every_attack_is_refused_with_its_exact_reason_and_no_secret_leaks() {
    // Capture every log line of this test (all tasks run on this thread).
    let logs: Arc<Mutex<Vec<u8>>> = Arc::default();
    let sink = Arc::clone(&logs);
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || LogSink(Arc::clone(&sink)))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = Env::start().await;
    // A job that runs, so its exact bytes can be replayed afterwards.
    let original = echo("main", "atk.replay", "original");
    push(&env, "atk.replay", original.clone()).await;
    assert_eq!(run_worker(&env).await.get("atk.replay"), Some(&Ok(())));
    assert!(ran("original"));

    let encrypted = seal(
        "main",
        "Secret",
        "atk.ct_edited",
        json!([{"ssn": "123-45-6789"}]),
        true,
        None,
    );
    let rebound = {
        // An insider with the signing key moves a ciphertext to another job id
        // and re-signs it: the AEAD's associated data still refuses it.
        let bytes = seal(
            "main",
            "Secret",
            "atk.ct_rebound",
            json!([{"ssn": "123-45-6789"}]),
            true,
            None,
        );
        let mut env: Envelope = Envelope::decode(&bytes, &PayloadLimits::default()).unwrap();
        env.id = Some("01890a5d-0000-7000-8000-000000000000".into());
        sign(&mut env, producer("main").signer().unwrap()).unwrap();
        env.to_bytes().unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "atk.args_edited",
            edit(&echo("main", "atk.args_edited", "pay 10"), |m| {
                m.insert("args".into(), json!([{"message": "pay 10000"}]));
            }),
            "bad_signature",
        ),
        (
            "atk.class_swapped",
            edit(&echo("main", "atk.class_swapped", "swap"), |m| {
                m.insert("class".into(), json!("Fail"));
            }),
            "bad_signature",
        ),
        ("atk.queue_moved", echo("main", "atk.elsewhere", "moved"), "wrong_queue"),
        (
            "atk.sig_stripped",
            edit(&echo("main", "atk.sig_stripped", "stripped"), |m| {
                m.remove("sig");
            }),
            "unsigned",
        ),
        (
            "atk.out_of_scope",
            echo("stolen-mail-only", "atk.out_of_scope", "scoped"),
            "out_of_scope",
        ),
        (
            "atk.unknown_kid",
            edit(&echo("main", "atk.unknown_kid", "kid"), |m| {
                m["sig"]["kid"] = json!("nope");
            }),
            "unknown_key",
        ),
        (
            "atk.alg_confusion",
            edit(&echo("main", "atk.alg_confusion", "alg"), |m| {
                m["sig"]["alg"] = json!("EdDSA");
            }),
            "bad_signature",
        ),
        (
            "atk.bad_sig_encoding",
            edit(&echo("main", "atk.bad_sig_encoding", "enc"), |m| {
                m["sig"]["v"] = json!("!!!not base64!!!");
            }),
            "bad_signature",
        ),
        ("atk.replay", original, "replayed"),
        (
            "atk.expired",
            // Signed by a key holder, with a lifetime that ended in 2001.
            {
                let fresh = echo("main", "atk.expired", "late");
                let mut envelope = Envelope::decode(&fresh, &PayloadLimits::default()).unwrap();
                envelope.expires_at = Some(1_000_000_000.0);
                sign(&mut envelope, producer("main").signer().unwrap()).unwrap();
                envelope.to_bytes().unwrap()
            },
            "expired",
        ),
        (
            "atk.ct_edited",
            edit(&encrypted, |m| {
                let ct = m["enc"]["ct"].as_str().unwrap().to_string();
                let first = if ct.starts_with('A') { "B" } else { "A" };
                let flipped = format!("{first}{}", &ct[first.len()..]);
                m["enc"]["ct"] = json!(flipped);
            }),
            "bad_signature",
        ),
        ("atk.ct_rebound", rebound, "decrypt_failed"),
        (
            "atk.plaintext_secret",
            seal(
                "main",
                "Secret",
                "atk.plaintext_secret",
                json!([{"ssn": "987-65-4321"}]),
                false,
                None,
            ),
            "decrypt_failed",
        ),
        (
            "atk.unsafe_int",
            edit(&echo("main", "atk.unsafe_int", "int"), |m| {
                m.insert("args".into(), json!([{"message": 9007199254740993u64}]));
            }),
            "number_out_of_range",
        ),
        (
            "atk.invalid_args",
            seal(
                "main",
                "Nap",
                "atk.invalid_args",
                json!([{"ms": 999_999_999}]),
                false,
                None,
            ),
            "invalid_args",
        ),
        (
            "atk.oversized",
            format!(
                r#"{{"class":"Echo","args":[{{"message":"{}"}}]}}"#,
                "x".repeat(600 * 1024)
            )
            .into_bytes(),
            "payload_too_large",
        ),
        (
            "atk.deep",
            format!(r#"{{"class":"Echo","args":[{}{}]}}"#, "[".repeat(500), "]".repeat(500)).into_bytes(),
            "payload_too_deep",
        ),
        (
            "atk.utf8",
            b"{\"class\":\"Echo\",\"args\":[{\"message\":\"\xc3\x28\"}]}".to_vec(),
            "malformed_payload",
        ),
        (
            "atk.bigint",
            br#"{"class":"Echo","args":[{"message":123456789012345678901234567890}]}"#.to_vec(),
            "number_out_of_range",
        ),
        (
            "atk.bigfloat",
            br#"{"class":"Echo","args":[{"message":1e400}]}"#.to_vec(),
            "number_out_of_range",
        ),
        (
            "atk.ed_ok",
            echo("ed", "atk.ed_ok", "signed by an Ed25519 producer"),
            "ran",
        ),
        (
            "atk.rotated_old",
            echo("old", "atk.rotated_old", "signed by the previous key"),
            "ran",
        ),
        (
            "atk.encrypted_ok",
            seal(
                "main",
                "Secret",
                "atk.encrypted_ok",
                json!([{"ssn": "555-12-3456"}]),
                true,
                None,
            ),
            "ran",
        ),
    ];
    for (queue, payload, _) in &cases {
        push(&env, queue, payload.clone()).await;
    }
    let outcomes = run_worker(&env).await;
    for (queue, _, want) in &cases {
        let got = match outcomes.get(*queue) {
            Some(Ok(())) => "ran".to_string(),
            Some(Err(code)) => code.clone(),
            None => "missing".to_string(),
        };
        assert_eq!(&got, want, "{queue}");
    }
    for message in [
        "pay 10000",
        "pay 10",
        "swap",
        "moved",
        "stripped",
        "scoped",
        "kid",
        "alg",
        "late",
        "int",
        "987-65-4321",
    ] {
        assert!(!ran(message), "{message} ran");
    }
    assert!(ran("signed by an Ed25519 producer") && ran("signed by the previous key") && ran("555-12-3456"));
    assert_eq!(
        RAN.lock().unwrap().iter().filter(|m| *m == "original").count(),
        1,
        "the replay did not run"
    );

    // decrypt_failed names the key, and what to do when a worker lacks one.
    let records: Vec<Value> = env
        .lrange("resque:failed")
        .await
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    let error_of = |queue: &str| records.iter().find(|r| r["queue"] == queue).unwrap()["error"].clone();
    assert_eq!(
        error_of("atk.ct_rebound"),
        "the arguments do not decrypt with key e1: edited, or bound to another job"
    );
    assert_eq!(
        error_of("atk.plaintext_secret"),
        "this class requires encrypted arguments; the job's are plaintext"
    );

    // No key material, in any encoding, in the logs or the failed list.
    let failed = env.lrange("resque:failed").await.join("\n");
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logs.contains("bad_signature"), "the log capture works");
    for secret in [MAIN, OLD, MAIL, ENC, ED_PRIVATE] {
        assert!(!logs.contains(secret) && !failed.contains(secret), "a key leaked");
    }
    // Neither do the encrypted arguments, in Redis or in the logs.
    for plaintext in ["123-45-6789", "555-12-3456"] {
        assert!(
            !logs.contains(plaintext) && !failed.contains(plaintext),
            "{plaintext} leaked"
        );
    }
}

#[tokio::test]
async fn encrypted_arguments_leave_no_plaintext_in_redis() {
    let env = Env::start().await;
    let client = resq::Client::new(env.dyn_store(), producer("main")).unwrap();
    client
        .enqueue(&Secret {
            ssn: "123-45-6789".into(),
        })
        .await
        .unwrap();
    client
        .enqueue_to(
            "other",
            &Secret {
                ssn: "222-33-4444".into(),
            },
        )
        .await
        .unwrap();
    let dump = dump_redis(&env).await;
    assert!(dump.contains("\"enc\"") && dump.contains("XC20P"), "{dump}");
    assert!(
        !dump.contains("123-45-6789") && !dump.contains("222-33-4444"),
        "plaintext in Redis: {dump}"
    );

    let mut config = fast_config("default,other", Arc::new(worker_ring()));
    config.burst = true;
    let (_c, rx) = Control::new();
    let report = Worker::new(env.dyn_store(), registry(), config).run(rx).await.unwrap();
    assert_eq!((report.processed, report.failed), (2, 0));
    assert!(ran("123-45-6789") && ran("222-33-4444"), "the worker decrypted them");
    assert!(!dump_redis(&env).await.contains("123-45-6789"));
}

#[tokio::test]
async fn producers_refuse_what_they_may_not_sign() {
    let env = Env::start().await;
    // No signing key: no client.
    let verify_only = Arc::new(
        Keyring::from_toml(&format!(
            "[[keys]]\nkid = \"ed\"\nalg = \"EdDSA\"\npublic = \"{ED_PUBLIC}\"\n"
        ))
        .unwrap(),
    );
    assert!(matches!(
        resq::Client::new(env.dyn_store(), verify_only),
        Err(resq::PolicyError::NoSigningKey)
    ));
    // A key scoped to Mailers::* cannot sign Echo.
    let scoped = resq::Client::new(env.dyn_store(), producer("mail-only")).unwrap();
    let err = scoped
        .enqueue(&Echo { message: "x".into() })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not allowed to sign"), "{err}");
    // Arguments breaking the rules are refused before anything is stored, naming the field.
    let client = resq::Client::new(env.dyn_store(), producer("main")).unwrap();
    let err = client
        .enqueue(&Secret {
            ssn: "not-an-ssn".into(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        r#"arguments of Secret are invalid: ssn: does not match pattern /^[0-9]{3}-[0-9]{2}-[0-9]{4}$/"#
    );
    let err = client.enqueue(&Nap { ms: 999_999_999 }).await.unwrap_err().to_string();
    assert_eq!(err, "arguments of Nap are invalid: ms: greater than 60000");
    // An integer a double cannot hold exactly cannot be signed.
    let err = client
        .enqueue(&Add(9_007_199_254_740_993, 1))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("2^53"), "{err}");
    assert!(env.keys("resque:queue:*").await.is_empty(), "nothing was stored");
}

async fn dump_redis(env: &Env) -> String {
    let mut out = String::new();
    for key in env.keys("*").await {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut env.conn()).await.unwrap();
        let value = match kind.as_str() {
            "list" => env.lrange(&key).await.join("\n"),
            // Bitmaps (replay marks) are not text.
            "string" => {
                let bytes: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut env.conn()).await.unwrap();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            "set" => {
                let m: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(&mut env.conn())
                    .await
                    .unwrap();
                m.join("\n")
            }
            "hash" => {
                let m: Vec<String> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut env.conn())
                    .await
                    .unwrap();
                m.join("\n")
            }
            _ => String::new(),
        };
        out.push_str(&format!("{key} => {value}\n"));
    }
    out
}
