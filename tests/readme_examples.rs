//! The files the README's examples name exist, and the commands it shows on them give the
//! results it describes.

mod common;

use common::server::driftless;

fn readme() -> String {
    std::fs::read_to_string(common::root().join("README.md")).unwrap()
}

#[test]
fn every_example_file_the_readme_names_exists() {
    let text = readme();
    let mut named = 0;
    for word in text.split(|c: char| c.is_whitespace() || "`()[]'\"".contains(c)) {
        if let Some(path) = word.strip_prefix("examples/").filter(|p| !p.is_empty()) {
            named += 1;
            let p = common::root().join("examples").join(path);
            assert!(p.exists(), "README names {word}, which does not exist");
        }
    }
    assert!(named >= 3, "the README names its example files");
}

#[test]
fn the_readme_does_not_hard_code_the_case_count_or_run_cargo_for_each_command() {
    let text = readme();
    assert!(!text.contains("cargo run"), "use the installed binary");
    let count = driftless()
        .args(["conformance", "--list"])
        .output()
        .unwrap()
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!(count > 0);
    assert!(
        !text.contains(&format!("{count} cases")),
        "count it with --list"
    );
}

#[test]
fn the_schema_examples_give_the_results_the_readme_shows() {
    let root = common::root();
    let run = |args: &[&str]| {
        driftless()
            .current_dir(&root)
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    let (old, new) = (
        "examples/schema-check/old.json",
        "examples/schema-check/new.json",
    );
    assert_eq!(run(&["schema", "check", old, new]), Some(1));
    assert_eq!(
        run(&["schema", "check", "--history", "examples/tasks/"]),
        Some(0)
    );
    assert_eq!(
        run(&["schema", "migrate-check", "examples/tasks/"]),
        Some(0)
    );
}
