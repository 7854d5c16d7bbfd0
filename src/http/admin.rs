//! Admin API over the rules (SPEC §13): `GET /api/rules`, `GET|PUT|DELETE` of one offer, source
//! or campaign, `GET /api/explain`, `GET /api/allocation` (the fallback shares the optimiser
//! publishes), and this API's OpenAPI description.

use std::collections::HashMap;
use std::net::IpAddr;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::bandit::Segment;
use crate::click::explain_visit;
use crate::http::auth::{is_admin, unauthorized, write_refusal};
use crate::http::error::json_error;
use crate::http::AppState;
use crate::rules::edit::{valid_id, Change, EditError, Kind};
use crate::rules::{RuleError, RuleSet};
use crate::visitor::{Device, Os, RequestHints};

/// The OpenAPI 3.0 description of every endpoint, served at `/api/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest `PUT` body read: a campaign with many routes is a few kilobytes.
pub const MAX_RULE_BODY: usize = 256 * 1024;

fn etag(version: &str) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{version}\""))
}

fn ok_json(status: StatusCode, version: &str, body: &impl Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(etag(version))
        .json(body)
}

/// Every rule in force as JSON mirroring the TOML, sorted by id.
#[derive(Serialize)]
struct AllRules<'a> {
    version: &'a str,
    offers: Vec<&'a crate::rules::Offer>,
    sources: Vec<&'a crate::rules::Source>,
    campaigns: Vec<&'a crate::rules::Campaign>,
}

fn sorted<T>(map: &HashMap<String, std::sync::Arc<T>>) -> Vec<&T> {
    let mut items: Vec<(&String, &T)> = map.iter().map(|(k, v)| (k, v.as_ref())).collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    items.into_iter().map(|(_, v)| v).collect()
}

/// `GET /api/rules`.
pub async fn rules(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !is_admin(&req, &state) {
        return unauthorized();
    }
    let set = state.rules.load_full();
    ok_json(
        StatusCode::OK,
        &set.version,
        &AllRules {
            version: &set.version,
            offers: sorted(&set.offers),
            sources: sorted(&set.sources),
            campaigns: sorted(&set.campaigns),
        },
    )
}

fn kind_of(path: &str) -> Option<Kind> {
    match path {
        "offers" => Some(Kind::Offer),
        "sources" => Some(Kind::Source),
        "campaigns" => Some(Kind::Campaign),
        _ => None,
    }
}

/// The rule `id` of `kind` in `set` as JSON, if there is one.
fn rule_json(set: &RuleSet, kind: Kind, id: &str) -> Option<serde_json::Value> {
    match kind {
        Kind::Offer => set.offer(id).and_then(|r| serde_json::to_value(r).ok()),
        Kind::Source => set.source(id).and_then(|r| serde_json::to_value(r).ok()),
        Kind::Campaign => set.campaign(id).and_then(|r| serde_json::to_value(r).ok()),
    }
}

/// `{"version": .., "<kind>": {..}}`.
fn one_rule(set: &RuleSet, kind: Kind, value: serde_json::Value) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    body.insert("version".into(), json!(set.version));
    body.insert(kind.noun().into(), value);
    serde_json::Value::Object(body)
}

/// Checks the path: a known kind and a valid id; the error answer otherwise.
fn target(path: &(String, String)) -> Result<(Kind, &str), Box<HttpResponse>> {
    let Some(kind) = kind_of(&path.0) else {
        return Err(Box::new(json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        )));
    };
    if !valid_id(&path.1) {
        return Err(Box::new(json_error(
            StatusCode::BAD_REQUEST,
            "bad_id",
            "an id is 1 to 64 of a-z, 0-9, _ and -",
        )));
    }
    Ok((kind, path.1.as_str()))
}

fn not_found(kind: Kind, id: &str) -> HttpResponse {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no {} {id:?}", kind.noun()),
    )
}

/// `GET /api/{offers|sources|campaigns}/{id}` → `{"version", "<kind>": {...}}`.
pub async fn get_rule(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if !is_admin(&req, &state) {
        return unauthorized();
    }
    let (kind, id) = match target(&path) {
        Ok(target) => target,
        Err(response) => return *response,
    };
    let set = state.rules.load_full();
    match rule_json(&set, kind, id) {
        Some(value) => ok_json(StatusCode::OK, &set.version, &one_rule(&set, kind, value)),
        None => not_found(kind, id),
    }
}

/// The versions an `If-Match` header names (quotes and a weak `W/` prefix taken off), or `None`
/// without the header.
fn if_match(req: &HttpRequest) -> Option<Vec<String>> {
    let values: Vec<String> = req
        .headers()
        .get_all(header::IF_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| {
            let v = v.trim();
            let v = v.strip_prefix("W/").unwrap_or(v);
            v.trim_matches('"').to_string()
        })
        .filter(|v| !v.is_empty())
        .collect();
    (req.headers().contains_key(header::IF_MATCH)).then_some(values)
}

/// `PUT /api/{offers|sources|campaigns}/{id}`: create or replace; `200` (replaced) or `201`
/// (created) with `{"version", "<kind>": {...}, "file"}`.
pub async fn put_rule(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(refusal) = write_refusal(&req, &state) {
        return refusal;
    }
    let (kind, id) = match target(&path) {
        Ok(target) => target,
        Err(response) => return *response,
    };
    let body: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_json",
                &format!("the body is not JSON: {e}"),
            )
        }
    };
    change(&req, &state, kind, id.to_string(), Change::Put(body)).await
}

/// `DELETE /api/{offers|sources|campaigns}/{id}` → `{"version", "deleted": id, "file"}`.
pub async fn delete_rule(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(refusal) = write_refusal(&req, &state) {
        return refusal;
    }
    let (kind, id) = match target(&path) {
        Ok(target) => target,
        Err(response) => return *response,
    };
    change(&req, &state, kind, id.to_string(), Change::Delete).await
}

/// One rule error in a `422` answer.
#[derive(Serialize)]
struct ErrorItem {
    file: String,
    line: Option<usize>,
    item: Option<String>,
    field: Option<String>,
    message: String,
    /// The whole error as `smartlink check` prints it.
    text: String,
}

impl From<&RuleError> for ErrorItem {
    fn from(e: &RuleError) -> ErrorItem {
        ErrorItem {
            file: e.file.display().to_string(),
            line: e.line,
            item: e.item.clone(),
            field: e.field.clone(),
            message: e.message.clone(),
            text: e.to_string(),
        }
    }
}

async fn change(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    kind: Kind,
    id: String,
    change: Change,
) -> HttpResponse {
    let wanted = if_match(req);
    let deleting = matches!(change, Change::Delete);
    let editor = state.editor.clone();
    let target = id.clone();
    let result = web::block(move || editor.apply(kind, &target, change, wanted.as_deref())).await;
    let result = match result {
        Ok(result) => result,
        Err(e) => {
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            )
        }
    };
    match result {
        Ok(applied) => {
            let set = &applied.rules;
            tracing::info!(
                kind = kind.noun(),
                id = %id,
                file = %applied.file.display(),
                version = %set.version,
                deleted = deleting,
                "rules changed through the admin API"
            );
            let file = applied.file.display().to_string();
            if deleting {
                return ok_json(
                    StatusCode::OK,
                    &set.version,
                    &json!({"version": set.version, "deleted": id, "file": file}),
                );
            }
            let value = rule_json(set, kind, &id).unwrap_or_default();
            let mut body = one_rule(set, kind, value);
            body["file"] = json!(file);
            let status = if applied.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            ok_json(status, &set.version, &body)
        }
        Err(EditError::VersionMismatch { current }) => HttpResponse::build(
            StatusCode::PRECONDITION_FAILED,
        )
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(etag(&current))
        .json(json!({
            "error": "version_mismatch",
            "message": format!("the rules changed since that version; the version in force is {current}"),
            "version": current,
        })),
        Err(EditError::NotFound) => not_found(kind, &id),
        Err(EditError::InUse { campaigns }) => HttpResponse::Conflict()
            .insert_header(("Cache-Control", "no-store"))
            .json(json!({
                "error": format!("{}_in_use", kind.noun()),
                "message": format!(
                    "{} {id:?} is used by campaign{} {}",
                    kind.noun(),
                    if campaigns.len() == 1 { "" } else { "s" },
                    campaigns.join(", ")
                ),
                "campaigns": campaigns,
            })),
        Err(EditError::Invalid(errors)) => {
            let message = match errors.as_slice() {
                [] => "the rules do not validate".to_string(),
                [one] => one.to_string(),
                [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
            };
            HttpResponse::UnprocessableEntity()
                .insert_header(("Cache-Control", "no-store"))
                .json(json!({
                    "error": "invalid_rules",
                    "message": message,
                    "errors": errors.iter().map(ErrorItem::from).collect::<Vec<_>>(),
                }))
        }
        Err(EditError::Io(message)) => {
            tracing::error!(%message, "cannot write a rule file");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "write_failed",
                &format!("cannot write the rule file: {message}"),
            )
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ExplainQuery {
    campaign: Option<String>,
    ip: Option<String>,
    ua: Option<String>,
    lang: Option<String>,
}

/// `GET /api/explain?campaign=&ip=&ua=&lang=`: `smartlink explain` with the live allocation and
/// today's caps.
pub async fn explain(
    req: HttpRequest,
    query: web::Query<ExplainQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if !is_admin(&req, &state) {
        return unauthorized();
    }
    fn present(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let (Some(campaign_id), Some(ip)) = (present(&query.campaign), present(&query.ip)) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "missing_parameter",
            "campaign and ip are required (ua and lang are optional)",
        );
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_ip",
            &format!("ip: `{ip}` is not an IP address"),
        );
    };
    let rules = state.rules.load_full();
    let Some(campaign) = rules.campaign(campaign_id) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "unknown_campaign",
            &format!("no campaign `{campaign_id}`"),
        );
    };
    let visitor = state.classifier.classify(
        ip,
        &RequestHints {
            user_agent: query.ua.as_deref().unwrap_or(""),
            accept_language: query.lang.as_deref(),
            ..RequestHints::default()
        },
    );
    let explanation = explain_visit(
        &rules,
        campaign,
        &visitor,
        state.caps.as_ref(),
        state.policy.as_ref(),
    );
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(explanation)
}

#[derive(Debug, Deserialize)]
pub struct AllocationQuery {
    campaign: Option<String>,
}

/// Most segments listed per campaign (the finest first dropped).
const MAX_SEGMENTS: usize = 200;

#[derive(Serialize)]
struct SegmentShares {
    /// `all visitors`, `US`, `US / phone`, `US / phone / Android`, `US / phone / Android / T-Mobile`.
    segment: String,
    /// 0 (everyone) to 4 (country, device, OS, carrier).
    level: usize,
    country: Option<String>,
    device: Option<&'static str>,
    os: Option<&'static str>,
    carrier: Option<String>,
    /// Per offer of `offers`, summing to 1.
    shares: Vec<f64>,
}

#[derive(Serialize)]
struct CampaignShares {
    campaign: String,
    /// The fallback offers the shares are of, in fallback order.
    offers: Vec<String>,
    /// The split by weight alone: what visitors of a segment without a table of its own get.
    weights: Vec<f64>,
    /// Whether the optimiser has published a table for this campaign yet.
    learnt: bool,
    segments: Vec<SegmentShares>,
    /// Segments with a table whose name could not be told (a carrier the data does not list),
    /// or beyond the first `MAX_SEGMENTS`.
    unnamed_segments: usize,
}

/// `GET /api/allocation[?campaign=ID]`: the fallback shares the optimiser publishes, per
/// campaign and named visitor segment.
pub async fn allocation(
    req: HttpRequest,
    query: web::Query<AllocationQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if !is_admin(&req, &state) {
        return unauthorized();
    }
    let rules = state.rules.load_full();
    let mut campaigns: Vec<&crate::rules::Campaign> = match query.campaign.as_deref() {
        Some(id) if !id.is_empty() => match rules.campaign(id) {
            Some(c) => vec![c.as_ref()],
            None => {
                return json_error(
                    StatusCode::NOT_FOUND,
                    "unknown_campaign",
                    &format!("no campaign `{id}`"),
                )
            }
        },
        _ => rules.campaigns.values().map(AsRef::as_ref).collect(),
    };
    campaigns.sort_by(|a, b| a.id.cmp(&b.id));
    let tables = state.allocator.current();
    let carriers = state.classifier.carrier_names();
    let out: Vec<CampaignShares> = campaigns
        .into_iter()
        .map(|campaign| {
            let table = tables.campaigns.get(&campaign.id);
            // Weights as the rules in force say (a change is in the tables from the next
            // recomputation on).
            let weight_now = |offer: &str, fallback: usize, was: f64| {
                (campaign.fallback.get(fallback).filter(|f| f.offer == offer))
                    .or_else(|| campaign.fallback.iter().find(|f| f.offer == offer))
                    .map_or(was, |f| f.weight)
            };
            let (offers, weights): (Vec<String>, Vec<f64>) = match table {
                Some(t) => (t.arms.iter())
                    .map(|a| (a.offer.clone(), weight_now(&a.offer, a.fallback, a.weight)))
                    .unzip(),
                None => campaign
                    .fallback
                    .iter()
                    .map(|f| (f.offer.clone(), f.weight))
                    .unzip(),
            };
            let total: f64 = weights.iter().sum();
            let weights = weights
                .iter()
                .map(|w| if total > 0.0 { w / total } else { 0.0 })
                .collect();
            let (segments, unnamed) = match table {
                Some(t) => named_segments(&t.segments, &carriers),
                None => (Vec::new(), 0),
            };
            CampaignShares {
                campaign: campaign.id.clone(),
                offers,
                weights,
                learnt: table.is_some(),
                segments,
                unnamed_segments: unnamed,
            }
        })
        .collect();
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "computed_at_ms": tables.computed_at_ms,
            "campaigns": out,
        }))
}

/// Names the segments of a published table: segment keys are hashes, so every country, device
/// and OS (and the carriers the data knows, under segments found) is tried.
fn named_segments(
    tables: &HashMap<
        u64,
        std::sync::Arc<crate::bandit::allocator::SegmentTable>,
        impl std::hash::BuildHasher,
    >,
    carriers: &[String],
) -> (Vec<SegmentShares>, usize) {
    let mut found = Vec::new();
    let mut push = |level: usize, segment: &Segment, named: &[bool; 4]| {
        let key = segment.keys()[level];
        if let Some(table) = tables.get(&key) {
            let country = named[0].then(|| segment.country.clone()).flatten();
            let device = named[1].then(|| segment.device.as_str());
            let os = named[2].then(|| segment.os.as_str());
            let carrier = named[3].then(|| segment.carrier.clone()).flatten();
            let mut parts = vec![];
            if named[0] {
                parts.push(country.clone().unwrap_or_else(|| "unknown country".into()));
            }
            parts.extend(device.map(str::to_string));
            parts.extend(os.map(str::to_string));
            if named[3] {
                parts.push(carrier.clone().unwrap_or_else(|| "no carrier".into()));
            }
            found.push(SegmentShares {
                segment: if parts.is_empty() {
                    "all visitors".into()
                } else {
                    parts.join(" / ")
                },
                level,
                country,
                device,
                os,
                carrier,
                shares: table.shares.clone(),
            });
            true
        } else {
            false
        }
    };
    let mut base = Segment {
        country: None,
        device: Device::ALL[0],
        os: Os::ALL[0],
        carrier: None,
    };
    push(0, &base, &[false; 4]);
    let countries = std::iter::once(None).chain(crate::rules::country_codes().map(Some));
    for country in countries {
        base.country = country.map(str::to_string);
        push(1, &base, &[true, false, false, false]);
        for &device in Device::ALL {
            base.device = device;
            push(2, &base, &[true, true, false, false]);
            for &os in Os::ALL {
                base.os = os;
                if push(3, &base, &[true, true, true, false]) {
                    for carrier in std::iter::once(None).chain(carriers.iter().map(Some)) {
                        let segment = Segment {
                            carrier: carrier.cloned(),
                            ..base.clone()
                        };
                        push(4, &segment, &[true; 4]);
                    }
                }
            }
        }
    }
    found.sort_by(|a, b| {
        a.level
            .cmp(&b.level)
            .then_with(|| a.segment.cmp(&b.segment))
    });
    let unnamed = tables.len().saturating_sub(found.len());
    let dropped = found.len().saturating_sub(MAX_SEGMENTS);
    found.truncate(MAX_SEGMENTS);
    (found, unnamed + dropped)
}

/// `GET /api/openapi.json`.
pub async fn openapi(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !is_admin(&req, &state) {
        return unauthorized();
    }
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header(("Cache-Control", "no-store"))
        .body(OPENAPI)
}
