//! Reports: text for people, JSON for tools, JUnit XML for CI systems, one self-contained HTML
//! page; and the exit code.
//!
//! # The JSON report
//!
//! `{"server", "protocol_version", "seed", "summary": {"passed", "failed", "warned", "skipped",
//! "errored"}, "cases": [CaseReport]}`. Each case has `id`, `requirements`, `level`,
//! `description`, `outcome`, `detail` and `duration_ms`. A case that did not pass (`fail`, `warn`,
//! `errored`) also carries its evidence, each member only when there is something to show:
//! - `exchanges`: the last HTTP exchanges of the case, oldest first (at most
//!   [`EXCHANGES_KEPT`]), each [`Exchange`]: `method`, `path` (the request target), `request_body`,
//!   `status` (absent when no response came), `response_content_type`, `response_body` and
//!   `error` (the transport failure, if any). Bodies are cut at [`BODY_KEPT_BYTES`] bytes with a
//!   note of the full length; no request header is kept, so a Token never appears.
//! - `mismatch`: [`Mismatch`], what the case compared: `what`, `expected`, `actual`, and for a
//!   digest comparison `canonical`, the canonical text (RFC 8785) the expected digest hashes.

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

/// How many of a case's last HTTP exchanges a report keeps.
pub const EXCHANGES_KEPT: usize = 4;

/// How many bytes of a request or response body an [`Exchange`] keeps.
pub const BODY_KEPT_BYTES: usize = 2048;

/// One HTTP exchange of a case as a report shows it. No request header is kept: a Token (the
/// `Authorization` header) never reaches a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exchange {
    /// The request method, e.g. `POST`.
    pub method: String,
    /// The request target: path and query, e.g. `/v1/spaces/s/pull?limit=10`.
    pub path: String,
    /// The request body as text, cut at [`BODY_KEPT_BYTES`]; empty when there was none.
    pub request_body: String,
    /// The response status; `None` when no response came (see `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The response `Content-Type`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_content_type: Option<String>,
    /// The response body as text, cut at [`BODY_KEPT_BYTES`].
    pub response_body: String,
    /// The transport failure, when no response came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Exchange {
    /// `text` cut at [`BODY_KEPT_BYTES`] on a character boundary, with the full length noted.
    pub fn trim_body(text: &str) -> String {
        if text.len() <= BODY_KEPT_BYTES {
            return text.to_owned();
        }
        let mut end = BODY_KEPT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes in all)", &text[..end], text.len())
    }

    /// The request line and status, e.g. `POST /v1/spaces/s/push -> 200`.
    pub fn summary_line(&self) -> String {
        match (self.status, &self.error) {
            (Some(s), _) => format!("{} {} -> {s}", self.method, self.path),
            (None, Some(e)) => format!("{} {} -> no response: {e}", self.method, self.path),
            (None, None) => format!("{} {} -> no response", self.method, self.path),
        }
    }

    /// The exchange as plain text, for JUnit and the text of a failure.
    pub fn to_text(&self) -> String {
        let mut out = format!("> {} {}\n", self.method, self.path);
        if !self.request_body.is_empty() {
            out.push_str(&format!("> {}\n", self.request_body));
        }
        match self.status {
            Some(s) => out.push_str(&format!(
                "< {s} {}\n",
                self.response_content_type.as_deref().unwrap_or("")
            )),
            None => out.push_str(&format!(
                "< no response: {}\n",
                self.error.as_deref().unwrap_or("")
            )),
        }
        if !self.response_body.is_empty() {
            out.push_str(&format!("< {}\n", self.response_body));
        }
        out
    }
}

/// What a case compared when it failed: the value it expected and the one it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// What was compared, e.g. `status of push` or `digest of things/r1`.
    pub what: String,
    /// The expected value, as text (JSON where the value is JSON).
    pub expected: String,
    /// The value the Server gave, as text.
    pub actual: String,
    /// For a digest: the canonical text (RFC 8785) whose SHA-256 the expected digest is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canonical: Option<String>,
}

/// What a case leaves for its report: its last exchanges and, when it compared values, the
/// mismatch that failed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The last exchanges, oldest first, at most [`EXCHANGES_KEPT`].
    pub exchanges: Vec<Exchange>,
    /// The last failed comparison.
    pub mismatch: Option<Mismatch>,
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
    /// For a case that did not pass: its last HTTP exchanges, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exchanges: Vec<Exchange>,
    /// For a case that did not pass: the comparison that failed it, if it compared values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<Mismatch>,
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
            exchanges: Vec::new(),
            mismatch: None,
        }
    }

    /// This report with the case's evidence, kept only when the case did not pass (`fail`,
    /// `warn`, `errored`): a passing or skipped case carries none.
    pub fn with_evidence(mut self, evidence: Evidence) -> Self {
        if matches!(self.outcome, "fail" | "warn" | "errored") {
            self.exchanges = evidence.exchanges;
            self.mismatch = evidence.mismatch;
        }
        self
    }

    /// The evidence as plain text: expected vs actual, then the exchanges.
    pub fn evidence_text(&self) -> String {
        let mut out = String::new();
        if let Some(m) = &self.mismatch {
            out.push_str(&format!(
                "{}\nexpected: {}\nactual:   {}\n",
                m.what, m.expected, m.actual
            ));
            if let Some(c) = &m.canonical {
                out.push_str(&format!("canonical text: {c}\n"));
            }
        }
        for x in &self.exchanges {
            out.push_str(&x.to_text());
        }
        out
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
        let esc = xml_escape;
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
            // The evidence (expected vs actual, the exchanges) goes in the failure's or error's
            // text, and for a warning in <system-out>, which JUnit viewers show beside the case.
            let evidence = esc(&c.evidence_text());
            match c.outcome {
                "fail" => out.push_str(&format!(
                    "<failure message=\"{}\">{evidence}</failure>",
                    esc(&c.detail)
                )),
                "errored" => out.push_str(&format!(
                    "<error message=\"{}\">{evidence}</error>",
                    esc(&c.detail)
                )),
                "warn" | "skipped" => out.push_str(&format!(
                    "<skipped message=\"{}: {}\"/>",
                    c.outcome,
                    esc(&c.detail)
                )),
                _ => {}
            }
            if c.outcome == "warn" && !evidence.is_empty() {
                out.push_str(&format!("<system-out>{evidence}</system-out>"));
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("</testsuite>\n");
        out
    }
}

/// `s` escaped for XML text and attribute values; control characters XML 1.0 cannot hold (a
/// Server's body may contain them) become U+FFFD.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}
