//! The fallback optimiser live (SPEC §8): a thread of its own owns the bandit's `Evidence`, the
//! request path feeds it through a channel, and every `bandit.refresh_ms` it publishes fresh
//! allocation tables to the `Allocator` that decisions sample from.
//!
//! - The click path only sends (never waits, never locks) and, in `decide`, reads the published
//!   tables; all the arithmetic happens here, off the actix workers.
//! - Evidence: residual clicks (route `fallback`; never bots, HEAD requests, primaries or
//!   backlinks), approvals of their conversions and the reversal of approved ones.
//! - At start the evidence is rebuilt from the store (`REPLAY_WINDOW_MS` of history) while the
//!   server already serves by the weights; the rebuilt allocation is published when replay ends.
//! - Rule changes, caps and pauses reach the tables at the next refresh; until then `decide`
//!   already leaves out whatever is not eligible, and the allocator gives new offers the prior.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::bandit::{Allocator, BanditConfig, CampaignSpec, Evidence, Segment};
use crate::clock::Clock;
use crate::conversion::{Change, ConversionStatus};
use crate::decide::OfferAvailability;
use crate::metrics::Metrics;
use crate::rules::{Offer, RuleSet};
use crate::store::{EvidenceClick, EvidenceCursor, EvidencePage, StoreError};
use crate::visitor::Visitor;

/// History replayed at start. Evidence halves every few days and every few thousand clicks of a
/// segment (`BanditConfig`), so what is older than two weeks weighs a few percent at most, while
/// reading it would make every start slower.
pub const REPLAY_WINDOW_MS: i64 = 14 * 86_400_000;

/// Clicks per page of replay: a few megabytes in memory, however long the history.
pub const REPLAY_PAGE: usize = 10_000;

/// Events waiting for the learner. Bounded so that a learner that cannot keep up costs some
/// evidence rather than unbounded memory; at a couple of hundred bytes an event this is some
/// 13 MB, seconds of a busy router's clicks, while the learner applies an event in microseconds.
/// What does not fit is dropped and counted in `/metrics`: evidence is statistical, and losing a
/// little of it only slows learning, whereas waiting would slow the redirect.
const QUEUE_CAPACITY: usize = 1 << 16;

/// Events that arrive during replay wait in memory, up to this many (some 50 MB; then they are
/// dropped and counted), so that they are applied after the history they follow. A replay of
/// millions of clicks takes seconds, a busy router's clicks for that long fit.
const REPLAY_BUFFER_LIMIT: usize = 1 << 18;

/// Without news (no event, same campaigns and availability) the tables are still recomputed this
/// often, so that fading reaches them.
const IDLE_REFRESH_MS: i64 = 60_000;

/// Something the optimiser learns from.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A residual click sent to `offer`.
    Click {
        campaign: String,
        offer: String,
        segment: Segment,
        at_ms: i64,
    },
    /// What a conversion of a click made at `click_ms` changed in approved revenue.
    Conversion {
        campaign: String,
        offer: String,
        segment: Segment,
        outcome: Outcome,
        click_ms: i64,
        at_ms: i64,
    },
}

/// How long the learner sleeps between looks at its channel: far below any `refresh_ms` worth
/// setting, and long enough that one look takes hundreds of events at full load.
const POLL: Duration = Duration::from_millis(10);

enum Message {
    Event(Event),
    /// Wakes the learner so it sees the stop flag at once.
    Wake,
}

impl Event {
    fn apply(self, evidence: &mut Evidence) {
        match self {
            Event::Click {
                campaign,
                offer,
                segment,
                at_ms,
            } => evidence.record_click(&campaign, &offer, &segment, at_ms),
            Event::Conversion {
                campaign,
                offer,
                segment,
                outcome,
                click_ms,
                at_ms,
            } => {
                match outcome {
                    Outcome::Approved(payout) => evidence
                        .record_conversion(&campaign, &offer, &segment, payout, click_ms, at_ms),
                    Outcome::Reversed(payout) => evidence
                        .record_reversal(&campaign, &offer, &segment, payout, click_ms, at_ms),
                    Outcome::Adjusted(delta) => evidence
                        .record_adjustment(&campaign, &offer, &segment, delta, click_ms, at_ms),
                }
            }
        }
    }
}

/// What a conversion change means for the approved revenue the optimiser counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// Newly approved, worth this much.
    Approved(f64),
    /// An approval taken back, with what it was worth.
    Reversed(f64),
    /// An approval still in force, now worth this much more (less when negative).
    Adjusted(f64),
}

/// Only approved revenue is evidence: a pending conversion may still be rejected, and a
/// duplicate changes nothing.
pub fn outcome(change: &Change) -> Option<Outcome> {
    let approved = ConversionStatus::Approved;
    match change {
        Change::Recorded(after) if after.status == approved => {
            // A first report with a negative amount is a reversal of nothing the optimiser saw:
            // it still counts as a conversion, worth nothing.
            Some(Outcome::Approved(after.payout.to_f64().max(0.0)))
        }
        Change::Updated { before, after } => {
            match (before.status == approved, after.status == approved) {
                (false, true) => Some(Outcome::Approved(after.payout.to_f64().max(0.0))),
                // The conversion goes, with whatever it was worth.
                (true, false) => Some(Outcome::Reversed(before.payout.to_f64().max(0.0))),
                (true, true) => {
                    // A negative amount netted into the approval (`conversion::apply`): still
                    // one conversion, as a replay from the store will count it.
                    let delta = (after.payout - before.payout).to_f64();
                    (delta != 0.0).then_some(Outcome::Adjusted(delta))
                }
                (false, false) => None,
            }
        }
        _ => None,
    }
}

/// The request path's end of the channel: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Feed {
    sender: SyncSender<Message>,
    metrics: Arc<Metrics>,
}

impl Feed {
    /// A residual click sent to `offer` (the caller has checked the route).
    pub fn click(&self, campaign: &str, offer: &str, visitor: &Visitor, at_ms: i64) {
        self.send(Event::Click {
            campaign: campaign.to_string(),
            offer: offer.to_string(),
            segment: Segment::of(visitor),
            at_ms,
        });
    }

    /// A committed conversion change of a residual click made at `click_ms`, reported at `at_ms`.
    pub fn conversion(
        &self,
        campaign: &str,
        offer: &str,
        visitor: &Visitor,
        click_ms: i64,
        change: &Change,
        at_ms: i64,
    ) {
        let Some(outcome) = outcome(change) else {
            return;
        };
        self.send(Event::Conversion {
            campaign: campaign.to_string(),
            offer: offer.to_string(),
            segment: Segment::of(visitor),
            outcome,
            click_ms,
            at_ms,
        });
    }

    /// An event recorded elsewhere (another instance sharing the store).
    pub fn event(&self, event: Event) {
        self.send(event);
    }

    fn send(&self, event: Event) {
        match self.sender.try_send(Message::Event(event)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics
                    .bandit_events_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Reads one page of history after the given cursor (`Store::evidence_page` with the window and
/// page size bound).
pub type History =
    Box<dyn FnMut(Option<EvidenceCursor>) -> Result<EvidencePage, StoreError> + Send>;

/// What the learner reads besides its events.
pub struct Inputs {
    pub rules: Arc<ArcSwap<RuleSet>>,
    /// Daily caps: a capped offer leaves the tables until its day rolls over.
    pub availability: Arc<dyn OfferAvailability + Send + Sync>,
    pub clock: Arc<dyn Clock>,
    pub allocator: Arc<Allocator>,
    pub metrics: Arc<Metrics>,
    pub refresh: Duration,
    /// An offer's configured payout in base currency: the prior of its payout per conversion.
    pub payout: PayoutInBase,
}

/// See `Inputs::payout`.
pub type PayoutInBase = Arc<dyn Fn(&Offer) -> f64 + Send + Sync>;

/// The running learner; dropping it stops the thread without waiting for it.
pub struct Learner {
    stop: Arc<AtomicBool>,
    wake: SyncSender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl Learner {
    /// Starts the learner thread. It first replays `history` (if any), then learns from the
    /// returned feed.
    pub fn spawn(inputs: Inputs, history: Option<History>) -> std::io::Result<(Learner, Feed)> {
        let (sender, events) = mpsc::sync_channel(QUEUE_CAPACITY);
        let stop = Arc::new(AtomicBool::new(false));
        let feed = Feed {
            sender: sender.clone(),
            metrics: inputs.metrics.clone(),
        };
        let worker = Worker {
            evidence: Evidence::new(BanditConfig::default()),
            events,
            stop: stop.clone(),
            inputs,
            news: 0,
            last_specs: Vec::new(),
            last_ms: i64::MIN,
        };
        let thread = std::thread::Builder::new()
            .name("learner".into())
            .spawn(move || worker.run(history))?;
        Ok((
            Learner {
                stop,
                wake: sender,
                thread: Some(thread),
            },
            feed,
        ))
    }

    /// Stops the thread and waits for it (off the async threads). Nothing is lost: evidence is
    /// rebuilt from the store at the next start.
    pub async fn stop(mut self) {
        self.signal();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    fn signal(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // A full queue needs no wake-up: the learner is busy and checks the flag between events.
        let _ = self.wake.try_send(Message::Wake);
    }
}

impl Drop for Learner {
    fn drop(&mut self) {
        self.signal();
    }
}

struct Worker {
    evidence: Evidence,
    events: Receiver<Message>,
    stop: Arc<AtomicBool>,
    inputs: Inputs,
    /// Events applied since the last recomputation.
    news: u64,
    last_specs: Vec<CampaignSpec>,
    last_ms: i64,
}

impl Worker {
    fn run(mut self, history: Option<History>) {
        if let Some(history) = history {
            self.replay(history);
        }
        let refresh = self.inputs.refresh;
        let mut next = Instant::now() + refresh;
        while !self.stop.load(Ordering::SeqCst) {
            // Drain what has arrived, then sleep rather than block on the channel: with nobody
            // waiting on it, a handler's send is a push and never a system call to wake this
            // thread, which on a busy core would cost every click a context switch.
            loop {
                match self.events.try_recv() {
                    Ok(Message::Event(event)) => self.apply(event),
                    Ok(Message::Wake) => {}
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            if now >= next {
                self.refresh(false);
                // Measured from this refresh's start, so refreshes are at least `refresh` apart
                // even when one runs late.
                next = now + refresh;
            }
            std::thread::sleep(POLL.min(next.saturating_duration_since(Instant::now())));
        }
    }

    fn apply(&mut self, event: Event) {
        // The evidence is the optimiser's, tuned separately; should it ever panic, this event
        // is lost but the learner and the tables already published carry on.
        let evidence = &mut self.evidence;
        if std::panic::catch_unwind(AssertUnwindSafe(|| event.apply(evidence))).is_err() {
            tracing::error!("bandit evidence panicked on an event; event skipped");
        }
        self.news += 1;
    }

    /// Rebuilds the evidence from the store, keeping what arrives meanwhile for afterwards, and
    /// publishes the first tables.
    fn replay(&mut self, history: History) {
        let started = Instant::now();
        let mut waiting: Vec<Event> = Vec::new();
        let events = &self.events;
        let metrics = &self.inputs.metrics;
        let stop = &self.stop;
        let mut keep_up = || {
            loop {
                match events.try_recv() {
                    Ok(Message::Event(event)) if waiting.len() < REPLAY_BUFFER_LIMIT => {
                        waiting.push(event)
                    }
                    Ok(Message::Event(_)) => {
                        metrics
                            .bandit_events_dropped
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Message::Wake) => {}
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            !stop.load(Ordering::SeqCst)
        };
        let evidence = &mut self.evidence;
        let replayed =
            std::panic::catch_unwind(AssertUnwindSafe(|| replay(evidence, history, &mut keep_up)));
        keep_up();
        match replayed {
            Ok(Ok(count)) => tracing::info!(
                events = count,
                ms = started.elapsed().as_millis() as u64,
                "bandit evidence rebuilt from the store"
            ),
            Ok(Err(error)) => tracing::error!(
                %error,
                "cannot read the bandit's history; learning from new events only"
            ),
            Err(_) => tracing::error!("bandit evidence panicked during replay; history incomplete"),
        }
        // The history's allocation first; what arrived meanwhile counts from the next refresh,
        // like any live event.
        self.refresh(true);
        for event in waiting {
            self.apply(event);
        }
    }

    /// Recomputes and publishes the tables, unless nothing changed lately.
    fn refresh(&mut self, force: bool) {
        let rules = self.inputs.rules.load();
        let specs = specs(
            &rules,
            self.inputs.availability.as_ref(),
            self.inputs.payout.as_ref(),
        );
        let now_ms = self.inputs.clock.now_ms();
        if !force
            && self.news == 0
            && specs == self.last_specs
            && now_ms.saturating_sub(self.last_ms) < IDLE_REFRESH_MS
        {
            return;
        }
        let started = Instant::now();
        let evidence = &mut self.evidence;
        match std::panic::catch_unwind(AssertUnwindSafe(|| evidence.recompute(&specs, now_ms))) {
            Ok(tables) => {
                self.inputs.allocator.publish(tables);
                self.inputs
                    .metrics
                    .bandit_recompute
                    .observe(started.elapsed());
            }
            Err(_) => tracing::error!("bandit recomputation panicked; previous tables kept"),
        }
        self.news = 0;
        self.last_specs = specs;
        self.last_ms = now_ms;
    }
}

/// Every campaign's fallbacks that are available now (not paused, not capped), by campaign id
/// (so that an unchanged rule set compares equal).
pub fn specs(
    rules: &RuleSet,
    availability: &dyn OfferAvailability,
    payout: &dyn Fn(&Offer) -> f64,
) -> Vec<CampaignSpec> {
    let mut specs: Vec<CampaignSpec> = rules
        .campaigns
        .values()
        .filter(|campaign| !campaign.fallback.is_empty())
        .map(|campaign| {
            CampaignSpec::from_rules(
                campaign,
                rules,
                |offer| !availability.is_capped(offer),
                payout,
            )
        })
        .collect();
    specs.sort_by(|a, b| a.id.cmp(&b.id));
    specs
}

/// Feeds the pages of `history` into `evidence` in time order (a click before an approval made
/// in the same millisecond). `between_pages` runs after each page; returning `false` stops early.
/// Returns the number of events replayed.
pub fn replay(
    evidence: &mut Evidence,
    mut history: impl FnMut(Option<EvidenceCursor>) -> Result<EvidencePage, StoreError>,
    mut between_pages: impl FnMut() -> bool,
) -> Result<u64, StoreError> {
    let mut cursor = None;
    let mut count = 0u64;
    loop {
        let page = history(cursor)?;
        let mut conversions = page.conversions.into_iter().peekable();
        for click in page.clicks {
            while let Some(conversion) = conversions.next_if(|c| c.approved_ms < click.ts_ms) {
                replay_conversion(
                    evidence,
                    &conversion.click,
                    conversion.payout,
                    conversion.approved_ms,
                );
                count += 1;
            }
            evidence.record_click(&click.campaign, &click.offer, &click.segment, click.ts_ms);
            count += 1;
        }
        for conversion in conversions {
            replay_conversion(
                evidence,
                &conversion.click,
                conversion.payout,
                conversion.approved_ms,
            );
            count += 1;
        }
        match page.next {
            Some(next) if between_pages() => cursor = Some(next),
            _ => return Ok(count),
        }
    }
}

fn replay_conversion(
    evidence: &mut Evidence,
    click: &EvidenceClick,
    payout: crate::money::Money,
    at_ms: i64,
) {
    evidence.record_conversion(
        &click.campaign,
        &click.offer,
        &click.segment,
        payout.to_f64().max(0.0),
        click.ts_ms,
        at_ms,
    );
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::PathBuf;

    use super::*;
    use crate::bandit::FallbackPolicy;
    use crate::clock::ManualClock;
    use crate::conversion::ConversionState;
    use crate::conversion::ConversionStatus::{Approved, Chargeback, Pending, Rejected};
    use crate::money::Money;
    use crate::rules::{Campaign, Offer};
    use crate::store::EvidenceConversion;
    use crate::visitor::{Device, Os};

    const OFFERS: &str = r#"
[[offer]]
id = "a"
url = "https://a.example/?c={clickid}"
payout = 1.0

[[offer]]
id = "b"
url = "https://b.example/?c={clickid}"
payout = 1.0
"#;
    const SOURCES: &str = r#"
[[source]]
id = "net"
click_id_param = "clickid"
"#;
    const CAMPAIGN: &str = r#"
id = "pool"
source = "net"
backlink = "https://backlink.example/?c={clickid}"

[[fallback]]
offer = "a"
weight = 1.0

[[fallback]]
offer = "b"
weight = 1.0
"#;

    /// 2026-11-23 12:00:00 UTC.
    const NOW: i64 = 1_795_435_200_000;

    fn rules() -> RuleSet {
        crate::rules::load_from_sources(&[
            (PathBuf::from("rules/offers.toml"), OFFERS.to_string()),
            (PathBuf::from("rules/sources.toml"), SOURCES.to_string()),
            (
                PathBuf::from("rules/campaigns/pool.toml"),
                CAMPAIGN.to_string(),
            ),
        ])
        .expect("test rules are valid")
    }

    struct Capped(&'static [&'static str]);

    impl OfferAvailability for Capped {
        fn is_capped(&self, offer: &Offer) -> bool {
            self.0.contains(&offer.id.as_str())
        }
    }

    fn visitor() -> Visitor {
        Visitor {
            country: Some("DE".into()),
            device: Device::Desktop,
            os: Os::Windows,
            ..Visitor::unknown(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        }
    }

    fn state(status: ConversionStatus, payout: &str) -> ConversionState {
        ConversionState {
            status,
            payout: Money::parse(payout).unwrap(),
        }
    }

    fn share_of_a(policy: &dyn FallbackPolicy, campaign: &Campaign) -> f64 {
        policy.shares(campaign, &visitor(), &[0, 1])[0]
    }

    #[test]
    fn only_changes_of_approved_revenue_are_evidence() {
        let updated = |before, after| Change::Updated { before, after };
        let cases = [
            (
                Change::Recorded(state(Approved, "2")),
                Some(Outcome::Approved(2.0)),
            ),
            (
                Change::Recorded(state(Approved, "-1")),
                Some(Outcome::Approved(0.0)),
            ),
            (Change::Recorded(state(Pending, "2")), None),
            (Change::Duplicate, None),
            (
                updated(state(Pending, "2"), state(Approved, "2.5")),
                Some(Outcome::Approved(2.5)),
            ),
            (updated(state(Pending, "2"), state(Rejected, "2")), None),
            (
                updated(state(Approved, "2"), state(Chargeback, "2")),
                Some(Outcome::Reversed(2.0)),
            ),
            (
                updated(state(Approved, "2"), state(Rejected, "2")),
                Some(Outcome::Reversed(2.0)),
            ),
            (
                updated(state(Approved, "2"), state(Approved, "1.5")),
                Some(Outcome::Adjusted(-0.5)),
            ),
            (
                updated(state(Approved, "0"), state(Rejected, "0")),
                Some(Outcome::Reversed(0.0)),
            ),
            (updated(state(Approved, "2"), state(Approved, "2")), None),
        ];
        for (change, expected) in cases {
            assert_eq!(outcome(&change), expected, "{change:?}");
        }
    }

    #[test]
    fn specs_leave_out_capped_and_paused_offers() {
        let rules = rules();
        let all = specs(&rules, &Capped(&[]), &|o| o.payout.to_f64());
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].arms.len(), 2);
        let capped = specs(&rules, &Capped(&["a"]), &|o| o.payout.to_f64());
        assert_eq!(capped[0].arms.len(), 1);
        assert_eq!(capped[0].arms[0].offer, "b");
    }

    fn history_click(offer: &str, ts_ms: i64) -> EvidenceClick {
        EvidenceClick {
            campaign: "pool".into(),
            offer: offer.into(),
            segment: Segment::of(&visitor()),
            ts_ms,
        }
    }

    /// Clicks every second to alternating offers over `clicks` seconds before `NOW`, and an
    /// approval worth 2 three seconds after every fourth click of `a`.
    fn history(clicks: i64) -> (Vec<EvidenceClick>, Vec<EvidenceConversion>) {
        let start = NOW - clicks * 1000;
        let clicks: Vec<EvidenceClick> = (0..clicks)
            .map(|i| history_click(if i % 2 == 0 { "a" } else { "b" }, start + i * 1000))
            .collect();
        let conversions = clicks
            .iter()
            .filter(|c| c.offer == "a")
            .step_by(4)
            .map(|c| EvidenceConversion {
                click: c.clone(),
                payout: Money::parse("2").unwrap(),
                approved_ms: c.ts_ms + 3000,
            })
            .filter(|c| c.approved_ms < NOW)
            .collect();
        (clicks, conversions)
    }

    /// `history` in pages of `limit` clicks, as `Store::evidence_page` hands them out.
    fn paged(
        clicks: Vec<EvidenceClick>,
        conversions: Vec<EvidenceConversion>,
        limit: usize,
    ) -> impl FnMut(Option<EvidenceCursor>) -> Result<EvidencePage, StoreError> {
        move |after| {
            let start = after.as_ref().map_or(0, |c| c.id.parse::<usize>().unwrap());
            let page: Vec<EvidenceClick> = clicks.iter().skip(start).take(limit).cloned().collect();
            let next = (page.len() == limit).then(|| EvidenceCursor {
                ts_ms: page[limit - 1].ts_ms,
                id: (start + limit).to_string(),
            });
            let from = after.as_ref().map_or(i64::MIN, |c| c.ts_ms);
            let to = next.as_ref().map_or(i64::MAX, |c| c.ts_ms);
            Ok(EvidencePage {
                clicks: page,
                conversions: conversions
                    .iter()
                    .filter(|c| c.approved_ms > from && c.approved_ms <= to)
                    .cloned()
                    .collect(),
                next,
            })
        }
    }

    #[test]
    fn replay_feeds_pages_in_time_order() {
        let (clicks, conversions) = history(400);
        let mut replayed = Evidence::new(BanditConfig::default());
        let count = replay(
            &mut replayed,
            paged(clicks.clone(), conversions.clone(), 7),
            || true,
        )
        .unwrap();
        assert_eq!(count as usize, clicks.len() + conversions.len());

        let mut direct = Evidence::new(BanditConfig::default());
        let mut events: Vec<(i64, u8, usize)> = clicks
            .iter()
            .enumerate()
            .map(|(i, c)| (c.ts_ms, 0, i))
            .chain(
                conversions
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.approved_ms, 1, i)),
            )
            .collect();
        events.sort();
        for (_, kind, i) in events {
            if kind == 0 {
                let c = &clicks[i];
                direct.record_click(&c.campaign, &c.offer, &c.segment, c.ts_ms);
            } else {
                let c = &conversions[i];
                direct.record_conversion(
                    &c.click.campaign,
                    &c.click.offer,
                    &c.click.segment,
                    c.payout.to_f64(),
                    c.click.ts_ms,
                    c.approved_ms,
                );
            }
        }
        let segment = Segment::of(&visitor());
        for offer in ["a", "b"] {
            assert_eq!(
                replayed.totals("pool", offer, &segment, NOW),
                direct.totals("pool", offer, &segment, NOW),
                "{offer}"
            );
        }
    }

    #[test]
    fn replay_stops_between_pages_when_told() {
        let (clicks, conversions) = history(100);
        let mut evidence = Evidence::new(BanditConfig::default());
        let count = replay(&mut evidence, paged(clicks, conversions, 10), || false).unwrap();
        assert!(count <= 20, "{count}");
    }

    fn inputs(rules: RuleSet, clock: Arc<ManualClock>) -> (Inputs, Arc<Allocator>, Arc<Metrics>) {
        let allocator = Arc::new(Allocator::new());
        let metrics = Arc::new(Metrics::default());
        (
            Inputs {
                rules: Arc::new(ArcSwap::from_pointee(rules)),
                availability: Arc::new(Capped(&[])),
                clock,
                allocator: allocator.clone(),
                metrics: metrics.clone(),
                refresh: Duration::from_millis(10),
                payout: Arc::new(|o: &Offer| o.payout.to_f64()),
            },
            allocator,
            metrics,
        )
    }

    /// Polls for up to 10 s until `done` holds.
    fn eventually(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_learner_moves_traffic_to_the_offer_that_earns_and_stops_when_asked() {
        let rules = rules();
        let campaign = rules.campaign("pool").unwrap().clone();
        let clock = Arc::new(ManualClock::new(NOW));
        let (inputs, allocator, metrics) = inputs(rules, clock.clone());
        let (learner, feed) = Learner::spawn(inputs, None).unwrap();
        assert!((share_of_a(allocator.as_ref(), &campaign) - 0.5).abs() < 1e-9);
        let visitor = visitor();
        for i in 0..400 {
            let offer = if i % 2 == 0 { "a" } else { "b" };
            feed.click("pool", offer, &visitor, NOW - 400_000 + i * 1000);
        }
        for i in (0..400).step_by(8) {
            let click_ms = NOW - 400_000 + i * 1000;
            let change = Change::Recorded(state(Approved, "2"));
            feed.conversion("pool", "a", &visitor, click_ms, &change, click_ms + 3000);
        }
        assert!(
            eventually(|| share_of_a(allocator.as_ref(), &campaign) > 0.9),
            "share of a: {}",
            share_of_a(allocator.as_ref(), &campaign)
        );
        assert_eq!(metrics.bandit_events_dropped.load(Ordering::Relaxed), 0);
        assert!(metrics.bandit_recompute.count() > 0);
        tokio::time::timeout(Duration::from_secs(10), learner.stop())
            .await
            .expect("the learner stops");
        feed.click("pool", "a", &visitor, NOW);
        assert_eq!(metrics.bandit_events_dropped.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_learner_publishes_what_its_history_taught() {
        let rules = rules();
        let campaign = rules.campaign("pool").unwrap().clone();
        let (clicks, conversions) = history(400);
        let (inputs, allocator, _) = inputs(rules, Arc::new(ManualClock::new(NOW)));
        let (learner, _feed) =
            Learner::spawn(inputs, Some(Box::new(paged(clicks, conversions, 50)))).unwrap();
        assert!(
            eventually(|| share_of_a(allocator.as_ref(), &campaign) > 0.9),
            "share of a: {}",
            share_of_a(allocator.as_ref(), &campaign)
        );
        learner.stop().await;
    }
}
