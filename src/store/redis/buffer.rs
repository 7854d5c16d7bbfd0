//! Clicks handed over and not yet in Redis. The click path only pushes here (a lock held for a
//! few instructions); the writer task takes batches out. While Redis is unreachable the clicks
//! wait here, up to `limit`; past it the OLDEST waiting click is dropped and counted, so the
//! buffer always holds the most recent traffic, whose conversions are still to come.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{oneshot, Notify};

use crate::store::{ClickRecord, StoreError};

/// Clicks kept in memory while Redis is unreachable: some 60 MB, a minute of a very busy
/// router's traffic or hours of a quiet one.
pub const DEFAULT_LIMIT: usize = 100_000;

pub(super) type Done = oneshot::Sender<Result<(), StoreError>>;

pub(super) struct Entry {
    pub click: Arc<ClickRecord>,
    /// Present when the sender waits for the write (`strict`).
    pub done: Option<Done>,
}

#[derive(Default)]
struct Inner {
    waiting: VecDeque<Entry>,
    /// Every click not yet written, waiting or being written, by id.
    unwritten: HashMap<Box<str>, Arc<ClickRecord>>,
    in_flight: usize,
}

pub(super) struct Buffer {
    inner: Mutex<Inner>,
    limit: usize,
    pub wake: Notify,
    /// False from a failed write until the next successful one.
    pub healthy: AtomicBool,
    pub committed: AtomicU64,
    pub commits: AtomicU64,
    pub commit_micros_total: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

impl Buffer {
    pub(super) fn new(limit: usize) -> Buffer {
        Buffer {
            inner: Mutex::new(Inner::default()),
            limit: limit.max(1),
            wake: Notify::new(),
            healthy: AtomicBool::new(true),
            committed: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_micros_total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Single inserts and removes: consistent across a panic elsewhere.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a click. Only a sender that waits for the write wakes the writer: a wake-up per
    /// batched click would cost the click's core a system call; the writer looks every `super::POLL`.
    pub(super) fn push(&self, entry: Entry) {
        let waits = entry.done.is_some();
        let dropped = {
            let mut inner = self.lock();
            inner
                .unwritten
                .insert(entry.click.id.as_str().into(), entry.click.clone());
            inner.waiting.push_back(entry);
            self.enforce_limit(&mut inner)
        };
        answer_dropped(dropped);
        if waits {
            self.wake.notify_one();
        }
    }

    fn enforce_limit(&self, inner: &mut Inner) -> Vec<Entry> {
        let mut dropped = Vec::new();
        while inner.waiting.len() > self.limit {
            let Some(oldest) = inner.waiting.pop_front() else {
                break;
            };
            forget(&mut inner.unwritten, &oldest.click);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.failed.fetch_add(1, Ordering::Relaxed);
            dropped.push(oldest);
        }
        dropped
    }

    /// Up to `max` waiting clicks, oldest first, now in flight.
    pub(super) fn take(&self, max: usize) -> Vec<Entry> {
        let mut inner = self.lock();
        let count = inner.waiting.len().min(max);
        let batch: Vec<Entry> = inner.waiting.drain(..count).collect();
        inner.in_flight += batch.len();
        batch
    }

    /// The batch is in Redis.
    pub(super) fn written(&self, batch: Vec<Entry>) {
        {
            let mut inner = self.lock();
            inner.in_flight -= batch.len();
            for entry in &batch {
                forget(&mut inner.unwritten, &entry.click);
            }
        }
        // Counters move before any sender hears back, so a waiter reading stats sees its write.
        self.committed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for entry in batch {
            if let Some(done) = entry.done {
                let _ = done.send(Ok(()));
            }
        }
    }

    /// The batch could not be written: back to the front, in order, for the next try. Waiting
    /// senders hear of the failure now; their clicks are still written later.
    pub(super) fn retry(&self, batch: Vec<Entry>, error: &str) {
        let mut answers = Vec::new();
        let dropped = {
            let mut inner = self.lock();
            inner.in_flight -= batch.len();
            for mut entry in batch.into_iter().rev() {
                answers.extend(entry.done.take());
                inner.waiting.push_front(entry);
            }
            self.enforce_limit(&mut inner)
        };
        for done in answers {
            let _ = done.send(Err(StoreError::Unavailable(format!(
                "{error}; the click is kept in memory and written when Redis is back"
            ))));
        }
        answer_dropped(dropped);
    }

    pub(super) fn get(&self, id: &str) -> Option<Arc<ClickRecord>> {
        self.lock().unwritten.get(id).cloned()
    }

    /// Clicks waiting or being written.
    pub(super) fn queued(&self) -> usize {
        let inner = self.lock();
        inner.waiting.len() + inner.in_flight
    }

    pub(super) fn is_waiting(&self) -> bool {
        !self.lock().waiting.is_empty()
    }
}

fn forget(unwritten: &mut HashMap<Box<str>, Arc<ClickRecord>>, click: &Arc<ClickRecord>) {
    // Only this very record: a later one with the same id stays findable.
    if unwritten
        .get(click.id.as_str())
        .is_some_and(|held| Arc::ptr_eq(held, click))
    {
        unwritten.remove(click.id.as_str());
    }
}

fn answer_dropped(dropped: Vec<Entry>) {
    for entry in dropped {
        if let Some(done) = entry.done {
            let _ = done.send(Err(StoreError::Unavailable(
                "Redis is unreachable and the click buffer is full; click dropped".into(),
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        let mut click = crate::store::sqlite::tests::click_at(1_795_435_200_000);
        click.id = id.into();
        Entry {
            click: Arc::new(click),
            done: None,
        }
    }

    #[test]
    fn past_its_limit_the_buffer_drops_the_oldest_click_and_counts_it() {
        let buffer = Buffer::new(2);
        for id in ["a", "b", "c"] {
            buffer.push(entry(id));
        }
        assert_eq!(buffer.dropped.load(Ordering::Relaxed), 1);
        assert!(buffer.get("a").is_none());
        assert!(buffer.get("b").is_some() && buffer.get("c").is_some());
        assert_eq!(buffer.queued(), 2);
    }

    #[test]
    fn a_failed_batch_goes_back_in_front_in_order_and_stays_findable() {
        let buffer = Buffer::new(10);
        for id in ["a", "b", "c"] {
            buffer.push(entry(id));
        }
        let batch = buffer.take(2);
        assert_eq!(buffer.queued(), 3);
        buffer.retry(batch, "down");
        let ids: Vec<String> = buffer.take(3).iter().map(|e| e.click.id.clone()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(buffer.get("a").is_some());
    }

    #[test]
    fn a_written_click_leaves_the_buffer() {
        let buffer = Buffer::new(10);
        buffer.push(entry("a"));
        let batch = buffer.take(10);
        buffer.written(batch);
        assert!(buffer.get("a").is_none());
        assert_eq!(buffer.queued(), 0);
        assert_eq!(buffer.committed.load(Ordering::Relaxed), 1);
    }
}
