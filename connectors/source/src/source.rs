//! The `Source` trait: what every connector implements.

use crate::{Batch, Change, Position, SourceError, Value};
use chrono::{DateTime, NaiveDateTime, Utc};
use std::future::Future;

/// The source's clock, read from the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Now, as an instant.
    pub utc: DateTime<Utc>,
    /// Now on the source's wall clock (its session time zone), as its DATETIME columns
    /// would hold it.
    pub local: NaiveDateTime,
}

/// A key read from a source table, with the row's last-modified value when the table
/// has one (timestamp capture compares it with the warehouse's to find late rows).
#[derive(Clone, Debug, PartialEq)]
pub struct KeyEntry {
    /// The key values, in the mapping's key order.
    pub key: Vec<Value>,
    /// The modified column's value.
    pub modified: Option<Value>,
}

/// Reads one bureau database.
///
/// Contract:
/// - **Read only.** A source never writes to the bureau's own tables (setting up change
///   tables is a separate, explicit DBA step) and never touches the warehouse. The one
///   write is [`Source::acknowledge`]: releasing what a position the warehouse has stored
///   no longer needs (its own change table's rows, a slot's confirmed position).
/// - **Ordering.** `changes` returns changes in the order they must be applied; applying
///   them in that order, then storing [`Batch::position`], leaves the warehouse equal to
///   the source as of the batch. Each [`Change::version`] is at least as large as every
///   version of an earlier read of the same row.
/// - **At least once.** A position is only a promise about what was *returned*; the pipeline
///   stores it with the applied data. Resuming from a stored position may return changes
///   again; applying them twice has no further effect because rows are read whole.
/// - **Snapshot seam.** A position from [`Source::head`], taken before a snapshot starts,
///   followed by `changes` from it, misses nothing that committed during the snapshot.
/// - **Errors.** Lost connections and transient server conditions are
///   [`SourceError::is_retryable`]; the caller retries with backoff and the source must
///   reconnect by itself. Schema problems (a mapped column gone) are fatal. A position
///   the source can no longer resume from is [`SourceError::PositionExpired`]: the
///   pipeline records why and snapshots the source again from a new head.
pub trait Source: Send {
    /// Connects and checks that every planned table and column exists and that capture is
    /// installed for the configured mode.
    fn check(&mut self) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// The position of the source's head now.
    fn head(&mut self) -> impl Future<Output = Result<Position, SourceError>> + Send;

    /// One chunk of `table` in key order, the rows with keys after `after` (all rows from
    /// the start when `None`), at most `limit`, as upserts stamped with `version`.
    fn snapshot_chunk(
        &mut self,
        table: &str,
        after: Option<&[Value]>,
        limit: usize,
        version: i64,
    ) -> impl Future<Output = Result<Vec<Change>, SourceError>> + Send;

    /// Changes committed after `after`, at most about `limit` of them.
    fn changes(
        &mut self,
        after: &Position,
        limit: usize,
    ) -> impl Future<Output = Result<Batch, SourceError>> + Send;

    /// The keys of `table` in key order after `after`, at most `limit`, each with its
    /// row's modified value where the table has a modified column: used to find rows
    /// deleted at the source when the capture mode cannot see deletes, and rows whose
    /// modified time the capture's mark has already passed.
    fn keys(
        &mut self,
        table: &str,
        after: Option<&[Value]>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<KeyEntry>, SourceError>> + Send;

    /// The current rows of `table` for some keys, as upserts stamped with `version`;
    /// keys the table no longer has are left out.
    fn rows_by_keys(
        &mut self,
        table: &str,
        keys: &[Vec<Value>],
        version: i64,
    ) -> impl Future<Output = Result<Vec<Change>, SourceError>> + Send;

    /// The source's clock now.
    fn clock(&mut self) -> impl Future<Output = Result<Clock, SourceError>> + Send;

    /// Releases what `stored` — a position already committed to the warehouse — no
    /// longer needs, and returns how many change records it deleted: a change table's
    /// rows below it (in short transactions; nothing at or after the position and no
    /// awaited gap, and a connector may keep a few more, the newest row for one, so the
    /// table's highest sequence number survives), a replication slot's confirmed
    /// position. The pipeline calls it on the operator's schedule (changelog purges), and
    /// after every stored batch for a replication slot; modes with nothing to release do
    /// nothing.
    fn acknowledge(
        &mut self,
        stored: &Position,
    ) -> impl Future<Output = Result<u64, SourceError>> + Send;

    /// Bytes the source keeps on its own disk for ebis and ebis has not confirmed yet (a
    /// replication slot's retained WAL), where the capture mode keeps any; `None`
    /// otherwise. Operators watch it grow while ebis is stopped or failing.
    fn backlog(&mut self) -> impl Future<Output = Result<Option<u64>, SourceError>> + Send {
        async { Ok(None) }
    }

    /// What `check --online` should say of how this server serves the capture mode,
    /// beyond what stops it (those are [`Source::check`]'s errors): warnings, one a line.
    fn capture_notes(&mut self) -> impl Future<Output = Result<Vec<String>, SourceError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// The number of rows of a table, for snapshot progress: the server's own estimate
    /// where it keeps one (statistics cost nothing to read; a count reads the table).
    fn count(&mut self, table: &str) -> impl Future<Output = Result<u64, SourceError>> + Send;

    /// Each column of a planned table with its data type as the source names it
    /// (`varchar`, `date`, `nvarchar`, …), for checks of what a mapping reads.
    fn column_types(
        &mut self,
        table: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, SourceError>> + Send;

    /// Releases the source's connections.
    fn close(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized;
}
