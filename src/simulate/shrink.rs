//! `--shrink`: reduces a failing scenario to a small one that breaks the same invariant.
//!
//! Delta debugging over the event list (Zeller's ddmin, simplified): drop halves, then smaller
//! and smaller chunks, down to single events, keeping every removal after which the SAME
//! invariant still breaks; then drop whole Clients (their events go, the others are
//! renumbered), then calm the weather (no faults at all, else each rate halved), and drop single
//! events once more if that helped. Every trial is a full deterministic run of the candidate
//! list, so the result replays exactly.

use super::{run, Event, Invariant, Scenario, Weather};

/// What shrinking found.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The smallest scenario found that still breaks the invariant.
    pub scenario: Scenario,
    /// How many candidate scenarios were run.
    pub trials: usize,
}

struct Shrinker {
    target: Invariant,
    trials: usize,
    trials_max: usize,
}

impl Shrinker {
    /// Whether `s` still breaks the target invariant (`false` once the budget is spent).
    fn fails(&mut self, s: &Scenario) -> Result<bool, String> {
        if self.trials >= self.trials_max {
            return Ok(false);
        }
        self.trials += 1;
        let out = run(s, false, true)?;
        Ok(out.violation.map(|v| v.invariant) == Some(self.target))
    }

    /// Drops chunks of events, halving the chunk size down to one event.
    fn drop_events(&mut self, s: &mut Scenario) -> Result<bool, String> {
        let mut changed = false;
        let mut chunk = s.events.len().div_ceil(2).max(1);
        loop {
            let mut i = 0;
            while i < s.events.len() {
                let mut candidate = s.clone();
                let end = (i + chunk).min(candidate.events.len());
                candidate.events.drain(i..end);
                if self.fails(&candidate)? {
                    *s = candidate;
                    changed = true;
                } else {
                    i += chunk;
                }
            }
            if chunk == 1 {
                return Ok(changed);
            }
            chunk = chunk.div_ceil(2);
        }
    }

    /// Drops whole Clients, highest first.
    fn drop_clients(&mut self, s: &mut Scenario) -> Result<bool, String> {
        let mut changed = false;
        for gone in (0..s.clients).rev() {
            if s.clients == 1 {
                break;
            }
            let candidate = Scenario {
                seed: s.seed,
                clients: s.clients - 1,
                events: s
                    .events
                    .iter()
                    .filter_map(|(n, e)| Some((*n, e.without_client(gone)?)))
                    .collect(),
            };
            if self.fails(&candidate)? {
                *s = candidate;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Replaces each weather with a calm one, else halves its rates.
    fn calm_weather(&mut self, s: &mut Scenario) -> Result<bool, String> {
        let mut changed = false;
        for i in 0..s.events.len() {
            let (n, Event::Weather(w)) = &s.events[i] else {
                continue;
            };
            let halved = Weather {
                drop_request_pct: w.drop_request_pct / 2,
                drop_response_pct: w.drop_response_pct / 2,
                duplicate_pct: w.duplicate_pct / 2,
                delay_ms_max: w.delay_ms_max / 2,
            };
            for calmer in [Weather::default(), halved] {
                if s.events[i].1 == Event::Weather(calmer.clone()) {
                    break;
                }
                let mut candidate = s.clone();
                candidate.events[i] = (*n, Event::Weather(calmer));
                if self.fails(&candidate)? {
                    *s = candidate;
                    changed = true;
                    break;
                }
            }
        }
        Ok(changed)
    }
}

/// Shrinks `failing`, which breaks `target`, running at most `trials_max` candidates.
pub fn shrink(failing: &Scenario, target: Invariant, trials_max: usize) -> Result<Shrunk, String> {
    let mut s = failing.clone();
    let mut k = Shrinker {
        target,
        trials: 0,
        trials_max,
    };
    k.drop_events(&mut s)?;
    let fewer = k.drop_clients(&mut s)?;
    let calmer = k.calm_weather(&mut s)?;
    if fewer || calmer {
        k.drop_events(&mut s)?;
    }
    Ok(Shrunk {
        scenario: s,
        trials: k.trials,
    })
}
