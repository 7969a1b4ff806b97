//! One captured table: its columns as the server reports them, and the statements that
//! read it (snapshot chunks, rows by key, keys, rows after a timestamp mark).
//!
//! Names come from validated mappings and are quoted here; values always travel as
//! statement parameters.

use crate::error::classify;
use crate::image::ImageRead;
use crate::values::{Reading, convert, latin1_key, param};
use ebis_source::{Change, KeyEntry, Op, Row, SourceError, TablePlan, Value};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, Value as My};
use std::sync::Arc;

/// Connections a large fetch of rows by key is spread over (see [`Table::by_keys_spread`]).
pub const FETCH_CONNECTIONS: usize = 3;

/// Keys per `IN` list when rows are fetched by key.
const FETCH_CHUNK: usize = 512;

/// Quotes an identifier with backticks.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

pub use ebis_capture::keys::{key_problem, split_table};

/// Runs one expression against the table (no rows); an error the source reports is
/// the expression's, named by its mapping's place.
async fn probe_expression(
    conn: &mut Conn,
    from: &str,
    e: &ebis_source::Expression,
) -> Result<(), SourceError> {
    let sql = format!("SELECT ({}) FROM {from} LIMIT 0", e.sql);
    match conn.query_drop(sql).await {
        Ok(()) => Ok(()),
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

/// A table ready to be read.
#[derive(Clone, Debug)]
pub struct Table {
    /// What the mappings need.
    pub plan: TablePlan,
    quoted: String,
    select: String,
    readings: Vec<Reading>,
    /// Select-list positions of the key columns.
    key_idx: Vec<usize>,
    /// Key columns, quoted, as the server names them.
    key_quoted: Vec<String>,
    /// One key's placeholder in a `… IN (…)` list of keys ([`key_marks`]).
    key_in: String,
    /// One key's placeholder after `… > ` in key order ([`key_marks`]).
    key_after: String,
    /// Position of the modified column in the select list, and its quoted name.
    modified: Option<(usize, String)>,
    /// Each column's name and data type, as the server reports them.
    pub types: Vec<(String, String)>,
    /// Each column's character set, as the catalog names it (`None`: not text).
    charsets: Vec<Option<String>>,
}

/// One key column's placeholder where its value is compared with the column. A latin1
/// column is read as its own bytes (`Reading::Latin1Bytes`: they may be GBK a legacy
/// application stored there), so its value is those bytes, passed in hex
/// ([`Table::key_params`]) and taken as latin1 as they are: passed as they came, the
/// server took them for UTF-8 and no row beyond ASCII matched.
/// In a row `IN` list (`in_row`) a text value is also converted to its column's
/// character set: MariaDB 10.11 compares a row `IN` list of two or more rows without
/// converting a text value, so `(CODE, SEQ) IN (('海南区0', 7), ('海南区0', 8))` on a GBK
/// `CODE` finds nothing (one row, a single column, or ASCII text do), and rows read by
/// key were taken as deleted.
fn key_mark(charset: Option<&str>, reading: Reading, in_row: bool) -> String {
    match (charset, reading) {
        (_, Reading::Latin1Bytes) => "CONVERT(UNHEX(?) USING latin1)".to_owned(),
        (Some(cs), Reading::Plain)
            if in_row
                && !cs.is_empty()
                && cs.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            format!("CONVERT(? USING {cs})")
        }
        _ => "?".to_owned(),
    }
}

/// Bytes in hex, for `UNHEX(?)`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The key columns' placeholders, joined: `m` for one column, `(m1, m2, …)` for more.
fn key_marks(
    key_idx: &[usize],
    columns: &[(String, String, Option<String>)],
    readings: &[Reading],
    in_list: bool,
) -> String {
    let marks: Vec<String> = key_idx
        .iter()
        .map(|i| {
            key_mark(
                columns[*i].2.as_deref(),
                readings[*i],
                in_list && key_idx.len() > 1,
            )
        })
        .collect();
    match marks.as_slice() {
        [one] => one.clone(),
        _ => format!("({})", marks.join(", ")),
    }
}

impl Table {
    /// Reads the table's columns from `information_schema` and checks the plan against
    /// them: a missing table or column is a fatal error naming it.
    pub async fn load(conn: &mut Conn, plan: &TablePlan) -> Result<Table, SourceError> {
        let (schema, name) = split_table(&plan.table);
        let described = crate::catalog::columns(conn, schema, name, &plan.table).await?;
        let nullable: Vec<bool> = described.iter().map(|r| r.3).collect();
        let rows: Vec<(String, String, Option<String>)> = described
            .into_iter()
            .map(|(c, t, cs, _)| (c, t, cs))
            .collect();
        if rows.is_empty() {
            return Err(SourceError::MissingTable {
                table: plan.table.clone(),
            });
        }
        let find = |col: &str| {
            rows.iter()
                .position(|(c, _, _)| c.eq_ignore_ascii_case(col))
        };
        for col in plan.columns.iter().chain(plan.modified_column.iter()) {
            if find(col).is_none() {
                return Err(SourceError::MissingColumn {
                    table: plan.table.clone(),
                    column: col.clone(),
                });
            }
        }
        let mut items = Vec::new();
        let mut readings = Vec::new();
        for (col, _ty, charset) in &rows {
            if charset.as_deref() == Some("latin1") {
                items.push(format!("CAST({0} AS BINARY) AS {0}", quote(col)));
                readings.push(Reading::Latin1Bytes);
            } else {
                items.push(quote(col));
                readings.push(Reading::Plain);
            }
        }
        for e in &plan.expressions {
            items.push(format!("({}) AS {}", e.sql, quote(&e.alias)));
            readings.push(Reading::Plain);
        }
        let mut key_idx = Vec::new();
        let mut key_quoted = Vec::new();
        for k in &plan.key {
            let i = find(k).ok_or_else(|| SourceError::MissingColumn {
                table: plan.table.clone(),
                column: k.clone(),
            })?;
            key_idx.push(i);
            key_quoted.push(quote(&rows[i].0));
        }
        // Every expression must run at the source: a broken one is named by its mapping
        // file, line and field now, not by a failed read later.
        let from = match schema {
            Some(s) => format!("{}.{}", quote(s), quote(name)),
            None => quote(name),
        };
        for e in &plan.expressions {
            probe_expression(conn, &from, e).await?;
        }
        if !plan.trust_key {
            let unique = crate::catalog::unique_indexes(conn, schema, name, &plan.table).await?;
            let key_nullable: Vec<&str> = key_idx
                .iter()
                .filter(|i| nullable[**i])
                .map(|i| rows[*i].0.as_str())
                .collect();
            if let Some(problem) = key_problem(&plan.key, &unique, &key_nullable) {
                return Err(SourceError::Key {
                    table: plan.table.clone(),
                    problem,
                });
            }
        }
        let modified = match &plan.modified_column {
            Some(m) => find(m).map(|i| (i, quote(&rows[i].0))),
            None => None,
        };
        let key_in = key_marks(&key_idx, &rows, &readings, true);
        let key_after = key_marks(&key_idx, &rows, &readings, false);
        Ok(Table {
            key_in,
            key_after,
            quoted: match schema {
                Some(s) => format!("{}.{}", quote(s), quote(name)),
                None => quote(name),
            },
            select: items.join(", "),
            readings,
            key_idx,
            key_quoted,
            modified,
            types: rows
                .iter()
                .map(|(c, t, _)| (c.clone(), t.clone()))
                .collect(),
            charsets: rows.iter().map(|(_, _, cs)| cs.clone()).collect(),
            plan: plan.clone(),
        })
    }

    /// The key columns as the server names them, each with how the select list reads it
    /// and its character set as the catalog names it.
    pub fn key_columns(&self) -> impl Iterator<Item = (&str, Reading, Option<&str>)> + '_ {
        self.key_idx.iter().map(|i| {
            (
                self.types[*i].0.as_str(),
                self.readings[*i],
                self.charsets[*i].as_deref(),
            )
        })
    }

    /// How to take this table's rows from the log's full images whose columns are
    /// `image` (name and whether unsigned, in image order), where they give exactly what this table's select list
    /// reads ([`ImageRead`]); `None` where they may not (a mapping expression, a column
    /// type read otherwise, a column the image lacks).
    pub(crate) fn image_read(&self, image: &[(String, bool)]) -> Option<ImageRead> {
        if !self.plan.expressions.is_empty() {
            return None;
        }
        ImageRead::new(
            self.types
                .iter()
                .zip(&self.charsets)
                .zip(&self.readings)
                .map(|(((name, ty), cs), r)| (name.as_str(), ty.as_str(), cs.as_deref(), *r)),
            image,
        )
    }

    /// A key's values as statement parameters for [`key_mark`]'s placeholders: a latin1
    /// column's value as the hex of its bytes.
    fn key_params<'k>(&'k self, key: &'k [Value]) -> impl Iterator<Item = My> + 'k {
        key.iter()
            .zip(&self.key_idx)
            .map(|(v, i)| match (self.readings[*i], v) {
                (Reading::Latin1Bytes, Value::Bytes(b)) => My::Bytes(hex(b).into_bytes()),
                (Reading::Latin1Bytes, Value::Text(t)) => My::Bytes(hex(t.as_bytes()).into_bytes()),
                _ => param(v),
            })
    }

    /// A key as the change table logged it (a JSON array, text in UTF-8), in the form a
    /// read of the table gives it: a latin1 column's part as the column's own bytes.
    pub fn key_from_log(&self, mut key: Vec<Value>) -> Vec<Value> {
        for (v, i) in key.iter_mut().zip(&self.key_idx) {
            if self.readings[*i] == Reading::Latin1Bytes {
                *v = latin1_key(std::mem::replace(v, Value::Null));
            }
        }
        key
    }

    /// True when the table has a modified column (timestamp capture possible).
    pub fn has_modified(&self) -> bool {
        self.modified.is_some()
    }

    fn order_by(&self) -> String {
        self.key_quoted.join(", ")
    }

    /// `(k1, k2) > (?, ?)`, or `k > ?` (with [`key_mark`]'s placeholders).
    fn after_key(&self) -> String {
        if self.key_quoted.len() == 1 {
            format!("{} > {}", self.key_quoted[0], self.key_after)
        } else {
            format!("({}) > {}", self.key_quoted.join(", "), self.key_after)
        }
    }

    /// `WHERE <key> > (?, …)` and its parameters, or nothing.
    fn after_clause(&self, after: Option<&[Value]>) -> (String, Vec<My>) {
        match after {
            Some(k) => (
                format!("WHERE {}", self.after_key()),
                self.key_params(k).collect(),
            ),
            None => (String::new(), Vec::new()),
        }
    }

    async fn rows(
        &self,
        conn: &mut Conn,
        sql: &str,
        params: Vec<My>,
    ) -> Result<Vec<Row>, SourceError> {
        tracing::trace!(table = %self.plan.table, "read");
        let result: Vec<mysql_async::Row> = match conn.exec(sql, params).await {
            Ok(rows) => rows,
            Err(e) => {
                let e = classify(e, Some(&self.plan.table));
                // A read that fails for good on a table with expressions, while the table
                // itself reads: name the expression at fault (one reading a table since
                // dropped, say).
                if !e.is_retryable()
                    && !self.plan.expressions.is_empty()
                    && conn
                        .query_drop(format!("SELECT 1 FROM {} LIMIT 0", self.quoted))
                        .await
                        .is_ok()
                {
                    for x in &self.plan.expressions {
                        probe_expression(conn, &self.quoted, x).await?;
                    }
                }
                return Err(e);
            }
        };
        // Every row of a result has the same columns: their names are decoded once (per
        // row and column, it was a twentieth of a snapshot's reading and mapping).
        let mut names: Option<Arc<Vec<String>>> = None;
        Ok(result
            .into_iter()
            .map(|r| {
                let columns = r.columns();
                let names = names.get_or_insert_with(|| {
                    Arc::new(
                        columns
                            .iter()
                            .zip(&self.readings)
                            .map(|(c, _)| c.name_str().into_owned())
                            .collect(),
                    )
                });
                let values = r
                    .unwrap()
                    .into_iter()
                    .zip(columns.iter())
                    .zip(&self.readings)
                    .map(|((v, c), reading)| convert(v, c, *reading))
                    .collect();
                Row::with_names(Arc::clone(names), values)
            })
            .collect())
    }

    /// The key values of a row read by this table's select list.
    pub fn key_of(&self, row: &Row) -> Vec<Value> {
        row.values_at(&self.key_idx)
    }

    /// The modified column's value as microseconds (for ordering), if the table has one.
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
        let (cond, params) = self.after_clause(after);
        let sql = format!(
            "SELECT {} FROM {} {cond} ORDER BY {} LIMIT {limit}",
            self.select,
            self.quoted,
            self.order_by()
        );
        self.rows(conn, &sql, params).await
    }

    /// Keys in key order, each with the row's modified value when the table has one.
    pub async fn keys(
        &self,
        conn: &mut Conn,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<KeyEntry>, SourceError> {
        let (cond, params) = self.after_clause(after);
        let modified = self
            .modified
            .as_ref()
            .map(|(_, mc)| format!(", {mc}"))
            .unwrap_or_default();
        let sql = format!(
            "SELECT {0}{modified} FROM {1} {cond} ORDER BY {0} LIMIT {limit}",
            self.order_by(),
            self.quoted
        );
        let width = self.key_quoted.len();
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql, params)
            .await
            .map_err(|e| classify(e, Some(&self.plan.table)))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let columns = r.columns();
                let mut values: Vec<Value> = r
                    .unwrap()
                    .into_iter()
                    .zip(columns.iter())
                    .map(|(v, c)| convert(v, c, Reading::Plain))
                    .map(|v| match v {
                        Value::Bytes(b) if b.is_ascii() => {
                            Value::Text(String::from_utf8(b).unwrap_or_default())
                        }
                        other => other,
                    })
                    .collect();
                let modified = (values.len() > width).then(|| values.remove(width));
                KeyEntry {
                    key: values,
                    modified,
                }
            })
            .collect())
    }

    /// The current rows for many keys, read over up to [`FETCH_CONNECTIONS`] connections
    /// at once (`conn` and more from `pool`): a catch-up batch's 10,000 keys took 20 round
    /// trips of 512 one after another, the longest step of a batch, while the server and
    /// this process each used a fraction of a core. Each row is read as it is now,
    /// whichever connection reads it, so splitting the keys changes nothing else.
    pub async fn by_keys_spread<'a>(
        &self,
        conn: &mut Conn,
        pool: &Pool,
        keys: &'a [Vec<Value>],
    ) -> Result<Vec<Row>, SourceError> {
        if keys.len() <= 2 * FETCH_CHUNK {
            return self.by_keys(conn, keys).await;
        }
        let part = keys.len().div_ceil(FETCH_CONNECTIONS);
        let (first, rest) = keys.split_at(part);
        let (second, third) = rest.split_at(part.min(rest.len()));
        let other = |p: &'a [Vec<Value>]| async move {
            let mut c = pool.get_conn().await.map_err(|e| classify(e, None))?;
            self.by_keys(&mut c, p).await
        };
        let (mut out, b, c) =
            tokio::try_join!(self.by_keys(conn, first), other(second), other(third))?;
        out.extend(b);
        out.extend(c);
        Ok(out)
    }

    /// The current rows for some keys. Keys the table no longer has are simply absent.
    pub async fn by_keys(
        &self,
        conn: &mut Conn,
        keys: &[Vec<Value>],
    ) -> Result<Vec<Row>, SourceError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(FETCH_CHUNK) {
            // Pad to a few fixed sizes so the prepared-statement cache stays small.
            let size = [1usize, 8, 32, 128, FETCH_CHUNK]
                .into_iter()
                .find(|s| *s >= chunk.len())
                .unwrap_or(FETCH_CHUNK);
            let one = &self.key_in;
            let target = if self.key_quoted.len() == 1 {
                self.key_quoted[0].clone()
            } else {
                format!("({})", self.key_quoted.join(", "))
            };
            let sql = format!(
                "SELECT {} FROM {} WHERE {target} IN ({})",
                self.select,
                self.quoted,
                vec![one.as_str(); size].join(", ")
            );
            let mut params = Vec::with_capacity(size * self.key_quoted.len());
            for i in 0..size {
                let key = chunk
                    .get(i)
                    .or(chunk.last())
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                params.extend(self.key_params(key));
            }
            out.extend(self.rows(conn, &sql, params).await?);
        }
        Ok(out)
    }

    /// Rows after a (modified, key) mark and no later than `upto` (the source's own
    /// clock: a row dated in the future must not carry the mark past every ordinary
    /// write until then), in (modified, key) order. An empty key means "every row at that
    /// modified time".
    pub async fn after_mark(
        &self,
        conn: &mut Conn,
        modified: Option<&Value>,
        key: &[Value],
        upto: &Value,
        limit: usize,
    ) -> Result<Vec<Row>, SourceError> {
        let Some((_, mc)) = &self.modified else {
            return Ok(Vec::new());
        };
        let (cond, mut params): (String, Vec<My>) = match modified {
            None => (format!("WHERE {mc} <= ?"), Vec::new()),
            Some(m) if key.is_empty() => (format!("WHERE {mc} >= ? AND {mc} <= ?"), vec![param(m)]),
            Some(m) => {
                let mut p = vec![param(m), param(m)];
                p.extend(self.key_params(key));
                (
                    format!(
                        "WHERE ({mc} > ? OR ({mc} = ? AND {})) AND {mc} <= ?",
                        self.after_key()
                    ),
                    p,
                )
            }
        };
        params.push(param(upto));
        let sql = format!(
            "SELECT {} FROM {} {cond} ORDER BY {mc}, {} LIMIT {limit}",
            self.select,
            self.quoted,
            self.order_by()
        );
        self.rows(conn, &sql, params).await
    }

    /// Rows whose modified time lies in [from, to], in (modified, key) order.
    pub async fn modified_between(
        &self,
        conn: &mut Conn,
        from: &Value,
        to: &Value,
        limit: usize,
    ) -> Result<Vec<Row>, SourceError> {
        let Some((_, mc)) = &self.modified else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {} FROM {} WHERE {mc} >= ? AND {mc} <= ? ORDER BY {mc}, {} LIMIT {limit}",
            self.select,
            self.quoted,
            self.order_by()
        );
        self.rows(conn, &sql, vec![param(from), param(to)]).await
    }

    /// The largest modified value in the table.
    pub async fn newest(&self, conn: &mut Conn) -> Result<Option<Value>, SourceError> {
        let Some((i, mc)) = &self.modified else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {mc} DESC LIMIT 1",
            self.select, self.quoted
        );
        let rows = self.rows(conn, &sql, Vec::new()).await?;
        Ok(rows
            .first()
            .and_then(|r| r.iter().nth(*i))
            .map(|(_, v)| v.clone()))
    }

    /// Number of rows, for progress: the server's estimate, or a count.
    pub async fn count(&self, conn: &mut Conn) -> Result<u64, SourceError> {
        // The server's estimate first (InnoDB's sampled statistics, kept in the data
        // dictionary): free, where a count reads the whole of a large table's smallest
        // index. A table it has no estimate for (0: none kept yet) is counted.
        let (schema, name) = split_table(&self.plan.table);
        let estimate: Option<Option<u64>> = conn
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
                (schema, name),
            )
            .await
            .map_err(|e| classify(e, Some(&self.plan.table)))?;
        if let Some(Some(n)) = estimate
            && n > 0
        {
            return Ok(n);
        }
        let n: Option<u64> = conn
            .query_first(format!("SELECT COUNT(*) FROM {}", self.quoted))
            .await
            .map_err(|e| classify(e, Some(&self.plan.table)))?;
        Ok(n.unwrap_or(0))
    }

    /// An upsert change for a row read from this table.
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
}
