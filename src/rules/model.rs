//! The compiled, validated rule set the click path reads: offers, sources, campaigns.
//!
//! Built only by `rules::load` after the whole set validated, then swapped in atomically, so the
//! click path never sees a half-applied or invalid set.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::money::Money;
use crate::rules::matching::{CheckSet, Conditions, Verdicts};
use crate::template::UrlTemplate;
use crate::visitor::{QueryParams, Visitor};

/// Every rule in force, with a version that changes whenever any file's content changes.
///
/// Built once (by `RuleSet::new`) and never changed afterwards: the offers each campaign names
/// are resolved at construction, so the maps must not be edited in place.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// Content hash of all rule files, as hex; used for `If-Match` and `GET /api/rules`.
    pub version: String,
    pub offers: HashMap<String, Arc<Offer>>,
    pub sources: HashMap<String, Arc<Source>>,
    pub campaigns: HashMap<String, Arc<Campaign>>,
    /// Each campaign's routes resolved, sorted by the campaign's address (see `resolved`).
    resolved: ResolvedCampaigns,
}

impl RuleSet {
    /// Assembles a rule set and resolves the offer of every campaign's primaries and fallbacks.
    pub fn new(
        version: String,
        offers: HashMap<String, Arc<Offer>>,
        sources: HashMap<String, Arc<Source>>,
        campaigns: HashMap<String, Arc<Campaign>>,
    ) -> RuleSet {
        let mut resolved: Vec<ResolvedCampaign> = campaigns
            .values()
            .map(|campaign| ResolvedCampaign::resolve(campaign, &offers))
            .collect();
        resolved.sort_unstable_by_key(|c| c.address());
        RuleSet {
            version,
            offers,
            sources,
            campaigns,
            resolved: ResolvedCampaigns(resolved),
        }
    }

    pub fn campaign(&self, id: &str) -> Option<&Arc<Campaign>> {
        self.campaigns.get(id)
    }

    pub fn offer(&self, id: &str) -> Option<&Arc<Offer>> {
        self.offers.get(id)
    }

    pub fn source(&self, id: &str) -> Option<&Arc<Source>> {
        self.sources.get(id)
    }

    /// `campaign`'s routes as resolved when the set was built, found without hashing any id.
    /// `None` when `campaign` is not one of this set's own campaigns (the same object, not
    /// merely the same id): look its offers up by id then.
    pub(crate) fn resolved(&self, campaign: &Campaign) -> Option<&ResolvedCampaign> {
        // Every entry holds its campaign alive, so no other campaign can have its address.
        let address = std::ptr::from_ref(campaign) as usize;
        let entries = &self.resolved.0;
        entries
            .binary_search_by_key(&address, ResolvedCampaign::address)
            .ok()
            .map(|i| &entries[i])
    }
}

/// Every campaign's routes resolved, sorted by campaign address; printed as a count only.
#[derive(Default)]
struct ResolvedCampaigns(Vec<ResolvedCampaign>);

impl std::fmt::Debug for ResolvedCampaigns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} campaigns", self.0.len())
    }
}

/// One campaign's routes resolved, in the campaign's order: `primary(i)` is
/// `campaign.primary[i]`, `fallback(i)` is `campaign.fallback[i]`; `None` where the rule set
/// has no such offer (validation refuses that, so only for hand-built sets).
#[derive(Debug)]
pub(crate) struct ResolvedCampaign {
    campaign: Arc<Campaign>,
    /// Every distinct condition of the routes and their offers.
    checks: CheckSet,
    primary: Box<[Option<RouteChecks>]>,
    fallback: Box<[Option<RouteChecks>]>,
}

impl ResolvedCampaign {
    fn resolve(campaign: &Arc<Campaign>, offers: &HashMap<String, Arc<Offer>>) -> ResolvedCampaign {
        let mut checks = CheckSet::default();
        let mut route = |id: &str, matches: &Conditions, excludes: &Conditions| {
            let offer = offers.get(id)?;
            Some(RouteChecks {
                offer: Arc::clone(offer),
                all: checks.numbers(&[matches, &offer.matches]),
                none: checks.numbers(&[excludes, &offer.excludes]),
            })
        };
        let primary = (campaign.primary.iter())
            .map(|p| route(&p.offer, &p.matches, &p.excludes))
            .collect();
        let fallback = (campaign.fallback.iter())
            .map(|f| route(&f.offer, &f.matches, &f.excludes))
            .collect();
        ResolvedCampaign {
            campaign: Arc::clone(campaign),
            checks,
            primary,
            fallback,
        }
    }

    fn address(&self) -> usize {
        Arc::as_ptr(&self.campaign) as usize
    }

    /// A click's verdicts on this campaign's conditions, each worked out once.
    pub(crate) fn verdicts<'a>(
        &'a self,
        visitor: &'a Visitor,
        params: &'a QueryParams,
    ) -> Verdicts<'a> {
        self.checks.verdicts(visitor, params)
    }

    /// Primary `index`. Panics when `index` is out of range.
    #[inline]
    pub(crate) fn primary(&self, index: usize) -> Option<&RouteChecks> {
        self.primary[index].as_ref()
    }

    /// Fallback `index`. Panics when `index` is out of range.
    #[inline]
    pub(crate) fn fallback(&self, index: usize) -> Option<&RouteChecks> {
        self.fallback[index].as_ref()
    }
}

/// A primary or fallback with its offer, and its conditions and the offer's as numbers into
/// the campaign's `CheckSet` (the lists as written stay on the route and offer for `explain`).
#[derive(Debug)]
pub(crate) struct RouteChecks {
    pub offer: Arc<Offer>,
    /// The route's `match` and the offer's: all must match.
    all: Box<[u32]>,
    /// The route's `exclude` and the offer's: none may match.
    none: Box<[u32]>,
}

impl RouteChecks {
    /// `match` passes and `exclude` does not, for the route and its offer together; the
    /// offer's pause and cap are the caller's.
    #[inline]
    pub(crate) fn conditions_pass(&self, verdicts: &mut Verdicts<'_>) -> bool {
        verdicts.all(&self.all) && !verdicts.any(&self.none)
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
    /// Where postbacks for this source's clicks may come from; empty = anywhere.
    pub postback_ips: Vec<ipnet::IpNet>,
}

impl Source {
    /// Whether a postback for one of this source's clicks may come from `ip`.
    pub fn postback_allowed_from(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.postback_ips.is_empty() || self.postback_ips.iter().any(|net| net.contains(&ip))
    }
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
