//! `resq expired list|remove|retry`.

use std::sync::Arc;

use clap::Subcommand;
use resq::{Admin, Client, Policy, Registry, Store};
use serde_json::Value;

use super::{admin, admin_failure, expired_json, Page};
use crate::config::Settings;
use crate::output::{clip, safe};
use crate::{connect, Failure};

#[derive(Subcommand)]
pub enum ExpiredAction {
    /// The newest jobs the sweeper removed because they expired.
    List(Page),
    /// Remove one record (by the handle `list` shows).
    Remove { handle: String },
    /// Enqueue the job again as a new job (new id, a fresh lifetime, signed
    /// anew): an expired job never runs as it was.
    Retry { handle: String },
}

/// `resq expired list`.
pub async fn expired(settings: &Settings, registry: &Registry, action: ExpiredAction) -> Result<(), Failure> {
    let (offset, limit, json) = match action {
        ExpiredAction::List(Page { offset, limit, json }) => (offset, limit, json),
        ExpiredAction::Remove { handle } => {
            admin(settings)
                .await?
                .remove_expired(&handle)
                .await
                .map_err(admin_failure)?;
            println!("removed {}", safe(&handle));
            return Ok(());
        }
        ExpiredAction::Retry { handle } => return retry_expired(settings, registry, &handle).await,
    };
    let (records, total) = admin(settings)
        .await?
        .expired(offset, limit.min(1000))
        .await
        .map_err(Failure::runtime)?;
    // One shape: each record with its handle, its payload as an object.
    let parsed: Vec<Value> = records.iter().map(expired_json).collect();
    if json {
        println!("{}", Value::Array(parsed));
        return Ok(());
    }
    println!(
        "{total} expired job(s) swept in all; showing {} from {offset}",
        parsed.len()
    );
    for r in parsed {
        let payload = &r["payload"];
        println!(
            "{}  {}  queue={}  class={} id={}",
            safe(r["id"].as_str().unwrap_or("-")),
            safe(r["expired_at"].as_str().unwrap_or("-")),
            safe(r["queue"].as_str().filter(|q| !q.is_empty()).unwrap_or("(scheduled)")),
            safe(&clip(payload["class"].as_str().unwrap_or("?"), 60)),
            safe(payload["id"].as_str().unwrap_or("-"))
        );
    }
    Ok(())
}

/// `resq expired retry`: the job again, as a new job.
async fn retry_expired(settings: &Settings, registry: &Registry, handle: &str) -> Result<(), Failure> {
    let store: Arc<dyn Store> = connect(settings).await?;
    let admin = Admin::new(Arc::clone(&store));
    let (records, _) = admin.expired(0, 1000).await.map_err(Failure::runtime)?;
    let record = records
        .iter()
        .find(|r| resq::admin::expired_handle(r) == handle)
        .ok_or_else(|| Failure::usage(format!("no expired record {} (see `resq expired list`)", safe(handle))))?;
    let keyring = settings.keyring().map_err(Failure::usage)?;
    let mut envelope = resq::Envelope::decode(&record.payload, &settings.limits)
        .map_err(|e| Failure::usage(format!("the expired job cannot be read: {e}")))?;
    // Encrypted arguments are opened (and sealed again by the policy).
    resq::envelope::decrypt_args(&mut envelope, &keyring, &settings.limits)
        .map_err(|e| Failure::usage(format!("the expired job's arguments: {e}")))?;
    let queue = envelope
        .queue
        .clone()
        .or_else(|| record.queue.clone().filter(|q| !q.is_empty()))
        .ok_or_else(|| Failure::usage("the expired job names no queue"))?;
    let mut policy = Policy::new(keyring)
        .map_err(Failure::usage)?
        .with_registry(registry.clone());
    policy.limits = settings.limits;
    let id = Client::with_policy(store, policy)
        .enqueue_raw(&envelope.class, envelope.args, &queue)
        .await
        .map_err(Failure::usage)?;
    admin.remove_expired(handle).await.map_err(admin_failure)?;
    println!("enqueued {} on {} again as {id}", safe(&envelope.class), safe(&queue));
    Ok(())
}
