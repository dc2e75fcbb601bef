//! Reports: text for people, JSON for tools, JUnit XML for CI systems; and the exit code.

use std::time::Duration;

use serde::Serialize;

use crate::{Case, Level};

/// The grade of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grade {
    /// `pass`, `fail`, `warn`, `skipped` or `errored`.
    pub outcome: &'static str,
    /// Why, for anything but a pass.
    pub detail: String,
}

impl Grade {
    /// Passed.
    pub fn pass() -> Self {
        Self {
            outcome: "pass",
            detail: String::new(),
        }
    }
    /// A MUST broken.
    pub fn fail(d: String) -> Self {
        Self {
            outcome: "fail",
            detail: d,
        }
    }
    /// A SHOULD (or MAY) not met.
    pub fn warn(d: String) -> Self {
        Self {
            outcome: "warn",
            detail: d,
        }
    }
    /// An optional feature the Server lacks; never counted as a pass.
    pub fn skipped(d: String) -> Self {
        Self {
            outcome: "skipped",
            detail: d,
        }
    }
    /// The case could not run.
    pub fn errored(d: String) -> Self {
        Self {
            outcome: "errored",
            detail: d,
        }
    }
}

/// One case in a report (and, without outcome, in `--list --format json`).
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// The case ID.
    pub id: String,
    /// The requirement IDs it checks.
    pub requirements: Vec<String>,
    /// MUST, SHOULD or MAY.
    pub level: Level,
    /// One line: what it checks.
    pub description: String,
    /// The grade.
    pub outcome: &'static str,
    /// Why, for anything but a pass.
    pub detail: String,
    /// How long it took.
    pub duration_ms: u64,
}

impl CaseReport {
    /// The report of a case that ran.
    pub fn new(case: &Case, grade: Grade, took: Duration) -> Self {
        Self {
            id: case.id.to_owned(),
            requirements: case.requirements.iter().map(|s| s.to_string()).collect(),
            level: case.level,
            description: case.description.to_owned(),
            outcome: grade.outcome,
            detail: grade.detail,
            duration_ms: took.as_millis() as u64,
        }
    }
}

/// Counts per grade.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Passed.
    pub passed: usize,
    /// MUST failures.
    pub failed: usize,
    /// SHOULD deviations.
    pub warned: usize,
    /// Optional features absent.
    pub skipped: usize,
    /// Could not run.
    pub errored: usize,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The Server's base URL.
    pub server: String,
    /// The protocol version the Server announced first.
    pub protocol_version: String,
    /// The seed of every random choice; pass `--seed` to replay.
    pub seed: u64,
    /// Counts per grade.
    pub summary: Summary,
    /// Every case, in suite order.
    pub cases: Vec<CaseReport>,
}

impl Report {
    /// A report from case results.
    pub fn new(
        server: String,
        protocol_version: String,
        seed: u64,
        cases: Vec<CaseReport>,
    ) -> Self {
        let mut summary = Summary::default();
        for c in &cases {
            match c.outcome {
                "pass" => summary.passed += 1,
                "fail" => summary.failed += 1,
                "warn" => summary.warned += 1,
                "skipped" => summary.skipped += 1,
                _ => summary.errored += 1,
            }
        }
        Self {
            server,
            protocol_version,
            seed,
            summary,
            cases,
        }
    }

    /// 0 when no MUST failed and every case ran; 1 when a MUST failed; 2 when a case could not
    /// run (the run is then not evidence of conformance).
    pub fn exit_code(&self) -> u8 {
        if self.summary.failed > 0 {
            1
        } else if self.summary.errored > 0 {
            2
        } else {
            0
        }
    }

    /// The JSON report.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }

    /// The text report; `color` adds ANSI colours to the grades.
    pub fn to_text(&self, color: bool) -> String {
        let paint = |outcome: &str| {
            let code = match outcome {
                "pass" => "32",
                "fail" => "31",
                "warn" => "33",
                "skipped" => "36",
                _ => "35",
            };
            if color {
                format!("\x1b[{code}m{outcome:>7}\x1b[0m")
            } else {
                format!("{outcome:>7}")
            }
        };
        let mut out = String::new();
        for c in &self.cases {
            out.push_str(&format!(
                "{} {} [{}] {}\n",
                paint(c.outcome),
                c.id,
                c.requirements.join(" "),
                c.description
            ));
            if !c.detail.is_empty() {
                out.push_str(&format!("        {}\n", c.detail));
            }
        }
        let s = &self.summary;
        out.push_str(&format!(
            "\nserver {} (protocol {}), seed {}\n{} passed, {} failed, {} warned, {} skipped, {} errored\n",
            self.server, self.protocol_version, self.seed, s.passed, s.failed, s.warned, s.skipped, s.errored
        ));
        out
    }

    /// The JUnit XML report: one testcase per case; fail and errored as failures and errors,
    /// warn and skipped as skipped with a message.
    pub fn to_junit(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let total_ms: u64 = self.cases.iter().map(|c| c.duration_ms).sum();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&format!(
            "<testsuite name=\"driftless-conformance\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">\n",
            self.cases.len(),
            self.summary.failed,
            self.summary.errored,
            self.summary.skipped + self.summary.warned,
            total_ms as f64 / 1000.0
        ));
        out.push_str(&format!(
            "  <properties><property name=\"server\" value=\"{}\"/><property name=\"seed\" value=\"{}\"/></properties>\n",
            esc(&self.server),
            self.seed
        ));
        for c in &self.cases {
            out.push_str(&format!(
                "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
                esc(&c.requirements.join(" ")),
                esc(&c.id),
                c.duration_ms as f64 / 1000.0
            ));
            match c.outcome {
                "fail" => out.push_str(&format!("<failure message=\"{}\"/>", esc(&c.detail))),
                "errored" => out.push_str(&format!("<error message=\"{}\"/>", esc(&c.detail))),
                "warn" | "skipped" => out.push_str(&format!(
                    "<skipped message=\"{}: {}\"/>",
                    c.outcome,
                    esc(&c.detail)
                )),
                _ => {}
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("</testsuite>\n");
        out
    }
}
