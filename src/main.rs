//! The `ebis` binary: parses arguments (in `cli`), sets up logging, runs the command, and
//! turns its result into an exit code. No logic here.

mod cli;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: binlog decoding allocates a few small strings per
/// column per row, and glibc's arenas spent half of a catch-up's CPU in the ebis process
/// on them (perf, `ebis bench capture --mode binlog`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.log_format());
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EBIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        cli::LogFormat::Text => lines
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // {"timestamp":…,"level":"INFO","message":…,"source":…,…}: fields at the top.
        cli::LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}
