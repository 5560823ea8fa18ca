//! CORS, only for the origins an operator lists (`api.cors_origins`).
//! With none listed, no CORS header is ever sent, and a browser on another
//! site cannot read an answer. Credentials are never allowed: the API
//! reads no cookie, and a browser must send the bearer token itself.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::server::ApiState;

/// Answers preflights from allowed origins and marks their answers.
pub async fn layer(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| state.settings.cors_origins.iter().any(|allowed| allowed == o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = match (&origin, preflight) {
        (Some(_), true) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, GET"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type, idempotency-key"),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            r
        }
        _ => next.run(request).await,
    };
    if let Some(origin) = origin {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "x-request-id, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset",
            ),
        );
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}
