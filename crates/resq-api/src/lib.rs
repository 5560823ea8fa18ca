//! resq's HTTP enqueue API (`resq serve`): one door more into the same
//! policy as the library and the CLI, with scoped bearer tokens, rate
//! limits shared by every replica, backpressure, idempotency and an audit
//! trail. See `docs/api.md`.

// The error side of the guard's steps is the HTTP answer itself (a
// `Problem`, some 250 bytes), built once per refused request: boxing it
// would add an allocation to every refusal and buy nothing.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod cors;
mod idempotent;
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

/// The client's socket address, from a plain or a TLS listener.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tls::TlsListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tls::TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// Serves on `listener` (plain, or HTTPS with `tls`) until `shutdown`
/// resolves; requests in flight then finish (nothing is half-written:
/// each enqueue is one write).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let watcher = tokio::spawn(watch_memory(Arc::clone(&state)));
    let audit = state.audit.clone();
    let app = router(state);
    let served = match tls {
        None => {
            let service = app.into_make_service_with_connect_info::<PeerAddr>();
            axum::serve(listener, service).with_graceful_shutdown(shutdown).await
        }
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config)?;
            let service = app.into_make_service_with_connect_info::<PeerAddr>();
            axum::serve(listener, service).with_graceful_shutdown(shutdown).await
        }
    };
    watcher.abort();
    // Every answered request's entry is in the stream before the exit.
    audit.flush(Duration::from_secs(5)).await;
    served
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
