//! What a connector must read from one source table, as the mappings need it.

/// A source table as the mappings of one source read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablePlan {
    /// Table name as the source knows it (may be schema-qualified: `DJDB.DJ_JL_JBSJ`).
    pub table: String,
    /// Key columns, in order. Every mapping on the table must agree on them.
    pub key: Vec<String>,
    /// Columns the mappings reference (fields and filters). The connector reads every
    /// column of the table (the raw row is kept), but must fail fatally when one of these
    /// is missing.
    pub columns: Vec<String>,
    /// Source-side SQL expressions to evaluate with each row.
    pub expressions: Vec<Expression>,
    /// The last-modified column, for timestamp capture.
    pub modified_column: Option<String>,
    /// Use the key although the source does not guarantee it unique and not null (the
    /// mapping says so); otherwise the connector refuses such a key.
    pub trust_key: bool,
}

/// A source-side SQL expression written by the bureau's DBA in a mapping, read as an extra
/// column named `alias`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expression {
    /// The name the value appears under in the row (generated, never from the YAML).
    pub alias: String,
    /// The SQL text, in the source's dialect.
    pub sql: String,
    /// Where it was written, for errors: `file:line:column field `name``.
    pub origin: String,
}
