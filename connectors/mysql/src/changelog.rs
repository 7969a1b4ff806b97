//! Changelog capture on MySQL/MariaDB: the primitives the shared changelog poll
//! ([`ebis_capture::changelog`]) runs on — `ebis_change` read after a position and in
//! gaps, gaps settled against the server's open transactions, current rows fetched by
//! key — plus the change table's head, its purge, and the checks that capture is
//! installed on every captured table (and only its own triggers).

use crate::error::classify;
use crate::table::Table;
use crate::{CHANGE_TABLE, Capture, MysqlSource, catalog, setup, table, values};
use chrono::{DateTime, Utc};
use ebis_capture::changelog::{self, ChangeEntry, ChangelogReader, RowReader};
use ebis_source::{Batch, Gap, GapRules, Position, Row, SourceError, Value};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use std::time::Duration;

/// How many changelog sequence numbers back `head` looks for in-flight transactions.
const HEAD_GAP_WINDOW: i64 = 10_000;
/// One change-table entry: seq, table, key (JSON array), changed_at (µs since epoch).
type Entry = (i64, String, String, i64);
/// `ebis_change.changed_at` as microseconds since the epoch (zone-independent).
const CHANGED_AT_MICROS: &str = "CAST(UNIX_TIMESTAMP(changed_at) * 1000000 AS SIGNED)";
/// Change-table rows deleted per purge statement (keeps each transaction short).
const PURGE_CHUNK: u64 = 5_000;

/// One poll's reader: a connection and the captured tables (binlog capture reads its
/// rows by key with it too).
pub(crate) struct Reader<'a> {
    conn: Conn,
    /// More connections, for fetching many rows by key at once.
    pool: &'a mysql_async::Pool,
    tables: &'a [Table],
    name: &'a str,
    /// Whether the account sees open transactions (probed once, kept by the source).
    sees_transactions: &'a mut Option<bool>,
}

/// An `ebis_change` row as an entry (its key a JSON array).
fn entry((seq, table, key_json, at): Entry) -> Result<ChangeEntry, SourceError> {
    let key = match serde_json::from_str::<Vec<serde_json::Value>>(&key_json) {
        Ok(k) => k.iter().map(values::from_json).collect(),
        Err(_) => {
            return Err(SourceError::Query(format!(
                "{CHANGE_TABLE} row {seq} has a key that is not a JSON array"
            )));
        }
    };
    Ok(ChangeEntry {
        seq,
        table,
        key,
        at: DateTime::from_timestamp_micros(at),
    })
}

impl<'a> Reader<'a> {
    /// An `ebis_change` row as an entry ([`entry`]), its key in the form reads of its
    /// table give ([`Table::key_from_log`]).
    fn keyed_entry(&self, row: Entry) -> Result<ChangeEntry, SourceError> {
        let mut e = entry(row)?;
        if let Some(i) = self.captured(&e.table) {
            e.key = self.tables[i].key_from_log(std::mem::take(&mut e.key));
        }
        Ok(e)
    }

    /// A reader of `source`'s captured tables on `conn`.
    pub(crate) fn new(conn: Conn, source: &'a mut MysqlSource) -> Reader<'a> {
        Reader {
            conn,
            pool: &source.pool,
            tables: source.tables.as_deref().unwrap_or(&[]),
            name: &source.name,
            sees_transactions: &mut source.sees_transactions,
        }
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
        Ok(t.by_keys_spread(&mut self.conn, self.pool, keys)
            .await?
            .into_iter()
            .map(|row| (t.key_of(&row), row))
            .collect())
    }
}

impl ChangelogReader for Reader<'_> {
    async fn now(&mut self) -> Result<DateTime<Utc>, SourceError> {
        Ok(MysqlSource::utc_now(&mut self.conn)
            .await?
            .unwrap_or_else(Utc::now))
    }

    /// The instant before which every transaction that could still commit a change-table
    /// row has ended, when this account may see the server's open transactions
    /// (`information_schema.INNODB_TRX`, PROCESS privilege); `None` when it may not, or
    /// when the list is stale this time.
    ///
    /// InnoDB serves that list from a cache refreshed only when nobody read it for 0.1 s,
    /// so a busy server can show an old one. The answer is trusted only when the list holds
    /// this session's own transaction, begun after the clock was read: then it is newer
    /// than that instant, and any transaction older than it that is still open is in it.
    /// Only transactions holding locks count (a change-table insert runs inside a trigger,
    /// after the captured row's own insert locked it); readers such as a backup's
    /// consistent snapshot do not hold gaps.
    async fn settled_before(&mut self) -> Result<Option<DateTime<Utc>>, SourceError> {
        if *self.sees_transactions == Some(false) {
            return Ok(None);
        }
        let conn = &mut self.conn;
        let before = MysqlSource::utc_now(conn).await?.unwrap_or_else(Utc::now);
        let look = async {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await?;
            let mut answer = None;
            for attempt in 0..3 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
                let row: Option<(Option<i64>, Option<i64>)> = conn
                    .query_first(
                        "SELECT CAST(UNIX_TIMESTAMP(MIN(CASE WHEN trx_mysql_thread_id <> CONNECTION_ID()
                                                             AND trx_lock_structs > 0 THEN trx_started END)) AS SIGNED),
                                CAST(SUM(trx_mysql_thread_id = CONNECTION_ID()) AS SIGNED)
                         FROM information_schema.INNODB_TRX",
                    )
                    .await?;
                if let Some((oldest, Some(own))) = row
                    && own > 0
                {
                    answer = Some(oldest);
                    break;
                }
            }
            conn.query_drop("COMMIT").await?;
            Ok::<_, mysql_async::Error>(answer)
        };
        let answer = match look.await {
            Ok(answer) => answer,
            Err(mysql_async::Error::Server(e)) if e.code == 1227 || e.code == 1142 => {
                let _ = self.conn.query_drop("ROLLBACK").await;
                tracing::info!(
                    source = %self.name,
                    "the account cannot see open transactions (no PROCESS privilege): changelog gaps wait for capture.gap_timeout before they stop holding lag back"
                );
                *self.sees_transactions = Some(false);
                return Ok(None);
            }
            Err(e) => return Err(classify(e, None)),
        };
        *self.sees_transactions = Some(true);
        // trx_started has whole seconds: its floor is never after the true start.
        Ok(answer.map(|oldest| match oldest {
            Some(secs) => DateTime::from_timestamp(secs, 0)
                .unwrap_or(before)
                .min(before),
            None => before,
        }))
    }

    async fn entries_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ChangeEntry>, SourceError> {
        let q = format!(
            "SELECT seq, table_name, row_key, {CHANGED_AT_MICROS} FROM {CHANGE_TABLE} WHERE seq > ? ORDER BY seq LIMIT {limit}"
        );
        let found: Vec<Entry> = self
            .conn
            .exec(q, (after,))
            .await
            .map_err(|e| classify(e, Some(CHANGE_TABLE)))?;
        found.into_iter().map(|e| self.keyed_entry(e)).collect()
    }

    async fn highest(&mut self) -> Result<i64, SourceError> {
        let max: Option<i64> = self
            .conn
            .query_first(format!("SELECT COALESCE(MAX(seq), 0) FROM {CHANGE_TABLE}"))
            .await
            .map_err(|e| classify(e, Some(CHANGE_TABLE)))?;
        Ok(max.unwrap_or(0))
    }

    async fn next_assigned(&mut self) -> Result<Option<i64>, SourceError> {
        catalog::next_auto_increment(&mut self.conn, CHANGE_TABLE).await
    }

    /// Entries whose sequence numbers fall in the given ranges, in statements of at most
    /// 100 ranges.
    async fn entries_in(&mut self, ranges: &[(i64, i64)]) -> Result<Vec<ChangeEntry>, SourceError> {
        let mut out = Vec::new();
        for chunk in ranges.chunks(100) {
            let cond = vec!["seq BETWEEN ? AND ?"; chunk.len()].join(" OR ");
            let params: Vec<mysql_async::Value> = chunk
                .iter()
                .flat_map(|(a, b)| [mysql_async::Value::Int(*a), mysql_async::Value::Int(*b)])
                .collect();
            let found: Vec<Entry> = self
                .conn
                .exec(
                    format!("SELECT seq, table_name, row_key, {CHANGED_AT_MICROS} FROM {CHANGE_TABLE} WHERE {cond} ORDER BY seq"),
                    params,
                )
                .await
                .map_err(|e| classify(e, Some(CHANGE_TABLE)))?;
            for e in found {
                out.push(self.keyed_entry(e)?);
            }
        }
        Ok(out)
    }

    fn captured(&self, logged_as: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.plan.table.eq_ignore_ascii_case(logged_as))
    }

    async fn table_exists(&mut self, name: &str) -> Result<bool, SourceError> {
        let (schema, table) = table::split_table(name);
        catalog::table_exists(&mut self.conn, schema, table).await
    }
}

impl MysqlSource {
    pub(crate) async fn changelog_changes(
        &mut self,
        prev: i64,
        gaps: &[Gap],
        expired: &[Gap],
        limit: usize,
        rules: GapRules,
    ) -> Result<Batch, SourceError> {
        self.tables().await?;
        let conn = self.conn().await?;
        let mut unmapped = std::mem::take(&mut self.existing_unmapped);
        let polled = changelog::poll(
            &mut Reader::new(conn, self),
            prev,
            gaps,
            expired,
            limit,
            rules,
            &mut unmapped,
        )
        .await;
        self.existing_unmapped = unmapped;
        polled
    }

    /// The change table's head, with the numbers just below it still missing as gaps
    /// (transactions open while a snapshot starts).
    pub(crate) async fn changelog_head(
        &mut self,
        conn: &mut Conn,
        rules: GapRules,
    ) -> Result<Position, SourceError> {
        // The clock first: a gap is never dated after it was first possible.
        let now = Self::utc_now(conn).await?.unwrap_or_else(Utc::now);
        let max: Option<i64> = conn
            .query_first(format!("SELECT COALESCE(MAX(seq), 0) FROM {CHANGE_TABLE}"))
            .await
            .map_err(|e| classify(e, Some(CHANGE_TABLE)))?;
        let max = max.unwrap_or(0);
        // Numbers below the head that are missing may belong to transactions still
        // open: await them like any gap.
        let recent: Vec<i64> = conn
            .exec(
                format!("SELECT seq FROM {CHANGE_TABLE} WHERE seq > ? ORDER BY seq"),
                (max - HEAD_GAP_WINDOW,),
            )
            .await
            .map_err(|e| classify(e, Some(CHANGE_TABLE)))?;
        Ok(changelog::head(max, &recent, now, rules))
    }

    /// Deletes change-table rows below a stored position (see [`Source::purge`]).
    pub(crate) async fn purge_changes(&mut self, stored: &Position) -> Result<u64, SourceError> {
        let (Capture::Changelog { .. }, Some(below)) = (&self.capture, stored.purge_below()) else {
            return Ok(0);
        };
        let mut conn = self.conn().await?;
        // Never hold up capture for long behind a lock (ebis's reads take none).
        conn.query_drop("SET SESSION innodb_lock_wait_timeout = 5")
            .await
            .map_err(|e| classify(e, Some(CHANGE_TABLE)))?;
        // The boundary is the newest committed row at or below `below`: the DELETE's scan
        // ends by reading it, and a committed row holds no lock. Ending on an uncommitted
        // row (an awaited gap) would wait behind that transaction.
        let boundary: Option<Option<i64>> = conn
            .exec_first(
                format!("SELECT MAX(seq) FROM {CHANGE_TABLE} WHERE seq <= ?"),
                (below,),
            )
            .await
            .map_err(|e| classify(e, Some(CHANGE_TABLE)))?;
        let Some(Some(boundary)) = boundary else {
            return Ok(0); // an empty change table
        };
        let mut total = 0;
        loop {
            conn.exec_drop(
                format!(
                    "DELETE FROM {CHANGE_TABLE} WHERE seq < ? ORDER BY seq LIMIT {PURGE_CHUNK}"
                ),
                (boundary,),
            )
            .await
            .map_err(|e| classify(e, Some(CHANGE_TABLE)))?;
            let deleted = conn.affected_rows();
            total += deleted;
            if deleted < PURGE_CHUNK {
                return Ok(total);
            }
        }
    }

    /// Checks changelog capture is installed: the change table, and each captured
    /// table's own triggers (none of another table's, which a rename leaves).
    pub(crate) async fn check_changelog(&mut self, conn: &mut Conn) -> Result<(), SourceError> {
        if !catalog::table_exists(conn, None, CHANGE_TABLE).await? {
            return Err(SourceError::CaptureNotInstalled(format!(
                "the change table {CHANGE_TABLE} does not exist: run `ebis setup-source` for this source"
            )));
        }
        // Each table's ebis triggers, read once: its own three, and none that came along
        // with a rename (they log the table's changes under its old name).
        let mut missing = Vec::new();
        for p in &self.plans {
            let (schema, name) = table::split_table(&p.table);
            let found = catalog::ebis_triggers(conn, schema, name, &p.table).await?;
            let (own, stale) = setup::sort_triggers(p, found);
            if let Some(s) = stale.first() {
                return Err(SourceError::CaptureNotInstalled(format!(
                    "table {} carries the ebis trigger {} that logs its changes as {} (the table was renamed, or capture was copied): run `ebis setup-source` for this source with --apply — it installs {}'s own triggers, drops the others, and relabels the changes they logged, so nothing logged in between is lost",
                    s.table,
                    s.trigger,
                    s.logs_as.as_deref().unwrap_or("another table"),
                    s.table
                )));
            }
            if own < 3 {
                missing.push(p.table.as_str());
            }
        }
        // information_schema shows triggers only to accounts with the TRIGGER
        // privilege; a SELECT-only reader sees none at all and cannot tell.
        if !missing.is_empty()
            && (missing.len() < self.plans.len() || may_see_triggers(conn).await?)
        {
            return Err(SourceError::CaptureNotInstalled(format!(
                "table {} has no ebis capture triggers: run `ebis setup-source` for this source",
                missing[0]
            )));
        }
        if !missing.is_empty() {
            tracing::warn!(
                source = %self.name,
                "the reading account cannot see triggers (no TRIGGER privilege): ebis assumes `ebis setup-source` installed them on every captured table"
            );
        }
        Ok(())
    }
}

/// Whether the current account holds the TRIGGER privilege on the current database (or
/// globally), so `information_schema.TRIGGERS` would show the triggers there.
async fn may_see_triggers(conn: &mut Conn) -> Result<bool, SourceError> {
    let grantee = "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')";
    let n: Option<i64> = conn
        .query_first(format!(
            "SELECT (SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES
                      WHERE GRANTEE = {grantee} AND PRIVILEGE_TYPE = 'TRIGGER')
                  + (SELECT COUNT(*) FROM information_schema.SCHEMA_PRIVILEGES
                      WHERE GRANTEE = {grantee} AND PRIVILEGE_TYPE = 'TRIGGER'
                        AND TABLE_SCHEMA = DATABASE())"
        ))
        .await
        .map_err(|e| classify(e, None))?;
    Ok(n.unwrap_or(0) > 0)
}
