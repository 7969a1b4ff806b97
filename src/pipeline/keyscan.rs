//! Comparing a source table's keys with the warehouse: rows deleted at the source
//! (capture modes that cannot see deletes, and after a re-snapshot) become tombstones,
//! and — where the table has a modified column — rows the capture's mark has passed by
//! are read again. A tombstone never outranks a row that exists at the source: it is
//! stamped with the scan's version, and any later read of a re-created row is newer.

use super::PipelineError;
use super::connector::AnySource;
use super::mapper::map_changes;
use crate::config::SourceConfig;
use crate::mapping::MappingSet;
use crate::warehouse::{ApplyBatch, Warehouse};
use chrono::NaiveDateTime;
use ebis_source::Source;
use ebis_source::{Change, Op, Row, Value, key_text, key_values};

/// Keys read from the source per round trip.
const KEYS_PER_READ: usize = 10_000;

/// What one comparison found.
pub struct KeyScanResult {
    /// Tombstones for rows gone from the source, and the rows read again.
    pub batch: ApplyBatch,
    /// Rows read again because the warehouse did not hold them as they are now.
    pub late_rows: usize,
    /// Rows whose modified time is ahead of the source's clock.
    pub future_rows: usize,
}

/// How to compare one table.
pub struct KeyScanSpec<'a> {
    /// The source table.
    pub table: &'a str,
    /// Version of the tombstones and of the rows read again.
    pub version: i64,
    /// The table's modified column, when rows the mark passed by are to be found.
    pub modified_column: Option<&'a str>,
    /// The source's wall clock when the scan began (rows dated after the clock at its end
    /// are counted as future rows).
    pub now_local: Option<NaiveDateTime>,
    /// The table's mark when the scan began: rows after it (up to the clock) are polling's
    /// to read, and are not read again here.
    pub mark: Option<NaiveDateTime>,
}

/// A modified value as a date and time.
fn as_datetime(v: &Value) -> Option<NaiveDateTime> {
    match v {
        Value::DateTime(t) => Some(*t),
        Value::Date(d) => d.and_hms_opt(0, 0, 0),
        _ => None,
    }
}

/// Compares one table's keys with the warehouse.
pub async fn scan_table(
    source: &mut AnySource,
    wh: &Warehouse,
    cfg: &SourceConfig,
    mappings: &MappingSet,
    spec: KeyScanSpec<'_>,
) -> Result<KeyScanResult, PipelineError> {
    let table = spec.table;
    let kinds: Vec<&str> = mappings.for_table(table).map(|m| m.kind.name).collect();
    let key_width = mappings
        .for_table(table)
        .next()
        .map(|m| m.key.len())
        .unwrap_or(1);
    if kinds.is_empty() {
        return Ok(KeyScanResult {
            batch: ApplyBatch::new(),
            late_rows: 0,
            future_rows: 0,
        });
    }
    let scan = wh
        .start_key_scan(&cfg.name, table, &kinds, spec.modified_column)
        .await?;
    let mut after: Option<Vec<Value>> = None;
    // Rows dated after the clock at the start: written during the scan, or dated ahead.
    let mut ahead: Vec<(String, NaiveDateTime)> = Vec::new();
    loop {
        let entries = source.keys(table, after.as_deref(), KEYS_PER_READ).await?;
        let mut texts: Vec<(String, Option<String>, bool)> = Vec::with_capacity(entries.len());
        for e in &entries {
            let kt = key_text(&e.key);
            let modified = e.modified.as_ref().and_then(as_datetime);
            if let (Some(m), Some(now)) = (modified, spec.now_local)
                && m > now
            {
                ahead.push((kt.clone(), m));
            }
            // Read again only what polling will not: rows at or behind the mark, rows
            // without a modified time, and rows dated ahead of the clock.
            let candidate = match modified {
                None => true,
                Some(m) => {
                    spec.mark.is_none_or(|mark| m <= mark)
                        || spec.now_local.is_some_and(|now| m > now)
                }
            };
            texts.push((kt, e.modified.as_ref().and_then(Value::to_text), candidate));
        }
        scan.add(&texts).await?;
        if entries.len() < KEYS_PER_READ {
            break;
        }
        after = entries.last().map(|e| e.key.clone());
    }
    // Rows written while the scan ran are polling's; the rest dated ahead are the future.
    let mut future_rows = 0;
    if !ahead.is_empty() {
        let end = source.clock().await?.local;
        let during: Vec<String> = ahead
            .iter()
            .filter(|(_, m)| *m <= end)
            .map(|(k, _)| k.clone())
            .collect();
        future_rows = ahead.len() - during.len();
        scan.exclude(&during).await?;
    }
    let missing = scan.missing().await?;
    let stale = if spec.modified_column.is_some() {
        scan.stale().await?
    } else {
        Vec::new()
    };
    if !missing.is_empty() {
        tracing::info!(source = %cfg.name, table, rows = missing.len(), "rows gone from the source");
    }
    let mut changes: Vec<Change> = missing
        .into_iter()
        .map(|k| Change {
            table: table.to_owned(),
            op: Op::Delete,
            key: vec![Value::Text(k)],
            row: Row::new(),
            version: spec.version,
            commit_time: None,
        })
        .collect();
    for chunk in stale.chunks(512) {
        let keys: Vec<Vec<Value>> = chunk.iter().map(|k| key_values(k, key_width)).collect();
        changes.extend(source.rows_by_keys(table, &keys, spec.version).await?);
    }
    let batch = map_changes(mappings, &cfg.division, &changes);
    // Rows that map to a record (or a rejection) of some kind; a row every mapping
    // filters out is read each time and is nothing new.
    let late_rows = batch
        .kinds
        .values()
        .flat_map(|(_, kb)| kb.upserts.iter().map(|u| u.record.source_key.as_str()))
        .chain(batch.rejections.iter().map(|r| r.source_key.as_str()))
        .collect::<std::collections::HashSet<_>>()
        .len();
    if late_rows > 0 {
        tracing::warn!(
            source = %cfg.name,
            table,
            rows = late_rows,
            "rows the timestamp mark had passed by (modified times below it, or re-created rows) were read again"
        );
    }
    Ok(KeyScanResult {
        batch,
        late_rows,
        future_rows,
    })
}
