//! Routing rules (SPEC §5): TOML files under `rules_dir`, validated as a whole with file and line
//! in every error, compiled into a `RuleSet`, hot-reloaded and swapped atomically.

pub mod matching;
pub mod model;

pub use model::{Campaign, CostModel, Fallback, Offer, Primary, RedirectKind, RuleSet, Source};
