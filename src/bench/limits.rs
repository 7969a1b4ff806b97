//! The raw limits a capture bench puts beside ebis's rates, measured in the same run:
//! `mariadb --quick` reading the table, `psql \\copy` loading the same rows, the first
//! load's and the catch-up's writes done by `psql` alone ([`Floor`], [`CatchUpFloor`]),
//! and pgloader, the peer a DBA would reach for.

use super::cpu::CpuProbe;
use crate::config::ConnectionConfig;
use crate::warehouse::Warehouse;
use std::time::Instant;

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
pub(super) const PGLOADER_DEFAULT: &str = "";
/// pgloader tuned for one large table on two cores: larger batches and prefetch, four
/// workers (its `concurrency` splits a read only on an integer key, which E_BASEINFO has not).
pub(super) const PGLOADER_TUNED: &str = ", workers = 4, batch rows = 50000, prefetch rows = 100000";

/// The same table loaded by pgloader (the peer a DBA would reach for) into a schema of its
/// own in the warehouse database, with its primary key, as ebis's table has (MariaDB's
/// `current_timestamp(6)` defaults are dropped: pgloader cannot translate them). Rows/s, or
/// `None` when pgloader is missing, fails, or does not load every row.
pub(super) async fn pgloader(
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
pub(super) async fn raw_read(source: &ConnectionConfig, rows: u64) -> Option<f64> {
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
pub(super) async fn raw_copy(wh: &ConnectionConfig, rows: u64) -> Option<f64> {
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
/// on one connection. The warehouse server's CPU meanwhile bounds any first load that
/// writes the same tables, however it derives them (the report's ceiling line).
#[derive(Clone, Debug, Default)]
pub struct Floor {
    /// Each table written, in order: the exchange table, then the base's.
    pub parts: Vec<FloorPart>,
}

/// One table of [`Floor`]: its rows copied in, then its keys and indexes built.
#[derive(Clone, Debug, Default)]
pub struct FloorPart {
    /// The table.
    pub table: &'static str,
    /// Seconds for its rows.
    pub rows_secs: f64,
    /// Seconds for its keys and indexes.
    pub index_secs: f64,
    /// Core-seconds the warehouse server (every process of it: backends, parallel
    /// workers, WAL writer, checkpointer, autovacuum) used meanwhile, rows and indexes
    /// (`None`: the server is not on this machine).
    pub warehouse_cpu: Option<f64>,
}

impl FloorPart {
    /// Rows and indexes.
    pub fn secs(&self) -> f64 {
        self.rows_secs + self.index_secs
    }
}

impl Floor {
    /// The exchange table's part.
    pub fn exchange_secs(&self) -> f64 {
        self.parts.first().map_or(0.0, FloorPart::secs)
    }

    /// The enterprise base's part: identifiers and enterprises.
    pub fn base_secs(&self) -> f64 {
        self.parts.iter().skip(1).map(FloorPart::secs).sum()
    }

    /// Every part.
    pub fn secs(&self) -> f64 {
        self.parts.iter().map(FloorPart::secs).sum()
    }

    /// The warehouse server's core-seconds for every part (`None` unless each was read).
    pub fn warehouse_cpu(&self) -> Option<f64> {
        self.parts.iter().map(|p| p.warehouse_cpu).sum()
    }

    /// The warehouse server's core-seconds for the exchange table's part.
    pub fn exchange_cpu(&self) -> Option<f64> {
        self.parts.first()?.warehouse_cpu
    }
}

/// The tables a first load of the bench's table writes.
const FIRST_LOAD_TABLES: [&str; 3] = [
    "exchange.aic_establishment",
    "core.identifier",
    "core.enterprise",
];

/// Measures [`Floor`] on the bench's warehouse (the base complete).
pub(super) async fn floor(wh: &ConnectionConfig, probe: &CpuProbe) -> Option<Floor> {
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
                    // (No autovacuum of the copies inside the timing.)
                    format!(
                        "create table {} (like {t}) with (autovacuum_enabled = off)",
                        copy_of(t)
                    ),
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
    // The first load's tables vacuumed first: PostgreSQL (13 and later) autovacuums a table
    // after many inserts, which would otherwise run inside the writes' CPU reading.
    ok = ok
        && run_psql(
            wh,
            &[format!("vacuum (analyze) {}", FIRST_LOAD_TABLES.join(", "))],
        )
        .await;
    // One table after another: its rows, then its keys and indexes, each timed.
    let mut parts = Vec::new();
    for t in FIRST_LOAD_TABLES {
        if !ok {
            break;
        }
        let cpu = probe.read();
        let start = Instant::now();
        ok = run_psql(
            wh,
            &[format!("\\copy {} from '{}'", copy_of(t), file_of(t))],
        )
        .await;
        let rows_secs = start.elapsed().as_secs_f64();
        let start = Instant::now();
        ok = ok && run_psql(wh, &[indexes(t)]).await;
        parts.push(FloorPart {
            table: t,
            rows_secs,
            index_secs: start.elapsed().as_secs_f64(),
            warehouse_cpu: probe.read().since(&cpu).warehouse,
        });
    }
    let drops: Vec<String> = FIRST_LOAD_TABLES
        .iter()
        .map(|t| format!("drop table if exists {}", copy_of(t)))
        .collect();
    run_psql(wh, &drops).await;
    let _ = std::fs::remove_dir_all(&dir);
    ok.then_some(Floor { parts })
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
pub(super) async fn catch_up_floor(
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
