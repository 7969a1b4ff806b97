//! Timestamp capture on MySQL/MariaDB: rows after each table's (modified, key) mark and
//! no later than the source's clock, the overlap window re-read for transactions that
//! committed late (rows already returned skipped), one version stamp per read, and the
//! head each table's newest modified time gives.

use crate::MysqlSource;
use crate::error::classify;
use chrono::NaiveDateTime;
use ebis_source::{Batch, Clock, MarkValue, Position, SourceError, TableMark, Value, key_text};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use std::collections::BTreeMap;
use std::time::Duration;

impl MysqlSource {
    /// The source's clock: UTC and its own wall clock.
    pub(crate) async fn clock_on(conn: &mut Conn) -> Result<Clock, SourceError> {
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

    pub(crate) async fn timestamp_changes(
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
    /// Each table's newest modified time, never past the source's clock, and a stamp.
    pub(crate) async fn timestamp_head(
        &mut self,
        conn: &mut Conn,
    ) -> Result<Position, SourceError> {
        let clock = Self::clock_on(conn).await?;
        let mut tables = BTreeMap::new();
        for t in self.tables.iter().flatten() {
            // Never past the source's own clock: a row dated in the future would
            // otherwise hide every ordinary write until then.
            let newest = t
                .newest(conn)
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

/// Whether two sets of timestamp marks point at the same rows (when keys were last
/// compared does not matter).
fn same_marks(a: &BTreeMap<String, TableMark>, b: &BTreeMap<String, TableMark>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ta, ma), (tb, mb))| ta == tb && ma.modified == mb.modified && ma.key == mb.key)
}

fn as_datetime(v: &Value) -> Option<NaiveDateTime> {
    match v {
        Value::DateTime(t) => Some(*t),
        Value::Date(d) => d.and_hms_opt(0, 0, 0),
        _ => None,
    }
}
