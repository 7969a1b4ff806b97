//! Where a source resumes: a closed set, one variant per capture mode.
//!
//! Positions are stored as JSON in the warehouse checkpoint, in the same transaction as the
//! data they cover. They carry everything a restart needs (open changelog gaps, per-table
//! timestamp marks), so no connector keeps durable state of its own.

use crate::Value;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The resume point of one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Position {
    /// Nothing captured yet: the pipeline snapshots the source first.
    Initial,
    /// Changelog capture: every change-table sequence number up to `seq` has been read,
    /// except those in `gaps`, which may still commit and are re-read on every poll, and
    /// those in `expired`, given up after the gap timeout but still watched for a while:
    /// a transaction longer than the timeout commits them late, and they are read then.
    Changelog {
        /// Highest sequence number read.
        seq: i64,
        /// Skipped sequence numbers below `seq` still awaited.
        #[serde(default)]
        gaps: Vec<Gap>,
        /// Gaps past their timeout, watched for late commits (`since` = when they expired).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        expired: Vec<Gap>,
    },
    /// Timestamp capture: per table, the last (modified, key) read, and the last version
    /// stamp issued. Versions are stamps of the read — the source's clock, in
    /// microseconds, never going back — not the rows' modified times, which an
    /// application or a wrong client clock may set anywhere.
    Timestamp {
        /// Table name → mark.
        tables: BTreeMap<String, TableMark>,
        /// The last version stamp issued (0 before the first).
        #[serde(default)]
        version: i64,
    },
    /// SQL Server Change Tracking: every change committed up to `version` has been read.
    /// Versions are assigned at commit, so there are no gaps to await; a version below
    /// the table's minimum valid version has expired (cleaned up).
    ChangeTracking {
        /// The last Change Tracking version read.
        version: i64,
    },
    /// Binlog capture: every transaction that ends before `pos` in binlog `file` has been
    /// read, and `skip` row changes of the one that starts there (a transaction larger
    /// than a batch is read in parts). Positions are transaction boundaries, so a resume
    /// never starts inside one.
    Binlog {
        /// The binlog file (`mariadb-bin.000042`).
        file: String,
        /// The byte offset in it.
        pos: u64,
        /// Row changes of the transaction at `pos` already read.
        #[serde(default, skip_serializing_if = "is_zero")]
        skip: u64,
        /// The server's GTID position there, where it has GTIDs (for the operator; the
        /// resume uses file and offset).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gtid: Option<String>,
    },
    /// Logical decoding (PostgreSQL): every transaction whose commit ends at or before
    /// `lsn` has been read, and `skip` row changes of the next one (a transaction larger
    /// than a batch is read in parts). The slot is advanced to a stored position only.
    Logical {
        /// A WAL position (an LSN, as a number): the end of the last commit read.
        lsn: u64,
        /// Row changes of the transaction after `lsn` already read.
        #[serde(default, skip_serializing_if = "is_zero")]
        skip: u64,
    },
}

impl Position {
    /// A short human-readable summary for `ebis status` (no row values).
    pub fn summary(&self) -> String {
        match self {
            Position::Initial => "initial (not snapshotted)".to_owned(),
            Position::Changelog { seq, gaps, expired } => {
                let mut out = format!("seq {seq}");
                if !gaps.is_empty() {
                    let missing: i64 = gaps.iter().map(|g| g.to - g.from + 1).sum();
                    out.push_str(&format!(", {} open gap(s) ({missing} seq)", gaps.len()));
                }
                if !expired.is_empty() {
                    out.push_str(&format!(", {} expired gap(s) watched", expired.len()));
                }
                out
            }
            Position::ChangeTracking { version } => format!("version {version}"),
            Position::Binlog {
                file,
                pos,
                skip,
                gtid,
            } => {
                let mut out = format!("binlog {file}:{pos}");
                if let Some(g) = gtid {
                    out.push_str(&format!(" (gtid {g})"));
                }
                if *skip > 0 {
                    out.push_str(&format!(", {skip} row(s) into a transaction"));
                }
                out
            }
            Position::Logical { lsn, skip } => {
                let mut out = format!("lsn {}", Position::lsn_text(*lsn));
                if *skip > 0 {
                    out.push_str(&format!(", {skip} row(s) into a transaction"));
                }
                out
            }
            Position::Timestamp { tables, .. } => {
                match tables.values().filter_map(|m| m.modified).max() {
                    Some(ts) => format!(
                        "{} tables, newest modified {}",
                        tables.len(),
                        ts.format("%Y-%m-%d %H:%M:%S")
                    ),
                    None => format!("{} tables, no rows yet", tables.len()),
                }
            }
        }
    }

    /// Changelog capture: every change-table row with a sequence number below this one
    /// has been read (none is awaited as a gap), so a stored position makes them safe to
    /// delete. `None` for other modes.
    pub fn purge_below(&self) -> Option<i64> {
        match self {
            Position::Changelog { seq, gaps, expired } => Some(
                gaps.iter()
                    .chain(expired)
                    .map(|g| g.from)
                    .fold(*seq, i64::min),
            ),
            _ => None,
        }
    }

    /// An LSN as PostgreSQL writes it (`16/B374D848`).
    pub fn lsn_text(lsn: u64) -> String {
        format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
    }

    /// An LSN from PostgreSQL's text form (`16/B374D848`).
    pub fn parse_lsn(text: &str) -> Option<u64> {
        let (hi, lo) = text.trim().split_once('/')?;
        Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
    }

    /// A binlog position as a version: the file's number in the high 32 bits, the offset
    /// in the low (a binlog file ends below 4 GiB), so a later position is a larger
    /// version. A file name without a numeric suffix counts as number 0.
    pub fn binlog_version(file: &str, pos: u64) -> i64 {
        let number = file
            .rsplit_once('.')
            .and_then(|(_, n)| n.parse::<i64>().ok())
            .unwrap_or(0)
            .clamp(0, i64::from(i32::MAX));
        (number << 32) | (pos.min(u64::from(u32::MAX)) as i64)
    }

    /// The number of open changelog gaps.
    pub fn open_gaps(&self) -> usize {
        match self {
            Position::Changelog { gaps, .. } => gaps.len(),
            _ => 0,
        }
    }

    /// Timestamp capture: the version for a read at source time `now` — later than every
    /// version issued before, and the source's clock where that is later still.
    pub fn next_stamp(&self, now: DateTime<Utc>) -> i64 {
        let last = match self {
            Position::Timestamp { version, .. } => *version,
            _ => 0,
        };
        now.timestamp_micros().max(last.saturating_add(1))
    }

    /// Timestamp capture: rows found dated ahead of the source's clock, over all tables,
    /// at each table's last key comparison.
    pub fn future_rows(&self) -> u64 {
        match self {
            Position::Timestamp { tables, .. } => tables.values().map(|m| m.future_rows).sum(),
            _ => 0,
        }
    }

    /// The number of expired changelog gaps still watched for late commits.
    pub fn expired_gaps(&self) -> usize {
        match self {
            Position::Changelog { expired, .. } => expired.len(),
            _ => 0,
        }
    }
}

/// A run of changelog sequence numbers that has not been seen yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// First missing sequence number.
    pub from: i64,
    /// Last missing sequence number (inclusive).
    pub to: i64,
    /// When the gap was first seen (it is given up after the configured timeout).
    pub since: DateTime<Utc>,
}

/// What became of a gap (or part of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapFate {
    /// First seen: these sequence numbers were skipped.
    Detected,
    /// The missing changes committed and were read.
    Filled,
    /// Given up after the timeout: no longer holds lag back, but still watched.
    Expired,
    /// Committed after it had expired (a transaction longer than the gap timeout), and
    /// read then: nothing was lost.
    Late,
    /// Known never to commit: every transaction that could hold these numbers has ended
    /// without them (a rollback).
    RolledBack,
    /// No longer watched (the watch period after expiry passed without a commit).
    Abandoned,
}

impl GapFate {
    /// The name stored in the gap log.
    pub fn as_str(self) -> &'static str {
        match self {
            GapFate::Detected => "detected",
            GapFate::Filled => "filled",
            GapFate::Expired => "expired",
            GapFate::Late => "late",
            GapFate::RolledBack => "rolled_back",
            GapFate::Abandoned => "abandoned",
        }
    }
}

/// The last row read from one table in timestamp mode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableMark {
    /// The last-modified value of the last row read; `None` before the first row.
    pub modified: Option<NaiveDateTime>,
    /// Its key, to order rows with equal timestamps.
    #[serde(default)]
    pub key: Vec<MarkValue>,
    /// When the table's keys were last compared with the warehouse to find deletes.
    #[serde(default)]
    pub keys_compared_at: Option<DateTime<Utc>>,
    /// Rows whose modified time was ahead of the source's clock at that comparison.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub future_rows: u64,
    /// Tables stamped by the server's commit number instead of a modified column
    /// (Oracle's `ORA_ROWSCN`): the last number read up to, with `key` the last key read
    /// at it when a read stopped inside one number's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scn: Option<i64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A key value kept in a timestamp mark (a serializable subset of [`Value`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkValue {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// Any other value, by its canonical text.
    Text(String),
}

impl From<&Value> for MarkValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::Null => MarkValue::Null,
            Value::Int(i) => MarkValue::Int(*i),
            other => MarkValue::Text(other.to_text().unwrap_or_default()),
        }
    }
}

impl From<&MarkValue> for Value {
    fn from(v: &MarkValue) -> Self {
        match v {
            MarkValue::Null => Value::Null,
            MarkValue::Int(i) => Value::Int(*i),
            MarkValue::Text(t) => Value::Text(t.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_json() {
        let p = Position::Changelog {
            seq: 42,
            gaps: vec![Gap {
                from: 40,
                to: 41,
                since: DateTime::from_timestamp(1_150_000_000, 0).expect("ts"),
            }],
            expired: vec![],
        };
        let json = serde_json::to_string(&p).expect("json");
        assert!(json.contains("\"mode\":\"changelog\""));
        let back: Position = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, p);
        assert_eq!(back.summary(), "seq 42, 1 open gap(s) (2 seq)");
        assert_eq!(back.open_gaps(), 1);
        assert_eq!(back.purge_below(), Some(40), "an open gap is still needed");
    }

    #[test]
    fn purging_keeps_the_newest_row_and_every_awaited_one() {
        let since = DateTime::from_timestamp(1_150_000_000, 0).expect("ts");
        let caught_up = Position::Changelog {
            seq: 42,
            gaps: vec![],
            expired: vec![],
        };
        assert_eq!(caught_up.purge_below(), Some(42));
        let gaps = Position::Changelog {
            seq: 42,
            gaps: vec![
                Gap {
                    from: 30,
                    to: 31,
                    since,
                },
                Gap {
                    from: 12,
                    to: 12,
                    since,
                },
            ],
            expired: vec![Gap {
                from: 7,
                to: 7,
                since,
            }],
        };
        assert_eq!(
            gaps.purge_below(),
            Some(7),
            "a watched expired gap is kept too"
        );
        assert_eq!(Position::Initial.purge_below(), None);
    }

    #[test]
    fn timestamp_stamps_never_go_back() {
        let at = |s| DateTime::from_timestamp(s, 0).expect("ts");
        let p = Position::Timestamp {
            tables: BTreeMap::new(),
            version: at(2_000).timestamp_micros(),
        };
        assert_eq!(p.next_stamp(at(3_000)), at(3_000).timestamp_micros());
        assert_eq!(
            p.next_stamp(at(1_000)),
            at(2_000).timestamp_micros() + 1,
            "a clock stepped back still gives a newer stamp"
        );
        let old: Position =
            serde_json::from_str(r#"{"mode":"timestamp","tables":{}}"#).expect("an older position");
        assert_eq!(old.next_stamp(at(5)), at(5).timestamp_micros());
    }

    #[test]
    fn change_tracking_positions_round_trip_and_purge_nothing() {
        let p = Position::ChangeTracking { version: 4_812 };
        let json = serde_json::to_string(&p).expect("json");
        assert_eq!(json, r#"{"mode":"change_tracking","version":4812}"#);
        assert_eq!(serde_json::from_str::<Position>(&json).expect("back"), p);
        assert_eq!(p.summary(), "version 4812");
        assert_eq!(
            p.purge_below(),
            None,
            "the server cleans up its own records"
        );
        assert_eq!(p.open_gaps(), 0);
    }

    #[test]
    fn binlog_positions_round_trip_and_order_as_versions() {
        let p = Position::Binlog {
            file: "mariadb-bin.000042".to_owned(),
            pos: 1_234,
            skip: 0,
            gtid: Some("0-1-77".to_owned()),
        };
        let json = serde_json::to_string(&p).expect("json");
        assert_eq!(
            json,
            r#"{"mode":"binlog","file":"mariadb-bin.000042","pos":1234,"gtid":"0-1-77"}"#
        );
        assert_eq!(serde_json::from_str::<Position>(&json).expect("back"), p);
        assert_eq!(p.summary(), "binlog mariadb-bin.000042:1234 (gtid 0-1-77)");
        let inside = Position::Binlog {
            file: "mariadb-bin.000042".to_owned(),
            pos: 1_234,
            skip: 500,
            gtid: None,
        };
        assert_eq!(
            inside.summary(),
            "binlog mariadb-bin.000042:1234, 500 row(s) into a transaction"
        );
        assert_eq!(p.purge_below(), None, "the server expires its own binlogs");
        let v = Position::binlog_version;
        assert!(v("mariadb-bin.000042", 4) > v("mariadb-bin.000041", 1_000_000_000));
        assert!(v("mariadb-bin.000042", 5_000) > v("mariadb-bin.000042", 4_999));
        assert_eq!(v("binlog", 7), 7, "no numeric suffix: file number 0");
    }

    #[test]
    fn logical_positions_round_trip_and_read_as_postgres_writes_lsns() {
        let lsn = Position::parse_lsn("16/B374D848").expect("an lsn");
        assert_eq!(lsn, (0x16 << 32) | 0xB374_D848);
        assert_eq!(Position::lsn_text(lsn), "16/B374D848");
        assert_eq!(Position::parse_lsn("0/0"), Some(0));
        assert_eq!(Position::parse_lsn("16B374D848"), None);
        assert_eq!(Position::parse_lsn("x/1"), None);
        let p = Position::Logical { lsn, skip: 0 };
        let json = serde_json::to_string(&p).expect("json");
        assert_eq!(json, format!(r#"{{"mode":"logical","lsn":{lsn}}}"#));
        assert_eq!(serde_json::from_str::<Position>(&json).expect("back"), p);
        assert_eq!(p.summary(), "lsn 16/B374D848");
        let inside = Position::Logical { lsn, skip: 20 };
        assert_eq!(
            inside.summary(),
            "lsn 16/B374D848, 20 row(s) into a transaction"
        );
    }

    #[test]
    fn initial_is_a_tag_only() {
        let json = serde_json::to_string(&Position::Initial).expect("json");
        assert_eq!(json, r#"{"mode":"initial"}"#);
    }
}
