//! `resq enqueue`: one job through the same policy as the library (signed,
//! checked against its type), scheduled, unique, or for Ruby workers.

use clap::Args;
use resq::{Client, Policy, Registry};
use serde_json::Value;

use crate::config::Settings;
use crate::output::{clip, safe};
use crate::{connect, Failure};

#[derive(Args)]
pub struct EnqueueArgs {
    /// The job class, e.g. `Echo` or `Mailers::Welcome`.
    class: String,
    /// The arguments: a JSON array (Resque's `args`) or one JSON object
    /// (shorthand for `[object]`).
    #[arg(long, default_value = "[]")]
    args: String,
    /// The queue (default: `default`).
    #[arg(long, default_value = "default")]
    queue: String,
    /// Stop the run after this many milliseconds (recorded `timeout`).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Run it after this long instead of now: `90s`, `10m`, `1h30m`, `2d`.
    #[arg(long = "in", value_name = "DURATION", conflicts_with = "at")]
    in_: Option<String>,
    /// Run it at this time (RFC 3339, e.g. `2026-12-24T18:00:00+01:00`).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Enqueue it only if no job of this class holds this key within the
    /// window (else refused, naming the existing job).
    #[arg(long, value_name = "KEY", conflicts_with_all = ["in_", "at"])]
    unique: Option<String>,
    /// How long `--unique`'s key is held (default 1h).
    #[arg(long, value_name = "DURATION", requires = "unique")]
    unique_for: Option<String>,
    /// Its lifetime: past it, it expires and never runs (default 7d, or
    /// the class's own).
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
    /// Push the job for Ruby workers: Resque's exact form (`class` and
    /// positional `args`, unsigned), for a class resq does not run, onto a
    /// queue listed in `[ruby] queues` (RESQ_RUBY_QUEUES). Audited.
    #[arg(long)]
    for_ruby: bool,
}

/// Parses `--args`: an array, or one object meaning `[object]`.
pub fn parse_args(text: &str, limits: &resq::PayloadLimits) -> Result<Vec<Value>, Failure> {
    limits
        .check(text.as_bytes())
        .map_err(|e| Failure::usage(format!("--args is refused: {e}")))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(obj @ Value::Object(_)) => Ok(vec![obj]),
        Ok(other) => Err(Failure::usage(format!(
            "--args must be a JSON array or one JSON object, not {}",
            clip(&other.to_string(), 40)
        ))),
        Err(e) => Err(Failure::usage(format!("--args is not valid JSON: {e}"))),
    }
}

pub async fn enqueue(settings: &Settings, registry: &Registry, a: EnqueueArgs) -> Result<(), Failure> {
    if a.for_ruby {
        return enqueue_for_ruby(settings, a).await;
    }
    if let Some(ms) = a.timeout_ms {
        resq::worker::ranges::check(
            "--timeout-ms",
            std::time::Duration::from_millis(ms),
            &resq::worker::ranges::DEFAULT_TIMEOUT,
        )
        .map_err(Failure::usage)?;
    }
    // The same policy as every other path: the class must be registered here
    // and its arguments must pass its rules, then the job is signed.
    let keyring = settings.keyring().map_err(Failure::usage)?;
    let verify_only = keyring.has_verification_keys();
    let mut policy = Policy::new(keyring)
        .map_err(|e| match e {
            resq::PolicyError::NoSigningKey if verify_only => Failure::usage(
                "the keys file holds no signing key: it is a verify-only (public) file, as workers get; \
                 a producer needs the private keys file that `resq keys generate` wrote (RESQ_KEYS_FILE)",
            ),
            other => Failure::usage(other),
        })?
        .with_registry(registry.clone());
    policy.limits = settings.limits;
    let args = parse_args(&a.args, &policy.limits)?;
    let duration = |flag: &str, text: &Option<String>| {
        text.as_deref()
            .map(crate::when::parse_duration)
            .transpose()
            .map_err(|e| Failure::usage(format!("{flag}: {e}")))
    };
    let at = match (duration("--in", &a.in_)?, &a.at) {
        (Some(delay), _) => Some(std::time::SystemTime::now() + delay),
        (None, Some(at)) => Some(crate::when::parse_time(at).map_err(|e| Failure::usage(format!("--at: {e}")))?),
        (None, None) => None,
    };
    let ttl = duration("--ttl", &a.ttl)?;
    if ttl.is_some_and(|t| t.is_zero()) {
        return Err(Failure::usage("--ttl must be longer than 0"));
    }
    let unique = match &a.unique {
        Some(key) => Some((
            key.clone(),
            duration("--unique-for", &a.unique_for)?.unwrap_or(std::time::Duration::from_secs(3600)),
        )),
        None => None,
    };
    let store = connect(settings).await?;
    let client = Client::with_policy(store, policy);
    let id = client
        .enqueue_raw_job(resq::RawJob {
            class: a.class.clone(),
            args,
            queue: a.queue.clone(),
            options: resq::SealOptions {
                timeout: a.timeout_ms.map(std::time::Duration::from_millis),
                ttl,
                ..Default::default()
            },
            at,
            unique,
        })
        .await
        .map_err(|e| match e {
            resq::EnqueueError::Store(_) => Failure::runtime(e),
            resq::EnqueueError::Policy(resq::PolicyError::Rejected { ref rejection, .. })
                if rejection.reason == resq::Reason::UnregisteredClass =>
            {
                Failure::usage(format!(
                    "class {} is not a job type this binary knows (see `resq jobs list`): `resq enqueue` \
                     checks a job against its type's rules before it signs it; for a class Ruby workers run, \
                     use --for-ruby",
                    safe(&clip(&a.class, 64))
                ))
            }
            _ => Failure::usage(e),
        })?;
    match at {
        Some(at) => println!(
            "scheduled {} on {} as {id}, due {}",
            safe(&a.class),
            safe(&a.queue),
            resq::UnixMs::from_system_time(at)
        ),
        None => println!("enqueued {} on {} as {id}", safe(&a.class), safe(&a.queue)),
    }
    Ok(())
}

/// `resq enqueue --for-ruby`: no registry, no signature; the queue must be
/// Ruby's (see `resq::ruby`).
async fn enqueue_for_ruby(settings: &Settings, a: EnqueueArgs) -> Result<(), Failure> {
    if a.timeout_ms.is_some() || a.ttl.is_some() || a.unique.is_some() || a.in_.is_some() || a.at.is_some() {
        return Err(Failure::usage(
            "--timeout-ms, --ttl, --unique, --in and --at are resq's: Ruby workers ignore them",
        ));
    }
    let args = parse_args(&a.args, &settings.limits)?;
    let store = connect(settings).await?;
    let mut producer =
        resq::ruby::RubyProducer::new(store, settings.ruby_queues.clone(), settings.allow_unsigned.clone())
            .map_err(Failure::usage)?;
    producer.limits = settings.limits;
    producer.enqueue(&a.class, args, &a.queue).await.map_err(|e| match e {
        resq::ruby::RubyEnqueueError::Store(_) => Failure::runtime(e),
        _ => Failure::usage(e),
    })?;
    println!(
        "enqueued {} on {} for Ruby workers (unsigned)",
        safe(&a.class),
        safe(&a.queue)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn args_take_an_array_or_one_object() {
        let p = resq::PayloadLimits::default();
        assert_eq!(parse_args(r#"[1,"a"]"#, &p).ok().unwrap(), vec![json!(1), json!("a")]);
        assert_eq!(parse_args(r#"{"m":1}"#, &p).ok().unwrap(), vec![json!({"m":1})]);
        for bad in [
            "",
            "1",
            "\"s\"",
            "{",
            "[1,]",
            &format!("{}1{}", "[".repeat(64), "]".repeat(64)),
        ] {
            assert!(parse_args(bad, &p).is_err(), "{bad}");
        }
    }
}
