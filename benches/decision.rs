//! The cost of one decision on the click path, and of the background recomputation that feeds it.
//!
//! Setup (not measured): the test suite's offers and sources plus 20 generated fallback offers in
//! one campaign with three primaries; an `Evidence` fed with 200,000 residual clicks and about
//! 2,200 delayed conversions over 500 (country, device, OS, carrier) segments in 24 hours,
//! recomputed and published to an `Allocator`. `decide/fallback_subset` is a residual visitor
//! for whom only half the fallbacks are eligible (the allocator's subset path).
//!
//! ```sh
//! cargo bench --bench decision -- --warm-up-time 1 --measurement-time 3
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use smartlink::bandit::{
    Allocator, BanditConfig, CampaignSpec, Evidence, FallbackPolicy, Segment, WeightedRandom,
};
use smartlink::decide::{decide, eligible_fallbacks, DecisionInput, NoCaps, Route};
use smartlink::rules::{Campaign, RuleSet};
use smartlink::visitor::{Connection, Device, Os, QueryParams, Visitor};

const CAMPAIGN: &str = "bench";
const FALLBACKS: usize = 20;
const SEGMENTS: usize = 500;
const CLICKS: usize = 200_000;
/// End of the synthetic history and moment of every recomputation (Unix ms).
const NOW_MS: i64 = 1_750_000_000_000;
const HISTORY_MS: i64 = 86_400_000;
/// Median click → conversion delay of the synthetic conversions.
const DELAY_MEDIAN_MS: f64 = 30.0 * 60_000.0;

const COUNTRIES: [&str; 30] = [
    "DE", "US", "BR", "IN", "ID", "MX", "FR", "GB", "IT", "ES", "PL", "TR", "VN", "TH", "PH", "NG",
    "EG", "ZA", "AR", "CO", "PE", "CL", "RO", "NL", "BE", "PT", "UA", "KZ", "MY", "PK",
];
const CARRIERS: [&str; 3] = ["Carrier-A", "Carrier-B", "Carrier-C"];

/// Everything the benchmarks share, built once.
struct Fixture {
    rules: RuleSet,
    evidence: Evidence,
    spec: CampaignSpec,
    allocator: Allocator,
    params: QueryParams,
    /// Matches the campaign's third primary.
    primary_visitor: Visitor,
    /// Residual, in the busiest segment; all 20 fallbacks eligible.
    residual_visitor: Visitor,
    /// Residual on a Windows desktop: the offers for phones and tablets and those excluding
    /// Windows are not eligible, 10 fallbacks are.
    desktop_visitor: Visitor,
}

impl Fixture {
    fn campaign(&self) -> &Campaign {
        self.rules.campaign(CAMPAIGN).expect("the bench campaign")
    }
}

fn fixture_rules() -> RuleSet {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules");
    let read = |name: &str| {
        std::fs::read_to_string(fixtures.join(name))
            .unwrap_or_else(|e| panic!("reading tests/fixtures/rules/{name}: {e}"))
    };
    let mut offers = read("offers.toml");
    for (country, payout) in [("BR", 1.8), ("IN", 0.6)] {
        let id = country.to_lowercase();
        offers.push_str(&format!(
            "\n[[offer]]\nid = \"primary-{id}\"\n\
             url = \"https://primary.example/{id}?c={{clickid}}&zone={{param.zone}}\"\n\
             payout = {payout}\n[offer.match]\ncountry = [\"{country}\"]\n"
        ));
    }
    for i in 0..FALLBACKS {
        offers.push_str(&format!(
            "\n[[offer]]\nid = \"fb-{i:02}\"\n\
             url = \"https://offer{i}.example/go?cid={{clickid}}&geo={{country}}&os={{os}}&z={{param.zone}}\"\n\
             payout = {:.2}\n",
            0.5 + 0.15 * i as f64
        ));
        // Own targeting on some offers, so eligibility does real work: a wide country list, a
        // device list, an OS exclusion.
        match i % 4 {
            0 => offers.push_str(&format!(
                "[offer.match]\ncountry = [{}]\n",
                COUNTRIES[..20]
                    .iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            1 => offers.push_str("[offer.match]\ndevice = [\"phone\", \"tablet\"]\n"),
            2 => offers.push_str("[offer.exclude]\nos = [\"Windows\"]\n"),
            _ => {}
        }
    }

    let mut campaign = String::from(
        "id = \"bench\"\nsource = \"adsterra\"\n\
         backlink = \"https://backlink.example/?sub={clickid}\"\n\
         bot_url = \"https://safe.example/bot\"\n\n\
         [[primary]]\noffer = \"primary-br\"\n[primary.match]\ncountry = [\"BR\"]\n\
         os = [\"Android\"]\ncarrier = [\"Vivo\", \"Claro\"]\n\n\
         [[primary]]\noffer = \"primary-in\"\n[primary.match]\ncountry = [\"IN\"]\n\
         device = [\"phone\"]\n[primary.exclude]\nconnection = [\"broadband\"]\n\n\
         [[primary]]\noffer = \"sweeps-us\"\n[primary.match]\ncountry = [\"US\"]\n\
         os = [\"Android\"]\ndevice = [\"phone\", \"tablet\"]\ncarrier = [\"T-Mobile\", \"Verizon\"]\n\
         [primary.exclude]\nconnection = [\"broadband\"]\n",
    );
    for i in 0..FALLBACKS {
        campaign.push_str(&format!(
            "\n[[fallback]]\noffer = \"fb-{i:02}\"\nweight = {:.1}\n",
            1.0 + (i % 3) as f64
        ));
        match i % 5 {
            0 => campaign.push_str("[fallback.exclude]\nconnection = [\"datacenter\"]\n"),
            1 => campaign.push_str("[fallback.exclude]\nparam.zone = [\"999\", \"1000\"]\n"),
            2 => campaign
                .push_str("[fallback.match]\ndevice = [\"phone\", \"tablet\", \"desktop\"]\n"),
            _ => {}
        }
    }

    let dir = PathBuf::from("rules");
    smartlink::rules::load_from_sources(&[
        (dir.join("offers.toml"), offers),
        (dir.join("sources.toml"), read("sources.toml")),
        (dir.join("campaigns/bench.toml"), campaign),
    ])
    .unwrap_or_else(|errors| panic!("bench rules do not validate: {errors:?}"))
}

fn visitor(country: &str, device: Device, os: Os, carrier: Option<&str>) -> Visitor {
    let connection = match (device, carrier) {
        (Device::Desktop, _) => Connection::Broadband,
        (_, Some(_)) => Connection::Cellular,
        _ => Connection::Unknown,
    };
    Visitor {
        country: Some(country.to_string()),
        carrier: carrier.map(str::to_string),
        connection,
        os,
        os_version: Some("14".to_string()),
        browser: Some("Chrome".to_string()),
        browser_version: Some("126.0".to_string()),
        device,
        language: Some("en".to_string()),
        ..Visitor::unknown(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)))
    }
}

/// 500 residual segments, busiest first: every (country, device, OS, carrier) that fits (phones
/// and tablets on Android or iOS with a carrier or none, desktops without), shuffled, minus those
/// the primaries take; the bench's residual visitor's segment is put first.
fn segments(rules: &RuleSet, params: &QueryParams, rng: &mut SmallRng) -> Vec<Visitor> {
    let campaign = rules.campaign(CAMPAIGN).expect("the bench campaign");
    let mut all = Vec::new();
    for country in COUNTRIES {
        for device in [Device::Phone, Device::Tablet] {
            for os in [Os::Android, Os::Ios] {
                for carrier in CARRIERS.iter().map(Some).chain([None]) {
                    all.push(visitor(country, device, os, carrier.copied()));
                }
            }
        }
        for os in [Os::Windows, Os::MacOs, Os::Linux] {
            all.push(visitor(country, Device::Desktop, os, None));
        }
    }
    for i in (1..all.len()).rev() {
        all.swap(i, rng.random_range(0..=i));
    }
    let first = visitor("DE", Device::Phone, Os::Android, Some("Carrier-A"));
    all.retain(|v| {
        let input = DecisionInput {
            rules,
            campaign,
            visitor: v,
            params,
            availability: &NoCaps,
            policy: &WeightedRandom,
        };
        v != &first && decide(&input, &mut SmallRng::seed_from_u64(0)).route == Route::Fallback
    });
    all.insert(0, first);
    all.truncate(SEGMENTS);
    assert_eq!(all.len(), SEGMENTS);
    all
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at_ms: i64,
    segment: usize,
    fallback: usize,
    click_ms: i64,
}

fn build() -> Fixture {
    let rules = fixture_rules();
    let campaign = rules
        .campaign(CAMPAIGN)
        .expect("the bench campaign")
        .clone();
    assert_eq!(campaign.fallback.len(), FALLBACKS);
    let params = QueryParams(vec![
        ("clickid".to_string(), "a1b2c3d4e5".to_string()),
        ("zone".to_string(), "4411".to_string()),
        ("cost".to_string(), "1.20".to_string()),
    ]);
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let visitors = segments(&rules, &params, &mut rng);

    // Which fallbacks each segment may get, by the decision's own rules.
    let eligible: Vec<Vec<usize>> = visitors
        .iter()
        .map(|v| {
            let input = DecisionInput {
                rules: &rules,
                campaign: &campaign,
                visitor: v,
                params: &params,
                availability: &NoCaps,
                policy: &WeightedRandom,
            };
            eligible_fallbacks(&input)
        })
        .collect();
    let traffic: Vec<f64> = {
        let weights: Vec<f64> = (0..SEGMENTS)
            .map(|k| 1.0 / ((k + 1) as f64).powf(0.8))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        weights
            .iter()
            .map(|w| {
                sum += w / total;
                sum
            })
            .collect()
    };
    // True conversion rate per segment × fallback, about 1.1 % on average.
    let cr: Vec<f64> = (0..SEGMENTS * FALLBACKS)
        .map(|_| 0.011 * (0.6 * (rng.random::<f64>() - 0.5)).exp() * rng.random_range(0.4..1.6))
        .collect();

    let mut evidence = Evidence::new(BanditConfig::default());
    let segments: Vec<Segment> = visitors.iter().map(Segment::of).collect();
    let mut pending = BinaryHeap::new();
    let mut conversions = 0;
    let start = NOW_MS - HISTORY_MS;
    for k in 0..CLICKS {
        let now = start + (k as i64 * HISTORY_MS) / CLICKS as i64;
        while pending
            .peek()
            .is_some_and(|Reverse(p): &Reverse<Pending>| p.at_ms <= now)
        {
            let Reverse(p) = pending.pop().expect("peeked");
            let offer = &campaign.fallback[p.fallback].offer;
            let payout = rules.offer(offer).expect("offer").payout.to_f64();
            evidence.record_conversion(
                CAMPAIGN,
                offer,
                &segments[p.segment],
                payout,
                p.click_ms,
                p.at_ms,
            );
            conversions += 1;
        }
        let u = rng.random::<f64>();
        let s = traffic.partition_point(|&c| c <= u).min(SEGMENTS - 1);
        let f = WeightedRandom.choose(&campaign, &visitors[s], &eligible[s], &mut rng);
        evidence.record_click(CAMPAIGN, &campaign.fallback[f].offer, &segments[s], now);
        if rng.random::<f64>() < cr[s * FALLBACKS + f] {
            let delay =
                -DELAY_MEDIAN_MS / std::f64::consts::LN_2 * (1.0 - rng.random::<f64>()).ln();
            pending.push(Reverse(Pending {
                at_ms: now + delay as i64,
                segment: s,
                fallback: f,
                click_ms: now,
            }));
        }
    }
    // Conversions due after `NOW_MS` have not happened yet.

    let spec = CampaignSpec::from_rules(&campaign, &rules, |_| true, |offer| offer.payout.to_f64());
    assert_eq!(spec.arms.len(), FALLBACKS);
    let allocator = Allocator::new();
    allocator.publish(
        evidence
            .clone()
            .recompute(std::slice::from_ref(&spec), NOW_MS),
    );

    let primary_visitor = visitor("US", Device::Phone, Os::Android, Some("T-Mobile"));
    let residual_visitor = visitors[0].clone();
    let tables = allocator.current();
    let table = &tables.campaigns[CAMPAIGN];
    let keys = {
        let mut keys: Vec<u64> = segments.iter().flat_map(|s| s.keys()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.len()
    };
    eprintln!(
        "setup: {CLICKS} clicks, {conversions} conversions, {SEGMENTS} segments ({keys} keys, {} \
         with their own table), {FALLBACKS} fallbacks",
        table.segments.len()
    );
    assert!(
        table
            .segments
            .contains_key(&Segment::of(&residual_visitor).keys()[4]),
        "the residual visitor's own segment has a table"
    );

    Fixture {
        rules,
        evidence,
        spec,
        allocator,
        params,
        primary_visitor,
        residual_visitor,
        desktop_visitor: visitor("DE", Device::Desktop, Os::Windows, None),
    }
}

fn benches(c: &mut Criterion) {
    let fx = build();
    let campaign = fx.campaign();
    let cold = Allocator::new();
    let input = |visitor, policy| DecisionInput {
        rules: &fx.rules,
        campaign,
        visitor,
        params: &fx.params,
        availability: &NoCaps,
        policy,
    };
    let primary = input(&fx.primary_visitor, &fx.allocator);
    let evidence = input(&fx.residual_visitor, &fx.allocator);
    let no_evidence = input(&fx.residual_visitor, &cold);
    let weighted = input(&fx.residual_visitor, &WeightedRandom);
    let subset = input(&fx.desktop_visitor, &fx.allocator);
    let eligible = eligible_fallbacks(&evidence);
    assert_eq!(eligible.len(), FALLBACKS);
    assert_eq!(eligible_fallbacks(&subset).len(), FALLBACKS / 2);

    let mut rng = SmallRng::seed_from_u64(42);
    assert_eq!(decide(&primary, &mut rng).route, Route::Primary);
    assert_eq!(decide(&evidence, &mut rng).route, Route::Fallback);
    assert_eq!(decide(&subset, &mut rng).route, Route::Fallback);

    let mut group = c.benchmark_group("decide");
    group.bench_function("primary", |b| {
        b.iter(|| decide(black_box(&primary), &mut rng).target)
    });
    group.bench_function("fallback_evidence", |b| {
        b.iter(|| decide(black_box(&evidence), &mut rng).target)
    });
    group.bench_function("fallback_no_evidence", |b| {
        b.iter(|| decide(black_box(&no_evidence), &mut rng).target)
    });
    group.bench_function("fallback_weighted", |b| {
        b.iter(|| decide(black_box(&weighted), &mut rng).target)
    });
    group.bench_function("fallback_subset", |b| {
        b.iter(|| decide(black_box(&subset), &mut rng).target)
    });
    group.finish();

    c.bench_function("allocator/choose", |b| {
        b.iter(|| {
            fx.allocator.choose(
                campaign,
                black_box(&fx.residual_visitor),
                black_box(&eligible),
                &mut rng,
            )
        })
    });

    c.bench_function("eligible_fallbacks", |b| {
        b.iter(|| eligible_fallbacks(black_box(&evidence)))
    });

    let specs = std::slice::from_ref(&fx.spec);
    let mut group = c.benchmark_group("evidence");
    // Tens of milliseconds an iteration: ten samples of equal size keep the run short.
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.bench_function("recompute", |b| {
        b.iter_batched_ref(
            || fx.evidence.clone(),
            |evidence| evidence.recompute(black_box(specs), NOW_MS),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(decision, benches);
criterion_main!(decision);
