//! `resq workers`: Ruby's and resq's registered workers.

use serde_json::{json, Value};

use super::{admin, JsonFlag};
use crate::config::Settings;
use crate::output::safe;
use crate::Failure;

pub async fn workers(settings: &Settings, f: JsonFlag) -> Result<(), Failure> {
    let workers = admin(settings).await?.workers().await.map_err(Failure::runtime)?;
    if f.json {
        let v: Vec<Value> = workers
            .iter()
            .map(|w| {
                let working = w.working.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok());
                json!({"id": w.id, "started": w.started, "heartbeat": w.heartbeat, "working": working,
                       "processed": w.processed, "failed": w.failed, "resq": w.resq, "paused": w.paused})
            })
            .collect();
        println!("{}", Value::Array(v));
        return Ok(());
    }
    if workers.is_empty() {
        println!("no workers");
    }
    for w in workers {
        let doing = match w.working.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok()) {
            Some(v) => format!(
                "working on {} from {}",
                safe(v["payload"]["class"].as_str().unwrap_or("?")),
                safe(v["queue"].as_str().unwrap_or("?"))
            ),
            None if w.paused => "paused".to_string(),
            None => "idle".to_string(),
        };
        let doing = if w.paused && !doing.starts_with("paused") {
            format!("paused, {doing}")
        } else {
            doing
        };
        println!(
            "{}  started {}  heartbeat {}  processed {} failed {}  {doing}",
            safe(&w.id),
            safe(w.started.as_deref().unwrap_or("-")),
            safe(w.heartbeat.as_deref().unwrap_or("-")),
            w.processed,
            w.failed
        );
    }
    Ok(())
}
