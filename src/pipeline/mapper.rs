//! Changes → what each record kind receives: upserts, tombstones and rejections, one
//! outcome per (record kind, source key) — the last change of a key in a batch wins.
//! Pure: no I/O.

use crate::mapping::{MappingSet, Outcome};
use crate::warehouse::{
    ApplyBatch, KindBatch, RawRow, StagedDelete, StagedRecord, StagedRejection,
};
use ebis_source::Change;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

enum Pending {
    Upsert(StagedRecord),
    Delete(StagedDelete),
    Rejected(StagedRejection),
}

/// Maps a list of changes (in apply order) into a batch with no checkpoint yet.
pub fn map_changes(set: &MappingSet, default_division: &str, changes: &[Change]) -> ApplyBatch {
    // Each (record kind, key) in the order first seen, with its last outcome.
    let mut slots: Vec<(&'static str, Pending)> = Vec::with_capacity(changes.len());
    // Keys come from the bureaus' own databases, not from the network: a fast hash
    // (SipHash took a twentieth of a snapshot's mapping time).
    let mut index: HashMap<(&'static str, String), usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(changes.len(), Default::default());
    for change in changes {
        let mut raw: Option<RawRow> = None;
        let mut raw_row = || raw.get_or_insert_with(|| RawRow::of(&change.row)).clone();
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
                        raw_row: raw_row(),
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
                        raw_row: raw_row(),
                        mapping_version: m.version.clone(),
                    }),
                ),
            };
            match index.entry((m.kind.name, key)) {
                Entry::Occupied(e) => slots[*e.get()].1 = p,
                Entry::Vacant(e) => {
                    e.insert(slots.len());
                    slots.push((m.kind.name, p));
                }
            }
        }
    }
    drop(index);
    let mut batch = ApplyBatch::new();
    for (kind_name, p) in slots {
        let Some(kind) = crate::indicators::record_kind(kind_name) else {
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
