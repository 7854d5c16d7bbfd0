//! Operations endpoints (SPEC §15): liveness, readiness, Prometheus metrics.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use crate::http::error::json_error;
use crate::http::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({"status": "ok"}))
}

/// Ready when rules are loaded (always, once started: a server never starts without them) and the
/// store takes writes.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let rules = state.rules.load();
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(serde_json::json!({
                "status": "ready",
                "rules_version": rules.version,
                "campaigns": rules.campaigns.len(),
            })),
        Err(e) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            &e.to_string(),
        ),
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .insert_header(("Cache-Control", "no-store"))
        .body({
            let deliveries = state
                .deliverer
                .as_ref()
                .map(|d| d.stats())
                .unwrap_or_default();
            state.metrics.render(
                state.store.stats(),
                &[
                    ("delivered", deliveries.delivered),
                    ("retried", deliveries.retried),
                    ("failed", deliveries.failed),
                ],
            )
        })
}
