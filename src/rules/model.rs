//! The compiled, validated rule set the click path reads: offers, sources, campaigns.
//!
//! Built only by `rules::load` after the whole set validated, then swapped in atomically, so the
//! click path never sees a half-applied or invalid set.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::money::Money;
use crate::rules::matching::Conditions;
use crate::template::UrlTemplate;

/// Every rule in force, with a version that changes whenever any file's content changes.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// Content hash of all rule files, as hex; used for `If-Match` and `GET /api/rules`.
    pub version: String,
    pub offers: HashMap<String, Arc<Offer>>,
    pub sources: HashMap<String, Arc<Source>>,
    pub campaigns: HashMap<String, Arc<Campaign>>,
}

impl RuleSet {
    pub fn campaign(&self, id: &str) -> Option<&Arc<Campaign>> {
        self.campaigns.get(id)
    }

    pub fn offer(&self, id: &str) -> Option<&Arc<Offer>> {
        self.offers.get(id)
    }

    pub fn source(&self, id: &str) -> Option<&Arc<Source>> {
        self.sources.get(id)
    }
}

/// Serializes as the TOML of SPEC §5 is written (`match`, `exclude`), for `GET /api/rules`.
#[derive(Debug, Serialize)]
pub struct Offer {
    pub id: String,
    pub url: UrlTemplate,
    /// Expected payout per conversion in `currency`; the bandit's prior.
    pub payout: Money,
    pub currency: String,
    /// Approved conversions per day in `cap_timezone`, then ineligible until the day rolls over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_cap: Option<u32>,
    /// IANA zone name; `UTC` when not given.
    pub cap_timezone: String,
    pub paused: bool,
    /// Outside this the offer never gets traffic. Empty = everyone.
    #[serde(rename = "match")]
    pub matches: Conditions,
    /// Inside this the offer never gets traffic. Empty = no one excluded.
    #[serde(rename = "exclude")]
    pub excludes: Conditions,
    /// `cap_timezone`, resolved once at load.
    #[serde(skip)]
    pub cap_tz: chrono_tz::Tz,
}

impl Offer {
    /// The calendar day in `cap_timezone` that a moment (Unix seconds) counts against for
    /// `daily_cap`; shown as `YYYY-MM-DD`.
    pub fn cap_day(&self, unix_secs: i64) -> chrono::NaiveDate {
        chrono::DateTime::from_timestamp(unix_secs, 0)
            .unwrap_or_default()
            .with_timezone(&self.cap_tz)
            .date_naive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CostModel {
    /// The cost parameter is the price of this click.
    Cpc,
    /// The cost parameter is the price of 1000 impressions/clicks; one click costs a thousandth.
    Cpm,
}

impl CostModel {
    pub fn as_str(self) -> &'static str {
        match self {
            CostModel::Cpc => "cpc",
            CostModel::Cpm => "cpm",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Source {
    pub id: String,
    /// Query parameter carrying the source's own click id (our `external_id`).
    pub click_id_param: String,
    pub cost_param: Option<String>,
    pub cost_model: CostModel,
    pub postback_url: Option<UrlTemplate>,
    /// Events forwarded; empty = all.
    pub postback_events: Vec<String>,
    /// Statuses forwarded (`approved`, `pending`, `rejected`, `chargeback`).
    pub postback_statuses: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectKind {
    /// `302 Found` with `Location`.
    Found,
    /// `200` HTML page with a meta refresh and `no-referrer`.
    Meta,
}

impl RedirectKind {
    /// As written in the rules: `302` or `meta`.
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectKind::Found => "302",
            RedirectKind::Meta => "meta",
        }
    }
}

impl Serialize for RedirectKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[derive(Debug, Serialize)]
pub struct Campaign {
    pub id: String,
    pub source: String,
    pub redirect: RedirectKind,
    /// Last resort when nothing else fits.
    pub backlink: UrlTemplate,
    /// Where bots go; `None` = the backlink.
    pub bot_url: Option<UrlTemplate>,
    /// In order; the first that matches (and whose offer is eligible) wins.
    pub primary: Vec<Primary>,
    /// The residual pool.
    pub fallback: Vec<Fallback>,
}

#[derive(Debug, Serialize)]
pub struct Primary {
    pub offer: String,
    #[serde(rename = "match")]
    pub matches: Conditions,
    #[serde(rename = "exclude")]
    pub excludes: Conditions,
}

#[derive(Debug, Serialize)]
pub struct Fallback {
    pub offer: String,
    /// > 0; the operator's prior belief.
    pub weight: f64,
    #[serde(rename = "match")]
    pub matches: Conditions,
    #[serde(rename = "exclude")]
    pub excludes: Conditions,
}
