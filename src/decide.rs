//! Pure decision (SPEC §7): visitor + rules + offer availability + fallback policy → route and
//! target. No I/O; randomness is passed in. `explain` runs the same checks and keeps the reasons.

use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::bandit::FallbackPolicy;
use crate::rules::matching::{Conditions, Verdicts};
use crate::rules::model::{ResolvedCampaign, RouteChecks};
use crate::rules::{Campaign, Offer, RuleSet};
use crate::template::UrlTemplate;
use crate::visitor::{QueryParams, Visitor};

/// Which branch of the decision order sent the visitor where it went (SPEC §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Primary,
    Fallback,
    Backlink,
    Bot,
}

impl Route {
    pub const ALL: [Route; 4] = [Route::Primary, Route::Fallback, Route::Backlink, Route::Bot];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Primary => "primary",
            Route::Fallback => "fallback",
            Route::Backlink => "backlink",
            Route::Bot => "bot",
        }
    }

    pub fn parse(text: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Whether an offer has reached its cap right now. Kept behind a trait so the decision stays pure:
/// the server answers from its counters, tests and the simulator from their own state.
pub trait OfferAvailability {
    fn is_capped(&self, offer: &Offer) -> bool;
}

/// Availability when no offer is ever capped.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCaps;

impl OfferAvailability for NoCaps {
    fn is_capped(&self, _offer: &Offer) -> bool {
        false
    }
}

/// Everything a decision reads: the rules (`'r`, which the decision borrows from) and the click's
/// own facts (`'v`, which it does not outlive).
pub struct DecisionInput<'r, 'v> {
    pub rules: &'r RuleSet,
    pub campaign: &'r Campaign,
    pub visitor: &'v Visitor,
    pub params: &'v QueryParams,
    pub availability: &'v dyn OfferAvailability,
    pub policy: &'v dyn FallbackPolicy,
}

/// Where one click goes.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    pub route: Route,
    /// The offer chosen; `None` for backlink and bot routes.
    pub offer: Option<&'a Arc<Offer>>,
    /// The URL to expand and redirect to.
    pub target: &'a UrlTemplate,
}

/// Decides one click: bot → `bot_url`; first matching eligible primary; the policy's choice
/// among eligible fallbacks; otherwise the backlink.
pub fn decide<'r>(input: &DecisionInput<'r, '_>, rng: &mut dyn Rng) -> Decision<'r> {
    let campaign = input.campaign;
    if input.visitor.bot {
        return bot_decision(campaign);
    }
    let mut routes = Routes::of(input);
    for index in 0..campaign.primary.len() {
        if let Some(offer) = routes.open_primary(index, input) {
            return Decision {
                route: Route::Primary,
                offer: Some(offer),
                target: &offer.url,
            };
        }
    }
    let eligible = eligible_in(input, &mut routes);
    if eligible.is_empty() {
        return backlink_decision(campaign);
    }
    let chosen = input.policy.choose(campaign, input.visitor, &eligible, rng);
    fallback_decision(input, &routes, chosen)
}

/// A campaign's primaries and fallbacks as one click sees them.
enum Routes<'r, 'a> {
    /// Resolved when the rules were loaded (the campaign is the rule set's own), with this
    /// click's verdict on each distinct condition, worked out once.
    Resolved {
        routes: &'r ResolvedCampaign,
        verdicts: Verdicts<'a>,
    },
    /// Offers looked up by id: a campaign the rule set does not hold itself.
    ById(&'r RuleSet, &'r Campaign),
}

impl<'r, 'a> Routes<'r, 'a> {
    fn of(input: &'a DecisionInput<'r, '_>) -> Routes<'r, 'a> {
        match input.rules.resolved(input.campaign) {
            Some(routes) => Routes::Resolved {
                routes,
                verdicts: routes.verdicts(input.visitor, input.params),
            },
            None => Routes::ById(input.rules, input.campaign),
        }
    }

    fn primary(&self, index: usize) -> Option<&'r Arc<Offer>> {
        match *self {
            Routes::Resolved { routes, .. } => routes.primary(index).map(|route| &route.offer),
            Routes::ById(rules, campaign) => rules.offer(&campaign.primary[index].offer),
        }
    }

    fn fallback(&self, index: usize) -> Option<&'r Arc<Offer>> {
        match *self {
            Routes::Resolved { routes, .. } => routes.fallback(index).map(|route| &route.offer),
            Routes::ById(rules, campaign) => rules.offer(&campaign.fallback[index].offer),
        }
    }

    /// The offer of primary `index` when the visitor may take it now.
    fn open_primary(
        &mut self,
        index: usize,
        input: &DecisionInput<'_, '_>,
    ) -> Option<&'r Arc<Offer>> {
        match self {
            Routes::Resolved { routes, verdicts } => {
                let route = routes.primary(index)?;
                route_open(route, verdicts, input).then_some(&route.offer)
            }
            Routes::ById(rules, campaign) => {
                let rule = &campaign.primary[index];
                rules.offer(&rule.offer).filter(|offer| {
                    conditions_pass(&rule.matches, &rule.excludes, input, None)
                        && offer_available(offer, input, None)
                })
            }
        }
    }

    /// Whether the visitor may get fallback `index` now.
    fn fallback_open(&mut self, index: usize, input: &DecisionInput<'_, '_>) -> bool {
        match self {
            Routes::Resolved { routes, verdicts } => routes
                .fallback(index)
                .is_some_and(|route| route_open(route, verdicts, input)),
            Routes::ById(rules, campaign) => {
                let rule = &campaign.fallback[index];
                rules.offer(&rule.offer).is_some_and(|offer| {
                    conditions_pass(&rule.matches, &rule.excludes, input, None)
                        && offer_available(offer, input, None)
                })
            }
        }
    }
}

/// `conditions_pass` of a resolved route and `offer_available` of its offer: the same
/// verdict, with each distinct condition checked at most once per click.
fn route_open(
    route: &RouteChecks,
    verdicts: &mut Verdicts<'_>,
    input: &DecisionInput<'_, '_>,
) -> bool {
    !route.offer.paused
        && route.conditions_pass(verdicts)
        && !input.availability.is_capped(&route.offer)
}

/// Indexes into `campaign.fallback`, kept inline (no allocation) up to 32 fallbacks.
type Eligible = SmallVec<[usize; 32]>;

fn bot_decision(campaign: &Campaign) -> Decision<'_> {
    Decision {
        route: Route::Bot,
        offer: None,
        target: campaign.bot_url.as_ref().unwrap_or(&campaign.backlink),
    }
}

fn backlink_decision(campaign: &Campaign) -> Decision<'_> {
    Decision {
        route: Route::Backlink,
        offer: None,
        target: &campaign.backlink,
    }
}

fn fallback_decision<'r>(
    input: &DecisionInput<'r, '_>,
    routes: &Routes<'r, '_>,
    index: usize,
) -> Decision<'r> {
    match routes.fallback(index) {
        Some(offer) => Decision {
            route: Route::Fallback,
            offer: Some(offer),
            target: &offer.url,
        },
        // Validation refuses unknown offers; this only guards against a policy returning junk.
        None => backlink_decision(input.campaign),
    }
}

/// Indexes into `campaign.fallback` of the fallbacks this visitor may get now.
pub fn eligible_fallbacks(input: &DecisionInput<'_, '_>) -> Vec<usize> {
    let mut eligible = Vec::with_capacity(input.campaign.fallback.len());
    eligible_into(input, &mut Routes::of(input), &mut eligible);
    eligible
}

fn eligible_in(input: &DecisionInput<'_, '_>, routes: &mut Routes<'_, '_>) -> Eligible {
    let mut eligible = Eligible::new();
    eligible_into(input, routes, &mut eligible);
    eligible
}

fn eligible_into(
    input: &DecisionInput<'_, '_>,
    routes: &mut Routes<'_, '_>,
    eligible: &mut impl Extend<usize>,
) {
    for index in 0..input.campaign.fallback.len() {
        if routes.fallback_open(index, input) {
            eligible.extend([index]);
        }
    }
}

/// `match` passes and `exclude` does not. With `reasons`, every failure is recorded instead of
/// stopping at the first.
fn conditions_pass(
    matches: &Conditions,
    excludes: &Conditions,
    input: &DecisionInput<'_, '_>,
    reasons: Option<&mut Vec<String>>,
) -> bool {
    let (visitor, params) = (input.visitor, input.params);
    match reasons {
        None => matches.matches_all(visitor, params) && !excludes.matches_any(visitor, params),
        Some(reasons) => {
            let before = reasons.len();
            reasons.extend(matches.failures(visitor, params));
            reasons.extend(excludes.hits(visitor, params));
            reasons.len() == before
        }
    }
}

/// The offer itself can take this visitor: not paused, not capped, its own targeting passes.
fn offer_available(
    offer: &Offer,
    input: &DecisionInput<'_, '_>,
    reasons: Option<&mut Vec<String>>,
) -> bool {
    match reasons {
        None => {
            !offer.paused
                && conditions_pass(&offer.matches, &offer.excludes, input, None)
                && !input.availability.is_capped(offer)
        }
        Some(reasons) => {
            let before = reasons.len();
            if offer.paused {
                reasons.push(format!("offer {} paused", offer.id));
            }
            if input.availability.is_capped(offer) {
                reasons.push(format!("offer {} reached its daily cap", offer.id));
            }
            let mut own = Vec::new();
            conditions_pass(&offer.matches, &offer.excludes, input, Some(&mut own));
            reasons.extend(
                own.into_iter()
                    .map(|reason| format!("offer {}: {reason}", offer.id)),
            );
            reasons.len() == before
        }
    }
}

/// `explain` output (SPEC §3), also served by `GET /api/explain`.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub visitor: Visitor,
    pub primary: Vec<PrimaryVerdict>,
    pub fallback: Vec<FallbackVerdict>,
    pub decision: ExplainedDecision,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrimaryVerdict {
    pub offer: String,
    pub matched: bool,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FallbackVerdict {
    pub offer: String,
    pub eligible: bool,
    pub reasons: Vec<String>,
    /// Current allocation probability for this visitor's segment; 0 when not eligible.
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExplainedDecision {
    pub route: Route,
    pub offer: Option<String>,
    pub url: String,
}

/// Runs every check with its reasons. The decision shown is deterministic: the first eligible
/// primary, else the fallback with the largest share, else the backlink (bots: the bot URL).
/// `render` expands the chosen target for the `url` field.
pub fn explain(
    input: &DecisionInput<'_, '_>,
    render: impl Fn(&UrlTemplate, Option<&Offer>) -> String,
) -> Explanation {
    let campaign = input.campaign;
    let mut chosen: Option<Decision<'_>> = input.visitor.bot.then(|| bot_decision(campaign));
    let mut routes = Routes::of(input);

    let mut primary = Vec::with_capacity(campaign.primary.len());
    for (index, rule) in campaign.primary.iter().enumerate() {
        let mut reasons = Vec::new();
        if input.visitor.bot {
            reasons.push("visitor is a bot".to_string());
        }
        let offer = routes.primary(index);
        conditions_pass(&rule.matches, &rule.excludes, input, Some(&mut reasons));
        if let Some(offer) = offer {
            offer_available(offer, input, Some(&mut reasons));
        }
        let matched = reasons.is_empty();
        if matched && chosen.is_none() {
            chosen = offer.map(|offer| Decision {
                route: Route::Primary,
                offer: Some(offer),
                target: &offer.url,
            });
        }
        primary.push(PrimaryVerdict {
            offer: rule.offer.clone(),
            matched,
            reasons,
        });
    }

    let eligible = eligible_in(input, &mut routes);
    let shares = if eligible.is_empty() {
        Vec::new()
    } else {
        input.policy.shares(campaign, input.visitor, &eligible)
    };
    let mut fallback = Vec::with_capacity(campaign.fallback.len());
    for (index, rule) in campaign.fallback.iter().enumerate() {
        let mut reasons = Vec::new();
        conditions_pass(&rule.matches, &rule.excludes, input, Some(&mut reasons));
        if let Some(offer) = routes.fallback(index) {
            offer_available(offer, input, Some(&mut reasons));
        }
        let position = eligible.iter().position(|&i| i == index);
        fallback.push(FallbackVerdict {
            offer: rule.offer.clone(),
            eligible: position.is_some(),
            reasons,
            share: position.map_or(0.0, |p| shares[p]),
        });
    }
    if chosen.is_none() && !eligible.is_empty() {
        let best = (0..eligible.len())
            .max_by(|&a, &b| shares[a].total_cmp(&shares[b]).then(b.cmp(&a)))
            .expect("eligible is not empty");
        chosen = Some(fallback_decision(input, &routes, eligible[best]));
    }
    let chosen = chosen.unwrap_or_else(|| backlink_decision(campaign));
    let offer = chosen.offer.map(|offer| offer.as_ref());
    Explanation {
        visitor: input.visitor.clone(),
        primary,
        fallback,
        decision: ExplainedDecision {
            route: chosen.route,
            offer: offer.map(|o| o.id.clone()),
            url: render(chosen.target, offer),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rand::SeedableRng;

    use super::*;
    use crate::bandit::WeightedRandom;
    use crate::visitor::{Connection, Device, Os};

    const OFFERS: &str = r#"
[[offer]]
id = "sweeps-us"
url = "https://network.example/click?sub1={clickid}"
payout = 2.5
[offer.match]
country = ["US"]

[[offer]]
id = "dating"
url = "https://dating.example/?c={clickid}"
payout = 1.2

[[offer]]
id = "vpn"
url = "https://vpn.example/?c={clickid}"
payout = 0.8

[[offer]]
id = "paused"
url = "https://paused.example/"
payout = 9
paused = true

[[offer]]
id = "capped"
url = "https://capped.example/"
payout = 9
daily_cap = 1
"#;

    const SOURCES: &str = r#"
[[source]]
id = "src"
"#;

    const CAMPAIGN: &str = r#"
id = "camp"
source = "src"
backlink = "https://back.example/?s={clickid}"
bot_url = "https://bots.example/"

[[primary]]
offer = "paused"

[[primary]]
offer = "capped"
[primary.match]
country = ["FR"]

[[primary]]
offer = "sweeps-us"
[primary.match]
os = ["Android"]
carrier = ["T-Mobile"]
[primary.exclude]
connection = ["broadband"]

[[fallback]]
offer = "dating"
weight = 3
[fallback.exclude]
device = ["desktop"]

[[fallback]]
offer = "vpn"
weight = 1
[fallback.match]
device = ["desktop", "phone"]
"#;

    fn rules() -> RuleSet {
        crate::rules::load_from_sources(&[
            (PathBuf::from("rules/offers.toml"), OFFERS.to_string()),
            (PathBuf::from("rules/sources.toml"), SOURCES.to_string()),
            (
                PathBuf::from("rules/campaigns/camp.toml"),
                CAMPAIGN.to_string(),
            ),
        ])
        .expect("test rules are valid")
    }

    struct CappedOffers(&'static [&'static str]);

    impl OfferAvailability for CappedOffers {
        fn is_capped(&self, offer: &Offer) -> bool {
            self.0.contains(&offer.id.as_str())
        }
    }

    fn visitor(
        country: &str,
        os: Os,
        device: Device,
        carrier: Option<&str>,
        connection: Connection,
    ) -> Visitor {
        Visitor {
            country: Some(country.to_string()),
            os,
            device,
            carrier: carrier.map(str::to_string),
            connection,
            ..Visitor::unknown("192.0.2.1".parse().unwrap())
        }
    }

    fn decide_for(
        rules: &RuleSet,
        visitor: &Visitor,
        capped: &'static [&'static str],
    ) -> (Route, Option<String>) {
        let campaign = rules.campaign("camp").unwrap();
        let params = QueryParams::default();
        let availability = CappedOffers(capped);
        let decision = decide(
            &DecisionInput {
                rules,
                campaign,
                visitor,
                params: &params,
                availability: &availability,
                policy: &WeightedRandom,
            },
            &mut rand::rngs::StdRng::seed_from_u64(1),
        );
        (decision.route, decision.offer.map(|o| o.id.clone()))
    }

    #[test]
    fn the_decision_order_is_bot_then_primary_then_fallback_then_backlink() {
        use Connection::*;
        use Device::*;
        let rules = rules();
        let mut bot = visitor("US", Os::Android, Phone, Some("T-Mobile"), Cellular);
        bot.bot = true;
        type Case = (
            &'static str,
            Visitor,
            &'static [&'static str],
            Route,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            ("bot", bot, &[], Route::Bot, None),
            (
                "US T-Mobile Android on cellular",
                visitor("US", Os::Android, Phone, Some("T-Mobile"), Cellular),
                &[],
                Route::Primary,
                Some("sweeps-us"),
            ),
            (
                "the primary's offer has its own country match",
                visitor("DE", Os::Android, Tv, Some("T-Mobile"), Cellular),
                &[],
                Route::Fallback,
                Some("dating"),
            ),
            (
                "excluded broadband",
                visitor("US", Os::Android, Tablet, Some("T-Mobile"), Broadband),
                &[],
                Route::Fallback,
                Some("dating"),
            ),
            (
                "FR matches the capped primary's targeting but it is capped",
                visitor("FR", Os::Ios, Tv, None, Broadband),
                &["capped"],
                Route::Fallback,
                Some("dating"),
            ),
            (
                "FR goes to the capped primary while it is not capped",
                visitor("FR", Os::Ios, Tv, None, Broadband),
                &[],
                Route::Primary,
                Some("capped"),
            ),
            (
                "desktop: dating excludes it, vpn takes it",
                visitor("DE", Os::Windows, Desktop, None, Broadband),
                &[],
                Route::Fallback,
                Some("vpn"),
            ),
            (
                "a TV fits no fallback once dating is capped",
                visitor("DE", Os::Tizen, Tv, None, Broadband),
                &["dating"],
                Route::Backlink,
                None,
            ),
        ];
        for (name, visitor, capped, route, offer) in cases {
            let got = decide_for(&rules, &visitor, capped);
            assert_eq!(got, (route, offer.map(str::to_string)), "{name}");
        }
    }

    #[test]
    fn a_campaign_the_rule_set_does_not_hold_finds_its_offers_by_id() {
        use Connection::*;
        use Device::*;
        // The same files loaded twice: equal campaigns, but not the same objects.
        let (rules, other) = (rules(), rules());
        let own = rules.campaign("camp").unwrap();
        let foreign = other.campaign("camp").unwrap();
        assert!(rules.resolved(own).is_some());
        assert!(rules.resolved(foreign).is_none());
        let visitors = [
            visitor("US", Os::Android, Phone, Some("T-Mobile"), Cellular),
            visitor("FR", Os::Ios, Tv, None, Broadband),
            visitor("DE", Os::Windows, Desktop, None, Broadband),
            visitor("DE", Os::Tizen, Tv, None, Broadband),
        ];
        for capped in [&[][..], &["capped", "dating"][..]] {
            for visitor in &visitors {
                let decide_with = |campaign: &Campaign| {
                    let decision = decide(
                        &DecisionInput {
                            rules: &rules,
                            campaign,
                            visitor,
                            params: &QueryParams::default(),
                            availability: &CappedOffers(capped),
                            policy: &WeightedRandom,
                        },
                        &mut rand::rngs::StdRng::seed_from_u64(1),
                    );
                    // The offer always comes from `rules`, whichever campaign object asked.
                    let offer = decision.offer.map(|o| {
                        assert!(Arc::ptr_eq(o, rules.offer(&o.id).unwrap()));
                        o.id.clone()
                    });
                    (decision.route, offer, decision.target.as_str().to_string())
                };
                assert_eq!(decide_with(own), decide_with(foreign), "{visitor:?}");
            }
        }
    }

    #[test]
    fn explain_names_each_failed_dimension_and_the_current_shares() {
        let rules = rules();
        let campaign = rules.campaign("camp").unwrap();
        let visitor = visitor("DE", Os::Ios, Device::Phone, None, Connection::Broadband);
        let explanation = explain(
            &DecisionInput {
                rules: &rules,
                campaign,
                visitor: &visitor,
                params: &QueryParams::default(),
                availability: &NoCaps,
                policy: &WeightedRandom,
            },
            |target, _| target.as_str().to_string(),
        );
        assert_eq!(explanation.primary[0].reasons, vec!["offer paused paused"]);
        assert_eq!(
            explanation.primary[1].reasons,
            vec!["country DE not in [FR]"]
        );
        let sweeps = &explanation.primary[2].reasons;
        assert!(
            sweeps.contains(&"os iOS not in [Android]".to_string()),
            "{sweeps:?}"
        );
        assert!(
            sweeps
                .iter()
                .any(|r| r.starts_with("offer sweeps-us: country DE")),
            "{sweeps:?}"
        );
        assert!(explanation.primary.iter().all(|p| !p.matched));
        assert_eq!(explanation.fallback[0].share, 0.75);
        assert_eq!(explanation.fallback[1].share, 0.25);
        assert_eq!(explanation.decision.route, Route::Fallback);
        assert_eq!(explanation.decision.offer.as_deref(), Some("dating"));
        assert_eq!(
            explanation.decision.url,
            "https://dating.example/?c={clickid}"
        );
    }
}
