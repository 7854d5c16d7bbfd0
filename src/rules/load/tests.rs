//! Loader tests: the demo set, defaults, and one test per refusal with its file, line and reason.

use std::path::Path;

use super::*;
use crate::visitor::{QueryParams, Visitor};

const SOURCES: &str = r#"[[source]]
id = "src"
"#;

const OFFERS: &str = r#"[[offer]]
id = "o1"
url = "https://o.example/?c={clickid}"
payout = 1.5
"#;

const CAMPAIGN: &str = r#"id = "c"
source = "src"
backlink = "https://b.example/?c={clickid}"
"#;

/// Writes the files under `<tmp>/rules` and loads them from disk as `smartlink check` would.
fn load_files(files: &[(&str, &str)]) -> Result<RuleSet, Vec<String>> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rules");
    std::fs::create_dir_all(dir.join("campaigns")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    load(&dir).map_err(|errors| {
        let prefix = format!("{}/", tmp.path().display());
        errors
            .iter()
            .map(|e| e.to_string().replace(&prefix, ""))
            .collect()
    })
}

/// The base set with some files replaced or added.
fn with(changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = [
        ("sources.toml", SOURCES),
        ("offers.toml", OFFERS),
        ("campaigns/c.toml", CAMPAIGN),
    ]
    .iter()
    .map(|(n, t)| (n.to_string(), t.to_string()))
    .collect();
    for (name, text) in changes {
        files.retain(|(n, _)| n != name);
        files.push((name.to_string(), text.to_string()));
    }
    files
}

fn errors(changes: &[(&str, &str)]) -> Vec<String> {
    let files = with(changes);
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    match load_files(&refs) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    }
}

fn assert_errors(changes: &[(&str, &str)], expected: &[&str]) {
    assert_eq!(errors(changes), expected);
}

fn loaded(changes: &[(&str, &str)]) -> RuleSet {
    let files = with(changes);
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    load_files(&refs).unwrap_or_else(|e| panic!("{e:#?}"))
}

fn visitor() -> Visitor {
    let mut v = Visitor::unknown("198.51.100.20".parse().unwrap());
    v.country = Some("US".into());
    v.carrier = Some("T-Mobile".into());
    v.connection = crate::visitor::Connection::Cellular;
    v.os = crate::visitor::Os::Android;
    v.os_version = Some("13".into());
    v.device = crate::visitor::Device::Phone;
    v.language = Some("en".into());
    v
}

#[test]
fn the_demo_rule_set_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let set = load(&dir).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let mut offers: Vec<&str> = set.offers.keys().map(String::as_str).collect();
    offers.sort();
    assert_eq!(
        offers,
        [
            "carrier-tmobile-us",
            "dating-global",
            "sweeps-us",
            "vpn-any"
        ]
    );
    let mut campaigns: Vec<&str> = set.campaigns.keys().map(String::as_str).collect();
    campaigns.sort();
    assert_eq!(campaigns, ["global-smartlink", "us-android"]);
    assert_eq!(set.source("adsterra").unwrap().cost_model, CostModel::Cpm);
    assert_eq!(
        set.source("propellerads").unwrap().cost_model,
        CostModel::Cpc
    );
    assert_eq!(set.version.len(), 16);

    let us = set.campaign("us-android").unwrap();
    assert_eq!(us.source, "adsterra");
    assert_eq!(us.primary.len(), 1);
    let primary = &us.primary[0];
    assert_eq!(primary.offer, "sweeps-us");
    let v = visitor();
    let p = QueryParams::default();
    assert!(primary.matches.matches_all(&v, &p));
    assert!(!primary.excludes.matches_any(&v, &p));
    let mut wifi = v.clone();
    wifi.connection = crate::visitor::Connection::Broadband;
    assert_eq!(
        primary.excludes.hits(&wifi, &p),
        ["connection broadband excluded"]
    );
    let global = set.campaign("global-smartlink").unwrap();
    assert!(global.primary.is_empty());
    assert_eq!(global.redirect, RedirectKind::Meta);
    assert!(global.bot_url.is_some());
    let sweeps = set.offer("sweeps-us").unwrap();
    assert_eq!(sweeps.payout, Money::from_micros(2_500_000));
    assert_eq!(sweeps.cap_timezone, "America/New_York");
    assert_eq!(sweeps.daily_cap, Some(100));
}

#[test]
fn a_minimal_set_gets_the_documented_defaults() {
    let set = loaded(&[(
        "campaigns/c.toml",
        r#"id = "c"
source = "src"
backlink = "https://b.example/?c={clickid}"
[[fallback]]
offer = "o1"
"#,
    )]);
    let offer = set.offer("o1").unwrap();
    assert_eq!(offer.currency, "USD");
    assert_eq!(offer.cap_timezone, "UTC");
    assert_eq!(offer.cap_tz, chrono_tz::Tz::UTC);
    assert_eq!(offer.daily_cap, None);
    assert!(!offer.paused);
    assert!(offer.matches.is_empty() && offer.excludes.is_empty());
    let source = set.source("src").unwrap();
    assert_eq!(source.click_id_param, "clickid");
    assert_eq!(source.cost_param, None);
    assert_eq!(source.cost_model, CostModel::Cpc);
    assert!(source.postback_url.is_none());
    assert!(source.postback_events.is_empty());
    assert_eq!(source.postback_statuses, ["approved"]);
    let campaign = set.campaign("c").unwrap();
    assert_eq!(campaign.redirect, RedirectKind::Found);
    assert!(campaign.bot_url.is_none());
    assert!(campaign.primary.is_empty());
    assert_eq!(campaign.fallback[0].weight, 1.0);
}

#[test]
fn empty_optional_strings_mean_none_and_an_empty_status_list_means_all() {
    let set = loaded(&[
        (
            "sources.toml",
            r#"[[source]]
id = "src"
cost_param = ""
postback_url = ""
postback_statuses = []
postback_events = ["Sale", "lead"]
"#,
        ),
        (
            "campaigns/c.toml",
            r#"id = "c"
source = "src"
backlink = "https://b.example/"
bot_url = ""
redirect = 302
"#,
        ),
    ]);
    let source = set.source("src").unwrap();
    assert_eq!(source.cost_param, None);
    assert!(source.postback_url.is_none());
    assert_eq!(
        source.postback_statuses,
        ["approved", "pending", "rejected", "chargeback"]
    );
    assert_eq!(source.postback_events, ["sale", "lead"]);
    assert!(set.campaign("c").unwrap().bot_url.is_none());
}

#[test]
fn toml_syntax_errors_name_the_file_and_line() {
    assert_errors(
        &[(
            "offers.toml",
            r#"[[offer]]
id = "o1"
url = "https://o.example/
payout = 1.5
"#,
        )],
        &["rules/offers.toml:3: TOML syntax: invalid basic string, expected `\"`"],
    );
}

#[test]
fn a_syntax_error_in_offers_does_not_also_report_every_reference_to_them() {
    let errors = errors(&[
        ("offers.toml", "[[offer]\nid = \"o1\"\n"),
        (
            "campaigns/c.toml",
            "id = \"c\"\nsource = \"src\"\nbacklink = \"https://b.example/\"\n[[fallback]]\noffer = \"o1\"\n",
        ),
    ]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("rules/offers.toml:1: TOML syntax:"),
        "{errors:#?}"
    );
}

#[test]
fn unknown_keys_are_refused_at_every_level() {
    assert_errors(
        &[
            ("sources.toml", "[[source]]\nid = \"src\"\ncostmodel = \"cpm\"\n"),
            (
                "offers.toml",
                r#"offers = 1
[[offer]]
id = "o1"
url = "https://o.example/"
payout = 1
payot = 2
[offer.match]
countries = ["US"]
[offer.exclude]
Country = ["US"]
"#,
            ),
            (
                "campaigns/c.toml",
                r#"id = "c"
source = "src"
backlink = "https://b.example/"
backlinks = "x"
[[primary]]
offer = "o1"
weight = 2
[[fallback]]
offer = "o1"
match = { os = ["Android"], param = { zone = ["1"] }, ipp = ["1.2.3.4"] }
"#,
            ),
        ],
        &[
            "rules/campaigns/c.toml:4: campaign \"c\": backlinks: unknown key; expected one of id, source, redirect, backlink, bot_url, primary, fallback",
            "rules/campaigns/c.toml:7: campaign \"c\", primary #1: weight: unknown key; expected one of offer, match, exclude",
            "rules/campaigns/c.toml:10: campaign \"c\", fallback #1: match.ipp: unknown dimension; expected one of country, region, city, asn, isp, carrier, connection, os, os_version_min, os_version_max, browser, device, language, ip, param.NAME",
            "rules/offers.toml:1: offers: unknown key; expected one of offer",
            "rules/offers.toml:6: offer \"o1\": payot: unknown key; expected one of id, url, payout, currency, daily_cap, cap_timezone, paused, match, exclude",
            "rules/offers.toml:8: offer \"o1\": match.countries: unknown dimension; expected one of country, region, city, asn, isp, carrier, connection, os, os_version_min, os_version_max, browser, device, language, ip, param.NAME",
            "rules/offers.toml:10: offer \"o1\": exclude.Country: unknown dimension; expected one of country, region, city, asn, isp, carrier, connection, os, os_version_min, os_version_max, browser, device, language, ip, param.NAME",
            "rules/sources.toml:3: source \"src\": costmodel: unknown key; expected one of id, click_id_param, cost_param, cost_model, postback_url, postback_events, postback_statuses, postback_ips",
        ],
    );
}

#[test]
fn unknown_offer_and_source_references_are_refused() {
    assert_errors(
        &[(
            "campaigns/c.toml",
            r#"id = "c"
source = "nosuch"
backlink = "https://b.example/"
[[primary]]
offer = "o2"
[[fallback]]
offer = "o1"
[[fallback]]
offer = "o3"
"#,
        )],
        &[
            "rules/campaigns/c.toml:2: campaign \"c\": source: unknown source \"nosuch\" (known: src)",
            "rules/campaigns/c.toml:5: campaign \"c\", primary #1: offer: unknown offer \"o2\" (known: o1)",
            "rules/campaigns/c.toml:9: campaign \"c\", fallback #2: offer: unknown offer \"o3\" (known: o1)",
        ],
    );
}

#[test]
fn unknown_macros_and_non_http_urls_are_refused() {
    assert_errors(
        &[
            (
                "offers.toml",
                r#"[[offer]]
id = "o1"
url = "https://o.example/?p={payout}"
payout = 1
[[offer]]
id = "o2"
url = "ftp://o.example/"
payout = 1
[[offer]]
id = "o3"
url = "https://{country}.example/"
payout = 1
"#,
            ),
            (
                "sources.toml",
                "[[source]]\nid = \"src\"\npostback_url = \"https://pb.example/?o={os}\"\n",
            ),
        ],
        &[
            "rules/offers.toml:3: offer \"o1\": url: unknown macro {payout}",
            "rules/offers.toml:7: offer \"o2\": url: not an http(s) URL: ftp://o.example/",
            "rules/offers.toml:11: offer \"o3\": url: macros are not allowed in the host, port or user part",
            "rules/sources.toml:3: source \"src\": postback_url: unknown macro {os}",
        ],
    );
}

#[test]
fn duplicate_ids_are_refused_within_a_file_and_across_campaign_files() {
    assert_errors(
        &[
            ("offers.toml", &format!("{OFFERS}{OFFERS}")),
            ("campaigns/d.toml", CAMPAIGN),
        ],
        &[
            "rules/campaigns/d.toml:1: campaign \"c\": id: duplicate campaign id \"c\"; first defined at rules/campaigns/c.toml:1",
            "rules/offers.toml:6: offer \"o1\": id: duplicate offer id \"o1\"; first defined at rules/offers.toml:2",
        ],
    );
}

#[test]
fn ids_outside_the_allowed_alphabet_are_refused() {
    let long = "x".repeat(65);
    let offers = format!(
        "[[offer]]\nid = \"Sweeps US\"\nurl = \"https://o.example/\"\npayout = 1\n[[offer]]\nid = \"{long}\"\nurl = \"https://o.example/\"\npayout = 1\n[[offer]]\nid = \"\"\nurl = \"https://o.example/\"\npayout = 1\n[[offer]]\nid = 7\nurl = \"https://o.example/\"\npayout = 1\n"
    );
    assert_errors(
        &[("offers.toml", &offers)],
        &[
            "rules/offers.toml:2: offer \"Sweeps US\": id: not a valid id: use 1 to 64 of a-z, 0-9, _ and -",
            &format!("rules/offers.toml:6: offer \"{long}\": id: not a valid id: use 1 to 64 of a-z, 0-9, _ and -"),
            "rules/offers.toml:10: offer \"\": id: not a valid id: use 1 to 64 of a-z, 0-9, _ and -",
            "rules/offers.toml:14: offer #4: id: expected a string, found integer",
        ],
    );
}

#[test]
fn weights_must_be_finite_and_above_zero() {
    let campaign = r#"id = "c"
source = "src"
backlink = "https://b.example/"
[[fallback]]
offer = "o1"
weight = 0
[[fallback]]
offer = "o2"
weight = -1.5
[[fallback]]
offer = "o3"
weight = nan
[[fallback]]
offer = "o4"
weight = inf
[[fallback]]
offer = "o5"
weight = "2"
"#;
    let offers: String = (1..=5)
        .map(|i| format!("[[offer]]\nid = \"o{i}\"\nurl = \"https://o.example/\"\npayout = 1\n"))
        .collect();
    assert_errors(
        &[("campaigns/c.toml", campaign), ("offers.toml", &offers)],
        &[
            "rules/campaigns/c.toml:6: campaign \"c\", fallback #1: weight: must be greater than 0",
            "rules/campaigns/c.toml:9: campaign \"c\", fallback #2: weight: must be greater than 0",
            "rules/campaigns/c.toml:12: campaign \"c\", fallback #3: weight: not a finite number",
            "rules/campaigns/c.toml:15: campaign \"c\", fallback #4: weight: not a finite number",
            "rules/campaigns/c.toml:18: campaign \"c\", fallback #5: weight: expected a number, found string",
        ],
    );
}

#[test]
fn the_same_offer_twice_in_the_fallback_pool_is_refused() {
    assert_errors(
        &[(
            "campaigns/c.toml",
            "id = \"c\"\nsource = \"src\"\nbacklink = \"https://b.example/\"\n[[fallback]]\noffer = \"o1\"\n[[fallback]]\noffer = \"o1\"\n",
        )],
        &["rules/campaigns/c.toml:7: campaign \"c\", fallback #2: offer: offer \"o1\" is already fallback #1; list each offer once"],
    );
}

#[test]
fn malformed_cidrs_and_country_codes_are_refused() {
    assert_errors(
        &[(
            "offers.toml",
            r#"[[offer]]
id = "o1"
url = "https://o.example/"
payout = 1
[offer.match]
country = ["US", "XX",
  "UK"]
ip = ["10.0.0.0/8", "10.0.0.0/33", "1.2.3", "2001:db8::1"]
"#,
        )],
        &[
            "rules/offers.toml:6: offer \"o1\": match.country: \"XX\" is not an ISO 3166-1 alpha-2 country code",
            "rules/offers.toml:7: offer \"o1\": match.country: \"UK\" is not an ISO 3166-1 alpha-2 code; the United Kingdom is \"GB\"",
            "rules/offers.toml:8: offer \"o1\": match.ip: \"10.0.0.0/33\" is not a CIDR (such as \"203.0.113.0/24\") or an IP address",
            "rules/offers.toml:8: offer \"o1\": match.ip: \"1.2.3\" is not a CIDR (such as \"203.0.113.0/24\") or an IP address",
        ],
    );
}

#[test]
fn unknown_vocabulary_values_are_refused() {
    assert_errors(
        &[
            (
                "offers.toml",
                r#"[[offer]]
id = "o1"
url = "https://o.example/"
payout = 1
[offer.match]
os = ["android", "Symbian"]
device = ["mobile"]
connection = ["wifi"]
language = ["en-US"]
"#,
            ),
            (
                "sources.toml",
                "[[source]]\nid = \"src\"\ncost_model = \"cpa\"\npostback_statuses = [\"approved\", \"paid\"]\npostback_events = [\"big sale\"]\n",
            ),
            (
                "campaigns/c.toml",
                "id = \"c\"\nsource = \"src\"\nbacklink = \"https://b.example/\"\nredirect = \"301\"\n",
            ),
        ],
        &[
            "rules/campaigns/c.toml:4: campaign \"c\": redirect: unknown redirect \"301\"; expected \"302\" or \"meta\"",
            "rules/offers.toml:6: offer \"o1\": match.os: unknown os \"Symbian\"; expected one of Android, iOS, Windows, macOS, Linux, ChromeOS, KaiOS, Tizen, webOS, PlayStation, Xbox, other",
            "rules/offers.toml:7: offer \"o1\": match.device: unknown device \"mobile\"; expected one of phone, tablet, desktop, tv, console, feature_phone, other",
            "rules/offers.toml:8: offer \"o1\": match.connection: unknown connection \"wifi\"; expected one of cellular, broadband, datacenter, unknown",
            "rules/offers.toml:9: offer \"o1\": match.language: \"en-US\" is not a primary language subtag; use e.g. \"en\" (the visitor's language has no region part)",
            "rules/sources.toml:3: source \"src\": cost_model: unknown cost model \"cpa\"; expected \"cpc\" or \"cpm\"",
            "rules/sources.toml:4: source \"src\": postback_statuses: unknown status \"paid\"; expected one of approved, pending, rejected, chargeback",
            "rules/sources.toml:5: source \"src\": postback_events: \"big sale\" is not an event name: use 1 to 32 of a-z, 0-9, _ and -",
        ],
    );
}

#[test]
fn a_campaign_needs_an_id_a_source_and_a_backlink() {
    assert_errors(
        &[("campaigns/c.toml", "# nothing but a comment\nredirect = \"meta\"\n")],
        &[
            "rules/campaigns/c.toml:1: campaign: id: missing; every campaign file needs id = \"...\"",
            "rules/campaigns/c.toml:1: campaign: source: missing",
            "rules/campaigns/c.toml:1: campaign: backlink: missing; every campaign needs a backlink, the last resort for visitors no offer fits",
        ],
    );
    assert_errors(
        &[(
            "campaigns/c.toml",
            "id = \"c\"\nsource = \"src\"\nbacklink = \"\"\n",
        )],
        &["rules/campaigns/c.toml:3: campaign \"c\": backlink: empty; every campaign needs a backlink, the last resort for visitors no offer fits"],
    );
}

#[test]
fn payouts_must_be_finite_non_negative_numbers() {
    let offers = r#"[[offer]]
id = "o1"
url = "https://o.example/"
payout = nan
[[offer]]
id = "o2"
url = "https://o.example/"
payout = -1
[[offer]]
id = "o3"
url = "https://o.example/"
payout = "2.5"
[[offer]]
id = "o4"
url = "https://o.example/"
"#;
    assert_errors(
        &[("offers.toml", offers)],
        &[
            "rules/offers.toml:4: offer \"o1\": payout: not a finite number",
            "rules/offers.toml:8: offer \"o2\": payout: must not be negative",
            "rules/offers.toml:12: offer \"o3\": payout: expected a number, found string",
            "rules/offers.toml:13: offer \"o4\": payout: missing; the expected payout per conversion is the bandit's starting point",
        ],
    );
}

#[test]
fn payouts_are_read_exactly_as_written() {
    let set = loaded(&[(
        "offers.toml",
        "[[offer]]\nid = \"o1\"\nurl = \"https://o.example/\"\npayout = 0.1\n[[offer]]\nid = \"o2\"\nurl = \"https://o.example/\"\npayout = 3\n",
    )]);
    assert_eq!(set.offer("o1").unwrap().payout, Money::from_micros(100_000));
    assert_eq!(
        set.offer("o2").unwrap().payout,
        Money::from_micros(3_000_000)
    );
}

#[test]
fn a_bad_cap_timezone_or_cap_is_refused() {
    assert_errors(
        &[(
            "offers.toml",
            "[[offer]]\nid = \"o1\"\nurl = \"https://o.example/\"\npayout = 1\ncap_timezone = \"America/Nowhere\"\ndaily_cap = 0\ncurrency = \"dollars\"\n",
        )],
        &[
            "rules/offers.toml:5: offer \"o1\": cap_timezone: unknown time zone \"America/Nowhere\"; use an IANA name such as \"America/New_York\" or \"UTC\"",
            "rules/offers.toml:6: offer \"o1\": daily_cap: must be at least 1 (to stop traffic, set paused = true)",
            "rules/offers.toml:7: offer \"o1\": currency: \"dollars\" is not an ISO 4217 code such as \"USD\"",
        ],
    );
}

#[test]
fn the_cap_day_follows_the_cap_timezone() {
    let set = loaded(&[(
        "offers.toml",
        "[[offer]]\nid = \"o1\"\nurl = \"https://o.example/\"\npayout = 1\ndaily_cap = 5\ncap_timezone = \"America/New_York\"\n",
    )]);
    let offer = set.offer("o1").unwrap();
    // 2026-01-02 03:00 UTC is still 2026-01-01 in New York.
    assert_eq!(offer.cap_day(1_767_322_800).to_string(), "2026-01-01");
    assert_eq!(
        offer.cap_day(1_767_322_800 + 6 * 3600).to_string(),
        "2026-01-02"
    );
}

#[test]
fn dimension_values_take_their_documented_forms() {
    let set = loaded(&[(
        "offers.toml",
        r#"[[offer]]
id = "o1"
url = "https://o.example/"
payout = 1
[offer.match]
country = "us"
asn = [21928, "AS7922", "as6167"]
os_version_min = 12
os_version_max = ["14.4"]
param.zone = ["1234", 55]
"param.sub" = ["a"]
ip = ["198.51.100.0/24", "2001:db8::1"]
"#,
    )]);
    let offer = set.offer("o1").unwrap();
    assert_eq!(
        serde_json::to_value(&offer.matches).unwrap(),
        serde_json::json!({
            "country": ["US"],
            "asn": [21928, 7922, 6167],
            "os_version_min": "12",
            "os_version_max": "14.4",
            "ip": ["198.51.100.0/24", "2001:db8::1"],
            "param.sub": ["a"],
            "param.zone": ["1234", "55"],
        })
    );
    let mut v = visitor();
    v.asn = Some(7922);
    let params = QueryParams(vec![
        ("zone".into(), "55".into()),
        ("sub".into(), "A".into()),
    ]);
    assert!(
        offer.matches.matches_all(&v, &params),
        "{:?}",
        offer.matches.failures(&v, &params)
    );
}

#[test]
fn malformed_dimension_values_are_refused() {
    assert_errors(
        &[(
            "offers.toml",
            r#"[[offer]]
id = "o1"
url = "https://o.example/"
payout = 1
[offer.match]
os_version_min = ["12", "13"]
os_version_max = "fourteen"
asn = ["ASX", -1]
city = []
region = [""]
param = ["zone"]
"param.zone" = ["1"]
[offer.exclude]
param.zone = ["1"]
"param.zone" = ["2"]
"#,
        )],
        &[
            "rules/offers.toml:6: offer \"o1\": match.os_version_min: expected one version, such as \"12\"",
            "rules/offers.toml:7: offer \"o1\": match.os_version_max: \"fourteen\" is not a dotted version such as \"12\" or \"14.4\"",
            "rules/offers.toml:8: offer \"o1\": match.asn: not an AS number such as 7922 or \"AS7922\"",
            "rules/offers.toml:8: offer \"o1\": match.asn: not an AS number such as 7922 or \"AS7922\"",
            "rules/offers.toml:9: offer \"o1\": match.city: empty list; it would match no one (remove the key to not filter on it)",
            "rules/offers.toml:10: offer \"o1\": match.region: empty value",
            "rules/offers.toml:11: offer \"o1\": match.param: expected param.NAME = [values], e.g. param.zone = [\"1234\"]",
            "rules/offers.toml:15: offer \"o1\": exclude.param.zone: given twice (as param.NAME and \"param.NAME\")",
        ],
    );
}

#[test]
fn every_error_in_the_set_is_reported_at_once() {
    let errors = errors(&[
        ("sources.toml", "[[source]]\nid = \"src\"\ncost_model = \"x\"\n"),
        (
            "offers.toml",
            "[[offer]]\nid = \"o1\"\nurl = \"nope\"\npayout = -1\n[offer.match]\ncountry = [\"ZZ\"]\n",
        ),
        ("campaigns/a.toml", "id = \"a\"\nsource = \"src\"\n"),
        ("campaigns/b.toml", "id = \"b\"\nsource = \"zzz\"\nbacklink = \"https://b.example/{nope}\"\n"),
    ]);
    assert_eq!(errors.len(), 7, "{errors:#?}");
}

#[test]
fn a_misnamed_rules_file_is_refused_and_editor_files_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rules");
    std::fs::create_dir_all(dir.join("campaigns")).unwrap();
    std::fs::write(dir.join("sources.toml"), SOURCES).unwrap();
    std::fs::write(dir.join("offers.toml"), OFFERS).unwrap();
    std::fs::write(dir.join("campaigns/c.toml"), CAMPAIGN).unwrap();
    std::fs::write(dir.join("README.md"), "notes").unwrap();
    std::fs::write(dir.join(".#offers.toml"), "junk").unwrap();
    std::fs::write(dir.join("campaigns/c.toml~"), "junk").unwrap();
    std::fs::write(dir.join("campaigns/.c.toml.swp"), "junk").unwrap();
    assert!(load(&dir).is_ok());
    std::fs::write(dir.join("offer.toml"), OFFERS).unwrap();
    let errors = load(&dir).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().ends_with(
        "rules/offer.toml: not a rules file: rules live in offers.toml, sources.toml and campaigns/*.toml"
    ));
}

#[test]
fn a_missing_rules_directory_is_one_error() {
    let tmp = tempfile::tempdir().unwrap();
    let errors = load(&tmp.path().join("nope")).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0]
        .to_string()
        .contains("nope: cannot read the rules directory"));
}

#[test]
fn a_proposed_change_is_validated_in_memory_against_the_whole_set() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rules");
    std::fs::create_dir_all(dir.join("campaigns")).unwrap();
    std::fs::write(dir.join("sources.toml"), SOURCES).unwrap();
    std::fs::write(dir.join("offers.toml"), OFFERS).unwrap();
    std::fs::write(dir.join("campaigns/c.toml"), CAMPAIGN).unwrap();
    let on_disk = read_files(&dir).unwrap();
    let before = load(&dir).unwrap();

    // A new campaign referring to an offer that does not exist is refused, and disk is untouched.
    let mut proposed = on_disk.clone();
    proposed.push((
        dir.join("campaigns/new.toml"),
        "id = \"new\"\nsource = \"src\"\nbacklink = \"https://b.example/\"\n[[primary]]\noffer = \"o9\"\n"
            .to_string(),
    ));
    let errors = load_from_sources(&proposed).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, Some(5));
    assert!(!dir.join("campaigns/new.toml").exists());

    // Deleting an offer that a campaign still uses is caught too.
    let mut proposed = on_disk.clone();
    for (path, text) in proposed.iter_mut() {
        if path.ends_with("campaigns/c.toml") {
            text.push_str("[[fallback]]\noffer = \"o1\"\n");
        }
    }
    assert!(load_from_sources(&proposed).is_ok());
    proposed.retain(|(p, _)| !p.ends_with("offers.toml"));
    let errors = load_from_sources(&proposed).unwrap_err();
    assert_eq!(
        errors[0].message,
        "unknown offer \"o1\" (offers.toml defines none)"
    );

    // The version depends on content only, not on how the directory was spelled.
    let relative: Vec<(PathBuf, String)> = on_disk
        .iter()
        .map(|(p, t)| {
            (
                PathBuf::from("elsewhere").join(p.strip_prefix(&dir).unwrap()),
                t.clone(),
            )
        })
        .collect();
    assert_eq!(
        load_from_sources(&relative).unwrap().version,
        before.version
    );
    let mut changed = on_disk.clone();
    changed[0].1.push_str("\n# a comment\n");
    assert_ne!(load_from_sources(&changed).unwrap().version, before.version);
}

#[test]
fn errors_serialize_with_file_line_item_field_and_message() {
    let error = RuleError {
        file: PathBuf::from("rules/offers.toml"),
        line: Some(12),
        item: Some("offer \"sweeps-us\"".into()),
        field: Some("url".into()),
        message: "not an http(s) URL: ftp://x".into(),
    };
    assert_eq!(
        error.to_string(),
        "rules/offers.toml:12: offer \"sweeps-us\": url: not an http(s) URL: ftp://x"
    );
    assert_eq!(
        serde_json::to_value(&error).unwrap(),
        serde_json::json!({"file": "rules/offers.toml", "line": 12, "item": "offer \"sweeps-us\"",
            "field": "url", "message": "not an http(s) URL: ftp://x"})
    );
}

#[test]
fn an_error_stays_on_one_line_whatever_the_rules_contain() {
    let errors = errors(&[(
        "offers.toml",
        "[[offer]]\nid = \"a\\nb\"\nurl = \"https://o.example/\"\npayout = 1\n\"x\\ny\" = 1\n",
    )]);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    for error in errors {
        assert!(!error.contains('\n'), "{error}");
    }
}

#[test]
fn postback_ips_take_cidrs_and_addresses_and_refuse_anything_else_with_its_line() {
    let set = loaded(&[(
        "sources.toml",
        "[[source]]\nid = \"src\"\npostback_ips = [\"203.0.113.9/24\", \"2001:db8::1\", \" 198.51.100.7 \"]\n",
    )]);
    let source = set.source("src").unwrap();
    let shown: Vec<String> = source.postback_ips.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        shown,
        ["203.0.113.0/24", "2001:db8::1/128", "198.51.100.7/32"]
    );
    assert!(source.postback_allowed_from("203.0.113.200".parse().unwrap()));
    assert!(source.postback_allowed_from("::ffff:198.51.100.7".parse().unwrap()));
    assert!(!source.postback_allowed_from("198.51.100.8".parse().unwrap()));
    assert_errors(
        &[(
            "sources.toml",
            "[[source]]\nid = \"src\"\npostback_ips = [\"10.0.0.0/33\", 7]\n",
        )],
        &[
            "rules/sources.toml:3: source \"src\": postback_ips: \"10.0.0.0/33\" is not a CIDR (such as \"203.0.113.0/24\") or an IP address",
            "rules/sources.toml:3: source \"src\": postback_ips: expected a string, found integer",
        ],
    );
}
