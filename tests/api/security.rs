//! Abuse and secrets: the postback IP allow-list per source, per-address rate limits, and logs
//! that never carry the admin token or the postback secret.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::*;

fn allow_postbacks_from(nets: &'static str) -> impl FnOnce(&Path) {
    move |rules: &Path| {
        let path = rules.join("sources.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replacen(
            "postback_statuses = [\"approved\"]",
            &format!("postback_statuses = [\"approved\"]\npostback_ips = {nets}"),
            1,
        );
        std::fs::write(&path, text).unwrap();
    }
}

/// A click's id, whichever fallback offer (and so whichever parameter name) it went to.
async fn click_of(app: &TestApp, campaign: &str, query: &str) -> String {
    let response = app
        .click(campaign, query, TELEKOM_DE_IP, IPHONE_SAFARI)
        .await;
    let location = location(&response);
    ["cid", "click", "c", "sub1", "sub"]
        .iter()
        .find_map(|name| query_param(&location, name))
        .unwrap_or_else(|| panic!("no click id in {location}"))
}

async fn postback_from(app: &TestApp, ip: &str, query: &str) -> (u16, serde_json::Value) {
    let response = app
        .client
        .get(format!("{}/postback?{query}", app.address))
        .header("X-Forwarded-For", ip)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_postback_from_outside_its_sources_allow_list_is_refused_with_403() {
    let app = spawn_app_with_rules(
        |_| {},
        allow_postbacks_from("[\"192.0.2.0/24\", \"2001:db8::1\"]"),
    )
    .await;
    // us-android's source (adsterra) has the list; split's (propeller) has none.
    let listed = click_of(&app, "us-android", "clickid=e1").await;
    let (status, body) = postback_from(&app, "203.0.113.9", &format!("clickid={listed}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("ip_not_allowed")),
        "{body}"
    );
    let (status, body) = postback_from(&app, "192.0.2.77", &format!("clickid={listed}")).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("recorded")),
        "{body}"
    );
    let (status, _) = postback_from(&app, "2001:db8::1", &format!("clickid={listed}&txid=2")).await;
    assert_eq!(status, 200);
    // The address is read behind trusted proxies only: from an untrusted peer the header is
    // ignored and the peer itself (127.0.0.1 is trusted in tests, so use no header) is checked.
    let (status, _) = app.postback(&format!("clickid={listed}&txid=3")).await;
    assert_eq!(status, 403);

    let open = click_of(&app, "split", "subid=e2").await;
    let (status, _) = postback_from(&app, "203.0.113.9", &format!("clickid={open}")).await;
    assert_eq!(status, 200);

    // The admin API shows the list as the TOML has it.
    let source: serde_json::Value = app.api("/api/sources/adsterra").await.json().await.unwrap();
    let text = source.to_string();
    assert!(
        text.contains("192.0.2.0/24") && text.contains("2001:db8::1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_malformed_postback_allow_list_is_refused_through_the_admin_api() {
    let app = spawn_app().await;
    let response = app
        .client
        .put(format!("{}/api/sources/adsterra", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"id": "adsterra", "postback_ips": ["10.0.0.0/33"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let text = response.text().await.unwrap();
    assert!(text.contains("postback_ips"), "{text}");
    let response = app
        .client
        .put(format!("{}/api/sources/adsterra", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"id": "adsterra", "postback_ips": ["10.0.0.0/8"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn an_address_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let app = spawn_app_with(|config| {
        config.limits.postback_per_second = 3;
        config.limits.api_per_second = 2;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, body) = postback_from(&app, "203.0.113.5", "clickid=nope").await;
        statuses.push(status);
        if status == 429 {
            assert_eq!(body["error"], "rate_limited");
        }
    }
    assert_eq!(&statuses[..3], [404, 404, 404]);
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    // The pixel shares the postback budget.
    let response = app
        .client
        .get(format!("{}/pixel.gif?clickid=nope", app.address))
        .header("X-Forwarded-For", "203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1).contains(&retry));
    // Another address has its own budget; clicks are never limited.
    let (status, _) = postback_from(&app, "203.0.113.6", "clickid=nope").await;
    assert_eq!(status, 404);
    for _ in 0..20 {
        let response = app
            .click("us-android", "", "203.0.113.5", IPHONE_SAFARI)
            .await;
        assert_eq!(response.status(), 302);
    }
    // The API budget, from the test's own address.
    let mut api = Vec::new();
    for _ in 0..5 {
        api.push(app.api("/api/rules").await.status().as_u16());
    }
    assert_eq!(&api[..2], [200, 200]);
    assert!(api[2..].contains(&429), "{api:?}");
    // Refilled after a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.api("/api/rules").await.status(), 200);
}

#[tokio::test]
async fn the_admin_token_and_postback_secret_never_appear_in_the_logs() {
    if sqlite_only(
        "the_admin_token_and_postback_secret_never_appear_in_the_logs",
        "runs the binary on a SQLite file",
    ) {
        return;
    }
    const TOKEN: &str = "tok-9f8e7d6c5b4a39281706";
    const SECRET: &str = "sec-0a1b2c3d4e5f60718293";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("smartlink.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nrules_dir = {:?}\nvar_dir = {:?}\nlog = \"debug\"\n\
             trusted_proxies = [\"127.0.0.1/32\"]\n[store]\npath = {:?}\n",
            fixture_rules().to_str().unwrap(),
            dir.path().join("var").to_str().unwrap(),
            dir.path().join("db.sqlite").to_str().unwrap(),
        ),
    )
    .unwrap();
    let mut child = smartlink_command()
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("SMARTLINK_ADMIN_TOKEN", TOKEN)
        .env("SMARTLINK_POSTBACK_SECRET", SECRET)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(Vec::<String>::new()));
    let stdout = child.stdout.take().unwrap();
    let seen = logs.clone();
    let stdout_reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            seen.lock().unwrap().push(line);
        }
    });
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let port = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited early"
        );
        logs.lock().unwrap().push(line.clone());
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
            if event["fields"]["message"] == "listening" {
                break event["fields"]["port"].as_u64().unwrap() as u16;
            }
        }
    };
    let seen = logs.clone();
    let stderr_reader = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            seen.lock().unwrap().push(line);
        }
    });

    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let click = http
        .get(format!("{base}/c/us-android?clickid=x1"))
        .header("X-Forwarded-For", TELEKOM_DE_IP)
        .header("User-Agent", IPHONE_SAFARI)
        .send()
        .await
        .unwrap();
    let click = query_param(&location(&click), "cid").unwrap();
    let requests = [
        format!("{base}/postback/{SECRET}?clickid={click}"),
        format!("{base}/postback/{SECRET}?clickid=unknown-click"),
        format!("{base}/postback/{SECRET}?clickid={{aff_sub}}"),
        format!("{base}/postback?clickid={click}&txid=2&secret={SECRET}"),
        format!("{base}/postback?clickid=unknown&key={SECRET}&payout=abc"),
        format!("{base}/postback/{SECRET}x?clickid={click}"),
        format!("{base}/postback?clickid={click}&secret={SECRET}{SECRET}"),
        format!("{base}/pixel.gif?clickid=nope&secret={SECRET}"),
    ];
    for url in &requests {
        let response = http.get(url).send().await.unwrap();
        assert!(response.status().as_u16() < 500);
    }
    for token in [TOKEN, "wrong-token", &format!("{TOKEN}x")] {
        let response = http
            .get(format!("{base}/api/rules"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(response.status().as_u16() < 500);
        let response = http
            .post(format!("{base}/login"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert!(response.status().as_u16() < 500);
    }
    // Stop with SIGTERM, so the shutdown lines are in the logs too.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success());
    stdout_reader.join().unwrap();
    stderr_reader.join().unwrap();

    let logs = logs.lock().unwrap();
    assert!(logs.len() > 5, "{logs:?}");
    assert!(
        logs.iter().any(|line| line.contains("conversion refused")),
        "refusals are logged: {logs:?}"
    );
    for line in logs.iter() {
        assert!(!line.contains(TOKEN), "admin token in the logs: {line}");
        assert!(
            !line.contains(SECRET),
            "postback secret in the logs: {line}"
        );
    }
}

#[tokio::test]
async fn a_percent_encoded_path_draws_on_the_same_budget() {
    let app = spawn_app_with(|config| {
        config.limits.api_per_second = 1;
        config.limits.postback_per_second = 1;
    })
    .await;
    let mut statuses = Vec::new();
    for path in [
        "/api/rules",
        "/%61pi/rules",
        "/api%2Frules",
        "/%61%70%69/rules",
    ] {
        statuses.push(app.api(path).await.status().as_u16());
    }
    assert_eq!(statuses[0], 200);
    assert!(
        statuses[1..].iter().all(|s| *s == 429 || *s == 404),
        "{statuses:?}"
    );
    let mut statuses = Vec::new();
    for path in [
        "/postback?clickid=x",
        "/p%6fstback?clickid=x",
        "/pixel%2Egif?clickid=x",
    ] {
        statuses.push(app.get(path).await.status().as_u16());
    }
    assert_eq!(statuses[0], 404);
    assert!(statuses[1..].iter().all(|s| *s == 429), "{statuses:?}");
}
