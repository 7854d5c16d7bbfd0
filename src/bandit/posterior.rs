//! P(arm is the best) from independent log-normal posteriors, computed deterministically.
//!
//! Monte-Carlo Thompson draws would make the published shares jitter from one refresh to the
//! next and break the exact "no evidence ⇒ shares ∝ weights" property; a fixed quadrature over
//! each arm's own quantiles has neither problem and costs about the same.

use std::sync::OnceLock;

/// Quadrature nodes per arm.
const NODES: usize = 24;

/// An arm's posterior on log EPC: Normal(`mu`, `sigma`²).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogNormal {
    pub mu: f64,
    pub sigma: f64,
}

impl LogNormal {
    /// Log-normal approximation of `payout × Gamma(shape, rate)`: the conversion rate's
    /// Gamma-Poisson posterior times the payout per conversion.
    pub fn of_gamma(shape: f64, rate: f64, payout: f64) -> LogNormal {
        let shape = shape.max(1e-3);
        // ψ(α) ≈ ln α − 1/(2α), ψ'(α) ≈ 1/α + 1/(2α²): the moments of ln Gamma.
        let mu = (shape / rate).ln() - 0.5 / shape + payout.max(1e-12).ln();
        let sigma = (1.0 / shape + 0.5 / (shape * shape)).sqrt();
        LogNormal { mu, sigma }
    }
}

/// Probability that each arm has the highest value; sums to 1 (empty input gives empty output).
pub fn prob_best(arms: &[LogNormal]) -> Vec<f64> {
    let n = arms.len();
    if n <= 1 {
        return vec![1.0; n];
    }
    let nodes = nodes();
    // An arm whose optimistic end lies below another arm's pessimistic end cannot win, and at
    // the values where contenders win it is all but surely below them: leaving it out of the
    // products too makes an arm set with clear losers cost little more than its contenders.
    let floor = arms
        .iter()
        .map(|a| a.mu - 4.0 * a.sigma)
        .fold(f64::NEG_INFINITY, f64::max);
    // Per contender: (index, μ, 1/σ). Strongest first, so that a loser's product falls below
    // the cut-off after a factor or two; and 1/σ once per rival rather than a division per
    // factor. This loop was two thirds of a recomputation's cost.
    let mut rivals: Vec<(usize, f64, f64)> = (0..n)
        .filter(|&i| arms[i].mu + 4.0 * arms[i].sigma >= floor)
        .map(|j| (j, arms[j].mu, 1.0 / arms[j].sigma))
        .collect();
    rivals.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut p = vec![0.0; n];
    for &(i, _, _) in &rivals {
        let arm = &arms[i];
        let mut total = 0.0;
        // From the highest node down: the product only falls with x, so once it has vanished
        // every lower node's has too.
        for z in nodes.iter().rev() {
            let x = arm.mu + arm.sigma * z;
            let mut product = 1.0;
            for &(j, mu, inv_sigma) in &rivals {
                if j != i {
                    product *= fast_normal_cdf((x - mu) * inv_sigma);
                    if product < 1e-15 {
                        product = 0.0;
                        break;
                    }
                }
            }
            if product == 0.0 {
                break;
            }
            total += product;
        }
        p[i] = total / NODES as f64;
    }
    let sum: f64 = p.iter().sum();
    if sum > 0.0 {
        for v in &mut p {
            *v /= sum;
        }
    } else {
        p.iter_mut().for_each(|v| *v = 1.0 / n as f64);
    }
    p
}

/// Midpoint quantiles of the standard normal.
fn nodes() -> &'static [f64; NODES] {
    static NODES_CELL: OnceLock<[f64; NODES]> = OnceLock::new();
    NODES_CELL.get_or_init(|| {
        let mut out = [0.0; NODES];
        for (k, slot) in out.iter_mut().enumerate() {
            let q = (k as f64 + 0.5) / NODES as f64;
            let (mut lo, mut hi) = (-10.0, 10.0);
            for _ in 0..80 {
                let mid = 0.5 * (lo + hi);
                if normal_cdf(mid) < q {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            *slot = 0.5 * (lo + hi);
        }
        out
    })
}

/// Table step of `fast_normal_cdf`: 1/64 over ±8 keeps linear interpolation within 1e-5.
const CDF_STEPS_PER_UNIT: f64 = 64.0;
const CDF_RANGE: f64 = 8.0;

/// Standard normal CDF by linear interpolation in a table: the inner loop of `prob_best` calls it
/// n² × nodes times per segment, where `erfc`'s exponential dominated the whole recomputation.
pub fn fast_normal_cdf(x: f64) -> f64 {
    static TABLE: OnceLock<Vec<f64>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let n = (2.0 * CDF_RANGE * CDF_STEPS_PER_UNIT) as usize + 1;
        (0..n)
            .map(|i| normal_cdf(i as f64 / CDF_STEPS_PER_UNIT - CDF_RANGE))
            .collect()
    });
    if x.is_nan() || x <= -CDF_RANGE {
        // Also NaN: treated as "certainly below".
        return 0.0;
    }
    if x >= CDF_RANGE {
        return 1.0;
    }
    let pos = (x + CDF_RANGE) * CDF_STEPS_PER_UNIT;
    let i = pos as usize;
    let frac = pos - i as f64;
    let lo = table[i];
    let hi = table.get(i + 1).copied().unwrap_or(1.0);
    lo + (hi - lo) * frac
}

/// Standard normal CDF.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Complementary error function, relative error < 1.2e-7 (Numerical Recipes' `erfcc`).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tabulated_normal_cdf_agrees_with_erfc() {
        for i in -1000..=1000 {
            let x = i as f64 / 100.0;
            assert!((fast_normal_cdf(x) - normal_cdf(x)).abs() < 1e-5, "{x}");
        }
        assert_eq!(fast_normal_cdf(f64::NAN), 0.0);
    }

    #[test]
    fn identical_arms_are_equally_likely_to_be_best() {
        let arm = LogNormal {
            mu: 0.3,
            sigma: 0.7,
        };
        let p = prob_best(&[arm, arm, arm]);
        for v in p {
            assert!((v - 1.0 / 3.0).abs() < 1e-12);
        }
    }

    #[test]
    fn a_clearly_better_arm_is_almost_surely_best() {
        let p = prob_best(&[
            LogNormal {
                mu: 1.0,
                sigma: 0.05,
            },
            LogNormal {
                mu: 0.0,
                sigma: 0.05,
            },
        ]);
        assert!(p[0] > 0.999, "{p:?}");
    }

    #[test]
    fn two_overlapping_arms_split_by_their_overlap() {
        // For independent normals, P(A > B) = Φ((μA − μB) / √(σA² + σB²)).
        let a = LogNormal {
            mu: 0.2,
            sigma: 0.3,
        };
        let b = LogNormal {
            mu: 0.0,
            sigma: 0.4,
        };
        let exact = normal_cdf(0.2 / 0.5);
        let p = prob_best(&[a, b]);
        assert!((p[0] - exact).abs() < 0.02, "{p:?} vs {exact}");
    }
}
