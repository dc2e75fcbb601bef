//! `driftless schema check` and `driftless schema migrate-check`.

use std::path::{Path, PathBuf};

use driftless_schema_check::{self as checker, output, Loaded, Mode};

/// Compatibility modes.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Backward,
    Forward,
    Full,
}

/// Output formats.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Text,
    Json,
    Sarif,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The OLD schema (a JSON Schema 2020-12 file or a collection-schema document).
    #[arg(required_unless_present = "history")]
    old: Option<PathBuf>,
    /// The NEW schema.
    #[arg(required_unless_present = "history")]
    new: Option<PathBuf>,
    /// backward: OLD instances stay valid; forward: NEW instances are valid under OLD; full: both.
    #[arg(long, value_enum, default_value = "backward")]
    mode: ModeArg,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: FormatArg,
    /// Check every version in this folder against all earlier ones (files sorted by name).
    #[arg(long, conflicts_with_all = ["old", "new"])]
    history: Option<PathBuf>,
    /// Write the report here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Report what the checker cannot decide (rule `undecidable`) as a warning, exit 0,
    /// instead of failing the check.
    #[arg(long)]
    allow_undecidable: bool,
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// A folder of collection-schema documents of one Collection, versions 1, 2, 3, ...
    dir: PathBuf,
    /// Generated instances per migration.
    #[arg(long, default_value_t = 256)]
    cases: u32,
}

fn read(path: &Path) -> Result<Loaded, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    checker::load(&name, &text).map_err(|e| e.to_string())
}

/// Files of a folder in natural order (`v2` before `v10`).
fn versions_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: cannot read folder: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    let key = |p: &PathBuf| -> (Vec<u64>, String) {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let numbers = name
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        (numbers, name)
    };
    files.sort_by_key(key);
    if files.len() < 2 {
        return Err(format!(
            "{}: needs at least two .json versions",
            dir.display()
        ));
    }
    Ok(files)
}

/// Runs `schema check`; `Ok(exit code)` or a one-line error (exit code 2).
pub fn check(args: CheckArgs) -> Result<u8, String> {
    let mode = match args.mode {
        ModeArg::Backward => Mode::Backward,
        ModeArg::Forward => Mode::Forward,
        ModeArg::Full => Mode::Full,
    };
    let mode_name = match args.mode {
        ModeArg::Backward => "backward",
        ModeArg::Forward => "forward",
        ModeArg::Full => "full",
    };
    let pairs: Vec<(Loaded, Loaded)> = match (&args.history, &args.old, &args.new) {
        (Some(dir), _, _) => {
            let loaded = versions_in(dir)?
                .iter()
                .map(|p| read(p))
                .collect::<Result<Vec<_>, _>>()?;
            let mut pairs = Vec::new();
            for i in 1..loaded.len() {
                for j in 0..i {
                    pairs.push((loaded[j].clone(), loaded[i].clone()));
                }
            }
            pairs
        }
        (None, Some(old), Some(new)) => vec![(read(old)?, read(new)?)],
        _ => return Err("give OLD and NEW, or --history DIR".into()),
    };
    let results: Vec<(String, String, Vec<checker::Finding>)> = pairs
        .iter()
        .map(|(o, n)| {
            let mut findings = checker::check(o, n, mode);
            if args.allow_undecidable {
                checker::allow_undecidable(&mut findings);
            }
            (o.name.clone(), n.name.clone(), findings)
        })
        .collect();
    let checks: Vec<output::Checked<'_>> = results
        .iter()
        .map(|(o, n, f)| output::Checked {
            old: o,
            new: n,
            mode: mode_name,
            findings: f,
        })
        .collect();
    let text = match args.format {
        FormatArg::Text => output::text(&checks),
        FormatArg::Json => output::json(&checks),
        FormatArg::Sarif => output::sarif(&checks),
    };
    match &args.output {
        Some(path) => std::fs::write(path, &text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(if results.iter().all(|(_, _, f)| checker::compatible(f)) {
        0
    } else {
        1
    })
}

/// Runs `schema migrate-check`.
pub fn migrate_check(args: MigrateArgs) -> Result<u8, String> {
    let mut docs = Vec::new();
    for path in versions_in(&args.dir)? {
        let loaded = read(&path)?;
        let doc = loaded
            .document
            .ok_or_else(|| format!("{}: not a collection-schema document", path.display()))?;
        docs.push(doc);
    }
    docs.sort_by_key(|d| d.version);
    let failures = checker::generate::migrate_check(&docs, args.cases.max(1))?;
    for f in &failures {
        println!(
            "migration {} -> {} FAILS: instance {} becomes {}, which version {} rejects",
            f.from, f.to, f.instance, f.migrated, f.to
        );
    }
    if failures.is_empty() {
        println!(
            "{} migration(s) verified with {} generated instances each",
            docs.len() - 1,
            args.cases.max(1)
        );
        Ok(0)
    } else {
        Ok(1)
    }
}
