//! `ebis bench compare`: the consistency comparison on a simulated city, full and
//! incremental runs, with precision and recall against the simulator's truth.

use super::{loadavg, server_summary};
use crate::config::{ConnectionConfig, PipelineConfig};
use crate::pipeline::Shutdown;
use crate::warehouse::{self, Warehouse};
use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// What the comparison benchmark measured.
#[derive(Clone, Debug, Default)]
pub struct CompareBenchReport {
    /// Enterprises simulated.
    pub enterprises: usize,
    /// Native rows loaded into the bureau databases.
    pub rows: u64,
    /// Seconds to load them (setup, not ebis).
    pub load_secs: f64,
    /// Seconds for the first snapshot of all four sources, base maintenance included.
    pub snapshot_secs: f64,
    /// Rows in the warehouse's enterprise base.
    pub base_rows: i64,
    /// Seconds of the first comparison run (all findings new).
    pub first_run_secs: f64,
    /// Seconds of a second full run (findings touched).
    pub second_run_secs: f64,
    /// Seconds of an incremental run when nothing changed (the floor of `compare.every`).
    pub idle_run_secs: f64,
    /// Enterprises changed before the incremental run.
    pub changed: usize,
    /// Revocation requests, and unlicensed-business reports, changed before it (each).
    pub changed_reports: usize,
    /// Seconds the base took to take the changes in.
    pub changed_base_secs: f64,
    /// The run after the changes: its kind, enterprises re-evaluated, seconds.
    pub incremental: (String, Option<i64>, f64),
    /// New and resolved findings of a full run right after the incremental one (both 0
    /// when the incremental run found what a full run finds).
    pub full_after: (i64, i64),
    /// Open findings.
    pub findings: i64,
    /// Precision/recall against the simulator's truth.
    pub scores: Vec<crate::compare::RuleScore>,
    /// Load average before and after.
    pub load: (String, String),
    /// The warehouse server's settings the figures depend on.
    pub server: String,
}

impl CompareBenchReport {
    /// As text.
    pub fn render(&self) -> String {
        format!(
            "enterprises: {}; {} native rows loaded in {:.1} s\n\
             first snapshot of the 4 sources (with the enterprise base): {:.1} s = {:.0} rows/s; base: {} enterprises\n\
             comparison run: first {:.2} s (all findings new), second (full) {:.2} s; {} open findings\n\
             with nothing changed: {:.3} s\n\
             after {} enterprises changed (their AIC addresses), and {} revocation requests (a day earlier) and as many unlicensed-business reports (their addresses): \
             base took them in in {:.2} s, then a run ({}) took {:.2} s\n\
             a full run right after it: {} new, {} resolved (0 and 0: the incremental run found what a full run finds)\n{}\
             load average before: {}  after: {}\n\
             warehouse server: {}\n",
            self.enterprises,
            self.rows,
            self.load_secs,
            self.snapshot_secs,
            self.rows as f64 / self.snapshot_secs.max(1e-9),
            self.base_rows,
            self.first_run_secs,
            self.second_run_secs,
            self.findings,
            self.idle_run_secs,
            self.changed,
            self.changed_reports,
            self.changed_base_secs,
            match self.incremental.1 {
                Some(n) => format!("{}, {n} enterprises re-evaluated", self.incremental.0),
                None => self.incremental.0.clone(),
            },
            self.incremental.2,
            self.full_after.0,
            self.full_after.1,
            crate::compare::render_scores(&self.scores),
            self.load.0,
            self.load.1,
            self.server
        )
    }
}

/// Measures the consistency comparison on a simulated city of `enterprises`: loads the
/// bureau databases, captures them into a fresh warehouse, then times comparison runs.
pub async fn compare_bench(
    mysql: &ConnectionConfig,
    pg: &ConnectionConfig,
    enterprises: usize,
    keep: bool,
    warehouse_locale: Option<&str>,
    progress: impl Fn(&str),
) -> Result<CompareBenchReport> {
    use crate::demo::{bureaus::Bureaus, world};
    let mut report = CompareBenchReport {
        enterprises,
        load: (loadavg(), String::new()),
        ..CompareBenchReport::default()
    };
    // (Not the capture bench's name: both may run at once in one process, as in the tests.)
    let name = format!("ebis_bench_compare_{}", std::process::id());
    // Made first: a locale refused leaves no database behind.
    let create_warehouse = super::create_warehouse_sql(&name, warehouse_locale)?;
    let world = world::World::generate(world::Options::new(enterprises, 2006));
    let bureaus = Bureaus::create(mysql, &name).await?;
    let result = measure_city(
        &world,
        &bureaus,
        pg,
        &name,
        &create_warehouse,
        &mut report,
        &progress,
    )
    .await;
    let dir = std::env::temp_dir().join(&name);
    if keep {
        progress(&format!(
            "kept databases {name}_* (MySQL) and {name} (PostgreSQL)"
        ));
    } else {
        // Whether the run ended or failed, no database is left behind.
        let dropped = bureaus.drop_all(mysql).await;
        if let Ok(wh) = Warehouse::new(pg, 1)
            && let Ok(admin) = wh.dedicated().await
        {
            let _ = admin
                .batch_execute(&format!("drop database if exists {name} with (force)"))
                .await;
        }
        let _ = std::fs::remove_dir_all(&dir);
        if result.is_ok() {
            dropped?;
        }
    }
    result.map(|()| report)
}

/// The comparison bench's work between its databases' creation and removal: the city
/// loaded into the bureaus' databases, captured into a new warehouse, and compared.
async fn measure_city(
    world: &crate::demo::world::World,
    bureaus: &crate::demo::bureaus::Bureaus,
    pg: &ConnectionConfig,
    name: &str,
    create_warehouse: &str,
    report: &mut CompareBenchReport,
    progress: &impl Fn(&str),
) -> Result<()> {
    use crate::demo::truth;
    let enterprises = report.enterprises;
    let load_start = Instant::now();
    report.rows = bureaus.load_world(world).await?;
    report.load_secs = load_start.elapsed().as_secs_f64();
    progress(&format!(
        "loaded {} rows in {:.1} s",
        report.rows, report.load_secs
    ));

    let pg_admin = Warehouse::new(pg, 1)?.dedicated().await?;
    pg_admin
        .batch_execute(create_warehouse)
        .await
        .context("creating the warehouse database")?;
    let wh_conn = pg.with_database(name);
    let dir = std::env::temp_dir().join(name);
    crate::assets::write_mappings(&dir)?;
    std::fs::write(
        dir.join("pipeline.yaml"),
        crate::demo::config_yaml(&wh_conn, bureaus, crate::demo::DemoCapture::Triggers),
    )?;
    let config =
        PipelineConfig::load(&dir.join("pipeline.yaml")).map_err(|d| anyhow::anyhow!("{d}"))?;
    crate::setup::install_all(&config)
        .await
        .map_err(anyhow::Error::msg)?;
    let wh = Warehouse::new(&wh_conn, 8)?;
    warehouse::migrate(&wh).await?;

    let (trigger, shutdown) = Shutdown::new();
    let snap_start = Instant::now();
    let pipe = {
        let (config, wh) = (config.clone(), wh.clone());
        tokio::spawn(async move { crate::pipeline::run_sources(&config, &wh, shutdown).await })
    };
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let status = wh.status().await?;
        if status.len() == 4 && status.iter().all(|s| s.state == "streaming") {
            break;
        }
        if let Some(f) = status.iter().find(|s| s.state == "failed") {
            anyhow::bail!("source {} failed: {:?}", f.source, f.last_error);
        }
    }
    wh.settle_base().await?;
    report.snapshot_secs = snap_start.elapsed().as_secs_f64();
    trigger.trigger();
    let _ = pipe.await;
    let client = wh.client().await?;
    report.server = server_summary(&client).await;
    report.base_rows = client
        .query_one("select count(*) from core.enterprise", &[])
        .await?
        .get(0);
    progress(&format!("snapshot done in {:.1} s", report.snapshot_secs));

    wh.set_as_of(Some(world.options.as_of)).await?;
    let first = wh.compare().await?;
    report.first_run_secs = first.seconds;
    let second = wh.compare_full().await?;
    report.second_run_secs = second.seconds;
    report.findings = second.rules.iter().map(|r| r.open).sum();
    let t = truth::ground_truth(world, &truth::Thresholds::default());
    let parsed = crate::compare::parse_truth(&truth::to_csv(&t)).map_err(anyhow::Error::msg)?;
    report.scores = crate::compare::score_against_truth(&wh, &parsed).await?;
    report.idle_run_secs = wh.compare().await?.seconds;

    // Some enterprises change, and some tax reports (in the warehouse's exchange tables, as
    // an apply would: the base queues the enterprises, the comparison logs the reports),
    // then one run.
    report.changed = (enterprises / 100).clamp(1, 1000);
    report.changed_reports = (report.changed / 10).max(1);
    let (n, m) = (report.changed as i64, report.changed_reports as i64);
    // (table, column changed, its new value, rows)
    for (table, column, value, limit) in [
        ("aic_establishment", "address", "address || '号'", n),
        (
            "tax_revocation_request",
            "requested_on",
            "requested_on - 1",
            m,
        ),
        ("tax_unlicensed", "address", "address || '号'", m),
    ] {
        client
            .execute(
                &format!(
                    "update exchange.{table} set {column} = {value}
                     where (source, source_key) in (select source, source_key from exchange.{table}
                                                    where deleted_at is null and {column} is not null
                                                    order by source_key limit $1)"
                ),
                &[&limit],
            )
            .await?;
    }
    let t0 = Instant::now();
    wh.settle_base().await?;
    report.changed_base_secs = t0.elapsed().as_secs_f64();
    let inc = wh.compare().await?;
    report.incremental = (inc.kind.clone(), inc.evaluated, inc.seconds);
    let full = wh.compare_full().await?;
    report.full_after = (
        full.rules.iter().map(|r| r.new).sum(),
        full.rules.iter().map(|r| r.resolved).sum(),
    );
    report.load.1 = loadavg();
    Ok(())
}
