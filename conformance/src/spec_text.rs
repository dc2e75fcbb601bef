//! The spec chapters bundled into the suite, so that a report can quote the requirement a case
//! checks and link to its chapter without the repository at hand.

/// Every chapter file of `spec/`, by file name, with its text. A test checks that this list
/// holds every `spec/NN-*.md` file.
pub const CHAPTERS: &[(&str, &str)] = &[
    (
        "01-foundations.md",
        include_str!("../../spec/01-foundations.md"),
    ),
    (
        "02-identities-and-clocks.md",
        include_str!("../../spec/02-identities-and-clocks.md"),
    ),
    (
        "03-mutations-and-merge.md",
        include_str!("../../spec/03-mutations-and-merge.md"),
    ),
    (
        "04-push-and-idempotency.md",
        include_str!("../../spec/04-push-and-idempotency.md"),
    ),
    (
        "05-pull-and-records.md",
        include_str!("../../spec/05-pull-and-records.md"),
    ),
    (
        "06-integrity.md",
        include_str!("../../spec/06-integrity.md"),
    ),
    ("07-errors.md", include_str!("../../spec/07-errors.md")),
    (
        "08-client-duties.md",
        include_str!("../../spec/08-client-duties.md"),
    ),
    ("09-auth.md", include_str!("../../spec/09-auth.md")),
    (
        "10-schema-evolution.md",
        include_str!("../../spec/10-schema-evolution.md"),
    ),
    (
        "11-limits-and-retention.md",
        include_str!("../../spec/11-limits-and-retention.md"),
    ),
    (
        "12-security-and-privacy.md",
        include_str!("../../spec/12-security-and-privacy.md"),
    ),
    (
        "13-client-adapter.md",
        include_str!("../../spec/13-client-adapter.md"),
    ),
];

/// A requirement as the spec states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The chapter file, e.g. `04-push-and-idempotency.md`.
    pub chapter: &'static str,
    /// The sentence after the ID, as written (Markdown).
    pub text: &'static str,
}

/// The requirement `id` (e.g. `PUSH-4`): the list item `- [PUSH-4] ...` of its chapter.
pub fn requirement(id: &str) -> Option<Requirement> {
    let marker = format!("- [{id}] ");
    CHAPTERS.iter().find_map(|(chapter, text)| {
        text.lines().find_map(|line| {
            line.strip_prefix(&marker).map(|rest| Requirement {
                chapter,
                text: rest.trim(),
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_chapter_is_bundled() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".md") && n.as_bytes()[0].is_ascii_digit())
            .collect();
        files.sort();
        let bundled: Vec<&str> = CHAPTERS.iter().map(|(n, _)| *n).collect();
        assert_eq!(files, bundled, "add the new chapter to CHAPTERS");
    }

    #[test]
    fn a_requirement_is_found_with_its_chapter_and_text() {
        let r = requirement("PUSH-4").unwrap();
        assert_eq!(r.chapter, "04-push-and-idempotency.md");
        assert!(r
            .text
            .starts_with("A Server MUST process the other Mutations"));
        assert_eq!(requirement("PUSH-99999"), None);
    }
}
