//! The sync-health dashboard of the reference server: `GET /dashboard` serves one
//! self-contained page (HTML, CSS and JS embedded in the binary; inline SVG charts; nothing
//! fetched from elsewhere), and `GET /dashboard/api/stats` the JSON it polls.
//!
//! Not part of the protocol (see `docs/dashboard.md`): a diagnostic of this server. The JSON
//! covers the Spaces on which the bearer Token grants `admin` (`[AUTH-4]` Scopes), each with
//! the in-memory [`crate::stats`] and the Space facts read from storage; a Token without any
//! `admin` Grant gets `forbidden` (403). It never holds a value or a Token: Client IDs, Users,
//! Op IDs, Problem types, counts and times only. A number the server cannot give is `null`.

use std::collections::BTreeMap;
use std::sync::Arc;

use driftless_protocol::messages::{Retention, Scope, TokenClaims};
use driftless_protocol::problem::{Problem, ProblemType};
use serde::Serialize;

use crate::service::Service;
use crate::stats::SpaceView;
use crate::storage::Storage;

/// The page: HTML with its CSS and JS inline.
pub const PAGE: &str = include_str!("page.html");

/// Records scanned at most per Space for the Record, tombstone and conflict counts; beyond it
/// those counts are `null` (unavailable) rather than slow.
pub const FACTS_SCAN_RECORDS_MAX: usize = 10_000;

/// What storage knows about a Space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facts {
    /// Records that exist (`null`: more than [`FACTS_SCAN_RECORDS_MAX`] Records).
    pub records: Option<u64>,
    /// Tombstones still kept.
    pub tombstones: Option<u64>,
    /// Records with open `keep_both` conflicts.
    pub open_conflicts: Option<u64>,
    /// The latest Change Sequence.
    pub latest_change_seq: u64,
    /// The Horizon (HLC text), if the Space was ever compacted.
    pub horizon: Option<String>,
    /// Cursors before this position have expired.
    pub compaction_point: u64,
    /// The retention this server announces.
    pub retention: Retention,
    /// Why a `null` count is unavailable, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// One Space on the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpaceEntry {
    /// Storage facts (`null` when storage could not be read).
    pub facts: Option<Facts>,
    /// Traffic since the server started.
    #[serde(flatten)]
    pub stats: SpaceView,
}

/// The sums over every Space shown.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Overall {
    /// Spaces shown.
    pub spaces: usize,
    /// Clients seen.
    pub clients: usize,
    /// Mutations applied.
    pub applied: u64,
    /// Replays answered `duplicate`.
    pub duplicate: u64,
    /// Mutations rejected.
    pub rejected: u64,
    /// Duplicates among all results.
    pub replay_ratio: Option<f64>,
    /// Requests answered.
    pub requests: u64,
    /// Of them, 429.
    pub rate_limited: u64,
    /// Mutations rejected `clock-skew`.
    pub clock_skew_refusals: u64,
    /// Pulls refused `cursor-expired`.
    pub cursor_expiries: u64,
    /// Resyncs.
    pub resyncs: u64,
    /// Records with open `keep_both` conflicts (`null` if a Space's count is unavailable).
    pub open_conflicts: Option<u64>,
    /// Rejections by Problem type.
    pub rejections_by_type: BTreeMap<String, u64>,
}

/// `GET /dashboard/api/stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsResponse {
    /// When this was computed, ms since the Unix epoch.
    pub generated_at_ms: u64,
    /// The User of the Token.
    pub user: String,
    /// Sums over `spaces`.
    pub overall: Overall,
    /// The Spaces the Token administers, by name.
    pub spaces: Vec<SpaceEntry>,
    /// Spaces whose traffic went uncounted (the server tracks at most
    /// [`crate::stats::SPACES_MAX`]).
    pub spaces_untracked: u64,
}

/// The statistics for the Token's `claims`: its `admin` Spaces. `forbidden` without any.
pub async fn stats<S: Storage>(
    service: &Arc<Service<S>>,
    claims: &TokenClaims,
) -> Result<StatsResponse, Problem> {
    let spaces: Vec<String> = claims
        .grants
        .iter()
        .filter(|(_, scope)| **scope == Scope::Admin)
        .map(|(space, _)| space.as_str().to_owned())
        .collect();
    if spaces.is_empty() {
        return Err(Problem::new(
            ProblemType::Forbidden,
            "the dashboard needs a token with the admin scope on at least one space",
        ));
    }
    let retention = service.config().retention.clone();
    let storage = service.storage().clone();
    let names = spaces.clone();
    let facts: Vec<Option<Facts>> = tokio::task::spawn_blocking(move || {
        names
            .iter()
            .map(|space| read_facts(&*storage, space, &retention))
            .collect()
    })
    .await
    .map_err(|_| Problem::new(ProblemType::Internal, "the space facts could not be read"))?;
    let now_ms = service.clock().now_ms();
    let mut overall = Overall {
        spaces: spaces.len(),
        open_conflicts: Some(0),
        ..Default::default()
    };
    let mut entries = Vec::with_capacity(spaces.len());
    for (space, facts) in spaces.iter().zip(facts) {
        let view =
            service
                .stats()
                .space_view(space, facts.as_ref().map(|f| f.latest_change_seq), now_ms);
        overall.clients += view.clients.len();
        overall.applied += view.applied;
        overall.duplicate += view.duplicate;
        overall.rejected += view.rejected;
        overall.requests += view.signals.requests;
        overall.rate_limited += view.signals.rate_limited;
        overall.clock_skew_refusals += view.signals.clock_skew_refusals;
        overall.cursor_expiries += view.signals.cursor_expiries;
        overall.resyncs += view.signals.resyncs;
        for (t, n) in &view.rejections_by_type {
            *overall.rejections_by_type.entry(t.clone()).or_default() += n;
        }
        overall.open_conflicts = match (overall.open_conflicts, facts.as_ref()) {
            (
                Some(sum),
                Some(Facts {
                    open_conflicts: Some(n),
                    ..
                }),
            ) => Some(sum + n),
            _ => None,
        };
        entries.push(SpaceEntry { facts, stats: view });
    }
    let results = overall.applied + overall.duplicate + overall.rejected;
    overall.replay_ratio = (results > 0).then(|| overall.duplicate as f64 / results as f64);
    Ok(StatsResponse {
        generated_at_ms: now_ms,
        user: claims.sub.clone(),
        overall,
        spaces: entries,
        spaces_untracked: service.stats().spaces_untracked(),
    })
}

/// A Space's facts from one snapshot; `None` when storage fails (the page says unavailable).
fn read_facts<S: Storage>(storage: &S, space: &str, retention: &Retention) -> Option<Facts> {
    let read = storage.read(space, |tx| {
        let meta = tx.meta()?;
        let records = tx.records_changed_after(0, FACTS_SCAN_RECORDS_MAX + 1)?;
        Ok((meta, records))
    });
    let (meta, records) = match read {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "dashboard: space facts unreadable");
            return None;
        }
    };
    let mut facts = Facts {
        records: None,
        tombstones: None,
        open_conflicts: None,
        latest_change_seq: meta.latest_seq,
        horizon: meta.horizon.map(|h| h.to_string()),
        compaction_point: meta.compaction_point,
        retention: retention.clone(),
        unavailable: None,
    };
    if records.len() > FACTS_SCAN_RECORDS_MAX {
        facts.unavailable = Some(format!(
            "more than {FACTS_SCAN_RECORDS_MAX} records; counts are not scanned"
        ));
    } else {
        let live = records.iter().filter(|r| r.view.exists).count() as u64;
        facts.records = Some(live);
        facts.tombstones = Some(records.len() as u64 - live);
        facts.open_conflicts = Some(
            records
                .iter()
                .filter(|r| r.view.conflicts.as_ref().is_some_and(|c| !c.is_empty()))
                .count() as u64,
        );
    }
    Some(facts)
}
