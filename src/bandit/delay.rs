//! The click → conversion delay model, so that a click too young to have converted counts only
//! as the fraction of a trial it has had time to be.
//!
//! The delay distribution is a mixture of Erlang-2 (Gamma, shape 2) components with fixed,
//! log-spaced time constants τ (seconds to a month; a component's mean delay is 2τ) whose mixing
//! weights are learned from observed delays. That form makes the expected exposure of any set of
//! clicks, `Σ F(age)`, maintainable in O(1) per click: per time constant, two fading sums,
//! `Σ e^(−age/τ)` and `Σ (age/τ) e^(−age/τ)` (see `evidence`), instead of a list of clicks.
//!
//! Why not plain exponentials (one sum each): their density is highest at zero delay, so a
//! mixture of them expects a click a few seconds old to have converted in part even when no
//! conversion ever comes that fast. Young clicks then count as failures, and an offer that is
//! new, or whose rate has just risen, looks worse than it is for its first delay span. An
//! Erlang-2 component starts at zero density, as real click → conversion delays do.

/// Number of time constants in the mixture.
pub const SCALES: usize = 16;

#[derive(Clone, Debug)]
pub struct DelayModel {
    /// Time constants in milliseconds, increasing.
    taus: [f64; SCALES],
    /// Observed delays per time constant (fading), plus the prior.
    counts: [f64; SCALES],
    /// Observations the model remembers; older ones fade so a changed network is followed.
    memory: f64,
}

impl DelayModel {
    /// `min_ms..=max_ms`: the range of delays to expect. Before any delay is seen, every time
    /// constant is equally likely (`prior_count` pseudo-observations spread log-uniformly), so a
    /// click a minute old counts a little and one a month old counts fully.
    pub fn new(min_ms: f64, max_ms: f64, prior_count: f64, memory: f64) -> DelayModel {
        let ratio = (max_ms / min_ms).powf(1.0 / (SCALES - 1) as f64);
        let mut taus = [0.0; SCALES];
        let mut tau = min_ms;
        for slot in &mut taus {
            *slot = tau;
            tau *= ratio;
        }
        DelayModel {
            taus,
            counts: [prior_count / SCALES as f64; SCALES],
            memory: memory.max(1.0),
        }
    }

    pub fn taus(&self) -> &[f64; SCALES] {
        &self.taus
    }

    /// Learns from one observed click → conversion delay.
    pub fn observe(&mut self, delay_ms: f64) {
        self.observe_weighted(delay_ms, 1.0);
    }

    /// Learns from one observed delay that stands for `weight` conversions: a long delay seen
    /// while few clicks are that old stands for the many like it that cannot have arrived yet.
    pub fn observe_weighted(&mut self, delay_ms: f64, weight: f64) {
        let keep = (1.0 - 1.0 / self.memory).powf(weight);
        for c in &mut self.counts {
            *c *= keep;
        }
        // The exponential whose density is highest at `delay` has its mean at `delay`, so the
        // nearest constant on a log scale is the maximum-likelihood component.
        let nearest = self.nearest(delay_ms);
        self.counts[nearest] += weight;
    }

    /// The component whose mean delay (2τ) is nearest to `delay_ms` on a log scale.
    pub fn nearest(&self, delay_ms: f64) -> usize {
        let d = (delay_ms / 2.0).max(1.0).ln();
        (0..SCALES)
            .min_by(|&a, &b| {
                let da = (self.taus[a].ln() - d).abs();
                let db = (self.taus[b].ln() - d).abs();
                da.total_cmp(&db)
            })
            .unwrap_or(0)
    }

    /// Mixing weights, summing to 1.
    pub fn weights(&self) -> [f64; SCALES] {
        let total: f64 = self.counts.iter().sum();
        let mut w = [0.0; SCALES];
        for (slot, c) in w.iter_mut().zip(&self.counts) {
            *slot = c / total;
        }
        w
    }

    /// Mixing weights of this model's own observations plus `prior`'s shape worth `prior_count`
    /// observations.
    pub fn blend(&self, prior: &DelayModel, prior_count: f64) -> [f64; SCALES] {
        let own: f64 = self.counts.iter().sum();
        let total = own + prior_count;
        if total <= 0.0 {
            return prior.weights();
        }
        let p = prior.weights();
        let mut w = [0.0; SCALES];
        for ((slot, c), p) in w.iter_mut().zip(&self.counts).zip(&p) {
            *slot = (c + prior_count * p) / total;
        }
        w
    }

    /// Mean delay of the mixture with mixing weights `weights` (from `weights` or `blend`).
    pub fn mean_ms(&self, weights: &[f64; SCALES]) -> f64 {
        // An Erlang-2 component's mean delay is twice its time constant.
        weights
            .iter()
            .zip(&self.taus)
            .map(|(w, tau)| 2.0 * w * tau)
            .sum()
    }

    /// Probability that a click that will convert has converted by `age_ms`.
    pub fn cdf(&self, age_ms: f64) -> f64 {
        let w = self.weights();
        let pending: f64 = w
            .iter()
            .zip(&self.taus)
            .map(|(w, tau)| {
                let x = age_ms.max(0.0) / tau;
                w * (1.0 + x) * (-x).exp()
            })
            .sum();
        1.0 - pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_cdf_rises_from_zero_to_one() {
        let model = DelayModel::new(1_000.0, 30.0 * 86_400_000.0, 2.0, 1_000.0);
        assert!(model.cdf(0.0).abs() < 1e-12);
        assert!(model.cdf(60_000.0) < model.cdf(3_600_000.0));
        assert!(model.cdf(365.0 * 86_400_000.0) > 0.95);
    }

    #[test]
    fn a_click_younger_than_any_delay_seen_has_had_almost_no_chance_to_convert() {
        // Conversions a minute after the click: a 5-second-old click is hardly a trial yet (an
        // exponential component with a one-minute mean would call it 9 % of one), and a
        // 2-minute-old one nearly a whole trial.
        let mut model = DelayModel::new(1_000.0, 30.0 * 86_400_000.0, 2.0, 1_000.0);
        for _ in 0..200 {
            model.observe(60_000.0);
        }
        assert!(model.cdf(5_000.0) < 0.05, "{}", model.cdf(5_000.0));
        assert!(model.cdf(120_000.0) > 0.9, "{}", model.cdf(120_000.0));
    }

    #[test]
    fn observed_delays_move_the_cdf() {
        let mut model = DelayModel::new(1_000.0, 30.0 * 86_400_000.0, 2.0, 1_000.0);
        let before = model.cdf(10_000.0);
        for _ in 0..200 {
            model.observe(5_000.0);
        }
        assert!(model.cdf(10_000.0) > 0.7, "{}", model.cdf(10_000.0));
        assert!(model.cdf(10_000.0) > before);
    }
}
