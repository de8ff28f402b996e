//! What every dashboard response carries: a content security policy that lets nothing run but
//! the page's own script (by its hash) and nothing load from elsewhere, no framing, no
//! sniffing, no referrer, no caching of pages. The stylesheet and icon are served from here.

use std::sync::LazyLock;

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The pages' one script (inline, allowed by its hash).
pub const SCRIPT: &str = include_str!("assets/live.js");
const STYLESHEET: &str = include_str!("assets/app.css");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// The policy: the script by hash, styles and images from here only, no frames, forms only
/// to here.
static POLICY: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT));
    format!(
        "default-src 'self'; script-src 'sha256-{hash}'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
});

/// The policy as sent (tests check a page's script against it).
pub fn policy() -> &'static str {
    &POLICY
}

/// Adds the security headers to a response.
pub async fn secure(response: Response) -> Response {
    let mut response = response;
    let headers = response.headers_mut();
    let cached = headers.contains_key(header::CACHE_CONTROL);
    let mut set = |name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(header::CONTENT_SECURITY_POLICY, policy());
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    if !cached {
        set(header::CACHE_CONTROL, "no-store");
    }
    response
}

/// `GET /ui/app.css` (open: the refusal page uses it too).
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// `GET /ui/favicon.svg`.
pub async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        FAVICON,
    )
        .into_response()
}
