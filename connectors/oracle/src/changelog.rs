//! Changelog capture on Oracle: the primitives the shared changelog poll
//! ([`ebis_capture::changelog`]) runs on — `EBIS_CHANGE` read after a position and in
//! gaps, gaps settled against the open transactions (`GV$TRANSACTION`, where granted),
//! current rows fetched by key — plus the change table's head, its purge, and the check
//! that every captured table carries its trigger, enabled.
//!
//! The change table lives in the schema of the first captured table (the bureau's
//! application schema, where `setup-source` creates it).

use crate::OracleSource;
use crate::connect::Session;
use crate::names::{quote, quote_table, trigger_name};
use crate::table::{Table, limited};
use chrono::{DateTime, Utc};
use ebis_capture::changelog::{self, ChangeEntry, ChangelogReader, RowReader};
use ebis_source::{Batch, Gap, GapRules, Position, Row, SourceError, Value};

/// The change table's name.
pub const CHANGE_TABLE: &str = "EBIS_CHANGE";
/// The sequence numbering it.
pub const CHANGE_SEQUENCE: &str = "EBIS_CHANGE_SEQ";
/// How many sequence numbers back `head` looks for in-flight transactions.
const HEAD_GAP_WINDOW: i64 = 10_000;
/// Change-table rows deleted per purge statement.
const PURGE_CHUNK: u64 = 5_000;
const ENTRY_COLUMNS: &str = "SEQ, TABLE_NAME, K1, K2, K3, K4, CHANGED_AT";

/// The change table, quoted, in `owner`.
pub fn change_table(owner: &str) -> String {
    quote_table(owner, CHANGE_TABLE)
}

/// One raw entry as read: sequence number, table, key texts, when logged (UTC).
type RawEntry = (
    i64,
    String,
    [Option<String>; 4],
    Option<chrono::NaiveDateTime>,
);

/// Reads entries with a statement of [`ENTRY_COLUMNS`].
async fn raw_entries(
    session: &Session,
    sql: String,
    params: Vec<i64>,
) -> Result<Vec<RawEntry>, SourceError> {
    session
        .run(Some(CHANGE_TABLE), move |conn| {
            let binds: Vec<&dyn oracle::sql_type::ToSql> = params
                .iter()
                .map(|p| p as &dyn oracle::sql_type::ToSql)
                .collect();
            let mut out = Vec::new();
            for row in conn.query(&sql, &binds)? {
                let row = row?;
                let at: Option<oracle::sql_type::Timestamp> = row.get(6)?;
                out.push((
                    row.get::<usize, i64>(0)?,
                    row.get::<usize, String>(1)?,
                    [row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?],
                    at.as_ref()
                        .and_then(crate::values::datetime)
                        .and_then(|v| match v {
                            Value::DateTime(t) => Some(t),
                            _ => None,
                        }),
                ));
            }
            Ok(out)
        })
        .await
}

/// One poll's reader: the session and the captured tables.
struct Reader<'a> {
    session: &'a Session,
    tables: &'a [Table],
    owner: &'a str,
    name: &'a str,
    sees_transactions: &'a mut Option<bool>,
}

impl Reader<'_> {
    async fn entries(
        &self,
        sql: String,
        params: Vec<i64>,
    ) -> Result<Vec<ChangeEntry>, SourceError> {
        let raw = raw_entries(self.session, sql, params).await?;
        Ok(raw
            .into_iter()
            .map(|(seq, table, parts, at)| {
                let key = match self.captured(&table) {
                    Some(t) => self.tables[t]
                        .key_columns
                        .iter()
                        .zip(parts.iter())
                        .map(|(c, p)| c.parse_logged(p.as_deref()))
                        .collect(),
                    None => Vec::new(),
                };
                ChangeEntry {
                    seq,
                    table,
                    key,
                    at: at.map(|t| t.and_utc()),
                }
            })
            .collect())
    }

    fn cannot_see(&mut self) {
        if *self.sees_transactions != Some(false) {
            tracing::info!(
                source = %self.name,
                "open transactions are not visible (no SELECT on GV_$TRANSACTION): changelog gaps wait for capture.gap_timeout before they stop holding lag back"
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
        let mut out = Vec::new();
        for chunk in keys.chunks(500) {
            for row in t.rows(self.session, t.by_keys_stmt(chunk)).await? {
                out.push((t.key_of(&row), row));
            }
        }
        Ok(out)
    }
}

impl ChangelogReader for Reader<'_> {
    async fn now(&mut self) -> Result<DateTime<Utc>, SourceError> {
        self.session
            .run(None, |conn| {
                conn.query_row_as::<oracle::sql_type::Timestamp>(
                    "SELECT SYS_EXTRACT_UTC(SYSTIMESTAMP) FROM DUAL",
                    &[],
                )
            })
            .await
            .and_then(|t| match crate::values::datetime(&t) {
                Some(Value::DateTime(d)) => Ok(d.and_utc()),
                _ => Err(SourceError::Query("the source has no clock".to_owned())),
            })
    }

    /// The instant before which every transaction still open began, when the account may
    /// see them (SELECT on `GV_$TRANSACTION`, every instance of a RAC); `None` when it
    /// may not. A sequence number is taken inside the transaction that logs it, so a gap
    /// older than every open transaction is settled.
    async fn settled_before(&mut self) -> Result<Option<DateTime<Utc>>, SourceError> {
        if *self.sees_transactions == Some(false) {
            return Ok(None);
        }
        let asked = self
            .session
            .run(None, |conn| {
                conn.query_row_as::<(oracle::sql_type::Timestamp, Option<i64>)>(
                    "SELECT SYS_EXTRACT_UTC(SYSTIMESTAMP),
                            CEIL((SYSDATE - MIN(START_DATE)) * 86400)
                     FROM GV$TRANSACTION",
                    &[],
                )
            })
            .await;
        let (now, ago) = match asked {
            Ok(r) => r,
            Err(e) if e.is_retryable() => return Err(e),
            Err(_) => {
                self.cannot_see();
                return Ok(None);
            }
        };
        let Some(Value::DateTime(now)) = crate::values::datetime(&now) else {
            self.cannot_see();
            return Ok(None);
        };
        *self.sees_transactions = Some(true);
        let now = now.and_utc();
        // START_DATE has whole seconds: one more is never after the start.
        Ok(Some(match ago {
            Some(s) => now - chrono::Duration::seconds(s + 1),
            None => now,
        }))
    }

    async fn entries_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ChangeEntry>, SourceError> {
        let sql = limited(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM {} WHERE SEQ > :1 ORDER BY SEQ",
                change_table(self.owner)
            ),
            limit,
        );
        self.entries(sql, vec![after]).await
    }

    async fn highest(&mut self) -> Result<i64, SourceError> {
        let sql = format!("SELECT NVL(MAX(SEQ), 0) FROM {}", change_table(self.owner));
        self.session
            .run(Some(CHANGE_TABLE), move |conn| {
                conn.query_row_as::<i64>(&sql, &[])
            })
            .await
    }

    /// Oracle cannot tell: `LAST_NUMBER` counts the sequence's cache ahead, so a sequence
    /// recreated since would still show a number past the position. The change table's
    /// highest number alone decides: below the position, the table was emptied or
    /// recreated (ebis's own purge keeps the row at the position).
    async fn next_assigned(&mut self) -> Result<Option<i64>, SourceError> {
        Ok(None)
    }

    async fn entries_in(&mut self, ranges: &[(i64, i64)]) -> Result<Vec<ChangeEntry>, SourceError> {
        let mut out = Vec::new();
        for chunk in ranges.chunks(100) {
            let cond = (0..chunk.len())
                .map(|i| format!("SEQ BETWEEN :{} AND :{}", 2 * i + 1, 2 * i + 2))
                .collect::<Vec<_>>()
                .join(" OR ");
            let params: Vec<i64> = chunk.iter().flat_map(|(a, b)| [*a, *b]).collect();
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} FROM {} WHERE {cond} ORDER BY SEQ",
                change_table(self.owner)
            );
            out.extend(self.entries(sql, params).await?);
        }
        Ok(out)
    }

    fn captured(&self, logged_as: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.plan.table.eq_ignore_ascii_case(logged_as))
    }

    async fn table_exists(&mut self, name: &str) -> Result<bool, SourceError> {
        let owner = self.owner.to_owned();
        let table = name.to_owned();
        Ok(crate::table::catalog(self.session, &table, &owner)
            .await?
            .is_some())
    }
}

impl OracleSource {
    /// The schema of the change table: the first captured table's.
    fn change_owner(&self) -> String {
        self.tables
            .iter()
            .flatten()
            .next()
            .map(|t| t.owner.clone())
            .or_else(|| self.db.as_ref().map(|d| d.schema.clone()))
            .unwrap_or_default()
    }

    pub(crate) async fn changelog_changes(
        &mut self,
        prev: i64,
        gaps: &[Gap],
        expired: &[Gap],
        limit: usize,
        rules: GapRules,
    ) -> Result<Batch, SourceError> {
        self.tables().await?;
        let owner = self.change_owner();
        let mut reader = Reader {
            session: &self.session,
            tables: self.tables.as_deref().unwrap_or(&[]),
            owner: &owner,
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
        rules: GapRules,
    ) -> Result<Position, SourceError> {
        let now = self.clock_now().await?.utc;
        let table = change_table(&self.change_owner());
        let (max, recent) = self
            .session
            .run(Some(CHANGE_TABLE), move |conn| {
                let max: i64 =
                    conn.query_row_as(&format!("SELECT NVL(MAX(SEQ), 0) FROM {table}"), &[])?;
                let mut recent = Vec::new();
                for row in conn.query(
                    &format!("SELECT SEQ FROM {table} WHERE SEQ > :1 ORDER BY SEQ"),
                    &[&(max - HEAD_GAP_WINDOW)],
                )? {
                    recent.push(row?.get::<usize, i64>(0)?);
                }
                Ok((max, recent))
            })
            .await?;
        Ok(changelog::head(max, &recent, now, rules))
    }

    /// Deletes change-table rows below a stored position, in short transactions that
    /// skip rows another transaction holds.
    pub(crate) async fn purge_changes(&mut self, stored: &Position) -> Result<u64, SourceError> {
        let (ebis_source::Capture::Changelog { .. }, Some(below)) =
            (&self.capture, stored.purge_below())
        else {
            return Ok(0);
        };
        self.tables().await?;
        let table = change_table(&self.change_owner());
        self.session
            .run(Some(CHANGE_TABLE), move |conn| {
                let mut total = 0u64;
                loop {
                    let stmt = conn.execute(
                        &format!("DELETE FROM {table} WHERE SEQ < :1 AND ROWNUM <= {PURGE_CHUNK}"),
                        &[&below],
                    )?;
                    let deleted = stmt.row_count()?;
                    conn.commit()?;
                    total += deleted;
                    if deleted < PURGE_CHUNK {
                        return Ok(total);
                    }
                }
            })
            .await
    }

    /// The ebis triggers on a table with their status, from `ALL_TRIGGERS` (the reading
    /// account's own tables, or with CREATE ANY TRIGGER) or else `DBA_TRIGGERS` (with
    /// SELECT on it); `None` when the account may see neither.
    async fn triggers_of(&self, t: &Table) -> Result<Option<Vec<(String, String)>>, SourceError> {
        for view in ["ALL_TRIGGERS", "DBA_TRIGGERS"] {
            let (owner, name) = (t.owner.clone(), t.name.clone());
            let sql = format!(
                "SELECT TRIGGER_NAME, STATUS FROM {view}
                 WHERE TABLE_OWNER = :1 AND TABLE_NAME = :2 AND TRIGGER_NAME LIKE 'EBIS\\_%' ESCAPE '\\'"
            );
            let found = self
                .session
                .run(Some(&t.plan.table), move |conn| {
                    let mut out = Vec::new();
                    for row in conn.query(&sql, &[&owner, &name])? {
                        let row = row?;
                        out.push((row.get(0)?, row.get(1)?));
                    }
                    Ok(out)
                })
                .await;
            match found {
                Ok(list) if !list.is_empty() => return Ok(Some(list)),
                Ok(_) if view == "ALL_TRIGGERS" => {}
                Ok(list) => return Ok(Some(list)),
                Err(e) if e.is_retryable() => return Err(e),
                // DBA_TRIGGERS not granted (reported as a table that does not exist).
                Err(_) => {}
            }
        }
        // ALL_TRIGGERS showed none: true when the account owns the table, else unknown.
        let owns = self
            .db
            .as_ref()
            .is_some_and(|d| d.schema.eq_ignore_ascii_case(&t.owner));
        Ok(owns.then(Vec::new))
    }

    /// Checks changelog capture is installed: the change table, and each captured
    /// table's own trigger, enabled.
    pub(crate) async fn check_changelog(&mut self) -> Result<(), SourceError> {
        let owner = self.change_owner();
        let table = change_table(&owner);
        let readable = self
            .session
            .run(Some(CHANGE_TABLE), move |conn| {
                conn.query_row_as::<i64>(&format!("SELECT COUNT(*) FROM {table} WHERE 1 = 0"), &[])
            })
            .await;
        if let Err(e) = readable {
            if e.is_retryable() {
                return Err(e);
            }
            return Err(SourceError::CaptureNotInstalled(format!(
                "the change table {owner}.{CHANGE_TABLE} does not exist or is not readable: run `ebis setup-source` for this source"
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
            if let Some(k) = t
                .key_columns
                .iter()
                .find(|k| !crate::setup::loggable(&k.ty))
            {
                return Err(SourceError::CaptureNotInstalled(format!(
                    "table {}: key column {} is {}, which the change table cannot log exactly as text; map another key, or use timestamp capture",
                    t.plan.table, k.name, k.ty
                )));
            }
            let triggers = self.triggers_of(t).await?;
            let Some(triggers) = triggers else {
                tracing::warn!(
                    source = %self.name,
                    table = %t.plan.table,
                    "the account cannot see the table's triggers (ALL_TRIGGERS shows only the triggers of tables it owns): grant SELECT ON SYS.DBA_TRIGGERS so check can confirm capture is installed"
                );
                continue;
            };
            let own = trigger_name(&t.plan.table);
            if let Some((stale, _)) = triggers.iter().find(|(n, _)| !n.eq_ignore_ascii_case(&own)) {
                return Err(SourceError::CaptureNotInstalled(format!(
                    "table {} carries the ebis trigger {stale}, another table's (the table was renamed, or capture was copied): run `ebis setup-source` for this source with --apply, drop {stale}, and relabel what it logged: UPDATE {}.{CHANGE_TABLE} SET TABLE_NAME = '{}' WHERE TABLE_NAME = <the old name>",
                    t.plan.table,
                    quote(&self.change_owner()),
                    t.plan.table
                )));
            }
            match triggers.first() {
                None => {
                    return Err(SourceError::CaptureNotInstalled(format!(
                        "table {} has no ebis capture trigger {own}: run `ebis setup-source` for this source",
                        t.plan.table
                    )));
                }
                Some((_, status)) if status != "ENABLED" => {
                    return Err(SourceError::CaptureNotInstalled(format!(
                        "the ebis trigger {own} on table {} is {status}: changes made meanwhile were not logged; enable it (ALTER TRIGGER … ENABLE) and run `ebis snapshot` for this source",
                        t.plan.table
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}
