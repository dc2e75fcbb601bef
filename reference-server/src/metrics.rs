//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Counters and histograms are plain atomics: no labels beyond the route and the status, so the
//! cardinality is fixed and no Record data ever reaches a metric.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use driftless_protocol::messages::MutationResult;

const LATENCY_BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000];
const LAG_BUCKETS: [u64; 8] = [0, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000];

#[derive(Default)]
struct Histogram {
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(n: usize) -> Self {
        Self {
            buckets: (0..n).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, bounds: &[u64], value: u64) {
        for (i, b) in bounds.iter().enumerate() {
            if value <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[u64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in bounds.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let wrap = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{wrap} {}", self.sum.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}_count{wrap} {count}");
    }
}

/// The server's metrics.
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, std::sync::Arc<Histogram>>>,
    applied: AtomicU64,
    duplicate: AtomicU64,
    rejected: AtomicU64,
    conflicts: AtomicU64,
    pull_lag: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            latency: Mutex::default(),
            applied: AtomicU64::new(0),
            duplicate: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            pull_lag: Histogram::new(LAG_BUCKETS.len()),
        }
    }
}

impl Metrics {
    /// Counts a finished request of `route` with `status`, taking `elapsed_ms`.
    pub fn observe_request(&self, route: &'static str, status: u16, elapsed_ms: u64) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route, status))
            .or_default() += 1;
        let h = self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(route)
            .or_insert_with(|| std::sync::Arc::new(Histogram::new(LATENCY_BUCKETS_MS.len())))
            .clone();
        h.observe(&LATENCY_BUCKETS_MS, elapsed_ms);
    }

    /// Counts one push result.
    pub fn count_result(&self, r: &MutationResult) {
        let c = match r {
            MutationResult::Applied(_) => &self.applied,
            MutationResult::Duplicate(_) => &self.duplicate,
            MutationResult::Rejected(_) => &self.rejected,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a write that left a `keep_both` Field in conflict.
    pub fn count_conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how many changes a pull request was behind the Space.
    pub fn observe_pull_lag(&self, changes_behind: u64) {
        self.pull_lag.observe(&LAG_BUCKETS, changes_behind);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP driftless_requests_total HTTP requests by route and status.\n# TYPE driftless_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "driftless_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP driftless_mutations_total Push results by outcome.\n# TYPE driftless_mutations_total counter\n");
        for (outcome, c) in [
            ("applied", &self.applied),
            ("duplicate", &self.duplicate),
            ("rejected", &self.rejected),
        ] {
            let _ = writeln!(
                out,
                "driftless_mutations_total{{outcome=\"{outcome}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP driftless_conflicts_total Writes that left a keep_both field in conflict.\n# TYPE driftless_conflicts_total counter\n");
        let _ = writeln!(
            out,
            "driftless_conflicts_total {}",
            self.conflicts.load(Ordering::Relaxed)
        );
        out.push_str("# HELP driftless_pull_lag_changes How many changes a pull started behind the space.\n# TYPE driftless_pull_lag_changes histogram\n");
        self.pull_lag
            .render(&mut out, "driftless_pull_lag_changes", "", &LAG_BUCKETS);
        out.push_str("# HELP driftless_request_duration_ms Request latency by route.\n# TYPE driftless_request_duration_ms histogram\n");
        for (route, h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            h.render(
                &mut out,
                "driftless_request_duration_ms",
                &format!("route=\"{route}\""),
                &LATENCY_BUCKETS_MS,
            );
        }
        out
    }
}
