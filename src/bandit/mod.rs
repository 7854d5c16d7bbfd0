//! Fallback selection: which eligible fallback a residual visitor gets. The policy is pure
//! (randomness passed in); the server, `explain` and the simulator call the same code.

pub mod allocator;
pub mod delay;
pub mod evidence;
pub mod posterior;
pub mod segment;
pub mod sim;
#[cfg(test)]
mod tests;

use rand::{Rng, RngExt};

pub use allocator::{Allocator, Tables};
pub use evidence::{ArmSpec, BanditConfig, CampaignSpec, Evidence};
pub use segment::Segment;

use crate::rules::Campaign;
use crate::visitor::Visitor;

/// Chooses among a campaign's eligible fallbacks for one visitor.
pub trait FallbackPolicy: Send + Sync {
    /// Allocation probability of each eligible fallback (same order as `eligible`, which holds
    /// indexes into `campaign.fallback`); sums to 1 when `eligible` is not empty.
    fn shares(&self, campaign: &Campaign, visitor: &Visitor, eligible: &[usize]) -> Vec<f64>;

    /// Draws one of `eligible` (returns an element of it). `eligible` is never empty.
    fn choose(
        &self,
        campaign: &Campaign,
        visitor: &Visitor,
        eligible: &[usize],
        rng: &mut dyn Rng,
    ) -> usize;
}

/// Traffic split in proportion to the operator's weights: the allocation with no evidence.
#[derive(Debug, Default, Clone, Copy)]
pub struct WeightedRandom;

impl FallbackPolicy for WeightedRandom {
    fn shares(&self, campaign: &Campaign, _visitor: &Visitor, eligible: &[usize]) -> Vec<f64> {
        let total: f64 = eligible.iter().map(|&i| campaign.fallback[i].weight).sum();
        eligible
            .iter()
            .map(|&i| campaign.fallback[i].weight / total)
            .collect()
    }

    fn choose(
        &self,
        campaign: &Campaign,
        _visitor: &Visitor,
        eligible: &[usize],
        rng: &mut dyn Rng,
    ) -> usize {
        draw_weighted(eligible, |i| campaign.fallback[i].weight, rng)
    }
}

/// Draws an element of `items` with probability proportional to `weight(item)` (all > 0).
pub fn draw_weighted(items: &[usize], weight: impl Fn(usize) -> f64, rng: &mut dyn Rng) -> usize {
    items[draw_position(items.len(), |k| weight(items[k]), rng)]
}

/// Draws a position in `0..len` with probability proportional to `weight(position)` (all ≥ 0,
/// not all 0): `draw_weighted` over positions, with the same arithmetic.
pub fn draw_position(len: usize, weight: impl Fn(usize) -> f64, rng: &mut dyn Rng) -> usize {
    let total: f64 = (0..len).map(&weight).sum();
    let mut point = rng.random::<f64>() * total;
    for k in 0..len {
        point -= weight(k);
        if point < 0.0 {
            return k;
        }
    }
    // Rounding can leave a sliver past the last item.
    len.checked_sub(1).expect("items is not empty")
}

#[cfg(test)]
mod draw_tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn weighted_draws_follow_the_weights() {
        let weights = [2.0, 1.0, 1.0];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = [0usize; 3];
        for _ in 0..40_000 {
            counts[draw_weighted(&[0, 1, 2], |i| weights[i], &mut rng)] += 1;
        }
        let share0 = counts[0] as f64 / 40_000.0;
        assert!((share0 - 0.5).abs() < 0.01, "{counts:?}");
        assert!(
            (counts[1] as f64 / 40_000.0 - 0.25).abs() < 0.01,
            "{counts:?}"
        );
    }

    #[test]
    fn a_single_item_is_always_drawn() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..100 {
            assert_eq!(draw_weighted(&[4], |_| 1.0, &mut rng), 4);
        }
    }
}
