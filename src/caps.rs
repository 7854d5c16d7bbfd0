//! Daily caps (SPEC §5 `daily_cap`): approved conversions per offer per day in the offer's
//! `cap_timezone`. Kept in memory from approval times (rebuilt from the store at start), so the
//! click path answers "capped?" without I/O; the clock is injected.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::clock::Clock;
use crate::decide::OfferAvailability;
use crate::rules::Offer;

/// Approval times are kept this long: enough for "today" in any time zone.
const KEEP_MS: i64 = 50 * 3_600_000;

pub struct CapTracker {
    clock: Arc<dyn Clock>,
    /// Approval times per offer, ascending.
    approvals: RwLock<HashMap<String, Vec<i64>>>,
}

impl CapTracker {
    pub fn new(clock: Arc<dyn Clock>) -> CapTracker {
        CapTracker {
            clock,
            approvals: RwLock::new(HashMap::new()),
        }
    }

    /// Counts an approval of a conversion of `offer` at `at_ms`.
    pub fn approved(&self, offer: &str, at_ms: i64) {
        let now = self.clock.now_ms();
        let mut approvals = self.approvals.write().unwrap_or_else(|e| e.into_inner());
        let times = approvals.entry(offer.to_string()).or_default();
        let position = times.partition_point(|&t| t <= at_ms);
        times.insert(position, at_ms);
        let expired = times.partition_point(|&t| t < now - KEEP_MS);
        times.drain(..expired);
    }

    /// Takes back the latest approval of `offer` (an approved conversion was rejected or charged
    /// back). The store does not say when the identity was approved; the latest is the one most
    /// likely to be in today's count, which is the count that matters.
    pub fn revoked(&self, offer: &str) {
        let mut approvals = self.approvals.write().unwrap_or_else(|e| e.into_inner());
        if let Some(times) = approvals.get_mut(offer) {
            times.pop();
        }
    }

    /// Approved conversions of `offer` on today's cap day.
    pub fn count_today(&self, offer: &Offer) -> usize {
        let now = self.clock.now_ms();
        let day_start = day_start_ms(offer, now);
        let approvals = self.approvals.read().unwrap_or_else(|e| e.into_inner());
        approvals.get(&offer.id).map_or(0, |times| {
            times.len() - times.partition_point(|&t| t < day_start)
        })
    }
}

impl OfferAvailability for CapTracker {
    fn is_capped(&self, offer: &Offer) -> bool {
        match offer.daily_cap {
            Some(cap) => self.count_today(offer) >= cap as usize,
            None => false,
        }
    }
}

/// Midnight of the cap day containing `now_ms`, in the offer's time zone, as epoch milliseconds.
fn day_start_ms(offer: &Offer, now_ms: i64) -> i64 {
    crate::clock::day_start_ms(&offer.cap_tz, offer.cap_day(now_ms.div_euclid(1000)))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::clock::ManualClock;

    fn offers(timezone: &str) -> crate::rules::RuleSet {
        let offers = format!(
            "[[offer]]\nid = \"capped\"\nurl = \"https://a.example/\"\npayout = 1\ndaily_cap = 2\ncap_timezone = \"{timezone}\"\n"
        );
        crate::rules::load_from_sources(&[
            (PathBuf::from("rules/offers.toml"), offers),
            (PathBuf::from("rules/sources.toml"), String::new()),
        ])
        .unwrap()
    }

    /// 2026-11-23 12:00:00 UTC.
    const NOON_UTC: i64 = 1_795_435_200_000;

    #[test]
    fn an_offer_is_capped_once_its_daily_approvals_reach_the_cap() {
        let clock = Arc::new(ManualClock::new(NOON_UTC));
        let caps = CapTracker::new(clock.clone());
        let rules = offers("UTC");
        let offer = rules.offer("capped").unwrap();
        assert!(!caps.is_capped(offer));
        caps.approved("capped", NOON_UTC - 1000);
        assert!(!caps.is_capped(offer));
        caps.approved("capped", NOON_UTC);
        assert!(caps.is_capped(offer));
        caps.revoked("capped");
        assert!(!caps.is_capped(offer));
    }

    #[test]
    fn the_cap_resets_when_the_day_rolls_over_in_the_offers_time_zone() {
        let clock = Arc::new(ManualClock::new(NOON_UTC));
        let caps = CapTracker::new(clock.clone());
        let rules = offers("America/New_York");
        let offer = rules.offer("capped").unwrap();
        caps.approved("capped", NOON_UTC);
        caps.approved("capped", NOON_UTC);
        assert!(caps.is_capped(offer));
        // 04:59 UTC next day is still 23:59 in New York (UTC-5 in November).
        clock.advance(16 * 3_600_000 + 59 * 60_000);
        assert!(caps.is_capped(offer));
        clock.advance(60_000);
        assert!(!caps.is_capped(offer));
    }

    #[test]
    fn yesterdays_approvals_do_not_count_today() {
        let clock = Arc::new(ManualClock::new(NOON_UTC));
        let caps = CapTracker::new(clock.clone());
        let rules = offers("UTC");
        caps.approved("capped", NOON_UTC - 13 * 3_600_000);
        caps.approved("capped", NOON_UTC - 12 * 3_600_000 - 1);
        assert_eq!(caps.count_today(rules.offer("capped").unwrap()), 0);
    }
}
