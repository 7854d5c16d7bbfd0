//! SPEC §15: `SIGTERM` stops accepting, answers what is in flight, flushes the store, exits 0.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use smartlink::config::Durability;
use smartlink::store::sqlite::SqliteStore;
use smartlink::store::{ReportCounters, ReportQuery, Store, TimeSpan};

use crate::helpers::*;

/// The server process; killed if a test fails before it ends it, so no server outlives its test.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// Sends `name` (e.g. `-TERM`) and waits for the exit.
    async fn stop_with(mut self, name: &str) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args([name, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::task::spawn_blocking(move || self.0.wait().unwrap())
            .await
            .unwrap()
    }
}

/// Runs the real binary with the test rules, a store at `db` and the given extra settings;
/// returns the child and the port it listens on (read from its "listening" log line).
fn spawn_binary(dir: &Path, db: &Path, extra: &str) -> (Server, u16) {
    spawn_binary_with(dir, db, extra, "", &fixture_rules())
}

/// `spawn_binary` with settings in `[store]` too (`store_extra`) and rules from `rules`.
fn spawn_binary_with(
    dir: &Path,
    db: &Path,
    extra: &str,
    store_extra: &str,
    rules: &Path,
) -> (Server, u16) {
    let config = dir.join("smartlink.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nrules_dir = {:?}\nvar_dir = {:?}\ntrusted_proxies = [\"127.0.0.1/32\"]\n{extra}\n[store]\npath = {:?}\n{store_extra}\n",
            rules.to_str().unwrap(),
            dir.join("var").to_str().unwrap(),
            db.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut child = smartlink_command()
        .args(["--config", config.to_str().unwrap(), "serve"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let port = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited early"
        );
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
            if event["fields"]["message"] == "listening" {
                break event["fields"]["port"].as_u64().unwrap() as u16;
            }
        }
    };
    // Keep draining the logs so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});
    (Server(child), port)
}

async fn click_on(port: u16) -> String {
    let response = client()
        .get(format!("http://127.0.0.1:{port}/c/split"))
        .header("X-Forwarded-For", TELEKOM_DE_IP)
        .header("User-Agent", WINDOWS_CHROME)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = location(&response);
    query_param(&location, "cid")
        .or_else(|| query_param(&location, "click"))
        .unwrap()
}

fn open_store(db: &Path) -> SqliteStore {
    SqliteStore::open(db, Durability::Batched, Duration::from_secs(86_400)).unwrap()
}

/// The store's report over all time, with no grouping.
async fn report_totals(store: &SqliteStore) -> ReportCounters {
    let everything = ReportQuery {
        spans: vec![TimeSpan {
            start_ms: 0,
            end_ms: i64::MAX,
        }],
        campaign: None,
        dimensions: vec![],
    };
    let groups = store.report(&everything).await.unwrap();
    assert!(groups.len() <= 1, "{groups:?}");
    groups
        .first()
        .map(|group| group.counters)
        .unwrap_or_default()
}

#[tokio::test]
async fn sigterm_drains_and_every_answered_click_is_in_the_store() {
    if sqlite_only(
        "sigterm_drains_and_every_answered_click_is_in_the_store",
        "runs the binary on a SQLite file; redis.rs covers restarts and outages of Redis",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("clicks.db");
    let (server, port) = spawn_binary(dir.path(), &db, "");
    let mut ids = Vec::new();
    for _ in 0..200 {
        ids.push(click_on(port).await);
    }
    let exit = server.stop_with("-TERM").await;
    assert!(exit.success(), "exit status {exit:?}");

    let store = open_store(&db);
    for id in &ids {
        assert!(store.click(id).await.unwrap().is_some(), "click {id} lost");
    }
}

#[tokio::test]
async fn a_conversion_acknowledged_with_200_survives_kill_9() {
    if sqlite_only(
        "a_conversion_acknowledged_with_200_survives_kill_9",
        "runs the binary on a SQLite file; redis.rs covers restarts and outages of Redis",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("clicks.db");
    let (server, port) = spawn_binary(dir.path(), &db, "");
    let mut acknowledged = 0;
    for i in 0..50 {
        let click = click_on(port).await;
        let response = client()
            .get(format!(
                "http://127.0.0.1:{port}/postback?clickid={click}&payout=1&txid=t{i}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        acknowledged += 1;
    }
    server.stop_with("-KILL").await;

    let store = open_store(&db);
    assert_eq!(report_totals(&store).await.conversions, acknowledged);
}

#[tokio::test]
async fn a_restart_resumes_pending_outbound_postbacks() {
    if sqlite_only(
        "a_restart_resumes_pending_outbound_postbacks",
        "runs the binary on a SQLite file; redis.rs covers restarts and outages of Redis",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("clicks.db");
    let receiver = start_receiver(usize::MAX).await;
    let url = receiver.url.clone();
    let point_at_receiver = move |rules: &Path| {
        let path = rules.join("sources.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("http://127.0.0.1:1", &url)).unwrap();
    };
    // First run: the receiver refuses, so the delivery stays pending.
    let app = spawn_app_with_rules(
        |c| {
            c.store.path = db.clone();
            c.delivery.initial_backoff_ms = 500;
        },
        point_at_receiver.clone(),
    )
    .await;
    let click = app.click_id("us-android", "clickid=EXT-9", "cid").await;
    let (status, _) = app.postback(&format!("clickid={click}&payout=2")).await;
    assert_eq!(status, 200);
    for _ in 0..50 {
        if !receiver.requests.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.handle.stop(true).await;
    drop(app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = receiver.requests.lock().unwrap().len();
    assert!(refused >= 1);

    // Second run on the same store; the receiver now accepts.
    receiver
        .refuse_first
        .store(refused, std::sync::atomic::Ordering::SeqCst);
    let app = spawn_app_with_rules(|c| c.store.path = db.clone(), point_at_receiver).await;
    let delivered = app.wait_for_deliveries(1).await;
    assert_eq!(
        delivered["deliveries"].as_array().unwrap().len(),
        1,
        "{delivered}"
    );
    let requests = receiver.requests.lock().unwrap().clone();
    assert!(
        requests.last().unwrap().contains("subid_short=EXT-9"),
        "{requests:?}"
    );
}

/// Clicks on `split` from `workers` concurrent loops until the server stops answering; returns
/// the ids of every click that was answered with a redirect.
fn click_load(
    port: u16,
    workers: usize,
) -> (
    Vec<tokio::task::JoinHandle<()>>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks = (0..workers)
        .map(|_| {
            let answered = answered.clone();
            tokio::spawn(async move {
                let http = client();
                loop {
                    let response = http
                        .get(format!("http://127.0.0.1:{port}/c/split"))
                        .header("X-Forwarded-For", TELEKOM_DE_IP)
                        .header("User-Agent", WINDOWS_CHROME)
                        // Once the server is gone every request must end: a wait that nothing
                        // wakes kept one run of this suite from finishing.
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    let Ok(response) = response else { break };
                    if response.status() != 302 {
                        break;
                    }
                    let location = location(&response);
                    let id = query_param(&location, "cid")
                        .or_else(|| query_param(&location, "click"))
                        .unwrap();
                    answered.lock().unwrap().push(id);
                }
            })
        })
        .collect();
    (tasks, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_in_strict_mode_loses_no_answered_click() {
    if sqlite_only(
        "kill_9_under_load_in_strict_mode_loses_no_answered_click",
        "runs the binary on a SQLite file; redis.rs covers restarts and outages of Redis",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("clicks.db");
    let (server, port) = spawn_binary_with(
        dir.path(),
        &db,
        "",
        "durability = \"strict\"",
        &fixture_rules(),
    );
    let (tasks, answered) = click_load(port, 8);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.stop_with("-KILL").await;
    for task in tasks {
        task.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() > 50,
        "only {} clicks answered",
        answered.len()
    );

    let store = open_store(&db);
    let mut lost = Vec::new();
    for id in &answered {
        if store.click(id).await.unwrap().is_none() {
            lost.push(id.clone());
        }
    }
    eprintln!(
        "kill -9 under load (strict): {} answered clicks, {} lost",
        answered.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "answered but lost: {lost:?}");
    // The report counters of clicks killed before their rollup rows were written are caught up
    // when the file is opened again.
    let stored: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM clicks", [], |row| row.get(0))
        .unwrap();
    assert_eq!(report_totals(&store).await.clicks, stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_concurrent_postbacks_loses_no_acknowledged_conversion() {
    if sqlite_only(
        "kill_9_under_concurrent_postbacks_loses_no_acknowledged_conversion",
        "runs the binary on a SQLite file; redis.rs covers restarts and outages of Redis",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("clicks.db");
    let (server, port) = spawn_binary_with(
        dir.path(),
        &db,
        "[limits]\npostback_per_second = 0",
        "durability = \"strict\"",
        &fixture_rules(),
    );
    let mut clicks = Vec::new();
    for _ in 0..20 {
        clicks.push(click_on(port).await);
    }
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let tasks: Vec<_> = clicks
        .into_iter()
        .map(|click| {
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                let http = client();
                for txid in 0.. {
                    let response = http
                        .get(format!(
                            "http://127.0.0.1:{port}/postback?clickid={click}&payout=1&txid=t{txid}"
                        ))
                        .send()
                        .await;
                    let Ok(response) = response else { break };
                    let Ok(body) = response.json::<serde_json::Value>().await else {
                        break;
                    };
                    assert_eq!(body["result"], "recorded", "{body}");
                    acknowledged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.stop_with("-KILL").await;
    for task in tasks {
        task.await.unwrap();
    }
    let acknowledged = acknowledged.load(std::sync::atomic::Ordering::SeqCst);
    assert!(acknowledged > 20, "only {acknowledged} postbacks answered");

    let store = open_store(&db);
    let conversions = report_totals(&store).await.conversions;
    eprintln!("kill -9 under postbacks: {acknowledged} acknowledged, {conversions} in the store");
    // Some reports may have been committed without their answer getting out; none answered lost.
    assert!(
        conversions >= acknowledged,
        "{conversions} < {acknowledged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_answers_in_flight_clicks_and_keeps_every_answered_one() {
    if sqlite_only(
        "sigterm_under_load_answers_in_flight_clicks_and_keeps_every_answered_one",
        "runs the binary on a SQLite file; redis.rs covers restarts and outages of Redis",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("clicks.db");
    let (server, port) = spawn_binary(dir.path(), &db, "");
    let (tasks, answered) = click_load(port, 8);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let exit = server.stop_with("-TERM").await;
    assert!(exit.success(), "exit status {exit:?}");
    for task in tasks {
        task.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() > 50,
        "only {} clicks answered",
        answered.len()
    );
    let store = open_store(&db);
    for id in &answered {
        assert!(store.click(id).await.unwrap().is_some(), "click {id} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_outbound_postback_resumes_after_kill_9() {
    if sqlite_only(
        "a_pending_outbound_postback_resumes_after_kill_9",
        "runs the binary on a SQLite file; redis.rs covers restarts and outages of Redis",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("clicks.db");
    let receiver = start_receiver(usize::MAX).await;
    let rules = dir.path().join("rules");
    copy_dir(&fixture_rules(), &rules);
    let sources = rules.join("sources.toml");
    let text = std::fs::read_to_string(&sources).unwrap();
    std::fs::write(&sources, text.replace("http://127.0.0.1:1", &receiver.url)).unwrap();
    let extra = format!("admin_token = {ADMIN_TOKEN:?}\n[delivery]\ninitial_backoff_ms = 200");

    // First run: the receiver refuses, so the delivery stays pending; then kill -9.
    let (server, port) = spawn_binary_with(dir.path(), &db, &extra, "", &rules);
    let http = client();
    let response = http
        .get(format!(
            "http://127.0.0.1:{port}/c/us-android?clickid=EXT-K9"
        ))
        .header("X-Forwarded-For", TELEKOM_DE_IP)
        .header("User-Agent", IPHONE_SAFARI)
        .send()
        .await
        .unwrap();
    let click = query_param(&location(&response), "cid").unwrap();
    let response = http
        .get(format!(
            "http://127.0.0.1:{port}/postback?clickid={click}&payout=2"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for _ in 0..100 {
        if !receiver.requests.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop_with("-KILL").await;
    let refused = receiver.requests.lock().unwrap().len();
    assert!(refused >= 1, "the first run tried to deliver");

    // Second run on the same store; the receiver now accepts.
    receiver
        .refuse_first
        .store(refused, std::sync::atomic::Ordering::SeqCst);
    let (_server, port) = spawn_binary_with(dir.path(), &db, &extra, "", &rules);
    let mut delivered = serde_json::Value::Null;
    for _ in 0..100 {
        delivered = http
            .get(format!(
                "http://127.0.0.1:{port}/api/postbacks?status=delivered"
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if delivered["deliveries"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        delivered["deliveries"].as_array().unwrap().len(),
        1,
        "{delivered}"
    );
    let requests = receiver.requests.lock().unwrap().clone();
    assert!(requests.len() > refused, "{requests:?}");
    assert!(
        requests.last().unwrap().contains("subid_short=EXT-K9"),
        "{requests:?}"
    );
}
