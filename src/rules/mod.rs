//! Routing rules (SPEC §5): TOML files under `rules_dir`, validated as a whole with file and line
//! in every error, compiled into a `RuleSet`, hot-reloaded and swapped atomically.

mod countries;
pub mod edit;
mod load;
pub mod matching;
pub mod model;
mod watch;

pub use countries::codes as country_codes;
pub use edit::RuleEditor;
pub use load::{load, load_from_sources, read_files, version_of, FileKind, RuleError};
pub use matching::Conditions;
pub use model::{Campaign, CostModel, Fallback, Offer, Primary, RedirectKind, RuleSet, Source};
pub use watch::{watch, ReloadEvent, WatchHandle, POLL_INTERVAL};
