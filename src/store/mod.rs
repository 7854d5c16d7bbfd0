//! Storage behind one trait: the embedded SQLite store (default) and the shared Redis store for
//! several instances. The click path only hands a record over; the store decides when it is
//! written (SPEC §4 `durability`).

mod codec;
pub mod redis;
pub mod sqlite;

use std::net::IpAddr;

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
    pub ip: IpAddr,
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

/// A dimension a report groups by (SPEC §12), besides the day: the day is a report's time spans
/// (see `ReportQuery::spans`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// The offer the click went to; `None` for backlink and bot clicks.
    Offer,
    Campaign,
    /// `primary`, `fallback`, `backlink` or `bot`.
    Route,
    /// The conversion event (`conversion`, `lead`, ...); `None` for click counters (see
    /// `Store::report`).
    Event,
    Country,
    /// `Os::as_str`.
    Os,
    /// `Device::as_str`.
    Device,
    Browser,
    Carrier,
    /// `Connection::as_str`.
    Connection,
    Language,
}

impl Dimension {
    pub const ALL: [Dimension; 11] = [
        Dimension::Offer,
        Dimension::Campaign,
        Dimension::Route,
        Dimension::Event,
        Dimension::Country,
        Dimension::Os,
        Dimension::Device,
        Dimension::Browser,
        Dimension::Carrier,
        Dimension::Connection,
        Dimension::Language,
    ];

    /// The name used in `group_by`, in report rows and CSV headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Offer => "offer",
            Dimension::Campaign => "campaign",
            Dimension::Route => "route",
            Dimension::Event => "event",
            Dimension::Country => "country",
            Dimension::Os => "os",
            Dimension::Device => "device",
            Dimension::Browser => "browser",
            Dimension::Carrier => "carrier",
            Dimension::Connection => "connection",
            Dimension::Language => "language",
        }
    }

    pub fn parse(text: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == text)
    }
}

/// Half-open span of click time, `[start_ms, end_ms)` in Unix milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeSpan {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// What `Store::report` sums: storage-neutral, with no time zone, ratio or formatting in it (those
/// are `crate::report`'s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportQuery {
    /// Spans of click time, in order and not overlapping; every group belongs to one of them. One
    /// span for a whole report, or one per local day when it groups by day. Bounds are local
    /// midnights, which fall on a quarter hour in every time zone in use since 1980; a store may
    /// round a bound down to a quarter hour (the SQLite store's finest bucket).
    pub spans: Vec<TimeSpan>,
    /// Only clicks of this campaign (and their conversions).
    pub campaign: Option<String>,
    /// What to group by within each span, in the order the values are wanted; no repeats.
    pub dimensions: Vec<Dimension>,
}

/// Summed counters of one group (SPEC §12). Money in base currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReportCounters {
    pub clicks: i64,
    /// Sum of the clicks' own costs (a CPM price already divided by 1000); no cost counts 0.
    pub cost: Money,
    /// Currently approved identities.
    pub conversions: i64,
    /// Their current payouts (negative adjustments netted).
    pub revenue: Money,
    /// Payouts of currently pending identities.
    pub pending_revenue: Money,
}

impl ReportCounters {
    pub fn add(&mut self, other: &ReportCounters) {
        self.clicks += other.clicks;
        self.cost = self.cost + other.cost;
        self.conversions += other.conversions;
        self.revenue = self.revenue + other.revenue;
        self.pending_revenue = self.pending_revenue + other.pending_revenue;
    }

    pub fn is_zero(&self) -> bool {
        *self == ReportCounters::default()
    }
}

/// The counters of one group of a report: one span and one value per dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportGroup {
    /// Index into `ReportQuery::spans`.
    pub span: usize,
    /// One value per `ReportQuery::dimensions`, in that order; `None` where the click had none.
    pub values: Vec<Option<String>>,
    pub counters: ReportCounters,
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

    /// Summed report counters (SPEC §12), one group per span and distinct combination of the
    /// query's dimension values that has any clicks or conversions; order unspecified.
    ///
    /// - A click counts in the span holding its time, under its own campaign, offer, route and
    ///   classification, with its `cost`.
    /// - A conversion identity counts against its click: the click's span and dimensions, by its
    ///   current status only (`conversion::counts`): approved adds one to `conversions` and its
    ///   payout to `revenue`, pending its payout to `pending_revenue`, rejected and chargeback
    ///   nothing. Every transition and negative adjustment is reflected at once.
    /// - With `Dimension::Event`, click counters (`clicks`, `cost`) are in groups whose event is
    ///   `None` and conversion counters in groups named by their event, never mixed; without it,
    ///   both are summed into the same groups. (`crate::report` decides how rows show them.)
    /// - A campaign never seen gives no groups. Groups whose counters are all zero may be left
    ///   out or kept.
    ///
    /// Expected to answer from aggregates kept up to date at write time, not by scanning clicks:
    /// reports over weeks of traffic are interactive (SPEC §12, README "Reports").
    async fn report(&self, query: &ReportQuery) -> Result<Vec<ReportGroup>, StoreError>;
}
