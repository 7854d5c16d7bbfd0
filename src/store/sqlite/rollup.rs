//! Report rollups of the SQLite store: the counters of SPEC §12 summed at write time, so a
//! report over weeks of traffic reads a few thousand rows instead of every click.
//!
//! One table, `report_rollup`, keyed by (cuboid, level, bucket, dimensions):
//!
//! - **dimensions**: campaign, offer, route, event, country, os, device, browser, carrier,
//!   connection, language, each an integer: a `names` id for the open-ended ones (0 = none), a
//!   `codec` code for the closed vocabularies. A click adds `clicks` and `cost` under event 0;
//!   a conversion adds its change of `conversions`, `revenue` and `pending_revenue` under its
//!   click's dimensions and its own event, whenever its status or payout changes.
//! - **level and bucket**: each fact is added to one bucket of every level: a quarter hour, an
//!   hour, a day, 4 days and 16 days (UTC, aligned on the Unix epoch). A report span is cut into
//!   the fewest whole buckets (`decompose`): a 30-day span of UTC days is a handful of 16-, 4-
//!   and 1-day buckets; a span of local days in New York adds 24 hour buckets at its ends, one in
//!   Kathmandu (UTC+5:45) 23 hours and 4 quarter hours. Every zone's midnight falls on a quarter
//!   hour, so day bounds in any IANA zone are exact (only the local-mean-time offsets of the past,
//!   before 1980, do not; they are rounded down to the quarter hour).
//! - **cuboid**: the full key (0), and projections that keep only the campaign (1), the campaign
//!   and the offer (2), or the campaign, offer and country (3), with every other dimension 0
//!   (click and conversion counters then share rows). A report uses the smallest cuboid that
//!   holds its dimensions, so `group_by=day`, `offer` or `offer,country` sum a few rows per
//!   bucket; any other combination sums the full key.
//!
//! The writer thread sums facts in memory (`Rollup`, per quarter hour and full key, spread over
//! the levels and cuboids only when written) and upserts each distinct row once. A
//! conversion's facts go in with its own transaction. Click facts are held back (`Deferred`) for
//! up to a second, or until a report, a flush or a conversion asks for them, so that a busy
//! second of clicks costs one upsert per distinct row instead of one per row and batch: at
//! thousands of clicks a second those upserts were most of the writer's work. Every click row
//! carries a sequence number; `meta` says up to which one the rollups hold and the earliest time
//! of any click after it, so a crash loses no fact: the next open rolls those clicks up
//! (`recover`). Level sizes and cuboid codes are part of the file format.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use rustc_hash::FxHashMap;

use super::{codec, intern, intern_opt, Names};
use crate::conversion::{self, ConversionState};
use crate::decide::Route;
use crate::money::Money;
use crate::store::{Dimension, ReportCounters, ReportGroup, ReportQuery, TimeSpan};
use crate::visitor::{Connection as Link, Device, Os};

pub(super) const QUARTER_MS: i64 = 900_000;

/// Bucket sizes in quarter hours, by level (the level's code is its index): a quarter hour, an
/// hour, a day, 4 days, 16 days.
pub(super) const LEVELS: [i64; 5] = [1, 4, 96, 384, 1536];

/// Cuboid codes and the dimensions each keeps.
const FULL: i64 = 0;
const CUBOIDS: [(i64, &[Dimension]); 4] = [
    (FULL, &Dimension::ALL),
    (1, &[Dimension::Campaign]),
    (2, &[Dimension::Campaign, Dimension::Offer]),
    (
        3,
        &[Dimension::Campaign, Dimension::Offer, Dimension::Country],
    ),
];

pub(super) const CREATE_TABLE: &str = "
    CREATE TABLE report_rollup (
        cuboid          INTEGER NOT NULL,
        level           INTEGER NOT NULL,
        bucket          INTEGER NOT NULL,
        campaign        INTEGER NOT NULL,
        offer           INTEGER NOT NULL,
        route           INTEGER NOT NULL,
        event           INTEGER NOT NULL,
        country         INTEGER NOT NULL,
        os              INTEGER NOT NULL,
        device          INTEGER NOT NULL,
        browser         INTEGER NOT NULL,
        carrier         INTEGER NOT NULL,
        connection      INTEGER NOT NULL,
        language        INTEGER NOT NULL,
        clicks          INTEGER NOT NULL,
        cost            INTEGER NOT NULL,
        conversions     INTEGER NOT NULL,
        revenue         INTEGER NOT NULL,
        pending_revenue INTEGER NOT NULL,
        PRIMARY KEY (cuboid, level, bucket, campaign, offer, route, event, country, os, device,
                     browser, carrier, connection, language)
    ) WITHOUT ROWID;";

/// The dimension values of one fact, indexed by `Dimension as usize` (the order of
/// `Dimension::ALL`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct Dims(pub(super) [i64; 11]);

impl Dims {
    pub(super) fn set(&mut self, dimension: Dimension, value: i64) {
        self.0[dimension as usize] = value;
    }

    fn get(&self, dimension: Dimension) -> i64 {
        self.0[dimension as usize]
    }

    fn project(&self, keep: &[Dimension]) -> Dims {
        if keep.len() == Dimension::ALL.len() {
            return *self;
        }
        let mut projected = Dims::default();
        for &dimension in keep {
            projected.set(dimension, self.get(dimension));
        }
        projected
    }
}

/// The `clicks` columns `ts, campaign, offer, route, country, os, device, browser, carrier,
/// connection, language`, as a rollup key. The caller selects them in this order.
pub(super) const CLICK_COLUMNS: &str =
    "ts, campaign, offer, route, country, os, device, browser, carrier, connection, language";

/// Reads `CLICK_COLUMNS` from `first` on: the click's time and its dimensions (event 0),
/// interning the country and language.
pub(super) fn click_dims(
    conn: &Connection,
    names: &mut Names,
    row: &Row<'_>,
    first: usize,
) -> rusqlite::Result<(i64, Dims)> {
    let mut dims = Dims::default();
    let name_id = |idx: usize| -> rusqlite::Result<i64> {
        Ok(row.get::<_, Option<i64>>(first + idx)?.unwrap_or(0))
    };
    dims.set(Dimension::Campaign, name_id(1)?);
    dims.set(Dimension::Offer, name_id(2)?);
    dims.set(Dimension::Route, row.get(first + 3)?);
    let country: Option<String> = row.get(first + 4)?;
    dims.set(
        Dimension::Country,
        intern_opt(conn, names, country.as_deref())?.unwrap_or(0),
    );
    dims.set(Dimension::Os, row.get(first + 5)?);
    dims.set(Dimension::Device, row.get(first + 6)?);
    dims.set(Dimension::Browser, name_id(7)?);
    dims.set(Dimension::Carrier, name_id(8)?);
    dims.set(Dimension::Connection, row.get(first + 9)?);
    let language: Option<String> = row.get(first + 10)?;
    dims.set(
        Dimension::Language,
        intern_opt(conn, names, language.as_deref())?.unwrap_or(0),
    );
    Ok((row.get(first)?, dims))
}

/// What a conversion identity's change adds to the counters (SPEC §9: it counts by its current
/// status only).
pub(super) fn conversion_delta(
    before: Option<ConversionState>,
    after: ConversionState,
) -> ReportCounters {
    let (count, revenue, pending) = conversion::counts(after);
    let (was_count, was_revenue, was_pending) =
        before.map_or((0, Money::ZERO, Money::ZERO), conversion::counts);
    ReportCounters {
        clicks: 0,
        cost: Money::ZERO,
        conversions: count - was_count,
        revenue: revenue - was_revenue,
        pending_revenue: pending - was_pending,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    cuboid: i64,
    level: i64,
    bucket: i64,
    dims: Dims,
}

/// Facts summed until `write`, per quarter hour and full key: one map entry per fact. The 20 rows
/// a fact touches (every level and cuboid) are only worked out at `write`, once per distinct
/// entry, so a busy second of alike clicks costs one hash lookup a click instead of twenty. Fx
/// rather than SipHash: the keys are our own integers, never chosen by a client.
#[derive(Default)]
pub(super) struct Rollup {
    sums: FxHashMap<(i64, Dims), ReportCounters>,
}

impl Rollup {
    /// Adds `counters` at time `ts_ms` under `dims`.
    pub(super) fn add(&mut self, ts_ms: i64, dims: &Dims, counters: &ReportCounters) {
        if counters.is_zero() {
            return;
        }
        let quarter = ts_ms.div_euclid(QUARTER_MS);
        self.sums.entry((quarter, *dims)).or_default().add(counters);
    }

    /// Distinct (quarter hour, full key) entries held; each is at most 20 rows.
    pub(super) fn len(&self) -> usize {
        self.sums.len()
    }

    /// The sums per rollup row: every entry added to each level and cuboid.
    fn rows(&self) -> FxHashMap<Key, ReportCounters> {
        let mut rows: FxHashMap<Key, ReportCounters> = FxHashMap::default();
        rows.reserve(self.sums.len() * 4);
        for (&(quarter, dims), counters) in &self.sums {
            for (level, size) in LEVELS.iter().enumerate() {
                let bucket = quarter.div_euclid(*size);
                for (cuboid, keep) in CUBOIDS {
                    let key = Key {
                        cuboid,
                        level: level as i64,
                        bucket,
                        dims: dims.project(keep),
                    };
                    rows.entry(key).or_default().add(counters);
                }
            }
        }
        rows
    }

    /// Upserts every summed row (in key order, so neighbouring rows share pages) and empties the
    /// sums.
    pub(super) fn write(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        self.write_keeping(conn)?;
        self.sums.clear();
        Ok(())
    }

    /// Upserts every summed row and keeps the sums, for a transaction that may yet roll back.
    fn write_keeping(&self, conn: &Connection) -> rusqlite::Result<()> {
        if self.sums.is_empty() {
            return Ok(());
        }
        let sums = self.rows();
        let mut rows: Vec<(&Key, &ReportCounters)> = sums.iter().collect();
        rows.sort_unstable_by_key(|(key, _)| {
            let d = &key.dims;
            (
                key.cuboid,
                key.level,
                key.bucket,
                d.get(Dimension::Campaign),
                d.get(Dimension::Offer),
            )
        });
        let mut upsert = conn.prepare_cached(
            "INSERT INTO report_rollup (cuboid, level, bucket, campaign, offer, route, event,
                 country, os, device, browser, carrier, connection, language, clicks, cost,
                 conversions, revenue, pending_revenue)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19)
             ON CONFLICT (cuboid, level, bucket, campaign, offer, route, event, country, os,
                 device, browser, carrier, connection, language)
             DO UPDATE SET clicks = clicks + excluded.clicks, cost = cost + excluded.cost,
                 conversions = conversions + excluded.conversions,
                 revenue = revenue + excluded.revenue,
                 pending_revenue = pending_revenue + excluded.pending_revenue",
        )?;
        for (key, sum) in rows {
            if sum.is_zero() {
                continue;
            }
            let d = |dimension| key.dims.get(dimension);
            upsert.execute(params![
                key.cuboid,
                key.level,
                key.bucket,
                d(Dimension::Campaign),
                d(Dimension::Offer),
                d(Dimension::Route),
                d(Dimension::Event),
                d(Dimension::Country),
                d(Dimension::Os),
                d(Dimension::Device),
                d(Dimension::Browser),
                d(Dimension::Carrier),
                d(Dimension::Connection),
                d(Dimension::Language),
                sum.clicks,
                sum.cost.micros(),
                sum.conversions,
                sum.revenue.micros(),
                sum.pending_revenue.micros(),
            ])?;
        }
        Ok(())
    }
}

/// How long click facts may wait for their upserts, and how many distinct (quarter hour, full key)
/// entries they may fill (each up to 20 rows, so one write upserts at most 200,000).
const DEFER_FOR: Duration = Duration::from_secs(1);
const DEFER_ENTRIES: usize = 10_000;

/// `meta` keys: every click with a sequence number up to `ROLLED_UP_SEQ` is in the rollups; any
/// click after it is no older than `UNROLLED_FROM_MS` (absent when there is none).
const ROLLED_UP_SEQ: &str = "rollup_seq";
const UNROLLED_FROM_MS: &str = "rollup_unrolled_from_ms";

/// What one click or one conversion change adds to the counters, at its click's time.
pub(super) struct Fact {
    pub(super) ts_ms: i64,
    pub(super) dims: Dims,
    pub(super) counters: ReportCounters,
}

/// The writer's click facts that are committed but not yet upserted, and the click sequence.
pub(super) struct Deferred {
    sums: Rollup,
    since: Option<Instant>,
    /// The earliest click time among them, as `meta` has it.
    from_ms: Option<i64>,
    next_seq: i64,
}

/// What one transaction does about the deferred facts, decided before it commits.
pub(super) enum Settle {
    /// Everything deferred and the batch's own facts were upserted.
    Written,
    /// The batch's facts join the deferred ones; `from_ms` is the earliest time now kept.
    Deferred { from_ms: Option<i64> },
}

impl Deferred {
    /// Picks up where the file left off: `recover` must have run.
    pub(super) fn new(next_seq: i64) -> Deferred {
        Deferred {
            sums: Rollup::default(),
            since: None,
            from_ms: None,
            next_seq,
        }
    }

    /// The sequence number of the next click.
    pub(super) fn next_seq(&self) -> i64 {
        self.next_seq
    }

    /// When the deferred facts must be written even if no batch comes.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.since.map(|since| since + DEFER_FOR)
    }

    /// Whether any click facts wait for their upserts.
    pub(super) fn holds_facts(&self) -> bool {
        self.since.is_some()
    }

    /// Whether the deferred facts must be written now: their second is up or they hold too many
    /// entries.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline) || self.sums.len() >= DEFER_ENTRIES
    }

    /// Inside a batch's transaction, before its commit: upserts the deferred facts together with
    /// the batch's own when `write_now` (a flush, or a conversion, which reports must show at
    /// once) or when they are due; otherwise records in `meta` what recovery would need.
    /// `last_seq` is the batch's last click sequence number, `earliest_ms` its earliest click.
    pub(super) fn settle(
        &self,
        conn: &Connection,
        batch: &[Fact],
        write_now: bool,
        last_seq: i64,
        earliest_ms: Option<i64>,
    ) -> rusqlite::Result<Settle> {
        if write_now || self.due(Instant::now()) {
            self.sums.write_keeping(conn)?;
            let mut own = Rollup::default();
            for fact in batch {
                own.add(fact.ts_ms, &fact.dims, &fact.counters);
            }
            own.write(conn)?;
            set_meta(conn, ROLLED_UP_SEQ, Some(last_seq))?;
            if self.from_ms.is_some() {
                set_meta(conn, UNROLLED_FROM_MS, None)?;
            }
            return Ok(Settle::Written);
        }
        let from_ms = match (self.from_ms, earliest_ms) {
            (Some(kept), Some(earliest)) if earliest < kept => Some(earliest),
            (None, Some(earliest)) => Some(earliest),
            (kept, _) => kept,
        };
        if from_ms != self.from_ms {
            set_meta(conn, UNROLLED_FROM_MS, from_ms)?;
        }
        Ok(Settle::Deferred { from_ms })
    }

    /// After the transaction that `settle` ran in committed.
    pub(super) fn committed(&mut self, settle: Settle, batch: Vec<Fact>, next_seq: i64) {
        self.next_seq = next_seq;
        match settle {
            Settle::Written => {
                self.sums = Rollup::default();
                self.since = None;
                self.from_ms = None;
            }
            Settle::Deferred { from_ms } => {
                if !batch.is_empty() && self.since.is_none() {
                    self.since = Some(Instant::now());
                }
                for fact in batch {
                    self.sums.add(fact.ts_ms, &fact.dims, &fact.counters);
                }
                self.from_ms = from_ms;
            }
        }
    }
}

fn get_meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()
}

fn set_meta(conn: &Connection, key: &str, value: Option<i64>) -> rusqlite::Result<()> {
    match value {
        Some(value) => conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?,
        None => conn
            .prepare_cached("DELETE FROM meta WHERE key = ?1")?
            .execute([key])?,
    };
    Ok(())
}

/// At open, before the writer starts: rolls up the clicks a crash left committed but not yet in
/// the rollups, and answers the next click sequence number.
pub(super) fn recover(conn: &mut Connection) -> rusqlite::Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rolled_up = get_meta(&tx, ROLLED_UP_SEQ)?.unwrap_or(0);
    let Some(from_ms) = get_meta(&tx, UNROLLED_FROM_MS)? else {
        return Ok(rolled_up + 1);
    };
    let mut names = Names::default();
    let mut rollup = Rollup::default();
    let mut last = rolled_up;
    let mut recovered = 0_u64;
    {
        let mut clicks = tx.prepare(&format!(
            "SELECT {CLICK_COLUMNS}, cost, seq FROM clicks WHERE ts >= ?1 AND seq > ?2"
        ))?;
        let mut rows = clicks.query(params![from_ms, rolled_up])?;
        while let Some(row) = rows.next()? {
            let (ts, dims) = click_dims(&tx, &mut names, row, 0)?;
            rollup.add(ts, &dims, &stored_click_counters(row.get(11)?));
            last = last.max(row.get(12)?);
            recovered += 1;
        }
    }
    rollup.write(&tx)?;
    set_meta(&tx, ROLLED_UP_SEQ, Some(last))?;
    set_meta(&tx, UNROLLED_FROM_MS, None)?;
    tx.commit()?;
    tracing::info!(
        clicks = recovered,
        "report rollups caught up with clicks stored before a stop"
    );
    Ok(last + 1)
}

/// What one click adds to the counters.
pub(super) fn click_counters(cost: Option<Money>) -> ReportCounters {
    ReportCounters {
        clicks: 1,
        cost: cost.unwrap_or(Money::ZERO),
        ..ReportCounters::default()
    }
}

/// `click_counters` from a stored click's `cost` column.
fn stored_click_counters(cost_micros: Option<i64>) -> ReportCounters {
    click_counters(cost_micros.map(Money::from_micros))
}

/// Builds the rollups from the clicks and conversions already in the file (the migration that
/// adds the table runs it once, in its own transaction).
pub(super) fn backfill(conn: &Connection) -> rusqlite::Result<()> {
    // Entries, each up to 20 rows.
    const WRITE_EVERY: usize = 10_000;
    let mut names = Names::default();
    let mut rollup = Rollup::default();
    let mut clicks = conn.prepare(&format!("SELECT {CLICK_COLUMNS}, cost FROM clicks"))?;
    let mut rows = clicks.query([])?;
    while let Some(row) = rows.next()? {
        let (ts, dims) = click_dims(conn, &mut names, row, 0)?;
        rollup.add(ts, &dims, &stored_click_counters(row.get(11)?));
        if rollup.len() >= WRITE_EVERY {
            rollup.write(conn)?;
        }
    }
    let columns = CLICK_COLUMNS
        .split(", ")
        .map(|column| format!("c.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut conversions = conn.prepare(&format!(
        "SELECT {columns}, v.event, v.status, v.payout
         FROM conversions v JOIN clicks c ON c.id = v.click_id"
    ))?;
    let mut rows = conversions.query([])?;
    while let Some(row) = rows.next()? {
        let (ts, mut dims) = click_dims(conn, &mut names, row, 0)?;
        let event: String = row.get(11)?;
        dims.set(Dimension::Event, intern(conn, &mut names, &event)?);
        let code: i64 = row.get(12)?;
        let status = codec::conversion_status_from_code(code)
            .ok_or(rusqlite::Error::IntegralValueOutOfRange(12, code))?;
        let state = ConversionState {
            status,
            payout: Money::from_micros(row.get(13)?),
        };
        rollup.add(ts, &dims, &conversion_delta(None, state));
        if rollup.len() >= WRITE_EVERY {
            rollup.write(conn)?;
        }
    }
    rollup.write(conn)
}

/// One retention step: deletes the oldest bucket of each cuboid and level that ended before
/// `cutoff_ms`. Answers whether anything was deleted (and so more may be left).
pub(super) fn prune_step(conn: &Connection, cutoff_ms: i64) -> rusqlite::Result<bool> {
    let mut delete = conn.prepare_cached(
        "DELETE FROM report_rollup WHERE cuboid = ?1 AND level = ?2 AND bucket =
             (SELECT min(bucket) FROM report_rollup
              WHERE cuboid = ?1 AND level = ?2 AND bucket < ?3)",
    )?;
    let mut deleted = false;
    let quarter = cutoff_ms.div_euclid(QUARTER_MS);
    for (cuboid, _) in CUBOIDS {
        for (level, size) in LEVELS.iter().enumerate() {
            // Bucket b ends at (b + 1) × size quarters: expired when that is at or before cutoff.
            let first_kept = quarter.div_euclid(*size);
            deleted |= delete.execute(params![cuboid, level as i64, first_kept])? > 0;
        }
    }
    Ok(deleted)
}

/// Cuts a span into the fewest whole buckets: `(level, first bucket, end bucket)` runs, in time
/// order. Bounds are rounded down to the quarter hour.
pub(super) fn decompose(span: TimeSpan) -> Vec<(usize, i64, i64)> {
    let mut at = span.start_ms.div_euclid(QUARTER_MS);
    let end = span.end_ms.div_euclid(QUARTER_MS);
    let mut runs: Vec<(usize, i64, i64)> = Vec::new();
    while at < end {
        let level = (0..LEVELS.len())
            .rev()
            .find(|&l| at.rem_euclid(LEVELS[l]) == 0 && at + LEVELS[l] <= end)
            .unwrap_or(0);
        let size = LEVELS[level];
        let bucket = at.div_euclid(size);
        match runs.last_mut() {
            Some((last, _, run_end)) if *last == level && *run_end == bucket => *run_end += 1,
            _ => runs.push((level, bucket, bucket + 1)),
        }
        at += size;
    }
    runs
}

/// `Store::report` on one connection.
pub(super) fn report(conn: &Connection, query: &ReportQuery) -> rusqlite::Result<Vec<ReportGroup>> {
    let campaign = match &query.campaign {
        None => None,
        Some(name) => match name_id(conn, name)? {
            Some(id) => Some(id),
            // A campaign never named in the file has had no clicks.
            None => return Ok(Vec::new()),
        },
    };
    let wanted = &query.dimensions;
    // The smallest cuboid that keeps every wanted dimension.
    let cuboid = CUBOIDS
        .iter()
        .filter(|(_, keep)| wanted.iter().all(|d| keep.contains(d)))
        .min_by_key(|(_, keep)| keep.len())
        .map_or(FULL, |(code, _)| *code);
    let columns: String = wanted.iter().map(|d| format!("{}, ", d.as_str())).collect();
    let mut select = conn.prepare_cached(&format!(
        "SELECT {columns}clicks, cost, conversions, revenue, pending_revenue
         FROM report_rollup
         WHERE cuboid = ?1 AND level = ?2 AND bucket >= ?3 AND bucket < ?4
           AND (?5 IS NULL OR campaign = ?5)"
    ))?;
    // Spans are clipped to the buckets that hold anything, so even an unbounded span is a few
    // runs of buckets.
    let coarsest = LEVELS.len() - 1;
    let held: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT min(bucket), max(bucket) FROM report_rollup WHERE cuboid = ?1 AND level = ?2",
        )?
        .query_row(params![cuboid, coarsest as i64], |row| {
            Ok(row
                .get::<_, Option<i64>>(0)?
                .zip(row.get::<_, Option<i64>>(1)?))
        })?;
    let Some((first_held, last_held)) = held else {
        return Ok(Vec::new());
    };
    let coarse_ms = LEVELS[coarsest] * QUARTER_MS;
    let (held_start, held_end) = (
        first_held.saturating_mul(coarse_ms),
        (last_held + 1).saturating_mul(coarse_ms),
    );
    let width = wanted.len();
    let mut sums: HashMap<(usize, [i64; 11]), ReportCounters> = HashMap::new();
    for (index, span) in query.spans.iter().enumerate() {
        let clipped = TimeSpan {
            start_ms: span.start_ms.max(held_start),
            end_ms: span.end_ms.min(held_end),
        };
        for (level, first, end) in decompose(clipped) {
            let mut rows = select.query(params![cuboid, level as i64, first, end, campaign])?;
            while let Some(row) = rows.next()? {
                let mut key = [0_i64; 11];
                for (i, slot) in key.iter_mut().take(width).enumerate() {
                    *slot = row.get(i)?;
                }
                let counters = ReportCounters {
                    clicks: row.get(width)?,
                    cost: Money::from_micros(row.get(width + 1)?),
                    conversions: row.get(width + 2)?,
                    revenue: Money::from_micros(row.get(width + 3)?),
                    pending_revenue: Money::from_micros(row.get(width + 4)?),
                };
                sums.entry((index, key)).or_default().add(&counters);
            }
        }
    }
    let mut names: HashMap<i64, Option<String>> = HashMap::new();
    let mut groups = Vec::with_capacity(sums.len());
    for ((span, key), counters) in sums {
        if counters.is_zero() {
            continue;
        }
        let mut values = Vec::with_capacity(width);
        for (i, &dimension) in wanted.iter().enumerate() {
            values.push(decode(conn, &mut names, dimension, key[i])?);
        }
        groups.push(ReportGroup {
            span,
            values,
            counters,
        });
    }
    Ok(groups)
}

fn name_id(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM names WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()
}

fn decode(
    conn: &Connection,
    names: &mut HashMap<i64, Option<String>>,
    dimension: Dimension,
    value: i64,
) -> rusqlite::Result<Option<String>> {
    let out_of_range = || rusqlite::Error::IntegralValueOutOfRange(0, value);
    let closed = |text: Option<&'static str>| text.map(str::to_owned).ok_or_else(out_of_range);
    Ok(match dimension {
        Dimension::Route => Some(closed(codec::route_from_code(value).map(Route::as_str))?),
        Dimension::Os => Some(closed(codec::os_from_code(value).map(Os::as_str))?),
        Dimension::Device => Some(closed(codec::device_from_code(value).map(Device::as_str))?),
        Dimension::Connection => Some(closed(
            codec::connection_from_code(value).map(Link::as_str),
        )?),
        Dimension::Offer
        | Dimension::Campaign
        | Dimension::Event
        | Dimension::Country
        | Dimension::Browser
        | Dimension::Carrier
        | Dimension::Language => {
            if value == 0 {
                return Ok(None);
            }
            if let Some(name) = names.get(&value) {
                return Ok(name.clone());
            }
            let name: Option<String> = conn
                .prepare_cached("SELECT name FROM names WHERE id = ?1")?
                .query_row([value], |row| row.get(0))
                .optional()?;
            names.insert(value, name.clone());
            name
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 96;

    fn span_quarters(start: i64, end: i64) -> TimeSpan {
        TimeSpan {
            start_ms: start * QUARTER_MS,
            end_ms: end * QUARTER_MS,
        }
    }

    fn covered(runs: &[(usize, i64, i64)]) -> Vec<(i64, i64)> {
        runs.iter()
            .map(|&(level, first, end)| (first * LEVELS[level], end * LEVELS[level]))
            .collect()
    }

    #[test]
    fn a_span_is_cut_into_whole_buckets_that_cover_it_exactly_once() {
        for (start, end) in [
            (0, 30 * DAY),
            (5 * DAY + 23, 35 * DAY + 23),
            (-3 * DAY - 1, 2 * DAY + 7),
            (17, 18),
            (40, 40),
        ] {
            let runs = decompose(span_quarters(start, end));
            let pieces = covered(&runs);
            let mut at = start;
            for (from, to) in pieces {
                assert_eq!(from, at, "{start}..{end}: {runs:?}");
                at = to;
            }
            assert_eq!(at, end.max(start), "{start}..{end}: {runs:?}");
        }
    }

    #[test]
    fn thirty_days_take_a_handful_of_runs_and_a_shifted_day_a_few_more() {
        // Days 5..35: 5-7 by days, 8-15 by 4 days... each level at most twice.
        let runs = decompose(span_quarters(5 * DAY, 35 * DAY));
        assert!(runs.len() <= 5, "{runs:?}");
        assert!(runs.iter().all(|&(level, _, _)| level >= 2), "{runs:?}");
        // A local day of a zone 5:45 ahead of UTC.
        let start = 10 * DAY - 23;
        let runs = decompose(span_quarters(start, start + DAY));
        let buckets: i64 = runs.iter().map(|&(_, first, end)| end - first).sum();
        assert!(buckets <= 30, "{runs:?}");
    }

    #[test]
    fn a_transition_moves_the_counters_by_the_difference_of_what_each_state_counts() {
        use crate::conversion::ConversionStatus::{Approved, Chargeback, Pending};
        let state = |status, payout: &str| ConversionState {
            status,
            payout: Money::parse(payout).unwrap(),
        };
        let pending_to_approved =
            conversion_delta(Some(state(Pending, "2")), state(Approved, "2.5"));
        assert_eq!(
            (
                pending_to_approved.conversions,
                pending_to_approved.revenue,
                pending_to_approved.pending_revenue
            ),
            (1, Money::parse("2.5").unwrap(), Money::parse("-2").unwrap())
        );
        let chargeback = conversion_delta(Some(state(Approved, "3")), state(Chargeback, "3"));
        assert_eq!(
            (chargeback.conversions, chargeback.revenue),
            (-1, Money::parse("-3").unwrap())
        );
    }
}
