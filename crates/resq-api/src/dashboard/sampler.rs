//! Takes a sample of the fleet every interval for the charts: the totals,
//! the jobs waiting and the deepest queues. One replica of `resq serve`
//! takes each interval's sample (a Redis turn). The newest 720 are kept,
//! and one every 2 minutes for a day (for the longer ranges).

use std::sync::Arc;
use std::time::Duration;

use resq_redis::web::Sample;

use super::Dashboard;

/// Queues a sample keeps, deepest first.
const QUEUES_KEPT: usize = 5;

pub async fn run(d: Arc<Dashboard>) {
    let interval = d.settings.sample_interval.max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sample(&d, interval).await {
            tracing::debug!(error = %e, "dashboard: no sample this interval");
        }
    }
}

async fn sample(d: &Dashboard, interval: Duration) -> Result<(), resq::StoreError> {
    let stats = d.admin.stats().await?;
    let mut queues = d.admin.queues().await?;
    let waiting = queues.iter().map(|(_, n)| n).sum();
    queues.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    queues.truncate(QUEUES_KEPT);
    let sample = Sample {
        at_ms: resq::UnixMs::now().0,
        processed: stats.processed,
        failed: stats.failed,
        waiting,
        queues,
    };
    d.web.record_sample(&sample, interval).await?;
    Ok(())
}
