//! `ebis verify`: does the warehouse hold exactly what the sources hold?
//!
//! For each source, every mapped table is read in key order and mapped as the pipeline
//! would; the expected records are compared with the warehouse's live rows by key and by
//! a hash of their values (fields read by source-side expressions excepted: they are
//! evaluated at capture time). Rows the mapping rejects must be in quarantine instead. Memory:
//! one key and hash per row. Run it when writers are quiet or the pipeline caught up —
//! changes in flight show up as differences.

use crate::config::SourceConfig;
use crate::mapping::{FieldValue, MappingSet};
use crate::pipeline::{AnySource, PipelineError, map_changes, plans};
use crate::warehouse::Warehouse;
use chrono::NaiveDate;
use ebis_source::Source;
use ebis_source::Value;
use postgres_protocol::escape::escape_identifier;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

/// The comparison of one record kind of one source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KindReport {
    /// Source name.
    pub source: String,
    /// Record kind.
    pub kind: String,
    /// Records the source rows map to.
    pub source_rows: u64,
    /// Live warehouse rows.
    pub warehouse_rows: u64,
    /// At the source, not in the warehouse.
    pub missing: u64,
    /// In the warehouse, not at the source.
    pub extra: u64,
    /// In both, with different values.
    pub different: u64,
    /// Rejected by the mapping (expected in quarantine).
    pub rejected: u64,
    /// Rejected rows not in open quarantine.
    pub rejected_not_quarantined: u64,
    /// Source rows whose key an earlier row already had (a key the source does not
    /// enforce): the warehouse keeps one of them.
    pub duplicate_keys: u64,
    /// Hash of all (key, values) at the source, order-independent (hex).
    pub source_hash: String,
    /// The same over the warehouse rows.
    pub warehouse_hash: String,
}

impl KindReport {
    /// True when the warehouse holds what the source holds and nothing was rejected: what
    /// `ebis verify` calls ok.
    pub fn clean(&self) -> bool {
        self.agrees() && self.rejected == 0
    }

    /// `ok`, `DIFFERS`, or `REJECTED` (equal, but rows are in quarantine instead).
    pub fn result(&self) -> &'static str {
        match (self.agrees(), self.rejected) {
            (false, _) => "DIFFERS",
            (true, 0) => "ok",
            (true, _) => "REJECTED",
        }
    }

    /// True when source and warehouse agree: every source row is in the warehouse or, if
    /// its mapping rejects it, in quarantine.
    pub fn agrees(&self) -> bool {
        self.missing == 0
            && self.extra == 0
            && self.different == 0
            && self.rejected_not_quarantined == 0
            && self.duplicate_keys == 0
    }
}

/// Which parts of a record verify compares: fields read by a source-side expression are
/// evaluated when the row is captured (an expression may read another table, whose later
/// changes do not re-capture this row), so they are left out.
#[derive(Clone, Debug)]
struct Compared {
    division: bool,
    fields: Vec<bool>,
}

impl Compared {
    fn of(m: &crate::mapping::Mapping) -> Compared {
        let by_column = |spec: Option<&crate::mapping::FieldSpec>| {
            !matches!(
                spec.map(|s| &s.input),
                Some(crate::mapping::Input::Expression { .. })
            )
        };
        Compared {
            division: by_column(m.division.as_ref()),
            fields: m.fields.iter().map(|f| by_column(f.as_ref())).collect(),
        }
    }
}

fn hash_record(division: &str, values: &[FieldValue], compared: &Compared) -> u64 {
    let mut h = DefaultHasher::new();
    if compared.division {
        division.hash(&mut h);
    }
    for (v, _) in values.iter().zip(&compared.fields).filter(|(_, c)| **c) {
        match v {
            FieldValue::Null => 0u8.hash(&mut h),
            FieldValue::Text(s) => (1u8, s).hash(&mut h),
            FieldValue::Date(d) => (2u8, d.to_string()).hash(&mut h),
            FieldValue::Year(y) => (3u8, *y).hash(&mut h),
        }
    }
    h.finish()
}

/// Order-independent digest of a key → hash map.
fn digest(map: &HashMap<String, u64>) -> String {
    let mut acc: u64 = 0;
    for (k, v) in map {
        let mut h = DefaultHasher::new();
        (k, v).hash(&mut h);
        acc = acc.wrapping_add(h.finish());
    }
    format!("{acc:016x}")
}

/// Compares one source with the warehouse.
pub async fn verify_source(
    cfg: &SourceConfig,
    mappings: &MappingSet,
    wh: &Warehouse,
    chunk: usize,
) -> Result<Vec<KindReport>, PipelineError> {
    let plans = plans(cfg, mappings);
    let mut source = AnySource::open(cfg, plans.clone())?;
    let mut expected: BTreeMap<&'static str, HashMap<String, u64>> = BTreeMap::new();
    let mut rejected: BTreeMap<&'static str, HashSet<String>> = BTreeMap::new();
    let mut compared: HashMap<&'static str, Compared> = HashMap::new();
    let mut duplicates: HashMap<&'static str, u64> = HashMap::new();
    for m in &mappings.mappings {
        expected.entry(m.kind.name).or_default();
        rejected.entry(m.kind.name).or_default();
        compared.insert(m.kind.name, Compared::of(m));
    }
    for plan in &plans {
        let mut after: Option<Vec<Value>> = None;
        let mut keys_seen: HashSet<String> = HashSet::new();
        let kinds: Vec<&'static str> = mappings
            .for_table(&plan.table)
            .map(|m| m.kind.name)
            .collect();
        loop {
            let changes = source
                .snapshot_chunk(&plan.table, after.as_deref(), chunk, 0)
                .await?;
            // Rows sharing a key (one the source does not enforce) map to one record.
            for c in &changes {
                if !keys_seen.insert(ebis_source::key_text(&c.key))
                    && !c.key.iter().any(Value::is_null)
                {
                    for k in &kinds {
                        *duplicates.entry(k).or_default() += 1;
                    }
                }
            }
            let batch = map_changes(mappings, &cfg.division, &changes);
            for (name, (_, kb)) in &batch.kinds {
                let e = expected.entry(name).or_default();
                let Some(c) = compared.get(name) else {
                    continue;
                };
                for u in &kb.upserts {
                    e.insert(
                        u.record.source_key.clone(),
                        hash_record(&u.record.division, &u.record.values, c),
                    );
                }
            }
            for r in &batch.rejections {
                rejected
                    .entry(r.kind)
                    .or_default()
                    .insert(r.source_key.clone());
            }
            if changes.len() < chunk {
                break;
            }
            after = changes.last().map(|c| c.key.clone());
        }
    }
    source.close().await;
    let client = wh.client().await?;
    let mut reports = Vec::new();
    for (name, exp) in &expected {
        let (Some(kind), Some(c)) = (crate::indicators::record_kind(name), compared.get(name))
        else {
            continue;
        };
        let cols = kind
            .fields
            .iter()
            .map(|f| escape_identifier(f.name))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = client
            .query(
                &format!(
                    "select source_key, division, {cols} from exchange.{} where source = $1 and deleted_at is null",
                    escape_identifier(name)
                ),
                &[&cfg.name],
            )
            .await
            .map_err(crate::warehouse::WarehouseError::from)?;
        let mut actual: HashMap<String, u64> = HashMap::with_capacity(rows.len());
        for r in &rows {
            let values: Vec<FieldValue> = kind
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    match f.ty {
                        crate::indicators::FieldType::Text => {
                            r.get::<_, Option<String>>(i + 2).map(FieldValue::Text)
                        }
                        crate::indicators::FieldType::Date => {
                            r.get::<_, Option<NaiveDate>>(i + 2).map(FieldValue::Date)
                        }
                        crate::indicators::FieldType::Year => {
                            r.get::<_, Option<i16>>(i + 2).map(FieldValue::Year)
                        }
                    }
                    .unwrap_or(FieldValue::Null)
                })
                .collect();
            let division: String = r.get(1);
            actual.insert(r.get(0), hash_record(&division, &values, c));
        }
        let rej = rejected.get(name).cloned().unwrap_or_default();
        let quarantined: HashSet<String> = client
            .query(
                "select source_key from ebis.quarantine where source = $1 and record_kind = $2 and resolved_at is null",
                &[&cfg.name, name],
            )
            .await
            .map_err(crate::warehouse::WarehouseError::from)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut report = KindReport {
            source: cfg.name.clone(),
            kind: (*name).to_owned(),
            source_rows: exp.len() as u64,
            warehouse_rows: actual.len() as u64,
            rejected: rej.len() as u64,
            rejected_not_quarantined: rej.iter().filter(|k| !quarantined.contains(*k)).count()
                as u64,
            source_hash: digest(exp),
            duplicate_keys: duplicates.get(name).copied().unwrap_or(0),
            ..KindReport::default()
        };
        for (k, h) in exp {
            match actual.get(k) {
                None => report.missing += 1,
                Some(a) if a != h => report.different += 1,
                Some(_) => {}
            }
        }
        // A rejected row keeps its last good version in the warehouse: not "extra".
        report.extra = actual
            .keys()
            .filter(|k| !exp.contains_key(*k) && !rej.contains(*k))
            .count() as u64;
        let comparable: HashMap<String, u64> = actual
            .into_iter()
            .filter(|(k, _)| !rej.contains(k))
            .collect();
        report.warehouse_hash = digest(&comparable);
        reports.push(report);
    }
    Ok(reports)
}

/// The reports as a text table.
pub fn render(reports: &[KindReport]) -> String {
    use crate::table::Align::{Left, Right};
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.source.clone(),
                r.kind.to_string(),
                r.source_rows.to_string(),
                r.warehouse_rows.to_string(),
                r.missing.to_string(),
                r.extra.to_string(),
                r.different.to_string(),
                r.rejected.to_string(),
                r.duplicate_keys.to_string(),
                r.result().to_string(),
            ]
        })
        .collect();
    crate::table::render(
        &[
            ("SOURCE", Left),
            ("RECORD KIND", Left),
            ("SOURCE", Right),
            ("WAREHOUSE", Right),
            ("MISSING", Right),
            ("EXTRA", Right),
            ("DIFFERENT", Right),
            ("REJECTED", Right),
            ("DUP KEYS", Right),
            ("RESULT", Left),
        ],
        &rows,
    )
}
