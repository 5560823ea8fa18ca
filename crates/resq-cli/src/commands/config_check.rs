//! `resq config check`: everything `resq worker` checks before it starts,
//! without starting: the file and the environment, the ranges, the keys,
//! the recurring entries against the job types, process isolation's
//! settings, and the connection to Redis.

use std::sync::Arc;

use clap::Subcommand;
use resq::AdminStore;

use super::worker as worker_cmd;
use crate::config::Settings;
use crate::{connect, Failure};

#[derive(Subcommand)]
pub enum ConfigAction {
    /// Check the configuration as `resq worker` would at start, and connect
    /// to Redis; exit 2 on the first problem.
    Check {
        /// Also check process isolation's settings as `--isolation process` would.
        #[arg(long)]
        isolation: bool,
    },
}

pub async fn run(settings: &Settings, registry: &resq::Registry, action: ConfigAction) -> Result<(), Failure> {
    let ConfigAction::Check { isolation } = action;
    let mut ok = Vec::new();
    ok.push(match &settings.source {
        Some(path) => format!("config file {} read", path.display()),
        None => "no config file: defaults and RESQ_* variables".to_string(),
    });
    let keyring = settings.keyring().map_err(Failure::usage)?;
    if !keyring.has_verification_keys() && settings.allow_unsigned.is_empty() {
        return Err(Failure::usage(resq::WorkerError::NoKeys));
    }
    ok.push(format!(
        "keys file read ({} signing key)",
        if keyring.signer().is_some() {
            "with a"
        } else {
            "without a"
        }
    ));
    let mode = isolation.then_some(crate::config::IsolationMode::Process);
    let isolated = worker_cmd::isolation(settings, mode, None)?;
    let child_a_slot = isolated.as_ref().is_some_and(|i| i.children.is_none());
    let mut config = worker_cmd::worker_config(settings, Arc::clone(&keyring), None, None, child_a_slot)?;
    config.isolation = isolated;
    config.check().map_err(Failure::usage)?;
    ok.push(format!(
        "worker settings in range (queues {}, concurrency {}, isolation {})",
        config.queues.as_str(),
        config.concurrency,
        match &config.isolation {
            None => "none".to_string(),
            Some(i) => format!("process, {} children", i.children.unwrap_or(config.concurrency)),
        }
    ));
    resq::cron::check_entries(&settings.cron, registry).map_err(Failure::usage)?;
    if !settings.cron.is_empty() && keyring.signer().is_none() {
        return Err(Failure::usage(
            "[[cron]] entries are set but the keys file holds no signing key: workers sign the jobs they fire",
        ));
    }
    ok.push(format!("recurring entries valid: {}", settings.cron.len()));
    if !settings.allow_unsigned.is_empty() {
        let open: Vec<&str> = settings.allow_unsigned.iter().map(|p| p.as_str()).collect();
        ok.push(format!("WARNING: queues open to unsigned jobs: {open:?}"));
    }
    let store = connect(settings).await?;
    store.stats().await.map_err(Failure::runtime)?;
    if let (Some(master), Some(sentinel)) = (
        store.sentinel_master(),
        settings.redis.as_ref().and_then(|r| r.sentinel.as_ref()),
    ) {
        ok.push(format!(
            "sentinel mode: the sentinels name {master} as the master of {} (it says it is one)",
            sentinel.master_name
        ));
    }
    ok.push("Redis reachable, and this user can read resq's keys".to_string());
    if let Some(wait) = store.wait_replicas() {
        // Whether there are enough replicas is the doctor's to judge.
        ok.push(format!(
            "enqueues, acks and requeues wait for {} replica(s), up to {} ms each (resq doctor counts them)",
            wait.replicas,
            wait.timeout.as_millis()
        ));
    }
    for line in ok {
        println!("{line}");
    }
    println!("config ok");
    Ok(())
}
