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

    /// Whether table `index` is stamped by the server's commit number (Oracle's
    /// `ORA_ROWSCN`) rather than a modified time: its rows are read after the mark's
    /// number up to the number read at the start of the poll, ordered by (number, key),
    /// with [`TimestampReader::modified_of`] giving the number as an integer. Numbers are
    /// assigned at commit, so such a table needs no overlap window.
    fn commit_stamped(&self, _index: usize) -> bool {
        false
    }

    /// The server's commit number now (asked only when some table is commit-stamped).
    fn commit_number(&mut self) -> impl Future<Output = Result<i64, SourceError>> + Send {
        async {
            Err(SourceError::Query(
                "this source has no commit numbers to stamp rows with".to_owned(),
            ))
        }
    }
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
    let stamped: Vec<usize> = (0..count).filter(|t| reader.commit_stamped(*t)).collect();
    if !stamped.is_empty() {
        let upto = reader.commit_number().await?;
        for t in stamped {
            let name = reader.table_name(t);
            let mark = marks.get(&name).cloned().unwrap_or_default();
            let after = mark.scn.map(Value::Int);
            let key: Vec<Value> = mark.key.iter().map(Value::from).collect();
            let rows = reader
                .after_mark(t, after.as_ref(), &key, &Value::Int(upto), per_table)
                .await?;
            let page_full = rows.len() >= per_table;
            full |= page_full;
            let mut new_mark = mark.clone();
            match rows.last() {
                // Stopped inside the range: go on after the last row read.
                Some(last) if page_full => {
                    new_mark.scn = match reader.modified_of(t, last) {
                        Some(Value::Int(n)) => Some(n),
                        _ => mark.scn,
                    };
                    new_mark.key = reader.key_of(t, last).iter().map(MarkValue::from).collect();
                }
                // Everything committed up to `upto` is read.
                _ => {
                    new_mark.scn = Some(upto.max(mark.scn.unwrap_or(0)));
                    new_mark.key = Vec::new();
                }
            }
            for row in rows {
                let key = reader.key_of(t, &row);
                changes.push(Change {
                    table: name.clone(),
                    op: Op::Upsert,
                    key,
                    row,
                    version: stamp,
                    commit_time: None,
                });
            }
            next.insert(name, new_mark);
        }
    }
    let with_modified: Vec<usize> = (0..count)
        .filter(|t| reader.has_modified(*t) && !reader.commit_stamped(*t))
        .collect();
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
        && a.iter().zip(b).all(|((ta, ma), (tb, mb))| {
            ta == tb && ma.modified == mb.modified && ma.key == mb.key && ma.scn == mb.scn
        })
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

    /// One table stamped by commit numbers: (key, number) rows and the server's number.
    struct Scn {
        rows: Vec<(i64, i64)>,
        now: i64,
    }

    impl TimestampReader for Scn {
        async fn clock(&mut self) -> Result<Clock, SourceError> {
            Ok(Clock {
                utc: instant(at(10, 0, 0), 0),
                local: at(10, 0, 0),
            })
        }
        fn table_count(&self) -> usize {
            1
        }
        fn table_name(&self, _: usize) -> String {
            "DJ_NSRXX".to_owned()
        }
        fn has_modified(&self, _: usize) -> bool {
            true
        }
        fn key_of(&self, _: usize, row: &Row) -> Vec<Value> {
            vec![row.get("ID").cloned().unwrap_or(Value::Null)]
        }
        fn modified_of(&self, _: usize, row: &Row) -> Option<Value> {
            row.get("ORA_ROWSCN").cloned()
        }
        async fn after_mark(
            &mut self,
            _: usize,
            mark: Option<&Value>,
            key: &[Value],
            upto: &Value,
            limit: usize,
        ) -> Result<Vec<Row>, SourceError> {
            let (Some(Value::Int(upto)), mark) = (Some(upto), mark) else {
                panic!("numbers, not times");
            };
            let mark = match mark {
                Some(Value::Int(m)) => Some(*m),
                None => None,
                Some(other) => panic!("a number mark, not {other:?}"),
            };
            let key = match key.first() {
                Some(Value::Int(k)) => *k,
                _ => i64::MIN,
            };
            let mut rows: Vec<(i64, i64)> = self
                .rows
                .iter()
                .copied()
                .filter(|(k, n)| n <= upto && mark.is_none_or(|m| (*n, *k) > (m, key)))
                .collect();
            rows.sort_by_key(|(k, n)| (*n, *k));
            Ok(rows
                .into_iter()
                .take(limit)
                .map(|(k, n)| {
                    let mut r = Row::new();
                    r.push("ID", Value::Int(k));
                    r.push("ORA_ROWSCN", Value::Int(n));
                    r
                })
                .collect())
        }
        async fn modified_between(
            &mut self,
            _: usize,
            _: &Value,
            _: &Value,
            _: usize,
        ) -> Result<Vec<Row>, SourceError> {
            panic!("a commit-stamped table needs no overlap window")
        }
        fn utc_offset(&self) -> i64 {
            0
        }
        fn commit_stamped(&self, _: usize) -> bool {
            true
        }
        async fn commit_number(&mut self) -> Result<i64, SourceError> {
            Ok(self.now)
        }
    }

    #[test]
    fn commit_stamped_tables_read_after_the_number_and_page_inside_one() {
        // 150 rows committed together at number 500, one at 520 after the poll's number.
        let mut rows: Vec<(i64, i64)> = (1..=150).map(|k| (k, 500)).collect();
        rows.push((999, 520));
        let mut scn = Scn { rows, now: 510 };
        let mut window = OverlapWindow::new();
        let start = Position::Timestamp {
            tables: BTreeMap::new(),
            version: 0,
        };
        let poll1 = |scn: &mut Scn, p: &Position, w: &mut OverlapWindow| {
            block_on(poll(scn, p, 100, Duration::from_secs(30), w)).expect("a batch")
        };
        let first = poll1(&mut scn, &start, &mut window);
        assert_eq!(first.changes.len(), 100, "a full page");
        assert!(first.read_at.is_none(), "more to read");
        let Position::Timestamp { tables, .. } = &first.position else {
            panic!("a timestamp position");
        };
        assert_eq!(tables["DJ_NSRXX"].scn, Some(500), "inside number 500");
        assert_eq!(tables["DJ_NSRXX"].key, vec![MarkValue::Int(100)]);
        let second = poll1(&mut scn, &first.position, &mut window);
        let keys: Vec<i64> = second
            .changes
            .iter()
            .map(|c| match c.key[0] {
                Value::Int(k) => k,
                _ => 0,
            })
            .collect();
        assert_eq!(keys, (101..=150).collect::<Vec<_>>(), "the rest, once");
        let Position::Timestamp { tables, .. } = &second.position else {
            panic!("a timestamp position");
        };
        assert_eq!(
            tables["DJ_NSRXX"].scn,
            Some(510),
            "read up to the poll's number"
        );
        assert!(tables["DJ_NSRXX"].key.is_empty());
        // The row at 520 comes once the server's number passes it.
        scn.now = 530;
        let third = poll1(&mut scn, &second.position, &mut window);
        assert_eq!(third.changes.len(), 1);
        assert_eq!(third.changes[0].key, vec![Value::Int(999)]);
        // Marks survive a restart: they are in the stored position.
        let json = serde_json::to_string(&third.position).expect("json");
        let back: Position = serde_json::from_str(&json).expect("back");
        assert_eq!(back, third.position);
    }
}
