//! The Oracle source connector (ODPI-C through the `oracle` crate; the Oracle client
//! library is loaded at run time, so ebis builds and runs without it until an Oracle
//! source is read).
//!
//! Two capture modes:
//! - **changelog**: one row trigger per table logs keys into `EBIS_CHANGE`, numbered by
//!   the sequence `EBIS_CHANGE_SEQ`; the shared changelog poll with its gap handling runs
//!   on it (sequence numbers are taken inside the writing transaction, so they commit
//!   out of order, and a lost sequence cache skips numbers for good).
//! - **timestamp**: a `DATE`/`TIMESTAMP` modified column per table, with the shared
//!   overlap window; or, for a table without one, `modified_column: ORA_ROWSCN`, the
//!   commit number Oracle keeps per block (per row with `ROWDEPENDENCIES`). Deletes are
//!   found by the pipeline's key comparison.
//!
//! Snapshots read every table as of one SCN, taken when the head is (flashback query),
//! so the tables agree with each other; without the flashback privilege they are read
//! as they are, chunk by chunk, and streaming repairs what changed meanwhile. When undo
//! no longer reaches the SCN (ORA-01555), the snapshot moves to a newer one.
//!
//! The driver is synchronous: every call runs on tokio's blocking pool, one session per
//! source (`connect`). Here: the source and the `Source` contract; the modes' reads are
//! in `changelog` and `timestamp`; per-table SQL in `table`; names and their limits in
//! `names`; value conversion in `values`; scripts for the DBA in `setup`.

mod changelog;
pub mod connect;
pub mod names;
pub mod setup;
mod table;
mod timestamp;
mod values;

use connect::Session;
use ebis_source::{
    Batch, Capture, Change, Clock, KeyEntry, Position, Source, SourceError, TablePlan, Value,
};
use table::Table;

pub use table::ROWSCN;
pub use values::charset_encoding;

/// How to reach and read one Oracle source.
#[derive(Clone, Debug)]
pub struct OracleOptions {
    /// The source's name (for what it logs).
    pub name: String,
    /// `oracle://user@host:port/SERVICE` (no password).
    pub url: String,
    /// The password, from the environment.
    pub password: Option<String>,
    /// The tables to read.
    pub plans: Vec<TablePlan>,
    /// The capture mode.
    pub capture: Capture,
}

/// What ebis learned of the database on first contact.
#[derive(Clone, Debug)]
struct Database {
    /// The session's schema (for unqualified table names).
    schema: String,
    /// `NLS_CHARACTERSET`.
    charset: String,
}

/// An Oracle source.
pub struct OracleSource {
    name: String,
    session: Session,
    plans: Vec<TablePlan>,
    capture: Capture,
    db: Option<Database>,
    tables: Option<Vec<Table>>,
    /// Seconds the server's wall clock is ahead of UTC.
    utc_offset: i64,
    /// Timestamp mode: the rows the overlap window has returned already.
    window: ebis_capture::OverlapWindow,
    /// Whether the account sees open transactions (probed once).
    sees_transactions: Option<bool>,
    /// Unmapped tables the change table logs for that exist.
    existing_unmapped: ebis_capture::changelog::KnownUnmapped,
    /// The SCN snapshot chunks are read as of (taken with the head).
    snapshot_scn: Option<i64>,
    /// Whether flashback queries are allowed (`None`: not tried yet).
    flashback: Option<bool>,
}

impl OracleSource {
    /// A source; no connection is made until it is used.
    pub fn new(opts: OracleOptions) -> Result<OracleSource, SourceError> {
        let target = connect::parse_url(&opts.url)
            .map_err(|e| SourceError::Query(format!("bad Oracle URL: {e}")))?;
        Ok(OracleSource {
            name: opts.name,
            session: Session::new(target, opts.password),
            plans: opts.plans,
            capture: opts.capture,
            db: None,
            tables: None,
            utc_offset: 0,
            window: ebis_capture::OverlapWindow::new(),
            sees_transactions: None,
            existing_unmapped: Default::default(),
            snapshot_scn: None,
            flashback: None,
        })
    }

    /// Loads what the database is (schema, character set, clock offset) and the table
    /// metadata, once.
    async fn tables(&mut self) -> Result<&[Table], SourceError> {
        if self.tables.is_none() {
            let db = self
                .session
                .run(None, |conn| {
                    let (schema, charset): (String, String) = conn.query_row_as(
                        "SELECT SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA'),
                                (SELECT VALUE FROM NLS_DATABASE_PARAMETERS WHERE PARAMETER = 'NLS_CHARACTERSET')
                         FROM DUAL",
                        &[],
                    )?;
                    Ok(Database { schema, charset })
                })
                .await?;
            let stored = charset_encoding(&db.charset);
            if stored.is_none() {
                tracing::info!(
                    source = %self.name,
                    charset = %db.charset,
                    "database character set not decoded by ebis itself: character data is read as Oracle converts it"
                );
            }
            let mut tables = Vec::with_capacity(self.plans.len());
            for p in &self.plans {
                tables.push(Table::load(&self.session, p, &db.schema, stored).await?);
            }
            let clock = self.clock_now().await?;
            // Zones are whole minutes: round away the moment between the two readings.
            let ms = (clock.local - clock.utc.naive_utc()).num_milliseconds();
            self.utc_offset = (ms as f64 / 60_000.0).round() as i64 * 60;
            self.db = Some(db);
            self.tables = Some(tables);
        }
        Ok(self.tables.as_deref().unwrap_or(&[]))
    }

    fn table(&self, name: &str) -> Result<&Table, SourceError> {
        self.tables
            .iter()
            .flatten()
            .find(|t| t.plan.table.eq_ignore_ascii_case(name))
            .ok_or_else(|| SourceError::MissingTable {
                table: name.to_owned(),
            })
    }

    /// The server's clock.
    async fn clock_now(&self) -> Result<Clock, SourceError> {
        clock_on(&self.session).await
    }

    /// The database's current SCN, where the account may ask; `None` where it may not.
    async fn current_scn(&self) -> Result<Option<i64>, SourceError> {
        current_scn_on(&self.session).await
    }

    /// A snapshot chunk as of `scn`, or as it is.
    async fn chunk_rows(
        &self,
        t: &Table,
        after: Option<&[Value]>,
        limit: usize,
        scn: Option<i64>,
    ) -> Result<Vec<ebis_source::Row>, SourceError> {
        t.rows(&self.session, t.chunk_stmt(after, limit, scn)).await
    }
}

/// The server's clock: UTC, and its own wall clock (what `SYSDATE` gives the
/// application's writes).
pub(crate) async fn clock_on(session: &Session) -> Result<Clock, SourceError> {
    let (utc, local) = session
        .run(None, |conn| {
            conn.query_row_as::<(oracle::sql_type::Timestamp, oracle::sql_type::Timestamp)>(
                "SELECT SYS_EXTRACT_UTC(SYSTIMESTAMP), CAST(SYSTIMESTAMP AS TIMESTAMP) FROM DUAL",
                &[],
            )
        })
        .await?;
    let as_time = |t: &oracle::sql_type::Timestamp| match values::datetime(t) {
        Some(Value::DateTime(d)) => Ok(d),
        _ => Err(SourceError::Query("the source has no clock".to_owned())),
    };
    Ok(Clock {
        utc: as_time(&utc)?.and_utc(),
        local: as_time(&local)?,
    })
}

/// The database's current SCN, where the account may ask (EXECUTE on `DBMS_FLASHBACK`,
/// or SELECT on `V$DATABASE`); `None` where it may not.
pub(crate) async fn current_scn_on(session: &Session) -> Result<Option<i64>, SourceError> {
    session
        .run(None, |conn| {
            match conn.query_row_as::<i64>(
                "SELECT DBMS_FLASHBACK.GET_SYSTEM_CHANGE_NUMBER FROM DUAL",
                &[],
            ) {
                Ok(n) => Ok(Some(n)),
                Err(e) if connect::classify(&e, None).is_retryable() => Err(e),
                Err(_) => {
                    match conn.query_row_as::<i64>("SELECT CURRENT_SCN FROM V$DATABASE", &[]) {
                        Ok(n) => Ok(Some(n)),
                        Err(e) if connect::classify(&e, None).is_retryable() => Err(e),
                        Err(_) => Ok(None),
                    }
                }
            }
        })
        .await
}

/// Whether an error says the account may not run flashback queries.
fn flashback_denied(e: &SourceError) -> bool {
    let m = e.to_string();
    m.contains("ORA-01031") || m.contains("ORA-08187") || m.contains("ORA-00439")
}

impl Source for OracleSource {
    async fn check(&mut self) -> Result<(), SourceError> {
        self.tables = None;
        self.existing_unmapped.clear();
        self.tables().await?;
        match &self.capture {
            Capture::Changelog { .. } => self.check_changelog().await,
            Capture::Timestamp { .. } => {
                if let Some(t) = self.tables.iter().flatten().find(|t| !t.has_modified()) {
                    return Err(SourceError::CaptureNotInstalled(format!(
                        "table {} has no modified column for timestamp capture: set source.modified_column in its mapping (ORA_ROWSCN for a table without one) or capture.modified_column in the config",
                        t.plan.table
                    )));
                }
                if self.tables.iter().flatten().any(|t| t.rowscn)
                    && self.current_scn().await?.is_none()
                {
                    return Err(SourceError::CaptureNotInstalled(
                        "ORA_ROWSCN capture reads the database's SCN: grant EXECUTE ON SYS.DBMS_FLASHBACK (or SELECT ON V_$DATABASE) to the reading account".to_owned(),
                    ));
                }
                Ok(())
            }
            Capture::ChangeTracking | Capture::Binlog { .. } | Capture::Logical { .. } => Err(
                SourceError::CaptureNotInstalled(setup::not_oracle(&self.capture)),
            ),
        }
    }

    async fn head(&mut self) -> Result<Position, SourceError> {
        self.tables().await?;
        // The snapshot that may follow reads as of an SCN taken after the head: whatever
        // committed before the head is in it, and streaming covers the rest.
        let head = match self.capture.clone() {
            Capture::Changelog { gaps, .. } => {
                let head = self.changelog_head(gaps).await?;
                self.snapshot_scn = self.current_scn().await?;
                head
            }
            Capture::Timestamp { .. } => {
                let scn = self.current_scn().await?;
                self.snapshot_scn = scn;
                self.timestamp_head(scn).await?
            }
            Capture::ChangeTracking | Capture::Binlog { .. } | Capture::Logical { .. } => {
                return Err(SourceError::CaptureNotInstalled(setup::not_oracle(
                    &self.capture,
                )));
            }
        };
        Ok(head)
    }

    async fn snapshot_chunk(
        &mut self,
        table: &str,
        after: Option<&[Value]>,
        limit: usize,
        version: i64,
    ) -> Result<Vec<Change>, SourceError> {
        self.tables().await?;
        let t = self.table(table)?.clone();
        let scn = self.snapshot_scn.filter(|_| self.flashback != Some(false));
        let rows = match self.chunk_rows(&t, after, limit, scn).await {
            Ok(rows) => {
                if scn.is_some() {
                    self.flashback = Some(true);
                }
                rows
            }
            Err(e) if scn.is_some() && flashback_denied(&e) => {
                tracing::warn!(
                    source = %self.name,
                    "flashback queries are not granted (FLASHBACK on the tables, or FLASHBACK ANY TABLE): snapshot chunks are read as they are, so tables may disagree with each other until streaming catches up"
                );
                self.flashback = Some(false);
                self.chunk_rows(&t, after, limit, None).await?
            }
            Err(SourceError::PositionExpired(why)) if scn.is_some() => {
                // Undo no longer reaches the SCN: any newer one is as good for what
                // streaming covers, which starts at the head, before it.
                tracing::warn!(
                    source = %self.name,
                    reason = %why,
                    "the snapshot's SCN is no longer readable: continuing as of a newer one"
                );
                self.snapshot_scn = self.current_scn().await?;
                let scn = self.snapshot_scn.filter(|_| self.flashback != Some(false));
                self.chunk_rows(&t, after, limit, scn).await?
            }
            Err(e) => return Err(e),
        };
        Ok(rows.into_iter().map(|row| t.upsert(row, version)).collect())
    }

    async fn changes(&mut self, after: &Position, limit: usize) -> Result<Batch, SourceError> {
        self.tables().await?;
        match (after, self.capture.clone()) {
            (
                Position::Changelog { seq, gaps, expired },
                Capture::Changelog { gaps: rules, .. },
            ) => {
                self.changelog_changes(*seq, gaps, expired, limit, rules)
                    .await
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
        self.tables().await?;
        self.table(table)?.keys(&self.session, after, limit).await
    }

    async fn rows_by_keys(
        &mut self,
        table: &str,
        keys: &[Vec<Value>],
        version: i64,
    ) -> Result<Vec<Change>, SourceError> {
        self.tables().await?;
        let t = self.table(table)?.clone();
        let mut out = Vec::new();
        for chunk in keys.chunks(500) {
            for row in t.rows(&self.session, t.by_keys_stmt(chunk)).await? {
                out.push(t.upsert(row, version));
            }
        }
        Ok(out)
    }

    async fn clock(&mut self) -> Result<Clock, SourceError> {
        self.clock_now().await
    }

    async fn acknowledge(&mut self, stored: &Position) -> Result<u64, SourceError> {
        self.purge_changes(stored).await
    }

    async fn count(&mut self, table: &str) -> Result<u64, SourceError> {
        self.tables().await?;
        self.table(table)?.count(&self.session).await
    }

    async fn column_types(&mut self, table: &str) -> Result<Vec<(String, String)>, SourceError> {
        self.tables().await?;
        Ok(self
            .table(table)?
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty.to_ascii_lowercase()))
            .collect())
    }

    async fn close(self) {
        self.session.close().await;
    }
}
