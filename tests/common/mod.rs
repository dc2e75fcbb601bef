//! Reads the spec's Markdown: requirement bullets, fenced examples, transcripts and endpoints.
#![allow(dead_code)] // each test file uses part of this module

use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One spec file.
pub struct SpecFile {
    pub name: String,
    pub text: String,
}

/// Every chapter of the spec (README included, CHANGELOG excluded), in file order.
pub fn spec_files() -> Vec<SpecFile> {
    let dir = root().join("spec");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("spec/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md") && n != "CHANGELOG.md")
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| SpecFile {
            text: std::fs::read_to_string(dir.join(&name)).unwrap(),
            name,
        })
        .collect()
}

/// A requirement bullet: `- [AREA-N] text`.
#[derive(Debug, Clone)]
pub struct Requirement {
    pub id: String,
    pub area: String,
    pub file: String,
    pub line: usize,
    pub text: String,
}

/// The BCP 14 key words in a piece of text, outside inline code. Two-word forms count once.
pub fn keywords(text: &str) -> Vec<&'static str> {
    let prose = strip_inline_code(text);
    let words: Vec<&str> = prose
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let next = words.get(i + 1).copied();
        let kw = match (words[i], next) {
            ("MUST", Some("NOT")) => Some("MUST NOT"),
            ("SHALL", Some("NOT")) => Some("SHALL NOT"),
            ("SHOULD", Some("NOT")) => Some("SHOULD NOT"),
            ("NOT", Some("RECOMMENDED")) => Some("NOT RECOMMENDED"),
            ("MUST", _) => Some("MUST"),
            ("SHALL", _) => Some("SHALL"),
            ("SHOULD", _) => Some("SHOULD"),
            ("REQUIRED", _) => Some("REQUIRED"),
            ("RECOMMENDED", _) => Some("RECOMMENDED"),
            ("MAY", _) => Some("MAY"),
            ("OPTIONAL", _) => Some("OPTIONAL"),
            _ => None,
        };
        if let Some(k) = kw {
            found.push(k);
            i += k.split(' ').count();
        } else {
            i += 1;
        }
    }
    found
}

/// The requirement level of a key word: MUST, SHOULD or MAY.
pub fn level(keyword: &str) -> &'static str {
    match keyword {
        "MUST" | "MUST NOT" | "REQUIRED" | "SHALL" | "SHALL NOT" => "MUST",
        "SHOULD" | "SHOULD NOT" | "RECOMMENDED" | "NOT RECOMMENDED" => "SHOULD",
        _ => "MAY",
    }
}

pub fn strip_inline_code(text: &str) -> String {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lines of a file with fenced code blocks blanked out, so prose scans skip them.
pub fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut in_fence = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            out.push((i + 1, line.to_owned()));
        }
    }
    out
}

fn requirement_head(line: &str) -> Option<(String, String, String)> {
    let rest = line.strip_prefix("- [")?;
    let (id, text) = rest.split_once("] ")?;
    let (area, number) = id.split_once('-')?;
    let valid = !area.is_empty()
        && area.bytes().all(|b| b.is_ascii_uppercase())
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| (id.to_owned(), area.to_owned(), text.to_owned()))
}

/// Every requirement bullet of the spec, with continuation lines joined.
pub fn requirements() -> Vec<Requirement> {
    let mut out = Vec::new();
    for file in spec_files() {
        let lines = prose_lines(&file.text);
        let mut i = 0;
        while i < lines.len() {
            let (line_no, line) = &lines[i];
            if let Some((id, area, mut text)) = requirement_head(line) {
                let mut j = i + 1;
                while j < lines.len() && lines[j].1.starts_with("  ") {
                    text.push(' ');
                    text.push_str(lines[j].1.trim());
                    j += 1;
                }
                out.push(Requirement {
                    id,
                    area,
                    file: file.name.clone(),
                    line: *line_no,
                    text,
                });
                i = j;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// A fenced block: its info string (after the backticks) and body.
pub struct Fence {
    pub file: String,
    pub line: usize,
    pub info: String,
    pub body: String,
}

/// Every fenced code block of the spec.
pub fn fences() -> Vec<Fence> {
    let mut out = Vec::new();
    for file in spec_files() {
        let mut current: Option<Fence> = None;
        for (i, line) in file.text.lines().enumerate() {
            let trimmed = line.trim_start();
            if let Some(info) = trimmed.strip_prefix("```") {
                if let Some(done) = current.take() {
                    out.push(done);
                } else {
                    current = Some(Fence {
                        file: file.name.clone(),
                        line: i + 1,
                        info: info.trim().to_owned(),
                        body: String::new(),
                    });
                }
            } else if let Some(f) = current.as_mut() {
                f.body.push_str(line);
                f.body.push('\n');
            }
        }
    }
    out
}

/// The endpoints the spec names in its prose, as (METHOD, path template).
pub fn endpoints() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for file in spec_files() {
        for (_, line) in prose_lines(&file.text) {
            for (i, span) in line.split('`').enumerate() {
                if i % 2 == 0 {
                    continue;
                }
                let Some((method, path)) = span.split_once(' ') else {
                    continue;
                };
                let is_method = ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method);
                let is_path = path.starts_with("/v1/") || path == "/.well-known/driftless";
                if is_method && is_path && !path.contains(' ') && !path.contains("...") {
                    let e = (method.to_owned(), path.to_owned());
                    if !out.contains(&e) {
                        out.push(e);
                    }
                }
            }
        }
    }
    out
}

/// Whether a concrete request path (query stripped) matches a template with `{param}` segments.
pub fn path_matches(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| (a.starts_with('{') && a.ends_with('}') && !b.is_empty()) || a == b)
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub mod crash;
#[cfg(feature = "postgres")]
pub mod instances;
#[cfg(feature = "postgres")]
#[path = "../../reference-server/tests/common/pg.rs"]
pub mod pg;
pub mod server;
pub mod traffic;
