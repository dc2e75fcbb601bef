//! `driftless`: the one command-line tool of Driftless.
//!
//! Subcommands arrive with the parts they drive; today: `schema export`, which regenerates
//! `schemas/v1/` from the protocol crate's types.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "driftless",
    version,
    about = "Driftless: offline-first sync protocol tooling"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with the protocol's JSON Schemas.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Write the JSON Schemas of every wire message and the OpenAPI document to a folder.
    Export {
        /// The folder to write into (created if missing).
        #[arg(long, default_value = driftless_protocol::export::SCHEMA_DIR)]
        out: PathBuf,
        /// Do not write; exit 1 if any file in the folder differs from what would be written.
        #[arg(long)]
        check: bool,
    },
}

/// A failure the CLI reports in one line.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{count} schema file(s) in {dir} differ from the protocol types: {names}; run `driftless schema export`")]
    Stale {
        count: usize,
        dir: PathBuf,
        names: String,
    },
}

fn export(out: &Path, check: bool) -> Result<(), CliError> {
    let files = driftless_protocol::export::files();
    if check {
        let stale: Vec<&str> = files
            .iter()
            .filter(|(name, text)| {
                std::fs::read_to_string(out.join(name)).ok().as_ref() != Some(text)
            })
            .map(|(name, _)| name.as_str())
            .collect();
        if stale.is_empty() {
            println!(
                "{} schema files in {} are current",
                files.len(),
                out.display()
            );
            return Ok(());
        }
        return Err(CliError::Stale {
            count: stale.len(),
            dir: out.to_owned(),
            names: stale.join(", "),
        });
    }
    std::fs::create_dir_all(out).map_err(|source| CliError::CreateDir {
        path: out.to_owned(),
        source,
    })?;
    for (name, text) in &files {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|source| CliError::Write { path, source })?;
    }
    println!("wrote {} files to {}", files.len(), out.display());
    Ok(())
}

/// Parses the command line; a usage error is one line on stderr and exit code 2.
fn parse() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            Err(ExitCode::from(2))
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("driftless: {first} (see driftless --help)");
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Schema {
            command: SchemaCommand::Export { out, check },
        } => export(&out, check),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("driftless: {e}");
            ExitCode::FAILURE
        }
    }
}
