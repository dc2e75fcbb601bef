//! `driftless conformance client`: runs the client conformance kit against a Client wrapped in an
//! adapter (spec chapter 13), with the embedded reference server behind the kit's fault layer.
//! Report formats, grades and exit codes are the server suite's: 0 every MUST case passed, 1 a
//! MUST case failed, 2 a usage or setup error or a case that could not run.

use std::io::IsTerminal;
use std::path::PathBuf;

use driftless_conformance::client_kit::{self, Options};
use driftless_conformance::TokenSource;
use driftless_protocol::messages::Scope;

use crate::conformance::Format;

#[derive(clap::Args)]
pub struct Args {
    /// The adapter command: program and arguments, split on whitespace, e.g.
    /// 'driftless client adapter' or './my-swift-adapter --verbose'.
    #[arg(long, required_unless_present_any = ["list", "self_check"])]
    adapter: Option<String>,
    /// Run only cases whose ID matches this glob. Repeatable.
    #[arg(long = "run", value_name = "GLOB")]
    run: Vec<String>,
    /// Skip cases whose ID matches this glob. Repeatable.
    #[arg(long = "skip", value_name = "GLOB")]
    skip: Vec<String>,
    /// List the selected cases instead of running them.
    #[arg(long)]
    list: bool,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Write the report to this file instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// With --format html: the URL of the spec chapters' folder that requirement links point
    /// to, absolute or relative to the report file.
    #[arg(long, value_name = "URL", default_value = "spec")]
    spec_url: String,
    /// Seed of every random choice; printed in every report, so a failure replays.
    #[arg(long)]
    seed: Option<u64>,
    /// Run the kit against the reference client's adapter once clean and once per planted
    /// fault (`DRIFTLESS_CLIENT_FAULT`); exit 0 only if the clean client passes and every fault
    /// is caught by a case that names a requirement it breaks. Needs a build with the client
    /// fault-injection feature.
    #[arg(long, conflicts_with_all = ["adapter", "list"])]
    self_check: bool,
}

/// Tokens minted with the embedded server's own key.
struct EmbeddedTokens(driftless_server::auth::TokenKey);

impl TokenSource for EmbeddedTokens {
    fn token(&self, user: &str, space: &str, scope: &str, ttl_s: i64) -> Result<String, String> {
        let scope = match scope {
            "read" => Scope::Read,
            "write" => Scope::Write,
            "admin" => Scope::Admin,
            other => return Err(format!("unknown scope {other}")),
        };
        crate::embedded::mint(&self.0, user, space, scope, ttl_s)
    }
}

/// `--list` output: the selected cases, and in JSON the Client MUSTs the kit cannot check.
fn list(args: &Args) -> Result<u8, String> {
    let all = client_kit::all();
    let selected = driftless_conformance::select(&all, &args.run, &args.skip);
    if selected.is_empty() {
        return Err(
            "no case matches the --run/--skip selection; a run that checks nothing is never green"
                .into(),
        );
    }
    let text = driftless_conformance::listing(
        &selected,
        client_kit::NOT_CHECKABLE,
        matches!(args.format, Format::Json),
    );
    crate::conformance::write(&args.output, &text).map(|()| 0)
}

/// One run of the kit against `adapter`, with a fresh embedded server and work folder.
fn run_kit(
    adapter: &str,
    args: &Args,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<driftless_conformance::Report, String> {
    let embedded = crate::embedded::Embedded::start(driftless_server::service::Config {
        rate_limit_per_s: 10_000,
        ..Default::default()
    })?;
    let work = tempfile::tempdir().map_err(|e| format!("cannot make a work folder: {e}"))?;
    let options = Options {
        adapter: adapter.to_owned(),
        server: embedded.base.clone(),
        tokens: Box::new(EmbeddedTokens(embedded.key.clone())),
        work: work.path().to_owned(),
        seed,
        run: args.run.clone(),
        skip: args.skip.clone(),
    };
    client_kit::run(options, progress)
}

/// Runs the command; returns the exit code, or a one-line setup error (exit code 2).
pub fn main(args: Args) -> Result<u8, String> {
    if args.list {
        return list(&args);
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    if args.self_check {
        return self_check(&args, seed);
    }
    let adapter = args.adapter.clone().unwrap_or_default();
    let interactive = std::io::stderr().is_terminal();
    let mut progress = |done: usize, total: usize, id: &str| {
        if interactive {
            eprint!("\r\x1b[2K[{done}/{total}] {id}");
            if done == total {
                eprint!("\r\x1b[2K");
            }
        }
    };
    let started = std::time::Instant::now();
    let report = run_kit(&adapter, &args, seed, &mut progress)?;
    let color = args.output.is_none()
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    let text = match args.format {
        Format::Text => format!(
            "{}client kit run time: {:.1} s\n",
            report.to_text(color),
            started.elapsed().as_secs_f64()
        ),
        Format::Json => report.to_json() + "\n",
        Format::Junit => report.to_junit(),
        Format::Html => report.to_html(&args.spec_url),
    };
    crate::conformance::write(&args.output, &text)?;
    Ok(report.exit_code())
}

/// The self-check: the kit against the reference client's adapter, clean and with each planted
/// fault of `driftless client adapter --list-faults`. A fault is caught only when a failing case
/// names one of the requirement IDs the fault breaks.
fn self_check(args: &Args, seed: u64) -> Result<u8, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let listed = std::process::Command::new(&exe)
        .args(["client", "adapter", "--list-faults"])
        .output()
        .map_err(|e| e.to_string())?;
    let faults: Vec<(String, String)> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(n, ids)| (n.to_owned(), ids.to_owned()))
        })
        .collect();
    if !listed.status.success() || faults.is_empty() {
        return Err("this driftless was built without the client fault-injection feature; build with `--features client-fault-injection` for --self-check".into());
    }
    let mut ok = true;
    let mut out = String::from(
        "client self-check: the kit against the reference client's adapter, clean and with each planted fault\n",
    );
    let started = std::time::Instant::now();
    for fault in std::iter::once(None).chain(faults.iter().map(|(n, ids)| Some((n, ids)))) {
        let adapter = match fault {
            None => format!("{} client adapter", exe.display()),
            Some((name, _)) => format!("{} client adapter --fault {name}", exe.display()),
        };
        let report = run_kit(&adapter, args, seed, &mut |_, _, _| {})?;
        let failing: Vec<&driftless_conformance::report::CaseReport> = report
            .cases
            .iter()
            .filter(|c| c.outcome == "fail" || c.outcome == "errored")
            .collect();
        // A fault counts as caught only by a case that checks one of the requirements it breaks:
        // a case that fails for an unrelated reason proves nothing about the fault's own case.
        let mapped = |ids: &str| {
            failing.iter().any(|c| {
                c.requirements
                    .iter()
                    .any(|r| ids.split(',').any(|i| i == r))
            })
        };
        let (name, ids, verdict, good) = match fault {
            None => (
                "(none)",
                "",
                if failing.is_empty() {
                    "clean client passes"
                } else {
                    "CLEAN CLIENT FAILS"
                },
                failing.is_empty(),
            ),
            Some((n, ids)) => (
                n.as_str(),
                ids.as_str(),
                if failing.is_empty() {
                    "NOT CAUGHT"
                } else if mapped(ids) {
                    "caught"
                } else {
                    "NOT CAUGHT BY ITS CASE"
                },
                mapped(ids),
            ),
        };
        let failing: Vec<&str> = failing.iter().map(|c| c.id.as_str()).collect();
        ok &= good;
        out.push_str(&format!(
            "{name:<26} {ids:<22} {verdict:<23} {}\n",
            failing.join(", ")
        ));
    }
    out.push_str(&format!(
        "seed {seed}; {} faults; {:.1} s; {}\n",
        faults.len(),
        started.elapsed().as_secs_f64(),
        if ok {
            "every fault caught"
        } else {
            "SELF-CHECK FAILED"
        }
    ));
    crate::conformance::write(&args.output, &out)?;
    Ok(if ok { 0 } else { 1 })
}
