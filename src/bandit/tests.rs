//! Behaviour of the evidence-driven policy, end to end through `FallbackPolicy`.

use std::net::{IpAddr, Ipv4Addr};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::segment::LEVELS;
use super::sim::{self, sim_campaign, Scenario};
use super::*;
use crate::rules::Campaign;
use crate::visitor::{Device, Os, Visitor};

const DAY: i64 = 86_400_000;

fn visitor() -> Visitor {
    Visitor {
        country: Some("US".into()),
        device: Device::Phone,
        os: Os::Android,
        carrier: Some("Verizon".into()),
        ..Visitor::unknown(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }
}

fn spec(campaign: &Campaign, payouts: &[f64]) -> CampaignSpec {
    CampaignSpec {
        id: campaign.id.clone(),
        arms: campaign
            .fallback
            .iter()
            .enumerate()
            .map(|(i, f)| ArmSpec {
                offer: f.offer.clone(),
                fallback: i,
                weight: f.weight,
                payout: payouts[i],
            })
            .collect(),
    }
}

/// Records `clicks` clicks of `offer` at `at_ms` of which `conversions` convert one second later.
fn feed(
    e: &mut Evidence,
    c: &Campaign,
    offer: usize,
    clicks: u32,
    conversions: u32,
    payout: f64,
    at_ms: i64,
) {
    let seg = Segment::of(&visitor());
    let every = clicks.checked_div(conversions).unwrap_or(u32::MAX).max(1);
    for i in 0..clicks {
        e.record_click(&c.id, &c.fallback[offer].offer, &seg, at_ms);
        if conversions > 0 && i % every == 0 {
            e.record_conversion(
                &c.id,
                &c.fallback[offer].offer,
                &seg,
                payout,
                at_ms,
                at_ms + 1_000,
            );
        }
    }
}

fn shares_now(e: &mut Evidence, c: &Campaign, payouts: &[f64], now_ms: i64) -> Vec<f64> {
    let allocator = Allocator::new();
    allocator.publish(e.recompute(&[spec(c, payouts)], now_ms));
    let all: Vec<usize> = (0..c.fallback.len()).collect();
    allocator.shares(c, &visitor(), &all)
}

fn slow_fading() -> BanditConfig {
    BanditConfig {
        time_half_life_ms: 1e15,
        click_half_life: 1e12,
        ..BanditConfig::default()
    }
}

#[test]
fn with_no_evidence_shares_are_proportional_to_weights() {
    let c = sim_campaign("c", &[("a", 3.0), ("b", 1.0), ("d", 4.0)]);
    let mut e = Evidence::new(BanditConfig::default());
    // Evidence about another campaign must not leak into this one.
    let other = sim_campaign("other", &[("a", 1.0)]);
    feed(&mut e, &other, 0, 500, 50, 2.0, 0);
    let shares = shares_now(&mut e, &c, &[1.0, 1.0, 1.0], 1_000);
    for (s, w) in shares.iter().zip([3.0, 1.0, 4.0]) {
        assert!((s - w / 8.0).abs() < 1e-9, "{shares:?}");
    }
}

#[test]
fn once_the_evidence_shows_two_offers_earn_alike_their_weights_no_longer_split_them() {
    // Weight 3 against 1, and 2,000 clicks each at 5 % and the same payout: with the weights
    // as a fixed factor b would get a quarter; as a prior that has faded it gets near half.
    let c = sim_campaign("c", &[("a", 3.0), ("b", 1.0)]);
    let mut e = Evidence::new(slow_fading());
    for offer in 0..2 {
        feed(&mut e, &c, offer, 2_000, 100, 1.0, 0);
    }
    let shares = shares_now(&mut e, &c, &[1.0, 1.0], 100_000_000);
    assert!(shares[1] > 0.4 && shares[1] < 0.6, "{shares:?}");
}

#[test]
fn with_no_evidence_a_higher_configured_payout_does_not_move_the_split() {
    let c = sim_campaign("c", &[("a", 2.0), ("b", 1.0)]);
    let mut e = Evidence::new(BanditConfig::default());
    // Only clicks of another campaign: this one has evidence tables but no evidence.
    let other = sim_campaign("other", &[("a", 1.0)]);
    feed(&mut e, &other, 0, 100, 0, 1.0, 0);
    let shares = shares_now(&mut e, &c, &[1.20, 0.80], 1_000);
    assert!((shares[0] - 2.0 / 3.0).abs() < 1e-9, "{shares:?}");
}

#[test]
fn a_partial_refund_lowers_revenue_but_keeps_the_conversion() {
    let c = sim_campaign("c", &[("a", 1.0)]);
    let seg = Segment::of(&visitor());
    let mut e = Evidence::new(slow_fading());
    feed(&mut e, &c, 0, 100, 1, 2.0, 0);
    e.record_adjustment("c", "a", &seg, -0.5, 0, 2_000);
    let (_, conversions, revenue) = e.totals("c", "a", &seg, 3_000);
    assert!((conversions - 1.0).abs() < 1e-6, "{conversions}");
    assert!((revenue - 1.5).abs() < 1e-6, "{revenue}");
    e.record_reversal("c", "a", &seg, 1.5, 0, 4_000);
    let (_, conversions, revenue) = e.totals("c", "a", &seg, 5_000);
    assert!(conversions.abs() < 1e-6 && revenue.abs() < 1e-6);
}

#[test]
fn with_strong_evidence_the_best_epc_offer_not_the_best_cr_gets_most_traffic() {
    let c = sim_campaign("c", &[("high-cr", 1.0), ("high-epc", 1.0)]);
    let mut e = Evidence::new(slow_fading());
    // EPC 0.10 with CR 10 % against EPC 0.20 with CR 4 %.
    feed(&mut e, &c, 0, 5_000, 500, 1.0, 0);
    feed(&mut e, &c, 1, 5_000, 200, 5.0, 0);
    let shares = shares_now(&mut e, &c, &[1.0, 5.0], 10 * DAY);
    assert!(shares[1] > 0.9, "{shares:?}");
}

#[test]
fn a_higher_weight_needs_more_contrary_evidence() {
    // B earns 30 % more per click than A (2.6 % against 2 %, same payout). At each amount of
    // evidence B must get less traffic when A is favoured 4 to 1 than at even weights, and the
    // evidence must still win in the end.
    let share_of_b = |weight_a: f64, clicks: u32| {
        let c = sim_campaign("c", &[("a", weight_a), ("b", 1.0)]);
        let mut e = Evidence::new(slow_fading());
        feed(&mut e, &c, 0, clicks, clicks / 50, 5.0, 0);
        feed(&mut e, &c, 1, clicks, clicks * 13 / 500, 5.0, 0);
        shares_now(&mut e, &c, &[5.0, 5.0], 10 * DAY)[1]
    };
    for clicks in [500, 1_000, 2_000] {
        let even = share_of_b(1.0, clicks);
        let favoured = share_of_b(4.0, clicks);
        // The weight's pull fades with the evidence: a clear gap at first, a small one later.
        let gap = if clicks == 500 { 0.02 } else { 0.0 };
        assert!(
            favoured < even - gap,
            "{clicks} clicks: {favoured} vs {even}"
        );
    }
    let late = share_of_b(4.0, 10_000);
    assert!(late > 0.9, "the evidence never won: {late}");
}

#[test]
fn young_clicks_are_not_failures() {
    let c = sim_campaign("c", &[("a", 1.0), ("b", 1.0)]);
    let shares_after = |age_ms: i64| {
        let mut e = Evidence::new(slow_fading());
        // Each offer's own conversions have taught it that delays are about an hour, and the two
        // have converted alike.
        let seg = Segment::of(&visitor());
        for offer in ["a", "b"] {
            for i in 0..3_000 {
                e.record_click("c", offer, &seg, i);
                if i % 10 == 0 {
                    e.record_conversion("c", offer, &seg, 1.0, i, i + 3_600_000);
                }
            }
        }
        feed(&mut e, &c, 0, 3_000, 0, 1.0, 10 * DAY);
        shares_now(&mut e, &c, &[1.0, 1.0], 10 * DAY + age_ms)
    };
    let young = shares_after(2_000);
    let old = shares_after(3 * DAY);
    assert!(young[0] > 0.45, "young {young:?}");
    assert!(old[0] < 0.35, "old {old:?}");
}

#[test]
fn fading_follows_a_payout_halving() {
    let c = sim_campaign("c", &[("a", 1.0), ("b", 1.0)]);
    let config = BanditConfig {
        time_half_life_ms: 1e15,
        ..BanditConfig::default()
    };
    let mut e = Evidence::new(config);
    let allocator = Allocator::new();
    let seg = Segment::of(&visitor());
    let v = visitor();
    let mut rng = StdRng::seed_from_u64(5);
    let mut payout = [2.0, 1.5];
    let mut b_after_change = 0;
    // A click every 100 ms, conversions 2 s later, tables rebuilt every 100 clicks.
    let mut pending: Vec<(i64, usize, i64)> = Vec::new();
    for k in 0..30_000i64 {
        let now = k * 100;
        if k == 20_000 {
            payout[0] = 1.0;
        }
        pending.retain(|&(at, o, click)| {
            if at > now {
                return true;
            }
            e.record_conversion("c", &c.fallback[o].offer, &seg, payout[o], click, at);
            false
        });
        if k % 100 == 0 {
            allocator.publish(e.recompute(&[spec(&c, &[2.0, 1.5])], now));
        }
        let o = allocator.choose(&c, &v, &[0, 1], &mut rng);
        e.record_click("c", &c.fallback[o].offer, &seg, now);
        if rng.random::<f64>() < 0.05 {
            pending.push((now + 2_000, o, now));
        }
        if k == 19_999 {
            let shares = allocator.shares(&c, &v, &[0, 1]);
            assert!(
                shares[0] > 0.8,
                "before the change A earns most: {shares:?}"
            );
        }
        if k >= 26_000 && o == 1 {
            b_after_change += 1;
        }
    }
    assert!(
        b_after_change > 2_800,
        "B got {b_after_change} of the last 4000 clicks"
    );
}

#[test]
fn ineligible_offers_get_nothing() {
    let c = sim_campaign("c", &[("a", 1.0), ("b", 1.0), ("d", 1.0)]);
    let mut e = Evidence::new(BanditConfig::default());
    feed(&mut e, &c, 1, 2_000, 200, 5.0, 0);
    // "b" (the best) paused: left out of the table, and out of every draw.
    let mut s = spec(&c, &[1.0, 1.0, 1.0]);
    s.arms.remove(1);
    let allocator = Allocator::new();
    allocator.publish(e.recompute(&[s], DAY));
    let v = visitor();
    let shares = allocator.shares(&c, &v, &[0, 2]);
    assert_eq!(shares.len(), 2);
    assert!(
        (shares.iter().sum::<f64>() - 1.0).abs() < 1e-9,
        "{shares:?}"
    );
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..2_000 {
        assert_ne!(allocator.choose(&c, &v, &[0, 2], &mut rng), 1);
        // A visitor-level exclusion of "d" too.
        assert_eq!(allocator.choose(&c, &v, &[0], &mut rng), 0);
    }
}

#[test]
fn a_new_offer_gets_traffic_before_the_next_refresh() {
    let before = sim_campaign("c", &[("a", 1.0)]);
    let after = sim_campaign("c", &[("a", 1.0), ("new", 1.0)]);
    let mut e = Evidence::new(BanditConfig::default());
    feed(&mut e, &before, 0, 2_000, 20, 1.0, 0);
    let allocator = Allocator::new();
    allocator.publish(e.recompute(&[spec(&before, &[1.0])], DAY));
    let shares = allocator.shares(&after, &visitor(), &[0, 1]);
    assert!(shares[1] > 0.1 && shares[1] < 0.9, "{shares:?}");
}

fn small() -> Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scenarios/small.toml");
    Scenario::parse(&std::fs::read_to_string(path).expect("small.toml")).expect("valid")
}

#[test]
fn the_simulator_is_deterministic_for_a_seed() {
    let run = |seed| serde_json::to_string(&sim::run(small(), &["bandit"], seed).unwrap()).unwrap();
    assert_eq!(run(4), run(4));
    assert_ne!(run(4), run(5));
}

#[test]
fn the_small_scenario_beats_uniform() {
    let report = sim::run(small(), &["bandit", "uniform"], 1).unwrap();
    let (bandit, uniform) = (&report.policies[0], &report.policies[1]);
    assert!(bandit.ratio > uniform.ratio + 0.2, "{report:?}");
    assert!(bandit.ratio > 0.85, "{report:?}");
}

#[test]
fn the_ratio_by_tenth_shows_the_bandit_learning_and_weighs_up_to_the_whole_ratio() {
    let report = sim::run(small(), &["bandit", "uniform"], 1).unwrap();
    let (bandit, uniform) = (&report.policies[0], &report.policies[1]);
    assert_eq!(bandit.ratio_by_tenth.len(), 10);
    let tenths = &bandit.ratio_by_tenth;
    assert!(tenths[9] > tenths[0] + 0.05, "{tenths:?}");
    // Uniform learns nothing: every tenth is near its whole-run ratio.
    for t in &uniform.ratio_by_tenth {
        assert!(
            (t - uniform.ratio).abs() < 0.05,
            "{:?}",
            uniform.ratio_by_tenth
        );
    }
    let (lo, hi) = tenths
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(l, h), &t| (l.min(t), h.max(t)));
    assert!(lo <= bandit.ratio && bandit.ratio <= hi, "{tenths:?}");
}

#[test]
fn the_second_half_is_broken_down_by_segments_ranked_by_traffic() {
    let report = sim::run(small(), &["uniform"], 1).unwrap();
    let tiers = &report.policies[0].second_half_by_tier;
    let names: Vec<&str> = tiers.iter().map(|t| t.segments.as_str()).collect();
    assert_eq!(names, ["1", "2-3", "4"]);
    // Shares 5, 3, 2 and 1 of 11: the busiest segment alone is the first tier.
    assert!((tiers[0].traffic - 5.0 / 11.0).abs() < 0.02, "{tiers:?}");
    assert!((tiers[1].traffic - 5.0 / 11.0).abs() < 0.02, "{tiers:?}");
    let clicks: f64 = tiers.iter().map(|t| t.traffic).sum();
    assert!((clicks - 1.0).abs() < 1e-3, "{tiers:?}");
    assert!(
        tiers.iter().all(|t| t.ratio > 0.0 && t.ratio <= 1.0),
        "{tiers:?}"
    );
}

#[test]
fn a_bad_scenario_names_the_field() {
    let err = Scenario::parse("horizon = 10\nclicks_per_second = 1\n[[segment]]\nshare = 1\n[[offer]]\nid = \"a\"\npayout = 1\ncr = 2\n")
        .unwrap_err();
    assert!(err.starts_with("offer[0].cr:"), "{err}");
}

#[test]
fn a_halved_payout_is_detected_and_followed_within_a_few_thousand_clicks() {
    let c = sim_campaign("c", &[("a", 1.0), ("b", 1.0)]);
    let payouts = [3.0, 2.0];
    let mut e = Evidence::new(BanditConfig::default());
    let mut now = 0;
    // 20 clicks a second per offer, 10 % converting a second later.
    let mut run = |e: &mut Evidence, seconds: i64, payout_a: f64| {
        for _ in 0..seconds {
            feed(e, &c, 0, 20, 2, payout_a, now);
            feed(e, &c, 1, 20, 2, 2.0, now);
            now += 1_000;
            if now % 10_000 == 0 {
                e.recompute(&[spec(&c, &payouts)], now);
            }
        }
        now
    };
    let t = run(&mut e, 500, 3.0);
    assert!(shares_now(&mut e, &c, &payouts, t)[0] > 0.9);
    assert_eq!(e.changes_detected(), 0);
    let t = run(&mut e, 100, 1.0);
    assert!(e.changes_detected() >= 1);
    let shares = shares_now(&mut e, &c, &payouts, t);
    assert!(shares[0] < 0.2, "{shares:?}");
}

#[test]
fn an_offer_moving_to_segments_that_convert_better_is_not_a_change_but_a_real_one_is() {
    // A converts at 1 % in the US and 10 % in Germany; its traffic moves from mostly American
    // to mostly German. Its campaign-wide rate rises fivefold with nothing changed.
    let c = sim_campaign("c", &[("a", 1.0), ("b", 1.0)]);
    let payouts = [2.0, 2.0];
    let at = |country: &str| {
        Segment::of(&Visitor {
            country: Some(country.into()),
            ..visitor()
        })
    };
    let (us, de) = (at("US"), at("DE"));
    // Evidence that hardly fades, so only the detector can follow the real change at the end.
    let mut e = Evidence::new(slow_fading());
    let mut clicks = 0u64;
    let mut second = |e: &mut Evidence, now: i64, us_clicks: u32, de_clicks: u32, de_every: u64| {
        for (seg, n, every) in [(&us, us_clicks, 100), (&de, de_clicks, de_every)] {
            for _ in 0..n {
                clicks += 1;
                for (offer, every) in [("a", every), ("b", 20)] {
                    e.record_click("c", offer, seg, now);
                    if clicks.is_multiple_of(every) {
                        e.record_conversion("c", offer, seg, 2.0, now, now + 1_000);
                    }
                }
            }
        }
        if now % 10_000 == 0 {
            e.recompute(&[spec(&c, &payouts)], now);
        }
    };
    let mut now = 0;
    for _ in 0..600 {
        second(&mut e, now, 20, 2, 10);
        now += 1_000;
    }
    for _ in 0..400 {
        second(&mut e, now, 2, 20, 10);
        now += 1_000;
    }
    assert_eq!(e.changes_detected(), 0);
    // Then A's German rate halves: that is news.
    for _ in 0..400 {
        second(&mut e, now, 2, 20, 20);
        now += 1_000;
    }
    assert!(e.changes_detected() >= 1);
}

#[test]
fn a_payout_change_reprices_the_conversions_seen_instead_of_forgetting_them() {
    // Only the payout moves, so what the old conversions say of the conversion rate still
    // holds: the evidence keeps (nearly) all its conversions, now valued near the new payout.
    let c = sim_campaign("c", &[("a", 1.0), ("b", 1.0)]);
    let payouts = [3.0, 2.0];
    let mut e = Evidence::new(slow_fading());
    let seg = Segment::of(&visitor());
    let mut now = 0;
    for second in 0..800 {
        let payout_a = if second < 500 { 3.0 } else { 1.0 };
        feed(&mut e, &c, 0, 20, 2, payout_a, now);
        feed(&mut e, &c, 1, 20, 2, 2.0, now);
        now += 1_000;
        if now % 10_000 == 0 {
            e.recompute(&[spec(&c, &payouts)], now);
        }
    }
    assert!(e.changes_detected() >= 1);
    let (_, conversions, revenue) = e.totals("c", "a", &seg, now);
    // 1,600 conversions in all; a cut would have kept a tenth of the 1,000 before the change.
    assert!(conversions > 1_500.0, "{conversions}");
    // The recent memory (half-life 2,000 clicks of the offer) is by now 7/8 new payouts.
    assert!(revenue / conversions < 1.5, "{}", revenue / conversions);
}

#[test]
fn a_sparse_segment_gets_the_device_effect_that_other_countries_show_net_of_their_own() {
    // A converts three times as well on iOS as on Android in every country, and half as well in
    // the US as in Germany; B converts at 4 % everywhere. German iOS visitors have barely been
    // seen, and the US, where iOS traffic comes from, makes iOS look poor for A overall: only
    // with the US effect taken out does A (6 % there) beat B.
    let c = sim_campaign("c", &[("a", 1.0), ("b", 1.0)]);
    let at = |country: &str, os: Os| Visitor {
        country: Some(country.into()),
        device: Device::Phone,
        os,
        carrier: None,
        ..Visitor::unknown(IpAddr::V4(Ipv4Addr::LOCALHOST))
    };
    // No drift here: cells fed one after the other must not look like a change.
    let mut e = Evidence::new(BanditConfig {
        change_z: f64::INFINITY,
        ..slow_fading()
    });
    let cells = [
        (at("US", Os::Android), [(5_000, 50), (5_000, 200)]),
        (at("US", Os::Ios), [(4_000, 120), (4_000, 160)]),
        (at("DE", Os::Android), [(20_000, 400), (20_000, 800)]),
        (at("DE", Os::Ios), [(30, 0), (30, 0)]),
    ];
    for (visitor, offers) in &cells {
        let seg = Segment::of(visitor);
        for (offer, &(clicks, conversions)) in ["a", "b"].iter().zip(offers) {
            for i in 0..clicks {
                e.record_click("c", offer, &seg, 0);
                if i < conversions {
                    e.record_conversion("c", offer, &seg, 1.0, 0, 1_000);
                }
            }
        }
    }
    let allocator = Allocator::new();
    allocator.publish(e.recompute(&[spec(&c, &[1.0, 1.0])], DAY));
    let shares = allocator.shares(&c, &at("DE", Os::Ios), &[0, 1]);
    assert!(shares[0] > 0.6, "{shares:?}");
}

#[test]
fn an_offer_that_converts_a_day_later_is_judged_on_clicks_old_enough_to_have_converted() {
    // A click every 10 s for four days; every 20th converts exactly a day after its click. The
    // click half-life (3,000 clicks, 8 hours here) is far shorter than the delay, so evidence
    // must be kept for as long as conversions take, or the rate rests on clicks that cannot
    // have converted yet and on conversions weighted down to nothing.
    let mut e = Evidence::new(BanditConfig::default());
    let seg = Segment::of(&visitor());
    let end = 4 * DAY;
    let mut conversions = std::collections::VecDeque::new();
    let mut t = 0;
    let mut n = 0u32;
    while t < end {
        while conversions.front().is_some_and(|&at| at + DAY <= t) {
            let click = conversions.pop_front().expect("checked");
            e.record_conversion("c", "a", &seg, 1.0, click, click + DAY);
        }
        e.record_click("c", "a", &seg, t);
        if n.is_multiple_of(20) {
            conversions.push_back(t);
        }
        n += 1;
        t += 10_000;
    }
    let (exposure, converted, _) = e.totals("c", "a", &seg, end);
    let rate = converted / exposure;
    assert!(
        (rate - 0.05).abs() < 0.01,
        "{rate} from {converted} / {exposure}"
    );
}

#[test]
fn an_offer_whose_delays_are_unknown_is_not_judged_by_the_delays_of_faster_offers() {
    // A converts a minute after its clicks, many times; B, new, has had six hours of clicks and
    // no conversion yet. Nothing says B's conversions come as fast as A's: its clicks of a few
    // hours count as part of a trial, not as six hours of failures.
    let mut e = Evidence::new(slow_fading());
    let seg = Segment::of(&visitor());
    let hour = DAY / 24;
    for i in 0..6_000 {
        let t = i * (6 * hour / 6_000);
        e.record_click("c", "a", &seg, t);
        if i % 10 == 0 {
            e.record_conversion("c", "a", &seg, 1.0, t, t + 60_000);
        }
        e.record_click("c", "b", &seg, t);
    }
    let now = 6 * hour;
    let (fast, _, _) = e.totals("c", "a", &seg, now);
    let (unknown, _, _) = e.totals("c", "b", &seg, now);
    assert!(unknown < 0.7 * fast, "{unknown} vs {fast}");
}

#[test]
fn probability_matching_is_sharpened_towards_the_likelier_better_offer() {
    // 300 clicks each, A converting 6 times and B 3: A is likelier the better, far from sure.
    let share_of_a = |sharpen: f64| {
        let c = sim_campaign("c", &[("a", 1.0), ("b", 1.0)]);
        let mut e = Evidence::new(BanditConfig {
            sharpen,
            ..slow_fading()
        });
        feed(&mut e, &c, 0, 300, 6, 1.0, 0);
        feed(&mut e, &c, 1, 300, 3, 1.0, 0);
        shares_now(&mut e, &c, &[1.0, 1.0], 10 * DAY)[0]
    };
    let matching = share_of_a(1.0);
    let sharpened = share_of_a(BanditConfig::default().sharpen);
    assert!(matching > 0.55 && matching < 0.9, "{matching}");
    assert!(sharpened > matching + 0.05, "{sharpened} vs {matching}");
}

#[test]
fn the_exploration_budget_goes_to_offers_that_could_still_be_best_not_to_clear_losers() {
    // A converts at 5 %, C at 4.5 %: C might still be the better. B converts at 1 %: with the
    // fewest conversions it is the least certain, and by spread alone it would get the most of
    // the exploration budget.
    let c = sim_campaign("c", &[("a", 1.0), ("b", 1.0), ("c", 1.0)]);
    let mut e = Evidence::new(slow_fading());
    feed(&mut e, &c, 0, 2_000, 100, 1.0, 0);
    feed(&mut e, &c, 1, 2_000, 20, 1.0, 0);
    feed(&mut e, &c, 2, 2_000, 90, 1.0, 0);
    let tables = e.recompute(&[spec(&c, &[1.0, 1.0, 1.0])], 10 * DAY);
    let keys = Segment::of(&visitor()).keys();
    let table = &tables.campaigns["c"].segments[&keys[LEVELS - 1]];
    let explore: f64 = table.explore.iter().sum();
    let share = |arm: usize| table.explore[arm] / explore;
    assert!(share(1) < 0.75 * share(2), "{:?}", table.explore);
    assert!(share(1) > 0.0, "{:?}", table.explore);
}
