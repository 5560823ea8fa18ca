//! The routes and the guard every enqueue passes, in this order: client IP
//! (the socket, or `X-Forwarded-For` from a trusted proxy) → failed-auth
//! limit → bearer token (never a cookie) → surge throttle → content type →
//! size (before the body is read whole) → JSON shape → scope (class and
//! queue) → rate limits (token, class, queue; one script) → Redis memory
//! → idempotency → the policy (the same `Client` as the library and the
//! CLI: registered class, arguments against its rules, signed) → store.
//! Every outcome, accepted or refused, is audited.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use resq::{Client, EnqueueError, PolicyError, RawJob, Reason, SealOptions, StoreError, UnixMs};
use resq_redis::api::{Admission, ApiStore, Limit, RateDecision, TokenRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::audit::Audit;
use crate::problem::{clip, Problem};
use crate::settings::ApiSettings;
use crate::{secret, token};

/// How long a request body may take to arrive.
const BODY_WITHIN: Duration = Duration::from_secs(30);

/// One job to enqueue. Nothing else is read from the request: the class
/// is this field, checked against the token's scope and the registry.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The job class, e.g. `Echo`.
    #[schema(min_length = 1, max_length = 256, example = "Echo")]
    pub class: String,
    /// Resque's `args`: an array, or one object (shorthand for `[object]`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub args: Option<Value>,
    /// The queue; `default` when absent.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128, example = "default")]
    pub queue: Option<String>,
    /// Stop the run after this many milliseconds.
    #[schema(minimum = 1, maximum = 604_800_000)]
    pub timeout_ms: Option<u64>,
    /// The job's lifetime in seconds (default 7 days, or the class's).
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub ttl_s: Option<u64>,
    /// Run it this many seconds from now (single jobs only; not with `unique_key`).
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub run_in_s: Option<u64>,
    /// Enqueue only if no job of this class holds this key (single only).
    #[schema(min_length = 1, max_length = 256)]
    pub unique_key: Option<String>,
    /// How long `unique_key` is held, seconds (default 3600; needs `unique_key`).
    #[schema(minimum = 1, maximum = 2_592_000)]
    pub unique_for_s: Option<u64>,
    /// Record the job's progress, readable at `GET /api/v1/jobs/{id}` by
    /// this token (costs a small hash in Redis, kept until a day after the
    /// job's expiry, and one write at each step).
    #[serde(default)]
    pub track: bool,
}

/// Many jobs, stored all together or not at all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// 1 to `api.max_bulk_jobs` (10,000 by default) jobs.
    #[schema(min_items = 1)]
    pub jobs: Vec<JobRequest>,
}

/// A stored job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Enqueued {
    pub id: String,
    pub class: String,
    pub queue: String,
    /// `queued`, or `scheduled` for a job run later.
    pub state: String,
}

/// A tracked job's state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobState {
    pub id: String,
    /// `queued`, `scheduled`, `running`, `retrying`, `succeeded`, `failed`
    /// or `expired`.
    pub state: String,
    pub class: String,
    pub queue: String,
    /// Attempts before the current one.
    pub attempt: u32,
    /// When the state last changed (ISO 8601).
    pub updated_at: String,
    pub expires_at: String,
    /// Why the last attempt failed (`retrying`, `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Stored jobs, in the order sent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkEnqueued {
    pub ids: Vec<String>,
    pub count: usize,
}

/// What the server shares between requests.
pub struct ApiState {
    pub client: Client,
    pub store: ApiStore,
    pub settings: ApiSettings,
    pub limits: resq::PayloadLimits,
    pub audit: Audit,
    /// Set by the memory watcher: Redis is above the watermark.
    pub memory_high: AtomicBool,
    /// Tokens over their limit, refused here until it lets them through.
    pub refusals: crate::refusals::Refusals,
    /// Token records read in the last second.
    pub tokens: crate::token_cache::TokenCache,
}

/// The routes, ready to serve (`into_make_service_with_connect_info`).
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/jobs", post(enqueue_one))
        .route("/api/v1/jobs/bulk", post(enqueue_bulk))
        .route("/api/v1/jobs/{id}", get(job_state))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            crate::cors::layer,
        ))
        .with_state(state)
}

async fn not_found() -> Response {
    let mut problem = Problem::new(StatusCode::NOT_FOUND, "not_found", "no such route");
    problem.request_id = uuid::Uuid::now_v7().to_string();
    if let Ok(v) = HeaderValue::from_str(&problem.request_id) {
        problem.headers.insert("x-request-id", v);
    }
    problem.into_response()
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", responses((status = 200, description = "the OpenAPI 3.1 document")))]
pub(crate) async fn openapi() -> Response {
    let mut response = Json(crate::openapi::document()).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Alive (the process answers).
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, description = "alive", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Ready: Redis answers.
#[utoipa::path(get, path = "/readyz", tag = "meta", responses(
    (status = 200, description = "Redis answers", body = String, content_type = "text/plain"),
    (status = 503, description = "Redis does not answer", body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn ready(State(state): State<Arc<ApiState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(_) => Problem::retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Redis does not answer",
            Duration::from_secs(1),
        )
        .into_response(),
    }
}

/// What is known of a request as it goes through the guard, for its audit
/// entry and its answer.
struct Attempt {
    request_id: String,
    ip: IpAddr,
    route: &'static str,
    token: Option<TokenRecord>,
    class: Option<String>,
    queue: Option<String>,
    jobs: usize,
    rate_headers: Option<(u64, Duration, f64)>,
}

impl Attempt {
    async fn refuse(&self, state: &ApiState, mut problem: Problem) -> Response {
        problem.request_id = self.request_id.clone();
        state
            .audit
            .record(self, "refused", problem.status, problem.reason, "")
            .await;
        self.finish(problem.into_response())
    }

    fn finish(&self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            headers.insert("x-request-id", v);
        }
        if let Some((remaining, reset, limit)) = self.rate_headers {
            let mut put = |name: &'static str, value: String| {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(name, v);
                }
            };
            put("ratelimit-limit", format!("{}", limit.ceil() as u64));
            put("ratelimit-remaining", remaining.to_string());
            put("ratelimit-reset", reset.as_secs().max(1).to_string());
        }
        response
    }
}

pub(crate) struct AuditView<'a> {
    pub request_id: &'a str,
    pub ip: IpAddr,
    pub route: &'a str,
    pub token_id: &'a str,
    pub token_name: &'a str,
    pub class: &'a str,
    pub queue: &'a str,
    pub jobs: usize,
}

impl<'a> crate::audit::AsView<'a> for Attempt {
    fn as_view(&'a self) -> AuditView<'a> {
        AuditView {
            request_id: &self.request_id,
            ip: self.ip,
            route: self.route,
            token_id: self.token.as_ref().map_or("", |t| t.id.as_str()),
            token_name: self.token.as_ref().map_or("", |t| t.name.as_str()),
            class: self.class.as_deref().unwrap_or(""),
            queue: self.queue.as_deref().unwrap_or(""),
            jobs: self.jobs,
        }
    }
}

/// Enqueue one job.
#[utoipa::path(
    post, path = "/api/v1/jobs", tag = "jobs",
    request_body(content = JobRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key and body within the window return the first answer")),
    responses(
        (status = 201, description = "stored", body = Enqueued),
        (status = 200, description = "a repeat of an earlier request with the same Idempotency-Key", body = Enqueued),
        (status = 400, description = "malformed JSON or header", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "class or queue outside the token's scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "duplicate unique job, or the same Idempotency-Key in progress", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "the body did not arrive within 30 s", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body over the token's limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "unknown class, invalid arguments or request shape", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate limited or throttled", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "queue full, Redis over its memory watermark or unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn enqueue_one(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(crate::PeerAddr(peer)): ConnectInfo<crate::PeerAddr>,
    request: Request,
) -> Response {
    let mut attempt = begin(&state, peer, request.headers(), "POST /api/v1/jobs");
    // In a task of its own: a client that hangs up cannot cancel a request
    // between its store write and its audit entry.
    finish_detached(async move {
        match guard_one(&state, &mut attempt, request).await {
            Ok(response) => attempt.finish(response),
            Err(problem) => attempt.refuse(&state, problem).await,
        }
    })
    .await
}

/// Enqueue many jobs: all are stored, or none.
#[utoipa::path(
    post, path = "/api/v1/jobs/bulk", tag = "jobs",
    request_body(content = BulkRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key and body within the window return the first answer")),
    responses(
        (status = 201, description = "every job stored", body = BulkEnqueued),
        (status = 200, description = "a repeat of an earlier request with the same Idempotency-Key", body = BulkEnqueued),
        (status = 400, description = "malformed JSON or header", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "a class or queue outside the token's scope", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the same Idempotency-Key in progress", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "the body did not arrive within 30 s", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body or a job over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a job refused (its index is given); nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate limited or throttled", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "queue full, Redis over its memory watermark or unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn enqueue_bulk(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(crate::PeerAddr(peer)): ConnectInfo<crate::PeerAddr>,
    request: Request,
) -> Response {
    let mut attempt = begin(&state, peer, request.headers(), "POST /api/v1/jobs/bulk");
    finish_detached(async move {
        match guard_bulk(&state, &mut attempt, request).await {
            Ok(response) => attempt.finish(response),
            Err(problem) => attempt.refuse(&state, problem).await,
        }
    })
    .await
}

/// Runs a request's work to its end whatever happens to the connection.
async fn finish_detached(work: impl std::future::Future<Output = Response> + Send + 'static) -> Response {
    match tokio::spawn(work).await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!("a request's task failed; answered 500");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request could not be completed",
            )
            .into_response()
        }
    }
}

fn begin(state: &ApiState, peer: SocketAddr, headers: &HeaderMap, route: &'static str) -> Attempt {
    Attempt {
        request_id: uuid::Uuid::now_v7().to_string(),
        ip: client_ip(peer.ip(), headers, &state.settings.trusted_proxies),
        route,
        token: None,
        class: None,
        queue: None,
        jobs: 0,
        rate_headers: None,
    }
}

/// The client's address: the socket's, or, when the socket is a trusted
/// proxy, the first address of `X-Forwarded-For` read from the right that
/// is not a trusted proxy. An entry there that is not a plain address (a
/// port, brackets, garbage) ends the walk at the socket's address: only
/// what trusted proxies wrote is believed, never what a client wrote
/// before them.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.into_iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => return peer,
        }
    }
    peer
}

/// The key a client's failed-authentication budget is kept under: its
/// address, or for IPv6 its /64 (one host usually holds a whole /64).
pub(crate) fn failure_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

async fn guard_one(state: &ApiState, attempt: &mut Attempt, request: Request) -> Result<Response, Problem> {
    let token = authenticate(state, attempt, request.headers()).await?;
    let (headers, body) = read_json_body(request, token.max_bytes.min(state.limits.max_bytes)).await?;
    let job: JobRequest = parse(&body, &state.limits)?;
    let mut raw = to_raw(&job, true)?;
    if job.track {
        raw.options.track = Some(token.id.clone());
    }
    raw.options.traceparent = traceparent(&headers);
    attempt.class = Some(raw.class.clone());
    attempt.queue = Some(raw.queue.clone());
    attempt.jobs = 1;
    in_token_scope(&token, &raw.class, &raw.queue)?;
    limit_rates(state, attempt, &token, &[(&raw.class, &raw.queue)]).await?;
    refuse_when_memory_high(state)?;
    let once = match crate::idempotent::begin(state, &token.id, &headers, &body).await? {
        crate::idempotent::Begun::Fresh(once) => once,
        crate::idempotent::Begun::Replay(id) => {
            state
                .audit
                .record(attempt, "replayed", 200, "idempotent_replay", &id)
                .await;
            let state_name = if raw.at.is_some() { "scheduled" } else { "queued" };
            return Ok((StatusCode::OK, Json(enqueued(id, &raw, state_name))).into_response());
        }
    };
    let scheduled = raw.at.is_some();
    let id = match state.client.enqueue_raw_job(raw.clone()).await {
        Ok(id) => id,
        Err(e) => return Err(once.failed(e).await),
    };
    once.stored(&id).await;
    state.audit.record(attempt, "accepted", 201, "", &id).await;
    let state_name = if scheduled { "scheduled" } else { "queued" };
    Ok((StatusCode::CREATED, Json(enqueued(id, &raw, state_name))).into_response())
}

fn enqueued(id: String, raw: &RawJob, state: &str) -> Enqueued {
    Enqueued {
        id,
        class: raw.class.clone(),
        queue: raw.queue.clone(),
        state: state.to_string(),
    }
}

async fn guard_bulk(state: &ApiState, attempt: &mut Attempt, request: Request) -> Result<Response, Problem> {
    let token = authenticate(state, attempt, request.headers()).await?;
    let (headers, body) = read_json_body(request, state.settings.max_bulk_bytes).await?;
    let mut limits = state.limits;
    limits.max_bytes = state.settings.max_bulk_bytes;
    limits.max_array_len = limits.max_array_len.max(state.settings.max_bulk_jobs);
    let bulk: BulkRequest = parse(&body, &limits)?;
    attempt.jobs = bulk.jobs.len();
    if bulk.jobs.is_empty() || bulk.jobs.len() > state.settings.max_bulk_jobs {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("a batch holds 1 to {} jobs", state.settings.max_bulk_jobs),
        ));
    }
    let mut raws = Vec::with_capacity(bulk.jobs.len());
    let trace = traceparent(&headers);
    for (index, job) in bulk.jobs.iter().enumerate() {
        let mut raw = to_raw(job, false).map_err(|p| p.at_index(Some(index)))?;
        if job.track {
            raw.options.track = Some(token.id.clone());
        }
        raw.options.traceparent = trace.clone();
        in_token_scope(&token, &raw.class, &raw.queue).map_err(|p| p.at_index(Some(index)))?;
        let size = serde_json::to_vec(&raw.args).map_or(usize::MAX, |v| v.len());
        if size > token.max_bytes {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "a job's arguments are {size} bytes; this token allows {}",
                    token.max_bytes
                ),
            )
            .at_index(Some(index)));
        }
        raws.push(raw);
    }
    let classes: std::collections::BTreeSet<&str> = raws.iter().map(|r| r.class.as_str()).collect();
    let queues: std::collections::BTreeSet<&str> = raws.iter().map(|r| r.queue.as_str()).collect();
    attempt.class = Some(classes.iter().copied().collect::<Vec<_>>().join(","));
    attempt.queue = Some(queues.iter().copied().collect::<Vec<_>>().join(","));
    let pairs: Vec<(&str, &str)> = raws.iter().map(|r| (r.class.as_str(), r.queue.as_str())).collect();
    limit_rates(state, attempt, &token, &pairs).await?;
    refuse_when_memory_high(state)?;
    let once = match crate::idempotent::begin(state, &token.id, &headers, &body).await? {
        crate::idempotent::Begun::Fresh(once) => once,
        crate::idempotent::Begun::Replay(ids) => {
            let ids: Vec<String> = ids.split(',').map(str::to_string).collect();
            state
                .audit
                .record(attempt, "replayed", 200, "idempotent_replay", "")
                .await;
            let count = ids.len();
            return Ok((StatusCode::OK, Json(BulkEnqueued { ids, count })).into_response());
        }
    };
    let ids = match state.client.enqueue_raw_bulk(&raws).await {
        Ok(ids) => ids,
        Err(e) => return Err(once.failed(e).await),
    };
    once.stored(&ids.join(",")).await;
    let first = ids.first().cloned().unwrap_or_default();
    state.audit.record(attempt, "accepted", 201, "", &first).await;
    let count = ids.len();
    Ok((StatusCode::CREATED, Json(BulkEnqueued { ids, count })).into_response())
}

/// A tracked job's state.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "the id the enqueue answered")),
    responses(
        (status = 200, description = "the job's state", body = JobState),
        (status = 401, description = "no valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no job tracked for this token under this id", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many failed authentications, or throttled", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn job_state(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(crate::PeerAddr(peer)): ConnectInfo<crate::PeerAddr>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut attempt = begin(&state, peer, &headers, "GET /api/v1/jobs/{id}");
    let answer = async {
        let token = authenticate(&state, &mut attempt, &headers).await?;
        let record = state.client.store().tracked(&id).await.map_err(unavailable)?;
        // Another token's job is as absent as a job never tracked: ids are
        // not guessable, and this answer says nothing either way.
        let record = record.filter(|r| r.owner == token.id).ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no job tracked for this token under this id",
            )
        })?;
        Ok::<_, Problem>(
            Json(JobState {
                state: record.state_at(UnixMs::now()).as_str().to_string(),
                id: record.id,
                class: record.class,
                queue: record.queue,
                attempt: record.attempt,
                updated_at: record.updated_at.to_string(),
                expires_at: record.expires_at.to_string(),
                error: record.error,
            })
            .into_response(),
        )
    }
    .await;
    match answer {
        Ok(response) => attempt.finish(response),
        Err(problem) => attempt.refuse(&state, problem).await,
    }
}

/// The bearer token, checked against its fresh record. Every failure
/// answers the same 401 and counts against the client's IP; past the
/// failure limit, the IP gets 429 before any token is looked at.
async fn authenticate(state: &ApiState, attempt: &mut Attempt, headers: &HeaderMap) -> Result<TokenRecord, Problem> {
    let failures = state.store.keys().api_rate("authfail", &failure_key(attempt.ip));
    let limit = |cost| Limit {
        key: failures.clone(),
        per_s: state.settings.auth_failures.per_s,
        burst: state.settings.auth_failures.burst,
        cost,
    };
    let presented = bearer(headers);
    let id = presented.and_then(secret::id_of);
    if let (Some(id), Some(secret)) = (id, presented) {
        if let Some((record, left)) = state.refusals.refused(id, secret) {
            attempt.token = Some(record);
            return Err(Problem::retry_after(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "over the rate limit of this token",
                left,
            ));
        }
    }
    let now = UnixMs::now();
    if let (Some(id), Some(secret)) = (id, presented) {
        if let Some(record) = state.tokens.get(id).filter(|r| token::opens(r, secret, now)) {
            // Read within the second: the failure budget and the throttle
            // are looked at by the admission script instead.
            attempt.token = Some(record.clone());
            return Ok(record);
        }
    }
    // One round trip: this client's failure limit (looked at), the token's
    // fresh record and its throttle.
    let (failures_left, record, throttled) = state.store.authenticate(&limit(0), id).await.map_err(unavailable)?;
    if let RateDecision::Refused { retry_after, .. } = failures_left {
        return Err(Problem::retry_after(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed authentications from this address",
            retry_after,
        ));
    }
    match (record, presented) {
        (Some(record), Some(secret)) if token::opens(&record, secret, now) => {
            state.tokens.put(&record);
            attempt.token = Some(record.clone());
            if let Some(left) = throttled {
                return Err(Problem::retry_after(
                    StatusCode::TOO_MANY_REQUESTS,
                    "throttled",
                    "this token is throttled after a surge above its usual rate; an alert was raised",
                    left,
                ));
            }
            Ok(record)
        }
        _ => {
            let _ = state.store.rate(&[limit(1)]).await;
            Err(Problem::unauthorized())
        }
    }
}

/// `Authorization: Bearer <secret>`, the only credential the API reads
/// (cookies never are, so a browser's ambient credentials cannot reach it).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, secret) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
}

/// The body, read only up to `max` bytes: a larger `Content-Length` is
/// refused before reading, and a body that streams past it is cut off.
async fn read_json_body(request: Request, max: usize) -> Result<(HeaderMap, axum::body::Bytes), Problem> {
    let (parts, body) = request.into_parts();
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the job as Content-Type: application/json",
        ));
    }
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is over this token's limit of {max} bytes"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    // A body that trickles in is cut off: a slow client holds a connection
    // for at most this long.
    let bytes = tokio::time::timeout(BODY_WITHIN, axum::body::to_bytes(Body::new(body), max))
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the body did not arrive within {} s", BODY_WITHIN.as_secs()),
            )
        })?
        .map_err(|_| too_large())?;
    Ok((parts.headers, bytes))
}

/// The payload limits first (depth, string and array sizes, before any
/// parse), then the JSON: bad syntax is 400, a wrong shape is 422.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], limits: &resq::PayloadLimits) -> Result<T, Problem> {
    limits.check(body).map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("the body is refused before parsing: {e}"),
        )
    })?;
    serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON (line {}, column {})", e.line(), e.column()),
            )
        } else {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("the request does not fit the job shape: {}", clip(&e.to_string(), 200)),
            )
        }
    })
}

/// The request's W3C `traceparent`, when well formed (else none, as the
/// specification asks): the jobs carry it, signed, to their workers.
fn traceparent(headers: &HeaderMap) -> Option<resq::trace::TraceParent> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(resq::trace::TraceParent::parse)
}

fn to_raw(job: &JobRequest, single: bool) -> Result<RawJob, Problem> {
    let invalid = |detail: &str| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", detail.to_string());
    let args = match &job.args {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(obj @ Value::Object(_)) => vec![obj.clone()],
        Some(_) => return Err(invalid("args must be an array or one object")),
    };
    if !single && (job.run_in_s.is_some() || job.unique_key.is_some()) {
        return Err(invalid(
            "a batch holds jobs to run now: send scheduled or unique jobs one by one",
        ));
    }
    if job.unique_key.is_some() && job.run_in_s.is_some() {
        return Err(invalid("a job cannot be both scheduled and unique"));
    }
    if job.unique_key.is_none() && job.unique_for_s.is_some() {
        return Err(invalid("unique_for_s needs unique_key"));
    }
    let bounded = |what: &str, v: Option<u64>, max: u64| match v {
        Some(n) if n == 0 || n > max => Err(invalid(&format!("{what} must be between 1 and {max}"))),
        _ => Ok(v),
    };
    let timeout_ms = bounded("timeout_ms", job.timeout_ms, 7 * 86_400_000)?;
    let ttl_s = bounded("ttl_s", job.ttl_s, 365 * 86_400)?;
    let run_in_s = bounded("run_in_s", job.run_in_s, 365 * 86_400)?;
    let unique_for_s = bounded("unique_for_s", job.unique_for_s, 30 * 86_400)?;
    Ok(RawJob {
        class: job.class.clone(),
        args,
        queue: job.queue.clone().unwrap_or_else(|| "default".to_string()),
        options: SealOptions {
            timeout: timeout_ms.map(Duration::from_millis),
            ttl: ttl_s.map(Duration::from_secs),
            ..Default::default()
        },
        at: run_in_s.map(|s| std::time::SystemTime::now() + Duration::from_secs(s)),
        unique: job
            .unique_key
            .clone()
            .map(|k| (k, Duration::from_secs(unique_for_s.unwrap_or(3600)))),
    })
}

fn in_token_scope(token: &TokenRecord, class: &str, queue: &str) -> Result<(), Problem> {
    if !token::in_scope(&token.classes, class) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden_class",
            format!("this token may not enqueue class {}", clip(class, 64)),
        ));
    }
    if !token::in_scope(&token.queues, queue) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden_queue",
            format!("this token may not enqueue to queue {}", clip(queue, 64)),
        ));
    }
    Ok(())
}

/// The token's own limit, and the shared class and queue limits the
/// operator set, in one script: all count, or none does; an admitted
/// request's jobs also count toward its token's surge baseline (a surge
/// throttles the token and raises an alert).
async fn limit_rates(
    state: &ApiState,
    attempt: &mut Attempt,
    token: &TokenRecord,
    jobs: &[(&str, &str)],
) -> Result<(), Problem> {
    let keys = state.store.keys();
    let cost = u32::try_from(jobs.len()).unwrap_or(u32::MAX);
    let mut limits = vec![Limit {
        key: keys.api_rate("token", &token.id),
        per_s: token.rate_per_s,
        burst: token.burst,
        cost,
    }];
    let mut names = vec![format!("token {}", token.name)];
    let mut per_class = std::collections::BTreeMap::<&str, u32>::new();
    let mut per_queue = std::collections::BTreeMap::<&str, u32>::new();
    for (class, queue) in jobs {
        *per_class.entry(class).or_default() += 1;
        *per_queue.entry(queue).or_default() += 1;
    }
    for (class, n) in per_class {
        if let Some(rate) = state.settings.class_rates.get(class) {
            limits.push(Limit {
                key: keys.api_rate("class", class),
                per_s: rate.per_s,
                burst: rate.burst,
                cost: n,
            });
            names.push(format!("class {}", clip(class, 64)));
        }
    }
    for (queue, n) in per_queue {
        if let Some(rate) = state.settings.queue_rates.get(queue) {
            limits.push(Limit {
                key: keys.api_rate("queue", queue),
                per_s: rate.per_s,
                burst: rate.burst,
                cost: n,
            });
            names.push(format!("queue {}", clip(queue, 64)));
        }
    }
    // A limit whose burst is smaller than this request's cost could never
    // let it through: say so, instead of a Retry-After that never helps.
    if let Some((limit, name)) = limits.iter().zip(&names).find(|(l, _)| l.cost > l.burst.max(1)) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!(
                "this batch takes {} jobs of {name}, whose burst is {}: it could never pass; send smaller batches",
                limit.cost, limit.burst
            ),
        ));
    }
    let failures = Limit {
        key: state.store.keys().api_rate("authfail", &failure_key(attempt.ip)),
        per_s: state.settings.auth_failures.per_s,
        burst: state.settings.auth_failures.burst,
        cost: 0,
    };
    let admission = state
        .store
        .admit(&limits, &failures, &token.id, cost, &state.settings.surge)
        .await
        .map_err(unavailable)?;
    match admission {
        Admission::Allowed {
            remaining,
            reset,
            surge_began,
        } => {
            if surge_began {
                tracing::warn!(
                    target: "resq::alert",
                    token_id = %token.id, token_name = %token.name,
                    throttle_s = state.settings.surge.throttle.as_secs(),
                    "a token's enqueue rate surged above its baseline; it is throttled"
                );
                state.audit.record(attempt, "alert", 429, "surge_throttled", "").await;
            }
            attempt.rate_headers = Some((remaining, reset, f64::from(token.burst)));
            Ok(())
        }
        Admission::Limited { retry_after, index } => {
            attempt.rate_headers = Some((0, retry_after, f64::from(token.burst)));
            if index == 0 && cost == 1 {
                // The token's own limit, for one job: nothing it sends will
                // pass before then (a batch may be refused for its size alone).
                state.refusals.remember(token, retry_after);
            }
            let which = names.get(index).cloned().unwrap_or_default();
            Err(Problem::retry_after(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("over the rate limit of {which}"),
                retry_after,
            ))
        }
        Admission::Throttled(left) => Err(Problem::retry_after(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "this token is throttled after a surge above its usual rate; an alert was raised",
            left,
        )),
        Admission::TooManyFailures(retry_after) => Err(Problem::retry_after(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed authentications from this address",
            retry_after,
        )),
    }
}

fn refuse_when_memory_high(state: &ApiState) -> Result<(), Problem> {
    if state.memory_high.load(Ordering::Relaxed) {
        return Err(Problem::retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_memory",
            "Redis is above its memory watermark: enqueueing waits until workers drain it",
            Duration::from_secs(5),
        ));
    }
    Ok(())
}

/// What the policy or the store said, as an answer.
pub(crate) fn refusal_of(e: EnqueueError) -> Problem {
    let index = match &e {
        EnqueueError::InBatch { index, .. } | EnqueueError::NotForBatch { index } => Some(*index),
        _ => None,
    };
    let problem = match e {
        EnqueueError::Policy(p) | EnqueueError::InBatch { source: p, .. } => policy_refusal(p),
        EnqueueError::Store(s) => store_refusal(s),
        EnqueueError::Duplicate { existing, .. } => Problem::new(
            StatusCode::CONFLICT,
            "duplicate",
            format!("a job with this unique key is already enqueued (job {existing})"),
        ),
        other => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            clip(&other.to_string(), 300),
        ),
    };
    problem.at_index(index)
}

fn policy_refusal(e: PolicyError) -> Problem {
    match e {
        PolicyError::Rejected { rejection, .. } => match rejection.reason {
            Reason::UnregisteredClass => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unregistered_class",
                "the class is not a job type this server knows",
            ),
            Reason::InvalidArgs => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_args",
                clip(&rejection.message, 500),
            )
            .with_fields(field_paths(&rejection.message)),
            _ => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                clip(&rejection.message, 300),
            ),
        },
        PolicyError::Limits { source, .. } => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            clip(&source.to_string(), 300),
        ),
        PolicyError::Name(e) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            clip(&e.to_string(), 300),
        ),
        other => {
            tracing::error!(error = %other, "the enqueue policy could not seal a job");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the server cannot sign jobs now",
            )
        }
    }
}

fn store_refusal(e: StoreError) -> Problem {
    match e {
        StoreError::QueueFull { .. } => Problem::retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_full",
            clip(&e.to_string(), 300),
            Duration::from_secs(5),
        ),
        StoreError::NotReplicated { wanted, got } => not_replicated(wanted, got),
        other => unavailable(other),
    }
}

/// `redis.wait_replicas`: the jobs were stored on the master, but fewer
/// replicas than asked confirmed them in time. Not a refusal (the jobs are
/// queued and run unless the master fails before a replica has them), and
/// not a success either: the client asked, through the server's settings,
/// for writes that survive a failover. A retry stores a second copy, which
/// may then run twice; the Idempotency-Key stays held as for a write whose
/// answer was lost, so a retry with it waits for the key's hold to end.
pub(crate) fn not_replicated(wanted: u32, got: u32) -> Problem {
    tracing::warn!(
        wanted,
        got,
        "API enqueue stored on the master but not confirmed by its replicas"
    );
    Problem::retry_after(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_replicated",
        format!(
            "the job store's master stored the job(s), but only {got} of the {wanted} replica(s) it waits for \
             confirmed them in time: they run unless the master fails before a replica has them. A retry stores \
             another copy, which may then run twice (an Idempotency-Key sent is held for a minute)"
        ),
        Duration::from_secs(60),
    )
}

/// The store did not answer the write: it may or may not have run.
pub(crate) fn outcome_unknown() -> Problem {
    Problem::retry_after(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the job store did not answer the write: the job may have been stored; retry with the same \
         Idempotency-Key to be sure it is stored once",
        Duration::from_secs(60),
    )
}

pub(crate) fn unavailable(e: StoreError) -> Problem {
    tracing::warn!(error = %e, "Redis refused or did not answer an API request");
    // Redis at its maxmemory refuses writes itself ("OOM command not
    // allowed"): the same answer as the watermark's.
    if e.to_string().contains("OOM") {
        return Problem::retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_memory",
            "Redis is out of memory: enqueueing waits until workers drain it",
            Duration::from_secs(5),
        );
    }
    Problem::retry_after(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the job store is unavailable; nothing was stored",
        Duration::from_secs(1),
    )
}

/// The field paths of a validation message: garde's report
/// (`arguments of X are invalid: to: not an email; age: lower than 1`) or
/// a type mismatch (`arguments of X do not fit its type: to: invalid type`).
fn field_paths(message: &str) -> Vec<String> {
    if let Some((_, report)) = message.split_once(" are invalid: ") {
        return report
            .split("; ")
            .filter_map(|part| part.split_once(": ").map(|(path, _)| clip(path, 64)))
            .collect();
    }
    if let Some((_, rest)) = message.split_once(" do not fit its type: ") {
        if let Some((path, _)) = rest.split_once(": ") {
            let is_path = !path.is_empty() && !path.contains(' ');
            if is_path {
                return vec![clip(path, 64)];
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_as_far_as_trusted_proxies_wrote_it() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let inner: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = [proxy, inner];
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let cases: [(IpAddr, &str, IpAddr); 7] = [
            // Not from a proxy: the header is ignored.
            (client, "198.51.100.1", client),
            (proxy, "198.51.100.1", "198.51.100.1".parse().unwrap()),
            // The client wrote the left part; the proxy appended the right.
            (proxy, "1.2.3.4, 198.51.100.1", "198.51.100.1".parse().unwrap()),
            (
                proxy,
                "1.2.3.4, 198.51.100.1, 10.0.0.2",
                "198.51.100.1".parse().unwrap(),
            ),
            // A hop that is not a plain address: stop at the socket.
            (proxy, "1.2.3.4, 198.51.100.1:4711", proxy),
            (proxy, "1.2.3.4, garbage", proxy),
            // Nothing but proxies: the socket.
            (proxy, "10.0.0.2", proxy),
        ];
        for (peer, header, want) in cases {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", HeaderValue::from_str(header).unwrap());
            assert_eq!(client_ip(peer, &headers, &trusted), want, "{peer} {header}");
        }
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(
            failure_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }
}
