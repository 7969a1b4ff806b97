//! The mapping file as written: serde structures with the place of every value kept.
//!
//! Unknown keys, wrong types and unknown transform names are refused here by the parser;
//! everything that needs knowledge of record kinds is checked in `compile`.

use crate::yaml::{Spanned, SpannedMap};
use serde::Deserialize;

/// One mapping file: a source table → one record kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// The record kind (exchange table) this file fills.
    pub record_kind: Spanned<String>,
    /// Where the rows come from.
    pub source: SourceSection,
    /// Optional override of the division a row is tagged with.
    pub division: Option<Spanned<FieldFile>>,
    /// Canonical field → how to compute it.
    pub fields: Spanned<SpannedMap<Spanned<FieldFile>>>,
}

/// The `source:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// Table name, optionally schema-qualified.
    pub table: Spanned<String>,
    /// Key columns.
    pub key: Spanned<Vec<Spanned<String>>>,
    /// Conditions a row must meet to be a record of this kind (all of them).
    #[serde(default)]
    pub filter: Vec<Spanned<ConditionFile>>,
    /// Last-modified column for timestamp capture.
    pub modified_column: Option<Spanned<String>>,
    /// True: use the key although the source does not enforce it (no unique index, or a
    /// nullable column); rows sharing a key overwrite each other in the warehouse and
    /// rows with a NULL key part go to quarantine.
    pub trust_key: Option<Spanned<bool>>,
}

/// One filter condition: a column and exactly one test.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionFile {
    /// The column tested.
    pub column: Spanned<String>,
    /// Equal to this text.
    pub equals: Option<Spanned<String>>,
    /// Not equal to this text (NULL is not equal).
    pub not_equals: Option<Spanned<String>>,
    /// One of these texts.
    #[serde(rename = "in")]
    pub in_: Option<Spanned<Vec<String>>>,
    /// None of these texts (NULL is none of them).
    pub not_in: Option<Spanned<Vec<String>>>,
    /// NULL (true) or not NULL (false). Blank text counts as NULL.
    pub is_null: Option<Spanned<bool>>,
}

/// How one canonical field is computed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldFile {
    /// A source column.
    pub column: Option<Spanned<String>>,
    /// A source-side SQL expression, evaluated by the source database.
    pub expression: Option<Spanned<String>>,
    /// Source columns whose texts are joined (a NULL one as empty text).
    pub concat: Option<Spanned<Vec<Spanned<String>>>>,
    /// A constant.
    pub value: Option<Spanned<String>>,
    /// Transforms applied in order.
    #[serde(default)]
    pub transforms: Vec<Spanned<TransformFile>>,
}

/// A transform as written: a bare name, or a one-key mapping with its arguments.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformFile {
    /// Trim white space at both ends.
    Trim,
    /// Full-width ASCII and ideographic space to half-width.
    Halfwidth,
    /// Unicode NFKC.
    Nfkc,
    /// Upper case.
    Upper,
    /// Runs of white space to one space, ends trimmed.
    CollapseSpaces,
    /// Identifier normalization: NFKC, upper case, no hyphens/dots/spaces.
    Identifier,
    /// These texts become NULL.
    NullIf(Vec<String>),
    /// NULL becomes this text.
    Default(String),
    /// Parse text with one or more date formats.
    Date(OneOrMany),
    /// Decode legacy bytes (`gbk` or `gb18030`).
    Decode(String),
    /// Look the value up in a code table.
    Lookup(LookupFile),
}

/// One string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// A code lookup: an inline map, a code-table file, or both (the inline map wins).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupFile {
    /// Code → value.
    #[serde(default)]
    pub map: Option<SpannedMap<String>>,
    /// A YAML file of `code: value` pairs, relative to the mapping file.
    pub file: Option<String>,
    /// What to do with a code not in the table: `reject` (default), `keep`, `null`.
    pub missing: Option<String>,
}
