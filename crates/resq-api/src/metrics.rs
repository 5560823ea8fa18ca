//! Prometheus metrics, in the text format (metrics-exporter-prometheus):
//!
//! - the fleet's gauges, read from Redis at each scrape of `resq serve`'s
//!   metrics address: jobs waiting and the age of the oldest per queue,
//!   workers (resq's and Ruby's), jobs in flight, scheduled, waiting to
//!   retry, failure records, Redis memory, and Resque's totals;
//! - a worker's own counters and histograms, served on `resq worker
//!   --metrics-bind`: jobs succeeded, failed and refused by class, queue
//!   and reason, retries, run time and wait from enqueue to start.
//!
//! Labels are class, queue and reason only (never a job id or argument),
//! and each is bounded: a class the registry does not know is
//! `unregistered`, and past [`MAX_QUEUES`] queue names the rest are
//! `other`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use metrics::{counter, gauge, histogram, Counter, Histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use resq::worker::JobOutcome;
use resq::{Registry, StoreError, UnixMs};

/// Distinct queue labels a process reports; more are `other`.
pub const MAX_QUEUES: usize = 200;

/// Run times and waits, seconds: 1 ms to 5 minutes.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

fn builder() -> PrometheusBuilder {
    // Buckets are valid (non-empty): building cannot fail.
    PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

/// Bounds a label's values: the first `max` seen are kept, the rest are
/// `other`.
#[derive(Default)]
struct Bounded {
    seen: Mutex<HashSet<String>>,
}

impl Bounded {
    fn label(&self, value: &str, max: usize) -> String {
        let Ok(mut seen) = self.seen.lock() else {
            return "other".into();
        };
        if seen.contains(value) {
            return value.to_string();
        }
        if seen.len() < max {
            seen.insert(value.to_string());
            return value.to_string();
        }
        "other".into()
    }
}

/// A worker's metrics: records each job's outcome, renders on request.
pub struct WorkerMetrics {
    handle: PrometheusHandle,
    registry: Registry,
    queues: Bounded,
    /// The handles of the common path (a job that ran and succeeded), by
    /// queue then class: one lock and two lookups by `&str` per job instead
    /// of building three labelled keys.
    hot: Mutex<HashMap<String, HashMap<String, Hot>>>,
}

/// What a successful run updates.
struct Hot {
    succeeded: Counter,
    run: Histogram,
    wait: Histogram,
}

impl WorkerMetrics {
    /// Installs the process's recorder (once per process).
    pub fn install(registry: Registry) -> Result<Arc<WorkerMetrics>, String> {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).map_err(|e| format!("a metrics recorder is already installed: {e}"))?;
        describe();
        Ok(Arc::new(WorkerMetrics {
            handle,
            registry,
            queues: Bounded::default(),
            hot: Mutex::new(HashMap::new()),
        }))
    }

    /// Records one job's outcome (the worker's observer calls it).
    pub fn record(&self, outcome: &JobOutcome) {
        let class = match outcome.class.as_deref() {
            Some(c) if self.registry.contains(c) => c,
            _ => "unregistered",
        };
        if outcome.result.is_ok() && self.record_hot(&outcome.queue, class, outcome) {
            return;
        }
        let queue = self.queues.label(&outcome.queue, MAX_QUEUES);
        let class = class.to_string();
        match &outcome.result {
            Ok(()) => {
                counter!("resq_jobs_succeeded_total", "queue" => queue.clone(), "class" => class.clone()).increment(1)
            }
            Err(failure) => {
                let reason = failure.reason.code();
                if outcome.retry_at.is_some() {
                    counter!("resq_jobs_retried_total", "queue" => queue.clone(), "class" => class.clone(), "reason" => reason)
                        .increment(1);
                } else if failure.reason.is_run_outcome() {
                    counter!("resq_jobs_failed_total", "queue" => queue.clone(), "class" => class.clone(), "reason" => reason)
                        .increment(1);
                } else {
                    counter!("resq_jobs_refused_total", "queue" => queue.clone(), "class" => class.clone(), "reason" => reason)
                        .increment(1);
                }
            }
        }
        if let Some(ran) = outcome.ran_for {
            histogram!("resq_job_run_seconds", "queue" => queue.clone(), "class" => class).record(ran.as_secs_f64());
        }
        if let Some(waited) = outcome.waited {
            histogram!("resq_job_wait_seconds", "queue" => queue).record(waited.as_secs_f64());
        }
    }

    /// The common path through cached handles; false when the pair is not
    /// cached yet (the caller records it the long way, and caches it).
    fn record_hot(&self, queue: &str, class: &str, outcome: &JobOutcome) -> bool {
        let Ok(mut hot) = self.hot.lock() else {
            return false;
        };
        if let Some(h) = hot.get(queue).and_then(|classes| classes.get(class)) {
            h.succeeded.increment(1);
            if let Some(ran) = outcome.ran_for {
                h.run.record(ran.as_secs_f64());
            }
            if let Some(waited) = outcome.waited {
                h.wait.record(waited.as_secs_f64());
            }
            return true;
        }
        // Cache it for next time, unless the queue's label is `other`.
        let label = self.queues.label(queue, MAX_QUEUES);
        if label == queue {
            let handles = Hot {
                succeeded: counter!("resq_jobs_succeeded_total", "queue" => label.clone(), "class" => class.to_string()),
                run: histogram!("resq_job_run_seconds", "queue" => label.clone(), "class" => class.to_string()),
                wait: histogram!("resq_job_wait_seconds", "queue" => label.clone()),
            };
            hot.entry(label).or_default().insert(class.to_string(), handles);
        }
        false
    }

    pub fn render(&self) -> String {
        self.handle.render()
    }
}

fn describe() {
    metrics::describe_counter!("resq_jobs_succeeded_total", "Jobs this worker ran to success.");
    metrics::describe_counter!(
        "resq_jobs_failed_total",
        "Jobs that ran and failed for good (in the failed list)."
    );
    metrics::describe_counter!(
        "resq_jobs_refused_total",
        "Jobs refused before running (unsigned, tampered, replayed, expired, invalid...), by reason."
    );
    metrics::describe_counter!(
        "resq_jobs_retried_total",
        "Failed attempts with attempts left (scheduled again)."
    );
    metrics::describe_histogram!("resq_job_run_seconds", Unit::Seconds, "How long jobs ran.");
    metrics::describe_histogram!(
        "resq_job_wait_seconds",
        Unit::Seconds,
        "From enqueue to start: how long jobs waited."
    );
}

/// The fleet as one scrape sees it.
#[derive(Debug, Default, Clone)]
pub struct Fleet {
    /// (queue, jobs waiting, age of the oldest in seconds when known)
    pub queues: Vec<(String, u64, Option<f64>)>,
    pub resq_workers: u64,
    pub ruby_workers: u64,
    /// Registered workers whose heartbeat is older than 5 minutes (the
    /// age at which Resque prunes a worker): dead, most likely.
    pub stale_workers: u64,
    pub in_flight: u64,
    pub scheduled: u64,
    pub retrying: u64,
    pub failed_records: u64,
    pub processed_total: u64,
    pub failed_total: u64,
    pub redis_used: u64,
    pub redis_max: u64,
}

impl Fleet {
    /// Reads it: one command per queue (its length and its head), one per
    /// resq worker's in-flight queue, and a handful more.
    pub async fn read(admin: &resq::Admin, api: &resq_redis::api::ApiStore) -> Result<Fleet, StoreError> {
        let mut fleet = Fleet::default();
        let now = UnixMs::now();
        let mut queues = admin.queues().await?;
        // The deepest first, when there are more than a scrape reports.
        queues.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        queues.truncate(MAX_QUEUES);
        for (name, size) in queues {
            let age = match admin.queue_jobs(&name, 0, 1).await?.first() {
                Some(head) => head_age(&head.raw, now),
                None => None,
            };
            fleet.queues.push((name, size, age));
        }
        let (workers, _) = admin.workers_page(0, u64::MAX).await?;
        let stale_before = now.minus(std::time::Duration::from_secs(300));
        for w in &workers {
            if w.heartbeat.is_some_and(|h| h < stale_before) {
                fleet.stale_workers += 1;
            }
            if w.resq {
                fleet.resq_workers += 1;
                fleet.in_flight += admin.in_flight_count(&w.id).await?;
            } else {
                fleet.ruby_workers += 1;
                fleet.in_flight += u64::from(w.busy);
            }
        }
        fleet.scheduled = admin.schedule_len(resq::store::Schedule::Scheduled).await?;
        fleet.retrying = admin.schedule_len(resq::store::Schedule::Retry).await?;
        fleet.failed_records = admin.failed_count().await?;
        let stats = admin.stats().await?;
        fleet.processed_total = stats.processed;
        fleet.failed_total = stats.failed;
        (fleet.redis_used, fleet.redis_max) = api.memory().await?;
        Ok(fleet)
    }

    /// The Prometheus text for it.
    pub fn render(&self) -> String {
        let recorder: PrometheusRecorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_gauge!("resq_queue_jobs", "Jobs waiting in a queue.");
            metrics::describe_gauge!(
                "resq_queue_oldest_job_age_seconds",
                Unit::Seconds,
                "How long the job at the head of a queue has waited."
            );
            for (queue, size, age) in &self.queues {
                gauge!("resq_queue_jobs", "queue" => queue.clone()).set(*size as f64);
                if let Some(age) = age {
                    gauge!("resq_queue_oldest_job_age_seconds", "queue" => queue.clone()).set(*age);
                }
            }
            metrics::describe_gauge!("resq_workers", "Registered workers, resq's and Ruby's.");
            gauge!("resq_workers", "kind" => "resq").set(self.resq_workers as f64);
            gauge!("resq_workers", "kind" => "ruby").set(self.ruby_workers as f64);
            metrics::describe_gauge!(
                "resq_workers_stale",
                "Registered workers with no heartbeat for 5 minutes (dead, most likely)."
            );
            gauge!("resq_workers_stale").set(self.stale_workers as f64);
            metrics::describe_gauge!("resq_in_flight_jobs", "Jobs fetched by workers and not yet acked.");
            gauge!("resq_in_flight_jobs").set(self.in_flight as f64);
            metrics::describe_gauge!("resq_scheduled_jobs", "Jobs held for later.");
            gauge!("resq_scheduled_jobs").set(self.scheduled as f64);
            metrics::describe_gauge!("resq_retrying_jobs", "Failed attempts waiting for their next try.");
            gauge!("resq_retrying_jobs").set(self.retrying as f64);
            metrics::describe_gauge!("resq_failed_records", "Records in the failed list.");
            gauge!("resq_failed_records").set(self.failed_records as f64);
            metrics::describe_counter!(
                "resq_processed_total",
                "Resque's count of processed jobs (every worker)."
            );
            counter!("resq_processed_total").absolute(self.processed_total);
            metrics::describe_counter!("resq_failed_total", "Resque's count of failed jobs (every worker).");
            counter!("resq_failed_total").absolute(self.failed_total);
            metrics::describe_gauge!("resq_redis_memory_used_bytes", Unit::Bytes, "Redis's used_memory.");
            gauge!("resq_redis_memory_used_bytes").set(self.redis_used as f64);
            metrics::describe_gauge!(
                "resq_redis_memory_max_bytes",
                Unit::Bytes,
                "Redis's maxmemory (0: none)."
            );
            gauge!("resq_redis_memory_max_bytes").set(self.redis_max as f64);
        });
        handle.render()
    }
}

/// How long the job at a queue's head has waited, from its `enqueued_at`.
fn head_age(raw: &[u8], now: UnixMs) -> Option<f64> {
    #[derive(serde::Deserialize)]
    struct Head {
        enqueued_at: Option<f64>,
    }
    let head: Head = serde_json::from_slice(raw).ok()?;
    let at = UnixMs::from_secs_f64(head.enqueued_at?);
    Some(now.since(at).as_secs_f64())
}

/// Serves `/metrics` on `listener` with `render` until the task is dropped.
pub async fn serve<F, Fut>(listener: tokio::net::TcpListener, render: F) -> std::io::Result<()>
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<String, String>> + Send + 'static,
{
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move {
                match render().await {
                    Ok(text) => (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                        text,
                    )
                        .into_response(),
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics: could not read the fleet");
                        (StatusCode::SERVICE_UNAVAILABLE, "could not read Redis").into_response()
                    }
                }
            }
        }),
    );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric resq emits, by the name a rule or a panel uses.
    const EMITTED: &[&str] = &[
        "resq_jobs_succeeded_total",
        "resq_jobs_failed_total",
        "resq_jobs_refused_total",
        "resq_jobs_retried_total",
        "resq_job_run_seconds",
        "resq_job_wait_seconds",
        "resq_queue_jobs",
        "resq_queue_oldest_job_age_seconds",
        "resq_workers",
        "resq_workers_stale",
        "resq_in_flight_jobs",
        "resq_scheduled_jobs",
        "resq_retrying_jobs",
        "resq_failed_records",
        "resq_processed_total",
        "resq_failed_total",
        "resq_redis_memory_used_bytes",
        "resq_redis_memory_max_bytes",
    ];

    #[test]
    fn the_alert_rules_and_the_dashboard_name_only_metrics_resq_emits() {
        for doc in [
            include_str!("../../../docs/prometheus-alerts.yml"),
            include_str!("../../../docs/grafana-dashboard.json"),
        ] {
            let mut rest = doc;
            while let Some(at) = rest.find("resq_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let base = name
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_count")
                    .trim_end_matches("_sum");
                assert!(EMITTED.contains(&base), "{name} is not a metric resq emits");
                rest = &rest[at + name.len()..];
            }
        }
    }

    #[test]
    fn the_fleet_renders_every_gauge_with_bounded_labels() {
        let fleet = Fleet {
            queues: vec![("mail".into(), 4, Some(2.5)), ("<b>".into(), 1, None)],
            resq_workers: 2,
            ruby_workers: 1,
            in_flight: 3,
            redis_used: 1024,
            ..Fleet::default()
        };
        let text = fleet.render();
        for line in [
            "resq_queue_jobs{queue=\"mail\"} 4",
            "resq_queue_oldest_job_age_seconds{queue=\"mail\"} 2.5",
            "resq_workers{kind=\"ruby\"} 1",
            "resq_in_flight_jobs 3",
            "resq_redis_memory_used_bytes 1024",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        for name in EMITTED.iter().filter(|n| !n.starts_with("resq_job")) {
            assert!(text.contains(name), "{name}");
        }
    }
}
