//! Rule changes through the admin API (SPEC §13): one offer, source or campaign created,
//! replaced or deleted, validated against the whole rule set with the same loader as the files,
//! written atomically under `rules_dir`, and swapped in before the caller answers.
//!
//! Offers and sources live in `offers.toml` / `sources.toml`: a change rewrites that whole file
//! from what is on disk (parsed, so its comments are not kept) with the one entry replaced. A
//! campaign lives in whichever `campaigns/*.toml` file holds its id (a new one goes to
//! `campaigns/<id>.toml`); a change rewrites that file, a deletion removes it.
//!
//! The set swapped in has the version of the files as written, so the file watcher, which
//! compares the files' content hash with the version in force, sees nothing to reload.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

pub(crate) use crate::rules::load::valid_id;
use crate::rules::load::{self, load_from_sources, read_files, FileKind, RuleError};
use crate::rules::model::RuleSet;

/// What kind of rule a change is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Offer,
    Source,
    Campaign,
}

impl Kind {
    /// `offer`, `source`, `campaign`: the TOML table name and the noun in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Offer => "offer",
            Kind::Source => "source",
            Kind::Campaign => "campaign",
        }
    }

    /// Preferred key order when the entry is written (tables always come last): the order the
    /// loader knows the keys in.
    fn key_order(self) -> &'static [&'static str] {
        match self {
            Kind::Offer => load::OFFER_KEYS,
            Kind::Source => load::SOURCE_KEYS,
            Kind::Campaign => load::CAMPAIGN_KEYS,
        }
    }
}

/// A change to one rule.
#[derive(Debug)]
pub enum Change {
    /// Create or replace with this JSON object (the TOML of SPEC §5 as JSON).
    Put(serde_json::Value),
    Delete,
}

/// Why a change was not made. Nothing on disk or in force changed.
#[derive(Debug)]
pub enum EditError {
    /// `If-Match` named another version than the one in force.
    VersionMismatch { current: String },
    /// No such rule (deleting one that does not exist).
    NotFound,
    /// Deleting an offer or source that campaigns still use.
    InUse { campaigns: Vec<String> },
    /// The resulting rule set does not validate: every error, with files relative to
    /// `rules_dir`.
    Invalid(Vec<RuleError>),
    /// Writing the file failed.
    Io(String),
}

/// A change made and in force.
#[derive(Debug)]
pub struct Applied {
    pub rules: Arc<RuleSet>,
    /// The rule did not exist before.
    pub created: bool,
    /// The file written or removed, relative to `rules_dir`.
    pub file: PathBuf,
}

/// Makes rule changes one at a time: two concurrent changes never interleave their read,
/// validation, write and swap.
pub struct RuleEditor {
    rules_dir: PathBuf,
    current: Arc<ArcSwap<RuleSet>>,
    lock: Mutex<()>,
}

const HEADER: &str =
    "# Written by the smartlink admin API; comments in this file are not kept by API changes.\n\n";

impl RuleEditor {
    pub fn new(rules_dir: PathBuf, current: Arc<ArcSwap<RuleSet>>) -> RuleEditor {
        RuleEditor {
            rules_dir,
            current,
            lock: Mutex::new(()),
        }
    }

    pub fn rules_dir(&self) -> &Path {
        &self.rules_dir
    }

    /// Makes `change` to the `kind` rule `id` if the version in force is `if_match` (any
    /// version when `None`). Blocking: file I/O and validation; call it off the async runtime.
    pub fn apply(
        &self,
        kind: Kind,
        id: &str,
        change: Change,
        if_match: Option<&[String]>,
    ) -> Result<Applied, EditError> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let in_force = self.current.load_full();
        if let Some(wanted) = if_match {
            if !wanted.iter().any(|v| v == "*" || *v == in_force.version) {
                return Err(EditError::VersionMismatch {
                    current: in_force.version.clone(),
                });
            }
        }
        if matches!(change, Change::Delete) {
            let users = match kind {
                Kind::Offer => campaigns_using(&in_force, |c| {
                    c.primary.iter().any(|p| p.offer == id)
                        || c.fallback.iter().any(|f| f.offer == id)
                }),
                Kind::Source => campaigns_using(&in_force, |c| c.source == id),
                Kind::Campaign => Vec::new(),
            };
            if !users.is_empty() {
                return Err(EditError::InUse { campaigns: users });
            }
        }
        let files = read_files(&self.rules_dir).map_err(|e| self.invalid(e))?;
        let (entry, mut errors) = match change {
            Change::Put(body) => {
                let (entry, errors) = self.entry(kind, id, body);
                (Some(entry), errors)
            }
            Change::Delete => (None, Vec::new()),
        };
        let plan = match self.plan(&files, kind, id, entry) {
            Ok(plan) => plan,
            Err(EditError::Invalid(more)) => {
                errors.extend(more);
                return Err(EditError::Invalid(errors));
            }
            Err(other) => return Err(other),
        };
        let set = load_from_sources(&plan.files);
        let set = match set {
            Ok(set) if errors.is_empty() => set,
            Ok(_) => return Err(EditError::Invalid(errors)),
            Err(more) => {
                errors.extend(self.relative_errors(more));
                return Err(EditError::Invalid(errors));
            }
        };
        match &plan.write {
            Some(text) => write_atomically(&plan.path, text),
            None => remove_durably(&plan.path),
        }
        .map_err(|e| EditError::Io(format!("{}: {e}", plan.path.display())))?;
        let set = Arc::new(set);
        self.current.store(Arc::clone(&set));
        Ok(Applied {
            rules: set,
            created: plan.created,
            file: self.relative(&plan.path),
        })
    }

    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.rules_dir)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| path.to_path_buf())
    }

    fn relative_errors(&self, mut errors: Vec<RuleError>) -> Vec<RuleError> {
        for error in &mut errors {
            error.file = self.relative(&error.file);
        }
        errors
    }

    fn invalid(&self, errors: Vec<RuleError>) -> EditError {
        EditError::Invalid(self.relative_errors(errors))
    }

    /// The files as they would be after the change, and what to write.
    fn plan(
        &self,
        files: &[(PathBuf, String)],
        kind: Kind,
        id: &str,
        entry: Option<toml::Table>,
    ) -> Result<Plan, EditError> {
        match kind {
            Kind::Offer | Kind::Source => {
                let (file_kind, name) = if kind == Kind::Offer {
                    (FileKind::Offers, "offers.toml")
                } else {
                    (FileKind::Sources, "sources.toml")
                };
                let existing = files
                    .iter()
                    .position(|(p, _)| FileKind::of(p) == Some(file_kind));
                let path =
                    existing.map_or_else(|| self.rules_dir.join(name), |i| files[i].0.clone());
                let mut entries = match existing {
                    Some(i) => self.entries(files, &files[i], kind)?,
                    None => Vec::new(),
                };
                let at = entries.iter().position(|t| has_id(t, id));
                let created = at.is_none();
                match (entry, at) {
                    (Some(entry), Some(i)) => entries[i] = entry,
                    (Some(entry), None) => entries.push(entry),
                    (None, Some(i)) => {
                        entries.remove(i);
                    }
                    (None, None) => return Err(EditError::NotFound),
                }
                let text = list_file(kind, &entries);
                let mut proposed = files.to_vec();
                match existing {
                    Some(i) => proposed[i].1 = text.clone(),
                    None => proposed.push((path.clone(), text.clone())),
                }
                Ok(Plan {
                    files: proposed,
                    path,
                    write: Some(text),
                    created,
                })
            }
            Kind::Campaign => {
                let existing = files.iter().position(|(path, text)| {
                    FileKind::of(path) == Some(FileKind::Campaign)
                        && text
                            .parse::<toml::Table>()
                            .is_ok_and(|table| has_id(&table, id))
                });
                let mut proposed = files.to_vec();
                match (entry, existing) {
                    (Some(entry), Some(i)) => {
                        let text = campaign_file(&entry);
                        proposed[i].1 = text.clone();
                        Ok(Plan {
                            path: proposed[i].0.clone(),
                            files: proposed,
                            write: Some(text),
                            created: false,
                        })
                    }
                    (Some(entry), None) => {
                        let path = self.new_campaign_path(files, id);
                        let text = campaign_file(&entry);
                        proposed.push((path.clone(), text.clone()));
                        Ok(Plan {
                            files: proposed,
                            path,
                            write: Some(text),
                            created: true,
                        })
                    }
                    (None, Some(i)) => {
                        let (path, _) = proposed.remove(i);
                        Ok(Plan {
                            files: proposed,
                            path,
                            write: None,
                            created: false,
                        })
                    }
                    (None, None) => Err(EditError::NotFound),
                }
            }
        }
    }

    /// `campaigns/<id>.toml`, or `<id>-2.toml`, ... when a file of that name holds another
    /// campaign (files may be named anything).
    fn new_campaign_path(&self, files: &[(PathBuf, String)], id: &str) -> PathBuf {
        let dir = self.rules_dir.join("campaigns");
        let taken = |path: &Path| path.exists() || files.iter().any(|(p, _)| p == path);
        let mut path = dir.join(format!("{id}.toml"));
        let mut n = 2;
        while taken(&path) {
            path = dir.join(format!("{id}-{n}.toml"));
            n += 1;
        }
        path
    }

    /// The `[[offer]]` / `[[source]]` entries of a file on disk. A file that is not TOML cannot
    /// be rewritten: the whole set's errors are returned.
    fn entries(
        &self,
        files: &[(PathBuf, String)],
        (_, text): &(PathBuf, String),
        kind: Kind,
    ) -> Result<Vec<toml::Table>, EditError> {
        let broken = || match load_from_sources(files) {
            Err(errors) => self.invalid(errors),
            Ok(_) => EditError::Invalid(Vec::new()),
        };
        let table: toml::Table = text.parse().map_err(|_| broken())?;
        match table.get(kind.noun()) {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|item| item.as_table().cloned().ok_or_else(broken))
                .collect(),
            Some(toml::Value::Table(one)) => Ok(vec![one.clone()]),
            Some(_) => Err(broken()),
        }
    }

    /// The TOML table of a `PUT` body (a JSON object; its `id`, if any, the one in the path),
    /// and what is wrong with the body that validation would not see (it is validated with the
    /// id of the path and without the keys that could not be read).
    fn entry(
        &self,
        kind: Kind,
        id: &str,
        body: serde_json::Value,
    ) -> (toml::Table, Vec<RuleError>) {
        let file = match kind {
            Kind::Offer => PathBuf::from("offers.toml"),
            Kind::Source => PathBuf::from("sources.toml"),
            Kind::Campaign => PathBuf::from(format!("campaigns/{id}.toml")),
        };
        let item = Some(format!("{} {id:?}", kind.noun()));
        let error = |field: &str, message: String| RuleError {
            file: file.clone(),
            line: None,
            item: item.clone(),
            field: (!field.is_empty()).then(|| field.to_string()),
            message,
        };
        let mut table = toml::Table::new();
        table.insert("id".into(), toml::Value::String(id.to_string()));
        let serde_json::Value::Object(object) = body else {
            let message = format!(
                "expected one JSON object mirroring the {} TOML",
                kind.noun()
            );
            return (table, vec![error("", message)]);
        };
        let mut errors = Vec::new();
        if let Some(given) = object.get("id").filter(|v| !v.is_null()) {
            if given.as_str() != Some(id) {
                errors.push(error(
                    "id",
                    format!("{given} does not match the id in the path ({id:?})"),
                ));
            }
        }
        for (key, value) in object {
            if key == "id" {
                continue;
            }
            match to_toml(&value) {
                Ok(Some(value)) => {
                    table.insert(key, value);
                }
                Ok(None) => {}
                Err(message) => errors.push(error(&key, message)),
            }
        }
        (table, errors)
    }
}

struct Plan {
    files: Vec<(PathBuf, String)>,
    /// The file to write or (when `write` is `None`) remove.
    path: PathBuf,
    write: Option<String>,
    created: bool,
}

fn has_id(table: &toml::Table, id: &str) -> bool {
    table.get("id").and_then(toml::Value::as_str) == Some(id)
}

/// Campaigns (sorted) for which `uses` is true.
fn campaigns_using(
    set: &RuleSet,
    uses: impl Fn(&crate::rules::model::Campaign) -> bool,
) -> Vec<String> {
    let mut ids: Vec<String> = set
        .campaigns
        .values()
        .filter(|c| uses(c))
        .map(|c| c.id.clone())
        .collect();
    ids.sort();
    ids
}

/// A JSON value as TOML; `None` for `null` (a key given as null is left out: its default).
fn to_toml(value: &serde_json::Value) -> Result<Option<toml::Value>, String> {
    Ok(Some(match value {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Bool(b) => toml::Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64().ok_or("number out of range")?),
        },
        serde_json::Value::String(s) => toml::Value::String(s.clone()),
        serde_json::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(to_toml(item)?.ok_or("null in a list")?);
            }
            toml::Value::Array(out)
        }
        serde_json::Value::Object(map) => {
            let mut out = toml::Table::new();
            for (key, value) in map {
                if let Some(value) = to_toml(value)? {
                    out.insert(key.clone(), value);
                }
            }
            toml::Value::Table(out)
        }
    }))
}

/// `offers.toml` / `sources.toml` with these entries.
fn list_file(kind: Kind, entries: &[toml::Table]) -> String {
    let mut text = String::from(HEADER);
    if entries.is_empty() {
        return text;
    }
    let mut root = BTreeMap::new();
    let ordered: Vec<Ordered<'_>> = entries
        .iter()
        .map(|table| Ordered {
            table,
            prefer: kind.key_order(),
        })
        .collect();
    root.insert(kind.noun(), ordered);
    text.push_str(&toml::to_string(&root).unwrap_or_default());
    text
}

/// One campaign's file.
fn campaign_file(table: &toml::Table) -> String {
    let mut text = String::from(HEADER);
    text.push_str(
        &toml::to_string(&Ordered {
            table,
            prefer: Kind::Campaign.key_order(),
        })
        .unwrap_or_default(),
    );
    text
}

/// Keys of primaries and fallbacks, in the order they are written (a fallback's keys are a
/// primary's plus `weight`).
const ROUTE_KEYS: &[&str] = load::FALLBACK_KEYS;

/// A table written with its keys in a readable order: plain values before tables (`match`,
/// `exclude`) and lists of tables (`primary`, `fallback`), each group in `prefer` order, then
/// any other key alphabetically.
struct Ordered<'a> {
    table: &'a toml::Table,
    prefer: &'static [&'static str],
}

fn is_table_like(value: &toml::Value) -> bool {
    match value {
        toml::Value::Table(_) => true,
        toml::Value::Array(items) => !items.is_empty() && items.iter().all(toml::Value::is_table),
        _ => false,
    }
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // An empty `match` or `exclude` is no condition at all: left out.
        let mut keys: Vec<&String> = (self.table.iter())
            .filter(|(k, v)| {
                !(matches!(k.as_str(), "match" | "exclude")
                    && v.as_table().is_some_and(toml::Table::is_empty))
            })
            .map(|(k, _)| k)
            .collect();
        keys.sort_by_key(|k| {
            (
                is_table_like(&self.table[k.as_str()]),
                self.prefer
                    .iter()
                    .position(|p| p == k)
                    .unwrap_or(usize::MAX),
            )
        });
        let mut map = serializer.serialize_map(Some(keys.len()))?;
        for key in keys {
            match &self.table[key.as_str()] {
                toml::Value::Table(table) => {
                    map.serialize_entry(key, &Ordered { table, prefer: &[] })?
                }
                toml::Value::Array(items) if is_table_like(&self.table[key.as_str()]) => {
                    let ordered: Vec<Ordered<'_>> = items
                        .iter()
                        .filter_map(toml::Value::as_table)
                        .map(|table| Ordered {
                            table,
                            prefer: ROUTE_KEYS,
                        })
                        .collect();
                    map.serialize_entry(key, &ordered)?
                }
                other => map.serialize_entry(key, other)?,
            }
        }
        map.end()
    }
}

/// Writes `text` to `path` so that a reader sees the old or the new content, never a part:
/// a temporary file in the same directory (a dot file, which the rule reader skips), fsynced,
/// renamed over `path`, then the directory fsynced so the rename survives a crash.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix: u64 = rand::random();
    let temp = dir.join(format!(".{name}.{suffix:016x}.tmp"));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Removes `path` and fsyncs its directory.
fn remove_durably(path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OFFERS: &str = "# the offers\n[[offer]]\nid = \"o1\"\nurl = \"https://o.example/?c={clickid}\"\npayout = 1.5\n[offer.match]\ncountry = [\"US\"]\n\n[[offer]]\nid = \"o2\"\nurl = \"https://p.example/\"\npayout = 2\n";
    const CAMPAIGN: &str = "id = \"c\"\nsource = \"src\"\nbacklink = \"https://b.example/\"\n[[fallback]]\noffer = \"o1\"\nweight = 2.0\n[[fallback]]\noffer = \"o2\"\n[fallback.match]\ndevice = [\"desktop\"]\n";

    fn editor() -> (tempfile::TempDir, RuleEditor) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rules");
        std::fs::create_dir_all(dir.join("campaigns")).unwrap();
        std::fs::write(dir.join("sources.toml"), "[[source]]\nid = \"src\"\n").unwrap();
        std::fs::write(dir.join("offers.toml"), OFFERS).unwrap();
        std::fs::write(dir.join("campaigns/anything.toml"), CAMPAIGN).unwrap();
        let current = Arc::new(ArcSwap::from_pointee(crate::rules::load(&dir).unwrap()));
        (tmp, RuleEditor::new(dir, current))
    }

    fn version(editor: &RuleEditor) -> String {
        editor.current.load().version.clone()
    }

    #[test]
    fn a_changed_weight_is_written_to_the_campaigns_own_file_and_in_force() {
        let (_tmp, editor) = editor();
        let body = json!({"source": "src", "backlink": "https://b.example/",
            "fallback": [{"offer": "o1", "weight": 5.0, "match": {}, "exclude": {}},
                         {"offer": "o2", "weight": 1, "match": {"device": ["desktop"]}}]});
        let applied = editor
            .apply(Kind::Campaign, "c", Change::Put(body), None)
            .unwrap();
        assert!(!applied.created);
        assert_eq!(applied.file, PathBuf::from("campaigns/anything.toml"));
        let campaign = editor.current.load().campaign("c").unwrap().clone();
        assert_eq!(campaign.fallback[0].weight, 5.0);
        let text =
            std::fs::read_to_string(editor.rules_dir.join("campaigns/anything.toml")).unwrap();
        assert!(text.contains("weight = 5.0"), "{text}");
        // What is in force is what the files say: the watcher has nothing to reload.
        assert_eq!(
            crate::rules::load(&editor.rules_dir).unwrap().version,
            version(&editor)
        );
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(editor.rules_dir.join("campaigns"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn an_offer_is_replaced_in_place_and_the_others_kept() {
        let (_tmp, editor) = editor();
        let body = json!({"url": "https://p.example/new", "payout": 3.25, "paused": true});
        editor
            .apply(Kind::Offer, "o2", Change::Put(body), None)
            .unwrap();
        let set = editor.current.load();
        assert!(set.offer("o2").unwrap().paused);
        assert!(!set.offer("o1").unwrap().matches.is_empty());
        let text = std::fs::read_to_string(editor.rules_dir.join("offers.toml")).unwrap();
        let o1 = text.find("id = \"o1\"").unwrap();
        let o2 = text.find("id = \"o2\"").unwrap();
        assert!(o1 < o2, "{text}");
        assert!(!text.contains("# the offers"));
    }

    #[test]
    fn every_error_is_reported_and_nothing_changes() {
        let (_tmp, editor) = editor();
        let before = version(&editor);
        let disk = std::fs::read_to_string(editor.rules_dir.join("offers.toml")).unwrap();
        let body = json!({"id": "other", "url": "ftp://x", "payout": 1, "colour": "red"});
        let Err(EditError::Invalid(errors)) =
            editor.apply(Kind::Offer, "o3", Change::Put(body), None)
        else {
            panic!("expected refusal");
        };
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(errors[0].field.as_deref(), Some("id"));
        assert_eq!(errors[0].line, None);
        let body = json!({"url": "ftp://x", "payout": -1, "colour": "red"});
        let Err(EditError::Invalid(errors)) =
            editor.apply(Kind::Offer, "o3", Change::Put(body), None)
        else {
            panic!("expected refusal");
        };
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors
            .iter()
            .all(|e| e.file == Path::new("offers.toml") && e.line.is_some()));
        assert_eq!(version(&editor), before);
        assert_eq!(
            std::fs::read_to_string(editor.rules_dir.join("offers.toml")).unwrap(),
            disk
        );
    }

    #[test]
    fn an_offer_in_use_is_not_deleted_and_an_unused_one_is() {
        let (_tmp, editor) = editor();
        let Err(EditError::InUse { campaigns }) =
            editor.apply(Kind::Offer, "o1", Change::Delete, None)
        else {
            panic!("expected in use");
        };
        assert_eq!(campaigns, ["c"]);
        editor
            .apply(Kind::Campaign, "c", Change::Delete, None)
            .unwrap();
        assert!(!editor.rules_dir.join("campaigns/anything.toml").exists());
        editor
            .apply(Kind::Offer, "o1", Change::Delete, None)
            .unwrap();
        assert!(editor.current.load().offer("o1").is_none());
        assert!(matches!(
            editor.apply(Kind::Offer, "o1", Change::Delete, None),
            Err(EditError::NotFound)
        ));
    }

    #[test]
    fn a_stale_version_is_refused() {
        let (_tmp, editor) = editor();
        let stale = vec!["0000000000000000".to_string()];
        assert!(matches!(
            editor.apply(Kind::Campaign, "c", Change::Delete, Some(&stale)),
            Err(EditError::VersionMismatch { .. })
        ));
        let fresh = vec![version(&editor)];
        editor
            .apply(Kind::Campaign, "c", Change::Delete, Some(&fresh))
            .unwrap();
    }

    #[test]
    fn a_new_campaign_gets_its_own_file_without_taking_anothers_name() {
        let (_tmp, editor) = editor();
        let body = json!({"source": "src", "backlink": "https://b.example/n"});
        let applied = editor
            .apply(Kind::Campaign, "anything", Change::Put(body), None)
            .unwrap();
        assert!(applied.created);
        assert_eq!(applied.file, PathBuf::from("campaigns/anything-2.toml"));
        assert!(editor.current.load().campaign("c").is_some());
        assert!(editor.current.load().campaign("anything").is_some());
    }
}
