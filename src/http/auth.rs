//! Admin authentication (SPEC §13): `Authorization: Bearer <admin_token>` compared in constant
//! time, or a dashboard session cookie (see `session`).
//!
//! Cross-site request forgery: the session cookie is `SameSite=Strict`, and a state-changing
//! request authenticated by the cookie alone must also carry an `X-Requested-With` header (which
//! no cross-site form or image can send, and cross-site scripts cannot without a CORS pre-flight
//! this server never grants) and, when the browser sends an `Origin`, it must be this server's.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use crate::http::error::json_error;
use crate::http::session;
use crate::http::AppState;
use crate::postback::secret_matches;

/// True when the request carries `Authorization: Bearer <admin_token>`.
pub fn has_bearer(req: &HttpRequest, state: &AppState) -> bool {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    given.is_some_and(|token| secret_matches(&state.settings.config.admin_token, token))
}

/// True when the request carries a live dashboard session cookie.
pub fn has_session(req: &HttpRequest, state: &AppState) -> bool {
    session::cookie(req).is_some_and(|id| state.sessions.is_valid(&id, state.clock.now_ms()))
}

/// True when the request carries the admin token or a dashboard session: enough to read.
pub fn is_admin(req: &HttpRequest, state: &AppState) -> bool {
    has_bearer(req, state) || has_session(req, state)
}

/// May this request change rules? The bearer token always may; a session cookie only with the
/// same-origin proof described at the top of this file. `Some` is the refusal to answer with.
pub fn write_refusal(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    if has_bearer(req, state) {
        return None;
    }
    if !has_session(req, state) {
        return Some(unauthorized());
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if header("x-requested-with").is_none_or(str::is_empty) {
        return Some(forbidden(
            "a change made with the session cookie needs the X-Requested-With header",
        ));
    }
    if let Some(origin) = header("origin") {
        let host = req.connection_info().host().to_string();
        let same = origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(&host));
        if !same {
            return Some(forbidden("the request's Origin is not this server"));
        }
    }
    None
}

fn forbidden(message: &str) -> HttpResponse {
    json_error(StatusCode::FORBIDDEN, "cross_site_request", message)
}

/// The answer to a request without the admin token.
pub fn unauthorized() -> HttpResponse {
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send the admin token as `Authorization: Bearer <token>` or log in at /",
    );
    response.headers_mut().insert(
        actix_web::http::header::WWW_AUTHENTICATE,
        actix_web::http::header::HeaderValue::from_static("Bearer"),
    );
    response
}
