//! Sync-health statistics for the dashboard (`/dashboard`), kept in memory per Space: the
//! Clients seen (by Client ID, with their User, last push and pull, and the position they pulled
//! through), Mutation results, rejections by Problem type with the latest few, trouble signals,
//! and per-minute throughput and latency for the last hour.
//!
//! Not part of the protocol: a diagnostic of the reference server (see `docs/dashboard.md`).
//! Bounded: at most [`SPACES_MAX`] Spaces, [`CLIENTS_MAX`] Clients per Space (the longest
//! silent one is forgotten first), [`LATEST_REJECTIONS`] recent rejections, [`MINUTES`] minute
//! buckets and [`CHANGE_TIMES_MAX`] change times per Space. Never a value or a Token: only Op
//! IDs, Client IDs, User names, Problem types, counts and times. Lost on restart.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use driftless_protocol::messages::MutationResult;
use serde::Serialize;

/// Spaces tracked; traffic to further Spaces is counted in `spaces_untracked` only.
pub const SPACES_MAX: usize = 256;
/// Clients tracked per Space; beyond it the Client seen longest ago is forgotten.
pub const CLIENTS_MAX: usize = 200;
/// Rejections kept per Space for the "latest" list.
pub const LATEST_REJECTIONS: usize = 10;
/// Minute buckets kept: the last hour.
pub const MINUTES: usize = 60;
/// (Change Sequence, time) pairs kept per Space to tell how many seconds a Client is behind.
pub const CHANGE_TIMES_MAX: usize = 4096;

/// Upper bounds (ms) of the latency histogram buckets; the last bucket is open.
const LATENCY_BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000,
];

/// A latency histogram.
#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; LATENCY_BOUNDS_MS.len() + 1],
}

impl Histogram {
    fn observe(&mut self, ms: u64) {
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.counts[i] += 1;
    }

    fn add(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound (ms) of the bucket holding quantile `q` (0..1); `None` without
    /// observations or when it falls in the open last bucket.
    fn quantile_ms(&self, q: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return LATENCY_BOUNDS_MS.get(i).copied();
            }
        }
        None
    }
}

/// One minute of traffic in one Space.
#[derive(Debug, Clone, Default)]
struct Minute {
    /// Minutes since the Unix epoch.
    minute: u64,
    push: Histogram,
    pull: Histogram,
}

#[derive(Debug, Clone, Default)]
struct ClientStats {
    user: String,
    last_push_ms: Option<u64>,
    last_pull_ms: Option<u64>,
    /// The position its last pull reached (`through`).
    through: Option<u64>,
    applied: u64,
    duplicate: u64,
    rejected: u64,
    last_seen_ms: u64,
}

#[derive(Debug, Clone, Default)]
struct SpaceStats {
    clients: HashMap<String, ClientStats>,
    clients_forgotten: u64,
    applied: u64,
    duplicate: u64,
    rejected: u64,
    rejections_by_type: BTreeMap<String, u64>,
    latest_rejections: VecDeque<RejectionView>,
    requests: u64,
    rate_limited: u64,
    clock_skew_refusals: u64,
    cursor_expiries: u64,
    resyncs: u64,
    minutes: VecDeque<Minute>,
    change_times: VecDeque<(u64, u64)>,
}

impl SpaceStats {
    fn client(&mut self, client_id: &str, user: &str, now_ms: u64) -> &mut ClientStats {
        if !self.clients.contains_key(client_id) && self.clients.len() >= CLIENTS_MAX {
            if let Some(oldest) = self
                .clients
                .iter()
                .min_by_key(|(_, c)| c.last_seen_ms)
                .map(|(k, _)| k.clone())
            {
                self.clients.remove(&oldest);
                self.clients_forgotten += 1;
            }
        }
        let c = self.clients.entry(client_id.to_owned()).or_default();
        c.user = user.to_owned();
        c.last_seen_ms = now_ms;
        c
    }

    fn minute(&mut self, now_ms: u64) -> &mut Minute {
        let minute = now_ms / 60_000;
        if self.minutes.back().is_none_or(|m| m.minute != minute) {
            self.minutes.push_back(Minute {
                minute,
                ..Default::default()
            });
        }
        while self
            .minutes
            .front()
            .is_some_and(|m| m.minute + MINUTES as u64 <= minute)
        {
            self.minutes.pop_front();
        }
        self.minutes.back_mut().expect("pushed above")
    }
}

/// A rejection as the dashboard shows it: never the Mutation's value, nor the Problem's
/// detail (which may quote the Client's input).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectionView {
    /// The Op ID.
    pub op_id: String,
    /// The Problem type URI, e.g. `urn:driftless:problem:policy-violation`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The Client that sent it.
    pub client_id: String,
    /// When it was rejected, ms since the Unix epoch.
    pub at_ms: u64,
}

/// What a request to a Space was, for the per-minute series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A push request.
    Push,
    /// A pull request.
    Pull,
}

/// The statistics of every Space, behind one mutex (each update is a few map operations).
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    spaces: HashMap<String, SpaceStats>,
    spaces_untracked: u64,
}

impl Inner {
    fn space(&mut self, space: &str) -> Option<&mut SpaceStats> {
        if !self.spaces.contains_key(space) && self.spaces.len() >= SPACES_MAX {
            self.spaces_untracked += 1;
            return None;
        }
        Some(self.spaces.entry(space.to_owned()).or_default())
    }
}

impl Stats {
    fn with(&self, space: &str, f: impl FnOnce(&mut SpaceStats)) {
        // A poisoned lock means an update panicked half-way; the numbers stay usable.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = inner.space(space) {
            f(s);
        }
    }

    /// A push's results from `client_id` of `user` (the push handler's hook).
    pub fn note_push<'a>(
        &self,
        space: &str,
        user: &str,
        client_id: &str,
        results: impl IntoIterator<Item = &'a MutationResult>,
        now_ms: u64,
    ) {
        self.with(space, |s| {
            let mut counts = (0, 0, 0);
            let mut max_seq = None;
            for r in results {
                match r {
                    MutationResult::Applied(a) => {
                        counts.0 += 1;
                        max_seq = max_seq.max(Some(a.change_seq));
                    }
                    MutationResult::Duplicate(_) => counts.1 += 1,
                    MutationResult::Rejected(r) => {
                        counts.2 += 1;
                        let problem_type = r.problem.problem_type.clone();
                        if problem_type.ends_with(":clock-skew") {
                            s.clock_skew_refusals += 1;
                        }
                        *s.rejections_by_type
                            .entry(problem_type.clone())
                            .or_default() += 1;
                        if s.latest_rejections.len() == LATEST_REJECTIONS {
                            s.latest_rejections.pop_front();
                        }
                        s.latest_rejections.push_back(RejectionView {
                            op_id: r.op_id.as_str().to_owned(),
                            problem_type,
                            client_id: client_id.to_owned(),
                            at_ms: now_ms,
                        });
                    }
                }
            }
            s.applied += counts.0;
            s.duplicate += counts.1;
            s.rejected += counts.2;
            if let Some(seq) = max_seq {
                if s.change_times.back().is_none_or(|(last, _)| *last < seq) {
                    if s.change_times.len() == CHANGE_TIMES_MAX {
                        s.change_times.pop_front();
                    }
                    s.change_times.push_back((seq, now_ms));
                }
            }
            let c = s.client(client_id, user, now_ms);
            c.last_push_ms = Some(now_ms);
            c.applied += counts.0;
            c.duplicate += counts.1;
            c.rejected += counts.2;
        });
    }

    /// A successful pull that reached `through` (the pull handler's hook). `client_id` is the
    /// `Driftless-Client-Id` header when the Client sent one; without it the pull counts for
    /// the Space and, per Client, under `user:USER`. A pull without a Cursor from a Client that
    /// had pulled before is a resync.
    pub fn note_pull(
        &self,
        space: &str,
        user: &str,
        client_id: Option<&str>,
        from_cursor: bool,
        through: u64,
        now_ms: u64,
    ) {
        self.with(space, |s| {
            let key = client_id.map_or_else(|| format!("user:{user}"), str::to_owned);
            let c = s.client(&key, user, now_ms);
            let resync = !from_cursor && c.through.is_some_and(|t| t > 0);
            c.last_pull_ms = Some(now_ms);
            c.through = Some(through);
            if resync {
                s.resyncs += 1;
            }
        });
    }

    /// A pull refused because its Cursor expired (`cursor-expired`).
    pub fn note_cursor_expired(&self, space: &str) {
        self.with(space, |s| s.cursor_expiries += 1);
    }

    /// A request to a Space was answered: counts it, and a push's or pull's latency.
    pub fn note_request(
        &self,
        space: &str,
        kind: Option<Kind>,
        status: u16,
        elapsed_ms: u64,
        now_ms: u64,
    ) {
        self.with(space, |s| {
            s.requests += 1;
            if status == 429 {
                s.rate_limited += 1;
            }
            let m = s.minute(now_ms);
            match kind {
                Some(Kind::Push) => m.push.observe(elapsed_ms),
                Some(Kind::Pull) => m.pull.observe(elapsed_ms),
                None => {}
            }
        });
    }

    /// The statistics of `space` as of `now_ms`, given its latest Change Sequence (`None`
    /// when unknown). All zero when the Space has had no traffic since the server started.
    pub fn space_view(&self, space: &str, latest_seq: Option<u64>, now_ms: u64) -> SpaceView {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = inner.spaces.get(space) else {
            return SpaceView::empty(space);
        };
        let mut clients: Vec<ClientView> = s
            .clients
            .iter()
            .map(|(id, c)| {
                let lag_changes = match (latest_seq, c.through) {
                    (Some(latest), Some(t)) => Some(latest.saturating_sub(t)),
                    _ => None,
                };
                let lag_s = lag_changes.and_then(|lag| {
                    if lag == 0 {
                        return Some(0);
                    }
                    let t = c.through?;
                    // The time of the oldest change the Client has not pulled, if still known.
                    let oldest_known = s.change_times.front()?;
                    if oldest_known.0 > t + 1 && s.change_times.len() == CHANGE_TIMES_MAX {
                        return None;
                    }
                    let at = s
                        .change_times
                        .iter()
                        .find(|(seq, _)| *seq > t)
                        .map(|(_, at)| *at)?;
                    Some(now_ms.saturating_sub(at) / 1000)
                });
                ClientView {
                    client_id: id.clone(),
                    user: c.user.clone(),
                    last_push_ms: c.last_push_ms,
                    last_pull_ms: c.last_pull_ms,
                    through: c.through,
                    lag_changes,
                    lag_s,
                    applied: c.applied,
                    duplicate: c.duplicate,
                    rejected: c.rejected,
                }
            })
            .collect();
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let now_minute = now_ms / 60_000;
        let mut hour_push = Histogram::default();
        let mut hour_pull = Histogram::default();
        let series = s
            .minutes
            .iter()
            .filter(|m| m.minute + (MINUTES as u64) > now_minute)
            .map(|m| {
                hour_push.add(&m.push);
                hour_pull.add(&m.pull);
                MinuteView {
                    minute_ms: m.minute * 60_000,
                    push_per_s: m.push.total() as f64 / 60.0,
                    pull_per_s: m.pull.total() as f64 / 60.0,
                    push_p50_ms: m.push.quantile_ms(0.5),
                    push_p99_ms: m.push.quantile_ms(0.99),
                    pull_p50_ms: m.pull.quantile_ms(0.5),
                    pull_p99_ms: m.pull.quantile_ms(0.99),
                }
            })
            .collect();
        let results = s.applied + s.duplicate + s.rejected;
        SpaceView {
            space: space.to_owned(),
            clients,
            clients_forgotten: s.clients_forgotten,
            applied: s.applied,
            duplicate: s.duplicate,
            rejected: s.rejected,
            rejections_by_type: s.rejections_by_type.clone(),
            latest_rejections: s.latest_rejections.iter().rev().cloned().collect(),
            signals: Signals {
                replay_ratio: (results > 0).then(|| s.duplicate as f64 / results as f64),
                requests: s.requests,
                rate_limited: s.rate_limited,
                rate_limited_ratio: (s.requests > 0)
                    .then(|| s.rate_limited as f64 / s.requests as f64),
                clock_skew_refusals: s.clock_skew_refusals,
                cursor_expiries: s.cursor_expiries,
                resyncs: s.resyncs,
            },
            hour: HourView {
                push_p50_ms: hour_push.quantile_ms(0.5),
                push_p99_ms: hour_push.quantile_ms(0.99),
                pull_p50_ms: hour_pull.quantile_ms(0.5),
                pull_p99_ms: hour_pull.quantile_ms(0.99),
                pushes: hour_push.total(),
                pulls: hour_pull.total(),
            },
            series,
        }
    }

    /// How many Spaces' traffic went uncounted because [`SPACES_MAX`] were tracked.
    pub fn spaces_untracked(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .spaces_untracked
    }
}

/// One Client as the dashboard shows it. Times are ms since the Unix epoch; `None` (JSON
/// `null`) is "unavailable".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientView {
    /// The Client ID (`user:NAME` for pulls of a Client that sent no `Driftless-Client-Id`).
    pub client_id: String,
    /// The User of its last request.
    pub user: String,
    /// Its last push.
    pub last_push_ms: Option<u64>,
    /// Its last pull.
    pub last_pull_ms: Option<u64>,
    /// The position its last pull reached.
    pub through: Option<u64>,
    /// Changes between that position and the Space's latest Change Sequence.
    pub lag_changes: Option<u64>,
    /// Seconds since the oldest change it has not pulled was made (0 when caught up).
    pub lag_s: Option<u64>,
    /// Its Mutations applied.
    pub applied: u64,
    /// Its replays answered `duplicate`.
    pub duplicate: u64,
    /// Its Mutations rejected.
    pub rejected: u64,
}

/// Signals of trouble in one Space, since the server started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signals {
    /// Duplicates among all push results: replays after lost acknowledgements.
    pub replay_ratio: Option<f64>,
    /// Requests answered for the Space.
    pub requests: u64,
    /// Of them, answered 429.
    pub rate_limited: u64,
    /// `rate_limited / requests`.
    pub rate_limited_ratio: Option<f64>,
    /// Mutations rejected `clock-skew`.
    pub clock_skew_refusals: u64,
    /// Pulls refused `cursor-expired`.
    pub cursor_expiries: u64,
    /// Pulls from no Cursor by a Client that had pulled before.
    pub resyncs: u64,
}

/// One minute of one Space's traffic. Latencies are bucket upper bounds in ms (`None`: no
/// request, or slower than 30 s).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinuteView {
    /// The minute's start, ms since the Unix epoch.
    pub minute_ms: u64,
    /// Push requests per second.
    pub push_per_s: f64,
    /// Pull requests per second.
    pub pull_per_s: f64,
    /// Median push latency.
    pub push_p50_ms: Option<u64>,
    /// 99th percentile push latency.
    pub push_p99_ms: Option<u64>,
    /// Median pull latency.
    pub pull_p50_ms: Option<u64>,
    /// 99th percentile pull latency.
    pub pull_p99_ms: Option<u64>,
}

/// Latency over the last hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HourView {
    /// Push requests in the hour.
    pub pushes: u64,
    /// Pull requests in the hour.
    pub pulls: u64,
    /// Median push latency (bucket upper bound, ms).
    pub push_p50_ms: Option<u64>,
    /// 99th percentile push latency.
    pub push_p99_ms: Option<u64>,
    /// Median pull latency.
    pub pull_p50_ms: Option<u64>,
    /// 99th percentile pull latency.
    pub pull_p99_ms: Option<u64>,
}

/// One Space's statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpaceView {
    /// The Space.
    pub space: String,
    /// The Clients seen, by Client ID.
    pub clients: Vec<ClientView>,
    /// Clients forgotten to stay within [`CLIENTS_MAX`].
    pub clients_forgotten: u64,
    /// Mutations applied.
    pub applied: u64,
    /// Replays answered `duplicate`.
    pub duplicate: u64,
    /// Mutations rejected.
    pub rejected: u64,
    /// Rejections by Problem type.
    pub rejections_by_type: BTreeMap<String, u64>,
    /// The latest rejections, newest first.
    pub latest_rejections: Vec<RejectionView>,
    /// Signals of trouble.
    pub signals: Signals,
    /// Latency over the last hour.
    pub hour: HourView,
    /// The last hour, one entry per minute that had traffic, oldest first.
    pub series: Vec<MinuteView>,
}

impl SpaceView {
    fn empty(space: &str) -> Self {
        Self {
            space: space.to_owned(),
            clients: Vec::new(),
            clients_forgotten: 0,
            applied: 0,
            duplicate: 0,
            rejected: 0,
            rejections_by_type: BTreeMap::new(),
            latest_rejections: Vec::new(),
            signals: Signals {
                replay_ratio: None,
                requests: 0,
                rate_limited: 0,
                rate_limited_ratio: None,
                clock_skew_refusals: 0,
                cursor_expiries: 0,
                resyncs: 0,
            },
            hour: HourView {
                pushes: 0,
                pulls: 0,
                push_p50_ms: None,
                push_p99_ms: None,
                pull_p50_ms: None,
                pull_p99_ms: None,
            },
            series: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftless_protocol::messages::{Applied, Rejected};
    use driftless_protocol::problem::{Problem, ProblemType};

    fn applied(op: &str, seq: u64) -> MutationResult {
        MutationResult::Applied(Applied {
            op_id: format!("op-0000-{op}").parse().unwrap(),
            change_seq: seq,
        })
    }

    fn rejected(op: &str, kind: ProblemType) -> MutationResult {
        MutationResult::Rejected(Rejected {
            op_id: format!("op-0000-{op}").parse().unwrap(),
            problem: Problem::new(kind, "the value 'secret' is not allowed"),
        })
    }

    #[test]
    fn a_lagging_client_is_behind_by_changes_and_seconds() {
        let stats = Stats::default();
        stats.note_push("s", "ada", "c-a", &[applied("o1", 1)], 10_000);
        stats.note_pull("s", "bob", Some("c-b"), false, 1, 11_000);
        stats.note_push(
            "s",
            "ada",
            "c-a",
            &[applied("o2", 2), applied("o3", 3)],
            20_000,
        );
        let v = stats.space_view("s", Some(3), 50_000);
        let b = v.clients.iter().find(|c| c.client_id == "c-b").unwrap();
        assert_eq!((b.lag_changes, b.lag_s), (Some(2), Some(30)));
        assert_eq!(b.user, "bob");
        let a = v.clients.iter().find(|c| c.client_id == "c-a").unwrap();
        assert_eq!(
            (a.applied, a.lag_changes),
            (3, None),
            "never pulled: unavailable"
        );
    }

    #[test]
    fn rejections_are_counted_by_type_without_their_detail() {
        let stats = Stats::default();
        let results = [
            rejected("o1", ProblemType::ClockSkew),
            rejected("o2", ProblemType::InvalidMutation),
        ];
        stats.note_push("s", "ada", "c-a", &results, 1);
        let v = stats.space_view("s", Some(0), 2);
        assert_eq!(v.rejected, 2);
        assert_eq!(v.signals.clock_skew_refusals, 1);
        assert_eq!(v.latest_rejections[0].op_id, "op-0000-o2", "newest first");
        assert_eq!(v.rejections_by_type.len(), 2);
        let json = serde_json::to_string(&v).unwrap();
        assert!(
            !json.contains("secret"),
            "a Problem's detail may quote a value: {json}"
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let stats = Stats::default();
        for i in 0..CLIENTS_MAX + 5 {
            stats.note_pull("s", "u", Some(&format!("c{i}")), true, 0, i as u64);
        }
        for i in 0..LATEST_REJECTIONS + 3 {
            stats.note_push(
                "s",
                "u",
                "c",
                &[rejected(&format!("o{i}"), ProblemType::InvalidMutation)],
                1,
            );
        }
        for m in 0..(MINUTES as u64 + 10) {
            stats.note_request("s", Some(Kind::Push), 200, 3, m * 60_000);
        }
        let v = stats.space_view("s", Some(0), (MINUTES as u64 + 9) * 60_000);
        assert_eq!(v.clients.len(), CLIENTS_MAX);
        assert_eq!(v.clients_forgotten, 6);
        assert_eq!(v.latest_rejections.len(), LATEST_REJECTIONS);
        assert_eq!(v.series.len(), MINUTES);
        assert_eq!(v.hour.push_p50_ms, Some(5));
        for i in 0..SPACES_MAX + 2 {
            stats.note_cursor_expired(&format!("space{i}"));
        }
        assert_eq!(stats.spaces_untracked(), 3);
    }

    #[test]
    fn a_pull_from_no_cursor_after_pulling_is_a_resync() {
        let stats = Stats::default();
        stats.note_pull("s", "u", Some("c"), false, 5, 1);
        stats.note_pull("s", "u", Some("c"), true, 6, 2);
        assert_eq!(stats.space_view("s", Some(6), 3).signals.resyncs, 0);
        stats.note_pull("s", "u", Some("c"), false, 6, 4);
        assert_eq!(stats.space_view("s", Some(6), 5).signals.resyncs, 1);
    }
}
