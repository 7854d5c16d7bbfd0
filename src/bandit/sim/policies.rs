//! The policies the simulator compares. `bandit` and `weights` run the production code through
//! `FallbackPolicy`; the others are textbook per-segment baselines that, like naive
//! implementations do, count a click as a trial as soon as it is made.

use rand::{Rng, RngExt};

use crate::bandit::{
    Allocator, BanditConfig, CampaignSpec, Evidence, FallbackPolicy, Segment, WeightedRandom,
};
use crate::rules::Campaign;
use crate::visitor::Visitor;

pub const NAMES: [&str; 6] = [
    "bandit",
    "uniform",
    "weights",
    "epsilon-greedy",
    "ucb1",
    "thompson-cr",
];

/// One policy under simulation. Offer indexes are fallback indexes of `campaign`.
pub trait SimPolicy {
    fn choose(&mut self, segment: usize, eligible: &[usize], rng: &mut dyn Rng) -> usize;
    fn click(&mut self, segment: usize, offer: usize, at_ms: i64);
    fn conversion(&mut self, segment: usize, offer: usize, payout: f64, click_ms: i64, at_ms: i64);
    /// Called every `refresh_ms` with the offers available campaign-wide.
    fn refresh(&mut self, _now_ms: i64, _available: &[bool]) {}
}

/// Shared world description the policies need.
pub struct World<'a> {
    pub campaign: &'a Campaign,
    pub visitors: &'a [Visitor],
    pub segments: &'a [Segment],
    pub payouts: &'a [f64],
}

pub fn make<'a>(
    name: &str,
    world: &'a World<'a>,
    config: &BanditConfig,
) -> Option<Box<dyn SimPolicy + 'a>> {
    let offers = world.campaign.fallback.len();
    let segments = world.visitors.len();
    Some(match name {
        "bandit" => Box::new(BanditPolicy {
            world,
            evidence: Evidence::new(config.clone()),
            allocator: Allocator::new(),
        }),
        "weights" => Box::new(Production {
            world,
            policy: WeightedRandom,
        }),
        "uniform" => Box::new(Uniform),
        "epsilon-greedy" => Box::new(EpsilonGreedy {
            epsilon: 0.1,
            stats: Stats::new(segments, offers),
        }),
        "ucb1" => Box::new(Ucb1 {
            scale: world.payouts.iter().copied().fold(1e-9, f64::max),
            stats: Stats::new(segments, offers),
        }),
        "thompson-cr" => Box::new(ThompsonCr {
            stats: Stats::new(segments, offers),
        }),
        _ => return None,
    })
}

struct BanditPolicy<'a> {
    world: &'a World<'a>,
    evidence: Evidence,
    allocator: Allocator,
}

impl SimPolicy for BanditPolicy<'_> {
    fn choose(&mut self, segment: usize, eligible: &[usize], rng: &mut dyn Rng) -> usize {
        self.allocator.choose(
            self.world.campaign,
            &self.world.visitors[segment],
            eligible,
            rng,
        )
    }

    fn click(&mut self, segment: usize, offer: usize, at_ms: i64) {
        let c = self.world.campaign;
        self.evidence.record_click(
            &c.id,
            &c.fallback[offer].offer,
            &self.world.segments[segment],
            at_ms,
        );
    }

    fn conversion(&mut self, segment: usize, offer: usize, payout: f64, click_ms: i64, at_ms: i64) {
        let c = self.world.campaign;
        self.evidence.record_conversion(
            &c.id,
            &c.fallback[offer].offer,
            &self.world.segments[segment],
            payout,
            click_ms,
            at_ms,
        );
    }

    fn refresh(&mut self, now_ms: i64, available: &[bool]) {
        let c = self.world.campaign;
        let spec = CampaignSpec {
            id: c.id.clone(),
            arms: c
                .fallback
                .iter()
                .enumerate()
                .filter(|(i, _)| available[*i])
                .map(|(i, f)| crate::bandit::ArmSpec {
                    offer: f.offer.clone(),
                    fallback: i,
                    weight: f.weight,
                    payout: self.world.payouts[i],
                })
                .collect(),
        };
        let tables = self.evidence.recompute(&[spec], now_ms);
        self.allocator.publish(tables);
    }
}

struct Production<'a, P> {
    world: &'a World<'a>,
    policy: P,
}

impl<P: FallbackPolicy> SimPolicy for Production<'_, P> {
    fn choose(&mut self, segment: usize, eligible: &[usize], rng: &mut dyn Rng) -> usize {
        self.policy.choose(
            self.world.campaign,
            &self.world.visitors[segment],
            eligible,
            rng,
        )
    }
    fn click(&mut self, _: usize, _: usize, _: i64) {}
    fn conversion(&mut self, _: usize, _: usize, _: f64, _: i64, _: i64) {}
}

struct Uniform;

impl SimPolicy for Uniform {
    fn choose(&mut self, _: usize, eligible: &[usize], rng: &mut dyn Rng) -> usize {
        eligible[rng.random_range(0..eligible.len())]
    }
    fn click(&mut self, _: usize, _: usize, _: i64) {}
    fn conversion(&mut self, _: usize, _: usize, _: f64, _: i64, _: i64) {}
}

/// Clicks, conversions and revenue per (segment, offer).
struct Stats {
    offers: usize,
    clicks: Vec<f64>,
    conversions: Vec<f64>,
    revenue: Vec<f64>,
    segment_clicks: Vec<f64>,
}

impl Stats {
    fn new(segments: usize, offers: usize) -> Stats {
        Stats {
            offers,
            clicks: vec![0.0; segments * offers],
            conversions: vec![0.0; segments * offers],
            revenue: vec![0.0; segments * offers],
            segment_clicks: vec![0.0; segments],
        }
    }

    fn at(&self, segment: usize, offer: usize) -> usize {
        segment * self.offers + offer
    }

    fn click(&mut self, segment: usize, offer: usize) {
        let i = self.at(segment, offer);
        self.clicks[i] += 1.0;
        self.segment_clicks[segment] += 1.0;
    }

    fn conversion(&mut self, segment: usize, offer: usize, payout: f64) {
        let i = self.at(segment, offer);
        self.conversions[i] += 1.0;
        self.revenue[i] += payout;
    }

    /// Argmax of `score` over `eligible`, ties broken at random.
    fn best(eligible: &[usize], rng: &mut dyn Rng, score: impl Fn(usize) -> f64) -> usize {
        let mut best = eligible[0];
        let mut best_score = f64::NEG_INFINITY;
        let mut ties = 0u32;
        for &o in eligible {
            let s = score(o);
            if s > best_score {
                best = o;
                best_score = s;
                ties = 1;
            } else if s == best_score {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = o;
                }
            }
        }
        best
    }
}

struct EpsilonGreedy {
    epsilon: f64,
    stats: Stats,
}

impl SimPolicy for EpsilonGreedy {
    fn choose(&mut self, segment: usize, eligible: &[usize], rng: &mut dyn Rng) -> usize {
        if rng.random::<f64>() < self.epsilon {
            return eligible[rng.random_range(0..eligible.len())];
        }
        let s = &self.stats;
        Stats::best(eligible, rng, |o| {
            let i = s.at(segment, o);
            if s.clicks[i] == 0.0 {
                f64::INFINITY
            } else {
                s.revenue[i] / s.clicks[i]
            }
        })
    }
    fn click(&mut self, segment: usize, offer: usize, _: i64) {
        self.stats.click(segment, offer);
    }
    fn conversion(&mut self, segment: usize, offer: usize, payout: f64, _: i64, _: i64) {
        self.stats.conversion(segment, offer, payout);
    }
}

struct Ucb1 {
    /// Largest payout, to bring rewards into 0..=1.
    scale: f64,
    stats: Stats,
}

impl SimPolicy for Ucb1 {
    fn choose(&mut self, segment: usize, eligible: &[usize], rng: &mut dyn Rng) -> usize {
        let s = &self.stats;
        let total = s.segment_clicks[segment].max(1.0);
        Stats::best(eligible, rng, |o| {
            let i = s.at(segment, o);
            let n = s.clicks[i];
            if n == 0.0 {
                f64::INFINITY
            } else {
                s.revenue[i] / (n * self.scale) + (2.0 * total.ln() / n).sqrt()
            }
        })
    }
    fn click(&mut self, segment: usize, offer: usize, _: i64) {
        self.stats.click(segment, offer);
    }
    fn conversion(&mut self, segment: usize, offer: usize, payout: f64, _: i64, _: i64) {
        self.stats.conversion(segment, offer, payout);
    }
}

struct ThompsonCr {
    stats: Stats,
}

impl SimPolicy for ThompsonCr {
    fn choose(&mut self, segment: usize, eligible: &[usize], rng: &mut dyn Rng) -> usize {
        let s = &self.stats;
        let draws: Vec<f64> = eligible
            .iter()
            .map(|&o| {
                let i = s.at(segment, o);
                let a = 1.0 + s.conversions[i];
                let b = 1.0 + (s.clicks[i] - s.conversions[i]).max(0.0);
                let x = gamma(a, rng);
                let y = gamma(b, rng);
                x / (x + y)
            })
            .collect();
        let k = Stats::best(&(0..eligible.len()).collect::<Vec<_>>(), rng, |k| draws[k]);
        eligible[k]
    }
    fn click(&mut self, segment: usize, offer: usize, _: i64) {
        self.stats.click(segment, offer);
    }
    fn conversion(&mut self, segment: usize, offer: usize, _payout: f64, _: i64, _: i64) {
        self.stats.conversion(segment, offer, 1.0);
    }
}

/// Standard normal draw (Box–Muller).
pub fn normal(rng: &mut dyn Rng) -> f64 {
    let u1 = rng.random::<f64>();
    let u2 = rng.random::<f64>();
    normal_from(u1, u2)
}

/// The standard normal value Box–Muller makes of two uniform draws in [0, 1).
pub fn normal_from(u1: f64, u2: f64) -> f64 {
    (-2.0 * u1.max(f64::MIN_POSITIVE).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Gamma(shape, 1) draw (Marsaglia–Tsang).
pub fn gamma(shape: f64, rng: &mut dyn Rng) -> f64 {
    if shape < 1.0 {
        let u = rng.random::<f64>().max(f64::MIN_POSITIVE);
        return gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}
