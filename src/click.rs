//! What a click carries besides the visitor: its query parameters (minus unreplaced tokens), the
//! source's external id and cost, and the macro values an offer URL is expanded with. Pure.

use std::borrow::Cow;

use crate::bandit::FallbackPolicy;
use crate::decide::{explain, DecisionInput, Explanation, OfferAvailability};
use crate::money::Money;
use crate::rules::{Campaign, CostModel, RuleSet, Source};
use crate::template::MacroValues;
use crate::tokens::is_unreplaced;
use crate::visitor::{QueryParams, Visitor};

/// Parameters kept per click; the rest are ignored (a click is never refused for them).
pub const MAX_PARAMS: usize = 64;
/// Longest parameter name or value kept; longer ones are dropped, not truncated, so no stored
/// value is ever a silently altered one.
pub const MAX_PARAM_LEN: usize = 1024;

/// Decodes a query string leniently (bad percent-escapes and invalid UTF-8 are kept as
/// replacement characters) and drops unreplaced source tokens, empty names and oversized pairs.
pub fn parse_params(query: &str) -> QueryParams {
    let mut params = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if params.len() == MAX_PARAMS {
            break;
        }
        if name.is_empty()
            || name.len() > MAX_PARAM_LEN
            || value.len() > MAX_PARAM_LEN
            || is_unreplaced(&value)
        {
            continue;
        }
        params.push((name.into_owned(), value.into_owned()));
    }
    QueryParams(params)
}

/// The source's own click id, when it sent a real one.
pub fn external_id(source: &Source, params: &QueryParams) -> Option<String> {
    params
        .get(&source.click_id_param)
        .filter(|v| !v.trim().is_empty())
        .map(str::to_string)
}

/// What this one click cost, from the source's cost parameter (`cpm`: a thousandth of it).
/// A missing, unparsable or negative cost is unknown, not zero.
pub fn click_cost(source: &Source, params: &QueryParams) -> Option<Money> {
    let name = source.cost_param.as_deref()?;
    let value = Money::parse(params.get(name)?).ok()?;
    if value < Money::ZERO {
        return None;
    }
    Some(match source.cost_model {
        CostModel::Cpc => value,
        CostModel::Cpm => value.div_round(1000),
    })
}

/// Macro values of one click (SPEC §7).
pub struct ClickMacros<'a> {
    pub click_id: &'a str,
    pub campaign: &'a str,
    pub offer: Option<&'a str>,
    pub source: &'a str,
    pub external_id: Option<&'a str>,
    pub cost: Option<Money>,
    pub visitor: &'a Visitor,
    pub params: &'a QueryParams,
}

impl MacroValues for ClickMacros<'_> {
    fn value(&self, name: &str) -> Option<Cow<'_, str>> {
        let v = self.visitor;
        fn text(s: &Option<String>) -> Option<Cow<'_, str>> {
            s.as_deref().map(Cow::Borrowed)
        }
        match name {
            "clickid" => Some(Cow::Borrowed(self.click_id)),
            "campaign" => Some(Cow::Borrowed(self.campaign)),
            "offer" => self.offer.map(Cow::Borrowed),
            "source" => Some(Cow::Borrowed(self.source)),
            "external_id" => self.external_id.map(Cow::Borrowed),
            "cost" => self.cost.map(|c| Cow::Owned(c.to_string())),
            "country" => text(&v.country),
            "region" => text(&v.region),
            "city" => text(&v.city),
            "asn" => v.asn.map(|a| Cow::Owned(a.to_string())),
            "isp" => text(&v.isp),
            "carrier" => text(&v.carrier),
            "connection" => Some(Cow::Borrowed(v.connection.as_str())),
            "os" => Some(Cow::Borrowed(v.os.as_str())),
            "os_version" => text(&v.os_version),
            "browser" => text(&v.browser),
            "browser_version" => text(&v.browser_version),
            "device" => Some(Cow::Borrowed(v.device.as_str())),
            "language" => text(&v.language),
            "ip" => Some(Cow::Owned(v.ip.to_string())),
            _ => name
                .strip_prefix("param.")
                .and_then(|param| self.params.get(param))
                .map(Cow::Borrowed),
        }
    }
}

/// What `explain` shows (SPEC §3, `GET /api/explain`) for a visitor of `campaign` arriving with no
/// query parameters: the command and the API render offer URLs the same way, with an empty click
/// id.
pub fn explain_visit(
    rules: &RuleSet,
    campaign: &Campaign,
    visitor: &Visitor,
    availability: &dyn OfferAvailability,
    policy: &dyn FallbackPolicy,
) -> Explanation {
    let params = QueryParams::default();
    explain(
        &DecisionInput {
            rules,
            campaign,
            visitor,
            params: &params,
            availability,
            policy,
        },
        |target, offer| {
            target.render(&ClickMacros {
                click_id: "",
                campaign: &campaign.id,
                offer: offer.map(|o| o.id.as_str()),
                source: &campaign.source,
                external_id: None,
                cost: None,
                visitor,
                params: &params,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(cost_model: CostModel) -> Source {
        Source {
            id: "adsterra".into(),
            click_id_param: "clickid".into(),
            cost_param: Some("cost".into()),
            cost_model,
            postback_url: None,
            postback_events: vec![],
            postback_statuses: vec![],
            postback_ips: vec![],
        }
    }

    #[test]
    fn unreplaced_tokens_are_not_kept_as_values() {
        let params = parse_params(
            "clickid=%23%23SUB_ID_SHORT(action)%23%23&zone=1234&s2=%23s2%23&x=REPLACE",
        );
        assert_eq!(params.0, vec![("zone".to_string(), "1234".to_string())]);
        assert_eq!(external_id(&source(CostModel::Cpc), &params), None);
    }

    #[test]
    fn bad_percent_encoding_is_decoded_leniently() {
        let params = parse_params("a=%ZZ&b=%FF%FE&c=ok");
        assert_eq!(params.get("a"), Some("%ZZ"));
        assert_eq!(params.get("b"), Some("\u{FFFD}\u{FFFD}"));
        assert_eq!(params.get("c"), Some("ok"));
    }

    #[test]
    fn oversized_and_excess_parameters_are_dropped() {
        let long = "v".repeat(MAX_PARAM_LEN + 1);
        let many: Vec<String> = (0..200).map(|i| format!("p{i}=1")).collect();
        let params = parse_params(&format!("big={long}&{}", many.join("&")));
        assert_eq!(params.get("big"), None);
        assert_eq!(params.0.len(), MAX_PARAMS);
    }

    #[test]
    fn cpm_cost_is_a_thousandth_per_click_and_cpc_is_as_given() {
        let params = parse_params("cost=3.6");
        assert_eq!(
            click_cost(&source(CostModel::Cpm), &params),
            Some(Money(3_600))
        );
        assert_eq!(
            click_cost(&source(CostModel::Cpc), &params),
            Some(Money(3_600_000))
        );
        assert_eq!(
            click_cost(&source(CostModel::Cpc), &parse_params("cost=abc")),
            None
        );
        assert_eq!(
            click_cost(&source(CostModel::Cpc), &parse_params("cost=-1")),
            None
        );
    }

    #[test]
    fn the_source_click_id_becomes_the_external_id() {
        let params = parse_params("clickid=abc-123&zone=9");
        assert_eq!(
            external_id(&source(CostModel::Cpc), &params).as_deref(),
            Some("abc-123")
        );
    }
}
