//! `smartlink explain --campaign ID --ip IP --ua UA [--lang L]`.

use std::net::IpAddr;
use std::process::ExitCode;

use clap::Args;

use crate::bandit::WeightedRandom;
use crate::classify::Classifier;
use crate::click::ClickMacros;
use crate::config::Settings;
use crate::decide::{explain, DecisionInput, NoCaps};
use crate::rules;
use crate::visitor::{QueryParams, RequestHints};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[arg(long)]
    campaign: String,
    #[arg(long)]
    ip: IpAddr,
    #[arg(long, default_value = "")]
    ua: String,
    /// An Accept-Language value (`de`, `en-US,en;q=0.9`).
    #[arg(long)]
    lang: Option<String>,
}

pub fn run(settings: &Settings, args: &ExplainArgs) -> ExitCode {
    let rule_set = match rules::load(&settings.config.rules_dir) {
        Ok(rule_set) => rule_set,
        Err(errors) => return super::fail(errors),
    };
    let classifier = match Classifier::open(&settings.config.data_dir) {
        Ok(classifier) => classifier,
        Err(e) => return super::fail([e]),
    };
    let Some(campaign) = rule_set.campaign(&args.campaign) else {
        return super::fail([format!(
            "{}: campaign: no campaign `{}`",
            settings.config.rules_dir.display(),
            args.campaign
        )]);
    };
    let visitor = classifier.classify(
        args.ip,
        &RequestHints {
            user_agent: &args.ua,
            accept_language: args.lang.as_deref(),
            ..RequestHints::default()
        },
    );
    let params = QueryParams::default();
    let explanation = explain(
        &DecisionInput {
            rules: &rule_set,
            campaign,
            visitor: &visitor,
            params: &params,
            availability: &NoCaps,
            policy: &WeightedRandom,
        },
        |target, offer| {
            target.render(&ClickMacros {
                click_id: "",
                campaign: &campaign.id,
                offer: offer.map(|o| o.id.as_str()),
                source: &campaign.source,
                external_id: None,
                cost: None,
                visitor: &visitor,
                params: &params,
            })
        },
    );
    match serde_json::to_string_pretty(&explanation) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => super::fail([e]),
    }
}
