//! The command line's shape (clap definitions) and the dispatch from a parsed command to
//! the function that runs it. Each command lives in a child module by concern; none of
//! them holds logic that belongs in the library.

mod analysis;
mod capture;
mod context;
mod tools;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Change-data-capture from the bureaus' databases into one PostgreSQL warehouse.
#[derive(Parser)]
#[command(name = "ebis", version, about, long_about = None)]
pub struct Cli {
    /// The pipeline configuration file.
    #[arg(
        long,
        global = true,
        default_value = "pipeline.yaml",
        value_name = "FILE"
    )]
    config: PathBuf,
    /// How log lines are written to stderr: `text` for people, `json` (one object a
    /// line, with source, table, batch and position as fields) for a log collector.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "EBIS_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people (coloured on a terminal).
    Text,
    /// One JSON object per line: timestamp, level, message and the event's fields.
    Json,
}

impl Cli {
    /// The log format asked for.
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }
}

#[derive(Subcommand)]
pub enum BenchKind {
    /// Load a table of --rows, time the first snapshot, stream --changes changes (changes/s
    /// and lag), then the catch-up of a queued backlog.
    Capture {
        /// Rows in the source table.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Changes to stream (nine in ten update a name or an address, about one in eleven
        /// registers an enterprise, one in a hundred deletes one).
        #[arg(long, default_value_t = 100_000)]
        changes: u64,
        /// Concurrent writers.
        #[arg(long, default_value_t = 4)]
        writers: u64,
        /// Changes per warehouse transaction.
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// How the source is captured: `changelog` (triggers) or `binlog` (the server's
        /// binary log, which it must keep: ROW format, FULL row metadata).
        #[arg(long, value_enum, default_value_t = ebis::bench::BenchMode::Changelog)]
        mode: ebis::bench::BenchMode,
        /// Changes per second the writers keep to while streaming (default: as fast as
        /// they can), e.g. 1000 to measure lag at a bureau's pace.
        #[arg(long)]
        rate: Option<f64>,
        #[command(flatten)]
        servers: BenchServers,
    },
    /// Simulate --enterprises, capture the four bureaus into a fresh warehouse, and time
    /// comparison runs (with precision/recall against the simulator's truth).
    Compare {
        /// Enterprises to simulate.
        #[arg(long, default_value_t = 100_000)]
        enterprises: usize,
        #[command(flatten)]
        servers: BenchServers,
    },
}

#[derive(clap::Args)]
pub struct BenchServers {
    /// MySQL/MariaDB admin URL, without password (that is read from
    /// EBIS_TEST_MYSQL_PASSWORD when set).
    #[arg(
        long,
        env = "EBIS_TEST_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306/"
    )]
    mysql_url: String,
    /// PostgreSQL admin URL, without password (that is read from EBIS_TEST_PG_PASSWORD
    /// when set).
    #[arg(
        long,
        env = "EBIS_TEST_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg_url: String,
    /// Keep the databases afterwards.
    #[arg(long)]
    keep: bool,
    /// Create the warehouse database with this ICU locale's collation (e.g. zh-Hans-CN,
    /// as a bureau's deployment would) instead of the server's default.
    #[arg(long, value_name = "ICU_LOCALE")]
    warehouse_locale: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Apply pending warehouse migrations (the warehouse URL comes from EBIS_WAREHOUSE_URL
    /// or the config).
    Migrate,
    /// Check the config and every mapping it uses (offline); or only the mapping files and
    /// folders given. Prints file:line:column errors; exits 1 on any.
    Check {
        /// Mapping files or folders to check instead of the config.
        paths: Vec<PathBuf>,
        /// Also reach every enabled source (tables, mapped columns, capture installed) and
        /// the warehouse (migrations), reading only.
        #[arg(long, conflicts_with = "paths")]
        online: bool,
    },
    /// Print (or apply) what a bureau DBA installs so ebis can capture a source: the change
    /// table and triggers for exactly the tables its mappings read.
    SetupSource {
        /// The source, as named in the config.
        source: String,
        /// Run the statements, with the privileged URL in EBIS_SOURCE_ADMIN_URL (or the
        /// source's own connection when that is unset).
        #[arg(long)]
        apply: bool,
        /// Remove capture instead: the triggers and the change table (printed, or run
        /// with --apply).
        #[arg(long)]
        remove: bool,
    },
    /// Run every enabled source: snapshot, then stream changes into the warehouse until
    /// Ctrl-C or SIGTERM. Applies pending warehouse migrations first.
    Run,
    /// Re-read a source's tables (all, or one) into the warehouse with a progress bar,
    /// without moving its checkpoint; rows gone from the source are marked deleted.
    Snapshot {
        /// The source.
        source: String,
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
    },
    /// Run the consistency comparison now and print a per-rule summary; optionally export
    /// per-bureau work lists, or score the findings against a simulator's ground truth.
    Compare(analysis::CompareArgs),
    /// Compare sources with the warehouse: per record kind, rows at the source, rows in the
    /// warehouse, missing, extra, different (by content hash), rejected. Exit 1 on any
    /// difference.
    Verify {
        /// Only this source.
        source: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The whole job in one command: private PostgreSQL and MariaDB servers (from the
    /// machine's own binaries, in target/ebis-demo), the four bureaus' databases filled by
    /// the simulator, capture installed, snapshot, then the pipeline live with a panel while
    /// the simulator keeps changing data; a summary at the end.
    Demo(tools::DemoArgs),
    /// Measure on real servers, in throwaway databases: `capture` (snapshot rows/s,
    /// streaming changes/s and lag) or `compare` (a full comparison run on a simulated city).
    Bench {
        #[command(subcommand)]
        what: BenchKind,
    },
    /// Show each source's mode, state, position, lag, rows, quarantine, gaps and last error.
    /// Exits 3 when a source has failed, 4 when one lags more than --max-lag, 1 when the
    /// status cannot be read (2: the command line is wrong); 0 otherwise.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Exit 4 when a source's lag (now minus the time it is complete up to) is over
        /// this, e.g. 90s, 1m30s, 10m.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
        max_lag: Option<std::time::Duration>,
    },
    /// Make a stopped source start over at its next run: a new head, every table
    /// snapshotted again while streaming from it, rows gone meanwhile deleted by key
    /// comparison; what the warehouse holds stays until then. For a lost position or
    /// after a bureau restored its database. Refused while an ebis process runs it.
    ResetSource {
        /// The source, as named in the config.
        source: String,
    },
}

impl BenchServers {
    /// The two admin accounts, passwords from the environment.
    fn accounts(
        &self,
    ) -> Result<(
        ebis::config::ConnectionConfig,
        ebis::config::ConnectionConfig,
    )> {
        let account = |url: &str, env: &str, flag: &str| {
            ebis::config::ConnectionConfig::from_url(url, env, flag).map_err(anyhow::Error::msg)
        };
        Ok((
            account(&self.mysql_url, "EBIS_TEST_MYSQL_PASSWORD", "--mysql-url")?,
            account(&self.pg_url, "EBIS_TEST_PG_PASSWORD", "--pg-url")?,
        ))
    }
}

/// A duration argument as people write it (`90s`, `1m30s`, `10m`).
pub(crate) fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    ebis::config::parse_duration(s)
        .ok_or_else(|| format!("`{s}` is not a duration (e.g. 30s, 1m30s, 5m)"))
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let config = cli.config;
    match cli.command {
        Command::Migrate => capture::migrate(&config),
        Command::SetupSource {
            source,
            apply,
            remove,
        } => capture::setup_source(&config, &source, apply, remove),
        Command::Run => capture::run(&config),
        Command::Snapshot { source, table } => {
            capture::snapshot(&config, &source, table.as_deref())
        }
        Command::Status { json, max_lag } => capture::status(&config, json, max_lag),
        Command::ResetSource { source } => capture::reset_source(&config, &source),
        Command::Verify { source, json } => capture::verify(&config, source.as_deref(), json),
        Command::Compare(args) => analysis::compare(&config, args),
        Command::Check { paths, online } => analysis::check(&config, &paths, online),
        Command::Demo(args) => tools::demo(args.into()),
        Command::Bench { what } => tools::bench(what),
    }
}
