//! `resq queues`: the queues, their lengths and controls.

use serde_json::{json, Value};

use super::{admin, JsonFlag};
use crate::config::Settings;
use crate::output::safe;
use crate::Failure;

pub async fn queues(settings: &Settings, f: JsonFlag) -> Result<(), Failure> {
    let admin = admin(settings).await?;
    let queues = admin.queues().await.map_err(Failure::runtime)?;
    let (paused, caps) = admin.queue_controls().await.map_err(Failure::runtime)?;
    let cap_of = |q: &str| caps.iter().find(|(name, _)| name == q).map(|(_, c)| *c);
    // Ruby workers ignore resq's pause and caps: say so where it matters.
    let controlled: Vec<String> = queues
        .iter()
        .map(|(q, _)| q.clone())
        .filter(|q| paused.contains(q) || cap_of(q).is_some())
        .collect();
    let ruby = admin.served_by_ruby(&controlled).await.map_err(Failure::runtime)?;
    if f.json {
        let v: Vec<Value> = queues
            .iter()
            .map(|(q, n)| {
                let mut entry = json!({"queue": q, "size": n});
                if paused.contains(q) {
                    entry["paused"] = json!(true);
                }
                if let Some(cap) = cap_of(q) {
                    entry["cap"] = json!(cap);
                }
                if ruby.contains(q) {
                    entry["ruby_workers"] = json!(true);
                }
                entry
            })
            .collect();
        println!("{}", Value::Array(v));
        return Ok(());
    }
    if queues.is_empty() {
        println!("no queues");
    }
    for (q, n) in queues {
        let mut notes = String::new();
        if paused.contains(&q) {
            notes.push_str("  paused");
        }
        if let Some(cap) = cap_of(&q) {
            notes.push_str(&format!("  cap {cap}"));
        }
        if ruby.contains(&q) {
            notes.push_str("  (served by Ruby workers too, which ignore pause and caps)");
        }
        println!("{:<40} {n}{notes}", safe(&q));
    }
    Ok(())
}
