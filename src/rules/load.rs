//! Reading rule files and compiling them into a `RuleSet`, validating the whole set at once and
//! reporting every problem with its file and line, so one `check` run lists all there is to fix.
//!
//! Keys and defaults (anything not listed is refused as an unknown key):
//!
//! `offers.toml`, `[[offer]]`:
//! - `id` (required), `url` (required, click macros), `payout` (required, a number ≥ 0),
//! - `currency` = `"USD"`, `daily_cap` = none (an integer ≥ 1), `cap_timezone` = `"UTC"` (an IANA
//!   zone; `""` also means UTC), `paused` = `false`, `match` / `exclude` = no condition.
//!
//! `sources.toml`, `[[source]]`:
//! - `id` (required), `click_id_param` = `"clickid"`, `cost_param` = none (`""` also means none),
//! - `cost_model` = `"cpc"` (or `"cpm"`), `postback_url` = none (`""` also; postback macros),
//! - `postback_events` = `[]` (all events), `postback_statuses` = `["approved"]` (an empty list
//!   means all four: `approved`, `pending`, `rejected`, `chargeback`),
//! - `postback_ips` = `[]` (postbacks for this source's clicks come from anywhere; otherwise
//!   only from these CIDRs or addresses).
//!
//! `campaigns/*.toml`, one campaign a file:
//! - `id` (required), `source` (required), `backlink` (required, click macros),
//! - `redirect` = `"302"` (or `"meta"`; the integer `302` is accepted too),
//! - `bot_url` = none (`""` also: bots go to the backlink),
//! - `[[primary]]`: `offer` (required), `match`, `exclude`;
//! - `[[fallback]]`: `offer` (required), `weight` = `1.0` (a finite number > 0), `match`, `exclude`.
//!   A single `[primary]` / `[fallback]` table is taken as a list of one.
//!
//! Match dimensions (`match` and `exclude` tables): each takes a list, and a single value is
//! taken as a list of one; an empty list is refused (it could never match). `country` takes
//! ISO 3166-1 alpha-2 codes (any case); `language` primary subtags such as `en`; `asn` numbers or
//! `"AS1234"`; `os`, `device`, `connection` the spellings of SPEC §6 (any case); `ip` CIDRs or
//! bare addresses; `os_version_min` / `os_version_max` one dotted version (a string, a number or
//! a list of one), compared on as many components as given; `param.NAME` strings or integers,
//! written `param.zone = [...]` or `"param.zone" = [...]`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::money::Money;
use crate::rules::countries::is_country;
use crate::rules::matching::{
    Bound, Condition, Conditions, TextDim, TextList, Version, DIMENSIONS,
};
use crate::rules::model::{
    Campaign, CostModel, Fallback, Offer, Primary, RedirectKind, RuleSet, Source,
};
use crate::template::{MacroSet, UrlTemplate};
use crate::visitor::{Connection, Device, Os};

/// One problem in the rule set. Displays as one line:
/// `rules/offers.toml:12: offer "sweeps-us": url: not an http(s) URL: ftp://x`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleError {
    /// As given to the loader (for `load`, under the rules directory as configured).
    pub file: PathBuf,
    /// 1-based; `None` for problems with the file as a whole (unreadable, misplaced).
    pub line: Option<usize>,
    /// Which rule: `offer "sweeps-us"`, `campaign "us-android", fallback #2`.
    pub item: Option<String>,
    /// Which key, relative to the item: `url`, `match.country`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        one_line(f, &self.file.display().to_string())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        for part in [&self.item, &self.field].into_iter().flatten() {
            f.write_str(": ")?;
            one_line(f, part)?;
        }
        f.write_str(": ")?;
        one_line(f, &self.message)
    }
}

/// Escapes control characters (a key or path could hold a newline) so an error stays one line.
fn one_line(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_debug())?;
        } else {
            fmt::Write::write_char(f, c)?;
        }
    }
    Ok(())
}

impl std::error::Error for RuleError {}

impl RuleError {
    pub(crate) fn file(file: &Path, message: impl Into<String>) -> RuleError {
        RuleError {
            file: file.to_path_buf(),
            line: None,
            item: None,
            field: None,
            message: message.into(),
        }
    }
}

/// What a rule file holds, told by its place under the rules directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Offers,
    Sources,
    Campaign,
}

impl FileKind {
    /// `offers.toml`, `sources.toml`, or `campaigns/<name>.toml`; anything else is no rule file.
    pub fn of(path: &Path) -> Option<FileKind> {
        let name = path.file_name()?.to_str()?;
        let parent = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|p| p.to_str());
        if parent == Some("campaigns") {
            return (name.ends_with(".toml") && name.len() > ".toml".len())
                .then_some(FileKind::Campaign);
        }
        match name {
            "offers.toml" => Some(FileKind::Offers),
            "sources.toml" => Some(FileKind::Sources),
            _ => None,
        }
    }
}

/// The path relative to the rules directory (`offers.toml`, `campaigns/x.toml`), so the version
/// does not depend on how the directory was named on the command line.
fn relative_key(path: &Path, kind: FileKind) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    match kind {
        FileKind::Campaign => format!("campaigns/{name}"),
        _ => name.into_owned(),
    }
}

/// Content hash of a set of rule files (64-bit FNV-1a over the sorted relative paths and
/// contents), as 16 hex digits. Equal for equal contents however the files were read.
pub fn version_of(files: &[(PathBuf, String)]) -> String {
    let mut keyed: Vec<(String, &str)> = files
        .iter()
        .map(|(path, text)| {
            let key = FileKind::of(path)
                .map(|kind| relative_key(path, kind))
                .unwrap_or_else(|| path.to_string_lossy().into_owned());
            (key, text.as_str())
        })
        .collect();
    keyed.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (key, text) in keyed {
        for byte in key.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Editor droppings (`.#offers.toml`, `offers.toml~`, swap files) are not rules.
fn is_editor_file(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('#') || name.ends_with('~')
}

/// Reads every rule file under `rules_dir`: `offers.toml`, `sources.toml`, `campaigns/*.toml`,
/// sorted by path. A missing `offers.toml`, `sources.toml` or `campaigns/` is an empty one; any
/// other `.toml` file at the top is refused so a misnamed file is not silently ignored.
pub fn read_files(rules_dir: &Path) -> Result<Vec<(PathBuf, String)>, Vec<RuleError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let entries = std::fs::read_dir(rules_dir).map_err(|e| {
        vec![RuleError::file(
            rules_dir,
            format!("cannot read the rules directory: {e}"),
        )]
    })?;
    let mut campaign_dir = None;
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(RuleError::file(rules_dir, format!("cannot list: {e}")));
                continue;
            }
        };
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_editor_file(&name) {
            continue;
        }
        let is_dir = path.is_dir();
        if is_dir && name == "campaigns" {
            campaign_dir = Some(path);
        } else if !is_dir && name.ends_with(".toml") {
            if matches!(name.as_str(), "offers.toml" | "sources.toml") {
                read_one(&path, &mut files, &mut errors);
            } else {
                errors.push(RuleError::file(
                    &path,
                    "not a rules file: rules live in offers.toml, sources.toml and campaigns/*.toml",
                ));
            }
        }
    }
    if let Some(dir) = campaign_dir {
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !is_editor_file(&name) && name.ends_with(".toml") && !path.is_dir() {
                        read_one(&path, &mut files, &mut errors);
                    }
                }
            }
            Err(e) => errors.push(RuleError::file(&dir, format!("cannot read: {e}"))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    files.sort();
    Ok(files)
}

fn read_one(path: &Path, files: &mut Vec<(PathBuf, String)>, errors: &mut Vec<RuleError>) {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => files.push((path.to_path_buf(), text)),
            Err(_) => errors.push(RuleError::file(path, "not UTF-8 text")),
        },
        Err(e) => errors.push(RuleError::file(path, format!("cannot read: {e}"))),
    }
}

/// Reads and validates the rule set under `rules_dir`; every error if any.
pub fn load(rules_dir: &Path) -> Result<RuleSet, Vec<RuleError>> {
    load_from_sources(&read_files(rules_dir)?)
}

/// Validates and compiles a rule set given as (path, content) pairs, touching no disk, so a
/// proposed change (one file replaced, added or removed in what `read_files` returned) can be
/// checked against the whole set. Paths decide each file's kind as in `FileKind::of`.
pub fn load_from_sources(files: &[(PathBuf, String)]) -> Result<RuleSet, Vec<RuleError>> {
    let mut loader = Loader::default();
    let mut parsed = Vec::new();
    for (path, text) in files {
        let Some(kind) = FileKind::of(path) else {
            loader.errors.push(RuleError::file(
                path,
                "not a rules file: rules live in offers.toml, sources.toml and campaigns/*.toml",
            ));
            continue;
        };
        let file = SourceFile::new(path, text);
        let (table, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            let mut seen_lines = HashSet::new();
            for error in syntax {
                let line = error.span().map_or(1, |span| file.line(span.start));
                if seen_lines.insert(line) {
                    loader.errors.push(RuleError {
                        file: path.clone(),
                        line: Some(line),
                        item: None,
                        field: None,
                        message: format!("TOML syntax: {}", error.message().replace('\n', " ")),
                    });
                }
            }
            // What recovery made of the rest would only produce confusing follow-up errors;
            // references into this file are not checked either.
            loader.incomplete.insert(kind);
            continue;
        }
        parsed.push((kind, file, table));
    }
    // Sources and offers first, so campaigns can be checked against them.
    parsed.sort_by_key(|(kind, _, _)| *kind == FileKind::Campaign);
    for (kind, file, table) in &parsed {
        match kind {
            FileKind::Offers => loader.offers_file(file, table),
            FileKind::Sources => loader.sources_file(file, table),
            FileKind::Campaign => loader.campaign_file(file, table),
        }
    }
    loader.check_references();
    if !loader.errors.is_empty() {
        let order: HashMap<&Path, usize> = files
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (p.as_path(), i))
            .collect();
        loader
            .errors
            .sort_by_key(|e| (order.get(e.file.as_path()).copied(), e.line));
        return Err(loader.errors);
    }
    Ok(RuleSet::new(
        version_of(files),
        loader
            .offers
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect(),
        loader
            .sources
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect(),
        loader
            .campaigns
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect(),
    ))
}

struct SourceFile<'a> {
    path: &'a Path,
    line_starts: Vec<usize>,
}

impl<'a> SourceFile<'a> {
    fn new(path: &'a Path, text: &str) -> SourceFile<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile { path, line_starts }
    }

    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }
}

/// Where an error goes: a file and the rule in it.
struct At<'a> {
    file: &'a SourceFile<'a>,
    item: Option<String>,
}

impl At<'_> {
    fn error(
        &self,
        errors: &mut Vec<RuleError>,
        span: &Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) {
        errors.push(RuleError {
            file: self.file.path.to_path_buf(),
            line: Some(self.file.line(span.start)),
            item: self.item.clone(),
            field: (!field.is_empty()).then(|| field.to_string()),
            message: message.into(),
        });
    }
}

/// Where an id was first defined, for duplicate and reference errors.
#[derive(Clone)]
struct Defined {
    file: PathBuf,
    line: usize,
}

/// A reference from a campaign to a source or offer, checked once everything is read.
struct Reference {
    file: PathBuf,
    line: usize,
    item: Option<String>,
    field: String,
    kind: FileKind,
    id: String,
}

#[derive(Default)]
struct Loader {
    errors: Vec<RuleError>,
    /// Kinds with a file that did not parse: references into them are not checked.
    incomplete: HashSet<FileKind>,
    offer_ids: HashMap<String, Defined>,
    source_ids: HashMap<String, Defined>,
    campaign_ids: HashMap<String, Defined>,
    offers: HashMap<String, Offer>,
    sources: HashMap<String, Source>,
    campaigns: HashMap<String, Campaign>,
    references: Vec<Reference>,
}

pub(crate) const OFFER_KEYS: &[&str] = &[
    "id",
    "url",
    "payout",
    "currency",
    "daily_cap",
    "cap_timezone",
    "paused",
    "match",
    "exclude",
];
pub(crate) const SOURCE_KEYS: &[&str] = &[
    "id",
    "click_id_param",
    "cost_param",
    "cost_model",
    "postback_url",
    "postback_events",
    "postback_statuses",
    "postback_ips",
];
pub(crate) const CAMPAIGN_KEYS: &[&str] = &[
    "id", "source", "redirect", "backlink", "bot_url", "primary", "fallback",
];
const PRIMARY_KEYS: &[&str] = &["offer", "match", "exclude"];
pub(crate) const FALLBACK_KEYS: &[&str] = &["offer", "weight", "match", "exclude"];
const STATUSES: &[&str] = &["approved", "pending", "rejected", "chargeback"];

type Value<'i> = Spanned<DeValue<'i>>;

/// `[a-z0-9_-]{1,64}`: every rule id (SPEC §5), and so every id the admin API takes in a path.
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn type_error(expected: &str, found: &DeValue<'_>) -> String {
    format!("expected {expected}, found {}", found.type_str())
}

/// A TOML number as `f64`; `None` for other types.
fn number(value: &DeValue<'_>) -> Option<f64> {
    match value {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(|n| n as f64),
        DeValue::Float(f) => f.as_str().parse().ok(),
        _ => None,
    }
}

fn integer(value: &DeValue<'_>) -> Option<i128> {
    match value {
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    }
}

impl Loader {
    fn offers_file(&mut self, file: &SourceFile<'_>, root: &Spanned<DeTable<'_>>) {
        let at = At { file, item: None };
        self.unknown_keys(&at, root.get_ref(), "", &["offer"]);
        for (index, item) in self.items(&at, root.get_ref(), "offer") {
            self.offer(file, index, item);
        }
    }

    fn sources_file(&mut self, file: &SourceFile<'_>, root: &Spanned<DeTable<'_>>) {
        let at = At { file, item: None };
        self.unknown_keys(&at, root.get_ref(), "", &["source"]);
        for (index, item) in self.items(&at, root.get_ref(), "source") {
            self.source(file, index, item);
        }
    }

    /// The entries of an array of tables (`[[offer]]`), numbered from 1; a single table counts
    /// as one entry.
    fn items<'t, 'i>(
        &mut self,
        at: &At<'_>,
        table: &'t DeTable<'i>,
        key: &str,
    ) -> Vec<(usize, &'t Value<'i>)> {
        let Some(value) = table.get(key) else {
            return Vec::new();
        };
        match value.get_ref() {
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    if item.get_ref().is_table() {
                        out.push((index + 1, item));
                    } else {
                        at.error(
                            &mut self.errors,
                            &item.span(),
                            key,
                            type_error("a table", item.get_ref()),
                        );
                    }
                }
                out
            }
            DeValue::Table(_) => vec![(1, value)],
            other => {
                at.error(
                    &mut self.errors,
                    &value.span(),
                    key,
                    format!("expected [[{key}]] tables, found {}", other.type_str()),
                );
                Vec::new()
            }
        }
    }

    fn unknown_keys(&mut self, at: &At<'_>, table: &DeTable<'_>, prefix: &str, allowed: &[&str]) {
        for key in table.keys() {
            let name: &str = key.get_ref();
            if !allowed.contains(&name) {
                at.error(
                    &mut self.errors,
                    &key.span(),
                    &format!("{prefix}{name}"),
                    format!("unknown key; expected one of {}", allowed.join(", ")),
                );
            }
        }
    }

    /// The item's id as written (kept even when invalid, so references to it do not pile up
    /// follow-up errors) and the label errors name the item by.
    fn item_id(
        &mut self,
        file: &SourceFile<'_>,
        table: &DeTable<'_>,
        header: &Range<usize>,
        kind: &str,
        index: usize,
    ) -> (Option<(String, Range<usize>)>, String) {
        let numbered = format!("{kind} #{index}");
        let Some(value) = table.get("id") else {
            let at = At {
                file,
                item: Some(numbered.clone()),
            };
            at.error(
                &mut self.errors,
                header,
                "id",
                format!("missing; every {kind} needs an id"),
            );
            return (None, numbered);
        };
        let Some(id) = value.get_ref().as_str() else {
            let at = At {
                file,
                item: Some(numbered.clone()),
            };
            at.error(
                &mut self.errors,
                &value.span(),
                "id",
                type_error("a string", value.get_ref()),
            );
            return (None, numbered);
        };
        let label = format!("{kind} {id:?}");
        if !valid_id(id) {
            let at = At {
                file,
                item: Some(label.clone()),
            };
            at.error(
                &mut self.errors,
                &value.span(),
                "id",
                "not a valid id: use 1 to 64 of a-z, 0-9, _ and -",
            );
        }
        (Some((id.to_string(), value.span())), label)
    }

    fn define(&mut self, at: &At<'_>, kind: FileKind, id: &str, span: &Range<usize>) {
        let (ids, noun) = match kind {
            FileKind::Offers => (&mut self.offer_ids, "offer"),
            FileKind::Sources => (&mut self.source_ids, "source"),
            FileKind::Campaign => (&mut self.campaign_ids, "campaign"),
        };
        if let Some(first) = ids.get(id) {
            let message = format!(
                "duplicate {noun} id {id:?}; first defined at {}:{}",
                first.file.display(),
                first.line
            );
            at.error(&mut self.errors, span, "id", message);
        } else {
            ids.insert(
                id.to_string(),
                Defined {
                    file: at.file.path.to_path_buf(),
                    line: at.file.line(span.start),
                },
            );
        }
    }

    fn string<'t>(
        &mut self,
        at: &At<'_>,
        table: &'t DeTable<'_>,
        key: &str,
    ) -> Option<(&'t str, Range<usize>)> {
        let value = table.get(key)?;
        match value.get_ref().as_str() {
            Some(text) => Some((text, value.span())),
            None => {
                at.error(
                    &mut self.errors,
                    &value.span(),
                    key,
                    type_error("a string", value.get_ref()),
                );
                None
            }
        }
    }

    fn required_string<'t>(
        &mut self,
        at: &At<'_>,
        table: &'t DeTable<'_>,
        header: &Range<usize>,
        key: &str,
    ) -> Option<(&'t str, Range<usize>)> {
        if !table.contains_key(key) {
            at.error(&mut self.errors, header, key, "missing");
            return None;
        }
        self.string(at, table, key)
    }

    fn bool(&mut self, at: &At<'_>, table: &DeTable<'_>, key: &str) -> Option<bool> {
        let value = table.get(key)?;
        let flag = value.get_ref().as_bool();
        if flag.is_none() {
            at.error(
                &mut self.errors,
                &value.span(),
                key,
                type_error("true or false", value.get_ref()),
            );
        }
        flag
    }

    /// A URL template; `""` for an optional one means none.
    fn template(
        &mut self,
        at: &At<'_>,
        table: &DeTable<'_>,
        header: &Range<usize>,
        key: &str,
        set: MacroSet,
        required: Option<&str>,
    ) -> Option<UrlTemplate> {
        let (text, span) = match (table.contains_key(key), required) {
            (false, Some(why)) => {
                at.error(&mut self.errors, header, key, format!("missing; {why}"));
                return None;
            }
            (false, None) => return None,
            (true, _) => self.string(at, table, key)?,
        };
        if text.is_empty() {
            if let Some(why) = required {
                at.error(&mut self.errors, &span, key, format!("empty; {why}"));
            }
            return None;
        }
        match UrlTemplate::parse(text, set) {
            Ok(template) => Some(template),
            Err(e) => {
                at.error(&mut self.errors, &span, key, e.to_string());
                None
            }
        }
    }

    fn offer(&mut self, file: &SourceFile<'_>, index: usize, item: &Value<'_>) {
        let Some(table) = item.get_ref().as_table() else {
            return;
        };
        let header = item.span();
        let before = self.errors.len();
        let (id, label) = self.item_id(file, table, &header, "offer", index);
        let at = At {
            file,
            item: Some(label),
        };
        self.unknown_keys(&at, table, "", OFFER_KEYS);
        if let Some((id, span)) = &id {
            self.define(&at, FileKind::Offers, id, span);
        }
        let url = self.template(
            &at,
            table,
            &header,
            "url",
            MacroSet::Click,
            Some("every offer needs the URL visitors are sent to"),
        );
        let payout = self.payout(&at, table, &header);
        let currency = match self.string(&at, table, "currency") {
            None => Some("USD".to_string()),
            Some((code, span)) => {
                if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
                    Some(code.to_ascii_uppercase())
                } else {
                    at.error(
                        &mut self.errors,
                        &span,
                        "currency",
                        format!("{code:?} is not an ISO 4217 code such as \"USD\""),
                    );
                    None
                }
            }
        };
        let daily_cap = self.daily_cap(&at, table);
        let (cap_timezone, cap_tz) = match self.string(&at, table, "cap_timezone") {
            None | Some(("", _)) => ("UTC".to_string(), Some(chrono_tz::Tz::UTC)),
            Some((zone, span)) => match chrono_tz::Tz::from_str(zone) {
                Ok(tz) => (zone.to_string(), Some(tz)),
                Err(_) => {
                    at.error(
                        &mut self.errors,
                        &span,
                        "cap_timezone",
                        format!(
                            "unknown time zone {zone:?}; use an IANA name such as \"America/New_York\" or \"UTC\""
                        ),
                    );
                    (zone.to_string(), None)
                }
            },
        };
        let paused = self.bool(&at, table, "paused").unwrap_or(false);
        let matches = self.conditions(&at, table, "match");
        let excludes = self.conditions(&at, table, "exclude");
        if self.errors.len() != before {
            return;
        }
        if let (Some((id, _)), Some(url), Some(payout), Some(currency), Some(cap_tz)) =
            (id, url, payout, currency, cap_tz)
        {
            self.offers.insert(
                id.clone(),
                Offer {
                    id,
                    url,
                    payout,
                    currency,
                    daily_cap: daily_cap.flatten(),
                    cap_timezone,
                    paused,
                    matches,
                    excludes,
                    cap_tz,
                },
            );
        }
    }

    fn payout(&mut self, at: &At<'_>, table: &DeTable<'_>, header: &Range<usize>) -> Option<Money> {
        let Some(value) = table.get("payout") else {
            at.error(
                &mut self.errors,
                header,
                "payout",
                "missing; the expected payout per conversion is the bandit's starting point",
            );
            return None;
        };
        let span = value.span();
        let problem = match number(value.get_ref()) {
            None => type_error("a number", value.get_ref()),
            Some(n) if !n.is_finite() => "not a finite number".to_string(),
            Some(n) if n < 0.0 => "must not be negative".to_string(),
            Some(n) => {
                // The decimal as written is exact; floats only for exponent forms like 2.5e1.
                let written = match value.get_ref() {
                    DeValue::Integer(i) if i.radix() == 10 => Money::parse(i.as_str()).ok(),
                    DeValue::Float(f) => Money::parse(f.as_str()).ok(),
                    _ => None,
                };
                match written.or_else(|| Money::from_f64(n)) {
                    Some(money) => return Some(money),
                    None => "out of range".to_string(),
                }
            }
        };
        at.error(&mut self.errors, &span, "payout", problem);
        None
    }

    /// `Some(None)` when absent, `None` when invalid.
    fn daily_cap(&mut self, at: &At<'_>, table: &DeTable<'_>) -> Option<Option<u32>> {
        let Some(value) = table.get("daily_cap") else {
            return Some(None);
        };
        let problem = match integer(value.get_ref()) {
            None => type_error("a whole number", value.get_ref()),
            Some(n) if n < 1 => "must be at least 1 (to stop traffic, set paused = true)".into(),
            Some(n) => match u32::try_from(n) {
                Ok(cap) => return Some(Some(cap)),
                Err(_) => "too large".to_string(),
            },
        };
        at.error(&mut self.errors, &value.span(), "daily_cap", problem);
        None
    }

    fn source(&mut self, file: &SourceFile<'_>, index: usize, item: &Value<'_>) {
        let Some(table) = item.get_ref().as_table() else {
            return;
        };
        let header = item.span();
        let before = self.errors.len();
        let (id, label) = self.item_id(file, table, &header, "source", index);
        let at = At {
            file,
            item: Some(label),
        };
        self.unknown_keys(&at, table, "", SOURCE_KEYS);
        if let Some((id, span)) = &id {
            self.define(&at, FileKind::Sources, id, span);
        }
        let click_id_param = match self.string(&at, table, "click_id_param") {
            None => "clickid".to_string(),
            Some((name, span)) => {
                if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    at.error(
                        &mut self.errors,
                        &span,
                        "click_id_param",
                        "must be a query parameter name, such as \"clickid\"",
                    );
                }
                name.to_string()
            }
        };
        let cost_param = match self.string(&at, table, "cost_param") {
            None | Some(("", _)) => None,
            Some((name, span)) => {
                if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    at.error(
                        &mut self.errors,
                        &span,
                        "cost_param",
                        "must be a query parameter name, such as \"cost\"",
                    );
                }
                Some(name.to_string())
            }
        };
        let cost_model = match self.string(&at, table, "cost_model") {
            None => CostModel::Cpc,
            Some((model, span)) => {
                if model.eq_ignore_ascii_case("cpc") {
                    CostModel::Cpc
                } else if model.eq_ignore_ascii_case("cpm") {
                    CostModel::Cpm
                } else {
                    at.error(
                        &mut self.errors,
                        &span,
                        "cost_model",
                        format!("unknown cost model {model:?}; expected \"cpc\" or \"cpm\""),
                    );
                    CostModel::Cpc
                }
            }
        };
        let postback_url = self.template(
            &at,
            table,
            &header,
            "postback_url",
            MacroSet::SourcePostback,
            None,
        );
        let postback_events = self
            .string_list(&at, table, "postback_events", |event| {
                let event = event.to_ascii_lowercase();
                let ok = (1..=32).contains(&event.len())
                    && event.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    });
                if ok {
                    Ok(event)
                } else {
                    Err(format!(
                        "{event:?} is not an event name: use 1 to 32 of a-z, 0-9, _ and -"
                    ))
                }
            })
            .unwrap_or_default();
        let postback_statuses = match self.string_list(&at, table, "postback_statuses", |status| {
            let status = status.to_ascii_lowercase();
            if STATUSES.contains(&status.as_str()) {
                Ok(status)
            } else {
                Err(format!(
                    "unknown status {status:?}; expected one of {}",
                    STATUSES.join(", ")
                ))
            }
        }) {
            None => vec!["approved".to_string()],
            Some(list) if list.is_empty() => STATUSES.iter().map(|s| s.to_string()).collect(),
            Some(mut list) => {
                list.dedup();
                list
            }
        };
        let postback_ips = self
            .string_list(&at, table, "postback_ips", |written| {
                let written = written.trim();
                IpNet::from_str(written)
                    .map(|net| net.trunc())
                    .or_else(|_| std::net::IpAddr::from_str(written).map(IpNet::from))
                    .map(|net| net.to_string())
                    .map_err(|_| {
                        format!(
                            "{written:?} is not a CIDR (such as \"203.0.113.0/24\") or an IP address"
                        )
                    })
            })
            .unwrap_or_default()
            .iter()
            .filter_map(|net| IpNet::from_str(net).ok())
            .collect();
        if self.errors.len() != before {
            return;
        }
        if let Some((id, _)) = id {
            self.sources.insert(
                id.clone(),
                Source {
                    id,
                    click_id_param,
                    cost_param,
                    cost_model,
                    postback_url,
                    postback_events,
                    postback_statuses,
                    postback_ips,
                },
            );
        }
    }

    /// A list of strings, each checked by `convert`; `None` when absent or invalid.
    fn string_list(
        &mut self,
        at: &At<'_>,
        table: &DeTable<'_>,
        key: &str,
        convert: impl Fn(&str) -> Result<String, String>,
    ) -> Option<Vec<String>> {
        let value = table.get(key)?;
        let Some(items) = value.get_ref().as_array() else {
            at.error(
                &mut self.errors,
                &value.span(),
                key,
                type_error("a list of strings", value.get_ref()),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            let result = match item.get_ref().as_str() {
                Some(text) => convert(text),
                None => Err(type_error("a string", item.get_ref())),
            };
            match result {
                Ok(v) => out.push(v),
                Err(message) => {
                    at.error(&mut self.errors, &item.span(), key, message);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn campaign_file(&mut self, file: &SourceFile<'_>, root: &Spanned<DeTable<'_>>) {
        let table = root.get_ref();
        let top = 0..0;
        let before = self.errors.len();
        let id = match table.get("id") {
            None => {
                let at = At {
                    file,
                    item: Some("campaign".to_string()),
                };
                at.error(
                    &mut self.errors,
                    &top,
                    "id",
                    "missing; every campaign file needs id = \"...\"",
                );
                None
            }
            Some(_) => self.item_id(file, table, &top, "campaign", 1).0,
        };
        let label = match &id {
            Some((id, _)) => format!("campaign {id:?}"),
            None => "campaign".to_string(),
        };
        let at = At {
            file,
            item: Some(label.clone()),
        };
        self.unknown_keys(&at, table, "", CAMPAIGN_KEYS);
        if let Some((id, span)) = &id {
            self.define(&at, FileKind::Campaign, id, span);
        }
        let source = self.required_string(&at, table, &top, "source");
        if let Some((source, span)) = &source {
            self.refer(&at, span, "source", FileKind::Sources, source);
        }
        let redirect = match table.get("redirect") {
            None => RedirectKind::Found,
            Some(value) => match value.get_ref() {
                DeValue::String(s) if s == "302" => RedirectKind::Found,
                DeValue::String(s) if s.eq_ignore_ascii_case("meta") => RedirectKind::Meta,
                DeValue::Integer(_) if integer(value.get_ref()) == Some(302) => RedirectKind::Found,
                other => {
                    let shown = match other {
                        DeValue::String(s) => format!("{s:?}"),
                        other => other.type_str().to_string(),
                    };
                    at.error(
                        &mut self.errors,
                        &value.span(),
                        "redirect",
                        format!("unknown redirect {shown}; expected \"302\" or \"meta\""),
                    );
                    RedirectKind::Found
                }
            },
        };
        let backlink = self.template(
            &at,
            table,
            &top,
            "backlink",
            MacroSet::Click,
            Some("every campaign needs a backlink, the last resort for visitors no offer fits"),
        );
        let bot_url = self.template(&at, table, &top, "bot_url", MacroSet::Click, None);

        let mut primary = Vec::new();
        for (index, item) in self.items(&at, table, "primary") {
            let sub = At {
                file,
                item: Some(format!("{label}, primary #{index}")),
            };
            if let Some((offer, matches, excludes)) = self.routed(&sub, item, PRIMARY_KEYS) {
                primary.push(Primary {
                    offer,
                    matches,
                    excludes,
                });
            }
        }
        let mut fallback = Vec::new();
        let mut fallback_offers: HashMap<String, usize> = HashMap::new();
        for (index, item) in self.items(&at, table, "fallback") {
            let sub = At {
                file,
                item: Some(format!("{label}, fallback #{index}")),
            };
            let weight = self.weight(&sub, item);
            if let Some(table) = item.get_ref().as_table() {
                if let Some((offer, span)) = table
                    .get("offer")
                    .and_then(|v| v.get_ref().as_str().map(|s| (s, v.span())))
                {
                    if let Some(first) = fallback_offers.insert(offer.to_string(), index) {
                        sub.error(
                            &mut self.errors,
                            &span,
                            "offer",
                            format!("offer {offer:?} is already fallback #{first}; list each offer once"),
                        );
                    }
                }
            }
            if let (Some((offer, matches, excludes)), Some(weight)) =
                (self.routed(&sub, item, FALLBACK_KEYS), weight)
            {
                fallback.push(Fallback {
                    offer,
                    weight,
                    matches,
                    excludes,
                });
            }
        }
        if self.errors.len() != before {
            return;
        }
        if let (Some((id, _)), Some((source, _)), Some(backlink)) = (id, source, backlink) {
            self.campaigns.insert(
                id.clone(),
                Campaign {
                    id,
                    source: source.to_string(),
                    redirect,
                    backlink,
                    bot_url,
                    primary,
                    fallback,
                },
            );
        }
    }

    /// The parts a primary and a fallback share: `offer`, `match`, `exclude`.
    fn routed(
        &mut self,
        at: &At<'_>,
        item: &Value<'_>,
        keys: &[&str],
    ) -> Option<(String, Conditions, Conditions)> {
        let table = item.get_ref().as_table()?;
        let before = self.errors.len();
        self.unknown_keys(at, table, "", keys);
        let offer = self.required_string(at, table, &item.span(), "offer");
        if let Some((offer, span)) = &offer {
            self.refer(at, span, "offer", FileKind::Offers, offer);
        }
        let matches = self.conditions(at, table, "match");
        let excludes = self.conditions(at, table, "exclude");
        let (offer, _) = offer?;
        (self.errors.len() == before).then(|| (offer.to_string(), matches, excludes))
    }

    fn weight(&mut self, at: &At<'_>, item: &Value<'_>) -> Option<f64> {
        let value = item.get_ref().as_table()?.get("weight");
        let Some(value) = value else {
            return Some(1.0);
        };
        let problem = match number(value.get_ref()) {
            None => type_error("a number", value.get_ref()),
            Some(w) if !w.is_finite() => "not a finite number".to_string(),
            Some(w) if w <= 0.0 => "must be greater than 0".to_string(),
            Some(w) => return Some(w),
        };
        at.error(&mut self.errors, &value.span(), "weight", problem);
        None
    }

    fn refer(&mut self, at: &At<'_>, span: &Range<usize>, field: &str, kind: FileKind, id: &str) {
        self.references.push(Reference {
            file: at.file.path.to_path_buf(),
            line: at.file.line(span.start),
            item: at.item.clone(),
            field: field.to_string(),
            kind,
            id: id.to_string(),
        });
    }

    fn check_references(&mut self) {
        for reference in std::mem::take(&mut self.references) {
            if self.incomplete.contains(&reference.kind) {
                continue;
            }
            let (ids, noun, home) = match reference.kind {
                FileKind::Offers => (&self.offer_ids, "offer", "offers.toml"),
                FileKind::Sources => (&self.source_ids, "source", "sources.toml"),
                FileKind::Campaign => continue,
            };
            if ids.contains_key(&reference.id) {
                continue;
            }
            let known: BTreeMap<&str, ()> = ids.keys().map(|k| (k.as_str(), ())).collect();
            let hint = if known.is_empty() {
                format!("{home} defines none")
            } else {
                let names: Vec<&str> = known.keys().copied().collect();
                format!("known: {}", names.join(", "))
            };
            self.errors.push(RuleError {
                file: reference.file,
                line: Some(reference.line),
                item: reference.item,
                field: Some(reference.field),
                message: format!("unknown {noun} {:?} ({hint})", reference.id),
            });
        }
    }

    fn conditions(&mut self, at: &At<'_>, table: &DeTable<'_>, key: &str) -> Conditions {
        let Some(value) = table.get(key) else {
            return Conditions::default();
        };
        let Some(dims) = value.get_ref().as_table() else {
            at.error(
                &mut self.errors,
                &value.span(),
                key,
                type_error("a table of dimensions", value.get_ref()),
            );
            return Conditions::default();
        };
        let mut tests = Vec::new();
        let mut params: HashSet<String> = HashSet::new();
        for (dim_key, dim_value) in dims.iter() {
            let name: &str = dim_key.get_ref();
            let field = format!("{key}.{name}");
            if name == "param" {
                let Some(named) = dim_value.get_ref().as_table() else {
                    at.error(
                        &mut self.errors,
                        &dim_value.span(),
                        &field,
                        "expected param.NAME = [values], e.g. param.zone = [\"1234\"]",
                    );
                    continue;
                };
                for (param_key, param_value) in named.iter() {
                    let param: &str = param_key.get_ref();
                    let field = format!("{key}.param.{param}");
                    if let Some(condition) = self.param(
                        at,
                        &field,
                        param,
                        &param_key.span(),
                        param_value,
                        &mut params,
                    ) {
                        tests.push(condition);
                    }
                }
            } else if let Some(param) = name.strip_prefix("param.") {
                if let Some(condition) =
                    self.param(at, &field, param, &dim_key.span(), dim_value, &mut params)
                {
                    tests.push(condition);
                }
            } else if DIMENSIONS.contains(&name) {
                if let Some(condition) = self.dimension(at, &field, name, dim_value) {
                    tests.push(condition);
                }
            } else {
                at.error(
                    &mut self.errors,
                    &dim_key.span(),
                    &field,
                    format!(
                        "unknown dimension; expected one of {}, param.NAME",
                        DIMENSIONS.join(", ")
                    ),
                );
            }
        }
        Conditions::new(tests)
    }

    fn param(
        &mut self,
        at: &At<'_>,
        field: &str,
        name: &str,
        key_span: &Range<usize>,
        value: &Value<'_>,
        seen: &mut HashSet<String>,
    ) -> Option<Condition> {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            at.error(
                &mut self.errors,
                key_span,
                field,
                "not a query parameter name",
            );
            return None;
        }
        if !seen.insert(name.to_string()) {
            at.error(
                &mut self.errors,
                key_span,
                field,
                "given twice (as param.NAME and \"param.NAME\")",
            );
            return None;
        }
        let values = self.each(at, field, value, |v| match v {
            DeValue::String(s) if !s.is_empty() => Ok(s.to_string()),
            DeValue::String(_) => Err("empty value".to_string()),
            DeValue::Integer(_) => Ok(integer(v).map(|n| n.to_string()).unwrap_or_default()),
            other => Err(type_error("a string", other)),
        })?;
        Some(Condition::Param {
            name: name.into(),
            list: TextList::new(values),
        })
    }

    /// The items of a dimension's list (a single value is a list of one).
    fn list_items<'t, 'i>(
        &mut self,
        at: &At<'_>,
        field: &str,
        value: &'t Value<'i>,
    ) -> Option<Vec<&'t Value<'i>>> {
        match value.get_ref() {
            DeValue::Array(items) if items.is_empty() => {
                at.error(
                    &mut self.errors,
                    &value.span(),
                    field,
                    "empty list; it would match no one (remove the key to not filter on it)",
                );
                None
            }
            DeValue::Array(items) => Some(items.iter().collect()),
            DeValue::Table(_) => {
                at.error(
                    &mut self.errors,
                    &value.span(),
                    field,
                    type_error("a list", value.get_ref()),
                );
                None
            }
            _ => Some(vec![value]),
        }
    }

    /// Converts every item of a dimension's list, reporting each bad one at its own line.
    fn each<T>(
        &mut self,
        at: &At<'_>,
        field: &str,
        value: &Value<'_>,
        convert: impl Fn(&DeValue<'_>) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let items = self.list_items(at, field, value)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match convert(item.get_ref()) {
                Ok(v) => out.push(v),
                Err(message) => {
                    at.error(&mut self.errors, &item.span(), field, message);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn dimension(
        &mut self,
        at: &At<'_>,
        field: &str,
        name: &str,
        value: &Value<'_>,
    ) -> Option<Condition> {
        match name {
            "country" => {
                let list = self.each(at, field, value, |v| {
                    let code = text(v)?.to_ascii_uppercase();
                    if is_country(&code) {
                        Ok(code)
                    } else if code == "UK" {
                        Err("\"UK\" is not an ISO 3166-1 alpha-2 code; the United Kingdom is \"GB\"".into())
                    } else {
                        Err(format!("{:?} is not an ISO 3166-1 alpha-2 country code", text(v)?))
                    }
                })?;
                Some(Condition::Text {
                    dim: TextDim::Country,
                    list: TextList::new(list),
                })
            }
            "language" => {
                let list = self.each(at, field, value, |v| {
                    let tag = text(v)?;
                    if (2..=3).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_alphabetic()) {
                        Ok(tag.to_ascii_lowercase())
                    } else {
                        Err(format!(
                            "{tag:?} is not a primary language subtag; use e.g. \"en\" (the visitor's language has no region part)"
                        ))
                    }
                })?;
                Some(Condition::Text {
                    dim: TextDim::Language,
                    list: TextList::new(list),
                })
            }
            "region" | "city" | "isp" | "carrier" | "browser" => {
                let dim = match name {
                    "region" => TextDim::Region,
                    "city" => TextDim::City,
                    "isp" => TextDim::Isp,
                    "carrier" => TextDim::Carrier,
                    _ => TextDim::Browser,
                };
                let list = self.each(at, field, value, |v| text(v).map(str::to_string))?;
                Some(Condition::Text {
                    dim,
                    list: TextList::new(list),
                })
            }
            "asn" => {
                let list = self.each(at, field, value, |v| {
                    let number = match v {
                        DeValue::Integer(_) => integer(v),
                        DeValue::String(s) => {
                            let digits = s
                                .strip_prefix("AS")
                                .or_else(|| s.strip_prefix("as"))
                                .or_else(|| s.strip_prefix("As"))
                                .unwrap_or(s);
                            digits
                                .bytes()
                                .all(|b| b.is_ascii_digit())
                                .then(|| digits.parse::<i128>().ok())
                                .flatten()
                        }
                        other => return Err(type_error("an AS number", other)),
                    };
                    number
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| "not an AS number such as 7922 or \"AS7922\"".to_string())
                })?;
                Some(Condition::Asn(list.into()))
            }
            "connection" => {
                let list = self.each(at, field, value, |v| {
                    vocabulary(v, "connection", Connection::parse, Connection::ALL)
                })?;
                Some(Condition::Connection(list.into()))
            }
            "os" => {
                let list = self.each(at, field, value, |v| {
                    vocabulary(v, "os", Os::parse, Os::ALL)
                })?;
                Some(Condition::Os(list.into()))
            }
            "device" => {
                let list = self.each(at, field, value, |v| {
                    vocabulary(v, "device", Device::parse, Device::ALL)
                })?;
                Some(Condition::Device(list.into()))
            }
            "os_version_min" | "os_version_max" => {
                let bound = if name == "os_version_min" {
                    Bound::Min
                } else {
                    Bound::Max
                };
                let single = match value.get_ref() {
                    DeValue::Array(items) if items.len() == 1 => &items[0],
                    DeValue::Array(_) => {
                        at.error(
                            &mut self.errors,
                            &value.span(),
                            field,
                            "expected one version, such as \"12\"",
                        );
                        return None;
                    }
                    _ => value,
                };
                let written = match single.get_ref() {
                    DeValue::String(s) => s.to_string(),
                    DeValue::Integer(i) if i.radix() == 10 => i.as_str().to_string(),
                    DeValue::Float(f) => f.as_str().to_string(),
                    other => {
                        at.error(
                            &mut self.errors,
                            &single.span(),
                            field,
                            type_error("a version such as \"12\"", other),
                        );
                        return None;
                    }
                };
                match Version::parse_rule(&written) {
                    Some(version) => Some(Condition::OsVersion { bound, version }),
                    None => {
                        at.error(
                            &mut self.errors,
                            &single.span(),
                            field,
                            format!(
                                "{written:?} is not a dotted version such as \"12\" or \"14.4\""
                            ),
                        );
                        None
                    }
                }
            }
            "ip" => {
                let list = self.each(at, field, value, |v| {
                    let written = text(v)?;
                    let net = IpNet::from_str(written)
                        .map(|net| net.trunc())
                        .or_else(|_| std::net::IpAddr::from_str(written).map(IpNet::from))
                        .map_err(|_| {
                            format!("{written:?} is not a CIDR (such as \"203.0.113.0/24\") or an IP address")
                        })?;
                    Ok((net, Box::from(written)))
                })?;
                Some(Condition::Ip(list.into()))
            }
            _ => None,
        }
    }
}

/// A non-empty string value of a dimension list.
fn text<'v>(value: &'v DeValue<'_>) -> Result<&'v str, String> {
    match value {
        DeValue::String(s) if s.trim().is_empty() => Err("empty value".to_string()),
        DeValue::String(s) => Ok(s.as_ref()),
        other => Err(type_error("a string", other)),
    }
}

fn vocabulary<T: Copy + fmt::Display>(
    value: &DeValue<'_>,
    noun: &str,
    parse: fn(&str) -> Option<T>,
    all: &[T],
) -> Result<T, String> {
    let written = text(value)?;
    parse(written).ok_or_else(|| {
        let names: Vec<String> = all.iter().map(|v| v.to_string()).collect();
        format!(
            "unknown {noun} {written:?}; expected one of {}",
            names.join(", ")
        )
    })
}

#[cfg(test)]
mod tests;
