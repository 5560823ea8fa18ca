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
            // IPv6 by its /64: one host usually holds a whole one.
            key: d.web_rate_key("ip", &crate::server::failure_key(ip)),
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
    let user = if name.is_empty() || name.len() > 64 {
        None
    } else {
        d.web.user(name).await?
    };
    // The audit names a user who exists; a name nobody has (or a password
    // typed into the name field) only by a hash.
    let who = match &user {
        Some(u) => u.name.clone(),
        // ok: a SHA-256 in hex is 64 ASCII characters.
        None => format!("unknown name {}", &name_hash[..12]),
    };
    let limited = matches!(d.web.login_rate(&limits).await?, RateDecision::Refused { .. });
    // Counted before the password is checked: parallel guesses cannot all
    // pass a lock that one of them would have started.
    let now = UnixMs::now();
    let open = !limited
        && d.web
            .login_attempt(&name_hash, now, LOCK_AFTER, FIRST_LOCK, LONGEST_LOCK)
            .await?;
    if !open || name.is_empty() || name.len() > 64 {
        audited(&d, &who, ip, "login", &who, "refused: limited or locked");
        return page(&d, FAILED, StatusCode::TOO_MANY_REQUESTS).await;
    }
    let stored = user.as_ref().map(|u| u.hash.clone());
    let ok = super::password::verify_limited(form.password, stored).await;
    let Some(user) = user.filter(|_| ok) else {
        audited(&d, &who, ip, "login", &who, "refused: wrong name or password");
        return page(&d, FAILED, StatusCode::UNAUTHORIZED).await;
    };
    d.web.login_succeeded(&name_hash).await?;
    // A fresh id, whatever the browser sent (no session fixation).
    if let Some(old) = cookie(&headers, d.session_cookie()) {
        d.web.end_session(&sha256_hex(old)).await?;
    }
    let set = d.begin_session(&user).await?;
    audited(&d, &user.name, ip, "login", &user.name, "ok");
    let mut response = Redirect::to("/").into_response();
    let clear_login = set_cookie(d.login_cookie(), "", d.settings.secure_cookies, Some(Duration::ZERO));
    for c in [set, clear_login] {
        if let Ok(v) = c.parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(response)
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
