//! `resq failed list|retry|remove|clear`.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{admin, admin_failure, failure_json, Page};
use crate::config::Settings;
use crate::output::{clip, safe};
use crate::Failure;

#[derive(Subcommand)]
pub enum FailedAction {
    /// List failures, oldest first.
    List {
        #[command(flatten)]
        page: Page,
        #[command(flatten)]
        filter: FailedFilterArgs,
    },
    /// Put a failed job back on its queue (byte for byte) and remove the
    /// record; with --all, every failure the filters take.
    Retry {
        /// The failure's id (see `resq failed list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        failure_id: Option<String>,
        /// Every failure (or every one the filters take).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: FailedFilterArgs,
    },
    /// Remove one failure record.
    Remove { failure_id: String },
    /// Remove every failure record.
    Clear,
}

/// Filters of `failed list` and `failed retry --all`.
#[derive(Args)]
pub struct FailedFilterArgs {
    /// Only failures from this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only failures of this job class.
    #[arg(long)]
    class: Option<String>,
    /// Only failures with this reason (e.g. job_failed, timeout, unsigned;
    /// Ruby's records: their exception).
    #[arg(long)]
    reason: Option<String>,
}

impl From<FailedFilterArgs> for resq::FailedFilter {
    fn from(a: FailedFilterArgs) -> Self {
        resq::FailedFilter {
            queue: a.queue,
            class: a.class,
            reason: a.reason,
        }
    }
}

pub async fn failed(settings: &Settings, action: FailedAction) -> Result<(), Failure> {
    let admin = admin(settings).await?;
    match action {
        FailedAction::List {
            page: Page { offset, limit, json },
            filter,
        } => {
            let filter = resq::FailedFilter::from(filter);
            let (entries, total) = admin
                .failed_matching(&filter, offset, limit.min(1000))
                .await
                .map_err(Failure::runtime)?;
            if json {
                let v: Vec<Value> = entries.iter().map(failure_json).collect();
                println!("{}", Value::Array(v));
                return Ok(());
            }
            println!("{total} failed job(s) match; showing {} from {offset}", entries.len());
            for e in entries {
                let r = &e.record;
                if r.readable {
                    println!(
                        "{}  {}  {}  class={} queue={}  {}",
                        safe(&e.handle),
                        r.failed_at.map_or_else(|| "-".to_string(), |t| t.to_string()),
                        safe(r.reason.as_deref().or(r.exception.as_deref()).unwrap_or("-")),
                        safe(&clip(r.class.as_deref().unwrap_or("?"), 60)),
                        safe(r.queue.as_deref().unwrap_or("-")),
                        safe(&clip(r.error.as_deref().unwrap_or(""), 120)),
                    );
                } else {
                    let raw = String::from_utf8_lossy(&r.stored.0);
                    println!("{}  (not a JSON record) {}", e.handle, safe(&clip(&raw, 80)));
                }
            }
        }
        FailedAction::Retry {
            failure_id: Some(failure_id),
            ..
        } => {
            admin.retry_failed(&failure_id).await.map_err(admin_failure)?;
            println!("retried {}", safe(&failure_id));
        }
        FailedAction::Retry { filter, .. } => {
            let report = admin
                .retry_failed_matching(&filter.into())
                .await
                .map_err(Failure::runtime)?;
            for (id, why) in &report.skipped {
                eprintln!("skipped {}: {}", safe(id), safe(why));
            }
            println!("retried {}, skipped {}", report.retried, report.skipped.len());
        }
        FailedAction::Remove { failure_id } => {
            admin.remove_failed(&failure_id).await.map_err(admin_failure)?;
            println!("removed {}", safe(&failure_id));
        }
        FailedAction::Clear => {
            let n = admin.clear_failed().await.map_err(Failure::runtime)?;
            println!("cleared {n} failed job(s)");
        }
    }
    Ok(())
}
