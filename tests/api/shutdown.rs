//! SPEC §15: `SIGTERM` stops accepting, answers what is in flight, flushes the store, exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use smartlink::config::Durability;
use smartlink::store::sqlite::SqliteStore;
use smartlink::store::Store;

use crate::helpers::*;

#[tokio::test]
async fn sigterm_drains_and_every_answered_click_is_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("clicks.db");
    let config = dir.path().join("smartlink.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nrules_dir = {:?}\ntrusted_proxies = [\"127.0.0.1/32\"]\n[store]\npath = {:?}\n",
            fixture_rules().to_str().unwrap(),
            db.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_smartlink"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The "listening" log line carries the port the OS chose.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let port = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited early"
        );
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
            if event["fields"]["message"] == "listening" {
                break event["fields"]["port"].as_u64().unwrap();
            }
        }
    };
    let client = client();
    let mut ids = Vec::new();
    for _ in 0..200 {
        let response = client
            .get(format!("http://127.0.0.1:{port}/c/split"))
            .header("X-Forwarded-For", TELEKOM_DE_IP)
            .header("User-Agent", WINDOWS_CHROME)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302);
        let location = location(&response);
        let id = query_param(&location, "cid").or_else(|| query_param(&location, "click"));
        ids.push(id.unwrap());
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");

    let store = SqliteStore::open(&db, Durability::Batched, Duration::from_secs(86_400)).unwrap();
    for id in &ids {
        assert!(store.click(id).await.unwrap().is_some(), "click {id} lost");
    }
}
