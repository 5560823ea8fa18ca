//! `resq worker`: runs the shipped job types with Resque's signals.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use resq::worker::isolation::Isolation;
use resq::{Control, QueueSpec, Worker, WorkerConfig};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{IsolationMode, Settings};
use crate::{connect, Failure};

#[derive(Args)]
pub struct WorkerArgs {
    /// Queues in strict priority order: names, globs (`mail*`), `*`,
    /// `!exclusions` (`critical,default,*,!bulk`); or weighted, each first in
    /// proportion to its weight (`critical:6,default:3,low:1`). Also
    /// RESQ_QUEUES or worker.queues; default `*`.
    #[arg(long, short)]
    queues: Option<String>,
    /// Jobs run at once in this process (1 to 1024; 256 with process
    /// isolation and no --children). Also RESQ_CONCURRENCY or
    /// worker.concurrency; default 8.
    #[arg(long, short)]
    concurrency: Option<usize>,
    /// With process isolation: how many child processes run jobs (1 to 256,
    /// at most the concurrency); the other slots hold jobs fetched and
    /// checked, ready for the next free child. Also RESQ_CHILDREN or
    /// isolation.children; default one per slot.
    #[arg(long)]
    children: Option<usize>,
    /// Exit once the queues are empty.
    #[arg(long)]
    burst: bool,
    /// Where jobs run: `none` (tasks in this process, cancelled at their
    /// timeout) or `process` (pre-started child processes, killed at their
    /// timeout, with [isolation] memory and CPU limits). Also RESQ_ISOLATION
    /// or isolation.mode.
    #[arg(long, value_enum)]
    isolation: Option<IsolationMode>,
    /// Serve this worker's Prometheus metrics (jobs by class, queue and
    /// reason; run and wait times) on ADDR at /metrics, e.g.
    /// 127.0.0.1:9101. Also RESQ_METRICS_BIND.
    #[arg(long, env = "RESQ_METRICS_BIND")]
    metrics_bind: Option<String>,
    /// A job whose worker dies while running it is put back at most this
    /// many times, running alone from the first on; one more death sends it
    /// to the failed list with reason `poison` (1 to 1000). Also
    /// RESQ_MAX_RECOVERIES or worker.max_recoveries; default 3.
    #[arg(long)]
    max_recoveries: Option<u32>,
}

/// The child processes' settings, when process isolation is on.
pub fn isolation(
    settings: &Settings,
    mode: Option<IsolationMode>,
    children: Option<usize>,
) -> Result<Option<Isolation>, Failure> {
    let section = &settings.isolation;
    if mode.unwrap_or(section.mode) == IsolationMode::None {
        return Ok(None);
    }
    // The config check put memory_limit_mb in range, so the product fits.
    let memory_mb = section.memory_limit_mb.unwrap_or(DEFAULT_CHILD_MEMORY_MB);
    let memory_limit = memory_mb
        .checked_mul(1024 * 1024)
        .ok_or_else(|| Failure::usage("isolation.memory_limit_mb is too large"))?;
    Ok(Some(Isolation {
        program: None,
        children: children.or(section.children),
        memory_limit: Some(memory_limit),
        cpu_limit: section.cpu_limit_ms.map(Duration::from_millis),
        jobs_per_child: section.jobs_per_child,
        // resq's own settings (RESQ_*: the Redis URL and password, the keys
        // file) and the password variable stay with the worker.
        remove_env: [String::from("RESQ_*")]
            .into_iter()
            .chain(settings.secret_env.clone())
            .collect(),
        pass_env: vec!["RESQ_LOG".into()],
    }))
}

/// `--concurrency` against its range (smaller with a child process a slot).
fn check_concurrency(n: usize, child_a_slot: bool) -> Result<(), Failure> {
    let slots = if child_a_slot {
        resq::worker::ranges::ISOLATED_CONCURRENCY
    } else {
        resq::worker::ranges::CONCURRENCY
    };
    resq::worker::ranges::check("--concurrency", n, &slots).map_err(Failure::usage)
}

/// Address space of each job child unless `isolation.memory_limit_mb` says.
const DEFAULT_CHILD_MEMORY_MB: u64 = 1024;

pub fn worker_config(
    settings: &Settings,
    keyring: std::sync::Arc<resq::Keyring>,
    queues: Option<String>,
    concurrency: Option<usize>,
    child_a_slot: bool,
) -> Result<WorkerConfig, Failure> {
    let spec_text = queues
        .or_else(|| settings.worker.queues.clone())
        .unwrap_or_else(|| "*".to_string());
    let spec: QueueSpec = spec_text
        .parse()
        .map_err(|e| Failure::usage(format!("--queues: {e}")))?;
    let mut config = WorkerConfig::new(spec, keyring);
    config.allow_unsigned = settings.allow_unsigned.clone();
    // Values from the file and the environment were checked when the config
    // was read; one given here on the command line is checked now.
    if let Some(n) = concurrency {
        check_concurrency(n, child_a_slot)?;
    }
    if let Some(n) = concurrency.or(settings.worker.concurrency) {
        config.concurrency = n;
    }
    let w = &settings.worker;
    if let Some(ms) = w.liveness_ttl_ms {
        config.liveness_ttl = Duration::from_millis(ms);
    }
    if let Some(ms) = w.reap_interval_ms {
        config.reap_interval = Duration::from_millis(ms);
    }
    if let Some(s) = w.heartbeat_interval_s {
        config.heartbeat_interval = Duration::from_secs(s);
    }
    if let Some(ms) = w.poll_max_ms {
        config.poll_max = Duration::from_millis(ms);
        config.poll_min = config.poll_min.min(config.poll_max);
    }
    config.limits = settings.limits;
    config.default_timeout = w.default_timeout_ms.map(Duration::from_millis);
    if let Some(ms) = w.sweep_interval_ms {
        config.sweep_interval = Duration::from_millis(ms);
    }
    if let Some(n) = w.max_recoveries {
        config.max_recoveries = n;
    }
    Ok(config)
}

pub async fn run(settings: &Settings, registry: &resq::Registry, args: WorkerArgs) -> Result<(), Failure> {
    // What the command line says is checked before anything is read.
    let isolation = isolation(settings, args.isolation, args.children)?;
    let child_a_slot = isolation.as_ref().is_some_and(|i| i.children.is_none());
    if let Some(n) = args.concurrency {
        check_concurrency(n, child_a_slot)?;
    }
    if args.children.is_some() && isolation.is_none() {
        return Err(Failure::usage(
            "--children needs process isolation (--isolation process)",
        ));
    }
    let keyring = settings.keyring().map_err(Failure::usage)?;
    let mut config = worker_config(settings, keyring, args.queues, args.concurrency, child_a_slot)?;
    config.check().map_err(Failure::usage)?;
    if let Some(n) = args.max_recoveries {
        config.max_recoveries = n;
    }
    config.check().map_err(Failure::usage)?;
    config.burst = args.burst;
    config.isolation = isolation;
    let store = connect(settings).await?;
    let (control, rx) = Control::new();
    spawn_signal_handlers(control).map_err(|e| Failure::runtime(format!("cannot install signal handlers: {e}")))?;
    let mut worker = Worker::new(store, registry.clone(), config).with_cron(settings.cron.clone());
    if let Some(bind) = &args.metrics_bind {
        let metrics = resq_api::metrics::WorkerMetrics::install(registry.clone()).map_err(Failure::runtime)?;
        let listener = metrics_listener(bind).await?;
        let served = Arc::clone(&metrics);
        tokio::spawn(async move {
            let render = move || {
                let served = Arc::clone(&served);
                async move { Ok::<_, String>(served.render()) }
            };
            if let Err(e) = resq_api::metrics::serve(listener, render).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
        worker = worker.with_observer(Arc::new(move |o: &resq::JobOutcome| metrics.record(o)));
    }
    let report = worker.run(rx).await.map_err(Failure::usage)?;
    let poisoned = match report.poisoned {
        0 => String::new(),
        n => format!(" poisoned {n}"),
    };
    println!(
        "processed {} failed {} requeued {} recovered {}{poisoned}",
        report.processed, report.failed, report.requeued, report.recovered
    );
    Ok(())
}

/// Binds a metrics address (`--metrics-bind`), saying what it bound.
pub async fn metrics_listener(bind: &str) -> Result<tokio::net::TcpListener, Failure> {
    let addr: std::net::SocketAddr = bind
        .parse()
        .map_err(|_| Failure::usage("--metrics-bind is an address and port, such as 127.0.0.1:9101"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::runtime(format!("cannot listen on {addr} for metrics: {e}")))?;
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(%bound, "metrics at http://{bound}/metrics");
        // Tests and scripts read the bound address (with port 0).
        eprintln!("metrics on http://{bound}/metrics");
    }
    Ok(listener)
}

/// TERM/INT stop now, QUIT finishes running jobs, USR2 pauses, CONT resumes.
fn spawn_signal_handlers(control: Control) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut cont = signal(SignalKind::from_raw(libc::SIGCONT))?;
    let control = Arc::new(control);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("TERM: stopping now, requeueing running jobs"); control.stop(); }
                _ = int.recv() => { tracing::info!("INT: stopping now, requeueing running jobs"); control.stop(); }
                _ = quit.recv() => { tracing::info!("QUIT: finishing running jobs, then exiting"); control.quit(); }
                _ = usr2.recv() => { tracing::info!("USR2: pausing (no new jobs)"); control.pause(); }
                _ = cont.recv() => { tracing::info!("CONT: resuming"); control.resume(); }
            }
        }
    });
    Ok(())
}
