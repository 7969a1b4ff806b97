//! Commands that bring their own world: `demo` (private servers, simulated bureaus, the
//! live pipeline) and `bench` (measurements in throwaway databases).

use super::BenchKind;
use super::context::{on_signals, runtime};
use anyhow::Result;
use ebis::pipeline::Shutdown;
use std::path::PathBuf;
use std::process::ExitCode;

/// The options of `ebis demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Enterprises to simulate.
    #[arg(long, default_value_t = 2000)]
    pub enterprises: usize,
    /// Simulator events per second while live.
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
    /// Seed of the simulation (same seed, same world).
    #[arg(long, default_value_t = 2006)]
    pub seed: u64,
    /// Probability, per enterprise and rule, of an injected discrepancy.
    #[arg(long, default_value_t = 0.02)]
    pub discrepancy_rate: f64,
    /// Probability of each kind of harmless noise (width, spaces, brackets).
    #[arg(long, default_value_t = 0.15)]
    pub noise_rate: f64,
    /// Live phase length, e.g. 60s, 5m.
    #[arg(long, default_value = "60s", value_parser = super::parse_duration_arg)]
    pub duration: std::time::Duration,
    /// Leave the servers running at the end.
    #[arg(long)]
    pub keep: bool,
    /// Use this PostgreSQL server (admin URL, without password: that is read from
    /// EBIS_DEMO_WAREHOUSE_PASSWORD when set) instead of a private one.
    #[arg(long, value_name = "URL")]
    pub warehouse: Option<String>,
    /// Use this MySQL/MariaDB server (admin URL, without password: that is read from
    /// EBIS_DEMO_SOURCE_PASSWORD when set) instead of a private one.
    #[arg(long, value_name = "URL")]
    pub source_url: Option<String>,
    /// Folder for the servers, config, mappings and ground truth.
    #[arg(long, default_value = "target/ebis-demo")]
    pub dir: PathBuf,
    /// How the bureaus are captured: `triggers` (change tables filled by triggers; local
    /// tax by its modified column) or `binlog` (every bureau by the server's binary log,
    /// nothing installed on the bureaus' databases).
    #[arg(long, value_enum, default_value_t = ebis::demo::DemoCapture::Triggers)]
    pub capture: ebis::demo::DemoCapture,
}

impl From<DemoArgs> for ebis::demo::DemoOptions {
    fn from(a: DemoArgs) -> Self {
        ebis::demo::DemoOptions {
            enterprises: a.enterprises,
            rate: a.rate,
            seed: a.seed,
            discrepancy_rate: a.discrepancy_rate,
            noise_rate: a.noise_rate,
            duration: a.duration,
            keep: a.keep,
            warehouse: a.warehouse,
            source_url: a.source_url,
            dir: a.dir,
            capture: a.capture,
        }
    }
}

pub fn demo(opts: ebis::demo::DemoOptions) -> Result<ExitCode> {
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

pub fn bench(what: BenchKind) -> Result<ExitCode> {
    let progress = |line: &str| eprintln!("bench: {line}");
    match what {
        BenchKind::Capture {
            rows,
            changes,
            writers,
            batch_size,
            mode,
            rate,
            servers,
        } => {
            let (mysql, pg) = servers.accounts()?;
            let opts = ebis::bench::BenchOptions {
                mode,
                rate,
                mysql,
                pg,
                rows,
                changes,
                writers,
                batch_size,
                keep: servers.keep,
                warehouse_locale: servers.warehouse_locale.clone(),
            };
            let report = runtime()?.block_on(ebis::bench::run(&opts, progress))?;
            print!("{}", report.render());
        }
        BenchKind::Compare {
            enterprises,
            servers,
        } => {
            let (mysql, pg) = servers.accounts()?;
            let report = runtime()?.block_on(ebis::bench::compare_bench(
                &mysql,
                &pg,
                enterprises,
                servers.keep,
                servers.warehouse_locale.as_deref(),
                progress,
            ))?;
            print!("{}", report.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}
