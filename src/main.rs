//! The `ebis` command line: parses arguments and calls into the library. No logic here.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ebis::config::{self, PipelineConfig};
use ebis::mapping::MappingSet;
use ebis::pipeline::{self, Shutdown, ShutdownTrigger};
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
enum BenchKind {
    /// Load a table of --rows, time the first snapshot, stream --changes updates (changes/s
    /// and lag), then the catch-up of a queued backlog.
    Capture {
        /// Rows in the source table.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Updates to stream.
        #[arg(long, default_value_t = 100_000)]
        changes: u64,
        /// Concurrent writers.
        #[arg(long, default_value_t = 4)]
        writers: u64,
        /// Changes per warehouse transaction.
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
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
struct BenchServers {
    /// MySQL/MariaDB admin URL.
    #[arg(
        long,
        env = "EBIS_TEST_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306/"
    )]
    mysql_url: String,
    /// PostgreSQL admin URL.
    #[arg(
        long,
        env = "EBIS_TEST_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg_url: String,
    /// Keep the databases afterwards.
    #[arg(long)]
    keep: bool,
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
    /// Print (or apply) what a bureau DBA installs so ebis can capture a source: the change
    /// table and triggers for exactly the tables its mappings read.
    SetupSource {
        /// The source, as named in the config.
        source: String,
        /// Run the statements, with the privileged URL in EBIS_SOURCE_ADMIN_URL (or the
        /// source's own connection when that is unset).
        #[arg(long)]
        apply: bool,
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
    Compare {
        /// Write one work list per bureau into this folder.
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
        /// Work list format: xlsx or csv.
        #[arg(long, default_value = "xlsx")]
        format: String,
        /// Only this bureau's work list (aic, ntax, ltax, qts).
        #[arg(long)]
        bureau: Option<String>,
        /// Only this division.
        #[arg(long)]
        division: Option<String>,
        /// Evaluate the rules as of this date (YYYY-MM-DD), stored for later runs; `today`
        /// clears it.
        #[arg(long)]
        as_of: Option<String>,
        /// Score the open findings against a ground-truth CSV (from `ebis demo`).
        #[arg(long, value_name = "FILE")]
        truth: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
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
    Demo {
        /// Enterprises to simulate.
        #[arg(long, default_value_t = 2000)]
        enterprises: usize,
        /// Simulator events per second while live.
        #[arg(long, default_value_t = 40.0)]
        rate: f64,
        /// Seed of the simulation (same seed, same world).
        #[arg(long, default_value_t = 2006)]
        seed: u64,
        /// Probability, per enterprise and rule, of an injected discrepancy.
        #[arg(long, default_value_t = 0.02)]
        discrepancy_rate: f64,
        /// Probability of each kind of harmless noise (width, spaces, brackets).
        #[arg(long, default_value_t = 0.15)]
        noise_rate: f64,
        /// Live phase length, e.g. 60s, 5m.
        #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
        duration: std::time::Duration,
        /// Leave the servers running at the end.
        #[arg(long)]
        keep: bool,
        /// Use this PostgreSQL server (admin URL) instead of a private one.
        #[arg(long, value_name = "URL")]
        warehouse: Option<String>,
        /// Use this MySQL/MariaDB server (admin URL) instead of a private one.
        #[arg(long, value_name = "URL")]
        source_url: Option<String>,
        /// Folder for the servers, config, mappings and ground truth.
        #[arg(long, default_value = "target/ebis-demo")]
        dir: PathBuf,
    },
    /// Measure on real servers, in throwaway databases: `capture` (snapshot rows/s,
    /// streaming changes/s and lag) or `compare` (a full comparison run on a simulated city).
    Bench {
        #[command(subcommand)]
        what: BenchKind,
    },
    /// Show each source's mode, state, position, lag, rows, quarantine, gaps and last error.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
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
        Command::SetupSource { source, apply } => {
            let config = load_config(&cli.config)?;
            let cfg = source_of(&config, &source)?;
            let setup =
                ebis::setup::setup_script(cfg, &mappings_of(cfg)?).map_err(anyhow::Error::msg)?;
            if !apply {
                print!("{}", setup.script);
                return Ok(ExitCode::SUCCESS);
            }
            if setup.statements.is_empty() {
                println!("{}", setup.script);
                println!("nothing to install for {} capture", cfg.capture.name());
                return Ok(ExitCode::SUCCESS);
            }
            runtime()?
                .block_on(ebis::setup::apply_setup(cfg, &setup.statements))
                .map_err(anyhow::Error::msg)?;
            println!(
                "installed change capture on {} ({} statements)",
                cfg.name,
                setup.statements.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            let config = load_config(&cli.config)?;
            runtime()?.block_on(async {
                let wh = warehouse_of(Some(&config), config.sources.len() * 2 + 2)?;
                warehouse::migrate(&wh).await?;
                let (trigger, shutdown) = Shutdown::new();
                on_signals(trigger);
                if let Some(listen) = config.metrics_listen.clone() {
                    let wh = wh.clone();
                    tokio::spawn(async move {
                        if let Err(e) = ebis::metrics::serve(&listen, wh).await {
                            tracing::error!(error = %e, listen = %listen, "metrics endpoint stopped");
                        }
                    });
                }
                let schedule = config.compare_every.map(|every| {
                    tokio::spawn(ebis::compare::run_on_schedule(
                        wh.clone(),
                        every,
                        shutdown.clone(),
                    ))
                });
                let failed = pipeline::run_sources(&config, &wh, shutdown).await?;
                if let Some(s) = schedule {
                    let _ = s.await;
                }
                if failed.is_empty() {
                    Ok(ExitCode::SUCCESS)
                } else {
                    for (name, e) in &failed {
                        eprintln!("source {name} stopped: {e}");
                    }
                    Ok(ExitCode::FAILURE)
                }
            })
        }
        Command::Snapshot { source, table } => {
            let config = load_config(&cli.config)?;
            let cfg = source_of(&config, &source)?.clone();
            let mappings = mappings_of(&cfg)?;
            let plans = pipeline::plans(&cfg, &mappings);
            let tables: Vec<String> = match &table {
                None => plans.iter().map(|p| p.table.clone()).collect(),
                Some(t) => match plans.iter().find(|p| p.table.eq_ignore_ascii_case(t)) {
                    Some(p) => vec![p.table.clone()],
                    None => bail!(
                        "source {} has no mapping reading table {t} (tables: {})",
                        cfg.name,
                        plans
                            .iter()
                            .map(|p| p.table.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
            };
            runtime()?.block_on(async {
                let wh = warehouse_of(Some(&config), 2)?;
                warehouse::migrate(&wh).await?;
                wh.register_sources(&config.sources).await?;
                if wh.checkpoint(&cfg.name).await?.is_none() && !wh.source_locked(&cfg.name).await? {
                    bail!(
                        "source {} has never been captured: `ebis run` takes its first snapshot (and sets its checkpoint)",
                        cfg.name
                    );
                }
                let (trigger, shutdown) = Shutdown::new();
                on_signals(trigger);
                let mut source = pipeline::AnySource::open(&cfg, plans)?;
                source.check().await?;
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg:24} [{bar:40}] {pos}/{len} rows {per_sec} eta {eta}",
                    )?
                    .progress_chars("=> "),
                );
                let mut current = String::new();
                let applied = pipeline::snapshot::resnapshot(
                    &mut source,
                    &wh,
                    &cfg,
                    &mappings,
                    &tables,
                    config.batch_size,
                    |t, done, total| {
                        if current != t {
                            current = t.to_owned();
                            bar.reset();
                            bar.set_message(t.to_owned());
                            bar.set_length(total);
                        }
                        bar.set_position(done);
                    },
                    &shutdown,
                )
                .await?;
                bar.finish_and_clear();
                source.close().await;
                println!(
                    "snapshot of {}: {} rows changed, {} marked deleted, {} quarantined",
                    cfg.name, applied.upserted, applied.deleted, applied.quarantined
                );
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Compare {
            export,
            format,
            bureau,
            division,
            as_of,
            truth,
            json,
        } => {
            let config = load_optional_config(&cli.config)?;
            let format = match format.as_str() {
                "xlsx" => ebis::compare::ExportFormat::Xlsx,
                "csv" => ebis::compare::ExportFormat::Csv,
                other => bail!("--format {other}: expected xlsx or csv"),
            };
            let bureau =
                match bureau.as_deref() {
                    None => None,
                    Some(b) => Some(ebis::indicators::Bureau::from_code(b).with_context(|| {
                        format!("--bureau {b}: expected aic, ntax, ltax or qts")
                    })?),
                };
            let as_of = match as_of.as_deref() {
                None => None,
                Some("today") => Some(None),
                Some(d) => Some(Some(
                    chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                        .with_context(|| format!("--as-of {d}: expected YYYY-MM-DD"))?,
                )),
            };
            runtime()?.block_on(async {
                let wh = warehouse_of(config.as_ref(), 2)?;
                warehouse::migrate(&wh).await?;
                if let Some(a) = as_of {
                    wh.set_as_of(a).await?;
                }
                let run = wh.compare().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&run)?);
                } else {
                    print!("{}", run.render());
                }
                if let Some(dir) = export {
                    for (path, n) in ebis::compare::export_worklists(
                        &wh,
                        &dir,
                        format,
                        bureau,
                        division.as_deref(),
                    )
                    .await?
                    {
                        println!("wrote {} ({n} findings)", path.display());
                    }
                }
                if let Some(path) = truth {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let scores = ebis::compare::score_against_truth(&wh, &text).await?;
                    print!("{}", ebis::compare::render_scores(&scores));
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Verify { source, json } => {
            let config = load_config(&cli.config)?;
            let sources: Vec<&ebis::config::SourceConfig> = match &source {
                Some(name) => vec![source_of(&config, name)?],
                None => config.sources.iter().filter(|s| s.enabled).collect(),
            };
            runtime()?.block_on(async {
                let wh = warehouse_of(Some(&config), 2)?;
                let mut reports = Vec::new();
                for s in sources {
                    let mappings = mappings_of(s)?;
                    reports.extend(ebis::verify::verify_source(s, &mappings, &wh, 5000).await?);
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&reports)?);
                } else {
                    print!("{}", ebis::verify::render(&reports));
                }
                Ok(if reports.iter().all(|r| r.agrees()) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            })
        }
        Command::Demo {
            enterprises,
            rate,
            seed,
            discrepancy_rate,
            noise_rate,
            duration,
            keep,
            warehouse,
            source_url,
            dir,
        } => {
            let opts = ebis::demo::DemoOptions {
                enterprises,
                rate,
                seed,
                discrepancy_rate,
                noise_rate,
                duration,
                keep,
                warehouse,
                source_url,
                dir,
            };
            runtime()?.block_on(async {
                let (trigger, shutdown) = Shutdown::new();
                on_signals(trigger);
                let summary = ebis::demo::run(&opts, shutdown).await?;
                print!("{}", summary.render());
                Ok(if summary.verify.iter().all(|r| r.agrees()) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            })
        }
        Command::Bench { what } => match what {
            BenchKind::Capture {
                rows,
                changes,
                writers,
                batch_size,
                servers,
            } => {
                let opts = ebis::bench::BenchOptions {
                    mysql_url: servers.mysql_url,
                    pg_url: servers.pg_url,
                    rows,
                    changes,
                    writers,
                    batch_size,
                    keep: servers.keep,
                };
                let report = runtime()?
                    .block_on(ebis::bench::run(&opts, |line| eprintln!("bench: {line}")))?;
                print!("{}", report.render());
                Ok(ExitCode::SUCCESS)
            }
            BenchKind::Compare {
                enterprises,
                servers,
            } => {
                let report = runtime()?.block_on(ebis::bench::compare_bench(
                    &servers.mysql_url,
                    &servers.pg_url,
                    enterprises,
                    servers.keep,
                    |line| eprintln!("bench: {line}"),
                ))?;
                print!("{}", report.render());
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Status { json } => {
            let config = load_optional_config(&cli.config)?;
            runtime()?.block_on(async {
                let wh = warehouse_of(config.as_ref(), 1)?;
                let rows = wh.status().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else if rows.is_empty() {
                    println!("no sources have run yet");
                } else {
                    print!("{}", ebis::status::render(&rows));
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

fn load_config(path: &Path) -> Result<PipelineConfig> {
    PipelineConfig::load(path).map_err(|d| anyhow::anyhow!("{d}"))
}

fn warehouse_of(config: Option<&PipelineConfig>, pool: usize) -> Result<Warehouse> {
    let conn = config::resolve_warehouse(config).map_err(anyhow::Error::msg)?;
    Ok(Warehouse::new(&conn, pool)?)
}

fn mappings_of(cfg: &ebis::config::SourceConfig) -> Result<MappingSet> {
    MappingSet::load_dir(&cfg.mappings_dir, Some(cfg.bureau)).map_err(|d| anyhow::anyhow!("{d}"))
}

fn source_of<'a>(config: &'a PipelineConfig, name: &str) -> Result<&'a ebis::config::SourceConfig> {
    config.source(name).with_context(|| {
        format!(
            "no source `{name}` in {} (sources: {})",
            config.path.display(),
            config
                .sources
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Ctrl-C or SIGTERM → shutdown.
fn on_signals(trigger: ShutdownTrigger) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutting down after the current batches");
        trigger.trigger();
    });
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    config::parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration (e.g. 30s, 5m)"))
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
