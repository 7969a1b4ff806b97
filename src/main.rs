//! The `ebis` command line: parses arguments and calls into the library. No logic here.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ebis::config::{self, PipelineConfig};
use ebis::warehouse::{self, Warehouse};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Change-data-capture from the bureaus' databases into one PostgreSQL warehouse.
#[derive(Parser)]
#[command(name = "ebis", version, about, long_about = None)]
struct Cli {
    /// The pipeline configuration file.
    #[arg(
        long,
        global = true,
        default_value = "pipeline.yaml",
        value_name = "FILE"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending warehouse migrations (the warehouse URL comes from EBIS_WAREHOUSE_URL
    /// or the config).
    Migrate,
    /// Check the config and every mapping it uses (offline); or only the mapping files and
    /// folders given. Prints file:line:column errors; exits 1 on any.
    Check {
        /// Mapping files or folders to check instead of the config.
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EBIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Migrate => {
            let config = load_optional_config(&cli.config)?;
            let conn = config::resolve_warehouse(config.as_ref()).map_err(anyhow::Error::msg)?;
            runtime()?.block_on(async {
                let wh = Warehouse::new(&conn, 1)?;
                let report = warehouse::migrate(&wh).await?;
                if report.applied.is_empty() {
                    println!(
                        "warehouse {} is up to date ({} migrations)",
                        conn.display_url(),
                        report.already
                    );
                } else {
                    for name in &report.applied {
                        println!("applied {name}");
                    }
                    println!(
                        "warehouse {}: {} applied now, {} already",
                        conn.display_url(),
                        report.applied.len(),
                        report.already
                    );
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Check { paths } => {
            let report = if paths.is_empty() {
                ebis::check::check_config(&cli.config)
            } else {
                ebis::check::check_paths(&paths)
            };
            for note in &report.notes {
                eprintln!("{note}");
            }
            for d in &report.errors.0 {
                eprintln!("{d}");
            }
            if report.errors.is_empty() {
                println!(
                    "ok: {} mapping file(s) checked, no errors",
                    report.mappings_ok
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "{} error(s); {} mapping file(s) without errors",
                    report.errors.0.len(),
                    report.mappings_ok
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// The config when the file exists; `None` when it is the default and absent (commands
/// that need only the warehouse then run from `EBIS_WAREHOUSE_URL`).
fn load_optional_config(path: &Path) -> Result<Option<PipelineConfig>> {
    if !path.exists() {
        if path == Path::new("pipeline.yaml") {
            return Ok(None);
        }
        bail!("config file {} does not exist", path.display());
    }
    PipelineConfig::load(path)
        .map(Some)
        .map_err(|d| anyhow::anyhow!("{d}"))
}
