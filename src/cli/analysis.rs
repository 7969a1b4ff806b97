//! Commands for DBAs and analysts: `check` (config and mappings; `--online`, the servers) and `compare`
//! (a comparison run, work-list export, scoring against ground truth).

use super::context::{load_optional_config, runtime, warehouse_of};
use anyhow::{Context, Result, bail};
use ebis::compare::ExportFormat;
use ebis::indicators::Bureau;
use ebis::warehouse;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The options of `ebis compare`.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// Write one work list per bureau into this folder.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Work list format: xlsx or csv.
    #[arg(long, default_value = "xlsx")]
    pub format: String,
    /// Only this bureau's work list (aic, ntax, ltax, qts).
    #[arg(long)]
    pub bureau: Option<String>,
    /// Only this division.
    #[arg(long)]
    pub division: Option<String>,
    /// Evaluate the rules as of this date (YYYY-MM-DD), stored for later runs; `today`
    /// clears it.
    #[arg(long)]
    pub as_of: Option<String>,
    /// Score the open findings against a ground-truth CSV (from `ebis demo`).
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Compare every enterprise, even when only some changed since the last run (a run is
    /// otherwise incremental when it can be).
    #[arg(long)]
    pub full: bool,
}

pub fn compare(config_path: &Path, args: CompareArgs) -> Result<ExitCode> {
    let config = load_optional_config(config_path)?;
    let format = match args.format.as_str() {
        "xlsx" => ExportFormat::Xlsx,
        "csv" => ExportFormat::Csv,
        other => bail!("--format {other}: expected xlsx or csv"),
    };
    let bureau = match args.bureau.as_deref() {
        None => None,
        Some(b) => Some(
            Bureau::from_code(b)
                .with_context(|| format!("--bureau {b}: expected aic, ntax, ltax or qts"))?,
        ),
    };
    // A ground truth of the wrong shape is refused before anything runs.
    let truth = match &args.truth {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(
                ebis::compare::parse_truth(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            )
        }
    };
    let as_of = match args.as_of.as_deref() {
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
        let run = if args.full {
            wh.compare_full().await?
        } else {
            wh.compare().await?
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&run)?);
        } else {
            print!("{}", run.render());
        }
        if let Some(dir) = &args.export {
            for (path, n) in ebis::compare::export_worklists(
                &wh,
                dir,
                ebis::compare::ExportOptions {
                    format,
                    bureau,
                    division: args.division.as_deref(),
                    zone: config.as_ref().map(|c| c.time_zone).unwrap_or_default(),
                },
            )
            .await?
            {
                println!("wrote {} ({n} findings)", path.display());
            }
        }
        if let Some(truth) = &truth {
            let scores = ebis::compare::score_against_truth(&wh, truth).await?;
            print!("{}", ebis::compare::render_scores(&scores));
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn check(config_path: &Path, paths: &[PathBuf], online: bool) -> Result<ExitCode> {
    let report = if paths.is_empty() {
        ebis::check::check_config(config_path)
    } else {
        ebis::check::check_paths(paths)
    };
    for note in &report.notes {
        eprintln!("{note}");
    }
    for d in &report.errors.0 {
        eprintln!("{d}");
    }
    if !report.errors.is_empty() {
        println!(
            "{} error(s); {} mapping file(s) without errors",
            report.errors.0.len(),
            report.mappings_ok
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "ok: {} mapping file(s) checked, no errors",
        report.mappings_ok
    );
    let Some(config) = report.config.filter(|_| online) else {
        return Ok(ExitCode::SUCCESS);
    };
    let probes = runtime()?.block_on(ebis::check::check_online(&config));
    for p in &probes {
        match &p.outcome {
            Ok(found) => println!("{}: ok: {found}", p.what),
            Err(e) => println!("{}: error: {e}", p.what),
        }
        for note in &p.notes {
            match note.strip_prefix("warning: ") {
                Some(w) => println!("{}: warning: {w}", p.what),
                None => println!("{}: note: {note}", p.what),
            }
        }
    }
    Ok(if probes.iter().all(|p| p.outcome.is_ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
