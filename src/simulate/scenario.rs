//! A scenario as data: the list of events a seed generates, executed afterwards.
//!
//! [`generate`] draws every choice of a scenario (who writes what, who goes offline, how long
//! time jumps, how bad the network is) from the seed first, as a list of [`Event`]s; the
//! simulator then executes the list. Only what the network and the Clients draw while an event
//! runs (which request is lost, Op IDs, backoff jitter) stays a seeded stream, and that stream
//! is reseeded at every event from (seed, the event's number), so removing one event does not
//! change the fate of the requests of the others. That is what lets `--shrink` drop events and
//! replay the rest deterministically. An event keeps its number when others are dropped, so a
//! shrunk list shows gaps where events were.
//!
//! The text form (one event a line, numbered) is what `--shrink` prints and `--replay FILE`
//! reads:
//!
//! ```text
//! seed 17
//! clients 3
//! 1 write c1 docs/r2 {"kind":"patch","set":{"title":"a"}}
//! 4 partition c0,c1
//! 9 sync c2
//! 17 heal
//! ```

use std::fmt;

use serde_json::Value;

use super::{random_effect, Rng, Weather};

/// One thing that happens in a scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The app of a Client writes `effect` on a Record.
    Write {
        /// The Client, by index.
        client: usize,
        /// The Collection.
        collection: String,
        /// The Record ID.
        record: String,
        /// The Effect, as the app passes it to `write`.
        effect: Value,
    },
    /// The app writes a value deeper than the Server's limit: no push can carry it
    /// (`[CLIENT-18]`); it must end in the dead letters.
    Poison(usize),
    /// A Client syncs once.
    Sync(usize),
    /// A Client goes offline (`true`) or comes back (`false`).
    Offline(usize, bool),
    /// These Clients are cut off from the Server together; the others are untouched.
    Partition(Vec<usize>),
    /// Every Client is back on the network.
    Heal,
    /// A Client crashes: its in-memory state is dropped and its store reopened.
    Crash(usize),
    /// The Server restarts: its in-memory state is dropped and its store reopened.
    RestartServer,
    /// The Server compacts what is past retention.
    Compact,
    /// Simulated time moves on, in milliseconds.
    Advance(u64),
    /// A Client's wall clock is set off the true time by this many milliseconds.
    Skew(usize, i64),
    /// The network's weather changes.
    Weather(Weather),
    /// The network holds the next request of this Client back (the Client sees it time out)
    /// and delivers it at the next `release`, after the Client has gone on without it.
    Hold(usize),
    /// The network delivers every request it holds, oldest first; their answers are lost.
    Release,
    /// A Client's disk fills up (`true`: its store refuses writes that need space) or is
    /// freed (`false`).
    DiskFull(usize, bool),
    /// Version 2 of the `docs` Collection Schema is registered: it renames `title` to
    /// `heading` and adds `rank` (default 0). Clients that have not learned it yet keep
    /// writing `title` under version 1.
    SchemaV2,
}

impl Event {
    /// The Clients this event names.
    pub fn clients(&self) -> Vec<usize> {
        match self {
            Self::Write { client, .. } => vec![*client],
            Self::Poison(c)
            | Self::Sync(c)
            | Self::Offline(c, _)
            | Self::Crash(c)
            | Self::Skew(c, _)
            | Self::DiskFull(c, _)
            | Self::Hold(c) => vec![*c],
            Self::Partition(cs) => cs.clone(),
            Self::Heal | Self::RestartServer | Self::Compact | Self::Advance(_) => vec![],
            Self::SchemaV2 => vec![],
            Self::Weather(_) | Self::Release => vec![],
        }
    }

    /// This event with Client `gone` removed and the Clients above it renumbered down, or
    /// `None` when it only concerns `gone`.
    pub fn without_client(&self, gone: usize) -> Option<Self> {
        let map = |c: usize| if c > gone { c - 1 } else { c };
        let mut e = self.clone();
        match &mut e {
            Self::Write { client, .. } => *client = map(*client),
            Self::Poison(c)
            | Self::Sync(c)
            | Self::Offline(c, _)
            | Self::Crash(c)
            | Self::Skew(c, _)
            | Self::DiskFull(c, _)
            | Self::Hold(c) => *c = map(*c),
            Self::Partition(cs) => {
                cs.retain(|c| *c != gone);
                for c in cs.iter_mut() {
                    *c = map(*c);
                }
                if cs.is_empty() {
                    return None;
                }
                return Some(e);
            }
            _ => return Some(e),
        }
        if self.clients().contains(&gone) {
            None
        } else {
            Some(e)
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Write {
                client,
                collection,
                record,
                effect,
            } => write!(f, "write c{client} {collection}/{record} {effect}"),
            Self::Poison(c) => write!(f, "poison c{c}"),
            Self::Sync(c) => write!(f, "sync c{c}"),
            Self::Offline(c, true) => write!(f, "offline c{c}"),
            Self::Offline(c, false) => write!(f, "online c{c}"),
            Self::Partition(cs) => {
                let names: Vec<String> = cs.iter().map(|c| format!("c{c}")).collect();
                write!(f, "partition {}", names.join(","))
            }
            Self::Heal => write!(f, "heal"),
            Self::Crash(c) => write!(f, "crash c{c}"),
            Self::RestartServer => write!(f, "restart server"),
            Self::Compact => write!(f, "compact"),
            Self::Advance(ms) => write!(f, "advance {ms}"),
            Self::Skew(c, ms) => write!(f, "skew c{c} {ms}"),
            Self::Weather(w) => write!(
                f,
                "weather drop-request={} drop-response={} duplicate={} delay-max={}",
                w.drop_request_pct, w.drop_response_pct, w.duplicate_pct, w.delay_ms_max
            ),
            Self::Hold(c) => write!(f, "hold c{c}"),
            Self::Release => write!(f, "release"),
            Self::DiskFull(c, true) => write!(f, "disk-full c{c}"),
            Self::DiskFull(c, false) => write!(f, "disk-freed c{c}"),
            Self::SchemaV2 => write!(f, "schema docs v2"),
        }
    }
}

fn parse_client(word: &str) -> Result<usize, String> {
    word.strip_prefix('c')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("expected a Client like c0, found {word:?}"))
}

fn parse_num<T: std::str::FromStr>(word: &str) -> Result<T, String> {
    word.parse()
        .map_err(|_| format!("expected a number, found {word:?}"))
}

impl std::str::FromStr for Event {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let line = line.trim();
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let words: Vec<&str> = rest.split_whitespace().collect();
        let word = |i: usize| {
            words
                .get(i)
                .copied()
                .ok_or_else(|| format!("{verb}: missing argument {}", i + 1))
        };
        Ok(match verb {
            "write" => {
                let (client, rest) = rest
                    .split_once(' ')
                    .ok_or("write: expected c<N> <collection>/<record> <effect>")?;
                let (target, effect) = rest
                    .trim()
                    .split_once(' ')
                    .ok_or("write: expected <collection>/<record> <effect>")?;
                let (collection, record) = target.split_once('/').ok_or_else(|| {
                    format!("write: expected <collection>/<record>, found {target:?}")
                })?;
                Self::Write {
                    client: parse_client(client)?,
                    collection: collection.to_owned(),
                    record: record.to_owned(),
                    effect: serde_json::from_str(effect.trim())
                        .map_err(|e| format!("write: the effect is not JSON: {e}"))?,
                }
            }
            "poison" => Self::Poison(parse_client(word(0)?)?),
            "sync" => Self::Sync(parse_client(word(0)?)?),
            "offline" => Self::Offline(parse_client(word(0)?)?, true),
            "online" => Self::Offline(parse_client(word(0)?)?, false),
            "partition" => Self::Partition(
                word(0)?
                    .split(',')
                    .map(parse_client)
                    .collect::<Result<_, _>>()?,
            ),
            "heal" => Self::Heal,
            "crash" => Self::Crash(parse_client(word(0)?)?),
            "restart" if rest == "server" => Self::RestartServer,
            "compact" => Self::Compact,
            "advance" => Self::Advance(parse_num(word(0)?)?),
            "skew" => Self::Skew(parse_client(word(0)?)?, parse_num(word(1)?)?),
            "weather" => {
                let mut w = Weather::default();
                for kv in &words {
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| format!("weather: expected key=value, found {kv:?}"))?;
                    let v = parse_num(v)?;
                    match k {
                        "drop-request" => w.drop_request_pct = v,
                        "drop-response" => w.drop_response_pct = v,
                        "duplicate" => w.duplicate_pct = v,
                        "delay-max" => w.delay_ms_max = v,
                        _ => return Err(format!("weather: unknown key {k:?}")),
                    }
                }
                Self::Weather(w)
            }
            "hold" => Self::Hold(parse_client(word(0)?)?),
            "release" => Self::Release,
            "schema" if rest == "docs v2" => Self::SchemaV2,
            "disk-full" => Self::DiskFull(parse_client(word(0)?)?, true),
            "disk-freed" => Self::DiskFull(parse_client(word(0)?)?, false),
            _ => return Err(format!("unknown event {verb:?}")),
        })
    }
}

/// A whole scenario: the seed of its network and Client randomness, its Clients, its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The seed the scenario was generated from; it also seeds the per-event streams.
    pub seed: u64,
    /// How many Clients.
    pub clients: usize,
    /// The events, in order, each with its number (from 1; it seeds the event's streams).
    pub events: Vec<(u64, Event)>,
}

impl fmt::Display for Scenario {
    /// The numbered text form `--replay` reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {}", self.seed)?;
        writeln!(f, "clients {}", self.clients)?;
        for (n, e) in &self.events {
            writeln!(f, "{n} {e}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;

    /// Reads the text form: `seed N`, `clients C`, then one event a line, each preceded by its
    /// number (without one: its line's place among the events); blank lines and lines starting
    /// with `#` are skipped.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut seed = None;
        let mut clients = None;
        let mut events = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |e: String| format!("line {}: {e}", n + 1);
            if let Some(v) = line.strip_prefix("seed ") {
                seed = Some(parse_num(v.trim()).map_err(at)?);
                continue;
            }
            if let Some(v) = line.strip_prefix("clients ") {
                clients = Some(parse_num(v.trim()).map_err(at)?);
                continue;
            }
            let (number, body) = match line.split_once(' ') {
                Some((num, rest)) if num.bytes().all(|b| b.is_ascii_digit()) => {
                    (parse_num(num).map_err(at)?, rest)
                }
                _ => (events.len() as u64 + 1, line),
            };
            events.push((number, body.parse::<Event>().map_err(at)?));
        }
        let scenario = Self {
            seed: seed.ok_or("the scenario has no `seed N` line")?,
            clients: clients.ok_or("the scenario has no `clients C` line")?,
            events,
        };
        if scenario.clients == 0 {
            return Err("a scenario needs at least 1 client".into());
        }
        if let Some(e) = scenario
            .events
            .iter()
            .map(|(_, e)| e)
            .find(|e| e.clients().iter().any(|c| *c >= scenario.clients))
        {
            return Err(format!(
                "event `{e}` names a Client beyond the scenario's {}",
                scenario.clients
            ));
        }
        Ok(scenario)
    }
}

/// A random Effect on a random Record of either Collection.
fn random_write(rng: &mut Rng, client: usize) -> Event {
    let (collection, record, effect) = random_effect(rng);
    Event::Write {
        client,
        collection,
        record,
        effect,
    }
}

/// The scenario of `seed`: the opening weather, then `steps` events. The same seed gives the
/// same list on every run and machine.
pub fn generate(seed: u64, clients: usize, steps: usize) -> Scenario {
    let mut rng = Rng(seed ^ 0x5ce7_a410_0000_0000);
    let mut events = vec![Event::Weather(Weather::random(&mut rng))];
    let mut offline = vec![false; clients];
    let mut full = vec![false; clients];
    let mut v2 = false;
    for _ in 0..steps {
        let c = rng.below(clients as u64) as usize;
        let e = match rng.below(100) {
            0..=43 => random_write(&mut rng, c),
            44..=45 => Event::Poison(c),
            46..=62 => Event::Sync(c),
            63..=66 => {
                offline[c] = !offline[c];
                Event::Offline(c, offline[c])
            }
            67..=68 => {
                if offline.iter().any(|o| *o) {
                    offline.iter_mut().for_each(|o| *o = false);
                    Event::Heal
                } else {
                    // A random non-empty subset, never every Client, so the rest sync on.
                    let mut cut: Vec<usize> = (0..clients).filter(|_| rng.chance(50)).collect();
                    if cut.is_empty() || cut.len() == clients {
                        cut = vec![c];
                    }
                    for i in &cut {
                        offline[*i] = true;
                    }
                    Event::Partition(cut)
                }
            }
            69..=71 => Event::Crash(c),
            72..=74 => Event::RestartServer,
            75..=77 => Event::Compact,
            78..=84 => {
                // Mostly seconds to minutes; sometimes past the retention horizon.
                Event::Advance(if rng.chance(15) {
                    86_400_000 + rng.below(86_400_000)
                } else {
                    rng.below(600_000)
                })
            }
            85..=87 => Event::Skew(c, rng.below(240_001) as i64 - 120_000),
            88..=89 => Event::Hold(c),
            90..=91 => Event::Release,
            92..=94 => {
                full[c] = !full[c];
                Event::DiskFull(c, full[c])
            }
            95 if !v2 => {
                v2 = true;
                Event::SchemaV2
            }
            _ => Event::Weather(Weather::random(&mut rng)),
        };
        events.push(e);
    }
    Scenario {
        seed,
        clients,
        events: (1..).zip(events).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_list() {
        assert_eq!(generate(7, 3, 60), generate(7, 3, 60));
        assert_ne!(generate(7, 3, 60), generate(8, 3, 60));
    }

    #[test]
    fn text_form_reads_back() {
        for seed in 0..50 {
            let s = generate(seed, 4, 80);
            let back: Scenario = s.to_string().parse().expect("the text form parses");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn event_naming_a_missing_client_is_refused() {
        let err = "seed 1\nclients 2\n1 sync c2\n"
            .parse::<Scenario>()
            .unwrap_err();
        assert!(err.contains("beyond"), "{err}");
    }

    #[test]
    fn removing_a_client_renumbers_the_others() {
        let e = Event::Partition(vec![0, 2]);
        assert_eq!(e.without_client(1), Some(Event::Partition(vec![0, 1])));
        assert_eq!(Event::Sync(1).without_client(1), None);
        assert_eq!(Event::Sync(2).without_client(1), Some(Event::Sync(1)));
    }
}
