//! The spec's own rules, checked: requirement IDs, key words, the Problem catalogue, test vectors
//! and transcripts.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{fences, keywords, level, prose_lines, read, requirements, root, spec_files};
use driftless_protocol::problem::ProblemType;

#[test]
fn requirement_ids_are_unique() {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for r in requirements() {
        let here = format!("{}:{}", r.file, r.line);
        if let Some(first) = seen.insert(r.id.clone(), here.clone()) {
            panic!("{} is defined twice: {first} and {here}", r.id);
        }
    }
}

#[test]
fn every_requirement_holds_exactly_one_keyword() {
    let bad: Vec<String> = requirements()
        .into_iter()
        .filter(|r| keywords(&r.text).len() != 1)
        .map(|r| {
            format!(
                "{}:{} [{}] has {:?}",
                r.file,
                r.line,
                r.id,
                keywords(&r.text)
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "requirements need exactly one BCP 14 key word:\n{}",
        bad.join("\n")
    );
}

#[test]
fn keywords_appear_only_in_requirements() {
    let mut bad = Vec::new();
    for file in spec_files() {
        let mut in_conventions = false;
        for (line_no, line) in prose_lines(&file.text) {
            if line.starts_with("## ") {
                in_conventions = file.name == "README.md" && line == "## Conventions";
            }
            let is_requirement = line.starts_with("- [") && line.contains("] ");
            if in_conventions || is_requirement || line.starts_with("  ") {
                continue;
            }
            if !keywords(&line).is_empty() {
                bad.push(format!("{}:{line_no}: {line}", file.name));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "key words outside a requirement bullet:\n{}",
        bad.join("\n")
    );
}

#[test]
fn spec_has_enough_requirements_in_every_area() {
    let reqs = requirements();
    let mut per_area: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    for r in &reqs {
        let kw = keywords(&r.text);
        let lvl = kw.first().map(|k| level(k)).unwrap_or("none");
        *per_area
            .entry(r.area.clone())
            .or_default()
            .entry(lvl)
            .or_default() += 1;
    }
    // The areas the spec's README promises, each with at least one requirement.
    let readme = read(&root().join("spec/README.md"));
    for area in [
        "HTTP", "DISC", "VER", "ID", "HLC", "ORD", "MUT", "MERGE", "PUSH", "IDEM", "MAN", "PULL",
        "REC", "AUDIT", "INT", "ERR", "CLIENT", "RETRY", "AUTH", "SCHEMA", "EVO", "LIM", "RET",
        "SEC", "PRIV",
    ] {
        assert!(
            readme.contains(&format!("`{area}`")),
            "README does not list area {area}"
        );
        assert!(
            per_area.contains_key(area),
            "area {area} has no requirement"
        );
    }
    for area in per_area.keys() {
        assert!(
            readme.contains(&format!("`{area}`")),
            "area {area} is not listed in README"
        );
    }
    assert!(reqs.len() >= 80, "only {} requirements", reqs.len());
}

/// A retired ID stays retired: listed in the README, defined nowhere.
#[test]
fn retired_requirement_ids_are_not_reused() {
    let readme = read(&root().join("spec/README.md"));
    let section = readme
        .split("## Retired requirements")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("spec/README.md has a Retired requirements section");
    let retired: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("- `")?.split('`').next())
        .collect();
    assert!(retired.contains(&"HLC-4"), "{retired:?}");
    let defined: BTreeSet<String> = requirements().into_iter().map(|r| r.id).collect();
    for id in retired {
        assert!(!defined.contains(id), "{id} is retired but defined again");
    }
}

#[test]
fn cited_requirement_ids_exist() {
    let defined: BTreeSet<String> = requirements().into_iter().map(|r| r.id).collect();
    let mut missing = Vec::new();
    for file in spec_files() {
        for (line_no, line) in file.text.lines().enumerate() {
            for piece in line.split("`[").skip(1) {
                if let Some((id, _)) = piece.split_once("]`") {
                    let looks_like_id = id.split_once('-').is_some_and(|(a, n)| {
                        !a.is_empty()
                            && a.bytes().all(|b| b.is_ascii_uppercase())
                            && !n.is_empty()
                            && n.bytes().all(|b| b.is_ascii_digit())
                    });
                    if looks_like_id && !defined.contains(id) {
                        missing.push(format!("{}:{}: {id}", file.name, line_no + 1));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "cited but never defined:\n{}",
        missing.join("\n")
    );
}

#[test]
fn spec_has_a_version_and_a_changelog_entry_for_it() {
    let readme = read(&root().join("spec/README.md"));
    let version = readme
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .expect("spec/README.md has a Version: line");
    let changelog = read(&root().join("spec/CHANGELOG.md"));
    assert!(
        changelog
            .lines()
            .any(|l| l.starts_with(&format!("## {version}"))),
        "spec/CHANGELOG.md has no heading for {version}"
    );
}

#[test]
fn bcp14_paragraph_is_verbatim() {
    let readme = read(&root().join("spec/README.md"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let bcp14 = "The key words \"MUST\", \"MUST NOT\", \"REQUIRED\", \"SHALL\", \"SHALL NOT\", \"SHOULD\", \"SHOULD NOT\", \"RECOMMENDED\", \"NOT RECOMMENDED\", \"MAY\", and \"OPTIONAL\" in this document are to be interpreted as described in BCP 14 [RFC2119] [RFC8174] when, and only when, they appear in all capitals, as shown here.";
    assert!(readme.contains(bcp14));
}

/// The catalogue table of chapter 07 and [`ProblemType`] list the same types with the same
/// status, retry flag and title.
#[test]
fn problem_catalogue_matches_the_code() {
    let text = read(&root().join("spec/07-errors.md"));
    let mut rows = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let code = cells[1].trim_matches('`').to_owned();
        rows.insert(
            code,
            (
                cells[2].parse::<u16>().unwrap(),
                cells[3] == "yes",
                cells[4].to_owned(),
            ),
        );
    }
    for t in ProblemType::ALL {
        let row = rows
            .remove(t.code())
            .unwrap_or_else(|| panic!("{} missing from the spec", t.code()));
        assert_eq!(
            row,
            (t.status(), t.retryable(), t.title().to_owned()),
            "{}",
            t.code()
        );
    }
    assert!(
        rows.is_empty(),
        "in the spec but not in the code: {:?}",
        rows.keys()
    );
}

/// Problem types named in prose (`code` next to "Problem") are in the catalogue.
#[test]
fn problems_named_in_prose_are_catalogued() {
    let codes: BTreeSet<&str> = ProblemType::ALL.iter().map(|t| t.code()).collect();
    for r in requirements() {
        for piece in r.text.split("Problem `").skip(1) {
            let code = piece.split('`').next().unwrap();
            assert!(
                codes.contains(code),
                "[{}] names unknown Problem {code}",
                r.id
            );
        }
    }
}

/// Every endpoint has at least one literal transcript whose response is a failure.
#[test]
fn every_endpoint_has_a_failure_transcript() {
    let transcripts: Vec<String> = fences()
        .into_iter()
        .filter(|f| f.info == "http")
        .map(|f| f.body)
        .collect();
    for (method, template) in common::endpoints() {
        let found = transcripts.iter().any(|t| {
            let mut lines = t.lines();
            let Some(request) = lines.next() else {
                return false;
            };
            let mut parts = request.split(' ');
            let (m, p) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let status = t
                .lines()
                .find_map(|l| l.strip_prefix("HTTP/1.1 "))
                .and_then(|s| s.split(' ').next())
                .and_then(|s| s.parse::<u16>().ok());
            m == method && common::path_matches(&template, p) && status.is_some_and(|s| s >= 400)
        });
        assert!(found, "no failure transcript for {method} {template}");
    }
}
