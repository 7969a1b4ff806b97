//! One changelog poll, whatever the dialect: a change table filled by triggers (or a
//! dialect's own change records) is read after the stored sequence number and in every
//! open or watched gap; the newest entry per (table, key) decides which rows to fetch,
//! whole and current; a key whose row is gone is a delete. Every change of the poll
//! carries the poll's high sequence number as its version (a version stamps the read,
//! not the change: the rows are read now).

use crate::gaps::{self, GapRules};
use chrono::{DateTime, Utc};
use ebis_source::{Batch, Change, Gap, Op, Position, Row, SourceError, Value, key_text};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

/// Most gap ranges (open, then expired) re-read in one poll.
pub const MAX_GAP_RANGES: usize = 5_000;

/// One change-table entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeEntry {
    /// Its sequence number.
    pub seq: i64,
    /// The table it was logged for, as logged.
    pub table: String,
    /// The row's key values, in the mapping's key order.
    pub key: Vec<Value>,
    /// When it was logged (an instant), where the change table keeps it.
    pub at: Option<DateTime<Utc>>,
}

/// Reading captured tables' current rows by key: what turns logged keys into changes.
pub trait RowReader: Send {
    /// The name of captured table `index`, as the mappings name it.
    fn table_name(&self, index: usize) -> String;

    /// The current rows of captured table `index` for these keys, each with its key
    /// (keys the table no longer has are left out).
    fn rows_by_keys(
        &mut self,
        index: usize,
        keys: &[Vec<Value>],
    ) -> impl Future<Output = Result<Vec<(Vec<Value>, Row)>, SourceError>> + Send;
}

/// What a connector supplies for changelog capture.
pub trait ChangelogReader: RowReader {
    /// The source's clock now, as an instant.
    fn now(&mut self) -> impl Future<Output = Result<DateTime<Utc>, SourceError>> + Send;

    /// An instant before which every transaction that could still log an entry has
    /// ended, when the server can tell (see [`gaps::advance`]); `None` when it cannot.
    fn settled_before(
        &mut self,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, SourceError>> + Send;

    /// Entries with a sequence number above `after`, in order, at most `limit`.
    fn entries_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ChangeEntry>, SourceError>> + Send;

    /// The highest sequence number the change table holds (0 when it is empty).
    fn highest(&mut self) -> impl Future<Output = Result<i64, SourceError>> + Send;

    /// The sequence number the change table will assign next, where the server can tell
    /// (asked only when the table holds nothing at or above the position: emptied by a
    /// purge, its numbering goes on; truncated or recreated, it starts again).
    fn next_assigned(&mut self) -> impl Future<Output = Result<Option<i64>, SourceError>> + Send;

    /// Entries whose sequence numbers fall in the given inclusive ranges.
    fn entries_in(
        &mut self,
        ranges: &[(i64, i64)],
    ) -> impl Future<Output = Result<Vec<ChangeEntry>, SourceError>> + Send;

    /// The captured table an entry names (its index), or `None` for a table no mapping
    /// reads.
    fn captured(&self, logged_as: &str) -> Option<usize>;

    /// Whether a table no mapping reads still exists at the source.
    fn table_exists(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<bool, SourceError>> + Send;
}

/// The change table's head: its highest sequence number, with the numbers missing just
/// below it (from `recent`, the numbers present in a window below the head) as gaps —
/// transactions open while a snapshot starts. `now` is read before the numbers.
pub fn head(max: i64, recent: &[i64], now: DateTime<Utc>, rules: GapRules) -> Position {
    let start = recent.first().copied().unwrap_or(max).saturating_sub(1);
    let adv = gaps::advance(start, &[], &[], recent, now, rules, None);
    Position::Changelog {
        seq: max,
        gaps: adv.gaps,
        expired: Vec::new(),
    }
}

/// Tables no mapping reads that were seen to exist (their entries are skipped); kept by
/// the connector between polls, cleared when it is checked again.
pub type KnownUnmapped = HashSet<String>;

/// One poll after `prev` with its open `gaps` and watched `expired` gaps, at most about
/// `limit` entries.
pub async fn poll<R: ChangelogReader>(
    reader: &mut R,
    prev: i64,
    gaps: &[Gap],
    expired: &[Gap],
    limit: usize,
    rules: GapRules,
    unmapped_ok: &mut KnownUnmapped,
) -> Result<Batch, SourceError> {
    // Which transactions could still commit is asked before anything is read, so a gap
    // they leave after that shows as settled only if it truly is.
    let settled_before = if gaps.is_empty() && expired.is_empty() {
        None
    } else {
        reader.settled_before().await?
    };
    let read_at = reader.now().await?;
    let mut entries = reader.entries_after(prev, limit).await?;
    let full = entries.len() >= limit;
    // Nothing after the position: the change table may have been truncated or recreated
    // (its numbers start again below the position, and every change logged since would be
    // passed over for good). A head below the position says so.
    if entries.is_empty() && prev > 0 {
        let highest = reader.highest().await?;
        let restarted = highest < prev
            && match reader.next_assigned().await? {
                Some(next) => next <= prev,
                None => true,
            };
        if restarted {
            return Err(SourceError::PositionExpired(format!(
                "the change table's highest sequence number is {highest}, below the stored position {prev}: it was truncated or recreated, so the changes logged in between are gone"
            )));
        }
    }
    // Open gaps first: they hold lag back. Expired ones are watched for late commits.
    let ranges: Vec<(i64, i64)> = gaps
        .iter()
        .chain(expired)
        .take(MAX_GAP_RANGES)
        .map(|g| (g.from, g.to))
        .collect();
    if !ranges.is_empty() {
        entries.extend(reader.entries_in(&ranges).await?);
    }
    entries.sort_by_key(|e| e.seq);
    entries.dedup_by_key(|e| e.seq);
    let seen: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let adv = gaps::advance(prev, gaps, expired, &seen, read_at, rules, settled_before);
    let version = adv.seq;

    // The newest entry per (table, key): the row is read whole, so one fetch covers all.
    let mut latest: Vec<Latest> = Vec::new();
    let mut index: HashMap<(usize, String), usize> = HashMap::new();
    let mut unmapped: Vec<String> = Vec::new();
    for e in entries {
        let Some(t) = reader.captured(&e.table) else {
            if !unmapped.contains(&e.table) {
                unmapped.push(e.table);
            }
            continue;
        };
        let kt = key_text(&e.key);
        match index.get(&(t, kt.clone())) {
            Some(&i) => {
                latest[i].seq = e.seq;
                latest[i].at = e.at;
            }
            None => {
                index.insert((t, kt.clone()), latest.len());
                latest.push(Latest {
                    table: t,
                    key_text: kt,
                    key: e.key,
                    seq: e.seq,
                    at: e.at,
                    logged: None,
                });
            }
        }
    }
    // Entries logged for a table that no longer exists were logged by triggers a rename
    // took along (or by a table dropped since): skipping them would lose them.
    for name in unmapped {
        if unmapped_ok.contains(&name) {
            continue;
        }
        if reader.table_exists(&name).await? {
            unmapped_ok.insert(name);
            continue;
        }
        return Err(SourceError::CaptureNotInstalled(format!(
            "the change table holds changes logged for table {name}, which does not exist: it was renamed (its capture went with it) or dropped. If renamed, point the mappings at the new name and run `ebis setup-source` for this source with --apply: it moves capture there and relabels these changes, so none is lost. If dropped and no longer mapped, delete its entries from the change table"
        )));
    }
    let changes = read_latest(reader, latest, version).await?;
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

/// The newest entry of one (table, key).
#[derive(Clone, Debug)]
pub struct Latest {
    /// The captured table's index.
    pub table: usize,
    /// The key's canonical text.
    pub key_text: String,
    /// The key values.
    pub key: Vec<Value>,
    /// Its order (the entry's sequence number, or version).
    pub seq: i64,
    /// When it was logged, where known.
    pub at: Option<DateTime<Utc>>,
    /// What the log says the row became, where it says so whole (a binlog's full row
    /// image, read as a read of the row by key would give it): then the row is not read
    /// again. `None`: the row is read by key ([`read_latest`]).
    pub logged: Option<Logged>,
}

/// A row's state as the log wrote it at that change.
#[derive(Clone, Debug, PartialEq)]
pub enum Logged {
    /// The row as the change left it, in the table's select-list order and reading.
    Row(Row),
    /// The change deleted the row (or moved it to another key).
    Deleted,
}

impl Latest {
    /// The newest entry of a key of captured table `table`.
    pub fn new(table: usize, key: Vec<Value>, seq: i64, at: Option<DateTime<Utc>>) -> Latest {
        Latest {
            table,
            key_text: key_text(&key),
            key,
            seq,
            at,
            logged: None,
        }
    }

    /// The entry with the row's state as the log gave it (`None`: read it by key).
    pub fn logged(mut self, logged: Option<Logged>) -> Latest {
        self.logged = logged;
        self
    }
}

/// How long a [`VisibleWait`] waits at most.
pub const VISIBLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The wait of capture from a log (binlog, logical decoding) until the transactions a
/// batch names are visible to new snapshots: the connector looks at the server, and
/// after each look that says not yet, [`VisibleWait::again`] pauses (1 ms, doubling up
/// to 50 ms), for at most [`VISIBLE_TIMEOUT`].
///
/// A server hands a transaction to log readers once it is in the log, a moment before
/// other sessions see its rows; [`read_latest`] at once could find an inserted row
/// missing (and make it a delete: the insert lost for good) or an updated one old.
pub struct VisibleWait {
    started: Instant,
    pause: Duration,
}

impl Default for VisibleWait {
    fn default() -> Self {
        VisibleWait {
            started: Instant::now(),
            pause: Duration::ZERO,
        }
    }
}

impl VisibleWait {
    /// Pauses before the next look; `false` (at once) when the time is up.
    pub async fn again(&mut self) -> bool {
        if self.started.elapsed() > VISIBLE_TIMEOUT {
            return false;
        }
        self.pause = (self.pause * 2).clamp(Duration::from_millis(1), Duration::from_millis(50));
        tokio::time::sleep(self.pause).await;
        true
    }

    /// How long it has paused so far, in milliseconds: 0 when the first look was enough.
    pub fn waited_ms(&self) -> u64 {
        if self.pause.is_zero() {
            0
        } else {
            u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
        }
    }
}

/// The changes for the newest entry of each key: the rows as they are now, read by key
/// table by table, in entry order; a key whose row is gone is a delete. An entry whose
/// state the log gave ([`Latest::logged`]) is not read: its row is the logged one.
/// Every change carries `version` (a version stamps the read).
pub async fn read_latest<R: RowReader>(
    reader: &mut R,
    mut latest: Vec<Latest>,
    version: i64,
) -> Result<Vec<Change>, SourceError> {
    let mut rows: HashMap<(usize, String), Row> = HashMap::new();
    let mut tables: Vec<usize> = latest
        .iter()
        .filter(|l| l.logged.is_none())
        .map(|l| l.table)
        .collect();
    tables.sort_unstable();
    tables.dedup();
    for t in tables {
        let keys: Vec<Vec<Value>> = latest
            .iter()
            .filter(|l| l.table == t && l.logged.is_none())
            .map(|l| l.key.clone())
            .collect();
        let found = reader.rows_by_keys(t, &keys).await.map_err(|e| match e {
            SourceError::MissingTable { table } => SourceError::CaptureNotInstalled(format!(
                "captured table {table} does not exist any more: if it was renamed, point its mappings at the new name and run `ebis setup-source` for this source with --apply (it relabels the changes logged meanwhile, so none is lost)"
            )),
            other => other,
        })?;
        for (key, row) in found {
            rows.insert((t, key_text(&key)), row);
        }
    }
    latest.sort_by_key(|l| l.seq);
    Ok(latest
        .into_iter()
        .map(|l| {
            let table = reader.table_name(l.table);
            let row = match l.logged {
                Some(Logged::Row(row)) => Some(row),
                Some(Logged::Deleted) => None,
                None => rows.remove(&(l.table, l.key_text)),
            };
            match row {
                Some(row) => Change {
                    table,
                    op: Op::Upsert,
                    key: l.key,
                    row,
                    version,
                    commit_time: l.at,
                },
                None => Change {
                    table,
                    op: Op::Delete,
                    key: l.key,
                    row: Row::new(),
                    version,
                    commit_time: l.at,
                },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::block_on;
    use ebis_source::GapFate;
    use std::time::Duration;

    const RULES: GapRules = GapRules {
        timeout: Duration::from_secs(60),
        watch: Duration::from_secs(600),
    };

    /// A change table and one captured table in memory: what a connector's primitives
    /// return, so the algorithm is tested without a server.
    struct Fake {
        entries: Vec<ChangeEntry>,
        rows: Vec<(Vec<Value>, Row)>,
        tables: Vec<&'static str>,
        existing: Vec<&'static str>,
        next: Option<i64>,
    }

    impl RowReader for Fake {
        fn table_name(&self, index: usize) -> String {
            self.tables[index].to_owned()
        }
        async fn rows_by_keys(
            &mut self,
            _index: usize,
            keys: &[Vec<Value>],
        ) -> Result<Vec<(Vec<Value>, Row)>, SourceError> {
            Ok(self
                .rows
                .iter()
                .filter(|(k, _)| keys.contains(k))
                .cloned()
                .collect())
        }
    }

    impl ChangelogReader for Fake {
        async fn now(&mut self) -> Result<DateTime<Utc>, SourceError> {
            Ok(DateTime::from_timestamp(1_150_000_000, 0).expect("t"))
        }
        async fn settled_before(&mut self) -> Result<Option<DateTime<Utc>>, SourceError> {
            Ok(None)
        }
        async fn entries_after(
            &mut self,
            after: i64,
            limit: usize,
        ) -> Result<Vec<ChangeEntry>, SourceError> {
            Ok(self
                .entries
                .iter()
                .filter(|e| e.seq > after)
                .take(limit)
                .cloned()
                .collect())
        }
        async fn highest(&mut self) -> Result<i64, SourceError> {
            Ok(self.entries.iter().map(|e| e.seq).max().unwrap_or(0))
        }
        async fn next_assigned(&mut self) -> Result<Option<i64>, SourceError> {
            Ok(self.next)
        }
        async fn entries_in(
            &mut self,
            ranges: &[(i64, i64)],
        ) -> Result<Vec<ChangeEntry>, SourceError> {
            Ok(self
                .entries
                .iter()
                .filter(|e| ranges.iter().any(|(a, b)| e.seq >= *a && e.seq <= *b))
                .cloned()
                .collect())
        }
        fn captured(&self, logged_as: &str) -> Option<usize> {
            self.tables.iter().position(|t| *t == logged_as)
        }
        async fn table_exists(&mut self, name: &str) -> Result<bool, SourceError> {
            Ok(self.existing.contains(&name))
        }
    }

    fn entry(seq: i64, table: &str, key: i64) -> ChangeEntry {
        ChangeEntry {
            seq,
            table: table.to_owned(),
            key: vec![Value::Int(key)],
            at: None,
        }
    }

    fn row(name: &str) -> Row {
        let mut r = Row::new();
        r.push("ENTNAME", Value::Text(name.to_owned()));
        r
    }

    /// A fake with one captured table and no gaps or expired gaps to re-read.
    fn fake(entries: Vec<ChangeEntry>) -> Fake {
        Fake {
            entries,
            rows: vec![],
            tables: vec!["E_BASEINFO"],
            existing: vec![],
            next: None,
        }
    }

    /// One poll after `prev`, no gaps.
    fn poll_after(fake: &mut Fake, prev: i64) -> Result<Batch, SourceError> {
        block_on(poll(
            fake,
            prev,
            &[],
            &[],
            100,
            RULES,
            &mut KnownUnmapped::new(),
        ))
    }

    #[test]
    fn newest_entry_per_key_a_row_gone_is_a_delete_and_gaps_are_kept() {
        let mut fake = Fake {
            entries: vec![
                entry(11, "E_BASEINFO", 1),
                entry(12, "E_BASEINFO", 2),
                entry(14, "E_BASEINFO", 1),
                entry(15, "OLD_UNMAPPED", 9),
            ],
            rows: vec![(vec![Value::Int(1)], row("乌海市甲公司"))],
            tables: vec!["E_BASEINFO"],
            existing: vec!["OLD_UNMAPPED"],
            next: None,
        };
        let mut ok = KnownUnmapped::new();
        let batch = block_on(poll(&mut fake, 10, &[], &[], 100, RULES, &mut ok)).expect("a batch");
        // Key 2 first (seq 12), then key 1 (its newest entry, seq 14).
        let ops: Vec<(Op, Vec<Value>)> = batch
            .changes
            .iter()
            .map(|c| (c.op, c.key.clone()))
            .collect();
        assert_eq!(
            ops,
            [
                (Op::Delete, vec![Value::Int(2)]),
                (Op::Upsert, vec![Value::Int(1)])
            ]
        );
        assert!(batch.changes.iter().all(|c| c.version == 15));
        let Position::Changelog { seq, gaps, .. } = &batch.position else {
            panic!("a changelog position");
        };
        assert_eq!(*seq, 15);
        assert_eq!(
            gaps.iter().map(|g| (g.from, g.to)).collect::<Vec<_>>(),
            [(13, 13)]
        );
        assert_eq!(batch.gap_events[0].fate, GapFate::Detected);
        assert!(
            ok.contains("OLD_UNMAPPED"),
            "an unmapped table that exists is skipped"
        );
    }

    #[test]
    fn entries_of_a_table_that_no_longer_exists_stop_the_poll() {
        let mut fake = fake(vec![entry(11, "E_RENAMED_AWAY", 1)]);
        let err = poll_after(&mut fake, 10).expect_err("refused");
        assert!(
            err.to_string()
                .contains("E_RENAMED_AWAY, which does not exist"),
            "{err}"
        );
    }

    #[test]
    fn a_change_table_truncated_below_the_position_expires_it() {
        let mut fake = fake(vec![entry(1, "E_BASEINFO", 1)]);
        let err = poll_after(&mut fake, 500).expect_err("expired");
        assert!(matches!(err, SourceError::PositionExpired(_)), "{err}");
        // Emptied by a purge, the numbering goes on: nothing is lost.
        fake.entries.clear();
        fake.next = Some(501);
        let batch = poll_after(&mut fake, 500).expect("resumes");
        assert!(batch.changes.is_empty());
    }

    #[test]
    fn the_head_awaits_numbers_missing_below_it() {
        let now = DateTime::from_timestamp(1_150_000_000, 0).expect("t");
        let Position::Changelog { seq, gaps, .. } = head(20, &[17, 18, 20], now, RULES) else {
            panic!("a changelog position");
        };
        assert_eq!(seq, 20);
        assert_eq!(
            gaps.iter().map(|g| (g.from, g.to)).collect::<Vec<_>>(),
            [(19, 19)]
        );
    }

    /// Reads rows by key and remembers which keys it was asked for.
    struct Asked {
        rows: Vec<(Vec<Value>, Row)>,
        asked: Vec<Vec<Value>>,
    }

    impl RowReader for Asked {
        fn table_name(&self, _index: usize) -> String {
            "ENT".to_owned()
        }
        async fn rows_by_keys(
            &mut self,
            _index: usize,
            keys: &[Vec<Value>],
        ) -> Result<Vec<(Vec<Value>, Row)>, SourceError> {
            self.asked.extend(keys.iter().cloned());
            Ok(self
                .rows
                .iter()
                .filter(|(k, _)| keys.contains(k))
                .cloned()
                .collect())
        }
    }

    #[test]
    fn a_state_the_log_gave_is_taken_as_it_is_and_only_the_other_keys_are_read() {
        let mut reader = Asked {
            rows: (1..=3).map(|k| (vec![Value::Int(k)], row("now"))).collect(),
            asked: Vec::new(),
        };
        let latest = vec![
            Latest::new(0, vec![Value::Int(1)], 1, None).logged(Some(Logged::Row(row("then")))),
            Latest::new(0, vec![Value::Int(2)], 2, None).logged(Some(Logged::Deleted)),
            Latest::new(0, vec![Value::Int(3)], 3, None),
            Latest::new(0, vec![Value::Int(4)], 4, None),
        ];
        let changes = block_on(read_latest(&mut reader, latest, 9)).expect("read");
        assert_eq!(reader.asked, [vec![Value::Int(3)], vec![Value::Int(4)]]);
        let seen: Vec<(Op, Option<&Value>)> = changes
            .iter()
            .map(|c| (c.op, c.row.get("ENTNAME")))
            .collect();
        assert_eq!(
            seen,
            [
                (Op::Upsert, Some(&Value::Text("then".to_owned()))),
                (Op::Delete, None),
                (Op::Upsert, Some(&Value::Text("now".to_owned()))),
                (Op::Delete, None),
            ]
        );
        assert!(changes.iter().all(|c| c.version == 9));
    }
}
