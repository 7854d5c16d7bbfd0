//! Prometheus counters and histograms for `/metrics` (SPEC §15). Lock-free atomics: the click
//! path only increments.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::decide::Route;
use crate::store::StoreStats;

/// Upper bounds in seconds; the click path lives in the microsecond buckets.
const BUCKETS: [f64; 14] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1, 0.5, 2.5,
];

#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(elapsed.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// Every click request, HEAD included.
    pub clicks: AtomicU64,
    /// Clicks for campaigns that do not exist.
    pub unknown_campaign: AtomicU64,
    /// Redirects by route, indexed like `Route::ALL`.
    pub redirects: [AtomicU64; 4],
    /// Clicks the store refused or failed to take.
    pub click_record_errors: AtomicU64,
    pub rules_reloads: AtomicU64,
    pub rules_reload_failures: AtomicU64,
    /// Conversion reports by result (`recorded`, `duplicate`, `updated`) or refusal code.
    pub postbacks: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Classification + decision + URL expansion of one click.
    pub decision_latency: Histogram,
    /// Handing one click to the store (includes the commit in `strict` mode).
    pub store_latency: Histogram,
    /// Evidence for the fallback optimiser dropped because its queue was full.
    pub bandit_events_dropped: AtomicU64,
    /// One recomputation of the allocation tables.
    pub bandit_recompute: Histogram,
}

impl Metrics {
    pub fn redirect(&self, route: Route) {
        let index = Route::ALL.iter().position(|r| *r == route).unwrap_or(0);
        self.redirects[index].fetch_add(1, Relaxed);
    }

    pub fn postback(&self, result: &'static str) {
        let mut postbacks = self.postbacks.lock().unwrap_or_else(|e| e.into_inner());
        *postbacks.entry(result).or_default() += 1;
    }

    /// `deliveries`: outbound delivery attempts by outcome, from the delivery worker.
    pub fn render(&self, store: StoreStats, deliveries: &[(&str, u64)]) -> String {
        let mut out = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "smartlink_clicks_total",
            "Click requests received, HEAD included.",
            self.clicks.load(Relaxed),
        );
        counter(
            "smartlink_unknown_campaign_total",
            "Clicks for campaigns that do not exist.",
            self.unknown_campaign.load(Relaxed),
        );
        counter(
            "smartlink_click_record_errors_total",
            "Clicks the store failed to take.",
            self.click_record_errors.load(Relaxed),
        );
        counter(
            "smartlink_rules_reloads_total",
            "Rule sets applied after a change on disk.",
            self.rules_reloads.load(Relaxed),
        );
        counter(
            "smartlink_rules_reload_failures_total",
            "Changed rule sets refused by validation.",
            self.rules_reload_failures.load(Relaxed),
        );
        counter(
            "smartlink_bandit_events_dropped_total",
            "Clicks and conversions the fallback optimiser did not learn from (queue full).",
            self.bandit_events_dropped.load(Relaxed),
        );
        counter(
            "smartlink_store_committed_total",
            "Records committed by the store.",
            store.committed,
        );
        counter(
            "smartlink_store_commits_total",
            "Store commits (transactions).",
            store.commits,
        );
        counter(
            "smartlink_store_failed_total",
            "Records the store could not write.",
            store.failed,
        );
        counter(
            "smartlink_store_dropped_clicks_total",
            "Clicks dropped because the store was unreachable and its in-memory buffer was full.",
            store.dropped,
        );
        let _ = writeln!(
            out,
            "# HELP smartlink_redirects_total Redirects by route.\n# TYPE smartlink_redirects_total counter"
        );
        for (route, count) in Route::ALL.iter().zip(&self.redirects) {
            let _ = writeln!(
                out,
                "smartlink_redirects_total{{route=\"{}\"}} {}",
                route.as_str(),
                count.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP smartlink_store_queued Records handed to the store and not yet committed.\n# TYPE smartlink_store_queued gauge\nsmartlink_store_queued {}",
            store.queued
        );
        let _ = writeln!(
            out,
            "# HELP smartlink_postbacks_total Conversion reports (postbacks and pixels) by result.\n# TYPE smartlink_postbacks_total counter"
        );
        for (result, count) in self
            .postbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "smartlink_postbacks_total{{result=\"{result}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP smartlink_deliveries_total Outbound postback delivery attempts by outcome.\n# TYPE smartlink_deliveries_total counter"
        );
        for (outcome, count) in deliveries {
            let _ = writeln!(
                out,
                "smartlink_deliveries_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
        let mean = if store.commits == 0 {
            0.0
        } else {
            store.commit_micros_total as f64 / store.commits as f64 / 1e6
        };
        let _ = writeln!(
            out,
            "# HELP smartlink_store_commit_seconds_mean Mean duration of a store commit.\n# TYPE smartlink_store_commit_seconds_mean gauge\nsmartlink_store_commit_seconds_mean {mean}"
        );
        self.decision_latency.render(
            &mut out,
            "smartlink_decision_seconds",
            "Classification, decision and URL expansion of one click.",
        );
        self.store_latency.render(
            &mut out,
            "smartlink_store_record_seconds",
            "Handing one click to the store (with its commit in strict mode).",
        );
        self.bandit_recompute.render(
            &mut out,
            "smartlink_bandit_recompute_seconds",
            "Recomputing the fallback allocation tables.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.decision_latency.observe(Duration::from_micros(5));
        metrics.decision_latency.observe(Duration::from_micros(300));
        metrics.redirect(Route::Fallback);
        let text = metrics.render(StoreStats::default(), &[("delivered", 3)]);
        assert!(text.contains("smartlink_decision_seconds_bucket{le=\"0.00001\"} 1"));
        assert!(text.contains("smartlink_decision_seconds_bucket{le=\"0.0005\"} 2"));
        assert!(text.contains("smartlink_decision_seconds_count 2"));
        assert!(text.contains("smartlink_redirects_total{route=\"fallback\"} 1"));
        assert!(text.contains("smartlink_deliveries_total{outcome=\"delivered\"} 3"));
    }
}
