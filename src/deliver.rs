//! Outbound postbacks to traffic sources (SPEC §10): a worker that drains a durable queue with
//! at-least-once delivery and exponential back-off.
//!
//! The queue lives in the store (it must survive restarts), so this module only defines the
//! small [`DeliveryQueue`] trait the store implements and the [`Deliverer`] that sends. A
//! restart resumes pending deliveries because the worker's first step is to ask the queue what
//! is due; an attempt that was in flight when the process died was never recorded, so it is
//! simply sent again (at least once, never "at most once").
//!
//! Decisions:
//! - Requests are plain `GET`s, as networks' postback URLs are. A 2xx answer is success;
//!   any other status, a timeout or a connection error is retried.
//! - Up to 3 redirects are followed: sources move their endpoints (http → https, new host) and
//!   a redirect is not an answer about the conversion. The final answer must be 2xx.
//! - A URL that cannot be parsed, or is not http(s), can never succeed, so it fails at once
//!   instead of being retried for two days.
//! - Logs carry the delivery id, source, click id, event, status and the target host, never
//!   the URL's path or query: some sources put their own account tokens there. The full URL
//!   stays in the queue, where the admin API shows it.
//! - Errors stored in `last_error` are built from the error's causes, without the URL, for the
//!   same reason.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::DeliveryConfig;
use crate::store::StoreError;

/// Per-attempt limit on the whole exchange (connect, answer, body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts in flight at once; a large backlog after an outage must not open thousands of
/// sockets against one source.
pub const MAX_IN_FLIGHT: usize = 16;
/// No single wait between attempts is longer than this.
pub const MAX_BACKOFF_MS: u64 = 60 * 60 * 1000;

/// Deliveries taken from the queue per round; a full round is followed by another at once.
const BATCH: usize = 256;
/// The longest the worker sleeps without looking at the queue, so deliveries enqueued by
/// another instance (Redis) or whose `wake` was missed are picked up within this.
const POLL: Duration = Duration::from_secs(1);
const MAX_REDIRECTS: usize = 3;
/// Bodies are read only so the connection can be reused; nobody needs more than this.
const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_ERROR_CHARS: usize = 500;
const USER_AGENT: &str = concat!("smartlink/", env!("CARGO_PKG_VERSION"));

// The queue's rows and outcomes are the store's own types, so there is one definition of each.
pub use crate::store::{Delivery, DeliveryAttempt as Attempt, DeliveryState};

/// The durable queue, implemented by the store.
#[async_trait::async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Pending deliveries whose next_at_ms <= now_ms, earliest due first, at most `limit`.
    async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Delivery>, StoreError>;

    /// Records the outcome of one attempt (attempts += 1).
    async fn record_attempt(&self, id: i64, attempt: Attempt) -> Result<(), StoreError>;
}

/// The store's outbound queue as the worker sees it.
pub struct StoreQueue(pub Arc<dyn crate::store::Store>);

#[async_trait::async_trait]
impl DeliveryQueue for StoreQueue {
    async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        self.0.due_deliveries(now_ms, limit).await
    }

    async fn record_attempt(&self, id: i64, attempt: Attempt) -> Result<(), StoreError> {
        self.0.record_delivery_attempt(id, attempt).await
    }
}

/// The retry schedule (SPEC §4 `[delivery]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failed attempt; doubled after each further one.
    pub initial_ms: u64,
    /// Measured from the delivery's creation, not from its first attempt, so a backlog after an
    /// outage does not extend a delivery's life.
    pub give_up_after_ms: u64,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::from(&DeliveryConfig::default())
    }
}

impl From<&DeliveryConfig> for Backoff {
    fn from(config: &DeliveryConfig) -> Backoff {
        Backoff {
            initial_ms: config.initial_backoff_ms,
            give_up_after_ms: config.give_up_after_hours.saturating_mul(60 * 60 * 1000),
        }
    }
}

impl Backoff {
    /// When to try again after a failed attempt made at `now_ms`, `attempts_so_far` counting
    /// that attempt; `None` means give up. The last retry is pulled in to the give-up time so
    /// a delivery is tried right up to it rather than abandoned up to an hour early.
    pub fn next(&self, created_ms: i64, attempts_so_far: u32, now_ms: i64) -> Option<i64> {
        let deadline = self.deadline_ms(created_ms);
        if now_ms >= deadline {
            return None;
        }
        let wait = 1u64
            .checked_shl(attempts_so_far.saturating_sub(1))
            .and_then(|factor| self.initial_ms.max(1).checked_mul(factor))
            .unwrap_or(u64::MAX)
            .min(MAX_BACKOFF_MS);
        Some(now_ms.saturating_add(wait as i64).min(deadline))
    }

    /// The moment after which a failed attempt is not retried.
    pub fn deadline_ms(&self, created_ms: i64) -> i64 {
        created_ms.saturating_add(i64::try_from(self.give_up_after_ms).unwrap_or(i64::MAX))
    }
}

/// Counters for `/metrics`, since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryStats {
    pub delivered: u64,
    pub retried: u64,
    pub failed: u64,
    /// Queue reads or outcome writes the store refused.
    pub store_errors: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for outbound postbacks: {0}")]
pub struct DeliverError(#[source] reqwest::Error);

/// Sends due deliveries and records each outcome in the queue.
pub struct Deliverer {
    client: reqwest::Client,
    queue: Arc<dyn DeliveryQueue>,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
    wake: Notify,
    stop: AtomicBool,
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    store_errors: AtomicU64,
}

/// Why one attempt did not succeed.
struct Failure {
    error: String,
    http_status: Option<u16>,
    /// Retrying cannot help.
    permanent: bool,
}

impl Failure {
    fn retry(error: String, http_status: Option<u16>) -> Failure {
        Failure {
            error,
            http_status,
            permanent: false,
        }
    }

    fn permanent(error: String) -> Failure {
        Failure {
            error,
            http_status: None,
            permanent: true,
        }
    }
}

#[derive(Default)]
struct Round {
    attempts: usize,
    /// The queue may hold more due deliveries than one round took.
    more: bool,
    earliest_retry_ms: Option<i64>,
}

impl Deliverer {
    pub fn new(
        queue: Arc<dyn DeliveryQueue>,
        clock: Arc<dyn Clock>,
        backoff: Backoff,
        timeout: Duration,
    ) -> Result<Deliverer, DeliverError> {
        // The build has only the rustls backend (ring provider, webpki roots); naming it keeps
        // a feature change elsewhere from silently switching to a system TLS library.
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(DeliverError)?;
        Ok(Deliverer {
            client,
            queue,
            clock,
            backoff,
            wake: Notify::new(),
            stop: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
        })
    }

    /// Makes the running worker look at the queue now rather than at its next poll.
    pub fn wake(&self) {
        // notify_one keeps a permit when the worker is busy, so a wake is never lost.
        self.wake.notify_one();
    }

    /// Makes the worker stop after the round in flight, once its outcomes are recorded, so
    /// the store can then be flushed (SPEC §15 drain). Anything not attempted stays pending.
    pub fn shutdown(&self) {
        self.stop.store(true, Relaxed);
        self.wake.notify_one();
    }

    /// Attempts what is due now (one round of at most 256), at most `MAX_IN_FLIGHT` at once;
    /// returns the number of attempts made.
    pub async fn run_once(&self) -> usize {
        self.round().await.attempts
    }

    /// Runs rounds until `shutdown`: the first at once (resuming what a restart left pending),
    /// then after a wake, when a retry falls due, or every second at the latest.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while !self.stop.load(Relaxed) {
                let round = self.round().await;
                if round.more {
                    tokio::task::yield_now().await;
                    continue;
                }
                let wait = round.earliest_retry_ms.map_or(POLL, |at| {
                    let ms = at.saturating_sub(self.clock.now_ms()).max(0) as u64;
                    Duration::from_millis(ms).min(POLL)
                });
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        })
    }

    pub fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            delivered: self.delivered.load(Relaxed),
            retried: self.retried.load(Relaxed),
            failed: self.failed.load(Relaxed),
            store_errors: self.store_errors.load(Relaxed),
        }
    }

    async fn round(&self) -> Round {
        let due = match self.queue.due(self.clock.now_ms(), BATCH).await {
            Ok(due) => due,
            Err(e) => {
                self.store_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "outbound postback queue unreadable");
                return Round::default();
            }
        };
        let full = due.len() >= BATCH;
        let outcomes: Vec<(Option<i64>, bool)> = stream::iter(due)
            .map(|delivery| self.attempt(delivery))
            .buffer_unordered(MAX_IN_FLIGHT)
            .collect()
            .await;
        Round {
            attempts: outcomes.len(),
            // When outcomes cannot be written the same rows would come back at once; the
            // regular poll paces those instead.
            more: full && outcomes.iter().all(|&(_, recorded)| recorded),
            earliest_retry_ms: outcomes.iter().filter_map(|&(next, _)| next).min(),
        }
    }

    /// Sends one delivery and records the outcome; returns the retry time, if any, and whether
    /// the outcome was recorded.
    async fn attempt(&self, delivery: Delivery) -> (Option<i64>, bool) {
        let started = Instant::now();
        let result = self.send(&delivery.url).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let now_ms = self.clock.now_ms();
        let attempt_no = delivery.attempts.saturating_add(1);
        let host = host_of(&delivery.url);

        let (attempt, http_status) = match result {
            Ok(status) => (Attempt::Delivered { at_ms: now_ms }, Some(status)),
            Err(failure) => {
                let next = if failure.permanent {
                    None
                } else {
                    self.backoff.next(delivery.created_ms, attempt_no, now_ms)
                };
                let attempt = match next {
                    Some(next_at_ms) => Attempt::Retry {
                        next_at_ms,
                        error: failure.error,
                    },
                    None => Attempt::GaveUp {
                        error: failure.error,
                    },
                };
                (attempt, failure.http_status)
            }
        };

        macro_rules! log {
            ($level:ident, $outcome:literal, $error:expr, $next_at:expr) => {
                tracing::$level!(
                    delivery_id = delivery.id,
                    source = %delivery.source,
                    click_id = %delivery.click_id,
                    event = %delivery.event,
                    status = %delivery.status,
                    attempt = attempt_no,
                    host = %host,
                    http_status,
                    elapsed_ms,
                    outcome = $outcome,
                    error = $error,
                    next_at_ms = $next_at,
                    "outbound postback"
                )
            };
        }
        let next_at = match &attempt {
            Attempt::Delivered { .. } => {
                self.delivered.fetch_add(1, Relaxed);
                log!(info, "delivered", None::<&str>, None::<i64>);
                None
            }
            Attempt::Retry { next_at_ms, error } => {
                self.retried.fetch_add(1, Relaxed);
                log!(warn, "retry", Some(error.as_str()), Some(*next_at_ms));
                Some(*next_at_ms)
            }
            Attempt::GaveUp { error } => {
                self.failed.fetch_add(1, Relaxed);
                log!(error, "failed", Some(error.as_str()), None::<i64>);
                None
            }
        };

        let recorded = match self.queue.record_attempt(delivery.id, attempt).await {
            Ok(()) => true,
            Err(e) => {
                // The delivery stays as it was in the queue and is attempted again: a
                // duplicate postback is acceptable, a lost one is not.
                self.store_errors.fetch_add(1, Relaxed);
                tracing::warn!(delivery_id = delivery.id, error = %e,
                    "outbound postback outcome not recorded");
                false
            }
        };
        (next_at, recorded)
    }

    /// One GET; `Ok` carries the 2xx status.
    async fn send(&self, url: &str) -> Result<u16, Failure> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| Failure::permanent(format!("invalid url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Failure::permanent(format!(
                "unsupported url scheme: {}",
                url.scheme()
            )));
        }
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| Failure::retry(describe(&e), None))?;
        let status = response.status();
        // The answer is the status; a body that breaks off does not undo a 2xx.
        let mut read = 0;
        while read < MAX_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(Failure::retry(
                format!("HTTP {}", status.as_u16()),
                Some(status.as_u16()),
            ))
        }
    }
}

/// The error's kind and causes, without the URL that reqwest's own message includes.
fn describe(e: &reqwest::Error) -> String {
    let mut text = String::from(if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connect error"
    } else if e.is_redirect() {
        "redirect error"
    } else {
        "request error"
    });
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let message = c.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = c.source();
    }
    if text.chars().count() > MAX_ERROR_CHARS {
        text = text.chars().take(MAX_ERROR_CHARS).collect();
    }
    text
}

fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const T0: i64 = 1_700_000_000_000;
    const SECOND: i64 = 1000;
    const HOUR: i64 = 3600 * SECOND;

    #[derive(Default)]
    struct MemQueue {
        rows: Mutex<Vec<Delivery>>,
    }

    impl MemQueue {
        fn with(urls: &[String]) -> Arc<MemQueue> {
            let queue = MemQueue::default();
            for url in urls {
                queue.push(url, T0);
            }
            Arc::new(queue)
        }

        fn push(&self, url: &str, created_ms: i64) {
            let mut rows = self.rows.lock().unwrap();
            let id = rows.len() as i64 + 1;
            rows.push(Delivery {
                id,
                url: url.to_owned(),
                source: "propeller".into(),
                click_id: format!("c{id}"),
                event: "conversion".into(),
                status: "approved".into(),
                created_ms,
                attempts: 0,
                next_at_ms: created_ms,
                state: DeliveryState::Pending,
                last_error: None,
                delivered_ms: None,
            });
        }

        fn get(&self, id: i64) -> Delivery {
            self.rows.lock().unwrap()[id as usize - 1].clone()
        }
    }

    #[async_trait::async_trait]
    impl DeliveryQueue for MemQueue {
        async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
            let mut due: Vec<Delivery> = self
                .rows
                .lock()
                .unwrap()
                .iter()
                .filter(|d| d.state == DeliveryState::Pending && d.next_at_ms <= now_ms)
                .cloned()
                .collect();
            due.sort_by_key(|d| (d.created_ms, d.id));
            due.truncate(limit);
            Ok(due)
        }

        async fn record_attempt(&self, id: i64, attempt: Attempt) -> Result<(), StoreError> {
            let mut rows = self.rows.lock().unwrap();
            let row = rows
                .iter_mut()
                .find(|d| d.id == id)
                .ok_or_else(|| StoreError::Internal("no such delivery".into()))?;
            row.attempts += 1;
            match attempt {
                Attempt::Delivered { at_ms } => {
                    row.state = DeliveryState::Delivered;
                    row.delivered_ms = Some(at_ms);
                }
                Attempt::Retry { next_at_ms, error } => {
                    row.next_at_ms = next_at_ms;
                    row.last_error = Some(error);
                }
                Attempt::GaveUp { error } => {
                    row.state = DeliveryState::Failed;
                    row.last_error = Some(error);
                }
            }
            Ok(())
        }
    }

    #[derive(Clone, Copy)]
    enum Reply {
        Status(u16),
        /// Holds the connection open without answering.
        Silent,
        /// Answers 200 after a pause.
        Slow(Duration),
        /// 302 to another path on the same server.
        Redirect,
    }

    /// A tiny HTTP/1.1 server that answers the n-th request with `replies[n]` (the last one
    /// repeats) and remembers what it saw.
    struct Receiver {
        base: String,
        heads: Arc<Mutex<Vec<String>>>,
        max_in_flight: Arc<AtomicUsize>,
    }

    impl Receiver {
        async fn start(replies: Vec<Reply>) -> Receiver {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let heads = Arc::new(Mutex::new(Vec::new()));
            let in_flight = Arc::new(AtomicUsize::new(0));
            let max_in_flight = Arc::new(AtomicUsize::new(0));
            let (seen, peak) = (heads.clone(), max_in_flight.clone());
            tokio::spawn(async move {
                let replies = Arc::new(replies);
                loop {
                    let (mut socket, _) = listener.accept().await.unwrap();
                    let (seen, replies) = (seen.clone(), replies.clone());
                    let (in_flight, peak) = (in_flight.clone(), peak.clone());
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.ends_with(b"\r\n\r\n") {
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let n = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(String::from_utf8_lossy(&head).into_owned());
                            seen.len() - 1
                        };
                        let now = in_flight.fetch_add(1, Relaxed) + 1;
                        peak.fetch_max(now, Relaxed);
                        let reply = replies[n.min(replies.len() - 1)];
                        let answer = match reply {
                            Reply::Status(code) => format!(
                                "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                            ),
                            Reply::Silent => std::future::pending().await,
                            Reply::Slow(pause) => {
                                tokio::time::sleep(pause).await;
                                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                                    .to_owned()
                            }
                            Reply::Redirect => "HTTP/1.1 302 Found\r\nLocation: /moved\r\n\
                                 Content-Length: 0\r\nConnection: close\r\n\r\n"
                                .to_owned(),
                        };
                        in_flight.fetch_sub(1, Relaxed);
                        let _ = socket.write_all(answer.as_bytes()).await;
                        let _ = socket.shutdown().await;
                    });
                }
            });
            Receiver {
                base,
                heads,
                max_in_flight,
            }
        }

        fn url(&self, n: usize) -> String {
            format!("{}/postback?cid=c{n}&payout=1.50", self.base)
        }

        fn requests(&self) -> usize {
            self.heads.lock().unwrap().len()
        }
    }

    fn deliverer(queue: Arc<MemQueue>, clock: Arc<ManualClock>, timeout: Duration) -> Deliverer {
        Deliverer::new(queue, clock, Backoff::default(), timeout).unwrap()
    }

    fn retry_error(delivery: &Delivery) -> &str {
        assert_eq!(delivery.state, DeliveryState::Pending, "{delivery:?}");
        delivery.last_error.as_deref().unwrap()
    }

    #[test]
    fn waits_start_at_the_initial_delay_double_each_time_and_are_capped_at_an_hour() {
        let backoff = Backoff::default();
        let table: [(u32, i64); 14] = [
            (1, 5),
            (2, 10),
            (3, 20),
            (4, 40),
            (5, 80),
            (6, 160),
            (7, 320),
            (8, 640),
            (9, 1280),
            (10, 2560),
            (11, 3600),
            (12, 3600),
            (40, 3600),
            (u32::MAX, 3600),
        ];
        for (attempts, wait_s) in table {
            let now = T0 + HOUR;
            assert_eq!(
                backoff.next(T0, attempts, now),
                Some(now + wait_s * SECOND),
                "after attempt {attempts}"
            );
        }
    }

    #[test]
    fn gives_up_48_hours_after_the_delivery_was_created_with_a_last_try_at_the_deadline() {
        let backoff = Backoff::default();
        let deadline = T0 + 48 * HOUR;
        assert_eq!(backoff.deadline_ms(T0), deadline);
        assert_eq!(backoff.next(T0, 30, deadline - 10 * SECOND), Some(deadline));
        assert_eq!(backoff.next(T0, 30, deadline - 1), Some(deadline));
        assert_eq!(backoff.next(T0, 30, deadline), None);
        assert_eq!(backoff.next(T0, 1, deadline + HOUR), None);
    }

    #[test]
    fn a_whole_schedule_keeps_trying_for_48_hours_and_no_longer() {
        let backoff = Backoff::default();
        let (mut now, mut attempts, mut waits) = (T0, 0u32, Vec::new());
        loop {
            attempts += 1;
            match backoff.next(T0, attempts, now) {
                Some(next) => {
                    waits.push(next - now);
                    now = next;
                }
                None => break,
            }
        }
        assert_eq!(now, T0 + 48 * HOUR);
        assert_eq!(
            &waits[..4],
            &[5 * SECOND, 10 * SECOND, 20 * SECOND, 40 * SECOND]
        );
        assert!(waits.iter().all(|&w| w <= HOUR));
        // 10 doublings reach ~42.6 min, then hourly until the deadline.
        assert_eq!(attempts, 58);
    }

    #[test]
    fn the_schedule_follows_the_delivery_settings() {
        let config = DeliveryConfig {
            initial_backoff_ms: 250,
            give_up_after_hours: 24,
        };
        let backoff = Backoff::from(&config);
        assert_eq!(
            backoff,
            Backoff {
                initial_ms: 250,
                give_up_after_ms: 24 * 3_600_000
            }
        );
        assert_eq!(backoff.next(T0, 3, T0), Some(T0 + 1000));
        assert_eq!(backoff.next(T0, 1, T0 + 24 * HOUR), None);
    }

    #[test]
    fn delivery_states_round_trip_through_their_names() {
        for state in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
        assert_eq!(DeliveryState::parse("done"), None);
    }

    #[tokio::test]
    async fn a_refused_postback_is_retried_after_the_backoff_and_then_delivered() {
        let receiver = Receiver::start(vec![Reply::Status(500), Reply::Status(204)]).await;
        let queue = MemQueue::with(&[receiver.url(1)]);
        let clock = Arc::new(ManualClock::new(T0));
        let worker = deliverer(queue.clone(), clock.clone(), DEFAULT_TIMEOUT);

        assert_eq!(worker.run_once().await, 1);
        let first = queue.get(1);
        assert_eq!(retry_error(&first), "HTTP 500");
        assert_eq!((first.attempts, first.next_at_ms), (1, T0 + 5 * SECOND));

        clock.advance(5 * SECOND - 1);
        assert_eq!(worker.run_once().await, 0, "not due yet");
        assert_eq!(receiver.requests(), 1);

        clock.advance(1);
        assert_eq!(worker.run_once().await, 1);
        let second = queue.get(1);
        assert_eq!(second.state, DeliveryState::Delivered);
        assert_eq!(
            (second.attempts, second.delivered_ms),
            (2, Some(T0 + 5 * SECOND))
        );
        assert_eq!(worker.run_once().await, 0, "delivered once, not again");
        assert_eq!(
            worker.stats(),
            DeliveryStats {
                delivered: 1,
                retried: 1,
                failed: 0,
                store_errors: 0
            }
        );
    }

    #[tokio::test]
    async fn the_postback_is_a_get_of_the_url_with_the_smartlink_user_agent() {
        let receiver = Receiver::start(vec![Reply::Status(200)]).await;
        let queue = MemQueue::with(&[receiver.url(7)]);
        let worker = deliverer(
            queue.clone(),
            Arc::new(ManualClock::new(T0)),
            DEFAULT_TIMEOUT,
        );
        worker.run_once().await;
        let head = receiver.heads.lock().unwrap()[0].to_ascii_lowercase();
        assert!(
            head.starts_with("get /postback?cid=c7&payout=1.50 http/1.1\r\n"),
            "{head}"
        );
        let agent = format!("user-agent: smartlink/{}\r\n", env!("CARGO_PKG_VERSION"));
        assert!(head.contains(&agent), "{head}");
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_times_out_and_is_retried() {
        let receiver = Receiver::start(vec![Reply::Silent]).await;
        let queue = MemQueue::with(&[receiver.url(1)]);
        let worker = deliverer(
            queue.clone(),
            Arc::new(ManualClock::new(T0)),
            Duration::from_millis(300),
        );
        let started = Instant::now();
        assert_eq!(worker.run_once().await, 1);
        assert!(started.elapsed() < Duration::from_secs(5));
        let delivery = queue.get(1);
        assert!(
            retry_error(&delivery).starts_with("timed out"),
            "{delivery:?}"
        );
        assert_eq!(delivery.next_at_ms, T0 + 5 * SECOND);
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/postback", closed.local_addr().unwrap());
        drop(closed);
        let queue = MemQueue::with(&[url]);
        let worker = deliverer(
            queue.clone(),
            Arc::new(ManualClock::new(T0)),
            DEFAULT_TIMEOUT,
        );
        assert_eq!(worker.run_once().await, 1);
        let delivery = queue.get(1);
        let error = retry_error(&delivery);
        assert!(error.starts_with("connect error"), "{error}");
        assert!(
            !error.contains("/postback"),
            "the URL stays out of errors: {error}"
        );
        assert_eq!(worker.stats().retried, 1);
    }

    #[tokio::test]
    async fn a_failed_attempt_past_the_give_up_time_marks_the_delivery_failed() {
        let receiver = Receiver::start(vec![Reply::Status(503)]).await;
        let queue = MemQueue::with(&[receiver.url(1)]);
        let clock = Arc::new(ManualClock::new(T0 + 48 * HOUR));
        let worker = deliverer(queue.clone(), clock.clone(), DEFAULT_TIMEOUT);
        assert_eq!(worker.run_once().await, 1);
        let delivery = queue.get(1);
        assert_eq!(delivery.state, DeliveryState::Failed);
        assert_eq!(delivery.last_error.as_deref(), Some("HTTP 503"));
        clock.advance(HOUR);
        assert_eq!(
            worker.run_once().await,
            0,
            "a failed delivery is not tried again"
        );
        assert_eq!(worker.stats().failed, 1);
    }

    #[tokio::test]
    async fn a_late_delivery_that_succeeds_is_still_delivered() {
        let receiver = Receiver::start(vec![Reply::Status(200)]).await;
        let queue = MemQueue::with(&[receiver.url(1)]);
        let worker = deliverer(
            queue.clone(),
            Arc::new(ManualClock::new(T0 + 72 * HOUR)),
            DEFAULT_TIMEOUT,
        );
        worker.run_once().await;
        assert_eq!(queue.get(1).state, DeliveryState::Delivered);
    }

    #[tokio::test]
    async fn a_url_that_cannot_be_sent_fails_at_once() {
        let queue = MemQueue::with(&["not a url".to_owned(), "ftp://example.com/pb".to_owned()]);
        let worker = deliverer(
            queue.clone(),
            Arc::new(ManualClock::new(T0)),
            DEFAULT_TIMEOUT,
        );
        assert_eq!(worker.run_once().await, 2);
        for id in [1, 2] {
            assert_eq!(queue.get(id).state, DeliveryState::Failed);
        }
        assert!(queue.get(2).last_error.unwrap().contains("scheme: ftp"));
    }

    #[tokio::test]
    async fn up_to_three_redirects_are_followed() {
        let receiver = Receiver::start(vec![
            Reply::Redirect,
            Reply::Redirect,
            Reply::Redirect,
            Reply::Status(200),
        ])
        .await;
        let queue = MemQueue::with(&[receiver.url(1)]);
        let worker = deliverer(
            queue.clone(),
            Arc::new(ManualClock::new(T0)),
            DEFAULT_TIMEOUT,
        );
        worker.run_once().await;
        assert_eq!(queue.get(1).state, DeliveryState::Delivered);
        assert_eq!(receiver.requests(), 4);
    }

    #[tokio::test]
    async fn a_fourth_redirect_is_retried() {
        let receiver = Receiver::start(vec![Reply::Redirect]).await;
        let queue = MemQueue::with(&[receiver.url(1)]);
        let worker = deliverer(
            queue.clone(),
            Arc::new(ManualClock::new(T0)),
            DEFAULT_TIMEOUT,
        );
        worker.run_once().await;
        let delivery = queue.get(1);
        assert!(
            retry_error(&delivery).starts_with("redirect error"),
            "{delivery:?}"
        );
        assert_eq!(receiver.requests(), 4);
    }

    #[tokio::test]
    async fn many_due_deliveries_are_sent_concurrently_but_at_most_sixteen_at_once() {
        let receiver = Receiver::start(vec![Reply::Slow(Duration::from_millis(200))]).await;
        let urls: Vec<String> = (1..=48).map(|n| receiver.url(n)).collect();
        let queue = MemQueue::with(&urls);
        let worker = deliverer(
            queue.clone(),
            Arc::new(ManualClock::new(T0)),
            DEFAULT_TIMEOUT,
        );
        let started = Instant::now();
        assert_eq!(worker.run_once().await, 48);
        let peak = receiver.max_in_flight.load(Relaxed);
        assert!(peak > 1 && peak <= MAX_IN_FLIGHT, "peak in flight {peak}");
        // One at a time would take 48 × 200 ms.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(worker.stats().delivered, 48);
        assert!((1..=48).all(|id| queue.get(id).state == DeliveryState::Delivered));
    }

    #[tokio::test]
    async fn the_running_worker_resumes_pending_deliveries_delivers_on_wake_and_stops() {
        let receiver = Receiver::start(vec![Reply::Status(200)]).await;
        let queue = MemQueue::with(&[receiver.url(1)]);
        let worker = Arc::new(deliverer(
            queue.clone(),
            Arc::new(ManualClock::new(T0)),
            DEFAULT_TIMEOUT,
        ));
        let handle = worker.clone().spawn();

        let wait_for = |id: i64, tries: u32| {
            let queue = queue.clone();
            async move {
                for _ in 0..tries {
                    if queue.get(id).state == DeliveryState::Delivered {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                panic!("delivery {id} not delivered");
            }
        };
        // Well under the 1 s poll: the first round runs at start, the next on the wake.
        wait_for(1, 400).await;
        queue.push(&receiver.url(2), T0);
        worker.wake();
        wait_for(2, 100).await;

        worker.shutdown();
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("worker stops")
            .unwrap();
    }
}
