//! Request limits applied before any handler: the length of the URL ([`MAX_URL_BYTES`], else
//! `414 {"error":"uri_too_long"}`), and request rates per client address (`[limits]`): `/postback` and `/pixel.gif` share one budget,
//! `/api` has another. An address over its budget gets `429 {"error":"rate_limited"}` with
//! `Retry-After`, before any work is done for it. Clicks are never limited: a paid visitor is
//! always redirected.
//!
//! The client address is read as for clicks (`trusted_proxies`), so a proxy in front of the
//! router does not make every caller one. IPv6 callers are counted by their /64, which is what a
//! single subscriber is usually given. Idle addresses are forgotten once a minute.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::LimitsConfig;
use crate::http::error::json_error;
use crate::http::AppState;

/// Longest request target (path and query) answered; longer ones get `414`. Far above any real
/// click or postback URL (a click keeps at most 64 parameters of 1 KiB), so a hostile request
/// cannot make a handler read or log megabytes. The whole request head (request line and
/// headers) is bounded to 128 KiB and 96 headers by the HTTP layer, which answers `431`.
pub const MAX_URL_BYTES: usize = 32 * 1024;

/// Which budget a request draws on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// `/postback`, `/postback/{secret}`, `/pixel.gif`.
    Postback,
    /// Everything under `/api/`.
    Api,
}

impl Budget {
    /// The budget of a request path, if it has one.
    pub fn of(path: &str) -> Option<Budget> {
        if path == "/postback" || path.starts_with("/postback/") || path == "/pixel.gif" {
            Some(Budget::Postback)
        } else if path == "/api" || path.starts_with("/api/") {
            Some(Budget::Api)
        } else {
            None
        }
    }
}

/// The per-address limiters; a limit of `0` has none.
pub struct RateLimits {
    postback: Option<DefaultKeyedRateLimiter<IpAddr>>,
    api: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl RateLimits {
    pub fn new(config: &LimitsConfig) -> RateLimits {
        let limiter = |per_second: u32| {
            NonZeroU32::new(per_second)
                .map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_second(n)))
        };
        RateLimits {
            postback: limiter(config.postback_per_second),
            api: limiter(config.api_per_second),
        }
    }

    /// `Ok` when `ip` may make one more request on `budget`, else how long it should wait.
    pub fn check(&self, budget: Budget, ip: IpAddr) -> Result<(), Duration> {
        let limiter = match budget {
            Budget::Postback => &self.postback,
            Budget::Api => &self.api,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter
            .check_key(&key(ip))
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Drops the state of addresses whose budget is full again, so memory follows the number of
    /// recently active callers, not of every caller ever seen.
    pub fn forget_idle(&self) {
        for limiter in [&self.postback, &self.api].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// IPv4 addresses as they are; IPv6 by their /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        v4 => v4,
    }
}

/// The middleware: answers `429` to an address over its budget, passes everything else on.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let target_len = req
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target_len > MAX_URL_BYTES {
        let response = json_error(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            &format!("the URL is {target_len} bytes long; at most {MAX_URL_BYTES} are accepted"),
        );
        return Ok(req.into_response(response).map_into_right_body());
    }
    let refusal = match (
        // The path as routing reads it (`/%61pi` is `/api`), so no spelling escapes its budget.
        Budget::of(req.match_info().as_str()),
        req.app_data::<web::Data<AppState>>(),
    ) {
        (Some(budget), Some(state)) => {
            let ip = crate::http::client_ip(req.request(), state);
            let refusal = state.limits.check(budget, ip).err();
            if refusal.is_some() && budget == Budget::Postback {
                state.metrics.postback("rate_limited");
            }
            refusal
        }
        _ => None,
    };
    match refusal {
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
        Some(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut response = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this address; retry after the time in Retry-After",
            );
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(seconds.max(1)),
            );
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(postback: u32, api: u32) -> RateLimits {
        RateLimits::new(&LimitsConfig {
            postback_per_second: postback,
            api_per_second: api,
        })
    }

    #[test]
    fn an_address_over_its_budget_is_told_how_long_to_wait() {
        let limits = limits(3, 2);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            assert!(limits.check(Budget::Postback, ip).is_ok());
        }
        let wait = limits.check(Budget::Postback, ip).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        // Budgets and addresses are counted apart.
        assert!(limits.check(Budget::Api, ip).is_ok());
        assert!(limits
            .check(Budget::Postback, "203.0.113.8".parse().unwrap())
            .is_ok());
    }

    #[test]
    fn a_limit_of_zero_is_no_limit() {
        let limits = limits(0, 0);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..10_000 {
            assert!(limits.check(Budget::Postback, ip).is_ok());
            assert!(limits.check(Budget::Api, ip).is_ok());
        }
    }

    #[test]
    fn ipv6_callers_are_counted_by_their_64() {
        let limits = limits(1, 1);
        assert!(limits
            .check(Budget::Api, "2001:db8:1:2::1".parse().unwrap())
            .is_ok());
        assert!(limits
            .check(Budget::Api, "2001:db8:1:2::ffff".parse().unwrap())
            .is_err());
        assert!(limits
            .check(Budget::Api, "2001:db8:1:3::1".parse().unwrap())
            .is_ok());
    }

    #[test]
    fn budgets_are_told_by_path() {
        assert_eq!(Budget::of("/postback"), Some(Budget::Postback));
        assert_eq!(Budget::of("/postback/s3cret"), Some(Budget::Postback));
        assert_eq!(Budget::of("/pixel.gif"), Some(Budget::Postback));
        assert_eq!(Budget::of("/api/rules"), Some(Budget::Api));
        assert_eq!(Budget::of("/c/camp"), None);
        assert_eq!(Budget::of("/apix"), None);
        assert_eq!(Budget::of("/postbacks"), None);
    }
}
