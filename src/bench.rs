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

mod cpu;
use cpu::{CpuProbe, CpuTimes};

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
                        "the first load's writes alone (the exchange rows, identifiers and enterprises ebis wrote, `\\copy`-ed into bare tables, then the same keys and indexes built, one step after another: the exchange table {:.1} s, the base {:.1} s)",
                        f.exchange_secs, f.base_secs
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
    // Databases.
    let admin = pool_of(&opts.mysql, "SET NAMES utf8mb4")?;
    let mut c = admin
        .get_conn()
        .await
        .context("connecting to MySQL/MariaDB")?;
    c.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        .await?;
    drop(c);
    let pg = Warehouse::new(&opts.pg, 1)?
        .dedicated()
        .await
        .context("connecting to PostgreSQL")?;
    pg.batch_execute(&format!("create database {name}")).await?;
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
    report.floor = floor(&wh_conn).await;
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

/// Host, port, user and database of a `scheme://user@host:port/db` URL.
fn url_parts(url: &str) -> (String, String, String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, ""));
    let db = path.split('?').next().unwrap_or("");
    (
        host.to_owned(),
        port.to_owned(),
        user.to_owned(),
        db.to_owned(),
    )
}

/// pgloader's settings as it ships them (but for the target schema).
const PGLOADER_DEFAULT: &str = "";
/// pgloader tuned for one large table on two cores: larger batches and prefetch, four
/// workers (its `concurrency` splits a read only on an integer key, which E_BASEINFO has not).
const PGLOADER_TUNED: &str = ", workers = 4, batch rows = 50000, prefetch rows = 100000";

/// The same table loaded by pgloader (the peer a DBA would reach for) into a schema of its
/// own in the warehouse database, with its primary key, as ebis's table has (MariaDB's
/// `current_timestamp(6)` defaults are dropped: pgloader cannot translate them). Rows/s, or
/// `None` when pgloader is missing, fails, or does not load every row.
async fn pgloader(
    source: &ConnectionConfig,
    wh: &ConnectionConfig,
    rows: u64,
    with: &str,
) -> Option<f64> {
    let url = |c: &ConnectionConfig, scheme: &str| -> Option<String> {
        let (host, port, user, db) = url_parts(&c.url);
        let pw = match c.password() {
            Ok(Some(pw)) => format!(":{}", ebis_source::percent_encode(pw.expose())),
            Ok(None) => String::new(),
            Err(_) => return None,
        };
        let port = if port.is_empty() {
            String::new()
        } else {
            format!(":{port}")
        };
        Some(format!("{scheme}://{user}{pw}@{host}{port}/{db}"))
    };
    let (_, _, _, source_db) = url_parts(&source.url);
    let dir = std::env::temp_dir().join(format!("ebis_bench_pgloader_{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let command = dir.join("load.pgl");
    // The file may hold passwords: readable by this user only.
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&command)
            .ok()?;
        write!(
            f,
            "LOAD DATABASE\n  FROM {}\n  INTO {}\n  WITH include drop, create tables, create indexes, reset sequences{with}\n  CAST type datetime to timestamptz drop default using zero-dates-to-null,\n       type timestamp to timestamptz drop default using zero-dates-to-null\n  INCLUDING ONLY TABLE NAMES MATCHING 'E_BASEINFO'\n  ALTER SCHEMA '{source_db}' RENAME TO 'ebis_bench_pgloader';\n",
            url(source, "mysql")?,
            url(wh, "postgresql")?,
        )
        .ok()?;
    }
    let start = Instant::now();
    let status = tokio::process::Command::new("pgloader")
        .arg("--root-dir")
        .arg(&dir)
        .arg("--quiet")
        .arg(&command)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    let wh_client = Warehouse::new(wh, 1).ok()?.dedicated().await.ok()?;
    let loaded: Option<i64> = wh_client
        .query_one("select count(*) from ebis_bench_pgloader.e_baseinfo", &[])
        .await
        .ok()
        .map(|r| r.get(0));
    let _ = wh_client
        .batch_execute("drop schema if exists ebis_bench_pgloader cascade")
        .await;
    (status.ok()?.success() && loaded == Some(rows as i64)).then(|| rows as f64 / secs.max(1e-9))
}

/// The same rows read by `mariadb --quick` into nothing: the source's own read rate.
async fn raw_read(source: &ConnectionConfig, rows: u64) -> Option<f64> {
    let (host, port, user, db) = url_parts(&source.url);
    let mut cmd = tokio::process::Command::new("mariadb");
    cmd.args([
        "--quick",
        "--batch",
        "--skip-column-names",
        "-h",
        &host,
        "-u",
        &user,
    ]);
    if !port.is_empty() {
        cmd.args(["-P", &port]);
    }
    if let Ok(Some(pw)) = source.password() {
        cmd.env("MYSQL_PWD", pw.expose());
    }
    cmd.args([&db, "-e", "SELECT * FROM E_BASEINFO"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let start = Instant::now();
    let ok = cmd.status().await.ok()?.success();
    ok.then(|| rows as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// `psql` on the warehouse's database running `commands` (`-c` each, in order), stopping
/// at the first error, its output dropped.
fn psql(wh: &ConnectionConfig, commands: &[String]) -> tokio::process::Command {
    let (host, port, user, db) = url_parts(&wh.url);
    let mut cmd = tokio::process::Command::new("psql");
    cmd.args([
        "-X",
        "-q",
        "-h",
        &host,
        "-U",
        &user,
        "-d",
        &db,
        "-v",
        "ON_ERROR_STOP=1",
    ]);
    if !port.is_empty() {
        cmd.args(["-p", &port]);
    }
    if let Ok(Some(pw)) = wh.password() {
        cmd.env("PGPASSWORD", pw.expose());
    }
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// Runs `psql` with `commands`; whether it succeeded.
async fn run_psql(wh: &ConnectionConfig, commands: &[String]) -> bool {
    psql(wh, commands).status().await.is_ok_and(|s| s.success())
}

/// The warehouse's copy of the rows written out, then loaded back by `psql \copy` into a
/// table without indexes or triggers: the warehouse's own write rate for them.
async fn raw_copy(wh: &ConnectionConfig, rows: u64) -> Option<f64> {
    let file = std::env::temp_dir().join(format!("ebis_bench_copy_{}.txt", std::process::id()));
    let path = file.display().to_string();
    let ok = run_psql(
        wh,
        &[format!(
            "\\copy (select * from exchange.aic_establishment) to '{path}'"
        )],
    )
    .await
        && run_psql(
            wh,
            &["create table ebis_bench_copy (like exchange.aic_establishment)".to_owned()],
        )
        .await;
    let start = Instant::now();
    let ok = ok && run_psql(wh, &[format!("\\copy ebis_bench_copy from '{path}'")]).await;
    let secs = start.elapsed().as_secs_f64();
    run_psql(wh, &["drop table if exists ebis_bench_copy".to_owned()]).await;
    let _ = std::fs::remove_file(&file);
    ok.then(|| rows as f64 / secs.max(1e-9))
}

/// What a first load must write, written by `psql` alone: the floor under ebis's "base
/// complete" that no derivation, mapping or capture is in. The rows ebis wrote (the
/// exchange table's, `core.identifier`'s and `core.enterprise`'s) are copied out, then
/// loaded back by `\copy` into tables without indexes, and the same keys and indexes
/// built on them afterwards (as pgloader and ebis's rebuild do), one step after another
/// on one connection.
#[derive(Clone, Debug, Default)]
pub struct Floor {
    /// Seconds for the exchange table: its rows, then its keys and indexes.
    pub exchange_secs: f64,
    /// Seconds for the enterprise base: identifiers and enterprises, then their keys and
    /// indexes.
    pub base_secs: f64,
}

impl Floor {
    /// Both parts.
    pub fn secs(&self) -> f64 {
        self.exchange_secs + self.base_secs
    }
}

/// The tables a first load of the bench's table writes.
const FIRST_LOAD_TABLES: [&str; 3] = [
    "exchange.aic_establishment",
    "core.identifier",
    "core.enterprise",
];

/// Measures [`Floor`] on the bench's warehouse (the base complete).
async fn floor(wh: &ConnectionConfig) -> Option<Floor> {
    let dir = std::env::temp_dir().join(format!("ebis_bench_floor_{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let copy_of = |table: &str| format!("public.ebis_bench_floor_{}", table.replace('.', "_"));
    let file_of = |table: &str| dir.join(format!("{table}.txt")).display().to_string();
    let mut ok = true;
    for t in FIRST_LOAD_TABLES {
        ok = ok
            && run_psql(
                wh,
                &[
                    format!("\\copy {t} to '{}'", file_of(t)),
                    format!("create table {} (like {t})", copy_of(t)),
                ],
            )
            .await;
    }
    // Each table's index definitions, made to name the copy (its own names generated).
    let indexes = |t: &str| {
        format!(
            "do $$ declare d text; begin
               for d in select regexp_replace(pg_get_indexdef(i.indexrelid),
                                              '^(CREATE (UNIQUE )?INDEX )\\S+ ON (ONLY )?\\S+',
                                              '\\1 ON {}')
                          from pg_index i where i.indrelid = '{t}'::regclass loop
                 execute d;
               end loop;
             end $$",
            copy_of(t)
        )
    };
    let timed = |tables: &[&str]| {
        let commands: Vec<String> = tables
            .iter()
            .map(|t| format!("\\copy {} from '{}'", copy_of(t), file_of(t)))
            .chain(tables.iter().map(|t| indexes(t)))
            .collect();
        async move {
            let start = Instant::now();
            run_psql(wh, &commands)
                .await
                .then(|| start.elapsed().as_secs_f64())
        }
    };
    let exchange = if ok {
        timed(&FIRST_LOAD_TABLES[..1]).await
    } else {
        None
    };
    let base = if exchange.is_some() {
        timed(&FIRST_LOAD_TABLES[1..]).await
    } else {
        None
    };
    let drops: Vec<String> = FIRST_LOAD_TABLES
        .iter()
        .map(|t| format!("drop table if exists {}", copy_of(t)))
        .collect();
    run_psql(wh, &drops).await;
    let _ = std::fs::remove_dir_all(&dir);
    Some(Floor {
        exchange_secs: exchange?,
        base_secs: base?,
    })
}

/// What a catch-up must write, written by `psql` alone: the floor under ebis's catch-up
/// that no reading, mapping or pipelining is in. The rows the catch-up upserted into the
/// exchange table (applied since it began, not deleted) are copied out changed again (a
/// name edited, the version raised, so each is a real change), copied back by `\copy`
/// into a staging table and upserted by the statement ebis's apply runs
/// ([`crate::warehouse::upsert_statement`]), the base queue's trigger firing as it does
/// for ebis, on one connection, in a transaction rolled back afterwards.
#[derive(Clone, Debug, Default)]
pub struct CatchUpFloor {
    /// Rows upserted.
    pub rows: u64,
    /// Seconds for the staging copy and the upsert.
    pub secs: f64,
}

/// Measures [`CatchUpFloor`] for the rows applied since `since` (the warehouse's clock).
async fn catch_up_floor(
    wh: &ConnectionConfig,
    client: &deadpool_postgres::Object,
    since: &str,
) -> Option<CatchUpFloor> {
    let table = "exchange.aic_establishment";
    let kind = crate::indicators::record_kind("aic_establishment")?;
    let rows: i64 = client
        .query_one(
            &format!("select count(*) from {table} where applied_at >= $1::text::timestamptz and deleted_at is null"),
            &[&since],
        )
        .await
        .ok()?
        .get(0);
    let file = std::env::temp_dir().join(format!("ebis_bench_catch_up_{}.txt", std::process::id()));
    let path = file.display().to_string();
    // `since` is the server's own timestamp text: digits, dashes, colons, a dot, a space
    // and a sign.
    let since_ok = since
        .chars()
        .all(|c| c.is_ascii_digit() || "-:. +".contains(c));
    let ok = since_ok
        && run_psql(
            wh,
            &[format!(
                "\\copy (select (jsonb_populate_record(null::{table}, to_jsonb(t) || jsonb_build_object('name', coalesce(t.name, '') || '改', 'change_version', t.change_version + 1))).* from {table} t where t.applied_at >= '{since}' and t.deleted_at is null) to '{path}'"
            )],
        )
        .await;
    let stage = "ebis_bench_stage";
    let start = Instant::now();
    let ok = ok
        && run_psql(
            wh,
            &[
                "begin".to_owned(),
                format!("create temp table {stage} (like {table} including defaults)"),
                format!("\\copy {stage} from '{path}'"),
                crate::warehouse::upsert_statement(kind, stage),
                // Undone: a kept warehouse (`--keep`) still holds what ebis applied.
                "rollback".to_owned(),
            ],
        )
        .await;
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    ok.then(|| CatchUpFloor {
        rows: u64::try_from(rows).unwrap_or(0),
        secs,
    })
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
    progress: impl Fn(&str),
) -> Result<CompareBenchReport> {
    use crate::demo::{bureaus::Bureaus, truth, world};
    let mut report = CompareBenchReport {
        enterprises,
        load: (loadavg(), String::new()),
        ..CompareBenchReport::default()
    };
    // (Not the capture bench's name: both may run at once in one process, as in the tests.)
    let name = format!("ebis_bench_compare_{}", std::process::id());
    let world = world::World::generate(world::Options::new(enterprises, 2006));
    let load_start = Instant::now();
    let bureaus = Bureaus::create(mysql, &name).await?;
    report.rows = bureaus.load_world(&world).await?;
    report.load_secs = load_start.elapsed().as_secs_f64();
    progress(&format!(
        "loaded {} rows in {:.1} s",
        report.rows, report.load_secs
    ));

    let pg_admin = Warehouse::new(pg, 1)?.dedicated().await?;
    pg_admin
        .batch_execute(&format!("create database {name}"))
        .await?;
    let wh_conn = pg.with_database(&name);
    let dir = std::env::temp_dir().join(&name);
    crate::assets::write_mappings(&dir)?;
    std::fs::write(
        dir.join("pipeline.yaml"),
        crate::demo::config_yaml(&wh_conn, &bureaus, crate::demo::DemoCapture::Triggers),
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
    let t = truth::ground_truth(&world, &truth::Thresholds::default());
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
    drop(client);
    drop(wh);
    if keep {
        progress(&format!(
            "kept databases {name}_* (MySQL) and {name} (PostgreSQL)"
        ));
    } else {
        bureaus.drop_all(mysql).await?;
        let _ = pg_admin
            .batch_execute(&format!("drop database {name} with (force)"))
            .await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(report)
}
