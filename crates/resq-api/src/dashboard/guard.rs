//! What every dashboard answer carries (a strict CSP with no inline script,
//! no framing, no sniffing, no caching, no referrer), and the cross-site
//! check every form post passes before its handler runs: Fetch Metadata,
//! else the Origin header, must say the request comes from this site.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Refusal;

/// The page's Content-Security-Policy: only this origin's files, no inline
/// script or style at all, no framing, forms post here only; violations
/// are reported to `/csp-report`.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; report-uri /csp-report";

/// Adds the security headers to every answer.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        header::HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    response
}

/// Adds Strict-Transport-Security (a year) to every answer served over
/// HTTPS: the browser then never tries the dashboard over plain HTTP.
pub async fn hsts(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    response
}

/// Refuses a state-changing request another site made the browser send.
pub async fn same_site_only(request: Request, next: Next) -> Response {
    // A CSP report is the browser's own request, and changes nothing.
    let report = request.uri().path() == "/csp-report";
    if request.method() != Method::GET && request.method() != Method::HEAD && !report {
        if let Err(refusal) = check_same_site(request.headers()) {
            return refusal.into_response();
        }
    }
    next.run(request).await
}

/// Fetch Metadata first (every current browser sends it): only
/// `same-origin` passes. Without it, an `Origin` must name this host. A
/// client that sends neither (not a browser) still needs the form's token.
pub fn check_same_site(headers: &HeaderMap) -> Result<(), Refusal> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return if site == "same-origin" {
            Ok(())
        } else {
            Err(Refusal::CrossSite)
        };
    }
    if let Some(origin) = text("origin") {
        let host = text("host").unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
        return if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
            Ok(())
        } else {
            Err(Refusal::CrossSite)
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_this_site_may_post() {
        let table: &[(&[(&str, &str)], bool)] = &[
            (&[("sec-fetch-site", "same-origin")], true),
            (&[("sec-fetch-site", "cross-site")], false),
            (&[("sec-fetch-site", "same-site")], false),
            (&[("sec-fetch-site", "none")], false),
            (&[("origin", "http://127.0.0.1:8080"), ("host", "127.0.0.1:8080")], true),
            (&[("origin", "http://evil.example"), ("host", "127.0.0.1:8080")], false),
            (&[("origin", "null"), ("host", "127.0.0.1:8080")], false),
            (
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "http://127.0.0.1:8080"),
                    ("host", "127.0.0.1:8080"),
                ],
                false,
            ),
            (&[], true),
        ];
        for (pairs, ok) in table {
            assert_eq!(check_same_site(&headers(pairs)).is_ok(), *ok, "{pairs:?}");
        }
    }
}
