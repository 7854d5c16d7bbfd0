//! The offline simulator behind `smartlink simulate`: replays a synthetic scenario of residual
//! traffic through a fallback policy on a simulated clock, with delayed conversions and drift,
//! and scores it against an oracle that always knows the best true EPC.
//!
//! Earnings are scored in expectation (the true EPC of the chosen offer at click time) so that
//! the ratio to the oracle is not drowned in conversion noise; `realised_earnings` gives the
//! payouts actually drawn.

pub mod policies;
pub mod scenario;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::bandit::{BanditConfig, Segment};
use crate::rules::matching::Conditions;
use crate::rules::model::{Campaign, Fallback, RedirectKind};
use crate::template::{MacroSet, UrlTemplate};
use crate::visitor::{Device, Os, Visitor};
pub use scenario::Scenario;

/// Share of the new oracle a policy must reach after a drift to count as recovered.
const RECOVERY_LEVEL: f64 = 0.9;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub clicks: u64,
    pub segments: usize,
    pub offers: usize,
    pub policies: Vec<PolicyReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    pub earnings: f64,
    pub realised_earnings: f64,
    pub oracle_earnings: f64,
    pub ratio: f64,
    pub second_half_ratio: f64,
    /// `ratio` over each tenth of the horizon, in order: how fast the policy learns and where it
    /// settles.
    pub ratio_by_tenth: Vec<f64>,
    /// `ratio` over the second half per tier of segments ranked by traffic (the busiest one, the
    /// next two, the next four, ...): where a policy that has settled still loses.
    pub second_half_by_tier: Vec<Tier>,
    pub regret: f64,
    pub recovery: Vec<Recovery>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tier {
    /// Ranks of the tier's segments by traffic share, 1 the busiest: `"1"`, `"2-3"`, `"4-7"`, ...
    pub segments: String,
    /// Share of the second half's clicks that came from these segments.
    pub traffic: f64,
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub at_click: u64,
    pub offer: String,
    /// Clicks after the drift until the ratio over the last `window` clicks, all after the
    /// drift, is back to 0.9 of the oracle (at least `window`); `None` when it never is within
    /// the horizon.
    pub clicks_to_90: Option<u64>,
    pub fraction_of_horizon: Option<f64>,
}

/// The scenario turned into concrete segments and per-(segment, offer) truths.
struct World {
    scenario: Scenario,
    segments: Vec<Segment>,
    visitors: Vec<Visitor>,
    /// Cumulative traffic shares, for drawing a segment.
    cumulative: Vec<f64>,
    /// Tier of each segment by its traffic share (see `Tier`): 0 for the busiest, then
    /// ⌊log2(rank)⌋.
    tier: Vec<usize>,
    /// Base true conversion rate per segment × offer.
    cr: Vec<f64>,
    /// Whether the offer may serve the segment at all (its `countries`).
    allowed: Vec<bool>,
    campaign: Campaign,
}

impl World {
    fn build(scenario: Scenario) -> World {
        let mut rng = StdRng::seed_from_u64(scenario.world_seed);
        let mut segments: Vec<(Segment, f64)> = scenario
            .segment
            .iter()
            .map(|s| {
                (
                    Segment {
                        country: s.country.clone(),
                        device: s
                            .device
                            .as_deref()
                            .and_then(Device::parse)
                            .unwrap_or(Device::Other),
                        os: s.os.as_deref().and_then(Os::parse).unwrap_or(Os::Other),
                        carrier: s.carrier.clone().filter(|c| !c.is_empty()),
                    },
                    s.share,
                )
            })
            .collect();
        if let Some(t) = &scenario.traffic {
            let pick = |rng: &mut StdRng, list: &[String]| -> Option<String> {
                (!list.is_empty()).then(|| list[rng.random_range(0..list.len())].clone())
            };
            let product = t.countries.len()
                * t.devices.len().max(1)
                * t.oses.len().max(1)
                * t.carriers.len().max(1);
            let target = t.segments.min(product);
            let mut seen: HashSet<Segment> = segments.iter().map(|(s, _)| s.clone()).collect();
            let mut generated = Vec::new();
            while generated.len() < target {
                let s = Segment {
                    country: pick(&mut rng, &t.countries),
                    device: pick(&mut rng, &t.devices)
                        .and_then(|d| Device::parse(&d))
                        .unwrap_or(Device::Other),
                    os: pick(&mut rng, &t.oses)
                        .and_then(|o| Os::parse(&o))
                        .unwrap_or(Os::Other),
                    carrier: pick(&mut rng, &t.carriers).filter(|c| !c.is_empty()),
                };
                if seen.insert(s.clone()) {
                    generated.push(s);
                }
            }
            for (k, s) in generated.into_iter().enumerate() {
                segments.push((s, 1.0 / ((k + 1) as f64).powf(t.zipf)));
            }
        }
        let total: f64 = segments.iter().map(|(_, w)| w).sum();
        let mut cumulative = Vec::with_capacity(segments.len());
        let mut sum = 0.0;
        for (_, w) in &segments {
            sum += w / total;
            cumulative.push(sum);
        }
        let mut by_share: Vec<usize> = (0..segments.len()).collect();
        by_share.sort_by(|&a, &b| segments[b].1.total_cmp(&segments[a].1).then(a.cmp(&b)));
        let mut tier = vec![0; segments.len()];
        for (rank, &s) in by_share.iter().enumerate() {
            tier[s] = (rank + 1).ilog2() as usize;
        }
        let offers = &scenario.offer;
        let mut cr = vec![0.0; segments.len() * offers.len()];
        let mut allowed = vec![true; segments.len() * offers.len()];
        // Factors per (offer, dimension, value), drawn on first use in segment order so that the
        // world depends on the seed alone.
        let mut factors: HashMap<(usize, u8, String), f64> = HashMap::new();
        for (s, (segment, _)) in segments.iter().enumerate() {
            for (o, offer) in offers.iter().enumerate() {
                let mut rate = offer.cr;
                if offer.cr_spread > 0.0 {
                    rate *= (offer.cr_spread * policies::normal(&mut rng)).exp();
                }
                let values = [
                    (
                        offer.country_spread,
                        segment.country.clone().unwrap_or_default(),
                    ),
                    (offer.device_spread, segment.device.as_str().to_string()),
                    (offer.os_spread, segment.os.as_str().to_string()),
                    (
                        offer.carrier_spread,
                        segment.carrier.clone().unwrap_or_default(),
                    ),
                ];
                for (dim, (spread, value)) in values.into_iter().enumerate() {
                    if spread > 0.0 {
                        rate *= *factors
                            .entry((o, dim as u8, value))
                            .or_insert_with(|| (spread * policies::normal(&mut rng)).exp());
                    }
                }
                for by in &offer.cr_by {
                    let hit = by
                        .country
                        .as_ref()
                        .is_none_or(|c| segment.country.as_ref() == Some(c))
                        && by
                            .device
                            .as_deref()
                            .is_none_or(|d| Device::parse(d) == Some(segment.device))
                        && by
                            .os
                            .as_deref()
                            .is_none_or(|x| Os::parse(x) == Some(segment.os));
                    if hit {
                        rate *= by.factor;
                    }
                }
                cr[s * offers.len() + o] = rate.min(1.0);
                allowed[s * offers.len() + o] = offer.countries.is_empty()
                    || segment
                        .country
                        .as_ref()
                        .is_some_and(|c| offer.countries.iter().any(|x| x.eq_ignore_ascii_case(c)));
            }
        }
        let visitors = segments
            .iter()
            .map(|(s, _)| Visitor {
                country: s.country.clone(),
                device: s.device,
                os: s.os,
                carrier: s.carrier.clone(),
                ..Visitor::unknown(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            })
            .collect();
        let campaign = sim_campaign(
            "sim",
            &offers
                .iter()
                .map(|o| (o.id.as_str(), o.weight))
                .collect::<Vec<_>>(),
        );
        World {
            segments: segments.into_iter().map(|(s, _)| s).collect(),
            visitors,
            cumulative,
            tier,
            cr,
            allowed,
            campaign,
            scenario,
        }
    }

    fn bandit_config(&self) -> BanditConfig {
        let t = &self.scenario.bandit;
        let mut c = BanditConfig::default();
        if let Some(v) = t.time_half_life_s {
            c.time_half_life_ms = v * 1000.0;
        }
        if let Some(v) = t.click_half_life {
            c.click_half_life = v;
        }
        if let Some(v) = t.weight_fade_conversions {
            c.weight_fade_conversions = v;
        }
        if let Some(v) = t.sharpen {
            c.sharpen = v;
        }
        if let Some(v) = t.exploration {
            c.exploration = v;
        }
        if let Some(v) = t.prior_conversions {
            c.prior_conversions = v;
        }
        if let Some(v) = t.delay_min_s {
            c.delay_min_ms = v * 1000.0;
        }
        if let Some(v) = t.delay_max_s {
            c.delay_max_ms = v * 1000.0;
        }
        c
    }
}

/// A campaign with no primaries whose fallbacks are `arms` (offer id, weight), matching everyone.
pub fn sim_campaign(id: &str, arms: &[(&str, f64)]) -> Campaign {
    Campaign {
        id: id.to_string(),
        source: "sim".to_string(),
        redirect: RedirectKind::Found,
        backlink: UrlTemplate::parse("https://backlink.example/", MacroSet::Click)
            .expect("a valid literal URL"),
        bot_url: None,
        primary: Vec::new(),
        fallback: arms
            .iter()
            .map(|(offer, weight)| Fallback {
                offer: offer.to_string(),
                weight: *weight,
                matches: Conditions::default(),
                excludes: Conditions::default(),
            })
            .collect(),
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at_ms: i64,
    seq: u64,
    segment: usize,
    offer: usize,
    click_ms: i64,
    payout_micros: i64,
}

/// Runs `policy_names` (all when empty) over the scenario. Deterministic for a seed.
pub fn run(scenario: Scenario, policy_names: &[&str], seed: u64) -> Result<Report, String> {
    let names: Vec<&str> = if policy_names.is_empty() {
        policies::NAMES.to_vec()
    } else {
        policy_names.to_vec()
    };
    let world = World::build(scenario);
    let payouts: Vec<f64> = world
        .scenario
        .offer
        .iter()
        .map(|o| o.prior_payout.unwrap_or(o.payout))
        .collect();
    let view = policies::World {
        campaign: &world.campaign,
        visitors: &world.visitors,
        segments: &world.segments,
        payouts: &payouts,
    };
    let config = world.bandit_config();
    let mut reports = Vec::new();
    for name in names {
        let mut policy = policies::make(name, &view, &config).ok_or_else(|| {
            format!(
                "unknown policy `{name}` (one of {})",
                policies::NAMES.join(", ")
            )
        })?;
        reports.push(run_one(&world, name, policy.as_mut(), seed));
    }
    Ok(Report {
        scenario: world.scenario.name.clone(),
        seed,
        clicks: world.scenario.horizon,
        segments: world.segments.len(),
        offers: world.scenario.offer.len(),
        policies: reports,
    })
}

fn run_one(
    world: &World,
    name: &str,
    policy: &mut dyn policies::SimPolicy,
    seed: u64,
) -> PolicyReport {
    let sc = &world.scenario;
    let n_offers = sc.offer.len();
    // Separate streams so that every policy sees the same visitors in the same order.
    let mut traffic = StdRng::seed_from_u64(seed ^ 0x7472_6166_6669_6300);
    let mut outcomes = StdRng::seed_from_u64(seed ^ 0x6f75_7463_6f6d_6500);
    let mut choices = StdRng::seed_from_u64(seed ^ 0x6368_6f69_6365_7300);

    let mut payout: Vec<f64> = sc.offer.iter().map(|o| o.payout).collect();
    let mut cr_factor = vec![1.0; n_offers];
    let mut paused = vec![false; n_offers];
    // Remaining conversions before the cap, and the simulated day it applies to.
    let mut cap_left: Vec<Option<u64>> = vec![None; n_offers];
    let mut cap_base: Vec<Option<u64>> = vec![None; n_offers];
    let mut cap_day = vec![0i64; n_offers];

    let mut drifts: Vec<(u64, f64, usize)> = sc
        .drift
        .iter()
        .enumerate()
        .map(|(i, d)| {
            (
                d.at_click.unwrap_or(u64::MAX),
                d.at_s.unwrap_or(f64::INFINITY),
                i,
            )
        })
        .collect();
    drifts.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut applied = vec![false; drifts.len()];
    let mut drift_marks: Vec<(u64, String)> = sc
        .offer
        .iter()
        .filter(|o| o.from_click > 0)
        .map(|o| (o.from_click, o.id.clone()))
        .collect();

    let mut heap: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut next_refresh = 0i64;
    let mut earned = Vec::with_capacity(sc.horizon as usize);
    let mut segment_of = Vec::with_capacity(sc.horizon as usize);
    let mut oracle = Vec::with_capacity(sc.horizon as usize);
    let mut realised = 0.0;
    let mut eligible = Vec::with_capacity(n_offers);

    for k in 0..sc.horizon {
        let now = (k as f64 * 1000.0 / sc.clicks_per_second) as i64;
        for (idx, &(at_click, at_s, i)) in drifts.iter().enumerate() {
            if applied[idx] || (k < at_click && (now as f64) < at_s * 1000.0) {
                continue;
            }
            applied[idx] = true;
            let d = &sc.drift[i];
            let o = sc
                .offer
                .iter()
                .position(|x| x.id == d.offer)
                .expect("validated");
            if let Some(f) = d.payout_factor {
                payout[o] *= f;
            }
            if let Some(f) = d.cr_factor {
                cr_factor[o] *= f;
            }
            if let Some(p) = d.paused {
                paused[o] = p;
            }
            if let Some(cap) = d.cap {
                cap_left[o] = Some(cap);
                cap_base[o] = Some(cap);
                cap_day[o] = now / 86_400_000;
            }
            drift_marks.push((k, d.offer.clone()));
        }
        while heap.peek().is_some_and(|Reverse(p)| p.at_ms <= now) {
            let Reverse(p) = heap.pop().expect("peeked");
            let o = p.offer;
            let day = p.at_ms / 86_400_000;
            if let Some(base) = cap_base[o] {
                if day > cap_day[o] {
                    cap_day[o] = day;
                    cap_left[o] = Some(base);
                }
                match cap_left[o] {
                    // The network rejects conversions beyond the cap.
                    Some(0) => continue,
                    Some(left) => cap_left[o] = Some(left - 1),
                    None => {}
                }
            }
            let value = p.payout_micros as f64 / 1e6;
            realised += value;
            policy.conversion(p.segment, o, value, p.click_ms, p.at_ms);
        }
        let available: Vec<bool> = (0..n_offers)
            .map(|o| {
                let capped = cap_left[o] == Some(0) && now / 86_400_000 <= cap_day[o];
                k >= sc.offer[o].from_click && !paused[o] && !capped
            })
            .collect();
        if now >= next_refresh {
            policy.refresh(now, &available);
            next_refresh = now + sc.refresh_ms as i64;
        }
        let u = traffic.random::<f64>();
        let s = world
            .cumulative
            .partition_point(|&c| c <= u)
            .min(world.segments.len() - 1);
        segment_of.push(s);
        eligible.clear();
        eligible.extend((0..n_offers).filter(|&o| available[o] && world.allowed[s * n_offers + o]));
        let epc = |o: usize| (world.cr[s * n_offers + o] * cr_factor[o]).min(1.0) * payout[o];
        if eligible.is_empty() {
            earned.push(0.0);
            oracle.push(0.0);
            continue;
        }
        let best = eligible.iter().map(|&o| epc(o)).fold(0.0, f64::max);
        let o = policy.choose(s, &eligible, &mut choices);
        earned.push(epc(o));
        oracle.push(best);
        policy.click(s, o, now);
        let rate = (world.cr[s * n_offers + o] * cr_factor[o]).min(1.0);
        // Every click draws its luck (converts or not, how late) whichever offer it goes to, so
        // two policies, or two settings of one, that send a click to the same offer see the same
        // outcome: their comparison is not drowned in luck of their own.
        let luck: [f64; 3] = [outcomes.random(), outcomes.random(), outcomes.random()];
        if luck[0] < rate {
            let delay = sc.offer[o].delay.as_ref().or(sc.delay.as_ref());
            let delay_ms = delay.map_or(0.0, |d| sample_delay(d, luck[1], luck[2]));
            seq += 1;
            heap.push(Reverse(Pending {
                at_ms: now + delay_ms as i64,
                seq,
                segment: s,
                offer: o,
                click_ms: now,
                payout_micros: (payout[o] * 1e6).round() as i64,
            }));
        }
    }

    let total_earned: f64 = earned.iter().sum();
    let total_oracle: f64 = oracle.iter().sum();
    let ratio_over = |range: std::ops::Range<usize>| {
        ratio(
            earned[range.clone()].iter().sum(),
            oracle[range].iter().sum(),
        )
    };
    let n = earned.len();
    let second_half_ratio = ratio_over(n / 2..n);
    let ratio_by_tenth = (0..10)
        .map(|t| ratio_over(t * n / 10..(t + 1) * n / 10))
        .collect();
    let tiers = world.tier.iter().max().map_or(0, |t| t + 1);
    let mut by_tier = vec![(0u64, 0.0, 0.0); tiers];
    for c in n / 2..n {
        let t = &mut by_tier[world.tier[segment_of[c]]];
        t.0 += 1;
        t.1 += earned[c];
        t.2 += oracle[c];
    }
    let second_half_by_tier = by_tier
        .iter()
        .enumerate()
        .map(|(t, &(clicks, e, o))| {
            let first = 1usize << t;
            let last = ((first << 1) - 1).min(world.segments.len());
            Tier {
                segments: if first == last {
                    first.to_string()
                } else {
                    format!("{first}-{last}")
                },
                traffic: ratio(clicks as f64, (n - n / 2) as f64),
                ratio: ratio(e, o),
            }
        })
        .collect();
    drift_marks.sort();
    let window = sc.window.unwrap_or((sc.horizon / 50).max(100));
    let recovery = drift_marks
        .iter()
        .map(|(at, offer)| {
            let clicks = recovery_clicks(&earned, &oracle, *at as usize, window as usize);
            Recovery {
                at_click: *at,
                offer: offer.clone(),
                clicks_to_90: clicks,
                fraction_of_horizon: clicks.map(|c| c as f64 / sc.horizon as f64),
            }
        })
        .collect();
    PolicyReport {
        policy: name.to_string(),
        earnings: round2(total_earned),
        realised_earnings: round2(realised),
        oracle_earnings: round2(total_oracle),
        ratio: ratio(total_earned, total_oracle),
        second_half_ratio,
        ratio_by_tenth,
        second_half_by_tier,
        regret: round2(total_oracle - total_earned),
        recovery,
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 10_000.0).round() / 10_000.0
    } else {
        1.0
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// First number of clicks after `at` at which the ratio over the last `window` clicks reaches
/// `RECOVERY_LEVEL`, counting only once a whole window has passed since `at` (or, when fewer
/// clicks than that remain, all of them): a policy that starts a new offer high and then drops
/// it while its first conversions are still on their way must not count as recovered after the
/// first few hundred clicks. So the least figure is `window`, or what remains of the horizon.
fn recovery_clicks(earned: &[f64], oracle: &[f64], at: usize, window: usize) -> Option<u64> {
    let min_seen = window.min(earned.len().saturating_sub(at)).max(1);
    let (mut e, mut o) = (0.0, 0.0);
    for c in at..earned.len() {
        e += earned[c];
        o += oracle[c];
        if c >= at + window {
            e -= earned[c - window];
            o -= oracle[c - window];
        }
        let seen = c + 1 - at;
        if seen >= min_seen && o > 0.0 && e / o >= RECOVERY_LEVEL {
            return Some(seen as u64);
        }
    }
    None
}

/// A delay from two uniform draws in [0, 1).
fn sample_delay(delay: &scenario::Delay, u1: f64, u2: f64) -> f64 {
    let median = delay.median_s * 1000.0;
    match delay.kind {
        scenario::DelayKind::Fixed => median,
        scenario::DelayKind::Exponential => -median / std::f64::consts::LN_2 * (1.0 - u1).ln(),
        scenario::DelayKind::Lognormal => {
            median * (delay.sigma * policies::normal_from(u1, u2)).exp()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_burst_at_the_oracle_right_after_a_drift_is_not_a_recovery() {
        // 300 clicks at the oracle, 3,000 at half of it, then at the oracle for good.
        let oracle = vec![1.0; 10_000];
        let earned: Vec<f64> = (0..10_000)
            .map(|c| if (300..3_300).contains(&c) { 0.5 } else { 1.0 })
            .collect();
        let clicks = recovery_clicks(&earned, &oracle, 0, 1_000).expect("recovers");
        // The window is back to 0.9 once at most 200 of its 1,000 clicks are at half: when it
        // ends 800 clicks past the 3,300th. Counting from the 100th click, the burst would have.
        assert_eq!(clicks, 4_100);
    }

    #[test]
    fn a_policy_at_the_oracle_from_the_drift_on_recovers_after_one_window() {
        let oracle = vec![1.0; 5_000];
        assert_eq!(recovery_clicks(&oracle, &oracle, 1_000, 2_000), Some(2_000));
        // Fewer clicks than a window left: all of them count.
        assert_eq!(recovery_clicks(&oracle, &oracle, 4_500, 2_000), Some(500));
    }
}
