//! Changes → what each record kind receives: upserts, tombstones and rejections, one
//! outcome per (record kind, source key) — the last change of a key in a batch wins.
//! Pure: no I/O.

use crate::mapping::{MappingSet, Outcome};
use crate::warehouse::{ApplyBatch, KindBatch, StagedDelete, StagedRecord, StagedRejection};
use ebis_source::Change;
use std::collections::HashMap;

enum Pending {
    Upsert(StagedRecord),
    Delete(StagedDelete),
    Rejected(StagedRejection),
}

/// Maps a list of changes (in apply order) into a batch with no checkpoint yet.
pub fn map_changes(set: &MappingSet, default_division: &str, changes: &[Change]) -> ApplyBatch {
    let mut order: Vec<(&'static str, String)> = Vec::new();
    let mut pending: HashMap<(&'static str, String), Pending> = HashMap::new();
    for change in changes {
        let raw = change.row.to_json();
        for m in set.for_table(&change.table) {
            let (key, p) = match m.apply(change, default_division) {
                Outcome::Upsert(record) => (
                    record.source_key.clone(),
                    Pending::Upsert(StagedRecord {
                        record,
                        source_table: m.table.clone(),
                        version: change.version,
                        commit_time: change.commit_time,
                        mapping_version: m.version.clone(),
                        raw_row: raw.clone(),
                    }),
                ),
                Outcome::Delete { source_key } => (
                    source_key.clone(),
                    Pending::Delete(StagedDelete {
                        source_key,
                        version: change.version,
                        commit_time: change.commit_time,
                    }),
                ),
                Outcome::Rejected(r) => (
                    r.source_key.clone(),
                    Pending::Rejected(StagedRejection {
                        kind: m.kind.name,
                        source_table: m.table.clone(),
                        source_key: r.source_key,
                        field: r.field,
                        reason: r.reason,
                        raw_value: r.raw,
                        raw_row: raw.clone(),
                        mapping_version: m.version.clone(),
                    }),
                ),
            };
            let slot = (m.kind.name, key);
            if pending.insert(slot.clone(), p).is_none() {
                order.push(slot);
            }
        }
    }
    let mut batch = ApplyBatch::new();
    for slot in order {
        let Some(p) = pending.remove(&slot) else {
            continue;
        };
        let Some(kind) = crate::indicators::record_kind(slot.0) else {
            continue;
        };
        let entry = batch
            .kinds
            .entry(kind.name)
            .or_insert_with(|| (kind, KindBatch::default()));
        match p {
            Pending::Upsert(u) => entry.1.upserts.push(u),
            Pending::Delete(d) => entry.1.deletes.push(d),
            Pending::Rejected(r) => batch.rejections.push(r),
        }
    }
    batch
        .kinds
        .retain(|_, (_, kb)| !kb.upserts.is_empty() || !kb.deletes.is_empty());
    batch
}
