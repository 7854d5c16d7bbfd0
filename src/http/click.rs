//! `GET|HEAD /c/{campaign}` (SPEC §7): read → classify → decide → record → answer.

use std::time::Instant;

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::click::{click_cost, external_id, parse_params, ClickMacros};
use crate::client_ip;
use crate::decide::{decide, DecisionInput, Route};
use crate::http::error::json_error;
use crate::http::AppState;
use crate::rules::RedirectKind;
use crate::store::ClickRecord;
use crate::visitor::RequestHints;

/// The first-party cookie set at click time that lets `/pixel.gif` find the click.
pub const CLICK_COOKIE: &str = "sl_click";

// Request headers named once: a lookup by `&str` parses the name again on every click.
const SEC_CH_UA: HeaderName = HeaderName::from_static("sec-ch-ua");
const SEC_CH_UA_MOBILE: HeaderName = HeaderName::from_static("sec-ch-ua-mobile");
const SEC_CH_UA_PLATFORM: HeaderName = HeaderName::from_static("sec-ch-ua-platform");
const SEC_CH_UA_PLATFORM_VERSION: HeaderName =
    HeaderName::from_static("sec-ch-ua-platform-version");
const SEC_CH_UA_MODEL: HeaderName = HeaderName::from_static("sec-ch-ua-model");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

pub async fn click(
    req: HttpRequest,
    campaign_id: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    state
        .metrics
        .clicks
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let rules = state.rules.load();
    let Some(campaign) = rules.campaign(&campaign_id) else {
        return unknown_campaign(&state, &campaign_id);
    };
    let Some(source) = rules.source(&campaign.source) else {
        // Validation refuses campaigns with unknown sources; this is a guard, not a path.
        return unknown_campaign(&state, &campaign_id);
    };

    let headers = req.headers();
    let header = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let ip = crate::http::client_ip(&req, &state);
    let hints = RequestHints {
        user_agent: header(&header::USER_AGENT).unwrap_or(""),
        accept_language: header(&header::ACCEPT_LANGUAGE),
        ch_ua: header(&SEC_CH_UA),
        ch_ua_mobile: header(&SEC_CH_UA_MOBILE),
        ch_ua_platform: header(&SEC_CH_UA_PLATFORM),
        ch_ua_platform_version: header(&SEC_CH_UA_PLATFORM_VERSION),
        ch_ua_model: header(&SEC_CH_UA_MODEL),
    };
    let visitor = state.classifier.classify(ip, &hints);
    let params = parse_params(req.query_string());
    let external_id = external_id(source, &params);
    let cost = click_cost(source, &params);

    let mut rng = rand::rng();
    let decision = decide(
        &DecisionInput {
            rules: &rules,
            campaign,
            visitor: &visitor,
            params: &params,
            availability: state.caps.as_ref(),
            policy: state.policy.as_ref(),
        },
        &mut rng,
    );
    let now_ms = state.clock.now_ms();
    // HEAD is a link checker or prefetch, not a visit: no id, no record, no evidence.
    let is_head = req.method() == Method::HEAD;
    let click_id = if is_head {
        String::new()
    } else {
        crate::click_id::generate(now_ms, &mut rng)
    };
    let offer_id = decision.offer.map(|offer| offer.id.as_str());
    let location = decision.target.render(&ClickMacros {
        click_id: &click_id,
        campaign: &campaign.id,
        offer: offer_id,
        source: &source.id,
        external_id: external_id.as_deref(),
        cost,
        visitor: &visitor,
        params: &params,
    });
    state.metrics.decision_latency.observe(started.elapsed());
    state.metrics.redirect(decision.route);

    if !is_head && decision.route == Route::Fallback {
        if let Some(offer) = offer_id {
            state.learning.click(&campaign.id, offer, &visitor, now_ms);
        }
    }
    if !is_head {
        let stored_ip = if state.settings.config.anonymize_ip {
            client_ip::anonymize(ip)
        } else {
            ip
        };
        let record = ClickRecord {
            id: click_id.clone(),
            ts_ms: now_ms,
            campaign: campaign.id.clone(),
            source: source.id.clone(),
            external_id,
            cost,
            offer: offer_id.map(str::to_string),
            route: decision.route,
            visitor,
            ip: stored_ip,
            params,
        };
        let handed_over = Instant::now();
        // A click that cannot be recorded is still redirected: the visitor was paid for. The
        // store logs its own failures at most once a second; a line per click would flood.
        if let Err(e) = state.store.record_click(record).await {
            state
                .metrics
                .click_record_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(campaign = %campaign.id, error = %e, "click not recorded");
        }
        state.metrics.store_latency.observe(handed_over.elapsed());
    }
    let mut response = redirect(campaign.redirect, &location);
    if !is_head && decision.route != Route::Bot {
        if let Ok(value) = click_cookie(
            &req,
            &click_id,
            state.settings.config.attribution_window_days,
        ) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The first-party cookie `/pixel.gif` reads when a conversion page fires it without a click id.
/// Cross-site pixel requests carry it only as `SameSite=None; Secure`, which browsers accept only
/// over HTTPS; over plain HTTP it is `SameSite=Lax`.
fn click_cookie(
    req: &HttpRequest,
    click_id: &str,
    window_days: u32,
) -> Result<HeaderValue, header::InvalidHeaderValue> {
    // The scheme as the visitor's browser saw it: TLS here, or at a proxy that says so. Read
    // directly rather than through `connection_info()`, which parses every forwarding header
    // and allocates on each click.
    let secure = req.app_config().secure()
        || req
            .headers()
            .get(X_FORWARDED_PROTO)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let same_site = if secure {
        "SameSite=None; Secure"
    } else {
        "SameSite=Lax"
    };
    // Pushed piece by piece: `format!` costs several times as much on every click.
    let max_age = (u64::from(window_days) * 86_400).to_string();
    let mut cookie = String::with_capacity(96);
    for piece in [
        CLICK_COOKIE,
        "=",
        click_id,
        "; Path=/; Max-Age=",
        &max_age,
        "; HttpOnly; ",
        same_site,
    ] {
        cookie.push_str(piece);
    }
    HeaderValue::try_from(cookie)
}

fn unknown_campaign(state: &AppState, campaign_id: &str) -> HttpResponse {
    state
        .metrics
        .unknown_campaign
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let default_url = &state.settings.config.default_url;
    if default_url.is_empty() {
        json_error(
            StatusCode::NOT_FOUND,
            "unknown_campaign",
            &format!("no campaign `{}`", campaign_id.escape_debug()),
        )
    } else {
        redirect(RedirectKind::Found, default_url)
    }
}

fn redirect(kind: RedirectKind, location: &str) -> HttpResponse {
    match kind {
        RedirectKind::Found => {
            // Rules are validated URLs and every macro value is percent-encoded, so a rendered
            // URL holds no control character; were one to, the visitor gets an error, not a
            // header that splits the answer.
            let Ok(location) = HeaderValue::from_bytes(location.as_bytes()) else {
                tracing::error!("redirect URL with a control character refused");
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the redirect URL is not a valid header value",
                );
            };
            let mut response = HttpResponse::new(StatusCode::FOUND);
            let headers = response.headers_mut();
            headers.insert(header::LOCATION, location);
            headers.insert(header::CACHE_CONTROL, NO_STORE);
            response
        }
        RedirectKind::Meta => {
            let escaped = escape_html(location);
            HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, NO_STORE))
                .insert_header((header::REFERRER_POLICY, "no-referrer"))
                .body(format!(
                    "<!doctype html><html><head><meta charset=\"utf-8\">\
                     <meta name=\"referrer\" content=\"no-referrer\">\
                     <meta http-equiv=\"refresh\" content=\"0;url={escaped}\">\
                     <title>Redirecting</title></head>\
                     <body><a href=\"{escaped}\" rel=\"noreferrer\">Continue</a></body></html>"
                ))
        }
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}
