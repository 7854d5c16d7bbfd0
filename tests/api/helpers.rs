//! `spawn_app`: a real server on port 0 with its own rules directory and store, plus a client that
//! does not follow redirects so `302` and `Location` can be asserted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use smartlink::app::Application;
use smartlink::config::{Config, Settings, StoreConfig, StoreKind, StoreUrl};
use smartlink::store::redis::server::LocalRedis;
use smartlink::store::{ClickRecord, Store};

pub const IPHONE_SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1";
pub const ANDROID_CHROME: &str = "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36";
pub const WINDOWS_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
pub const GOOGLEBOT: &str =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// T-Mobile US mobile network (AS21928).
pub const TMOBILE_US_IP: &str = "172.58.100.20";
/// Comcast residential broadband, US.
pub const COMCAST_US_IP: &str = "73.162.10.20";
/// Deutsche Telekom broadband, Germany.
pub const TELEKOM_DE_IP: &str = "79.192.10.20";
/// Amazon EC2, us-east-1.
pub const AWS_IP: &str = "3.80.10.20";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    /// The store settings it runs with; another app given the same shares its store.
    pub store_config: StoreConfig,
    /// The private Redis this app started, in redis mode.
    pub _redis: Option<Arc<LocalRedis>>,
    pub rules_dir: PathBuf,
    pub handle: ServerHandle,
    pub _dir: tempfile::TempDir,
}

/// The suite runs against SQLite, and against Redis with `SLTEST_STORE=redis`.
pub fn redis_mode() -> bool {
    std::env::var("SLTEST_STORE").is_ok_and(|store| store == "redis")
}

/// Whether a test that needs `redis-server` may run; when it is missing, says so loudly and
/// answers false, unless `SLTEST_REQUIRE_REDIS=1` makes that a failure.
pub fn redis_available(test: &str) -> bool {
    if smartlink::store::redis::server::available() {
        return true;
    }
    assert!(
        std::env::var("SLTEST_REQUIRE_REDIS").map_or(true, |v| v != "1"),
        "{test}: redis-server is not on PATH and SLTEST_REQUIRE_REDIS=1"
    );
    eprintln!("\n!!! SKIPPED {test}: redis-server is not on PATH (apt-get install redis-server)\n");
    false
}

/// Ends a SQLite-only test early in redis mode, saying why.
pub fn sqlite_only(test: &str, reason: &str) -> bool {
    if redis_mode() {
        eprintln!("skipped in redis mode: {test}: {reason}");
        return true;
    }
    false
}

/// A private Redis for one test.
pub fn start_redis() -> Arc<LocalRedis> {
    Arc::new(LocalRedis::start().expect("redis-server starts"))
}

/// Settings that make an app use `redis`.
pub fn use_redis(config: &mut Config, redis: &LocalRedis) {
    config.store.kind = StoreKind::Redis;
    config.store.url = StoreUrl::One(redis.url());
}

pub fn fixture_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules")
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server with the test rules, the shipped data, a store in a temporary directory, and
/// 127.0.0.1 as a trusted proxy so tests choose the visitor's address with `X-Forwarded-For`.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_rules(adjust, |_| {}).await
}

/// The admin token every test server is started with.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Like `spawn_app_with`, and `edit_rules` may change the copied rule files before start.
pub async fn spawn_app_with_rules(
    adjust: impl FnOnce(&mut Config),
    edit_rules: impl FnOnce(&Path),
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    copy_dir(&fixture_rules(), &rules_dir);
    edit_rules(&rules_dir);
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        rules_dir: rules_dir.clone(),
        data_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("data"),
        var_dir: dir.path().join("var"),
        trusted_proxies: vec!["127.0.0.1/32".into()],
        admin_token: ADMIN_TOKEN.into(),
        ..Config::default()
    };
    config.store.path = dir.path().join("var/smartlink.db");
    if redis_mode() {
        config.store.kind = StoreKind::Redis;
        config.store.url = StoreUrl::One(String::new());
    }
    adjust(&mut config);
    // In redis mode each app gets a Redis of its own, unless it was given one (a shared store).
    let mut redis = None;
    if config.store.kind == StoreKind::Redis && config.store.url.urls().is_empty() {
        let server = start_redis();
        use_redis(&mut config, &server);
        redis = Some(server);
    }
    let store_config = config.store.clone();
    let settings = Settings::validate(config, "test".into()).expect("valid test settings");
    let app = Application::build(settings).await.expect("server starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: client(),
        store,
        store_config,
        _redis: redis,
        rules_dir,
        handle,
        _dir: dir,
    }
}

impl TestApp {
    /// A click as a visitor at `ip` with User-Agent `ua` (via the trusted proxy header).
    pub async fn click(
        &self,
        campaign: &str,
        query: &str,
        ip: &str,
        ua: &str,
    ) -> reqwest::Response {
        self.client
            .get(format!("{}/c/{campaign}?{query}", self.address))
            .header("X-Forwarded-For", ip)
            .header("User-Agent", ua)
            .send()
            .await
            .expect("click answered")
    }

    /// A click that must be redirected; returns the click id (from `name` in the Location).
    pub async fn click_id(&self, campaign: &str, query: &str, name: &str) -> String {
        let response = self
            .click(campaign, query, TELEKOM_DE_IP, IPHONE_SAFARI)
            .await;
        query_param(&location(&response), name).expect("click id in the redirect")
    }

    /// `GET /postback?{query}`: the status and the JSON answer.
    pub async fn postback(&self, query: &str) -> (u16, serde_json::Value) {
        let response = self.get(&format!("/postback?{query}")).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    /// An admin API call with the bearer token.
    pub async fn api(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("answered")
    }

    /// The per-offer report for today (UTC) as JSON.
    pub async fn report(&self) -> serde_json::Value {
        let response = self.api("/api/report?group_by=offer").await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Polls `/api/postbacks?status=delivered` for up to 10 s until `count` deliveries are listed.
    pub async fn wait_for_deliveries(&self, count: usize) -> serde_json::Value {
        let mut delivered = serde_json::Value::Null;
        for _ in 0..100 {
            delivered = self
                .api("/api/postbacks?status=delivered")
                .await
                .json()
                .await
                .unwrap();
            if delivered["deliveries"].as_array().map_or(0, Vec::len) >= count {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        delivered
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("answered")
    }

    /// The stored click whose id is the `name` parameter of `location`.
    pub async fn stored_click(&self, location: &str, name: &str) -> ClickRecord {
        let id = query_param(location, name).expect("click id in the redirect");
        self.store
            .click(&id)
            .await
            .expect("store answers")
            .expect("click stored")
    }
}

/// An HTTP client that does not follow redirects, so `302` and `Location` can be asserted.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .expect("Location header")
        .to_str()
        .unwrap()
        .to_string()
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The report row of `offer`.
pub fn row<'a>(report: &'a serde_json::Value, offer: &str) -> &'a serde_json::Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["offer"] == offer)
        .unwrap_or_else(|| panic!("no row for {offer} in {report}"))
}

/// A local HTTP endpoint standing in for a traffic source's postback URL: it refuses the first
/// `refuse_first` requests with `500` and accepts the rest, keeping every request's path and query.
pub struct Receiver {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Requests up to this count are refused; change it to change the receiver's mind.
    pub refuse_first: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _handle: ServerHandle,
}

pub async fn start_receiver(refuse_first: usize) -> Receiver {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let refuse = std::sync::Arc::new(AtomicUsize::new(refuse_first));
    let seen = requests.clone();
    let limit = refuse.clone();
    let server = HttpServer::new(move || {
        let seen = seen.clone();
        let limit = limit.clone();
        App::new().default_service(web::to(move |req: HttpRequest| {
            let seen = seen.clone();
            let limit = limit.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                seen.push(req.uri().to_string());
                if seen.len() <= limit.load(Ordering::SeqCst) {
                    HttpResponse::InternalServerError().finish()
                } else {
                    HttpResponse::Ok().body("OK")
                }
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Receiver {
        url: format!("http://127.0.0.1:{port}"),
        requests,
        refuse_first: refuse,
        _handle: handle,
    }
}

/// The `smartlink` binary, without a `SMARTLINK_CONFIG` of the environment the suite runs in.
/// (The suite's own switches are named `SLTEST_*`, not `SMARTLINK_*`: the settings loader reads
/// every `SMARTLINK_*` variable as a setting and refuses unknown ones.)
pub fn smartlink_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_smartlink"));
    command.env_remove("SMARTLINK_CONFIG");
    command
}
