//! `smartlink report [--from D] [--to D] [--tz TZ] [--campaign ID] [--by offer,country,...]
//! [--format table|csv|json]` (SPEC §3, §12).
//!
//! Reads the configured store file without writing to it, so it runs beside a server (WAL lets
//! it read while the server writes) or without one. The numbers are those of `GET /api/report`:
//! the same request parsing, store query and report module.

use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::clock::{Clock, SystemClock};
use crate::config::{Settings, StoreKind};
use crate::report::{Report, ReportRequest};
use crate::store::sqlite::SqliteReader;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// First day, inclusive (default: today in --tz).
    #[arg(long, value_name = "YYYY-MM-DD")]
    from: Option<String>,
    /// Last day, inclusive (default: today in --tz).
    #[arg(long, value_name = "YYYY-MM-DD")]
    to: Option<String>,
    /// IANA time zone of the days (default: UTC).
    #[arg(long, value_name = "TZ")]
    tz: Option<String>,
    /// Only this campaign's clicks.
    #[arg(long, value_name = "ID")]
    campaign: Option<String>,
    /// Columns to group by, comma-separated (default: offer): offer, campaign, route, event,
    /// day, country, os, device, browser, carrier, connection, language.
    #[arg(long, value_name = "offer,country,...")]
    by: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Aligned columns for reading.
    Table,
    /// The API's CSV: a header, one line per row, a totals line.
    Csv,
    /// The API's JSON.
    Json,
}

pub fn run(settings: &Settings, args: &ReportArgs) -> ExitCode {
    let request = match ReportRequest::parse(
        args.from.as_deref(),
        args.to.as_deref(),
        args.tz.as_deref(),
        args.campaign.as_deref(),
        args.by.as_deref(),
        SystemClock.now_ms(),
    ) {
        Ok(request) => request,
        Err(e) => {
            let option = match e.field {
                "group_by" => "by",
                field => field,
            };
            return super::fail([format!("--{option}: {}", e.message)]);
        }
    };
    let store = &settings.config.store;
    let groups = match store.kind {
        StoreKind::Sqlite => match SqliteReader::open_existing(&store.path) {
            // No file yet: nothing was recorded, every number is 0.
            Ok(None) => Vec::new(),
            Ok(Some(reader)) => match reader.report(&request.query()) {
                Ok(groups) => groups,
                Err(e) => return super::fail([e]),
            },
            Err(e) => return super::fail([e]),
        },
        StoreKind::Redis => match redis_report(settings, &request) {
            Ok(groups) => groups,
            Err(e) => return super::fail([format!("{}: store.url: {e}", settings.origin)]),
        },
    };
    let report = Report::build(&request, &groups, &settings.config.base_currency);
    let text = match args.format {
        Format::Table => report.to_table(),
        Format::Csv => report.to_csv(),
        Format::Json => report.to_json() + "\n",
    };
    print!("{text}");
    ExitCode::SUCCESS
}

/// The same counters from the shared Redis store that running instances write to.
fn redis_report(
    settings: &Settings,
    request: &ReportRequest,
) -> Result<Vec<crate::store::ReportGroup>, crate::store::StoreError> {
    use crate::store::redis::{Options, RedisStore};
    use crate::store::Store as _;
    let config = &settings.config;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::store::StoreError::Internal(e.to_string()))?;
    runtime.block_on(async {
        let store = RedisStore::open(
            &config.store.url.urls(),
            Options::new(config.store.durability, settings.store_retention()),
        )
        .await?;
        store.report(&request.query()).await
    })
}
