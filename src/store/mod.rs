//! Storage behind one trait: the embedded SQLite store (default) and the shared Redis store for
//! several instances. The click path only hands a record over; the store decides when it is
//! written (SPEC §4 `durability`).

mod codec;
pub mod redis;
pub mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// When a handed-over record must be on disk (SPEC §4 `store.durability`); the configuration's
/// own type, so the server passes it straight through.
pub use crate::config::Durability;

use crate::bandit::Segment;
use crate::conversion::{Change, ConversionKey, ConversionStatus};
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

/// One conversion report as the postback endpoint accepted it (SPEC §9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversionReport {
    pub key: ConversionKey,
    pub status: ConversionStatus,
    /// In base currency: what the identity counts for.
    pub payout: Money,
    /// The amount as the network sent it, before conversion; `None` when it sent none.
    pub sent_payout: Option<Money>,
    pub sent_currency: String,
    pub ts_ms: i64,
}

/// An outbound postback to queue with a conversion (SPEC §10), its macros already filled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    pub url: String,
    pub source: String,
    /// The status the source is told about.
    pub status: ConversionStatus,
}

/// Decides, from the change a report made, whether the source hears about it. Run by the store
/// inside the conversion's transaction, so the delivery is queued if and only if the change is
/// committed. A store that decides optimistically (Redis) may run it again when another writer
/// changed the identity first, so it must answer from the change alone.
pub type DeliveryPlan = Box<dyn Fn(&Change) -> Option<NewDelivery> + Send>;

/// Where an outbound postback stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its first attempt or a retry.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Given up on after the retry period.
    Failed,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 3] = [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        DeliveryState::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

/// One queued outbound postback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub url: String,
    pub source: String,
    pub click_id: String,
    pub event: String,
    /// The conversion status reported (`approved`, `pending`, ...).
    pub status: String,
    pub created_ms: i64,
    /// HTTP attempts made so far, the successful or last one included.
    pub attempts: u32,
    /// When the next attempt is due (only meaningful while pending).
    pub next_at_ms: i64,
    pub state: DeliveryState,
    pub last_error: Option<String>,
    pub delivered_ms: Option<i64>,
}

/// The outcome of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryAttempt {
    Delivered { at_ms: i64 },
    Retry { next_at_ms: i64, error: String },
    GaveUp { error: String },
}

/// Totals of one offer's clicks in a period and of the conversions of those clicks (SPEC §12).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OfferTotals {
    /// `None` for clicks that went to no offer (backlink, bot).
    pub offer: Option<String>,
    pub clicks: i64,
    pub cost: Money,
    /// Approved identities.
    pub conversions: i64,
    /// Approved payouts.
    pub revenue: Money,
    /// Pending payouts.
    pub pending_revenue: Money,
}

/// A fallback-routed click as the optimiser learns from it (SPEC §8).
#[derive(Clone, Debug, PartialEq)]
pub struct EvidenceClick {
    pub campaign: String,
    pub offer: String,
    pub segment: Segment,
    pub ts_ms: i64,
}

/// A currently approved conversion of a fallback-routed click.
#[derive(Clone, Debug, PartialEq)]
pub struct EvidenceConversion {
    pub click: EvidenceClick,
    /// What the identity counts for now, in base currency (adjustments netted).
    pub payout: Money,
    /// When it was approved.
    pub approved_ms: i64,
}

/// Where the next page of `Store::evidence_page` starts: after this click.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceCursor {
    pub ts_ms: i64,
    pub id: String,
}

/// One page of the optimiser's history, each list in time order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvidencePage {
    pub clicks: Vec<EvidenceClick>,
    /// Approvals that fall in this page's span of time (see `Store::evidence_page`).
    pub conversions: Vec<EvidenceConversion>,
    /// `None` on the last page.
    pub next: Option<EvidenceCursor>,
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
    /// Clicks dropped because the store's in-memory buffer was full (Redis unreachable); also
    /// counted in `failed`.
    pub dropped: u64,
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

    /// Applies a conversion report inside one write transaction and commits it before returning,
    /// in both durability modes (a 200 is only sent after this returns Ok). Reads the identity's
    /// current state, runs `conversion::apply`, writes the new state (nothing for Duplicate),
    /// and, when `plan(&change)` returns a delivery, enqueues it in the SAME transaction.
    async fn record_conversion(
        &self,
        report: ConversionReport,
        plan: DeliveryPlan,
    ) -> Result<Change, StoreError>;

    /// Pending deliveries due at `now_ms`, the longest-waiting first.
    async fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<Delivery>, StoreError>;

    /// Records the outcome of an attempt; returns once it is committed. An attempt on a delivery
    /// that is no longer pending changes nothing.
    async fn record_delivery_attempt(
        &self,
        id: i64,
        attempt: DeliveryAttempt,
    ) -> Result<(), StoreError>;

    /// Deliveries in `state`, newest first (for `GET /api/postbacks`).
    async fn deliveries(
        &self,
        state: DeliveryState,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Approved conversions whose approval happened at or after `since_ms`: (offer id of their
    /// click, approval time ms). Used at start to rebuild daily cap counters.
    async fn approved_since(&self, since_ms: i64) -> Result<Vec<(String, i64)>, StoreError>;

    /// One page of what the fallback optimiser learns from, to rebuild it at start: clicks routed
    /// to a fallback offer made in [since_ms, until_ms), in (time, id) order after `after`, at
    /// most `limit`; and the currently approved conversions of clicks made since `since_ms` that
    /// were approved before `until_ms`, within the page's span: after the time of `after` (from
    /// the beginning when `None`) up to and including the time of the page's last click (to
    /// `until_ms` on the last page). Paging until `next` is `None` yields every such click and
    /// conversion exactly once, and merging each page's two lists by time replays them in order.
    async fn evidence_page(
        &self,
        since_ms: i64,
        until_ms: i64,
        after: Option<EvidenceCursor>,
        limit: usize,
    ) -> Result<EvidencePage, StoreError>;

    /// Per-offer totals of clicks whose time is in [from_ms, to_ms), optionally of one campaign.
    /// Conversions count against their click's time (SPEC §12). Offer None = clicks that went to
    /// backlink/bot.
    async fn offer_totals(
        &self,
        from_ms: i64,
        to_ms: i64,
        campaign: Option<&str>,
    ) -> Result<Vec<OfferTotals>, StoreError>;
}
