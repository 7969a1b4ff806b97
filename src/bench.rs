//! `ebis bench`: capture throughput on real servers, reported, never asserted.
//!
//! Creates throwaway databases, loads an AIC `E_BASEINFO` of N rows, installs changelog
//! capture, then measures (1) the first snapshot in rows/s and the enterprise base
//! complete, (2) streaming: M changes from several writers (names and addresses updated,
//! enterprises registered and deleted), changes/s applied and replication lag sampled
//! from the warehouse while they run, (3) the catch-up of as many changes queued while
//! ebis was stopped, and the raw limits of the same rows (`mariadb --quick`, `psql
//! \copy`, the first load's writes alone: [`Floor`], the catch-up's: [`CatchUpFloor`])
//! and pgloader's load of the same table (when installed) in the same run. Prints
//! machine load and peak memory with the figures, and what the first load and the
//! catch-up cost in CPU by process with the fastest that cost allows on this machine
//! (`cpu`).

use crate::config::{ConnectionConfig, PipelineConfig};
use crate::demo::bureaus::pool_of;
use crate::mapping::MappingSet;
use crate::pipeline::{RunSettings, Shutdown, drain_base, run_source};
use crate::warehouse::{self, Warehouse};
use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;
use std::time::{Duration, Instant};

mod compare;
mod cpu;
mod limits;
pub use compare::{CompareBenchReport, compare_bench};
use cpu::{CpuProbe, CpuTimes};
pub use limits::{CatchUpFloor, Floor, FloorPart};
use limits::{
    PGLOADER_DEFAULT, PGLOADER_TUNED, catch_up_floor, floor, pgloader, raw_copy, raw_read,
};

/// What to measure and where.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// MySQL/MariaDB admin account (a database is created there).
    pub mysql: ConnectionConfig,
    /// PostgreSQL admin account (a database is created there).
    pub pg: ConnectionConfig,
    /// Rows in the table before capture starts.
    pub rows: u64,
    /// Updates made while streaming.
    pub changes: u64,
    /// Concurrent writers.
    pub writers: u64,
    /// Rows per warehouse transaction.
    pub batch_size: usize,
    /// Keep the databases afterwards.
    pub keep: bool,
    /// How the source is captured.
    pub mode: BenchMode,
    /// Changes per second the writers keep to while streaming (`None`: as fast as they
    /// can); the catch-up backlog is always written as fast as they can.
    pub rate: Option<f64>,
    /// The ICU locale the warehouse database is created with (`None`: the server's
    /// default collation); see [`create_warehouse_sql`].
    pub warehouse_locale: Option<String>,
}

/// How the benchmark's source is captured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchMode {
    /// Triggers fill a change table.
    #[default]
    Changelog,
    /// The server's row-based binary log (the server must keep one: `ebis check --online`
    /// says what is missing).
    Binlog,
}

impl BenchMode {
    fn name(self) -> &'static str {
        match self {
            BenchMode::Changelog => "changelog",
            BenchMode::Binlog => "binlog",
        }
    }
}

/// The measured figures.
#[derive(Clone, Debug, Default)]
pub struct BenchReport {
    /// Rows loaded into the source (setup, not ebis).
    pub rows: u64,
    /// Seconds the first snapshot took.
    pub snapshot_secs: f64,
    /// Seconds from the snapshot's start until the enterprise base held every row.
    pub base_secs: f64,
    /// Updates made.
    pub changes: u64,
    /// Seconds the writers took.
    pub write_secs: f64,
    /// Seconds from the first update until the warehouse had them all.
    pub stream_secs: f64,
    /// Lag samples (seconds) while streaming.
    pub lags: Vec<f64>,
    /// Seconds to apply the same number of updates queued while ebis was stopped.
    pub catch_up_secs: f64,
    /// Seconds from the catch-up's start until the enterprise base held every update.
    pub catch_up_base_secs: f64,
    /// The raw read limit: the same rows read by `mariadb --quick`, rows/s (`None`:
    /// the client could not run).
    pub raw_read: Option<f64>,
    /// The raw write limit: the same rows, as the warehouse holds them, loaded by
    /// `psql \copy` into a table without indexes or triggers, rows/s.
    pub raw_copy: Option<f64>,
    /// What a first load must write, written by `psql` alone (see [`Floor`]).
    pub floor: Option<Floor>,
    /// What the catch-up wrote, written again by `psql` alone (see [`CatchUpFloor`]).
    pub catch_up_floor: Option<CatchUpFloor>,
    /// Peers in the same run: pgloader's full load of the same table (rows/s) with its
    /// default settings and tuned (`None`: pgloader is not installed or failed).
    pub pgloader: Option<f64>,
    /// pgloader with larger batches and more workers.
    pub pgloader_tuned: Option<f64>,
    /// Load average before and after.
    pub load_before: String,
    /// Load average after.
    pub load_after: String,
    /// Peak resident memory of this process, kB.
    pub peak_rss_kb: u64,
    /// The capture mode measured.
    pub mode: BenchMode,
    /// CPU seconds the source server (mariadbd) spent while the changes streamed, the
    /// writers' own statements included (`None`: the server is not on this machine).
    pub source_cpu_secs: Option<f64>,
    /// CPU seconds of the first load (snapshot and base) by process.
    pub load_cpu: CpuTimes,
    /// CPU seconds of the first load's snapshot alone (until the source streamed).
    pub snapshot_cpu: CpuTimes,
    /// CPU seconds of the catch-up until every change was applied (the base's drain
    /// waits while a source catches up), by process.
    pub catch_up_apply_cpu: CpuTimes,
    /// CPU seconds of the catch-up (applied and in the base) by process.
    pub catch_up_cpu: CpuTimes,
    /// The machine's cores.
    pub cores: usize,
    /// The warehouse server's settings the figures depend on (`ServerSettings::summary`).
    pub server: String,
}

impl BenchReport {
    /// As text.
    pub fn render(&self) -> String {
        let mut lags = self.lags.clone();
        lags.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            lags.get(((lags.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let source_cpu = match self.source_cpu_secs {
            Some(cpu) => format!(
                "{cpu:.1} s ({:.1} ms per change, the writers' statements included)",
                cpu * 1000.0 / self.changes.max(1) as f64
            ),
            None => "not measured (the source server is not on this machine)".to_owned(),
        };
        format!(
            "capture mode: {}\n\
             snapshot:  {} rows in {:.1} s = {:.0} rows/s\n\
             enterprise base complete {:.1} s after the snapshot began = {:.0} rows/s\n\
             streaming: {} changes written (names and addresses updated, enterprises registered and deleted) in {:.1} s ({:.0}/s), all applied after {:.1} s = {:.0} changes/s\n\
             lag while streaming (sampled every 0.1 s): median {:.2} s, p95 {:.2} s, p99 {:.2} s, max {:.2} s ({} samples)\n\
             source server CPU while streaming: {}\n\
             CPU of the first load's snapshot: {}\n\
             CPU of the first load until the base was complete: {}\n\
             catch-up: {} changes queued while stopped, applied in {:.1} s = {:.0} changes/s (base complete after {:.1} s)\n\
             CPU of the catch-up until every change was applied: {}\n\
             CPU of the catch-up until the base was complete: {}\n\
             raw limits in the same run: {}\n\
             ceiling of a first load that writes what ebis writes: {}\n\
             peers in the same run: {}\n\
             load average before: {}  after: {}\n\
             peak memory (ebis process): {} MB\n\
             warehouse server: {}\n",
            self.mode.name(),
            self.rows,
            self.snapshot_secs,
            self.rows as f64 / self.snapshot_secs.max(1e-9),
            self.base_secs,
            self.rows as f64 / self.base_secs.max(1e-9),
            self.changes,
            self.write_secs,
            self.changes as f64 / self.write_secs.max(1e-9),
            self.stream_secs,
            self.changes as f64 / self.stream_secs.max(1e-9),
            pct(0.5),
            pct(0.95),
            pct(0.99),
            pct(1.0),
            lags.len(),
            source_cpu,
            self.snapshot_cpu.render(self.cores, self.rows, "row"),
            self.load_cpu.render(self.cores, self.rows, "row"),
            self.changes,
            self.catch_up_secs,
            self.changes as f64 / self.catch_up_secs.max(1e-9),
            self.catch_up_base_secs,
            self.catch_up_apply_cpu
                .render(self.cores, self.changes, "change"),
            self.catch_up_cpu.render(self.cores, self.changes, "change"),
            self.limits(),
            self.ceiling(),
            self.peers(),
            self.load_before,
            self.load_after,
            self.peak_rss_kb / 1024,
            self.server
        )
    }
}

impl BenchReport {
    /// A rate measured beside ebis (a raw limit or a peer), with ebis's snapshot and base
    /// rates as shares of it.
    fn beside(&self, name: &str, rate: Option<f64>, missing: &str) -> String {
        let snapshot = self.rows as f64 / self.snapshot_secs.max(1e-9);
        let base = self.rows as f64 / self.base_secs.max(1e-9);
        match rate {
            Some(r) if r > 0.0 => format!(
                "{name} {r:.0} rows/s (ebis's snapshot at {:.2}x, base complete at {:.2}x of it)",
                snapshot / r,
                base / r
            ),
            _ => format!("{name} not measured ({missing})"),
        }
    }

    /// The raw limits of the same rows.
    fn limits(&self) -> String {
        let floor = match &self.floor {
            Some(f) => format!(
                "; {}",
                self.beside(
                    &format!(
                        "the first load's writes alone (the exchange rows, identifiers and enterprises ebis wrote, `\\copy`-ed into bare tables, then the same keys and indexes built, one step after another: the exchange table {:.1} s, the base {:.1} s; {})",
                        f.exchange_secs(),
                        f.base_secs(),
                        f.parts
                            .iter()
                            .map(|p| format!(
                                "{} rows {:.1} s, keys and indexes {:.1} s{}",
                                p.table,
                                p.rows_secs,
                                p.index_secs,
                                p.warehouse_cpu
                                    .map(|c| format!(" ({c:.1} core-seconds)"))
                                    .unwrap_or_default()
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Some(self.rows as f64 / f.secs().max(1e-9)),
                    ""
                )
            ),
            None => "; the first load's own writes not measured (client missing or failed)".to_owned(),
        };
        let catch_up = match &self.catch_up_floor {
            Some(f) if f.secs > 0.0 => format!(
                "; the catch-up's writes alone (the {} rows it upserted, changed again, `\\copy`-ed into a staging table and upserted by ebis's own statement, the base queue's trigger included, on one connection) {:.1} s = {:.0} rows/s (ebis's catch-up at {:.2}x of it)",
                f.rows,
                f.secs,
                f.rows as f64 / f.secs,
                (self.changes as f64 / self.catch_up_secs.max(1e-9)) / (f.rows as f64 / f.secs)
            ),
            _ => "; the catch-up's own writes not measured (client missing or failed)".to_owned(),
        };
        format!(
            "{}; {}{floor}{catch_up}",
            self.beside("`mariadb --quick` read", self.raw_read, "client missing"),
            self.beside("`psql \\copy` load", self.raw_copy, "client missing")
        )
    }

    /// The fastest any first load could be that writes what ebis's wrote, on this
    /// machine's cores: the warehouse's CPU for the writes alone ([`Floor`]) with the
    /// source's and ebis's CPU for reading and mapping the rows (as in the snapshot), and
    /// without ebis's share (a design whose reading and mapping cost nothing).
    fn ceiling(&self) -> String {
        let floor = self.floor.as_ref();
        let (Some(w), Some(x), Some(s)) = (
            floor.and_then(Floor::warehouse_cpu),
            floor.and_then(Floor::exchange_cpu),
            self.snapshot_cpu.source,
        ) else {
            return "not measured (the servers are not on this machine, or psql is missing)"
                .to_owned();
        };
        let e = self.snapshot_cpu.ebis;
        let rate = |core_secs: f64| ceiling_rate(self.rows, self.cores, core_secs);
        let (read_and_mapped, written_only, exchange_only) =
            (rate(w + s + e), rate(w + s), rate(x + s + e));
        let shares = |rate: f64| {
            [
                ("`psql \\copy`", self.raw_copy),
                ("pgloader tuned", self.pgloader_tuned),
            ]
            .iter()
            .filter_map(|(name, r)| {
                r.filter(|r| *r > 0.0)
                    .map(|r| format!("{:.2}x {name}", rate / r))
            })
            .collect::<Vec<_>>()
            .join(", ")
        };
        format!(
            "the writes alone took {w:.1} core-seconds of the warehouse server; with the source's {s:.1} and ebis's {e:.1} for reading and mapping the rows (as in the snapshot), {:.1} core-seconds: on {} cores at most {read_and_mapped:.0} rows/s ({}); with reading and mapping free, at most {written_only:.0} rows/s ({}); the exchange table's alone took {x:.1}: a first load that wrote no enterprise base, with reading and mapping, at most {exchange_only:.0} rows/s ({})",
            w + s + e,
            self.cores,
            shares(read_and_mapped),
            shares(written_only),
            shares(exchange_only)
        )
    }

    /// pgloader on the same table.
    fn peers(&self) -> String {
        let missing = "pgloader missing or failed";
        format!(
            "{}; {}",
            self.beside("pgloader", self.pgloader, missing),
            self.beside("pgloader tuned", self.pgloader_tuned, missing)
        )
    }
}

/// The statement that creates a bench's warehouse database `name`: with the server's
/// default collation, or with an ICU locale's (`zh-Hans-CN`, as a bureau's deployment
/// would choose), under which sorting and looking up the warehouse's text keys cost more
/// than under C or C.UTF-8.
fn create_warehouse_sql(name: &str, icu_locale: Option<&str>) -> Result<String> {
    match icu_locale {
        None => Ok(format!("create database {name}")),
        Some(l)
            if !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_@=;".contains(c)) =>
        {
            Ok(format!(
                "create database {name} template template0 encoding 'UTF8' locale_provider icu icu_locale '{l}'"
            ))
        }
        Some(l) => anyhow::bail!(
            "--warehouse-locale {l:?} is not an ICU locale: letters, digits and - _ @ = ; only (e.g. zh-Hans-CN)"
        ),
    }
}

/// The rows/s `rows` could reach on `cores` cores if every core were busy throughout,
/// given the core-seconds writing, reading and mapping them take.
fn ceiling_rate(rows: u64, cores: usize, core_secs: f64) -> f64 {
    rows as f64 * cores.max(1) as f64 / core_secs.max(1e-9)
}

/// The warehouse server's settings, for the report.
async fn server_summary(client: &tokio_postgres::Client) -> String {
    match warehouse::ServerSettings::read(client).await {
        Ok(settings) => settings.summary(),
        Err(e) => format!("settings not read ({e})"),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Runs the benchmark; `progress` receives one-line updates.
pub async fn run(opts: &BenchOptions, progress: impl Fn(&str)) -> Result<BenchReport> {
    let name = format!("ebis_bench_{}", std::process::id());
    let mut report = BenchReport {
        rows: opts.rows,
        changes: opts.changes,
        mode: opts.mode,
        load_before: loadavg(),
        ..BenchReport::default()
    };
    // Databases (the warehouse's statement made first: a locale refused leaves none behind).
    let create_warehouse = create_warehouse_sql(&name, opts.warehouse_locale.as_deref())?;
    let admin = pool_of(&opts.mysql, "SET NAMES utf8mb4")?;
    let mut c = admin
        .get_conn()
        .await
        .context("connecting to MySQL/MariaDB")?;
    c.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        .await?;
    drop(c);
    let created = async {
        let pg = Warehouse::new(&opts.pg, 1)?
            .dedicated()
            .await
            .context("connecting to PostgreSQL")?;
        pg.batch_execute(&create_warehouse)
            .await
            .context("creating the warehouse database")?;
        anyhow::Ok(pg)
    }
    .await;
    let pg = match created {
        Ok(pg) => pg,
        Err(e) => {
            // The source's database is not left behind.
            if let Ok(mut c) = admin.get_conn().await {
                let _ = c.query_drop(format!("DROP DATABASE `{name}`")).await;
            }
            let _ = admin.disconnect().await;
            return Err(e);
        }
    };
    let source = opts.mysql.with_database(&name);
    let result = measure(opts, &name, &source, &mut report, &progress).await;
    if !opts.keep {
        if let Ok(mut c) = admin.get_conn().await {
            let _ = c.query_drop(format!("DROP DATABASE `{name}`")).await;
        }
        let _ = pg
            .batch_execute(&format!("drop database {name} with (force)"))
            .await;
    } else {
        progress(&format!(
            "kept databases {name} (MySQL) and {name} (PostgreSQL)"
        ));
    }
    let _ = admin.disconnect().await;
    result?;
    report.load_after = loadavg();
    report.peak_rss_kb = peak_rss_kb();
    Ok(report)
}

async fn measure(
    opts: &BenchOptions,
    name: &str,
    source: &ConnectionConfig,
    report: &mut BenchReport,
    progress: &impl Fn(&str),
) -> Result<()> {
    let pool = pool_of(source, "SET NAMES utf8mb4")?;
    let mut c = pool.get_conn().await?;
    c.query_drop("SET NAMES utf8mb4").await?;
    for s in crate::assets::schema_statements("aic") {
        c.query_drop(s).await?;
    }
    // Load before capture exists, as a bureau's table would be.
    let load_start = Instant::now();
    let mut loaded = 0;
    while loaded < opts.rows {
        let n = (opts.rows - loaded).min(2000);
        let values: Vec<String> = (loaded..loaded + n).map(row_values).collect();
        c.query_drop(format!(
            "INSERT INTO E_BASEINFO (PRIPID, REGNO, ENTNAME, ENTTYPE, INDUSTRYPHY, INDUSTRYCO, NAME, DOM, DOMDISTRICT, CBUITEM, ESTDATE, REGORG, REGSTATE) VALUES {}",
            values.join(", ")
        ))
        .await?;
        loaded += n;
        if loaded % 100_000 == 0 || loaded == opts.rows {
            progress(&format!(
                "loaded {loaded} rows ({:.0} rows/s)",
                loaded as f64 / load_start.elapsed().as_secs_f64()
            ));
        }
    }
    drop(c);

    let dir = std::env::temp_dir().join(name);
    crate::assets::write_mappings(&dir)?;
    let wh_conn = opts.pg.with_database(name);
    std::fs::write(
        dir.join("pipeline.yaml"),
        format!(
            "warehouse:\n{}poll_interval: 100ms\nbatch_size: {}\nsources:\n  - name: aic_bench\n    bureau: aic\n    division: '150300'\n    dialect: mysql\n    connection:\n{}    capture:\n      mode: {}\n    mappings: mappings/aic\n",
            wh_conn.to_yaml("  "),
            opts.batch_size,
            source.to_yaml("      "),
            opts.mode.name(),
        ),
    )?;
    let config =
        PipelineConfig::load(&dir.join("pipeline.yaml")).map_err(|d| anyhow::anyhow!("{d}"))?;
    let cfg = config.sources[0].clone();
    let mappings = MappingSet::load_dir(&cfg.mappings_dir, Some(cfg.bureau))
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let setup = crate::setup::setup_script(&cfg, &mappings).map_err(anyhow::Error::msg)?;
    crate::setup::apply_setup(&cfg, &setup)
        .await
        .map_err(anyhow::Error::msg)?;
    let wh = Warehouse::new(&wh_conn, 4)?;
    warehouse::migrate(&wh).await?;
    wh.register_sources(&config.sources).await?;

    let (trigger, shutdown) = Shutdown::new();
    let settings = RunSettings::from_config(&config);
    let drainer = tokio::spawn(drain_base(
        wh.clone(),
        shutdown.clone(),
        Duration::from_millis(100),
    ));
    let task = tokio::spawn(run_source(cfg, mappings, wh.clone(), settings, shutdown));
    let client = wh.client().await?;
    report.server = server_summary(&client).await;
    let probe = CpuProbe::find(&client, &pool).await;
    report.cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_cpu = probe.read();
    let snap_start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let state: Option<String> = client
            .query_opt(
                "select state from ebis.source_status where source = 'aic_bench'",
                &[],
            )
            .await?
            .map(|r| r.get(0));
        if state.as_deref() == Some("streaming") {
            break;
        }
        if state.as_deref() == Some("failed") || task.is_finished() {
            anyhow::bail!("the pipeline failed during the snapshot: see `ebis status`");
        }
    }
    report.snapshot_secs = snap_start.elapsed().as_secs_f64();
    report.snapshot_cpu = probe.read().since(&load_cpu);
    progress(&format!(
        "snapshot: {} rows in {:.1} s",
        opts.rows, report.snapshot_secs
    ));
    wh.settle_base().await?;
    report.base_secs = snap_start.elapsed().as_secs_f64();
    report.load_cpu = probe.read().since(&load_cpu);
    progress(&format!(
        "enterprise base complete after {:.1} s",
        report.base_secs
    ));
    report.raw_read = raw_read(source, opts.rows).await;
    report.raw_copy = raw_copy(&wh_conn, opts.rows).await;
    report.floor = floor(&wh_conn, &probe).await;
    progress("raw limits measured");
    report.pgloader = pgloader(source, &wh_conn, opts.rows, PGLOADER_DEFAULT).await;
    report.pgloader_tuned = pgloader(source, &wh_conn, opts.rows, PGLOADER_TUNED).await;
    progress("pgloader measured");

    // Streaming: writers update random rows; the warehouse must end with every update.
    let cpu_start = probe.read();
    let stream_start = Instant::now();
    let writers = spawn_writers(&pool, opts, 0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let client = wh.client().await?;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut lags = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let lag: Option<f64> = match client
                    .query_one(
                        "select extract(epoch from now() - complete_up_to)::float8 from ebis.source_status where source = 'aic_bench'",
                        &[],
                    )
                    .await
                {
                    Ok(r) => r.get(0),
                    Err(_) => break,
                };
                if let Some(l) = lag {
                    lags.push(l);
                }
            }
            lags
        })
    };
    for w in writers {
        w.await??;
    }
    report.write_secs = stream_start.elapsed().as_secs_f64();
    let target = source_head(&pool, opts.mode).await?;
    wait_applied(&client, target, &task).await?;
    report.stream_secs = stream_start.elapsed().as_secs_f64();
    report.source_cpu_secs = probe.read().since(&cpu_start).source;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    report.lags = sampler.await.unwrap_or_default();
    trigger.trigger();
    let _ = task.await;
    let _ = drainer.await;
    progress(&format!(
        "streaming: all applied after {:.1} s",
        report.stream_secs
    ));

    // Catch-up: the same number of updates queued while ebis is stopped.
    for w in spawn_writers(&pool, opts, 1) {
        w.await??;
    }
    let target = source_head(&pool, opts.mode).await?;
    let (trigger, shutdown) = Shutdown::new();
    let cfg = config.sources[0].clone();
    let mappings = MappingSet::load_dir(&cfg.mappings_dir, Some(cfg.bureau))
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let catch_up_cpu = probe.read();
    let catch_start = Instant::now();
    let catch_start_at: String = client.query_one("select now()::text", &[]).await?.get(0);
    let drainer = tokio::spawn(drain_base(
        wh.clone(),
        shutdown.clone(),
        Duration::from_millis(100),
    ));
    let task = tokio::spawn(run_source(
        cfg,
        mappings,
        wh.clone(),
        RunSettings::from_config(&config),
        shutdown,
    ));
    wait_applied(&client, target, &task).await?;
    report.catch_up_secs = catch_start.elapsed().as_secs_f64();
    report.catch_up_apply_cpu = probe.read().since(&catch_up_cpu);
    wh.settle_base().await?;
    report.catch_up_base_secs = catch_start.elapsed().as_secs_f64();
    report.catch_up_cpu = probe.read().since(&catch_up_cpu);
    trigger.trigger();
    let _ = task.await;
    let _ = drainer.await;
    report.catch_up_floor = catch_up_floor(&wh_conn, &client, &catch_start_at).await;
    progress("the catch-up's writes alone measured");
    let _ = pool.disconnect().await;
    let _ = std::fs::remove_dir_all(&dir);
    progress("streaming done");
    Ok(())
}

type Writer = tokio::task::JoinHandle<Result<(), mysql_async::Error>>;

/// Writers that change random rows as a bureau's clerks do, `opts.changes` in all: nine
/// in ten update a name or an address (columns the enterprise base and the comparison
/// read), about one in eleven registers a new enterprise, one in a hundred deletes one.
fn spawn_writers(pool: &mysql_async::Pool, opts: &BenchOptions, round: u64) -> Vec<Writer> {
    let writers = opts.writers.max(1);
    let per_writer = opts.changes / writers;
    let rate = opts.rate;
    (0..writers)
        .map(|w| {
            let pool = pool.clone();
            let rows = opts.rows.max(1);
            // New enterprises get ids no other writer or round uses.
            let first_new = rows + (round * writers + w) * per_writer;
            // Streaming at a set rate: each writer keeps its share of it.
            let interval = rate
                .filter(|r| *r > 0.0 && round == 0)
                .map(|r| Duration::from_secs_f64(writers as f64 / r));
            tokio::spawn(async move {
                let mut conn = pool.get_conn().await?;
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (w + 1) ^ (round << 32);
                let start = tokio::time::Instant::now();
                for i in 0..per_writer {
                    if let Some(every) = interval {
                        tokio::time::sleep_until(start + every * i as u32).await;
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let id = x % rows;
                    let sql = match i % 100 {
                        0 => format!("DELETE FROM E_BASEINFO WHERE PRIPID = {id}"),
                        1..=9 => format!(
                            "INSERT INTO E_BASEINFO (PRIPID, REGNO, ENTNAME, ENTTYPE, INDUSTRYPHY, INDUSTRYCO, NAME, DOM, DOMDISTRICT, CBUITEM, ESTDATE, REGORG, REGSTATE) VALUES {}",
                            row_values(first_new + i)
                        ),
                        n if n % 2 == 0 => format!(
                            "UPDATE E_BASEINFO SET ENTNAME = CONCAT('乌海市', '{round}{w}{i}', '商贸有限公司') WHERE PRIPID = {id}"
                        ),
                        _ => format!(
                            "UPDATE E_BASEINFO SET DOM = CONCAT('乌海市新华街', '{round}{w}{i}', '号') WHERE PRIPID = {id}"
                        ),
                    };
                    conn.query_drop(sql).await?;
                }
                Ok(())
            })
        })
        .collect()
}

/// The source's head as a number the checkpoint's position reaches once every change
/// written so far is applied: the change table's highest sequence number, or the
/// binlog's end as a version.
async fn source_head(pool: &mysql_async::Pool, mode: BenchMode) -> Result<i64> {
    let mut c = pool.get_conn().await?;
    Ok(match mode {
        BenchMode::Changelog => c
            .query_first("SELECT COALESCE(MAX(seq), 0) FROM ebis_change")
            .await?
            .unwrap_or(0),
        BenchMode::Binlog => {
            let row: Option<mysql_async::Row> = c.query_first("SHOW MASTER STATUS").await?;
            let row = row.context("the source server keeps no binary log")?;
            let file: String = row.get(0).unwrap_or_default();
            let pos: u64 = row.get(1).unwrap_or(0);
            ebis_source::Position::binlog_version(&file, pos)
        }
    })
}

/// Waits until the checkpoint covers `target` (see [`source_head`]).
async fn wait_applied<T>(
    client: &deadpool_postgres::Object,
    target: i64,
    task: &tokio::task::JoinHandle<T>,
) -> Result<()> {
    loop {
        let position: Option<serde_json::Value> = client
            .query_opt(
                "select position from ebis.checkpoint where source = 'aic_bench'",
                &[],
            )
            .await?
            .and_then(|r| r.get(0));
        let reached = match position.map(serde_json::from_value::<ebis_source::Position>) {
            Some(Ok(ebis_source::Position::Changelog { seq, .. })) => seq,
            Some(Ok(ebis_source::Position::Binlog { file, pos, .. })) => {
                ebis_source::Position::binlog_version(&file, pos)
            }
            _ => 0,
        };
        if reached >= target {
            return Ok(());
        }
        if task.is_finished() {
            anyhow::bail!("the pipeline stopped while streaming: see `ebis status`");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn row_values(id: u64) -> String {
    const WORDS: [&str; 10] = [
        "宏达", "金泰", "鑫源", "恒通", "昇华", "犇腾", "喆誉", "瑞丰", "蒙西", "黄河",
    ];
    const TRADES: [&str; 8] = [
        "商贸", "煤焦", "化工", "建材", "运输", "餐饮", "物资", "机电",
    ];
    let district = ["150302", "150303", "150304"][(id % 3) as usize];
    format!(
        "({id}, '{district}{id:09}', '乌海市{}{}有限公司{}', '1100', 'F', '5211', '王镕', '乌海市新华街{}号', '{district}', '日用百货', '2006-03-01', '{district}', '1')",
        WORDS[(id % 10) as usize],
        TRADES[(id / 10 % 8) as usize],
        id,
        id % 300
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_shares_the_core_seconds_of_writing_reading_and_mapping_over_the_cores() {
        // 1M rows: 16 core-seconds to write, 1 to read at the source, 5 to map, 2 cores:
        // 11 s at best, 8.5 s with mapping free.
        let all = ceiling_rate(1_000_000, 2, 16.0 + 1.0 + 5.0);
        assert!((all - 90_909.1).abs() < 1.0, "{all}");
        let written = ceiling_rate(1_000_000, 2, 16.0 + 1.0);
        assert!((written - 117_647.1).abs() < 1.0, "{written}");
        // One core: twice as long.
        let one = ceiling_rate(1_000_000, 1, 16.0 + 1.0 + 5.0);
        assert!((one - 45_454.5).abs() < 1.0, "{one}");
    }

    #[test]
    fn a_warehouse_locale_is_an_icu_locale_or_refused() {
        assert_eq!(
            create_warehouse_sql("ebis_bench_1", None).expect("no locale"),
            "create database ebis_bench_1"
        );
        assert_eq!(
            create_warehouse_sql("ebis_bench_1", Some("zh-Hans-CN")).expect("an ICU locale"),
            "create database ebis_bench_1 template template0 encoding 'UTF8' locale_provider icu icu_locale 'zh-Hans-CN'"
        );
        for bad in ["", "zh' drop", "zh\"\"", "中文"] {
            let e = create_warehouse_sql("ebis_bench_1", Some(bad)).expect_err(bad);
            assert!(e.to_string().contains("--warehouse-locale"), "{e}");
        }
    }

    #[test]
    fn the_ceiling_line_sets_the_rates_beside_copy_and_pgloader() {
        let report = BenchReport {
            rows: 1_000_000,
            cores: 2,
            raw_copy: Some(200_000.0),
            pgloader_tuned: Some(100_000.0),
            floor: Some(Floor {
                parts: vec![
                    FloorPart {
                        table: "exchange.aic_establishment",
                        rows_secs: 5.0,
                        index_secs: 2.0,
                        warehouse_cpu: Some(8.0),
                    },
                    FloorPart {
                        table: "core.enterprise",
                        rows_secs: 4.0,
                        index_secs: 3.0,
                        warehouse_cpu: Some(8.0),
                    },
                ],
            }),
            snapshot_cpu: CpuTimes {
                warehouse: Some(12.0),
                source: Some(1.0),
                ebis: 5.0,
                machine: None,
            },
            ..BenchReport::default()
        };
        assert_eq!(
            report.ceiling(),
            "the writes alone took 16.0 core-seconds of the warehouse server; with the source's 1.0 and ebis's 5.0 for reading and mapping the rows (as in the snapshot), 22.0 core-seconds: on 2 cores at most 90909 rows/s (0.45x `psql \\copy`, 0.91x pgloader tuned); with reading and mapping free, at most 117647 rows/s (0.59x `psql \\copy`, 1.18x pgloader tuned); the exchange table's alone took 8.0: a first load that wrote no enterprise base, with reading and mapping, at most 142857 rows/s (0.71x `psql \\copy`, 1.43x pgloader tuned)"
        );
        // Without the servers' CPU (not on this machine), no ceiling is made up.
        let elsewhere = BenchReport {
            snapshot_cpu: CpuTimes::default(),
            ..report
        };
        assert!(elsewhere.ceiling().starts_with("not measured"));
    }
}
