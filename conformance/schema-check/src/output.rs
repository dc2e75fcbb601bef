//! Text, JSON and SARIF 2.1.0 renderings of a check.

use serde_json::{json, Value};

use super::{compatible, Finding, Severity};

/// One comparison of two files and its findings.
pub struct Checked<'a> {
    /// The OLD file name.
    pub old: &'a str,
    /// The NEW file name.
    pub new: &'a str,
    /// `backward`, `forward` or `full`.
    pub mode: &'a str,
    /// What was found.
    pub findings: &'a [Finding],
}

/// Text for people: a verdict line, then one block per finding.
pub fn text(checks: &[Checked<'_>]) -> String {
    let mut out = String::new();
    for c in checks {
        let errors = c
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        let warnings = c.findings.len() - errors;
        let verdict = if compatible(c.findings) {
            "compatible"
        } else {
            "INCOMPATIBLE"
        };
        out.push_str(&format!(
            "{} -> {} ({}): {verdict}, {errors} error(s), {warnings} warning(s)\n",
            c.old, c.new, c.mode
        ));
        for f in c.findings {
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            out.push_str(&format!(
                "  {sev} {} [{:?}] at {}: {}\n",
                f.rule,
                f.direction,
                if f.instance_path.is_empty() {
                    "/"
                } else {
                    &f.instance_path
                },
                f.message
            ));
            out.push_str(&format!(
                "    old: #{}  new: #{}\n",
                f.old_pointer, f.new_pointer
            ));
            if let (Some(ce), Some(by)) = (&f.counterexample, f.accepted_by) {
                let other = if by == "old" { "new" } else { "old" };
                out.push_str(&format!(
                    "    counterexample (accepted by {by}, rejected by {other}): {ce}\n"
                ));
            }
        }
    }
    out
}

/// JSON for tools: an array of checks with their findings as fields.
pub fn json(checks: &[Checked<'_>]) -> String {
    let v: Vec<Value> = checks
        .iter()
        .map(|c| json!({"old": c.old, "new": c.new, "mode": c.mode, "compatible": compatible(c.findings), "findings": c.findings}))
        .collect();
    serde_json::to_string_pretty(&Value::Array(v)).expect("findings serialize") + "\n"
}

/// SARIF 2.1.0 for code-scanning tools: one result per finding, located in the NEW file with the
/// JSON pointer as a logical location.
pub fn sarif(checks: &[Checked<'_>]) -> String {
    let mut rules: Vec<&'static str> = checks
        .iter()
        .flat_map(|c| c.findings.iter().map(|f| f.rule))
        .collect();
    rules.sort_unstable();
    rules.dedup();
    let results: Vec<Value> = checks
        .iter()
        .flat_map(|c| {
            c.findings.iter().map(move |f| {
                let mut message = format!("{} ({:?}, {} -> {})", f.message, f.direction, c.old, c.new);
                if let (Some(ce), Some(by)) = (&f.counterexample, f.accepted_by) {
                    message.push_str(&format!("; counterexample accepted by {by}: {ce}"));
                }
                json!({
                    "ruleId": f.rule,
                    "level": if f.severity == Severity::Error { "error" } else { "warning" },
                    "message": {"text": message},
                    "locations": [{
                        "physicalLocation": {"artifactLocation": {"uri": c.new}},
                        "logicalLocations": [{"fullyQualifiedName": f.new_pointer, "kind": "object"}]
                    }],
                    "properties": {"oldPointer": f.old_pointer, "newPointer": f.new_pointer, "instancePath": f.instance_path, "counterexample": f.counterexample}
                })
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "driftless schema check",
                "rules": rules.iter().map(|r| json!({"id": r, "shortDescription": {"text": r.replace('-', " ")}})).collect::<Vec<_>>()
            }},
            "results": results
        }]
    });
    serde_json::to_string_pretty(&doc).expect("sarif serializes") + "\n"
}
