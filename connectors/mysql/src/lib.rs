//! The MySQL / MariaDB source connector.
//!
//! Two capture modes:
//! - **changelog**: triggers append (seq, table, op, key) to `ebis_change`; each poll reads
//!   the sequence numbers after the position plus the open gaps, fetches the current rows
//!   by key (a missing row is a delete), and advances the position with gap bookkeeping.
//! - **timestamp**: for read-only accounts; each poll reads rows after a (modified, key)
//!   mark, and re-reads an overlap window for transactions that committed late, skipping
//!   rows it already returned. Deletes are found by the pipeline's key comparison.
//!
//! Snapshots read each table in key-ordered chunks. The connector only reads, except that
//! it purges `ebis_change` below a stored position when asked; it holds no durable state
//! (the position carries everything a restart needs).

mod error;
mod gaps;
mod setup;
mod table;
mod values;

pub use gaps::GapRules;
pub use setup::{StaleTrigger, changelog_statements, repair_statements};

use chrono::{DateTime, NaiveDateTime, Utc};
use ebis_source::{
    Batch, Change, Clock, Gap, KeyEntry, MarkValue, Op, Position, Row, Source, SourceError,
    TableMark, TablePlan, Value, key_text,
};
use error::classify;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use table::Table;

/// The change table's name.
pub const CHANGE_TABLE: &str = "ebis_change";
/// How long one statement may take before the source counts as unreachable.
const OP_TIMEOUT: Duration = Duration::from_secs(120);
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

/// How changes are captured.
#[derive(Clone, Debug, PartialEq)]
pub enum Capture {
    /// Trigger-filled change table.
    Changelog {
        /// How long skipped sequence numbers are awaited, and watched once expired.
        gaps: GapRules,
    },
    /// A last-modified column per table.
    Timestamp {
        /// How far back each poll re-reads.
        overlap: Duration,
    },
}

/// How to reach and read one MySQL/MariaDB source.
#[derive(Clone, Debug)]
pub struct MysqlOptions {
    /// `mysql://user@host:port/db` (no password).
    pub url: String,
    /// The password, from the environment.
    pub password: Option<String>,
    /// The tables to read.
    pub plans: Vec<TablePlan>,
    /// The capture mode.
    pub capture: Capture,
}

/// A MySQL/MariaDB source.
pub struct MysqlSource {
    pool: Pool,
    plans: Vec<TablePlan>,
    capture: Capture,
    tables: Option<Vec<Table>>,
    /// Seconds the session's (the server's) local time is ahead of UTC, for commit times
    /// read from local DATETIME values.
    utc_offset: i64,
    /// Timestamp mode: per table, rows returned recently (key text → version), so the
    /// overlap window returns only rows not seen yet. Valid only while each poll
    /// continues from the marks the previous one returned (`returned`): read from any
    /// other position (a stored one, after a failed apply), it is forgotten.
    seen: HashMap<String, HashMap<String, i64>>,
    /// Timestamp mode: the marks the last poll returned.
    returned: Option<BTreeMap<String, TableMark>>,
    /// Whether the account sees open transactions (probed once).
    sees_transactions: Option<bool>,
    /// Unmapped tables the change table logs for that exist (their changes are skipped).
    existing_unmapped: std::collections::HashSet<String>,
}

/// Builds a connection pool: UTF-8 text, and the server's own session time zone, so
/// TIMESTAMP values read with the wall-clock meaning the bureau's applications see
/// (DATE and DATETIME carry no zone). Instants ebis needs in UTC are asked for as such
/// (`UTC_TIMESTAMP()`, `UNIX_TIMESTAMP()`).
pub fn pool(url: &str, password: Option<&str>, max: usize) -> Result<Pool, SourceError> {
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
    // Connect where the URL says: by default the driver would switch a loopback TCP
    // connection to the server's Unix socket, bypassing tunnels and proxies.
    if !url.contains("prefer_socket") {
        builder = builder.prefer_socket(Some(false));
    }
    Ok(Pool::new(builder))
}

/// Runs DDL statements one by one on a (privileged) connection, then moves capture off
/// stale ebis triggers on the planned tables (left by a rename): drops them and relabels
/// the changes they logged. Returns the stale triggers it repaired.
pub async fn run_statements(
    url: &str,
    password: Option<&str>,
    statements: &[String],
    plans: &[TablePlan],
) -> Result<Vec<StaleTrigger>, SourceError> {
    let pool = pool(url, password, 1)?;
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
    plans: &[TablePlan],
) -> Result<Vec<StaleTrigger>, SourceError> {
    let pool = pool(url, password, 1)?;
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
            pool: pool(&opts.url, opts.password.as_deref(), 4)?,
            plans: opts.plans,
            capture: opts.capture,
            tables: None,
            utc_offset: 0,
            seen: HashMap::new(),
            returned: None,
            sees_transactions: None,
            existing_unmapped: std::collections::HashSet::new(),
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

    /// Closes the pool.
    pub async fn close(self) {
        let _ = self.pool.disconnect().await;
    }

    async fn utc_now(conn: &mut Conn) -> Result<Option<DateTime<Utc>>, SourceError> {
        let now: Option<NaiveDateTime> = conn
            .query_first("SELECT UTC_TIMESTAMP(6)")
            .await
            .map_err(|e| classify(e, None))?;
        Ok(now.map(|n| n.and_utc()))
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

    async fn changelog_changes(
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

    /// The source's clock: UTC and its own wall clock.
    async fn clock_on(conn: &mut Conn) -> Result<Clock, SourceError> {
        let now: Option<(NaiveDateTime, NaiveDateTime)> = conn
            .query_first("SELECT UTC_TIMESTAMP(6), NOW(6)")
            .await
            .map_err(|e| classify(e, None))?;
        let (utc, local) =
            now.ok_or_else(|| SourceError::Query("the source has no clock".to_owned()))?;
        Ok(Clock {
            utc: utc.and_utc(),
            local,
        })
    }

    async fn timestamp_changes(
        &mut self,
        after: &Position,
        marks: &BTreeMap<String, TableMark>,
        limit: usize,
        overlap: Duration,
    ) -> Result<Batch, SourceError> {
        self.tables().await?;
        let mut conn = self.conn().await?;
        let clock = Self::clock_on(&mut conn).await?;
        // Every row of this read gets one stamp, newer than any earlier read's.
        let stamp = after.next_stamp(clock.utc);
        let upto = Value::DateTime(clock.local);
        let tables = self.tables.clone().unwrap_or_default();
        let per_table = (limit / tables.len().max(1)).max(100);
        let overlap = chrono::Duration::from_std(overlap).unwrap_or_default();
        if !self.returned.as_ref().is_some_and(|r| same_marks(r, marks)) {
            self.seen.clear();
        }
        let mut next = marks.clone();
        let mut changes = Vec::new();
        let mut full = false;
        for t in tables.iter().filter(|t| t.has_modified()) {
            let mark = marks.get(&t.plan.table).cloned().unwrap_or_default();
            let seen = self.seen.entry(t.plan.table.clone()).or_default();
            let mark_value = mark.modified.map(Value::DateTime);
            let key: Vec<Value> = mark.key.iter().map(Value::from).collect();
            let mut rows = Vec::new();
            if let Some(m) = mark.modified {
                let from = Value::DateTime(m - overlap);
                rows.extend(
                    t.modified_between(&mut conn, &from, &Value::DateTime(m), per_table * 4)
                        .await?,
                );
            }
            let fresh = t
                .after_mark(&mut conn, mark_value.as_ref(), &key, &upto, per_table)
                .await?;
            full |= fresh.len() >= per_table;
            let mut new_mark = mark.clone();
            if let Some(last) = fresh.last() {
                new_mark.modified = t.modified_of(last).and_then(|v| as_datetime(&v));
                new_mark.key = t.key_of(last).iter().map(MarkValue::from).collect();
            }
            rows.extend(fresh);
            for row in rows {
                let Some(modified) = t.modified_of(&row).and_then(|v| as_datetime(&v)) else {
                    continue; // NULL modified time: only a snapshot sees such rows
                };
                // Rows already returned are known by their modified time.
                let at = modified.and_utc().timestamp_micros();
                let kt = key_text(&t.key_of(&row));
                if seen.get(&kt) == Some(&at) {
                    continue;
                }
                seen.insert(kt, at);
                let commit = modified.and_utc() - chrono::Duration::seconds(self.utc_offset);
                changes.push(t.upsert(row, stamp, Some(commit)));
            }
            if let Some(m) = new_mark.modified {
                let floor = (m - overlap).and_utc().timestamp_micros();
                seen.retain(|_, v| *v >= floor);
            }
            next.insert(t.plan.table.clone(), new_mark);
        }
        self.returned = Some(next.clone());
        Ok(Batch {
            changes,
            position: Position::Timestamp {
                tables: next,
                version: stamp,
            },
            gap_events: Vec::new(),
            read_at: if full { None } else { Some(clock.utc) },
        })
    }
}

/// Whether two sets of timestamp marks point at the same rows (when keys were last
/// compared does not matter).
fn same_marks(a: &BTreeMap<String, TableMark>, b: &BTreeMap<String, TableMark>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ta, ma), (tb, mb))| ta == tb && ma.modified == mb.modified && ma.key == mb.key)
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
    let n: Option<i64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
            (schema, table),
        )
        .await
        .map_err(|e| classify(e, None))?;
    Ok(n.unwrap_or(0) > 0)
}

fn as_datetime(v: &Value) -> Option<NaiveDateTime> {
    match v {
        Value::DateTime(t) => Some(*t),
        Value::Date(d) => d.and_hms_opt(0, 0, 0),
        _ => None,
    }
}

impl Source for MysqlSource {
    async fn check(&mut self) -> Result<(), SourceError> {
        self.tables = None;
        self.existing_unmapped.clear();
        self.tables().await?;
        let mut conn = self.conn().await?;
        match &self.capture {
            Capture::Changelog { .. } => {
                let exists: Option<i64> = conn
                    .exec_first(
                        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                        (CHANGE_TABLE,),
                    )
                    .await
                    .map_err(|e| classify(e, None))?;
                if exists.unwrap_or(0) == 0 {
                    return Err(SourceError::CaptureNotInstalled(format!(
                        "the change table {CHANGE_TABLE} does not exist: run `ebis setup-source` for this source"
                    )));
                }
                // Triggers that came along with a rename log the table's changes under
                // its old name: refuse, with the repair.
                if let Some(s) = setup::stale_triggers(&mut conn, &self.plans).await?.first() {
                    return Err(SourceError::CaptureNotInstalled(format!(
                        "table {} carries the ebis trigger {} that logs its changes as {} (the table was renamed, or capture was copied): run `ebis setup-source` for this source with --apply — it installs {}'s own triggers, drops the others, and relabels the changes they logged, so nothing logged in between is lost",
                        s.table,
                        s.trigger,
                        s.logs_as.as_deref().unwrap_or("another table"),
                        s.table
                    )));
                }
                let mut missing = Vec::new();
                for p in &self.plans {
                    let (schema, name) = table::split_table(&p.table);
                    let n: Option<i64> = conn
                        .exec_first(
                            "SELECT COUNT(*) FROM information_schema.TRIGGERS
                             WHERE EVENT_OBJECT_SCHEMA = COALESCE(?, DATABASE()) AND EVENT_OBJECT_TABLE = ?
                               AND TRIGGER_NAME LIKE 'ebis\\_%'",
                            (schema, name),
                        )
                        .await
                        .map_err(|e| classify(e, None))?;
                    if n.unwrap_or(0) < 3 {
                        missing.push(p.table.as_str());
                    }
                }
                // information_schema shows triggers only to accounts with the TRIGGER
                // privilege; a SELECT-only reader sees none at all and cannot tell.
                if !missing.is_empty()
                    && (missing.len() < self.plans.len() || may_see_triggers(&mut conn).await?)
                {
                    return Err(SourceError::CaptureNotInstalled(format!(
                        "table {} has no ebis capture triggers: run `ebis setup-source` for this source",
                        missing[0]
                    )));
                }
                if !missing.is_empty() {
                    tracing::warn!(
                        "the reading account cannot see triggers (no TRIGGER privilege): ebis assumes `ebis setup-source` installed them on every captured table"
                    );
                }
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
            Capture::Changelog { gaps: rules } => {
                let rules = *rules;
                // The clock first: a gap is never dated after it was first possible.
                let now = Self::utc_now(&mut conn).await?.unwrap_or_else(Utc::now);
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
            Capture::Timestamp { .. } => {
                let clock = Self::clock_on(&mut conn).await?;
                let mut tables = BTreeMap::new();
                for t in self.tables.iter().flatten() {
                    // Never past the source's own clock: a row dated in the future would
                    // otherwise hide every ordinary write until then.
                    let newest = t
                        .newest(&mut conn)
                        .await?
                        .and_then(|v| as_datetime(&v))
                        .map(|m| m.min(clock.local));
                    tables.insert(
                        t.plan.table.clone(),
                        TableMark {
                            modified: newest,
                            ..TableMark::default()
                        },
                    );
                }
                Ok(Position::Timestamp {
                    tables,
                    version: clock.utc.timestamp_micros(),
                })
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
            (Position::Changelog { seq, gaps, expired }, Capture::Changelog { gaps: rules }) => {
                self.changelog_changes(*seq, gaps, expired, limit, rules)
                    .await
            }
            (Position::Timestamp { tables, .. }, Capture::Timestamp { overlap }) => {
                self.timestamp_changes(after, tables, limit, overlap).await
            }
            (other, capture) => Err(SourceError::BadPosition(format!(
                "position `{}` does not fit capture mode {capture:?}",
                other.summary()
            ))),
        }
    }

    async fn purge(&mut self, stored: &Position) -> Result<u64, SourceError> {
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

impl MysqlSource {
    /// Number of rows of a table (for snapshot progress).
    pub async fn count(&mut self, table: &str) -> Result<u64, SourceError> {
        let (i, mut conn) = self.locate(table).await?;
        self.tables.as_deref().unwrap_or(&[])[i]
            .count(&mut conn)
            .await
    }
}
