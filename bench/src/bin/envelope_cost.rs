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
use resq_bench::{summary, time_runs, BenchError};
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

fn main() -> std::process::ExitCode {
    match measure() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The whole check a worker makes of one payload, with its errors: run once
/// per payload before timing, so the timed steps below measure jobs that pass.
fn check(p: &[u8], keyring: &Keyring, limits: &PayloadLimits, registry: &Registry) -> Result<(), BenchError> {
    let mut env = Envelope::decode(p, limits)?;
    verify(&env, "mailers", keyring, false)?;
    decrypt_args(&mut env, keyring, limits)?;
    registry.check_args(&env.class, env.args)?;
    Ok(())
}

fn measure() -> Result<(), BenchError> {
    let keyring = Arc::new(Keyring::ephemeral());
    let policy = Policy::new(Arc::clone(&keyring))?;
    let registry = Registry::new().register::<SendEmail>();
    let limits = PayloadLimits::default();
    let args = || vec![serde_json::json!({"to": "ana@example.com", "template": "welcome", "priority": 3})];
    for (label, encrypt) in [("signed", false), ("signed+encrypted", true)] {
        let payloads: Vec<Vec<u8>> = (0..JOBS)
            .map(|_| {
                let options = SealOptions {
                    encrypt,
                    ..SealOptions::default()
                };
                policy
                    .seal("SendEmail", "mailers", args(), options)
                    .map(|sealed| sealed.payload().to_vec())
            })
            .collect::<Result<_, _>>()?;
        for p in &payloads {
            check(p, &keyring, &limits, &registry)?;
        }
        println!(
            "{label}: {JOBS} jobs of {} bytes, {RUNS} runs, µs per job (median [min..max])",
            payloads.first().map_or(0, Vec::len)
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
        // Every payload passed `check` above: the steps cannot fail here, and
        // each result is consumed so none is optimised away.
        step("decode with limits", &|p| {
            std::hint::black_box(Envelope::decode(p, &limits).is_ok());
        });
        step("decode + verify", &|p| {
            if let Ok(env) = Envelope::decode(p, &limits) {
                std::hint::black_box(verify(&env, "mailers", &keyring, false).is_ok());
            }
        });
        step("decode + verify + decrypt", &|p| {
            if let Ok(mut env) = Envelope::decode(p, &limits) {
                if verify(&env, "mailers", &keyring, false).is_ok() {
                    std::hint::black_box(decrypt_args(&mut env, &keyring, &limits).is_ok());
                }
            }
        });
        step("decode + verify + decrypt + deserialize/validate", &|p| {
            std::hint::black_box(check(p, &keyring, &limits, &registry).is_ok());
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
    let args: Vec<Vec<serde_json::Value>> = client_jobs
        .iter()
        .map(|j| serde_json::to_value(j).map(|v| vec![v]))
        .collect::<Result<_, _>>()?;
    let mut sealed = Ok(());
    let seal_one = time_runs(RUNS, || {
        for job in &client_jobs {
            let one = serde_json::to_value(job)
                .map_err(BenchError::from)
                .and_then(|v| Ok(policy.seal("SendEmail", "mailers", vec![v], SealOptions::default())?));
            if let Err(e) = one {
                sealed = Err(e);
            }
        }
    });
    sealed?;
    let (med, min, max) = summary(&seal_one, JOBS as u64);
    println!(
        "seal one job (one thread): {:>7.2} µs [{:.2}..{:.2}]",
        med / 1000.0,
        min / 1000.0,
        max / 1000.0
    );
    let mut sealed = Ok(());
    let seal_many = time_runs(RUNS, || {
        if let Err(e) = policy.seal_many("SendEmail", "mailers", args.clone(), SealOptions::default()) {
            sealed = Err(e);
        }
    });
    sealed?;
    let (med, min, max) = summary(&seal_many, JOBS as u64);
    println!(
        "seal_many, all cores:      {:>7.2} µs [{:.2}..{:.2}]",
        med / 1000.0,
        min / 1000.0,
        max / 1000.0
    );

    // One Redis round trip (PING) on a private local server, for scale.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let server = local_redis::LocalRedis::start()?;
        let client = redis::Client::open(server.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut samples = Vec::new();
        for _ in 0..RUNS {
            let start = Instant::now();
            for _ in 0..2000 {
                let _: String = redis::cmd("PING").query_async(&mut conn).await?;
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
        Ok(())
    })
}
