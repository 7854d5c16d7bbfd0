//! Bearer `admin_token` on everything under `/api` (SPEC §13), compared in constant time.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use crate::http::error::json_error;
use crate::http::AppState;
use crate::postback::secret_matches;

/// True when the request carries `Authorization: Bearer <admin_token>`.
pub fn is_admin(req: &HttpRequest, state: &AppState) -> bool {
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

/// The answer to a request without the admin token.
pub fn unauthorized() -> HttpResponse {
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send the admin token as `Authorization: Bearer <token>`",
    );
    response.headers_mut().insert(
        actix_web::http::header::WWW_AUTHENTICATE,
        actix_web::http::header::HeaderValue::from_static("Bearer"),
    );
    response
}
