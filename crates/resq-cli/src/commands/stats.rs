//! `resq stats`: processed and failed totals.

use serde_json::json;

use super::{admin, JsonFlag};
use crate::config::Settings;
use crate::Failure;

pub async fn stats(settings: &Settings, f: JsonFlag) -> Result<(), Failure> {
    let admin = admin(settings).await?;
    let stats = admin.stats().await.map_err(Failure::runtime)?;
    let queues = admin.queues().await.map_err(Failure::runtime)?;
    let workers = admin.workers().await.map_err(Failure::runtime)?;
    let failed_now = admin.failed_count().await.map_err(Failure::runtime)?;
    let pending: u64 = queues.iter().map(|(_, n)| n).sum();
    let working = workers.iter().filter(|w| w.working.is_some()).count();
    if f.json {
        println!(
            "{}",
            json!({"processed": stats.processed, "failed": stats.failed, "pending": pending,
                   "queues": queues.len(), "workers": workers.len(), "working": working, "failed_list": failed_now})
        );
    } else {
        println!("processed    {}", stats.processed);
        println!("failed       {}", stats.failed);
        println!("pending      {pending}");
        println!("queues       {}", queues.len());
        println!("workers      {}", workers.len());
        println!("working      {working}");
        println!("failed list  {failed_now}");
    }
    Ok(())
}
