//! Conversions in (SPEC §9, §11): `/postback` (GET, POST form or JSON, secret in the path or a
//! parameter) and `/pixel.gif`. read → validate → look the click up → apply in the store (with the
//! outbound delivery in the same transaction) → update caps → answer.

use std::borrow::Cow;
use std::net::IpAddr;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use crate::conversion::{Change, ConversionKey, ConversionStatus};
use crate::decide::Route;
use crate::http::click::CLICK_COOKIE;
use crate::http::error::json_error;
use crate::http::{AppState, MAX_POSTBACK_BODY};
use crate::money::Money;
use crate::postback::{self, PostbackRequest, RawParams};
use crate::rules::Source;
use crate::store::{ClickRecord, ConversionReport, NewDelivery, StoreError};
use crate::template::{MacroValues, UrlTemplate};

/// Why a report was not recorded; becomes the JSON error (or the pixel's header).
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    fn response(&self) -> HttpResponse {
        json_error(self.status, self.code, &self.message)
    }
}

#[derive(Serialize)]
struct Recorded<'a> {
    result: &'static str,
    clickid: &'a str,
    event: &'a str,
    txid: &'a str,
    status: ConversionStatus,
    payout: Money,
    currency: &'a str,
}

pub async fn postback(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let body = match read_body(&req, payload).await {
        Ok(body) => body,
        Err(refusal) => return refuse(&state, &req, refusal),
    };
    let raw = match read_params(&req, &body) {
        Ok(raw) => raw,
        Err(refusal) => return refuse(&state, &req, refusal),
    };
    let path_secret = req.match_info().get("secret");
    let client = crate::http::client_ip(&req, &state);
    match process(&state, raw, path_secret, None, Some(client)).await {
        Ok((request, change, payout)) => {
            let result = result_name(&change);
            state.metrics.postback(result);
            HttpResponse::Ok()
                .insert_header(("Cache-Control", "no-store"))
                .json(Recorded {
                    result,
                    clickid: &request.click_id,
                    event: &request.event,
                    txid: &request.txid,
                    status: request.status,
                    payout,
                    currency: &state.settings.config.base_currency,
                })
        }
        Err(refusal) => refuse(&state, &req, refusal),
    }
}

/// A 1×1 transparent GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Always answers the GIF (a browser does nothing with an error); the outcome is in
/// `X-Smartlink-Result` and the log. The postback secret is not asked for: a pixel runs in the
/// visitor's browser, where no secret stays secret.
pub async fn pixel(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let raw = RawParams::from_query(req.query_string());
    let cookie = click_cookie(&req);
    let outcome = match process(&state, raw, None, cookie.as_deref(), None).await {
        Ok((_, change, _)) => {
            let result = result_name(&change);
            state.metrics.postback(result);
            result.to_string()
        }
        Err(refusal) => {
            let code = refusal.code;
            refuse(&state, &req, refusal);
            code.to_string()
        }
    };
    HttpResponse::Ok()
        .content_type("image/gif")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Smartlink-Result", outcome))
        .body(PIXEL)
}

/// The click id in the `sl_click` cookie, if the browser sent one.
fn click_cookie(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all("cookie")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == CLICK_COOKIE && !value.is_empty()).then(|| value.to_string())
        })
}

fn result_name(change: &Change) -> &'static str {
    match change {
        Change::Recorded(_) => "recorded",
        Change::Duplicate => "duplicate",
        Change::Updated { .. } => "updated",
    }
}

/// Logs and counts a refused report; it changed nothing. The route is logged rather than the
/// path, which may carry the postback secret (`/postback/{secret}`).
fn refuse(state: &AppState, req: &HttpRequest, refusal: Refusal) -> HttpResponse {
    state.metrics.postback(refusal.code);
    let route = req.match_pattern();
    tracing::warn!(
        route = route.as_deref().unwrap_or("/postback"),
        code = refusal.code,
        message = %refusal.message,
        "conversion refused"
    );
    refusal.response()
}

/// The body, up to [`MAX_POSTBACK_BODY`] bytes; a larger one (announced or sent) is refused with
/// `413` before more of it is read.
async fn read_body(req: &HttpRequest, mut payload: web::Payload) -> Result<web::Bytes, Refusal> {
    use futures_util::StreamExt as _;
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a postback body is at most {MAX_POSTBACK_BODY} bytes"),
        )
    };
    let announced = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|len| len > MAX_POSTBACK_BODY as u64) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > MAX_POSTBACK_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Query parameters plus the body (form or JSON by `Content-Type`).
fn read_params(req: &HttpRequest, body: &[u8]) -> Result<RawParams, Refusal> {
    let query = RawParams::from_query(req.query_string());
    if body.is_empty() {
        return Ok(query);
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = if content_type.starts_with("application/json") {
        RawParams::from_json(body)
            .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.code, e.message))?
    } else {
        RawParams::from_form(body)
    };
    Ok(query.merged(body))
}

/// Validates, finds the click, applies the report in the store and updates caps. Returns the
/// request, the change and the payout recorded (base currency). `server_to_server` is the client
/// address of a postback, which must carry the secret and come from an address its click's
/// source allows; `None` for the pixel, which runs in the visitor's browser.
async fn process(
    state: &AppState,
    raw: RawParams,
    path_secret: Option<&str>,
    cookie_click: Option<&str>,
    server_to_server: Option<IpAddr>,
) -> Result<(PostbackRequest, Change, Money), Refusal> {
    let config = &state.settings.config;
    if server_to_server.is_some() && !config.postback_secret.is_empty() {
        let given = path_secret.or_else(|| postback::secret_of(&raw));
        if !given.is_some_and(|g| postback::secret_matches(&config.postback_secret, g)) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "bad_secret",
                "the postback secret is missing or wrong",
            ));
        }
    }
    let raw = match cookie_click {
        Some(id) if !raw.has_click_id() => {
            raw.merged(RawParams(vec![("clickid".into(), id.into())]))
        }
        _ => raw,
    };
    let request = postback::parse(&raw, &config.base_currency, |code| {
        state.settings.currency_rate(code)
    })
    .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.code, e.message))?;
    let click = match state.store.click(&request.click_id).await {
        Ok(Some(click)) => click,
        Ok(None) => {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "unknown_click",
                format!("no click `{}`", request.click_id.escape_debug()),
            ))
        }
        Err(e) => return Err(store_unavailable(e)),
    };
    let now = state.clock.now_ms();
    let window_ms = i64::from(config.attribution_window_days) * 86_400_000;
    if now - click.ts_ms > window_ms {
        return Err(Refusal::new(
            StatusCode::GONE,
            "click_expired",
            format!(
                "the click is older than the attribution window of {} days",
                config.attribution_window_days
            ),
        ));
    }
    let rules = state.rules.load();
    if let (Some(ip), Some(source)) = (server_to_server, rules.source(&click.source)) {
        if !source.postback_allowed_from(ip) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "ip_not_allowed",
                format!(
                    "postbacks for source `{}` are not accepted from {ip}",
                    source.id
                ),
            ));
        }
    }
    let payout = match request.payout {
        Some(payout) => payout,
        None => configured_payout(state, &rules, &click),
    };
    let plan = rules
        .source(&click.source)
        .and_then(|source| delivery_plan(source, &click, &request, &config.base_currency));
    let report = ConversionReport {
        key: ConversionKey {
            click_id: click.id.clone(),
            event: request.event.clone(),
            txid: request.txid.clone(),
        },
        status: request.status,
        payout,
        sent_payout: request.sent_payout,
        sent_currency: request.currency.clone(),
        ts_ms: now,
    };
    let plan: crate::store::DeliveryPlan = match plan {
        Some(plan) => Box::new(plan),
        None => Box::new(|_: &Change| None),
    };
    let change = state
        .store
        .record_conversion(report, plan)
        .await
        .map_err(store_unavailable)?;
    if let Some(offer) = &click.offer {
        count_towards_caps(state, offer, &change, now);
        if click.route == Route::Fallback {
            state.learning.conversion(
                &click.campaign,
                offer,
                &click.visitor,
                click.ts_ms,
                &change,
                now,
            );
        }
    }
    if !matches!(change, Change::Duplicate) {
        if let Some(deliverer) = &state.deliverer {
            deliverer.wake();
        }
    }
    Ok((request, change, payout))
}

/// Networks retry on 5xx, so a store outage answers 503 rather than losing the report.
fn store_unavailable(error: StoreError) -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        format!("{error}; retry later"),
    )
}

/// The offer's configured payout in base currency (0 for clicks that went to no offer).
fn configured_payout(
    state: &AppState,
    rules: &crate::rules::RuleSet,
    click: &ClickRecord,
) -> Money {
    let Some(offer) = click.offer.as_deref().and_then(|id| rules.offer(id)) else {
        return Money::ZERO;
    };
    state.settings.payout_in_base(offer)
}

fn count_towards_caps(state: &AppState, offer: &str, change: &Change, now: i64) {
    let approved = ConversionStatus::Approved;
    match change {
        Change::Recorded(after) if after.status == approved => state.caps.approved(offer, now),
        Change::Updated { before, after }
            if before.status != approved && after.status == approved =>
        {
            state.caps.approved(offer, now)
        }
        Change::Updated { before, after }
            if before.status == approved && after.status != approved =>
        {
            state.caps.revoked(offer)
        }
        _ => {}
    }
}

/// What the source wants to hear about, as a closure the store runs on the change inside its
/// transaction. `None` when the source has no postback URL or the click no external id.
fn delivery_plan(
    source: &Source,
    click: &ClickRecord,
    request: &PostbackRequest,
    base_currency: &str,
) -> Option<impl Fn(&Change) -> Option<NewDelivery> + Send + 'static> {
    let template: UrlTemplate = source.postback_url.clone()?;
    let external_id = click.external_id.clone()?;
    let events = source.postback_events.clone();
    let statuses = source.postback_statuses.clone();
    let source_id = source.id.clone();
    let click = click.clone();
    let event = request.event.clone();
    let txid = request.txid.clone();
    let currency = base_currency.to_string();
    Some(move |change: &Change| {
        let (status, payout) = reported(change)?;
        let forwarded = (events.is_empty() || events.contains(&event))
            && statuses.iter().any(|s| s == status.as_str());
        if !forwarded {
            return None;
        }
        let url = template.render(&PostbackMacros {
            click: &click,
            external_id: &external_id,
            payout,
            currency: &currency,
            event: &event,
            status,
            txid: &txid,
        });
        Some(NewDelivery {
            url,
            source: source_id.clone(),
            status,
        })
    })
}

/// The status and amount a source is told about: the new state's payout; a reversal (rejected,
/// chargeback) as a negative amount; an adjustment within approved as its difference.
fn reported(change: &Change) -> Option<(ConversionStatus, Money)> {
    match change {
        Change::Duplicate => None,
        Change::Recorded(state) => Some((state.status, state.payout)),
        Change::Updated { before, after } => Some(match after.status {
            ConversionStatus::Rejected | ConversionStatus::Chargeback => {
                (after.status, -after.payout)
            }
            _ if before.status == after.status => (after.status, after.payout - before.payout),
            _ => (after.status, after.payout),
        }),
    }
}

/// Macro values of an outbound postback (SPEC §10).
struct PostbackMacros<'a> {
    click: &'a ClickRecord,
    external_id: &'a str,
    payout: Money,
    currency: &'a str,
    event: &'a str,
    status: ConversionStatus,
    txid: &'a str,
}

impl MacroValues for PostbackMacros<'_> {
    fn value(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "external_id" => Some(Cow::Borrowed(self.external_id)),
            "clickid" => Some(Cow::Borrowed(&self.click.id)),
            "payout" => Some(Cow::Owned(self.payout.to_string())),
            "currency" => Some(Cow::Borrowed(self.currency)),
            "event" => Some(Cow::Borrowed(self.event)),
            "status" => Some(Cow::Borrowed(self.status.as_str())),
            "txid" => Some(Cow::Borrowed(self.txid)),
            "campaign" => Some(Cow::Borrowed(&self.click.campaign)),
            "offer" => self.click.offer.as_deref().map(Cow::Borrowed),
            "cost" => self.click.cost.map(|c| Cow::Owned(c.to_string())),
            "country" => self.click.visitor.country.as_deref().map(Cow::Borrowed),
            _ => name
                .strip_prefix("param.")
                .and_then(|param| self.click.params.get(param))
                .map(Cow::Borrowed),
        }
    }
}
