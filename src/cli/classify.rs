//! `smartlink classify`: JSON lines in, one classification line out per line in, same order.

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::process::ExitCode;

use serde::Deserialize;

use crate::classify::Classifier;
use crate::config::Settings;
use crate::visitor::RequestHints;

#[derive(Debug, Deserialize)]
struct Input {
    ip: String,
    #[serde(default)]
    ua: String,
    #[serde(default)]
    accept_language: Option<String>,
    #[serde(default)]
    sec_ch_ua: Option<String>,
    #[serde(default)]
    sec_ch_ua_mobile: Option<String>,
    #[serde(default)]
    sec_ch_ua_platform: Option<String>,
    #[serde(default)]
    sec_ch_ua_platform_version: Option<String>,
    #[serde(default)]
    sec_ch_ua_model: Option<String>,
}

/// A line that cannot be read still gets its line out (`{"error": ...}`) so outputs stay aligned
/// with inputs; the exit code is then 1.
pub fn run(settings: &Settings) -> ExitCode {
    let classifier = match Classifier::open(&settings.config.data_dir) {
        Ok(classifier) => classifier,
        Err(e) => return super::fail([e]),
    };
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failed = false;
    for (number, line) in stdin.lines().enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("error: stdin:{}: {e}", number + 1);
                failed = true;
                break;
            }
        };
        let out = match classify_line(&classifier, &line) {
            Ok(json) => json,
            Err(message) => {
                eprintln!("error: stdin:{}: {message}", number + 1);
                failed = true;
                serde_json::json!({ "error": message }).to_string()
            }
        };
        if writeln!(stdout, "{out}").is_err() {
            return ExitCode::from(super::EXIT_INVALID);
        }
    }
    if stdout.flush().is_err() || failed {
        return ExitCode::from(super::EXIT_INVALID);
    }
    ExitCode::SUCCESS
}

fn classify_line(classifier: &Classifier, line: &str) -> Result<String, String> {
    let input: Input =
        serde_json::from_str(line).map_err(|e| format!("not a JSON object with \"ip\": {e}"))?;
    let ip: IpAddr = input
        .ip
        .trim()
        .parse()
        .map_err(|_| format!("ip: `{}` is not an IP address", input.ip))?;
    let visitor = classifier.classify(
        ip,
        &RequestHints {
            user_agent: &input.ua,
            accept_language: input.accept_language.as_deref(),
            ch_ua: input.sec_ch_ua.as_deref(),
            ch_ua_mobile: input.sec_ch_ua_mobile.as_deref(),
            ch_ua_platform: input.sec_ch_ua_platform.as_deref(),
            ch_ua_platform_version: input.sec_ch_ua_platform_version.as_deref(),
            ch_ua_model: input.sec_ch_ua_model.as_deref(),
        },
    );
    serde_json::to_string(&visitor).map_err(|e| e.to_string())
}
