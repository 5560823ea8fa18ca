//! resq's HTTP enqueue API (`resq serve`): one door more into the same
//! policy as the library and the CLI, with scoped bearer tokens, rate
//! limits shared by every replica, backpressure, idempotency and an audit
//! trail. See `docs/api.md`.

// The error side of the guard's steps is the HTTP answer itself (a
// `Problem`, some 250 bytes), built once per refused request: boxing it
// would add an allocation to every refusal and buy nothing.
#![allow(clippy::result_large_err)]

pub mod alerts;
pub mod audit;
pub mod cors;
pub mod dashboard;
mod idempotent;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod refusals;
pub mod secret;
pub mod server;
pub mod settings;
pub mod tls;
pub mod token;
pub mod token_cache;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use server::{router, ApiState};
pub use settings::{parse_limit, parse_rate, ApiSettings, Rate};

/// Builds the shared state of a server.
pub fn state(
    client: resq::Client,
    store: resq_redis::api::ApiStore,
    settings: ApiSettings,
    limits: resq::PayloadLimits,
) -> Arc<ApiState> {
    Arc::new(ApiState {
        client,
        audit: audit::Audit::new(store.clone()),
        store,
        settings,
        limits,
        memory_high: AtomicBool::new(false),
        refusals: Default::default(),
        tokens: Default::default(),
    })
}

/// The client's socket address, put on every request of its connection.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// How many connections a server holds, and how long a client may take to
/// send a request's headers (a connection that trickles them is closed).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves the API, and the dashboard when given, on `listener` (plain, or
/// HTTPS with `tls`) until `shutdown`
/// resolves; requests in flight then finish (nothing is half-written:
/// each enqueue is one write), for at most 30 s.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<ApiState>,
    dashboard: Option<Arc<dashboard::Dashboard>>,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let watcher = tokio::spawn(watch_memory(Arc::clone(&state)));
    let audit = state.audit.clone();
    let (mut app, sampler) = match dashboard {
        Some(d) => (
            // The dashboard's headers on every answer, the API's 404 included.
            dashboard::router(Arc::clone(&d))
                .merge(router(state))
                .layer(axum::middleware::from_fn(dashboard::guard::headers)),
            Some(dashboard::spawn_sampler(d)),
        ),
        None => (router(state), None),
    };
    if tls.is_some() {
        app = app.layer(axum::middleware::from_fn(dashboard::guard::hsts));
    }
    match tls {
        None => serve_connections(listener, app, limits, shutdown).await,
        Some(config) => serve_connections(tls::TlsListener::new(listener, config)?, app, limits, shutdown).await,
    }
    watcher.abort();
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    // Every answered request's entry is in the stream before the exit.
    audit.flush(Duration::from_secs(5)).await;
    Ok(())
}

/// Accepts connections while a slot is free (past `max_connections`, new
/// ones wait in the kernel's backlog), serves each over HTTP/1.1 with a
/// header timeout, and at shutdown stops accepting and lets the
/// connections finish their requests.
async fn serve_connections<L>(
    mut listener: L,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use tower::ServiceExt;
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = app
            .clone()
            .map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(PeerAddr(peer)));
                request
            });
        let connection = http.serve_connection(
            hyper_util::rt::TokioIo::new(io),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open 30 s after shutdown began; closing them");
    }
}

/// Reads Redis's memory once a second and sets the backpressure flag.
async fn watch_memory(state: Arc<ApiState>) {
    let mut warned = false;
    loop {
        match state.store.memory().await {
            Ok((used, max)) => {
                let high = max > 0 && used as f64 > state.settings.memory_watermark * max as f64;
                if high != warned {
                    tracing::warn!(used, max, high, "Redis memory crossed the API's watermark");
                    warned = high;
                }
                state.memory_high.store(high, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(error = %e, "could not read Redis's memory"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
