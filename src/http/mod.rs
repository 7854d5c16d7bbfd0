//! The HTTP surface: shared state and the whole route table in one place.

pub mod api;
pub mod auth;
pub mod click;
pub mod error;
pub mod health;
pub mod postback;

use std::sync::Arc;

use actix_web::web;
use arc_swap::ArcSwap;

use crate::bandit::FallbackPolicy;
use crate::caps::CapTracker;
use crate::classify::Classifier;
use crate::clock::Clock;
use crate::config::Settings;
use crate::deliver::Deliverer;
use crate::learning::Feed;
use crate::metrics::Metrics;
use crate::rules::RuleSet;
use crate::store::Store;

/// Everything a handler may read; cloned cheaply into every worker.
pub struct AppState {
    pub settings: Settings,
    pub rules: Arc<ArcSwap<RuleSet>>,
    pub classifier: Arc<Classifier>,
    pub store: Arc<dyn Store>,
    /// Samples the allocation tables the learner publishes.
    pub policy: Arc<dyn FallbackPolicy>,
    /// Evidence for the learner: residual clicks and their conversions.
    pub learning: Feed,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Daily cap counts, read by every decision.
    pub caps: Arc<CapTracker>,
    /// The outbound postback worker; woken when a conversion queues a delivery.
    pub deliverer: Option<Arc<Deliverer>>,
}

/// Largest postback body read; networks send a few hundred bytes.
const MAX_POSTBACK_BODY: usize = 64 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/c/{campaign}")
            .route(web::get().to(click::click))
            .route(web::head().to(click::click)),
    )
    .service(
        web::resource(["/postback", "/postback/{secret}"])
            .app_data(web::PayloadConfig::new(MAX_POSTBACK_BODY))
            .route(web::get().to(postback::postback))
            .route(web::post().to(postback::postback)),
    )
    .route("/pixel.gif", web::get().to(postback::pixel))
    .route("/api/report", web::get().to(api::report))
    .route("/api/postbacks", web::get().to(api::postbacks))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(health::metrics));
}
