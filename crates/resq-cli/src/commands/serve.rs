//! `resq serve`: the HTTP enqueue API. Loopback by default; plain HTTP on
//! any other address only with an explicit opt-in, and a warning.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Args;
use resq::{Client, Policy, Registry};
use resq_api::{ApiSettings, Rate};
use resq_redis::api::ApiStore;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{ApiSection, Settings};
use crate::{connect, Failure};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (also [api] listen); default 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<String>,
    /// Serve plain HTTP on an address other than loopback (behind a proxy
    /// that terminates TLS). Also [api] allow_plain_http.
    #[arg(long)]
    allow_plain_http: bool,
    /// The dashboard shows and changes nothing: no forms, no action
    /// routes (also [dashboard] read_only).
    #[arg(long)]
    read_only: bool,
    /// Serve the fleet's Prometheus metrics (queues, oldest job ages,
    /// workers, in flight, schedules, failures, Redis memory: read from
    /// Redis at each scrape) on ADDR at /metrics, e.g. 127.0.0.1:9100; its
    /// own listener, without a login: keep it on a private address. Also
    /// RESQ_METRICS_BIND.
    #[arg(long, env = "RESQ_METRICS_BIND")]
    metrics_bind: Option<String>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub async fn serve(settings: &Settings, registry: &Registry, args: ServeArgs) -> Result<(), Failure> {
    let section = &settings.api;
    let listen_text = args
        .listen
        .or_else(|| section.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen: SocketAddr = listen_text
        .parse()
        .map_err(|_| Failure::usage("--listen (api.listen) must be an address and port, such as 127.0.0.1:8080"))?;
    let tls = match (&section.tls_cert_file, &section.tls_key_file) {
        (Some(cert), Some(key)) => Some(resq_api::tls::server_config(cert, key).map_err(Failure::usage)?),
        (None, None) => None,
        _ => {
            return Err(Failure::usage(
                "api.tls_cert_file and api.tls_key_file go together: set both for HTTPS, or neither",
            ))
        }
    };
    let plain_ok = args.allow_plain_http || section.allow_plain_http;
    if tls.is_none() && !listen.ip().is_loopback() {
        if !plain_ok {
            return Err(Failure::usage(
                "resq serve listens on loopback unless told otherwise: plain HTTP on another address \
                 sends bearer tokens in the clear; put a TLS proxy in front and pass --allow-plain-http \
                 (api.allow_plain_http)",
            ));
        }
        tracing::warn!(%listen, "serving plain HTTP on an address other than loopback: bearer tokens cross the network in the clear unless a TLS proxy is in front");
    }
    let api_settings = api_settings(section)?;
    let keyring = settings.keyring().map_err(Failure::usage)?;
    let mut policy = Policy::new(keyring)
        .map_err(Failure::usage)?
        .with_registry(registry.clone());
    policy.limits = settings.limits;
    let store = connect(settings).await?;
    let api_store = ApiStore::new(&store, api_settings.audit_max);
    let connections = api_settings.connections;
    let web_store = resq_redis::web::WebStore::new(&store);
    let admin = resq::Admin::new(store.clone());
    let client = Client::with_policy(store, policy);
    let secure_default = tls.is_some() || plain_ok;
    let mut dashboard_settings = dashboard_settings(&settings.dashboard, args.read_only, secure_default)?;
    dashboard_settings.trusted_proxies = api_settings.trusted_proxies.clone();
    let cron = settings
        .cron
        .iter()
        .map(|entry| resq_api::dashboard::CronRow {
            queue: entry
                .queue
                .clone()
                .or_else(|| registry.info(&entry.class).map(|i| i.queue.to_string()))
                .unwrap_or_else(|| "default".into()),
            entry: entry.clone(),
        })
        .collect();
    if let Some(bind) = &args.metrics_bind {
        let listener = super::worker::metrics_listener(bind).await?;
        let (admin, api) = (admin.clone(), api_store.clone());
        tokio::spawn(async move {
            let render = move || {
                let (admin, api) = (admin.clone(), api.clone());
                async move {
                    resq_api::metrics::Fleet::read(&admin, &api)
                        .await
                        .map(|fleet| fleet.render())
                        .map_err(|e| e.to_string())
                }
            };
            if let Err(e) = resq_api::metrics::serve(listener, render).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    let alerts = alert_settings(&settings.alerts)?;
    let state = resq_api::state(client.clone(), api_store.clone(), api_settings, settings.limits);
    let dashboard = std::sync::Arc::new(resq_api::dashboard::Dashboard {
        admin,
        client,
        web: web_store,
        api: api_store,
        audit: state.audit.clone(),
        settings: dashboard_settings,
        limits: settings.limits,
        cron,
        csp_violations: Default::default(),
    });
    tokio::spawn(resq_api::alerts::run(std::sync::Arc::clone(&dashboard), alerts));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::runtime(format!("cannot listen on {listen}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| Failure::runtime(e.to_string()))?;
    tracing::info!(listen = %bound, classes = ?registry.classes(), "resq serve: the enqueue API is up");
    // Tests and scripts read the bound address (with --listen 127.0.0.1:0).
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{bound}");
    let shutdown = shutdown_signal().map_err(|e| Failure::runtime(format!("cannot install signal handlers: {e}")))?;
    resq_api::serve(listener, tls, state, Some(dashboard), connections, shutdown)
        .await
        .map_err(|e| Failure::runtime(format!("the server stopped: {e}")))?;
    tracing::info!("resq serve: stopped; requests in flight were answered");
    Ok(())
}

/// TERM or INT: stop accepting, finish the requests in flight.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("TERM: finishing requests in flight, then exiting"),
            _ = int.recv() => tracing::info!("INT: finishing requests in flight, then exiting"),
        }
    })
}

/// `[alerts]` checked and turned into the evaluator's settings.
pub fn alert_settings(section: &crate::config::AlertsSection) -> Result<resq_api::alerts::AlertSettings, Failure> {
    let mut s = resq_api::alerts::AlertSettings::default();
    let bad = |key: &str, what: &str| Failure::usage(format!("alerts.{key} {what}"));
    for (i, url) in section.webhooks.iter().enumerate() {
        if !resq_api::alerts::valid_webhook(url) {
            return Err(bad("webhooks", &format!("entry #{} must be an http(s) URL", i + 1)));
        }
    }
    s.webhooks = section.webhooks.clone();
    if let Some(path) = &section.webhook_secret_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("alerts.webhook_secret_file cannot be read: {}", e.kind())))?;
        let secret = text.trim().to_string();
        if secret.len() < 16 {
            return Err(bad("webhook_secret_file", "must hold at least 16 characters"));
        }
        s.secret = Some(secret);
    }
    let range = |key: &str, v: Option<u64>, r: std::ops::RangeInclusive<u64>| match v {
        Some(n) if !r.contains(&n) => Err(bad(key, &format!("must be between {} and {}", r.start(), r.end()))),
        v => Ok(v),
    };
    let ratio = |key: &str, v: Option<f64>| match v {
        Some(x) if !(x > 0.0 && x <= 1.0) => Err(bad(key, "must be above 0 and at most 1")),
        v => Ok(v),
    };
    if let Some(n) = range("interval_s", section.interval_s, 1..=3600)? {
        s.interval = Duration::from_secs(n);
    }
    if let Some(n) = range("repeat_s", section.repeat_s, 60..=7 * 86_400)? {
        s.repeat = Duration::from_secs(n);
    }
    s.queue_depth = range("queue_depth", section.queue_depth, 1..=u64::MAX)?;
    s.oldest_job = range("oldest_job_s", section.oldest_job_s, 1..=30 * 86_400)?.map(Duration::from_secs);
    if let Some(x) = ratio("failure_ratio", section.failure_ratio)? {
        s.failure_ratio = x;
    }
    if let Some(x) = ratio("memory_ratio", section.memory_ratio)? {
        s.memory_ratio = x;
    }
    if let Some(x) = section.flood_multiple {
        if !(2.0..=1000.0).contains(&x) {
            return Err(bad("flood_multiple", "must be between 2 and 1000"));
        }
        s.flood_multiple = x;
    }
    if let Some(n) = range("flood_min", section.flood_min, 1..=100_000_000)? {
        s.flood_min = n;
    }
    s.pause_on_flood = section.pause_on_flood;
    Ok(s)
}

/// `[dashboard]` checked and turned into the dashboard's settings.
pub fn dashboard_settings(
    section: &crate::config::DashboardSection,
    read_only_flag: bool,
    secure_default: bool,
) -> Result<resq_api::dashboard::DashboardSettings, Failure> {
    let mut s = resq_api::dashboard::DashboardSettings {
        read_only: read_only_flag || section.read_only,
        secure_cookies: section.secure_cookies.unwrap_or(secure_default),
        ..Default::default()
    };
    let range = |key: &str, value: Option<u64>, r: std::ops::RangeInclusive<u64>| match value {
        Some(v) if !r.contains(&v) => Err(Failure::usage(format!(
            "dashboard.{key} must be between {} and {}",
            r.start(),
            r.end()
        ))),
        v => Ok(v),
    };
    if let Some(m) = range("idle_timeout_min", section.idle_timeout_min, 1..=24 * 60)? {
        s.idle_timeout = Duration::from_secs(m * 60);
    }
    if let Some(h) = range("absolute_timeout_h", section.absolute_timeout_h, 1..=24 * 30)? {
        s.absolute_timeout = Duration::from_secs(h * 3600);
    }
    if let Some(i) = range("sample_interval_s", section.sample_interval_s, 1..=3600)? {
        s.sample_interval = Duration::from_secs(i);
    }
    if let Some(fields) = &section.masked_fields {
        if fields.iter().any(|f| f.trim().is_empty() || f.len() > 64) {
            return Err(Failure::usage(
                "dashboard.masked_fields entries are 1 to 64 characters (parts of field names)",
            ));
        }
        s.masked_fields = fields.iter().map(|f| f.trim().to_ascii_lowercase()).collect();
    }
    Ok(s)
}

/// `[api]` checked and turned into the server's settings; each error
/// names its key.
pub fn api_settings(section: &ApiSection) -> Result<ApiSettings, Failure> {
    let mut s = ApiSettings::default();
    let bad = |key: &str, what: &str| Failure::usage(format!("api.{key} {what}"));
    if let Some(n) = within("max_bulk_bytes", section.max_bulk_bytes, 1024..=256 * 1024 * 1024)? {
        s.max_bulk_bytes = n;
    }
    if let Some(n) = within("max_bulk_jobs", section.max_bulk_jobs, 1..=100_000)? {
        s.max_bulk_jobs = n;
    }
    s.trusted_proxies = section
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.parse::<IpAddr>()
                .map_err(|_| bad("trusted_proxies", &format!("entry #{} is not an IP address", i + 1)))
        })
        .collect::<Result<_, _>>()?;
    for (i, origin) in section.cors_origins.iter().enumerate() {
        let ok = (origin.starts_with("https://") || origin.starts_with("http://"))
            && !origin.ends_with('/')
            && !origin.contains('*')
            && visible_ascii(origin);
        if !ok {
            return Err(bad(
                "cors_origins",
                &format!(
                    "entry #{} must be an origin such as https://app.example.com (no path, no wildcard)",
                    i + 1
                ),
            ));
        }
    }
    s.cors_origins = section.cors_origins.clone();
    if let Some(n) = within("auth_failures_per_minute", section.auth_failures_per_minute, 1..=10_000)? {
        s.auth_failures = Rate {
            per_s: f64::from(n) / 60.0,
            burst: n,
        };
    }
    let rates = |key: &str, map: &std::collections::BTreeMap<String, String>| {
        map.iter()
            .enumerate()
            .map(|(i, (name, text))| {
                let rate = resq_api::parse_limit(text).map_err(|e| bad(key, &format!("entry #{}: {e}", i + 1)))?;
                Ok((name.clone(), rate))
            })
            .collect::<Result<std::collections::BTreeMap<_, _>, Failure>>()
    };
    s.class_rates = rates("class_rates", &section.class_rates)?;
    s.queue_rates = rates("queue_rates", &section.queue_rates)?;
    if let Some(m) = within("surge_multiple", section.surge_multiple, 1.5..=1000.0)? {
        s.surge.multiple = m;
    }
    if let Some(w) = within("surge_window_s", section.surge_window_s, 1..=86_400)? {
        s.surge.window = Duration::from_secs(w);
    }
    if let Some(n) = within("surge_min_windows", section.surge_min_windows, 1..=1000)? {
        s.surge.min_windows = n;
    }
    // At least one job a window: with none, an idle token's first job
    // would be a surge.
    if let Some(f) = within("surge_floor", section.surge_floor, 1.0..=1e9)? {
        s.surge.floor = f;
    }
    if let Some(t) = within("surge_throttle_s", section.surge_throttle_s, 1..=86_400)? {
        s.surge.throttle = Duration::from_secs(t);
    }
    if let Some(w) = within("memory_watermark", section.memory_watermark, 0.5..=1.0)? {
        s.memory_watermark = w;
    }
    if let Some(w) = within("idempotency_window_s", section.idempotency_window_s, 60..=30 * 86_400)? {
        s.idempotency_window = Duration::from_secs(w);
    }
    if let Some(n) = within("max_connections", section.max_connections, 1..=65_536)? {
        s.connections.max_connections = n;
    }
    if let Some(t) = within("header_timeout_s", section.header_timeout_s, 1..=300)? {
        s.connections.header_timeout = Duration::from_secs(t);
    }
    if let Some(n) = within("audit_max", section.audit_max, 1000..=100_000_000)? {
        s.audit_max = n;
    }
    Ok(s)
}

/// `api.<key>`'s value when it lies in `range` (NaN never does), else the
/// error naming the key and its range.
fn within<T: PartialOrd + Copy + std::fmt::Display>(
    key: &str,
    value: Option<T>,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>, Failure> {
    match value {
        Some(v) if !range.contains(&v) => Err(Failure::usage(format!(
            "api.{key} must be between {} and {}",
            range.start(),
            range.end()
        ))),
        v => Ok(v),
    }
}

fn visible_ascii(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_graphic())
}
