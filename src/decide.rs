//! Pure decision: visitor + rules + eligibility + fallback policy → route and offer. No I/O.

use serde::{Deserialize, Serialize};

/// Which branch of the decision order sent the visitor where it went (SPEC §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Primary,
    Fallback,
    Backlink,
    Bot,
}

impl Route {
    pub const ALL: [Route; 4] = [Route::Primary, Route::Fallback, Route::Backlink, Route::Bot];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Primary => "primary",
            Route::Fallback => "fallback",
            Route::Backlink => "backlink",
            Route::Bot => "bot",
        }
    }

    pub fn parse(text: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.as_str() == text)
    }
}
