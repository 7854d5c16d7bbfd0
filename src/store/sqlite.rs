//! The embedded store (SPEC §14): one SQLite file in WAL mode. A single writer thread
//! group-commits whatever the request path handed over; reads use their own connections.
//!
//! Durability: both modes use WAL, so a committed transaction survives `kill -9` of the process
//! even before it reaches the platter (it sits in the OS page cache). `batched` therefore runs
//! `synchronous=NORMAL`, which only risks the last commits on power loss or an OS crash. `strict`
//! runs `synchronous=FULL`, which fsyncs the WAL at every commit: a user who asks that nothing
//! answered be lost gets that against power loss too, and group commit spreads one fsync over
//! every click that arrived meanwhile.
//!
//! Conversions are different: the network is told `200` only after its report is committed, and
//! a recorded conversion must never be lost once it was. So `record_conversion` always waits for
//! the commit, and in `batched` mode the writer raises `synchronous` to FULL for the one
//! transaction that carries a conversion: the conversion (and every click committed with it)
//! then survives power loss as well, at the price of one fsync per batch that holds one. With a
//! conversion rate around a percent of clicks that is a small share of commits.
//!
//! Retention: clicks older than the retention period are deleted, and with them the conversions
//! (and their report history) of those clicks, since a conversion counts against its click and
//! means nothing without it. Outbound postbacks are kept on their own clock: delivered ones for
//! 7 days after delivery, failed ones for 30 days after their last attempt, so an operator can
//! still see why a source missed a conversion; pending ones are never deleted.
//!
//! Checkpoints (copying the WAL back into the database file, with an fsync) run on a thread of
//! their own, so the writer never stalls behind one and `batched` keeps its 10 ms promise.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::types::{Type, Value, ValueRef};
use rusqlite::TransactionBehavior;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row};
use tokio::sync::oneshot;

mod rollup;

use self::rollup::{Deferred, Dims, Fact, Rollup};
use super::codec;
use super::{
    ClickRecord, ConversionReport, Delivery, DeliveryAttempt, DeliveryPlan, DeliveryState,
    Dimension, Durability, EvidenceClick, EvidenceConversion, EvidenceCursor, EvidencePage,
    NewDelivery, ReportCounters, ReportGroup, ReportQuery, Store, StoreError, StoreStats,
};
use crate::bandit::Segment;
use crate::conversion::{self, Change, ConversionState, ConversionStatus};
use crate::decide::Route;
use crate::money::Money;
use crate::visitor::{Connection as Link, Device, Os, Visitor};

/// Interned name → `names.id`. Hashed with foldhash: several times faster than SipHash on the
/// writer's ten lookups a click, and still seeded per process, since versions and names come
/// from visitors.
type Names = HashMap<String, i64, foldhash::fast::RandomState>;

/// Marks the file as ours (`PRAGMA application_id`), so we never add tables to someone else's.
const APPLICATION_ID: i32 = 0x534c_4e4b;

/// Migration `i` takes the schema from version `i` to `i + 1` (`PRAGMA user_version`).
const MIGRATIONS: &[&str] = &[
    // The click id is the key: ids start with their timestamp, so new rows land at the end of
    // the tree and no second index on the id is needed. Repeated strings (campaign, offer, ISP,
    // browser version, ...) are interned in `names`; vocabularies are small integer codes
    // (see `codec`), the address is raw octets and the parameters one form-encoded string.
    "CREATE TABLE names (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE clicks (
        id              TEXT PRIMARY KEY NOT NULL,
        ts              INTEGER NOT NULL,
        campaign        INTEGER NOT NULL,
        source          INTEGER NOT NULL,
        offer           INTEGER,
        route           INTEGER NOT NULL,
        external_id     TEXT,
        cost            INTEGER,
        country         TEXT,
        region          INTEGER,
        city            INTEGER,
        asn             INTEGER,
        isp             INTEGER,
        carrier         INTEGER,
        connection      INTEGER NOT NULL,
        os              INTEGER NOT NULL,
        os_version      INTEGER,
        browser         INTEGER,
        browser_version INTEGER,
        device          INTEGER NOT NULL,
        bot             INTEGER NOT NULL,
        language        TEXT,
        ip              BLOB,
        params          TEXT
    ) WITHOUT ROWID;
    CREATE INDEX clicks_by_ts ON clicks(ts);
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value
    ) WITHOUT ROWID;",
    // Conversions: one row per identity (SPEC §9) with what it counts for now. `click_ts` copies
    // the click's time, because reports count a conversion against its click's time and
    // retention deletes it with its click: both then select by an index of this table alone.
    // `approved_ms` is set only while the identity is approved, for rebuilding daily caps.
    // `conversion_reports` keeps every report that changed something, for audit. `deliveries`
    // is the outbound postback queue (SPEC §10); statuses and states are `codec` codes.
    "CREATE TABLE conversions (
        click_id      TEXT NOT NULL,
        event         TEXT NOT NULL,
        txid          TEXT NOT NULL,
        click_ts      INTEGER NOT NULL,
        status        INTEGER NOT NULL,
        payout        INTEGER NOT NULL,
        sent_payout   INTEGER,
        sent_currency TEXT NOT NULL,
        created_ms    INTEGER NOT NULL,
        updated_ms    INTEGER NOT NULL,
        approved_ms   INTEGER,
        PRIMARY KEY (click_id, event, txid)
    ) WITHOUT ROWID;
    CREATE INDEX conversions_by_click_ts ON conversions(click_ts);
    CREATE INDEX conversions_by_approval ON conversions(approved_ms)
        WHERE approved_ms IS NOT NULL;
    CREATE TABLE conversion_reports (
        id            INTEGER PRIMARY KEY,
        click_id      TEXT NOT NULL,
        event         TEXT NOT NULL,
        txid          TEXT NOT NULL,
        click_ts      INTEGER NOT NULL,
        ts            INTEGER NOT NULL,
        status        INTEGER NOT NULL,
        payout        INTEGER NOT NULL,
        sent_payout   INTEGER,
        sent_currency TEXT NOT NULL,
        result        INTEGER NOT NULL
    );
    CREATE INDEX conversion_reports_by_click_ts ON conversion_reports(click_ts);
    CREATE TABLE deliveries (
        id           INTEGER PRIMARY KEY,
        url          TEXT NOT NULL,
        source       TEXT NOT NULL,
        click_id     TEXT NOT NULL,
        event        TEXT NOT NULL,
        status       INTEGER NOT NULL,
        created_ms   INTEGER NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_at_ms   INTEGER NOT NULL,
        state        INTEGER NOT NULL,
        last_error   TEXT,
        delivered_ms INTEGER
    );
    CREATE INDEX deliveries_due ON deliveries(state, next_at_ms);
    CREATE INDEX deliveries_by_state ON deliveries(state);",
    // Report rollups (see `rollup`), built from the clicks and conversions already stored by
    // `after_migration`.
    rollup::CREATE_TABLE,
    // The writer's click sequence, so rollups may lag the clicks and still be caught up after a
    // crash (see `rollup::Deferred`). Older clicks have none: they were rolled up as they came.
    "ALTER TABLE clicks ADD COLUMN seq INTEGER;",
];

/// Work a migration does beyond its SQL, in the same transaction; `version` is the one reached.
fn after_migration(tx: &Connection, version: i64) -> rusqlite::Result<()> {
    match version {
        3 => rollup::backfill(tx),
        _ => Ok(()),
    }
}

/// `conversion_reports.result`: part of the file format, like the `codec` codes.
const REPORT_RECORDED: i64 = 1;
const REPORT_UPDATED: i64 = 2;

const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Records per transaction. Large enough that a burst becomes a handful of commits, small enough
/// that one commit stays well inside the 10 ms `batched` promise.
const MAX_BATCH: usize = 512;
/// Longest the writer sleeps between looks at its queue when nothing wakes it: a batched click
/// is committed within this plus one commit, inside the 10 ms promise. Fewer, larger commits
/// also shorten the latency tail: on a slow disk a WAL write now and then stalls the core it
/// runs on for milliseconds, and at 15,500 clicks/s on one core p99 was 9.5 ms looking every
/// 2 ms against 2.5 to 3.9 ms every 5 ms (8 ms did no better).
const POLL: Duration = Duration::from_millis(5);
/// About six seconds of a busy router's clicks: room for a slow disk to catch up, while a dead
/// one cannot grow memory without bound.
const QUEUE_CAPACITY: usize = 1 << 16;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Rows deleted per retention step; writes are interleaved between steps.
const PRUNE_STEP: i64 = 1000;
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Only if the checkpoint thread falls behind does the writer checkpoint itself (128 MiB of WAL).
const BACKSTOP_AUTOCHECKPOINT_PAGES: i64 = 32_768;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_IDLE_READERS: usize = 4;
const WRITE_ATTEMPTS: u32 = 3;
const NAME_CACHE_LIMIT: usize = 100_000;
const DAY_MS: i64 = 86_400_000;
const KEEP_DELIVERED_MS: i64 = 7 * DAY_MS;
const KEEP_FAILED_MS: i64 = 30 * DAY_MS;

/// The SQLite store. Cheap to share behind an `Arc`; dropping it commits what is queued and waits
/// for its threads to finish.
pub struct SqliteStore {
    path: PathBuf,
    durability: Durability,
    ops: SyncSender<Op>,
    shared: Arc<Shared>,
    readers: Arc<Readers>,
    writer: Option<JoinHandle<()>>,
    checkpointer: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

/// Clicks by id; foldhash, like `Names`, since each click is hashed on its way in and out.
type Pending = HashMap<Box<str>, Arc<ClickRecord>, foldhash::fast::RandomState>;

/// State the request path and the writer thread both touch.
struct Shared {
    /// Clicks handed over but not yet committed, so a postback right behind its click finds it.
    pending: Mutex<Pending>,
    queued: AtomicU64,
    committed: AtomicU64,
    commits: AtomicU64,
    commit_micros_total: AtomicU64,
    failed: AtomicU64,
    last_overflow_log_ms: AtomicI64,
}

/// One message to the writer thread. Every record kind is a `WriteKind` and shares the same group
/// commit.
enum Op {
    Write(Write),
    Control(Control),
    /// Sent once, by `Drop`, behind everything else.
    Shutdown,
}

/// Messages answered after the writes that arrived with them are committed.
enum Control {
    /// Answered once everything sent before it is committed.
    Flush(oneshot::Sender<Result<(), StoreError>>),
    Ping(oneshot::Sender<Result<(), StoreError>>),
    /// Answered with the number of clicks deleted once the retention run it joins is done.
    Prune(oneshot::Sender<Result<u64, StoreError>>),
}

struct Write {
    kind: WriteKind,
    /// Present when the sender waits for the commit (`strict` clicks, and every other kind).
    done: Option<oneshot::Sender<Result<Outcome, StoreError>>>,
}

enum WriteKind {
    Click(Arc<ClickRecord>),
    Conversion(Box<ConversionWrite>),
    DeliveryAttempt { id: i64, attempt: DeliveryAttempt },
}

/// What a committed write answers its sender.
#[derive(Debug)]
enum Outcome {
    Done,
    Conversion(Change),
}

struct ConversionWrite {
    report: ConversionReport,
    plan: Plan,
}

/// A failed batch is retried as a whole, but a delivery plan can run only once: its answer is
/// kept for the retry, which reaches the same change because the rollback restored the state
/// the first attempt saw.
struct Plan {
    ready: Option<DeliveryPlan>,
    ran: Option<(Change, Option<NewDelivery>)>,
}

impl Plan {
    fn new(plan: DeliveryPlan) -> Plan {
        Plan {
            ready: Some(plan),
            ran: None,
        }
    }

    fn delivery(&mut self, change: &Change, describe: impl Fn() -> String) -> Option<&NewDelivery> {
        if let Some(plan) = self.ready.take() {
            // The plan renders a template supplied from outside the store; a panic in it must not
            // take down the one thread that writes.
            let delivery = std::panic::catch_unwind(AssertUnwindSafe(|| plan(change)))
                .unwrap_or_else(|_| {
                    tracing::error!(
                        conversion = describe(),
                        "delivery plan panicked; no postback queued"
                    );
                    None
                });
            self.ran = Some((*change, delivery));
        }
        match &self.ran {
            Some((planned, delivery)) if planned == change => delivery.as_ref(),
            _ => {
                tracing::error!(
                    conversion = describe(),
                    "conversion changed between attempts; no postback queued"
                );
                None
            }
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates its schema and starts the
    /// writer. Clicks older than `retention` are deleted at start and hourly.
    pub fn open(
        path: &Path,
        durability: Durability,
        retention: Duration,
    ) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_queue(path, durability, retention, QUEUE_CAPACITY)
    }

    fn open_with_queue(
        path: &Path,
        durability: Durability,
        retention: Duration,
        queue_capacity: usize,
    ) -> Result<SqliteStore, StoreError> {
        let fail = |err: String| {
            StoreError::Unavailable(format!(
                "cannot open SQLite store {}: {err}",
                path.display()
            ))
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut conn = open_writer(path, durability).map_err(fail)?;
        migrate(&mut conn).map_err(fail)?;
        let next_seq = rollup::recover(&mut conn)
            .map_err(|e| fail(format!("cannot catch up the report rollups: {e}")))?;

        let readers = Arc::new(Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        });
        let first_reader = readers.open().map_err(|e| fail(e.to_string()))?;
        lock(&readers.idle).push(first_reader);
        let checkpoint_conn = open_checkpointer(path, durability).map_err(fail)?;

        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            queued: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_micros_total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_overflow_log_ms: AtomicI64::new(i64::MIN),
        });
        let (ops, receiver) = mpsc::sync_channel(queue_capacity);
        let writer = Writer {
            conn,
            durability,
            ops: receiver,
            shared: Arc::clone(&shared),
            names: Names::default(),
            retention_ms: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
            health: Ok(()),
            prune: None,
            deferred: Deferred::new(next_seq),
        };
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| fail(format!("cannot start the writer thread: {e}")))?;
        let (stop, stopped) = mpsc::channel();
        let checkpointer = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run_checkpoints(checkpoint_conn, stopped))
            .map_err(|e| fail(format!("cannot start the checkpoint thread: {e}")))?;

        Ok(SqliteStore {
            path: path.to_owned(),
            durability,
            ops,
            shared,
            readers,
            writer: Some(writer),
            checkpointer: Some((stop, checkpointer)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes every click older than the retention period now instead of at the next hourly
    /// run, and answers how many were deleted. Runs in steps between writes, like the hourly run.
    pub async fn prune_expired(&self) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send_waiting(Op::Control(Control::Prune(reply)))
            .await?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Hands an op over without ever waiting for room in the queue (the click path). `wake`
    /// rouses the writer at once, for a sender that waits for the answer; a batched click
    /// does without, since the writer looks at the queue every `POLL` anyway.
    fn send_now(&self, op: Op, wake: bool) -> Result<(), StoreError> {
        match self.ops.try_send(op) {
            Ok(()) => {
                if wake {
                    self.wake_writer();
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(StoreError::Unavailable(
                "SQLite write queue is full (the disk is not keeping up)".into(),
            )),
            Err(TrySendError::Disconnected(_)) => Err(writer_gone()),
        }
    }

    /// Hands an op over, waiting off the async threads for room if the queue is full (flush and
    /// maintenance, which must not be refused merely because the queue is busy).
    async fn send_waiting(&self, op: Op) -> Result<(), StoreError> {
        match self.ops.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(op)) => {
                let ops = self.ops.clone();
                tokio::task::spawn_blocking(move || ops.send(op))
                    .await
                    .map_err(|e| StoreError::Internal(e.to_string()))?
                    .map_err(|_| writer_gone())?;
            }
            Err(TrySendError::Disconnected(_)) => return Err(writer_gone()),
        }
        self.wake_writer();
        Ok(())
    }

    fn wake_writer(&self) {
        if let Some(writer) = &self.writer {
            writer.thread().unpark();
        }
    }

    /// Hands a write over and waits for its commit, whatever the durability mode.
    async fn write_and_wait(&self, kind: WriteKind) -> Result<Outcome, StoreError> {
        let (done, committed) = oneshot::channel();
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        let op = Op::Write(Write {
            kind,
            done: Some(done),
        });
        if let Err(err) = self.send_waiting(op).await {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(err);
        }
        committed.await.map_err(|_| writer_gone())?
    }

    /// Runs a query on a read connection, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.with(work))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .map_err(store_error)
    }

    fn note_refused(&self, id: &str, err: &StoreError) {
        let failed = self.shared.failed.fetch_add(1, Ordering::Relaxed) + 1;
        // One line a second at most: when the queue overflows it does so thousands of times.
        let now = now_ms();
        let last = self.shared.last_overflow_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .shared
                .last_overflow_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(click = id, failed_total = failed, error = %err, "click not stored");
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn record_click(&self, click: ClickRecord) -> Result<(), StoreError> {
        let record = Arc::new(click);
        let key: Box<str> = record.id.as_str().into();
        // Into the map before the queue, so the writer's removal after commit cannot come first.
        lock(&self.shared.pending).insert(key, Arc::clone(&record));
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        let (done, committed) = match self.durability {
            Durability::Strict => {
                let (done, committed) = oneshot::channel();
                (Some(done), Some(committed))
            }
            Durability::Batched => (None, None),
        };
        let op = Op::Write(Write {
            kind: WriteKind::Click(Arc::clone(&record)),
            done,
        });
        if let Err(err) = self.send_now(op, committed.is_some()) {
            forget_pending(&mut lock(&self.shared.pending), &record);
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            self.note_refused(&record.id, &err);
            return Err(err);
        }
        match committed {
            Some(committed) => committed.await.map_err(|_| writer_gone())?.map(|_| ()),
            None => Ok(()),
        }
    }

    async fn click(&self, id: &str) -> Result<Option<ClickRecord>, StoreError> {
        if let Some(record) = lock(&self.shared.pending).get(id) {
            return Ok(Some(ClickRecord::clone(record)));
        }
        let id = id.to_owned();
        self.read(move |conn| load_click(conn, &id)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send_now(Op::Control(Control::Ping(reply)), true)?;
        match tokio::time::timeout(PING_TIMEOUT, answer).await {
            Ok(answer) => answer.map_err(|_| writer_gone())?,
            Err(_) => Err(StoreError::Unavailable(format!(
                "SQLite writer did not answer within {} ms",
                PING_TIMEOUT.as_millis()
            ))),
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send_waiting(Op::Control(Control::Flush(reply)))
            .await?;
        answer.await.map_err(|_| writer_gone())?
    }

    fn stats(&self) -> StoreStats {
        let shared = &self.shared;
        StoreStats {
            queued: shared.queued.load(Ordering::Relaxed),
            committed: shared.committed.load(Ordering::Relaxed),
            commits: shared.commits.load(Ordering::Relaxed),
            commit_micros_total: shared.commit_micros_total.load(Ordering::Relaxed),
            failed: shared.failed.load(Ordering::Relaxed),
            dropped: 0,
        }
    }

    async fn record_conversion(
        &self,
        report: ConversionReport,
        plan: DeliveryPlan,
    ) -> Result<Change, StoreError> {
        let write = ConversionWrite {
            report,
            plan: Plan::new(plan),
        };
        match self
            .write_and_wait(WriteKind::Conversion(Box::new(write)))
            .await?
        {
            Outcome::Conversion(change) => Ok(change),
            Outcome::Done => Err(StoreError::Internal(
                "the writer answered a conversion without its change".into(),
            )),
        }
    }

    async fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut query = conn.prepare_cached(&format!(
                "{SELECT_DELIVERY} WHERE state = ?1 AND next_at_ms <= ?2
                 ORDER BY next_at_ms, id LIMIT ?3"
            ))?;
            let rows = query.query_map(
                params![
                    codec::delivery_state_code(DeliveryState::Pending),
                    now_ms,
                    limit
                ],
                delivery_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    async fn record_delivery_attempt(
        &self,
        id: i64,
        attempt: DeliveryAttempt,
    ) -> Result<(), StoreError> {
        self.write_and_wait(WriteKind::DeliveryAttempt { id, attempt })
            .await
            .map(|_| ())
    }

    async fn deliveries(
        &self,
        state: DeliveryState,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut query = conn.prepare_cached(&format!(
                "{SELECT_DELIVERY} WHERE state = ?1 ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = query.query_map(
                params![codec::delivery_state_code(state), limit],
                delivery_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    async fn approved_since(&self, since_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(move |conn| approved_since(conn, since_ms)).await
    }

    async fn evidence_page(
        &self,
        since_ms: i64,
        until_ms: i64,
        after: Option<EvidenceCursor>,
        limit: usize,
    ) -> Result<EvidencePage, StoreError> {
        self.read(move |conn| evidence_page(conn, since_ms, until_ms, after.as_ref(), limit))
            .await
    }

    async fn report(&self, query: &ReportQuery) -> Result<Vec<ReportGroup>, StoreError> {
        // Click facts wait up to a second for their rollup rows; a report sees them all.
        self.flush().await?;
        let query = query.clone();
        self.read(move |conn| rollup::report(conn, &query)).await
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Queued behind every write already sent, so the writer commits those before it stops.
        let _ = self.ops.send(Op::Shutdown);
        self.wake_writer();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if let Some((stop, checkpointer)) = self.checkpointer.take() {
            let _ = stop.send(());
            let _ = checkpointer.join();
        }
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("SQLite writer thread has stopped".into())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent across a panic (single inserts and removes), so a
    // poisoned lock is still safe to use and better than failing every later click.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn forget_pending(pending: &mut Pending, record: &Arc<ClickRecord>) {
    // Only this very record: a later one with the same id must stay findable.
    if pending
        .get(record.id.as_str())
        .is_some_and(|held| Arc::ptr_eq(held, record))
    {
        pending.remove(record.id.as_str());
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn store_error(err: rusqlite::Error) -> StoreError {
    store_error_ref(&err)
}

fn store_error_ref(err: &rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::OutOfMemory,
        ) => StoreError::Unavailable(err.to_string()),
        _ => StoreError::Internal(err.to_string()),
    }
}

fn open_writer(path: &Path, durability: Durability) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    let setup = || -> rusqlite::Result<String> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        conn.pragma_update(None, "synchronous", synchronous(durability))?;
        conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_AUTOCHECKPOINT_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", 64_i64 << 20)?;
        // Negative means KiB: enough to keep the hot end of the trees in memory.
        conn.pragma_update(None, "cache_size", -8192_i64)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(mode)
    };
    let mode = setup().map_err(|e| e.to_string())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!(
            "the file system does not support WAL mode (journal_mode stayed `{mode}`)"
        ));
    }
    Ok(conn)
}

fn open_checkpointer(path: &Path, durability: Durability) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    // A checkpoint's fsyncs follow the connection's own `synchronous`.
    conn.pragma_update(None, "synchronous", synchronous(durability))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

fn synchronous(durability: Durability) -> &'static str {
    match durability {
        Durability::Batched => "NORMAL",
        Durability::Strict => "FULL",
    }
}

fn migrate(conn: &mut Connection) -> Result<(), String> {
    let text = |e: rusqlite::Error| e.to_string();
    let application: i32 = conn
        .pragma_query_one(None, "application_id")
        .map_err(text)?;
    if application != 0 && application != APPLICATION_ID {
        return Err(format!(
            "not a smartlink database (application_id {application:#x})"
        ));
    }
    loop {
        // Version read inside the write lock: two processes opening a new file at once must not
        // both create the tables.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(text)?;
        let version: i64 = tx.pragma_query_one(None, "user_version").map_err(text)?;
        if version > SCHEMA_VERSION {
            return Err(format!(
                "schema version {version} was written by a newer smartlink (this one knows up to \
                 {SCHEMA_VERSION})"
            ));
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        if version == 0 {
            let tables: i64 = tx
                .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
                .map_err(text)?;
            if tables > 0 {
                return Err("holds tables of another application; refusing to add ours".into());
            }
        }
        let index = usize::try_from(version).map_err(|e| e.to_string())?;
        tx.execute_batch(MIGRATIONS[index])
            .and_then(|()| after_migration(&tx, version + 1))
            .map_err(|e| format!("schema migration to version {}: {e}", version + 1))?;
        tx.pragma_update(None, "user_version", version + 1)
            .map_err(text)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(text)?;
        tx.commit().map_err(text)?;
    }
}

fn run_checkpoints(conn: Connection, stop: Receiver<()>) {
    let mut failing = false;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        // PASSIVE never waits for readers or the writer; frames it cannot copy now wait for the
        // next round.
        let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            row.get::<_, i64>(0)
        });
        match outcome {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("SQLite checkpoints work again");
            }
            Ok(_) => {}
            Err(err) if !failing => {
                failing = true;
                tracing::error!(error = %err, "SQLite checkpoint failed");
            }
            Err(_) => {}
        }
    }
}

/// Read connections, reused so a lookup does not pay for opening the file.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn open(&self) -> rusqlite::Result<Connection> {
        // Read-write with `query_only` rather than read-only: a read-only connection cannot
        // recover a WAL index left behind by a crashed writer.
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }

    fn with<T>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let idle = lock(&self.idle).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = work(&conn);
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}

/// One click's own row, interned names as their ids. The names are looked up one by one rather
/// than joined: with ten joins SQLite re-prepares the statement at every new binding (about
/// 380,000 instructions a lookup), where one-table lookups are prepared once.
const SELECT_CLICK: &str = "
    SELECT id, ts, campaign, source, external_id, cost, offer, route,
           country, region, city, asn, isp, carrier, connection,
           os, os_version, browser, browser_version, device, bot, language, ip, params
    FROM clicks
    WHERE id = ?1";

/// Columns of `SELECT_CLICK` that hold a `names` id.
const NAME_COLUMNS: [usize; 10] = [2, 3, 6, 9, 10, 12, 13, 16, 17, 18];

fn load_click(conn: &Connection, id: &str) -> rusqlite::Result<Option<ClickRecord>> {
    let raw = conn
        .prepare_cached(SELECT_CLICK)?
        .query_row([id], |row| {
            (0..24)
                .map(|i| row.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .optional()?;
    let Some(mut values) = raw else {
        return Ok(None);
    };
    let mut name = conn.prepare_cached("SELECT name FROM names WHERE id = ?1")?;
    for column in NAME_COLUMNS {
        if let Value::Integer(code) = values[column] {
            values[column] = Value::Text(name.query_row([code], |r| r.get(0))?);
        }
    }
    click_from_values(&values).map(Some)
}

fn click_from_values(values: &[Value]) -> rusqlite::Result<ClickRecord> {
    let wrong = |idx: usize, ty: Type| {
        rusqlite::Error::FromSqlConversionFailure(idx, ty, "unexpected stored type".into())
    };
    let text = |idx: usize| -> rusqlite::Result<Option<String>> {
        match &values[idx] {
            Value::Null => Ok(None),
            Value::Text(t) => Ok(Some(t.clone())),
            _ => Err(wrong(idx, Type::Text)),
        }
    };
    let required = |idx: usize| text(idx)?.ok_or_else(|| wrong(idx, Type::Null));
    let int = |idx: usize| -> rusqlite::Result<Option<i64>> {
        match values[idx] {
            Value::Null => Ok(None),
            Value::Integer(i) => Ok(Some(i)),
            _ => Err(wrong(idx, Type::Integer)),
        }
    };
    fn coded<T>(values: &[Value], idx: usize, decode: fn(i64) -> Option<T>) -> rusqlite::Result<T> {
        let Value::Integer(code) = values[idx] else {
            return Err(rusqlite::Error::InvalidColumnType(
                idx,
                String::new(),
                values[idx].data_type(),
            ));
        };
        decode(code).ok_or(rusqlite::Error::IntegralValueOutOfRange(idx, code))
    }
    let ip = codec::decode_ip(ValueRef::from(&values[22])).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(22, Type::Blob, "not an IP address".into())
    })?;
    let params = text(23)?;
    Ok(ClickRecord {
        id: required(0)?,
        ts_ms: int(1)?.ok_or_else(|| wrong(1, Type::Null))?,
        campaign: required(2)?,
        source: required(3)?,
        external_id: text(4)?,
        cost: int(5)?.map(Money::from_micros),
        offer: text(6)?,
        route: coded(values, 7, codec::route_from_code)?,
        visitor: Visitor {
            // Only the stored (possibly anonymized) address is kept; see `ClickRecord::ip`.
            ip,
            country: text(8)?,
            region: text(9)?,
            city: text(10)?,
            asn: int(11)?
                .map(|asn| {
                    u32::try_from(asn)
                        .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(11, asn))
                })
                .transpose()?,
            isp: text(12)?,
            carrier: text(13)?,
            connection: coded(values, 14, codec::connection_from_code)?,
            os: coded(values, 15, codec::os_from_code)?,
            os_version: text(16)?,
            browser: text(17)?,
            browser_version: text(18)?,
            device: coded(values, 19, codec::device_from_code)?,
            bot: int(20)?.is_some_and(|b| b != 0),
            language: text(21)?,
        },
        ip,
        params: codec::decode_params(params.as_deref()),
    })
}

fn approved_since(conn: &Connection, since_ms: i64) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut query = conn.prepare_cached(
        "SELECT n.name, v.approved_ms
         FROM conversions v
         JOIN clicks c ON c.id = v.click_id
         JOIN names n ON n.id = c.offer
         WHERE v.approved_ms >= ?1 AND v.status = ?2
         ORDER BY v.approved_ms",
    )?;
    let rows = query.query_map(
        params![
            since_ms,
            codec::conversion_status_code(ConversionStatus::Approved)
        ],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    rows.collect()
}

/// `Store::evidence_page` on one connection. Clicks are read in the order of `clicks_by_ts`
/// (whose entries carry the id, the table's key), so paging by (time, id) never sorts.
fn evidence_page(
    conn: &Connection,
    since_ms: i64,
    until_ms: i64,
    after: Option<&EvidenceCursor>,
    limit: usize,
) -> rusqlite::Result<EvidencePage> {
    let limit = limit.max(1);
    let fallback = codec::route_code(Route::Fallback);
    // Every id is longer than "", so the first page starts at `since_ms` itself.
    let (after_ts, after_id) = after.map_or((since_ms, ""), |c| (c.ts_ms, c.id.as_str()));
    let mut query = conn.prepare_cached(
        "SELECT c.id, c.ts, cam.name, ofr.name, c.country, c.device, c.os, car.name
         FROM clicks c
         JOIN names cam ON cam.id = c.campaign
         JOIN names ofr ON ofr.id = c.offer
         LEFT JOIN names car ON car.id = c.carrier
         WHERE c.ts >= ?1 AND (c.ts > ?1 OR c.id > ?2) AND c.ts < ?3 AND c.route = ?4
         ORDER BY c.ts, c.id
         LIMIT ?5",
    )?;
    let mut rows = query.query(params![
        after_ts,
        after_id,
        until_ms,
        fallback,
        i64::try_from(limit).unwrap_or(i64::MAX)
    ])?;
    let mut clicks = Vec::with_capacity(limit.min(4096));
    let mut last_id = String::new();
    while let Some(row) = rows.next()? {
        last_id = row.get(0)?;
        clicks.push(evidence_click(row, 1)?);
    }
    let next = (clicks.len() == limit).then(|| EvidenceCursor {
        ts_ms: clicks.last().map_or(until_ms, |c| c.ts_ms),
        id: last_id,
    });
    // Approvals in (time of `after`, time of the last click], or up to `until_ms` on the last
    // page: consecutive pages share a boundary, so each approval lands in exactly one.
    let from = after.map_or(i64::MIN, |c| c.ts_ms);
    let to = next.as_ref().map_or(until_ms - 1, |c| c.ts_ms);
    let mut query = conn.prepare_cached(
        "SELECT c.ts, cam.name, ofr.name, c.country, c.device, c.os, car.name, v.payout,
                v.approved_ms
         FROM conversions v
         JOIN clicks c ON c.id = v.click_id
         JOIN names cam ON cam.id = c.campaign
         JOIN names ofr ON ofr.id = c.offer
         LEFT JOIN names car ON car.id = c.carrier
         WHERE v.approved_ms > ?1 AND v.approved_ms <= ?2 AND v.status = ?3
           AND v.click_ts >= ?4 AND c.route = ?5
         ORDER BY v.approved_ms",
    )?;
    let rows = query.query_map(
        params![
            from,
            to,
            codec::conversion_status_code(ConversionStatus::Approved),
            since_ms,
            fallback
        ],
        |row| {
            Ok(EvidenceConversion {
                click: evidence_click(row, 0)?,
                payout: Money::from_micros(row.get(7)?),
                approved_ms: row.get(8)?,
            })
        },
    )?;
    let conversions = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(EvidencePage {
        clicks,
        conversions,
        next,
    })
}

/// The click columns `ts, campaign, offer, country, device, os, carrier` from `first` on.
fn evidence_click(row: &Row<'_>, first: usize) -> rusqlite::Result<EvidenceClick> {
    let code = |idx: usize| row.get::<_, i64>(idx);
    let device = code(first + 4)?;
    let os = code(first + 5)?;
    Ok(EvidenceClick {
        ts_ms: row.get(first)?,
        campaign: row.get(first + 1)?,
        offer: row.get(first + 2)?,
        segment: Segment {
            country: row.get(first + 3)?,
            device: codec::device_from_code(device)
                .ok_or(rusqlite::Error::IntegralValueOutOfRange(first + 4, device))?,
            os: codec::os_from_code(os)
                .ok_or(rusqlite::Error::IntegralValueOutOfRange(first + 5, os))?,
            carrier: row.get(first + 6)?,
        },
    })
}

/// Reads an existing store file without writing to it (for `smartlink explain` beside a running
/// server): never creates the file, never migrates or prunes it.
pub struct SqliteReader {
    conn: Connection,
}

impl SqliteReader {
    /// `None` when there is no file at `path` (nothing recorded yet).
    pub fn open_existing(path: &Path) -> Result<Option<SqliteReader>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let fail = |err: String| {
            StoreError::Unavailable(format!(
                "cannot read SQLite store {}: {err}",
                path.display()
            ))
        };
        let readers = Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        };
        let conn = readers.open().map_err(|e| fail(e.to_string()))?;
        let application: i32 = conn
            .pragma_query_value(None, "application_id", |row| row.get(0))
            .map_err(|e| fail(e.to_string()))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| fail(e.to_string()))?;
        if application != APPLICATION_ID || version != SCHEMA_VERSION {
            return Err(fail(format!(
                "not a smartlink database of schema version {SCHEMA_VERSION} (application_id \
                 {application:#x}, version {version}); start the server once to migrate it"
            )));
        }
        Ok(Some(SqliteReader { conn }))
    }

    /// `Store::approved_since`.
    pub fn approved_since(&self, since_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        approved_since(&self.conn, since_ms).map_err(store_error)
    }

    /// `Store::evidence_page`.
    pub fn evidence_page(
        &self,
        since_ms: i64,
        until_ms: i64,
        after: Option<EvidenceCursor>,
        limit: usize,
    ) -> Result<EvidencePage, StoreError> {
        evidence_page(&self.conn, since_ms, until_ms, after.as_ref(), limit).map_err(store_error)
    }

    /// `Store::report`.
    pub fn report(&self, query: &ReportQuery) -> Result<Vec<ReportGroup>, StoreError> {
        rollup::report(&self.conn, query).map_err(store_error)
    }
}

/// One fact for `fill_report_rollups`: counters under a click's time and dimensions.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportFact {
    pub ts_ms: i64,
    pub campaign: String,
    pub offer: Option<String>,
    pub route: Route,
    /// `None` for click counters (`clicks`, `cost`), the event for conversion counters.
    pub event: Option<String>,
    pub country: Option<String>,
    pub os: Os,
    pub device: Device,
    pub browser: Option<String>,
    pub carrier: Option<String>,
    pub connection: Link,
    pub language: Option<String>,
    pub counters: ReportCounters,
}

/// Benchmark and test support: adds `facts` to the report rollups of the store file at `path`
/// through the same summing and upserts as the writer thread, as if clicks and conversions with
/// those times and dimensions had been recorded, without storing the clicks or conversions
/// themselves (so only reports see them). Creates and migrates the file if needed. Meant for a
/// file no server is writing to. Answers the number of facts added.
pub fn fill_report_rollups(
    path: &Path,
    facts: impl IntoIterator<Item = ReportFact>,
) -> Result<u64, StoreError> {
    // Rollup entries, each up to 20 rows.
    const WRITE_AT: usize = 12_500;
    let fail = |err: String| {
        StoreError::Unavailable(format!(
            "cannot fill SQLite store {}: {err}",
            path.display()
        ))
    };
    let mut conn = open_writer(path, Durability::Batched).map_err(fail)?;
    migrate(&mut conn).map_err(fail)?;
    let mut names = Names::default();
    let mut rollup = Rollup::default();
    let mut added = 0_u64;
    let mut tx = conn.transaction().map_err(store_error)?;
    for fact in facts {
        let mut add = || -> rusqlite::Result<()> {
            let name = |names: &mut Names, name: Option<&str>| {
                intern_opt(&tx, names, name).map(|id| id.unwrap_or(0))
            };
            let mut dims = Dims::default();
            dims.set(
                Dimension::Campaign,
                intern(&tx, &mut names, &fact.campaign)?,
            );
            dims.set(Dimension::Offer, name(&mut names, fact.offer.as_deref())?);
            dims.set(Dimension::Route, codec::route_code(fact.route));
            dims.set(Dimension::Event, name(&mut names, fact.event.as_deref())?);
            dims.set(
                Dimension::Country,
                name(&mut names, fact.country.as_deref())?,
            );
            dims.set(Dimension::Os, codec::os_code(fact.os));
            dims.set(Dimension::Device, codec::device_code(fact.device));
            dims.set(
                Dimension::Browser,
                name(&mut names, fact.browser.as_deref())?,
            );
            dims.set(
                Dimension::Carrier,
                name(&mut names, fact.carrier.as_deref())?,
            );
            dims.set(
                Dimension::Connection,
                codec::connection_code(fact.connection),
            );
            dims.set(
                Dimension::Language,
                name(&mut names, fact.language.as_deref())?,
            );
            rollup.add(fact.ts_ms, &dims, &fact.counters);
            Ok(())
        };
        add().map_err(store_error)?;
        added += 1;
        if rollup.len() >= WRITE_AT {
            rollup.write(&tx).map_err(store_error)?;
            tx.commit().map_err(store_error)?;
            tx = conn.transaction().map_err(store_error)?;
        }
    }
    rollup.write(&tx).map_err(store_error)?;
    tx.commit().map_err(store_error)?;
    Ok(added)
}

const SELECT_DELIVERY: &str = "
    SELECT id, url, source, click_id, event, status, created_ms, attempts, next_at_ms, state,
           last_error, delivered_ms
    FROM deliveries";

fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let status: i64 = row.get(5)?;
    let status = codec::conversion_status_from_code(status)
        .ok_or(rusqlite::Error::IntegralValueOutOfRange(5, status))?;
    let state: i64 = row.get(9)?;
    let state = codec::delivery_state_from_code(state)
        .ok_or(rusqlite::Error::IntegralValueOutOfRange(9, state))?;
    Ok(Delivery {
        id: row.get(0)?,
        url: row.get(1)?,
        source: row.get(2)?,
        click_id: row.get(3)?,
        event: row.get(4)?,
        status: status.as_str().to_owned(),
        created_ms: row.get(6)?,
        attempts: row.get(7)?,
        next_at_ms: row.get(8)?,
        state,
        last_error: row.get(10)?,
        delivered_ms: row.get(11)?,
    })
}

/// Owns the write connection; the only thread that writes.
struct Writer {
    conn: Connection,
    durability: Durability,
    ops: Receiver<Op>,
    shared: Arc<Shared>,
    /// Interned name → `names.id`. Cleared whenever a transaction rolls back, since ids handed
    /// out inside it no longer exist.
    names: Names,
    retention_ms: i64,
    /// Outcome of the last write transaction, reported by `ping` and `flush`.
    health: Result<(), String>,
    prune: Option<PruneRun>,
    /// Click facts committed but not yet in the report rollups.
    deferred: Deferred,
}

struct PruneRun {
    cutoff_ms: i64,
    delivered_cutoff_ms: i64,
    failed_cutoff_ms: i64,
    deleted: u64,
    waiters: Vec<oneshot::Sender<Result<u64, StoreError>>>,
}

impl Writer {
    /// The writer never blocks on the queue: a sender would then have to wake it for every
    /// batched click, a system call and a context switch on the click's own core, which cost
    /// more than the click's insert. It sleeps at most `POLL` between looks instead, and a sender
    /// that waits for its commit unparks it.
    fn run(mut self) {
        let mut next_prune = Instant::now();
        loop {
            if self.prune.is_none() && Instant::now() >= next_prune {
                self.start_prune(None);
                next_prune = Instant::now() + PRUNE_EVERY;
            }
            match self.ops.try_recv() {
                Ok(first) => {
                    if !self.handle(first) {
                        return;
                    }
                }
                Err(TryRecvError::Empty) => {
                    // While a retention run is under way, only look at the queue between steps.
                    if self.prune.is_none() {
                        let wake = self
                            .deferred
                            .deadline()
                            .map_or(next_prune, |deadline| deadline.min(next_prune));
                        std::thread::park_timeout(
                            wake.saturating_duration_since(Instant::now()).min(POLL),
                        );
                    }
                    if self.deferred.due(Instant::now()) {
                        self.commit(Vec::new(), true);
                    }
                }
                Err(TryRecvError::Disconnected) => {
                    self.commit(Vec::new(), true);
                    return;
                }
            }
            self.prune_step();
        }
    }

    /// Takes `first` and whatever else is already queued, commits the writes among them in one
    /// transaction, then answers the control messages. Returns false on shutdown.
    fn handle(&mut self, first: Op) -> bool {
        let mut writes = Vec::new();
        let mut replies = Vec::new();
        let mut keep_running = true;
        let mut next = Some(first);
        while let Some(op) = next {
            match op {
                Op::Write(write) => writes.push(write),
                Op::Shutdown => {
                    keep_running = false;
                    break;
                }
                Op::Control(control) => replies.push(control),
            }
            if writes.len() >= MAX_BATCH {
                break;
            }
            next = self.ops.try_recv().ok();
        }
        // A flush promises reports that see everything before it; so does a stop.
        let write_rollups = !keep_running
            || replies
                .iter()
                .any(|reply| matches!(reply, Control::Flush(_)));
        self.commit(writes, write_rollups);
        for reply in replies {
            match reply {
                Control::Flush(reply) => {
                    let _ = reply.send(self.health.clone().map_err(StoreError::Unavailable));
                }
                Control::Ping(reply) => {
                    let _ = reply.send(self.ping());
                }
                Control::Prune(reply) => self.start_prune(Some(reply)),
            }
        }
        keep_running
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        if self.health.is_err() {
            // Without traffic no batch would ever show that the disk recovered, and a router
            // reported not ready gets no traffic: so probe with a write of our own.
            self.conn
                .prepare_cached(
                    "INSERT INTO meta (key, value) VALUES ('last_ping_ms', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .and_then(|mut probe| probe.execute([now_ms()]))
                .map_err(store_error)?;
            self.health = Ok(());
        }
        self.conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(store_error)?;
        Ok(())
    }

    /// Commits `writes` in one transaction, with the deferred rollups too when `write_rollups`.
    fn commit(&mut self, mut writes: Vec<Write>, write_rollups: bool) {
        if writes.is_empty() && !(write_rollups && self.deferred.holds_facts()) {
            return;
        }
        let started = Instant::now();
        let sync_fully = self.durability == Durability::Batched
            && writes
                .iter()
                .any(|write| matches!(write.kind, WriteKind::Conversion(_)));
        if sync_fully {
            self.set_synchronous("FULL");
        }
        let mut attempt = 1;
        let outcome = loop {
            match self.transaction(&mut writes, write_rollups) {
                Ok(results) => break Ok(results),
                Err(err) => {
                    self.names.clear();
                    if attempt == WRITE_ATTEMPTS {
                        break Err(err);
                    }
                    tracing::warn!(error = %err, attempt, records = writes.len(), "SQLite write failed; retrying");
                    std::thread::sleep(Duration::from_millis(20 << attempt));
                    attempt += 1;
                }
            }
        };
        if sync_fully {
            self.set_synchronous(synchronous(self.durability));
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let count = writes.len() as u64;
        let results = match outcome {
            Ok(results) => {
                self.health = Ok(());
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .commit_micros_total
                    .fetch_add(micros, Ordering::Relaxed);
                results
            }
            Err(err) => {
                let message = err.to_string();
                let first = writes
                    .first()
                    .map_or_else(|| "report rollups".to_string(), Write::describe);
                tracing::error!(error = %message, records = count, first, "SQLite write failed; records lost");
                self.health = Err(message.clone());
                writes.iter().map(|_| Err(message.clone())).collect()
            }
        };
        {
            let mut pending = lock(&self.shared.pending);
            for write in &writes {
                match &write.kind {
                    WriteKind::Click(record) => forget_pending(&mut pending, record),
                    WriteKind::Conversion(_) | WriteKind::DeliveryAttempt { .. } => {}
                }
            }
        }
        // Counters move before any sender hears back, so whoever awaited a commit and then
        // reads the stats sees its own write counted.
        let failed = results.iter().filter(|result| result.is_err()).count() as u64;
        self.shared.failed.fetch_add(failed, Ordering::Relaxed);
        self.shared
            .committed
            .fetch_add(count - failed, Ordering::Relaxed);
        self.shared.queued.fetch_sub(count, Ordering::Relaxed);
        for (write, result) in writes.into_iter().zip(results) {
            let result = match result {
                Ok(outcome) => Ok(outcome),
                Err(message) => {
                    if self.health.is_ok() {
                        tracing::error!(error = %message, record = write.describe(), "record refused by SQLite");
                    }
                    Err(if self.health.is_ok() {
                        StoreError::Internal(message)
                    } else {
                        StoreError::Unavailable(message)
                    })
                }
            };
            if let Some(done) = write.done {
                let _ = done.send(result);
            }
        }
    }

    fn set_synchronous(&self, level: &str) {
        if let Err(err) = self.conn.pragma_update(None, "synchronous", level) {
            tracing::warn!(error = %err, level, "cannot change SQLite synchronous");
        }
    }

    /// One transaction over the batch. A record SQLite refuses on its own (a duplicate id), or
    /// one that names a delivery that does not exist, fails alone; anything else fails the
    /// whole batch. The batch's report facts are upserted with it, together with the deferred
    /// click facts, when `write_rollups`, when it holds a conversion, or when those are due;
    /// otherwise its click facts join the deferred ones once it committed.
    fn transaction(
        &mut self,
        writes: &mut [Write],
        write_rollups: bool,
    ) -> rusqlite::Result<Vec<Result<Outcome, String>>> {
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(writes.len());
        // What the batch adds to the report counters.
        let mut facts = Vec::with_capacity(writes.len());
        let mut seq = self.deferred.next_seq();
        let mut earliest_ms: Option<i64> = None;
        let mut has_conversion = false;
        for write in writes.iter_mut() {
            let applied = match &mut write.kind {
                WriteKind::Click(record) => {
                    seq += 1;
                    insert_click(&tx, &mut self.names, record, seq - 1).map(|dims| {
                        facts.push(Fact {
                            ts_ms: record.ts_ms,
                            dims,
                            counters: rollup::click_counters(record.cost),
                        });
                        earliest_ms =
                            Some(earliest_ms.map_or(record.ts_ms, |t| t.min(record.ts_ms)));
                        Ok(Outcome::Done)
                    })
                }
                WriteKind::Conversion(conversion) => {
                    has_conversion = true;
                    // A conversion is several statements: one refused midway must leave none.
                    let savepoint = tx.savepoint()?;
                    match apply_conversion(&savepoint, conversion, &mut self.names) {
                        Ok((change, counted)) => savepoint.commit().map(|()| {
                            if let Some((ts_ms, dims, counters)) = counted {
                                facts.push(Fact {
                                    ts_ms,
                                    dims,
                                    counters,
                                });
                            }
                            Ok(Outcome::Conversion(change))
                        }),
                        Err(err) => {
                            // Names interned inside the rolled-back savepoint are gone.
                            self.names.clear();
                            Err(err)
                        }
                    }
                }
                WriteKind::DeliveryAttempt { id, attempt } => {
                    apply_delivery_attempt(&tx, *id, attempt)
                        .map(|applied| applied.map(|()| Outcome::Done))
                }
            };
            match applied {
                Ok(result) => results.push(result),
                Err(err) if err.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    results.push(Err(err.to_string()));
                }
                Err(err) => return Err(err),
            }
        }
        let settle = self.deferred.settle(
            &tx,
            &facts,
            write_rollups || has_conversion,
            seq - 1,
            earliest_ms,
        )?;
        tx.commit()?;
        self.deferred.committed(settle, facts, seq);
        Ok(results)
    }

    fn start_prune(&mut self, waiter: Option<oneshot::Sender<Result<u64, StoreError>>>) {
        let now = now_ms();
        let cutoff_ms = now.saturating_sub(self.retention_ms);
        let delivered_cutoff_ms = now.saturating_sub(KEEP_DELIVERED_MS);
        let failed_cutoff_ms = now.saturating_sub(KEEP_FAILED_MS);
        let run = self.prune.get_or_insert_with(|| PruneRun {
            cutoff_ms,
            delivered_cutoff_ms,
            failed_cutoff_ms,
            deleted: 0,
            waiters: Vec::new(),
        });
        // An explicit request moves the cutoffs to now, so it sees everything expired by then.
        run.cutoff_ms = run.cutoff_ms.max(cutoff_ms);
        run.delivered_cutoff_ms = run.delivered_cutoff_ms.max(delivered_cutoff_ms);
        run.failed_cutoff_ms = run.failed_cutoff_ms.max(failed_cutoff_ms);
        run.waiters.extend(waiter);
    }

    fn prune_step(&mut self) {
        let Some(run) = self.prune.as_mut() else {
            return;
        };
        let step = prune_once(&mut self.conn, run);
        let finished = match step {
            Ok((deleted, more)) => {
                run.deleted += deleted;
                !more
            }
            Err(err) => {
                // Left for the next hourly run; the rows stay, nothing else is affected.
                tracing::error!(error = %err, "deleting expired clicks failed");
                for waiter in std::mem::take(&mut run.waiters) {
                    let _ = waiter.send(Err(store_error_ref(&err)));
                }
                true
            }
        };
        if finished {
            if let Some(run) = self.prune.take() {
                if run.deleted > 0 {
                    tracing::info!(deleted = run.deleted, "expired clicks deleted");
                }
                for waiter in run.waiters {
                    let _ = waiter.send(Ok(run.deleted));
                }
            }
        }
    }
}

/// One retention step in one transaction: up to `PRUNE_STEP` rows of each kind. Answers the
/// clicks deleted and whether any kind may have more left.
fn prune_once(conn: &mut Connection, run: &PruneRun) -> rusqlite::Result<(u64, bool)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut more = false;
    let mut delete = |sql: &str, cutoff: i64| -> rusqlite::Result<usize> {
        let deleted = tx
            .prepare_cached(sql)?
            .execute(params![cutoff, PRUNE_STEP])?;
        more |= deleted as i64 >= PRUNE_STEP;
        Ok(deleted)
    };
    // Every conversion of a click shares its `click_ts`, so whole clicks' worth go at once.
    delete(
        "DELETE FROM conversions WHERE click_id IN
             (SELECT click_id FROM conversions WHERE click_ts < ?1 ORDER BY click_ts LIMIT ?2)",
        run.cutoff_ms,
    )?;
    delete(
        "DELETE FROM conversion_reports WHERE id IN
             (SELECT id FROM conversion_reports WHERE click_ts < ?1 ORDER BY click_ts LIMIT ?2)",
        run.cutoff_ms,
    )?;
    let clicks = delete(
        "DELETE FROM clicks WHERE id IN
             (SELECT id FROM clicks WHERE ts < ?1 ORDER BY ts LIMIT ?2)",
        run.cutoff_ms,
    )?;
    delete(
        &format!(
            "DELETE FROM deliveries WHERE id IN
                 (SELECT id FROM deliveries WHERE state = {} AND delivered_ms < ?1 LIMIT ?2)",
            codec::delivery_state_code(DeliveryState::Delivered)
        ),
        run.delivered_cutoff_ms,
    )?;
    // A failed delivery keeps the time its last attempt was due in `next_at_ms`.
    delete(
        &format!(
            "DELETE FROM deliveries WHERE id IN
                 (SELECT id FROM deliveries WHERE state = {} AND next_at_ms < ?1 LIMIT ?2)",
            codec::delivery_state_code(DeliveryState::Failed)
        ),
        run.failed_cutoff_ms,
    )?;
    // Report rollups go with the clicks they count, a whole bucket once it has ended.
    let rollups_left = rollup::prune_step(&tx, run.cutoff_ms)?;
    tx.commit()?;
    Ok((clicks as u64, more || rollups_left))
}

impl Write {
    fn describe(&self) -> String {
        match &self.kind {
            WriteKind::Click(record) => format!("click {}", record.id),
            WriteKind::Conversion(conversion) => describe_conversion(&conversion.report),
            WriteKind::DeliveryAttempt { id, .. } => format!("delivery attempt {id}"),
        }
    }
}

fn describe_conversion(report: &ConversionReport) -> String {
    let key = &report.key;
    format!("conversion {}/{}/{}", key.click_id, key.event, key.txid)
}

/// What a conversion adds to the report rollups: its click's time and dimensions with the
/// conversion's event, and the change of what the identity counts for.
type Counted = Option<(i64, Dims, ReportCounters)>;

/// Applies one report to its identity (SPEC §9) and queues the delivery its plan asks for.
/// Answers the change and what it moves in the report rollups (nothing for a duplicate, or when
/// the click is not stored).
fn apply_conversion(
    conn: &Connection,
    write: &mut ConversionWrite,
    names: &mut Names,
) -> rusqlite::Result<(Change, Counted)> {
    let report = &write.report;
    let key = &report.key;
    let stored: Option<(i64, i64, i64, Option<i64>)> = conn
        .prepare_cached(
            "SELECT status, payout, click_ts, approved_ms FROM conversions
             WHERE click_id = ?1 AND event = ?2 AND txid = ?3",
        )?
        .query_row(params![key.click_id, key.event, key.txid], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    let current = match stored {
        Some((code, payout, _, _)) => Some(ConversionState {
            status: codec::conversion_status_from_code(code)
                .ok_or(rusqlite::Error::IntegralValueOutOfRange(0, code))?,
            payout: Money::from_micros(payout),
        }),
        None => None,
    };
    let change = conversion::apply(current, report.status, report.payout);
    let delta = match change {
        Change::Duplicate => None,
        Change::Recorded(state) => Some(rollup::conversion_delta(None, state)),
        Change::Updated { before, after } => Some(rollup::conversion_delta(Some(before), after)),
    };
    // The click was handed to this writer before the report could name it, so it is committed
    // by now or earlier in this transaction.
    let click = match delta {
        None => None,
        Some(_) => conn
            .prepare_cached(&format!(
                "SELECT {} FROM clicks WHERE id = ?1",
                rollup::CLICK_COLUMNS
            ))?
            .query_row([&key.click_id], |row| {
                rollup::click_dims(conn, names, row, 0)
            })
            .optional()?,
    };
    let counted = match (click, delta) {
        (Some((ts_ms, mut dims)), Some(delta)) => {
            dims.set(Dimension::Event, intern(conn, names, &key.event)?);
            Some((ts_ms, dims, delta))
        }
        _ => None,
    };
    let approved = ConversionStatus::Approved;
    let (click_ts, result) = match (change, stored) {
        (Change::Duplicate, _) => (None, None),
        (Change::Recorded(state), _) => {
            // Should the click's write have failed, the report's own time stands in.
            let click_ts = click.map_or(report.ts_ms, |(ts_ms, _)| ts_ms);
            conn.prepare_cached(
                "INSERT INTO conversions (click_id, event, txid, click_ts, status, payout,
                     sent_payout, sent_currency, created_ms, updated_ms, approved_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
            )?
            .execute(params![
                key.click_id,
                key.event,
                key.txid,
                click_ts,
                codec::conversion_status_code(state.status),
                state.payout.micros(),
                report.sent_payout.map(Money::micros),
                report.sent_currency,
                report.ts_ms,
                (state.status == approved).then_some(report.ts_ms),
            ])?;
            (Some(click_ts), Some(REPORT_RECORDED))
        }
        (Change::Updated { before, after }, Some((_, _, click_ts, approved_ms))) => {
            // The time of the approval that stands: kept across adjustments within approved.
            let approved_ms = match (before.status == approved, after.status == approved) {
                (_, false) => None,
                (true, true) => approved_ms,
                (false, true) => Some(report.ts_ms),
            };
            conn.prepare_cached(
                "UPDATE conversions SET status = ?4, payout = ?5, sent_payout = ?6,
                     sent_currency = ?7, updated_ms = ?8, approved_ms = ?9
                 WHERE click_id = ?1 AND event = ?2 AND txid = ?3",
            )?
            .execute(params![
                key.click_id,
                key.event,
                key.txid,
                codec::conversion_status_code(after.status),
                after.payout.micros(),
                report.sent_payout.map(Money::micros),
                report.sent_currency,
                report.ts_ms,
                approved_ms,
            ])?;
            (Some(click_ts), Some(REPORT_UPDATED))
        }
        (Change::Updated { .. }, None) => {
            unreachable!("conversion::apply updates only an identity it was given")
        }
    };
    if let (Some(click_ts), Some(result)) = (click_ts, result) {
        conn.prepare_cached(
            "INSERT INTO conversion_reports (click_id, event, txid, click_ts, ts, status, payout,
                 sent_payout, sent_currency, result)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            key.click_id,
            key.event,
            key.txid,
            click_ts,
            report.ts_ms,
            codec::conversion_status_code(report.status),
            report.payout.micros(),
            report.sent_payout.map(Money::micros),
            report.sent_currency,
            result,
        ])?;
    }
    let ts_ms = report.ts_ms;
    let click_id = key.click_id.clone();
    let event = key.event.clone();
    let describe = || describe_conversion(&write.report);
    if let Some(delivery) = write.plan.delivery(&change, describe) {
        conn.prepare_cached(
            "INSERT INTO deliveries (url, source, click_id, event, status, created_ms, attempts,
                 next_at_ms, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?6, ?7)",
        )?
        .execute(params![
            delivery.url,
            delivery.source,
            click_id,
            event,
            codec::conversion_status_code(delivery.status),
            ts_ms,
            codec::delivery_state_code(DeliveryState::Pending),
        ])?;
    }
    Ok((change, counted))
}

/// Records an attempt's outcome. Only a pending delivery changes: a late answer for one already
/// finished must not reopen it. An unknown id is refused on its own.
fn apply_delivery_attempt(
    conn: &Connection,
    id: i64,
    attempt: &DeliveryAttempt,
) -> rusqlite::Result<Result<(), String>> {
    // What each outcome sets; `None` leaves the column as it is.
    let (state, delivered_ms, next_at_ms, error) = match attempt {
        DeliveryAttempt::Delivered { at_ms } => {
            (DeliveryState::Delivered, Some(*at_ms), None, None)
        }
        DeliveryAttempt::Retry { next_at_ms, error } => {
            (DeliveryState::Pending, None, Some(*next_at_ms), Some(error))
        }
        DeliveryAttempt::GaveUp { error } => (DeliveryState::Failed, None, None, Some(error)),
    };
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries SET state = ?3, delivered_ms = COALESCE(?4, delivered_ms),
                 next_at_ms = COALESCE(?5, next_at_ms), last_error = COALESCE(?6, last_error),
                 attempts = attempts + 1
             WHERE id = ?1 AND state = ?2",
        )?
        .execute(params![
            id,
            codec::delivery_state_code(DeliveryState::Pending),
            codec::delivery_state_code(state),
            delivered_ms,
            next_at_ms,
            error
        ])?;
    if changed == 0 {
        let exists = conn
            .prepare_cached("SELECT 1 FROM deliveries WHERE id = ?1")?
            .exists([id])?;
        if !exists {
            return Ok(Err(format!("no delivery {id}")));
        }
    }
    Ok(Ok(()))
}

fn intern(conn: &Connection, names: &mut Names, name: &str) -> rusqlite::Result<i64> {
    if let Some(&id) = names.get(name) {
        return Ok(id);
    }
    let found: Option<i64> = conn
        .prepare_cached("SELECT id FROM names WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?;
    let id = match found {
        Some(id) => id,
        None => {
            conn.prepare_cached("INSERT INTO names (name) VALUES (?1)")?
                .execute([name])?;
            conn.last_insert_rowid()
        }
    };
    // Cities and versions accumulate; starting over now and then bounds the memory.
    if names.len() >= NAME_CACHE_LIMIT {
        names.clear();
    }
    names.insert(name.to_owned(), id);
    Ok(id)
}

fn intern_opt(
    conn: &Connection,
    names: &mut Names,
    name: Option<&str>,
) -> rusqlite::Result<Option<i64>> {
    name.map(|name| intern(conn, names, name)).transpose()
}

/// Inserts a click; answers its dimensions as the report rollups key them.
fn insert_click(
    conn: &Connection,
    names: &mut Names,
    click: &ClickRecord,
    seq: i64,
) -> rusqlite::Result<Dims> {
    let v = &click.visitor;
    let campaign = intern(conn, names, &click.campaign)?;
    let source = intern(conn, names, &click.source)?;
    let offer = intern_opt(conn, names, click.offer.as_deref())?;
    let region = intern_opt(conn, names, v.region.as_deref())?;
    let city = intern_opt(conn, names, v.city.as_deref())?;
    let isp = intern_opt(conn, names, v.isp.as_deref())?;
    let carrier = intern_opt(conn, names, v.carrier.as_deref())?;
    let os_version = intern_opt(conn, names, v.os_version.as_deref())?;
    let browser = intern_opt(conn, names, v.browser.as_deref())?;
    let browser_version = intern_opt(conn, names, v.browser_version.as_deref())?;
    conn.prepare_cached(
        "INSERT INTO clicks (id, ts, campaign, source, offer, route, external_id, cost, country,
             region, city, asn, isp, carrier, connection, os, os_version, browser,
             browser_version, device, bot, language, ip, params, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
             ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
    )?
    .execute(params![
        click.id,
        click.ts_ms,
        campaign,
        source,
        offer,
        codec::route_code(click.route),
        click.external_id,
        click.cost.map(Money::micros),
        v.country,
        region,
        city,
        v.asn,
        isp,
        carrier,
        codec::connection_code(v.connection),
        codec::os_code(v.os),
        os_version,
        browser,
        browser_version,
        codec::device_code(v.device),
        v.bot,
        v.language,
        codec::encode_ip(click.ip),
        codec::encode_params(&click.params),
        seq,
    ])?;
    let mut dims = Dims::default();
    dims.set(Dimension::Campaign, campaign);
    dims.set(Dimension::Offer, offer.unwrap_or(0));
    dims.set(Dimension::Route, codec::route_code(click.route));
    let country = intern_opt(conn, names, v.country.as_deref())?;
    dims.set(Dimension::Country, country.unwrap_or(0));
    dims.set(Dimension::Os, codec::os_code(v.os));
    dims.set(Dimension::Device, codec::device_code(v.device));
    dims.set(Dimension::Browser, browser.unwrap_or(0));
    dims.set(Dimension::Carrier, carrier.unwrap_or(0));
    dims.set(Dimension::Connection, codec::connection_code(v.connection));
    let language = intern_opt(conn, names, v.language.as_deref())?;
    dims.set(Dimension::Language, language.unwrap_or(0));
    Ok(dims)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use tokio::task::JoinSet;

    use super::*;
    use crate::conversion::ConversionKey;
    use crate::conversion::ConversionStatus::{Approved, Chargeback, Pending, Rejected};
    use crate::decide::Route;
    use crate::visitor::{Connection as Link, Device, Os, QueryParams};

    const TEN_YEARS: Duration = Duration::from_secs(3650 * 86_400);

    /// A fully classified fallback click at `ts_ms` (the Redis store's tests use it too).
    pub(crate) fn click_at(ts_ms: i64) -> ClickRecord {
        let id = crate::click_id::generate(ts_ms, &mut rand::rng());
        ClickRecord {
            id,
            ts_ms,
            campaign: "summer-sweeps".into(),
            source: "adsterra".into(),
            external_id: Some("8f14e45fceea167a5a36dedd4bea2543".into()),
            cost: Some(Money::from_micros(3_600)),
            offer: Some("sweeps-us".into()),
            route: Route::Fallback,
            visitor: Visitor {
                ip: "203.0.113.7".parse().unwrap(),
                country: Some("US".into()),
                region: Some("California".into()),
                city: Some("Los Angeles".into()),
                asn: Some(7922),
                isp: Some("Comcast Cable Communications, LLC".into()),
                carrier: None,
                connection: Link::Broadband,
                os: Os::Android,
                os_version: Some("14".into()),
                browser: Some("Chrome".into()),
                browser_version: Some("126.0.6478.122".into()),
                device: Device::Phone,
                bot: false,
                language: Some("en".into()),
            },
            ip: "203.0.113.7".parse().unwrap(),
            params: QueryParams(vec![
                ("clickid".into(), "8f14e45fceea167a5a36dedd4bea2543".into()),
                ("zone".into(), "4471203".into()),
                ("cost".into(), "3.6".into()),
            ]),
        }
    }

    fn fresh_click() -> ClickRecord {
        click_at(now_ms())
    }

    fn open(dir: &tempfile::TempDir, durability: Durability) -> SqliteStore {
        SqliteStore::open(&dir.path().join("var/smartlink.db"), durability, TEN_YEARS).unwrap()
    }

    /// A connection of its own, as another process would have.
    fn independent(store: &SqliteStore) -> Connection {
        Connection::open(store.path()).unwrap()
    }

    fn on_disk(conn: &Connection, id: &str) -> bool {
        conn.query_row("SELECT count(*) FROM clicks WHERE id = ?1", [id], |row| {
            row.get::<_, i64>(0)
        })
        .unwrap()
            == 1
    }

    /// Takes the database's write lock from another connection, so the writer waits and
    /// whatever is handed over meanwhile piles up in the queue.
    fn hold_write_lock(store: &SqliteStore) -> Connection {
        let conn = independent(store);
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn
    }

    #[tokio::test]
    async fn a_click_reads_back_with_every_field_intact() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let mut click = fresh_click();
        click.route = Route::Primary;
        click.visitor.carrier = Some("T-Mobile USA".into());
        click.visitor.connection = Link::Cellular;
        click.visitor.os = Os::Ios;
        click.visitor.device = Device::Tablet;
        click.visitor.bot = true;
        click.visitor.city = Some("São Paulo".into());
        click.cost = Some(Money::from_micros(-1));
        click.ip = "2001:db8:85a3::8a2e:370:7334".parse().unwrap();
        click.visitor.ip = click.ip;
        click.params = QueryParams(vec![
            ("sub1".into(), "значение & more = 🎯".into()),
            ("zone".into(), "1".into()),
            ("zone".into(), "2".into()),
            ("empty".into(), String::new()),
        ]);
        store.record_click(click.clone()).await.unwrap();
        store.flush().await.unwrap();
        assert_eq!(store.click(&click.id).await.unwrap(), Some(click));
    }

    #[tokio::test]
    async fn a_click_without_optional_fields_reads_back_with_them_absent() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Strict);
        let click = ClickRecord {
            external_id: None,
            cost: None,
            offer: None,
            route: Route::Backlink,
            visitor: Visitor::unknown("198.51.100.0".parse().unwrap()),
            ip: "198.51.100.0".parse().unwrap(),
            params: QueryParams::default(),
            ..fresh_click()
        };
        store.record_click(click.clone()).await.unwrap();
        assert_eq!(store.click(&click.id).await.unwrap(), Some(click));
        assert_eq!(store.click("no-such-click").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_click_still_in_the_queue_is_found_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        store.flush().await.unwrap();
        let lock = hold_write_lock(&store);
        let click = fresh_click();
        store.record_click(click.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !on_disk(&lock, &click.id),
            "the writer should still be waiting"
        );
        assert_eq!(store.stats().queued, 1);
        assert_eq!(store.click(&click.id).await.unwrap(), Some(click.clone()));

        lock.execute_batch("ROLLBACK").unwrap();
        store.flush().await.unwrap();
        assert!(on_disk(&lock, &click.id));
        assert_eq!(store.stats().queued, 0);
        assert_eq!(store.click(&click.id).await.unwrap(), Some(click));
    }

    #[tokio::test]
    async fn a_strict_click_is_on_disk_when_record_click_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Strict);
        let other = independent(&store);
        for _ in 0..20 {
            let click = fresh_click();
            store.record_click(click.clone()).await.unwrap();
            assert!(on_disk(&other, &click.id));
        }
    }

    #[tokio::test]
    async fn a_batched_click_is_on_disk_within_50_ms_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let other = independent(&store);
        let click = fresh_click();
        store.record_click(click.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(on_disk(&other, &click.id));
    }

    #[tokio::test]
    async fn flush_returns_after_everything_handed_over_before_it_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let clicks: Vec<ClickRecord> = (0..500).map(|_| fresh_click()).collect();
        for click in &clicks {
            store.record_click(click.clone()).await.unwrap();
        }
        store.flush().await.unwrap();
        let other = independent(&store);
        assert!(clicks.iter().all(|click| on_disk(&other, &click.id)));
        let stats = store.stats();
        assert_eq!((stats.queued, stats.committed, stats.failed), (0, 500, 0));
        assert!(stats.commits >= 1 && stats.commit_micros_total > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_of_batched_clicks_is_committed_in_few_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&dir, Durability::Batched));
        store.flush().await.unwrap();
        let before = store.stats().commits;
        let mut tasks = JoinSet::new();
        for _ in 0..1000 {
            let store = Arc::clone(&store);
            tasks.spawn(async move { store.record_click(fresh_click()).await });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap().unwrap();
        }
        store.flush().await.unwrap();
        let stats = store.stats();
        assert_eq!(stats.committed, 1000);
        assert!(
            stats.commits - before <= 100,
            "{} commits",
            stats.commits - before
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn strict_clicks_waiting_together_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&dir, Durability::Strict));
        store.flush().await.unwrap();
        let lock = hold_write_lock(&store);
        let before = store.stats().commits;
        let mut tasks = JoinSet::new();
        for _ in 0..200 {
            let store = Arc::clone(&store);
            tasks.spawn(async move { store.record_click(fresh_click()).await });
        }
        while store.stats().queued < 200 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(store.stats().committed, 0);
        lock.execute_batch("ROLLBACK").unwrap();
        while let Some(result) = tasks.join_next().await {
            result.unwrap().unwrap();
        }
        let stats = store.stats();
        assert_eq!(stats.committed, 200);
        assert!(
            stats.commits - before <= 3,
            "{} commits",
            stats.commits - before
        );
    }

    #[tokio::test]
    async fn a_duplicate_click_id_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&dir, Durability::Strict));
        let first = fresh_click();
        store.record_click(first.clone()).await.unwrap();
        let again = ClickRecord {
            campaign: "other".into(),
            ..first.clone()
        };
        assert!(store.record_click(again).await.is_err());
        let next = fresh_click();
        store.record_click(next.clone()).await.unwrap();
        assert_eq!(store.click(&first.id).await.unwrap(), Some(first));
        assert!(store.click(&next.id).await.unwrap().is_some());
        assert_eq!(store.stats().failed, 1);
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn retention_deletes_only_clicks_older_than_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smartlink.db");
        let store = SqliteStore::open(&path, Durability::Batched, Duration::from_secs(30 * 86_400))
            .unwrap();
        let now = now_ms();
        let old: Vec<ClickRecord> = (0..2500).map(|i| click_at(now - 31 * DAY_MS - i)).collect();
        let young: Vec<ClickRecord> = [29 * DAY_MS, DAY_MS, 0]
            .into_iter()
            .map(|age| click_at(now - age))
            .collect();
        for click in old.iter().chain(&young) {
            store.record_click(click.clone()).await.unwrap();
        }
        store.flush().await.unwrap();
        // The run at start may already have taken some; together they take exactly the old ones.
        let deleted = store.prune_expired().await.unwrap();
        assert!(deleted <= old.len() as u64);
        for click in old.iter().step_by(100) {
            assert_eq!(store.click(&click.id).await.unwrap(), None);
        }
        for click in &young {
            assert_eq!(store.click(&click.id).await.unwrap().as_ref(), Some(click));
        }
        let remaining: i64 = independent(&store)
            .query_row("SELECT count(*) FROM clicks", [], |row| row.get(0))
            .unwrap();
        assert_eq!(remaining, young.len() as i64);
    }

    #[tokio::test]
    async fn reopening_an_existing_file_keeps_its_clicks() {
        let dir = tempfile::tempdir().unwrap();
        let click = fresh_click();
        {
            let store = open(&dir, Durability::Batched);
            store.record_click(click.clone()).await.unwrap();
        }
        let store = open(&dir, Durability::Strict);
        assert_eq!(store.click(&click.id).await.unwrap(), Some(click));
        let second = fresh_click();
        store.record_click(second.clone()).await.unwrap();
        assert_eq!(store.click(&second.id).await.unwrap(), Some(second));
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_naming_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.db");
        std::fs::write(&path, "this is not a database\n".repeat(200)).unwrap();
        let err = SqliteStore::open(&path, Durability::Batched, TEN_YEARS)
            .err()
            .expect("a text file must be refused");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("not a database"), "{message}");
    }

    #[test]
    fn a_database_of_another_application_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
            .unwrap();
        let err = SqliteStore::open(&path, Durability::Batched, TEN_YEARS)
            .err()
            .expect("a foreign database must be refused");
        assert!(err.to_string().contains("another application"), "{err}");
    }

    #[tokio::test]
    async fn a_click_refused_by_a_full_queue_is_reported_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smartlink.db");
        let store = SqliteStore::open_with_queue(&path, Durability::Batched, TEN_YEARS, 4).unwrap();
        store.flush().await.unwrap();
        let lock = hold_write_lock(&store);
        let mut refused = Vec::new();
        for _ in 0..10 {
            let click = fresh_click();
            if store.record_click(click.clone()).await.is_err() {
                refused.push(click);
            }
        }
        assert!(!refused.is_empty());
        assert_eq!(store.stats().failed, refused.len() as u64);
        assert!(store.ping().await.is_err(), "a full queue is not ready");
        assert_eq!(store.click(&refused[0].id).await.unwrap(), None);

        lock.execute_batch("ROLLBACK").unwrap();
        store.flush().await.unwrap();
        let stats = store.stats();
        assert_eq!(stats.committed, 10 - refused.len() as u64);
        assert_eq!(stats.queued, 0);
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn ping_answers_while_the_writer_is_alive() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        store.ping().await.unwrap();
    }

    fn money(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn report_at(
        click: &ClickRecord,
        txid: &str,
        status: ConversionStatus,
        payout: &str,
        ts_ms: i64,
    ) -> ConversionReport {
        ConversionReport {
            key: ConversionKey {
                click_id: click.id.clone(),
                event: "conversion".into(),
                txid: txid.into(),
            },
            status,
            payout: money(payout),
            sent_payout: Some(money(payout)),
            sent_currency: "USD".into(),
            ts_ms,
        }
    }

    fn report(click: &ClickRecord, status: ConversionStatus, payout: &str) -> ConversionReport {
        report_at(click, "tx-1", status, payout, now_ms())
    }

    fn no_delivery() -> DeliveryPlan {
        Box::new(|_: &Change| None)
    }

    /// Queues a postback for every change but a duplicate, as a source that lists every status.
    fn deliver_changes() -> DeliveryPlan {
        Box::new(|change: &Change| {
            let status = match change {
                Change::Duplicate => return None,
                Change::Recorded(state) => state.status,
                Change::Updated { after, .. } => after.status,
            };
            Some(NewDelivery {
                url: format!("https://source.example/pb?status={}", status.as_str()),
                source: "adsterra".into(),
                status,
            })
        })
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    async fn stored_click(store: &SqliteStore) -> ClickRecord {
        let click = fresh_click();
        store.record_click(click.clone()).await.unwrap();
        click
    }

    #[tokio::test]
    async fn a_first_report_is_recorded_and_the_same_report_again_is_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let click = stored_click(&store).await;
        let first = store
            .record_conversion(report(&click, Approved, "2.5"), no_delivery())
            .await
            .unwrap();
        let approved = ConversionState {
            status: Approved,
            payout: money("2.5"),
        };
        assert_eq!(first, Change::Recorded(approved));
        let again = store
            .record_conversion(report(&click, Approved, "2.5"), no_delivery())
            .await
            .unwrap();
        assert_eq!(again, Change::Duplicate);

        let other = independent(&store);
        let (status, payout, sent, currency): (i64, i64, Option<i64>, String) = other
            .query_row(
                "SELECT status, payout, sent_payout, sent_currency FROM conversions
                 WHERE click_id = ?1",
                [&click.id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .unwrap();
        assert_eq!(codec::conversion_status_from_code(status), Some(Approved));
        assert_eq!(
            (payout, sent, currency.as_str()),
            (2_500_000, Some(2_500_000), "USD")
        );
        assert_eq!(count(&other, "SELECT count(*) FROM conversion_reports"), 1);
    }

    #[tokio::test]
    async fn another_event_or_transaction_of_the_same_click_is_another_conversion() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Strict);
        let click = stored_click(&store).await;
        let first = report(&click, Approved, "1");
        let mut second_tx = first.clone();
        second_tx.key.txid = "tx-2".into();
        let mut other_event = first.clone();
        other_event.key.event = "deposit".into();
        for report in [first, second_tx, other_event] {
            let change = store
                .record_conversion(report, no_delivery())
                .await
                .unwrap();
            assert!(matches!(change, Change::Recorded(_)), "{change:?}");
        }
    }

    #[tokio::test]
    async fn a_new_status_updates_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let click = stored_click(&store).await;
        store
            .record_conversion(report(&click, Pending, "2"), no_delivery())
            .await
            .unwrap();
        let change = store
            .record_conversion(report(&click, Approved, "2.5"), no_delivery())
            .await
            .unwrap();
        assert_eq!(
            change,
            Change::Updated {
                before: ConversionState {
                    status: Pending,
                    payout: money("2")
                },
                after: ConversionState {
                    status: Approved,
                    payout: money("2.5")
                },
            }
        );
        let change = store
            .record_conversion(report(&click, Chargeback, "0"), no_delivery())
            .await
            .unwrap();
        assert_eq!(
            change,
            Change::Updated {
                before: ConversionState {
                    status: Approved,
                    payout: money("2.5")
                },
                after: ConversionState {
                    status: Chargeback,
                    payout: money("2.5")
                },
            }
        );
        let other = independent(&store);
        assert_eq!(count(&other, "SELECT count(*) FROM conversion_reports"), 3);
        assert_eq!(
            count(
                &other,
                "SELECT count(*) FROM conversions WHERE approved_ms IS NULL"
            ),
            1,
            "an identity that is no longer approved has no approval time"
        );
    }

    #[tokio::test]
    async fn a_negative_adjustment_subtracts_and_keeps_the_approval_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let click = stored_click(&store).await;
        let approved_at = now_ms() - 60_000;
        store
            .record_conversion(
                report_at(&click, "tx-1", Approved, "2", approved_at),
                no_delivery(),
            )
            .await
            .unwrap();
        let change = store
            .record_conversion(
                report_at(&click, "tx-1", Approved, "-0.5", approved_at + 1000),
                no_delivery(),
            )
            .await
            .unwrap();
        assert_eq!(
            change,
            Change::Updated {
                before: ConversionState {
                    status: Approved,
                    payout: money("2")
                },
                after: ConversionState {
                    status: Approved,
                    payout: money("1.5")
                },
            }
        );
        assert_eq!(
            store.approved_since(approved_at).await.unwrap(),
            vec![("sweeps-us".to_string(), approved_at)]
        );
        let quarter = click.ts_ms.div_euclid(900_000) * 900_000;
        let totals = groups(&store, &[(quarter, quarter + 900_000)], None, &[]).await;
        assert_eq!(totals[0].counters.revenue, money("1.5"));
        assert_eq!(totals[0].counters.conversions, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_identical_reports_record_exactly_one_conversion_and_one_delivery() {
        let dir = tempfile::tempdir().unwrap();
        for durability in [Durability::Batched, Durability::Strict] {
            let store = Arc::new(open(&dir, durability));
            let click = stored_click(&store).await;
            let report = report(&click, Approved, "3");
            let mut tasks = JoinSet::new();
            for _ in 0..100 {
                let store = Arc::clone(&store);
                let report = report.clone();
                tasks
                    .spawn(async move { store.record_conversion(report, deliver_changes()).await });
            }
            let mut recorded = 0;
            let mut duplicates = 0;
            while let Some(result) = tasks.join_next().await {
                match result.unwrap().unwrap() {
                    Change::Recorded(_) => recorded += 1,
                    Change::Duplicate => duplicates += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!((recorded, duplicates), (1, 99), "{durability:?}");
            let queued: Vec<Delivery> = store
                .deliveries(DeliveryState::Pending, 1000)
                .await
                .unwrap()
                .into_iter()
                .filter(|d| d.click_id == click.id)
                .collect();
            assert_eq!(queued.len(), 1, "{durability:?}");
        }
    }

    #[tokio::test]
    async fn a_delivery_is_committed_together_with_its_conversion() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&dir, Durability::Batched));
        let click = stored_click(&store).await;
        store.flush().await.unwrap();
        let lock = hold_write_lock(&store);
        let recording = {
            let store = Arc::clone(&store);
            let report = report(&click, Pending, "2");
            tokio::spawn(async move { store.record_conversion(report, deliver_changes()).await })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            !recording.is_finished(),
            "a conversion waits for its commit"
        );
        assert_eq!(count(&lock, "SELECT count(*) FROM conversions"), 0);
        assert_eq!(count(&lock, "SELECT count(*) FROM deliveries"), 0);
        lock.execute_batch("ROLLBACK").unwrap();
        let change = recording.await.unwrap().unwrap();
        assert!(matches!(change, Change::Recorded(_)));

        // Committed when record_conversion returned, though the store is `batched`.
        let other = independent(&store);
        assert_eq!(count(&other, "SELECT count(*) FROM conversions"), 1);
        let due = store.due_deliveries(now_ms(), 10).await.unwrap();
        assert_eq!(due.len(), 1);
        let delivery = &due[0];
        assert_eq!(
            (
                delivery.url.as_str(),
                delivery.source.as_str(),
                delivery.click_id.as_str(),
                delivery.event.as_str(),
                delivery.status.as_str(),
            ),
            (
                "https://source.example/pb?status=pending",
                "adsterra",
                click.id.as_str(),
                "conversion",
                "pending"
            )
        );
        assert_eq!(
            (delivery.attempts, delivery.state, delivery.next_at_ms),
            (0, DeliveryState::Pending, delivery.created_ms)
        );
        assert_eq!((&delivery.last_error, delivery.delivered_ms), (&None, None));
    }

    #[tokio::test]
    async fn a_duplicate_queues_nothing_when_its_plan_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let click = stored_click(&store).await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..3 {
            let seen = Arc::clone(&seen);
            let plan = deliver_changes();
            let watching: DeliveryPlan = Box::new(move |change: &Change| {
                lock(&seen).push(*change);
                plan(change)
            });
            store
                .record_conversion(report(&click, Approved, "2"), watching)
                .await
                .unwrap();
        }
        let seen = lock(&seen).clone();
        assert!(matches!(
            seen[..],
            [Change::Recorded(_), Change::Duplicate, Change::Duplicate]
        ));
        assert_eq!(store.due_deliveries(now_ms(), 10).await.unwrap().len(), 1);
        // A status change is news to the source again.
        store
            .record_conversion(report(&click, Rejected, "0"), deliver_changes())
            .await
            .unwrap();
        let due = store.due_deliveries(now_ms(), 10).await.unwrap();
        let statuses: Vec<&str> = due.iter().map(|d| d.status.as_str()).collect();
        assert_eq!(statuses, ["approved", "rejected"]);
    }

    #[tokio::test]
    async fn a_panicking_plan_still_records_the_conversion_and_keeps_the_writer_alive() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let click = stored_click(&store).await;
        let plan: DeliveryPlan = Box::new(|_: &Change| panic!("template exploded"));
        let change = store
            .record_conversion(report(&click, Approved, "2"), plan)
            .await
            .unwrap();
        assert!(matches!(change, Change::Recorded(_)));
        assert!(store.due_deliveries(now_ms(), 10).await.unwrap().is_empty());
        store.ping().await.unwrap();
        store.record_click(fresh_click()).await.unwrap();
        store.flush().await.unwrap();
    }

    async fn queue_deliveries(store: &SqliteStore, created: &[i64]) -> Vec<i64> {
        for &ts_ms in created {
            let click = stored_click(store).await;
            store
                .record_conversion(
                    report_at(&click, "tx", Approved, "1", ts_ms),
                    deliver_changes(),
                )
                .await
                .unwrap();
        }
        let mut ids: Vec<i64> = store
            .deliveries(DeliveryState::Pending, 100)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    #[tokio::test]
    async fn deliveries_move_from_due_to_retried_delivered_or_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let now = now_ms();
        let ids = queue_deliveries(&store, &[now - 3000, now - 2000, now - 1000]).await;
        let [first, second, third] = ids[..] else {
            panic!("{ids:?}")
        };
        let due: Vec<i64> = store
            .due_deliveries(now, 10)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(due, [first, second, third], "the longest-waiting first");
        assert_eq!(store.due_deliveries(now, 2).await.unwrap().len(), 2);
        assert!(store
            .due_deliveries(now - 5000, 10)
            .await
            .unwrap()
            .is_empty());

        let retry = DeliveryAttempt::Retry {
            next_at_ms: now + 60_000,
            error: "HTTP 503".into(),
        };
        store.record_delivery_attempt(first, retry).await.unwrap();
        let due = store.due_deliveries(now, 10).await.unwrap();
        assert_eq!(
            due.iter().map(|d| d.id).collect::<Vec<_>>(),
            [second, third]
        );
        let later = store.due_deliveries(now + 60_000, 10).await.unwrap();
        let retried = later.iter().find(|d| d.id == first).unwrap();
        assert_eq!(
            (retried.attempts, retried.last_error.as_deref()),
            (1, Some("HTTP 503"))
        );

        store
            .record_delivery_attempt(second, DeliveryAttempt::Delivered { at_ms: now + 5 })
            .await
            .unwrap();
        store
            .record_delivery_attempt(
                third,
                DeliveryAttempt::GaveUp {
                    error: "connection refused".into(),
                },
            )
            .await
            .unwrap();
        let delivered = store
            .deliveries(DeliveryState::Delivered, 10)
            .await
            .unwrap();
        assert_eq!(delivered.len(), 1);
        assert_eq!(
            (
                delivered[0].id,
                delivered[0].delivered_ms,
                delivered[0].attempts
            ),
            (second, Some(now + 5), 1)
        );
        let failed = store.deliveries(DeliveryState::Failed, 10).await.unwrap();
        assert_eq!(
            (failed[0].id, failed[0].last_error.as_deref()),
            (third, Some("connection refused"))
        );
        let pending = store.deliveries(DeliveryState::Pending, 10).await.unwrap();
        assert_eq!(pending.iter().map(|d| d.id).collect::<Vec<_>>(), [first]);
        assert!(store
            .due_deliveries(now + 86_400_000, 10)
            .await
            .unwrap()
            .iter()
            .all(|d| d.id == first));

        // A late answer for a finished delivery does not reopen it; an unknown id is an error.
        store
            .record_delivery_attempt(
                second,
                DeliveryAttempt::Retry {
                    next_at_ms: now,
                    error: "late".into(),
                },
            )
            .await
            .unwrap();
        let delivered = store
            .deliveries(DeliveryState::Delivered, 10)
            .await
            .unwrap();
        assert_eq!(delivered[0].last_error, None);
        assert!(store
            .record_delivery_attempt(9_999, DeliveryAttempt::Delivered { at_ms: now })
            .await
            .is_err());
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn deliveries_are_listed_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let now = now_ms();
        let ids = queue_deliveries(&store, &[now - 3000, now - 2000, now - 1000]).await;
        let listed: Vec<i64> = store
            .deliveries(DeliveryState::Pending, 2)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(listed, [ids[2], ids[1]]);
        let json =
            serde_json::to_value(&store.deliveries(DeliveryState::Pending, 1).await.unwrap()[0])
                .unwrap();
        assert_eq!(json["state"], "pending");
        assert_eq!(json["status"], "approved");
    }

    #[tokio::test]
    async fn pending_deliveries_are_still_due_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let ids = {
            let store = open(&dir, Durability::Batched);
            let ids = queue_deliveries(&store, &[now - 2000, now - 1000]).await;
            store
                .record_delivery_attempt(
                    ids[1],
                    DeliveryAttempt::Retry {
                        next_at_ms: now + 1000,
                        error: "timeout".into(),
                    },
                )
                .await
                .unwrap();
            ids
        };
        let store = open(&dir, Durability::Batched);
        let due = store.due_deliveries(now + 1000, 10).await.unwrap();
        assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), ids);
        assert_eq!(due[1].attempts, 1);
    }

    #[tokio::test]
    async fn approved_since_lists_current_approvals_with_their_offer() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let since = now_ms() - 3_600_000;
        let mut offers = Vec::new();
        for offer in ["a", "b", "c", "d", "e", "f"] {
            let mut click = fresh_click();
            click.offer = Some(offer.into());
            store.record_click(click.clone()).await.unwrap();
            offers.push(click);
        }
        let record = |click: &ClickRecord, status, ts_ms| {
            store.record_conversion(report_at(click, "tx", status, "1", ts_ms), no_delivery())
        };
        record(&offers[0], Approved, since).await.unwrap();
        record(&offers[1], Approved, since - 1).await.unwrap();
        record(&offers[2], Pending, since + 10).await.unwrap();
        record(&offers[2], Approved, since + 20).await.unwrap();
        record(&offers[3], Approved, since + 30).await.unwrap();
        record(&offers[3], Chargeback, since + 40).await.unwrap();
        record(&offers[4], Pending, since + 50).await.unwrap();
        let mut backlink = fresh_click();
        backlink.offer = None;
        store.record_click(backlink.clone()).await.unwrap();
        record(&backlink, Approved, since + 60).await.unwrap();
        assert_eq!(
            store.approved_since(since).await.unwrap(),
            vec![("a".to_string(), since), ("c".to_string(), since + 20)]
        );
    }

    /// Every page of `evidence_page` with `limit`, checking that each page's approvals fall in
    /// its span of time.
    async fn evidence_pages(
        store: &SqliteStore,
        since: i64,
        until: i64,
        limit: usize,
    ) -> (Vec<EvidenceClick>, Vec<EvidenceConversion>, usize) {
        let (mut clicks, mut conversions, mut pages) = (Vec::new(), Vec::new(), 0);
        let mut after: Option<EvidenceCursor> = None;
        loop {
            let page = store
                .evidence_page(since, until, after.clone(), limit)
                .await
                .unwrap();
            pages += 1;
            assert!(page.clicks.len() <= limit);
            let from = after.as_ref().map_or(i64::MIN, |c| c.ts_ms);
            let to = page.next.as_ref().map_or(until - 1, |c| c.ts_ms);
            for conversion in &page.conversions {
                assert!(
                    conversion.approved_ms > from && conversion.approved_ms <= to,
                    "{conversion:?} outside ({from}, {to}]"
                );
            }
            clicks.extend(page.clicks);
            conversions.extend(page.conversions);
            match page.next {
                Some(next) => after = Some(next),
                None => return (clicks, conversions, pages),
            }
        }
    }

    #[tokio::test]
    async fn evidence_pages_hold_each_residual_click_and_current_approval_once_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let base = now_ms() - 3_600_000;
        let (since, until) = (base, base + 1_000);
        // Pairs of clicks share a millisecond, so pages also end between two clicks of one time.
        let mut residual = Vec::new();
        for i in 0..25 {
            let mut click = click_at(base + (i / 2) * 10);
            click.offer = Some(if i % 2 == 0 { "a" } else { "b" }.into());
            click.visitor.carrier = (i % 3 == 0).then(|| "Verizon".to_string());
            store.record_click(click.clone()).await.unwrap();
            residual.push(click);
        }
        let mut others = Vec::new();
        for (route, offer, ts) in [
            (Route::Primary, Some("a"), base + 5),
            (Route::Backlink, None, base + 6),
            (Route::Bot, None, base + 7),
            (Route::Fallback, Some("a"), base - 1),
            (Route::Fallback, Some("a"), until),
        ] {
            let mut click = click_at(ts);
            click.route = route;
            click.offer = offer.map(str::to_string);
            store.record_click(click.clone()).await.unwrap();
            others.push(click);
        }
        let record = |click: &ClickRecord, txid: &str, status, payout: &str, ts_ms| {
            store.record_conversion(report_at(click, txid, status, payout, ts_ms), no_delivery())
        };
        record(&residual[3], "tx", Approved, "2", base + 35)
            .await
            .unwrap();
        record(&residual[3], "tx2", Pending, "2", base + 36)
            .await
            .unwrap();
        record(&residual[10], "tx", Approved, "1", base + 105)
            .await
            .unwrap();
        record(&residual[10], "tx", Chargeback, "0", base + 200)
            .await
            .unwrap();
        record(&residual[20], "tx", Pending, "3", base + 150)
            .await
            .unwrap();
        record(&residual[20], "tx", Approved, "3", base + 205)
            .await
            .unwrap();
        record(&residual[20], "tx", Approved, "-0.5", base + 300)
            .await
            .unwrap();
        record(&residual[24], "tx", Approved, "1", until)
            .await
            .unwrap();
        record(&others[0], "tx", Approved, "1", base + 50)
            .await
            .unwrap();
        record(&others[3], "tx", Approved, "1", base + 50)
            .await
            .unwrap();

        for limit in [3, 4, 25, 1000] {
            let (clicks, conversions, pages) = evidence_pages(&store, since, until, limit).await;
            assert_eq!(pages, 25 / limit + 1, "limit {limit}");
            let expected: Vec<EvidenceClick> = residual
                .iter()
                .map(|c| EvidenceClick {
                    campaign: c.campaign.clone(),
                    offer: c.offer.clone().unwrap(),
                    segment: Segment::of(&c.visitor),
                    ts_ms: c.ts_ms,
                })
                .collect();
            let mut sorted = clicks.clone();
            sorted.sort_by_key(|c| c.ts_ms);
            assert_eq!(clicks, sorted, "time order, limit {limit}");
            let mut got = clicks.clone();
            let key = |c: &EvidenceClick| (c.ts_ms, c.offer.clone());
            got.sort_by_key(key);
            let mut want = expected.clone();
            want.sort_by_key(key);
            assert_eq!(got, want, "limit {limit}");
            let approvals: Vec<(i64, &str, i64, Money)> = conversions
                .iter()
                .map(|c| {
                    (
                        c.click.ts_ms,
                        c.click.offer.as_str(),
                        c.approved_ms,
                        c.payout,
                    )
                })
                .collect();
            assert_eq!(
                approvals,
                vec![
                    (residual[3].ts_ms, "b", base + 35, money("2")),
                    (residual[20].ts_ms, "a", base + 205, money("2.5")),
                ],
                "limit {limit}"
            );
        }
    }

    /// Report groups sorted by span and values, for comparing.
    async fn groups(
        store: &SqliteStore,
        spans: &[(i64, i64)],
        campaign: Option<&str>,
        dimensions: &[Dimension],
    ) -> Vec<ReportGroup> {
        let query = ReportQuery {
            spans: spans
                .iter()
                .map(|&(start_ms, end_ms)| super::super::TimeSpan { start_ms, end_ms })
                .collect(),
            campaign: campaign.map(str::to_owned),
            dimensions: dimensions.to_vec(),
        };
        let mut groups = store.report(&query).await.unwrap();
        groups.sort_by(|a, b| (a.span, &a.values).cmp(&(b.span, &b.values)));
        groups
    }

    fn counters(
        clicks: i64,
        cost: i64,
        conversions: i64,
        revenue: &str,
        pending: &str,
    ) -> ReportCounters {
        ReportCounters {
            clicks,
            cost: Money::from_micros(cost),
            conversions,
            revenue: money(revenue),
            pending_revenue: money(pending),
        }
    }

    fn group(span: usize, values: &[Option<&str>], counters: ReportCounters) -> ReportGroup {
        ReportGroup {
            span,
            values: values.iter().map(|v| v.map(str::to_owned)).collect(),
            counters,
        }
    }

    #[tokio::test]
    async fn report_rollups_give_exact_numbers_for_a_known_set_of_clicks_and_conversions() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        // A quarter-hour-aligned period of half a day, a day ago.
        let from = (now_ms() - DAY_MS).div_euclid(900_000) * 900_000;
        let to = from + DAY_MS / 2;
        let cpm = money("3.6").div_round(1000);
        let click = |offset: i64, offer: Option<&str>, campaign: &str| {
            let mut click = click_at(from + offset);
            click.offer = offer.map(str::to_owned);
            click.campaign = campaign.into();
            click.cost = Some(cpm);
            click
        };
        // In range: 4 clicks to `alpha`, 2 to `beta`, 1 to no offer; out of range: 2.
        let alpha: Vec<ClickRecord> = (0..4)
            .map(|i| click(i * 1000, Some("alpha"), "main"))
            .collect();
        let mut beta: Vec<ClickRecord> = (0..2)
            .map(|i| click(i * 1000 + 1, Some("beta"), "other"))
            .collect();
        beta[1].visitor.country = Some("DE".into());
        let mut uncosted = click(5000, None, "main");
        uncosted.cost = None;
        uncosted.route = Route::Backlink;
        let before = click(-1, Some("alpha"), "main");
        let after = click(to - from, Some("alpha"), "main");
        for click in alpha
            .iter()
            .chain(&beta)
            .chain([&uncosted, &before, &after])
        {
            store.record_click(click.clone()).await.unwrap();
        }
        let now = now_ms();
        let record = |click: &ClickRecord, txid: &str, status, payout: &str| {
            store.record_conversion(report_at(click, txid, status, payout, now), no_delivery())
        };
        record(&alpha[0], "t1", Approved, "2.5").await.unwrap();
        record(&alpha[0], "t2", Approved, "1.25").await.unwrap();
        record(&alpha[1], "t1", Pending, "4").await.unwrap();
        record(&alpha[2], "t1", Rejected, "9").await.unwrap();
        record(&alpha[3], "t1", Approved, "7").await.unwrap();
        record(&alpha[3], "t1", Chargeback, "0").await.unwrap();
        record(&beta[0], "t1", Pending, "1").await.unwrap();
        record(&beta[0], "t1", Approved, "1.1").await.unwrap();
        record(&beta[0], "t1", Approved, "1.1").await.unwrap();
        record(&beta[1], "t1", Approved, "3").await.unwrap();
        record(&beta[1], "t1", Approved, "-0.75").await.unwrap();
        record(&uncosted, "t1", Approved, "0.5").await.unwrap();
        // Conversions of clicks outside the range count in their clicks' periods.
        record(&before, "t1", Approved, "100").await.unwrap();
        record(&after, "t1", Approved, "100").await.unwrap();

        let by_offer = groups(&store, &[(from, to)], None, &[Dimension::Offer]).await;
        let alpha_totals = counters(4, 14_400, 2, "3.75", "4");
        let beta_totals = counters(2, 7_200, 2, "3.35", "0");
        let none_totals = counters(1, 0, 1, "0.5", "0");
        assert_eq!(
            by_offer,
            vec![
                group(0, &[None], none_totals),
                group(0, &[Some("alpha")], alpha_totals),
                group(0, &[Some("beta")], beta_totals),
            ]
        );
        let main = groups(&store, &[(from, to)], Some("main"), &[Dimension::Offer]).await;
        assert_eq!(
            main,
            vec![
                group(0, &[None], none_totals),
                group(0, &[Some("alpha")], alpha_totals)
            ]
        );
        assert!(groups(
            &store,
            &[(from, to)],
            Some("never-seen"),
            &[Dimension::Offer]
        )
        .await
        .is_empty());
        let wider = groups(
            &store,
            &[(from - 900_000, to + 900_000)],
            None,
            &[Dimension::Offer],
        )
        .await;
        assert_eq!(
            (
                wider[1].values[0].as_deref(),
                wider[1].counters.clicks,
                wider[1].counters.revenue
            ),
            (Some("alpha"), 6, money("203.75"))
        );
        // Every dimension: the clicks under no event, each event's conversions under its name.
        let by_country_event = groups(
            &store,
            &[(from, to)],
            Some("other"),
            &[Dimension::Country, Dimension::Event, Dimension::Route],
        )
        .await;
        assert_eq!(
            by_country_event,
            vec![
                group(
                    0,
                    &[Some("DE"), None, Some("fallback")],
                    counters(1, 3_600, 0, "0", "0")
                ),
                group(
                    0,
                    &[Some("DE"), Some("conversion"), Some("fallback")],
                    counters(0, 0, 1, "2.25", "0")
                ),
                group(
                    0,
                    &[Some("US"), None, Some("fallback")],
                    counters(1, 3_600, 0, "0", "0")
                ),
                group(
                    0,
                    &[Some("US"), Some("conversion"), Some("fallback")],
                    counters(0, 0, 1, "1.1", "0")
                ),
            ]
        );
        // Two spans: the period's first quarter hour, which holds every click, and the rest.
        let split = groups(
            &store,
            &[(from, from + 900_000), (from + 900_000, to)],
            Some("main"),
            &[Dimension::Campaign],
        )
        .await;
        assert_eq!(
            split,
            vec![group(
                0,
                &[Some("main")],
                counters(5, 14_400, 3, "4.25", "4")
            )]
        );
    }

    /// Every click and conversion identity summed from the raw tables, as `report` should
    /// answer for a period with every dimension and one span.
    fn raw_totals(conn: &Connection, from: i64, to: i64) -> ReportCounters {
        let mut totals = ReportCounters::default();
        let (clicks, cost): (i64, i64) = conn
            .query_row(
                "SELECT count(*), coalesce(sum(cost), 0) FROM clicks WHERE ts >= ?1 AND ts < ?2",
                [from, to],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        totals.clicks = clicks;
        totals.cost = Money::from_micros(cost);
        let mut query = conn
            .prepare(
                "SELECT v.status, v.payout FROM conversions v JOIN clicks c ON c.id = v.click_id
                 WHERE c.ts >= ?1 AND c.ts < ?2",
            )
            .unwrap();
        let rows = query
            .query_map([from, to], |row| Ok((row.get::<_, i64>(0)?, row.get(1)?)))
            .unwrap();
        for row in rows {
            let (code, payout) = row.unwrap();
            let (count, revenue, pending) = conversion::counts(ConversionState {
                status: codec::conversion_status_from_code(code).unwrap(),
                payout: Money::from_micros(payout),
            });
            totals.conversions += count;
            totals.revenue = totals.revenue + revenue;
            totals.pending_revenue = totals.pending_revenue + pending;
        }
        totals
    }

    #[tokio::test]
    async fn rollups_match_the_raw_clicks_and_conversions_after_every_kind_of_report() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let clicks = realistic_clicks(3_000);
        for click in &clicks {
            store.record_click(click.clone()).await.unwrap();
        }
        let statuses = [Approved, Pending, Rejected, Chargeback];
        for (i, click) in clicks.iter().enumerate().step_by(7) {
            let first = statuses[i % 4];
            let at = now_ms();
            store
                .record_conversion(report_at(click, "a", first, "1.5", at), no_delivery())
                .await
                .unwrap();
            let then = statuses[(i / 7) % 4];
            store
                .record_conversion(report_at(click, "a", then, "2.25", at), no_delivery())
                .await
                .unwrap();
            if i % 3 == 0 {
                store
                    .record_conversion(report_at(click, "a", Approved, "-0.5", at), no_delivery())
                    .await
                    .unwrap();
            }
        }
        let conn = independent(&store);
        let start = clicks[0].ts_ms.div_euclid(900_000) * 900_000;
        let end = start + 2 * DAY_MS;
        let expected = raw_totals(&conn, start, end);
        assert!(expected.conversions > 0 && expected.pending_revenue > Money::ZERO);
        for dimensions in [
            vec![],
            vec![Dimension::Offer],
            vec![Dimension::Campaign],
            Dimension::ALL.to_vec(),
        ] {
            let mut sum = ReportCounters::default();
            for group in groups(&store, &[(start, end)], None, &dimensions).await {
                sum.add(&group.counters);
            }
            assert_eq!(sum, expected, "{dimensions:?}");
        }
    }

    #[tokio::test]
    async fn a_report_counts_clicks_whose_rollups_were_still_deferred() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Durability::Batched);
        let now = now_ms();
        for click in realistic_clicks(300) {
            store.record_click(click).await.unwrap();
        }
        let all = groups(&store, &[(now - 2 * DAY_MS, now + DAY_MS)], None, &[]).await;
        let raw = raw_totals(&independent(&store), now - 2 * DAY_MS, now + DAY_MS);
        assert_eq!(all[0].counters, raw);
        assert_eq!(raw.clicks, 300);
    }

    #[tokio::test]
    async fn clicks_committed_after_the_last_rollup_reach_the_rollups_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smartlink.db");
        let now = now_ms();
        let (from, to) = (now - 2 * DAY_MS, now + DAY_MS);
        {
            let store = SqliteStore::open(&path, Durability::Batched, TEN_YEARS).unwrap();
            for click in realistic_clicks(400) {
                store.record_click(click).await.unwrap();
            }
            store.flush().await.unwrap();
        }
        // What a crash leaves behind when the facts of every click after the 100th were still
        // deferred (here the rollups are emptied, so only the caught-up clicks show).
        let (late_clicks, late_cost) = {
            let conn = Connection::open(&path).unwrap();
            let last_rolled: i64 = conn
                .query_row(
                    "SELECT seq FROM clicks ORDER BY seq LIMIT 1 OFFSET 99",
                    [],
                    |row| row.get(0),
                )
                .unwrap();
            let (count, cost, late_from): (i64, i64, i64) = conn
                .query_row(
                    "SELECT count(*), coalesce(sum(cost), 0), min(ts) FROM clicks WHERE seq > ?1",
                    [last_rolled],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .unwrap();
            conn.execute_batch(&format!(
                "DELETE FROM report_rollup;
                 UPDATE meta SET value = {last_rolled} WHERE key = 'rollup_seq';
                 INSERT INTO meta (key, value) VALUES ('rollup_unrolled_from_ms', {late_from});"
            ))
            .unwrap();
            (count, cost)
        };
        assert_eq!(late_clicks, 300);
        let store = SqliteStore::open(&path, Durability::Batched, TEN_YEARS).unwrap();
        let all = groups(&store, &[(from, to)], None, &[]).await;
        assert_eq!(all[0].counters.clicks, late_clicks);
        assert_eq!(all[0].counters.cost, Money::from_micros(late_cost));
        // Caught up once: a second open adds nothing.
        drop(store);
        let store = SqliteStore::open(&path, Durability::Batched, TEN_YEARS).unwrap();
        let again = groups(&store, &[(from, to)], None, &[]).await;
        assert_eq!(again, all);
    }

    /// Inserts a click into a file of a version before clicks had a sequence number.
    fn insert_old_click(conn: &Connection, names: &mut Names, click: &ClickRecord) {
        conn.execute_batch("ALTER TABLE clicks ADD COLUMN seq INTEGER")
            .unwrap();
        insert_click(conn, names, click, 0).unwrap();
        conn.execute_batch("ALTER TABLE clicks DROP COLUMN seq")
            .unwrap();
    }

    #[tokio::test]
    async fn a_version_2_file_gets_report_rollups_built_from_its_clicks_and_conversions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let clicks = realistic_clicks(500);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            let mut names = Names::default();
            for click in &clicks {
                insert_old_click(&conn, &mut names, click);
            }
            for (i, click) in clicks.iter().enumerate().step_by(5) {
                conn.execute(
                    "INSERT INTO conversions (click_id, event, txid, click_ts, status, payout,
                         sent_currency, created_ms, updated_ms)
                     VALUES (?1, ?2, '', ?3, ?4, ?5, 'USD', 0, 0)",
                    params![
                        click.id,
                        if i % 2 == 0 { "lead" } else { "sale" },
                        click.ts_ms,
                        codec::conversion_status_code([Approved, Pending, Rejected][i % 3]),
                        1_250_000 + i as i64
                    ],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path, Durability::Batched, TEN_YEARS).unwrap();
        let conn = independent(&store);
        let start = clicks[0].ts_ms.div_euclid(900_000) * 900_000;
        let end = start + 2 * DAY_MS;
        let expected = raw_totals(&conn, start, end);
        assert_eq!(expected.clicks, 500);
        let mut sum = ReportCounters::default();
        for group in groups(&store, &[(start, end)], None, &[Dimension::Event]).await {
            sum.add(&group.counters);
        }
        assert_eq!(sum, expected);
        // New writes add to the built rollups.
        let mut next = clicks[0].clone();
        next.id = crate::click_id::generate(next.ts_ms, &mut rand::rng());
        store.record_click(next).await.unwrap();
        store.flush().await.unwrap();
        let offers = groups(&store, &[(start, end)], None, &[]).await;
        assert_eq!(offers[0].counters.clicks, 501);
    }

    #[tokio::test]
    async fn retention_deletes_report_buckets_that_ended_before_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smartlink.db");
        let store = SqliteStore::open(&path, Durability::Batched, Duration::from_secs(30 * 86_400))
            .unwrap();
        store.prune_expired().await.unwrap();
        let now = now_ms();
        for age in [40 * DAY_MS, DAY_MS] {
            store.record_click(click_at(now - age)).await.unwrap();
        }
        store.flush().await.unwrap();
        store.prune_expired().await.unwrap();
        let conn = independent(&store);
        let cutoff = now - 30 * DAY_MS;
        for (level, size) in rollup::LEVELS.iter().enumerate() {
            let first_kept = cutoff.div_euclid(rollup::QUARTER_MS).div_euclid(*size);
            let expired = count(
                &conn,
                &format!(
                    "SELECT count(*) FROM report_rollup WHERE level = {level} AND bucket < {first_kept}"
                ),
            );
            assert_eq!(expired, 0, "level {level}");
        }
        let all = groups(&store, &[(now - 2 * DAY_MS, now)], None, &[]).await;
        assert_eq!(all[0].counters.clicks, 1);
    }

    #[tokio::test]
    async fn a_version_1_file_is_migrated_and_keeps_its_clicks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let click = fresh_click();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            insert_old_click(&conn, &mut Names::default(), &click);
        }
        let store = SqliteStore::open(&path, Durability::Batched, TEN_YEARS).unwrap();
        assert_eq!(store.click(&click.id).await.unwrap(), Some(click.clone()));
        let version: i64 = independent(&store)
            .pragma_query_one(None, "user_version")
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        store
            .record_conversion(report(&click, Approved, "2"), deliver_changes())
            .await
            .unwrap();
        assert_eq!(store.approved_since(0).await.unwrap().len(), 1);
        assert_eq!(store.due_deliveries(now_ms(), 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn retention_deletes_conversions_with_their_clicks_and_old_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smartlink.db");
        let store = SqliteStore::open(&path, Durability::Batched, Duration::from_secs(30 * 86_400))
            .unwrap();
        // Let the retention run that starts with the store finish first: it would otherwise
        // delete the deliberately expired click before its conversions are written.
        store.prune_expired().await.unwrap();
        let now = now_ms();
        let old = click_at(now - 31 * DAY_MS);
        let young = click_at(now - DAY_MS);
        for click in [&old, &young] {
            store.record_click(click.clone()).await.unwrap();
            store
                .record_conversion(report(click, Pending, "1"), deliver_changes())
                .await
                .unwrap();
            store
                .record_conversion(report(click, Approved, "1"), deliver_changes())
                .await
                .unwrap();
        }
        // Four deliveries: delivered 8 days ago and 6 days ago; failed 31 and 29 days ago.
        let ids = queue_deliveries(&store, &[now, now, now, now]).await;
        let mut outcomes = vec![
            DeliveryAttempt::Delivered {
                at_ms: now - 8 * DAY_MS,
            },
            DeliveryAttempt::Delivered {
                at_ms: now - 6 * DAY_MS,
            },
        ];
        for (id, age) in [(ids[2], 31), (ids[3], 29)] {
            store
                .record_delivery_attempt(
                    id,
                    DeliveryAttempt::Retry {
                        next_at_ms: now - age * DAY_MS,
                        error: "HTTP 500".into(),
                    },
                )
                .await
                .unwrap();
            outcomes.push(DeliveryAttempt::GaveUp {
                error: "HTTP 500".into(),
            });
        }
        for (id, outcome) in ids.iter().zip(outcomes) {
            store.record_delivery_attempt(*id, outcome).await.unwrap();
        }
        let still_pending = store
            .deliveries(DeliveryState::Pending, 100)
            .await
            .unwrap()
            .len();

        store.prune_expired().await.unwrap();
        let other = independent(&store);
        let click_ids = |table: &str| -> Vec<String> {
            other
                .prepare(&format!("SELECT DISTINCT click_id FROM {table}"))
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert!(!click_ids("conversions").contains(&old.id));
        assert!(click_ids("conversions").contains(&young.id));
        assert!(!click_ids("conversion_reports").contains(&old.id));
        assert_eq!(
            count(
                &other,
                &format!(
                    "SELECT count(*) FROM conversion_reports WHERE click_id = '{}'",
                    young.id
                )
            ),
            2
        );
        let kept: Vec<i64> = store
            .deliveries(DeliveryState::Delivered, 10)
            .await
            .unwrap()
            .iter()
            .chain(&store.deliveries(DeliveryState::Failed, 10).await.unwrap())
            .map(|d| d.id)
            .collect();
        assert_eq!(kept, [ids[1], ids[3]]);
        assert_eq!(
            store
                .deliveries(DeliveryState::Pending, 100)
                .await
                .unwrap()
                .len(),
            still_pending,
            "pending deliveries are never deleted"
        );
    }

    /// Clicks as a busy campaign sends them: a few campaigns and offers, many cities, ISPs and
    /// browser versions, a 32-character external id repeated in the parameters.
    fn realistic_clicks(count: usize) -> Vec<ClickRecord> {
        const COUNTRIES: [&str; 12] = [
            "US", "DE", "BR", "IN", "ID", "MX", "FR", "GB", "TR", "VN", "PH", "NG",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let start = now_ms() - DAY_MS;
        (0..count)
            .map(|i| {
                let mut click = click_at(start + i as i64 * 4);
                let external: String = (0..32)
                    .map(|_| char::from(b"0123456789abcdef"[next(16) as usize]))
                    .collect();
                click.campaign = format!("campaign-{}", next(5));
                click.source = ["adsterra", "propellerads", "richads"][next(3) as usize].into();
                click.offer = Some(format!("offer-{}", next(12)));
                click.route = Route::ALL[next(4) as usize];
                click.cost = Some(Money::from_micros(1_000 + next(5_000) as i64));
                click.visitor.country = Some(COUNTRIES[next(12) as usize].into());
                click.visitor.region = Some(format!("Region {}", next(200)));
                click.visitor.city = Some(format!("City {}", next(2_000)));
                click.visitor.asn = Some(1_000 + next(60_000) as u32);
                click.visitor.isp = Some(format!("Internet Provider {} Ltd", next(300)));
                click.visitor.carrier = (next(2) == 0).then(|| format!("Carrier {}", next(50)));
                click.visitor.os_version = Some(format!("{}.{}", 10 + next(5), next(4)));
                click.visitor.browser_version = Some(format!(
                    "12{}.0.{}.{}",
                    next(7),
                    6000 + next(500),
                    next(200)
                ));
                let ip = format!(
                    "{}.{}.{}.{}",
                    1 + next(223),
                    next(256),
                    next(256),
                    next(256)
                );
                click.ip = ip.parse().unwrap();
                click.visitor.ip = click.ip;
                click.params = QueryParams(vec![
                    ("clickid".into(), external.clone()),
                    ("zone".into(), (1_000_000 + next(9_000_000)).to_string()),
                    ("cost".into(), "3.6".into()),
                ]);
                click.external_id = Some(external);
                click
            })
            .collect()
    }

    #[tokio::test]
    async fn twenty_thousand_clicks_take_at_most_300_bytes_each_and_their_rollups_150() {
        const CLICKS: usize = 20_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("size.db");
        {
            let store = SqliteStore::open(&path, Durability::Batched, TEN_YEARS).unwrap();
            for click in realistic_clicks(CLICKS) {
                store.record_click(click).await.unwrap();
            }
            store.flush().await.unwrap();
            assert_eq!(store.stats().committed, CLICKS as u64);
        }
        let conn = Connection::open(&path).unwrap();
        let file_bytes = |conn: &Connection| -> i64 {
            let pages: i64 = conn.pragma_query_one(None, "page_count").unwrap();
            let page_size: i64 = conn.pragma_query_one(None, "page_size").unwrap();
            pages * page_size
        };
        let rollup_bytes = |conn: &Connection| -> i64 {
            conn.query_row(
                "SELECT sum(pgsize) FROM dbstat WHERE name = 'report_rollup'",
                [],
                |row| row.get(0),
            )
            .unwrap()
        };
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let as_written = (file_bytes(&conn) - rollup_bytes(&conn)) / CLICKS as i64;
        conn.execute_batch("VACUUM").unwrap();
        let rollups = rollup_bytes(&conn) / CLICKS as i64;
        let vacuumed = (file_bytes(&conn) - rollup_bytes(&conn)) / CLICKS as i64;
        println!(
            "bytes per click: {as_written} as written, {vacuumed} after VACUUM, \
             {rollups} more in report rollups"
        );
        assert!(vacuumed <= 300, "{vacuumed} bytes per click");
        // Nearly every one of these clicks has a combination of dimensions of its own, so each
        // adds a row to every level: the most the rollups take. Repeated traffic shares rows.
        assert!(rollups <= 150, "{rollups} bytes per click in rollups");
    }
}
