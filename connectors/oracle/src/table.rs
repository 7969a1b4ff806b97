//! One captured table on Oracle: its columns as the catalog reports them, and the
//! statements that read it (snapshot chunks, as of an SCN where flashback is granted;
//! rows by key; keys; rows after a timestamp or commit-number mark; a modified-time
//! range).
//!
//! Statements limit rows with `ROWNUM` around an ordered subquery, which every Oracle
//! version runs (`FETCH FIRST` needs 12c). Placeholders are numbered in the order they
//! appear and each is bound once (Oracle binds SQL placeholders by position). A key
//! parameter is cast to its column's type where Oracle would otherwise convert the
//! column (a `DATE` against a timestamp bind) or compare without blank padding (`CHAR`).

use crate::connect::Session;
use crate::names::{check_identifier, quote, quote_table};
use crate::values::{Param, Reading, fetch, with_params};
use ebis_capture::keys::{key_problem, split_table};
use ebis_source::{Change, Expression, KeyEntry, Op, Row, SourceError, TablePlan, Value};
use std::sync::Arc;

/// Oracle's pseudo-column holding a row's commit number (per block, or per row with
/// `ROWDEPENDENCIES`).
pub const ROWSCN: &str = "ORA_ROWSCN";

/// A statement and its parameters, placeholders numbered as they are added.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stmt {
    /// The SQL text.
    pub sql: String,
    /// The parameters, in placeholder order.
    pub params: Vec<Param>,
}

impl Stmt {
    /// The placeholder for a new parameter.
    pub fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        format!(":{}", self.params.len())
    }
}

/// One column as the catalog describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnInfo {
    /// Its name.
    pub name: String,
    /// Its type as `ALL_TAB_COLUMNS.DATA_TYPE` says (`NUMBER`, `VARCHAR2`,
    /// `TIMESTAMP(6) WITH TIME ZONE`, …).
    pub ty: String,
    /// Length in characters (character types) or bytes.
    pub length: u32,
    /// Whether it allows NULL.
    pub nullable: bool,
}

impl ColumnInfo {
    fn base(&self) -> &str {
        self.ty.split('(').next().unwrap_or(&self.ty).trim()
    }

    /// Whether the type is a date or time (a modified column must be one).
    pub fn is_datetime(&self) -> bool {
        self.base() == "DATE" || self.ty.starts_with("TIMESTAMP")
    }

    /// How this column is selected and read; `None` for a type ebis does not read (the
    /// column is left out of the row, and refused if a mapping reads it). `stored`: the
    /// database character set's encoding, when character data is read as its bytes.
    pub fn select_item(
        &self,
        stored: Option<&'static encoding_rs::Encoding>,
    ) -> Option<(String, Reading)> {
        let q = quote(&self.name);
        let plain = |r| Some((q.clone(), r));
        match self.base() {
            "NUMBER" | "FLOAT" | "INTEGER" => plain(Reading::Number),
            "BINARY_FLOAT" | "BINARY_DOUBLE" => plain(Reading::Float),
            "VARCHAR2" | "VARCHAR" | "CHAR" => {
                let padded = self.base() == "CHAR";
                match stored {
                    Some(enc) => Some((
                        format!("UTL_RAW.CAST_TO_RAW({q}) AS {q}"),
                        Reading::Stored(enc, padded),
                    )),
                    None if padded => plain(Reading::PaddedText),
                    None => plain(Reading::Text),
                }
            }
            "NCHAR" => plain(Reading::PaddedText),
            "NVARCHAR2" | "CLOB" | "NCLOB" | "LONG" => plain(Reading::Text),
            "RAW" | "BLOB" | "LONG RAW" => plain(Reading::Bytes),
            "DATE" => plain(Reading::DateTime),
            t if t.starts_with("TIMESTAMP") => plain(Reading::DateTime),
            "ROWID" | "UROWID" => Some((format!("ROWIDTOCHAR({q}) AS {q}"), Reading::Other)),
            t if t.starts_with("INTERVAL") => {
                Some((format!("TO_CHAR({q}) AS {q}"), Reading::Other))
            }
            _ => None,
        }
    }

    /// A parameter compared with this column: cast where Oracle would otherwise convert
    /// the column (and skip its index) or compare a `CHAR` without padding.
    pub fn param(&self, stmt: &mut Stmt, p: Param) -> String {
        let p = match (self.base(), p) {
            ("NCHAR" | "NVARCHAR2", Param::Text(s)) => Param::NText(s),
            (_, p) => p,
        };
        let ph = stmt.bind(p);
        match self.base() {
            "DATE" => format!("CAST({ph} AS DATE)"),
            "CHAR" => format!("CAST({ph} AS CHAR({} CHAR))", self.length.max(1)),
            "NCHAR" => format!("CAST({ph} AS NCHAR({}))", self.length.max(1)),
            _ => ph,
        }
    }

    /// A key value logged as text by the change table's triggers, back in this column's
    /// type (numbers exact, dates by the triggers' format, `CHAR` without its padding).
    pub fn parse_logged(&self, text: Option<&str>) -> Value {
        let Some(t) = text else {
            return Value::Null;
        };
        match self.base() {
            "NUMBER" | "FLOAT" | "INTEGER" => crate::values::number(t),
            "DATE" => chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
                .map_or_else(|_| Value::Text(t.to_owned()), Value::DateTime),
            "CHAR" | "NCHAR" => Value::Text(t.trim_end_matches(' ').to_owned()),
            _ => Value::Text(t.to_owned()),
        }
    }
}

/// `k1 > p1 OR (k1 = p2 AND k2 > p3) OR …` over the key columns and values.
pub fn after_key(stmt: &mut Stmt, columns: &[ColumnInfo], values: &[Value]) -> String {
    let mut terms = Vec::new();
    for i in 0..columns.len().min(values.len()) {
        let mut parts = Vec::new();
        for (c, v) in columns[..i].iter().zip(values) {
            let p = c.param(stmt, Param::of(v));
            parts.push(format!("{} = {p}", quote(&c.name)));
        }
        let p = columns[i].param(stmt, Param::of(&values[i]));
        parts.push(format!("{} > {p}", quote(&columns[i].name)));
        terms.push(format!("({})", parts.join(" AND ")));
    }
    format!("({})", terms.join(" OR "))
}

/// At most `limit` rows of an ordered query.
pub fn limited(inner: &str, limit: usize) -> String {
    format!("SELECT * FROM ({inner}) WHERE ROWNUM <= {limit}")
}

/// A table ready to be read.
#[derive(Clone, Debug)]
pub struct Table {
    /// What the mappings need.
    pub plan: TablePlan,
    /// The schema, as the catalog spells it.
    pub owner: String,
    /// The table's name, as the catalog spells it.
    pub name: String,
    /// `"OWNER"."TABLE"`.
    pub quoted: String,
    /// The select list.
    pub select: String,
    /// How each select-list item is read, with the name the row gives it.
    pub readings: Arc<[(String, Reading)]>,
    /// Select-list positions of the key columns.
    key_idx: Vec<usize>,
    /// The key columns as the catalog describes them.
    pub key_columns: Vec<ColumnInfo>,
    /// Position of the modified column (or `ORA_ROWSCN`) in the select list, and its
    /// column.
    modified: Option<(usize, ColumnInfo)>,
    /// Whether rows are stamped by `ORA_ROWSCN` instead of a modified column.
    pub rowscn: bool,
    /// Each column as the catalog describes it.
    pub columns: Vec<ColumnInfo>,
}

/// What the catalog says of a table.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// The schema, as the catalog spells it.
    pub owner: String,
    /// The table, as the catalog spells it.
    pub name: String,
    /// Its columns, in order.
    pub columns: Vec<ColumnInfo>,
    /// (index or constraint, column) of each unique index and primary or unique
    /// constraint, columns in order.
    pub unique: Vec<(String, String)>,
}

/// The catalog queries of one table: the object (as written, else in upper case), its
/// columns, its unique indexes and constraints.
pub const CATALOG_OBJECT: &str = "SELECT OWNER, OBJECT_NAME FROM ALL_OBJECTS
 WHERE OWNER IN (:1, UPPER(:2)) AND OBJECT_NAME IN (:3, UPPER(:4)) AND OBJECT_TYPE IN ('TABLE', 'VIEW')
 ORDER BY CASE WHEN OWNER = :5 THEN 0 ELSE 1 END, CASE WHEN OBJECT_NAME = :6 THEN 0 ELSE 1 END";
/// The columns of a table.
pub const CATALOG_COLUMNS: &str = "SELECT COLUMN_NAME, DATA_TYPE, CASE WHEN CHAR_USED IN ('B', 'C') THEN CHAR_LENGTH ELSE DATA_LENGTH END, NULLABLE
 FROM ALL_TAB_COLUMNS WHERE OWNER = :1 AND TABLE_NAME = :2 ORDER BY COLUMN_ID";
/// Unique indexes and primary-key or unique constraints.
pub const CATALOG_UNIQUE: &str = "SELECT i.INDEX_NAME, c.COLUMN_NAME FROM ALL_INDEXES i
 JOIN ALL_IND_COLUMNS c ON c.INDEX_OWNER = i.OWNER AND c.INDEX_NAME = i.INDEX_NAME
 WHERE i.TABLE_OWNER = :1 AND i.TABLE_NAME = :2 AND i.UNIQUENESS = 'UNIQUE'
 UNION ALL
 SELECT k.CONSTRAINT_NAME, c.COLUMN_NAME FROM ALL_CONSTRAINTS k
 JOIN ALL_CONS_COLUMNS c ON c.OWNER = k.OWNER AND c.CONSTRAINT_NAME = k.CONSTRAINT_NAME
 WHERE k.OWNER = :3 AND k.TABLE_NAME = :4 AND k.CONSTRAINT_TYPE IN ('P', 'U') AND k.STATUS = 'ENABLED'";

/// Reads what the catalog says of `table` (`default_owner`: the session's schema, for an
/// unqualified name); `None` when no such table or view is visible.
pub async fn catalog(
    session: &Session,
    table: &str,
    default_owner: &str,
) -> Result<Option<Catalog>, SourceError> {
    let (owner, name) = match split_table(table) {
        (Some(o), n) => (o.to_owned(), n.to_owned()),
        (None, n) => (default_owner.to_owned(), n.to_owned()),
    };
    for n in [&owner, &name] {
        if let Some(why) = check_identifier(n) {
            return Err(SourceError::Query(format!("table {table}: {why}")));
        }
    }
    session
        .run(Some(table), move |conn| {
            let mut found = conn.query(
                CATALOG_OBJECT,
                &[&owner, &owner, &name, &name, &owner, &name],
            )?;
            let hit = match found.next() {
                Some(row) => {
                    let row = row?;
                    Some((row.get::<usize, String>(0)?, row.get::<usize, String>(1)?))
                }
                None => None,
            };
            let Some((owner, name)) = hit else {
                return Ok(None);
            };
            let mut columns = Vec::new();
            for row in conn.query(CATALOG_COLUMNS, &[&owner, &name])? {
                let row = row?;
                columns.push(ColumnInfo {
                    name: row.get(0)?,
                    ty: row.get::<usize, String>(1)?.to_ascii_uppercase(),
                    length: row.get::<usize, Option<u32>>(2)?.unwrap_or(0),
                    nullable: row.get::<usize, String>(3)? != "N",
                });
            }
            let mut unique = Vec::new();
            for row in conn.query(CATALOG_UNIQUE, &[&owner, &name, &owner, &name])? {
                let row = row?;
                unique.push((row.get(0)?, row.get(1)?));
            }
            Ok(Some(Catalog {
                owner,
                name,
                columns,
                unique,
            }))
        })
        .await
}

/// Runs one expression against the table (no rows); an error the source reports is the
/// expression's, named by its mapping's place.
async fn probe_expression(
    session: &Session,
    from: &str,
    e: &Expression,
) -> Result<(), SourceError> {
    let sql = format!("SELECT ({}) FROM {from} WHERE 1 = 0", e.sql);
    match session
        .run(None, move |conn| conn.query(&sql, &[]).map(|_| ()))
        .await
    {
        Ok(()) => Ok(()),
        Err(retry) if retry.is_retryable() => Err(retry),
        Err(other) => Err(SourceError::Expression {
            origin: e.origin.clone(),
            message: match other {
                SourceError::Query(m) => m,
                o => o.to_string(),
            },
        }),
    }
}

impl Table {
    /// Builds the table from what the catalog says, checking the plan against it: a
    /// missing column is a fatal error naming it, as is a key the source does not
    /// guarantee (unless the mapping vouches for it).
    pub fn from_catalog(
        plan: &TablePlan,
        cat: Catalog,
        stored: Option<&'static encoding_rs::Encoding>,
    ) -> Result<Table, SourceError> {
        let columns = cat.columns;
        let rowscn = plan
            .modified_column
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case(ROWSCN));
        let mut items = Vec::new();
        let mut readings: Vec<(String, Reading)> = Vec::new();
        let mut position = vec![None; columns.len()];
        for (i, c) in columns.iter().enumerate() {
            if let Some((item, reading)) = c.select_item(stored) {
                position[i] = Some(items.len());
                items.push(item);
                readings.push((c.name.clone(), reading));
            }
        }
        let find = |col: &str| {
            columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(col))
        };
        for col in plan
            .columns
            .iter()
            .chain(plan.modified_column.iter())
            .chain(plan.key.iter())
        {
            if col.eq_ignore_ascii_case(ROWSCN) && rowscn {
                continue;
            }
            let Some(i) = find(col) else {
                return Err(SourceError::MissingColumn {
                    table: plan.table.clone(),
                    column: col.clone(),
                });
            };
            if position[i].is_none() {
                return Err(SourceError::Query(format!(
                    "source table {} column {} is of type {}, which ebis does not read; map an expression that converts it (`TO_CHAR(...)`)",
                    plan.table, columns[i].name, columns[i].ty
                )));
            }
        }
        let modified = if rowscn {
            items.push(ROWSCN.to_owned());
            readings.push((ROWSCN.to_owned(), Reading::Number));
            Some((
                items.len() - 1,
                ColumnInfo {
                    name: ROWSCN.to_owned(),
                    ty: "NUMBER".to_owned(),
                    length: 0,
                    nullable: false,
                },
            ))
        } else {
            match plan.modified_column.as_deref().and_then(find) {
                Some(i) if !columns[i].is_datetime() => {
                    return Err(SourceError::CaptureNotInstalled(format!(
                        "the modified column {}.{} is {}: timestamp capture needs a DATE or TIMESTAMP column, or `modified_column: ORA_ROWSCN` for a table without one",
                        plan.table, columns[i].name, columns[i].ty
                    )));
                }
                Some(i) => position[i].map(|p| (p, columns[i].clone())),
                None => None,
            }
        };
        for e in &plan.expressions {
            items.push(format!("({}) AS {}", e.sql, quote(&e.alias)));
            readings.push((e.alias.clone(), Reading::Other));
        }
        let mut key_idx = Vec::new();
        let mut key_columns = Vec::new();
        for k in &plan.key {
            let i = find(k).ok_or_else(|| SourceError::MissingColumn {
                table: plan.table.clone(),
                column: k.clone(),
            })?;
            key_idx.push(position[i].unwrap_or(0));
            key_columns.push(columns[i].clone());
        }
        if !plan.trust_key {
            let nullable: Vec<&str> = key_columns
                .iter()
                .filter(|c| c.nullable)
                .map(|c| c.name.as_str())
                .collect();
            if let Some(problem) = key_problem(&plan.key, &cat.unique, &nullable) {
                return Err(SourceError::Key {
                    table: plan.table.clone(),
                    problem,
                });
            }
        }
        Ok(Table {
            plan: plan.clone(),
            quoted: quote_table(&cat.owner, &cat.name),
            owner: cat.owner,
            name: cat.name,
            select: items.join(", "),
            readings: readings.into(),
            key_idx,
            key_columns,
            modified,
            rowscn,
            columns,
        })
    }

    /// Reads the table's catalog and checks the plan and its expressions against it.
    pub async fn load(
        session: &Session,
        plan: &TablePlan,
        default_owner: &str,
        stored: Option<&'static encoding_rs::Encoding>,
    ) -> Result<Table, SourceError> {
        let cat = catalog(session, &plan.table, default_owner)
            .await?
            .ok_or_else(|| SourceError::MissingTable {
                table: plan.table.clone(),
            })?;
        let t = Table::from_catalog(plan, cat, stored)?;
        for e in &plan.expressions {
            probe_expression(session, &t.quoted, e).await?;
        }
        Ok(t)
    }

    /// True when the table has a modified column or `ORA_ROWSCN` (timestamp capture).
    pub fn has_modified(&self) -> bool {
        self.modified.is_some()
    }

    /// The key columns, quoted, in order.
    fn order_by(&self) -> String {
        self.key_columns
            .iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `FROM` with a flashback clause when `scn` is given.
    fn from(&self, stmt: &mut Stmt, scn: Option<i64>) -> String {
        match scn {
            Some(n) => {
                let p = stmt.bind(Param::Int(n));
                format!("{} AS OF SCN {p}", self.quoted)
            }
            None => self.quoted.clone(),
        }
    }

    /// One snapshot chunk in key order, as of `scn` when given.
    pub fn chunk_stmt(&self, after: Option<&[Value]>, limit: usize, scn: Option<i64>) -> Stmt {
        let mut s = Stmt::default();
        let from = self.from(&mut s, scn);
        let cond = match after {
            Some(k) => format!(" WHERE {}", after_key(&mut s, &self.key_columns, k)),
            None => String::new(),
        };
        s.sql = limited(
            &format!(
                "SELECT {} FROM {from}{cond} ORDER BY {}",
                self.select,
                self.order_by()
            ),
            limit,
        );
        s
    }

    /// The current rows for some keys (at most 1,000 keys: Oracle's IN-list limit).
    pub fn by_keys_stmt(&self, keys: &[Vec<Value>]) -> Stmt {
        let mut s = Stmt::default();
        let cond = if self.key_columns.len() == 1 {
            let c = &self.key_columns[0];
            let list: Vec<String> = keys
                .iter()
                .map(|k| c.param(&mut s, Param::of(k.first().unwrap_or(&Value::Null))))
                .collect();
            format!("{} IN ({})", quote(&c.name), list.join(", "))
        } else {
            let mut ors = Vec::new();
            for k in keys {
                let mut ands = Vec::new();
                for (c, v) in self.key_columns.iter().zip(k) {
                    let p = c.param(&mut s, Param::of(v));
                    ands.push(format!("{} = {p}", quote(&c.name)));
                }
                ors.push(format!("({})", ands.join(" AND ")));
            }
            ors.join(" OR ")
        };
        s.sql = format!("SELECT {} FROM {} WHERE {cond}", self.select, self.quoted);
        s
    }

    /// Keys in key order after `after`, with the modified value (or `ORA_ROWSCN`).
    pub fn keys_stmt(&self, after: Option<&[Value]>, limit: usize) -> Stmt {
        let mut s = Stmt::default();
        let mut items: Vec<String> = self.key_columns.iter().map(|c| quote(&c.name)).collect();
        if let Some((_, m)) = &self.modified {
            items.push(if self.rowscn {
                ROWSCN.to_owned()
            } else {
                quote(&m.name)
            });
        }
        let cond = match after {
            Some(k) => format!(" WHERE {}", after_key(&mut s, &self.key_columns, k)),
            None => String::new(),
        };
        s.sql = limited(
            &format!(
                "SELECT {} FROM {}{cond} ORDER BY {}",
                items.join(", "),
                self.quoted,
                self.order_by()
            ),
            limit,
        );
        s
    }

    /// The stamp expression: the modified column, or `ORA_ROWSCN`.
    fn stamp(&self) -> String {
        match &self.modified {
            Some(_) if self.rowscn => ROWSCN.to_owned(),
            Some((_, m)) => quote(&m.name),
            None => "NULL".to_owned(),
        }
    }

    /// A parameter compared with the stamp: cast to `DATE` for a `DATE` column (a
    /// timestamp bind would make Oracle convert the column and skip its index).
    fn stamp_param(&self, stmt: &mut Stmt, v: &Value) -> String {
        match &self.modified {
            Some((_, m)) if !self.rowscn => m.param(stmt, Param::of(v)),
            _ => stmt.bind(Param::of(v)),
        }
    }

    /// Rows ordered by (stamp, key) after the mark (`None`: from the first), with a stamp
    /// no later than `upto`.
    pub fn after_mark_stmt(
        &self,
        mark: Option<&Value>,
        key: &[Value],
        upto: &Value,
        limit: usize,
    ) -> Stmt {
        let mut s = Stmt::default();
        let m = self.stamp();
        let mut conds = Vec::new();
        if let Some(mark) = mark {
            if key.is_empty() {
                let p = self.stamp_param(&mut s, mark);
                conds.push(format!("{m} > {p}"));
            } else {
                let p1 = self.stamp_param(&mut s, mark);
                let p2 = self.stamp_param(&mut s, mark);
                let after = after_key(&mut s, &self.key_columns, key);
                conds.push(format!("({m} > {p1} OR ({m} = {p2} AND {after}))"));
            }
        }
        let p = self.stamp_param(&mut s, upto);
        conds.push(format!("{m} <= {p}"));
        s.sql = limited(
            &format!(
                "SELECT {} FROM {} WHERE {} ORDER BY {m}, {}",
                self.select,
                self.quoted,
                conds.join(" AND "),
                self.order_by()
            ),
            limit,
        );
        s
    }

    /// Rows with a modified value in `[from, to]`.
    pub fn between_stmt(&self, from: &Value, to: &Value, limit: usize) -> Stmt {
        let mut s = Stmt::default();
        let m = self.stamp();
        let a = self.stamp_param(&mut s, from);
        let b = self.stamp_param(&mut s, to);
        s.sql = limited(
            &format!(
                "SELECT {} FROM {} WHERE {m} BETWEEN {a} AND {b} ORDER BY {m}, {}",
                self.select,
                self.quoted,
                self.order_by()
            ),
            limit,
        );
        s
    }

    /// The newest modified value at or before `upto` (the timestamp head).
    pub fn newest_stmt(&self, upto: &Value) -> Stmt {
        let mut s = Stmt::default();
        let m = self.stamp();
        let p = self.stamp_param(&mut s, upto);
        s.sql = format!("SELECT MAX({m}) FROM {} WHERE {m} <= {p}", self.quoted);
        s
    }

    /// Runs a statement of this table's select list.
    pub async fn rows(&self, session: &Session, stmt: Stmt) -> Result<Vec<Row>, SourceError> {
        tracing::trace!(table = %self.plan.table, "read");
        let readings = self.readings.clone();
        // Every row shares the select list's names.
        let names: Arc<Vec<String>> = Arc::new(readings.iter().map(|(n, _)| n.clone()).collect());
        session
            .run(Some(&self.plan.table), move |conn| {
                with_params(&stmt.params, |params| {
                    let mut out = Vec::new();
                    for row in conn.query(&stmt.sql, params)? {
                        let row = row?;
                        let values = readings
                            .iter()
                            .enumerate()
                            .map(|(i, (_, reading))| fetch(&row, i, *reading))
                            .collect::<Result<Vec<_>, _>>()?;
                        out.push(Row::with_names(Arc::clone(&names), values));
                    }
                    Ok(out)
                })
            })
            .await
    }

    /// The key values of a row read by this table's select list.
    pub fn key_of(&self, row: &Row) -> Vec<Value> {
        row.values_at(&self.key_idx)
    }

    /// The modified column's value (or `ORA_ROWSCN`), if the table has one.
    pub fn modified_of(&self, row: &Row) -> Option<Value> {
        let (i, _) = self.modified.as_ref()?;
        row.value_at(*i)
    }

    /// A row as an upsert.
    pub fn upsert(&self, row: Row, version: i64) -> Change {
        Change {
            table: self.plan.table.clone(),
            op: Op::Upsert,
            key: self.key_of(&row),
            row,
            version,
            commit_time: None,
        }
    }

    /// The keys in key order after `after`, with the modified value.
    pub async fn keys(
        &self,
        session: &Session,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<KeyEntry>, SourceError> {
        let stmt = self.keys_stmt(after, limit);
        let mut readings: Vec<Reading> = self
            .key_columns
            .iter()
            .map(|c| {
                // Keys are compared, not stored: the driver's conversion will do.
                match c.select_item(None).map(|(_, r)| r) {
                    Some(r) => r,
                    None => Reading::Other,
                }
            })
            .collect();
        let with_modified = self.modified.is_some();
        if with_modified {
            readings.push(if self.rowscn {
                Reading::Number
            } else {
                Reading::DateTime
            });
        }
        let width = self.key_columns.len();
        session
            .run(Some(&self.plan.table), move |conn| {
                with_params(&stmt.params, |params| {
                    let mut out = Vec::new();
                    for row in conn.query(&stmt.sql, params)? {
                        let row = row?;
                        let mut key = Vec::with_capacity(width);
                        for (i, r) in readings.iter().take(width).enumerate() {
                            key.push(fetch(&row, i, *r)?);
                        }
                        let modified = if with_modified {
                            Some(fetch(&row, width, readings[width])?)
                        } else {
                            None
                        };
                        out.push(KeyEntry { key, modified });
                    }
                    Ok(out)
                })
            })
            .await
    }

    /// The rows of the table (an estimate from the statistics where there are any).
    pub async fn count(&self, session: &Session) -> Result<u64, SourceError> {
        let (owner, name, quoted) = (self.owner.clone(), self.name.clone(), self.quoted.clone());
        session
            .run(Some(&self.plan.table), move |conn| {
                let stats: Option<i64> = conn
                    .query_row_as::<Option<i64>>(
                        "SELECT NUM_ROWS FROM ALL_TABLES WHERE OWNER = :1 AND TABLE_NAME = :2",
                        &[&owner, &name],
                    )
                    .ok()
                    .flatten();
                match stats {
                    Some(n) if n > 0 => Ok(n as u64),
                    _ => {
                        let n: i64 =
                            conn.query_row_as(&format!("SELECT COUNT(*) FROM {quoted}"), &[])?;
                        Ok(n.max(0) as u64)
                    }
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, length: u32, nullable: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.to_owned(),
            ty: ty.to_owned(),
            length,
            nullable,
        }
    }

    fn plan(key: &[&str], modified: Option<&str>) -> TablePlan {
        TablePlan {
            table: "NTAX.DJ_NSRXX".to_owned(),
            key: key.iter().map(|s| (*s).to_owned()).collect(),
            columns: vec!["NSRMC".to_owned()],
            expressions: Vec::new(),
            modified_column: modified.map(str::to_owned),
            trust_key: false,
        }
    }

    fn catalog() -> Catalog {
        Catalog {
            owner: "NTAX".to_owned(),
            name: "DJ_NSRXX".to_owned(),
            columns: vec![
                col("NSRDZDAH", "NUMBER", 22, false),
                col("NSRMC", "VARCHAR2", 200, true),
                col("ZZJG_DM", "CHAR", 9, true),
                col("DJRQ", "DATE", 7, true),
                col("XGRQ", "TIMESTAMP(6)", 11, true),
                col("SHAPE", "SDO_GEOMETRY", 1, true),
            ],
            unique: vec![("PK_DJ_NSRXX".to_owned(), "NSRDZDAH".to_owned())],
        }
    }

    #[test]
    fn statements_page_by_key_with_each_placeholder_bound_once() {
        let gbk = crate::values::charset_encoding("ZHS16GBK");
        let t = Table::from_catalog(&plan(&["NSRDZDAH"], Some("XGRQ")), catalog(), gbk)
            .expect("a table");
        assert_eq!(
            t.select,
            "\"NSRDZDAH\", UTL_RAW.CAST_TO_RAW(\"NSRMC\") AS \"NSRMC\", UTL_RAW.CAST_TO_RAW(\"ZZJG_DM\") AS \"ZZJG_DM\", \"DJRQ\", \"XGRQ\"",
            "a type ebis does not read is left out of the row"
        );
        let s = t.chunk_stmt(Some(&[Value::Int(41)]), 500, Some(8_812_345));
        assert_eq!(
            s.sql,
            format!(
                "SELECT * FROM (SELECT {} FROM \"NTAX\".\"DJ_NSRXX\" AS OF SCN :1 WHERE ((\"NSRDZDAH\" > :2)) ORDER BY \"NSRDZDAH\") WHERE ROWNUM <= 500",
                t.select
            )
        );
        assert_eq!(s.params, vec![Param::Int(8_812_345), Param::Int(41)]);
        let s = t.after_mark_stmt(Some(&Value::Int(7)), &[Value::Int(3)], &Value::Int(9), 100);
        assert!(
            s.sql.contains("(\"XGRQ\" > :1 OR (\"XGRQ\" = :2 AND ((\"NSRDZDAH\" > :3)))) AND \"XGRQ\" <= :4 ORDER BY \"XGRQ\", \"NSRDZDAH\""),
            "{}",
            s.sql
        );
        assert_eq!(s.params.len(), 4);
    }

    #[test]
    fn composite_and_padded_keys_cast_their_parameters() {
        let mut cat = catalog();
        cat.unique = vec![
            ("UK".to_owned(), "ZZJG_DM".to_owned()),
            ("UK".to_owned(), "DJRQ".to_owned()),
        ];
        cat.columns[2].nullable = false;
        cat.columns[3].nullable = false;
        let t = Table::from_catalog(&plan(&["ZZJG_DM", "DJRQ"], None), cat, None).expect("a table");
        let k = vec![
            Value::Text("MA0N1X2Y3".to_owned()),
            Value::DateTime(
                chrono::NaiveDate::from_ymd_opt(2006, 3, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .expect("a time"),
            ),
        ];
        let s = t.by_keys_stmt(std::slice::from_ref(&k));
        assert!(
            s.sql.ends_with(
                "WHERE (\"ZZJG_DM\" = CAST(:1 AS CHAR(9 CHAR)) AND \"DJRQ\" = CAST(:2 AS DATE))"
            ),
            "{}",
            s.sql
        );
        let s = t.keys_stmt(Some(&k), 1000);
        assert!(
            s.sql.contains("WHERE ((\"ZZJG_DM\" > CAST(:1 AS CHAR(9 CHAR))) OR (\"ZZJG_DM\" = CAST(:2 AS CHAR(9 CHAR)) AND \"DJRQ\" > CAST(:3 AS DATE)))"),
            "{}",
            s.sql
        );
        assert_eq!(s.params.len(), 3);
    }

    #[test]
    fn rowscn_tables_select_the_pseudo_column_and_stamp_by_it() {
        let t = Table::from_catalog(&plan(&["NSRDZDAH"], Some("ora_rowscn")), catalog(), None)
            .expect("a table");
        assert!(t.rowscn && t.has_modified());
        assert!(t.select.ends_with(", ORA_ROWSCN"), "{}", t.select);
        let s = t.after_mark_stmt(Some(&Value::Int(500)), &[], &Value::Int(510), 100);
        assert!(
            s.sql.contains(
                "WHERE ORA_ROWSCN > :1 AND ORA_ROWSCN <= :2 ORDER BY ORA_ROWSCN, \"NSRDZDAH\""
            ),
            "{}",
            s.sql
        );
        let mut row = Row::new();
        for (name, _) in t.readings.iter() {
            row.push(name.clone(), Value::Int(1));
        }
        assert_eq!(t.modified_of(&row), Some(Value::Int(1)));
    }

    #[test]
    fn the_catalog_refuses_what_ebis_cannot_read_or_key() {
        let e = Table::from_catalog(&plan(&["NSRDZDAH"], Some("NSRMC")), catalog(), None)
            .expect_err("a text modified column");
        assert!(e.to_string().contains("DATE or TIMESTAMP"), "{e}");
        let mut p = plan(&["NSRDZDAH"], None);
        p.columns.push("SHAPE".to_owned());
        let e = Table::from_catalog(&p, catalog(), None).expect_err("an unreadable type");
        assert!(e.to_string().contains("SDO_GEOMETRY"), "{e}");
        let mut p = plan(&["NSRMC"], None);
        p.columns.push("NOPE".to_owned());
        let e = Table::from_catalog(&p, catalog(), None).expect_err("a missing column");
        assert!(matches!(e, SourceError::MissingColumn { ref column, .. } if column == "NOPE"));
        let e = Table::from_catalog(&plan(&["NSRMC"], None), catalog(), None)
            .expect_err("a key without a unique index");
        assert!(matches!(e, SourceError::Key { .. }), "{e}");
    }

    #[test]
    fn a_date_modified_column_is_compared_with_date_parameters() {
        let t = Table::from_catalog(&plan(&["NSRDZDAH"], Some("DJRQ")), catalog(), None)
            .expect("a table");
        let at = |h| {
            Value::DateTime(
                chrono::NaiveDate::from_ymd_opt(2006, 3, 1)
                    .and_then(|d| d.and_hms_opt(h, 0, 0))
                    .expect("a time"),
            )
        };
        let s = t.after_mark_stmt(Some(&at(8)), &[], &at(9), 100);
        assert!(
            s.sql
                .contains("WHERE \"DJRQ\" > CAST(:1 AS DATE) AND \"DJRQ\" <= CAST(:2 AS DATE)"),
            "{}",
            s.sql
        );
        let s = t.between_stmt(&at(7), &at(8), 100);
        assert!(
            s.sql
                .contains("\"DJRQ\" BETWEEN CAST(:1 AS DATE) AND CAST(:2 AS DATE)"),
            "{}",
            s.sql
        );
    }

    #[test]
    fn logged_keys_come_back_in_their_column_types() {
        let n = col("ID", "NUMBER", 22, false);
        assert_eq!(n.parse_logged(Some("42")), Value::Int(42));
        assert_eq!(n.parse_logged(None), Value::Null);
        let d = col("DJRQ", "DATE", 7, false);
        assert!(matches!(
            d.parse_logged(Some("2006-03-01 00:00:00")),
            Value::DateTime(_)
        ));
        let c = col("ZZJG_DM", "CHAR", 12, false);
        assert_eq!(
            c.parse_logged(Some("MA0N1X2Y3   ")),
            Value::Text("MA0N1X2Y3".to_owned())
        );
    }
}
