//! The dashboard at `/` (SPEC §12): a login form, then one page whose script reads and edits
//! everything through the admin API with the session cookie. Every asset is compiled into the
//! binary and served from here; the page loads nothing from anywhere else, which its
//! `Content-Security-Policy` enforces.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::http::auth::has_session;
use crate::http::session;
use crate::http::AppState;
use crate::postback::secret_matches;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const LOGIN_HTML: &str = include_str!("dashboard/login.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const APP_CSS: &str = include_str!("dashboard/app.css");

/// Only this server's own scripts, styles, images and API; no inline script, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Largest login form read.
pub const MAX_LOGIN_BODY: usize = 4 * 1024;

fn page(status: StatusCode, html: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ))
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Cache-Control", "no-store"))
        .body(html)
}

fn login_page(status: StatusCode, message: &str) -> HttpResponse {
    let notice = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" id=\"login-error\" role=\"alert\">{message}</p>")
    };
    page(status, LOGIN_HTML.replace("<!--NOTICE-->", &notice))
}

/// `GET /`: the dashboard with a session, else the login form.
pub async fn index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if has_session(&req, &state) {
        page(StatusCode::OK, INDEX_HTML.to_string())
    } else {
        login_page(StatusCode::OK, "")
    }
}

/// `POST /login` with the form field `token`: the admin token starts a session (a random id in
/// an HttpOnly, SameSite=Strict cookie) and goes to `/`; anything else is `401` and the form.
pub async fn login(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let token = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default();
    if !secret_matches(&state.settings.config.admin_token, &token) {
        tracing::warn!(peer = ?req.peer_addr(), "dashboard login refused");
        return login_page(StatusCode::UNAUTHORIZED, "That is not the admin token.");
    }
    let id = state.sessions.create(state.clock.now_ms());
    let secure = req.connection_info().scheme() == "https";
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .insert_header((header::SET_COOKIE, session::set_cookie(&id, secure)))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

/// `GET /login` (a bookmark, a reload after a refused login): the form is at `/`.
pub async fn to_index() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .finish()
}

/// `POST /logout`: ends the session and goes back to the login form.
pub async fn logout(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(id) = session::cookie(&req) {
        state.sessions.end(&id);
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .insert_header((header::SET_COOKIE, session::clear_cookie()))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

/// `GET /assets/app.js`.
pub async fn app_js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /assets/app.css`.
pub async fn app_css() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}
