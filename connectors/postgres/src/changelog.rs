//! Changelog capture on PostgreSQL: the primitives the shared changelog poll
//! ([`ebis_capture::changelog`]) runs on — `ebis_capture.change` read after a position and
//! in gaps, gaps settled against the server's open transactions, current rows fetched by
//! key — plus the change table's head, its purge, and the check that capture is
//! installed on every captured table.

use crate::PostgresSource;
use crate::error::classify;
use crate::table::{Table, locate};
use crate::values::from_json;
use chrono::{DateTime, Utc};
use ebis_capture::changelog::{self, ChangeEntry, ChangelogReader, RowReader};
use ebis_source::{Batch, Capture, Gap, GapRules, Position, Row, SourceError, Value};
use tokio_postgres::Client;

/// How many changelog sequence numbers back `head` looks for in-flight transactions.
const HEAD_GAP_WINDOW: i64 = 10_000;
/// Change-table rows deleted per purge statement (keeps each transaction short).
const PURGE_CHUNK: i64 = 5_000;
/// The change table, qualified.
const CHANGE: &str = "ebis_capture.change";
/// The columns an entry is read from.
const ENTRY: &str = "seq, table_name, row_key, (extract(epoch FROM changed_at) * 1000000)::int8";

/// One poll's reader: the connection and the captured tables.
pub(crate) struct Reader<'a> {
    client: &'a Client,
    tables: &'a [Table],
    name: &'a str,
    /// Whether the account sees other sessions' transactions (probed once).
    sees_transactions: &'a mut Option<bool>,
}

impl<'a> Reader<'a> {
    /// A reader of `source`'s captured tables (after `tables()`).
    pub(crate) fn new(source: &'a mut PostgresSource) -> Result<Reader<'a>, SourceError> {
        Ok(Reader {
            client: crate::live(&source.client)?,
            tables: source.tables.as_deref().unwrap_or(&[]),
            name: &source.name,
            sees_transactions: &mut source.sees_transactions,
        })
    }

    /// Entries from rows of the change table; keys are read the way each captured
    /// table's select list reads its key columns.
    fn entries(&self, rows: &[tokio_postgres::Row]) -> Result<Vec<ChangeEntry>, SourceError> {
        rows.iter()
            .map(|r| {
                let seq: i64 = r.get(0);
                let table: String = r.get(1);
                let key_json: String = r.get(2);
                let at: i64 = r.get(3);
                let parsed: Vec<serde_json::Value> =
                    serde_json::from_str(&key_json).map_err(|_| {
                        SourceError::Query(format!(
                            "{CHANGE} row {seq} has a key that is not a JSON array"
                        ))
                    })?;
                let t = self.captured(&table).map(|i| &self.tables[i]);
                let key = parsed
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match t {
                        Some(t) if i < t.key_names.len() => from_json(t.key_reading(i), v),
                        _ => from_json(crate::values::Reading::Other, v),
                    })
                    .collect();
                Ok(ChangeEntry {
                    seq,
                    table,
                    key,
                    at: DateTime::from_timestamp_micros(at),
                })
            })
            .collect()
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
        Ok(t.by_keys(self.client, keys)
            .await?
            .into_iter()
            .map(|row| (t.key_of(&row), row))
            .collect())
    }
}

impl ChangelogReader for Reader<'_> {
    async fn now(&mut self) -> Result<DateTime<Utc>, SourceError> {
        Ok(PostgresSource::clock_on(self.client).await?.utc)
    }

    /// The instant before which every transaction that could still commit a change-table
    /// row has ended, when this account may see every session (`pg_read_all_stats`, or a
    /// superuser); `None` when it may not. A transaction counts once it has written (it
    /// holds a transaction id), or while one of its statements runs (a statement that
    /// took a sequence number has not necessarily written yet).
    async fn settled_before(&mut self) -> Result<Option<DateTime<Utc>>, SourceError> {
        if *self.sees_transactions == Some(false) {
            return Ok(None);
        }
        if self.sees_transactions.is_none() {
            let row = self
                .client
                .query_one(
                    "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')
                     FROM pg_roles WHERE rolname = current_user",
                    &[],
                )
                .await
                .map_err(|e| classify(e, None))?;
            let sees: bool = row.get(0);
            *self.sees_transactions = Some(sees);
            if !sees {
                tracing::info!(
                    source = %self.name,
                    "the account cannot see other sessions (no pg_read_all_stats): changelog gaps wait for capture.gap_timeout before they stop holding lag back"
                );
                return Ok(None);
            }
        }
        let row = self
            .client
            .query_one(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8,
                        (extract(epoch FROM min(xact_start)) * 1000000)::int8
                 FROM pg_stat_activity
                 WHERE pid <> pg_backend_pid() AND xact_start IS NOT NULL
                   AND (backend_xid IS NOT NULL OR state = 'active')",
                &[],
            )
            .await
            .map_err(|e| classify(e, None))?;
        let now: i64 = row.get(0);
        let oldest: Option<i64> = row.get(1);
        Ok(DateTime::from_timestamp_micros(
            oldest.unwrap_or(now).min(now),
        ))
    }

    async fn entries_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ChangeEntry>, SourceError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                &format!("SELECT {ENTRY} FROM {CHANGE} WHERE seq > $1 ORDER BY seq LIMIT $2"),
                &[&after, &limit],
            )
            .await
            .map_err(|e| classify(e, Some(CHANGE)))?;
        self.entries(&rows)
    }

    async fn highest(&mut self) -> Result<i64, SourceError> {
        highest(self.client).await
    }

    async fn next_assigned(&mut self) -> Result<Option<i64>, SourceError> {
        let row = self
            .client
            .query_one(
                "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
                 FROM ebis_capture.change_seq_seq",
                &[],
            )
            .await;
        match row {
            Ok(r) => Ok(Some(r.get(0))),
            // Without SELECT on the sequence, the server cannot tell this account.
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                Ok(None)
            }
            Err(e) => Err(classify(e, Some(CHANGE))),
        }
    }

    async fn entries_in(&mut self, ranges: &[(i64, i64)]) -> Result<Vec<ChangeEntry>, SourceError> {
        let (from, to): (Vec<i64>, Vec<i64>) = ranges.iter().copied().unzip();
        let rows = self
            .client
            .query(
                // One index range scan per gap, not a scan of the change table.
                &format!(
                    "SELECT {ENTRY} FROM unnest($1::int8[], $2::int8[]) AS r(a, b)
                     CROSS JOIN LATERAL (SELECT * FROM {CHANGE} c WHERE c.seq BETWEEN r.a AND r.b) c
                     ORDER BY seq"
                ),
                &[&from, &to],
            )
            .await
            .map_err(|e| classify(e, Some(CHANGE)))?;
        self.entries(&rows)
    }

    fn captured(&self, logged_as: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.plan.table.eq_ignore_ascii_case(logged_as))
    }

    async fn table_exists(&mut self, name: &str) -> Result<bool, SourceError> {
        Ok(locate(self.client, name).await?.is_some())
    }
}

/// The highest sequence number in the change table (0 when empty).
async fn highest(client: &Client) -> Result<i64, SourceError> {
    let row = client
        .query_one(&format!("SELECT coalesce(max(seq), 0) FROM {CHANGE}"), &[])
        .await
        .map_err(|e| classify(e, Some(CHANGE)))?;
    Ok(row.get(0))
}

impl PostgresSource {
    pub(crate) async fn changelog_changes(
        &mut self,
        prev: i64,
        gaps: &[Gap],
        expired: &[Gap],
        limit: usize,
        rules: GapRules,
    ) -> Result<Batch, SourceError> {
        self.tables().await?;
        let mut unmapped = std::mem::take(&mut self.existing_unmapped);
        let polled = changelog::poll(
            &mut Reader::new(self)?,
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
        rules: GapRules,
    ) -> Result<Position, SourceError> {
        let client = self.client()?;
        // The clock first: a gap is never dated after it was first possible.
        let now = Self::clock_on(client).await?.utc;
        let max = highest(client).await?;
        let recent: Vec<i64> = client
            .query(
                &format!("SELECT seq FROM {CHANGE} WHERE seq > $1 ORDER BY seq"),
                &[&(max - HEAD_GAP_WINDOW)],
            )
            .await
            .map_err(|e| classify(e, Some(CHANGE)))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(changelog::head(max, &recent, now, rules))
    }

    /// Deletes change-table rows below a stored position, in short transactions.
    pub(crate) async fn purge_changes(&mut self, stored: &Position) -> Result<u64, SourceError> {
        let (Capture::Changelog { .. }, Some(below)) = (&self.capture, stored.purge_below()) else {
            return Ok(0);
        };
        self.connected().await?;
        let client = self.client()?;
        let mut total = 0;
        loop {
            let deleted = client
                .execute(
                    &format!(
                        "DELETE FROM {CHANGE} WHERE seq IN
                           (SELECT seq FROM {CHANGE} WHERE seq < $1 ORDER BY seq LIMIT {PURGE_CHUNK})"
                    ),
                    &[&below],
                )
                .await
                .map_err(|e| classify(e, Some(CHANGE)))?;
            total += deleted;
            if deleted < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    /// Checks changelog capture is installed: the change table, and on each captured
    /// table ebis's trigger, logging the table under its mapping's name with the key
    /// columns the mappings use.
    pub(crate) async fn check_changelog(&mut self) -> Result<(), SourceError> {
        let client = self.client()?;
        let exists: bool = client
            .query_one(&format!("SELECT to_regclass('{CHANGE}') IS NOT NULL"), &[])
            .await
            .map_err(|e| classify(e, None))?
            .get(0);
        if !exists {
            return Err(SourceError::CaptureNotInstalled(format!(
                "the change table {CHANGE} does not exist: run `ebis setup-source` for this source"
            )));
        }
        for t in self.tables.iter().flatten() {
            let args: Option<Vec<u8>> = client
                .query_opt(
                    "SELECT tgargs FROM pg_trigger WHERE tgrelid = $1 AND tgname = 'ebis_capture' AND tgenabled <> 'D'",
                    &[&t.located.oid],
                )
                .await
                .map_err(|e| classify(e, Some(&t.plan.table)))?
                .map(|r| r.get(0));
            let Some(args) = args else {
                return Err(SourceError::CaptureNotInstalled(format!(
                    "table {} has no enabled ebis capture trigger: run `ebis setup-source` for this source",
                    t.plan.table
                )));
            };
            let args = trigger_args(&args);
            let (logs_as, keys) = match args.split_first() {
                Some((first, rest)) => (first.as_str(), rest),
                None => ("", &[][..]),
            };
            if !logs_as.eq_ignore_ascii_case(&t.plan.table) {
                return Err(SourceError::CaptureNotInstalled(format!(
                    "table {}'s ebis trigger logs its changes as {logs_as} (the table was renamed, or the mapping names it differently): run `ebis setup-source` for this source with --apply",
                    t.plan.table
                )));
            }
            if keys != t.key_names.as_slice() {
                return Err(SourceError::CaptureNotInstalled(format!(
                    "table {}'s ebis trigger logs key ({}), the mappings read key ({}): run `ebis setup-source` for this source with --apply",
                    t.plan.table,
                    keys.join(", "),
                    t.key_names.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// A trigger's arguments from `pg_trigger.tgargs` (each ends with a NUL byte).
fn trigger_args(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn trigger_arguments_are_split_at_their_nul_bytes() {
        assert_eq!(
            super::trigger_args(b"KIT_ENT\0id\0regno\0"),
            ["KIT_ENT", "id", "regno"]
        );
        assert!(super::trigger_args(b"").is_empty());
    }
}
