//! Match conditions over the dimensions of SPEC §5, evaluated against a visitor and the click's
//! query parameters. Pure: no I/O.

use crate::visitor::{QueryParams, Visitor};

/// A set of dimension conditions (`[x.match]` or `[x.exclude]`). Empty = no condition.
#[derive(Debug, Default, Clone)]
pub struct Conditions {
    // Filled in by the rules implementation.
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        true
    }

    /// `match` semantics: every listed dimension matches (an empty set matches everyone).
    pub fn matches_all(&self, _visitor: &Visitor, _params: &QueryParams) -> bool {
        true
    }

    /// `exclude` semantics: any listed dimension matches (an empty set excludes no one).
    pub fn matches_any(&self, _visitor: &Visitor, _params: &QueryParams) -> bool {
        false
    }

    /// For `explain`: one reason per dimension that fails, e.g. `country DE not in [US]`.
    pub fn failures(&self, _visitor: &Visitor, _params: &QueryParams) -> Vec<String> {
        Vec::new()
    }

    /// For `explain`: one reason per excluding dimension that matches, e.g. `connection broadband excluded`.
    pub fn hits(&self, _visitor: &Visitor, _params: &QueryParams) -> Vec<String> {
        Vec::new()
    }
}
