//! The pages: each reads one bounded page through the admin layer and
//! hands plain values to its template (which escapes them).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use resq::store::Schedule;
use resq::{FailedFilter, UnixMs};
use resq_redis::web::{Role, UserRecord};
use serde::Deserialize;

use super::charts::{self, Chart};
use super::view::{self, clip, when, JobView};
use super::{render, CurrentUser, Dashboard, Nav, Paging, Refusal};

/// How many failure records a filtered page scans at most.
const FAILED_SCAN: u64 = 5_000;
/// In-flight jobs shown per worker on the working page.
const IN_FLIGHT_SHOWN: u64 = 20;
/// Failure records a failure's page searches for the same job's others.
const HISTORY_SCAN: u64 = 1_000;
/// Audit entries a page shows, at most.
const AUDIT_SHOWN: usize = 200;

#[derive(Deserialize, Default)]
pub struct PageQuery {
    offset: Option<u64>,
    limit: Option<u64>,
}

impl PageQuery {
    fn paging(&self) -> Paging {
        Paging::clamp(self.offset, self.limit)
    }
}

/// One queue, with what the overview and the queues page show.
pub struct QueueRow {
    pub name: String,
    pub size: u64,
    pub paused: bool,
    pub cap: String,
}

async fn queue_rows(d: &Dashboard) -> Result<Vec<QueueRow>, Refusal> {
    let sizes = d.admin.queues().await?;
    let (paused, caps) = d.admin.queue_controls().await?;
    let caps: BTreeMap<String, u64> = caps.into_iter().collect();
    Ok(sizes
        .into_iter()
        .map(|(name, size)| QueueRow {
            paused: paused.contains(&name),
            cap: caps.get(&name).map(|c| c.to_string()).unwrap_or_default(),
            name,
            size,
        })
        .collect())
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    nav: Nav,
    processed: u64,
    failed: u64,
    failed_kept: u64,
    rate_processed: String,
    rate_failed: String,
    waiting: u64,
    queues: Vec<QueueRow>,
    more_queues: usize,
    workers: u64,
    charts: Vec<Chart>,
    range: &'static str,
    /// Seconds between reloads, clamped; 0: none.
    refresh: u64,
    width: f64,
    height: f64,
}

#[derive(Deserialize, Default)]
pub struct RangeQuery {
    range: Option<String>,
    /// Seconds between reloads of the page (none: no reload); clamped.
    refresh: Option<u64>,
}

/// The overview reloads itself at most this often (a `meta` refresh: no
/// script), and at least this often when asked to at all.
const REFRESH_MIN_S: u64 = 5;
const REFRESH_MAX_S: u64 = 300;

pub async fn overview(
    State(d): State<Arc<Dashboard>>,
    user: CurrentUser,
    Query(q): Query<RangeQuery>,
) -> Result<Response, Refusal> {
    // The chart's range, clamped to what is kept (a day).
    let (range, secs) = match q.range.as_deref() {
        Some("6h") => ("6h", 6 * 3600),
        Some("24h") => ("24h", 24 * 3600),
        _ => ("1h", 3600),
    };
    let samples = d
        .web
        .samples(std::time::Duration::from_secs(secs), d.settings.sample_interval)
        .await?;
    let stats = d.admin.stats().await?;
    let mut queues = queue_rows(&d).await?;
    let waiting = queues.iter().map(|q| q.size).sum();
    queues.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    let more_queues = queues.len().saturating_sub(10);
    queues.truncate(10);
    let (_, workers) = d.admin.workers_page(0, 0).await?;
    let rate = |pick: fn(&resq_redis::web::Sample) -> u64| match samples.as_slice() {
        [.., a, b] => {
            let dt = (b.at_ms.saturating_sub(a.at_ms)).max(1) as f64 / 1000.0;
            format!("{:.1}", pick(b).saturating_sub(pick(a)) as f64 / dt)
        }
        _ => "–".to_string(),
    };
    let page = Overview {
        nav: Nav::new(&d, &user, "overview"),
        processed: stats.processed,
        failed: stats.failed,
        failed_kept: d.admin.failed_count().await?,
        rate_processed: rate(|s| s.processed),
        rate_failed: rate(|s| s.failed),
        waiting,
        queues,
        more_queues,
        workers,
        charts: charts::charts(&samples),
        range,
        refresh: q
            .refresh
            .filter(|r| *r > 0)
            .map_or(0, |r| r.clamp(REFRESH_MIN_S, REFRESH_MAX_S)),
        width: charts::WIDTH,
        height: charts::HEIGHT,
    };
    Ok(render(&page))
}

#[derive(Template)]
#[template(path = "queues.html")]
struct Queues {
    nav: Nav,
    queues: Vec<QueueRow>,
    ruby: Vec<String>,
}

pub async fn queues(State(d): State<Arc<Dashboard>>, user: CurrentUser) -> Result<Response, Refusal> {
    let queues = queue_rows(&d).await?;
    let names: Vec<String> = queues.iter().map(|q| q.name.clone()).collect();
    let ruby = d.admin.served_by_ruby(&names).await?;
    Ok(render(&Queues {
        nav: Nav::new(&d, &user, "queues"),
        queues,
        ruby,
    }))
}

pub struct QueuedRow {
    pub handle: String,
    pub index: u64,
    pub job: JobView,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    nav: Nav,
    name: String,
    size: u64,
    paused: bool,
    cap: String,
    jobs: Vec<QueuedRow>,
    class: String,
    paging: Paging,
    prev: Option<u64>,
    next: Option<u64>,
}

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    offset: Option<u64>,
    limit: Option<u64>,
    class: Option<String>,
}

pub async fn queue(
    State(d): State<Arc<Dashboard>>,
    user: CurrentUser,
    Path(name): Path<String>,
    Query(q): Query<QueueQuery>,
) -> Result<Response, Refusal> {
    let rows = queue_rows(&d).await?;
    let Some(row) = rows.into_iter().find(|r| r.name == name) else {
        return Err(Refusal::NotFound("no such queue".into()));
    };
    let paging = Paging::clamp(q.offset, q.limit);
    let class = q.class.unwrap_or_default();
    let jobs = d.admin.queue_jobs(&name, paging.offset, paging.limit).await?;
    let jobs: Vec<QueuedRow> = jobs
        .into_iter()
        .map(|e| QueuedRow {
            job: view::job(&e.raw, &d.limits, &d.settings.masked_fields),
            handle: e.handle,
            index: e.index,
        })
        // The class search looks at this page (bounded work): it narrows
        // what the page shows.
        .filter(|r| class.is_empty() || r.job.class.contains(class.as_str()))
        .collect();
    Ok(render(&QueuePage {
        nav: Nav::new(&d, &user, "queues"),
        prev: paging.prev(),
        next: paging.next(row.size),
        name: row.name,
        size: row.size,
        paused: row.paused,
        cap: row.cap,
        jobs,
        class,
        paging,
    }))
}

pub struct WorkerRow {
    pub id: String,
    pub host: String,
    pub pid: String,
    pub queues: String,
    pub kind: &'static str,
    pub state: &'static str,
    pub started: String,
    pub heartbeat: String,
    pub processed: u64,
    pub failed: u64,
    pub current: Option<(String, String, JobView)>,
}

fn worker_row(d: &Dashboard, w: resq::store::WorkerRecord) -> WorkerRow {
    let mut parts = w.id.splitn(3, ':');
    let host = parts.next().unwrap_or("").to_string();
    let pid = parts.next().unwrap_or("").to_string();
    let queues = parts.next().unwrap_or("").to_string();
    WorkerRow {
        current: w.working.as_ref().map(|c| {
            (
                c.queue.clone(),
                c.run_at.to_string(),
                view::job(&c.payload, &d.limits, &d.settings.masked_fields),
            )
        }),
        kind: if w.resq { "resq" } else { "Ruby" },
        state: if w.paused {
            "paused"
        } else if w.busy {
            "working"
        } else {
            "idle"
        },
        started: when(w.started),
        heartbeat: when(w.heartbeat),
        processed: w.processed,
        failed: w.failed,
        id: w.id,
        host,
        pid,
        queues,
    }
}

#[derive(Template)]
#[template(path = "workers.html")]
struct Workers {
    nav: Nav,
    workers: Vec<WorkerRow>,
    total: u64,
    paging: Paging,
    prev: Option<u64>,
    next: Option<u64>,
}

pub async fn workers(
    State(d): State<Arc<Dashboard>>,
    user: CurrentUser,
    Query(q): Query<PageQuery>,
) -> Result<Response, Refusal> {
    let paging = q.paging();
    let (records, total) = d.admin.workers_page(paging.offset, paging.limit).await?;
    Ok(render(&Workers {
        nav: Nav::new(&d, &user, "workers"),
        workers: records.into_iter().map(|w| worker_row(&d, w)).collect(),
        total,
        prev: paging.prev(),
        next: paging.next(total),
        paging,
    }))
}

pub struct WorkingRow {
    pub worker: String,
    pub kind: &'static str,
    /// (queue, job) for each job in flight.
    pub jobs: Vec<(String, JobView)>,
    pub more: bool,
}

#[derive(Template)]
#[template(path = "working.html")]
struct Working {
    nav: Nav,
    rows: Vec<WorkingRow>,
    total: u64,
    prev: Option<u64>,
    next: Option<u64>,
    paging: Paging,
}

pub async fn working(
    State(d): State<Arc<Dashboard>>,
    user: CurrentUser,
    Query(q): Query<PageQuery>,
) -> Result<Response, Refusal> {
    let paging = q.paging();
    let (records, total) = d.admin.workers_page(paging.offset, paging.limit).await?;
    let mut rows = Vec::new();
    for w in records {
        let mut jobs: Vec<(String, JobView)> = if w.resq {
            d.admin
                .in_flight(&w.id, 0, IN_FLIGHT_SHOWN + 1)
                .await?
                .into_iter()
                .map(|(queue, raw)| (queue, view::job(&raw, &d.limits, &d.settings.masked_fields)))
                .collect()
        } else {
            Vec::new()
        };
        if jobs.is_empty() {
            if let Some(c) = &w.working {
                jobs.push((
                    c.queue.clone(),
                    view::job(&c.payload, &d.limits, &d.settings.masked_fields),
                ));
            }
        }
        let more = jobs.len() as u64 > IN_FLIGHT_SHOWN;
        jobs.truncate(IN_FLIGHT_SHOWN as usize);
        if !jobs.is_empty() {
            rows.push(WorkingRow {
                worker: w.id,
                kind: if w.resq { "resq" } else { "Ruby" },
                jobs,
                more,
            });
        }
    }
    Ok(render(&Working {
        nav: Nav::new(&d, &user, "working"),
        rows,
        total,
        prev: paging.prev(),
        next: paging.next(total),
        paging,
    }))
}

pub struct FailedRow {
    pub handle: String,
    /// Where it was in the list when read (actions look near it).
    pub index: u64,
    pub failed_at: String,
    pub queue: String,
    pub class: String,
    pub reason: String,
    pub error: String,
    pub worker: String,
    pub retryable: bool,
}

fn failed_row(e: &resq::FailedEntry) -> FailedRow {
    let r = &e.record;
    FailedRow {
        handle: e.handle.clone(),
        index: e.index.unwrap_or(0),
        failed_at: when(r.failed_at),
        queue: r.queue.clone().unwrap_or_default(),
        class: r.class.clone().unwrap_or_default(),
        reason: r.reason.clone().or_else(|| r.exception.clone()).unwrap_or_default(),
        error: clip(r.error.as_deref().unwrap_or(""), 300),
        worker: r.worker.clone().unwrap_or_default(),
        retryable: r.payload.is_some() && r.readable,
    }
}

#[derive(Template)]
#[template(path = "failed.html")]
struct Failed {
    nav: Nav,
    rows: Vec<FailedRow>,
    total: u64,
    filter_queue: String,
    filter_class: String,
    filter_reason: String,
    filtered: bool,
    paging: Paging,
    prev: Option<u64>,
    next: Option<u64>,
}

#[derive(Deserialize, Default)]
pub struct FailedQuery {
    offset: Option<u64>,
    limit: Option<u64>,
    queue: Option<String>,
    class: Option<String>,
    reason: Option<String>,
}

/// A filter from a form or a query: empty fields are no condition.
pub fn filter_of(queue: Option<String>, class: Option<String>, reason: Option<String>) -> FailedFilter {
    let keep = |v: Option<String>| {
        v.map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s.len() <= 256)
    };
    FailedFilter {
        queue: keep(queue),
        class: keep(class),
        reason: keep(reason),
    }
}

pub async fn failed(
    State(d): State<Arc<Dashboard>>,
    user: CurrentUser,
    Query(q): Query<FailedQuery>,
) -> Result<Response, Refusal> {
    let paging = Paging::clamp(q.offset, q.limit);
    let filter = filter_of(q.queue, q.class, q.reason);
    let total = d.admin.failed_count().await?;
    let (entries, next) = if filter.is_empty() {
        (d.admin.failed(paging.offset, paging.limit).await?, paging.next(total))
    } else {
        // A filtered page scans a bounded stretch from `offset`; the next
        // page starts where the scan stopped.
        d.admin
            .failed_scan(&filter, paging.offset, paging.limit, FAILED_SCAN)
            .await?
    };
    Ok(render(&Failed {
        nav: Nav::new(&d, &user, "failed"),
        rows: entries.iter().map(failed_row).collect(),
        total,
        filtered: !filter.is_empty(),
        filter_queue: filter.queue.unwrap_or_default(),
        filter_class: filter.class.unwrap_or_default(),
        filter_reason: filter.reason.unwrap_or_default(),
        prev: if filter_is_set(&q.offset) { paging.prev() } else { None },
        next,
        paging,
    }))
}

fn filter_is_set(offset: &Option<u64>) -> bool {
    offset.is_some_and(|o| o > 0)
}

#[derive(Template)]
#[template(path = "failure.html")]
struct Failure {
    nav: Nav,
    row: FailedRow,
    /// Every failure of the same job among the newest records.
    history: Vec<FailedRow>,
    backtrace: Vec<String>,
    job: Option<JobView>,
    retried_at: String,
}

#[derive(Deserialize, Default)]
pub struct AtQuery {
    /// Where the record was seen in its list (the lookup reads near it).
    at: Option<u64>,
}

pub async fn failure(
    State(d): State<Arc<Dashboard>>,
    user: CurrentUser,
    Path(handle): Path<String>,
    Query(q): Query<AtQuery>,
) -> Result<Response, Refusal> {
    let mut entry = d
        .admin
        .find_failed_in(&handle, resq::Search::Near(q.at.unwrap_or(0)))
        .await?;
    entry.index = entry.index.or(q.at);
    let job = entry
        .record
        .payload
        .as_deref()
        .map(|p| view::job(p, &d.limits, &d.settings.masked_fields));
    let history = match job.as_ref().map(|j| j.id.as_str()).filter(|id| !id.is_empty()) {
        Some(id) => d
            .admin
            .failures_of_job(id, HISTORY_SCAN)
            .await?
            .iter()
            .map(failed_row)
            .collect(),
        None => Vec::new(),
    };
    Ok(render(&Failure {
        nav: Nav::new(&d, &user, "failed"),
        history,
        row: failed_row(&entry),
        backtrace: entry.record.backtrace.iter().take(50).map(|l| clip(l, 500)).collect(),
        retried_at: when(entry.record.retried_at),
        job,
    }))
}

pub struct ScheduledRow {
    pub handle: String,
    pub index: u64,
    pub due: String,
    pub queue: String,
    pub job: JobView,
}

#[derive(Template)]
#[template(path = "scheduled.html")]
struct Scheduled {
    nav: Nav,
    title: &'static str,
    base: &'static str,
    rows: Vec<ScheduledRow>,
    total: u64,
    paging: Paging,
    prev: Option<u64>,
    next: Option<u64>,
}

async fn schedule_page(d: &Dashboard, user: &CurrentUser, which: Schedule, q: PageQuery) -> Result<Response, Refusal> {
    let paging = q.paging();
    let total = d.admin.schedule_len(which).await?;
    let rows = d
        .admin
        .schedule(which, paging.offset, paging.limit)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, e)| ScheduledRow {
            handle: e.handle(),
            index: paging.offset + i as u64,
            due: e.due.to_string(),
            queue: e.queue.clone().unwrap_or_default(),
            job: view::job(&e.job.payload, &d.limits, &d.settings.masked_fields),
        })
        .collect();
    let (title, base, active) = match which {
        Schedule::Scheduled => ("Scheduled", "scheduled", "scheduled"),
        Schedule::Retry => ("Retry set", "retries", "retries"),
    };
    Ok(render(&Scheduled {
        nav: Nav::new(d, user, active),
        title,
        base,
        rows,
        total,
        prev: paging.prev(),
        next: paging.next(total),
        paging,
    }))
}

pub async fn scheduled(
    State(d): State<Arc<Dashboard>>,
    user: CurrentUser,
    Query(q): Query<PageQuery>,
) -> Result<Response, Refusal> {
    schedule_page(&d, &user, Schedule::Scheduled, q).await
}

pub async fn retries(
    State(d): State<Arc<Dashboard>>,
    user: CurrentUser,
    Query(q): Query<PageQuery>,
) -> Result<Response, Refusal> {
    schedule_page(&d, &user, Schedule::Retry, q).await
}

pub struct ExpiredRow {
    pub handle: String,
    pub expired_at: String,
    pub queue: String,
    pub job: JobView,
}

#[derive(Template)]
#[template(path = "expired.html")]
struct Expired {
    nav: Nav,
    rows: Vec<ExpiredRow>,
    total: u64,
    paging: Paging,
    prev: Option<u64>,
    next: Option<u64>,
}

pub async fn expired(
    State(d): State<Arc<Dashboard>>,
    user: CurrentUser,
    Query(q): Query<PageQuery>,
) -> Result<Response, Refusal> {
    let paging = q.paging();
    let (records, total) = d.admin.expired(paging.offset, paging.limit).await?;
    let rows = records
        .iter()
        .map(|r| ExpiredRow {
            handle: resq::admin::expired_handle(r),
            expired_at: when(r.expired_at),
            queue: r.queue.clone().unwrap_or_default(),
            job: view::job(&r.payload, &d.limits, &d.settings.masked_fields),
        })
        .collect();
    Ok(render(&Expired {
        nav: Nav::new(&d, &user, "expired"),
        rows,
        total,
        prev: paging.prev(),
        next: paging.next(total.min(1000)),
        paging,
    }))
}

pub struct CronView {
    pub name: String,
    pub schedule: String,
    pub zone: String,
    pub class: String,
    pub queue: String,
    pub next: String,
    pub last: String,
}

#[derive(Template)]
#[template(path = "cron.html")]
struct Cron {
    nav: Nav,
    rows: Vec<CronView>,
    orphans: Vec<(String, String)>,
}

pub async fn cron(State(d): State<Arc<Dashboard>>, user: CurrentUser) -> Result<Response, Refusal> {
    let last: BTreeMap<String, UnixMs> = d.admin.cron_last_fired().await?.into_iter().collect();
    let now = UnixMs::now();
    let rows = d
        .cron
        .iter()
        .map(|c| CronView {
            name: c.entry.name.clone(),
            schedule: c.entry.expression().to_string(),
            zone: c.entry.time_zone().to_string(),
            class: c.entry.class.clone(),
            queue: c.queue.clone(),
            next: when(c.entry.next_tick(now)),
            last: when(last.get(&c.entry.name).copied()),
        })
        .collect();
    let orphans = last
        .iter()
        .filter(|(n, _)| !d.cron.iter().any(|c| &c.entry.name == *n))
        .take(100)
        .map(|(n, t)| (clip(n, 64), t.to_string()))
        .collect();
    Ok(render(&Cron {
        nav: Nav::new(&d, &user, "cron"),
        rows,
        orphans,
    }))
}

/// The INFO fields the stats page shows: none holds a secret or a
/// configuration value (no `CONFIG`, no `requirepass`, no paths).
const INFO_SHOWN: &[&str] = &[
    "redis_version",
    "redis_mode",
    "uptime_in_seconds",
    "connected_clients",
    "blocked_clients",
    "used_memory_human",
    "used_memory_peak_human",
    "maxmemory_human",
    "maxmemory_policy",
    "mem_fragmentation_ratio",
    "total_commands_processed",
    "instantaneous_ops_per_sec",
    "rejected_connections",
    "expired_keys",
    "evicted_keys",
    "keyspace_hits",
    "keyspace_misses",
    "role",
    "connected_slaves",
    "aof_enabled",
    "rdb_last_bgsave_status",
];

#[derive(Template)]
#[template(path = "stats.html")]
struct Stats {
    nav: Nav,
    counters: Vec<(&'static str, String)>,
    info: Vec<(&'static str, String)>,
}

pub async fn stats(State(d): State<Arc<Dashboard>>, user: CurrentUser) -> Result<Response, Refusal> {
    let s = d.admin.stats().await?;
    let info_text = d.web.info().await?;
    let fields: BTreeMap<&str, &str> = info_text.lines().filter_map(|l| l.trim_end().split_once(':')).collect();
    let info = INFO_SHOWN
        .iter()
        .filter_map(|k| fields.get(k).map(|v| (*k, clip(v, 100))))
        .collect();
    let counters = vec![
        ("processed", s.processed.to_string()),
        ("failed", s.failed.to_string()),
        ("failure records kept", d.admin.failed_count().await?.to_string()),
        ("failure records trimmed (over the cap)", s.failed_trimmed.to_string()),
        (
            "scheduled",
            d.admin.schedule_len(Schedule::Scheduled).await?.to_string(),
        ),
        (
            "waiting to retry",
            d.admin.schedule_len(Schedule::Retry).await?.to_string(),
        ),
        (
            "CSP violations reported since start",
            d.csp_violations.load(Ordering::Relaxed).to_string(),
        ),
    ];
    Ok(render(&Stats {
        nav: Nav::new(&d, &user, "stats"),
        counters,
        info,
    }))
}

#[derive(Template)]
#[template(path = "audit.html")]
struct Audit {
    nav: Nav,
    entries: Vec<AuditRow>,
}

/// An audit entry: its stream id, when, and its other fields.
type AuditRow = (String, String, Vec<(String, String)>);

pub async fn audit(State(d): State<Arc<Dashboard>>, user: CurrentUser) -> Result<Response, Refusal> {
    let entries = d
        .api
        .audit_last(AUDIT_SHOWN)
        .await?
        .into_iter()
        .rev()
        .map(|(id, fields)| {
            let at = fields
                .iter()
                .find(|(k, _)| k == "at_ms")
                .and_then(|(_, v)| v.parse().ok())
                .map(|ms| UnixMs(ms).to_string())
                .unwrap_or_default();
            let shown = fields
                .into_iter()
                .filter(|(k, _)| k != "at_ms")
                .map(|(k, v)| (clip(&k, 40), clip(&v, 200)))
                .collect();
            (id, at, shown)
        })
        .collect();
    Ok(render(&Audit {
        nav: Nav::new(&d, &user, "audit"),
        entries,
    }))
}

#[derive(Template)]
#[template(path = "users.html")]
struct Users {
    nav: Nav,
    users: Vec<(String, &'static str, String)>,
    roles: [&'static str; 3],
}

pub async fn users(State(d): State<Arc<Dashboard>>, user: CurrentUser) -> Result<Response, Refusal> {
    user.require(Role::Admin)?;
    let users = d
        .web
        .users()
        .await?
        .into_iter()
        .map(|u: UserRecord| (u.name, u.role.as_str(), UnixMs(u.created_at_ms).to_string()))
        .collect();
    Ok(render(&Users {
        nav: Nav::new(&d, &user, "users"),
        users,
        roles: ["viewer", "operator", "admin"],
    }))
}

pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub classes: String,
    pub queues: String,
    pub rate: String,
    pub created: String,
    pub expires: String,
    pub revoked: bool,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct Tokens {
    nav: Nav,
    tokens: Vec<TokenRow>,
}

pub async fn tokens(State(d): State<Arc<Dashboard>>, user: CurrentUser) -> Result<Response, Refusal> {
    user.require(Role::Admin)?;
    let tokens = d
        .api
        .tokens()
        .await?
        .into_iter()
        .map(|t| TokenRow {
            revoked: t.revoked_at_ms.is_some(),
            classes: t.classes.join(", "),
            queues: t.queues.join(", "),
            rate: format!("{}/s, burst {}", t.rate_per_s, t.burst),
            created: UnixMs(t.created_at_ms).to_string(),
            expires: t
                .expires_at_ms
                .map(|e| UnixMs(e).to_string())
                .unwrap_or_else(|| "never".into()),
            id: t.id,
            name: t.name,
        })
        .collect();
    Ok(render(&Tokens {
        nav: Nav::new(&d, &user, "tokens"),
        tokens,
    }))
}
