//! One captured table on SQL Server: its columns as the catalog reports them, and the
//! statements that read it (snapshot chunks, rows by key, keys, rows after a timestamp
//! mark, a modified-time range).
//!
//! Names come from validated mappings and are bracket-quoted here; values always travel
//! as parameters, cast to a character key's own type so its index is used (an NVARCHAR
//! parameter against a VARCHAR column would convert the column, row by row).

use crate::connect::{Conn, classify};
use crate::values::{Reading, code_page_encoding, convert, param_text};
use ebis_capture::keys::{key_problem, split_table};
use ebis_source::{Change, Expression, KeyEntry, Op, Row, SourceError, TablePlan, Value};
use std::sync::Arc;
use tiberius::Query;

/// Quotes an identifier with brackets.
pub fn quote(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// A table name quoted, schema and all.
pub fn quote_table(name: &str) -> String {
    match split_table(name) {
        (Some(s), t) => format!("{}.{}", quote(s), quote(t)),
        (None, t) => quote(t),
    }
}

/// A string literal (N'…'); for names in catalog lookups and trigger bodies.
pub fn literal(s: &str) -> String {
    format!("N'{}'", s.replace('\'', "''"))
}

/// One column as the catalog describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnInfo {
    /// Its name.
    pub name: String,
    /// Its base type (`varchar`, `int`, `datetime2`, …).
    pub ty: String,
    /// Bytes (-1: MAX).
    pub max_length: i16,
    /// Precision (decimal, time types).
    pub precision: u8,
    /// Scale.
    pub scale: u8,
    /// Whether it allows NULL.
    pub nullable: bool,
    /// Its collation's code page (character types).
    pub code_page: Option<i32>,
}

impl ColumnInfo {
    /// The type as DDL writes it (for casts of parameters to a key's type).
    pub fn declared(&self) -> String {
        let len = |bytes: i16, per_char: i16| {
            if bytes < 0 {
                "MAX".to_owned()
            } else {
                (bytes / per_char).max(1).to_string()
            }
        };
        match self.ty.as_str() {
            "char" | "varchar" | "binary" | "varbinary" => {
                format!("{}({})", self.ty, len(self.max_length, 1))
            }
            "nchar" | "nvarchar" => format!("{}({})", self.ty, len(self.max_length, 2)),
            "decimal" | "numeric" => format!("{}({}, {})", self.ty, self.precision, self.scale),
            "datetime2" | "time" | "datetimeoffset" => format!("{}({})", self.ty, self.scale),
            other => other.to_owned(),
        }
    }

    /// How this column is selected, and read. With `raw_text` (the server returns the
    /// stored bytes of character data cast to binary) character columns are selected as
    /// bytes and decoded here; otherwise as the driver reads them.
    pub fn select_item(&self, raw_text: bool) -> (String, Reading) {
        let q = quote(&self.name);
        match self.ty.as_str() {
            "char" | "varchar" | "text" | "nchar" | "nvarchar" | "ntext" if !raw_text => {
                (q, Reading::Plain)
            }
            "char" | "varchar" | "text" => match self.code_page.and_then(code_page_encoding) {
                Some(enc) => (
                    format!("CAST({q} AS VARBINARY(MAX)) AS {q}"),
                    Reading::Legacy(enc),
                ),
                // A code page no decoder knows: as the driver reads it.
                None => (q, Reading::Plain),
            },
            "nchar" | "nvarchar" | "ntext" => (
                format!("CAST({q} AS VARBINARY(MAX)) AS {q}"),
                Reading::Utf16,
            ),
            "money" | "smallmoney" => (
                format!("CAST({q} AS DECIMAL(19, 4)) AS {q}"),
                Reading::Plain,
            ),
            "sql_variant" | "hierarchyid" => (
                format!("CAST({q} AS NVARCHAR(4000)) AS {q}"),
                Reading::Plain,
            ),
            "geometry" | "geography" => (format!("{q}.STAsText() AS {q}"), Reading::Plain),
            _ => (q, Reading::Plain),
        }
    }

    /// A parameter compared with this column: cast to its own type when it is
    /// character data, so an index on it is used.
    pub fn param(&self, n: usize) -> String {
        match self.ty.as_str() {
            "char" | "varchar" | "nchar" | "nvarchar" => {
                format!("CAST(@P{n} AS {})", self.declared())
            }
            _ => format!("@P{n}"),
        }
    }
}

/// `k1 > p1 OR (k1 = p1 AND k2 > p2) OR …` over `keys` (quoted column, parameter).
pub fn after_key(keys: &[(String, String)]) -> String {
    let mut terms = Vec::new();
    for i in 0..keys.len() {
        let mut parts: Vec<String> = keys[..i]
            .iter()
            .map(|(c, p)| format!("{c} = {p}"))
            .collect();
        parts.push(format!("{} > {}", keys[i].0, keys[i].1));
        terms.push(format!("({})", parts.join(" AND ")));
    }
    format!("({})", terms.join(" OR "))
}

/// Binds a value as a parameter (text for what SQL Server converts itself).
pub fn bind(q: &mut Query<'_>, v: &Value) {
    match v {
        Value::Null => q.bind(Option::<String>::None),
        Value::Bool(b) => q.bind(*b),
        Value::Int(i) => q.bind(*i),
        Value::Float(f) => q.bind(*f),
        Value::Bytes(b) => q.bind(b.clone()),
        Value::Date(d) => q.bind(*d),
        Value::DateTime(t) => q.bind(*t),
        other => q.bind(param_text(other)),
    }
}

/// Runs one expression against the table (no rows); an error the source reports is the
/// expression's, named by its mapping's place.
async fn probe_expression(conn: &mut Conn, from: &str, e: &Expression) -> Result<(), SourceError> {
    let sql = format!("SELECT TOP (0) ({}) FROM {from}", e.sql);
    let result = async { conn.simple_query(sql).await?.into_results().await }.await;
    match result {
        Ok(_) => Ok(()),
        Err(err) => match classify(err, None) {
            retry if retry.is_retryable() => Err(retry),
            other => Err(SourceError::Expression {
                origin: e.origin.clone(),
                message: match other {
                    SourceError::Query(m) => m,
                    o => o.to_string(),
                },
            }),
        },
    }
}

/// The columns of a table, in order, from the catalog.
pub async fn columns(conn: &mut Conn, table: &str) -> Result<Vec<ColumnInfo>, SourceError> {
    let sql = "SELECT c.name, TYPE_NAME(c.system_type_id), c.max_length, c.precision, c.scale,
                      c.is_nullable, CAST(COLLATIONPROPERTY(c.collation_name, 'CodePage') AS INT)
               FROM sys.columns c WHERE c.object_id = OBJECT_ID(@P1) ORDER BY c.column_id";
    let rows = conn
        .query(sql, &[&quote_table(table)])
        .await
        .map_err(|e| classify(e, Some(table)))?
        .into_first_result()
        .await
        .map_err(|e| classify(e, Some(table)))?;
    Ok(rows
        .iter()
        .map(|r| ColumnInfo {
            name: r.get::<&str, _>(0).unwrap_or_default().to_owned(),
            ty: r.get::<&str, _>(1).unwrap_or_default().to_ascii_lowercase(),
            max_length: r.get::<i16, _>(2).unwrap_or(0),
            precision: r.get::<u8, _>(3).unwrap_or(0),
            scale: r.get::<u8, _>(4).unwrap_or(0),
            nullable: r.get::<bool, _>(5).unwrap_or(true),
            code_page: r.get::<i32, _>(6).filter(|cp| *cp > 0),
        })
        .collect())
}

/// (index, column) of each unfiltered unique index, columns in key order.
pub async fn unique_indexes(
    conn: &mut Conn,
    table: &str,
) -> Result<Vec<(String, String)>, SourceError> {
    let sql = "SELECT i.name, col.name FROM sys.indexes i
               JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
               JOIN sys.columns col ON col.object_id = ic.object_id AND col.column_id = ic.column_id
               WHERE i.object_id = OBJECT_ID(@P1) AND i.is_unique = 1 AND i.has_filter = 0
                 AND ic.is_included_column = 0
               ORDER BY i.name, ic.key_ordinal";
    let rows = conn
        .query(sql, &[&quote_table(table)])
        .await
        .map_err(|e| classify(e, Some(table)))?
        .into_first_result()
        .await
        .map_err(|e| classify(e, Some(table)))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>(0).unwrap_or_default().to_owned(),
                r.get::<&str, _>(1).unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

/// A table ready to be read.
#[derive(Clone, Debug)]
pub struct Table {
    /// What the mappings need.
    pub plan: TablePlan,
    /// The quoted name.
    pub quoted: String,
    select: String,
    readings: Vec<Reading>,
    /// Select-list positions of the key columns.
    key_idx: Vec<usize>,
    /// The key columns as the catalog describes them.
    pub key_columns: Vec<ColumnInfo>,
    /// Whether character data is selected as bytes (see [`ColumnInfo::select_item`]).
    raw_text: bool,
    /// Position of the modified column in the select list, and its column.
    modified: Option<(usize, ColumnInfo)>,
    /// Each column as the catalog describes it.
    pub columns: Vec<ColumnInfo>,
}

impl Table {
    /// Reads the table's columns from the catalog and checks the plan against them: a
    /// missing table or column is a fatal error naming it.
    pub async fn load(
        conn: &mut Conn,
        plan: &TablePlan,
        raw_text: bool,
    ) -> Result<Table, SourceError> {
        let columns = columns(conn, &plan.table).await?;
        if columns.is_empty() {
            return Err(SourceError::MissingTable {
                table: plan.table.clone(),
            });
        }
        let find = |col: &str| {
            columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(col))
        };
        for col in plan.columns.iter().chain(plan.modified_column.iter()) {
            if find(col).is_none() {
                return Err(SourceError::MissingColumn {
                    table: plan.table.clone(),
                    column: col.clone(),
                });
            }
        }
        let (mut items, mut readings): (Vec<String>, Vec<Reading>) =
            columns.iter().map(|c| c.select_item(raw_text)).unzip();
        for e in &plan.expressions {
            items.push(format!("({}) AS {}", e.sql, quote(&e.alias)));
            readings.push(Reading::Plain);
        }
        let mut key_idx = Vec::new();
        for k in &plan.key {
            key_idx.push(find(k).ok_or_else(|| SourceError::MissingColumn {
                table: plan.table.clone(),
                column: k.clone(),
            })?);
        }
        let quoted = quote_table(&plan.table);
        for e in &plan.expressions {
            probe_expression(conn, &quoted, e).await?;
        }
        if !plan.trust_key {
            let unique = unique_indexes(conn, &plan.table).await?;
            let nullable: Vec<&str> = key_idx
                .iter()
                .filter(|i| columns[**i].nullable)
                .map(|i| columns[*i].name.as_str())
                .collect();
            if let Some(problem) = key_problem(&plan.key, &unique, &nullable) {
                return Err(SourceError::Key {
                    table: plan.table.clone(),
                    problem,
                });
            }
        }
        let modified = plan
            .modified_column
            .as_deref()
            .and_then(find)
            .map(|i| (i, columns[i].clone()));
        if let Some((_, m)) = &modified
            && !matches!(
                m.ty.as_str(),
                "datetime" | "datetime2" | "smalldatetime" | "date" | "datetimeoffset"
            )
        {
            return Err(SourceError::CaptureNotInstalled(format!(
                "the modified column {}.{} is {}: timestamp capture needs a date/time column (a rowversion cannot be compared with the source's clock)",
                plan.table, m.name, m.ty
            )));
        }
        Ok(Table {
            plan: plan.clone(),
            quoted,
            select: items.join(", "),
            readings,
            key_columns: key_idx.iter().map(|i| columns[*i].clone()).collect(),
            key_idx,
            modified,
            columns,
            raw_text,
        })
    }

    /// True when the table has a modified column (timestamp capture possible).
    pub fn has_modified(&self) -> bool {
        self.modified.is_some()
    }

    /// The key columns, quoted.
    pub fn key_quoted(&self) -> Vec<String> {
        self.key_columns.iter().map(|c| quote(&c.name)).collect()
    }

    fn order_by(&self) -> String {
        self.key_quoted().join(", ")
    }

    /// The key comparison after parameters `first`, `first + 1`, ….
    fn after_clause(&self, first: usize) -> String {
        let keys: Vec<(String, String)> = self
            .key_columns
            .iter()
            .enumerate()
            .map(|(i, c)| (quote(&c.name), c.param(first + i)))
            .collect();
        after_key(&keys)
    }

    async fn rows(
        &self,
        conn: &mut Conn,
        sql: String,
        params: &[Value],
    ) -> Result<Vec<Row>, SourceError> {
        tracing::trace!(table = %self.plan.table, "read");
        let mut q = Query::new(sql);
        for p in params {
            bind(&mut q, p);
        }
        let result = async { q.query(conn).await?.into_first_result().await }.await;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => return Err(classify(e, Some(&self.plan.table))),
        };
        // Every row of a result has the same columns: their names are taken once.
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let names = Row::shared_names(
            first.columns().iter().map(|c| c.name()),
            self.readings.len(),
        );
        Ok(rows
            .into_iter()
            .map(|r| {
                let values = r
                    .cells()
                    .zip(&self.readings)
                    .map(|((_, data), reading)| convert(data, *reading))
                    .collect();
                Row::with_names(Arc::clone(&names), values)
            })
            .collect())
    }

    /// The key values of a row read by this table's select list.
    pub fn key_of(&self, row: &Row) -> Vec<Value> {
        row.values_at(&self.key_idx)
    }

    /// The modified column's value, if the table has one.
    pub fn modified_of(&self, row: &Row) -> Option<Value> {
        let (i, _) = self.modified.as_ref()?;
        row.value_at(*i)
    }

    /// One snapshot chunk in key order.
    pub async fn chunk(
        &self,
        conn: &mut Conn,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>, SourceError> {
        let cond = match after {
            Some(_) => format!("WHERE {}", self.after_clause(1)),
            None => String::new(),
        };
        let sql = format!(
            "SELECT TOP ({limit}) {} FROM {} {cond} ORDER BY {}",
            self.select,
            self.quoted,
            self.order_by()
        );
        self.rows(conn, sql, after.unwrap_or(&[])).await
    }

    /// The keys in key order after `after`, with the modified value where there is one.
    pub async fn keys(
        &self,
        conn: &mut Conn,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<KeyEntry>, SourceError> {
        let cond = match after {
            Some(_) => format!("WHERE {}", self.after_clause(1)),
            None => String::new(),
        };
        let mut items: Vec<String> = self
            .key_columns
            .iter()
            .map(|c| c.select_item(self.raw_text).0)
            .collect();
        let mut readings: Vec<Reading> = self
            .key_columns
            .iter()
            .map(|c| c.select_item(self.raw_text).1)
            .collect();
        if let Some((_, m)) = &self.modified {
            items.push(m.select_item(self.raw_text).0);
            readings.push(Reading::Plain);
        }
        let sql = format!(
            "SELECT TOP ({limit}) {} FROM {} {cond} ORDER BY {}",
            items.join(", "),
            self.quoted,
            self.order_by()
        );
        let mut q = Query::new(sql);
        for p in after.unwrap_or(&[]) {
            bind(&mut q, p);
        }
        let rows = async { q.query(conn).await?.into_first_result().await }
            .await
            .map_err(|e| classify(e, Some(&self.plan.table)))?;
        let n = self.key_columns.len();
        Ok(rows
            .into_iter()
            .map(|r| {
                let values: Vec<Value> = r
                    .cells()
                    .zip(&readings)
                    .map(|((_, d), reading)| convert(d, *reading))
                    .collect();
                KeyEntry {
                    key: values[..n].to_vec(),
                    modified: values.get(n).cloned(),
                }
            })
            .collect())
    }

    /// The current rows for these keys.
    pub async fn by_keys(
        &self,
        conn: &mut Conn,
        keys: &[Vec<Value>],
    ) -> Result<Vec<Row>, SourceError> {
        let mut out = Vec::new();
        let n = self.key_columns.len().max(1);
        // At most 2,000 parameters a statement (SQL Server allows 2,100).
        for chunk in keys.chunks((2000 / n).max(1)) {
            let mut params = Vec::new();
            let mut terms = Vec::new();
            for key in chunk {
                let parts: Vec<String> = self
                    .key_columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{} = {}", quote(&c.name), c.param(params.len() + i + 1)))
                    .collect();
                params.extend(key.iter().cloned());
                terms.push(format!("({})", parts.join(" AND ")));
            }
            let sql = format!(
                "SELECT {} FROM {} WHERE {}",
                self.select,
                self.quoted,
                terms.join(" OR ")
            );
            out.extend(self.rows(conn, sql, &params).await?);
        }
        Ok(out)
    }

    /// Rows ordered by (modified, key) after a mark, no later than `upto`.
    pub async fn after_mark(
        &self,
        conn: &mut Conn,
        mark: Option<&Value>,
        key: &[Value],
        upto: &Value,
        limit: usize,
    ) -> Result<Vec<Row>, SourceError> {
        let Some((_, m)) = &self.modified else {
            return Ok(Vec::new());
        };
        let mq = quote(&m.name);
        let (cond, params) = match mark {
            Some(mark) => {
                let keys: Vec<(String, String)> = self
                    .key_columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (quote(&c.name), c.param(i + 3)))
                    .collect();
                let mut params = vec![upto.clone(), mark.clone()];
                params.extend(key.iter().cloned());
                let tie = if key.is_empty() {
                    "1 = 0".to_owned()
                } else {
                    format!("{mq} = @P2 AND {}", after_key(&keys))
                };
                (format!("{mq} <= @P1 AND ({mq} > @P2 OR ({tie}))"), params)
            }
            None => (format!("{mq} <= @P1"), vec![upto.clone()]),
        };
        let sql = format!(
            "SELECT TOP ({limit}) {} FROM {} WHERE {cond} ORDER BY {mq}, {}",
            self.select,
            self.quoted,
            self.order_by()
        );
        self.rows(conn, sql, &params).await
    }

    /// Rows with a modified value in `[from, to]`.
    pub async fn modified_between(
        &self,
        conn: &mut Conn,
        from: &Value,
        to: &Value,
        limit: usize,
    ) -> Result<Vec<Row>, SourceError> {
        let Some((_, m)) = &self.modified else {
            return Ok(Vec::new());
        };
        let mq = quote(&m.name);
        let sql = format!(
            "SELECT TOP ({limit}) {} FROM {} WHERE {mq} >= @P1 AND {mq} <= @P2 ORDER BY {mq}, {}",
            self.select,
            self.quoted,
            self.order_by()
        );
        self.rows(conn, sql, &[from.clone(), to.clone()]).await
    }

    /// The newest modified value.
    pub async fn newest(&self, conn: &mut Conn) -> Result<Option<Value>, SourceError> {
        let Some((_, m)) = &self.modified else {
            return Ok(None);
        };
        let sql = format!("SELECT MAX({}) FROM {}", quote(&m.name), self.quoted);
        let rows = async { conn.simple_query(sql).await?.into_first_result().await }
            .await
            .map_err(|e| classify(e, Some(&self.plan.table)))?;
        Ok(rows
            .first()
            .and_then(|r| r.cells().next().map(|(_, d)| convert(d, Reading::Plain)))
            .filter(|v| !v.is_null()))
    }

    /// The number of rows (from the catalog's row counts: cheap, and close enough for
    /// progress).
    pub async fn count(&self, conn: &mut Conn) -> Result<u64, SourceError> {
        let rows = conn
            .query(
                "SELECT CAST(SUM(p.rows) AS BIGINT) FROM sys.partitions p WHERE p.object_id = OBJECT_ID(@P1) AND p.index_id IN (0, 1)",
                &[&self.quoted],
            )
            .await
            .map_err(|e| classify(e, Some(&self.plan.table)))?
            .into_first_result()
            .await
            .map_err(|e| classify(e, Some(&self.plan.table)))?;
        Ok(rows
            .first()
            .and_then(|r| r.get::<i64, _>(0))
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0))
    }

    /// An upsert of a row read whole.
    pub fn upsert(
        &self,
        row: Row,
        version: i64,
        commit_time: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Change {
        Change {
            table: self.plan.table.clone(),
            op: Op::Upsert,
            key: self.key_of(&row),
            row,
            version,
            commit_time,
        }
    }

    /// Key values logged as text (the change table, Change Tracking's key columns read
    /// as text) as the values a row read of this table gives, so both name one row alike.
    pub fn parse_key(&self, parts: &[Option<String>]) -> Vec<Value> {
        self.key_columns
            .iter()
            .zip(parts)
            .map(|(c, p)| match p {
                None => Value::Null,
                Some(t) => typed(&c.ty, t),
            })
            .collect()
    }
}

/// A key part logged as text (`CONVERT(NVARCHAR, col, 121)`) as its column's value.
pub fn typed(ty: &str, text: &str) -> Value {
    let t = text.trim();
    match ty {
        "tinyint" | "smallint" | "int" | "bigint" => t
            .parse::<i64>()
            .map(Value::Int)
            .unwrap_or_else(|_| Value::Text(text.to_owned())),
        "bit" => Value::Bool(t == "1"),
        "decimal" | "numeric" | "money" | "smallmoney" => Value::Decimal(t.to_owned()),
        "date" => chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map(Value::Date)
            .unwrap_or_else(|_| Value::Text(text.to_owned())),
        "datetime" | "datetime2" | "smalldatetime" => {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                .map(Value::DateTime)
                .unwrap_or_else(|_| Value::Text(text.to_owned()))
        }
        "uniqueidentifier" => Value::Text(t.to_ascii_uppercase()),
        _ => Value::Text(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, max_length: i16, code_page: Option<i32>) -> ColumnInfo {
        ColumnInfo {
            name: name.to_owned(),
            ty: ty.to_owned(),
            max_length,
            precision: 0,
            scale: 0,
            nullable: false,
            code_page,
        }
    }

    #[test]
    fn hostile_names_are_bracket_quoted() {
        assert_eq!(quote("E_BASEINFO"), "[E_BASEINFO]");
        assert_eq!(quote("a]b; DROP TABLE x--"), "[a]]b; DROP TABLE x--]");
        assert_eq!(quote_table("DJ.QY_JBXX"), "[DJ].[QY_JBXX]");
        assert_eq!(literal("O'Brien"), "N'O''Brien'");
    }

    #[test]
    fn legacy_text_is_selected_as_bytes_in_its_code_page() {
        let (item, reading) = col("QYMC", "varchar", 200, Some(936)).select_item(true);
        assert_eq!(item, "CAST([QYMC] AS VARBINARY(MAX)) AS [QYMC]");
        assert_eq!(reading, Reading::Legacy(encoding_rs::GB18030));
        let (item, reading) = col("QYMC", "nvarchar", 400, None).select_item(true);
        assert_eq!(item, "CAST([QYMC] AS VARBINARY(MAX)) AS [QYMC]");
        assert_eq!(reading, Reading::Utf16);
        let (item, _) = col("ZCZB", "money", 8, None).select_item(true);
        assert_eq!(item, "CAST([ZCZB] AS DECIMAL(19, 4)) AS [ZCZB]");
        assert_eq!(col("ID", "int", 4, None).select_item(true).0, "[ID]");
        // A server that converts on such a cast (Babelfish) is read as the driver reads.
        assert_eq!(
            col("QYMC", "varchar", 200, Some(936)).select_item(false),
            ("[QYMC]".to_owned(), Reading::Plain)
        );
    }

    #[test]
    fn character_key_parameters_take_the_column_type() {
        assert_eq!(
            col("NSRSBH", "varchar", 20, Some(936)).param(3),
            "CAST(@P3 AS varchar(20))"
        );
        assert_eq!(
            col("MC", "nvarchar", 100, None).param(1),
            "CAST(@P1 AS nvarchar(50))"
        );
        assert_eq!(col("ID", "int", 4, None).param(2), "@P2");
    }

    #[test]
    fn composite_keys_page_lexicographically() {
        let keys = vec![
            ("[A]".to_owned(), "@P1".to_owned()),
            ("[B]".to_owned(), "@P2".to_owned()),
        ];
        assert_eq!(
            after_key(&keys),
            "(([A] > @P1) OR ([A] = @P1 AND [B] > @P2))"
        );
    }

    #[test]
    fn logged_key_text_reads_as_the_row_value() {
        assert_eq!(typed("int", "42"), Value::Int(42));
        assert_eq!(
            typed("datetime", "2006-03-01 08:00:00.000"),
            Value::DateTime(
                chrono::NaiveDate::from_ymd_opt(2006, 3, 1)
                    .and_then(|d| d.and_hms_opt(8, 0, 0))
                    .expect("t")
            )
        );
        assert_eq!(
            typed("uniqueidentifier", "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
            Value::Text("6F9619FF-8B86-D011-B42D-00C04FC964FF".to_owned())
        );
        assert_eq!(
            typed("varchar", "150302 "),
            Value::Text("150302 ".to_owned())
        );
    }
}
