//! What the bandit has seen: fading click, conversion and revenue sums per (campaign, offer,
//! segment key at every pooling level), and the recomputation of allocation tables from them.
//!
//! Pure: every call takes the time (Unix milliseconds), nothing reads a clock.
//!
//! - Fading: every sum is multiplied by `2^-(Δt/time_half_life + Δn/click_half_life)`, where
//!   `Δn` counts the clicks of that segment key (all offers), so busy segments follow a change
//!   within a few thousand of their clicks and quiet ones within the time half-life. Applied
//!   lazily when a sum is touched.
//! - Delayed feedback: exposure is `Σ fade × F(age)` over clicks, kept as clicks minus one fading
//!   sum per delay time constant (see `delay`), so a click too young to have converted is not a
//!   failure.
//! - Pooling: per offer, the estimate at each level is the prior of the next finer one, worth
//!   `prior_conversions` conversions (empirical-Bayes shrinkage towards the parent).
//! - Allocation: share ∝ weight × P(offer has the best EPC), plus a global exploration budget
//!   spread by weight × posterior spread.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use super::allocator::{Arm, CampaignTable, SegmentTable, Tables};
use super::delay::{DelayModel, SCALES};
use super::posterior::{prob_best, LogNormal};
use super::segment::{Segment, LEVELS, MARGINALS};
use crate::rules::{Campaign, Offer, RuleSet};

/// A hasher without per-process random keys, so iteration order (and therefore every float sum
/// and every simulation) is reproducible.
pub type FixedState = BuildHasherDefault<std::collections::hash_map::DefaultHasher>;
type Map<K, V> = HashMap<K, V, FixedState>;

/// Tuning of the bandit. The defaults suit production (delays of minutes to days).
#[derive(Clone, Debug, PartialEq)]
pub struct BanditConfig {
    /// Evidence loses half its weight after this long.
    pub time_half_life_ms: f64,
    /// ... and after this many further clicks in the same segment key.
    pub click_half_life: f64,
    /// Strength of the parent level's conversion rate as a prior, in conversions.
    pub prior_conversions: f64,
    /// Strength of the configured payout as a prior on payout per conversion, in conversions.
    pub payout_prior_conversions: f64,
    /// Conversion rate assumed for a campaign with no evidence at all.
    pub prior_cr: f64,
    /// Share of residual traffic spent on exploration, spread by uncertainty.
    pub exploration: f64,
    /// Range of click → conversion delays the delay model spans.
    pub delay_min_ms: f64,
    pub delay_max_ms: f64,
    /// Pseudo-observations of the log-uniform delay prior.
    pub delay_prior_count: f64,
    /// Observed delays the delay model remembers.
    pub delay_memory: f64,
    /// Window over which a segment's click rate is measured (to fade a late conversion as much
    /// as its click has faded).
    pub rate_window_ms: f64,
    /// Clicks of an offer (campaign-wide) over which the change detector's recent memory
    /// halves.
    pub change_window_clicks: f64,
    /// ... and the long memory it is held against.
    pub change_memory_clicks: f64,
    /// Standard errors between recent and long memory that count as a change.
    pub change_z: f64,
    /// Share of an offer's old evidence kept when a change is detected.
    pub change_keep: f64,
    /// A segment key gets its own allocation table once its evidence is worth this many
    /// conversions; until then its visitors get the next coarser key's.
    pub min_table_conversions: f64,
    /// Every this many recomputations every segment is recomputed, not only those with news,
    /// so that fading and changes in parent levels reach quiet segments.
    pub full_refresh_every: u32,
}

impl Default for BanditConfig {
    fn default() -> BanditConfig {
        BanditConfig {
            time_half_life_ms: 3.0 * 86_400_000.0,
            click_half_life: 3_000.0,
            prior_conversions: 3.0,
            payout_prior_conversions: 2.0,
            prior_cr: 0.01,
            exploration: 0.02,
            delay_min_ms: 1_000.0,
            delay_max_ms: 30.0 * 86_400_000.0,
            delay_prior_count: 4.0,
            delay_memory: 2_000.0,
            rate_window_ms: 3_600_000.0,
            min_table_conversions: 1.0,
            change_window_clicks: 2_000.0,
            change_memory_clicks: 30_000.0,
            change_z: 5.0,
            change_keep: 0.1,
            full_refresh_every: 8,
        }
    }
}

/// One fallback as the bandit needs it at recomputation.
#[derive(Clone, Debug, PartialEq)]
pub struct ArmSpec {
    pub offer: String,
    /// Index into `campaign.fallback`.
    pub fallback: usize,
    pub weight: f64,
    /// Configured payout per conversion: the prior of the payout per conversion.
    pub payout: f64,
}

/// A campaign's fallbacks that are available (not paused, not capped) at recomputation.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignSpec {
    pub id: String,
    pub arms: Vec<ArmSpec>,
}

impl CampaignSpec {
    /// The fallbacks of `campaign` whose offer exists and passes `available` (paused, capped),
    /// each with `payout(offer)`: its configured payout in base currency.
    pub fn from_rules(
        campaign: &Campaign,
        rules: &RuleSet,
        available: impl Fn(&Offer) -> bool,
        payout: impl Fn(&Offer) -> f64,
    ) -> CampaignSpec {
        let arms = campaign
            .fallback
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let offer = rules.offer(&f.offer)?;
                (!offer.paused && available(offer)).then(|| ArmSpec {
                    offer: f.offer.clone(),
                    fallback: i,
                    weight: f.weight,
                    payout: payout(offer),
                })
            })
            .collect();
        CampaignSpec {
            id: campaign.id.clone(),
            arms,
        }
    }
}

#[derive(Clone, Debug)]
struct Stat {
    /// Time of the last fading step.
    t: i64,
    /// Value of `count` at the last fading step.
    n: f64,
    /// Clicks of this offer in this key so far: the clock of click-count fading. Counting the
    /// offer's own clicks (not the key's) keeps an offer that gets little traffic from forgetting
    /// what it showed, and makes the offer that gets most traffic turn its evidence over fastest.
    count: f64,
    /// Fading count of this offer's clicks over `rate_window_ms`, for its click rate.
    rate: f64,
    rate_t: i64,
    clicks: f64,
    /// Per delay time constant: clicks still waiting to convert under that component.
    pending: [f64; SCALES],
    conversions: f64,
    revenue: f64,
    /// Σ w × payout², for the spread of payouts the change detector expects.
    revenue_sq: f64,
}

impl Stat {
    fn new(t: i64) -> Stat {
        Stat {
            t,
            n: 0.0,
            count: 0.0,
            rate: 0.0,
            rate_t: t,
            clicks: 0.0,
            pending: [0.0; SCALES],
            conversions: 0.0,
            revenue: 0.0,
            revenue_sq: 0.0,
        }
    }

    fn advance(&mut self, t: i64, config: &BanditConfig, taus: &[f64; SCALES]) {
        let dt = (t - self.t).max(0) as f64;
        let dn = (self.count - self.n).max(0.0);
        if dt == 0.0 && dn == 0.0 {
            return;
        }
        let g = fade(dt, dn, config);
        self.clicks *= g;
        self.conversions *= g;
        self.revenue *= g;
        self.revenue_sq *= g;
        for (p, tau) in self.pending.iter_mut().zip(taus) {
            *p *= g * decay(dt / tau);
        }
        self.t = self.t.max(t);
        self.n = self.count;
    }

    fn click(&mut self, at_ms: i64, config: &BanditConfig, taus: &[f64; SCALES]) {
        self.advance(at_ms, config, taus);
        self.clicks += 1.0;
        for p in &mut self.pending {
            *p += 1.0;
        }
        self.count += 1.0;
        self.rate =
            self.rate * decay((at_ms - self.rate_t).max(0) as f64 / config.rate_window_ms) + 1.0;
        self.rate_t = self.rate_t.max(at_ms);
    }

    /// Keeps only `keep` of everything seen: what a detected change leaves of the old evidence.
    fn scale(&mut self, keep: f64) {
        self.clicks *= keep;
        self.conversions *= keep;
        self.revenue *= keep;
        self.revenue_sq *= keep;
        for p in &mut self.pending {
            *p *= keep;
        }
    }

    /// A conversion at `at_ms` of a click made `delay_ms` earlier, weighted as its click has
    /// faded since.
    fn convert(
        &mut self,
        at_ms: i64,
        delay_ms: f64,
        payout: f64,
        config: &BanditConfig,
        taus: &[f64; SCALES],
    ) {
        self.advance(at_ms, config, taus);
        let w = self.fade_since(delay_ms, config);
        self.conversions += w;
        self.revenue += w * payout;
        self.revenue_sq += w * payout * payout;
    }

    fn remove(&mut self, w: f64, conversions: f64, revenue: f64) {
        self.conversions = (self.conversions - w * conversions).max(0.0);
        self.revenue = (self.revenue - w * revenue).max(0.0);
        if conversions > 0.0 {
            self.revenue_sq = (self.revenue_sq - w * revenue * revenue).max(0.0);
        }
    }

    /// How much a click made `delay_ms` ago has faded since: the weight its conversion gets, or
    /// slow conversions would count more than the clicks they came from.
    fn fade_since(&self, delay_ms: f64, config: &BanditConfig) -> f64 {
        let clicks_since = (self.rate / config.rate_window_ms * delay_ms).min(self.count);
        fade(delay_ms, clicks_since, config)
    }

    /// (exposure, conversions, revenue) as of `t`, without changing the stored state.
    /// `delay_weights` are the mixing weights of this offer's delay model.
    fn read(
        &self,
        t: i64,
        config: &BanditConfig,
        taus: &[f64; SCALES],
        delay_weights: &[f64; SCALES],
    ) -> (f64, f64, f64) {
        let (e, k, r, _) = self.read_all(t, config, taus, delay_weights);
        (e, k, r)
    }

    /// `read` plus Σ w × payout².
    fn read_all(
        &self,
        t: i64,
        config: &BanditConfig,
        taus: &[f64; SCALES],
        delay_weights: &[f64; SCALES],
    ) -> (f64, f64, f64, f64) {
        let mut copy = self.clone();
        copy.advance(t, config, taus);
        let pending: f64 = delay_weights
            .iter()
            .zip(&copy.pending)
            .map(|(w, p)| w * p)
            .sum();
        (
            (copy.clicks - pending).max(0.0),
            copy.conversions,
            copy.revenue,
            copy.revenue_sq,
        )
    }
}

/// Largest weight one observed delay gets for the delays not seen yet.
const MAX_DELAY_WEIGHT: f64 = 10.0;

fn fade(dt: f64, dn: f64, config: &BanditConfig) -> f64 {
    decay((dt / config.time_half_life_ms + dn / config.click_half_life) * std::f64::consts::LN_2)
}

/// `e^-x` for `x ≥ 0`. Every click advances each of its sums by the milliseconds since the one
/// before, so `x` is nearly always tiny, where four terms of the series are within 5e-10 of it and
/// cost a fraction of `exp` (which the learner would otherwise call ~170 times a click).
fn decay(x: f64) -> f64 {
    if x < 0.01 {
        1.0 - x * (1.0 - x * (0.5 - x / 6.0))
    } else {
        (-x).exp()
    }
}

#[derive(Clone, Debug)]
struct KeyState {
    parent: u64,
    /// The marginal key of the dimension this level adds (device at level 2, OS at 3, carrier
    /// at 4), whose lift over the whole campaign sharpens the parent's estimate into a prior.
    marginal: Option<u64>,
    /// Own evidence since the last recomputation.
    dirty: bool,
    /// Indexed by the campaign's offer index.
    stats: Vec<Stat>,
}

#[derive(Clone, Debug, Default)]
struct CampaignEvidence {
    offers: Vec<String>,
    offer_index: Map<String, usize>,
    /// Per offer: its own delay model; the global one is its prior, so an offer with few
    /// conversions borrows the shape every offer shows and one with many gets its own.
    delays: Vec<DelayModel>,
    /// Per offer: time of its first click, to correct delays for the ones not seen yet.
    first_click_ms: Vec<i64>,
    /// Per offer, campaign-wide, with the change detector's long memory.
    whole: Vec<Stat>,
    /// Per offer, campaign-wide: the recent past alone (fast fading), which the change
    /// detector holds against the long memory of the root key.
    recent: Vec<Stat>,
    keys: Map<u64, KeyState>,
    /// Keys per level in first-seen order, for a deterministic top-down pass.
    by_level: [Vec<u64>; LEVELS],
    /// Tables of the previous recomputation, reused for keys without news.
    cache: Map<u64, Arc<SegmentTable>>,
    /// What each key handed down to its children at the previous recomputation.
    prior_cache: Map<u64, Vec<Prior>>,
    cache_arms: Vec<ArmSpec>,
}

impl CampaignEvidence {
    fn offer(&mut self, offer: &str, config: &BanditConfig) -> usize {
        if let Some(&i) = self.offer_index.get(offer) {
            return i;
        }
        self.offers.push(offer.to_string());
        self.first_click_ms.push(i64::MAX);
        self.recent.push(Stat::new(0));
        self.whole.push(Stat::new(0));
        self.delays.push(DelayModel::new(
            config.delay_min_ms,
            config.delay_max_ms,
            0.0,
            config.delay_memory,
        ));
        self.offer_index
            .insert(offer.to_string(), self.offers.len() - 1);
        self.offers.len() - 1
    }

    /// The key states of `segment`'s levels and marginals, created as needed.
    fn touch(&mut self, segment: &Segment, offer: usize, at_ms: i64) -> [u64; LEVELS + MARGINALS] {
        let keys = segment.keys();
        let marginals = segment.marginal_keys();
        let mut all = [0u64; LEVELS + MARGINALS];
        for (slot, level) in all.iter_mut().zip(0..LEVELS + MARGINALS) {
            let (key, parent, marginal) = if level < LEVELS {
                let marginal = (level >= 2).then(|| marginals[level - 2]);
                (keys[level], keys[level.saturating_sub(1)], marginal)
            } else {
                (marginals[level - LEVELS], keys[0], None)
            };
            *slot = key;
            let state = self.keys.entry(key).or_insert_with(|| {
                if level < LEVELS {
                    self.by_level[level].push(key);
                }
                KeyState {
                    parent,
                    marginal,
                    dirty: true,
                    stats: Vec::new(),
                }
            });
            while state.stats.len() <= offer {
                state.stats.push(Stat::new(at_ms));
            }
        }
        all
    }

    /// Delay mixing weights of offer `o`: its own observations plus the global model's shape
    /// worth `prior_count` observations.
    fn delay_weights(&self, o: usize, global: &DelayModel, prior_count: f64) -> [f64; SCALES] {
        self.delays
            .get(o)
            .map_or_else(|| global.weights(), |d| d.blend(global, prior_count))
    }
}

/// Everything the bandit has observed, for all campaigns.
#[derive(Clone, Debug)]
pub struct Evidence {
    config: BanditConfig,
    /// `config` with the short memory of the change detector's recent sums.
    recent_config: BanditConfig,
    /// `config` with the long memory the recent sums are held against.
    whole_config: BanditConfig,
    /// Every offer's delays together: the prior of each offer's own model.
    delays: DelayModel,
    campaigns: Map<String, CampaignEvidence>,
    recomputations: u64,
    /// Changes the detector has acted on, ever.
    changes: u64,
}

impl Evidence {
    pub fn new(config: BanditConfig) -> Evidence {
        let delays = DelayModel::new(
            config.delay_min_ms,
            config.delay_max_ms,
            config.delay_prior_count,
            config.delay_memory,
        );
        let recent_config = BanditConfig {
            time_half_life_ms: config.time_half_life_ms * RECENT_MEMORY,
            click_half_life: config.change_window_clicks,
            ..config.clone()
        };
        let whole_config = BanditConfig {
            click_half_life: config.change_memory_clicks,
            ..config.clone()
        };
        Evidence {
            config,
            recent_config,
            whole_config,
            delays,
            campaigns: Map::default(),
            recomputations: 0,
            changes: 0,
        }
    }

    pub fn config(&self) -> &BanditConfig {
        &self.config
    }

    pub fn delays(&self) -> &DelayModel {
        &self.delays
    }

    /// Offers whose old evidence the change detector has cut, counted since start.
    pub fn changes_detected(&self) -> u64 {
        self.changes
    }

    /// A residual click sent to `offer`.
    pub fn record_click(&mut self, campaign: &str, offer: &str, segment: &Segment, at_ms: i64) {
        let config = &self.config;
        let taus = *self.delays.taus();
        let c = self.campaigns.entry(campaign.to_string()).or_default();
        let o = c.offer(offer, config);
        c.first_click_ms[o] = c.first_click_ms[o].min(at_ms);
        c.recent[o].click(at_ms, &self.recent_config, &taus);
        c.whole[o].click(at_ms, &self.whole_config, &taus);
        for key in c.touch(segment, o, at_ms) {
            let state = c.keys.get_mut(&key).expect("touched");
            state.stats[o].click(at_ms, config, &taus);
            state.dirty = true;
        }
    }

    /// An approved conversion worth `payout` (base currency) for a click made at `click_at_ms`.
    pub fn record_conversion(
        &mut self,
        campaign: &str,
        offer: &str,
        segment: &Segment,
        payout: f64,
        click_at_ms: i64,
        at_ms: i64,
    ) {
        let delay = (at_ms - click_at_ms).max(0) as f64;
        let config = &self.config;
        let taus = *self.delays.taus();
        let c = self.campaigns.entry(campaign.to_string()).or_default();
        let o = c.offer(offer, config);
        // Only clicks at least `delay` old could show a delay that long: with the offer's
        // traffic spread over `span`, that is a fraction (span − delay) / span of them, so the
        // observation is weighted by the inverse, or early on the model would learn that
        // conversions are fast because the slow ones have not happened yet.
        let span = (at_ms - c.first_click_ms[o].min(click_at_ms)).max(1) as f64;
        let weight = (span / (span - delay).max(span / MAX_DELAY_WEIGHT)).min(MAX_DELAY_WEIGHT);
        c.delays[o].observe_weighted(delay, weight);
        self.delays.observe_weighted(delay, weight);
        c.whole[o].convert(at_ms, delay, payout, &self.whole_config, &taus);
        c.recent[o].convert(at_ms, delay, payout, &self.recent_config, &taus);
        for key in c.touch(segment, o, at_ms) {
            let state = c.keys.get_mut(&key).expect("touched");
            state.stats[o].convert(at_ms, delay, payout, config, &taus);
            state.dirty = true;
        }
    }

    /// An approved conversion taken back (rejected after approval, chargeback, or a negative
    /// payout reported as its own event): removes what `record_conversion` added, as faded
    /// since. `payout` is the amount that was counted (positive).
    pub fn record_reversal(
        &mut self,
        campaign: &str,
        offer: &str,
        segment: &Segment,
        payout: f64,
        click_at_ms: i64,
        at_ms: i64,
    ) {
        self.take_back(campaign, offer, segment, 1.0, payout, click_at_ms, at_ms);
    }

    /// An approved conversion whose amount changed by `delta` (a partial refund reported as a
    /// negative payout, or a correction): it stays one conversion, worth `delta` more.
    pub fn record_adjustment(
        &mut self,
        campaign: &str,
        offer: &str,
        segment: &Segment,
        delta: f64,
        click_at_ms: i64,
        at_ms: i64,
    ) {
        self.take_back(campaign, offer, segment, 0.0, -delta, click_at_ms, at_ms);
    }

    /// Removes `conversions` and `revenue` of a click made at `click_at_ms`, as faded since.
    #[allow(clippy::too_many_arguments)]
    fn take_back(
        &mut self,
        campaign: &str,
        offer: &str,
        segment: &Segment,
        conversions: f64,
        revenue: f64,
        click_at_ms: i64,
        at_ms: i64,
    ) {
        let delay = (at_ms - click_at_ms).max(0) as f64;
        let config = &self.config;
        let taus = *self.delays.taus();
        let Some(c) = self.campaigns.get_mut(campaign) else {
            return;
        };
        let Some(&o) = c.offer_index.get(offer) else {
            return;
        };
        let recent = &mut c.recent[o];
        recent.advance(at_ms, &self.recent_config, &taus);
        recent.remove(
            recent.fade_since(delay, &self.recent_config),
            conversions,
            revenue,
        );
        for key in segment.keys().into_iter().chain(segment.marginal_keys()) {
            let Some(stat) = c.keys.get_mut(&key).and_then(|s| {
                s.dirty = true;
                s.stats.get_mut(o)
            }) else {
                continue;
            };
            stat.advance(at_ms, config, &taus);
            stat.remove(stat.fade_since(delay, config), conversions, revenue);
        }
    }

    /// Exposure (clicks that had time to convert, faded), conversions and revenue of one offer in
    /// one segment's finest key; zeros when never seen.
    pub fn totals(
        &self,
        campaign: &str,
        offer: &str,
        segment: &Segment,
        now_ms: i64,
    ) -> (f64, f64, f64) {
        let Some(c) = self.campaigns.get(campaign) else {
            return (0.0, 0.0, 0.0);
        };
        let (Some(&o), Some(state)) = (
            c.offer_index.get(offer),
            c.keys.get(&segment.keys()[LEVELS - 1]),
        ) else {
            return (0.0, 0.0, 0.0);
        };
        let weights = c.delay_weights(o, &self.delays, self.config.delay_prior_count);
        state.stats.get(o).map_or((0.0, 0.0, 0.0), |s| {
            s.read(now_ms, &self.config, self.delays.taus(), &weights)
        })
    }

    /// Builds the allocation tables for `campaigns` as of `now_ms`.
    pub fn recompute(&mut self, campaigns: &[CampaignSpec], now_ms: i64) -> Tables {
        self.recomputations += 1;
        let full = self.config.full_refresh_every <= 1
            || self
                .recomputations
                .is_multiple_of(u64::from(self.config.full_refresh_every));
        let mut tables = Tables {
            computed_at_ms: now_ms,
            campaigns: Map::default(),
        };
        for spec in campaigns {
            let arms: Vec<Arm> = spec
                .arms
                .iter()
                .map(|a| Arm {
                    offer: a.offer.clone(),
                    fallback: a.fallback,
                    weight: a.weight,
                })
                .collect();
            let segments = match self.campaigns.get_mut(&spec.id) {
                Some(c) => {
                    let (changed, recent_paid) = detect_changes(
                        c,
                        spec,
                        now_ms,
                        &self.config,
                        &self.recent_config,
                        &self.whole_config,
                        &self.delays,
                    );
                    self.changes += changed;
                    campaign_tables(
                        c,
                        spec,
                        &recent_paid,
                        now_ms,
                        full || changed > 0,
                        &self.config,
                        &self.delays,
                    )
                }
                None => Map::default(),
            };
            tables
                .campaigns
                .insert(spec.id.clone(), CampaignTable { arms, segments });
        }
        tables
    }
}

/// Looks, per offer, for a change the fading would take long to follow: the campaign-wide
/// conversion rate or payout per conversion of the recent past (`recent`) against the long
/// memory of the root key. A shift of more than `change_z` standard errors keeps only
/// `change_keep` of the offer's old evidence in every key, so a halved payout or a broken landing
/// page is followed within the few hundred clicks it takes to show, not within the half-lives.
/// Returns the number of offers cut, and per arm of `spec` the recent memory's (conversions,
/// revenue) as left after any cut: the configured payout is only a prior, and what the recent
/// past paid per conversion replaces it, so a payout the network changed is not pulled back to
/// the configured one whenever old evidence is cut.
fn detect_changes(
    c: &mut CampaignEvidence,
    spec: &CampaignSpec,
    now_ms: i64,
    config: &BanditConfig,
    recent_config: &BanditConfig,
    whole_config: &BanditConfig,
    delays: &DelayModel,
) -> (u64, Vec<(f64, f64)>) {
    let taus = *delays.taus();
    let mut changed = 0;
    let mut recent_paid = vec![(0.0, 0.0); spec.arms.len()];
    // Only offers that get traffic: a paused or capped one's recent memory only empties.
    for (arm, paid) in spec.arms.iter().zip(&mut recent_paid) {
        let Some(&o) = c.offer_index.get(&arm.offer) else {
            continue;
        };
        let weights = c.delay_weights(o, delays, config.delay_prior_count);
        let (el, kl, rl, sql) = c.whole[o].read_all(now_ms, whole_config, &taus, &weights);
        let (es, ks, rs, _) = c.recent[o].read_all(now_ms, recent_config, &taus, &weights);
        *paid = (ks, rs);
        if kl < CHANGE_MIN_CONVERSIONS || el <= 0.0 {
            continue;
        }
        let expected = es * kl / el;
        let z_rate = if expected.max(ks) >= CHANGE_MIN_CONVERSIONS {
            (ks - expected) / (expected + 1.0).sqrt()
        } else {
            0.0
        };
        let mean = rl / kl;
        // Fixed payouts have no spread; a floor of 5 % keeps rounding from looking like news.
        let variance = (sql / kl - mean * mean)
            .max((0.05 * mean).powi(2))
            .max(1e-12);
        let z_payout = if ks >= CHANGE_MIN_CONVERSIONS {
            (rs / ks - mean) / (variance / ks).sqrt()
        } else {
            0.0
        };
        if z_rate.abs() > config.change_z || z_payout.abs() > config.change_z {
            for state in c.keys.values_mut() {
                if let Some(stat) = state.stats.get_mut(o) {
                    stat.advance(now_ms, config, &taus);
                    stat.scale(config.change_keep);
                    state.dirty = true;
                }
            }
            // Both memories restart, so the old state in the recent one cannot set the detector
            // off again against a long memory that has already moved on.
            c.whole[o].advance(now_ms, whole_config, &taus);
            c.whole[o].scale(config.change_keep);
            c.recent[o].advance(now_ms, recent_config, &taus);
            c.recent[o].scale(config.change_keep);
            *paid = (ks * config.change_keep, rs * config.change_keep);
            changed += 1;
        }
    }
    (changed, recent_paid)
}

/// Conversions both memories need before the change detector compares them.
const CHANGE_MIN_CONVERSIONS: f64 = 10.0;

/// The recent memory's time half-life, as a fraction of the long one.
const RECENT_MEMORY: f64 = 0.25;

/// Per-arm parameters a level hands down to the next finer one.
#[derive(Clone, Copy, Debug)]
struct Prior {
    cr: f64,
    payout: f64,
}

fn campaign_tables(
    c: &mut CampaignEvidence,
    spec: &CampaignSpec,
    recent_paid: &[(f64, f64)],
    now_ms: i64,
    full: bool,
    config: &BanditConfig,
    delays: &DelayModel,
) -> Map<u64, Arc<SegmentTable>> {
    let full = full || c.cache_arms != spec.arms;
    let arm_offer: Vec<Option<usize>> = spec
        .arms
        .iter()
        .map(|a| c.offer_index.get(&a.offer).copied())
        .collect();
    let weights: Vec<[f64; SCALES]> = arm_offer
        .iter()
        .map(|o| match o {
            Some(o) => c.delay_weights(*o, delays, config.delay_prior_count),
            None => delays.weights(),
        })
        .collect();
    let read = |state: &KeyState, arm: usize| -> (f64, f64, f64) {
        arm_offer[arm]
            .and_then(|o| state.stats.get(o))
            .map_or((0.0, 0.0, 0.0), |s| {
                s.read(now_ms, config, delays.taus(), &weights[arm])
            })
    };
    let a = config.prior_conversions;
    let p = config.payout_prior_conversions;

    // The campaign's pooled conversion rate is the prior of each offer's overall rate, so an
    // offer with no evidence is assumed to be an average one.
    let mut priors: Map<u64, Vec<Prior>> = Map::default();
    let root_prior: Vec<Prior> = {
        let (mut e, mut k) = (0.0, 0.0);
        if let Some(root) = c.by_level[0].first().and_then(|key| c.keys.get(key)) {
            for arm in 0..spec.arms.len() {
                let (ea, ka, _) = read(root, arm);
                e += ea;
                k += ka;
            }
        }
        let cr = (k + a) / (e + a / config.prior_cr);
        // Networks price offers so that a high payout comes with a low conversion rate: before
        // evidence every offer is assumed to earn the same per click, so P(best) is equal and
        // traffic splits by weight alone.
        let priced: Vec<f64> = spec
            .arms
            .iter()
            .map(|a| a.payout)
            .filter(|&p| p > 0.0)
            .collect();
        let mean_payout = priced.iter().sum::<f64>() / priced.len().max(1) as f64;
        spec.arms
            .iter()
            .zip(recent_paid)
            .map(|(arm, (k, r))| Prior {
                cr: if arm.payout > 0.0 && mean_payout > 0.0 {
                    cr * mean_payout / arm.payout
                } else {
                    cr
                },
                payout: (r + p * arm.payout) / (k + p),
            })
            .collect()
    };

    let mut out: Map<u64, Arc<SegmentTable>> = Map::default();
    let mut lifts: Map<u64, Vec<f64>> = Map::default();
    for level in 0..LEVELS {
        if level == 2 {
            // Each marginal's conversion rate relative to the whole campaign's, per offer, shrunk
            // towards 1 by `prior_conversions`.
            if let Some(overall) = c.by_level[0].first().and_then(|root| priors.get(root)) {
                for (&key, state) in &c.keys {
                    if c.keys[&state.parent].parent != state.parent || state.marginal.is_some() {
                        continue;
                    }
                    let lift = overall
                        .iter()
                        .enumerate()
                        .map(|(arm, o)| {
                            let (e, k, _) = read(state, arm);
                            (k + a) / (e * o.cr + a)
                        })
                        .collect();
                    lifts.insert(key, lift);
                }
            }
        }
        for &key in &c.by_level[level] {
            let state = &c.keys[&key];
            if !full && !state.dirty {
                // Nothing new here: fading and the parent's news reach it at the next full pass.
                if let Some(own) = c.prior_cache.get(&key) {
                    priors.insert(key, own.clone());
                    if let Some(table) = c.cache.get(&key) {
                        out.insert(key, Arc::clone(table));
                    }
                    continue;
                }
            }
            let lifted: Vec<Prior>;
            let parent: &[Prior] = if level == 0 {
                &root_prior
            } else {
                let parent = &priors[&state.parent];
                match state.marginal.and_then(|m| lifts.get(&m)) {
                    Some(lift) => {
                        lifted = parent
                            .iter()
                            .zip(lift)
                            .map(|(p, l)| Prior {
                                cr: p.cr * l,
                                payout: p.payout,
                            })
                            .collect();
                        &lifted
                    }
                    None => parent,
                }
            };
            let mut own = Vec::with_capacity(spec.arms.len());
            let mut posteriors = Vec::with_capacity(spec.arms.len());
            // Conversions this key's own evidence is worth (seen, or expected from its exposure
            // at the parent's rates): below one it cannot tell the offers apart better than its
            // parent, whose table then serves it.
            let mut worth = 0.0;
            for (arm, prior) in parent.iter().enumerate() {
                let (e, k, r) = read(state, arm);
                worth += k.max(e * prior.cr);
                let shape = k + a;
                let rate = e + a / prior.cr;
                let payout = (r + p * prior.payout) / (k + p);
                own.push(Prior {
                    cr: shape / rate,
                    payout,
                });
                posteriors.push(LogNormal::of_gamma(shape, rate, payout));
            }
            priors.insert(key, own);
            if level > 0 && worth < config.min_table_conversions {
                continue;
            }
            let table = {
                let best = prob_best(&posteriors);
                let exploit = spec
                    .arms
                    .iter()
                    .zip(&best)
                    .map(|(arm, pb)| arm.weight * pb)
                    .collect();
                let explore = spec
                    .arms
                    .iter()
                    .zip(&posteriors)
                    .map(|(arm, post)| arm.weight * post.sigma)
                    .collect();
                Arc::new(SegmentTable::new(exploit, explore, config.exploration))
            };
            out.insert(key, table);
        }
    }
    for state in c.keys.values_mut() {
        state.dirty = false;
    }
    c.cache = out.clone();
    c.prior_cache = priors;
    c.cache_arms = spec.arms.clone();
    out
}

#[cfg(test)]
mod decay_tests {
    use super::decay;

    #[test]
    fn decay_matches_exp_on_both_sides_of_the_series_cut() {
        for i in 0..=4000 {
            let x = i as f64 * 1e-5;
            let exact = (-x).exp();
            assert!((decay(x) - exact).abs() <= 5e-10 * exact, "x = {x}");
        }
        for x in [0.5, 1.0, 10.0, 700.0] {
            assert_eq!(decay(x), (-x).exp());
        }
    }
}
