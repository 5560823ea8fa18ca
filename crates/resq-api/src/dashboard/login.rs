//! Logging in and out. One answer for every failed login (unknown name,
//! wrong password, locked out, limited), after the same work: a password
//! is verified against a decoy hash when the name is unknown. Limits per
//! client IP and per name typed are shared by every replica (GCRA in
//! Redis); five failures in a row lock a name out for 30 s, doubling with
//! each further failure up to 15 min. A successful login starts a session
//! under a new id.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use resq::UnixMs;
use resq_redis::api::{Limit, RateDecision};
use serde::Deserialize;

use super::session::{cookie, random_token, set_cookie, sha256_hex};
use super::{audited, render, ClientIp, Dashboard, Refusal};

/// Failures in a row before a name is locked out.
const LOCK_AFTER: u64 = 5;
/// The first lockout; each further failure doubles it.
const FIRST_LOCK: Duration = Duration::from_secs(30);
const LONGEST_LOCK: Duration = Duration::from_secs(15 * 60);
/// The answer to every failed login.
const FAILED: &str = "Wrong name or password, or too many attempts: wait a moment and try again.";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    token: &'a str,
    message: &'a str,
    no_users: bool,
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    token: String,
}

/// The login form, with its anti-forgery token in a cookie and the form.
pub async fn form(State(d): State<Arc<Dashboard>>, headers: HeaderMap) -> Result<Response, Refusal> {
    if d.current_user(&headers).await?.is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    page(&d, "", StatusCode::OK).await
}

async fn page(d: &Dashboard, message: &str, status: StatusCode) -> Result<Response, Refusal> {
    let token = random_token()?;
    let no_users = d.web.user_count().await? == 0;
    let mut response = render(&LoginPage {
        token: &token,
        message,
        no_users,
    });
    *response.status_mut() = status;
    if let Ok(v) = set_cookie(d.login_cookie(), &token, d.settings.secure_cookies, None).parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

pub async fn submit(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, Refusal> {
    // The form must come from this dashboard's login page (login CSRF).
    let expected = cookie(&headers, d.login_cookie()).unwrap_or("");
    if expected.is_empty() || !crate::secret::same(expected.as_bytes(), form.token.as_bytes()) {
        return Err(Refusal::BadToken);
    }
    let name = form.name.trim();
    let name_hash = sha256_hex(name);
    let limits = [
        Limit {
            key: d.web_rate_key("ip", &ip.to_string()),
            per_s: 10.0 / 60.0,
            burst: 10,
            cost: 1,
        },
        Limit {
            key: d.web_rate_key("user", &name_hash),
            per_s: 5.0 / 60.0,
            burst: 5,
            cost: 1,
        },
    ];
    let limited = matches!(d.web.login_rate(&limits).await?, RateDecision::Refused { .. });
    let lockout = d.web.lockout(&name_hash).await?;
    let now = UnixMs::now();
    let locked = lockout.failures >= LOCK_AFTER && now.0 < lockout.last_ms.saturating_add(lock_for(lockout.failures));
    if limited || locked || name.is_empty() || name.len() > 64 {
        audited(&d, name, ip, "login", name, "refused: limited or locked");
        return page(&d, FAILED, StatusCode::TOO_MANY_REQUESTS).await;
    }
    let user = d.web.user(name).await?;
    let password = form.password;
    let stored = user.as_ref().map(|u| u.hash.clone());
    let ok = tokio::task::spawn_blocking(move || super::password::verify(&password, stored.as_deref()))
        .await
        .unwrap_or(false);
    if !ok {
        d.web.login_failed(&name_hash, now).await?;
        audited(&d, name, ip, "login", name, "refused: wrong name or password");
        return page(&d, FAILED, StatusCode::UNAUTHORIZED).await;
    }
    d.web.login_succeeded(&name_hash).await?;
    // A fresh id, whatever the browser sent (no session fixation).
    if let Some(old) = cookie(&headers, d.session_cookie()) {
        d.web.end_session(&sha256_hex(old)).await?;
    }
    let set = d.begin_session(name).await?;
    audited(&d, name, ip, "login", name, "ok");
    let mut response = Redirect::to("/").into_response();
    let clear_login = set_cookie(d.login_cookie(), "", d.settings.secure_cookies, Some(Duration::ZERO));
    for c in [set, clear_login] {
        if let Ok(v) = c.parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(response)
}

/// How long `failures` in a row lock a name: 30 s at the fifth, doubling,
/// at most 15 min.
fn lock_for(failures: u64) -> u64 {
    let doublings = failures.saturating_sub(LOCK_AFTER).min(10) as u32;
    let ms = FIRST_LOCK.as_millis() as u64 * 2u64.pow(doublings);
    ms.min(LONGEST_LOCK.as_millis() as u64)
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

pub async fn logout(
    State(d): State<Arc<Dashboard>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Result<Response, Refusal> {
    if let Some(user) = d.current_user(&headers).await? {
        if !crate::secret::same(user.csrf.as_bytes(), form.csrf.as_bytes()) {
            return Err(Refusal::BadToken);
        }
        d.web.end_session(&user.session_hash).await?;
        audited(&d, &user.name, ip, "logout", &user.name, "ok");
    }
    let mut response = Redirect::to("/login").into_response();
    let gone = set_cookie(d.session_cookie(), "", d.settings.secure_cookies, Some(Duration::ZERO));
    if let Ok(v) = gone.parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

impl Dashboard {
    fn web_rate_key(&self, kind: &str, name: &str) -> String {
        self.api.keys().web_rate(kind, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_double_and_are_capped() {
        assert_eq!(lock_for(5), 30_000);
        assert_eq!(lock_for(6), 60_000);
        assert_eq!(lock_for(9), 480_000);
        assert_eq!(lock_for(10), 900_000);
        assert_eq!(lock_for(500), 900_000);
    }
}
