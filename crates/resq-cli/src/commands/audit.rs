//! `resq audit tail`: the HTTP API's audit trail, from its Redis stream.

use std::time::Duration;

use clap::Subcommand;
use resq_redis::api::ApiStore;
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::output::safe;
use crate::{connect, Failure};

#[derive(Subcommand)]
pub enum AuditAction {
    /// The newest entries; with --follow, then each new one as it comes.
    Tail {
        /// How many of the newest to show first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Keep printing new entries (Ctrl-C stops).
        #[arg(long)]
        follow: bool,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
    },
}

pub async fn audit(settings: &Settings, action: AuditAction) -> Result<(), Failure> {
    let AuditAction::Tail { limit, follow, json } = action;
    let store = ApiStore::new(&*connect(settings).await?, 1);
    let mut last = "$".to_string();
    let mut entries = store.audit_last(limit).await.map_err(Failure::runtime)?;
    loop {
        for (id, fields) in entries.drain(..) {
            print_entry(&fields, json);
            last = id;
        }
        if !follow {
            return Ok(());
        }
        entries = store
            .audit_read(&last, 100, Some(Duration::from_secs(5)))
            .await
            .map_err(Failure::runtime)?;
    }
}

fn print_entry(fields: &[(String, String)], json: bool) {
    if json {
        let object: Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        println!("{}", Value::Object(object));
        return;
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map_or(String::new(), |(_, v)| safe(v))
    };
    let at = get("at_ms").parse().map(resq::UnixMs).unwrap_or_default();
    if !get("action").is_empty() {
        // A dashboard or CLI action: who did what to what.
        println!(
            "{at} {:<8} {} by {} ({}) {} ip={}",
            get("outcome"),
            get("action"),
            get("user"),
            get("source"),
            get("target"),
            get("client_ip"),
        );
        return;
    }
    println!(
        "{at} {:<8} {} {} token={} ({}) ip={} class={} queue={} jobs={} job={} reason={} request={}",
        get("outcome"),
        get("status"),
        get("route"),
        get("token_id"),
        get("token_name"),
        get("client_ip"),
        get("class"),
        get("queue"),
        get("jobs"),
        get("job_id"),
        get("reason"),
        get("request_id"),
    );
}
