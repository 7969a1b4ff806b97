//! One timestamp poll, whatever the dialect: each table's rows after its (modified, key)
//! mark and no later than the source's clock, plus the overlap window below the mark
//! re-read for transactions that committed late, with rows already returned skipped (they
//! are known by their modified time). Every change of the read carries one version stamp,
//! newer than any earlier read's; the rows' modified times only order and filter.

use chrono::{DateTime, NaiveDateTime, Utc};
use ebis_source::{
    Batch, Change, Clock, MarkValue, Op, Position, Row, SourceError, TableMark, Value, key_text,
};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

/// What a connector supplies for timestamp capture. Tables are the captured tables, by
/// index in plan order.
pub trait TimestampReader: Send {
    /// The source's clock now.
    fn clock(&mut self) -> impl Future<Output = Result<Clock, SourceError>> + Send;

    /// How many captured tables there are.
    fn table_count(&self) -> usize;

    /// The name of captured table `index`, as the mappings name it.
    fn table_name(&self, index: usize) -> String;

    /// Whether table `index` has a modified column.
    fn has_modified(&self, index: usize) -> bool;

    /// A row's key values, in the mapping's key order.
    fn key_of(&self, index: usize, row: &Row) -> Vec<Value>;

    /// A row's modified value.
    fn modified_of(&self, index: usize, row: &Row) -> Option<Value>;

    /// Rows ordered by (modified, key) after the mark (`None`: from the first) and with a
    /// modified value no later than `upto`, at most `limit`.
    fn after_mark(
        &mut self,
        index: usize,
        mark: Option<&Value>,
        key: &[Value],
        upto: &Value,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Row>, SourceError>> + Send;

    /// Rows with a modified value in `[from, to]`, at most `limit`.
    fn modified_between(
        &mut self,
        index: usize,
        from: &Value,
        to: &Value,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Row>, SourceError>> + Send;

    /// Seconds the source's wall clock is ahead of UTC, to turn a modified time into an
    /// instant.
    fn utc_offset(&self) -> i64;
}

/// The rows recently returned, so the overlap window returns only rows not seen yet.
/// Valid only while each poll continues from the marks the previous one returned: read
/// from any other position (a stored one, after a failed apply) it is forgotten.
#[derive(Debug, Default)]
pub struct OverlapWindow {
    /// Per table: key text → modified time (µs) of the row returned.
    seen: HashMap<String, HashMap<String, i64>>,
    /// The marks the last poll returned.
    returned: Option<BTreeMap<String, TableMark>>,
}

impl OverlapWindow {
    /// An empty window (nothing returned yet).
    pub fn new() -> OverlapWindow {
        OverlapWindow::default()
    }
}

/// One poll after `after` (a timestamp position), at most about `limit` rows, re-reading
/// `overlap` below each mark.
pub async fn poll<R: TimestampReader>(
    reader: &mut R,
    after: &Position,
    limit: usize,
    overlap: Duration,
    window: &mut OverlapWindow,
) -> Result<Batch, SourceError> {
    let Position::Timestamp { tables: marks, .. } = after else {
        return Err(SourceError::BadPosition(format!(
            "position `{}` is not a timestamp position",
            after.summary()
        )));
    };
    let clock = reader.clock().await?;
    // Every row of this read gets one stamp, newer than any earlier read's.
    let stamp = after.next_stamp(clock.utc);
    let upto = Value::DateTime(clock.local);
    let count = reader.table_count();
    let per_table = (limit / count.max(1)).max(100);
    let overlap = chrono::Duration::from_std(overlap).unwrap_or_default();
    if !window
        .returned
        .as_ref()
        .is_some_and(|r| same_marks(r, marks))
    {
        window.seen.clear();
    }
    let mut next = marks.clone();
    let mut changes = Vec::new();
    let mut full = false;
    let with_modified: Vec<usize> = (0..count).filter(|t| reader.has_modified(*t)).collect();
    for t in with_modified {
        let name = reader.table_name(t);
        let mark = marks.get(&name).cloned().unwrap_or_default();
        let mark_value = mark.modified.map(Value::DateTime);
        let key: Vec<Value> = mark.key.iter().map(Value::from).collect();
        let mut rows = Vec::new();
        if let Some(m) = mark.modified {
            let from = Value::DateTime(m - overlap);
            rows.extend(
                reader
                    .modified_between(t, &from, &Value::DateTime(m), per_table * 4)
                    .await?,
            );
        }
        let fresh = reader
            .after_mark(t, mark_value.as_ref(), &key, &upto, per_table)
            .await?;
        full |= fresh.len() >= per_table;
        let mut new_mark = mark.clone();
        if let Some(last) = fresh.last() {
            new_mark.modified = reader.modified_of(t, last).and_then(|v| as_datetime(&v));
            new_mark.key = reader.key_of(t, last).iter().map(MarkValue::from).collect();
        }
        rows.extend(fresh);
        let seen = window.seen.entry(name.clone()).or_default();
        for row in rows {
            let Some(modified) = reader.modified_of(t, &row).and_then(|v| as_datetime(&v)) else {
                continue; // NULL modified time: only a snapshot sees such rows
            };
            // Rows already returned are known by their modified time.
            let at = modified.and_utc().timestamp_micros();
            let key = reader.key_of(t, &row);
            let kt = key_text(&key);
            if seen.get(&kt) == Some(&at) {
                continue;
            }
            seen.insert(kt, at);
            let commit = modified.and_utc() - chrono::Duration::seconds(reader.utc_offset());
            changes.push(Change {
                table: name.clone(),
                op: Op::Upsert,
                key,
                row,
                version: stamp,
                commit_time: Some(commit),
            });
        }
        if let Some(m) = new_mark.modified {
            let floor = (m - overlap).and_utc().timestamp_micros();
            seen.retain(|_, v| *v >= floor);
        }
        next.insert(name, new_mark);
    }
    window.returned = Some(next.clone());
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

/// The head: each table's newest modified time, never past the source's clock (a row
/// dated in the future would otherwise hide every ordinary write until then), and a stamp
/// from the source's clock.
pub fn head(clock: Clock, newest: Vec<(String, Option<Value>)>) -> Position {
    let tables = newest
        .into_iter()
        .map(|(table, v)| {
            let modified = v.and_then(|v| as_datetime(&v)).map(|m| m.min(clock.local));
            (
                table,
                TableMark {
                    modified,
                    ..TableMark::default()
                },
            )
        })
        .collect();
    Position::Timestamp {
        tables,
        version: clock.utc.timestamp_micros(),
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

/// A modified value as a wall-clock time (a DATE is its midnight).
pub fn as_datetime(v: &Value) -> Option<NaiveDateTime> {
    match v {
        Value::DateTime(t) => Some(*t),
        Value::Date(d) => d.and_hms_opt(0, 0, 0),
        _ => None,
    }
}

/// The instant a wall-clock value stands for, `offset` seconds ahead of UTC.
pub fn instant(local: NaiveDateTime, offset: i64) -> DateTime<Utc> {
    local.and_utc() - chrono::Duration::seconds(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::block_on;
    use chrono::NaiveDate;

    /// One table in memory with a modified column: what a connector's primitives return.
    struct Fake {
        rows: Vec<(i64, NaiveDateTime)>,
        now: NaiveDateTime,
    }

    fn row(k: i64, m: NaiveDateTime) -> Row {
        let mut r = Row::new();
        r.push("ID", Value::Int(k));
        r.push("MODIFIED", Value::DateTime(m));
        r
    }

    fn at(h: u32, m: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 12, 1)
            .and_then(|d| d.and_hms_opt(h, m, s))
            .expect("a time")
    }

    impl TimestampReader for Fake {
        async fn clock(&mut self) -> Result<Clock, SourceError> {
            Ok(Clock {
                utc: instant(self.now, 8 * 3600),
                local: self.now,
            })
        }
        fn table_count(&self) -> usize {
            1
        }
        fn table_name(&self, _: usize) -> String {
            "E_BASEINFO".to_owned()
        }
        fn has_modified(&self, _: usize) -> bool {
            true
        }
        fn key_of(&self, _: usize, row: &Row) -> Vec<Value> {
            vec![row.get("ID").cloned().unwrap_or(Value::Null)]
        }
        fn modified_of(&self, _: usize, row: &Row) -> Option<Value> {
            row.get("MODIFIED").cloned()
        }
        async fn after_mark(
            &mut self,
            _: usize,
            mark: Option<&Value>,
            key: &[Value],
            upto: &Value,
            limit: usize,
        ) -> Result<Vec<Row>, SourceError> {
            let mark = mark.and_then(as_datetime);
            let key = match key.first() {
                Some(Value::Int(k)) => *k,
                _ => i64::MIN,
            };
            let upto = as_datetime(upto).expect("a time");
            let mut rows: Vec<(i64, NaiveDateTime)> = self
                .rows
                .iter()
                .copied()
                .filter(|(k, m)| *m <= upto && mark.is_none_or(|mk| (*m, *k) > (mk, key)))
                .collect();
            rows.sort_by_key(|(k, m)| (*m, *k));
            Ok(rows
                .into_iter()
                .take(limit)
                .map(|(k, m)| row(k, m))
                .collect())
        }
        async fn modified_between(
            &mut self,
            _: usize,
            from: &Value,
            to: &Value,
            _: usize,
        ) -> Result<Vec<Row>, SourceError> {
            let (from, to) = (as_datetime(from), as_datetime(to));
            Ok(self
                .rows
                .iter()
                .filter(|(_, m)| Some(*m) >= from && Some(*m) <= to)
                .map(|(k, m)| row(*k, *m))
                .collect())
        }
        fn utc_offset(&self) -> i64 {
            8 * 3600
        }
    }

    #[test]
    fn a_late_commit_inside_the_overlap_is_read_once_and_rows_ahead_of_the_clock_wait() {
        let mut fake = Fake {
            rows: vec![(1, at(10, 0, 0)), (2, at(10, 0, 5)), (9, at(11, 0, 0))],
            now: at(10, 0, 10),
        };
        let mut window = OverlapWindow::new();
        let start = Position::Timestamp {
            tables: BTreeMap::new(),
            version: 0,
        };
        let first = block_on(poll(
            &mut fake,
            &start,
            100,
            Duration::from_secs(30),
            &mut window,
        ))
        .expect("a batch");
        let keys = |b: &Batch| b.changes.iter().map(|c| c.key.clone()).collect::<Vec<_>>();
        // Row 9 is dated ahead of the source's clock: not read yet.
        assert_eq!(keys(&first), [vec![Value::Int(1)], vec![Value::Int(2)]]);
        // A transaction that began earlier commits row 3 dated before the mark.
        fake.rows.push((3, at(10, 0, 2)));
        fake.now = at(10, 0, 20);
        let second = block_on(poll(
            &mut fake,
            &first.position,
            100,
            Duration::from_secs(30),
            &mut window,
        ))
        .expect("a batch");
        assert_eq!(keys(&second), [vec![Value::Int(3)]], "only the late row");
        let (Position::Timestamp { version: v1, .. }, Position::Timestamp { version: v2, .. }) =
            (&first.position, &second.position)
        else {
            panic!("timestamp positions");
        };
        assert!(v2 > v1, "each read stamps newer versions");
        assert!(second.changes.iter().all(|c| c.version == *v2));
        // Commit times are instants: the wall clock less the source's offset.
        assert_eq!(
            second.changes[0].commit_time,
            Some(instant(at(10, 0, 2), 8 * 3600))
        );
    }

    #[test]
    fn the_head_never_passes_the_clock() {
        let clock = Clock {
            utc: instant(at(10, 0, 0), 0),
            local: at(10, 0, 0),
        };
        let Position::Timestamp { tables, .. } = head(
            clock,
            vec![("E_BASEINFO".to_owned(), Some(Value::DateTime(at(23, 0, 0))))],
        ) else {
            panic!("a timestamp position");
        };
        assert_eq!(tables["E_BASEINFO"].modified, Some(at(10, 0, 0)));
    }
}
