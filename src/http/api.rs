//! Admin API (SPEC §10, §12, §13): bearer-authenticated reports and delivery listings.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{NaiveDate, TimeZone};
use serde::{Deserialize, Serialize};

use crate::clock::day_start_ms;
use crate::http::auth::{is_admin, unauthorized};
use crate::http::error::json_error;
use crate::http::AppState;
use crate::money::Money;
use crate::store::{DeliveryState, OfferTotals};

#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    tz: Option<String>,
    campaign: Option<String>,
    group_by: Option<String>,
    format: Option<String>,
}

/// One report row (SPEC §12). Money is exact; ratios are rounded for reading.
#[derive(Debug, Serialize)]
pub struct ReportRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<Option<String>>,
    pub clicks: i64,
    pub conversions: i64,
    pub revenue: Money,
    pub pending_revenue: Money,
    pub cost: Money,
    pub profit: Money,
    pub epc: f64,
    pub cr: f64,
    pub roi: Option<f64>,
}

impl ReportRow {
    fn new(offer: Option<Option<String>>, totals: &OfferTotals) -> ReportRow {
        let profit = totals.revenue - totals.cost;
        let ratio = |numerator: f64, denominator: f64, places: i32| {
            let scale = 10f64.powi(places);
            (numerator / denominator * scale).round() / scale
        };
        let clicks = totals.clicks.max(0) as f64;
        ReportRow {
            offer,
            clicks: totals.clicks,
            conversions: totals.conversions,
            revenue: totals.revenue,
            pending_revenue: totals.pending_revenue,
            cost: totals.cost,
            profit,
            epc: if clicks > 0.0 {
                ratio(totals.revenue.to_f64(), clicks, 4)
            } else {
                0.0
            },
            cr: if clicks > 0.0 {
                ratio(totals.conversions as f64, clicks, 4)
            } else {
                0.0
            },
            roi: (totals.cost != Money::ZERO)
                .then(|| ratio(profit.to_f64(), totals.cost.to_f64(), 2)),
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    currency: String,
    rows: Vec<ReportRow>,
    totals: ReportRow,
}

fn bad(code: &str, message: String) -> HttpResponse {
    json_error(StatusCode::BAD_REQUEST, code, &message)
}

/// `GET /api/report`: per-offer earnings for clicks in [from, to] (days in `tz`, inclusive).
pub async fn report(
    req: HttpRequest,
    query: web::Query<ReportQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if !is_admin(&req, &state) {
        return unauthorized();
    }
    let tz_name = query.tz.as_deref().unwrap_or("UTC");
    let Ok(tz) = tz_name.parse::<chrono_tz::Tz>() else {
        return bad(
            "bad_timezone",
            format!("tz: `{tz_name}` is not an IANA time zone"),
        );
    };
    let today = tz
        .from_utc_datetime(
            &chrono::DateTime::from_timestamp_millis(state.clock.now_ms())
                .unwrap_or_default()
                .naive_utc(),
        )
        .date_naive();
    let parse_day = |field: &str, value: Option<&str>| match value {
        None | Some("") => Ok(today),
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| format!("{field}: `{text}` is not a date like 2026-11-23")),
    };
    let from = match parse_day("from", query.from.as_deref()) {
        Ok(day) => day,
        Err(message) => return bad("bad_date", message),
    };
    let to = match parse_day("to", query.to.as_deref()) {
        Ok(day) => day,
        Err(message) => return bad("bad_date", message),
    };
    if from > to {
        return bad("bad_date", format!("from {from} is after to {to}"));
    }
    let group_by = query.group_by.as_deref().unwrap_or("offer");
    if group_by != "offer" {
        return bad(
            "bad_group_by",
            format!("group_by: `{group_by}` is not supported yet; use `offer`"),
        );
    }
    let format = query.format.as_deref().unwrap_or("json");
    if format != "json" && format != "csv" {
        return bad(
            "bad_format",
            format!("format: `{format}` is not json or csv"),
        );
    }
    let (from_ms, to_ms) = (
        day_start_ms(&tz, from),
        day_start_ms(&tz, to + chrono::Days::new(1)),
    );
    let totals = match state
        .store
        .offer_totals(from_ms, to_ms, query.campaign.as_deref())
        .await
    {
        Ok(totals) => totals,
        Err(e) => {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                &e.to_string(),
            )
        }
    };
    let sum = totals.iter().fold(OfferTotals::default(), |mut sum, row| {
        sum.clicks += row.clicks;
        sum.cost = sum.cost + row.cost;
        sum.conversions += row.conversions;
        sum.revenue = sum.revenue + row.revenue;
        sum.pending_revenue = sum.pending_revenue + row.pending_revenue;
        sum
    });
    let rows: Vec<ReportRow> = totals
        .iter()
        .map(|row| ReportRow::new(Some(row.offer.clone()), row))
        .collect();
    if format == "csv" {
        return HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .body(to_csv(&rows));
    }
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(Report {
            currency: state.settings.config.base_currency.clone(),
            rows,
            totals: ReportRow::new(None, &sum),
        })
}

fn to_csv(rows: &[ReportRow]) -> String {
    let mut out =
        String::from("offer,clicks,conversions,revenue,pending_revenue,cost,profit,epc,cr,roi\n");
    for row in rows {
        let offer = row.offer.clone().flatten().unwrap_or_default();
        let roi = row.roi.map(|r| r.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&offer),
            row.clicks,
            row.conversions,
            row.revenue,
            row.pending_revenue,
            row.cost,
            row.profit,
            row.epc,
            row.cr,
            roi
        ));
    }
    out
}

/// Quotes a field when it holds a separator, a quote or a line break; neutralises leading
/// formula characters so a spreadsheet never runs an id as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
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
