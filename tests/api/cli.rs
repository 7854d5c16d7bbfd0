//! SPEC §3: `check`, `classify`, `explain`, exit codes, run as the real binary.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use crate::helpers::*;

pub fn smartlink(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = smartlink_command()
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("SMARTLINK_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Settings with `rules` and a store of the test's own (`explain` reads the store's history, so
/// the default `var/` of the working directory must not leak in).
fn config_for(dir: &Path, rules: &Path) -> std::path::PathBuf {
    let path = dir.join("smartlink.toml");
    std::fs::write(
        &path,
        format!(
            "rules_dir = {:?}\n[store]\npath = {:?}\n",
            rules.to_str().unwrap(),
            dir.join("var/smartlink.db").to_str().unwrap()
        ),
    )
    .unwrap();
    path
}

#[test]
fn check_accepts_the_shipped_demo_rules() {
    let output = smartlink(&["check"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("ok:"), "{}", stdout(&output));
}

#[test]
fn check_reports_every_error_with_file_and_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    copy_dir(&fixture_rules(), &rules);
    let offers = std::fs::read_to_string(rules.join("offers.toml")).unwrap();
    std::fs::write(
        rules.join("offers.toml"),
        offers.replace("https://vpn.example/", "ftp://vpn.example/"),
    )
    .unwrap();
    let split = std::fs::read_to_string(rules.join("campaigns/split.toml")).unwrap();
    std::fs::write(
        rules.join("campaigns/split.toml"),
        split.replace("weight = 1.0", "weight = 0"),
    )
    .unwrap();
    let config = config_for(dir.path(), &rules);
    let output = smartlink(&["--config", config.to_str().unwrap(), "check"], None);
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(errors.contains("offers.toml:"), "{errors}");
    assert!(errors.contains("split.toml:"), "{errors}");
    assert!(errors.lines().count() >= 2, "{errors}");
}

#[test]
fn config_may_come_after_the_command_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), &fixture_rules());
    let output = smartlink(&["check", "--config", config.to_str().unwrap()], None);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn an_invalid_config_names_the_file_and_field_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "listen = \"not an address\"\n").unwrap();
    let output = smartlink(&["--config", path.to_str().unwrap(), "check"], None);
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(
        errors.contains("bad.toml") && errors.contains("listen"),
        "{errors}"
    );
    assert_eq!(errors.lines().count(), 1, "{errors}");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(smartlink(&["frobnicate"], None).status.code(), Some(2));
    assert_eq!(
        smartlink(&["explain", "--ip", "1.2.3.4"], None)
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn classify_answers_one_line_per_input_line_in_order() {
    let input = [
        serde_json::json!({"ip": COMCAST_US_IP, "ua": IPHONE_SAFARI, "accept_language": "en-US,en;q=0.9"}),
        serde_json::json!({"ip": TMOBILE_US_IP, "ua": ANDROID_CHROME}),
        serde_json::json!({"ip": AWS_IP, "ua": WINDOWS_CHROME}),
        serde_json::json!({"ip": TELEKOM_DE_IP, "ua": GOOGLEBOT}),
    ]
    .iter()
    .map(|v| v.to_string())
    .collect::<Vec<_>>()
    .join("\n");
    let output = smartlink(&["classify"], Some(&input));
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["country"], "US");
    assert_eq!(lines[0]["os"], "iOS");
    assert_eq!(lines[0]["device"], "phone");
    assert_eq!(lines[0]["bot"], false);
    assert_eq!(lines[0]["language"], "en");
    assert_eq!(lines[1]["carrier"], "T-Mobile");
    assert_eq!(lines[1]["connection"], "cellular");
    assert_eq!(lines[2]["connection"], "datacenter");
    assert_eq!(lines[2]["bot"], true);
    assert_eq!(lines[3]["country"], "DE");
    assert_eq!(lines[3]["bot"], true);
    for field in [
        "country",
        "region",
        "city",
        "asn",
        "isp",
        "carrier",
        "connection",
        "os",
        "os_version",
        "browser",
        "browser_version",
        "device",
        "bot",
        "language",
    ] {
        assert!(lines[0].get(field).is_some(), "missing {field}");
    }
}

#[test]
fn classify_keeps_the_order_when_a_line_is_bad_and_exits_1() {
    let input = format!(
        "{}\nnot json\n{}\n",
        serde_json::json!({"ip": COMCAST_US_IP, "ua": IPHONE_SAFARI}),
        serde_json::json!({"ip": TELEKOM_DE_IP, "ua": IPHONE_SAFARI})
    );
    let output = smartlink(&["classify"], Some(&input));
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["country"], "US");
    assert!(lines[1]["error"].is_string());
    assert_eq!(lines[2]["country"], "DE");
    assert!(stderr(&output).contains("stdin:2"));
}

#[test]
fn explain_shows_the_primary_verdicts_fallback_shares_and_decision() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), &fixture_rules());
    let output = smartlink(
        &[
            "explain",
            "--config",
            config.to_str().unwrap(),
            "--campaign",
            "us-android",
            "--ip",
            TELEKOM_DE_IP,
            "--ua",
            IPHONE_SAFARI,
            "--lang",
            "de-DE",
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["visitor"]["country"], "DE");
    assert_eq!(json["visitor"]["language"], "de");
    assert_eq!(json["primary"][0]["offer"], "sweeps-us");
    assert_eq!(json["primary"][0]["matched"], false);
    let reasons = json["primary"][0]["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| r == "country DE not in [US]"),
        "{reasons:?}"
    );
    assert_eq!(json["fallback"][0]["offer"], "dating-global");
    assert_eq!(json["fallback"][0]["eligible"], true);
    assert_eq!(json["fallback"][0]["share"], 1.0);
    assert_eq!(json["fallback"][1]["eligible"], false);
    assert_eq!(json["fallback"][1]["share"], 0.0);
    assert_eq!(json["decision"]["route"], "fallback");
    assert_eq!(json["decision"]["offer"], "dating-global");
    assert!(json["decision"]["url"]
        .as_str()
        .unwrap()
        .starts_with("https://dating.example/go?"));
    // Without a store the shares are the weights, and explain creates none.
    assert!(!dir.path().join("var").exists());
}

#[test]
fn explain_of_an_unknown_campaign_exits_1() {
    let output = smartlink(
        &[
            "explain",
            "--campaign",
            "nope",
            "--ip",
            "1.2.3.4",
            "--ua",
            "x",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("nope"));
}
