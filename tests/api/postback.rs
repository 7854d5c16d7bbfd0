//! SPEC §9–11 over HTTP: conversions recorded exactly once, transitions, network styles, errors,
//! secrets, the pixel, caps and the traffic-source postback.

use crate::helpers::*;

const SPLIT_ID: &str = "cid";

#[tokio::test]
async fn a_postback_is_recorded_once_and_a_repeat_is_a_duplicate() {
    let app = spawn_app().await;
    let click = app.click_id("us-android", "clickid=ext1", SPLIT_ID).await;
    let (status, body) = app.postback(&format!("clickid={click}&payout=2.5")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("recorded")),
        "{body}"
    );
    let (status, body) = app.postback(&format!("clickid={click}&payout=2.5")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("duplicate")),
        "{body}"
    );
    let report = app.report().await;
    let dating = row(&report, "dating-global");
    assert_eq!(dating["clicks"], 1);
    assert_eq!(dating["conversions"], 1);
    assert_eq!(dating["revenue"], 2.5);
    assert_eq!(report["currency"], "USD");
}

#[tokio::test]
async fn pending_then_approved_moves_revenue_and_a_chargeback_nets_it_to_zero() {
    let app = spawn_app().await;
    let click = app.click_id("us-android", "", SPLIT_ID).await;
    let (_, body) = app
        .postback(&format!("clickid={click}&payout=3&status=hold"))
        .await;
    assert_eq!(body["result"], "recorded");
    let report = app.report().await;
    assert_eq!(row(&report, "dating-global")["pending_revenue"], 3.0);
    assert_eq!(row(&report, "dating-global")["revenue"], 0.0);

    let (_, body) = app
        .postback(&format!("clickid={click}&payout=3&status=sale"))
        .await;
    assert_eq!(body["result"], "updated");
    let report = app.report().await;
    assert_eq!(row(&report, "dating-global")["pending_revenue"], 0.0);
    assert_eq!(row(&report, "dating-global")["revenue"], 3.0);
    assert_eq!(row(&report, "dating-global")["conversions"], 1);

    let (_, body) = app
        .postback(&format!("clickid={click}&status=chargeback"))
        .await;
    assert_eq!(body["result"], "updated");
    let report = app.report().await;
    assert_eq!(row(&report, "dating-global")["revenue"], 0.0);
    assert_eq!(row(&report, "dating-global")["conversions"], 0);
}

#[tokio::test]
async fn a_negative_payout_on_an_approved_conversion_subtracts() {
    let app = spawn_app().await;
    let click = app.click_id("us-android", "", SPLIT_ID).await;
    app.postback(&format!("clickid={click}&payout=5")).await;
    let (_, body) = app.postback(&format!("clickid={click}&payout=-1,50")).await;
    assert_eq!(body["result"], "updated");
    assert_eq!(row(&app.report().await, "dating-global")["revenue"], 3.5);
}

#[tokio::test]
async fn every_event_and_transaction_is_its_own_conversion() {
    let app = spawn_app().await;
    let click = app.click_id("us-android", "", SPLIT_ID).await;
    for query in [
        format!("clickid={click}&event=install&payout=0.5"),
        format!("clickid={click}&event=registration&payout=1"),
        format!("clickid={click}&event=deposit&payout=10&txid=A1"),
        format!("clickid={click}&event=deposit&payout=20&txid=A2"),
    ] {
        let (status, body) = app.postback(&query).await;
        assert_eq!(
            (status, body["result"].as_str()),
            (200, Some("recorded")),
            "{query}"
        );
    }
    let dating = &row(&app.report().await, "dating-global").clone();
    assert_eq!(dating["conversions"], 4);
    assert_eq!(dating["revenue"], 31.5);
}

#[tokio::test]
async fn an_absent_payout_is_the_offers_payout_in_base_currency() {
    let app = spawn_app_with(|c| {
        c.currency_rates.insert("EUR".into(), 1.08);
    })
    .await;
    let click = app.click_id("euro", "", "c").await;
    let (_, body) = app.postback(&format!("clickid={click}")).await;
    assert_eq!(body["payout"], 2.16, "{body}");
    let click = app.click_id("euro", "", "c").await;
    let (_, body) = app
        .postback(&format!("clickid={click}&payout=10&currency=eur"))
        .await;
    assert_eq!(body["payout"], 10.8, "{body}");
    assert_eq!(row(&app.report().await, "euro-offer")["revenue"], 12.96);
}

#[tokio::test]
async fn form_and_json_bodies_and_the_secret_path_are_accepted() {
    let app = spawn_app_with(|c| c.postback_secret = "s3cret".into()).await;
    let click = app.click_id("us-android", "", SPLIT_ID).await;
    let form = app
        .client
        .post(format!("{}/postback/s3cret", app.address))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("cid={click}&amount=1.25&et=lead&status=pending"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let json = app
        .client
        .post(format!("{}/postback", app.address))
        .json(
            &serde_json::json!({"click_id": click, "revenue": 4, "type": "sale", "key": "s3cret"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 200);
    let body: serde_json::Value = json.json().await.unwrap();
    assert_eq!(body["result"], "recorded");
    assert_eq!(row(&app.report().await, "dating-global")["revenue"], 4.0);
}

#[tokio::test]
async fn a_missing_or_wrong_secret_is_refused_and_changes_nothing() {
    let app = spawn_app_with(|c| c.postback_secret = "s3cret".into()).await;
    let click = app.click_id("us-android", "", SPLIT_ID).await;
    for query in [
        format!("clickid={click}&payout=1"),
        format!("clickid={click}&payout=1&secret=wrong"),
    ] {
        let (status, body) = app.postback(&query).await;
        assert_eq!((status, body["error"].as_str()), (403, Some("bad_secret")));
    }
    let (status, _) = app
        .postback(&format!("clickid={click}&payout=1&secret=s3cret"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(row(&app.report().await, "dating-global")["conversions"], 1);
}

#[tokio::test]
async fn each_error_has_its_code_and_changes_nothing() {
    let app = spawn_app().await;
    let click = app.click_id("us-android", "", SPLIT_ID).await;
    let cases = [
        ("payout=1".to_string(), 400, "missing_clickid"),
        (format!("clickid={click}&payout=abc"), 400, "bad_payout"),
        (
            format!("clickid={click}&payout=1&currency=XYZ"),
            400,
            "bad_currency",
        ),
        (format!("clickid={click}&status=maybe"), 400, "bad_status"),
        (
            format!("clickid={click}&event=no%20spaces"),
            400,
            "bad_event",
        ),
        (
            format!("clickid={click}&payout={{payout}}"),
            400,
            "unreplaced_macro",
        ),
        (
            "clickid=-0cVdQ7xQTj-gIIR8yNqul".to_string(),
            404,
            "unknown_click",
        ),
    ];
    for (query, status, code) in cases {
        let (got, body) = app.postback(&query).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{query}: {body}"
        );
        assert!(body["message"].is_string());
    }
    // No report was committed, so nothing forced the click out of the batched queue yet.
    app.store.flush().await.unwrap();
    assert_eq!(row(&app.report().await, "dating-global")["conversions"], 0);
}

#[tokio::test]
async fn a_postback_for_a_click_older_than_the_window_is_expired() {
    let app = spawn_app().await;
    let click = app.click_id("us-android", "", SPLIT_ID).await;
    let mut old = app.store.click(&click).await.unwrap().unwrap();
    old.id = "-0AAAAAAAAAAAAAAAAAAAA".into();
    old.ts_ms -= 31 * 86_400_000;
    app.store.record_click(old).await.unwrap();
    let (status, body) = app
        .postback("clickid=-0AAAAAAAAAAAAAAAAAAAA&payout=1")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (410, Some("click_expired"))
    );
}

/// Networks configured with our parameter names, each with its own macros filled in, and left
/// unreplaced.
#[tokio::test]
async fn postbacks_shaped_like_real_networks_record_and_their_unreplaced_macros_are_refused() {
    let app = spawn_app().await;
    let styles: [(&str, &str, &str); 6] = [
        (
            "TUNE",
            "clickid={ID}&payout=1.5&txid=tx-1",
            "clickid={aff_sub}&payout={payout}&txid={transaction_id}",
        ),
        (
            "Everflow",
            "clickid={ID}&event=purchase&payout=2",
            "clickid={sub1}&event={event_name}&payout={payout}",
        ),
        (
            "CAKE",
            "clickid={ID}&payout=0,75",
            "clickid=%23s2%23&payout=%23price%23",
        ),
        (
            "Voluum",
            "cid={ID}&payout=1&txid=v-1&et=sale",
            "cid={clickid}&payout={payout}&txid={txid}&et={event}",
        ),
        (
            "Keitaro",
            "subid={ID}&status=sale&payout=3&tid=k-1",
            "subid={subid}&status={status}&payout={payout}&tid={tid}",
        ),
        (
            "Binom",
            "cnv_id={ID}&cnv_status=approved&payout=4",
            "cnv_id={cnv_id}&cnv_status={cnv_status}&payout={payout}",
        ),
    ];
    for (network, filled, unreplaced) in styles {
        let click = app.click_id("us-android", "", SPLIT_ID).await;
        let (status, body) = app.postback(&filled.replace("{ID}", &click)).await;
        assert_eq!(
            (status, body["result"].as_str()),
            (200, Some("recorded")),
            "{network}: {body}"
        );
        let encoded = unreplaced.replace('{', "%7B").replace('}', "%7D");
        let (status, body) = app.postback(&encoded).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unreplaced_macro")),
            "{network}: {body}"
        );
    }
    assert_eq!(row(&app.report().await, "dating-global")["conversions"], 6);
}

#[tokio::test]
async fn the_pixel_records_a_conversion_for_the_click_in_its_cookie() {
    let app = spawn_app().await;
    let response = app
        .click("us-android", "", TELEKOM_DE_IP, IPHONE_SAFARI)
        .await;
    let cookie = response
        .headers()
        .get("set-cookie")
        .expect("click cookie")
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.starts_with("sl_click=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let pixel = app
        .client
        .get(format!("{}/pixel.gif?event=lead&payout=0.4", app.address))
        .header("Cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(pixel.status(), 200);
    assert_eq!(pixel.headers()["content-type"], "image/gif");
    assert_eq!(pixel.headers()["x-smartlink-result"], "recorded");
    assert!(pixel.bytes().await.unwrap().starts_with(b"GIF89a"));
    assert_eq!(row(&app.report().await, "dating-global")["revenue"], 0.4);
}

#[tokio::test]
async fn a_capped_offer_gets_no_more_traffic_until_its_day_rolls_over() {
    let app = spawn_app().await;
    let first = app.click("capped", "", TELEKOM_DE_IP, IPHONE_SAFARI).await;
    let first_location = location(&first);
    assert!(
        first_location.starts_with("https://capped.example/"),
        "{first_location}"
    );
    let click = query_param(&first_location, "c").unwrap();
    app.postback(&format!("clickid={click}")).await;
    let next = app.click("capped", "", TELEKOM_DE_IP, IPHONE_SAFARI).await;
    assert!(location(&next).starts_with("https://dating.example/"));
    // A chargeback of the approved conversion frees its slot again.
    app.postback(&format!("clickid={click}&status=chargeback"))
        .await;
    let again = app.click("capped", "", TELEKOM_DE_IP, IPHONE_SAFARI).await;
    assert!(location(&again).starts_with("https://capped.example/"));
}

#[tokio::test]
async fn the_traffic_source_is_told_once_its_receiver_accepts_after_a_refusal() {
    let receiver = start_receiver(1).await;
    let url = receiver.url.clone();
    let app = spawn_app_with_rules(
        |c| c.delivery.initial_backoff_ms = 200,
        move |rules| {
            let path = rules.join("sources.toml");
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, text.replace("http://127.0.0.1:1", &url)).unwrap();
        },
    )
    .await;
    let click = app.click_id("us-android", "clickid=ADS-77", SPLIT_ID).await;
    app.postback(&format!("clickid={click}&payout=2.5")).await;
    // A pending conversion is not forwarded: the source lists only approved.
    let other = app.click_id("us-android", "clickid=ADS-78", SPLIT_ID).await;
    app.postback(&format!("clickid={other}&payout=1&status=pending"))
        .await;
    // A click without an external id is never forwarded.
    let anonymous = app.click_id("us-android", "", SPLIT_ID).await;
    app.postback(&format!("clickid={anonymous}&payout=1")).await;

    let delivered = app.wait_for_deliveries(1).await;
    let deliveries = delivered["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{delivered}");
    let requests = receiver.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "one refusal, one success: {requests:?}");
    assert_eq!(requests[0], requests[1]);
    assert!(
        requests[1].contains("subid_short=ADS-77&atpay=2.5&status=approved&event=conversion"),
        "{requests:?}"
    );
    let pending: serde_json::Value = app
        .api("/api/postbacks?status=pending")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        pending["deliveries"].as_array().unwrap().len(),
        0,
        "{pending}"
    );
}

#[tokio::test]
async fn the_admin_api_needs_the_bearer_token() {
    let app = spawn_app().await;
    for path in ["/api/report", "/api/postbacks"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 401, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
    }
}

#[tokio::test]
async fn the_report_adds_cost_profit_epc_cr_and_roi() {
    let app = spawn_app().await;
    // Adsterra is CPM: cost=2 is 0.002 a click.
    let mut clicks = Vec::new();
    for _ in 0..4 {
        clicks.push(app.click_id("us-android", "cost=2", SPLIT_ID).await);
    }
    app.postback(&format!("clickid={}&payout=1", clicks[0]))
        .await;
    let report = app.report().await;
    let dating = row(&report, "dating-global");
    assert_eq!(dating["clicks"], 4);
    assert_eq!(dating["cost"], 0.008);
    assert_eq!(dating["profit"], 0.992);
    assert_eq!(dating["epc"], 0.25);
    assert_eq!(dating["cr"], 0.25);
    assert_eq!(dating["roi"], 124.0);
    assert_eq!(report["totals"]["clicks"], 4);
    let csv = app
        .api("/api/report?format=csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("offer,clicks,conversions,revenue"), "{csv}");
    assert!(
        csv.contains("dating-global,4,1,1,0,0.008,0.992,0.25,0.25,124"),
        "{csv}"
    );
}
