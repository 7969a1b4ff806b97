//! One committed row change, and a batch of them with the position that follows it.

use crate::{Position, Row, Value};
use chrono::{DateTime, Utc};

/// What happened to the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The row exists at the source with the values in [`Change::row`] (insert or update,
    /// or a snapshot read).
    Upsert,
    /// The row no longer exists at the source.
    Delete,
}

/// One row change read from a source.
///
/// The row carries the values current when the connector read it, which may be newer than
/// the change that made the connector look (changelog capture fetches rows by key).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The source table, as the mapping names it.
    pub table: String,
    /// Upsert or delete.
    pub op: Op,
    /// The row's key values, in the mapping's key column order.
    pub key: Vec<Value>,
    /// The row's current values; empty for a delete.
    pub row: Row,
    /// Ordering stamp within the source: a later read of the same row never carries a
    /// smaller version, so the warehouse can refuse to let an older read overwrite a newer.
    pub version: i64,
    /// When the change was made at the source, where the capture mode knows it.
    pub commit_time: Option<DateTime<Utc>>,
}

/// A gap event to be recorded: sequence numbers the changelog skipped, and what became of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GapEvent {
    /// First skipped sequence number.
    pub from: i64,
    /// Last skipped sequence number (inclusive).
    pub to: i64,
    /// What happened.
    pub fate: crate::GapFate,
}

/// Changes read in one call, and where to resume once they are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The changes, in the order they must be applied.
    pub changes: Vec<Change>,
    /// The position after these changes: store it only together with them.
    pub position: Position,
    /// Gaps detected, filled or given up in this batch.
    pub gap_events: Vec<GapEvent>,
    /// The source's clock when the batch was read, for lag: every change committed before
    /// this instant (less any open gap) is in this batch or an earlier one.
    pub read_at: Option<DateTime<Utc>>,
}

impl Batch {
    /// A batch with no changes that leaves the position where it was.
    pub fn empty(position: Position) -> Self {
        Self {
            changes: Vec::new(),
            position,
            gap_events: Vec::new(),
            read_at: None,
        }
    }
}
