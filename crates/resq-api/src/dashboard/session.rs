//! Sessions: a random id in an HttpOnly, SameSite=Strict cookie
//! (`__Host-` and Secure when the browser talks HTTPS), the SHA-256 of the
//! id as the Redis key, a fresh id at every login, idle and absolute
//! timeouts, and the user's role read again on every request (a removed
//! user, or one whose password or role changed, is logged out at once).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use resq::UnixMs;
use resq_redis::web::{Role, SessionRecord};
use sha2::{Digest, Sha256};

use super::{Dashboard, Refusal};

/// Who is asking, with the token their forms carry.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub name: String,
    pub role: Role,
    pub csrf: String,
    pub session_hash: String,
}

impl CurrentUser {
    /// Refuses unless the user's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), Refusal> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Refusal::Forbidden(format!("this needs the {} role", role.as_str())))
        }
    }

    pub fn can_operate(&self) -> bool {
        self.role >= Role::Operator
    }

    pub fn is_admin(&self) -> bool {
        self.role >= Role::Admin
    }
}

/// 32 random bytes, unpadded base64url.
pub fn random_token() -> Result<String, Refusal> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| Refusal::Unavailable)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of cookie `name` in the request, when there is one.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure when
/// `secure`; `max_age` None ends with the browser, Some(0) deletes.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<Duration>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    c
}

impl Dashboard {
    /// The session cookie's name: `__Host-` (Secure, this host only) when
    /// the browser talks HTTPS.
    pub fn session_cookie(&self) -> &'static str {
        if self.settings.secure_cookies {
            "__Host-resq-session"
        } else {
            "resq-session"
        }
    }

    /// The login form's cookie (its anti-forgery token before a session).
    pub fn login_cookie(&self) -> &'static str {
        if self.settings.secure_cookies {
            "__Host-resq-login"
        } else {
            "resq-login"
        }
    }

    /// Starts a session for `user` under a new id: returns its cookie.
    pub async fn begin_session(&self, user: &resq_redis::web::UserRecord) -> Result<String, Refusal> {
        let id = random_token()?;
        let record = SessionRecord {
            user: user.name.clone(),
            csrf: random_token()?,
            created_at_ms: UnixMs::now().0,
            user_changed_at_ms: user.changed_at_ms,
        };
        self.web
            .create_session(&sha256_hex(&id), &record, self.settings.idle_timeout)
            .await?;
        Ok(set_cookie(
            self.session_cookie(),
            &id,
            self.settings.secure_cookies,
            None,
        ))
    }

    /// The user behind the request's session, or None (no cookie, expired,
    /// past its absolute lifetime, user removed or changed since login).
    pub async fn current_user(&self, headers: &HeaderMap) -> Result<Option<CurrentUser>, Refusal> {
        let Some(id) = cookie(headers, self.session_cookie()).filter(|v| !v.is_empty() && v.len() <= 128) else {
            return Ok(None);
        };
        let hash = sha256_hex(id);
        let Some(session) = self.web.touch_session(&hash, self.settings.idle_timeout).await? else {
            return Ok(None);
        };
        let now = UnixMs::now().0;
        let lifetime = u64::try_from(self.settings.absolute_timeout.as_millis()).unwrap_or(u64::MAX);
        if session.created_at_ms.saturating_add(lifetime) < now {
            self.web.end_session(&hash).await?;
            return Ok(None);
        }
        let Some(user) = self.web.user(&session.user).await? else {
            self.web.end_session(&hash).await?;
            return Ok(None);
        };
        if user.changed_at_ms != session.user_changed_at_ms {
            self.web.end_session(&hash).await?;
            return Ok(None);
        }
        Ok(Some(CurrentUser {
            name: user.name,
            role: user.role,
            csrf: session.csrf,
            session_hash: hash,
        }))
    }
}

/// A page or action that needs a login: without one, the browser goes to
/// the login page.
impl FromRequestParts<Arc<Dashboard>> for CurrentUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<Dashboard>) -> Result<Self, Self::Rejection> {
        match state.current_user(&parts.headers).await {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(Redirect::to("/login").into_response()),
            Err(refusal) => Err(refusal.into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; resq-session=abc; resq-session-x=no".parse().unwrap(),
        );
        assert_eq!(cookie(&h, "resq-session"), Some("abc"));
        assert_eq!(cookie(&h, "resq"), None);
    }

    #[test]
    fn set_cookie_has_every_flag() {
        let c = set_cookie("__Host-resq-session", "v", true, None);
        assert_eq!(c, "__Host-resq-session=v; Path=/; HttpOnly; SameSite=Strict; Secure");
        assert!(set_cookie("x", "", false, Some(Duration::ZERO)).ends_with("Max-Age=0"));
    }
}
