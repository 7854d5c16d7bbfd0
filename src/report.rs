//! Earnings reports (SPEC §12), shared by `GET /api/report` and `smartlink report`. Pure: the
//! request is parsed and cut into time spans here, the store only sums counters per group
//! (`Store::report`), and the rows, ratios, totals and output formats are made here.
//!
//! - Days are local days of the request's time zone; `from` and `to` are inclusive.
//! - `group_by=event`: a row per event holds that event's conversions and revenue, and the clicks
//!   and cost of everything else the row is grouped by (every event's row repeats them), so that
//!   `cr` and `epc` are the event's own rates per click. Clicks without any conversion event in
//!   their group make a row whose event is null. `totals` count every click once, so the rows'
//!   clicks may add up to more than the totals.
//! - Money is exact (millionths); `epc` and `cr` are rounded half away from zero to 4 decimals,
//!   `roi` to 2, computed from the exact sums.

use std::collections::HashMap;
use std::fmt;

use chrono::{Days, NaiveDate, TimeZone};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::clock::day_start_ms;
use crate::money::Money;
use crate::store::{Dimension, ReportCounters, ReportGroup, ReportQuery, TimeSpan};

/// Longest report range, in days.
pub const MAX_DAYS: u64 = 3660;

/// Every name `group_by` takes, in the order SPEC §12 lists them.
pub const GROUP_BY_NAMES: &str =
    "offer, campaign, route, event, day, country, os, device, browser, carrier, connection, language";

/// One column a report groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// The click's local day in the report's time zone, `YYYY-MM-DD`.
    Day,
    Dimension(Dimension),
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Day => "day",
            GroupBy::Dimension(dimension) => dimension.as_str(),
        }
    }

    pub fn parse(text: &str) -> Option<GroupBy> {
        if text == "day" {
            return Some(GroupBy::Day);
        }
        Dimension::parse(text).map(GroupBy::Dimension)
    }
}

/// A refused request: `field` is the query parameter's name (`from`, `tz`, `group_by`, ...),
/// `code` the API's error code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    pub code: &'static str,
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A validated report request.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportRequest {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub tz: chrono_tz::Tz,
    pub campaign: Option<String>,
    /// In the order given; never empty, no repeats.
    pub group_by: Vec<GroupBy>,
}

impl ReportRequest {
    /// Validates the parameters as the API and the command line take them. Absent (or empty)
    /// `from` and `to` are today in `tz` (at `now_ms`), `tz` is UTC, `group_by` is `offer`.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        tz: Option<&str>,
        campaign: Option<&str>,
        group_by: Option<&str>,
        now_ms: i64,
    ) -> Result<ReportRequest, RequestError> {
        let tz_name = tz.filter(|t| !t.is_empty()).unwrap_or("UTC");
        let tz: chrono_tz::Tz = tz_name.parse().map_err(|_| RequestError {
            code: "bad_timezone",
            field: "tz",
            message: format!("`{tz_name}` is not an IANA time zone (e.g. America/New_York)"),
        })?;
        let now = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
        let today = tz.from_utc_datetime(&now.naive_utc()).date_naive();
        let day = |field: &'static str, value: Option<&str>| match value {
            None | Some("") => Ok(today),
            Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| RequestError {
                code: "bad_date",
                field,
                message: format!("`{text}` is not a date like 2026-11-23"),
            }),
        };
        let from = day("from", from)?;
        let to = day("to", to)?;
        if from > to {
            return Err(RequestError {
                code: "bad_date",
                field: "from",
                message: format!("{from} is after to {to}"),
            });
        }
        if (to - from).num_days() >= MAX_DAYS as i64 {
            return Err(RequestError {
                code: "bad_date",
                field: "to",
                message: format!("{from} to {to} is longer than {MAX_DAYS} days"),
            });
        }
        let group_by = parse_group_by(group_by.unwrap_or(""))?;
        Ok(ReportRequest {
            from,
            to,
            tz,
            campaign: campaign.filter(|c| !c.is_empty()).map(str::to_owned),
            group_by,
        })
    }

    /// The dimensions the store groups by: `group_by` without `day`, in order.
    pub fn dimensions(&self) -> Vec<Dimension> {
        self.group_by
            .iter()
            .filter_map(|g| match g {
                GroupBy::Day => None,
                GroupBy::Dimension(d) => Some(*d),
            })
            .collect()
    }

    /// The local days of the report, in order.
    pub fn days(&self) -> Vec<NaiveDate> {
        self.from
            .iter_days()
            .take_while(|d| *d <= self.to)
            .collect()
    }

    /// What the store is asked: one span per local day when grouping by day, else one span
    /// from the first local midnight to the one after the last day.
    pub fn query(&self) -> ReportQuery {
        let start = |day: NaiveDate| day_start_ms(&self.tz, day);
        let next = |day: NaiveDate| day + Days::new(1);
        let spans = if self.group_by.contains(&GroupBy::Day) {
            self.days()
                .into_iter()
                .map(|day| TimeSpan {
                    start_ms: start(day),
                    end_ms: start(next(day)),
                })
                .collect()
        } else {
            vec![TimeSpan {
                start_ms: start(self.from),
                end_ms: start(next(self.to)),
            }]
        };
        ReportQuery {
            spans,
            campaign: self.campaign.clone(),
            dimensions: self.dimensions(),
        }
    }
}

fn parse_group_by(text: &str) -> Result<Vec<GroupBy>, RequestError> {
    let bad = |message: String| RequestError {
        code: "bad_group_by",
        field: "group_by",
        message,
    };
    let mut group_by = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(column) = GroupBy::parse(name) else {
            return Err(bad(format!("`{name}` is not one of {GROUP_BY_NAMES}")));
        };
        if group_by.contains(&column) {
            return Err(bad(format!("`{name}` is given twice")));
        }
        group_by.push(column);
    }
    if group_by.is_empty() {
        group_by.push(GroupBy::Dimension(Dimension::Offer));
    }
    Ok(group_by)
}

/// A decimal with a fixed number of places, exact: printed without trailing zeros, and in JSON
/// as a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    scaled: i64,
    places: u32,
}

impl Decimal {
    /// `numerator / denominator` rounded half away from zero to `places` decimals; `None` when
    /// the denominator is 0.
    pub fn ratio(numerator: i128, denominator: i128, places: u32) -> Option<Decimal> {
        if denominator == 0 {
            return None;
        }
        let scaled = div_round(numerator * 10_i128.pow(places), denominator);
        Some(Decimal {
            scaled: scaled.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            places,
        })
    }

    pub fn zero(places: u32) -> Decimal {
        Decimal { scaled: 0, places }
    }

    pub fn to_f64(self) -> f64 {
        self.scaled as f64 / 10_f64.powi(self.places as i32)
    }
}

/// Integer division rounded half away from zero.
fn div_round(numerator: i128, denominator: i128) -> i128 {
    let (numerator, denominator) = if denominator < 0 {
        (-numerator, -denominator)
    } else {
        (numerator, denominator)
    };
    let half = denominator / 2;
    if numerator >= 0 {
        (numerator + half) / denominator
    } else {
        (numerator - half) / denominator
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.scaled < 0 { "-" } else { "" };
        let abs = self.scaled.unsigned_abs();
        let unit = 10_u64.pow(self.places);
        let (whole, fraction) = (abs / unit, abs % unit);
        if fraction == 0 {
            return write!(f, "{sign}{whole}");
        }
        let digits = format!("{fraction:0width$}", width = self.places as usize);
        write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.to_f64())
    }
}

/// The numbers of one row or of the totals (SPEC §12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metrics {
    pub clicks: i64,
    pub conversions: i64,
    pub revenue: Money,
    pub pending_revenue: Money,
    pub cost: Money,
    /// `revenue - cost`.
    pub profit: Money,
    /// `revenue / clicks`, 4 decimals; 0 without clicks.
    pub epc: Decimal,
    /// `conversions / clicks`, 4 decimals; 0 without clicks.
    pub cr: Decimal,
    /// `profit / cost`, 2 decimals; `None` when cost is 0.
    pub roi: Option<Decimal>,
}

/// Metric names in output order.
pub const METRICS: [&str; 9] = [
    "clicks",
    "conversions",
    "revenue",
    "pending_revenue",
    "cost",
    "profit",
    "epc",
    "cr",
    "roi",
];

impl Metrics {
    pub fn new(counters: &ReportCounters) -> Metrics {
        let profit = counters.revenue - counters.cost;
        let clicks = i128::from(counters.clicks);
        Metrics {
            clicks: counters.clicks,
            conversions: counters.conversions,
            revenue: counters.revenue,
            pending_revenue: counters.pending_revenue,
            cost: counters.cost,
            profit,
            // Revenue in millionths over clicks, to 4 decimals of a currency unit.
            epc: Decimal::ratio(i128::from(counters.revenue.micros()), clicks * 1_000_000, 4)
                .unwrap_or(Decimal::zero(4)),
            cr: Decimal::ratio(i128::from(counters.conversions), clicks, 4)
                .unwrap_or(Decimal::zero(4)),
            roi: Decimal::ratio(
                i128::from(profit.micros()),
                i128::from(counters.cost.micros()),
                2,
            ),
        }
    }

    /// The metrics as text, in `METRICS` order; `roi` empty when null.
    fn texts(&self) -> [String; 9] {
        [
            self.clicks.to_string(),
            self.conversions.to_string(),
            self.revenue.to_string(),
            self.pending_revenue.to_string(),
            self.cost.to_string(),
            self.profit.to_string(),
            self.epc.to_string(),
            self.cr.to_string(),
            self.roi.map(|r| r.to_string()).unwrap_or_default(),
        ]
    }
}

/// One row: a value per `group_by` column, and its numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// In `Report::columns` order; `day` as `YYYY-MM-DD`; `None` where the clicks had no value.
    pub keys: Vec<Option<String>>,
    pub metrics: Metrics,
}

/// A finished report: what the API answers and the command line prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub currency: String,
    pub columns: Vec<GroupBy>,
    pub rows: Vec<Row>,
    pub totals: Metrics,
}

/// Sort key of one key value: days by time, text ascending, nothing last.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Day(usize),
    Text(String),
    Nothing,
}

impl Report {
    /// Makes the rows from what the store summed for `request.query()`.
    pub fn build(request: &ReportRequest, groups: &[ReportGroup], currency: &str) -> Report {
        let dimensions = request.dimensions();
        let event = dimensions.iter().position(|d| *d == Dimension::Event);
        let mut totals = ReportCounters::default();
        // (span, dimension values) → counters; summed in case a store answers a group twice.
        let mut sums: HashMap<(usize, Vec<Option<String>>), ReportCounters> = HashMap::new();
        for group in groups {
            totals.add(&group.counters);
            sums.entry((group.span, group.values.clone()))
                .or_default()
                .add(&group.counters);
        }
        if let Some(position) = event {
            sums = spread_clicks_over_events(sums, position);
        }
        let days = request
            .group_by
            .contains(&GroupBy::Day)
            .then(|| request.days());
        let mut rows: Vec<(Vec<SortKey>, Row)> = sums
            .into_iter()
            .map(|((span, values), counters)| {
                let mut values = values.into_iter();
                let (keys, sort): (Vec<Option<String>>, Vec<SortKey>) = request
                    .group_by
                    .iter()
                    .map(|column| match column {
                        GroupBy::Day => {
                            let day = days.as_ref().and_then(|d| d.get(span));
                            (day.map(|d| d.to_string()), SortKey::Day(span))
                        }
                        GroupBy::Dimension(_) => {
                            let value = values.next().flatten();
                            let sort = value.clone().map_or(SortKey::Nothing, SortKey::Text);
                            (value, sort)
                        }
                    })
                    .unzip();
                (
                    sort,
                    Row {
                        keys,
                        metrics: Metrics::new(&counters),
                    },
                )
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Report {
            currency: currency.to_owned(),
            columns: request.group_by.clone(),
            rows: rows.into_iter().map(|(_, row)| row).collect(),
            totals: Metrics::new(&totals),
        }
    }

    /// The API's JSON (SPEC §12): `{"currency", "rows": [{<keys in group_by order>, <metrics>}],
    /// "totals": {<metrics>}}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }

    /// A header row, one row per group, then the totals: `TOTAL` in the first column and the
    /// other group columns empty. A null value is an empty field; `roi` is empty when null.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let header: Vec<&str> = self
            .columns
            .iter()
            .map(|c| c.as_str())
            .chain(METRICS)
            .collect();
        out.push_str(&header.join(","));
        out.push('\n');
        let mut line = |keys: Vec<String>, metrics: &Metrics| {
            let fields: Vec<String> = keys
                .iter()
                .map(|k| csv_field(k))
                .chain(metrics.texts())
                .collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        };
        for row in &self.rows {
            line(
                row.keys
                    .iter()
                    .map(|k| k.clone().unwrap_or_default())
                    .collect(),
                &row.metrics,
            );
        }
        line(self.total_keys(), &self.totals);
        out
    }

    /// An aligned table for people: text left-aligned, numbers right-aligned, `-` for a null
    /// value or `roi`, a rule above the totals line.
    pub fn to_table(&self) -> String {
        let header: Vec<String> = self
            .columns
            .iter()
            .map(|c| c.as_str().to_owned())
            .chain(METRICS.iter().map(|m| (*m).to_owned()))
            .collect();
        let dash = |text: String| if text.is_empty() { "-".into() } else { text };
        let cells = |keys: Vec<String>, metrics: &Metrics| -> Vec<String> {
            keys.into_iter()
                .chain(metrics.texts().into_iter().map(dash))
                .collect()
        };
        let mut lines: Vec<Vec<String>> = vec![header];
        for row in &self.rows {
            lines.push(cells(
                row.keys
                    .iter()
                    .map(|k| k.clone().unwrap_or_else(|| "-".into()))
                    .collect(),
                &row.metrics,
            ));
        }
        let totals = cells(self.total_keys(), &self.totals);
        let count = self.columns.len() + METRICS.len();
        let widths: Vec<usize> = (0..count)
            .map(|i| {
                lines
                    .iter()
                    .chain([&totals])
                    .map(|l| l[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let keys = self.columns.len();
        let render = |cells: &[String]| -> String {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    if i < keys {
                        format!("{cell:<width$}", width = widths[i])
                    } else {
                        format!("{cell:>width$}", width = widths[i])
                    }
                })
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        let mut out = String::new();
        for line in &lines {
            out.push_str(&render(line));
            out.push('\n');
        }
        let rule: usize = widths.iter().sum::<usize>() + 2 * (count - 1);
        out.push_str(&"-".repeat(rule));
        out.push('\n');
        out.push_str(&render(&totals));
        out.push('\n');
        out
    }

    fn total_keys(&self) -> Vec<String> {
        (0..self.columns.len())
            .map(|i| {
                if i == 0 {
                    "TOTAL".into()
                } else {
                    String::new()
                }
            })
            .collect()
    }
}

/// With `event` among the dimensions the store answers click counters under no event and
/// conversion counters under their events. Each event's row takes the clicks and cost of its
/// other dimensions; clicks whose group has no event keep a row of their own (event null).
fn spread_clicks_over_events(
    sums: HashMap<(usize, Vec<Option<String>>), ReportCounters>,
    position: usize,
) -> HashMap<(usize, Vec<Option<String>>), ReportCounters> {
    let without_event = |values: &[Option<String>]| -> Vec<Option<String>> {
        let mut rest = values.to_vec();
        rest.remove(position);
        rest
    };
    let mut clicks: HashMap<(usize, Vec<Option<String>>), ReportCounters> = HashMap::new();
    let mut events = Vec::new();
    for ((span, values), counters) in sums {
        if values[position].is_none() {
            clicks
                .entry((span, without_event(&values)))
                .or_default()
                .add(&counters);
        } else {
            events.push(((span, values), counters));
        }
    }
    let mut rows = HashMap::new();
    let mut converted = std::collections::HashSet::new();
    for ((span, values), mut counters) in events {
        let rest = (span, without_event(&values));
        if let Some(click) = clicks.get(&rest) {
            counters.clicks = click.clicks;
            counters.cost = click.cost;
        }
        converted.insert(rest);
        rows.insert((span, values), counters);
    }
    for ((span, rest), counters) in clicks {
        if !converted.contains(&(span, rest.clone())) {
            let mut values = rest;
            values.insert(position, None);
            rows.insert((span, values), counters);
        }
    }
    rows
}

/// Quotes a field when it holds a separator, a quote or a line break; neutralises leading
/// formula characters so a spreadsheet never runs a value as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Rows as JSON objects whose keys are the `group_by` names in order, then the metrics.
struct JsonRow<'a> {
    columns: &'a [GroupBy],
    row: &'a Row,
}

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.columns.len() + METRICS.len()))?;
        for (column, key) in self.columns.iter().zip(&self.row.keys) {
            map.serialize_entry(column.as_str(), key)?;
        }
        serialize_metrics(&mut map, &self.row.metrics)?;
        map.end()
    }
}

fn serialize_metrics<M: SerializeMap>(map: &mut M, metrics: &Metrics) -> Result<(), M::Error> {
    map.serialize_entry("clicks", &metrics.clicks)?;
    map.serialize_entry("conversions", &metrics.conversions)?;
    map.serialize_entry("revenue", &metrics.revenue)?;
    map.serialize_entry("pending_revenue", &metrics.pending_revenue)?;
    map.serialize_entry("cost", &metrics.cost)?;
    map.serialize_entry("profit", &metrics.profit)?;
    map.serialize_entry("epc", &metrics.epc)?;
    map.serialize_entry("cr", &metrics.cr)?;
    map.serialize_entry("roi", &metrics.roi)
}

struct JsonTotals<'a>(&'a Metrics);

impl Serialize for JsonTotals<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(METRICS.len()))?;
        serialize_metrics(&mut map, self.0)?;
        map.end()
    }
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rows: Vec<JsonRow<'_>> = self
            .rows
            .iter()
            .map(|row| JsonRow {
                columns: &self.columns,
                row,
            })
            .collect();
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("currency", &self.currency)?;
        map.serialize_entry("rows", &rows)?;
        map.serialize_entry("totals", &JsonTotals(&self.totals))?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-23 12:00 UTC.
    const NOON_MS: i64 = 1_795_435_200_000;

    fn request(group_by: &str) -> ReportRequest {
        ReportRequest::parse(
            Some("2026-11-20"),
            Some("2026-11-22"),
            Some("America/New_York"),
            None,
            Some(group_by),
            NOON_MS,
        )
        .unwrap()
    }

    fn counters(clicks: i64, cost: &str, conversions: i64, revenue: &str) -> ReportCounters {
        ReportCounters {
            clicks,
            cost: Money::parse(cost).unwrap(),
            conversions,
            revenue: Money::parse(revenue).unwrap(),
            pending_revenue: Money::ZERO,
        }
    }

    fn group(span: usize, values: &[Option<&str>], counters: ReportCounters) -> ReportGroup {
        ReportGroup {
            span,
            values: values.iter().map(|v| v.map(str::to_owned)).collect(),
            counters,
        }
    }

    #[test]
    fn defaults_are_today_in_utc_grouped_by_offer() {
        let request = ReportRequest::parse(None, Some(""), None, Some(""), None, NOON_MS).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert_eq!((request.from, request.to), (today, today));
        assert_eq!(request.tz, chrono_tz::UTC);
        assert_eq!(request.campaign, None);
        assert_eq!(request.group_by, vec![GroupBy::Dimension(Dimension::Offer)]);
    }

    #[test]
    fn today_is_the_date_in_the_requested_zone() {
        // 12:00 UTC is already the next day in Kiritimati (UTC+14).
        let request =
            ReportRequest::parse(None, None, Some("Pacific/Kiritimati"), None, None, NOON_MS)
                .unwrap();
        assert_eq!(request.from, NaiveDate::from_ymd_opt(2026, 11, 24).unwrap());
    }

    #[test]
    fn bad_parameters_name_their_field_and_code() {
        let cases = [
            (Some("2026-02-30"), None, None, None, "bad_date", "from"),
            (None, Some("23.11.2026"), None, None, "bad_date", "to"),
            (
                Some("2026-11-24"),
                Some("2026-11-23"),
                None,
                None,
                "bad_date",
                "from",
            ),
            (
                Some("2010-01-01"),
                Some("2026-01-01"),
                None,
                None,
                "bad_date",
                "to",
            ),
            (
                None,
                None,
                Some("Europe/Atlantis"),
                None,
                "bad_timezone",
                "tz",
            ),
            (
                None,
                None,
                None,
                Some("offer,city"),
                "bad_group_by",
                "group_by",
            ),
            (None, None, None, Some("Offer"), "bad_group_by", "group_by"),
            (
                None,
                None,
                None,
                Some("day,day"),
                "bad_group_by",
                "group_by",
            ),
        ];
        for (from, to, tz, group_by, code, field) in cases {
            let err = ReportRequest::parse(from, to, tz, None, group_by, NOON_MS).unwrap_err();
            assert_eq!((err.code, err.field), (code, field), "{err}");
            assert!(err.to_string().starts_with(&format!("{field}: ")), "{err}");
        }
    }

    #[test]
    fn group_by_keeps_the_order_given_and_ignores_spaces() {
        let request = request(" country , day,offer ");
        assert_eq!(
            request.group_by,
            vec![
                GroupBy::Dimension(Dimension::Country),
                GroupBy::Day,
                GroupBy::Dimension(Dimension::Offer)
            ]
        );
        assert_eq!(
            request.dimensions(),
            vec![Dimension::Country, Dimension::Offer]
        );
    }

    #[test]
    fn spans_are_local_days_or_the_whole_range() {
        let hour = 3_600_000;
        // 2026-11-20 00:00 in New York (UTC-5).
        let start = 1_795_150_800_000;
        let whole = request("offer").query();
        assert_eq!(
            whole.spans,
            vec![TimeSpan {
                start_ms: start,
                end_ms: start + 72 * hour
            }]
        );
        let days = request("day,offer").query();
        assert_eq!(days.spans.len(), 3);
        assert_eq!(days.spans[1].start_ms, start + 24 * hour);
        assert_eq!(days.spans[1].end_ms, days.spans[2].start_ms);
        assert_eq!(days.dimensions, vec![Dimension::Offer]);
    }

    #[test]
    fn ratios_round_half_away_from_zero_from_exact_sums() {
        let metrics = Metrics::new(&counters(3, "0.003", 1, "0.00015"));
        // 0.00005 a click exactly: rounds up to 0.0001.
        assert_eq!(metrics.epc.to_string(), "0.0001");
        assert_eq!(metrics.cr.to_string(), "0.3333");
        assert_eq!(metrics.profit, Money::parse("-0.00285").unwrap());
        // -0.95 exactly.
        assert_eq!(metrics.roi.unwrap().to_string(), "-0.95");
        let no_cost = Metrics::new(&counters(0, "0", 0, "0"));
        assert_eq!(no_cost.roi, None);
        assert_eq!((no_cost.epc.to_f64(), no_cost.cr.to_f64()), (0.0, 0.0));
        assert_eq!(
            Decimal::ratio(-5, 1000, 2).unwrap().to_string(),
            "-0.01",
            "half away from zero"
        );
        assert_eq!(Decimal::ratio(2, 3, 0).unwrap().to_string(), "1");
    }

    #[test]
    fn rows_sort_by_day_then_text_with_nothing_last_and_totals_add_up() {
        let request = request("day,offer");
        let groups = [
            group(1, &[None], counters(1, "0.01", 0, "0")),
            group(1, &[Some("b")], counters(2, "0.02", 1, "1")),
            group(0, &[Some("z")], counters(4, "0.04", 0, "0")),
            group(1, &[Some("a")], counters(1, "0", 1, "2")),
        ];
        let report = Report::build(&request, &groups, "EUR");
        let keys: Vec<Vec<Option<&str>>> = report
            .rows
            .iter()
            .map(|r| r.keys.iter().map(|k| k.as_deref()).collect())
            .collect();
        assert_eq!(
            keys,
            vec![
                vec![Some("2026-11-20"), Some("z")],
                vec![Some("2026-11-21"), Some("a")],
                vec![Some("2026-11-21"), Some("b")],
                vec![Some("2026-11-21"), None],
            ]
        );
        assert_eq!(report.totals.clicks, 8);
        assert_eq!(report.totals.revenue, Money::parse("3").unwrap());
        assert_eq!(report.currency, "EUR");
    }

    #[test]
    fn event_rows_take_the_clicks_of_their_group_and_groups_without_events_keep_theirs() {
        let request = request("offer,event");
        let groups = [
            group(0, &[Some("a"), None], counters(10, "1", 0, "0")),
            group(0, &[Some("a"), Some("lead")], counters(0, "0", 3, "3")),
            group(0, &[Some("a"), Some("sale")], counters(0, "0", 1, "20")),
            group(0, &[Some("b"), None], counters(5, "0.5", 0, "0")),
        ];
        let report = Report::build(&request, &groups, "USD");
        let rows: Vec<(Vec<Option<&str>>, i64, i64, String)> = report
            .rows
            .iter()
            .map(|r| {
                (
                    r.keys.iter().map(|k| k.as_deref()).collect(),
                    r.metrics.clicks,
                    r.metrics.conversions,
                    r.metrics.cr.to_string(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (vec![Some("a"), Some("lead")], 10, 3, "0.3".to_owned()),
                (vec![Some("a"), Some("sale")], 10, 1, "0.1".to_owned()),
                (vec![Some("b"), None], 5, 0, "0".to_owned()),
            ]
        );
        assert_eq!(report.totals.clicks, 15);
        assert_eq!(report.totals.conversions, 4);
        assert_eq!(report.totals.cost, Money::parse("1.5").unwrap());
    }

    fn sample() -> Report {
        let request = request("offer,country");
        let groups = [
            group(0, &[Some("=cmd"), Some("US")], counters(4, "0.008", 1, "1")),
            group(0, &[None, Some("DE")], counters(1, "0", 0, "0")),
        ];
        Report::build(&request, &groups, "USD")
    }

    #[test]
    fn json_keeps_the_group_columns_first_in_order_and_roi_null_without_cost() {
        assert_eq!(
            sample().to_json(),
            r#"{"currency":"USD","rows":[{"offer":"=cmd","country":"US","clicks":4,"conversions":1,"revenue":1.0,"pending_revenue":0.0,"cost":0.008,"profit":0.992,"epc":0.25,"cr":0.25,"roi":124.0},{"offer":null,"country":"DE","clicks":1,"conversions":0,"revenue":0.0,"pending_revenue":0.0,"cost":0.0,"profit":0.0,"epc":0.0,"cr":0.0,"roi":null}],"totals":{"clicks":5,"conversions":1,"revenue":1.0,"pending_revenue":0.0,"cost":0.008,"profit":0.992,"epc":0.2,"cr":0.2,"roi":124.0}}"#
        );
    }

    #[test]
    fn csv_ends_with_a_totals_line_and_never_starts_a_field_with_a_formula() {
        assert_eq!(
            sample().to_csv(),
            "offer,country,clicks,conversions,revenue,pending_revenue,cost,profit,epc,cr,roi\n\
             '=cmd,US,4,1,1,0,0.008,0.992,0.25,0.25,124\n\
             ,DE,1,0,0,0,0,0,0,0,\n\
             TOTAL,,5,1,1,0,0.008,0.992,0.2,0.2,124\n"
        );
    }

    #[test]
    fn the_table_aligns_text_left_and_numbers_right() {
        let table = sample().to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "offer  country  clicks  conversions  revenue  pending_revenue   cost  profit   epc    cr  roi"
        );
        assert_eq!(
            lines[1],
            "=cmd   US            4            1        1                0  0.008   0.992  0.25  0.25  124"
        );
        assert_eq!(
            lines[2],
            "-      DE            1            0        0                0      0       0     0     0    -"
        );
        assert!(lines[3].chars().all(|c| c == '-'));
        assert_eq!(lines[3].len(), lines[0].len());
        assert_eq!(
            lines[4],
            "TOTAL                5            1        1                0  0.008   0.992   0.2   0.2  124"
        );
    }
}
