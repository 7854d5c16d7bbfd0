//! Storage behind one trait: the embedded SQLite store (default) and, later, Redis. The click path
//! only hands a record over; the store decides when it reaches disk (SPEC §4 `durability`).

mod codec;
pub mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// When a handed-over record must be on disk (SPEC §4 `store.durability`); the configuration's
/// own type, so the server passes it straight through.
pub use crate::config::Durability;

use crate::decide::Route;
use crate::money::Money;
use crate::visitor::{QueryParams, Visitor};

/// One stored click (SPEC §7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClickRecord {
    /// Our click id: URL-safe, ≤ 32 characters, ≥ 64 random bits.
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    pub campaign: String,
    pub source: String,
    /// The traffic source's own click id, when the source sent a real one.
    pub external_id: Option<String>,
    /// Cost of this one click in base currency (a CPM price already divided by 1000).
    pub cost: Option<Money>,
    /// The offer the visitor was sent to; `None` for backlink and bot routes.
    pub offer: Option<String>,
    pub route: Route,
    /// Classification at click time; `visitor.ip` is not relied on, see `ip`.
    pub visitor: Visitor,
    /// Client address as stored (anonymized when `anonymize_ip` is set).
    pub ip: String,
    /// Query parameters with unreplaced source tokens already removed.
    pub params: QueryParams,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Internal(String),
}

/// Counters the store exposes to `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreStats {
    /// Records handed over but not yet committed.
    pub queued: u64,
    /// Records committed since start.
    pub committed: u64,
    /// Commits (transactions) since start.
    pub commits: u64,
    /// Sum of commit durations in microseconds, and the number of commits measured.
    pub commit_micros_total: u64,
    /// Records that could not be written.
    pub failed: u64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Hands a click over. In `batched` mode returns at once (committed within 10 ms); in
    /// `strict` mode returns only after the click is committed.
    async fn record_click(&self, click: ClickRecord) -> Result<(), StoreError>;

    /// Looks a click up by id, including one handed over but not yet committed.
    async fn click(&self, id: &str) -> Result<Option<ClickRecord>, StoreError>;

    /// Succeeds when the store can take writes now (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Commits everything handed over so far (for shutdown).
    async fn flush(&self) -> Result<(), StoreError>;

    fn stats(&self) -> StoreStats;
}
