//! Changes → what each record kind receives: upserts, tombstones and rejections, one
//! outcome per (record kind, source key) — the last change of a key in a batch wins.
//! Pure: no I/O.

use crate::mapping::{MappingSet, Outcome};
use crate::warehouse::{
    ApplyBatch, KindBatch, RawRow, StagedDelete, StagedRecord, StagedRejection,
};
use ebis_source::{Change, key_text};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// Where a (record kind, key)'s outcome is in the batch: its kind's upserts or deletes,
/// or the batch's rejections, at this position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Slot {
    Upsert(usize),
    Delete(usize),
    Rejected(usize),
}

impl Slot {
    fn position(self) -> usize {
        match self {
            Slot::Upsert(i) | Slot::Delete(i) | Slot::Rejected(i) => i,
        }
    }
}

/// Puts `item` at `at` (over the key's earlier outcome) or at the end of `list`.
fn place<T>(list: &mut Vec<T>, at: Option<usize>, item: T) {
    match at {
        Some(i) => list[i] = item,
        None => list.push(item),
    }
}

/// Takes out of `list` the items at the positions `gone` names.
fn remove_at<T>(list: &mut Vec<T>, gone: impl Fn(usize) -> bool) {
    let mut i = 0;
    list.retain(|_| {
        i += 1;
        !gone(i - 1)
    });
}

/// Maps a list of changes (in apply order) into a batch with no checkpoint yet.
///
/// Each outcome goes straight into its list (a batch's rows are 150-200 bytes each, and
/// each move of them through a list between was a copy: an eighth of the mapping's time).
/// The lists grow as they fill: sizing each for the whole batch on its first row saved 2 %
/// of the instructions, but would hold megabytes for kinds that get a few rows. A key seen
/// again replaces its outcome in place; should its outcome change list (an upsert, then a
/// delete), the earlier one is taken out at the end.
pub fn map_changes(set: &MappingSet, default_division: &str, changes: &[Change]) -> ApplyBatch {
    let mut batch = ApplyBatch::new();
    let per_change = changes
        .first()
        .map_or(1, |c| set.for_table(&c.table).count().max(1));
    // Keys come from the bureaus' own databases, not from the network: a fast hash
    // (SipHash took a twentieth of a snapshot's mapping time). Sized for every outcome of
    // a change: a table mapped onto three record kinds gives three a row.
    let mut index: HashMap<(&'static str, String), Slot, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(changes.len() * per_change, Default::default());
    // Outcomes a later one in another list replaced, by kind (the rejections, one list
    // for every kind, under ""): taken out at the end.
    let mut gone: HashSet<(&'static str, Slot)> = HashSet::new();
    for change in changes {
        let mut raw: Option<RawRow> = None;
        let mut raw_row = || raw.get_or_insert_with(|| RawRow::of(&change.row)).clone();
        // Every mapping of the table shares the key's text.
        let key = key_text(&change.key);
        for m in set.for_table(&change.table) {
            let kind = m.kind;
            let outcome = m.apply_keyed(change, &key, default_division);
            let kb = batch
                .kinds
                .entry(kind.name)
                .or_insert_with(|| (kind, KindBatch::default()));
            let (source_key, fresh) = match &outcome {
                Outcome::Upsert(r) => (&r.source_key, Slot::Upsert(kb.1.upserts.len())),
                Outcome::Delete { source_key } => (source_key, Slot::Delete(kb.1.deletes.len())),
                Outcome::Rejected(r) => (&r.source_key, Slot::Rejected(batch.rejections.len())),
            };
            // The position to replace, if the key's earlier outcome is in the same list.
            let at = match index.entry((kind.name, source_key.clone())) {
                Entry::Vacant(e) => {
                    e.insert(fresh);
                    None
                }
                Entry::Occupied(mut e) => {
                    let earlier = *e.get();
                    if std::mem::discriminant(&earlier) == std::mem::discriminant(&fresh) {
                        Some(earlier.position())
                    } else {
                        let list = match earlier {
                            Slot::Rejected(_) => "",
                            _ => kind.name,
                        };
                        gone.insert((list, earlier));
                        e.insert(fresh);
                        None
                    }
                }
            };
            match outcome {
                Outcome::Upsert(record) => {
                    let staged = StagedRecord {
                        record,
                        source_table: m.table.clone(),
                        version: change.version,
                        commit_time: change.commit_time,
                        mapping_version: m.version.clone(),
                        raw_row: raw_row(),
                    };
                    place(&mut kb.1.upserts, at, staged);
                }
                Outcome::Delete { source_key } => {
                    let staged = StagedDelete {
                        source_key,
                        version: change.version,
                        commit_time: change.commit_time,
                    };
                    place(&mut kb.1.deletes, at, staged);
                }
                Outcome::Rejected(r) => {
                    let staged = StagedRejection {
                        kind: kind.name,
                        source_table: m.table.clone(),
                        source_key: r.source_key,
                        field: r.field,
                        reason: r.reason,
                        raw_value: r.raw,
                        raw_row: raw_row(),
                        mapping_version: m.version.clone(),
                    };
                    place(&mut batch.rejections, at, staged);
                }
            }
        }
    }
    if !gone.is_empty() {
        remove_at(&mut batch.rejections, |i| {
            gone.contains(&("", Slot::Rejected(i)))
        });
        for (name, (_, kb)) in &mut batch.kinds {
            remove_at(&mut kb.upserts, |i| {
                gone.contains(&(*name, Slot::Upsert(i)))
            });
            remove_at(&mut kb.deletes, |i| {
                gone.contains(&(*name, Slot::Delete(i)))
            });
        }
    }
    batch
        .kinds
        .retain(|_, (_, kb)| !kb.upserts.is_empty() || !kb.deletes.is_empty());
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::Bureau;
    use ebis_source::{Op, Row, Value};
    use std::sync::Arc;

    fn aic_mappings() -> MappingSet {
        let dir = std::env::temp_dir().join(format!("ebis-mapper-{}", std::process::id()));
        crate::assets::write_mappings(&dir).expect("mappings");
        let set = MappingSet::load_dir(&dir.join("mappings/aic"), Some(Bureau::Aic)).expect("load");
        let _ = std::fs::remove_dir_all(&dir);
        set
    }

    /// An E_BASEINFO change: registered (`state` 1) or deregistered (3), or a delete.
    fn change(names: &Arc<Vec<String>>, id: i64, name: &str, state: &str, op: Op) -> Change {
        let text = |s: &str| Value::Text(s.to_owned());
        let row = match op {
            Op::Delete => Row::new(),
            _ => Row::with_names(
                names.clone(),
                names
                    .iter()
                    .map(|c| match c.as_str() {
                        "PRIPID" => Value::Int(id),
                        "REGNO" => text(&format!("150302{id:09}")),
                        "ENTNAME" => text(name),
                        "DOMDISTRICT" | "REGORG" => text("150302"),
                        "REGSTATE" => text(state),
                        _ => Value::Null,
                    })
                    .collect(),
            ),
        };
        Change {
            table: "E_BASEINFO".to_owned(),
            op,
            key: vec![Value::Int(id)],
            row,
            version: id,
            commit_time: None,
        }
    }

    #[test]
    fn each_key_keeps_its_last_outcome_in_a_batch() {
        let set = aic_mappings();
        // E_BASEINFO's columns (sql/demo/mysql/aic.sql).
        let names = Arc::new(
            "PRIPID REGNO ORIREGNO ENTNAME ENTTYPE INDUSTRYPHY INDUSTRYCO NAME CERTYPE CERNO DOM \
             DOMDISTRICT POSTALCODE TEL ABUITEM CBUITEM REGCAP ESTDATE APPRDATE REGORG REGSTATE \
             CANDATE CANREA REVDATE REVREA LAST_UPDATED"
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        );
        let c = |id: i64, name: &str, state: &str, op: Op| change(&names, id, name, state, op);
        let batch = map_changes(
            &set,
            "150300",
            &[
                c(1, "乌海市甲商贸有限公司", "1", Op::Upsert),
                c(2, "乌海市乙商贸有限公司", "1", Op::Upsert),
                // Renamed in the same batch: the later name only, once.
                c(1, "乌海市丙商贸有限公司", "1", Op::Upsert),
                // Registered, then gone: a delete only.
                c(2, "", "", Op::Delete),
                // Gone, then registered again: an upsert only.
                c(3, "", "", Op::Delete),
                c(3, "乌海市丁商贸有限公司", "1", Op::Upsert),
                // Deregistered, then its deregistration withdrawn.
                c(4, "乌海市戊商贸有限公司", "3", Op::Upsert),
                c(4, "乌海市戊商贸有限公司", "1", Op::Upsert),
            ],
        );
        let kind = |name: &str| &batch.kinds.get(name).expect(name).1;
        let est = kind("aic_establishment");
        let mut upserted: Vec<(&str, &FieldValue, &RawRow)> = est
            .upserts
            .iter()
            .map(|u| {
                (
                    u.record.source_key.as_str(),
                    &u.record.values[1],
                    &u.raw_row,
                )
            })
            .collect();
        upserted.sort_unstable_by_key(|u| u.0);
        use crate::mapping::FieldValue;
        let (t1, t3, t4) = (
            FieldValue::Text("乌海市丙商贸有限公司".to_owned()),
            FieldValue::Text("乌海市丁商贸有限公司".to_owned()),
            FieldValue::Text("乌海市戊商贸有限公司".to_owned()),
        );
        let raw =
            |id: i64, name: &str, state: &str| RawRow::of(&c(id, name, state, Op::Upsert).row);
        let (r1, r3, r4) = (
            raw(1, "乌海市丙商贸有限公司", "1"),
            raw(3, "乌海市丁商贸有限公司", "1"),
            raw(4, "乌海市戊商贸有限公司", "1"),
        );
        assert_eq!(
            upserted,
            [("1", &t1, &r1), ("3", &t3, &r3), ("4", &t4, &r4)]
        );
        let deleted: Vec<&str> = est.deletes.iter().map(|d| d.source_key.as_str()).collect();
        assert_eq!(deleted, ["2"]);
        // Not deregistered (any more): a delete for every key, once each.
        let dereg = kind("aic_deregistration");
        assert!(dereg.upserts.is_empty());
        let mut deleted: Vec<&str> = dereg
            .deletes
            .iter()
            .map(|d| d.source_key.as_str())
            .collect();
        deleted.sort_unstable();
        assert_eq!(deleted, ["1", "2", "3", "4"]);
        assert!(batch.rejections.is_empty());
    }
}
