//! `smartlink check`: settings (already validated by the caller), rules and data.

use std::process::ExitCode;

use crate::classify::Classifier;
use crate::config::Settings;
use crate::rules;

pub fn run(settings: &Settings) -> ExitCode {
    let config = &settings.config;
    let mut errors: Vec<String> = Vec::new();
    let rule_set = match rules::load(&config.rules_dir) {
        Ok(rule_set) => Some(rule_set),
        Err(rule_errors) => {
            errors.extend(rule_errors.iter().map(ToString::to_string));
            None
        }
    };
    if let Err(e) = Classifier::open(&config.data_dir) {
        errors.push(e.to_string());
    }
    match rule_set {
        Some(rule_set) if errors.is_empty() => {
            println!(
                "ok: {} offers, {} sources, {} campaigns (rules version {})",
                rule_set.offers.len(),
                rule_set.sources.len(),
                rule_set.campaigns.len(),
                rule_set.version
            );
            ExitCode::SUCCESS
        }
        _ => super::fail(errors),
    }
}
