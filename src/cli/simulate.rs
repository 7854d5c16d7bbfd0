//! `smartlink simulate --scenario FILE [--policy NAME] [--seed N]`: replays a synthetic scenario
//! through the fallback policies and prints JSON (SPEC §3).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::bandit::sim::{self, policies, Scenario};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Scenario TOML file (format: tests/scenarios/README.md).
    #[arg(long, value_name = "FILE")]
    scenario: PathBuf,
    /// One policy; all when absent.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(policies::NAMES))]
    policy: Option<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(args: &SimulateArgs) -> ExitCode {
    let file = args.scenario.display();
    let text = match std::fs::read_to_string(&args.scenario) {
        Ok(text) => text,
        Err(e) => return super::fail([format!("{file}: scenario: cannot read: {e}")]),
    };
    let scenario = match Scenario::parse(&text) {
        Ok(scenario) => scenario,
        Err(e) => return super::fail([format!("{file}: {e}")]),
    };
    let names: Vec<&str> = args.policy.as_deref().into_iter().collect();
    match sim::run(scenario, &names, args.seed) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("a report serializes")
            );
            ExitCode::SUCCESS
        }
        Err(e) => super::fail([format!("{file}: policy: {e}")]),
    }
}
