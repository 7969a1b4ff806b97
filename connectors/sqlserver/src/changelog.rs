//! Changelog capture on SQL Server: the primitives the shared changelog poll
//! ([`ebis_capture::changelog`]) runs on — `dbo.ebis_change` read after a position and in
//! gaps, gaps settled against the server's open transactions, current rows fetched by
//! key — plus the change table's head, its purge, and the check that every captured
//! table carries its trigger (and none another table's).

use crate::connect::{Conn, classify};
use crate::setup::trigger_name;
use crate::table::{Table, literal, quote_table};
use crate::{SqlServerSource, scalar};
use chrono::{DateTime, NaiveDateTime, Utc};
use ebis_capture::changelog::{self, ChangeEntry, ChangelogReader, RowReader};
use ebis_source::{Batch, Gap, GapRules, Position, Row, SourceError, Value};
use tiberius::Query;

/// The change table.
const CHANGE_TABLE: &str = "dbo.ebis_change";
/// How many sequence numbers back `head` looks for in-flight transactions.
const HEAD_GAP_WINDOW: i64 = 10_000;
/// Change-table rows deleted per purge statement.
const PURGE_CHUNK: u64 = 5_000;
const ENTRY_COLUMNS: &str = "seq, table_name, k1, k2, k3, k4, changed_at";

/// One poll's reader: a connection and the captured tables.
struct Reader<'a> {
    conn: &'a mut Conn,
    tables: &'a [Table],
    name: &'a str,
    sees_transactions: &'a mut Option<bool>,
}

impl Reader<'_> {
    async fn entries(
        &mut self,
        sql: String,
        params: &[i64],
    ) -> Result<Vec<ChangeEntry>, SourceError> {
        let mut q = Query::new(sql);
        for p in params {
            q.bind(*p);
        }
        let rows = async { q.query(self.conn).await?.into_first_result().await }
            .await
            .map_err(|e| classify(e, Some(CHANGE_TABLE)))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let seq: i64 = r.get(0).unwrap_or(0);
            let table: String = r.get::<&str, _>(1).unwrap_or_default().to_owned();
            let parts: Vec<Option<String>> = (2..6)
                .map(|i| r.get::<&str, _>(i).map(str::to_owned))
                .collect();
            let at: Option<NaiveDateTime> = r.get(6);
            let key = match self.captured(&table) {
                Some(t) => {
                    let n = self.tables[t].key_columns.len();
                    self.tables[t].parse_key(&parts[..n.min(parts.len())])
                }
                None => Vec::new(),
            };
            out.push(ChangeEntry {
                seq,
                table,
                key,
                at: at.map(|t| t.and_utc()),
            });
        }
        Ok(out)
    }
}

impl Reader<'_> {
    /// The account cannot see open transactions (or the server does not show them):
    /// gaps wait for their timeout.
    fn cannot_see(&mut self) {
        if *self.sees_transactions != Some(false) {
            tracing::info!(
                source = %self.name,
                "open transactions are not visible (no VIEW SERVER STATE, or a server that does not list them): changelog gaps wait for capture.gap_timeout before they stop holding lag back"
            );
        }
        *self.sees_transactions = Some(false);
    }
}

impl RowReader for Reader<'_> {
    fn table_name(&self, index: usize) -> String {
        self.tables[index].plan.table.clone()
    }

    async fn rows_by_keys(
        &mut self,
        index: usize,
        keys: &[Vec<Value>],
    ) -> Result<Vec<(Vec<Value>, Row)>, SourceError> {
        let t = &self.tables[index];
        Ok(t.by_keys(self.conn, keys)
            .await?
            .into_iter()
            .map(|row| (t.key_of(&row), row))
            .collect())
    }
}

impl ChangelogReader for Reader<'_> {
    async fn now(&mut self) -> Result<DateTime<Utc>, SourceError> {
        Ok(crate::clock_on(self.conn).await?.utc)
    }

    /// The instant before which every transaction still open began, when the account
    /// may see them (`VIEW SERVER STATE`); `None` when it may not. An IDENTITY number is
    /// taken inside the transaction that inserts, so a gap older than every open
    /// transaction is settled. The answer is trusted only when the list shows this
    /// session's own transaction, opened for the question: a server whose list is empty
    /// or partial (Babelfish's) would otherwise settle gaps of transactions still open,
    /// and their changes would be lost.
    async fn settled_before(&mut self) -> Result<Option<DateTime<Utc>>, SourceError> {
        if *self.sees_transactions == Some(false) {
            return Ok(None);
        }
        let sql = format!(
            "BEGIN TRANSACTION;
             SELECT TOP (0) seq FROM {CHANGE_TABLE};
             SELECT SYSUTCDATETIME(),
                    DATEDIFF(SECOND, MIN(CASE WHEN st.session_id <> @@SPID THEN at.transaction_begin_time END), SYSDATETIME()),
                    SUM(CASE WHEN st.session_id = @@SPID THEN 1 ELSE 0 END)
             FROM sys.dm_tran_active_transactions AS at
             JOIN sys.dm_tran_session_transactions AS st ON st.transaction_id = at.transaction_id;
             COMMIT TRANSACTION;"
        );
        let result = async { self.conn.simple_query(sql).await?.into_results().await }.await;
        let results = match result {
            Ok(r) => r,
            Err(e) => {
                if let Ok(stream) = self.conn.simple_query("IF @@TRANCOUNT > 0 ROLLBACK").await {
                    let _ = stream.into_results().await;
                }
                // Denied, or views the server lacks: gaps wait for their timeout.
                let e = classify(e, None);
                if e.is_retryable() {
                    return Err(e);
                }
                self.cannot_see();
                return Ok(None);
            }
        };
        let row = results.iter().flatten().find(|r| r.len() == 3);
        let own = row.and_then(|r| r.get::<i32, _>(2)).unwrap_or(0);
        let now = row.and_then(|r| r.get::<NaiveDateTime, _>(0));
        let (Some(now), true) = (now, own > 0) else {
            self.cannot_see();
            return Ok(None);
        };
        *self.sees_transactions = Some(true);
        let now = now.and_utc();
        // DATEDIFF counts second boundaries: one second more is never after the start.
        Ok(Some(match row.and_then(|r| r.get::<i32, _>(1)) {
            Some(ago) => now - chrono::Duration::seconds(i64::from(ago) + 1),
            None => now,
        }))
    }

    async fn entries_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ChangeEntry>, SourceError> {
        self.entries(
            format!(
                "SELECT TOP ({limit}) {ENTRY_COLUMNS} FROM {CHANGE_TABLE} WHERE seq > @P1 ORDER BY seq"
            ),
            &[after],
        )
        .await
    }

    async fn highest(&mut self) -> Result<i64, SourceError> {
        Ok(scalar::<i64>(
            self.conn,
            &format!("SELECT ISNULL(MAX(seq), 0) FROM {CHANGE_TABLE}"),
        )
        .await?
        .unwrap_or(0))
    }

    async fn next_assigned(&mut self) -> Result<Option<i64>, SourceError> {
        scalar::<i64>(
            self.conn,
            &format!("SELECT CAST(IDENT_CURRENT(N'{CHANGE_TABLE}') AS BIGINT) + 1"),
        )
        .await
    }

    async fn entries_in(&mut self, ranges: &[(i64, i64)]) -> Result<Vec<ChangeEntry>, SourceError> {
        let mut out = Vec::new();
        for chunk in ranges.chunks(100) {
            let cond = (0..chunk.len())
                .map(|i| format!("seq BETWEEN @P{} AND @P{}", 2 * i + 1, 2 * i + 2))
                .collect::<Vec<_>>()
                .join(" OR ");
            let params: Vec<i64> = chunk.iter().flat_map(|(a, b)| [*a, *b]).collect();
            out.extend(
                self.entries(
                    format!("SELECT {ENTRY_COLUMNS} FROM {CHANGE_TABLE} WHERE {cond} ORDER BY seq"),
                    &params,
                )
                .await?,
            );
        }
        Ok(out)
    }

    fn captured(&self, logged_as: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.plan.table.eq_ignore_ascii_case(logged_as))
    }

    async fn table_exists(&mut self, name: &str) -> Result<bool, SourceError> {
        let sql = format!(
            "SELECT CAST(CASE WHEN OBJECT_ID({}, N'U') IS NULL THEN 0 ELSE 1 END AS INT)",
            literal(&quote_table(name))
        );
        Ok(scalar::<i32>(self.conn, &sql).await? == Some(1))
    }
}

impl SqlServerSource {
    pub(crate) async fn changelog_changes(
        &mut self,
        prev: i64,
        gaps: &[Gap],
        expired: &[Gap],
        limit: usize,
        rules: GapRules,
    ) -> Result<Batch, SourceError> {
        self.tables().await?;
        let mut conn = self.conn().await?;
        let mut reader = Reader {
            conn: &mut conn,
            tables: self.tables.as_deref().unwrap_or(&[]),
            name: &self.name,
            sees_transactions: &mut self.sees_transactions,
        };
        changelog::poll(
            &mut reader,
            prev,
            gaps,
            expired,
            limit,
            rules,
            &mut self.existing_unmapped,
        )
        .await
    }

    /// The change table's head, with the numbers just below it still missing as gaps.
    pub(crate) async fn changelog_head(
        &mut self,
        conn: &mut Conn,
        rules: GapRules,
    ) -> Result<Position, SourceError> {
        let now = crate::clock_on(conn).await?.utc;
        let max = scalar::<i64>(
            conn,
            &format!("SELECT ISNULL(MAX(seq), 0) FROM {CHANGE_TABLE}"),
        )
        .await?
        .unwrap_or(0);
        let rows = conn
            .query(
                format!("SELECT seq FROM {CHANGE_TABLE} WHERE seq > @P1 ORDER BY seq"),
                &[&(max - HEAD_GAP_WINDOW)],
            )
            .await
            .map_err(|e| classify(e, Some(CHANGE_TABLE)))?
            .into_first_result()
            .await
            .map_err(|e| classify(e, Some(CHANGE_TABLE)))?;
        let recent: Vec<i64> = rows.iter().filter_map(|r| r.get::<i64, _>(0)).collect();
        Ok(changelog::head(max, &recent, now, rules))
    }

    /// Deletes change-table rows below a stored position, skipping rows other
    /// transactions hold (`READPAST`), in short statements.
    pub(crate) async fn purge_changes(&mut self, stored: &Position) -> Result<u64, SourceError> {
        let (ebis_source::Capture::Changelog { .. }, Some(below)) =
            (&self.capture, stored.purge_below())
        else {
            return Ok(0);
        };
        let mut conn = self.conn().await?;
        let boundary = conn
            .query(
                format!("SELECT MAX(seq) FROM {CHANGE_TABLE} WITH (READPAST) WHERE seq <= @P1"),
                &[&below],
            )
            .await
            .map_err(|e| classify(e, Some(CHANGE_TABLE)))?
            .into_first_result()
            .await
            .map_err(|e| classify(e, Some(CHANGE_TABLE)))?
            .first()
            .and_then(|r| r.get::<i64, _>(0));
        let Some(boundary) = boundary else {
            return Ok(0);
        };
        let mut total = 0;
        loop {
            let done = conn
                .execute(
                    format!(
                        "SET LOCK_TIMEOUT 5000; DELETE TOP ({PURGE_CHUNK}) FROM {CHANGE_TABLE} WITH (READPAST) WHERE seq < @P1"
                    ),
                    &[&boundary],
                )
                .await
                .map_err(|e| classify(e, Some(CHANGE_TABLE)))?;
            let deleted = done.total();
            total += deleted;
            if deleted < PURGE_CHUNK {
                return Ok(total);
            }
        }
    }

    /// Checks changelog capture is installed: the change table, and each captured
    /// table's own trigger (none that a rename brought from another table).
    pub(crate) async fn check_changelog(&mut self, conn: &mut Conn) -> Result<(), SourceError> {
        let exists = scalar::<i32>(
            conn,
            &format!(
                "SELECT CAST(CASE WHEN OBJECT_ID(N'{CHANGE_TABLE}', N'U') IS NULL THEN 0 ELSE 1 END AS INT)"
            ),
        )
        .await?;
        if exists != Some(1) {
            return Err(SourceError::CaptureNotInstalled(format!(
                "the change table {CHANGE_TABLE} does not exist or is not readable: run `ebis setup-source` for this source"
            )));
        }
        for t in self.tables.iter().flatten() {
            if t.key_columns.len() > crate::setup::MAX_KEY_COLUMNS {
                return Err(SourceError::CaptureNotInstalled(format!(
                    "table {}: a key of {} columns is more than the change table logs ({})",
                    t.plan.table,
                    t.key_columns.len(),
                    crate::setup::MAX_KEY_COLUMNS
                )));
            }
            if let Some(k) = t.key_columns.iter().find(|k| {
                matches!(
                    k.ty.as_str(),
                    "datetime"
                        | "smalldatetime"
                        | "float"
                        | "real"
                        | "money"
                        | "smallmoney"
                        | "binary"
                        | "varbinary"
                        | "image"
                        | "timestamp"
                )
            }) {
                return Err(SourceError::CaptureNotInstalled(format!(
                    "table {}: key column {} is {}, which the change table cannot log exactly as text; map another key, or use timestamp capture",
                    t.plan.table, k.name, k.ty
                )));
            }
            let rows = conn
                .query(
                    "SELECT name FROM sys.triggers WHERE parent_id = OBJECT_ID(@P1) AND name LIKE N'ebis[_]%'",
                    &[&t.quoted],
                )
                .await
                .map_err(|e| classify(e, Some(&t.plan.table)))?
                .into_first_result()
                .await
                .map_err(|e| classify(e, Some(&t.plan.table)))?;
            let names: Vec<String> = rows
                .iter()
                .filter_map(|r| r.get::<&str, _>(0).map(str::to_owned))
                .collect();
            let own = trigger_name(&t.plan.table);
            if let Some(stale) = names.iter().find(|n| !n.eq_ignore_ascii_case(&own)) {
                return Err(SourceError::CaptureNotInstalled(format!(
                    "table {} carries the ebis trigger {stale}, another table's (the table was renamed, or capture was copied): run `ebis setup-source` for this source with --apply, drop {stale}, and relabel what it logged: UPDATE dbo.ebis_change SET table_name = N'{}' WHERE table_name = <the old name>",
                    t.plan.table, t.plan.table
                )));
            }
            // sys.triggers shows the triggers of tables the account may see at all; a
            // reader with SELECT on the table sees them.
            if names.is_empty() {
                return Err(SourceError::CaptureNotInstalled(format!(
                    "table {} has no ebis capture trigger: run `ebis setup-source` for this source",
                    t.plan.table
                )));
            }
        }
        Ok(())
    }
}
