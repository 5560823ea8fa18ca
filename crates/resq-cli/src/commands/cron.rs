//! `resq cron list`.

use clap::Subcommand;
use resq::Registry;
use resq::UnixMs;
use serde_json::{json, Value};

use super::{admin, JsonFlag};
use crate::config::Settings;
use crate::output::{clip, safe};
use crate::Failure;

#[derive(Subcommand)]
pub enum CronAction {
    /// The recurring jobs in the config, their next tick and the last one fired.
    List(JsonFlag),
}

/// `resq cron list`.
pub async fn cron(settings: &Settings, registry: &Registry, action: CronAction) -> Result<(), Failure> {
    let CronAction::List(JsonFlag { json }) = action;
    let admin = admin(settings).await?;
    let last: std::collections::BTreeMap<String, UnixMs> = admin
        .cron_last_fired()
        .await
        .map_err(Failure::runtime)?
        .into_iter()
        .collect();
    let now = UnixMs::now();
    let iso = |at: Option<UnixMs>| at.map(|t| t.to_string());
    let rows: Vec<Value> = settings
        .cron
        .iter()
        .map(|e| {
            let queue = e
                .queue
                .clone()
                .or_else(|| registry.info(&e.class).map(|i| i.queue.to_string()))
                .unwrap_or_else(|| "default".into());
            json!({"name": e.name, "schedule": e.expression(), "time_zone": e.time_zone(), "class": e.class,
                   "queue": queue, "next": iso(e.next_tick(now)), "last_fired": iso(last.get(&e.name).copied())})
        })
        .collect();
    // Marks of entries this config does not have (removed, or another deployment's).
    let orphans: Vec<(&String, &UnixMs)> = last
        .iter()
        .filter(|(n, _)| !settings.cron.iter().any(|e| &e.name == *n))
        .collect();
    if json {
        let orphans: Vec<Value> = orphans
            .iter()
            .map(|(n, t)| json!({"name": n, "last_fired": iso(Some(**t))}))
            .collect();
        println!("{}", json!({"entries": rows, "not_configured": orphans}));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no recurring jobs: add [[cron]] tables to resq.toml");
    }
    for r in &rows {
        println!(
            "{}  {:?} ({})  class={} queue={}  next {}  last fired {}",
            safe(r["name"].as_str().unwrap_or("")),
            r["schedule"].as_str().unwrap_or(""),
            r["time_zone"].as_str().unwrap_or(""),
            safe(r["class"].as_str().unwrap_or("")),
            safe(r["queue"].as_str().unwrap_or("")),
            r["next"].as_str().unwrap_or("never"),
            r["last_fired"].as_str().unwrap_or("never"),
        );
    }
    for (name, tick) in orphans {
        println!("{}  (not in this config)  last fired {}", safe(&clip(name, 64)), tick);
    }
    Ok(())
}
