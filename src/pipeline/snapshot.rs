//! Snapshots: every mapped table read in key-ordered chunks, each chunk mapped and applied
//! in its own transaction, with the change position taken before the first chunk.
//!
//! Memory is bounded by one chunk. Progress is stored in the checkpoint during the first
//! snapshot of a source, so a restart resumes at the table and key it stopped at.

use super::PipelineError;
use super::connector::AnySource;
use super::mapper::map_changes;
use crate::config::SourceConfig;
use crate::mapping::MappingSet;
use crate::warehouse::{Applied, ApplyBatch, SourceMeta, Warehouse};
use chrono::{DateTime, Utc};
use ebis_source::Source;
use ebis_source::{MarkValue, Position, Value};
use serde::{Deserialize, Serialize};

/// Progress of a snapshot, stored in `ebis.checkpoint.snapshot`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// Where streaming resumes once the snapshot is complete (taken before it began).
    pub head: Position,
    /// Version stamped on every snapshot row (changelog: the head's sequence number;
    /// timestamp: the head's stamp, the source's clock when it was taken; Change
    /// Tracking: the head's version).
    pub version: i64,
    /// Index of the table being read, in plan order.
    pub table: usize,
    /// Last key read in that table.
    pub after: Option<Vec<MarkValue>>,
    /// Rows read so far.
    pub rows: u64,
    /// When it began.
    pub started_at: DateTime<Utc>,
    /// The tables to read, in order; empty: every planned table (a first snapshot).
    #[serde(default)]
    pub tables: Vec<String>,
    /// True for tables added to a source already streaming: streaming goes on between
    /// chunks, and the stream's position is not replaced when the snapshot ends.
    #[serde(default)]
    pub added: bool,
    /// Rows read so far of the table being read.
    #[serde(default)]
    pub table_rows: u64,
    /// Each table to read, in order, with its rows as the source estimated them when the
    /// snapshot began (`ebis status` shows progress against them); empty until
    /// then.
    #[serde(default)]
    pub estimates: Vec<TableEstimate>,
    /// When a process took the snapshot up again after a stop, and the rows read by then:
    /// `ebis status` counts its rate from there, not over the time it stood still.
    /// `None` while the process that began it reads it.
    #[serde(default)]
    pub resumed: Option<Resumed>,
}

/// Where a snapshot was taken up again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    /// When.
    pub at: DateTime<Utc>,
    /// The rows read before.
    pub rows: u64,
}

/// A table of a snapshot and the source's estimate of its rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEstimate {
    /// The table, as mapped.
    pub table: String,
    /// Its rows (the server's statistics where it keeps them, else a count); `None`
    /// when the source could not say.
    pub rows: Option<u64>,
}

impl SnapshotProgress {
    /// A snapshot starting now from `head`.
    pub fn start(head: Position) -> SnapshotProgress {
        let version = match &head {
            Position::Changelog { seq, .. } => *seq,
            Position::Timestamp { version, .. } => *version,
            Position::ChangeTracking { version } => *version,
            Position::Binlog { file, pos, .. } => Position::binlog_version(file, *pos),
            Position::Logical { lsn, .. } => i64::try_from(*lsn).unwrap_or(i64::MAX),
            Position::Initial => 0,
        };
        SnapshotProgress {
            head,
            version,
            table: 0,
            after: None,
            rows: 0,
            started_at: Utc::now(),
            tables: Vec::new(),
            added: false,
            table_rows: 0,
            estimates: Vec::new(),
            resumed: None,
        }
    }
}

/// What one chunk did.
pub struct ChunkResult {
    /// Rows read.
    pub rows: usize,
    /// True when the table has no more rows after this chunk.
    pub table_done: bool,
    /// The batch to apply (no checkpoint set).
    pub batch: ApplyBatch,
    /// The key to continue after.
    pub last_key: Option<Vec<Value>>,
}

/// Reads and maps one chunk of `table` after `after`.
pub async fn read_chunk(
    source: &mut AnySource,
    cfg: &SourceConfig,
    mappings: &MappingSet,
    table: &str,
    after: Option<&[Value]>,
    limit: usize,
    version: i64,
) -> Result<ChunkResult, PipelineError> {
    let changes = source.snapshot_chunk(table, after, limit, version).await?;
    let last_key = changes.last().map(|c| c.key.clone());
    let batch = map_changes(mappings, &cfg.division, &changes);
    Ok(ChunkResult {
        rows: changes.len(),
        table_done: changes.len() < limit,
        batch,
        last_key,
    })
}

/// Re-reads tables of a running or stopped source without touching its checkpoint (a
/// running `ebis run` keeps streaming; the version guard keeps its newer rows). Rows gone
/// from the source are marked deleted afterwards. `progress` is told (table, rows read,
/// the source's estimate of the rows in the table).
#[allow(clippy::too_many_arguments)]
pub async fn resnapshot(
    source: &mut AnySource,
    wh: &Warehouse,
    cfg: &SourceConfig,
    mappings: &MappingSet,
    tables: &[String],
    batch_size: usize,
    mut progress: impl FnMut(&str, u64, u64),
    shutdown: &super::Shutdown,
) -> Result<Applied, PipelineError> {
    let head = source.head().await?;
    let version = SnapshotProgress::start(head.clone()).version;
    let mut total = Applied::default();
    let meta = SourceMeta {
        name: &cfg.name,
        bureau: cfg.bureau.code(),
    };
    for table in tables {
        let rows_in_table = source.count(table).await?;
        let mut after: Option<Vec<Value>> = None;
        let mut read = 0u64;
        loop {
            if shutdown.requested() {
                return Err(PipelineError::Stopped);
            }
            let chunk = read_chunk(
                source,
                cfg,
                mappings,
                table,
                after.as_deref(),
                batch_size,
                version,
            )
            .await?;
            read += chunk.rows as u64;
            let a = wh
                .apply(meta, &format!("snapshot {}", head.summary()), &chunk.batch)
                .await?;
            total.upserted += a.upserted;
            total.quarantined += a.quarantined;
            progress(table, read, rows_in_table);
            if chunk.table_done {
                break;
            }
            after = chunk.last_key;
        }
        let scan = super::keyscan::scan_table(
            source,
            wh,
            cfg,
            mappings,
            super::keyscan::KeyScanSpec {
                table,
                version,
                modified_column: None,
                now_local: None,
                mark: None,
            },
        )
        .await?;
        total.deleted += wh
            .apply(meta, "snapshot key scan", &scan.batch)
            .await?
            .deleted;
    }
    Ok(total)
}
