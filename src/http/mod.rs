//! The HTTP surface: shared state and the whole route table in one place.

pub mod admin;
pub mod api;
pub mod auth;
pub mod click;
pub mod dashboard;
pub mod error;
pub mod health;
pub mod limit;
pub mod postback;
pub mod session;

use std::sync::Arc;

use actix_web::http::header::HeaderName;
use actix_web::web;
use arc_swap::ArcSwap;

use crate::bandit::{Allocator, FallbackPolicy};
use crate::caps::CapTracker;
use crate::classify::Classifier;
use crate::clock::Clock;
use crate::config::Settings;
use crate::deliver::Deliverer;
use crate::learning::Feed;
use crate::metrics::Metrics;
use crate::rules::{RuleEditor, RuleSet};
use crate::store::Store;

/// Everything a handler may read; cloned cheaply into every worker.
pub struct AppState {
    pub settings: Settings,
    pub rules: Arc<ArcSwap<RuleSet>>,
    pub classifier: Arc<Classifier>,
    pub store: Arc<dyn Store>,
    /// Samples the allocation tables the learner publishes.
    pub policy: Arc<dyn FallbackPolicy>,
    /// The same tables, read by `/api/allocation`.
    pub allocator: Arc<Allocator>,
    /// Rule changes through the admin API, one at a time.
    pub editor: Arc<RuleEditor>,
    /// Dashboard logins.
    pub sessions: Arc<crate::http::session::Sessions>,
    /// Evidence for the learner: residual clicks and their conversions.
    pub learning: Feed,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Daily cap counts, read by every decision.
    pub caps: Arc<CapTracker>,
    /// The outbound postback worker; woken when a conversion queues a delivery.
    pub deliverer: Option<Arc<Deliverer>>,
    /// Request rates per client address on `/postback`, `/pixel.gif` and `/api`.
    pub limits: Arc<crate::http::limit::RateLimits>,
}

/// The visitor's or caller's address: the peer, or behind `trusted_proxies` the address they
/// forwarded (SPEC §7), the same reading for clicks, postbacks and rate limits.
// Named once: a lookup by `&str` parses the name again on every request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

pub fn client_ip(req: &actix_web::HttpRequest, state: &AppState) -> std::net::IpAddr {
    let headers = req.headers();
    let header = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let peer = req
        .peer_addr()
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| {
            a.ip()
        });
    crate::client_ip::resolve(
        peer,
        header(&X_FORWARDED_FOR),
        header(&X_REAL_IP),
        &state.settings.trusted_proxies,
    )
}

/// Largest postback body read; networks send a few hundred bytes.
pub const MAX_POSTBACK_BODY: usize = 64 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/c/{campaign}")
            .route(web::get().to(click::click))
            .route(web::head().to(click::click)),
    )
    .service(
        web::resource(["/postback", "/postback/{secret}"])
            .route(web::get().to(postback::postback))
            .route(web::post().to(postback::postback)),
    )
    .route("/pixel.gif", web::get().to(postback::pixel))
    .route("/api/report", web::get().to(api::report))
    .route("/api/postbacks", web::get().to(api::postbacks))
    .route("/api/rules", web::get().to(admin::rules))
    .service(
        web::resource("/api/{kind:offers|sources|campaigns}/{id}")
            .app_data(web::PayloadConfig::new(admin::MAX_RULE_BODY))
            .route(web::get().to(admin::get_rule))
            .route(web::put().to(admin::put_rule))
            .route(web::delete().to(admin::delete_rule)),
    )
    .route("/api/explain", web::get().to(admin::explain))
    .route("/api/allocation", web::get().to(admin::allocation))
    .route("/api/openapi.json", web::get().to(admin::openapi))
    .route("/", web::get().to(dashboard::index))
    .service(
        web::resource("/login")
            .app_data(web::PayloadConfig::new(dashboard::MAX_LOGIN_BODY))
            .route(web::get().to(dashboard::to_index))
            .route(web::post().to(dashboard::login)),
    )
    .route("/logout", web::post().to(dashboard::logout))
    .route("/assets/app.js", web::get().to(dashboard::app_js))
    .route("/assets/app.css", web::get().to(dashboard::app_css))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(health::metrics));
}
