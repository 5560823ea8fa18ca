//! The actions: each checks the role it needs and the session's form token
//! (the cross-site check ran before), acts through the admin layer, audits
//! itself with the user, and sends the browser back to a page (303).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use resq::store::Schedule;
use resq::UnixMs;
use resq_redis::web::{Role, UserRecord};
use serde::Deserialize;

use super::pages::filter_of;
use super::{audited, password, ClientIp, CurrentUser, Dashboard, Refusal};

/// Every form's token.
#[derive(Deserialize)]
pub struct Token {
    csrf: String,
}

/// A form on a record of a list: its token, and where the record was.
#[derive(Deserialize)]
pub struct AtForm {
    csrf: String,
    /// The record's position when the page was drawn (the lookup reads a
    /// bounded window around it).
    at: Option<u64>,
}

impl AtForm {
    fn search(&self) -> resq::Search {
        resq::Search::Near(self.at.unwrap_or(0))
    }
}

/// Most failures one bulk action takes (run it again for more).
const BULK_MAX: u64 = 10_000;
/// Most failure records one bulk action reads looking for them.
const BULK_SCAN: u64 = 200_000;

/// Checks the role and the form's token.
fn allowed(user: &CurrentUser, role: Role, csrf: &str) -> Result<(), Refusal> {
    user.require(role)?;
    if crate::secret::same(user.csrf.as_bytes(), csrf.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::BadToken)
    }
}

/// Audits the outcome of `result` and turns it into the answer.
fn finish(
    d: &Dashboard,
    user: &CurrentUser,
    ip: IpAddr,
    action: &str,
    target: &str,
    result: Result<(), Refusal>,
    back: &str,
) -> Result<Response, Refusal> {
    match result {
        Ok(()) => {
            audited(d, &user.name, ip, action, target, "ok");
            Ok(Redirect::to(back).into_response())
        }
        Err(refusal) => {
            audited(d, &user.name, ip, action, target, &format!("refused: {refusal}"));
            Err(refusal)
        }
    }
}

/// A path segment, percent-encoded for a redirect.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn pause(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Path(queue): Path<String>,
    Form(f): Form<Token>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Operator, &f.csrf)?;
    let r = d.admin.set_queue_paused(&queue, true).await.map_err(Refusal::from);
    finish(
        &d,
        &user,
        ip,
        "queue.pause",
        &queue,
        r,
        &format!("/queues/{}", seg(&queue)),
    )
}

pub async fn resume(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Path(queue): Path<String>,
    Form(f): Form<Token>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Operator, &f.csrf)?;
    let r = d.admin.set_queue_paused(&queue, false).await.map_err(Refusal::from);
    finish(
        &d,
        &user,
        ip,
        "queue.resume",
        &queue,
        r,
        &format!("/queues/{}", seg(&queue)),
    )
}

#[derive(Deserialize)]
pub struct CapForm {
    csrf: String,
    /// Empty removes the cap.
    cap: String,
}

pub async fn cap(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Path(queue): Path<String>,
    Form(f): Form<CapForm>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Operator, &f.csrf)?;
    let cap = match f.cap.trim() {
        "" => None,
        n => Some(
            n.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Refusal::BadRequest("a cap is a whole number above 0, or empty for none".into()))?,
        ),
    };
    let r = d.admin.set_queue_cap(&queue, cap).await.map_err(Refusal::from);
    let target = format!("{queue} cap={}", cap.map_or("none".into(), |c| c.to_string()));
    finish(
        &d,
        &user,
        ip,
        "queue.cap",
        &target,
        r,
        &format!("/queues/{}", seg(&queue)),
    )
}

#[derive(Deserialize)]
pub struct RemoveQueued {
    csrf: String,
    handle: String,
    index: u64,
}

pub async fn remove_queued(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Path(queue): Path<String>,
    Form(f): Form<RemoveQueued>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Operator, &f.csrf)?;
    let r = d
        .admin
        .remove_queued(&queue, &f.handle, f.index)
        .await
        .map_err(Refusal::from);
    let target = format!("{queue} {}", f.handle);
    finish(
        &d,
        &user,
        ip,
        "queue.remove_job",
        &target,
        r,
        &format!("/queues/{}", seg(&queue)),
    )
}

pub async fn retry_failed(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Path(handle): Path<String>,
    Form(f): Form<AtForm>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Operator, &f.csrf)?;
    let r = d
        .admin
        .retry_failed_in(&handle, f.search())
        .await
        .map_err(Refusal::from);
    finish(&d, &user, ip, "failed.retry", &handle, r, "/failed")
}

pub async fn remove_failed(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Path(handle): Path<String>,
    Form(f): Form<AtForm>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Operator, &f.csrf)?;
    let r = d
        .admin
        .remove_failed_in(&handle, f.search())
        .await
        .map_err(Refusal::from);
    finish(&d, &user, ip, "failed.remove", &handle, r, "/failed")
}

#[derive(Deserialize)]
pub struct BulkForm {
    csrf: String,
    /// `retry` or `remove`.
    what: String,
    /// The box ticked (needed to remove every failure).
    confirm: Option<String>,
    queue: Option<String>,
    class: Option<String>,
    reason: Option<String>,
}

/// Retries or removes every failure a filter takes (no filter: all).
pub async fn bulk_failed(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Form(f): Form<BulkForm>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Operator, &f.csrf)?;
    let filter = filter_of(f.queue, f.class, f.reason);
    let target = format!(
        "queue={} class={} reason={}",
        filter.queue.as_deref().unwrap_or("*"),
        filter.class.as_deref().unwrap_or("*"),
        filter.reason.as_deref().unwrap_or("*")
    );
    // Removing every failure needs the box ticked, as clearing does.
    if f.what == "remove" && filter.is_empty() && f.confirm.as_deref() != Some("yes") {
        let r = Err(Refusal::BadRequest("tick the box to remove every failure".into()));
        return finish(&d, &user, ip, "failed.bulk_remove", &target, r, "/failed");
    }
    // A bounded batch: at most BULK_MAX matches among BULK_SCAN records.
    let (entries, _) = d.admin.failed_scan(&filter, 0, BULK_MAX, BULK_SCAN).await?;
    let found = entries.len();
    let (action, r) = match f.what.as_str() {
        "retry" => (
            "failed.bulk_retry",
            d.admin
                .retry_entries(entries)
                .await
                .map(|report| {
                    tracing::info!(
                        found,
                        retried = report.retried,
                        skipped = report.skipped.len(),
                        "bulk retry"
                    )
                })
                .map_err(Refusal::from),
        ),
        "remove" => (
            "failed.bulk_remove",
            d.admin
                .remove_entries(&entries)
                .await
                .map(|removed| tracing::info!(found, removed, "bulk remove"))
                .map_err(Refusal::from),
        ),
        _ => (
            "failed.bulk",
            Err(Refusal::BadRequest("the action is retry or remove".into())),
        ),
    };
    let target = if found as u64 == BULK_MAX {
        format!("{target} (the first {BULK_MAX}; run it again for more)")
    } else {
        format!("{target} ({found})")
    };
    finish(&d, &user, ip, action, &target, r, "/failed")
}

#[derive(Deserialize)]
pub struct ClearForm {
    csrf: String,
    /// The box the operator ticks to say they mean it.
    confirm: Option<String>,
}

pub async fn clear_failed(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Form(f): Form<ClearForm>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Operator, &f.csrf)?;
    let r = if f.confirm.as_deref() == Some("yes") {
        d.admin.clear_failed().await.map(drop).map_err(Refusal::from)
    } else {
        Err(Refusal::BadRequest("tick the box to clear every failure".into()))
    };
    finish(&d, &user, ip, "failed.clear", "all", r, "/failed")
}

async fn schedule_action(
    d: &Dashboard,
    peer: IpAddr,
    user: &CurrentUser,
    which: Schedule,
    handle: &str,
    what: &str,
    form: &AtForm,
) -> Result<Response, Refusal> {
    allowed(user, Role::Operator, &form.csrf)?;
    let search = form.search();
    let (name, back) = match which {
        Schedule::Scheduled => ("scheduled", "/scheduled"),
        Schedule::Retry => ("retries", "/retries"),
    };
    let r = match what {
        "remove" => d
            .admin
            .remove_scheduled_in(which, handle, search)
            .await
            .map_err(Refusal::from),
        "run" => d
            .admin
            .run_scheduled_now_in(which, handle, search)
            .await
            .map(drop)
            .map_err(Refusal::from),
        _ => return Err(Refusal::NotFound("no such action".into())),
    };
    finish(d, user, peer, &format!("{name}.{what}"), handle, r, back)
}

pub async fn scheduled(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Path((handle, what)): Path<(String, String)>,
    Form(f): Form<AtForm>,
) -> Result<Response, Refusal> {
    schedule_action(&d, ip, &user, Schedule::Scheduled, &handle, &what, &f).await
}

pub async fn retries(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Path((handle, what)): Path<(String, String)>,
    Form(f): Form<AtForm>,
) -> Result<Response, Refusal> {
    schedule_action(&d, ip, &user, Schedule::Retry, &handle, &what, &f).await
}

pub async fn remove_expired(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Path(handle): Path<String>,
    Form(f): Form<Token>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Operator, &f.csrf)?;
    let r = d.admin.remove_expired(&handle).await.map_err(Refusal::from);
    finish(&d, &user, ip, "expired.remove", &handle, r, "/expired")
}

/// Fires a recurring entry's job now, through the policy (signed like any
/// other); its schedule is unchanged.
pub async fn fire_cron(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Path(name): Path<String>,
    Form(f): Form<Token>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Operator, &f.csrf)?;
    let Some(row) = d.cron.iter().find(|c| c.entry.name == name) else {
        return Err(Refusal::NotFound("no recurring entry has this name here".into()));
    };
    let r = d
        .client
        .enqueue_raw(&row.entry.class, row.entry.args.clone(), &row.queue)
        .await
        .map(drop)
        .map_err(|e| match e {
            // Redis's own words (NOPERM, OOM...) stay in the log.
            resq::EnqueueError::Store(e) => Refusal::from(e),
            other => Refusal::BadRequest(other.to_string()),
        });
    finish(&d, &user, ip, "cron.fire", &name, r, "/cron")
}

#[derive(Deserialize)]
pub struct AddUser {
    csrf: String,
    name: String,
    role: String,
    password: String,
}

pub async fn add_user(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Form(f): Form<AddUser>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Admin, &f.csrf)?;
    let r = async {
        check_user_name(&f.name)?;
        let role: Role = f.role.parse().map_err(Refusal::BadRequest)?;
        let password = f.password;
        let hash = tokio::task::spawn_blocking(move || password::hash(&password))
            .await
            .map_err(|_| Refusal::Unavailable)?
            .map_err(|e| Refusal::BadRequest(e.to_string()))?;
        let now = UnixMs::now().0;
        let record = UserRecord {
            name: f.name.clone(),
            role,
            hash,
            created_at_ms: now,
            changed_at_ms: now,
        };
        if d.web.create_user(&record).await? {
            Ok(())
        } else {
            Err(Refusal::BadRequest("a user has this name already".into()))
        }
    }
    .await;
    let target = format!("{} role={}", f.name, f.role);
    finish(&d, &user, ip, "user.add", &target, r, "/users")
}

/// A user name by the store's rule.
pub fn check_user_name(name: &str) -> Result<(), Refusal> {
    if resq_redis::web::valid_user_name(name) {
        Ok(())
    } else {
        Err(Refusal::BadRequest(resq_redis::web::USER_NAME_RULE.into()))
    }
}

pub async fn remove_user(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Path(name): Path<String>,
    Form(f): Form<Token>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Admin, &f.csrf)?;
    let r = if name == user.name {
        Err(Refusal::BadRequest(
            "you cannot remove yourself here (use `resq user remove`)".into(),
        ))
    } else if d.web.remove_user(&name).await? {
        Ok(())
    } else {
        Err(Refusal::NotFound("no such user".into()))
    };
    finish(&d, &user, ip, "user.remove", &name, r, "/users")
}

#[derive(Deserialize)]
pub struct RoleForm {
    csrf: String,
    role: String,
}

pub async fn set_role(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Path(name): Path<String>,
    Form(f): Form<RoleForm>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Admin, &f.csrf)?;
    let r = async {
        let role: Role = f.role.parse().map_err(Refusal::BadRequest)?;
        let mut record = d
            .web
            .user(&name)
            .await?
            .ok_or_else(|| Refusal::NotFound("no such user".into()))?;
        record.role = role;
        record.changed_at_ms = UnixMs::now().0;
        d.web.save_user(&record).await?;
        Ok(())
    }
    .await;
    let target = format!("{name} role={}", f.role);
    finish(&d, &user, ip, "user.role", &target, r, "/users")
}

pub async fn revoke_token(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(f): Form<Token>,
) -> Result<Response, Refusal> {
    allowed(&user, Role::Admin, &f.csrf)?;
    let r = match d.api.token(&id).await? {
        (Some(_), _) => d.api.revoke(&id, UnixMs::now()).await.map_err(Refusal::from),
        (None, _) => Err(Refusal::NotFound("no such token".into())),
    };
    finish(&d, &user, ip, "token.revoke", &id, r, "/tokens")
}
