//! Scenario files for `smartlink simulate` (TOML). Format (see also `tests/scenarios/README.md`):
//!
//! ```toml
//! name = "small"                 # shown in the output
//! horizon = 20000                # residual clicks to simulate
//! clicks_per_second = 20.0       # simulated traffic rate: fixes the simulated clock
//! refresh_ms = 1000              # how often allocation tables are rebuilt (simulated time)
//! window = 2000                  # clicks in the sliding window that measures recovery
//! world_seed = 1                 # fixes generated segments and per-segment rates
//!
//! [bandit]                       # optional tuning of the `bandit` policy
//! time_half_life_s = 259200.0
//! click_half_life = 3000.0
//! exploration = 0.02
//! delay_min_s = 1.0
//! delay_max_s = 2592000.0
//! weight_fade_conversions = 10.0
//! sharpen = 2.0
//!
//! [delay]                        # conversion delay of every offer unless it sets its own
//! kind = "lognormal"             # "lognormal" (median_s, sigma), "exponential" (median_s),
//! median_s = 30.0                # or "fixed" (median_s)
//! sigma = 1.0
//!
//! [traffic]                      # generated segments: distinct random combinations,
//! countries = ["US", "DE"]       # the k-th most common getting a share ∝ 1 / k^zipf
//! devices = ["phone", "desktop"]
//! oses = ["Android", "iOS"]
//! carriers = ["Verizon", ""]     # "" = carrier unknown
//! segments = 40
//! zipf = 1.1
//!
//! [[segment]]                    # and/or explicit segments with relative shares
//! country = "US"                 # device, os, carrier optional
//! share = 5.0
//!
//! [[offer]]
//! id = "a"
//! weight = 1.0                   # the operator's prior (fallback weight)
//! payout = 2.0                   # true payout per conversion
//! prior_payout = 2.0             # configured payout the bandit starts from (default: payout)
//! cr = 0.02                      # base true conversion rate
//! cr_spread = 0.5                # sigma of a log-normal per-segment factor on cr
//! country_spread = 0.6           # sigmas of log-normal factors per (offer, country),
//! device_spread = 0.4            # (offer, device), (offer, os), (offer, carrier): shared by
//! os_spread = 0.3                # every segment with that value, as real offers depend on
//! carrier_spread = 0.3           # GEO and device more than on anything else
//! countries = ["US"]             # optional: only these countries are eligible
//! from_click = 0                 # optional: the offer is added at this click
//! delay = { kind = "fixed", median_s = 5.0 }   # optional
//! [[offer.cr_by]]                # optional multipliers by country / device / os
//! country = "US"
//! factor = 2.0
//!
//! [[drift]]                      # at_click or at_s; any of the changes below
//! at_click = 10000
//! offer = "a"
//! payout_factor = 0.5
//! cr_factor = 1.0
//! paused = true                  # true pauses, false resumes
//! cap = 50                       # after 50 more conversions ineligible until the next
//!                                # simulated day
//! ```

use std::collections::HashSet;

use serde::Deserialize;

use crate::visitor::{Device, Os};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub name: String,
    pub horizon: u64,
    pub clicks_per_second: f64,
    #[serde(default = "default_refresh")]
    pub refresh_ms: u64,
    #[serde(default)]
    pub window: Option<u64>,
    #[serde(default = "default_world_seed")]
    pub world_seed: u64,
    #[serde(default)]
    pub bandit: BanditTuning,
    #[serde(default)]
    pub delay: Option<Delay>,
    #[serde(default)]
    pub traffic: Option<Traffic>,
    #[serde(default)]
    pub segment: Vec<SegmentSpec>,
    pub offer: Vec<OfferSpec>,
    #[serde(default)]
    pub drift: Vec<Drift>,
}

fn default_refresh() -> u64 {
    1000
}

fn default_world_seed() -> u64 {
    1
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanditTuning {
    pub time_half_life_s: Option<f64>,
    pub click_half_life: Option<f64>,
    pub exploration: Option<f64>,
    pub prior_conversions: Option<f64>,
    pub delay_min_s: Option<f64>,
    pub delay_max_s: Option<f64>,
    pub weight_fade_conversions: Option<f64>,
    pub sharpen: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum DelayKind {
    Lognormal,
    Exponential,
    Fixed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delay {
    pub kind: DelayKind,
    pub median_s: f64,
    #[serde(default = "default_sigma")]
    pub sigma: f64,
}

fn default_sigma() -> f64 {
    1.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    pub countries: Vec<String>,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub oses: Vec<String>,
    #[serde(default)]
    pub carriers: Vec<String>,
    pub segments: usize,
    #[serde(default = "default_zipf")]
    pub zipf: f64,
}

fn default_zipf() -> f64 {
    1.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    pub country: Option<String>,
    pub device: Option<String>,
    pub os: Option<String>,
    pub carrier: Option<String>,
    pub share: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferSpec {
    pub id: String,
    #[serde(default = "default_weight")]
    pub weight: f64,
    pub payout: f64,
    pub prior_payout: Option<f64>,
    pub cr: f64,
    #[serde(default)]
    pub cr_spread: f64,
    /// Sigmas of log-normal factors drawn once per (offer, country), (offer, device), ...: how
    /// much the offer's rate depends on each dimension, shared by every segment with that value.
    #[serde(default)]
    pub country_spread: f64,
    #[serde(default)]
    pub device_spread: f64,
    #[serde(default)]
    pub os_spread: f64,
    #[serde(default)]
    pub carrier_spread: f64,
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub from_click: u64,
    pub delay: Option<Delay>,
    #[serde(default)]
    pub cr_by: Vec<CrBy>,
}

fn default_weight() -> f64 {
    1.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrBy {
    pub country: Option<String>,
    pub device: Option<String>,
    pub os: Option<String>,
    pub factor: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    pub at_click: Option<u64>,
    pub at_s: Option<f64>,
    pub offer: String,
    pub payout_factor: Option<f64>,
    pub cr_factor: Option<f64>,
    pub paused: Option<bool>,
    pub cap: Option<u64>,
}

impl Scenario {
    /// Parses and validates; errors read `field: problem`.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| {
            let message = e.message().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!("line {line}: {message}")
                }
                None => format!("toml: {message}"),
            }
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<(), String> {
        let positive = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{field}: must be > 0, got {v}"))
            }
        };
        if self.horizon == 0 {
            return Err("horizon: must be > 0".into());
        }
        positive("clicks_per_second", self.clicks_per_second)?;
        if self.refresh_ms == 0 {
            return Err("refresh_ms: must be > 0".into());
        }
        if self.traffic.is_none() && self.segment.is_empty() {
            return Err("segment: no [traffic] and no [[segment]]: nobody clicks".into());
        }
        if let Some(t) = &self.traffic {
            if t.countries.is_empty() {
                return Err("traffic.countries: must not be empty".into());
            }
            if t.segments == 0 {
                return Err("traffic.segments: must be > 0".into());
            }
            for d in &t.devices {
                Device::parse(d).ok_or(format!("traffic.devices: unknown device `{d}`"))?;
            }
            for o in &t.oses {
                Os::parse(o).ok_or(format!("traffic.oses: unknown os `{o}`"))?;
            }
        }
        for (i, s) in self.segment.iter().enumerate() {
            positive(&format!("segment[{i}].share"), s.share)?;
            if let Some(d) = &s.device {
                Device::parse(d).ok_or(format!("segment[{i}].device: unknown device `{d}`"))?;
            }
            if let Some(o) = &s.os {
                Os::parse(o).ok_or(format!("segment[{i}].os: unknown os `{o}`"))?;
            }
        }
        if let Some(d) = &self.delay {
            d.validate("delay")?;
        }
        if self.offer.is_empty() {
            return Err("offer: at least one [[offer]] is needed".into());
        }
        let mut ids = HashSet::new();
        for (i, o) in self.offer.iter().enumerate() {
            if !ids.insert(o.id.as_str()) {
                return Err(format!("offer[{i}].id: duplicate id `{}`", o.id));
            }
            positive(&format!("offer[{i}].weight"), o.weight)?;
            if !(o.payout >= 0.0 && o.payout.is_finite()) {
                return Err(format!("offer[{i}].payout: must be ≥ 0"));
            }
            if !(0.0..=1.0).contains(&o.cr) {
                return Err(format!("offer[{i}].cr: must be within 0..=1, got {}", o.cr));
            }
            for (name, v) in [
                ("cr_spread", o.cr_spread),
                ("country_spread", o.country_spread),
                ("device_spread", o.device_spread),
                ("os_spread", o.os_spread),
                ("carrier_spread", o.carrier_spread),
            ] {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(format!("offer[{i}].{name}: must be ≥ 0"));
                }
            }
            if let Some(d) = &o.delay {
                d.validate(&format!("offer[{i}].delay"))?;
            }
            for (j, c) in o.cr_by.iter().enumerate() {
                if !(c.factor >= 0.0 && c.factor.is_finite()) {
                    return Err(format!("offer[{i}].cr_by[{j}].factor: must be ≥ 0"));
                }
            }
        }
        for (i, d) in self.drift.iter().enumerate() {
            if !ids.contains(d.offer.as_str()) {
                return Err(format!("drift[{i}].offer: no offer `{}`", d.offer));
            }
            if d.at_click.is_none() == d.at_s.is_none() {
                return Err(format!("drift[{i}]: give exactly one of at_click and at_s"));
            }
            for (name, v) in [
                ("payout_factor", d.payout_factor),
                ("cr_factor", d.cr_factor),
            ] {
                if let Some(v) = v {
                    if !(v >= 0.0 && v.is_finite()) {
                        return Err(format!("drift[{i}].{name}: must be ≥ 0"));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Delay {
    fn validate(&self, field: &str) -> Result<(), String> {
        if !(self.median_s >= 0.0 && self.median_s.is_finite()) {
            return Err(format!("{field}.median_s: must be ≥ 0"));
        }
        if !(self.sigma >= 0.0 && self.sigma.is_finite()) {
            return Err(format!("{field}.sigma: must be ≥ 0"));
        }
        Ok(())
    }
}
