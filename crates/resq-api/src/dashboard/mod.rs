//! The dashboard, served by `resq serve` beside the enqueue API: every page
//! resque-web has, over the same admin layer as the CLI and the API.
//!
//! Its defences, each in one place:
//! - who: [`session`] (Argon2id passwords, sessions in Redis, roles read
//!   again on every request) and [`login`] (limits per IP and per name,
//!   lockout with backoff, one answer for every failure);
//! - what: every action checks the role it needs ([`CurrentUser::require`])
//!   and the session's form token, and is audited with the user;
//! - from where: [`guard`] (Fetch Metadata / Origin on every post, strict
//!   CSP, no framing, no caching);
//! - what is shown: askama templates escape every value; [`view`] masks
//!   secret-looking fields and never decrypts;
//! - how much: every page reads a bounded page ([`Paging`]).

mod actions;
mod charts;
pub mod guard;
mod login;
mod pages;
pub mod password;
mod sampler;
pub mod session;
pub mod view;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use resq::cron::CronEntry;
use resq::StoreError;
use resq_redis::api::ApiStore;
use resq_redis::web::WebStore;

pub use session::CurrentUser;

use crate::audit::Audit;

/// How the dashboard behaves.
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    /// No forms and no action routes (login and logout aside).
    pub read_only: bool,
    /// Cookies `__Host-` and Secure: the browser talks HTTPS (to this
    /// server, or to a proxy in front of it).
    pub secure_cookies: bool,
    /// A session ends after this long without a request...
    pub idle_timeout: Duration,
    /// ...and this long after its login, whatever happens.
    pub absolute_timeout: Duration,
    /// Argument fields whose lowercased names contain one of these are masked.
    pub masked_fields: Vec<String>,
    /// How often a sample for the charts is taken (one replica takes it).
    pub sample_interval: Duration,
    /// Proxies whose X-Forwarded-For is believed (the API's list): the
    /// login limits and the audit see the client, not the proxy.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        Self {
            read_only: false,
            secure_cookies: false,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            masked_fields: view::DEFAULT_MASKED.iter().map(|s| s.to_string()).collect(),
            sample_interval: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
        }
    }
}

/// A recurring entry as the cron page shows it.
#[derive(Debug, Clone)]
pub struct CronRow {
    pub entry: CronEntry,
    /// The queue its jobs go to.
    pub queue: String,
}

/// The dashboard's shared state.
pub struct Dashboard {
    pub admin: resq::Admin,
    pub client: resq::Client,
    pub web: WebStore,
    pub api: ApiStore,
    pub audit: Audit,
    pub settings: DashboardSettings,
    pub limits: resq::PayloadLimits,
    pub cron: Vec<CronRow>,
    /// CSP violations browsers reported since start.
    pub csp_violations: AtomicU64,
}

/// Why a dashboard request was refused: each is a page that says so.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Forbidden(String),
    #[error("this form is out of date or was not sent by this dashboard; reload the page and try again")]
    BadToken,
    #[error("cross-site requests are refused")]
    CrossSite,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("Redis cannot be reached or refused the request; try again")]
    Unavailable,
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "dashboard: a store call failed");
        Refusal::Unavailable
    }
}

impl From<resq::AdminError> for Refusal {
    fn from(e: resq::AdminError) -> Self {
        match e {
            resq::AdminError::Store(e) => e.into(),
            resq::AdminError::NotFound(_) => {
                Refusal::NotFound("it is gone (done, removed or moved by someone else)".into())
            }
            other => Refusal::BadRequest(other.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    message: &'a str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match self {
            Refusal::Forbidden(_) | Refusal::BadToken | Refusal::CrossSite => StatusCode::FORBIDDEN,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = self.to_string();
        let page = ErrorPage {
            status: status.as_u16(),
            message: &message,
        };
        (status, render(&page)).into_response()
    }
}

/// Renders a template; a template that fails to render is a 500 page with
/// no detail.
pub(crate) fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: a page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be drawn").into_response()
        }
    }
}

/// What every page's frame needs: who is looking, what they may do.
pub struct Nav {
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
    pub can_operate: bool,
    pub is_admin: bool,
    pub read_only: bool,
    pub active: &'static str,
}

impl Nav {
    pub fn new(d: &Dashboard, user: &CurrentUser, active: &'static str) -> Self {
        Self {
            user: user.name.clone(),
            role: user.role.as_str(),
            csrf: user.csrf.clone(),
            can_operate: user.can_operate() && !d.settings.read_only,
            is_admin: user.is_admin(),
            read_only: d.settings.read_only,
            active,
        }
    }
}

/// A page of a list, clamped on the server: at most [`Paging::MAX`] rows.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub offset: u64,
    pub limit: u64,
}

impl Paging {
    pub const DEFAULT: u64 = 25;
    pub const MAX: u64 = 100;
    /// The furthest offset a page may ask for (past it, the page is empty).
    pub const MAX_OFFSET: u64 = 100_000_000;

    pub fn clamp(offset: Option<u64>, limit: Option<u64>) -> Self {
        Self {
            offset: offset.unwrap_or(0).min(Self::MAX_OFFSET),
            limit: limit.unwrap_or(Self::DEFAULT).clamp(1, Self::MAX),
        }
    }

    pub fn prev(&self) -> Option<u64> {
        (self.offset > 0).then(|| self.offset.saturating_sub(self.limit))
    }

    pub fn next(&self, total: u64) -> Option<u64> {
        let next = self.offset + self.limit;
        (next < total).then_some(next)
    }
}

/// The dashboard's routes. Action routes exist only when it is not
/// read-only.
pub fn router(state: Arc<Dashboard>) -> Router {
    let read_only = state.settings.read_only;
    let pages = Router::new()
        .route("/", get(pages::overview))
        .route("/queues", get(pages::queues))
        .route("/queues/{queue}", get(pages::queue))
        .route("/workers", get(pages::workers))
        .route("/working", get(pages::working))
        .route("/failed", get(pages::failed))
        .route("/failed/{handle}", get(pages::failure))
        .route("/scheduled", get(pages::scheduled))
        .route("/retries", get(pages::retries))
        .route("/expired", get(pages::expired))
        .route("/cron", get(pages::cron))
        .route("/stats", get(pages::stats))
        .route("/audit", get(pages::audit))
        .route("/users", get(pages::users))
        .route("/tokens", get(pages::tokens))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/static/app.css", get(stylesheet))
        .route("/csp-report", post(csp_report));
    let actions = if read_only {
        Router::new()
    } else {
        Router::new()
            .route("/queues/{queue}/pause", post(actions::pause))
            .route("/queues/{queue}/resume", post(actions::resume))
            .route("/queues/{queue}/cap", post(actions::cap))
            .route("/queues/{queue}/remove", post(actions::remove_queued))
            .route("/failed/{handle}/retry", post(actions::retry_failed))
            .route("/failed/{handle}/remove", post(actions::remove_failed))
            .route("/failed/bulk", post(actions::bulk_failed))
            .route("/failed/clear", post(actions::clear_failed))
            .route("/scheduled/{handle}/{what}", post(actions::scheduled))
            .route("/retries/{handle}/{what}", post(actions::retries))
            .route("/expired/{handle}/remove", post(actions::remove_expired))
            .route("/cron/{name}/fire", post(actions::fire_cron))
            .route("/users/add", post(actions::add_user))
            .route("/users/{name}/remove", post(actions::remove_user))
            .route("/users/{name}/role", post(actions::set_role))
            .route("/tokens/{id}/revoke", post(actions::revoke_token))
    };
    pages
        .merge(actions)
        .layer(axum::middleware::from_fn(guard::same_site_only))
        .layer(axum::middleware::from_fn(guard::headers))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// Starts the sampler that feeds the charts (one replica samples per
/// interval); it stops with the returned handle.
pub fn spawn_sampler(state: Arc<Dashboard>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(sampler::run(state))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        include_str!("../../templates/app.css"),
    )
        .into_response()
}

/// Counts a CSP violation a browser reported (the body is not read: a
/// report names nothing the count needs, and the route needs no login).
async fn csp_report(axum::extract::State(state): axum::extract::State<Arc<Dashboard>>) -> StatusCode {
    let n = state.csp_violations.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::warn!(
        count = n,
        "a browser reported a Content-Security-Policy violation on the dashboard"
    );
    StatusCode::NO_CONTENT
}

/// The client's address: the peer's, or what trusted proxies say it is.
pub struct ClientIp(pub IpAddr);

impl axum::extract::FromRequestParts<Arc<Dashboard>> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<Dashboard>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<crate::PeerAddr>>()
            .map(|c| c.0 .0.ip())
            .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
        Ok(ClientIp(crate::server::client_ip(
            peer,
            &parts.headers,
            &state.settings.trusted_proxies,
        )))
    }
}

/// Audits one dashboard action, with its user and where it came from.
pub(crate) fn audited(d: &Dashboard, user: &str, ip: IpAddr, action: &str, target: &str, outcome: &str) {
    d.audit.record_action(user, ip, action, target, outcome);
}
