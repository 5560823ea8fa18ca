//! One file per command. Each takes the settings (and, when it runs or
//! checks jobs, the registry of job types) and returns a `Failure` to print.

pub mod acl;
pub mod audit;
pub mod config_check;
pub mod cron;
pub mod demo;
pub mod doctor;
pub mod enqueue;
pub mod expired;
pub mod failed;
pub mod jobs;
pub mod keys;
pub mod queue;
pub mod queues;
pub mod schedule;
pub mod serve;
pub mod stats;
pub mod token;
pub mod user;
pub mod worker;
pub mod workers;

use std::sync::Arc;

use clap::Args;
use resq::{Admin, Store};
use serde_json::{json, Value};

use crate::config::Settings;
use crate::output::clip;
use crate::{connect, Failure};

#[derive(Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Which page of a list to show, and how.
#[derive(Args)]
pub struct Page {
    #[arg(long, default_value_t = 0)]
    offset: u64,
    #[arg(long, default_value_t = 20)]
    limit: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// An admin action's failure: the store's is a runtime error, the rest are the
/// user's input (exit 2).
pub(crate) fn admin_failure(e: resq::AdminError) -> Failure {
    match e {
        resq::AdminError::Store(_) => Failure::runtime(e),
        _ => Failure::usage(e),
    }
}

pub(crate) async fn admin(settings: &Settings) -> Result<Admin, Failure> {
    let store: Arc<dyn Store> = connect(settings).await?;
    Ok(Admin::new(store))
}

/// A stored payload as JSON output shows it: always an object (a stand-in
/// with the text in `raw` when it is not a job object).
pub(crate) fn payload_object(bytes: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({
            "class": resq::failure::UNREADABLE_CLASS,
            "args": [],
            "raw": clip(&String::from_utf8_lossy(bytes), 512),
        }),
    }
}

/// A failure as `--json` shows it: its handle as `id`, Resque's fields, and
/// times in ISO 8601.
pub(crate) fn failure_json(entry: &resq::FailedEntry) -> Value {
    let r = &entry.record;
    if !r.readable {
        return json!({"id": entry.handle, "raw": clip(&String::from_utf8_lossy(&r.stored.0), 512)});
    }
    let mut v = json!({
        "id": entry.handle,
        "failure_id": r.id,
        "failed_at": r.failed_at.map(|t| t.to_string()),
        "queue": r.queue,
        "class": r.class,
        "reason": r.reason,
        "exception": r.exception,
        "error": r.error,
        "worker": r.worker,
        "backtrace": r.backtrace,
        "payload": r.payload.as_deref().map(payload_object),
    });
    if let Some(t) = r.retried_at {
        v["retried_at"] = json!(t.to_string());
    }
    if let Some(excerpt) = &r.excerpt {
        v["payload_bytes"] = json!(excerpt.bytes);
        v["payload_raw"] = json!(excerpt.head);
    }
    v
}

/// An expired-job record as `--json` shows it.
pub(crate) fn expired_json(record: &resq::store::ExpiredRecord) -> Value {
    json!({
        "id": resq::admin::expired_handle(record),
        "expired_at": record.expired_at.map(|t| t.to_string()),
        "queue": record.queue,
        "payload": payload_object(&record.payload),
    })
}

/// Writes one entry to the audit stream for a change made from the CLI
/// (users, tokens): who ran it (the OS user), what, to what, how it ended.
/// An entry that cannot be written is a warning: the change was made.
pub async fn audit_cli(settings: &Settings, store: &resq_redis::RedisStore, action: &str, target: &str, outcome: &str) {
    let audit_max = settings
        .api
        .audit_max
        .unwrap_or_else(|| resq_api::ApiSettings::default().audit_max);
    let api = resq_redis::api::ApiStore::new(store, audit_max);
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }));
    let fields = vec![
        ("at_ms", resq::UnixMs::now().0.to_string()),
        ("source", "cli".to_string()),
        ("user", clip(&user, 64)),
        (
            "host",
            clip(
                &hostname::get()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                64,
            ),
        ),
        ("action", action.to_string()),
        ("target", clip(target, 200)),
        ("outcome", outcome.to_string()),
    ];
    if let Err(e) = api.audit_many(&[fields]).await {
        tracing::warn!(error = %e, "the change was made, but its audit entry could not be written");
    }
}
