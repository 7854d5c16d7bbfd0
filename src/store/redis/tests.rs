//! Each test starts its own `redis-server` (skipped loudly when there is none, unless
//! `SLTEST_REQUIRE_REDIS=1`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::server::LocalRedis;
use super::*;
use crate::conversion::ConversionKey;
use crate::conversion::ConversionStatus::{Approved, Chargeback, Pending};
use crate::store::NewDelivery;

const TEN_YEARS: Duration = Duration::from_secs(3650 * 86_400);

use crate::store::sqlite::tests::click_at;

/// A private server, or `None` (with a loud message) when `redis-server` is missing.
fn redis(test: &str) -> Option<LocalRedis> {
    if !server::available() {
        assert!(
            std::env::var("SLTEST_REQUIRE_REDIS").map_or(true, |v| v != "1"),
            "{test}: redis-server is not on PATH and SLTEST_REQUIRE_REDIS=1"
        );
        eprintln!("\n!!! SKIPPED {test}: redis-server is not on PATH\n");
        return None;
    }
    Some(LocalRedis::start().expect("redis-server starts"))
}

fn options(durability: Durability) -> Options {
    let mut options = Options::new(durability, TEN_YEARS);
    // Several shards on one server, so merging across shards is exercised too.
    options.shards = Some(4);
    options.takeover_after = Duration::from_millis(300);
    options
}

async fn open(redis: &LocalRedis, durability: Durability) -> RedisStore {
    RedisStore::open(&[redis.url()], options(durability))
        .await
        .unwrap()
}

fn report(click: &ClickRecord, status: ConversionStatus, payout: i64) -> ConversionReport {
    ConversionReport {
        key: ConversionKey {
            click_id: click.id.clone(),
            event: "conversion".into(),
            txid: String::new(),
        },
        status,
        payout: Money::from_micros(payout),
        sent_payout: Some(Money::from_micros(payout)),
        sent_currency: "USD".into(),
        ts_ms: now_ms(),
    }
}

fn no_delivery() -> DeliveryPlan {
    Box::new(|_: &Change| None)
}

fn deliver_changes() -> DeliveryPlan {
    Box::new(|change: &Change| {
        let status = match change {
            Change::Duplicate => return None,
            Change::Recorded(state) | Change::Updated { after: state, .. } => state.status,
        };
        Some(NewDelivery {
            url: "http://127.0.0.1:9/postback".into(),
            source: "adsterra".into(),
            status,
        })
    })
}

#[tokio::test]
async fn a_click_reads_back_with_every_field_intact_before_and_after_it_is_written() {
    let Some(redis) = redis("a_click_reads_back") else {
        return;
    };
    let store = open(&redis, Durability::Batched).await;
    let click = click_at(now_ms());
    store.record_click(click.clone()).await.unwrap();
    assert_eq!(store.click(&click.id).await.unwrap().as_ref(), Some(&click));
    store.flush().await.unwrap();
    assert_eq!(store.core.buffer.queued(), 0);
    assert_eq!(store.click(&click.id).await.unwrap(), Some(click));
    assert_eq!(store.click("nope").await.unwrap(), None);
}

#[tokio::test]
async fn a_strict_click_is_in_redis_when_record_click_returns() {
    let Some(redis) = redis("a_strict_click_is_in_redis") else {
        return;
    };
    let store = open(&redis, Durability::Strict).await;
    let click = click_at(now_ms());
    store.record_click(click.clone()).await.unwrap();
    let shard = Shard::of(&click.id, 4);
    assert_eq!(redis.cli(&["EXISTS", &shard.click(&click.id)]).trim(), "1");
}

#[tokio::test]
async fn a_click_expires_at_its_time_plus_the_retention() {
    let Some(redis) = redis("a_click_expires") else {
        return;
    };
    let mut options = options(Durability::Strict);
    options.retention = Duration::from_secs(3600);
    let store = RedisStore::open(&[redis.url()], options).await.unwrap();
    let click = click_at(now_ms() - 1_800_000);
    store.record_click(click.clone()).await.unwrap();
    let ttl: i64 = redis
        .cli(&["PTTL", &Shard::of(&click.id, 4).click(&click.id)])
        .trim()
        .parse()
        .unwrap();
    assert!((1_700_000..=1_800_000).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn a_batched_click_is_written_within_50_ms_without_a_flush() {
    let Some(redis) = redis("a_batched_click_is_written") else {
        return;
    };
    let store = open(&redis, Durability::Batched).await;
    let click = click_at(now_ms());
    store.record_click(click.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.stats().committed, 1);
    assert_eq!(
        redis
            .cli(&["EXISTS", &Shard::of(&click.id, 4).click(&click.id)])
            .trim(),
        "1"
    );
}

#[tokio::test]
async fn a_report_is_recorded_then_a_duplicate_then_an_update_with_the_report_counters() {
    let Some(redis) = redis("a_report_is_recorded") else {
        return;
    };
    let store = open(&redis, Durability::Strict).await;
    let click = click_at(now_ms());
    store.record_click(click.clone()).await.unwrap();
    let change = store
        .record_conversion(report(&click, Pending, 2_000_000), no_delivery())
        .await
        .unwrap();
    assert!(matches!(change, Change::Recorded(_)));
    let again = store
        .record_conversion(report(&click, Pending, 2_000_000), no_delivery())
        .await
        .unwrap();
    assert_eq!(again, Change::Duplicate);
    let day = now_ms() - now_ms().rem_euclid(DAY_MS);
    let totals = offer_totals(&store, day, None).await;
    assert_eq!(totals.len(), 1);
    assert_eq!(
        (
            totals[0].clicks,
            totals[0].conversions,
            totals[0].pending_revenue
        ),
        (1, 0, Money::from_micros(2_000_000))
    );
    let updated = store
        .record_conversion(report(&click, Approved, 2_500_000), no_delivery())
        .await
        .unwrap();
    assert!(matches!(updated, Change::Updated { .. }));
    let totals = offer_totals(&store, day, None).await;
    assert_eq!(
        (
            totals[0].conversions,
            totals[0].revenue,
            totals[0].pending_revenue,
            totals[0].cost
        ),
        (
            1,
            Money::from_micros(2_500_000),
            Money::ZERO,
            Money::from_micros(3_600)
        )
    );
    assert_eq!(
        store.approved_since(0).await.unwrap(),
        vec![(
            "sweeps-us".to_string(),
            store_approval_time(&store, &click).await
        )]
    );
    store
        .record_conversion(report(&click, Chargeback, 0), no_delivery())
        .await
        .unwrap();
    let totals = offer_totals(&store, day, None).await;
    assert_eq!((totals[0].conversions, totals[0].revenue), (0, Money::ZERO));
    assert!(store.approved_since(0).await.unwrap().is_empty());
    // Another campaign's report has none of it.
    assert!(offer_totals(&store, day, Some("other")).await.is_empty());
}

/// Per-offer report counters of the UTC day starting at `day`, in offer order.
async fn offer_totals(
    store: &RedisStore,
    day: i64,
    campaign: Option<&str>,
) -> Vec<crate::store::ReportCounters> {
    let query = crate::store::ReportQuery {
        spans: vec![crate::store::TimeSpan {
            start_ms: day,
            end_ms: day + DAY_MS,
        }],
        campaign: campaign.map(str::to_string),
        dimensions: vec![crate::store::Dimension::Offer],
    };
    let mut groups = store.report(&query).await.unwrap();
    groups.sort_by(|a, b| a.values.cmp(&b.values));
    groups.into_iter().map(|g| g.counters).collect()
}

async fn store_approval_time(store: &RedisStore, click: &ClickRecord) -> i64 {
    let mut conn = store.core.conn.clone();
    let raw: String = redis::cmd("HGET")
        .arg(Shard::of(&click.id, 4).identities(&click.id))
        .arg(join(["conversion", ""]))
        .query_async(&mut conn)
        .await
        .unwrap();
    serde_json::from_str::<Identity>(&raw).unwrap().a.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_report_through_two_instances_at_once_is_recorded_once_with_one_delivery() {
    let Some(redis) = redis("the_same_report_through_two_instances") else {
        return;
    };
    let a = Arc::new(open(&redis, Durability::Strict).await);
    let b = Arc::new(open(&redis, Durability::Strict).await);
    let mut recorded = 0;
    for _ in 0..10 {
        let click = click_at(now_ms());
        a.record_click(click.clone()).await.unwrap();
        let mut tasks = Vec::new();
        for store in [&a, &b, &a, &b] {
            let store = store.clone();
            let report = report(&click, Approved, 1_000_000);
            tasks.push(tokio::spawn(async move {
                store.record_conversion(report, deliver_changes()).await
            }));
        }
        for task in tasks {
            if matches!(task.await.unwrap().unwrap(), Change::Recorded(_)) {
                recorded += 1;
            }
        }
    }
    assert_eq!(recorded, 10);
    let pending = a.deliveries(DeliveryState::Pending, 100).await.unwrap();
    assert_eq!(pending.len(), 10);
    let day = now_ms() - now_ms().rem_euclid(DAY_MS);
    let totals = offer_totals(&b, day, None).await;
    assert_eq!((totals[0].clicks, totals[0].conversions), (10, 10));
}

#[tokio::test]
async fn a_delivery_is_made_by_one_instance_and_taken_over_when_its_holder_stops() {
    let Some(redis) = redis("a_delivery_is_made_by_one_instance") else {
        return;
    };
    let a = open(&redis, Durability::Strict).await;
    let b = open(&redis, Durability::Strict).await;
    let click = click_at(now_ms());
    a.record_click(click.clone()).await.unwrap();
    a.record_conversion(report(&click, Approved, 1_000_000), deliver_changes())
        .await
        .unwrap();
    let now = now_ms() + 1;
    let due = a.due_deliveries(now, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].click_id, click.id);
    // Held by a: b does not get it.
    assert!(b.due_deliveries(now, 10).await.unwrap().is_empty());
    a.record_delivery_attempt(
        due[0].id,
        DeliveryAttempt::Retry {
            next_at_ms: now,
            error: "HTTP 500".into(),
        },
    )
    .await
    .unwrap();
    // a stops (crashes) holding it; after the take-over time b gets it.
    drop(a);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let due = b.due_deliveries(now_ms(), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    b.record_delivery_attempt(due[0].id, DeliveryAttempt::Delivered { at_ms: now_ms() })
        .await
        .unwrap();
    assert!(b.due_deliveries(now_ms(), 10).await.unwrap().is_empty());
    let delivered = b.deliveries(DeliveryState::Delivered, 10).await.unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].attempts, 2);
    assert!(b
        .deliveries(DeliveryState::Pending, 10)
        .await
        .unwrap()
        .is_empty());
    // Acknowledged and removed from the stream.
    let stream = Shard::of_delivery(delivered[0].id).delivery_stream();
    assert_eq!(redis.cli(&["XLEN", &stream]).trim(), "0");
    // A late answer changes nothing; an unknown id is refused.
    b.record_delivery_attempt(
        delivered[0].id,
        DeliveryAttempt::GaveUp {
            error: "late".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        b.deliveries(DeliveryState::Delivered, 10).await.unwrap()[0].state,
        DeliveryState::Delivered
    );
    assert!(b
        .record_delivery_attempt(12345, DeliveryAttempt::Delivered { at_ms: 1 })
        .await
        .is_err());
}

#[tokio::test]
async fn deliveries_are_listed_newest_first_across_shards() {
    let Some(redis) = redis("deliveries_are_listed_newest_first") else {
        return;
    };
    let store = open(&redis, Durability::Strict).await;
    let mut clicks = Vec::new();
    for i in 0..6 {
        let click = click_at(now_ms());
        store.record_click(click.clone()).await.unwrap();
        let mut report = report(&click, Approved, 1_000_000);
        report.ts_ms = 1_000 + i;
        store
            .record_conversion(report, deliver_changes())
            .await
            .unwrap();
        clicks.push(click.id);
    }
    let listed = store.deliveries(DeliveryState::Pending, 4).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|d| d.click_id.as_str()).collect();
    let newest: Vec<&str> = clicks.iter().rev().take(4).map(String::as_str).collect();
    assert_eq!(ids, newest);
}

#[tokio::test]
async fn evidence_pages_hold_each_residual_click_and_current_approval_once_in_time_order() {
    let Some(redis) = redis("evidence_pages") else {
        return;
    };
    let store = open(&redis, Durability::Strict).await;
    let base = now_ms() - 3_600_000;
    let mut residual = Vec::new();
    for i in 0..25 {
        let mut click = click_at(base + (i / 2) * 1000);
        if i % 5 == 4 {
            click.route = Route::Primary;
        } else {
            residual.push(click.id.clone());
        }
        store.record_click(click.clone()).await.unwrap();
        if i % 3 == 0 {
            let mut report = report(&click, Approved, 1_000_000 + i);
            report.ts_ms = base + i * 1000 + 500;
            store
                .record_conversion(report, no_delivery())
                .await
                .unwrap();
        }
    }
    let mut clicks = Vec::new();
    let mut conversions = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .evidence_page(base, now_ms(), cursor, 4)
            .await
            .unwrap();
        assert!(page.clicks.len() <= 4);
        clicks.extend(page.clicks);
        conversions.extend(page.conversions);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(clicks.len(), residual.len());
    assert!(clicks.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
    // Approvals of residual clicks only (i % 3 == 0 and i % 5 != 4): 0, 3, 6, 12, 15, 18, 21.
    assert_eq!(conversions.len(), 7);
    assert!(conversions
        .windows(2)
        .all(|w| w[0].approved_ms <= w[1].approved_ms));
}

#[tokio::test]
async fn another_instance_sees_approvals_and_residual_clicks_and_none_of_its_own() {
    let Some(redis) = redis("another_instance_sees_events") else {
        return;
    };
    let a = open(&redis, Durability::Strict).await;
    let b = open(&redis, Durability::Strict).await;
    let start = now_ms();
    let seen_by_a = Arc::new(Mutex::new(Vec::new()));
    let seen_by_b = Arc::new(Mutex::new(Vec::new()));
    let sink = |seen: &Arc<Mutex<Vec<SharedEvent>>>| {
        let seen = seen.clone();
        move |event| seen.lock().unwrap().push(event)
    };
    a.follow(start, sink(&seen_by_a));
    b.follow(start, sink(&seen_by_b));
    let click = click_at(now_ms());
    a.record_click(click.clone()).await.unwrap();
    a.record_conversion(report(&click, Approved, 2_000_000), no_delivery())
        .await
        .unwrap();
    for _ in 0..50 {
        if seen_by_b.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = seen_by_b.lock().unwrap().clone();
    assert!(
        matches!(&seen[..], [SharedEvent::Click { offer, .. }, SharedEvent::Conversion { outcome: Outcome::Approved(p), route: Route::Fallback, .. }] if offer == "sweeps-us" && *p == 2.0),
        "{seen:?}"
    );
    assert!(seen_by_a.lock().unwrap().is_empty());
}

#[tokio::test]
async fn clicks_taken_while_redis_is_down_are_written_when_it_is_back() {
    let Some(mut redis) = redis("clicks_taken_while_redis_is_down") else {
        return;
    };
    let store = open(&redis, Durability::Batched).await;
    redis.stop();
    let click = click_at(now_ms());
    store.record_click(click.clone()).await.unwrap();
    assert!(store.ping().await.is_err());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Still findable, from memory.
    assert_eq!(store.click(&click.id).await.unwrap().as_ref(), Some(&click));
    assert!(store
        .record_conversion(report(&click, Approved, 1), no_delivery())
        .await
        .is_err());
    redis.restart().unwrap();
    let mut written = false;
    for _ in 0..100 {
        if store.stats().queued == 0 {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written, "the buffered click was not written");
    store.ping().await.unwrap();
    assert_eq!(
        redis
            .cli(&["EXISTS", &Shard::of(&click.id, 4).click(&click.id)])
            .trim(),
        "1"
    );
}

#[tokio::test]
async fn past_the_buffer_limit_the_oldest_clicks_are_dropped_and_counted() {
    let Some(mut redis) = redis("past_the_buffer_limit") else {
        return;
    };
    let mut options = options(Durability::Batched);
    options.buffer_limit = 5;
    let store = RedisStore::open(&[redis.url()], options).await.unwrap();
    redis.stop();
    let clicks: Vec<ClickRecord> = (0..8).map(|_| click_at(now_ms())).collect();
    for click in &clicks {
        store.record_click(click.clone()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.stats().dropped, 3);
    assert_eq!(store.dropped_clicks(), 3);
    assert!(store.click(&clicks[0].id).await.is_err());
    assert!(store.click(&clicks[7].id).await.unwrap().is_some());
}
