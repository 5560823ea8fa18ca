//! What the integrity checks cost per job, next to one Redis round trip.
//!
//! `cargo run --release -p resq-bench --bin envelope_cost`
//!
//! Seals 20,000 jobs (signed; signed and encrypted), then times, per job:
//! decode with limits; + HMAC-SHA256 verify (canonical form); + XChaCha20-Poly1305
//! decrypt; + deserialize and validate the arguments. Each step is run 7
//! times; the median and the spread are printed, in microseconds per job.

use std::sync::Arc;
use std::time::Instant;

use resq::envelope::{decrypt_args, verify};
use resq::{Envelope, Job, JobContext, JobError, Keyring, PayloadLimits, Policy, Registry, SealOptions};
use resq_bench::{summary, time_runs};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, garde::Validate, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct SendEmail {
    #[garde(email)]
    to: String,
    #[garde(pattern(r"^[a-z_]{1,32}$"))]
    template: String,
    #[garde(range(max = 1000))]
    priority: u32,
}

impl Job for SendEmail {
    const CLASS: &'static str = "SendEmail";
    async fn perform(self, _: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

const JOBS: usize = 20_000;
const RUNS: usize = 7;

fn main() {
    let keyring = Arc::new(Keyring::ephemeral());
    let policy = Policy::new(Arc::clone(&keyring)).expect("policy");
    let registry = Registry::new().register::<SendEmail>();
    let limits = PayloadLimits::default();
    let args = || vec![serde_json::json!({"to": "ana@example.com", "template": "welcome", "priority": 3})];
    for (label, encrypt) in [("signed", false), ("signed+encrypted", true)] {
        let payloads: Vec<Vec<u8>> = (0..JOBS)
            .map(|_| {
                policy
                    .seal(
                        "SendEmail",
                        "mailers",
                        args(),
                        SealOptions {
                            encrypt,
                            ttl: None,
                            ..SealOptions::default()
                        },
                    )
                    .expect("seal")
                    .1
            })
            .collect();
        println!(
            "{label}: {JOBS} jobs of {} bytes, {RUNS} runs, µs per job (median [min..max])",
            payloads[0].len()
        );
        let step = |name: &str, f: &dyn Fn(&[u8])| {
            let samples = time_runs(RUNS, || payloads.iter().for_each(|p| f(p)));
            let (med, min, max) = summary(&samples, JOBS as u64);
            println!(
                "  {name:<44} {:>7.2} [{:.2}..{:.2}]",
                med / 1000.0,
                min / 1000.0,
                max / 1000.0
            );
        };
        step("decode with limits", &|p| {
            Envelope::decode(p, &limits).expect("decode");
        });
        step("decode + verify", &|p| {
            let env = Envelope::decode(p, &limits).expect("decode");
            verify(&env, "mailers", &keyring, false).expect("verify");
        });
        step("decode + verify + decrypt", &|p| {
            let mut env = Envelope::decode(p, &limits).expect("decode");
            verify(&env, "mailers", &keyring, false).expect("verify");
            decrypt_args(&mut env, &keyring, &limits).expect("decrypt");
        });
        step("decode + verify + decrypt + deserialize/validate", &|p| {
            let mut env = Envelope::decode(p, &limits).expect("decode");
            verify(&env, "mailers", &keyring, false).expect("verify");
            decrypt_args(&mut env, &keyring, &limits).expect("decrypt");
            registry.check_args(&env.class, env.args).expect("valid");
        });
    }

    // The producer side: sealing (validate, encode, expiry, sign, serialize, limits).
    let client_jobs: Vec<SendEmail> = (0..JOBS)
        .map(|_| SendEmail {
            to: "ana@example.com".into(),
            template: "welcome".into(),
            priority: 3,
        })
        .collect();
    let seal_one = time_runs(RUNS, || {
        for job in &client_jobs {
            let args = vec![serde_json::to_value(job).expect("json")];
            policy
                .seal("SendEmail", "mailers", args, SealOptions::default())
                .expect("seal");
        }
    });
    let (med, min, max) = summary(&seal_one, JOBS as u64);
    println!(
        "seal one job (one thread): {:>7.2} µs [{:.2}..{:.2}]",
        med / 1000.0,
        min / 1000.0,
        max / 1000.0
    );
    let args: Vec<Vec<serde_json::Value>> = client_jobs
        .iter()
        .map(|j| vec![serde_json::to_value(j).expect("json")])
        .collect();
    let seal_many = time_runs(RUNS, || {
        policy
            .seal_many("SendEmail", "mailers", args.clone(), SealOptions::default())
            .expect("seal");
    });
    let (med, min, max) = summary(&seal_many, JOBS as u64);
    println!(
        "seal_many, all cores:      {:>7.2} µs [{:.2}..{:.2}]",
        med / 1000.0,
        min / 1000.0,
        max / 1000.0
    );

    // One Redis round trip (PING) on a private local server, for scale.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let server = local_redis::LocalRedis::start().expect("redis-server");
        let client = redis::Client::open(server.url()).expect("client");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
        let mut samples = Vec::new();
        for _ in 0..RUNS {
            let start = Instant::now();
            for _ in 0..2000 {
                let _: String = redis::cmd("PING").query_async(&mut conn).await.expect("ping");
            }
            samples.push(start.elapsed());
        }
        let (med, min, max) = summary(&samples, 2000);
        println!(
            "one Redis round trip (PING, loopback): {:>7.2} µs [{:.2}..{:.2}]",
            med / 1000.0,
            min / 1000.0,
            max / 1000.0
        );
    });
}
