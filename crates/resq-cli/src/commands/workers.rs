//! `resq workers`: Ruby's and resq's registered workers.

use resq::UnixMs;
use serde_json::{json, Value};

use super::{admin, payload_object, JsonFlag};
use crate::config::Settings;
use crate::output::safe;
use crate::Failure;

fn iso(at: Option<UnixMs>) -> Option<String> {
    at.map(|t| t.to_string())
}

pub async fn workers(settings: &Settings, f: JsonFlag) -> Result<(), Failure> {
    let workers = admin(settings).await?.workers().await.map_err(Failure::runtime)?;
    if f.json {
        let v: Vec<Value> = workers
            .iter()
            .map(|w| {
                let working = w.working.as_ref().map(|r| {
                    json!({"queue": r.queue, "run_at": r.run_at.to_string(), "payload": payload_object(&r.payload)})
                });
                json!({"id": w.id, "started": iso(w.started), "heartbeat": iso(w.heartbeat), "busy": w.busy,
                       "working": working, "processed": w.processed, "failed": w.failed, "resq": w.resq,
                       "paused": w.paused})
            })
            .collect();
        println!("{}", Value::Array(v));
        return Ok(());
    }
    if workers.is_empty() {
        println!("no workers");
    }
    for w in workers {
        let class = |payload: &[u8]| {
            serde_json::from_slice::<Value>(payload)
                .ok()
                .and_then(|v| v["class"].as_str().map(str::to_string))
                .unwrap_or_else(|| "?".into())
        };
        let doing = match (&w.working, w.busy) {
            (Some(r), _) => format!("working on {} from {}", safe(&class(&r.payload)), safe(&r.queue)),
            (None, true) => "working (its record cannot be read)".to_string(),
            (None, false) if w.paused => "paused".to_string(),
            (None, false) => "idle".to_string(),
        };
        let doing = if w.paused && !doing.starts_with("paused") {
            format!("paused, {doing}")
        } else {
            doing
        };
        println!(
            "{}  started {}  heartbeat {}  processed {} failed {}  {doing}",
            safe(&w.id),
            iso(w.started).unwrap_or_else(|| "-".into()),
            iso(w.heartbeat).unwrap_or_else(|| "-".into()),
            w.processed,
            w.failed
        );
    }
    Ok(())
}
