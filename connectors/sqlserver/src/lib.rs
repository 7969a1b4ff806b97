//! The Microsoft SQL Server source connector (TDS through tiberius, TLS through rustls).
//!
//! Three capture modes:
//! - **change_tracking**: the server's Change Tracking; each poll reads
//!   `CHANGETABLE(CHANGES …)` after the stored version up to the current one, fetches the
//!   current rows by key (a missing row is a delete), and checks the minimum valid
//!   version first (below it the position has expired).
//! - **changelog**: one trigger per table logs keys into `dbo.ebis_change` (IDENTITY
//!   sequence); the shared changelog poll with its gap handling runs on it.
//! - **timestamp**: a datetime column per table; the shared timestamp poll with its
//!   overlap window runs on it; deletes are found by the pipeline's key comparison.
//!
//! Here: the source, its pool and the `Source` contract. The modes' reads are in
//! `changelog`, `timestamp` and `tracking`; connection, URL and error classification in
//! `connect`; per-table SQL in `table`; value conversion (character data decoded per
//! value) in `values`; scripts for the DBA in `setup`.

mod changelog;
pub mod connect;
pub mod setup;
mod table;
mod timestamp;
mod tracking;
mod values;

use connect::{Pool, Target, classify};
use ebis_source::{
    Batch, Capture, Change, Clock, KeyEntry, Position, Source, SourceError, TablePlan, Value,
};
use table::Table;

pub use values::code_page_encoding;

/// How to reach and read one SQL Server source.
#[derive(Clone, Debug)]
pub struct SqlServerOptions {
    /// The source's name (for what it logs).
    pub name: String,
    /// `sqlserver://user@host:port/database?…` (no password).
    pub url: String,
    /// The password, from the environment.
    pub password: Option<String>,
    /// The tables to read.
    pub plans: Vec<TablePlan>,
    /// The capture mode.
    pub capture: Capture,
}

/// A SQL Server source.
pub struct SqlServerSource {
    name: String,
    pool: Pool,
    plans: Vec<TablePlan>,
    capture: Capture,
    tables: Option<Vec<Table>>,
    /// Seconds the server's wall clock is ahead of UTC.
    utc_offset: i64,
    /// Timestamp mode: the rows the overlap window has returned already.
    window: ebis_capture::OverlapWindow,
    /// Whether the account sees open transactions (probed once).
    sees_transactions: Option<bool>,
    /// Unmapped tables the change table logs for that exist.
    existing_unmapped: ebis_capture::changelog::KnownUnmapped,
}

type Pooled = deadpool::managed::Object<connect::Manager>;

impl SqlServerSource {
    /// A source; no connection is made until it is used.
    pub fn new(opts: SqlServerOptions) -> Result<SqlServerSource, SourceError> {
        let target: Target = connect::parse_url(&opts.url)
            .map_err(|e| SourceError::Query(format!("bad SQL Server URL: {e}")))?;
        Ok(SqlServerSource {
            name: opts.name,
            pool: connect::pool(target, opts.password, 4)?,
            plans: opts.plans,
            capture: opts.capture,
            tables: None,
            utc_offset: 0,
            window: ebis_capture::OverlapWindow::new(),
            sees_transactions: None,
            existing_unmapped: Default::default(),
        })
    }

    async fn conn(&self) -> Result<Pooled, SourceError> {
        connect::get(&self.pool).await
    }

    /// Loads table metadata once (and the server's offset from UTC).
    async fn tables(&mut self) -> Result<&[Table], SourceError> {
        if self.tables.is_none() {
            let mut conn = self.conn().await?;
            let raw_text = raw_text(&mut conn).await?;
            let mut tables = Vec::with_capacity(self.plans.len());
            for p in &self.plans {
                tables.push(Table::load(&mut conn, p, raw_text).await?);
            }
            let clock = clock_on(&mut conn).await?;
            // Zones are whole minutes: round away the moment between the two readings.
            let ms = (clock.local - clock.utc.naive_utc()).num_milliseconds();
            self.utc_offset = (ms as f64 / 60_000.0).round() as i64 * 60;
            self.tables = Some(tables);
        }
        Ok(self.tables.as_deref().unwrap_or(&[]))
    }

    fn table_index(&self, name: &str) -> Option<usize> {
        self.tables
            .as_ref()?
            .iter()
            .position(|t| t.plan.table.eq_ignore_ascii_case(name))
    }

    async fn locate(&mut self, table: &str) -> Result<(usize, Pooled), SourceError> {
        self.tables().await?;
        let i = self
            .table_index(table)
            .ok_or_else(|| SourceError::MissingTable {
                table: table.to_owned(),
            })?;
        Ok((i, self.conn().await?))
    }
}

/// One row, one value, from a statement without parameters.
pub(crate) async fn scalar<T>(conn: &mut connect::Conn, sql: &str) -> Result<Option<T>, SourceError>
where
    T: for<'a> tiberius::FromSql<'a> + Clone,
{
    let rows = async { conn.simple_query(sql).await?.into_first_result().await }
        .await
        .map_err(|e| classify(e, None))?;
    match rows.first() {
        Some(r) => r.try_get::<T, _>(0).map_err(|e| classify(e, None)),
        None => Ok(None),
    }
}

/// Whether the server returns the stored bytes of character data cast to binary (SQL
/// Server does: UTF-16LE for NVARCHAR, the collation's code page for VARCHAR). Babelfish
/// converts to its own code page instead, turning Chinese into `?`; it stores text as
/// UTF-8, so it cannot hold the invalid bytes the binary route guards against, and its
/// character data is read as the driver decodes it.
pub(crate) async fn raw_text(conn: &mut connect::Conn) -> Result<bool, SourceError> {
    let rows = async {
        conn.simple_query("SELECT CAST(N'乌' AS VARBINARY(8))")
            .await?
            .into_first_result()
            .await
    }
    .await
    .map_err(|e| classify(e, None))?;
    Ok(rows.first().and_then(|r| r.get::<&[u8], _>(0)) == Some(&[0x4C, 0x4E][..]))
}

/// The server's clock: UTC and its own wall clock.
pub(crate) async fn clock_on(conn: &mut connect::Conn) -> Result<Clock, SourceError> {
    let rows = async {
        conn.simple_query("SELECT SYSUTCDATETIME(), SYSDATETIME()")
            .await?
            .into_first_result()
            .await
    }
    .await
    .map_err(|e| classify(e, None))?;
    let row = rows
        .first()
        .ok_or_else(|| SourceError::Query("the source has no clock".to_owned()))?;
    let utc: chrono::NaiveDateTime = row
        .try_get(0)
        .map_err(|e| classify(e, None))?
        .ok_or_else(|| SourceError::Query("the source has no clock".to_owned()))?;
    let local: chrono::NaiveDateTime = row
        .try_get(1)
        .map_err(|e| classify(e, None))?
        .ok_or_else(|| SourceError::Query("the source has no clock".to_owned()))?;
    Ok(Clock {
        utc: utc.and_utc(),
        local,
    })
}

/// Binlog and logical capture are other dialects' log readers.
fn log_mode_refused(capture: &Capture) -> SourceError {
    SourceError::CaptureNotInstalled(setup::not_sqlserver(capture))
}

impl Source for SqlServerSource {
    async fn check(&mut self) -> Result<(), SourceError> {
        self.tables = None;
        self.existing_unmapped.clear();
        self.tables().await?;
        let mut conn = self.conn().await?;
        match &self.capture {
            Capture::Changelog { .. } => self.check_changelog(&mut conn).await,
            Capture::ChangeTracking => self.check_tracking(&mut conn).await,
            Capture::Timestamp { .. } => {
                match self.tables.iter().flatten().find(|t| !t.has_modified()) {
                    Some(t) => Err(SourceError::CaptureNotInstalled(format!(
                        "table {} has no modified column for timestamp capture: set source.modified_column in its mapping or capture.modified_column in the config",
                        t.plan.table
                    ))),
                    None => Ok(()),
                }
            }
            Capture::Binlog { .. } | Capture::Logical { .. } => {
                Err(log_mode_refused(&self.capture))
            }
        }
    }

    async fn head(&mut self) -> Result<Position, SourceError> {
        self.tables().await?;
        let mut conn = self.conn().await?;
        match self.capture.clone() {
            Capture::Changelog { gaps, .. } => self.changelog_head(&mut conn, gaps).await,
            Capture::ChangeTracking => self.tracking_head(&mut conn).await,
            Capture::Timestamp { .. } => self.timestamp_head(&mut conn).await,
            Capture::Binlog { .. } | Capture::Logical { .. } => {
                Err(log_mode_refused(&self.capture))
            }
        }
    }

    async fn snapshot_chunk(
        &mut self,
        table: &str,
        after: Option<&[Value]>,
        limit: usize,
        version: i64,
    ) -> Result<Vec<Change>, SourceError> {
        let (i, mut conn) = self.locate(table).await?;
        let t = &self.tables.as_deref().unwrap_or(&[])[i];
        let rows = t.chunk(&mut conn, after, limit).await?;
        Ok(rows
            .into_iter()
            .map(|row| t.upsert(row, version, None))
            .collect())
    }

    async fn changes(&mut self, after: &Position, limit: usize) -> Result<Batch, SourceError> {
        match (after, self.capture.clone()) {
            (
                Position::Changelog { seq, gaps, expired },
                Capture::Changelog { gaps: rules, .. },
            ) => {
                self.changelog_changes(*seq, gaps, expired, limit, rules)
                    .await
            }
            (Position::ChangeTracking { version }, Capture::ChangeTracking) => {
                self.tracking_changes(*version, limit).await
            }
            (Position::Timestamp { .. }, Capture::Timestamp { overlap }) => {
                self.timestamp_changes(after, limit, overlap).await
            }
            (other, capture) => Err(SourceError::PositionExpired(format!(
                "the stored position `{}` does not fit capture mode {}",
                other.summary(),
                capture.name()
            ))),
        }
    }

    async fn keys(
        &mut self,
        table: &str,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<KeyEntry>, SourceError> {
        let (i, mut conn) = self.locate(table).await?;
        self.tables.as_deref().unwrap_or(&[])[i]
            .keys(&mut conn, after, limit)
            .await
    }

    async fn rows_by_keys(
        &mut self,
        table: &str,
        keys: &[Vec<Value>],
        version: i64,
    ) -> Result<Vec<Change>, SourceError> {
        let (i, mut conn) = self.locate(table).await?;
        let t = &self.tables.as_deref().unwrap_or(&[])[i];
        Ok(t.by_keys(&mut conn, keys)
            .await?
            .into_iter()
            .map(|row| t.upsert(row, version, None))
            .collect())
    }

    async fn clock(&mut self) -> Result<Clock, SourceError> {
        let mut conn = self.conn().await?;
        clock_on(&mut conn).await
    }

    async fn acknowledge(&mut self, stored: &Position) -> Result<u64, SourceError> {
        self.purge_changes(stored).await
    }

    async fn count(&mut self, table: &str) -> Result<u64, SourceError> {
        let (i, mut conn) = self.locate(table).await?;
        self.tables.as_deref().unwrap_or(&[])[i]
            .count(&mut conn)
            .await
    }

    async fn column_types(&mut self, table: &str) -> Result<Vec<(String, String)>, SourceError> {
        let (i, _conn) = self.locate(table).await?;
        Ok(self.tables.as_deref().unwrap_or(&[])[i]
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty.clone()))
            .collect())
    }

    async fn close(self) {
        self.pool.close();
    }
}
