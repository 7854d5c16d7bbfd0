//! SPEC §5: rule changes on disk apply within 2 s without a restart; a refused set never replaces
//! the one in force.

use std::time::{Duration, Instant};

use crate::helpers::*;

async fn wait_for(app: &TestApp, campaign: &str, expected_prefix: &str) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let response = app.click(campaign, "", TELEKOM_DE_IP, WINDOWS_CHROME).await;
        if response.status() == 302 && location(&response).starts_with(expected_prefix) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn a_new_campaign_file_is_served_within_two_seconds() {
    let app = spawn_app().await;
    assert_eq!(
        app.click("fresh", "", TELEKOM_DE_IP, WINDOWS_CHROME)
            .await
            .status(),
        404
    );
    std::fs::write(
        app.rules_dir.join("campaigns/fresh.toml"),
        "id = \"fresh\"\nsource = \"adsterra\"\nbacklink = \"https://fresh.example/?s={clickid}\"\n",
    )
    .unwrap();
    let took = wait_for(&app, "fresh", "https://fresh.example/").await;
    assert!(
        took.is_some_and(|t| t <= Duration::from_secs(2)),
        "took {took:?}"
    );
}

#[tokio::test]
async fn an_invalid_change_keeps_the_rules_in_force() {
    let app = spawn_app().await;
    let path = app.rules_dir.join("campaigns/desktop-only.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, original.replace("weight = 1.0", "weight = -1.0")).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let response = app
        .click("desktop-only", "", TELEKOM_DE_IP, WINDOWS_CHROME)
        .await;
    assert!(location(&response).starts_with("https://vpn.example/"));
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("smartlink_rules_reload_failures_total 1"),
        "{text}"
    );

    // A valid edit afterwards applies.
    std::fs::write(
        &path,
        original.replace(
            "https://backlink.example/last-resort",
            "https://edited.example/lr",
        ),
    )
    .unwrap();
    let took = wait_for(&app, "desktop-only", "https://vpn.example/").await;
    assert!(took.is_some());
}
