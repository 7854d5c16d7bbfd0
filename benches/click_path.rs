//! The click path's other pure steps, each on its own: classification (IP databases in `data/`,
//! User-Agent with and without its cache), query parsing, and macro expansion of an offer URL.
//! Inputs rotate through the load test's visitors (`bench/addresses.txt`,
//! `bench/user-agents.txt`), so caches see what they see under load.
//!
//! ```sh
//! cargo bench --bench click_path -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

use smartlink::classify::Classifier;
use smartlink::click::{parse_params, ClickMacros};
use smartlink::money::Money;
use smartlink::template::{MacroSet, UrlTemplate};
use smartlink::visitor::RequestHints;

const QUERY: &str = "clickid=8f1c2a9b77&zone=123456&cost=1.25&sub1=banner-300x250&bid=0.004";
const OFFER_URL: &str = "https://network.example/click?aff=12&sub1={clickid}&sub2={param.zone}\
                         &geo={country}&os={os}&dev={device}&isp={isp}&cost={cost}&src={source}";

fn list(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// 1,024 addresses over the load test's prefixes, deterministic.
fn addresses() -> Vec<IpAddr> {
    let prefixes = list("addresses.txt");
    (0..1024usize)
        .map(|i| {
            let prefix = &prefixes[i % prefixes.len()];
            format!("{prefix}.{}.{}", (i * 37) % 256, 1 + (i * 91) % 254)
                .parse()
                .expect("a valid address")
        })
        .collect()
}

fn hints(agent: &str) -> RequestHints<'_> {
    RequestHints {
        user_agent: agent,
        accept_language: Some("en-US,en;q=0.9"),
        ch_ua: None,
        ch_ua_mobile: None,
        ch_ua_platform: None,
        ch_ua_platform_version: None,
        ch_ua_model: None,
    }
}

fn benches(c: &mut Criterion) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let classifier = Classifier::open(&data).expect("the shipped data loads");
    let ips = addresses();
    let agents = list("user-agents.txt");

    let mut i = 0usize;
    c.bench_function("classify/rotating", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let ip = ips[i % ips.len()];
            let agent = &agents[i % agents.len()];
            black_box(classifier.classify(ip, &hints(agent)))
        })
    });

    // Every User-Agent new to the cache: the cost of a visitor with an unseen browser build.
    let mut n = 0u64;
    c.bench_function("classify/unseen_agent", |b| {
        b.iter(|| {
            n += 1;
            let agent = format!("{} build/{n}", agents[(n as usize) % agents.len()]);
            black_box(classifier.classify(ips[(n as usize) % ips.len()], &hints(&agent)))
        })
    });

    c.bench_function("params/parse", |b| {
        b.iter(|| black_box(parse_params(black_box(QUERY))))
    });

    let template = UrlTemplate::parse(OFFER_URL, MacroSet::Click).expect("a valid template");
    let visitor = classifier.classify(ips[3], &hints(&agents[2]));
    let params = parse_params(QUERY);
    c.bench_function("macros/offer_url", |b| {
        b.iter(|| {
            let values = ClickMacros {
                click_id: "0mZ3k1Qx7Yp2Lr9WbT4c",
                campaign: "us-android",
                offer: Some("sweeps-us"),
                source: "adsterra",
                external_id: Some("8f1c2a9b77"),
                cost: Some(Money::from_micros(1_250)),
                visitor: &visitor,
                params: &params,
            };
            black_box(template.render(&values))
        })
    });
}

criterion_group!(click_path, benches);
criterion_main!(click_path);
