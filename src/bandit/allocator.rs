//! Published allocation tables and the click-path policy that samples from them.
//!
//! `Evidence::recompute` builds a `Tables` snapshot in the background at most every
//! `bandit.refresh_ms`; `Allocator::publish` swaps it in atomically. The click path only loads the
//! current snapshot (no lock, nothing held across an await) and samples from a cumulative array.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rand::{Rng, RngExt};

use super::evidence::FixedState;
use super::segment::{visitor_keys, LEVELS};
use super::{draw_weighted, FallbackPolicy};
use crate::rules::Campaign;
use crate::visitor::Visitor;

/// Allocation for every campaign and every segment with evidence, at one moment.
#[derive(Debug, Default)]
pub struct Tables {
    pub computed_at_ms: i64,
    pub campaigns: HashMap<String, CampaignTable, FixedState>,
}

/// One campaign's arms (the fallbacks available at `computed_at_ms`) and per-segment shares.
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
    /// `weight × P(best)` per arm, before normalisation: the exploitation part.
    pub exploit: Vec<f64>,
    /// `weight × posterior spread` per arm: how the exploration budget is spread.
    pub explore: Vec<f64>,
    /// Exploration budget this table was built with.
    pub exploration: f64,
}

impl SegmentTable {
    pub fn new(exploit: Vec<f64>, explore: Vec<f64>, exploration: f64) -> SegmentTable {
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
            explore,
            exploration,
        }
    }
}

/// `(1 − ε) · exploit/Σexploit + ε · explore/Σexplore`, each part falling back to the other (and
/// then to uniform) when it is all zero.
fn mix(exploit: &[f64], explore: &[f64], epsilon: f64) -> Vec<f64> {
    let n = exploit.len();
    let a: f64 = exploit.iter().sum();
    let b: f64 = explore.iter().sum();
    (0..n)
        .map(|i| match (a > 0.0, b > 0.0) {
            (true, true) => (1.0 - epsilon) * exploit[i] / a + epsilon * explore[i] / b,
            (true, false) => exploit[i] / a,
            (false, true) => explore[i] / b,
            (false, false) => 1.0 / n as f64,
        })
        .collect()
}

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
        let offer = &campaign.fallback.get(index)?.offer;
        match self.arms.iter().position(|a| a.fallback == index) {
            Some(p) if &self.arms[p].offer == offer => Some(p),
            _ => self.arms.iter().position(|a| &a.offer == offer),
        }
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
        subset_shares(table, segment, campaign, eligible).unwrap_or_else(weights)
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
                if eligible.len() == table.arms.len()
                    && eligible
                        .iter()
                        .all(|&e| table.arm_of(campaign, e).is_some())
                {
                    // Fast path: the eligible set is the table's: one binary search.
                    let u = rng.random::<f64>() * segment.cumulative.last().copied().unwrap_or(1.0);
                    let p = segment
                        .cumulative
                        .partition_point(|&c| c <= u)
                        .min(table.arms.len() - 1);
                    let offer = &table.arms[p].offer;
                    if let Some(&e) = eligible
                        .iter()
                        .find(|&&e| &campaign.fallback[e].offer == offer)
                    {
                        return e;
                    }
                }
                if let Some(shares) = subset_shares(table, segment, campaign, eligible) {
                    let by_pos = |e: usize| {
                        let k = eligible.iter().position(|&x| x == e).unwrap_or(0);
                        shares[k].max(0.0)
                    };
                    if shares.iter().any(|&s| s > 0.0) {
                        return draw_weighted(eligible, by_pos, rng);
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
) -> Option<Vec<f64>> {
    let n = table.arms.len().max(1) as f64;
    let mean_explore = segment.explore.iter().sum::<f64>() / segment.explore.len().max(1) as f64;
    let max_spread = table
        .arms
        .iter()
        .zip(&segment.explore)
        .map(|(a, e)| e / a.weight)
        .fold(mean_explore, f64::max);
    let mut exploit = Vec::with_capacity(eligible.len());
    let mut explore = Vec::with_capacity(eligible.len());
    for &e in eligible {
        match table.arm_of(campaign, e) {
            Some(p) => {
                exploit.push(segment.exploit[p]);
                explore.push(segment.explore[p]);
            }
            None => {
                // An arm added since the last refresh: P(best) of one more arm among equals,
                // and as uncertain as the most uncertain arm.
                let w = campaign.fallback.get(e)?.weight;
                exploit.push(w / n);
                explore.push(w * max_spread);
            }
        }
    }
    if exploit.iter().chain(&explore).all(|&v| v <= 0.0) {
        return None;
    }
    Some(mix(&exploit, &explore, segment.exploration))
}
