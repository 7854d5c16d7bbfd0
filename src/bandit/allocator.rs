//! Published allocation tables and the click-path policy that samples from them.
//!
//! `Evidence::recompute` builds a `Tables` snapshot in the background at most every
//! `bandit.refresh_ms`; `Allocator::publish` swaps it in atomically. The click path only loads the
//! current snapshot (no lock, nothing held across an await) and samples from a cumulative array.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rand::{Rng, RngExt};
use smallvec::SmallVec;

use super::evidence::FixedState;
use super::segment::{visitor_keys, LEVELS};
use super::{draw_position, FallbackPolicy};
use crate::rules::Campaign;
use crate::visitor::Visitor;

/// Allocation for every campaign and every segment with evidence, at one moment.
#[derive(Debug, Default)]
pub struct Tables {
    pub computed_at_ms: i64,
    pub campaigns: HashMap<String, CampaignTable, FixedState>,
}

/// One campaign's arms (the fallbacks available at `computed_at_ms`, each listed once, in
/// fallback order) and per-segment shares.
#[derive(Debug, Default)]
pub struct CampaignTable {
    pub arms: Vec<Arm>,
    /// Keyed by `Segment::keys()` at any level; lookups use the finest level present.
    pub segments: HashMap<u64, Arc<SegmentTable>, FixedState>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arm {
    pub offer: String,
    /// Index into `campaign.fallback` when the table was built.
    pub fallback: usize,
    pub weight: f64,
}

/// Shares of the arms (same order as `CampaignTable::arms`) for one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentTable {
    pub shares: Vec<f64>,
    /// Running sums of `shares`, for sampling by binary search.
    pub cumulative: Vec<f64>,
    /// `weight^λ × P(best)^power` per arm (λ fading from 1 with the campaign's evidence), before
    /// normalisation: the exploitation part.
    pub exploit: Vec<f64>,
    /// Power P(best) was raised to in `exploit`.
    pub power: f64,
    /// `weight × posterior spread` per arm: how the exploration budget is spread.
    pub explore: Vec<f64>,
    /// Exploration budget this table was built with.
    pub exploration: f64,
}

impl SegmentTable {
    pub fn new(exploit: Vec<f64>, power: f64, explore: Vec<f64>, exploration: f64) -> SegmentTable {
        let shares = mix(&exploit, &explore, exploration);
        let mut cumulative = Vec::with_capacity(shares.len());
        let mut sum = 0.0;
        for s in &shares {
            sum += s;
            cumulative.push(sum);
        }
        SegmentTable {
            shares,
            cumulative,
            exploit,
            power,
            explore,
            exploration,
        }
    }
}

/// `(1 − ε) · exploit/Σexploit + ε · explore/Σexplore`, each part falling back to the other (and
/// then to uniform) when it is all zero.
fn mix(exploit: &[f64], explore: &[f64], epsilon: f64) -> Vec<f64> {
    mixed(exploit, explore, epsilon).collect()
}

/// `mix`, one share at a time.
fn mixed<'a>(
    exploit: &'a [f64],
    explore: &'a [f64],
    epsilon: f64,
) -> impl Iterator<Item = f64> + 'a {
    let n = exploit.len();
    let a: f64 = exploit.iter().sum();
    let b: f64 = explore.iter().sum();
    (0..n).map(move |i| match (a > 0.0, b > 0.0) {
        (true, true) => (1.0 - epsilon) * exploit[i] / a + epsilon * explore[i] / b,
        (true, false) => exploit[i] / a,
        (false, true) => explore[i] / b,
        (false, false) => 1.0 / n as f64,
    })
}

/// `a == b` for ids, which are short: compared in place rather than through a `memcmp` call.
fn same_id(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// Per-eligible-fallback values, inline (no allocation) up to 32 fallbacks.
type PerEligible = SmallVec<[f64; 32]>;

impl CampaignTable {
    /// The finest segment table for this visitor, if any level has evidence.
    fn segment(&self, visitor: &Visitor) -> Option<&SegmentTable> {
        let keys = visitor_keys(visitor);
        (0..LEVELS)
            .rev()
            .find_map(|level| self.segments.get(&keys[level]))
            .map(|t| t.as_ref())
    }

    /// Position in `arms` of `campaign.fallback[index]`, checked by offer id so that a rule
    /// reload that reordered fallbacks cannot misroute.
    fn arm_of(&self, campaign: &Campaign, index: usize) -> Option<usize> {
        self.arm_of_from(campaign, index, 0)
    }

    /// `arm_of`, looking for the arm of fallback `index` among `arms[from..]` first: with
    /// `eligible` and `arms` both in fallback order, a walk through `eligible` finds each arm
    /// at or just after the previous one's.
    fn arm_of_from(&self, campaign: &Campaign, index: usize, from: usize) -> Option<usize> {
        let offer = &campaign.fallback.get(index)?.offer;
        let ahead = self.arms.get(from..).unwrap_or_default();
        let at = match ahead.iter().position(|a| a.fallback == index) {
            Some(p) => Some(from + p),
            None => self.arms[..from.min(self.arms.len())]
                .iter()
                .position(|a| a.fallback == index),
        };
        match at {
            Some(p) if &self.arms[p].offer == offer => Some(p),
            _ => self.arms.iter().position(|a| &a.offer == offer),
        }
    }

    /// Whether `eligible` is exactly this table's arms in their order: arm `k` is fallback
    /// `eligible[k]` with the same offer. The usual case (all arms eligible, rules unchanged
    /// since the table was built): one pass, no search.
    fn aligned(&self, campaign: &Campaign, eligible: &[usize]) -> bool {
        self.arms.len() == eligible.len()
            && self.arms.iter().zip(eligible).all(|(arm, &e)| {
                arm.fallback == e
                    && campaign
                        .fallback
                        .get(e)
                        .is_some_and(|f| same_id(&f.offer, &arm.offer))
            })
    }

    /// Draws an arm by the segment's cumulative shares: one binary search.
    fn draw_arm(&self, segment: &SegmentTable, rng: &mut dyn Rng) -> usize {
        let u = rng.random::<f64>() * segment.cumulative.last().copied().unwrap_or(1.0);
        segment
            .cumulative
            .partition_point(|&c| c <= u)
            .min(self.arms.len() - 1)
    }
}

/// The evidence-driven fallback policy: reads the latest published `Tables`.
#[derive(Debug, Default)]
pub struct Allocator {
    tables: ArcSwap<Tables>,
}

impl Allocator {
    pub fn new() -> Allocator {
        Allocator::default()
    }

    /// Makes `tables` the allocation every following click uses.
    pub fn publish(&self, tables: Tables) {
        self.tables.store(Arc::new(tables));
    }

    pub fn current(&self) -> Arc<Tables> {
        self.tables.load_full()
    }
}

impl FallbackPolicy for Allocator {
    fn shares(&self, campaign: &Campaign, visitor: &Visitor, eligible: &[usize]) -> Vec<f64> {
        let tables = self.tables.load();
        let weights = || super::WeightedRandom.shares(campaign, visitor, eligible);
        let Some(table) = tables.campaigns.get(&campaign.id) else {
            return weights();
        };
        let Some(segment) = table.segment(visitor) else {
            return weights();
        };
        subset_shares(table, segment, campaign, eligible)
            .map_or_else(weights, PerEligible::into_vec)
    }

    fn choose(
        &self,
        campaign: &Campaign,
        visitor: &Visitor,
        eligible: &[usize],
        rng: &mut dyn Rng,
    ) -> usize {
        let tables = self.tables.load();
        if let Some(table) = tables.campaigns.get(&campaign.id) {
            if let Some(segment) = table.segment(visitor) {
                if table.aligned(campaign, eligible) {
                    // Fast path: the eligible set is the table's, in its order.
                    return eligible[table.draw_arm(segment, rng)];
                }
                if eligible.len() == table.arms.len()
                    && eligible
                        .iter()
                        .all(|&e| table.arm_of(campaign, e).is_some())
                {
                    // The same offers in another order (the rules changed since the table was
                    // built): the table's draw, mapped back by offer id.
                    let offer = &table.arms[table.draw_arm(segment, rng)].offer;
                    if let Some(&e) = eligible
                        .iter()
                        .find(|&&e| &campaign.fallback[e].offer == offer)
                    {
                        return e;
                    }
                }
                if let Some(shares) = subset_shares(table, segment, campaign, eligible) {
                    if shares.iter().any(|&s| s > 0.0) {
                        // `eligible` lists each fallback once: position `k` is `eligible[k]`.
                        let k = draw_position(eligible.len(), |k| shares[k].max(0.0), rng);
                        return eligible[k];
                    }
                }
            }
        }
        super::WeightedRandom.choose(campaign, visitor, eligible, rng)
    }
}

/// Shares restricted to `eligible` (any subset of the table's arms, plus arms the table has not
/// seen yet, which get the no-evidence prior). `None` when nothing usable remains.
fn subset_shares(
    table: &CampaignTable,
    segment: &SegmentTable,
    campaign: &Campaign,
    eligible: &[usize],
) -> Option<PerEligible> {
    let n = table.arms.len().max(1) as f64;
    let mean_explore = segment.explore.iter().sum::<f64>() / segment.explore.len().max(1) as f64;
    let max_spread = table
        .arms
        .iter()
        .zip(&segment.explore)
        .map(|(a, e)| e / a.weight)
        .fold(mean_explore, f64::max);
    let mut exploit = PerEligible::with_capacity(eligible.len());
    let mut explore = PerEligible::with_capacity(eligible.len());
    let mut next = 0;
    for &e in eligible {
        match table.arm_of_from(campaign, e, next) {
            Some(p) => {
                next = p + 1;
                exploit.push(segment.exploit[p]);
                explore.push(segment.explore[p]);
            }
            None => {
                // An arm added since the last refresh: P(best) of one more arm among equals,
                // and as uncertain as the most uncertain arm.
                let w = campaign.fallback.get(e)?.weight;
                exploit.push(w * (1.0 / n).powf(segment.power));
                explore.push(w * max_spread);
            }
        }
    }
    if exploit.iter().chain(&explore).all(|&v| v <= 0.0) {
        return None;
    }
    Some(mixed(&exploit, &explore, segment.exploration).collect())
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::bandit::sim::sim_campaign;

    fn visitor() -> Visitor {
        Visitor::unknown(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Tables for `campaign` as it is now, exploiting by `exploit` with no exploration.
    fn allocator(campaign: &Campaign, exploit: Vec<f64>) -> Allocator {
        let arms = campaign
            .fallback
            .iter()
            .enumerate()
            .map(|(i, f)| Arm {
                offer: f.offer.clone(),
                fallback: i,
                weight: f.weight,
            })
            .collect();
        let explore = vec![0.0; exploit.len()];
        let mut segments = HashMap::default();
        segments.insert(
            visitor_keys(&visitor())[0],
            Arc::new(SegmentTable::new(exploit, 1.0, explore, 0.0)),
        );
        let mut campaigns = HashMap::default();
        campaigns.insert(campaign.id.clone(), CampaignTable { arms, segments });
        let allocator = Allocator::new();
        allocator.publish(Tables {
            computed_at_ms: 0,
            campaigns,
        });
        allocator
    }

    /// How often each offer is drawn in 20,000 draws over all of `campaign`'s fallbacks.
    fn frequencies(allocator: &Allocator, campaign: &Campaign) -> HashMap<String, f64> {
        let all: Vec<usize> = (0..campaign.fallback.len()).collect();
        let mut rng = StdRng::seed_from_u64(9);
        let mut counts = HashMap::new();
        for _ in 0..20_000 {
            let chosen = allocator.choose(campaign, &visitor(), &all, &mut rng);
            *counts
                .entry(campaign.fallback[chosen].offer.clone())
                .or_insert(0.0) += 1.0 / 20_000.0;
        }
        counts
    }

    #[test]
    fn fallbacks_reordered_since_the_table_keep_their_offers_shares() {
        let built = sim_campaign("c", &[("a", 1.0), ("b", 1.0), ("d", 1.0)]);
        let reordered = sim_campaign("c", &[("d", 1.0), ("a", 1.0), ("b", 1.0)]);
        let allocator = allocator(&built, vec![0.6, 0.3, 0.1]);
        let all = [0, 1, 2];
        // The same draw either way: the arm drawn is mapped back to its offer.
        for seed in 0..200 {
            let as_built =
                allocator.choose(&built, &visitor(), &all, &mut StdRng::seed_from_u64(seed));
            let now = allocator.choose(
                &reordered,
                &visitor(),
                &all,
                &mut StdRng::seed_from_u64(seed),
            );
            assert_eq!(
                built.fallback[as_built].offer,
                reordered.fallback[now].offer
            );
        }
        let shares = frequencies(&allocator, &reordered);
        assert!((shares["a"] - 0.6).abs() < 0.02, "{shares:?}");
        assert!((shares["d"] - 0.1).abs() < 0.02, "{shares:?}");
    }

    #[test]
    fn a_fallback_whose_offer_changed_since_the_table_is_a_new_arm() {
        let built = sim_campaign("c", &[("a", 1.0), ("b", 1.0), ("d", 1.0)]);
        let changed = sim_campaign("c", &[("a", 1.0), ("b", 1.0), ("x", 1.0)]);
        let allocator = allocator(&built, vec![0.6, 0.3, 0.1]);
        // "x" is not "d": it gets the prior of an unseen arm (P(best) 1/3 among equals), not
        // the 10 % "d" earned.
        let shares = frequencies(&allocator, &changed);
        let expected = (1.0 / 3.0) / (0.6 + 0.3 + 1.0 / 3.0);
        assert!((shares["x"] - expected).abs() < 0.02, "{shares:?}");
        let explained = allocator.shares(&changed, &visitor(), &[0, 1, 2]);
        assert!((explained[2] - expected).abs() < 1e-12, "{explained:?}");
    }

    #[test]
    fn a_subset_of_the_arms_shares_their_allocation() {
        let campaign = sim_campaign("c", &[("a", 1.0), ("b", 1.0), ("d", 1.0)]);
        let allocator = allocator(&campaign, vec![0.6, 0.3, 0.1]);
        let shares = allocator.shares(&campaign, &visitor(), &[0, 2]);
        assert!((shares[0] - 0.6 / 0.7).abs() < 1e-12, "{shares:?}");
        let mut rng = StdRng::seed_from_u64(5);
        let d = (0..20_000)
            .filter(|_| allocator.choose(&campaign, &visitor(), &[0, 2], &mut rng) == 2)
            .count();
        assert!((d as f64 / 20_000.0 - 0.1 / 0.7).abs() < 0.02, "{d}");
    }
}
