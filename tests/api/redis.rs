//! SPEC §14, several instances on one Redis: each test starts its own `redis-server` (or a
//! three-node cluster) and two routers on it, and checks that they behave as one router. Skipped
//! loudly without `redis-server`, unless `SLTEST_REQUIRE_REDIS=1`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smartlink::config::{Config, StoreKind, StoreUrl};
use smartlink::store::redis::server::LocalRedis;

use crate::helpers::*;
use crate::learning::{add_learn_campaign, clicks, until_offer_a_leads};

const SPLIT_ID: &str = "cid";

/// Two routers on `redis` (a single server or a cluster) with the same rules, outbound
/// postbacks of the `adsterra` source going to `receiver` when given.
async fn two_instances(
    redis: &LocalRedis,
    receiver: Option<&Receiver>,
    adjust: impl Fn(&mut Config) + Clone,
    edit: impl Fn(&std::path::Path) + Clone,
) -> (TestApp, TestApp) {
    let urls = redis.urls();
    let receiver_url = receiver.map(|r| r.url.clone());
    let mut apps = Vec::new();
    for _ in 0..2 {
        let urls = urls.clone();
        let adjust = adjust.clone();
        let edit = edit.clone();
        let receiver_url = receiver_url.clone();
        apps.push(
            spawn_app_with_rules(
                move |config| {
                    config.store.kind = StoreKind::Redis;
                    config.store.url = if urls.len() == 1 {
                        StoreUrl::One(urls[0].clone())
                    } else {
                        StoreUrl::Cluster(urls)
                    };
                    config.delivery.initial_backoff_ms = 200;
                    adjust(config);
                },
                move |rules| {
                    if let Some(url) = &receiver_url {
                        let path = rules.join("sources.toml");
                        let text = std::fs::read_to_string(&path).unwrap();
                        std::fs::write(&path, text.replace("http://127.0.0.1:1", url)).unwrap();
                    }
                    edit(rules);
                },
            )
            .await,
        );
    }
    let b = apps.pop().unwrap();
    let a = apps.pop().unwrap();
    (a, b)
}

fn no_change(_: &mut Config) {}
fn same_rules(_: &std::path::Path) {}

/// A click on `a`, already written to Redis; answers its click id and offer.
async fn click_on(a: &TestApp, external_id: &str) -> (String, String) {
    let id = a
        .click_id("us-android", &format!("clickid={external_id}"), SPLIT_ID)
        .await;
    a.store.flush().await.unwrap();
    let offer = a.store.click(&id).await.unwrap().unwrap().offer.unwrap();
    (id, offer)
}

/// Waits up to 5 s for `check` to hold.
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_click_on_one_instance_converts_through_the_other_and_the_duplicate_through_the_first_counts_once(
) {
    if !redis_available("a_click_on_one_instance_converts_through_the_other") {
        return;
    }
    let redis = LocalRedis::start().unwrap();
    let receiver = start_receiver(0).await;
    let (a, b) = two_instances(&redis, Some(&receiver), no_change, same_rules).await;
    let (click, offer) = click_on(&a, "ADS-1").await;

    let (status, body) = b.postback(&format!("clickid={click}&payout=2.5")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("recorded")),
        "{body}"
    );
    let (status, body) = a.postback(&format!("clickid={click}&payout=2.5")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("duplicate")),
        "{body}"
    );

    // One report, whichever instance is asked.
    for app in [&a, &b] {
        let report = app.report().await;
        let row = row(&report, &offer);
        assert_eq!(
            (row["clicks"].as_i64(), row["conversions"].as_i64()),
            (Some(1), Some(1)),
            "{report}"
        );
        assert_eq!(row["revenue"], 2.5, "{report}");
    }
    // The source hears of it once, from one of the two.
    let delivered = a.wait_for_deliveries(1).await;
    assert_eq!(
        delivered["deliveries"].as_array().unwrap().len(),
        1,
        "{delivered}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let requests = receiver.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0].contains("subid_short=ADS-1&atpay=2.5"),
        "{requests:?}"
    );
    let listed: serde_json::Value = b
        .api("/api/postbacks?status=delivered")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["deliveries"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
}

#[tokio::test]
async fn a_cap_reached_through_one_instance_holds_on_the_other_and_a_chargeback_frees_it_on_both() {
    if !redis_available("a_cap_reached_through_one_instance") {
        return;
    }
    let redis = LocalRedis::start().unwrap();
    let (a, b) = two_instances(&redis, None, no_change, same_rules).await;
    let goes_to = async |app: &TestApp, host: &str| {
        let response = app.click("capped", "", TELEKOM_DE_IP, IPHONE_SAFARI).await;
        location(&response).starts_with(host)
    };
    let first = a.click("capped", "", TELEKOM_DE_IP, IPHONE_SAFARI).await;
    let click = query_param(&location(&first), "c").unwrap();
    a.store.flush().await.unwrap();
    assert!(goes_to(&b, "https://capped.example/").await);

    let (status, body) = a.postback(&format!("clickid={click}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(goes_to(&a, "https://dating.example/").await);
    assert!(
        eventually(async || goes_to(&b, "https://dating.example/").await).await,
        "the other instance kept sending traffic to the capped offer"
    );

    let (status, body) = b
        .postback(&format!("clickid={click}&status=chargeback"))
        .await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("updated")),
        "{body}"
    );
    assert!(goes_to(&b, "https://capped.example/").await);
    assert!(
        eventually(async || goes_to(&a, "https://capped.example/").await).await,
        "the chargeback through the other instance did not free the cap"
    );
}

#[tokio::test]
async fn every_instance_learns_from_clicks_and_conversions_whichever_instance_received_them() {
    if !redis_available("every_instance_learns") {
        return;
    }
    let redis = LocalRedis::start().unwrap();
    let (a, b) = two_instances(
        &redis,
        None,
        |config| config.bandit.refresh_ms = 100,
        add_learn_campaign,
    )
    .await;
    // Clicks on a only, conversions through b only.
    let (to_a, _) = clicks(&a, 200).await;
    a.store.flush().await.unwrap();
    for (i, id) in to_a.iter().step_by(4).enumerate() {
        let (status, body) = b
            .postback(&format!("clickid={id}&payout=2.00&txid=t{i}"))
            .await;
        assert_eq!(
            (status, body["result"].as_str()),
            (200, Some("recorded")),
            "{body}"
        );
    }
    assert!(
        until_offer_a_leads(&a).await,
        "the instance that took the clicks did not learn from conversions it did not receive"
    );
    assert!(
        until_offer_a_leads(&b).await,
        "the instance that took the conversions did not learn"
    );
    // A third instance started now replays the shared history.
    let c = spawn_app_with_rules(
        {
            let config = a.store_config.clone();
            move |c: &mut Config| {
                c.store = config;
                c.bandit.refresh_ms = 100;
            }
        },
        add_learn_campaign,
    )
    .await;
    assert!(
        until_offer_a_leads(&c).await,
        "a new instance did not start from the shared history"
    );
}

#[tokio::test]
async fn with_redis_stopped_clicks_still_redirect_postbacks_answer_503_and_it_all_resumes_when_redis_is_back(
) {
    if !redis_available("with_redis_stopped_clicks_still_redirect") {
        return;
    }
    let mut redis = LocalRedis::start_persistent().unwrap();
    let receiver = start_receiver(0).await;
    let (a, _b) = two_instances(&redis, Some(&receiver), no_change, same_rules).await;
    let a = Arc::new(a);
    let (before, _) = click_on(&a, "ADS-OLD").await;

    // Traffic throughout: every click must be redirected.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let traffic = {
        let (a, stop, answered, refused) =
            (a.clone(), stop.clone(), answered.clone(), refused.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let response = a.click("split", "", TELEKOM_DE_IP, WINDOWS_CHROME).await;
                if response.status() == 302 {
                    answered.fetch_add(1, Ordering::SeqCst);
                } else {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.stop();

    assert_eq!(a.get("/readyz").await.status(), 503);
    let during = a.click_id("us-android", "clickid=ADS-NEW", SPLIT_ID).await;
    let (status, body) = a.postback(&format!("clickid={before}&payout=1")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
    let (status, body) = a.postback(&format!("clickid={during}&payout=1")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = a.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("smartlink_store_dropped_clicks_total 0"),
        "{metrics}"
    );
    assert!(!metrics.contains("smartlink_store_queued 0\n"), "{metrics}");

    redis.restart().unwrap();
    assert!(
        eventually(async || a.get("/readyz").await.status() == 200).await,
        "not ready again after Redis came back"
    );
    assert!(
        eventually(async || a.store.stats().queued == 0).await,
        "the buffered clicks were not written"
    );
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    assert_eq!(refused.load(Ordering::SeqCst), 0);
    assert!(answered.load(Ordering::SeqCst) > 20);

    // The click taken during the outage and the one from before are both there now.
    let (status, body) = a.postback(&format!("clickid={during}&payout=1")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("recorded")),
        "{body}"
    );
    let (status, body) = a.postback(&format!("clickid={before}&payout=1")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("recorded")),
        "{body}"
    );
    let delivered = a.wait_for_deliveries(2).await;
    assert_eq!(
        delivered["deliveries"].as_array().unwrap().len(),
        2,
        "{delivered}"
    );
}

#[tokio::test]
async fn a_three_node_cluster_serves_two_instances_as_one_router() {
    if !redis_available("a_three_node_cluster_serves_two_instances") {
        return;
    }
    let cluster = LocalRedis::start_cluster(3).unwrap();
    let receiver = start_receiver(0).await;
    let (a, b) = two_instances(&cluster, Some(&receiver), no_change, same_rules).await;
    assert_eq!(a.get("/readyz").await.status(), 200);
    // Enough clicks to land in every shard, on both instances.
    let mut ids = Vec::new();
    for i in 0..40 {
        let app = if i % 2 == 0 { &a } else { &b };
        ids.push(
            app.click_id("us-android", &format!("clickid=EXT-{i}"), SPLIT_ID)
                .await,
        );
    }
    a.store.flush().await.unwrap();
    b.store.flush().await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let other = if i % 2 == 0 { &b } else { &a };
        let (status, body) = other.postback(&format!("clickid={id}&payout=1")).await;
        assert_eq!(
            (status, body["result"].as_str()),
            (200, Some("recorded")),
            "{body}"
        );
    }
    let (status, body) = a.postback(&format!("clickid={}&payout=1", ids[1])).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("duplicate")),
        "{body}"
    );
    let report = b.report().await;
    assert_eq!(report["totals"]["clicks"], 40, "{report}");
    assert_eq!(report["totals"]["conversions"], 40, "{report}");
    let delivered = a.wait_for_deliveries(40).await;
    assert_eq!(delivered["deliveries"].as_array().unwrap().len(), 40);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.requests.lock().unwrap().len(), 40);
}
