//! The PostgreSQL source connector (PostgreSQL, and derivatives that speak its protocol
//! and catalog: KingbaseES, openGauss, HighGo, …).
//!
//! Three capture modes:
//! - **changelog**: a trigger appends (seq, table, key) to `ebis_capture.change`; each
//!   poll reads the sequence numbers after the position plus the open gaps (the shared
//!   `ebis_capture::changelog` poll), fetches the current rows by key (a missing row is a
//!   delete), and advances the position with gap bookkeeping. Gaps settle as soon as
//!   every transaction that could still fill them has ended (`pg_stat_activity`, when the
//!   account may see other sessions).
//! - **timestamp**: for read-only accounts; rows after a (modified, key) mark, an overlap
//!   window re-read for transactions that committed late (the shared
//!   `ebis_capture::timestamp` poll). Deletes are found by the pipeline's key comparison.
//! - **logical**: a publication names the captured tables and a logical replication slot
//!   keeps their changes; each poll peeks the slot (pgoutput, decoded by pg_walstream's
//!   parser), reads the changed rows by key as changelog does, and the slot is advanced
//!   only to positions the warehouse has stored (see `logical`).
//!
//! Snapshots read each table in key-ordered chunks. The connector only reads, except
//! that it purges `ebis_capture.change` below a stored position when asked and advances
//! (or, where it has none, creates) its replication slot; it holds no durable state (the
//! position carries everything a restart needs).
//!
//! Here: the source, its connection and the `Source` contract. Each mode's reads are in
//! `changelog`, `timestamp` and `logical`; per-table SQL and name resolution in `table`;
//! value conversion in `values`; capture DDL in `setup`; error classification in `error`.

mod changelog;
mod error;
mod logical;
pub mod setup;
mod table;
mod timestamp;
pub mod tls;
mod tuple;
mod values;

use ebis_source::{
    Batch, Capture, Change, Clock, KeyEntry, Position, Source, SourceError, TablePlan, Value,
};
use error::classify;
use std::str::FromStr;
use std::time::Duration;
use table::Table;
use tokio_postgres::Client;

/// The schema ebis's changelog objects live in at the source.
pub const CAPTURE_SCHEMA: &str = "ebis_capture";
/// How long connecting or one statement may take before the source counts as
/// unreachable.
const OP_TIMEOUT: Duration = Duration::from_secs(120);

/// How to reach and read one PostgreSQL source.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// The source's name (for what it logs).
    pub name: String,
    /// `postgres://user@host:port/db` (no password).
    pub url: String,
    /// The password, from the environment.
    pub password: Option<String>,
    /// TLS to the server.
    pub tls: ebis_source::tls::Tls,
    /// The tables to read.
    pub plans: Vec<TablePlan>,
    /// The capture mode.
    pub capture: Capture,
}

/// A PostgreSQL source.
pub struct PostgresSource {
    name: String,
    url: String,
    password: Option<String>,
    tls: ebis_source::tls::Tls,
    plans: Vec<TablePlan>,
    capture: Capture,
    client: Option<Client>,
    tables: Option<Vec<Table>>,
    /// Seconds the session's local time is ahead of UTC.
    utc_offset: i64,
    /// Timestamp mode: the rows the overlap window has returned already.
    window: ebis_capture::OverlapWindow,
    /// Whether the account sees other sessions' transactions (probed once).
    sees_transactions: Option<bool>,
    /// Unmapped tables the change table logs for that exist (their changes are skipped).
    existing_unmapped: ebis_capture::changelog::KnownUnmapped,
    /// Logical mode: the slot's stream the last poll left open, to read on from.
    cursor: Option<Box<logical::Cursor>>,
    /// Logical mode: the connection of the last stream that ended, for the next one.
    peek_client: Option<Client>,
    /// Logical mode: a position whose last peek found nothing, and the WAL flushed then.
    quiet: Option<(Position, u64)>,
    /// Logical mode: the newest position the pipeline has stored (`acknowledge`): the
    /// slot is advanced to it, never further.
    stored: Option<u64>,
    /// Make nothing at the source (a check): a missing slot is an error, not made.
    reading_only: bool,
}

/// The connection in `slot`, made by [`PostgresSource::connected`] (a free function, so
/// a reader can borrow it beside other fields of the source).
fn live(slot: &Option<Client>) -> Result<&Client, SourceError> {
    slot.as_ref()
        .ok_or_else(|| SourceError::Unreachable("not connected".to_owned()))
}

/// Connects with ebis's session settings: ISO dates (what `values` parses), and
/// `application_name = ebis` so a DBA sees who holds the connection.
pub async fn connect(
    url: &str,
    password: Option<&str>,
    tls: &ebis_source::tls::Tls,
) -> Result<Client, SourceError> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| SourceError::Query(format!("bad PostgreSQL URL: {e}")))?;
    if let Some(pw) = password {
        config.password(pw);
    }
    config
        .application_name("ebis")
        .options("-c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3")
        .connect_timeout(Duration::from_secs(30));
    let connector = tls::Connector::new(tls, &mut config).map_err(SourceError::Query)?;
    let (client, _) = match tokio::time::timeout(OP_TIMEOUT, connector.connect(&config)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            // A certificate refused will be refused again: say which check failed.
            if let (why, true) = tls::describe(&e) {
                return Err(SourceError::Query(why));
            }
            return Err(classify(e, None));
        }
        Err(_) => return Err(SourceError::Unreachable("timed out connecting".to_owned())),
    };
    Ok(client)
}

impl PostgresSource {
    /// A source; no connection is made until it is used.
    pub fn new(opts: PostgresOptions) -> Result<PostgresSource, SourceError> {
        tokio_postgres::Config::from_str(&opts.url)
            .map_err(|e| SourceError::Query(format!("bad PostgreSQL URL: {e}")))?;
        Ok(PostgresSource {
            name: opts.name,
            url: opts.url,
            password: opts.password,
            tls: opts.tls,
            plans: opts.plans,
            capture: opts.capture,
            client: None,
            tables: None,
            utc_offset: 0,
            window: ebis_capture::OverlapWindow::new(),
            sees_transactions: None,
            existing_unmapped: Default::default(),
            cursor: None,
            peek_client: None,
            quiet: None,
            stored: None,
            reading_only: false,
        })
    }

    /// Makes nothing at the source from now on (for `check`): where `head` would make a
    /// missing replication slot, it says the slot is missing instead.
    pub fn reading_only(&mut self) {
        self.reading_only = true;
    }

    /// Connects when there is no live connection.
    async fn connected(&mut self) -> Result<(), SourceError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.client = Some(connect(&self.url, self.password.as_deref(), &self.tls).await?);
        }
        Ok(())
    }

    /// The live connection (after [`Self::connected`]).
    fn client(&self) -> Result<&Client, SourceError> {
        live(&self.client)
    }

    /// Connects, and loads table metadata once (and the session's time zone offset).
    async fn tables(&mut self) -> Result<&[Table], SourceError> {
        self.connected().await?;
        if self.tables.is_none() {
            let client = self.client()?;
            let mut tables = Vec::with_capacity(self.plans.len());
            for p in &self.plans {
                tables.push(Table::load(client, p).await?);
            }
            let offset = client
                .query_one("SELECT extract(timezone FROM now())::int8", &[])
                .await
                .map_err(|e| classify(e, None))?;
            self.utc_offset = offset.get(0);
            self.tables = Some(tables);
        }
        Ok(self.tables.as_deref().unwrap_or(&[]))
    }

    /// A planned table and the connection to read it.
    async fn locate(&mut self, table: &str) -> Result<(&Table, &Client), SourceError> {
        self.tables().await?;
        let t = self
            .tables
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|t| t.plan.table.eq_ignore_ascii_case(table))
            .ok_or_else(|| SourceError::MissingTable {
                table: table.to_owned(),
            })?;
        Ok((t, self.client()?))
    }

    /// One read of [`Source::changes`], in the capture mode.
    async fn changes_once(&mut self, after: &Position, limit: usize) -> Result<Batch, SourceError> {
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
            (Position::Logical { lsn, skip }, Capture::Logical { slot, publication }) => {
                self.logical_changes(*lsn, *skip, limit, &slot, &publication)
                    .await
            }
            (other, capture) => Err(SourceError::PositionExpired(format!(
                "the stored position `{}` does not fit capture mode {}",
                other.summary(),
                capture.name()
            ))),
        }
    }

    /// The source's clock: UTC and its own wall clock, at one instant.
    async fn clock_on(client: &Client) -> Result<Clock, SourceError> {
        let row = client
            .query_one(
                "SELECT (t AT TIME ZONE 'UTC'), t::timestamp FROM (SELECT clock_timestamp() AS t) s",
                &[],
            )
            .await
            .map_err(|e| classify(e, None))?;
        let utc: chrono::NaiveDateTime = row.get(0);
        Ok(Clock {
            utc: utc.and_utc(),
            local: row.get(1),
        })
    }
}

/// Runs statements one by one on a (privileged) connection, each on its own (a
/// replication slot cannot be created in a transaction that has written).
pub async fn run_statements(
    url: &str,
    password: Option<&str>,
    tls: &ebis_source::tls::Tls,
    statements: &[String],
) -> Result<(), SourceError> {
    let client = connect(url, password, tls).await?;
    for s in statements {
        client
            .batch_execute(s)
            .await
            .map_err(|e| classify(e, None))?;
    }
    Ok(())
}

impl Source for PostgresSource {
    async fn check(&mut self) -> Result<(), SourceError> {
        self.tables = None;
        self.existing_unmapped.clear();
        self.tables().await?;
        match self.capture.clone() {
            Capture::Changelog { .. } => self.check_changelog().await,
            Capture::Timestamp { .. } => {
                match self.tables.iter().flatten().find(|t| !t.has_modified()) {
                    Some(t) => Err(SourceError::CaptureNotInstalled(format!(
                        "table {} has no modified column for timestamp capture: set source.modified_column in its mapping or capture.modified_column in the config",
                        t.plan.table
                    ))),
                    None => Ok(()),
                }
            }
            Capture::Logical { slot, publication } => self.check_logical(&slot, &publication).await,
            other => Err(SourceError::CaptureNotInstalled(setup::not_postgres(
                &other,
            ))),
        }
    }

    async fn head(&mut self) -> Result<Position, SourceError> {
        self.tables().await?;
        match self.capture.clone() {
            Capture::Changelog { gaps, .. } => self.changelog_head(gaps).await,
            Capture::Timestamp { .. } => self.timestamp_head().await,
            Capture::Logical { slot, .. } => self.logical_head(&slot).await,
            other => Err(SourceError::CaptureNotInstalled(setup::not_postgres(
                &other,
            ))),
        }
    }

    async fn snapshot_chunk(
        &mut self,
        table: &str,
        after: Option<&[Value]>,
        limit: usize,
        version: i64,
    ) -> Result<Vec<Change>, SourceError> {
        let (t, client) = self.locate(table).await?;
        let rows = t.chunk(client, after, limit).await?;
        Ok(rows.into_iter().map(|row| t.upsert(row, version)).collect())
    }

    async fn changes(&mut self, after: &Position, limit: usize) -> Result<Batch, SourceError> {
        match self.changes_once(after, limit).await {
            // A table's definition changed under a cached select list (a column added,
            // dropped or retyped): read the columns again, once. A mapped column gone
            // then fails by name.
            Err(SourceError::MissingColumn { table, .. }) => {
                tracing::info!(source = %self.name, table = %table, "a captured table's columns changed: reading them again");
                self.tables = None;
                self.changes_once(after, limit).await
            }
            other => other,
        }
    }

    async fn acknowledge(&mut self, stored: &Position) -> Result<u64, SourceError> {
        match (stored, self.capture.clone()) {
            (Position::Logical { lsn, .. }, Capture::Logical { slot, .. }) => {
                // Stored: the slot may let go of what comes before. While a stream holds
                // the slot it cannot move; the next stream's start moves it.
                self.stored = self.stored.max(Some(*lsn));
                if self.cursor.is_none() {
                    self.connected().await?;
                    logical::advance(self.client()?, &slot, *lsn).await?;
                }
                Ok(0)
            }
            _ => self.purge_changes(stored).await,
        }
    }

    async fn backlog(&mut self) -> Result<Option<u64>, SourceError> {
        let Capture::Logical { slot, .. } = &self.capture else {
            return Ok(None);
        };
        let slot = slot.clone();
        self.connected().await?;
        logical::retained(self.client()?, &slot).await
    }

    async fn count(&mut self, table: &str) -> Result<u64, SourceError> {
        let (t, client) = self.locate(table).await?;
        t.count(client).await
    }

    async fn column_types(&mut self, table: &str) -> Result<Vec<(String, String)>, SourceError> {
        let (t, _) = self.locate(table).await?;
        Ok(t.types.clone())
    }

    async fn close(self) {
        drop(self.cursor);
        drop(self.peek_client);
        drop(self.client);
    }

    async fn keys(
        &mut self,
        table: &str,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<KeyEntry>, SourceError> {
        let (t, client) = self.locate(table).await?;
        t.keys(client, after, limit).await
    }

    async fn rows_by_keys(
        &mut self,
        table: &str,
        keys: &[Vec<Value>],
        version: i64,
    ) -> Result<Vec<Change>, SourceError> {
        let (t, client) = self.locate(table).await?;
        Ok(t.by_keys(client, keys)
            .await?
            .into_iter()
            .map(|row| t.upsert(row, version))
            .collect())
    }

    async fn clock(&mut self) -> Result<Clock, SourceError> {
        self.connected().await?;
        Self::clock_on(self.client()?).await
    }
}
