//! The shared store (SPEC §14): several router instances behind one load balancer keep every
//! piece of shared state in one Redis (or Redis Cluster), so they behave as one router.
//!
//! - Clicks: the click path hands a click to an in-memory buffer and answers; a writer task
//!   writes what has arrived as one Lua script per shard (one round trip a batch, so within a
//!   few milliseconds in `batched` mode); `strict` waits for that write. A click is kept with
//!   its report counters and, when residual, its evidence, and expires at click time + twice
//!   the attribution window, like the SQLite retention. While Redis is unreachable clicks wait
//!   in the buffer (bounded; the oldest are dropped past it and counted) and are written when it
//!   is back.
//! - Conversions: an identity's state is one hash field of its click's identity hash. A report
//!   reads it, decides with `conversion::apply`, and writes with a compare-and-set script that
//!   also moves the report counters, the approval index, the shared event and the outbound
//!   delivery; if another instance changed the identity meanwhile nothing is written and the
//!   report is decided again. So a conversion and its delivery are committed together or not
//!   at all, and the same report through two instances is recorded once.
//! - Caps and learning: approvals, reversals and residual clicks are appended to a per-shard
//!   event stream every instance follows (`follow`); each instance applies what the others
//!   recorded to its own caps and learner, and skips its own, which it applied locally.
//! - Deliveries: a per-shard stream with the consumer group `deliver`. Each instance is a
//!   consumer; a delivery belongs to the instance that read it until it is delivered or given
//!   up; one a crashed instance held is claimed by another after a minute (XAUTOCLAIM).
//!   Their state lives in a hash plus per-state sorted sets for `GET /api/postbacks`.
//! - Reports: counters per shard and UTC day, by quarter hour and every report dimension,
//!   moved when a click is written and when a conversion changes; a report sums them.
//!
//! Key layout: see `keys`.

mod buffer;
mod conn;
mod keys;
mod scripts;
pub mod server;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use self::buffer::{Buffer, Entry};
use self::conn::Conn;
use self::keys::{join, split, Shard, SEP};
use self::scripts::{Apply, Scripts};
use super::{
    ClickRecord, ConversionReport, Delivery, DeliveryAttempt, DeliveryPlan, DeliveryState,
    Dimension, Durability, EvidenceClick, EvidenceConversion, EvidenceCursor, EvidencePage,
    ReportCounters, ReportGroup, ReportQuery, Store, StoreError, StoreStats,
};
use crate::bandit::Segment;
use crate::conversion::{self, Change, ConversionState, ConversionStatus};
use crate::decide::Route;
use crate::learning::{self, Outcome};
use crate::money::Money;
use crate::visitor::{Device, Os};

pub use self::buffer::DEFAULT_LIMIT as DEFAULT_BUFFER_LIMIT;

/// Clicks per script call: large enough that a burst is a few round trips, small enough that
/// one call keeps Redis busy for about a millisecond.
const MAX_BATCH: usize = 512;
/// Longest the click writer sleeps when nothing wakes it (see `Buffer::push`): a batched click
/// waits at most this (on tokio's millisecond timer, up to a millisecond more) before its write.
const POLL: Duration = Duration::from_millis(2);
/// Entries kept in each shard's event stream. An instance that falls further behind than this
/// (a long pause) loses some evidence, which only slows its learning.
const EVENTS_KEPT: usize = 100_000;
/// Residual clicks and approvals are kept this long for the optimiser's replay at start.
const EVIDENCE_KEPT_MS: i64 = learning::REPLAY_WINDOW_MS + DAY_MS;
/// A delivery its owner has not touched for this long is taken over by another instance.
const TAKEOVER_AFTER_MS: u64 = 60_000;
/// How often the follower looks for other instances' events when there were none.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// Events read with a start time this far before `since_ms`, so a Redis clock a little ahead
/// of ours loses nothing; events older than `since_ms` are then skipped by their own time.
const FOLLOW_SKEW_MS: i64 = 60_000;
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);
const KEEP_DELIVERED_MS: i64 = 9 * DAY_MS;
const KEEP_FAILED_MS: i64 = 32 * DAY_MS;
const QUARTER_MS: i64 = 15 * 60_000;
const DAY_MS: i64 = 86_400_000;
/// A compare-and-set that keeps losing to other writers is given up after this many tries.
const CAS_ATTEMPTS: usize = 16;
const PING_TIMEOUT: Duration = Duration::from_secs(1);
const STRICT_TIMEOUT: Duration = Duration::from_secs(3);

/// Builds a command's argument list from anything printable.
macro_rules! args {
    ($($part:expr),* $(,)?) => {
        vec![$($part.to_string()),*]
    };
}

/// Settings of the Redis store beyond its URLs.
#[derive(Clone, Debug)]
pub struct Options {
    pub durability: Durability,
    /// Clicks (and their conversions and report counters) expire this long after the click.
    pub retention: Duration,
    /// Clicks kept in memory while Redis is unreachable.
    pub buffer_limit: usize,
    /// Shards; `None` is one on a single server and `CLUSTER_SHARDS` on a cluster. Every
    /// instance sharing a Redis must use the same.
    pub shards: Option<u32>,
    /// A delivery held this long by an instance that stopped touching it is taken over.
    pub takeover_after: Duration,
}

impl Options {
    pub fn new(durability: Durability, retention: Duration) -> Options {
        Options {
            durability,
            retention,
            buffer_limit: DEFAULT_BUFFER_LIMIT,
            shards: None,
            takeover_after: Duration::from_millis(TAKEOVER_AFTER_MS),
        }
    }
}

/// The Redis store. Dropping it stops its tasks; call `flush` first to write what is buffered.
pub struct RedisStore {
    core: Arc<Core>,
    durability: Durability,
    tasks: Mutex<Vec<AbortHandle>>,
}

struct Core {
    conn: Conn,
    scripts: Scripts,
    shards: u32,
    /// This instance's name: its consumer name and the origin of the events it appends.
    origin: String,
    retention_ms: i64,
    buffer: Buffer,
    held: Mutex<Held>,
    /// Idle time after which a held delivery is taken over; holders touch theirs at a quarter.
    takeover_ms: i64,
}

/// Deliveries this instance has read from the streams and not finished.
#[derive(Default)]
struct Held {
    /// Delivery id → (shard, stream entry id).
    entries: HashMap<i64, (Shard, String)>,
    /// Where each shard's XAUTOCLAIM scan goes on.
    cursors: HashMap<Shard, String>,
    refreshed: Option<Instant>,
}

/// Something another instance recorded that this one learns from (see `RedisStore::follow`).
#[derive(Clone, Debug, PartialEq)]
pub enum SharedEvent {
    /// A residual click sent to `offer`.
    Click {
        campaign: String,
        offer: String,
        segment: Segment,
        at_ms: i64,
    },
    /// A conversion of a click sent to `offer` was approved, reversed or adjusted.
    Conversion {
        campaign: String,
        offer: String,
        route: Route,
        segment: Segment,
        outcome: Outcome,
        click_ms: i64,
        at_ms: i64,
    },
}

impl RedisStore {
    /// Connects to one server (`urls` of one) or a cluster (several seed nodes), prepares the
    /// delivery consumer groups and starts the writer.
    pub async fn open(urls: &[String], options: Options) -> Result<RedisStore, StoreError> {
        let conn = Conn::open(urls).await.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to Redis at {}: {e}",
                urls.join(", ")
            ))
        })?;
        let shards = options
            .shards
            .unwrap_or(if conn.is_cluster() {
                keys::CLUSTER_SHARDS
            } else {
                1
            })
            .clamp(1, keys::MAX_SHARDS as u32);
        let origin = format!("{:016x}", rand::random::<u64>());
        let core = Arc::new(Core {
            conn,
            scripts: Scripts::new(),
            shards,
            origin,
            retention_ms: i64::try_from(options.retention.as_millis()).unwrap_or(i64::MAX / 4),
            buffer: Buffer::new(options.buffer_limit),
            held: Mutex::new(Held::default()),
            takeover_ms: i64::try_from(options.takeover_after.as_millis())
                .unwrap_or(i64::MAX)
                .max(4),
        });
        for shard in core.all_shards() {
            core.create_group(shard).await?;
        }
        let writer = tokio::spawn(write_clicks(core.clone()));
        let maintenance = tokio::spawn(maintain(core.clone()));
        Ok(RedisStore {
            core,
            durability: options.durability,
            tasks: Mutex::new(vec![writer.abort_handle(), maintenance.abort_handle()]),
        })
    }

    /// Feeds `sink` every event other instances append from `since_ms` on (by the event's own
    /// time), polling every shard's stream; events of this instance are skipped, since it
    /// applied them when it recorded them. Runs until the store is dropped.
    pub fn follow(&self, since_ms: i64, sink: impl Fn(SharedEvent) + Send + Sync + 'static) {
        let core = self.core.clone();
        let task = tokio::spawn(async move {
            let start = format!("{}-0", (since_ms - FOLLOW_SKEW_MS).max(0));
            let mut positions: Vec<String> = core.all_shards().map(|_| start.clone()).collect();
            let mut failing = false;
            loop {
                let reads = core
                    .all_shards()
                    .zip(positions.iter())
                    .map(|(shard, from)| {
                        let mut conn = core.conn.clone();
                        let key = shard.events();
                        let from = from.clone();
                        async move {
                            redis::cmd("XREAD")
                                .arg("COUNT")
                                .arg(1000)
                                .arg("STREAMS")
                                .arg(key)
                                .arg(from)
                                .query_async::<StreamReply>(&mut conn)
                                .await
                        }
                    });
                let mut read_any = false;
                for (i, result) in join_all(reads).await.into_iter().enumerate() {
                    match result {
                        Ok(reply) => {
                            failing = false;
                            for (_, entries) in reply.unwrap_or_default() {
                                for (id, fields) in entries {
                                    read_any = true;
                                    positions[i] = id;
                                    let fields = pairs(&fields);
                                    if fields.get("o").map(String::as_str)
                                        == Some(core.origin.as_str())
                                    {
                                        continue;
                                    }
                                    match parse_event(&fields) {
                                        Some(event) if event_ms(&event) >= since_ms => sink(event),
                                        Some(_) => {}
                                        None => tracing::warn!("unreadable shared event skipped"),
                                    }
                                }
                            }
                        }
                        Err(error) => {
                            if !failing {
                                tracing::warn!(%error, "cannot read other instances' events; retrying");
                            }
                            failing = true;
                        }
                    }
                }
                if !read_any {
                    tokio::time::sleep(if failing {
                        FOLLOW_POLL * 5
                    } else {
                        FOLLOW_POLL
                    })
                    .await;
                }
            }
        });
        lock(&self.tasks).push(task.abort_handle());
    }

    /// This instance's name in the delivery consumer groups and on the events it appends.
    pub fn instance(&self) -> &str {
        &self.core.origin
    }

    /// Clicks dropped because the buffer was full while Redis was unreachable.
    pub fn dropped_clicks(&self) -> u64 {
        self.core.buffer.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("Redis: {error}"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("Redis holds an unreadable {what}"))
}

type StreamReply = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;

fn pairs(flat: &[String]) -> HashMap<String, String> {
    flat.chunks(2)
        .filter_map(|pair| match pair {
            [field, value] => Some((field.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Encodings

/// The report dimensions of a click, in the order of `Dimension`: campaign, offer, route,
/// country, os, device, browser, carrier, connection, language.
fn dimensions(click: &ClickRecord) -> String {
    let visitor = &click.visitor;
    join([
        click.campaign.as_str(),
        click.offer.as_deref().unwrap_or(""),
        click.route.as_str(),
        visitor.country.as_deref().unwrap_or(""),
        visitor.os.as_str(),
        visitor.device.as_str(),
        visitor.browser.as_deref().unwrap_or(""),
        visitor.carrier.as_deref().unwrap_or(""),
        visitor.connection.as_str(),
        visitor.language.as_deref().unwrap_or(""),
    ])
}

/// UTC day number and quarter hour within it.
fn bucket(ts_ms: i64) -> (i64, i64) {
    (
        ts_ms.div_euclid(DAY_MS),
        ts_ms.rem_euclid(DAY_MS) / QUARTER_MS,
    )
}

/// A report counter's field: metric, quarter, dimensions, event ("" for click metrics).
fn counter_field(metric: char, quarter: i64, dimensions: &str, event: &str) -> String {
    format!("{metric}{SEP}{quarter}{SEP}{dimensions}{SEP}{event}")
}

/// What the optimiser knows of a click: id, campaign, offer, country, device, os, carrier.
fn evidence_member(click: &ClickRecord, offer: &str) -> String {
    let visitor = &click.visitor;
    join([
        click.id.as_str(),
        click.campaign.as_str(),
        offer,
        visitor.country.as_deref().unwrap_or(""),
        visitor.device.as_str(),
        visitor.os.as_str(),
        visitor.carrier.as_deref().unwrap_or(""),
    ])
}

/// (click id, campaign, offer, segment) of an `evidence_member`.
fn parse_evidence(member: &str) -> Option<(String, String, String, Segment)> {
    let parts = split(member);
    let [id, campaign, offer, country, device, os, carrier] = parts.as_slice() else {
        return None;
    };
    Some((
        id.to_string(),
        campaign.to_string(),
        offer.to_string(),
        Segment {
            country: (!country.is_empty()).then(|| country.to_string()),
            device: Device::parse(device)?,
            os: Os::parse(os)?,
            carrier: (!carrier.is_empty()).then(|| carrier.to_string()),
        },
    ))
}

fn encode_click(click: &ClickRecord) -> String {
    serde_json::to_string(click).expect("a click always serialises")
}

fn decode_click(text: &str) -> Result<ClickRecord, StoreError> {
    let mut click: ClickRecord = serde_json::from_str(text).map_err(|_| corrupt("click"))?;
    click.visitor.ip = click.ip;
    Ok(click)
}

/// One conversion identity as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Identity {
    /// Status.
    s: ConversionStatus,
    /// Payout, millionths of base currency.
    p: i64,
    /// Payout and currency as sent.
    #[serde(default)]
    sp: Option<i64>,
    #[serde(default)]
    sc: String,
    /// Created and updated, ms.
    c: i64,
    u: i64,
    /// Approval time while approved.
    #[serde(default)]
    a: Option<i64>,
    /// Member of the approval index while approved.
    #[serde(default)]
    m: Option<String>,
}

/// One outbound delivery as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredDelivery {
    url: String,
    source: String,
    click_id: String,
    event: String,
    status: String,
    created_ms: i64,
    attempts: u32,
    next_at_ms: i64,
    state: DeliveryState,
    #[serde(default)]
    last_error: Option<String>,
    #[serde(default)]
    delivered_ms: Option<i64>,
}

impl StoredDelivery {
    fn into_delivery(self, id: i64) -> Delivery {
        Delivery {
            id,
            url: self.url,
            source: self.source,
            click_id: self.click_id,
            event: self.event,
            status: self.status,
            created_ms: self.created_ms,
            attempts: self.attempts,
            next_at_ms: self.next_at_ms,
            state: self.state,
            last_error: self.last_error,
            delivered_ms: self.delivered_ms,
        }
    }
}

fn parse_event(fields: &HashMap<String, String>) -> Option<SharedEvent> {
    let (_, campaign, offer, segment) = parse_evidence(fields.get("m")?)?;
    let at_ms: i64 = fields.get("t")?.parse().ok()?;
    let kind = fields.get("k")?.as_str();
    if kind == "c" {
        return Some(SharedEvent::Click {
            campaign,
            offer,
            segment,
            at_ms,
        });
    }
    let amount: f64 = fields.get("x")?.parse().ok()?;
    let outcome = match kind {
        "a" => Outcome::Approved(amount),
        "r" => Outcome::Reversed(amount),
        "j" => Outcome::Adjusted(amount),
        _ => return None,
    };
    Some(SharedEvent::Conversion {
        campaign,
        offer,
        route: Route::parse(fields.get("rt")?)?,
        segment,
        outcome,
        click_ms: fields.get("cm")?.parse().ok()?,
        at_ms,
    })
}

fn event_ms(event: &SharedEvent) -> i64 {
    match event {
        SharedEvent::Click { at_ms, .. } | SharedEvent::Conversion { at_ms, .. } => *at_ms,
    }
}

// ---------------------------------------------------------------------------------------------
// Clicks

impl Core {
    fn all_shards(&self) -> impl Iterator<Item = Shard> {
        (0..self.shards).map(Shard)
    }

    fn shard_of(&self, click_id: &str) -> Shard {
        Shard::of(click_id, self.shards)
    }

    /// Writes one shard's part of a batch.
    async fn write_shard(&self, shard: Shard, clicks: &[&Entry]) -> redis::RedisResult<()> {
        let now = now_ms();
        let mut invocation = self.scripts.clicks.prepare_invoke();
        invocation
            .key(shard.events())
            .key(shard.residual())
            .arg(&self.origin)
            .arg(EVENTS_KEPT)
            .arg(now - EVIDENCE_KEPT_MS);
        for entry in clicks {
            let click = &entry.click;
            let (day, quarter) = bucket(click.ts_ms);
            invocation
                .key(shard.click(&click.id))
                .key(shard.report(day));
            let residual = match (&click.offer, click.route) {
                (Some(offer), Route::Fallback) => evidence_member(click, offer),
                _ => String::new(),
            };
            invocation
                .arg(encode_click(click))
                .arg(click.ts_ms.saturating_add(self.retention_ms))
                .arg(((day + 1) * DAY_MS).saturating_add(self.retention_ms))
                .arg(format!("{SEP}{quarter}{SEP}{}{SEP}", dimensions(click)))
                .arg(click.cost.map_or(String::new(), |c| c.micros().to_string()))
                .arg(residual)
                .arg(click.ts_ms);
        }
        let mut conn = self.conn.clone();
        invocation.invoke_async::<i64>(&mut conn).await.map(|_| ())
    }
}

/// The writer: takes whatever clicks have arrived and writes them, shard by shard at once; on
/// failure puts them back and tries again with growing pauses (up to a second) until Redis
/// answers again.
async fn write_clicks(core: Arc<Core>) {
    let mut pause = Duration::from_millis(50);
    let mut last_error_log: Option<Instant> = None;
    loop {
        let batch = core.buffer.take(MAX_BATCH);
        if batch.is_empty() {
            tokio::select! {
                () = core.buffer.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        let started = Instant::now();
        let mut by_shard: HashMap<Shard, Vec<usize>> = HashMap::new();
        for (i, entry) in batch.iter().enumerate() {
            by_shard
                .entry(core.shard_of(&entry.click.id))
                .or_default()
                .push(i);
        }
        let writes = by_shard.iter().map(|(&shard, indexes)| {
            let entries: Vec<&Entry> = indexes.iter().map(|&i| &batch[i]).collect();
            let core = &core;
            async move { (shard, core.write_shard(shard, &entries).await) }
        });
        let results = join_all(writes).await;
        let failed: HashMap<Shard, String> = results
            .into_iter()
            .filter_map(|(shard, result)| result.err().map(|e| (shard, e.to_string())))
            .collect();
        if failed.is_empty() {
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            core.buffer.commits.fetch_add(1, Ordering::Relaxed);
            core.buffer
                .commit_micros_total
                .fetch_add(micros, Ordering::Relaxed);
            if !core.buffer.healthy.swap(true, Ordering::Relaxed) {
                tracing::info!("Redis answers again; buffered clicks are being written");
            }
            core.buffer.written(batch);
            pause = Duration::from_millis(50);
            continue;
        }
        let error = failed.values().next().cloned().unwrap_or_default();
        let (retry, written): (Vec<Entry>, Vec<Entry>) = batch
            .into_iter()
            .partition(|entry| failed.contains_key(&core.shard_of(&entry.click.id)));
        core.buffer.written(written);
        core.buffer.healthy.store(false, Ordering::Relaxed);
        if last_error_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            last_error_log = Some(Instant::now());
            tracing::error!(%error, buffered = core.buffer.queued(), "cannot write clicks to Redis; keeping them in memory");
        }
        core.buffer.retry(retry, &error);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------------------------
// Deliveries

impl Core {
    async fn create_group(&self, shard: Shard) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(shard.delivery_stream())
            .arg(keys::GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if !e.to_string().contains("BUSYGROUP") => Err(unavailable(e)),
            _ => Ok(()),
        }
    }

    /// Takes this shard's new deliveries and those idle too long in a crashed instance's hands,
    /// and keeps the ones held alive. Returns how many were taken.
    async fn claim(&self, shard: Shard, refresh: bool) -> Result<(), StoreError> {
        match self.claim_once(shard, refresh).await {
            Err(e) if e.to_string().contains("NOGROUP") => {
                // The stream is gone (a Redis restarted without persistence): start it anew.
                self.create_group(shard).await?;
                self.claim_once(shard, refresh).await.map_err(unavailable)
            }
            other => other.map_err(unavailable),
        }
    }

    async fn claim_once(&self, shard: Shard, refresh: bool) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let stream = shard.delivery_stream();
        let cursor = lock(&self.held)
            .cursors
            .get(&shard)
            .cloned()
            .unwrap_or_else(|| "0-0".into());
        let claimed: redis::Value = redis::cmd("XAUTOCLAIM")
            .arg(&stream)
            .arg(keys::GROUP)
            .arg(&self.origin)
            .arg(self.takeover_ms)
            .arg(&cursor)
            .arg("COUNT")
            .arg(100)
            .query_async(&mut conn)
            .await?;
        let (next_cursor, stolen) = autoclaimed(&claimed);
        let fresh: StreamReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(keys::GROUP)
            .arg(&self.origin)
            .arg("COUNT")
            .arg(256)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        let mut taken = stolen;
        for (_, entries) in fresh.unwrap_or_default() {
            for (entry, fields) in entries {
                if let Some(id) = pairs(&fields).get("id").and_then(|id| id.parse().ok()) {
                    taken.push((id, entry));
                }
            }
        }
        if refresh {
            // Deliveries waiting for a retry stay ours: touching them resets their idle time.
            let mine: Vec<(String, String, i64, i64)> = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(keys::GROUP)
                .arg("IDLE")
                .arg(self.takeover_ms / 4)
                .arg("-")
                .arg("+")
                .arg(1000)
                .arg(&self.origin)
                .query_async(&mut conn)
                .await?;
            if !mine.is_empty() {
                let mut claim = redis::cmd("XCLAIM");
                claim.arg(&stream).arg(keys::GROUP).arg(&self.origin).arg(0);
                for (entry, ..) in &mine {
                    claim.arg(entry);
                }
                claim.arg("JUSTID");
                let _: redis::Value = claim.query_async(&mut conn).await?;
            }
        }
        let mut held = lock(&self.held);
        held.cursors.insert(shard, next_cursor);
        for (id, entry) in taken {
            held.entries.insert(id, (shard, entry));
        }
        Ok(())
    }

    async fn release(&self, shard: Shard, entries: &[String]) -> redis::RedisResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let stream = shard.delivery_stream();
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(&stream).arg(keys::GROUP).arg(entries);
        pipe.cmd("XDEL").arg(&stream).arg(entries);
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await
    }
}

/// (next cursor, [(delivery id, entry id)]) of an XAUTOCLAIM answer.
fn autoclaimed(value: &redis::Value) -> (String, Vec<(i64, String)>) {
    use redis::Value;
    let text = |v: &Value| match v {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let Value::Array(parts) = value else {
        return ("0-0".into(), Vec::new());
    };
    let cursor = parts.first().and_then(text).unwrap_or_else(|| "0-0".into());
    let mut taken = Vec::new();
    if let Some(Value::Array(entries)) = parts.get(1) {
        for entry in entries {
            let Value::Array(entry) = entry else { continue };
            let (Some(entry_id), Some(Value::Array(fields))) =
                (entry.first().and_then(text), entry.get(1))
            else {
                continue;
            };
            let fields: Vec<String> = fields.iter().filter_map(text).collect();
            if let Some(id) = pairs(&fields).get("id").and_then(|id| id.parse().ok()) {
                taken.push((id, entry_id));
            }
        }
    }
    (cursor, taken)
}

// ---------------------------------------------------------------------------------------------
// Upkeep

/// Hourly: approvals older than the replay window leave their index, finished deliveries leave
/// after 7 (delivered) or 30 (failed) days past their give-up time.
async fn maintain(core: Arc<Core>) {
    tokio::time::sleep(Duration::from_secs(5)).await;
    loop {
        let now = now_ms();
        for shard in core.all_shards() {
            if let Err(error) = prune_shard(&core, shard, now).await {
                tracing::warn!(%error, "Redis upkeep failed; retried at the next run");
            }
        }
        tokio::time::sleep(MAINTENANCE_EVERY).await;
    }
}

async fn prune_shard(core: &Core, shard: Shard, now: i64) -> redis::RedisResult<()> {
    let mut conn = core.conn.clone();
    redis::cmd("ZREMRANGEBYSCORE")
        .arg(shard.approvals())
        .arg("-inf")
        .arg(format!("({}", now - EVIDENCE_KEPT_MS))
        .query_async::<()>(&mut conn)
        .await?;
    for (state, keep) in [
        (DeliveryState::Delivered, KEEP_DELIVERED_MS),
        (DeliveryState::Failed, KEEP_FAILED_MS),
    ] {
        let list = shard.delivery_list(state);
        loop {
            let old: Vec<String> = redis::cmd("ZRANGE")
                .arg(&list)
                .arg("-inf")
                .arg(format!("({}", now - keep))
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(0)
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if old.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            pipe.cmd("HDEL").arg(shard.deliveries()).arg(&old);
            pipe.cmd("ZREM").arg(&list).arg(&old);
            pipe.query_async::<()>(&mut conn).await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The trait

#[async_trait]
impl Store for RedisStore {
    async fn record_click(&self, click: ClickRecord) -> Result<(), StoreError> {
        let click = Arc::new(click);
        match self.durability {
            Durability::Batched => {
                self.core.buffer.push(Entry { click, done: None });
                Ok(())
            }
            Durability::Strict => {
                if !self.core.buffer.healthy.load(Ordering::Relaxed) {
                    // Waiting would hold the redirect for nothing: the click is kept and
                    // written when Redis is back.
                    self.core.buffer.push(Entry { click, done: None });
                    return Err(StoreError::Unavailable(
                        "Redis is unreachable; the click is kept in memory until it is back".into(),
                    ));
                }
                let (done, written) = oneshot::channel();
                self.core.buffer.push(Entry {
                    click,
                    done: Some(done),
                });
                match tokio::time::timeout(STRICT_TIMEOUT, written).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_)) => Err(StoreError::Unavailable("the Redis writer stopped".into())),
                    Err(_) => Err(StoreError::Unavailable(
                        "Redis did not take the click in time; it is kept in memory".into(),
                    )),
                }
            }
        }
    }

    async fn click(&self, id: &str) -> Result<Option<ClickRecord>, StoreError> {
        if let Some(click) = self.core.buffer.get(id) {
            return Ok(Some(ClickRecord::clone(&click)));
        }
        let mut conn = self.core.conn.clone();
        let text: Option<String> = redis::cmd("GET")
            .arg(self.core.shard_of(id).click(id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        text.as_deref().map(decode_click).transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.core.conn.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut conn);
        match tokio::time::timeout(PING_TIMEOUT, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "Redis did not answer within {} ms",
                PING_TIMEOUT.as_millis()
            ))),
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.core.buffer.queued() == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline
                || (!self.core.buffer.healthy.load(Ordering::Relaxed)
                    && self.core.buffer.is_waiting())
            {
                return Err(StoreError::Unavailable(format!(
                    "Redis is unreachable; {} clicks are not written",
                    self.core.buffer.queued()
                )));
            }
            self.core.buffer.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn stats(&self) -> StoreStats {
        let buffer = &self.core.buffer;
        StoreStats {
            queued: buffer.queued() as u64,
            committed: buffer.committed.load(Ordering::Relaxed),
            commits: buffer.commits.load(Ordering::Relaxed),
            commit_micros_total: buffer.commit_micros_total.load(Ordering::Relaxed),
            failed: buffer.failed.load(Ordering::Relaxed),
            dropped: buffer.dropped.load(Ordering::Relaxed),
        }
    }

    async fn record_conversion(
        &self,
        report: ConversionReport,
        plan: DeliveryPlan,
    ) -> Result<Change, StoreError> {
        let core = &self.core;
        let key = &report.key;
        let click = self.click(&key.click_id).await?;
        let shard = core.shard_of(&key.click_id);
        let identities = shard.identities(&key.click_id);
        let field = join([key.event.as_str(), key.txid.as_str()]);
        let click_ms = click.as_ref().map_or(report.ts_ms, |c| c.ts_ms);
        let mut conn = core.conn.clone();
        for _ in 0..CAS_ATTEMPTS {
            let raw: Option<String> = redis::cmd("HGET")
                .arg(&identities)
                .arg(&field)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let stored: Option<Identity> = match &raw {
                Some(text) => Some(serde_json::from_str(text).map_err(|_| corrupt("conversion"))?),
                None => None,
            };
            let current = stored.as_ref().map(|s| ConversionState {
                status: s.s,
                payout: Money::from_micros(s.p),
            });
            let change = conversion::apply(current, report.status, report.payout);
            let (before, after) = match change {
                Change::Duplicate => return Ok(change),
                Change::Recorded(after) => (None, after),
                Change::Updated { before, after } => (Some(before), after),
            };
            let approved = ConversionStatus::Approved;
            let approved_ms = match (
                before.map(|b| b.status == approved),
                after.status == approved,
            ) {
                (_, false) => None,
                (Some(true), true) => stored.as_ref().and_then(|s| s.a),
                (_, true) => Some(report.ts_ms),
            };
            let member = approved_ms
                .map(|_| approval_member(&report, click.as_ref(), click_ms, after.payout));
            let identity = Identity {
                s: after.status,
                p: after.payout.micros(),
                sp: report.sent_payout.map(Money::micros),
                sc: report.sent_currency.clone(),
                c: stored.as_ref().map_or(report.ts_ms, |s| s.c),
                u: report.ts_ms,
                a: approved_ms,
                m: member.clone(),
            };
            let mut apply = Apply::new(
                identities.clone(),
                field.clone(),
                raw.clone().unwrap_or_default(),
                serde_json::to_string(&identity).expect("an identity always serialises"),
            );
            let id_key = apply.key(&identities);
            apply.command(args![
                "PEXPIREAT",
                id_key,
                click_ms.saturating_add(core.retention_ms)
            ]);
            // Report counters: what the identity counts for now, less what it counted for.
            let zero = (0, Money::ZERO, Money::ZERO);
            let (was_n, was_r, was_p) = before.map_or(zero, conversion::counts);
            let (now_n, now_r, now_p) = conversion::counts(after);
            let (day, quarter) = bucket(click_ms);
            let dims = click
                .as_ref()
                .map(dimensions)
                .unwrap_or_else(|| join(["", "", "", "", "", "", "", "", "", ""]));
            let report_key = shard.report(day);
            let report_ref = apply.key(&report_key);
            for (metric, delta) in [
                ('n', now_n - was_n),
                ('r', (now_r - was_r).micros()),
                ('p', (now_p - was_p).micros()),
            ] {
                if delta != 0 {
                    apply.command(args![
                        "HINCRBY",
                        report_ref,
                        counter_field(metric, quarter, &dims, &key.event),
                        delta
                    ]);
                }
            }
            apply.command(args![
                "PEXPIREAT",
                report_ref,
                ((day + 1) * DAY_MS).saturating_add(core.retention_ms)
            ]);
            // The approval index, for caps and the optimiser's replay.
            let old_member = stored.as_ref().and_then(|s| s.m.clone());
            if old_member != member {
                let approvals = apply.key(&shard.approvals());
                if let Some(old) = &old_member {
                    apply.command(args!["ZREM", approvals, old]);
                }
                if let (Some(new), Some(at)) = (&member, approved_ms) {
                    apply.command(args!["ZADD", approvals, at, new]);
                }
            }
            // The event other instances' caps and learners follow.
            if let (Some(click), Some(outcome)) = (&click, learning::outcome(&change)) {
                if let Some(offer) = &click.offer {
                    let (kind, amount) = match outcome {
                        Outcome::Approved(x) => ("a", x),
                        Outcome::Reversed(x) => ("r", x),
                        Outcome::Adjusted(x) => ("j", x),
                    };
                    let events = apply.key(&shard.events());
                    apply.command(args![
                        "XADD",
                        events,
                        "MAXLEN",
                        "~",
                        EVENTS_KEPT,
                        "*",
                        "o",
                        core.origin,
                        "k",
                        kind,
                        "m",
                        evidence_member(click, offer),
                        "rt",
                        click.route.as_str(),
                        "x",
                        amount,
                        "cm",
                        click.ts_ms,
                        "t",
                        report.ts_ms
                    ]);
                }
            }
            // The outbound delivery, queued with the change or not at all.
            let delivery = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan(&change)))
                .unwrap_or_else(|_| {
                    tracing::error!(click = %key.click_id, "delivery plan panicked; no postback queued");
                    None
                });
            if let Some(delivery) = delivery {
                let seq: i64 = redis::cmd("INCR")
                    .arg(shard.delivery_seq())
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                let id = shard.delivery_id(seq);
                let stored = StoredDelivery {
                    url: delivery.url,
                    source: delivery.source,
                    click_id: key.click_id.clone(),
                    event: key.event.clone(),
                    status: delivery.status.as_str().to_string(),
                    created_ms: report.ts_ms,
                    attempts: 0,
                    next_at_ms: report.ts_ms,
                    state: DeliveryState::Pending,
                    last_error: None,
                    delivered_ms: None,
                };
                let hash = apply.key(&shard.deliveries());
                let list = apply.key(&shard.delivery_list(DeliveryState::Pending));
                let stream = apply.key(&shard.delivery_stream());
                apply.command(args![
                    "HSET",
                    hash,
                    id,
                    serde_json::to_string(&stored).expect("a delivery always serialises")
                ]);
                apply.command(args!["ZADD", list, report.ts_ms, id]);
                apply.command(args!["XADD", stream, "*", "id", id]);
            }
            if apply
                .run(&core.scripts, &mut conn)
                .await
                .map_err(unavailable)?
            {
                core.buffer.committed.fetch_add(1, Ordering::Relaxed);
                return Ok(change);
            }
        }
        Err(StoreError::Unavailable(
            "the conversion kept changing under concurrent reports; retry".into(),
        ))
    }

    async fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let core = &self.core;
        let refresh = {
            let mut held = lock(&core.held);
            let every = Duration::from_millis((core.takeover_ms / 4) as u64);
            let due = held.refreshed.is_none_or(|at| at.elapsed() >= every);
            if due {
                held.refreshed = Some(Instant::now());
            }
            due
        };
        for shard in core.all_shards() {
            core.claim(shard, refresh).await?;
        }
        let mut by_shard: HashMap<Shard, Vec<(i64, String)>> = HashMap::new();
        for (&id, (shard, entry)) in &lock(&core.held).entries {
            by_shard
                .entry(*shard)
                .or_default()
                .push((id, entry.clone()));
        }
        let mut due = Vec::new();
        let mut conn = core.conn.clone();
        for (shard, held) in by_shard {
            let ids: Vec<i64> = held.iter().map(|(id, _)| *id).collect();
            let texts: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(shard.deliveries())
                .arg(&ids)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let mut finished = Vec::new();
            for ((id, entry), text) in held.into_iter().zip(texts) {
                let stored: Option<StoredDelivery> =
                    text.and_then(|t| serde_json::from_str(&t).ok());
                match stored {
                    Some(stored) if stored.state == DeliveryState::Pending => {
                        if stored.next_at_ms <= now_ms {
                            due.push(stored.into_delivery(id));
                        }
                    }
                    // Finished elsewhere or gone: nothing left to do for it.
                    _ => finished.push((id, entry)),
                }
            }
            let entries: Vec<String> = finished.iter().map(|(_, e)| e.clone()).collect();
            core.release(shard, &entries).await.map_err(unavailable)?;
            let mut held = lock(&core.held);
            for (id, _) in finished {
                held.entries.remove(&id);
            }
        }
        due.sort_by_key(|d| (d.next_at_ms, d.id));
        due.truncate(limit);
        Ok(due)
    }

    async fn record_delivery_attempt(
        &self,
        id: i64,
        attempt: DeliveryAttempt,
    ) -> Result<(), StoreError> {
        let core = &self.core;
        let shard = Shard::of_delivery(id);
        let hash = shard.deliveries();
        let mut conn = core.conn.clone();
        for _ in 0..CAS_ATTEMPTS {
            let raw: Option<String> = redis::cmd("HGET")
                .arg(&hash)
                .arg(id)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let Some(raw) = raw else {
                return Err(StoreError::Internal(format!("no delivery {id}")));
            };
            let mut stored: StoredDelivery =
                serde_json::from_str(&raw).map_err(|_| corrupt("delivery"))?;
            if stored.state != DeliveryState::Pending {
                // A late answer for a delivery already finished changes nothing.
                return Ok(());
            }
            stored.attempts += 1;
            match &attempt {
                DeliveryAttempt::Delivered { at_ms } => {
                    stored.state = DeliveryState::Delivered;
                    stored.delivered_ms = Some(*at_ms);
                }
                DeliveryAttempt::Retry { next_at_ms, error } => {
                    stored.next_at_ms = *next_at_ms;
                    stored.last_error = Some(error.clone());
                }
                DeliveryAttempt::GaveUp { error } => {
                    stored.state = DeliveryState::Failed;
                    stored.last_error = Some(error.clone());
                }
            }
            let finished = stored.state != DeliveryState::Pending;
            let mut apply = Apply::new(
                hash.clone(),
                id.to_string(),
                raw,
                serde_json::to_string(&stored).expect("a delivery always serialises"),
            );
            let entry = lock(&core.held).entries.get(&id).map(|(_, e)| e.clone());
            if finished {
                let pending = apply.key(&shard.delivery_list(DeliveryState::Pending));
                let list = apply.key(&shard.delivery_list(stored.state));
                apply.command(args!["ZREM", pending, id]);
                apply.command(args!["ZADD", list, stored.created_ms, id]);
                if let Some(entry) = &entry {
                    let stream = apply.key(&shard.delivery_stream());
                    apply.command(args!["XACK", stream, keys::GROUP, entry]);
                    apply.command(args!["XDEL", stream, entry]);
                }
            }
            if apply
                .run(&core.scripts, &mut conn)
                .await
                .map_err(unavailable)?
            {
                if finished {
                    lock(&core.held).entries.remove(&id);
                }
                core.buffer.committed.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(
            "the delivery kept changing under concurrent attempts".into(),
        ))
    }

    async fn deliveries(
        &self,
        state: DeliveryState,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let core = &self.core;
        let mut conn = core.conn.clone();
        let mut listed: Vec<(i64, i64, Shard)> = Vec::new();
        let stop = i64::try_from(limit).unwrap_or(i64::MAX).max(1) - 1;
        for shard in core.all_shards() {
            let ids: Vec<(i64, f64)> = redis::cmd("ZRANGE")
                .arg(shard.delivery_list(state))
                .arg(0)
                .arg(stop)
                .arg("REV")
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            listed.extend(
                ids.into_iter()
                    .map(|(id, created)| (created as i64, id, shard)),
            );
        }
        listed.sort_by_key(|&(created, id, _)| std::cmp::Reverse((created, id)));
        listed.truncate(limit);
        let mut found: HashMap<i64, Delivery> = HashMap::new();
        let mut by_shard: HashMap<Shard, Vec<i64>> = HashMap::new();
        for (_, id, shard) in &listed {
            by_shard.entry(*shard).or_default().push(*id);
        }
        for (shard, ids) in by_shard {
            let texts: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(shard.deliveries())
                .arg(&ids)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for (id, text) in ids.into_iter().zip(texts) {
                if let Some(stored) =
                    text.and_then(|t| serde_json::from_str::<StoredDelivery>(&t).ok())
                {
                    found.insert(id, stored.into_delivery(id));
                }
            }
        }
        Ok(listed
            .into_iter()
            .filter_map(|(_, id, _)| found.remove(&id))
            .collect())
    }

    async fn approved_since(&self, since_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let mut approvals = Vec::new();
        for (member, approved_ms) in self.approvals(since_ms, i64::MAX).await? {
            if !member.offer.is_empty() {
                approvals.push((member.offer, approved_ms));
            }
        }
        approvals.sort_by_key(|(_, at)| *at);
        Ok(approvals)
    }

    async fn evidence_page(
        &self,
        since_ms: i64,
        until_ms: i64,
        after: Option<EvidenceCursor>,
        limit: usize,
    ) -> Result<EvidencePage, StoreError> {
        let limit = limit.max(1);
        let (after_ts, after_id) = match &after {
            Some(cursor) => (cursor.ts_ms, cursor.id.clone()),
            None => (since_ms, String::new()),
        };
        let mut clicks: Vec<(i64, String, EvidenceClick)> = Vec::new();
        let mut conn = self.core.conn.clone();
        for shard in self.core.all_shards() {
            let key = shard.residual();
            let mut offset = 0usize;
            let mut kept = 0usize;
            loop {
                let chunk = limit + 64;
                let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(after_ts)
                    .arg(format!("({until_ms}"))
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(offset)
                    .arg(chunk)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                let count = members.len();
                for (member, score) in members {
                    let ts = score as i64;
                    let Some((id, campaign, offer, segment)) = parse_evidence(&member) else {
                        continue;
                    };
                    if ts == after_ts && id.as_str() <= after_id.as_str() {
                        continue;
                    }
                    kept += 1;
                    clicks.push((
                        ts,
                        id,
                        EvidenceClick {
                            campaign,
                            offer,
                            segment,
                            ts_ms: ts,
                        },
                    ));
                }
                offset += count;
                if count < chunk || kept >= limit {
                    break;
                }
            }
        }
        clicks.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let full = clicks.len() >= limit;
        clicks.truncate(limit);
        let next = if full {
            clicks.last().map(|(ts, id, _)| EvidenceCursor {
                ts_ms: *ts,
                id: id.clone(),
            })
        } else {
            None
        };
        // Approvals in (time of `after`, time of the last click], or to `until_ms` on the last
        // page, of residual clicks made since `since_ms`.
        let from = after.as_ref().map_or(i64::MIN, |c| c.ts_ms);
        let to = next.as_ref().map_or(until_ms - 1, |c| c.ts_ms);
        let mut conversions = Vec::new();
        for (member, approved_ms) in self.approvals(from.saturating_add(1), to).await? {
            if member.route != Route::Fallback.as_str()
                || member.click_ms < since_ms
                || member.offer.is_empty()
            {
                continue;
            }
            conversions.push(EvidenceConversion {
                click: EvidenceClick {
                    campaign: member.campaign,
                    offer: member.offer,
                    segment: member.segment,
                    ts_ms: member.click_ms,
                },
                payout: member.payout,
                approved_ms,
            });
        }
        conversions.sort_by_key(|c| c.approved_ms);
        Ok(EvidencePage {
            clicks: clicks.into_iter().map(|(_, _, click)| click).collect(),
            conversions,
            next,
        })
    }

    async fn report(&self, query: &ReportQuery) -> Result<Vec<ReportGroup>, StoreError> {
        let mut groups: HashMap<(usize, Vec<Option<String>>), ReportCounters> = HashMap::new();
        let (Some(first), Some(last)) = (query.spans.first(), query.spans.last()) else {
            return Ok(Vec::new());
        };
        if last.end_ms <= first.start_ms {
            return Ok(Vec::new());
        }
        let first_day = first.start_ms.div_euclid(DAY_MS);
        let last_day = (last.end_ms - 1).div_euclid(DAY_MS);
        let mut conn = self.core.conn.clone();
        for shard in self.core.all_shards() {
            for day in first_day..=last_day {
                let counters: Vec<(String, i64)> = redis::cmd("HGETALL")
                    .arg(shard.report(day))
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                for (field, value) in counters {
                    let Some(counter) = Counter::parse(&field) else {
                        continue;
                    };
                    let start = day * DAY_MS + counter.quarter * QUARTER_MS;
                    // Span bounds are local midnights, on a quarter hour: a bucket is in a span
                    // when its start is.
                    let Some(span) = query
                        .spans
                        .iter()
                        .position(|s| s.start_ms <= start && start < s.end_ms)
                    else {
                        continue;
                    };
                    if query
                        .campaign
                        .as_deref()
                        .is_some_and(|c| c != counter.value(Dimension::Campaign))
                    {
                        continue;
                    }
                    let values = query
                        .dimensions
                        .iter()
                        .map(|&d| {
                            let value = counter.value(d);
                            (!value.is_empty()).then(|| value.to_string())
                        })
                        .collect();
                    let entry = groups.entry((span, values)).or_default();
                    match counter.metric {
                        'k' => entry.clicks += value,
                        '$' => entry.cost = entry.cost + Money::from_micros(value),
                        'n' => entry.conversions += value,
                        'r' => entry.revenue = entry.revenue + Money::from_micros(value),
                        'p' => {
                            entry.pending_revenue =
                                entry.pending_revenue + Money::from_micros(value)
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(groups
            .into_iter()
            .filter(|(_, counters)| !counters.is_zero())
            .map(|((span, values), counters)| ReportGroup {
                span,
                values,
                counters,
            })
            .collect())
    }
}

/// One report counter's field, read back.
struct Counter<'a> {
    metric: char,
    quarter: i64,
    /// campaign, offer, route, country, os, device, browser, carrier, connection, language,
    /// event ("" for click metrics, as for a dimension the click had no value of).
    parts: [&'a str; 11],
}

impl<'a> Counter<'a> {
    /// `metric, quarter, campaign, offer, route, country, os, device, browser, carrier,
    /// connection, language, event`: every dimension a general report groups by.
    fn parse(field: &'a str) -> Option<Counter<'a>> {
        let parts = split(field);
        if parts.len() != 13 {
            return None;
        }
        Some(Counter {
            metric: parts[0].chars().next()?,
            quarter: parts[1].parse().ok()?,
            parts: parts[2..].try_into().ok()?,
        })
    }

    fn value(&self, dimension: Dimension) -> &'a str {
        self.parts[match dimension {
            Dimension::Campaign => 0,
            Dimension::Offer => 1,
            Dimension::Route => 2,
            Dimension::Country => 3,
            Dimension::Os => 4,
            Dimension::Device => 5,
            Dimension::Browser => 6,
            Dimension::Carrier => 7,
            Dimension::Connection => 8,
            Dimension::Language => 9,
            Dimension::Event => 10,
        }]
    }
}

/// An entry of the approval index.
struct Approval {
    offer: String,
    route: String,
    payout: Money,
    click_ms: i64,
    campaign: String,
    segment: Segment,
}

/// click id, event, txid (the identity, so the member is unique), payout, offer, route, click
/// time, campaign, country, device, os, carrier.
fn approval_member(
    report: &ConversionReport,
    click: Option<&ClickRecord>,
    click_ms: i64,
    payout: Money,
) -> String {
    let visitor = click.map(|c| &c.visitor);
    let micros = payout.micros().to_string();
    let click_ms = click_ms.to_string();
    join([
        report.key.click_id.as_str(),
        report.key.event.as_str(),
        report.key.txid.as_str(),
        micros.as_str(),
        click.and_then(|c| c.offer.as_deref()).unwrap_or(""),
        click.map_or("", |c| c.route.as_str()),
        click_ms.as_str(),
        click.map_or("", |c| c.campaign.as_str()),
        visitor.and_then(|v| v.country.as_deref()).unwrap_or(""),
        visitor.map_or(Device::Other.as_str(), |v| v.device.as_str()),
        visitor.map_or(Os::Other.as_str(), |v| v.os.as_str()),
        visitor.and_then(|v| v.carrier.as_deref()).unwrap_or(""),
    ])
}

fn parse_approval(member: &str) -> Option<Approval> {
    let parts = split(member);
    let [_, _, _, payout, offer, route, click_ms, campaign, country, device, os, carrier] =
        parts.as_slice()
    else {
        return None;
    };
    Some(Approval {
        offer: offer.to_string(),
        route: route.to_string(),
        payout: Money::from_micros(payout.parse().ok()?),
        click_ms: click_ms.parse().ok()?,
        campaign: campaign.to_string(),
        segment: Segment {
            country: (!country.is_empty()).then(|| country.to_string()),
            device: Device::parse(device)?,
            os: Os::parse(os)?,
            carrier: (!carrier.is_empty()).then(|| carrier.to_string()),
        },
    })
}

impl RedisStore {
    /// Current approvals made in [from_ms, to_ms], every shard's, with their approval times.
    async fn approvals(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(Approval, i64)>, StoreError> {
        let mut conn = self.core.conn.clone();
        let mut found = Vec::new();
        let low = if from_ms == i64::MIN {
            "-inf".to_string()
        } else {
            from_ms.to_string()
        };
        let high = if to_ms == i64::MAX {
            "+inf".to_string()
        } else {
            to_ms.to_string()
        };
        for shard in self.core.all_shards() {
            let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(shard.approvals())
                .arg(&low)
                .arg(&high)
                .arg("BYSCORE")
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for (member, score) in members {
                if let Some(approval) = parse_approval(&member) {
                    found.push((approval, score as i64));
                }
            }
        }
        Ok(found)
    }
}
