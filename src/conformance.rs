//! `driftless conformance`: runs the suite against `--server`, or against the embedded reference
//! server on a free loopback port with a temporary data folder.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use driftless_conformance::{Options, TokenSource};
use driftless_protocol::messages::Scope;

/// Output formats.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Junit,
    /// One self-contained page (inline CSS and JS): summary, filters, failures with their
    /// exchanges, requirement text.
    Html,
}

#[derive(clap::Args)]
pub struct Args {
    /// Base URL of the server to check; without it, the embedded reference server is started.
    #[arg(long, requires = "token_cmd")]
    server: Option<String>,
    /// Command printing a Token on stdout, with placeholders {user} {space} {scope} {ttl}.
    #[arg(long)]
    token_cmd: Option<String>,
    /// PEM file of the only certificates to trust for an https:// server (a private CA);
    /// without it, the bundled Mozilla roots.
    #[arg(long, value_name = "FILE", requires = "server")]
    ca_cert: Option<PathBuf>,
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
    /// Timeout of each HTTP request, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Seed of every random choice; printed in every report, so a failure replays.
    #[arg(long)]
    seed: Option<u64>,
    /// Run the suite against the reference server once clean and once per deliberate fault
    /// (`driftless serve --list-faults`); exit 0 only if the clean server passes and every
    /// fault is caught. Needs a build with the fault-injection feature.
    #[arg(long, conflicts_with_all = ["server", "list"])]
    self_check: bool,
    /// With --self-check: run each case of the per-case table alone (`--run CASE`), against the
    /// clean reference server (it must pass) and against each fault modelling a Server it must
    /// not pass (it must fail or be errored), and print the case × fault table.
    #[arg(long, requires = "self_check")]
    per_case: bool,
    #[command(subcommand)]
    kit: Option<Kit>,
}

/// The other kit of the suite.
#[derive(clap::Subcommand)]
pub enum Kit {
    /// Check a Client, wrapped in an adapter (spec chapter 13), against the Client duties.
    Client(crate::conformance_client::Args),
}

/// The per-case self-check's table: each fault that models a useless Server, and the cases that
/// must not pass against it when run alone, because their requirement or the setup they rely on
/// is what the fault breaks. A case that passed against such a Server would credit a requirement
/// ID that was never exercised.
pub const PER_CASE: &[(&str, &[&str])] = &[
    (
        "reject-everything",
        &[
            "merge.lww-order-independent",
            "merge.delete-vs-newer-update",
            "integrity.checksums-match-model",
            "integrity.bucket-repair",
            "pull.consistent-under-writes",
            "idempotency.replay-returns-stored-outcome",
            "manifest.fates",
            "schema.removed-field-is-noop",
            "pull.resync-after-compaction",
            "pull.long-poll",
        ],
    ),
    (
        "first-writer-wins",
        &[
            "merge.lww-order-independent",
            "merge.delete-vs-newer-update",
            "pull.consistent-under-writes",
        ],
    ),
    ("blank-values", &["integrity.checksums-match-model"]),
    ("no-dedup", &["idempotency.concurrent-replay"]),
    ("never-hold-pull", &["pull.long-poll"]),
    ("no-supported-versions", &["version.unsupported-major"]),
    (
        "checksums-unavailable",
        &["pull.resync-after-compaction", "id.spaces-are-implicit"],
    ),
];

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

/// Runs the command; returns the exit code, or a one-line setup error (exit code 2).
pub fn main(mut args: Args) -> Result<u8, String> {
    if let Some(Kit::Client(kit)) = args.kit.take() {
        return crate::conformance_client::main(kit);
    }
    if args.self_check && args.per_case {
        return self_check_per_case(&args);
    }
    if args.self_check {
        return self_check(&args);
    }
    let all = driftless_conformance::cases::all();
    let selected = driftless_conformance::select(&all, &args.run, &args.skip);
    if selected.is_empty() {
        return Err(
            "no case matches the --run/--skip selection; a run that checks nothing is never green"
                .into(),
        );
    }
    if args.list {
        let text = driftless_conformance::listing(
            &selected,
            driftless_conformance::NOT_CHECKABLE,
            matches!(args.format, Format::Json),
        );
        return write(&args.output, &text).map(|()| 0);
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let (_embedded, server, tokens): (
        Option<crate::embedded::Embedded>,
        String,
        Box<dyn TokenSource>,
    ) = match (&args.server, &args.token_cmd) {
        (Some(url), Some(cmd)) => (
            None,
            url.clone(),
            Box::new(driftless_conformance::client::CommandTokens::new(cmd)),
        ),
        (Some(_), None) => return Err("--server needs --token-cmd".into()),
        (None, _) => {
            let embedded = crate::embedded::Embedded::start(driftless_server::service::Config {
                // Each case is its own User; 200/s is far above what one case sends and low
                // enough for the rate-limit cases to see a 429 in any build.
                rate_limit_per_s: 200,
                ..Default::default()
            })?;
            let (base, tokens) = (embedded.base.clone(), EmbeddedTokens(embedded.key.clone()));
            (Some(embedded), base, Box::new(tokens))
        }
    };
    let interactive = std::io::stderr().is_terminal();
    let mut progress = |done: usize, total: usize, id: &str| {
        if interactive {
            eprint!("\r\x1b[2K[{done}/{total}] {id}");
            if done == total {
                eprint!("\r\x1b[2K");
            }
        }
    };
    let ca_pem = match &args.ca_cert {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?)
        }
        None => None,
    };
    let options = Options {
        server,
        tokens,
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        seed,
        run: args.run.clone(),
        skip: args.skip.clone(),
        ca_pem,
    };
    let report = driftless_conformance::run(options, &mut progress)?;
    let color = args.output.is_none()
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    let text = match args.format {
        Format::Text => report.to_text(color),
        Format::Json => report.to_json() + "\n",
        Format::Junit => report.to_junit(),
        Format::Html => report.to_html(&args.spec_url),
    };
    write(&args.output, &text)?;
    Ok(report.exit_code())
}

/// Writes `text` to `output`, or to standard output without one; the error names the file.
pub(crate) fn write(output: &Option<PathBuf>, text: &str) -> Result<(), String> {
    match output {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// A reference server child process for the self-check.
struct Child {
    child: std::process::Child,
    base: String,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_reference(
    exe: &std::path::Path,
    data: &std::path::Path,
    fault: Option<&str>,
) -> Result<Child, String> {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rate-limit",
        "200",
        "--data",
    ])
    .arg(data);
    if let Some(f) = fault {
        cmd.args(["--fault", f]);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("the server printed {line:?}"))?
        .to_owned();
    Ok(Child { child, base })
}

/// The deliberate faults of this build, each with the requirement IDs it breaks, from
/// `serve --list-faults`; an error when the build lacks the fault-injection feature.
fn list_faults(exe: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let listed = std::process::Command::new(exe)
        .args(["serve", "--list-faults"])
        .output()
        .map_err(|e| e.to_string())?;
    if !listed.status.success() {
        return Err("this driftless was built without the fault-injection feature; build with `--features fault-injection` for --self-check".into());
    }
    let faults: Vec<(String, String)> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(n, ids)| (n.to_owned(), ids.to_owned()))
        })
        .collect();
    if faults.is_empty() {
        return Err("serve --list-faults listed no fault".into());
    }
    Ok(faults)
}

/// The selected cases against a reference server child started with `fault` (none: clean)
/// on a fresh data folder.
fn run_reference(
    exe: &std::path::Path,
    args: &Args,
    fault: Option<&str>,
    run: Vec<String>,
    skip: Vec<String>,
) -> Result<driftless_conformance::Report, String> {
    let data = tempfile::tempdir().map_err(|e| e.to_string())?;
    let server = spawn_reference(exe, data.path(), fault)?;
    let token_cmd = format!(
        "'{}' token --data '{}' --user {{user}} --space {{space}} --scope {{scope}} --ttl {{ttl}}",
        exe.display(),
        data.path().display()
    );
    let options = Options {
        server: server.base.clone(),
        tokens: Box::new(driftless_conformance::client::CommandTokens::new(
            &token_cmd,
        )),
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        seed: args.seed.unwrap_or(1),
        run,
        skip,
        ca_pem: None,
    };
    driftless_conformance::run(options, &mut |_, _, _| {})
}

/// The per-case self-check: each case of [`PER_CASE`] alone must pass the clean reference
/// server and must not pass any fault listed for it.
fn self_check_per_case(args: &Args) -> Result<u8, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let faults = list_faults(&exe)?;
    let all = driftless_conformance::cases::all();
    for (fault, cases) in PER_CASE {
        if !faults.iter().any(|(n, _)| n == fault) {
            return Err(format!(
                "the per-case table names fault {fault:?}, which this build lacks"
            ));
        }
        if let Some(c) = cases.iter().find(|c| !all.iter().any(|a| a.id == **c)) {
            return Err(format!(
                "the per-case table names case {c:?}, which the suite lacks"
            ));
        }
    }
    let mut cases: Vec<&str> = PER_CASE
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .collect();
    cases.sort_unstable();
    cases.dedup();
    // Alone means alone: one case per run, the others not selected.
    let outcome = |fault: Option<&str>, case: &str| -> Result<(String, String), String> {
        let report = run_reference(&exe, args, fault, vec![case.to_owned()], Vec::new())?;
        let c = report
            .cases
            .iter()
            .find(|c| c.id == case)
            .ok_or_else(|| format!("the run of {case} reported no such case"))?;
        let detail = c.detail.clone();
        Ok((c.outcome.to_string(), detail))
    };
    let mut ok = true;
    let mut out = String::from("per-case self-check: each case run alone (--run CASE) against the clean reference server and against each fault that models a server it must not pass\n");
    out.push_str(&format!(
        "{:<44} {:<22} {:<8} {:<11} {}\n",
        "case", "server", "outcome", "verdict", "why"
    ));
    for case in &cases {
        let (clean, detail) = outcome(None, case)?;
        let good = clean == "pass";
        ok &= good;
        out.push_str(&format!(
            "{:<44} {:<22} {:<8} {:<11} {}\n",
            case,
            "(clean)",
            clean,
            if good { "passes" } else { "CLEAN FAILS" },
            one_line(&detail)
        ));
        for (fault, _) in PER_CASE.iter().filter(|(_, cs)| cs.contains(case)) {
            let (got, detail) = outcome(Some(fault), case)?;
            let caught = got == "fail" || got == "errored";
            ok &= caught;
            out.push_str(&format!(
                "{:<44} {:<22} {:<8} {:<11} {}\n",
                case,
                fault,
                got,
                if caught { "caught" } else { "NOT CAUGHT" },
                one_line(&detail)
            ));
        }
    }
    out.push_str(&format!(
        "seed {}; {} cases; {} faults; {}\n",
        args.seed.unwrap_or(1),
        cases.len(),
        PER_CASE.len(),
        if ok {
            "every case alone catches every fault listed for it"
        } else {
            "PER-CASE SELF-CHECK FAILED"
        }
    ));
    write(&args.output, &out)?;
    Ok(if ok { 0 } else { 1 })
}

/// The first line of `text`, cut to 100 characters.
fn one_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(100)
        .collect()
}

/// The self-check: the suite must pass the clean reference server and fail every faulty one.
fn self_check(args: &Args) -> Result<u8, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let faults = list_faults(&exe)?;
    let seed = args.seed.unwrap_or(1);
    let mut runs: Vec<(Option<String>, String, driftless_conformance::Report)> = Vec::new();
    for fault in std::iter::once(None).chain(faults.iter().map(|(n, _)| Some(n.clone()))) {
        let report = run_reference(
            &exe,
            args,
            fault.as_deref(),
            args.run.clone(),
            args.skip.clone(),
        )?;
        let ids = faults
            .iter()
            .find(|(n, _)| Some(n) == fault.as_ref())
            .map(|(_, ids)| ids.clone())
            .unwrap_or_default();
        runs.push((fault, ids, report));
    }
    let mut ok = true;
    let mut out = String::from("self-check: the suite against the reference server, clean and with each deliberate fault\n");
    for (fault, ids, report) in &runs {
        let failing: Vec<&str> = report
            .cases
            .iter()
            .filter(|c| c.outcome == "fail" || c.outcome == "errored")
            .map(|c| c.id.as_str())
            .collect();
        let (verdict, good) = match fault {
            None => (
                if failing.is_empty() {
                    "clean server passes"
                } else {
                    "CLEAN SERVER FAILS"
                },
                failing.is_empty(),
            ),
            Some(_) => (
                if failing.is_empty() {
                    "NOT CAUGHT"
                } else {
                    "caught"
                },
                !failing.is_empty(),
            ),
        };
        ok &= good;
        out.push_str(&format!(
            "{:<30} {:<22} {:<20} {}\n",
            fault.as_deref().unwrap_or("(none)"),
            ids,
            verdict,
            failing.join(", ")
        ));
    }
    out.push_str(&format!(
        "seed {seed}; {} faults; {}\n",
        faults.len(),
        if ok {
            "every fault caught"
        } else {
            "SELF-CHECK FAILED"
        }
    ));
    write(&args.output, &out)?;
    Ok(if ok { 0 } else { 1 })
}
