//! What one apply writes: the records, tombstones and rejections of a batch, grouped by
//! record kind, with the checkpoint, status and gap events that go in the same
//! transaction.

use super::WarehouseError;
use crate::indicators::RecordKind;
use crate::mapping::{FieldValue, Record};
use bytes::BytesMut;
use chrono::{DateTime, Utc};
use ebis_source::{GapEvent, Position};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::sync::Arc;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// A record to upsert with its provenance.
#[derive(Clone, Debug)]
pub struct StagedRecord {
    /// The mapped record.
    pub record: Record,
    /// The source table it was read from.
    pub source_table: String,
    /// Ordering stamp.
    pub version: i64,
    /// Source commit time when known.
    pub commit_time: Option<DateTime<Utc>>,
    /// The mapping's version.
    pub mapping_version: String,
    /// The raw source row.
    pub raw_row: RawRow,
}

/// A raw source row: its values as a JSON array ([`ebis_source::Row::values_json`]) and
/// its column names, shared with the other rows read with it. Shared by every record and
/// rejection mapped from it. The exchange tables keep the array, sent to PostgreSQL as it
/// is, with the number of its column list (`ebis.raw_layout`); the quarantine keeps the
/// row as a JSON object ([`RawRow::object`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRow {
    values: Arc<str>,
    names: Arc<Vec<String>>,
}

impl RawRow {
    /// The raw row of `row`.
    pub fn of(row: &ebis_source::Row) -> RawRow {
        RawRow {
            values: row.values_json().into(),
            names: Arc::clone(row.names()),
        }
    }

    /// Its values' length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// The length of the row as a JSON object with its column names, as every raw row was
    /// kept before migration 0053: the measure of the memory a row takes in ebis that read
    /// sizes are set by (each column costs memory however short its value).
    pub(crate) fn object_len(&self) -> usize {
        // `"name":` and the comma before the next.
        self.values.len() + self.names.iter().map(|n| n.len() + 3).sum::<usize>()
    }

    /// Its column names.
    pub(crate) fn names(&self) -> &Arc<Vec<String>> {
        &self.names
    }

    /// The row as a JSON object of its columns (a rejected row, kept in the quarantine).
    pub(crate) fn object(&self) -> Json {
        // (ebis wrote the array: it is always JSON.)
        let values: Vec<Json> = serde_json::from_str(&self.values).unwrap_or_default();
        Json::Object(self.names.iter().cloned().zip(values).collect())
    }
}

impl ToSql for RawRow {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.extend_from_slice(self.values.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }

    to_sql_checked!();
}

/// Batches of fewer rows than this are applied in one transaction by
/// [`Warehouse::apply_split`].
pub const SPLIT_MIN_ROWS: usize = 200;

/// The most `work_mem` an apply asks for (64 MB): a 10,000-row chunk of the capture
/// bench's rows (0.9 kB each, 0.6 kB since migration 0053 left the raw row's column
/// names out) is about 9 MB (6 MB) in each transition table, and a larger batch
/// spills to temporary files beyond it, as every batch of 5,000 such rows or more did at
/// PostgreSQL's default.
pub(crate) const APPLY_WORK_MEM_MAX_KB: i64 = 64 * 1024;

/// PostgreSQL's default `work_mem`, 4 MB: an apply never asks for less.
const WORK_MEM_DEFAULT_KB: i64 = 4 * 1024;

/// A stored row's bytes beside its raw row and fields: provenance, header, slot.
const ROW_OVERHEAD: usize = 256;

/// A record that no longer exists at the source.
#[derive(Clone, Debug)]
pub struct StagedDelete {
    /// Its source key.
    pub source_key: String,
    /// Ordering stamp of the read that found it gone.
    pub version: i64,
    /// When it was deleted at the source, when known.
    pub commit_time: Option<DateTime<Utc>>,
}

/// A row that could not be mapped.
#[derive(Clone, Debug)]
pub struct StagedRejection {
    /// Record kind.
    pub kind: &'static str,
    /// Source table.
    pub source_table: String,
    /// Source key.
    pub source_key: String,
    /// Field that failed.
    pub field: String,
    /// Why.
    pub reason: String,
    /// The raw value.
    pub raw_value: Option<String>,
    /// The raw row.
    pub raw_row: RawRow,
    /// Mapping version.
    pub mapping_version: String,
}

/// Everything one record kind receives in a batch.
#[derive(Clone, Debug, Default)]
pub struct KindBatch {
    /// Upserts; at most one per source key.
    pub upserts: Vec<StagedRecord>,
    /// Tombstones; at most one per source key.
    pub deletes: Vec<StagedDelete>,
}

/// One batch for one source.
#[derive(Clone, Debug)]
pub struct ApplyBatch {
    /// Per record kind.
    pub kinds: BTreeMap<&'static str, (&'static RecordKind, KindBatch)>,
    /// Rejected rows.
    pub rejections: Vec<StagedRejection>,
    /// Gap events to log.
    pub gap_events: Vec<GapEvent>,
    /// The checkpoint after this batch; `None` leaves it as it is.
    pub checkpoint: Option<Checkpoint>,
    /// Source status after this batch.
    pub status: StatusUpdate,
    /// The upserts' keys are new to the warehouse (chunks of a first snapshot): they are
    /// copied straight into their tables, without a staging table or conflict handling.
    /// Should a key be there after all, the batch applies again as ordinary upserts.
    pub fresh: bool,
}

/// A checkpoint to store.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Where streaming resumes.
    pub position: Position,
    /// Snapshot progress while a snapshot runs.
    pub snapshot: Option<serde_json::Value>,
    /// The capture mode the position belongs to.
    pub mode: String,
    /// The tables, and record kinds of each, capture covers (table → kinds).
    pub captured: BTreeMap<String, Vec<String>>,
    /// Added to every version the source reads (raised when a position expired and the
    /// source's own versions start again lower).
    pub version_base: i64,
}

/// What the status row learns from a batch.
#[derive(Clone, Debug, Default)]
pub struct StatusUpdate {
    /// New state, if it changes.
    pub state: Option<&'static str>,
    /// Every change committed before this is applied.
    pub complete_up_to: Option<DateTime<Utc>>,
    /// Newest source commit time applied.
    pub last_change_at: Option<DateTime<Utc>>,
    /// Open gaps after the batch.
    pub open_gaps: Option<i32>,
    /// Expired gaps still watched after the batch.
    pub expired_gaps: Option<i32>,
    /// Changes in this batch that arrived late (after their gap expired, or found by a
    /// key scan below the timestamp mark).
    pub late_changes: i64,
    /// Rows dated ahead of the source's clock (timestamp capture), when known.
    pub future_rows: Option<i32>,
    /// The stored position expired for this reason: the source is snapshotted again.
    pub resnapshot: Option<String>,
    /// Bytes the source keeps for ebis (a logical slot's retained WAL), when read.
    pub backlog_bytes: Option<i64>,
    /// `Some(true)` when the read found more waiting at the source (a full batch: the
    /// source is catching up a backlog), `Some(false)` when it drained the source;
    /// `None` leaves it as it is. While a streaming source catches up, the enterprise
    /// base's drainer waits (migration 0033).
    pub backlog: Option<bool>,
}

/// Counts of what a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Rows inserted or changed.
    pub upserted: u64,
    /// Rows marked deleted.
    pub deleted: u64,
    /// Rows put in (or kept in) quarantine.
    pub quarantined: u64,
}

impl ApplyBatch {
    /// An empty batch (no checkpoint change).
    pub fn new() -> Self {
        ApplyBatch {
            kinds: BTreeMap::new(),
            rejections: Vec::new(),
            gap_events: Vec::new(),
            checkpoint: None,
            status: StatusUpdate::default(),
            fresh: false,
        }
    }

    /// Splits off the first half of every record kind's upserts and tombstones, for
    /// [`Warehouse::apply_split`]: the part returned writes data only (no checkpoint,
    /// status change, gap events or rejections, which stay here). `None` below
    /// [`SPLIT_MIN_ROWS`] rows. A batch holds one outcome per key, so the parts never
    /// touch the same row.
    pub fn split_half(&mut self) -> Option<ApplyBatch> {
        let rows: usize = self
            .kinds
            .values()
            .map(|(_, k)| k.upserts.len() + k.deletes.len())
            .sum();
        if rows < SPLIT_MIN_ROWS {
            return None;
        }
        let mut first = ApplyBatch::new();
        first.fresh = self.fresh;
        for (name, (kind, kb)) in &mut self.kinds {
            let upserts: Vec<StagedRecord> = kb.upserts.drain(..kb.upserts.len() / 2).collect();
            let deletes: Vec<StagedDelete> = kb.deletes.drain(..kb.deletes.len() / 2).collect();
            if !upserts.is_empty() || !deletes.is_empty() {
                first
                    .kinds
                    .insert(name, (kind, KindBatch { upserts, deletes }));
            }
        }
        Some(first)
    }

    /// The `work_mem`, in kB, that holds this batch's largest statement's rows in memory
    /// where the enterprise base's queue triggers see them (their transition tables: a
    /// statement's new rows, and for updates its old rows too, each a store of its own),
    /// between PostgreSQL's default (4 MB) and [`APPLY_WORK_MEM_MAX_KB`]. A stored row is
    /// about its fields (as large as the raw values they were mapped from) beside its raw
    /// row and provenance; a tombstone's row is not known here and counted as 2 kB.
    pub(crate) fn work_mem_kb(&self) -> i64 {
        let largest = self
            .kinds
            .values()
            .map(|(_, kb)| {
                let upserts: usize = kb
                    .upserts
                    .iter()
                    .map(|r| 2 * r.raw_row.len() + ROW_OVERHEAD)
                    .sum();
                upserts.max(kb.deletes.len() * 2048)
            })
            .max()
            .unwrap_or(0);
        // A quarter more for the stores' own bookkeeping.
        i64::try_from(largest / 1024 * 5 / 4 + 1)
            .unwrap_or(i64::MAX)
            .clamp(WORK_MEM_DEFAULT_KB, APPLY_WORK_MEM_MAX_KB)
    }

    /// True when it writes no data.
    pub fn has_no_data(&self) -> bool {
        self.rejections.is_empty()
            && self
                .kinds
                .values()
                .all(|(_, k)| k.upserts.is_empty() && k.deletes.is_empty())
    }
}

impl ApplyBatch {
    /// The batch with the given upserts (record kind, index) moved to rejections that
    /// carry the warehouse's reason.
    pub(super) fn without_refused(
        &self,
        refused: Vec<(&'static str, usize, WarehouseError)>,
    ) -> ApplyBatch {
        let mut out = self.clone();
        let mut drop: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
        for (kind_name, i, error) in refused {
            let Some((kind, kb)) = self.kinds.get(kind_name) else {
                continue;
            };
            let Some(r) = kb.upserts.get(i) else {
                continue;
            };
            let (field, raw_value) = match &error {
                WarehouseError::Db {
                    column: Some(c), ..
                } => {
                    let raw = kind
                        .fields
                        .iter()
                        .position(|f| f.name == c)
                        .and_then(|fi| r.record.values.get(fi))
                        .and_then(FieldValue::to_text)
                        .map(|t| ebis_source::storable_text(&t).into_owned());
                    (c.clone(), raw)
                }
                _ => ("(row)".to_owned(), None),
            };
            let reason = match &error {
                WarehouseError::Db { code, message, .. } => {
                    format!("the warehouse refused the row: {message} (SQLSTATE {code})")
                }
                other => format!("the warehouse refused the row: {other}"),
            };
            out.rejections.push(StagedRejection {
                kind: kind_name,
                source_table: r.source_table.clone(),
                source_key: r.record.source_key.clone(),
                field,
                reason,
                raw_value,
                raw_row: r.raw_row.clone(),
                mapping_version: r.mapping_version.clone(),
            });
            drop.entry(kind_name).or_default().push(i);
        }
        for (kind_name, indexes) in drop {
            if let Some((_, kb)) = out.kinds.get_mut(kind_name) {
                let mut i = 0;
                kb.upserts.retain(|_| {
                    let keep = !indexes.contains(&i);
                    i += 1;
                    keep
                });
            }
        }
        out.kinds
            .retain(|_, (_, kb)| !kb.upserts.is_empty() || !kb.deletes.is_empty());
        out
    }
}

impl Default for ApplyBatch {
    fn default() -> Self {
        Self::new()
    }
}
