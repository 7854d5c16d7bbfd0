//! SPEC §13 admin API and the §12 dashboard login: rules read and changed over HTTP, validated
//! as a whole, written to `rules_dir` and in force before the answer.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

impl TestApp {
    /// A request with the bearer token.
    fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
    }

    async fn put_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .admin(reqwest::Method::PUT, path)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn rules(&self) -> Value {
        let response = self.api("/api/rules").await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    fn read_rule_file(&self, name: &str) -> String {
        std::fs::read_to_string(self.rules_dir.join(name)).unwrap()
    }

    /// Logs in through the form; the session cookie as `name=value`.
    async fn login(&self) -> String {
        let response = self
            .client
            .post(format!("{}/login", self.address))
            .form(&[("token", ADMIN_TOKEN)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        let cookie = response.headers()["set-cookie"].to_str().unwrap();
        cookie.split(';').next().unwrap().to_string()
    }
}

fn find<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|item| item["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {list}"))
}

/// The `split` campaign as the API shows it, with new weights for its two fallbacks.
async fn split_with_weights(app: &TestApp, dating: f64, vpn: f64) -> Value {
    let mut campaign = app
        .api("/api/campaigns/split")
        .await
        .json::<Value>()
        .await
        .unwrap()["campaign"]
        .clone();
    campaign["fallback"][0]["weight"] = json!(dating);
    campaign["fallback"][1]["weight"] = json!(vpn);
    campaign
}

#[tokio::test]
async fn every_admin_endpoint_refuses_a_request_without_the_token() {
    let app = spawn_app().await;
    for path in [
        "/api/rules",
        "/api/offers/vpn-any",
        "/api/campaigns/split",
        "/api/explain?campaign=split&ip=79.192.10.20",
        "/api/allocation",
        "/api/openapi.json",
        "/api/report",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 401, "{path}");
    }
    let put = app
        .client
        .put(format!("{}/api/offers/vpn-any", app.address))
        .bearer_auth("wrong-token")
        .json(&json!({"url": "https://x.example/", "payout": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 401);
    let delete = app
        .client
        .delete(format!("{}/api/campaigns/split", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 401);
    assert!(app.rules_dir.join("campaigns/split.toml").exists());
}

#[tokio::test]
async fn get_rules_shows_every_rule_as_its_toml_with_the_version_as_etag() {
    let app = spawn_app().await;
    let response = app.api("/api/rules").await;
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let rules: Value = response.json().await.unwrap();
    let version = rules["version"].as_str().unwrap();
    assert_eq!(etag, format!("\"{version}\""));
    assert_eq!(rules["offers"].as_array().unwrap().len(), 6);
    assert_eq!(rules["sources"].as_array().unwrap().len(), 2);
    assert_eq!(rules["campaigns"].as_array().unwrap().len(), 7);
    let sweeps = find(&rules["offers"], "sweeps-us");
    assert_eq!(sweeps["payout"], 2.5);
    assert_eq!(sweeps["match"]["country"], json!(["US"]));
    let campaign = find(&rules["campaigns"], "us-android");
    assert_eq!(campaign["primary"][0]["offer"], "sweeps-us");
    assert_eq!(
        campaign["primary"][0]["exclude"]["connection"],
        json!(["broadband"])
    );
    assert_eq!(campaign["fallback"][0]["weight"], 2.0);
    assert_eq!(
        campaign["fallback"][1]["match"]["device"],
        json!(["desktop"])
    );

    let one = app.api("/api/offers/sweeps-us").await;
    assert_eq!(one.status(), 200);
    let one: Value = one.json().await.unwrap();
    assert_eq!(one["version"], version);
    assert_eq!(&one["offer"], sweeps);
    assert_eq!(app.api("/api/offers/no-such-offer").await.status(), 404);
}

#[tokio::test]
async fn a_weight_put_through_the_api_is_in_force_and_on_disk_before_the_answer() {
    let app = spawn_app().await;
    let before = app.rules().await["version"].clone();
    let campaign = split_with_weights(&app, 0.001, 1000.0).await;
    let (status, body) = app.put_json("/api/campaigns/split", &campaign).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["version"], before);
    assert_eq!(body["campaign"]["fallback"][1]["weight"], 1000.0);
    assert_eq!(body["file"], "campaigns/split.toml");

    // In force at once: explain and real clicks follow the new weights.
    let explained: Value = app
        .api(&format!(
            "/api/explain?campaign=split&ip={TELEKOM_DE_IP}&ua={}",
            urlencode(WINDOWS_CHROME)
        ))
        .await
        .json()
        .await
        .unwrap();
    let vpn = explained["fallback"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["offer"] == "vpn-any")
        .unwrap();
    assert!(vpn["share"].as_f64().unwrap() > 0.99, "{explained}");
    assert_eq!(explained["decision"]["offer"], "vpn-any");
    let mut to_vpn = 0;
    for _ in 0..20 {
        let response = app.click("split", "", TELEKOM_DE_IP, WINDOWS_CHROME).await;
        if location(&response).starts_with("https://vpn.example/") {
            to_vpn += 1;
        }
    }
    assert!(to_vpn >= 19, "{to_vpn} of 20 to vpn-any");

    // On disk, in the campaign's own file, and the same version the files hash to.
    let text = app.read_rule_file("campaigns/split.toml");
    assert!(text.contains("weight = 1000.0"), "{text}");
    assert!(text.contains("weight = 0.001"), "{text}");
    let rules = app.rules().await;
    assert_eq!(rules["version"], body["version"]);
    assert_eq!(
        smartlink::rules::load(&app.rules_dir).unwrap().version,
        body["version"].as_str().unwrap()
    );

    // The file watcher sees its own content in force: nothing is reloaded.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.rules().await["version"], body["version"]);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("smartlink_rules_reloads_total 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn put_creates_a_new_offer_with_201_and_keeps_the_others() {
    let app = spawn_app().await;
    let (status, body) = app
        .put_json(
            "/api/offers/new-offer",
            &json!({"url": "https://new.example/?c={clickid}", "payout": 4.5,
                    "match": {"country": ["de", "AT"]}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["offer"]["id"], "new-offer");
    assert_eq!(body["offer"]["match"]["country"], json!(["DE", "AT"]));
    assert_eq!(body["offer"]["currency"], "USD");
    let rules = app.rules().await;
    assert_eq!(rules["offers"].as_array().unwrap().len(), 7);
    assert_eq!(find(&rules["offers"], "capped-offer")["daily_cap"], 1);
    let text = app.read_rule_file("offers.toml");
    assert!(text.contains("id = \"new-offer\""), "{text}");
    assert!(text.starts_with('#'), "{text}");

    // Usable at once by a campaign.
    let (status, body) = app
        .put_json(
            "/api/campaigns/fresh",
            &json!({"source": "adsterra", "backlink": "https://b.example/",
                    "fallback": [{"offer": "new-offer", "weight": 1}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(app.rules_dir.join("campaigns/fresh.toml").exists());
    let response = app.click("fresh", "", TELEKOM_DE_IP, WINDOWS_CHROME).await;
    assert!(location(&response).starts_with("https://new.example/"));
}

#[tokio::test]
async fn an_invalid_put_is_refused_with_every_error_and_nothing_changes() {
    let app = spawn_app().await;
    let before = app.rules().await["version"].clone();
    let offers_before = app.read_rule_file("offers.toml");
    let (status, body) = app
        .put_json(
            "/api/offers/vpn-any",
            &json!({"id": "someone-else", "url": "ftp://vpn.example/", "payout": 1,
                    "colour": "red", "match": {"country": ["XX"], "planet": ["mars"]}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "invalid_rules");
    let errors = body["errors"].as_array().unwrap();
    let fields: Vec<&str> = errors
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in ["id", "url", "colour", "match.country", "match.planet"] {
        assert!(fields.contains(&field), "{field} missing in {body}");
    }
    assert!(errors
        .iter()
        .all(|e| e["file"] == "offers.toml" && e["message"].is_string()));
    assert!(errors
        .iter()
        .filter(|e| e["field"] != "id")
        .all(|e| e["line"].is_u64()));

    // A campaign naming an unknown offer and a weight of 0.
    let (status, body) = app
        .put_json(
            "/api/campaigns/split",
            &json!({"source": "nobody", "backlink": "https://b.example/",
                    "fallback": [{"offer": "ghost", "weight": 0}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"].as_array().unwrap().len(), 3, "{body}");

    assert_eq!(app.rules().await["version"], before);
    assert_eq!(app.read_rule_file("offers.toml"), offers_before);
    let response = app.click("split", "", TELEKOM_DE_IP, WINDOWS_CHROME).await;
    assert_eq!(response.status(), 302);

    // Not JSON at all.
    let response = app
        .admin(reqwest::Method::PUT, "/api/offers/vpn-any")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn deleting_an_offer_or_source_a_campaign_uses_is_a_conflict() {
    let app = spawn_app().await;
    let before = app.read_rule_file("offers.toml");
    let response = app
        .admin(reqwest::Method::DELETE, "/api/offers/dating-global")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "offer_in_use");
    assert_eq!(
        body["campaigns"],
        json!(["capped", "paused-primary", "split", "us-android"])
    );
    assert_eq!(app.read_rule_file("offers.toml"), before);

    let response = app
        .admin(reqwest::Method::DELETE, "/api/sources/propeller")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "source_in_use");
    assert_eq!(body["campaigns"], json!(["euro", "split"]));

    // Once no campaign uses it, it goes.
    let response = app
        .admin(reqwest::Method::DELETE, "/api/campaigns/euro")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!app.rules_dir.join("campaigns/euro.toml").exists());
    let response = app
        .admin(reqwest::Method::DELETE, "/api/offers/euro-offer")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!app.read_rule_file("offers.toml").contains("euro-offer"));
    let response = app
        .admin(reqwest::Method::DELETE, "/api/offers/euro-offer")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_stale_if_match_is_refused_with_412_and_the_current_one_accepted() {
    let app = spawn_app().await;
    let version = app.rules().await["version"].as_str().unwrap().to_string();
    let first = split_with_weights(&app, 3.0, 1.0).await;
    let response = app
        .admin(reqwest::Method::PUT, "/api/campaigns/split")
        .header("If-Match", format!("\"{version}\""))
        .json(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Someone else's edit based on the old version.
    let second = split_with_weights(&app, 1.0, 3.0).await;
    let response = app
        .admin(reqwest::Method::PUT, "/api/campaigns/split")
        .header("If-Match", version.as_str())
        .json(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 412);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "version_mismatch");
    let rules = app.rules().await;
    assert_eq!(body["version"], rules["version"]);
    assert_eq!(
        find(&rules["campaigns"], "split")["fallback"][0]["weight"],
        3.0
    );
    let response = app
        .admin(reqwest::Method::DELETE, "/api/campaigns/meta")
        .header("If-Match", "0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 412);
    assert!(app.rules_dir.join("campaigns/meta.toml").exists());
}

#[tokio::test]
async fn concurrent_changes_are_applied_one_after_the_other_and_none_is_lost() {
    let app = spawn_app().await;
    let puts = (0..8).map(|i| {
        let app = &app;
        async move {
            app.put_json(
                &format!("/api/offers/parallel-{i}"),
                &json!({"url": format!("https://p{i}.example/"), "payout": 1}),
            )
            .await
        }
    });
    for (status, body) in futures_util::future::join_all(puts).await {
        assert_eq!(status, 201, "{body}");
    }
    let rules = app.rules().await;
    assert_eq!(rules["offers"].as_array().unwrap().len(), 6 + 8);
    let on_disk = smartlink::rules::load(&app.rules_dir).unwrap();
    assert_eq!(on_disk.offers.len(), 6 + 8);
    assert_eq!(on_disk.version, rules["version"].as_str().unwrap());
}

#[tokio::test]
async fn ids_that_could_leave_the_rules_directory_are_refused() {
    let app = spawn_app().await;
    for path in [
        "/api/campaigns/..%2F..%2Fescape",
        "/api/campaigns/%2E%2E",
        "/api/campaigns/Upper",
        "/api/offers/a.b",
        "/api/sources/x%00y",
    ] {
        let response = app
            .admin(reqwest::Method::PUT, path)
            .json(&json!({"source": "adsterra", "backlink": "https://b.example/"}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            (400..500).contains(&status) && status != 422,
            "{path}: {status}"
        );
    }
    let long = "a".repeat(65);
    let response = app
        .admin(reqwest::Method::GET, &format!("/api/campaigns/{long}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(!app.rules_dir.parent().unwrap().join("escape.toml").exists());
    let names: Vec<_> = std::fs::read_dir(app.rules_dir.join("campaigns"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
}

#[tokio::test]
async fn explain_over_the_api_is_what_the_cli_prints() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("smartlink.toml");
    std::fs::write(
        &config,
        format!(
            "rules_dir = {:?}\n[store]\npath = {:?}\n",
            app.rules_dir.to_str().unwrap(),
            dir.path().join("none.db").to_str().unwrap()
        ),
    )
    .unwrap();
    for (campaign, ip, ua, lang) in [
        ("us-android", TMOBILE_US_IP, ANDROID_CHROME, "en-US"),
        ("us-android", TELEKOM_DE_IP, IPHONE_SAFARI, "de-DE"),
        ("split", COMCAST_US_IP, WINDOWS_CHROME, "en"),
        ("us-android", AWS_IP, GOOGLEBOT, "en"),
    ] {
        let output = smartlink_command()
            .args(["--config", config.to_str().unwrap(), "explain"])
            .args([
                "--campaign",
                campaign,
                "--ip",
                ip,
                "--ua",
                ua,
                "--lang",
                lang,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("SMARTLINK_CONFIG")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let cli: Value = serde_json::from_slice(&output.stdout).unwrap();
        let response = app
            .api(&format!(
                "/api/explain?campaign={campaign}&ip={ip}&ua={}&lang={lang}",
                urlencode(ua)
            ))
            .await;
        assert_eq!(response.status(), 200);
        let api: Value = response.json().await.unwrap();
        assert_eq!(api, cli, "{campaign} {ip}");
    }
    assert_eq!(app.api("/api/explain?campaign=split").await.status(), 400);
    assert_eq!(
        app.api("/api/explain?campaign=split&ip=not-an-ip")
            .await
            .status(),
        400
    );
    assert_eq!(
        app.api("/api/explain?campaign=nope&ip=1.2.3.4")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn allocation_shows_each_campaigns_fallback_shares() {
    let app = spawn_app().await;
    let response = app.api("/api/allocation?campaign=split").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let split = &body["campaigns"][0];
    assert_eq!(split["campaign"], "split");
    assert_eq!(split["offers"], json!(["dating-global", "vpn-any"]));
    let weights: Vec<f64> = split["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_f64().unwrap())
        .collect();
    assert!((weights[0] - 2.0 / 3.0).abs() < 1e-9, "{body}");
    assert!(split["segments"].is_array());
    let all: Value = app.api("/api/allocation").await.json().await.unwrap();
    assert_eq!(all["campaigns"].as_array().unwrap().len(), 7);
    assert_eq!(app.api("/api/allocation?campaign=nope").await.status(), 404);
}

#[tokio::test]
async fn allocation_names_the_segments_the_optimiser_learnt_from() {
    let app = spawn_app_with(|config| config.bandit.refresh_ms = 100).await;
    let mut converted = 0;
    for _ in 0..12 {
        let response = app.click("split", "", TELEKOM_DE_IP, IPHONE_SAFARI).await;
        if let Some(id) = query_param(&location(&response), "cid") {
            if converted < 4 {
                let (status, body) = app.postback(&format!("clickid={id}&payout=2")).await;
                assert_eq!(status, 200, "{body}");
                converted += 1;
            }
        }
    }
    assert!(converted > 0, "no click went to dating-global");
    let mut body = Value::Null;
    for _ in 0..100 {
        body = app
            .api("/api/allocation?campaign=split")
            .await
            .json()
            .await
            .unwrap();
        if body["campaigns"][0]["segments"]
            .as_array()
            .is_some_and(|s| s.len() > 1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let split = &body["campaigns"][0];
    assert_eq!(split["learnt"], true, "{body}");
    let segments = split["segments"].as_array().unwrap();
    assert_eq!(segments[0]["segment"], "all visitors", "{body}");
    assert_eq!(segments[0]["level"], 0);
    let germany = segments
        .iter()
        .find(|s| s["segment"] == "DE")
        .unwrap_or_else(|| panic!("no DE segment in {body}"));
    assert_eq!(germany["country"], "DE");
    assert!(germany["device"].is_null());
    for segment in segments {
        let shares = segment["shares"].as_array().unwrap();
        assert_eq!(shares.len(), 2);
        let sum: f64 = shares.iter().map(|s| s.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-6, "{segment}");
    }
    assert!(
        segments.iter().any(|s| s["level"] == 3 && s["os"] == "iOS"),
        "{body}"
    );
}

#[tokio::test]
async fn the_login_form_sets_an_http_only_session_cookie_that_opens_the_api() {
    let app = spawn_app().await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("action=\"/login\"") && html.contains("name=\"token\""));

    let response = app
        .client
        .post(format!("{}/login", app.address))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/");
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/"), "{set_cookie}");
    assert!(!set_cookie.contains(ADMIN_TOKEN), "{set_cookie}");
    let cookie = app.login().await;

    let with_cookie = |method, path: &str| {
        app.client
            .request(method, format!("{}{path}", app.address))
            .header("Cookie", &cookie)
    };
    let dashboard = with_cookie(reqwest::Method::GET, "/").send().await.unwrap();
    assert_eq!(dashboard.status(), 200);
    let html = dashboard.text().await.unwrap();
    assert!(html.contains("/assets/app.js"), "{html}");
    assert!(!html.contains("<script>"), "no inline script");
    let rules = with_cookie(reqwest::Method::GET, "/api/rules")
        .send()
        .await
        .unwrap();
    assert_eq!(rules.status(), 200);
    let report = with_cookie(reqwest::Method::GET, "/api/report?group_by=offer")
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 200);

    // A change with the cookie alone needs the same-origin header.
    let campaign = split_with_weights(&app, 5.0, 1.0).await;
    let forged = with_cookie(reqwest::Method::PUT, "/api/campaigns/split")
        .json(&campaign)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let cross_site = with_cookie(reqwest::Method::PUT, "/api/campaigns/split")
        .header("X-Requested-With", "smartlink")
        .header("Origin", "https://evil.example")
        .json(&campaign)
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    let same_site = with_cookie(reqwest::Method::PUT, "/api/campaigns/split")
        .header("X-Requested-With", "smartlink")
        .header("Origin", &app.address)
        .json(&campaign)
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), 200);

    // Logging out ends the session.
    let response = with_cookie(reqwest::Method::POST, "/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let after = with_cookie(reqwest::Method::GET, "/api/rules")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
}

#[tokio::test]
async fn a_wrong_token_at_login_is_401_with_the_form_again() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/login", app.address))
        .form(&[("token", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("set-cookie").is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("name=\"token\""));
    assert!(html.contains("login-error"));
    let forged = app
        .client
        .get(format!("{}/api/rules", app.address))
        .header("Cookie", "smartlink_session=0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}

#[tokio::test]
async fn the_dashboard_assets_are_served_from_the_binary_with_their_types() {
    let app = spawn_app().await;
    for (path, kind) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        let text = response.text().await.unwrap();
        assert!(!text.is_empty());
        // Nothing is loaded from anywhere else.
        assert!(!text.contains("https://"), "{path} names an outside URL");
    }
}

#[tokio::test]
async fn the_openapi_description_names_every_route_in_the_route_table() {
    let app = spawn_app().await;
    let response = app.api("/api/openapi.json").await;
    assert_eq!(response.status(), 200);
    let spec: Value = response.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.0"));
    let paths = spec["paths"].as_object().unwrap();
    let table = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/mod.rs"),
    )
    .unwrap();
    let literal = regex::Regex::new(r#""(/[^"\s]*)""#).unwrap();
    let mut routes = Vec::new();
    for found in literal.captures_iter(&table) {
        let route = &found[1];
        match route.split_once("{kind:") {
            Some((head, tail)) => {
                let (kinds, rest) = tail.split_once('}').unwrap();
                for kind in kinds.split('|') {
                    routes.push(format!("{head}{kind}{rest}"));
                }
            }
            None => routes.push(route.to_string()),
        }
    }
    assert!(routes.len() >= 20, "{routes:?}");
    for route in &routes {
        assert!(paths.contains_key(route), "{route} is not in openapi.json");
    }
    // The limits' answers (README "Limits") are described wherever they can occur.
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let Some(responses) = operation.get("responses") else {
                continue;
            };
            assert!(responses.get("414").is_some(), "{method} {path}: no 414");
            if path.starts_with("/api") || path.starts_with("/postback") {
                assert!(responses.get("429").is_some(), "{method} {path}: no 429");
            }
            if path.starts_with("/postback") && method == "post" {
                assert!(responses.get("413").is_some(), "{method} {path}: no 413");
            }
        }
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
