//! The MySQL / MariaDB source connector.
//!
//! Three capture modes:
//! - **changelog**: triggers append (seq, table, op, key) to `ebis_change`; each poll reads
//!   the sequence numbers after the position plus the open gaps, fetches the current rows
//!   by key (a missing row is a delete), and advances the position with gap bookkeeping.
//! - **timestamp**: for read-only accounts; each poll reads rows after a (modified, key)
//!   mark, and re-reads an overlap window for transactions that committed late, skipping
//!   rows it already returned. Deletes are found by the pipeline's key comparison.
//! - **binlog**: the server's row-based binary log read as a replica reads it; rows come
//!   from its full row images where those give exactly what a read gives (`image`), else
//!   the keys it logs decide which rows to fetch, as in changelog mode (see `binlog`).
//!
//! Snapshots read each table in key-ordered chunks. The connector only reads, except that
//! it purges `ebis_change` below a stored position when asked; it holds no durable state
//! (the position carries everything a restart needs).
//!
//! Here: the source, its pool and the `Source` contract. Each mode's reads are in
//! `changelog` and `timestamp`; gap bookkeeping (pure) in `gaps`; per-table SQL in
//! `table`; value conversion in `values`; capture DDL and the repair of triggers a rename
//! left in `setup`; error classification in `error`.

mod binlog;
mod catalog;
mod changelog;
mod error;
mod image;
mod rowimage;
pub mod setup;
mod table;
mod timestamp;
mod values;

pub use image::gb_text;
pub use setup::{StaleTrigger, changelog_statements, removal_statements, repair_statements};

use chrono::{DateTime, NaiveDateTime, Utc};
use ebis_source::{
    Batch, Capture, Change, Clock, KeyEntry, Position, Source, SourceError, TablePlan, Value,
};
use error::classify;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use std::time::Duration;
use table::Table;

/// The change table's name.
pub const CHANGE_TABLE: &str = "ebis_change";
/// How long one statement may take before the source counts as unreachable.
const OP_TIMEOUT: Duration = Duration::from_secs(120);

/// Connections a source holds at most (a large catch-up fetch uses
/// [`table::FETCH_CONNECTIONS`] of them at once).
pub const POOL_CONNECTIONS: usize = 4;
/// How to reach and read one MySQL/MariaDB source.
#[derive(Clone, Debug)]
pub struct MysqlOptions {
    /// The source's name (for what it logs).
    pub name: String,
    /// `mysql://user@host:port/db` (no password).
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

/// A MySQL/MariaDB source.
pub struct MysqlSource {
    /// The source's name (for what it logs).
    name: String,
    pool: Pool,
    plans: Vec<TablePlan>,
    capture: Capture,
    tables: Option<Vec<Table>>,
    /// Seconds the session's (the server's) local time is ahead of UTC, for commit times
    /// read from local DATETIME values.
    utc_offset: i64,
    /// Timestamp mode: the rows the overlap window has returned already.
    window: ebis_capture::OverlapWindow,
    /// Whether the account sees open transactions (probed once).
    sees_transactions: Option<bool>,
    /// Unmapped tables the change table logs for that exist (their changes are skipped).
    existing_unmapped: ebis_capture::changelog::KnownUnmapped,
    /// The connection's database (where tables the mappings name without one live).
    database: Option<String>,
    /// Binlog mode: the stream the last poll left open, to read on from.
    binlog_cursor: Option<Box<binlog::Cursor>>,
    /// Binlog mode: whether the server says which binlog position a consistent snapshot
    /// sees up to (`binlog_snapshot_position`: MariaDB, Percona Server); probed once.
    snapshot_positions: Option<bool>,
    /// Binlog mode: whether the account may list prepared XA transactions (`XA
    /// RECOVER`); probed at the first snapshot's head.
    xa_listed: Option<bool>,
}

/// The `MAX_USER_CONNECTIONS` a `SHOW GRANTS` line gives the account, if any.
fn granted_connection_limit(grant: &str) -> Option<i64> {
    let upper = grant.to_ascii_uppercase();
    let at = upper.find("MAX_USER_CONNECTIONS")? + "MAX_USER_CONNECTIONS".len();
    upper[at..].split_whitespace().next()?.parse().ok()
}

/// Builds a connection pool: UTF-8 text, and the server's own session time zone, so
/// TIMESTAMP values read with the wall-clock meaning the bureau's applications see
/// (DATE and DATETIME carry no zone). Instants ebis needs in UTC are asked for as such
/// (`UTC_TIMESTAMP()`, `UNIX_TIMESTAMP()`).
pub fn pool(
    url: &str,
    password: Option<&str>,
    tls: &ebis_source::tls::Tls,
    max: usize,
) -> Result<Pool, SourceError> {
    let opts = mysql_async::Opts::from_url(url)
        .map_err(|e| SourceError::Query(format!("bad MySQL URL: {e}")))?;
    let mut builder = OptsBuilder::from_opts(opts)
        .setup(vec!["SET NAMES utf8mb4"])
        .stmt_cache_size(64)
        .pool_opts(
            PoolOpts::default()
                .with_constraints(PoolConstraints::new(0, max.max(1)).unwrap_or_default())
                .with_inactive_connection_ttl(Duration::from_secs(60)),
        );
    if let Some(pw) = password {
        builder = builder.pass(Some(pw));
    }
    if let Some(ssl) = ssl_opts(tls)? {
        builder = builder.ssl_opts(Some(ssl));
    }
    // Connect where the URL says: by default the driver would switch a loopback TCP
    // connection to the server's Unix socket, bypassing tunnels and proxies.
    if !url.contains("prefer_socket") {
        builder = builder.prefer_socket(Some(false));
    }
    Ok(Pool::new(builder))
}

/// The driver's TLS options for `tls` (rustls): `None` when TLS is off.
fn ssl_opts(tls: &ebis_source::tls::Tls) -> Result<Option<mysql_async::SslOpts>, SourceError> {
    use ebis_source::tls::TlsMode;
    let mut ssl = mysql_async::SslOpts::default();
    match tls.mode {
        TlsMode::Disable => return Ok(None),
        TlsMode::Require => {
            ssl = ssl
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true);
        }
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let ca = tls.ca_file.clone().ok_or_else(|| {
                SourceError::Query(format!(
                    "TLS mode {} needs a CA file (tls.ca_file)",
                    tls.mode.name()
                ))
            })?;
            ssl = ssl
                .with_root_certs(vec![ca.into()])
                .with_danger_skip_domain_validation(tls.mode == TlsMode::VerifyCa);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        ssl = ssl.with_client_identity(Some(mysql_async::ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        )));
    }
    Ok(Some(ssl))
}

/// Runs DDL statements one by one on a (privileged) connection, then moves capture off
/// stale ebis triggers on the planned tables (left by a rename): drops them and relabels
/// the changes they logged. Returns the stale triggers it repaired.
pub async fn run_statements(
    url: &str,
    password: Option<&str>,
    tls: &ebis_source::tls::Tls,
    statements: &[String],
    plans: &[TablePlan],
) -> Result<Vec<StaleTrigger>, SourceError> {
    let pool = pool(url, password, tls, 1)?;
    let mut conn = pool.get_conn().await.map_err(|e| classify(e, None))?;
    for s in statements {
        conn.query_drop(s).await.map_err(|e| classify(e, None))?;
    }
    let stale = setup::stale_triggers(&mut conn, plans).await?;
    for s in repair_statements(&stale) {
        conn.query_drop(s).await.map_err(|e| classify(e, None))?;
    }
    drop(conn);
    let _ = pool.disconnect().await;
    Ok(stale)
}

/// The stale ebis triggers on the planned tables, as a source's own account sees them
/// (none when it may not see triggers), for `setup-source` to print their repair.
pub async fn find_stale_triggers(
    url: &str,
    password: Option<&str>,
    tls: &ebis_source::tls::Tls,
    plans: &[TablePlan],
) -> Result<Vec<StaleTrigger>, SourceError> {
    let pool = pool(url, password, tls, 1)?;
    let mut conn = pool.get_conn().await.map_err(|e| classify(e, None))?;
    let stale = setup::stale_triggers(&mut conn, plans).await;
    drop(conn);
    let _ = pool.disconnect().await;
    stale
}

impl MysqlSource {
    /// A source; no connection is made until it is used.
    pub fn new(opts: MysqlOptions) -> Result<MysqlSource, SourceError> {
        Ok(MysqlSource {
            name: opts.name,
            pool: pool(
                &opts.url,
                opts.password.as_deref(),
                &opts.tls,
                POOL_CONNECTIONS,
            )?,
            plans: opts.plans,
            capture: opts.capture,
            tables: None,
            utc_offset: 0,
            window: ebis_capture::OverlapWindow::new(),
            sees_transactions: None,
            existing_unmapped: Default::default(),
            database: None,
            binlog_cursor: None,
            snapshot_positions: None,
            xa_listed: None,
        })
    }

    async fn conn(&self) -> Result<Conn, SourceError> {
        tracing::trace!("get connection");
        match tokio::time::timeout(OP_TIMEOUT, self.pool.get_conn()).await {
            Ok(r) => r.map_err(|e| classify(e, None)),
            Err(_) => Err(SourceError::Unreachable("timed out connecting".to_owned())),
        }
    }

    /// Loads table metadata once (and the server's time zone offset).
    async fn tables(&mut self) -> Result<&[Table], SourceError> {
        if self.tables.is_none() {
            let mut conn = self.conn().await?;
            let mut tables = Vec::with_capacity(self.plans.len());
            for p in &self.plans {
                tables.push(Table::load(&mut conn, p).await?);
            }
            let offset: Option<i64> = conn
                .query_first("SELECT TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW())")
                .await
                .map_err(|e| classify(e, None))?;
            self.utc_offset = offset.unwrap_or(0);
            self.database = conn
                .query_first("SELECT DATABASE()")
                .await
                .map_err(|e| classify(e, None))?;
            self.tables = Some(tables);
        }
        Ok(self.tables.as_deref().unwrap_or(&[]))
    }

    /// The index of a planned table and a connection to read it.
    async fn locate(&mut self, table: &str) -> Result<(usize, Conn), SourceError> {
        self.tables().await?;
        let i = self
            .table_index(table)
            .ok_or_else(|| SourceError::MissingTable {
                table: table.to_owned(),
            })?;
        Ok((i, self.conn().await?))
    }

    fn table_index(&self, name: &str) -> Option<usize> {
        self.tables
            .as_ref()?
            .iter()
            .position(|t| t.plan.table.eq_ignore_ascii_case(name))
    }

    async fn utc_now(conn: &mut Conn) -> Result<Option<DateTime<Utc>>, SourceError> {
        let now: Option<NaiveDateTime> = conn
            .query_first("SELECT UTC_TIMESTAMP(6)")
            .await
            .map_err(|e| classify(e, None))?;
        Ok(now.map(|n| n.and_utc()))
    }
}

impl Source for MysqlSource {
    async fn check(&mut self) -> Result<(), SourceError> {
        self.tables = None;
        self.existing_unmapped.clear();
        self.tables().await?;
        let mut conn = self.conn().await?;
        // The account's own connection limit (MAX_USER_CONNECTIONS; the session value
        // is the account's where it has one): below the pool's size, a large catch-up
        // would fail mid-way on a connection the server refuses.
        let session: Option<i64> = conn
            .query_first("SELECT @@SESSION.max_user_connections")
            .await
            .map_err(|e| classify(e, None))?;
        // The session value can read 0 while the server reloads its accounts (another
        // session's CREATE USER or GRANT); the account's own grants always say it.
        let grants: Vec<String> = conn
            .query("SHOW GRANTS")
            .await
            .map_err(|e| classify(e, None))?;
        let limit = session
            .filter(|n| *n > 0)
            .or_else(|| grants.iter().find_map(|g| granted_connection_limit(g)));
        if let Some(n) = limit.filter(|n| *n > 0 && *n < POOL_CONNECTIONS as i64) {
            return Err(SourceError::Query(format!(
                "this account may hold only {n} connection(s) at once (MAX_USER_CONNECTIONS); ebis holds up to {POOL_CONNECTIONS} per source (a large catch-up reads rows over {} at once): raise the account's limit to at least {POOL_CONNECTIONS}",
                table::FETCH_CONNECTIONS
            )));
        }
        match &self.capture {
            Capture::Changelog { .. } => self.check_changelog(&mut conn).await?,
            Capture::Binlog { .. } => self.check_binlog(&mut conn).await?,
            Capture::ChangeTracking | Capture::Logical { .. } => {
                return Err(SourceError::CaptureNotInstalled(format!(
                    "MySQL has no {}: use capture mode changelog (triggers), timestamp or binlog",
                    self.capture.name()
                )));
            }
            Capture::Timestamp { .. } => {
                if let Some(t) = self.tables.iter().flatten().find(|t| !t.has_modified()) {
                    return Err(SourceError::CaptureNotInstalled(format!(
                        "table {} has no modified column for timestamp capture: set source.modified_column in its mapping or capture.modified_column in the config",
                        t.plan.table
                    )));
                }
            }
        }
        Ok(())
    }

    async fn head(&mut self) -> Result<Position, SourceError> {
        self.tables().await?;
        let mut conn = self.conn().await?;
        match &self.capture {
            Capture::Changelog { gaps: rules, .. } => {
                let rules = *rules;
                self.changelog_head(&mut conn, rules).await
            }
            Capture::Timestamp { .. } => self.timestamp_head(&mut conn).await,
            Capture::Binlog { .. } => self.binlog_head(&mut conn).await,
            Capture::ChangeTracking | Capture::Logical { .. } => {
                Err(SourceError::CaptureNotInstalled(format!(
                    "MySQL has no {} capture",
                    self.capture.name()
                )))
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
            (Position::Timestamp { .. }, Capture::Timestamp { overlap }) => {
                self.timestamp_changes(after, limit, overlap).await
            }
            (Position::Binlog { .. }, Capture::Binlog { server_id }) => {
                self.binlog_changes(after, limit, server_id).await
            }
            (other, capture) => Err(SourceError::PositionExpired(format!(
                "the stored position `{}` does not fit capture mode {}",
                other.summary(),
                capture.name()
            ))),
        }
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

    async fn capture_notes(&mut self) -> Result<Vec<String>, SourceError> {
        if !matches!(self.capture, Capture::Binlog { .. }) {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let says = binlog::snapshot_position(&mut conn).await?.is_some();
        // Probed once: a head read after this does not log the same warning again.
        self.snapshot_positions = Some(says);
        let mut notes = Vec::new();
        if !says {
            notes.push(format!("warning: {}", binlog::NO_SNAPSHOT_POSITION));
        }
        if binlog::prepared_xa(&mut conn).await?.is_none() {
            self.xa_listed = Some(false);
            notes.push(format!("warning: {}", binlog::XA_NOT_LISTED));
        }
        Ok(notes)
    }

    async fn column_types(&mut self, table: &str) -> Result<Vec<(String, String)>, SourceError> {
        let (i, _conn) = self.locate(table).await?;
        Ok(self.tables.as_deref().unwrap_or(&[])[i].types.clone())
    }

    async fn close(mut self) {
        // A binlog stream kept open between polls holds one of the pool's connections:
        // the pool's disconnect would wait for it forever.
        self.close_binlog_cursor().await;
        let _ = self.pool.disconnect().await;
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
        Self::clock_on(&mut conn).await
    }
}

#[cfg(test)]
mod tests {
    use super::granted_connection_limit;

    #[test]
    fn the_connection_limit_is_read_from_the_accounts_grants() {
        assert_eq!(
            granted_connection_limit(
                "GRANT USAGE ON *.* TO `r`@`127.0.0.1` WITH MAX_USER_CONNECTIONS 2"
            ),
            Some(2)
        );
        assert_eq!(
            granted_connection_limit("GRANT SELECT ON `tax`.* TO `r`@`127.0.0.1`"),
            None
        );
    }
}
