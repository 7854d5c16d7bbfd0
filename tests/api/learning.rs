//! SPEC §8 over HTTP: the live server learns on wall-clock time. Residual clicks, then approved
//! postbacks for some of the clicks of one offer, and within seconds most residual traffic goes
//! to that offer; a restart and `smartlink explain` start from what was learnt.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// Two offers the router cannot tell apart before it has evidence: same payout, same weight.
const OFFERS: &str = r#"
# The pool of the `learn` campaign: alike until the conversions say otherwise.
[[offer]]
id = "offer-a"
url = "https://a.example/?cid={clickid}"
payout = 1.0

[[offer]]
id = "offer-b"
url = "https://b.example/?cid={clickid}"
payout = 1.0
"#;

const CAMPAIGN: &str = r#"
id = "learn"
source = "propeller"
backlink = "https://backlink.example/?sub={clickid}"

[[fallback]]
offer = "offer-a"
weight = 1.0

[[fallback]]
offer = "offer-b"
weight = 1.0
"#;

pub fn add_learn_campaign(rules: &Path) {
    let offers = std::fs::read_to_string(rules.join("offers.toml")).unwrap();
    std::fs::write(rules.join("offers.toml"), offers + OFFERS).unwrap();
    std::fs::write(rules.join("campaigns/learn.toml"), CAMPAIGN).unwrap();
}

/// A server with the `learn` campaign that refreshes its allocation every 100 ms, on the store
/// of `store` when given.
async fn spawn_learning_app(store: Option<&TestApp>) -> TestApp {
    spawn_app_with_rules(
        |config| {
            config.bandit.refresh_ms = 100;
            if let Some(other) = store {
                config.store = other.store_config.clone();
            }
        },
        add_learn_campaign,
    )
    .await
}

fn store_path(app: &TestApp) -> PathBuf {
    app._dir.path().join("var/smartlink.db")
}

/// Sends `count` residual clicks from one visitor segment; returns the click ids that went to
/// offer-a and to offer-b.
pub async fn clicks(app: &TestApp, count: usize) -> (Vec<String>, Vec<String>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let response = app.click("learn", "", TELEKOM_DE_IP, WINDOWS_CHROME).await;
        let location = location(&response);
        let id = query_param(&location, "cid").expect("click id in the redirect");
        if location.starts_with("https://a.example/") {
            a.push(id);
        } else {
            assert!(location.starts_with("https://b.example/"), "{location}");
            b.push(id);
        }
    }
    (a, b)
}

pub fn share(a: usize, b: usize) -> f64 {
    a as f64 / (a + b) as f64
}

/// Sends small batches of clicks until one goes mostly (≥ 85%) to offer-a, for up to 30 s: far
/// longer than the few hundred milliseconds learning takes, so a slow machine does not fail it.
pub async fn until_offer_a_leads(app: &TestApp) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let (a, b) = clicks(app, 40).await;
        if share(a.len(), b.len()) >= 0.85 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// 200 residual clicks split about evenly, then approved conversions worth 2.00 for a quarter of
/// offer-a's clicks, a second or so after their clicks; waits until the allocation follows.
async fn teach(app: &TestApp) {
    let (a, b) = clicks(app, 200).await;
    let before = share(a.len(), b.len());
    // Equal weights and payouts: 200 draws stay within ±0.2 of an even split.
    assert!(
        (before - 0.5).abs() < 0.2,
        "offer-a share before learning: {before}"
    );
    for (i, id) in a.iter().step_by(4).enumerate() {
        let (status, body) = app
            .postback(&format!(
                "clickid={id}&payout=2.00&txid=t{i}&status=approved"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"], "recorded", "{body}");
    }
    assert!(
        until_offer_a_leads(app).await,
        "offer-a never took most residual traffic"
    );
}

#[tokio::test]
async fn the_share_of_the_offer_that_earns_rises_within_seconds() {
    let app = spawn_learning_app(None).await;
    teach(&app).await;
    let (a, b) = clicks(&app, 200).await;
    let after = share(a.len(), b.len());
    assert!(after > 0.75, "offer-a share after learning: {after}");

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("smartlink_bandit_events_dropped_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE smartlink_bandit_recompute_seconds histogram"),
        "{metrics}"
    );
    let recomputes = metrics
        .lines()
        .find_map(|line| line.strip_prefix("smartlink_bandit_recompute_seconds_count "))
        .and_then(|count| count.parse::<u64>().ok())
        .expect("recompute count");
    assert!(recomputes > 0, "{metrics}");
}

#[tokio::test]
async fn a_chargeback_of_every_conversion_takes_the_lead_away_again() {
    let app = spawn_learning_app(None).await;
    let (a, b) = clicks(&app, 200).await;
    assert!((share(a.len(), b.len()) - 0.5).abs() < 0.2);
    let converted: Vec<&String> = a.iter().step_by(4).collect();
    for id in &converted {
        let (status, _) = app
            .postback(&format!("clickid={id}&payout=2.00&status=approved"))
            .await;
        assert_eq!(status, 200);
    }
    assert!(until_offer_a_leads(&app).await);
    for id in &converted {
        let (status, body) = app
            .postback(&format!("clickid={id}&status=chargeback"))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["result"], "updated", "{body}");
    }
    // Without its revenue offer-a has more clicks and no more earnings than offer-b: it must
    // lose the lead it had.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = 1.0;
    while Instant::now() < deadline {
        let (a, b) = clicks(&app, 40).await;
        last = share(a.len(), b.len());
        if last <= 0.6 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("offer-a kept the lead after every conversion was charged back: {last}");
}

#[tokio::test]
async fn a_restarted_server_starts_from_what_it_learnt() {
    let first = spawn_learning_app(None).await;
    teach(&first).await;
    first.handle.stop(true).await;

    // No conversion reaches the second server: only the replayed history can favour offer-a.
    let second = spawn_learning_app(Some(&first)).await;
    assert!(
        until_offer_a_leads(&second).await,
        "the restarted server did not favour offer-a"
    );
    let (a, b) = clicks(&second, 200).await;
    let after = share(a.len(), b.len());
    assert!(after > 0.75, "offer-a share after the restart: {after}");
}

#[tokio::test]
async fn explain_shows_the_allocation_learnt_by_a_running_server() {
    if sqlite_only(
        "explain_shows_the_allocation_learnt_by_a_running_server",
        "explain reads the learnt allocation from a SQLite file only",
    ) {
        return;
    }
    let app = spawn_learning_app(None).await;
    teach(&app).await;
    let config = app._dir.path().join("explain.toml");
    std::fs::write(
        &config,
        format!(
            "rules_dir = {:?}\n[store]\npath = {:?}\n",
            app.rules_dir.to_str().unwrap(),
            store_path(&app).to_str().unwrap()
        ),
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        smartlink_command()
            .args([
                "explain",
                "--config",
                config.to_str().unwrap(),
                "--campaign",
                "learn",
                "--ip",
                TELEKOM_DE_IP,
                "--ua",
                WINDOWS_CHROME,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("SMARTLINK_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["fallback"][0]["offer"], "offer-a", "{json}");
    let share_a = json["fallback"][0]["share"].as_f64().unwrap();
    assert!(share_a > 0.75, "{json}");
    assert_eq!(json["decision"]["offer"], "offer-a", "{json}");
}
