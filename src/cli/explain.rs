//! `smartlink explain --campaign ID --ip IP --ua UA [--lang L]`.
//!
//! Shows the allocation in force: the optimiser's evidence and today's caps are rebuilt from the
//! store the way the server rebuilds them at start, reading the file without writing to it, so
//! it is safe beside a running server. Without a store file the shares are the weights.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::bandit::{Allocator, BanditConfig, Evidence};
use crate::caps::CapTracker;
use crate::classify::Classifier;
use crate::click::explain_visit;
use crate::clock::{Clock, SystemClock};
use crate::config::{Settings, StoreKind};
use crate::learning;
use crate::rules::{self, RuleSet};
use crate::store::sqlite::SqliteReader;
use crate::store::StoreError;
use crate::visitor::RequestHints;

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
    let (allocator, caps) = match learnt(settings, &rule_set) {
        Ok(learnt) => learnt,
        Err(e) => return super::fail([e]),
    };
    let explanation = explain_visit(&rule_set, campaign, &visitor, caps.as_ref(), &allocator);
    match serde_json::to_string_pretty(&explanation) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => super::fail([e]),
    }
}

/// The allocation and caps in force, from the store's history.
fn learnt(
    settings: &Settings,
    rule_set: &RuleSet,
) -> Result<(Allocator, Arc<CapTracker>), StoreError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now_ms = clock.now_ms();
    let caps = Arc::new(CapTracker::new(clock));
    let allocator = Allocator::new();
    let store = &settings.config.store;
    // Other stores are not readable from here yet: the weights stand.
    if store.kind != StoreKind::Sqlite {
        return Ok((allocator, caps));
    }
    let Some(reader) = SqliteReader::open_existing(&store.path)? else {
        return Ok((allocator, caps));
    };
    for (offer, at_ms) in reader.approved_since(now_ms - crate::app::CAP_HISTORY_MS)? {
        caps.approved(&offer, at_ms);
    }
    let mut evidence = Evidence::new(BanditConfig::default());
    let since = now_ms - learning::REPLAY_WINDOW_MS;
    learning::replay(
        &mut evidence,
        |after| reader.evidence_page(since, now_ms, after, learning::REPLAY_PAGE),
        || true,
    )?;
    allocator.publish(evidence.recompute(
        &learning::specs(rule_set, caps.as_ref(), &|offer| {
            settings.payout_in_base(offer).to_f64()
        }),
        now_ms,
    ));
    Ok((allocator, caps))
}
