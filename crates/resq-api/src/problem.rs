//! Every error the API answers has one shape: RFC 9457 problem details
//! (`application/problem+json`), with a stable `reason` a client can act
//! on and the request id to quote. A detail never carries a secret: it
//! names fields, classes and queues the caller sent, clipped.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status and `reason` say what happened.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable: `unauthorized`, `forbidden_class`,
    /// `forbidden_queue`, `unregistered_class`, `invalid_args`,
    /// `malformed_json`, `invalid_request`, `unsupported_media_type`,
    /// `payload_too_large`, `rate_limited`, `throttled`, `queue_full`,
    /// `redis_memory`, `idempotency_conflict`, `idempotency_in_progress`,
    /// `unavailable`, `not_replicated`, `not_found`, `request_timeout`, `internal`.
    pub reason: &'static str,
    /// Field paths that failed their rules (invalid arguments).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// The batch entry at fault (bulk requests), from 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub request_id: String,
    #[serde(skip)]
    pub headers: HeaderMap,
}

impl Problem {
    pub fn new(status: StatusCode, reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            reason,
            fields: Vec::new(),
            index: None,
            request_id: String::new(),
            headers: HeaderMap::new(),
        }
    }

    /// The one answer for every authentication failure: it does not say
    /// whether the token was missing, unknown, revoked or expired.
    pub fn unauthorized() -> Self {
        let mut p = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer resq_...)",
        );
        p.headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"resq\""),
        );
        p
    }

    /// 429 or 503, with `Retry-After` in whole seconds (at least 1).
    pub fn retry_after(
        status: StatusCode,
        reason: &'static str,
        detail: impl Into<String>,
        after: std::time::Duration,
    ) -> Self {
        let mut p = Self::new(status, reason, detail);
        let seconds = after.as_millis().div_ceil(1000).max(1);
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            p.headers.insert(header::RETRY_AFTER, v);
        }
        p
    }

    pub fn with_fields(mut self, fields: Vec<String>) -> Self {
        self.fields = fields;
        self
    }

    pub fn at_index(mut self, index: Option<usize>) -> Self {
        self.index = index;
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
        response
    }
}

/// Clips text a caller sent before it goes into a detail: at most `max`
/// characters, control characters shown escaped.
pub fn clip(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).flat_map(char::escape_debug).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}
