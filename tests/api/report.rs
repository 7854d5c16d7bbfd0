//! SPEC §12 over HTTP: a known set of clicks (with CPM and CPC costs) and postbacks (approved,
//! pending, pending → approved, chargeback, rejected, a negative adjustment) gives exactly the
//! expected rows for several `group_by` combinations, day bounds in several time zones, the
//! campaign filter, CSV and totals; `smartlink report` prints the same numbers.

use std::collections::BTreeMap;

use chrono::TimeZone;
use serde_json::{json, Value};
use smartlink::config::StoreKind;
use smartlink::decide::Route;
use smartlink::money::Money;
use smartlink::store::ClickRecord;
use smartlink::visitor::{QueryParams, Visitor};

use crate::cli::{smartlink, stderr, stdout};
use crate::helpers::*;

/// Today in UTC, as the server sees it.
fn today() -> chrono::NaiveDate {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    chrono::DateTime::from_timestamp_millis(now.as_millis() as i64)
        .unwrap()
        .date_naive()
}

/// A range from yesterday to tomorrow (UTC), so a test running across midnight still sees all.
fn around_today() -> String {
    format!(
        "from={}&to={}",
        today() - chrono::Days::new(1),
        today() + chrono::Days::new(1)
    )
}

/// The click id of a redirected click, from parameter `name` of its Location.
async fn click_as(
    app: &TestApp,
    campaign: &str,
    query: &str,
    ip: &str,
    ua: &str,
    name: &str,
) -> String {
    let response = app.click(campaign, query, ip, ua).await;
    assert_eq!(response.status(), 302, "{campaign}?{query}");
    query_param(&location(&response), name).expect("click id in the redirect")
}

async fn postback(app: &TestApp, query: &str) {
    let (status, body) = app.postback(query).await;
    assert_eq!(status, 200, "{query}: {body}");
}

/// The known traffic every test here reports on:
///
/// | clicks | campaign (source, cost model) | visitor | route → offer | cost each |
/// |---|---|---|---|---|
/// | c1–c4 | us-android (adsterra, cpm) `cost=2` | DE iPhone | fallback → dating-global | 0.002 |
/// | t1–t2 | us-android `cost=3.6` | US T-Mobile Android | primary → sweeps-us | 0.0036 |
/// | e1–e3 | euro (propeller, cpc) `price=0.05` | DE iPhone | primary → euro-offer | 0.05 |
/// | e4 | euro `price=0.05` | US Windows desktop | primary → euro-offer | 0.05 |
/// | d1 | desktop-only (adsterra) `cost=1` | US Windows desktop | fallback → vpn-any | 0.001 |
/// | b1 | desktop-only `cost=1` | DE iPhone | backlink → none | 0.001 |
/// | g1 | desktop-only, no cost | Googlebot | bot → none | none |
///
/// Postbacks: c1 approved 2.5; c2 pending 3 then approved 3.5; c3 approved 4 then chargeback;
/// c4 pending 1.2; c1 event `deposit` approved 10 then -2.5; t1 approved without payout (the
/// offer's 2.5); e1 approved 1.5; e2 rejected 2; d1 approved 0.8; b1 approved 0.5; g1 pending 0.3.
struct Known {
    c1: String,
    t1: String,
}

async fn known_traffic(app: &TestApp) -> Known {
    let mut c = Vec::new();
    for i in 0..4 {
        let query = format!("clickid=ext{i}&cost=2");
        c.push(
            click_as(
                app,
                "us-android",
                &query,
                TELEKOM_DE_IP,
                IPHONE_SAFARI,
                "cid",
            )
            .await,
        );
    }
    let mut t = Vec::new();
    for _ in 0..2 {
        t.push(
            click_as(
                app,
                "us-android",
                "cost=3.6",
                TMOBILE_US_IP,
                ANDROID_CHROME,
                "sub1",
            )
            .await,
        );
    }
    let mut e = Vec::new();
    for i in 0..3 {
        let query = format!("subid=p{i}&price=0.05");
        e.push(click_as(app, "euro", &query, TELEKOM_DE_IP, IPHONE_SAFARI, "c").await);
    }
    click_as(
        app,
        "euro",
        "price=0.05",
        COMCAST_US_IP,
        WINDOWS_CHROME,
        "c",
    )
    .await;
    let d1 = click_as(
        app,
        "desktop-only",
        "cost=1",
        COMCAST_US_IP,
        WINDOWS_CHROME,
        "click",
    )
    .await;
    let b1 = click_as(
        app,
        "desktop-only",
        "cost=1",
        TELEKOM_DE_IP,
        IPHONE_SAFARI,
        "sub",
    )
    .await;
    let g1 = click_as(app, "desktop-only", "", TELEKOM_DE_IP, GOOGLEBOT, "sub").await;

    postback(app, &format!("clickid={}&payout=2.5", c[0])).await;
    postback(app, &format!("clickid={}&payout=3&status=pending", c[1])).await;
    postback(app, &format!("clickid={}&payout=3.5&status=approved", c[1])).await;
    postback(app, &format!("clickid={}&payout=4", c[2])).await;
    postback(app, &format!("clickid={}&status=chargeback", c[2])).await;
    postback(app, &format!("clickid={}&payout=1.2&status=pending", c[3])).await;
    postback(app, &format!("clickid={}&event=deposit&payout=10", c[0])).await;
    postback(app, &format!("clickid={}&event=deposit&payout=-2.5", c[0])).await;
    postback(app, &format!("clickid={}", t[0])).await;
    postback(app, &format!("clickid={}&payout=1.5", e[0])).await;
    postback(app, &format!("clickid={}&payout=2&status=rejected", e[1])).await;
    postback(app, &format!("clickid={d1}&payout=0.8")).await;
    postback(app, &format!("clickid={b1}&payout=0.5")).await;
    postback(app, &format!("clickid={g1}&payout=0.3&status=pending")).await;
    // Clicks without a conversion may still sit in the batched queue.
    app.store.flush().await.unwrap();
    Known {
        c1: c[0].clone(),
        t1: t[0].clone(),
    }
}

async fn report_json(app: &TestApp, query: &str) -> Value {
    let response = app.api(&format!("/api/report?{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

/// A row (or totals) as the API writes it; `keys` first, in order.
#[allow(clippy::too_many_arguments)]
fn row(
    keys: &[(&str, Value)],
    clicks: i64,
    conversions: i64,
    revenue: f64,
    pending_revenue: f64,
    cost: f64,
    profit: f64,
    epc: f64,
    cr: f64,
    roi: Option<f64>,
) -> Value {
    let mut row = serde_json::Map::new();
    for (name, value) in keys {
        row.insert((*name).to_owned(), value.clone());
    }
    for (name, value) in [
        ("clicks", json!(clicks)),
        ("conversions", json!(conversions)),
        ("revenue", json!(revenue)),
        ("pending_revenue", json!(pending_revenue)),
        ("cost", json!(cost)),
        ("profit", json!(profit)),
        ("epc", json!(epc)),
        ("cr", json!(cr)),
        ("roi", json!(roi)),
    ] {
        row.insert(name.to_owned(), value);
    }
    Value::Object(row)
}

fn totals() -> Value {
    row(
        &[],
        13,
        7,
        18.8,
        1.5,
        0.2172,
        18.5828,
        1.4462,
        0.5385,
        Some(85.56),
    )
}

#[tokio::test]
async fn every_number_of_the_offer_report_is_exact_for_known_clicks_costs_and_postbacks() {
    let app = spawn_app().await;
    known_traffic(&app).await;
    let report = report_json(&app, &around_today()).await;
    let offer = |name: &str| ("offer", json!(name));
    let expected = json!({
        "currency": "USD",
        "rows": [
            row(&[offer("dating-global")], 4, 3, 13.5, 1.2, 0.008, 13.492, 3.375, 0.75, Some(1686.5)),
            row(&[offer("euro-offer")], 4, 1, 1.5, 0.0, 0.2, 1.3, 0.375, 0.25, Some(6.5)),
            row(&[offer("sweeps-us")], 2, 1, 2.5, 0.0, 0.0072, 2.4928, 1.25, 0.5, Some(346.22)),
            row(&[offer("vpn-any")], 1, 1, 0.8, 0.0, 0.001, 0.799, 0.8, 1.0, Some(799.0)),
            row(&[("offer", Value::Null)], 2, 1, 0.5, 0.3, 0.001, 0.499, 0.25, 0.5, Some(499.0)),
        ],
        "totals": totals(),
    });
    assert_eq!(report, expected);
    // `group_by=offer` is the default, and the JSON keeps the key before the numbers.
    let text = app
        .api(&format!("/api/report?{}&group_by=offer", around_today()))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with(r#"{"currency":"USD","rows":[{"offer":"dating-global","clicks":4,"#),
        "{text}"
    );
}

#[tokio::test]
async fn campaign_and_route_rows_split_the_same_numbers() {
    let app = spawn_app().await;
    known_traffic(&app).await;
    let report = report_json(&app, &format!("{}&group_by=campaign,route", around_today())).await;
    let keys =
        |campaign: &str, route: &str| [("campaign", json!(campaign)), ("route", json!(route))];
    assert_eq!(
        report["rows"],
        json!([
            row(
                &keys("desktop-only", "backlink"),
                1,
                1,
                0.5,
                0.0,
                0.001,
                0.499,
                0.5,
                1.0,
                Some(499.0)
            ),
            row(
                &keys("desktop-only", "bot"),
                1,
                0,
                0.0,
                0.3,
                0.0,
                0.0,
                0.0,
                0.0,
                None
            ),
            row(
                &keys("desktop-only", "fallback"),
                1,
                1,
                0.8,
                0.0,
                0.001,
                0.799,
                0.8,
                1.0,
                Some(799.0)
            ),
            row(
                &keys("euro", "primary"),
                4,
                1,
                1.5,
                0.0,
                0.2,
                1.3,
                0.375,
                0.25,
                Some(6.5)
            ),
            row(
                &keys("us-android", "fallback"),
                4,
                3,
                13.5,
                1.2,
                0.008,
                13.492,
                3.375,
                0.75,
                Some(1686.5)
            ),
            row(
                &keys("us-android", "primary"),
                2,
                1,
                2.5,
                0.0,
                0.0072,
                2.4928,
                1.25,
                0.5,
                Some(346.22)
            ),
        ])
    );
    assert_eq!(report["totals"], totals());
}

#[tokio::test]
async fn each_event_row_repeats_its_clicks_and_clicks_without_a_conversion_get_a_null_event_row() {
    let app = spawn_app().await;
    known_traffic(&app).await;
    let report = report_json(&app, &format!("{}&group_by=offer,event", around_today())).await;
    let keys = |offer: Value, event: &str| [("offer", offer), ("event", json!(event))];
    assert_eq!(
        report["rows"],
        json!([
            row(
                &keys(json!("dating-global"), "conversion"),
                4,
                2,
                6.0,
                1.2,
                0.008,
                5.992,
                1.5,
                0.5,
                Some(749.0)
            ),
            row(
                &keys(json!("dating-global"), "deposit"),
                4,
                1,
                7.5,
                0.0,
                0.008,
                7.492,
                1.875,
                0.25,
                Some(936.5)
            ),
            row(
                &keys(json!("euro-offer"), "conversion"),
                4,
                1,
                1.5,
                0.0,
                0.2,
                1.3,
                0.375,
                0.25,
                Some(6.5)
            ),
            row(
                &keys(json!("sweeps-us"), "conversion"),
                2,
                1,
                2.5,
                0.0,
                0.0072,
                2.4928,
                1.25,
                0.5,
                Some(346.22)
            ),
            row(
                &keys(json!("vpn-any"), "conversion"),
                1,
                1,
                0.8,
                0.0,
                0.001,
                0.799,
                0.8,
                1.0,
                Some(799.0)
            ),
            row(
                &keys(Value::Null, "conversion"),
                2,
                1,
                0.5,
                0.3,
                0.001,
                0.499,
                0.25,
                0.5,
                Some(499.0)
            ),
        ])
    );
    // Totals count every click once, whatever the rows repeat.
    assert_eq!(report["totals"], totals());

    let euro = report_json(
        &app,
        &format!("{}&campaign=euro&group_by=country,event", around_today()),
    )
    .await;
    assert_eq!(
        euro,
        json!({
            "currency": "USD",
            "rows": [
                row(&[("country", json!("DE")), ("event", json!("conversion"))], 3, 1, 1.5, 0.0, 0.15, 1.35, 0.5, 0.3333, Some(9.0)),
                row(&[("country", json!("US")), ("event", Value::Null)], 1, 0, 0.0, 0.0, 0.05, -0.05, 0.0, 0.0, Some(-1.0)),
            ],
            "totals": row(&[], 4, 1, 1.5, 0.0, 0.2, 1.3, 0.375, 0.25, Some(6.5)),
        })
    );
}

#[tokio::test]
async fn classification_columns_group_in_the_order_given() {
    let app = spawn_app().await;
    let known = known_traffic(&app).await;
    let columns = [
        "language",
        "os",
        "device",
        "browser",
        "carrier",
        "connection",
        "country",
    ];
    let report = report_json(
        &app,
        &format!(
            "{}&campaign=us-android&group_by={}",
            around_today(),
            columns.join(",")
        ),
    )
    .await;
    // The classification each click was stored with is what the rows are keyed by.
    let keys = |id: &str| {
        let app = &app;
        let id = id.to_owned();
        async move {
            let click = app.store.click(&id).await.unwrap().unwrap();
            let v = &click.visitor;
            vec![
                ("language", json!(v.language)),
                ("os", json!(v.os.as_str())),
                ("device", json!(v.device.as_str())),
                ("browser", json!(v.browser)),
                ("carrier", json!(v.carrier)),
                ("connection", json!(v.connection.as_str())),
                ("country", json!(v.country)),
            ]
        }
    };
    let iphone = keys(&known.c1).await;
    let android = keys(&known.t1).await;
    assert_eq!(android[1].1, "Android");
    assert_eq!(iphone[1].1, "iOS");
    // Android sorts before iOS; language is null for both.
    assert_eq!(
        report["rows"],
        json!([
            row(
                &android,
                2,
                1,
                2.5,
                0.0,
                0.0072,
                2.4928,
                1.25,
                0.5,
                Some(346.22)
            ),
            row(
                &iphone,
                4,
                3,
                13.5,
                1.2,
                0.008,
                13.492,
                3.375,
                0.75,
                Some(1686.5)
            ),
        ])
    );
    // In the text, the columns come in the order asked (parsed JSON objects forget it).
    let text = app
        .api(&format!(
            "/api/report?{}&campaign=us-android&group_by={}",
            around_today(),
            columns.join(",")
        ))
        .await
        .text()
        .await
        .unwrap();
    let positions: Vec<usize> = columns
        .iter()
        .chain(&["clicks"])
        .map(|name| text.find(&format!("\"{name}\":")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[tokio::test]
async fn the_campaign_filter_keeps_only_that_campaigns_clicks_and_their_conversions() {
    let app = spawn_app().await;
    known_traffic(&app).await;
    let report = report_json(&app, &format!("{}&campaign=desktop-only", around_today())).await;
    assert_eq!(
        report,
        json!({
            "currency": "USD",
            "rows": [
                row(&[("offer", json!("vpn-any"))], 1, 1, 0.8, 0.0, 0.001, 0.799, 0.8, 1.0, Some(799.0)),
                row(&[("offer", Value::Null)], 2, 1, 0.5, 0.3, 0.001, 0.499, 0.25, 0.5, Some(499.0)),
            ],
            "totals": row(&[], 3, 2, 1.3, 0.3, 0.002, 1.298, 0.4333, 0.6667, Some(649.0)),
        })
    );
    let unknown = report_json(&app, &format!("{}&campaign=no-such", around_today())).await;
    assert_eq!(unknown["rows"], json!([]));
    assert_eq!(
        unknown["totals"],
        row(&[], 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None)
    );
}

#[tokio::test]
async fn csv_has_a_header_a_line_per_row_and_a_totals_line() {
    let app = spawn_app().await;
    known_traffic(&app).await;
    let response = app
        .api(&format!("/api/report?{}&format=csv", around_today()))
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_eq!(
        response.text().await.unwrap(),
        "offer,clicks,conversions,revenue,pending_revenue,cost,profit,epc,cr,roi\n\
         dating-global,4,3,13.5,1.2,0.008,13.492,3.375,0.75,1686.5\n\
         euro-offer,4,1,1.5,0,0.2,1.3,0.375,0.25,6.5\n\
         sweeps-us,2,1,2.5,0,0.0072,2.4928,1.25,0.5,346.22\n\
         vpn-any,1,1,0.8,0,0.001,0.799,0.8,1,799\n\
         ,2,1,0.5,0.3,0.001,0.499,0.25,0.5,499\n\
         TOTAL,13,7,18.8,1.5,0.2172,18.5828,1.4462,0.5385,85.56\n"
    );
    let by_two = app
        .api(&format!(
            "/api/report?{}&format=csv&group_by=route,campaign&campaign=desktop-only",
            around_today()
        ))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        by_two,
        "route,campaign,clicks,conversions,revenue,pending_revenue,cost,profit,epc,cr,roi\n\
         backlink,desktop-only,1,1,0.5,0,0.001,0.499,0.5,1,499\n\
         bot,desktop-only,1,0,0,0.3,0,0,0,0,\n\
         fallback,desktop-only,1,1,0.8,0,0.001,0.799,0.8,1,799\n\
         TOTAL,,3,2,1.3,0.3,0.002,1.298,0.4333,0.6667,649\n"
    );
}

/// Milliseconds of local midnight starting `day` in `tz`.
fn midnight(tz: chrono_tz::Tz, day: chrono::NaiveDate) -> i64 {
    tz.from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap())
        .single()
        .unwrap()
        .timestamp_millis()
}

/// A click of `us-android` to `dating-global` stored at `ts_ms` (HTTP cannot choose the time).
fn click_at(ts_ms: i64, cost: &str) -> ClickRecord {
    let ip = TELEKOM_DE_IP.parse().unwrap();
    ClickRecord {
        id: smartlink::click_id::generate(ts_ms, &mut rand::rng()),
        ts_ms,
        campaign: "us-android".into(),
        source: "adsterra".into(),
        external_id: None,
        cost: Some(Money::parse(cost).unwrap()),
        offer: Some("dating-global".into()),
        route: Route::Fallback,
        visitor: Visitor {
            country: Some("DE".into()),
            ..Visitor::unknown(ip)
        },
        ip: TELEKOM_DE_IP.parse().unwrap(),
        params: QueryParams::default(),
    }
}

#[tokio::test]
async fn days_are_cut_at_midnight_in_the_requested_time_zone_even_at_a_quarter_hour_offset() {
    use chrono_tz::{America::New_York, Asia::Kathmandu, UTC};
    let app = spawn_app().await;
    let day = today() - chrono::Days::new(3);
    let kathmandu = midnight(Kathmandu, day); // UTC+5:45
    let new_york = midnight(New_York, day);
    let utc = midnight(UTC, day);
    let times = [
        kathmandu - 60_000,
        kathmandu,
        utc - 1,
        utc,
        kathmandu + 6 * 3_600_000,
        new_york - 1,
        new_york,
    ];
    let mut clicks = Vec::new();
    for (i, &ts) in times.iter().enumerate() {
        let click = click_at(ts, &format!("0.0{}", i + 1));
        app.store.record_click(click.clone()).await.unwrap();
        clicks.push(click);
    }
    app.store.flush().await.unwrap();
    // Conversions now count on their clicks' days.
    postback(&app, &format!("clickid={}&payout=1", clicks[1].id)).await;
    postback(&app, &format!("clickid={}&payout=2", clicks[5].id)).await;
    postback(
        &app,
        &format!("clickid={}&payout=4&status=pending", clicks[6].id),
    )
    .await;

    for tz in [Kathmandu, New_York, UTC] {
        // (clicks, cost in millionths, conversions, revenue, pending) per local day.
        let mut days: BTreeMap<String, (i64, i64, i64, f64, f64)> = BTreeMap::new();
        for (i, click) in clicks.iter().enumerate() {
            let local = tz.timestamp_millis_opt(click.ts_ms).unwrap().date_naive();
            let entry = days.entry(local.to_string()).or_default();
            entry.0 += 1;
            entry.1 += (i as i64 + 1) * 10_000;
            match i {
                1 => (entry.2, entry.3) = (entry.2 + 1, entry.3 + 1.0),
                5 => (entry.2, entry.3) = (entry.2 + 1, entry.3 + 2.0),
                6 => entry.4 += 4.0,
                _ => {}
            }
        }
        let report = report_json(
            &app,
            &format!(
                "from={}&to={day}&tz={}&group_by=day",
                day - chrono::Days::new(1),
                tz.name()
            ),
        )
        .await;
        let got: Vec<(String, i64, f64, i64, f64, f64)> = report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["day"].as_str().unwrap().to_owned(),
                    r["clicks"].as_i64().unwrap(),
                    r["cost"].as_f64().unwrap(),
                    r["conversions"].as_i64().unwrap(),
                    r["revenue"].as_f64().unwrap(),
                    r["pending_revenue"].as_f64().unwrap(),
                )
            })
            .collect();
        let expected: Vec<(String, i64, f64, i64, f64, f64)> = days
            .into_iter()
            .map(|(d, (n, cost, conv, rev, pending))| {
                (d, n, Money::from_micros(cost).to_f64(), conv, rev, pending)
            })
            .collect();
        assert_eq!(got, expected, "{}", tz.name());
        assert_eq!(report["totals"]["clicks"], 7, "{}", tz.name());
    }
    // The click a minute before Kathmandu's midnight is the only one of its day there.
    let report = report_json(
        &app,
        &format!(
            "from={}&to={}&tz=Asia/Kathmandu&group_by=day,offer",
            day - chrono::Days::new(1),
            day - chrono::Days::new(1)
        ),
    )
    .await;
    assert_eq!(report["rows"][0]["clicks"], 1);
    assert_eq!(report["rows"][0]["cost"], 0.01);
    assert_eq!(report["rows"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_bad_group_by_time_zone_date_or_format_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    for (query, code, field) in [
        ("group_by=offer,city", "bad_group_by", "group_by"),
        ("group_by=offer,offer", "bad_group_by", "group_by"),
        ("tz=Mars/Olympus_Mons", "bad_timezone", "tz"),
        ("from=2026-13-01", "bad_date", "from"),
        ("from=2026-05-02&to=2026-05-01", "bad_date", "from"),
        ("from=2000-01-01&to=2026-01-01", "bad_date", "to"),
        ("format=xml", "bad_format", "format"),
    ] {
        let response = app.api(&format!("/api/report?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{query}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}: ")),
            "{query}: {message}"
        );
    }
}

/// Settings for the command line that read the test server's own store (SQLite file or Redis)
/// and rules.
fn config_for(app: &TestApp, extra: &str) -> std::path::PathBuf {
    let path = app._dir.path().join("smartlink.toml");
    let store = match app.store_config.kind {
        StoreKind::Sqlite => format!("path = {:?}", app.store_config.path.to_str().unwrap()),
        StoreKind::Redis => format!(
            "kind = \"redis\"\nurl = {:?}",
            app.store_config.url.urls().join(",")
        ),
    };
    std::fs::write(
        &path,
        format!(
            "rules_dir = {:?}\n{extra}\n[store]\n{store}\n",
            app.rules_dir.to_str().unwrap(),
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn the_cli_prints_the_same_numbers_as_the_api_while_the_server_runs() {
    let app = spawn_app().await;
    known_traffic(&app).await;
    let config = config_for(&app, "");
    let config = config.to_str().unwrap();
    let from = (today() - chrono::Days::new(1)).to_string();
    let to = (today() + chrono::Days::new(1)).to_string();
    let run = |by: &str, format: &str| {
        let output = smartlink(
            &[
                "report", "--config", config, "--from", &from, "--to", &to, "--by", by, "--format",
                format,
            ],
            None,
        );
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    for by in ["offer", "campaign,route", "offer,event"] {
        let api = |format: &str| {
            let path = format!("/api/report?from={from}&to={to}&group_by={by}&format={format}");
            let app = &app;
            async move { app.api(&path).await.text().await.unwrap() }
        };
        assert_eq!(run(by, "json").trim_end(), api("json").await, "{by}");
        assert_eq!(run(by, "csv"), api("csv").await, "{by}");
    }
    let table = run("offer", "table");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 8, "{table}");
    assert!(lines[0].starts_with("offer "), "{table}");
    assert!(lines[0].ends_with("roi"), "{table}");
    assert!(lines[1].starts_with("dating-global"), "{table}");
    assert!(lines[1].ends_with("1686.5"), "{table}");
    assert!(lines[5].starts_with("- "), "{table}");
    assert!(lines[6].chars().all(|c| c == '-'), "{table}");
    assert!(lines[7].starts_with("TOTAL"), "{table}");
    assert!(lines[7].ends_with("85.56"), "{table}");
    // Aligned: every line but the rule ends in the same column.
    let width = lines[0].chars().count();
    assert!(lines.iter().all(|l| l.chars().count() == width), "{table}");
    // `table` is the default format.
    let default = smartlink(
        &["--config", config, "report", "--from", &from, "--to", &to],
        None,
    );
    assert_eq!(stdout(&default), table);
}

#[tokio::test]
async fn the_cli_refuses_bad_input_with_one_line_naming_the_option() {
    let app = spawn_app().await;
    let config = config_for(&app, "");
    let config = config.to_str().unwrap();
    for (args, option) in [
        (vec!["--by", "offer,city"], "--by"),
        (vec!["--tz", "Mars/Olympus_Mons"], "--tz"),
        (vec!["--from", "yesterday"], "--from"),
    ] {
        let mut all = vec!["--config", config, "report"];
        all.extend(args);
        let output = smartlink(&all, None);
        assert_eq!(output.status.code(), Some(1), "{all:?}");
        let errors = stderr(&output);
        assert_eq!(errors.lines().count(), 1, "{errors}");
        assert!(errors.contains(option), "{errors}");
    }
    let usage = smartlink(&["--config", config, "report", "--format", "xml"], None);
    assert_eq!(usage.status.code(), Some(2));
    // A store that cannot be reached is one line naming the setting.
    let unreachable = app._dir.path().join("unreachable.toml");
    std::fs::write(
        &unreachable,
        format!(
            "rules_dir = {:?}\n[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:1/0\"\n",
            app.rules_dir.to_str().unwrap()
        ),
    )
    .unwrap();
    let output = smartlink(&["--config", unreachable.to_str().unwrap(), "report"], None);
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(errors.contains("store.url"), "{errors}");
    assert_eq!(errors.lines().count(), 1, "{errors}");
}

#[test]
fn the_cli_reports_zeros_before_anything_was_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("smartlink.toml");
    std::fs::write(
        &config,
        format!(
            "rules_dir = {:?}\n[store]\npath = {:?}\n",
            fixture_rules().to_str().unwrap(),
            dir.path().join("var/never-written.db").to_str().unwrap()
        ),
    )
    .unwrap();
    let output = smartlink(
        &[
            "report",
            "--config",
            config.to_str().unwrap(),
            "--format",
            "csv",
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "offer,clicks,conversions,revenue,pending_revenue,cost,profit,epc,cr,roi\n\
         TOTAL,0,0,0,0,0,0,0,0,\n"
    );
    assert!(!dir.path().join("var/never-written.db").exists());
}
