//! `driftless schema export`, run as a real child process.

use std::process::Command;

fn driftless() -> Command {
    Command::new(env!("CARGO_BIN_EXE_driftless"))
}

#[test]
fn export_writes_every_schema_and_check_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = driftless()
        .args(["schema", "export", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(written, driftless_protocol::export::files().len());
    let check = driftless()
        .args(["schema", "export", "--check", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(check.status.success());
}

#[test]
fn check_fails_with_one_line_naming_the_stale_file() {
    let dir = tempfile::tempdir().unwrap();
    let ok = driftless()
        .args(["schema", "export", "--out"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(dir.path().join("record.schema.json"), "{}\n").unwrap();
    let out = driftless()
        .args(["schema", "export", "--check", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("record.schema.json") && stderr.starts_with("driftless: "),
        "{stderr}"
    );
}

#[test]
fn unwritable_folder_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let out = driftless()
        .args(["schema", "export", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot create"), "{stderr}");
}

#[test]
fn unknown_flag_is_named_with_the_usage_of_its_subcommand_and_exit_code_2() {
    let out = driftless()
        .args(["schema", "export", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.lines().next().unwrap().contains("--bogus"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Usage: driftless schema export"),
        "{stderr}"
    );
}
