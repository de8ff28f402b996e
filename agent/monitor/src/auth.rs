//! Bearer tokens on Valor's HTTP routes: compared in constant time, and checked in a route
//! layer before any handler reads the request's body, so an unauthenticated client can make
//! Valor read nothing of what it sends.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use subtle::ConstantTimeEq as _;

/// Whether `given` is `expected`, in time that depends only on the lengths.
pub fn token_matches(given: Option<&str>, expected: &str) -> bool {
    match given {
        Some(given) if !expected.is_empty() => {
            bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
        }
        _ => false,
    }
}

/// The token of an `Authorization: Bearer ...` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// What a route layer checks: the token and what to say when it is missing or wrong.
#[derive(Clone)]
pub struct BearerGate {
    token: Arc<str>,
    hint: &'static str,
}

impl BearerGate {
    pub fn new(token: &str, hint: &'static str) -> BearerGate {
        BearerGate {
            token: Arc::from(token),
            hint,
        }
    }
}

/// Route layer: `401` with a JSON error unless the bearer token matches; the body is never read
/// before that. Use with `Router::route_layer(axum::middleware::from_fn_with_state(gate, ..))`.
pub async fn require_bearer(
    State(gate): State<BearerGate>,
    request: Request,
    next: Next,
) -> Response {
    if token_matches(bearer(request.headers()), &gate.token) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({ "error": gate.hint })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly_and_never_empty() {
        assert!(token_matches(Some("abc"), "abc"));
        assert!(!token_matches(Some("abd"), "abc"));
        assert!(!token_matches(Some("ab"), "abc"));
        assert!(!token_matches(Some("abcd"), "abc"));
        assert!(!token_matches(None, "abc"));
        assert!(!token_matches(Some(""), ""), "an empty token opens nothing");
    }
}
