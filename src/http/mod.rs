//! The HTTP surface: shared state and the whole route table in one place.

pub mod click;
pub mod error;
pub mod health;

use std::sync::Arc;

use actix_web::web;
use arc_swap::ArcSwap;

use crate::bandit::FallbackPolicy;
use crate::caps::CapTracker;
use crate::classify::Classifier;
use crate::clock::Clock;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::rules::RuleSet;
use crate::store::Store;

/// Everything a handler may read; cloned cheaply into every worker.
pub struct AppState {
    pub settings: Settings,
    pub rules: Arc<ArcSwap<RuleSet>>,
    pub classifier: Arc<Classifier>,
    pub store: Arc<dyn Store>,
    pub policy: Arc<dyn FallbackPolicy>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Daily cap counts, read by every decision.
    pub caps: Arc<CapTracker>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/c/{campaign}")
            .route(web::get().to(click::click))
            .route(web::head().to(click::click)),
    )
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(health::metrics));
}
