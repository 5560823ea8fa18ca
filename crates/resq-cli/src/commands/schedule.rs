//! `resq scheduled|retry-set list|remove|run`.

use clap::Subcommand;
use resq::Schedule;
use serde_json::{json, Value};

use super::{admin, admin_failure, payload_object, Page};
use crate::config::Settings;
use crate::output::{clip, safe};
use crate::Failure;

#[derive(Subcommand)]
pub enum ScheduleAction {
    /// List the jobs waiting, soonest first.
    List(Page),
    /// Remove one waiting job (by its id).
    Remove { id: String },
    /// Push one waiting job to its queue now, instead of when it is due.
    Run { id: String },
}

/// `resq scheduled list` and `resq retry-set list`.
pub async fn schedule(settings: &Settings, which: Schedule, action: ScheduleAction) -> Result<(), Failure> {
    let admin = admin(settings).await?;
    let (offset, limit, json) = match action {
        ScheduleAction::List(Page { offset, limit, json }) => (offset, limit, json),
        ScheduleAction::Remove { id } => {
            admin.remove_scheduled(which, &id).await.map_err(admin_failure)?;
            println!("removed {}", safe(&id));
            return Ok(());
        }
        ScheduleAction::Run { id } => {
            let queue = admin.run_scheduled_now(which, &id).await.map_err(admin_failure)?;
            println!("pushed {} to {} now", safe(&id), safe(&queue));
            return Ok(());
        }
    };
    let total = admin.schedule_len(which).await.map_err(Failure::runtime)?;
    let entries = admin
        .schedule(which, offset, limit.min(1000))
        .await
        .map_err(Failure::runtime)?;
    if json {
        let v: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({"due": e.due.to_string(), "due_ms": e.due.0, "class": e.class, "queue": e.queue,
                       "id": e.handle(), "attempt": e.attempt, "payload": payload_object(&e.job.payload)})
            })
            .collect();
        println!("{}", Value::Array(v));
        return Ok(());
    }
    let what = if which == Schedule::Retry {
        "retries"
    } else {
        "scheduled jobs"
    };
    println!("{total} {what}; showing {} from {offset}", entries.len());
    for e in entries {
        println!(
            "due {}  {}  class={} queue={} attempt={}",
            e.due,
            safe(&e.handle()),
            safe(&clip(e.class.as_deref().unwrap_or("?"), 60)),
            safe(e.queue.as_deref().unwrap_or("?")),
            e.attempt
        );
    }
    Ok(())
}
