//! The Driftless conformance suite: checks a running Server against protocol v1.
//!
//! It talks to the Server only over HTTP and gets Tokens only from a [`TokenSource`] (for third
//! parties: their own command), so it can never pass by sharing code with the reference server.
//! Each [`Case`] cites the requirement IDs it checks and their level; [`run`] selects cases, runs
//! them in a fresh random Space each, and grades them: pass, fail (a MUST broken), warn (a SHOULD
//! not met), skipped (an optional feature the Server does not offer) or errored (the case could
//! not run). A seed makes every random choice replayable.

pub mod cases;
pub mod client;
pub mod client_kit;
pub mod concurrent;
pub mod html;
pub mod proxy;
pub mod raw;

pub use cases::NOT_CHECKABLE;
pub mod report;
pub mod spec_text;

use std::time::{Duration, Instant};

pub use client::{Ctx, TokenSource};
pub use report::{Evidence, Exchange, Grade, Mismatch, Report, Summary};

/// The level of a case: that of the requirements it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// A MUST (also MUST NOT, REQUIRED, SHALL).
    Must,
    /// A SHOULD (also SHOULD NOT, RECOMMENDED).
    Should,
    /// A MAY (OPTIONAL).
    May,
}

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The Server broke the requirement; the text says how.
    Fail(String),
    /// The Server lacks an optional feature the case needs.
    Skip(String),
    /// The case itself could not run (transport failure, Token command failure, ...).
    Error(String),
}

/// What a case returns.
pub type CaseResult = Result<(), Verdict>;

/// One conformance case.
pub struct Case {
    /// A stable ID, e.g. `push.replay-returns-stored-outcome`.
    pub id: &'static str,
    /// The requirement IDs it checks.
    pub requirements: &'static [&'static str],
    /// Its level.
    pub level: Level,
    /// One line: what it checks.
    pub description: &'static str,
    /// The check.
    pub run: fn(&mut Ctx) -> CaseResult,
}

/// What to run and how.
pub struct Options {
    /// Base URL of the Server, e.g. `http://127.0.0.1:7878`.
    pub server: String,
    /// Where Tokens come from.
    pub tokens: Box<dyn TokenSource>,
    /// Timeout of each HTTP request.
    pub timeout: Duration,
    /// Seed of every random choice (Space names, scenarios).
    pub seed: u64,
    /// Glob patterns of case IDs to run (empty: all).
    pub run: Vec<String>,
    /// Glob patterns of case IDs to skip.
    pub skip: Vec<String>,
    /// PEM text of the only certificates to trust for HTTPS (a private CA); `None`: the bundled
    /// Mozilla roots.
    pub ca_pem: Option<Vec<u8>>,
}

/// Whether a case ID matches a glob (`*` matches any run of characters, `?` one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// What is known of a case before it runs: enough to select and list the Server suite's
/// [`Case`]s and the client kit's [`client_kit::ClientCase`]s alike.
pub trait Described {
    /// Its stable ID.
    fn id(&self) -> &'static str;
    /// The requirement IDs it checks.
    fn requirements(&self) -> &'static [&'static str];
    /// Its level.
    fn level(&self) -> Level;
    /// One line: what it checks.
    fn description(&self) -> &'static str;
}

/// Implements [`Described`] for a case struct with the fields `id`, `requirements`, `level`
/// and `description` (the Server suite's [`Case`], the client kit's `ClientCase`).
macro_rules! described {
    ($case:ty) => {
        impl $crate::Described for $case {
            fn id(&self) -> &'static str {
                self.id
            }
            fn requirements(&self) -> &'static [&'static str] {
                self.requirements
            }
            fn level(&self) -> $crate::Level {
                self.level
            }
            fn description(&self) -> &'static str {
                self.description
            }
        }
    };
}
pub(crate) use described;

described!(Case);

/// The cases `run` and `skip` select (glob patterns on the ID), in suite order.
pub fn select<'a, C: Described>(all: &'a [C], run: &[String], skip: &[String]) -> Vec<&'a C> {
    all.iter()
        .filter(|c| run.is_empty() || run.iter().any(|p| glob_match(p, c.id())))
        .filter(|c| !skip.iter().any(|p| glob_match(p, c.id())))
        .collect()
}

/// The `--list` output of `cases`: one line each (`ID Level [REQ ...] description`), or with
/// `json` the document `{"cases": [{id, requirements, level, description}], "not_checkable":
/// [{requirement, reason}]}` that names the MUSTs no case can check from outside.
pub fn listing<C: Described>(cases: &[&C], not_checkable: &[(&str, &str)], json: bool) -> String {
    if json {
        let cases: Vec<serde_json::Value> = cases
            .iter()
            .map(|c| {
                serde_json::json!({"id": c.id(), "requirements": c.requirements(),
                    "level": c.level(), "description": c.description()})
            })
            .collect();
        let not_checkable: Vec<serde_json::Value> = not_checkable
            .iter()
            .map(|(r, why)| serde_json::json!({"requirement": r, "reason": why}))
            .collect();
        let doc = serde_json::json!({"cases": cases, "not_checkable": not_checkable});
        // A Value of strings and arrays always serialises.
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    } else {
        cases
            .iter()
            .map(|c| {
                format!(
                    "{} {:?} [{}] {}\n",
                    c.id(),
                    c.level(),
                    c.requirements().join(" "),
                    c.description()
                )
            })
            .collect()
    }
}

/// Runs the selected cases against the Server. `progress` is called after each case.
pub fn run(
    options: Options,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Report, String> {
    let all = cases::all();
    let selected = select(&all, &options.run, &options.skip);
    if selected.is_empty() {
        return Err(
            "no case matches the --run/--skip selection; a run that checks nothing is never green"
                .into(),
        );
    }
    let mut ctx = Ctx::connect_tls(
        &options.server,
        options.tokens,
        options.timeout,
        options.seed,
        options.ca_pem.as_deref(),
    )?;
    ctx.preflight()?;
    let protocol_version = ctx.discovery()["protocol_versions"]
        .as_array()
        .and_then(|v| v.first())
        .and_then(|v| v.as_str())
        .unwrap_or("unknown")
        .to_owned();
    let mut results = Vec::with_capacity(selected.len());
    for (i, case) in selected.iter().enumerate() {
        ctx.begin_case(case.id);
        let start = Instant::now();
        let outcome = (case.run)(&mut ctx);
        let grade = match (outcome, case.level) {
            (Ok(()), _) => Grade::pass(),
            (Err(Verdict::Fail(d)), Level::Must) => Grade::fail(d),
            (Err(Verdict::Fail(d)), _) => Grade::warn(d),
            (Err(Verdict::Skip(d)), _) => Grade::skipped(d),
            (Err(Verdict::Error(d)), _) => Grade::errored(d),
        };
        results.push(
            report::CaseReport::new(case, grade, start.elapsed())
                .with_evidence(ctx.take_evidence()),
        );
        progress(i + 1, selected.len(), case.id);
    }
    Ok(Report::new(
        options.server,
        protocol_version,
        options.seed,
        results,
    ))
}
