//! Launch: register the worker, start its liveness and reaper loops, run the
//! manager, and unregister on the way out (which also returns any job still in
//! flight to its queue).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::backoff::Backoff;
use super::control::{ControlReceiver, Mode};
use super::fetch::Fetcher;
use super::manage::Manager;
use super::process::ProcessContext;
use super::{liveness, reaper, Worker, WorkerReport};
use crate::clock::UnixMs;
use crate::store::Registration;

pub(crate) async fn launch(
    worker: Worker,
    mut control: ControlReceiver,
    children: Option<Arc<super::isolation::Children>>,
    cron: Option<crate::cron::CronScheduler>,
) -> WorkerReport {
    let Worker {
        store,
        registry,
        config,
        observer,
        cron: _,
    } = worker;
    let id = config.worker_id();

    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let started = UnixMs::now();
    loop {
        let registration = Registration {
            worker: &id,
            started,
            liveness_ttl: config.liveness_ttl,
        };
        match store.register_worker(&registration).await {
            Ok(()) => break,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot register the worker");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = control.changed() => {}
                }
                if matches!(*control.borrow(), Mode::Stop | Mode::Quit) {
                    return WorkerReport::default();
                }
            }
        }
    }
    if !config.allow_unsigned.is_empty() {
        let queues: Vec<&str> = config.allow_unsigned.iter().map(|p| p.as_str()).collect();
        tracing::warn!(
            queues = ?queues,
            "these queues accept UNSIGNED jobs: anyone who can write to Redis can run their classes there; \
             sign every producer and remove allow_unsigned when the migration is done"
        );
    }
    tracing::info!(
        worker = %id, queues = config.queues.as_str(), concurrency = config.concurrency,
        classes = ?registry.classes(), "worker started"
    );

    let reaping = Arc::new(reaper::Reaping::new(config.liveness_ttl, config.max_recoveries));
    reaping.reap_once(store.as_ref()).await;
    let liveness = tokio::spawn(liveness::run(
        Arc::clone(&store),
        id.clone(),
        started,
        config.heartbeat_interval,
        config.liveness_ttl,
    ));
    let promoter = tokio::spawn(super::promoter::run(
        Arc::clone(&store),
        config.schedule_interval,
        config.clock,
    ));
    let sweeper = tokio::spawn(super::sweeper::run(
        Arc::clone(&store),
        id.clone(),
        config.sweep_interval,
        config.clock,
    ));
    let cron = cron.map(|scheduler| {
        let names: Vec<&str> = scheduler.entries().map(|(e, _)| e.name.as_str()).collect();
        tracing::info!(entries = ?names, "firing recurring jobs (each tick once across all workers)");
        tokio::spawn(scheduler.run())
    });
    let reaper = tokio::spawn(reaper::run(
        Arc::clone(&store),
        config.reap_interval,
        Arc::clone(&reaping),
    ));

    let (started, started_rx) = tokio::sync::mpsc::unbounded_channel();
    let manager = Manager {
        store: Arc::clone(&store),
        worker: id.clone(),
        fetcher: Fetcher::new(
            Arc::clone(&store),
            id.clone(),
            config.queues.clone(),
            config.queue_refresh,
        ),
        ctx: Arc::new(ProcessContext {
            claims: super::claim::ClaimGate::start(Arc::clone(&store), id.clone()),
            marks: crate::mark::MarkSource::new(),
            registry,
            limits: config.limits,
            keyring: Arc::clone(&config.keyring),
            allow_unsigned: config.allow_unsigned.clone(),
            default_timeout: config.default_timeout,
            observer,
            children,
            started,
            store: Arc::clone(&store),
            clock: config.clock,
            mark_margin: config.mark_margin,
        }),
        concurrency: config.concurrency,
        burst: config.burst,
        poll: Backoff::new(config.poll_min, config.poll_max),
        poll_max: config.poll_max,
        errors: Backoff::new(Duration::from_millis(50), Duration::from_secs(5)),
        running: JoinSet::new(),
        in_flight: HashMap::new(),
        tasks_by_token: HashMap::new(),
        fetched_seq: 0,
        done: Vec::new(),
        to_requeue: Vec::new(),
        report: WorkerReport::default(),
        wake: store.wakeups(),
        reaping: Arc::clone(&reaping),
        started_rx,
        running_since: HashMap::new(),
        shown: None,
        paused_listed: false,
        paused_by_store: false,
        unsure_of_fetch: false,
    };
    let mut report = manager.run(control).await;

    liveness.abort();
    reaper.abort();
    promoter.abort();
    sweeper.abort();
    if let Some(cron) = cron {
        cron.abort();
    }
    for attempt in 1..=5u32 {
        match store.unregister_worker(&id).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, attempt, "could not unregister; the reaper will clean up");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
    report.recovered = reaping.recovered();
    report.poisoned = reaping.poisoned();
    tracing::info!(worker = %id, processed = report.processed, failed = report.failed, "worker stopped");
    report
}
