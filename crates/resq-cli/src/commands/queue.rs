//! `resq queue pause|resume|cap`.

use clap::Subcommand;

use super::{admin, admin_failure};
use crate::config::Settings;
use crate::output::safe;
use crate::Failure;

#[derive(Subcommand)]
pub enum QueueAction {
    /// Stop every worker from fetching from QUEUE (jobs stay queued).
    Pause { queue: String },
    /// Let workers fetch from QUEUE again.
    Resume { queue: String },
    /// Refuse enqueues that would leave more than MAX jobs waiting in QUEUE;
    /// without MAX, show QUEUE's cap.
    Cap {
        queue: String,
        /// The most jobs that may wait.
        max: Option<u64>,
        /// Remove the cap instead.
        #[arg(long, conflicts_with = "max")]
        remove: bool,
    },
}

/// `resq queue pause|resume|cap`.
pub async fn queue(settings: &Settings, action: QueueAction) -> Result<(), Failure> {
    let admin = admin(settings).await?;
    match action {
        QueueAction::Pause { queue } => {
            admin.set_queue_paused(&queue, true).await.map_err(admin_failure)?;
            println!(
                "paused {}: workers fetch nothing from it until `resq queue resume {}`",
                safe(&queue),
                safe(&queue)
            );
        }
        QueueAction::Resume { queue } => {
            admin.set_queue_paused(&queue, false).await.map_err(admin_failure)?;
            println!("resumed {}", safe(&queue));
        }
        QueueAction::Cap {
            queue,
            max: None,
            remove: false,
        } => {
            let (_, caps) = admin.queue_controls().await.map_err(Failure::runtime)?;
            let length = admin
                .queues()
                .await
                .map_err(Failure::runtime)?
                .into_iter()
                .find(|(q, _)| *q == queue)
                .map_or(0, |(_, n)| n);
            match caps.iter().find(|(q, _)| *q == queue) {
                Some((_, cap)) => println!("{} is capped at {cap} waiting jobs ({length} waiting)", safe(&queue)),
                None => println!("{} has no cap ({length} waiting)", safe(&queue)),
            }
        }
        QueueAction::Cap { queue, max, remove } => {
            let cap = if remove { None } else { max };
            admin.set_queue_cap(&queue, cap).await.map_err(admin_failure)?;
            match cap {
                Some(n) => println!("capped {} at {n} waiting jobs", safe(&queue)),
                None => println!("removed the cap of {}", safe(&queue)),
            }
        }
    }
    Ok(())
}
