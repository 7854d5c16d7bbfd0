//! Admin API (SPEC §10, §12, §13): bearer-authenticated reports and delivery listings.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::http::auth::{is_admin, unauthorized};
use crate::http::error::json_error;
use crate::http::AppState;
use crate::report::{Report, ReportRequest};
use crate::store::DeliveryState;

#[derive(Debug, Deserialize)]
pub struct ReportParams {
    from: Option<String>,
    to: Option<String>,
    tz: Option<String>,
    campaign: Option<String>,
    group_by: Option<String>,
    format: Option<String>,
}

fn bad(code: &str, message: String) -> HttpResponse {
    json_error(StatusCode::BAD_REQUEST, code, &message)
}

/// `GET /api/report`: earnings of the clicks made in [from, to] (days in `tz`, inclusive) and of
/// their conversions, grouped by `group_by` (SPEC §12), as JSON or CSV.
pub async fn report(
    req: HttpRequest,
    query: web::Query<ReportParams>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if !is_admin(&req, &state) {
        return unauthorized();
    }
    let format = query.format.as_deref().unwrap_or("json");
    if format != "json" && format != "csv" {
        return bad(
            "bad_format",
            format!("format: `{format}` is not json or csv"),
        );
    }
    let request = match ReportRequest::parse(
        query.from.as_deref(),
        query.to.as_deref(),
        query.tz.as_deref(),
        query.campaign.as_deref(),
        query.group_by.as_deref(),
        state.clock.now_ms(),
    ) {
        Ok(request) => request,
        Err(e) => return bad(e.code, e.to_string()),
    };
    let groups = match state.store.report(&request.query()).await {
        Ok(groups) => groups,
        Err(e) => {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                &e.to_string(),
            )
        }
    };
    let report = Report::build(&request, &groups, &state.settings.config.base_currency);
    let (content_type, body) = if format == "csv" {
        ("text/csv; charset=utf-8", report.to_csv())
    } else {
        ("application/json", report.to_json())
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "no-store"))
        .body(body)
}

#[derive(Debug, Deserialize)]
pub struct PostbacksQuery {
    status: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/postbacks?status=pending|failed|delivered`: outbound deliveries, newest first.
pub async fn postbacks(
    req: HttpRequest,
    query: web::Query<PostbacksQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if !is_admin(&req, &state) {
        return unauthorized();
    }
    let status = query.status.as_deref().unwrap_or("pending");
    let Some(wanted) = DeliveryState::parse(status) else {
        return bad(
            "bad_status",
            format!("status: `{status}` is not pending, failed or delivered"),
        );
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    match state.store.deliveries(wanted, limit).await {
        Ok(deliveries) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(serde_json::json!({ "status": wanted, "deliveries": deliveries })),
        Err(e) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            &e.to_string(),
        ),
    }
}
