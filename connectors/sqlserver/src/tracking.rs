//! Change Tracking capture: each poll reads, per captured table,
//! `CHANGETABLE(CHANGES t, @stored)` up to the current version (the server's own record
//! of which rows changed, one row per key with its newest change), then the rows as they
//! are now by key — a row gone is a delete — every change stamped with the version read.
//! Versions are assigned at commit, so nothing commits behind a version already read and
//! there are no gaps to await. Before reading, each table's minimum valid version is
//! checked: a stored version below it means the changes were cleaned up
//! (`CHANGE_RETENTION`) while ebis was behind, and the position has expired.
//!
//! The version is read before the rows: a row changed in between is read in its newer
//! state and read again by the next poll — at least once, never lost. Without snapshot
//! isolation a snapshot is not one point in time either; it starts from a version taken
//! before it, so the stream that follows covers every change made while it ran.

use crate::connect::{Conn, classify};
use crate::table::{Table, literal, quote};
use crate::{SqlServerSource, scalar};
use ebis_capture::changelog::{Latest, RowReader, read_latest};
use ebis_source::{Batch, Position, Row, SourceError, Value};
use std::collections::HashMap;

/// The rows of captured tables by key.
struct Rows<'a> {
    conn: &'a mut Conn,
    tables: &'a [Table],
}

impl RowReader for Rows<'_> {
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

/// One table's changes after `prev` up to `upto` (at most `limit`): version and key parts.
async fn read_changes(
    conn: &mut Conn,
    t: &Table,
    limit: Option<usize>,
    prev: i64,
    upto: i64,
) -> Result<Vec<(i64, Vec<Option<String>>)>, SourceError> {
    let rows = conn
        .query(changes_sql(t, limit), &[&prev, &upto])
        .await
        .map_err(|e| classify(e, Some(&t.plan.table)))?
        .into_first_result()
        .await
        .map_err(|e| classify(e, Some(&t.plan.table)))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<i64, _>(0).unwrap_or(0),
                (1..=t.key_columns.len())
                    .map(|k| r.get::<&str, _>(k).map(str::to_owned))
                    .collect(),
            )
        })
        .collect())
}

/// The statement reading one table's changes after `@P1` up to `@P2`: version and key
/// columns (as text, as the change table logs them).
pub fn changes_sql(t: &Table, limit: Option<usize>) -> String {
    let keys = t
        .key_columns
        .iter()
        .map(|c| format!("CAST(ct.{} AS NVARCHAR(450))", quote(&c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    let top = limit.map(|n| format!("TOP ({n}) ")).unwrap_or_default();
    format!(
        "SELECT {top}ct.SYS_CHANGE_VERSION, {keys} FROM CHANGETABLE(CHANGES {}, @P1) AS ct WHERE ct.SYS_CHANGE_VERSION <= @P2 ORDER BY ct.SYS_CHANGE_VERSION",
        t.quoted
    )
}

/// Where a table's changes (ordered by version, `limit + 1` read) must stop so a batch
/// holds whole versions only: below the version of the first change past `limit` —
/// everything of that version waits — unless nothing else fits (one huge transaction is
/// read whole). `None` when the batch is not full.
pub fn whole_versions<T>(entries: &[(i64, T)], limit: usize) -> Option<i64> {
    let cut = entries.get(limit)?.0;
    if entries.iter().any(|(v, _)| *v < cut) {
        Some(cut - 1)
    } else {
        Some(cut)
    }
}

impl SqlServerSource {
    /// The current Change Tracking version (`None`: not enabled on the database).
    async fn current_version(conn: &mut Conn) -> Result<i64, SourceError> {
        scalar::<i64>(conn, "SELECT CHANGE_TRACKING_CURRENT_VERSION()")
            .await?
            .ok_or_else(|| {
                SourceError::CaptureNotInstalled(
                    "Change Tracking is not enabled on this database: run `ebis setup-source` for this source".to_owned(),
                )
            })
    }

    /// Each captured table's minimum valid version (`None`: tracking not enabled on it).
    async fn min_valid(conn: &mut Conn, t: &Table) -> Result<Option<i64>, SourceError> {
        scalar::<i64>(
            conn,
            &format!(
                "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID({}))",
                literal(&t.quoted)
            ),
        )
        .await
    }

    pub(crate) async fn check_tracking(&mut self, conn: &mut Conn) -> Result<(), SourceError> {
        Self::current_version(conn).await?;
        for t in self.tables.iter().flatten() {
            if Self::min_valid(conn, t).await?.is_none() {
                return Err(SourceError::CaptureNotInstalled(format!(
                    "Change Tracking is not enabled on table {} (or the account lacks VIEW CHANGE TRACKING on it): run `ebis setup-source` for this source",
                    t.plan.table
                )));
            }
        }
        Ok(())
    }

    pub(crate) async fn tracking_head(&mut self, conn: &mut Conn) -> Result<Position, SourceError> {
        Ok(Position::ChangeTracking {
            version: Self::current_version(conn).await?,
        })
    }

    pub(crate) async fn tracking_changes(
        &mut self,
        prev: i64,
        limit: usize,
    ) -> Result<Batch, SourceError> {
        self.tables().await?;
        let mut conn = self.conn().await?;
        let tables = self.tables.as_deref().unwrap_or(&[]);
        let read_at = crate::clock_on(&mut conn).await?.utc;
        let current = Self::current_version(&mut conn).await?;
        for t in tables {
            match Self::min_valid(&mut conn, t).await? {
                None => {
                    return Err(SourceError::CaptureNotInstalled(format!(
                        "Change Tracking is not enabled on table {} any more: run `ebis setup-source` for this source",
                        t.plan.table
                    )));
                }
                Some(min) if prev < min => {
                    return Err(SourceError::PositionExpired(format!(
                        "Change Tracking's minimum valid version of {} is {min}, above the stored version {prev}: its changes were cleaned up (CHANGE_RETENTION) while ebis was behind",
                        t.plan.table
                    )));
                }
                Some(_) => {}
            }
        }
        // Read up to the current version; if a table has more changes than a batch, stop
        // at the last whole version below the cut.
        let mut upto = current;
        let mut found: Vec<(usize, i64, Vec<Option<String>>)> = Vec::new();
        for (i, t) in tables.iter().enumerate() {
            let mut entries = read_changes(&mut conn, t, Some(limit + 1), prev, upto).await?;
            if let Some(cut) = whole_versions(&entries, limit) {
                upto = upto.min(cut);
                if entries.iter().all(|(v, _)| *v == cut) {
                    // One transaction larger than a batch: all of it, or none.
                    entries = read_changes(&mut conn, t, None, prev, cut).await?;
                }
            }
            found.extend(entries.into_iter().map(|(v, k)| (i, v, k)));
        }
        found.retain(|(_, v, _)| *v <= upto);
        found.sort_by_key(|(_, v, _)| *v);
        let full = upto < current;
        let mut latest: Vec<Latest> = Vec::new();
        let mut seen: HashMap<(usize, String), usize> = HashMap::new();
        for (t, v, parts) in found {
            let l = Latest::new(t, tables[t].parse_key(&parts), v, None);
            match seen.get(&(t, l.key_text.clone())) {
                Some(&at) => latest[at].seq = v,
                None => {
                    seen.insert((t, l.key_text.clone()), latest.len());
                    latest.push(l);
                }
            }
        }
        let mut rows = Rows {
            conn: &mut conn,
            tables,
        };
        let changes = read_latest(&mut rows, latest, upto).await?;
        Ok(Batch {
            changes,
            position: Position::ChangeTracking { version: upto },
            gap_events: Vec::new(),
            read_at: if full { None } else { Some(read_at) },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_batch_stops_below_the_version_it_would_split() {
        // Versions 5, 6, 6, 7 with room for 2: version 6 is not split, so stop at 5.
        let entries = [(5, ()), (6, ()), (6, ()), (7, ())];
        assert_eq!(whole_versions(&entries, 2), Some(5));
        // One transaction larger than a batch is read whole.
        let huge = [(9, ()), (9, ()), (9, ())];
        assert_eq!(whole_versions(&huge, 1), Some(9));
        // Room for all: no cut.
        assert_eq!(whole_versions(&entries, 4), None);
    }
}
