//! The security headers of the demo's responses: its pages (the browser client from
//! `frontendws/`, Swagger UI at `/docs/`) and, as they cost nothing there, the API's.
//!
//! - `Content-Security-Policy`: scripts, styles and connections from this origin only (the
//!   client's WebSocket is same-origin, which `connect-src 'self'` allows in Chromium and
//!   Firefox), images also as `data:` (Swagger UI's icons; the client's favicon is `favicon.svg`), no
//!   plugins, no `<base>`, forms post here only, and no framing (`frame-ancestors 'none'`,
//!   with `X-Frame-Options: DENY` for older browsers).
//! - `X-Content-Type-Options: nosniff`: a response is only ever what its type says.
//! - `Referrer-Policy: no-referrer`: nothing of a page's URL leaves with a link.
//!
//! Each header is set unless the response has one already.

use axum::{
    http::{header, HeaderValue},
    Router,
};
use tower_http::set_header::SetResponseHeaderLayer;

/// The policy of every page.
///
/// The one inline style allowed, by its hash, is the `<style>` element that Swagger UI
/// (the vendored 5.32.6) adds to its page; `tests/e2e/browser/docs.test.js` fails on any CSP
/// violation, so a Swagger UI update that changes it is caught.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self'; \
img-src 'self' data:; style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `app` with the headers set on its responses.
pub(crate) fn with_headers(app: Router) -> Router {
    let set = |name, value| SetResponseHeaderLayer::if_not_present(name, value);
    app.layer(set(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    ))
    .layer(set(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ))
    .layer(set(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    ))
    .layer(set(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ))
}
