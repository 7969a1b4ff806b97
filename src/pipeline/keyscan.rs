//! Finding rows deleted at a source that cannot report deletes (timestamp capture, and
//! after a re-snapshot): the warehouse's live keys first, then the source's keys, and
//! tombstones for the difference.

use super::PipelineError;
use super::connector::AnySource;
use super::mapper::map_changes;
use crate::config::SourceConfig;
use crate::mapping::MappingSet;
use crate::warehouse::{ApplyBatch, Warehouse};
use ebis_source::{Change, Op, Row, Value, key_text};

/// The tombstones for rows of `table` the warehouse holds and the source no longer has,
/// stamped with `version` (no newer read is overwritten).
pub async fn scan_deletes(
    source: &mut AnySource,
    wh: &Warehouse,
    cfg: &SourceConfig,
    mappings: &MappingSet,
    table: &str,
    version: i64,
) -> Result<ApplyBatch, PipelineError> {
    let kinds: Vec<&str> = mappings.for_table(table).map(|m| m.kind.name).collect();
    if kinds.is_empty() {
        return Ok(ApplyBatch::new());
    }
    let scan = wh.start_key_scan(&cfg.name, &kinds).await?;
    let mut after: Option<Vec<Value>> = None;
    loop {
        let keys = source.keys(table, after.as_deref(), 10_000).await?;
        let texts: Vec<String> = keys.iter().map(|k| key_text(k)).collect();
        scan.add(&texts).await?;
        if keys.len() < 10_000 {
            break;
        }
        after = keys.last().cloned();
    }
    let missing = scan.missing().await?;
    if !missing.is_empty() {
        tracing::info!(source = %cfg.name, table, rows = missing.len(), "rows gone from the source");
    }
    let changes: Vec<Change> = missing
        .into_iter()
        .map(|k| Change {
            table: table.to_owned(),
            op: Op::Delete,
            key: vec![Value::Text(k)],
            row: Row::new(),
            version,
            commit_time: None,
        })
        .collect();
    Ok(map_changes(mappings, &cfg.division, &changes))
}
