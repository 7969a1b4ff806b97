//! `ebis demo`: the whole job in one command on data that looks like the real thing.
//!
//! Private PostgreSQL and MariaDB servers (or given ones), the four bureaus' native
//! databases filled by the simulator, change capture installed, the first snapshot, then
//! the pipeline live while the simulator keeps changing data — with a live panel — and a
//! summary: throughput, lag, source-vs-warehouse check, the ground-truth file, and how to
//! connect.

pub mod bureaus;
mod inject;
mod lifecycle;
mod live;
pub mod native;
mod panel;
pub mod people;
pub mod rng;
pub mod servers;
pub mod truth;
pub mod world;

use crate::config::{ConnectionConfig, PipelineConfig};
use crate::indicators::Bureau;
use crate::pipeline::{self, Shutdown};
use crate::warehouse::{self, Warehouse};
use anyhow::{Context, Result};
use bureaus::Bureaus;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The password of `--warehouse`'s account, when it has one.
pub const WAREHOUSE_PASSWORD_ENV: &str = "EBIS_DEMO_WAREHOUSE_PASSWORD";
/// The password of `--source-url`'s account, when it has one.
pub const SOURCE_PASSWORD_ENV: &str = "EBIS_DEMO_SOURCE_PASSWORD";

/// What the demo does.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Enterprises in the initial load.
    pub enterprises: usize,
    /// Simulator events per second while live.
    pub rate: f64,
    /// Seed of the simulation.
    pub seed: u64,
    /// Probability, per enterprise and rule, of an injected discrepancy.
    pub discrepancy_rate: f64,
    /// Probability of each kind of harmless noise.
    pub noise_rate: f64,
    /// How long the live phase lasts.
    pub duration: Duration,
    /// Leave the servers running.
    pub keep: bool,
    /// Use this PostgreSQL (admin URL) instead of a private server.
    pub warehouse: Option<String>,
    /// Use this MySQL/MariaDB (admin URL) instead of a private server.
    pub source_url: Option<String>,
    /// The folder for servers, config, mappings and the ground truth.
    pub dir: PathBuf,
    /// How the bureaus are captured.
    pub capture: DemoCapture,
}

/// How the demo captures the bureaus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoCapture {
    /// Change tables filled by triggers (AIC, national tax, QTS); local tax by its
    /// modified column.
    #[default]
    Triggers,
    /// Every bureau by the server's row-based binary log: nothing installed on the
    /// bureaus' databases.
    Binlog,
}

/// What the demo measured.
#[derive(Clone, Debug, Default)]
pub struct DemoSummary {
    /// Seconds of set-up (servers, load, capture), before the pipeline starts.
    pub setup_secs: f64,
    /// Seconds from pipeline start until every source streams.
    pub snapshot_secs: f64,
    /// Rows in the bureaus' databases after the load.
    pub rows_loaded: u64,
    /// Simulator events while live.
    pub events: u64,
    /// Rows the simulator wrote while live.
    pub rows_written: u64,
    /// Seconds live.
    pub live_secs: f64,
    /// Rows applied to the warehouse by all sources.
    pub rows_applied: i64,
    /// Lag samples (max over sources, each second).
    pub lags: Vec<f64>,
    /// Seconds after the simulator stopped until the warehouse equalled the sources.
    pub catch_up_secs: f64,
    /// Source-vs-warehouse comparison at the end.
    pub verify: Vec<crate::verify::KindReport>,
    /// Path of the ground truth.
    pub truth_path: PathBuf,
    /// Findings in the ground truth, per rule.
    pub truth_per_rule: Vec<(&'static str, usize)>,
    /// The comparison run at the end, as of the simulation's date.
    pub compare: Option<crate::compare::RunSummary>,
    /// Precision and recall of its findings against the ground truth.
    pub scores: Vec<crate::compare::RuleScore>,
    /// Warehouse URL (database ebis_demo).
    pub warehouse_url: String,
    /// Bureau database URLs.
    pub source_urls: Vec<(Bureau, String)>,
    /// How to stop kept servers.
    pub stop_hint: Option<String>,
}

/// Runs the demo; `shutdown` ends the live phase early (Ctrl-C).
pub async fn run(opts: &DemoOptions, shutdown: Shutdown) -> Result<DemoSummary> {
    let t0 = Instant::now();
    let say = |s: &str| eprintln!("demo: {s}");
    std::fs::create_dir_all(&opts.dir)?;
    let given = |url: &Option<String>, env: &str, flag: &str| {
        url.as_deref()
            .map(|u| ConnectionConfig::from_url(u, env, flag))
            .transpose()
            .map_err(anyhow::Error::msg)
    };
    let given_pg = given(&opts.warehouse, WAREHOUSE_PASSWORD_ENV, "--warehouse")?;
    let given_my = given(&opts.source_url, SOURCE_PASSWORD_ENV, "--source-url")?;
    let mut servers = None;
    if given_pg.is_none() || given_my.is_none() {
        let mut s = servers::PrivateServers::start(
            &opts.dir.join("servers"),
            &say,
            opts.capture == DemoCapture::Binlog,
        )?;
        s.wait_ready().await?;
        say(&format!(
            "private servers up: PostgreSQL :{}, MariaDB :{}",
            s.pg_port, s.mysql_port
        ));
        servers = Some(s);
    }
    let private = |url: Option<String>| ConnectionConfig {
        url: url.unwrap_or_default(),
        password_env: None,
        password_file: None,
        tls: Default::default(),
    };
    let pg_admin = given_pg.unwrap_or_else(|| private(servers.as_ref().map(|s| s.pg_url())));
    let my_admin = given_my.unwrap_or_else(|| private(servers.as_ref().map(|s| s.mysql_url())));
    let result = run_on(opts, &pg_admin, &my_admin, shutdown, t0).await;
    match servers {
        Some(s) if opts.keep => {
            let hint = s.stop_hint();
            s.keep();
            result.map(|mut r| {
                r.stop_hint = Some(hint);
                r
            })
        }
        Some(s) => {
            s.stop();
            result
        }
        None => result,
    }
}

async fn run_on(
    opts: &DemoOptions,
    pg_admin: &ConnectionConfig,
    my_admin: &ConnectionConfig,
    shutdown: Shutdown,
    t0: Instant,
) -> Result<DemoSummary> {
    let say = |s: &str| eprintln!("demo: {s}");
    let mut summary = DemoSummary::default();

    say(&format!(
        "simulating {} enterprises (seed {})",
        opts.enterprises, opts.seed
    ));
    let world = world::World::generate(world::Options {
        discrepancy_rate: opts.discrepancy_rate,
        noise_rate: opts.noise_rate,
        ..world::Options::new(opts.enterprises, opts.seed)
    });
    let bureaus = Bureaus::create(my_admin, "ebis_demo").await?;
    summary.rows_loaded = bureaus.load_world(&world).await?;
    say(&format!(
        "loaded {} rows into the bureaus' databases",
        summary.rows_loaded
    ));

    let pg = Warehouse::new(pg_admin, 1)?
        .dedicated()
        .await
        .context("connecting to the warehouse server")?;
    pg.batch_execute("drop database if exists ebis_demo with (force)")
        .await?;
    pg.batch_execute("create database ebis_demo").await?;
    let wh_conn = pg_admin.with_database("ebis_demo");
    summary.warehouse_url = wh_conn.url.clone();
    summary.source_urls = bureaus
        .conns
        .iter()
        .map(|(b, c)| (*b, c.url.clone()))
        .collect();

    crate::assets::write_mappings(&opts.dir)?;
    let config_path = opts.dir.join("pipeline.yaml");
    std::fs::write(&config_path, config_yaml(&wh_conn, &bureaus, opts.capture))?;
    let config = PipelineConfig::load(&config_path).map_err(|d| anyhow::anyhow!("{d}"))?;
    crate::setup::install_all(&config)
        .await
        .map_err(anyhow::Error::msg)?;
    let wh = Warehouse::new(&wh_conn, 12)?;
    warehouse::migrate(&wh).await?;
    summary.setup_secs = t0.elapsed().as_secs_f64();
    say(&format!(
        "set-up took {:.1} s; starting the pipeline",
        summary.setup_secs
    ));

    // The pipeline.
    let (pipe_trigger, pipe_shutdown) = Shutdown::new();
    let pipe = {
        let config = config.clone();
        let wh = wh.clone();
        tokio::spawn(async move { pipeline::run_sources(&config, &wh, pipe_shutdown).await })
    };
    // The simulator.
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let sim = {
        let (stop, events, written, rate) =
            (stop.clone(), events.clone(), written.clone(), opts.rate);
        let mut world = world;
        tokio::spawn(async move {
            let mut due = 0.0f64;
            let tick = Duration::from_millis(100);
            while !stop.load(Ordering::Relaxed) {
                due += rate * tick.as_secs_f64();
                while due >= 1.0 {
                    due -= 1.0;
                    let (up, del) = world.event();
                    match bureaus.apply(&up, &del).await {
                        Ok(n) => {
                            written.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => tracing::warn!(error = %e, "simulator write failed"),
                    }
                    events.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(tick).await;
            }
            (world, bureaus)
        })
    };

    // The live panel.
    let live_start = Instant::now();
    let mut panel = panel::Panel::new();
    let mut streaming_at: Option<f64> = None;
    while live_start.elapsed() < opts.duration && !shutdown.requested() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = wh.status().await.unwrap_or_default();
        if streaming_at.is_none()
            && !status.is_empty()
            && status.iter().all(|s| s.state == "streaming")
        {
            streaming_at = Some(live_start.elapsed().as_secs_f64());
        }
        if let Some(max) = status.iter().filter_map(|s| s.lag_seconds).reduce(f64::max)
            && streaming_at.is_some()
        {
            summary.lags.push(max);
        }
        panel.draw(
            &status,
            live_start.elapsed(),
            opts.duration,
            events.load(Ordering::Relaxed),
        );
    }
    panel.done();
    stop.store(true, Ordering::Relaxed);
    let (world, bureaus) = sim.await?;
    summary.live_secs = live_start.elapsed().as_secs_f64();
    summary.snapshot_secs = streaming_at.unwrap_or(summary.live_secs);
    summary.events = events.load(Ordering::Relaxed);
    summary.rows_written = written.load(Ordering::Relaxed);

    // Catch up, then compare sources and warehouse.
    say("simulator stopped; waiting for the warehouse to catch up");
    let catch_start = Instant::now();
    loop {
        let mut reports = Vec::new();
        let mut failed = false;
        for s in &config.sources {
            let m = crate::mapping::MappingSet::load_dir(&s.mappings_dir, Some(s.bureau))
                .map_err(|d| anyhow::anyhow!("{d}"))?;
            match crate::verify::verify_source(s, &m, &wh, 5000).await {
                Ok(r) => reports.extend(r),
                Err(_) => failed = true,
            }
        }
        let agrees = !failed && reports.iter().all(|r| r.agrees());
        summary.verify = reports;
        if agrees || catch_start.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    summary.catch_up_secs = catch_start.elapsed().as_secs_f64();
    pipe_trigger.trigger();
    let failed = pipe.await??;
    for (name, e) in &failed {
        say(&format!("source {name} stopped: {e}"));
    }
    summary.rows_applied = wh.status().await?.iter().map(|s| s.rows_applied).sum();

    // Ground truth.
    let truth = truth::ground_truth(&world, &truth::Thresholds::default());
    summary.truth_path = opts.dir.join("ground_truth.csv");
    std::fs::write(&summary.truth_path, truth::to_csv(&truth))?;
    summary.truth_per_rule = crate::rules::Rule::ALL
        .iter()
        .map(|r| {
            (
                r.name(),
                truth.iter().filter(|t| t.rule == r.name()).count(),
            )
        })
        .collect();

    // The consistency comparison, as of the simulated "today", scored against the truth.
    say("running the consistency comparison");
    wh.set_as_of(Some(world.options.as_of)).await?;
    summary.compare = Some(wh.compare().await?);
    let parsed = crate::compare::parse_truth(&truth::to_csv(&truth)).map_err(anyhow::Error::msg)?;
    summary.scores = crate::compare::score_against_truth(&wh, &parsed).await?;
    bureaus.close().await;
    Ok(summary)
}

/// The demo's pipeline config: the four bureaus, local tax connected for 海勃湾区 only,
/// captured as `capture` says.
pub fn config_yaml(
    warehouse: &ConnectionConfig,
    bureaus: &Bureaus,
    capture: DemoCapture,
) -> String {
    let source = |name: &str, b: Bureau, division: &str, covers: &str, capture: &str| {
        format!(
            "  - name: {name}\n    bureau: {}\n    division: '{division}'\n    covers: [{covers}]\n    dialect: mysql\n    connection:\n{}    capture:\n{capture}    mappings: mappings/{}\n",
            b.code(),
            bureaus.conn(b).to_yaml("      "),
            b.code()
        )
    };
    let all = "'150302', '150303', '150304'";
    let (changelog, timestamp) = match capture {
        DemoCapture::Triggers => (
            "      mode: changelog\n      gap_timeout: 2m\n      purge_every: 30s\n",
            "      mode: timestamp\n      overlap: 2s\n      key_scan_every: 5s\n",
        ),
        DemoCapture::Binlog => ("      mode: binlog\n", "      mode: binlog\n"),
    };
    format!(
        "# Written by `ebis demo`. The four bureaus of 乌海市; local tax is connected for 海勃湾区 only.\nwarehouse:\n{}poll_interval: 250ms\nbatch_size: 1000\nsources:\n{}{}{}{}",
        warehouse.to_yaml("  "),
        source("aic_city", Bureau::Aic, "150300", all, changelog),
        source("ntax_city", Bureau::Ntax, "150300", all, changelog),
        source(
            "ltax_haibowan",
            Bureau::Ltax,
            "150302",
            "'150302'",
            timestamp
        ),
        source("qts_city", Bureau::Qts, "150300", all, changelog),
    )
}

#[cfg(test)]
mod tests {
    use super::world::{Options, World};
    use super::*;
    use crate::identifiers::{is_id_card, is_org_code, is_reg_no};

    fn world(seed: u64) -> World {
        World::generate(Options::new(300, seed))
    }

    #[test]
    fn the_same_seed_gives_the_same_world_rows_and_truth() {
        let (a, b, c) = (world(7), world(7), world(8));
        assert_eq!(native::all_rows(&a), native::all_rows(&b));
        let t = truth::Thresholds::default();
        assert_eq!(truth::ground_truth(&a, &t), truth::ground_truth(&b, &t));
        assert_ne!(native::all_rows(&a), native::all_rows(&c));
        // Live events are deterministic too, and keep every injection true.
        let (mut a, mut b) = (a, b);
        for _ in 0..500 {
            assert_eq!(a.event(), b.event());
        }
        let truth = truth::ground_truth(&a, &t);
        for e in &a.enterprises {
            for rule in &e.injected {
                assert!(
                    truth
                        .iter()
                        .any(|x| x.rule == rule.name() && x.reg_no == e.reg_no)
                );
            }
        }
    }

    #[test]
    fn every_injected_discrepancy_is_in_the_truth_and_clean_records_are_valid() {
        let w = World::generate(Options {
            discrepancy_rate: 0.05,
            ..Options::new(600, 11)
        });
        let truth = truth::ground_truth(&w, &truth::Thresholds::default());
        let mut injected = 0;
        for e in &w.enterprises {
            for rule in &e.injected {
                injected += 1;
                assert!(
                    truth
                        .iter()
                        .any(|t| t.rule == rule.name() && t.reg_no == e.reg_no && t.injected),
                    "{} injected into {} is not in the truth",
                    rule.name(),
                    e.reg_no
                );
            }
            assert!(is_reg_no(&e.reg_no));
            if !e.injected.contains(&crate::rules::Rule::InvalidIdentifier) {
                assert!(is_id_card(&e.aic_rep_id));
            }
            if let Some(q) = &e.qts {
                assert!(is_org_code(&q.org_code));
            }
        }
        assert!(injected > 100, "{injected}");
        for rule in crate::rules::Rule::ALL {
            assert!(
                truth.iter().any(|t| t.rule == rule.name()),
                "no {} at all",
                rule.name()
            );
        }
    }

    #[test]
    fn noise_alone_makes_no_finding() {
        let w = World::generate(Options {
            discrepancy_rate: 0.0,
            noise_rate: 0.5,
            ..Options::new(500, 3)
        });
        let truth = truth::ground_truth(&w, &truth::Thresholds::default());
        let findings: Vec<_> = truth
            .iter()
            .filter(|t| t.rule != "unlicensed_business")
            .collect();
        assert!(findings.is_empty(), "{findings:#?}");
        assert!(
            w.enterprises.iter().any(|e| e.parent.is_some()),
            "branches named like their parent exist"
        );
        assert!(
            w.enterprises
                .iter()
                .any(|e| e.amendments.iter().any(|a| a.item == "名称")),
            "renames every bureau followed exist"
        );
    }
}
