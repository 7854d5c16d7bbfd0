//! The cost of a report (SPEC §12) from the SQLite store's rollups, as `GET /api/report` runs it:
//! `Store::report` (on the store's read pool, off the async threads) and `Report::build` with
//! the JSON text, without HTTP.
//!
//! Setup (not measured, about half a minute): a store in a temporary directory filled through
//! `fill_report_rollups`, the writer's own summing and upserts, with 30 days × 10 campaigns ×
//! 20 offers × 50 countries: every (day, campaign, offer, country) cell has 20–59 clicks at one
//! quarter hour of its day (CPM costs), their approved conversions (1–3, 1.5 each) and a
//! pending one for every other cell, under an OS, device, browser, connection and language
//! that follow the country: about 750,000 facts. `offer`, `offer,country` and `day` are
//! answered from the store's projections, `offer,country,os` from its full key.
//!
//! ```sh
//! cargo bench --bench report -- --warm-up-time 1 --measurement-time 5
//! ```
//!
//! Run as a test (`cargo test --benches`), the fill is scaled down to a few cells so that the
//! benchmarks only prove they run.

use std::hint::black_box;

use chrono::{Days, NaiveDate};
use criterion::{criterion_group, criterion_main, Criterion};

use smartlink::decide::Route;
use smartlink::money::Money;
use smartlink::report::{Report, ReportRequest};
use smartlink::store::sqlite::{fill_report_rollups, ReportFact, SqliteStore};
use smartlink::store::{Durability, ReportCounters, Store};
use smartlink::visitor::{Connection, Device, Os};

/// The 30 days reported on: 2026-10-01 to 2026-10-30.
const FIRST_DAY: (i32, u32, u32) = (2026, 10, 1);

struct Size {
    days: u64,
    campaigns: usize,
    offers: usize,
    countries: usize,
}

const FULL: Size = Size {
    days: 30,
    campaigns: 10,
    offers: 20,
    countries: 50,
};

const TEST: Size = Size {
    days: 3,
    campaigns: 2,
    offers: 3,
    countries: 4,
};

const COUNTRIES: [&str; 50] = [
    "US", "DE", "BR", "IN", "ID", "MX", "FR", "GB", "IT", "ES", "PL", "TR", "VN", "TH", "PH", "NG",
    "EG", "ZA", "AR", "CO", "PE", "CL", "RO", "NL", "BE", "PT", "UA", "KZ", "MY", "PK", "BD", "JP",
    "KR", "CA", "AU", "SA", "AE", "IR", "IQ", "MA", "DZ", "KE", "GH", "VE", "EC", "CZ", "HU", "GR",
    "SE", "AT",
];

fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(FIRST_DAY.0, FIRST_DAY.1, FIRST_DAY.2).expect("a date")
}

/// A cheap deterministic spread of numbers per cell.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn facts(size: &Size) -> impl Iterator<Item = ReportFact> + '_ {
    let start_ms = smartlink::clock::day_start_ms(&chrono_tz::UTC, first_day());
    (0..size.days).flat_map(move |day| {
        (0..size.campaigns).flat_map(move |campaign| {
            (0..size.offers).flat_map(move |offer| {
                (0..size.countries).flat_map(move |country| {
                    let cell =
                        ((day * 100 + campaign as u64) * 100 + offer as u64) * 100 + country as u64;
                    let h = mix(cell);
                    let ts_ms = start_ms
                        + day as i64 * 86_400_000
                        + (h % 96) as i64 * 900_000
                        + (h % 900_000) as i64;
                    let clicks = 20 + (h >> 8) as i64 % 40;
                    let approved = 1 + (h >> 16) as i64 % 3;
                    let mobile = country.is_multiple_of(2);
                    let base = ReportFact {
                        ts_ms,
                        campaign: format!("campaign-{campaign}"),
                        offer: Some(format!("offer-{offer}")),
                        route: Route::Fallback,
                        event: None,
                        country: Some(COUNTRIES[country].to_owned()),
                        os: if mobile { Os::Android } else { Os::Windows },
                        device: if mobile {
                            Device::Phone
                        } else {
                            Device::Desktop
                        },
                        browser: Some("Chrome".to_owned()),
                        carrier: None,
                        connection: if mobile {
                            Connection::Cellular
                        } else {
                            Connection::Broadband
                        },
                        language: Some("en".to_owned()),
                        counters: ReportCounters {
                            clicks,
                            cost: Money::from_micros(clicks * 2_000),
                            ..ReportCounters::default()
                        },
                    };
                    let conversion = |counters: ReportCounters| ReportFact {
                        event: Some("conversion".to_owned()),
                        counters,
                        ..base.clone()
                    };
                    let mut cell_facts = vec![
                        conversion(ReportCounters {
                            conversions: approved,
                            revenue: Money::from_micros(approved * 1_500_000),
                            ..ReportCounters::default()
                        }),
                        base.clone(),
                    ];
                    if h.is_multiple_of(2) {
                        cell_facts.push(conversion(ReportCounters {
                            pending_revenue: Money::from_micros(1_500_000),
                            ..ReportCounters::default()
                        }));
                    }
                    cell_facts
                })
            })
        })
    })
}

fn benches(c: &mut Criterion) {
    let full = std::env::args().any(|arg| arg == "--bench");
    let size = if full { &FULL } else { &TEST };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("report.db");
    let started = std::time::Instant::now();
    let added = fill_report_rollups(&path, facts(size)).expect("rollups filled");
    if full {
        eprintln!(
            "filled {added} facts in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let ten_years = std::time::Duration::from_secs(3650 * 86_400);
    let store = runtime
        .block_on(async { SqliteStore::open(&path, Durability::Batched, ten_years) })
        .expect("the store opens");
    let last_day = first_day() + Days::new(size.days - 1);
    let (from, to) = (first_day().to_string(), last_day.to_string());
    let now_ms = smartlink::clock::day_start_ms(&chrono_tz::UTC, last_day + Days::new(1));
    let all_clicks: i64 = facts(size)
        .filter(|fact| fact.event.is_none())
        .map(|fact| fact.counters.clicks)
        .sum();

    let mut group = c.benchmark_group("report");
    group.sample_size(20);
    for (name, group_by, tz) in [
        ("offer/utc", "offer", "UTC"),
        ("offer/new_york", "offer", "America/New_York"),
        ("offer_country/utc", "offer,country", "UTC"),
        (
            "offer_country/new_york",
            "offer,country",
            "America/New_York",
        ),
        // Not a projection the store keeps: summed from the full key.
        ("offer_country_os/utc", "offer,country,os", "UTC"),
        (
            "offer_country_os/new_york",
            "offer,country,os",
            "America/New_York",
        ),
        ("day/utc", "day", "UTC"),
        ("day/new_york", "day", "America/New_York"),
        ("day/kathmandu", "day", "Asia/Kathmandu"),
    ] {
        let request = ReportRequest::parse(
            Some(&from),
            Some(&to),
            Some(tz),
            None,
            Some(group_by),
            now_ms,
        )
        .expect("a valid request");
        let query = request.query();
        let groups = runtime.block_on(store.report(&query)).expect("a report");
        let report = Report::build(&request, &groups, "USD");
        if tz == "UTC" {
            // UTC days hold every click of the fill, each counted once.
            assert_eq!(report.totals.clicks, all_clicks, "{name}");
        } else {
            assert!(report.totals.clicks > 0, "{name}: nothing reported");
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                let groups = runtime.block_on(store.report(&query)).expect("a report");
                let report = Report::build(&request, &groups, "USD");
                black_box(report.to_json())
            })
        });
    }
    group.finish();
    drop(store);
}

criterion_group!(report, benches);
criterion_main!(report);
