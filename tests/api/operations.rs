//! SPEC §15 over HTTP: liveness, readiness, metrics, and JSON for unknown paths.

use crate::helpers::*;

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn readyz_answers_ok_with_rules_loaded_and_the_store_reachable() {
    let app = spawn_app().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["campaigns"], 7);
}

#[tokio::test]
async fn metrics_count_clicks_and_redirects_by_route() {
    let app = spawn_app().await;
    app.click("split", "", TELEKOM_DE_IP, WINDOWS_CHROME).await;
    app.click("split", "", TELEKOM_DE_IP, GOOGLEBOT).await;
    app.click("nope", "", TELEKOM_DE_IP, GOOGLEBOT).await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(text.contains("smartlink_clicks_total 3"), "{text}");
    assert!(
        text.contains("smartlink_redirects_total{route=\"fallback\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("smartlink_redirects_total{route=\"bot\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("smartlink_unknown_campaign_total 1"),
        "{text}"
    );
    assert!(
        text.contains("smartlink_decision_seconds_count 2"),
        "{text}"
    );
    assert!(
        text.contains("smartlink_store_record_seconds_count 2"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unknown_path_is_a_404_json_error() {
    let app = spawn_app().await;
    let response = app.get("/nothing/here").await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn stopping_the_server_flushes_every_recorded_click() {
    let app = spawn_app().await;
    for _ in 0..20 {
        app.click("split", "", TELEKOM_DE_IP, WINDOWS_CHROME).await;
    }
    app.handle.stop(true).await;
    // `run_until_stopped` flushes after the server stops; give it a moment to finish.
    for _ in 0..50 {
        if app.store.stats().committed == 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.store.stats().committed, 20);
}
