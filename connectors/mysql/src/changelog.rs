//! Changelog capture on MySQL/MariaDB: reading `ebis_change` after a position and in
//! open or watched gaps, settling gaps against the server's open transactions, fetching
//! the current rows by key, the change table's head, its purge, and the checks that
//! capture is installed on every captured table (and only its own triggers).

use crate::error::classify;
use crate::gaps::{self, GapRules};
use crate::{CHANGE_TABLE, Capture, MysqlSource, catalog, setup, table, values};
use chrono::{DateTime, Utc};
use ebis_source::{Batch, Change, Gap, Op, Position, Row, SourceError, Value, key_text};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use std::collections::HashMap;
use std::time::Duration;

/// How many changelog sequence numbers back `head` looks for in-flight transactions.
const HEAD_GAP_WINDOW: i64 = 10_000;
/// Most gap ranges (open, then expired) re-read in one poll.
const MAX_GAP_RANGES: usize = 5_000;
/// One change-table entry: seq, table, op, key (JSON array), changed_at (µs since epoch).
type Entry = (i64, String, String, String, i64);
/// `ebis_change.changed_at` as microseconds since the epoch (zone-independent).
const CHANGED_AT_MICROS: &str = "CAST(UNIX_TIMESTAMP(changed_at) * 1000000 AS SIGNED)";
/// Change-table rows deleted per purge statement (keeps each transaction short).
const PURGE_CHUNK: u64 = 5_000;

impl MysqlSource {
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
    async fn settled_before(
        &mut self,
        conn: &mut Conn,
    ) -> Result<Option<DateTime<Utc>>, SourceError> {
        if self.sees_transactions == Some(false) {
            return Ok(None);
        }
        let before = Self::utc_now(conn).await?.unwrap_or_else(Utc::now);
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
                let _ = conn.query_drop("ROLLBACK").await;
                tracing::info!(
                    source = %self.name,
                    "the account cannot see open transactions (no PROCESS privilege): changelog gaps wait for capture.gap_timeout before they stop holding lag back"
                );
                self.sees_transactions = Some(false);
                return Ok(None);
            }
            Err(e) => return Err(classify(e, None)),
        };
        self.sees_transactions = Some(true);
        // trx_started has whole seconds: its floor is never after the true start.
        Ok(answer.map(|oldest| match oldest {
            Some(secs) => DateTime::from_timestamp(secs, 0)
                .unwrap_or(before)
                .min(before),
            None => before,
        }))
    }

    /// Change-table entries whose sequence numbers fall in the given ranges, in statements
    /// of at most 100 ranges.
    async fn entries_in(conn: &mut Conn, ranges: &[(i64, i64)]) -> Result<Vec<Entry>, SourceError> {
        let mut out = Vec::new();
        for chunk in ranges.chunks(100) {
            let cond = vec!["seq BETWEEN ? AND ?"; chunk.len()].join(" OR ");
            let params: Vec<mysql_async::Value> = chunk
                .iter()
                .flat_map(|(a, b)| [mysql_async::Value::Int(*a), mysql_async::Value::Int(*b)])
                .collect();
            let found: Vec<Entry> = conn
                .exec(
                    format!("SELECT seq, table_name, op, row_key, {CHANGED_AT_MICROS} FROM {CHANGE_TABLE} WHERE {cond} ORDER BY seq"),
                    params,
                )
                .await
                .map_err(|e| classify(e, Some(CHANGE_TABLE)))?;
            out.extend(found);
        }
        Ok(out)
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
        let mut conn = self.conn().await?;
        // Which transactions could still commit is asked before anything is read, so a
        // gap they leave after that shows as settled only if it truly is.
        let settled_before = if gaps.is_empty() && expired.is_empty() {
            None
        } else {
            self.settled_before(&mut conn).await?
        };
        let read_at = Self::utc_now(&mut conn).await?.unwrap_or_else(Utc::now);
        let q = format!(
            "SELECT seq, table_name, op, row_key, {CHANGED_AT_MICROS} FROM {CHANGE_TABLE} WHERE seq > ? ORDER BY seq LIMIT {limit}"
        );
        let mut entries: Vec<Entry> = conn
            .exec(q, (prev,))
            .await
            .map_err(|e| classify(e, Some(CHANGE_TABLE)))?;
        let full = entries.len() >= limit;
        // Open gaps first: they hold lag back. Expired ones are watched for late commits.
        let ranges: Vec<(i64, i64)> = gaps
            .iter()
            .chain(expired)
            .take(MAX_GAP_RANGES)
            .map(|g| (g.from, g.to))
            .collect();
        entries.extend(Self::entries_in(&mut conn, &ranges).await?);
        entries.sort_by_key(|e| e.0);
        entries.dedup_by_key(|e| e.0);
        let seen: Vec<i64> = entries.iter().map(|e| e.0).collect();
        let adv = gaps::advance(prev, gaps, expired, &seen, read_at, rules, settled_before);
        let version = adv.seq;

        // Latest entry per (table, key): the row is read whole, so one fetch covers all.
        let mut latest: Vec<(usize, String, Vec<Value>, i64, i64)> = Vec::new();
        let mut index: HashMap<(usize, String), usize> = HashMap::new();
        let mut unmapped: Vec<String> = Vec::new();
        for (seq, table, _op, key_json, at) in entries {
            let Some(t) = self.table_index(&table) else {
                if !unmapped.contains(&table) {
                    unmapped.push(table);
                }
                continue; // a table no mapping reads (any more)
            };
            let key: Vec<Value> = match serde_json::from_str::<Vec<serde_json::Value>>(&key_json) {
                Ok(k) => k.iter().map(values::from_json).collect(),
                Err(_) => {
                    return Err(SourceError::Query(format!(
                        "{CHANGE_TABLE} row {seq} has a key that is not a JSON array"
                    )));
                }
            };
            let kt = key_text(&key);
            match index.get(&(t, kt.clone())) {
                Some(&i) => {
                    latest[i].3 = seq;
                    latest[i].4 = at;
                }
                None => {
                    index.insert((t, kt.clone()), latest.len());
                    latest.push((t, kt, key, seq, at));
                }
            }
        }
        // Changes logged for a table that no longer exists were logged by triggers a
        // rename took along (or by a table dropped since): skipping them would lose them.
        for name in unmapped {
            if self.existing_unmapped.contains(&name) {
                continue;
            }
            if table_exists(&mut conn, &name).await? {
                self.existing_unmapped.insert(name);
                continue;
            }
            return Err(SourceError::CaptureNotInstalled(format!(
                "{CHANGE_TABLE} holds changes logged for table {name}, which does not exist: it was renamed (its ebis triggers went with it) or dropped. If renamed, point the mappings at the new name and run `ebis setup-source` for this source with --apply: it moves capture there and relabels these changes, so none is lost. If dropped and no longer mapped, delete them: DELETE FROM {CHANGE_TABLE} WHERE table_name = '{name}'"
            )));
        }
        let tables = self.tables.as_deref().unwrap_or(&[]);
        let mut rows: HashMap<(usize, String), Row> = HashMap::new();
        for (t, table) in tables.iter().enumerate() {
            let keys: Vec<Vec<Value>> = latest
                .iter()
                .filter(|e| e.0 == t)
                .map(|e| e.2.clone())
                .collect();
            if keys.is_empty() {
                continue;
            }
            let found = table.by_keys(&mut conn, &keys).await.map_err(|e| match e {
                SourceError::MissingTable { table } => SourceError::CaptureNotInstalled(format!(
                    "captured table {table} does not exist any more: if it was renamed, point its mappings at the new name and run `ebis setup-source` for this source with --apply (it relabels the changes logged meanwhile, so none is lost)"
                )),
                other => other,
            })?;
            for row in found {
                rows.insert((t, key_text(&table.key_of(&row))), row);
            }
        }
        latest.sort_by_key(|e| e.3);
        let changes = latest
            .into_iter()
            .map(|(t, kt, key, _seq, at)| {
                let commit_time = DateTime::from_timestamp_micros(at);
                match rows.remove(&(t, kt)) {
                    Some(row) => tables[t].upsert(row, version, commit_time),
                    None => Change {
                        table: tables[t].plan.table.clone(),
                        op: Op::Delete,
                        key,
                        row: Row::new(),
                        version,
                        commit_time,
                    },
                }
            })
            .collect();
        Ok(Batch {
            changes,
            position: Position::Changelog {
                seq: adv.seq,
                gaps: adv.gaps,
                expired: adv.expired,
            },
            gap_events: adv.events,
            read_at: if full { None } else { Some(read_at) },
        })
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
        let start = recent.first().copied().unwrap_or(max).saturating_sub(1);
        let adv = gaps::advance(start, &[], &[], &recent, now, rules, None);
        Ok(Position::Changelog {
            seq: max,
            gaps: adv.gaps,
            expired: Vec::new(),
        })
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

/// Whether a table (optionally `schema.table`) exists and is visible to the account.
async fn table_exists(conn: &mut Conn, name: &str) -> Result<bool, SourceError> {
    let (schema, table) = table::split_table(name);
    catalog::table_exists(conn, schema, table).await
}
