//! The command line (SPEC §3): one binary, `--config` before or after the command name.

mod check;
mod classify;
mod explain;
mod report;
mod serve;
mod simulate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "smartlink",
    version,
    about = "Self-hosted Smartlink / Backlink offer router"
)]
pub struct Cli {
    /// Settings file (default: smartlink.toml in the working directory if present).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve,
    /// Validate settings, rules and data; print every error with file and line.
    Check,
    /// Show how one visitor would be routed, as JSON.
    Explain(explain::ExplainArgs),
    /// Classify JSON lines {"ip","ua","accept_language"} from stdin, one JSON line out per line in.
    Classify,
    /// Print earnings from the store as a table, CSV or JSON (the numbers of GET /api/report).
    Report(report::ReportArgs),
    /// Replay a synthetic traffic scenario through the fallback policies; print JSON.
    Simulate(simulate::SimulateArgs),
}

/// Exit codes (SPEC §3).
pub const EXIT_INVALID: u8 = 1;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    let settings = match Settings::load(cli.config.as_deref(), &env) {
        Ok(settings) => settings,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            return ExitCode::from(EXIT_INVALID);
        }
    };
    match cli.command {
        Command::Serve => serve::run(settings),
        Command::Check => check::run(&settings),
        Command::Explain(args) => explain::run(&settings, &args),
        Command::Classify => classify::run(&settings),
        Command::Report(args) => report::run(&settings, &args),
        Command::Simulate(args) => simulate::run(&args),
    }
}

/// Prints one line per error to stderr and returns the "invalid input" exit code.
fn fail<I: IntoIterator<Item = T>, T: std::fmt::Display>(errors: I) -> ExitCode {
    for error in errors {
        eprintln!("error: {error}");
    }
    ExitCode::from(EXIT_INVALID)
}
