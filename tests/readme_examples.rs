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
fn every_image_the_readme_shows_exists() {
    let text = readme();
    let images: Vec<&str> = text
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|target| target.ends_with(".png"))
        .collect();
    assert!(
        images.len() >= 2,
        "the README shows the screenshots: {images:?}"
    );
    for image in images {
        let bytes = std::fs::read(common::root().join(image))
            .unwrap_or_else(|e| panic!("README shows {image}: {e}"));
        assert!(bytes.starts_with(b"\x89PNG"), "{image} is not a PNG");
    }
}

#[test]
fn the_readme_opens_with_the_two_commands_and_hard_codes_no_case_count() {
    let text = readme();
    // The README opens with the two commands that work on a fresh machine (the project's rule);
    // every other example calls the installed binary, so none starts a cold build of its own.
    let commands: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("cargo ") || l.starts_with("driftless "))
        .collect();
    assert!(
        commands.len() >= 2
            && commands[0].starts_with("cargo run --release -- conformance")
            && commands[1].starts_with("cargo test --workspace"),
        "the README must start with `cargo run --release -- conformance` and `cargo test --workspace`: {commands:?}"
    );
    assert!(
        commands[2..].iter().all(|c| !c.starts_with("cargo run")),
        "use the installed binary after the first two commands: {commands:?}"
    );
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

/// The PostgreSQL and browser tests need a feature (and PostgreSQL or Chromium on the machine),
/// so a plain `cargo test --workspace` does not build them: it says so here, and this fails if
/// `.ci/run` ever stops running them.
#[test]
fn the_tests_behind_features_run_in_ci() {
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    for needed in [
        "--features postgres --test postgres",
        "--features postgres --test postgres_instances",
        "--features browser-tests --test browser",
    ] {
        assert!(ci.contains(needed), ".ci/run no longer runs `{needed}`");
    }
    if !cfg!(feature = "postgres") {
        eprintln!(
            "note: the PostgreSQL tests are not built without `--features postgres` \
             (.ci/run runs them: cargo test -p driftless --features postgres --test postgres_instances)"
        );
    }
    if !cfg!(feature = "browser-tests") {
        eprintln!(
            "note: the browser tests are not built without `--features browser-tests` \
             (.ci/run runs them with Debian's chromium and chromium-driver)"
        );
    }
}
