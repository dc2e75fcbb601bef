//! The HTML report: one self-contained page (inline CSS and JS, nothing fetched) with the
//! summary at the top, a table of cases with their grades, filters by grade and area, each
//! failure with expected vs actual and its last exchanges, and the text of every cited
//! requirement.
//!
//! Requirement links: each requirement ID in the table links to `#req-ID` inside the page, where
//! the page quotes the requirement from the bundled spec and links to its chapter as
//! `{spec_base}/{chapter}.md#:~:text=%5BID%5D` (a text fragment: browsers scroll to the
//! `[ID]` marker; the spec's requirements are list items, which have no heading anchors).
//! Everything that comes from the Server or the run is HTML-escaped; the script only shows and
//! hides rows.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::report::{CaseReport, Report};
use crate::spec_text;

const STYLE: &str = r#"
:root{--pass:#1a7f37;--fail:#cf222e;--warn:#9a6700;--skipped:#0969da;--errored:#8250df;--line:#d0d7de;--muted:#57606a}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:16px;color:#1f2328;background:#fff}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:16px;margin:24px 0 8px}
.meta{color:var(--muted);margin-bottom:12px;word-break:break-all}
.summary{display:flex;flex-wrap:wrap;gap:8px;margin-bottom:12px}
.count{border:1px solid var(--line);border-radius:6px;padding:6px 12px;min-width:90px}
.count b{display:block;font-size:20px}
.filters{display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin:8px 0 12px}
.filters label{white-space:nowrap}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid var(--line);padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
.grade{font-weight:600;text-transform:uppercase;font-size:12px}
.g-pass{color:var(--pass)}.g-fail{color:var(--fail)}.g-warn{color:var(--warn)}.g-skipped{color:var(--skipped)}.g-errored{color:var(--errored)}
.id{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
.evidence td{background:#fff8f8}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:8px;margin:6px 0;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 8px}
.kv dt{color:var(--muted)}.kv dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
dl.reqs dt{font-family:ui-monospace,monospace;margin-top:8px}
dl.reqs dd{margin:2px 0 0 16px}
@media (max-width:640px){.desc,.level{display:none}th,td{padding:4px}}
"#;

const SCRIPT: &str = r#"
(function(){
  function apply(){
    var grades={};
    document.querySelectorAll('input[data-grade]').forEach(function(b){grades[b.dataset.grade]=b.checked;});
    var area=document.getElementById('area').value;
    var shown=0;
    document.querySelectorAll('tr.case').forEach(function(r){
      var on=grades[r.dataset.outcome]&&(area===''||r.dataset.area===area);
      r.hidden=!on; if(on){shown++;}
      var ev=document.getElementById('ev-'+r.dataset.index); if(ev){ev.hidden=!on;}
    });
    document.getElementById('shown').textContent=shown;
  }
  document.querySelectorAll('input[data-grade]').forEach(function(b){b.addEventListener('change',apply);});
  document.getElementById('area').addEventListener('change',apply);
  apply();
})();
"#;

/// `s` escaped for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The area of a case: its ID up to the first dot (`push.replay` → `push`).
fn area(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

/// A requirement ID as a URL fragment piece (IDs are `AREA-N`; anything else is escaped).
fn fragment(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_string()
            } else {
                format!("%{:02X}", c as u32 & 0xff)
            }
        })
        .collect()
}

impl Report {
    /// The HTML report. `spec_base` is the URL (absolute or relative to the report file) of the
    /// folder holding the spec chapters, e.g. `spec` when the report is written at the
    /// repository's root.
    pub fn to_html(&self, spec_base: &str) -> String {
        let s = &self.summary;
        let mut out = String::new();
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
        out.push_str("<title>Driftless conformance report</title><style>");
        out.push_str(STYLE);
        out.push_str("</style></head><body>\n<h1>Driftless conformance report</h1>\n");
        let _ = writeln!(
            out,
            "<div class=\"meta\">server <span class=\"id\">{}</span> · protocol {} · seed {} · exit code {}</div>",
            escape(&self.server),
            escape(&self.protocol_version),
            self.seed,
            self.exit_code()
        );
        out.push_str("<div class=\"summary\" id=\"summary\">");
        for (outcome, n, label) in [
            ("pass", s.passed, "passed"),
            ("fail", s.failed, "failed (MUST)"),
            ("warn", s.warned, "warned (SHOULD)"),
            ("skipped", s.skipped, "skipped (optional)"),
            ("errored", s.errored, "errored"),
        ] {
            let _ = write!(
                out,
                "<div class=\"count g-{outcome}\" data-count=\"{outcome}\"><b>{n}</b>{label}</div>"
            );
        }
        out.push_str("</div>\n<div class=\"filters\"><span>Show:</span>");
        for outcome in ["pass", "fail", "warn", "skipped", "errored"] {
            let _ = write!(
                out,
                "<label><input type=\"checkbox\" data-grade=\"{outcome}\" checked> {outcome}</label>"
            );
        }
        out.push_str("<label>area <select id=\"area\"><option value=\"\">all</option>");
        let areas: BTreeSet<&str> = self.cases.iter().map(|c| area(&c.id)).collect();
        for a in areas {
            let a = escape(a);
            let _ = write!(out, "<option value=\"{a}\">{a}</option>");
        }
        let _ = writeln!(
            out,
            "</select></label><span><span id=\"shown\">{}</span> of {} cases shown</span></div>",
            self.cases.len(),
            self.cases.len()
        );
        out.push_str("<table id=\"cases\"><thead><tr><th>grade</th><th>case</th><th class=\"level\">level</th><th>requirements</th><th class=\"desc\">description</th></tr></thead><tbody>\n");
        let mut cited = BTreeSet::new();
        for (i, c) in self.cases.iter().enumerate() {
            let reqs: Vec<String> = c
                .requirements
                .iter()
                .map(|r| {
                    cited.insert(r.clone());
                    format!(
                        "<a class=\"req\" href=\"#req-{}\">{}</a>",
                        fragment(r),
                        escape(r)
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "<tr class=\"case\" id=\"case-{id}\" data-index=\"{i}\" data-outcome=\"{o}\" data-area=\"{area}\"><td class=\"grade g-{o}\">{o}</td><td class=\"id\">{id}</td><td class=\"level\">{level:?}</td><td>{reqs}</td><td class=\"desc\">{desc}</td></tr>",
                id = escape(&c.id),
                o = escape(c.outcome),
                area = escape(area(&c.id)),
                level = c.level,
                reqs = reqs.join(" "),
                desc = escape(&c.description),
            );
            if c.outcome != "pass" {
                let _ = writeln!(
                    out,
                    "<tr class=\"evidence\" id=\"ev-{i}\"><td colspan=\"5\">{}</td></tr>",
                    evidence_html(c)
                );
            }
        }
        out.push_str("</tbody></table>\n<h2>Requirements cited</h2>\n<dl class=\"reqs\">\n");
        let base = spec_base.trim_end_matches('/');
        for id in &cited {
            let anchor = fragment(id);
            match spec_text::requirement(id) {
                Some(r) => {
                    let _ = writeln!(
                        out,
                        "<dt id=\"req-{anchor}\"><a href=\"{}/{}#:~:text=%5B{anchor}%5D\">[{}]</a> <span class=\"meta\">{}</span></dt><dd>{}</dd>",
                        escape(base),
                        escape(r.chapter),
                        escape(id),
                        escape(r.chapter),
                        escape(r.text)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "<dt id=\"req-{anchor}\">[{}]</dt><dd>not in the spec bundled with this suite</dd>",
                        escape(id)
                    );
                }
            }
        }
        out.push_str("</dl>\n<script>");
        out.push_str(SCRIPT);
        out.push_str("</script>\n</body></html>\n");
        out
    }
}

/// A case's detail, expected vs actual and exchanges, escaped.
fn evidence_html(c: &CaseReport) -> String {
    let mut out = format!("<div class=\"detail\">{}</div>", escape(&c.detail));
    if let Some(m) = &c.mismatch {
        let _ = write!(
            out,
            "<dl class=\"kv mismatch\"><dt>compared</dt><dd>{}</dd><dt>expected</dt><dd class=\"expected\">{}</dd><dt>actual</dt><dd class=\"actual\">{}</dd>",
            escape(&m.what),
            escape(&m.expected),
            escape(&m.actual)
        );
        if let Some(canonical) = &m.canonical {
            let _ = write!(
                out,
                "<dt>canonical text</dt><dd class=\"canonical\">{}</dd>",
                escape(canonical)
            );
        }
        out.push_str("</dl>");
    }
    if !c.exchanges.is_empty() {
        let _ = write!(
            out,
            "<details class=\"transcript\" open><summary>last {} HTTP exchange(s), oldest first</summary>",
            c.exchanges.len()
        );
        for x in &c.exchanges {
            let _ = write!(
                out,
                "<pre class=\"exchange\">{}</pre>",
                escape(&x.to_text())
            );
        }
        out.push_str("</details>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CaseReport, Exchange, Mismatch};
    use crate::{Case, Grade, Level};

    fn never(_: &mut crate::Ctx) -> crate::CaseResult {
        Ok(())
    }

    #[test]
    fn server_text_is_escaped_and_requirements_link_to_their_text() {
        let case = Case {
            id: "push.x",
            requirements: &["PUSH-4"],
            level: Level::Must,
            description: "d",
            run: never,
        };
        let evil = "<script>alert(1)</script>";
        let mut c = CaseReport::new(&case, Grade::fail(evil.into()), Default::default());
        c.mismatch = Some(Mismatch {
            what: "w".into(),
            expected: "\"a\"".into(),
            actual: evil.into(),
            canonical: None,
        });
        c.exchanges = vec![Exchange {
            method: "POST".into(),
            path: "/v1/spaces/s/push".into(),
            request_body: "{}".into(),
            status: Some(200),
            response_content_type: Some("application/json".into()),
            response_body: evil.into(),
            error: None,
        }];
        let report = Report::new("http://h".into(), "1.0".into(), 1, vec![c]);
        let html = report.to_html("spec");
        assert!(!html.contains(evil), "server text must be escaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("href=\"#req-PUSH-4\""));
        assert!(html.contains(
            "<dt id=\"req-PUSH-4\"><a href=\"spec/04-push-and-idempotency.md#:~:text=%5BPUSH-4%5D\">"
        ));
        assert!(html.contains("A Server MUST process the other Mutations"));
        assert!(
            !html.contains("http://cdn") && !html.contains("<link"),
            "self-contained"
        );
    }
}
