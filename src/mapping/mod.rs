//! Declarative mappings: one YAML file per (bureau, record kind) turns rows of one source
//! table into records of one exchange table.
//!
//! A file is compiled once (strict, complete validation with `file:line:column` errors),
//! then applied to each [`Change`] as a pure function: no I/O, no clock, no logging. The
//! result is a record to upsert, a delete (the row is gone, or no longer matches the
//! file's filter), or a rejection naming the field, the reason and the raw value, which
//! the pipeline puts in quarantine.

mod apply;
mod compile;
mod date;
pub mod expression;
mod file;
pub mod text;
mod transform;

pub use apply::{FieldValue, Outcome, Record, Rejected};
pub use compile::{check_together, compile_file, mapping_files, unmapped_kinds};
pub use transform::{Cell, Transform};

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::indicators::{Bureau, RecordKind};
use ebis_source::{Expression, TablePlan};
use std::path::{Path, PathBuf};

/// A compiled mapping file.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// The record kind it fills.
    pub kind: &'static RecordKind,
    /// The file.
    pub path: PathBuf,
    /// Hash of the file's content (and of the code tables it reads).
    pub version: String,
    /// Source table.
    pub table: String,
    /// Key columns.
    pub key: Vec<String>,
    /// Conditions a row must meet (all).
    pub filter: Vec<Condition>,
    /// Last-modified column for timestamp capture.
    pub modified_column: Option<String>,
    /// The mapping vouches for a key the source does not enforce.
    pub trust_key: bool,
    /// How to compute the row's division, when not the source's own.
    pub division: Option<FieldSpec>,
    /// One entry per field of the record kind, in its order; `None` = not mapped (NULL).
    pub fields: Vec<Option<FieldSpec>>,
    /// Things that compile but are likely mistakes (shown by `ebis check`, never fatal).
    pub warnings: Vec<Diagnostic>,
}

/// How to compute one field.
#[derive(Clone, Debug)]
pub struct FieldSpec {
    /// Where the value comes from.
    pub input: Input,
    /// Transforms, in order.
    pub transforms: Vec<Transform>,
    /// Where its input column was in the last row read (tried first in the next).
    pub(crate) seen_at: SeenAt,
}

/// A column's position in the last row read, tried first in the next
/// ([`ebis_source::Row::get_hinted`]); only a hint, so relaxed and never compared.
#[derive(Debug, Default)]
pub(crate) struct SeenAt(std::sync::atomic::AtomicUsize);

impl SeenAt {
    pub(crate) fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set(&self, at: usize) {
        self.0.store(at, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clone for SeenAt {
    fn clone(&self) -> Self {
        SeenAt(self.get().into())
    }
}

/// The input of a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A source column.
    Column(String),
    /// A source-side SQL expression, read under a generated alias.
    Expression {
        /// SQL text.
        sql: String,
        /// The column name it is read as (unique per record kind and field).
        alias: String,
        /// Where it was written: `file:line:column field `name``.
        origin: String,
    },
    /// A constant text.
    Constant(String),
    /// Source columns whose texts are joined in order, a NULL one as empty text (what
    /// `CONCAT(COALESCE(A, ''), COALESCE(B, ''))` gives, without asking the source).
    Concat(Vec<String>),
}

/// One filter condition on a source column's canonical text (trimmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The column.
    pub column: String,
    /// The test.
    pub test: Test,
}

/// A condition's test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    /// The text is one of these.
    In(Vec<String>),
    /// The value is NULL or its text is none of these.
    NotIn(Vec<String>),
    /// NULL or blank (true), or neither (false).
    IsNull(bool),
}

/// All mappings of one source.
#[derive(Clone, Debug)]
pub struct MappingSet {
    /// The mappings, sorted by file name.
    pub mappings: Vec<Mapping>,
}

impl MappingSet {
    /// Compiles every mapping file in a folder; all problems of all files are reported.
    pub fn load_dir(dir: &Path, bureau: Option<Bureau>) -> Result<MappingSet, Diagnostics> {
        let files = mapping_files(dir)?;
        let mut found = Diagnostics::default();
        let mut mappings = Vec::new();
        for f in files {
            match compile_file(&f, bureau) {
                Ok(m) => mappings.push(m),
                Err(d) => found.extend(d),
            }
        }
        found.extend(check_together(&mappings));
        found.into_result(MappingSet { mappings })
    }

    /// The mappings reading a table (names compare ASCII case-insensitively).
    pub fn for_table<'a>(&'a self, table: &'a str) -> impl Iterator<Item = &'a Mapping> + 'a {
        self.mappings
            .iter()
            .filter(move |m| m.table.eq_ignore_ascii_case(table))
    }

    /// What the connector must read: one plan per source table.
    pub fn plans(&self) -> Vec<TablePlan> {
        let mut plans: Vec<TablePlan> = Vec::new();
        for m in &self.mappings {
            let idx = match plans
                .iter()
                .position(|p| p.table.eq_ignore_ascii_case(&m.table))
            {
                Some(i) => i,
                None => {
                    plans.push(TablePlan {
                        table: m.table.clone(),
                        key: m.key.clone(),
                        columns: Vec::new(),
                        expressions: Vec::new(),
                        modified_column: None,
                        trust_key: true,
                    });
                    plans.len() - 1
                }
            };
            let plan = &mut plans[idx];
            // Every mapping of a table must vouch for an unenforced key.
            plan.trust_key &= m.trust_key;
            let mut add_column = |c: &str| {
                if !plan.columns.iter().any(|x| x.eq_ignore_ascii_case(c)) {
                    plan.columns.push(c.to_owned());
                }
            };
            for k in &m.key {
                add_column(k);
            }
            for c in &m.filter {
                add_column(&c.column);
            }
            for spec in m.fields.iter().flatten().chain(m.division.iter()) {
                match &spec.input {
                    Input::Column(c) => add_column(c),
                    Input::Concat(cs) => cs.iter().for_each(|c| add_column(c)),
                    Input::Expression { .. } | Input::Constant(_) => {}
                }
            }
            if let Some(mc) = &m.modified_column {
                add_column(mc);
            }
            for spec in m.fields.iter().flatten().chain(m.division.iter()) {
                // Aliases are unique per record kind and field, so each mapping reads
                // its own expression's value.
                if let Input::Expression { sql, alias, origin } = &spec.input
                    && !plan.expressions.iter().any(|e| e.alias == *alias)
                {
                    plan.expressions.push(Expression {
                        alias: alias.clone(),
                        sql: sql.clone(),
                        origin: origin.clone(),
                    });
                }
            }
            if plan.modified_column.is_none() {
                plan.modified_column = m.modified_column.clone();
            }
        }
        plans
    }
}

/// True for a plain SQL identifier: a letter or `_`, then letters, digits, `_`, `$`, `#`;
/// at most 128 characters. Such names can be quoted safely in every dialect.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && s.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '#'))
}

/// A table name: an identifier, optionally qualified by one schema identifier.
pub fn is_table_name(s: &str) -> bool {
    match s.split_once('.') {
        Some((schema, table)) => is_identifier(schema) && is_identifier(table),
        None => is_identifier(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_identifier("E_BASEINFO"));
        assert!(is_identifier("ZZJG_DM"));
        assert!(is_identifier("COL$1"));
        assert!(!is_identifier("1COL"));
        assert!(!is_identifier("NAME; DROP TABLE x"));
        assert!(!is_identifier("名称"));
        assert!(!is_identifier(""));
        assert!(is_table_name("DJDB.DJ_JL_JBSJ"));
        assert!(!is_table_name("a.b.c"));
        assert!(!is_table_name("a."));
    }
}

#[cfg(test)]
mod mapping_tests;
