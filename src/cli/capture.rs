//! Commands that set up, run and watch capture: `migrate`, `setup-source`, `run`,
//! `snapshot`, `status` and `verify`.

use super::context::{
    load_config, load_optional_config, mappings_of, on_signals, runtime, source_of, warehouse_of,
};
use anyhow::{Context, Result, bail};
use ebis::config;
use ebis::pipeline::{self, Shutdown};
use ebis::warehouse::{self, Warehouse};
use ebis_source::Source;
use std::path::Path;
use std::process::ExitCode;

pub fn migrate(config_path: &Path) -> Result<ExitCode> {
    let config = load_optional_config(config_path)?;
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

pub fn setup_source(
    config_path: &Path,
    source: &str,
    apply: bool,
    remove: bool,
) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let cfg = source_of(&config, source)?;
    if remove {
        let removal =
            ebis::setup::removal_script(cfg, &mappings_of(cfg)?).map_err(anyhow::Error::msg)?;
        if !apply {
            print!("{}", removal.script);
            return Ok(ExitCode::SUCCESS);
        }
        runtime()?
            .block_on(ebis::setup::apply_removal(cfg, &removal))
            .map_err(anyhow::Error::msg)?;
        println!(
            "removed change capture from {} ({} statements)",
            cfg.name,
            removal.statements.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let setup = ebis::setup::setup_script(cfg, &mappings_of(cfg)?).map_err(anyhow::Error::msg)?;
    if !apply {
        print!("{}", setup.script);
        print!(
            "{}",
            runtime()?.block_on(ebis::setup::stale_capture_note(cfg, &setup))
        );
        return Ok(ExitCode::SUCCESS);
    }
    if setup.statements.is_empty() {
        println!("{}", setup.script);
        println!("nothing to install for {} capture", cfg.capture.name());
        return Ok(ExitCode::SUCCESS);
    }
    let repaired = runtime()?
        .block_on(ebis::setup::apply_setup(cfg, &setup))
        .map_err(anyhow::Error::msg)?;
    for line in &repaired {
        println!("{line}");
    }
    println!(
        "installed change capture on {} ({} statements)",
        cfg.name,
        setup.statements.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run(config_path: &Path) -> Result<ExitCode> {
    let config = load_config(config_path)?;
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

pub fn snapshot(config_path: &Path, source: &str, table: Option<&str>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let cfg = source_of(&config, source)?.clone();
    let mappings = mappings_of(&cfg)?;
    let plans = pipeline::plans(&cfg, &mappings);
    let tables: Vec<String> = match table {
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
        let running = wh
            .lease_holders()
            .await?
            .iter()
            .any(|h| h.source == cfg.name);
        if wh.checkpoint(&cfg.name).await?.is_none() && !running {
            bail!(
                "source {} has never been captured: `ebis run` takes its first snapshot (and sets its checkpoint)",
                cfg.name
            );
        }
        let (trigger, shutdown) = Shutdown::new();
        on_signals(trigger);
        let mut source = pipeline::AnySource::open(&cfg, plans)?;
        source
            .check()
            .await
            .with_context(|| format!("source {}", cfg.name))?;
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
                // The total is the source's estimate: a table may hold more.
                if bar.length().is_some_and(|len| done > len) {
                    bar.set_length(done);
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

pub fn status(
    config_path: &Path,
    json: bool,
    max_lag: Option<std::time::Duration>,
) -> Result<ExitCode> {
    let config = load_optional_config(config_path)?;
    let zone = config.as_ref().map(|c| c.time_zone).unwrap_or_default();
    let max_lag = max_lag.map(|d| d.as_secs_f64());
    runtime()?.block_on(async {
        let wh = warehouse_of(config.as_ref(), 1)?;
        let rows = wh.status().await?;
        let base = wh.base_status().await?;
        let health = ebis::status::Health::of(&rows, max_lag);
        if json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else if rows.is_empty() {
            println!("no sources have run yet");
        } else {
            print!("{}", ebis::status::render(&rows, zone));
            println!(
                "{}",
                ebis::status::render_base(&base, chrono::Utc::now(), zone)
            );
            if let Some(line) = health.line(max_lag) {
                println!("{line}");
            }
        }
        Ok(ExitCode::from(health.code()))
    })
}

pub fn reset_source(config_path: &Path, source: &str) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    source_of(&config, source)?;
    runtime()?.block_on(async {
        let wh = warehouse_of(Some(&config), 1)?;
        let reason = format!(
            "reset by an operator (ebis reset-source) at {}",
            config.time_zone.show(chrono::Utc::now())
        );
        match wh.request_reset(source, &reason).await? {
            warehouse::ResetOutcome::Running => bail!(
                "source {source} is being captured by a running ebis process: stop it first (reset-source changes nothing while it runs)"
            ),
            warehouse::ResetOutcome::NeverRun => {
                println!(
                    "source {source} has no stored position: its next run snapshots it from the start anyway"
                );
            }
            warehouse::ResetOutcome::Requested => {
                println!(
                    "source {source} will start over at its next run: a new head, every table snapshotted again while streaming from it, rows gone meanwhile deleted by key comparison. The warehouse keeps what it holds until then; `ebis status` shows the reset as a re-snapshot."
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn verify(config_path: &Path, source: Option<&str>, json: bool) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let sources: Vec<&config::SourceConfig> = match source {
        Some(name) => vec![source_of(&config, name)?],
        None => config.sources.iter().filter(|s| s.enabled).collect(),
    };
    runtime()?.block_on(async {
        let wh = warehouse_of(Some(&config), 2)?;
        let mut reports = Vec::new();
        for s in sources {
            let mappings = mappings_of(s)?;
            reports.extend(
                ebis::verify::verify_source(s, &mappings, &wh, 5000)
                    .await
                    .with_context(|| format!("source {}", s.name))?,
            );
        }
        if json {
            println!("{}", serde_json::to_string_pretty(&reports)?);
        } else {
            print!("{}", ebis::verify::render(&reports));
        }
        Ok(if reports.iter().all(|r| r.clean()) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}
